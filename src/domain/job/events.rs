//! What happened to a job. Event type strings and versions are stable wire names.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::commands::{
    CheckInMethod, CheckOutcome, ChecklistResult, CloseoutItemResult, Contact, Deficiency, Door,
    DoorLeftState, IfmOrder, Part, PlannedWork, Site,
};
use super::invoice::Invoice;
use crate::domain::actor::Actor;
use crate::domain::geo::Geofence;
use crate::domain::policy::Priority;

/// How the job came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A phone call.
    Phone,
    /// A text message.
    Sms,
    /// An email.
    Email,
    /// An IFM network work order.
    Ifm,
    /// Opened by the service itself: a maintenance plan's occurrence or an
    /// inspection finding's follow-up. Only the `system` actor may use it,
    /// and no tool schema offers it.
    #[schemars(skip)]
    MaintenancePlan,
}

/// Kinds of evidence a technician attaches.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Photo before work.
    PhotoBefore,
    /// Photo after work.
    PhotoAfter,
    /// Customer signature.
    Signature,
    /// A completed checklist form.
    ChecklistForm,
    /// A receipt for parts.
    PartsReceipt,
    /// A DASMA drop-test form.
    DropTestForm,
    /// A photo of a fire-door label.
    LabelPhoto,
    /// Anything else.
    Other,
}

impl EvidenceKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::PhotoBefore => "photo_before",
            EvidenceKind::PhotoAfter => "photo_after",
            EvidenceKind::Signature => "signature",
            EvidenceKind::ChecklistForm => "checklist_form",
            EvidenceKind::PartsReceipt => "parts_receipt",
            EvidenceKind::DropTestForm => "drop_test_form",
            EvidenceKind::LabelPhoto => "label_photo",
            EvidenceKind::Other => "other",
        }
    }
}

/// Which SLA a breach is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaKind {
    /// No technician on site by the response due time.
    Response,
    /// The work not completed by the completion due time.
    Completion,
}

/// What an approval, once granted, carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalAction {
    /// Replace the NTE with `amount_cents`.
    NteIncrease {
        /// The new NTE.
        amount_cents: i64,
    },
    /// Cancel the job.
    CancelJob {
        /// Why.
        reason: String,
    },
    /// Dismiss the possible duplicate.
    DismissDuplicate {
        /// The job it was thought to duplicate.
        possible_duplicate_of: String,
    },
    /// Link the job as a duplicate of another (it ends the job).
    LinkDuplicate {
        /// The job it duplicates.
        duplicate_of: String,
    },
}

/// The kind of an invoice line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceLineKind {
    /// Technician time.
    Labor,
    /// A part.
    Part,
    /// A trip charge.
    Trip,
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InvoiceLine {
    /// Labor, part or trip.
    pub kind: InvoiceLineKind,
    /// For people.
    pub description: String,
    /// Minutes (labor), pieces (part) or 1 (trip).
    pub quantity: i64,
    /// Cents per hour (labor) or per unit.
    pub unit_cents: i64,
    /// The line's amount.
    pub amount_cents: i64,
}

/// Every event of a job. Payloads carry the times the state needs.
// Events are decoded and applied one by one; `JobOpened` is simply the largest fact.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// `open_job`.
    JobOpened {
        /// The job's id.
        job_id: String,
        /// Incident type (a SOP library key).
        incident_type: String,
        /// How it came in.
        channel: Channel,
        /// The client.
        client_id: String,
        /// Where.
        site: Site,
        /// Onsite contact.
        contact: Contact,
        /// Which door.
        door: Door,
        /// What the caller said.
        description: String,
        /// IFM work order.
        ifm: Option<IfmOrder>,
        /// The call time (SLA clocks start here).
        opened_at: DateTime<Utc>,
        /// An open job at the same site and door.
        possible_duplicate_of: Option<String>,
        /// A job at the same site and door completed in the last 30 days.
        recall_of: Option<String>,
        /// The recall's original technician.
        preferred_technician_id: Option<String>,
        /// The NTE in force (IFM's, or 0 for a recall).
        nte_cents: Option<i64>,
        /// The registered door (the registry's id; `site` and `door` are
        /// then the registry's site and door).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        door_id: Option<String>,
        /// The maintenance plan occurrence it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        planned: Option<PlannedWork>,
        /// The job whose finding it follows up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        follow_up_of: Option<String>,
    },
    /// `record_intake`.
    IntakeRecorded {
        /// Field → value, typed per SOP.
        fields: BTreeMap<String, Value>,
    },
    /// `triage_job`.
    JobTriaged {
        /// The priority fixed.
        priority: Priority,
        /// Why it is P1, from the SOP's rules.
        p1_reasons: Vec<String>,
        /// Response due (check-in).
        sla_due_at: Option<DateTime<Utc>>,
        /// Completion due.
        completion_due_at: Option<DateTime<Utc>>,
        /// Whether the technician must confirm a make-safe.
        make_safe_required: bool,
    },
    /// `set_priority`.
    PriorityChanged {
        /// Before.
        from: Priority,
        /// After.
        to: Priority,
        /// Why.
        reason: String,
        /// Recomputed from the call time.
        sla_due_at: Option<DateTime<Utc>>,
        /// Recomputed from the call time.
        completion_due_at: Option<DateTime<Utc>>,
    },
    /// `resolve_duplicate` with `link`.
    JobLinkedAsDuplicate {
        /// The job this one duplicates.
        duplicate_of: String,
    },
    /// `resolve_duplicate` with `not_duplicate` (or its approval).
    DuplicateDismissed {
        /// The job it was thought to duplicate.
        possible_duplicate_of: String,
        /// The approval that carried it out.
        approval_id: Option<String>,
    },
    /// `offer_job`.
    JobOffered {
        /// Visit number (1-based).
        visit: u32,
        /// Who.
        technician_id: String,
        /// Their labor rate at offer time.
        labor_rate_cents: i64,
        /// When.
        offered_at: DateTime<Utc>,
        /// When the offer expires unanswered.
        ack_due_at: DateTime<Utc>,
        /// Whether this is the recall's preferred technician.
        preferred: bool,
    },
    /// `accept_offer`.
    OfferAccepted {
        /// Who.
        technician_id: String,
        /// Promised arrival.
        eta: DateTime<Utc>,
        /// ETA after the response SLA.
        eta_beyond_sla: bool,
    },
    /// `decline_offer`.
    OfferDeclined {
        /// Who.
        technician_id: String,
        /// Why.
        reason: String,
    },
    /// `expire_offer` (system).
    OfferExpired {
        /// Who did not answer.
        technician_id: String,
    },
    /// `start_travel`.
    TravelStarted {
        /// Who.
        technician_id: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// `check_in`.
    CheckedIn {
        /// Who.
        technician_id: String,
        /// How.
        method: CheckInMethod,
        /// Latitude.
        lat: Option<f64>,
        /// Longitude.
        lon: Option<f64>,
        /// When.
        at: DateTime<Utc>,
        /// The position against the site's radius: an `app` check-in at a
        /// registered site with coordinates only (absent on other
        /// check-ins and on events recorded before the geofence: the three
        /// fields are additive and optional).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        geofence: Option<Geofence>,
        /// Why away from the site or without a position, as given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The position's accuracy as reported, metres.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy_m: Option<f64>,
    },
    /// `complete_checklist_item`.
    ChecklistItemCompleted {
        /// SOP checklist item id.
        item_id: String,
        /// The result.
        result: ChecklistResult,
        /// Remark.
        note: Option<String>,
    },
    /// `attach_evidence`.
    EvidenceAttached {
        /// Kind.
        kind: EvidenceKind,
        /// SHA-256 of the stored content.
        sha256: String,
        /// Remark.
        note: Option<String>,
        /// The media type of the upload attached (absent on events recorded
        /// before uploads were kept per uploader: an additive, optional field).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        /// Who uploaded the bytes attached (absent on older events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uploaded_by: Option<String>,
    },
    /// `check_out`.
    CheckedOut {
        /// Who.
        technician_id: String,
        /// Outcome.
        outcome: CheckOutcome,
        /// How the door was left.
        door_left_state: DoorLeftState,
        /// Make-safe confirmed.
        make_safe_confirmed: bool,
        /// What was done.
        resolution: String,
        /// Parts used.
        parts: Vec<Part>,
        /// When.
        at: DateTime<Utc>,
        /// Billable minutes of this visit (rounded per SOP).
        labor_minutes: i64,
        /// Deficiencies found (an inspection's findings).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deficiencies: Vec<Deficiency>,
    },
    /// `schedule_return_visit`.
    ReturnVisitScheduled {
        /// Why.
        reason: Option<String>,
    },
    /// `verify_closeout`.
    CloseoutVerified {
        /// The SOP closeout items and their results.
        items: Vec<CloseoutItemResult>,
    },
    /// `reopen_unsatisfactory`.
    JobReopened {
        /// Why.
        reason: String,
    },
    /// `mark_billing_ready`.
    BillingReadyMarked {
        /// Lines and total.
        invoice: Invoice,
        /// The NTE it was checked against.
        nte_cents: Option<i64>,
    },
    /// `close_job`.
    JobClosed {
        /// The downstream invoice number.
        invoice_number: String,
    },
    /// `cancel_job` (or its approval).
    JobCancelled {
        /// Why.
        reason: String,
        /// A trip charge once en route.
        trip_charge_cents: i64,
        /// The approval that carried it out.
        approval_id: Option<String>,
    },
    /// `add_note`.
    NoteAdded {
        /// The text, stored as data and never interpreted.
        text: String,
    },
    /// A risky action waits for a person.
    ApprovalRequested {
        /// The approval's id.
        approval_id: String,
        /// What it would carry out.
        action: ApprovalAction,
        /// Why.
        reason: String,
        /// Who asked.
        requested_by: Actor,
        /// When.
        at: DateTime<Utc>,
    },
    /// A person approved; the effect event follows.
    ApprovalGranted {
        /// Which.
        approval_id: String,
        /// Who.
        decided_by: Actor,
        /// Remark.
        reason: Option<String>,
    },
    /// A person rejected.
    ApprovalRejected {
        /// Which.
        approval_id: String,
        /// Who.
        decided_by: Actor,
        /// Remark.
        reason: Option<String>,
    },
    /// An approved NTE increase: replaces the NTE.
    NteIncreased {
        /// Before.
        from_cents: Option<i64>,
        /// After.
        to_cents: i64,
        /// The approval.
        approval_id: String,
    },
    /// `flag_sla_breach` (system).
    SlaBreached {
        /// Which SLA.
        kind: SlaKind,
        /// Its due time.
        due_at: DateTime<Utc>,
    },
}

impl JobEvent {
    /// The stable event type string.
    pub fn type_name(&self) -> &'static str {
        match self {
            JobEvent::JobOpened { .. } => "JobOpened",
            JobEvent::IntakeRecorded { .. } => "IntakeRecorded",
            JobEvent::JobTriaged { .. } => "JobTriaged",
            JobEvent::PriorityChanged { .. } => "PriorityChanged",
            JobEvent::JobLinkedAsDuplicate { .. } => "JobLinkedAsDuplicate",
            JobEvent::DuplicateDismissed { .. } => "DuplicateDismissed",
            JobEvent::JobOffered { .. } => "JobOffered",
            JobEvent::OfferAccepted { .. } => "OfferAccepted",
            JobEvent::OfferDeclined { .. } => "OfferDeclined",
            JobEvent::OfferExpired { .. } => "OfferExpired",
            JobEvent::TravelStarted { .. } => "TravelStarted",
            JobEvent::CheckedIn { .. } => "CheckedIn",
            JobEvent::ChecklistItemCompleted { .. } => "ChecklistItemCompleted",
            JobEvent::EvidenceAttached { .. } => "EvidenceAttached",
            JobEvent::CheckedOut { .. } => "CheckedOut",
            JobEvent::ReturnVisitScheduled { .. } => "ReturnVisitScheduled",
            JobEvent::CloseoutVerified { .. } => "CloseoutVerified",
            JobEvent::JobReopened { .. } => "JobReopened",
            JobEvent::BillingReadyMarked { .. } => "BillingReadyMarked",
            JobEvent::JobClosed { .. } => "JobClosed",
            JobEvent::JobCancelled { .. } => "JobCancelled",
            JobEvent::NoteAdded { .. } => "NoteAdded",
            JobEvent::ApprovalRequested { .. } => "ApprovalRequested",
            JobEvent::ApprovalGranted { .. } => "ApprovalGranted",
            JobEvent::ApprovalRejected { .. } => "ApprovalRejected",
            JobEvent::NteIncreased { .. } => "NteIncreased",
            JobEvent::SlaBreached { .. } => "SlaBreached",
        }
    }
}

/// The events that end a job or discard recorded work. When the agent's
/// command would yield one, a person decides (see
/// `Job::decide`, "the destructive rule"); the allowlist's `destructive` flag
/// is checked against this list at start-up.
pub const DESTRUCTIVE_EVENTS: &[&str] = &[
    "JobLinkedAsDuplicate",
    "DuplicateDismissed",
    "JobReopened",
    "JobClosed",
    "JobCancelled",
];

impl JobEvent {
    /// Whether this event ends the job or discards recorded work
    /// ([`DESTRUCTIVE_EVENTS`]).
    pub fn is_destructive(&self) -> bool {
        DESTRUCTIVE_EVENTS.contains(&self.type_name())
    }
}

/// The current version of every job event's payload shape.
pub const JOB_EVENT_VERSION: &str = "1.0";

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        JOB_EVENT_VERSION.to_string()
    }
}
