//! The state a job's events build up. How each event changes it lives
//! beside the decision of the command that yields it, by phase
//! (`decide/{intake,field,closeout,any_state}.rs`, each phase's `apply`);
//! [`Job::apply`](super::Job) routes an event to its phase.

use crate::domain::job::{Deficiency, PlannedWork};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::commands::{
    CheckInMethod, CheckOutcome, ChecklistResult, CloseoutItemResult, Contact, Door, DoorLeftState,
    IfmOrder, Part, Site,
};
use super::events::{ApprovalAction, Channel, EvidenceKind, SlaKind};
use super::invoice::Invoice;
use crate::domain::actor::Actor;
use crate::domain::geo::Geofence;
use crate::domain::policy::Priority;
use crate::domain::sop::IncidentSop;

/// The job states of the lifecycle.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Collecting intake.
    Intake,
    /// Waiting for a technician.
    Triaged,
    /// Offered, unanswered.
    Offered,
    /// Accepted with an ETA.
    Confirmed,
    /// Travelling.
    EnRoute,
    /// Checked in.
    OnSite,
    /// Checked out without finishing.
    OnHold,
    /// Checked out, work done.
    WorkCompleted,
    /// Closeout verified.
    CloseoutVerified,
    /// Billing gate passed.
    BillingReady,
    /// Invoiced downstream (final).
    Closed,
    /// Cancelled (final).
    Cancelled,
    /// A duplicate of another job (final).
    Duplicate,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 13] = [
        JobState::Intake,
        JobState::Triaged,
        JobState::Offered,
        JobState::Confirmed,
        JobState::EnRoute,
        JobState::OnSite,
        JobState::OnHold,
        JobState::WorkCompleted,
        JobState::CloseoutVerified,
        JobState::BillingReady,
        JobState::Closed,
        JobState::Cancelled,
        JobState::Duplicate,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Intake => "intake",
            JobState::Triaged => "triaged",
            JobState::Offered => "offered",
            JobState::Confirmed => "confirmed",
            JobState::EnRoute => "en_route",
            JobState::OnSite => "on_site",
            JobState::OnHold => "on_hold",
            JobState::WorkCompleted => "work_completed",
            JobState::CloseoutVerified => "closeout_verified",
            JobState::BillingReady => "billing_ready",
            JobState::Closed => "closed",
            JobState::Cancelled => "cancelled",
            JobState::Duplicate => "duplicate",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Closed, cancelled and duplicate are final.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Closed | JobState::Cancelled | JobState::Duplicate
        )
    }

    /// Not final.
    pub fn is_open(self) -> bool {
        !self.is_final()
    }

    /// States before `work_completed` (where cancelling is allowed).
    pub fn before_work_completed(self) -> bool {
        matches!(
            self,
            JobState::Intake
                | JobState::Triaged
                | JobState::Offered
                | JobState::Confirmed
                | JobState::EnRoute
                | JobState::OnSite
                | JobState::OnHold
        )
    }
}

/// Where an offer or visit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VisitStatus {
    /// Offered, unanswered.
    Offered,
    /// Declined.
    Declined,
    /// Expired unanswered.
    Expired,
    /// Accepted.
    Confirmed,
    /// Travelling.
    EnRoute,
    /// On site.
    OnSite,
    /// Checked out.
    CheckedOut,
    /// The job was cancelled during the visit.
    Cancelled,
}

/// One offer and, once accepted, one technician trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Visit {
    /// 1-based.
    pub number: u32,
    /// Who.
    pub technician_id: String,
    /// Their rate, cents per hour.
    pub labor_rate_cents: i64,
    /// Where it stands.
    pub status: VisitStatus,
    /// Offered at.
    pub offered_at: DateTime<Utc>,
    /// Offer expires at.
    pub ack_due_at: DateTime<Utc>,
    /// The recall's preferred technician.
    pub preferred: bool,
    /// Promised arrival.
    pub eta: Option<DateTime<Utc>>,
    /// Why declined.
    pub decline_reason: Option<String>,
    /// Travel started.
    pub travel_started_at: Option<DateTime<Utc>>,
    /// Checked in.
    pub checked_in_at: Option<DateTime<Utc>>,
    /// How.
    pub check_in_method: Option<CheckInMethod>,
    /// The check-in's position against the site's radius (an `app`
    /// check-in at a registered site with coordinates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_geofence: Option<Geofence>,
    /// Why the check-in was away from the site or without a position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_reason: Option<String>,
    /// The check-in position's reported accuracy, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_accuracy_m: Option<f64>,
    /// Checked out.
    pub checked_out_at: Option<DateTime<Utc>>,
    /// Outcome.
    pub outcome: Option<CheckOutcome>,
    /// How the door was left.
    pub door_left_state: Option<DoorLeftState>,
    /// What was done.
    pub resolution: Option<String>,
    /// Parts used.
    pub parts: Vec<Part>,
    /// Billable minutes.
    pub labor_minutes: i64,
    /// Checklist results recorded during this visit.
    pub checklist: BTreeMap<String, ChecklistEntry>,
    /// Deficiencies found on this visit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deficiencies: Vec<Deficiency>,
}

impl Visit {
    /// A new offer (visit `number`): nothing answered or done yet.
    pub(in crate::domain::job) fn offered(
        number: u32,
        technician_id: String,
        labor_rate_cents: i64,
        offered_at: DateTime<Utc>,
        ack_due_at: DateTime<Utc>,
        preferred: bool,
    ) -> Visit {
        Visit {
            number,
            technician_id,
            labor_rate_cents,
            status: VisitStatus::Offered,
            offered_at,
            ack_due_at,
            preferred,
            eta: None,
            decline_reason: None,
            travel_started_at: None,
            checked_in_at: None,
            check_in_method: None,
            check_in_geofence: None,
            check_in_reason: None,
            check_in_accuracy_m: None,
            checked_out_at: None,
            outcome: None,
            door_left_state: None,
            resolution: None,
            parts: Vec::new(),
            labor_minutes: 0,
            checklist: BTreeMap::new(),
            deficiencies: Vec::new(),
        }
    }
}

/// A checklist result as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChecklistEntry {
    /// Result.
    pub result: ChecklistResult,
    /// Remark.
    pub note: Option<String>,
}

/// Evidence attached to the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvidenceRef {
    /// Kind.
    pub kind: EvidenceKind,
    /// SHA-256 of the stored content.
    pub sha256: String,
    /// Remark.
    pub note: Option<String>,
    /// The media type of the upload attached (unknown on older events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Who uploaded it (unknown on older events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_by: Option<String>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a person.
    Pending,
    /// Approved and carried out.
    Granted,
    /// Rejected.
    Rejected,
}

/// A risky action waiting for (or decided by) a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Approval {
    /// Id.
    pub approval_id: String,
    /// What it carries out.
    pub action: ApprovalAction,
    /// Why it was asked.
    pub reason: String,
    /// Who asked.
    pub requested_by: Actor,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Who decided.
    pub decided_by: Option<Actor>,
    /// Their remark.
    pub decision_reason: Option<String>,
}

/// A note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Note {
    /// The text (data).
    pub text: String,
}

/// Flags shown on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct Flags {
    /// An open job at the same site and door, unresolved.
    pub possible_duplicate_of: Option<String>,
    /// This job is a duplicate of.
    pub duplicate_of: Option<String>,
    /// A recall of a recently completed job.
    pub recall_of: Option<String>,
    /// The recall's original technician.
    pub preferred_technician_id: Option<String>,
    /// Triage required a make-safe.
    pub make_safe_required: bool,
    /// The accepted ETA is after the response SLA.
    pub eta_beyond_sla: bool,
    /// SLA breaches flagged.
    pub sla_breached: Vec<SlaKind>,
    /// Why the job is on hold.
    pub hold_reason: Option<CheckOutcome>,
    /// A needs-quote job's quote (NTE increase) was approved.
    pub quote_approved: bool,
    /// The latest check-in was geofenced and not shown inside the site's
    /// radius (outside it, or without a position): it carries a reason.
    #[serde(default)]
    pub checked_in_off_site: bool,
}

/// Everything known about an opened job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobData {
    /// Id.
    pub job_id: String,
    /// State.
    pub state: JobState,
    /// Incident type.
    pub incident_type: String,
    /// Channel.
    pub channel: Channel,
    /// Client.
    pub client_id: String,
    /// Site.
    pub site: Site,
    /// Contact.
    pub contact: Contact,
    /// Door.
    pub door: Door,
    /// Description.
    pub description: String,
    /// IFM work order.
    pub ifm: Option<IfmOrder>,
    /// Call time.
    pub opened_at: DateTime<Utc>,
    /// Priority, once triaged.
    pub priority: Option<Priority>,
    /// Why P1.
    pub p1_reasons: Vec<String>,
    /// Response due.
    pub sla_due_at: Option<DateTime<Utc>>,
    /// Completion due.
    pub completion_due_at: Option<DateTime<Utc>>,
    /// Current NTE (None: no cap).
    pub nte_cents: Option<i64>,
    /// Intake answers.
    pub intake: BTreeMap<String, Value>,
    /// Flags.
    pub flags: Flags,
    /// Offers and trips.
    pub visits: Vec<Visit>,
    /// The current visit's checklist results by item id (each visit works the
    /// whole checklist again: safety checks are per visit).
    pub checklist: BTreeMap<String, ChecklistEntry>,
    /// Evidence.
    pub evidence: Vec<EvidenceRef>,
    /// Approvals.
    pub approvals: Vec<Approval>,
    /// Notes.
    pub notes: Vec<Note>,
    /// Closeout results, once verified.
    pub closeout: Option<Vec<CloseoutItemResult>>,
    /// The invoice fixed at billing readiness.
    pub invoice: Option<Invoice>,
    /// Downstream invoice number.
    pub invoice_number: Option<String>,
    /// Why cancelled.
    pub cancel_reason: Option<String>,
    /// Trip charge on cancellation.
    pub cancel_trip_charge_cents: i64,
    /// The registered door (the registry's id), when opened at one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door_id: Option<String>,
    /// The maintenance plan occurrence it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<PlannedWork>,
    /// The job whose finding it follows up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_of: Option<String>,
}

impl JobData {
    /// The latest offer or visit.
    pub fn current_visit(&self) -> Option<&Visit> {
        self.visits.last()
    }

    /// The latest offer or visit, to change it.
    pub(in crate::domain::job) fn current_visit_mut(&mut self) -> Option<&mut Visit> {
        self.visits.last_mut()
    }

    /// The latest visit that checked in.
    pub fn last_check_in(&self) -> Option<&Visit> {
        self.visits.iter().rev().find(|v| v.checked_in_at.is_some())
    }

    /// Whether `technician_id` is the technician of the current offer or
    /// visit while it stands — the one rule of what a technician may do on
    /// a job (a declined or expired offer, or an earlier visit, leaves them
    /// no rights on it).
    pub fn is_technicians_now(&self, technician_id: Option<&str>) -> bool {
        self.current_visit().is_some_and(|v| {
            technician_id == Some(v.technician_id.as_str())
                && matches!(
                    v.status,
                    VisitStatus::Offered
                        | VisitStatus::Confirmed
                        | VisitStatus::EnRoute
                        | VisitStatus::OnSite
                        | VisitStatus::CheckedOut
                )
        })
    }

    /// The approval with this id.
    pub fn approval(&self, id: &str) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.approval_id == id)
    }

    /// Whether evidence of a kind is attached.
    pub fn has_evidence(&self, kind: EvidenceKind) -> bool {
        self.evidence.iter().any(|e| e.kind == kind)
    }

    /// What a completed check-out of the current visit still lacks under
    /// its field SOP, in the order `missing_field_evidence` lists it: the
    /// required checklist items not done, the required evidence kinds not
    /// attached, and the make-safe where triage required it. An item counts
    /// as done when it passed, is N/A, or failed with a deficiency recorded
    /// for it (`has_deficiency`: an inspection's failed item is its finding,
    /// not unfinished work). `check_out` decides by this list; the
    /// technician's visit page shows it before the button.
    pub fn completion_missing(
        &self,
        sop: &IncidentSop,
        has_deficiency: impl Fn(&str) -> bool,
    ) -> Vec<Missing> {
        let mut missing: Vec<Missing> = sop
            .field
            .checklist
            .iter()
            .filter(|i| i.required)
            .filter(|i| {
                !self.checklist.get(&i.id).is_some_and(|e| match e.result {
                    ChecklistResult::Pass | ChecklistResult::Na => true,
                    ChecklistResult::Fail => has_deficiency(&i.id),
                })
            })
            .map(|i| Missing::ChecklistItem(i.id.clone()))
            .collect();
        missing.extend(
            sop.field
                .evidence_required
                .iter()
                .filter(|k| !self.has_evidence(**k))
                .map(|k| Missing::Evidence(*k)),
        );
        if self.flags.make_safe_required {
            missing.push(Missing::MakeSafe);
        }
        missing
    }
}

/// One thing a completed check-out lacks ([`JobData::completion_missing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// A required checklist item (its SOP id) not done.
    ChecklistItem(String),
    /// A required evidence kind not attached.
    Evidence(EvidenceKind),
    /// The make-safe, required by triage, not confirmed.
    MakeSafe,
}

impl Missing {
    /// Its name in `missing_field_evidence`'s list.
    pub fn wire(&self) -> String {
        match self {
            Missing::ChecklistItem(id) => id.clone(),
            Missing::Evidence(k) => k.as_str().to_string(),
            Missing::MakeSafe => "make_safe_confirmed".to_string(),
        }
    }
}
