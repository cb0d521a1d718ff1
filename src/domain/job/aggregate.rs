//! The decisions: which command may happen in which state, under which SOP,
//! and which events it leaves behind.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::*;
use super::errors::JobError;
use super::events::{ApprovalAction, Channel, JobEvent, SlaKind};
use super::invoice::Invoice;
use super::state::{ApprovalStatus, JobData, JobState, VisitStatus};
use crate::domain::actor::{Issued, Role};
use crate::domain::money::round_up_minutes;
use crate::domain::policy::{DispatchPolicy, Priority};
use crate::domain::sop::{IncidentSop, SopLibrary, SopStage};
use crate::domain::technician::Shift;

/// What the job aggregate consults: the SOP library and the dispatch policy.
#[derive(Debug, Clone)]
pub struct JobServices {
    /// The validated SOP library.
    pub sops: Arc<SopLibrary>,
    /// SLA hours and acknowledgement windows.
    pub policy: Arc<DispatchPolicy>,
}

/// The job aggregate: `None` until opened.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Job {
    /// Events applied so far (the stream's last sequence).
    pub version: u64,
    /// Everything known, once opened.
    pub data: Option<JobData>,
}

/// Longest id accepted (client, site, door, technician, invoice numbers).
const MAX_ID_BYTES: usize = 200;
/// Longest free text accepted.
const MAX_TEXT_BYTES: usize = 4096;
/// Largest NTE or amount accepted: $100,000,000.00.
const MAX_CENTS: i64 = 10_000_000_000;

fn check_text(field: &str, s: &str, max: usize) -> Result<(), JobError> {
    let bad = |problem| {
        Err(JobError::Validation {
            field: field.to_string(),
            problem,
        })
    };
    if s.trim().is_empty() {
        return bad("must not be blank");
    }
    if s.len() > max {
        return bad("too long");
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return bad("control characters are not allowed");
    }
    Ok(())
}

fn check_opt_text(field: &str, s: &Option<String>) -> Result<(), JobError> {
    s.as_deref()
        .map_or(Ok(()), |s| check_text(field, s, MAX_TEXT_BYTES))
}

fn check_cents(field: &str, v: i64) -> Result<(), JobError> {
    if !(0..=MAX_CENTS).contains(&v) {
        return Err(JobError::Validation {
            field: field.to_string(),
            problem: "amount out of range",
        });
    }
    Ok(())
}

fn require(job: &JobData, command: &'static str, allowed: &[JobState]) -> Result<(), JobError> {
    if allowed.contains(&job.state) {
        Ok(())
    } else {
        Err(JobError::InvalidTransition {
            command,
            current_state: job.state,
        })
    }
}

fn require_open(job: &JobData, command: &'static str) -> Result<(), JobError> {
    if job.state.is_open() {
        Ok(())
    } else {
        Err(JobError::InvalidTransition {
            command,
            current_state: job.state,
        })
    }
}

/// The priority the SOP's rules give the intake, with the reasons for P1.
fn sop_priority(sop: &IncidentSop, job: &JobData) -> (Priority, Vec<String>) {
    let reasons: Vec<String> = sop
        .intake
        .p1_when
        .iter()
        .filter(|r| r.matches(&job.intake))
        .map(|r| r.reason.clone())
        .collect();
    if reasons.is_empty() {
        (sop.intake.default_priority, reasons)
    } else {
        (Priority::P1, reasons)
    }
}

fn sla_dues(
    policy: &DispatchPolicy,
    job: &JobData,
    p: Priority,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    (
        policy
            .response_window(&job.client_id, p)
            .map(|w| job.opened_at + w),
        policy
            .completion_window(&job.client_id, p)
            .map(|w| job.opened_at + w),
    )
}

/// Trip charges owed when a job is cancelled: one per visit that travelled.
fn cancel_trip_charge(sop: &IncidentSop, job: &JobData) -> i64 {
    let travelled = job
        .visits
        .iter()
        .filter(|v| v.travel_started_at.is_some() || v.checked_in_at.is_some())
        .count() as i64;
    travelled * sop.closeout.trip_charge_cents
}

impl JobCommand {
    /// Which SOP document guards this command (recorded on its events).
    pub fn sop_stage(&self) -> Option<SopStage> {
        // Every job command runs under its incident type's SOPs; the stage
        // names the document whose rules (or data) apply to it, so every job
        // event records the SOP version it happened under.
        Some(match self {
            JobCommand::OpenJob(_)
            | JobCommand::RecordIntake(_)
            | JobCommand::TriageJob(_)
            | JobCommand::SetPriority(_)
            | JobCommand::ResolveDuplicate(_)
            | JobCommand::AddNote(_)
            | JobCommand::FlagSlaBreach(_) => SopStage::Intake,
            JobCommand::OfferJob(_)
            | JobCommand::AcceptOffer(_)
            | JobCommand::DeclineOffer(_)
            | JobCommand::ExpireOffer(_)
            | JobCommand::StartTravel(_)
            | JobCommand::CheckIn(_)
            | JobCommand::CompleteChecklistItem(_)
            | JobCommand::AttachEvidence(_)
            | JobCommand::CheckOut(_)
            | JobCommand::ScheduleReturnVisit(_) => SopStage::Field,
            JobCommand::VerifyCloseout(_)
            | JobCommand::ReopenUnsatisfactory(_)
            | JobCommand::MarkBillingReady(_)
            | JobCommand::CloseJob(_)
            | JobCommand::CancelJob(_)
            | JobCommand::RequestNteIncrease(_)
            | JobCommand::DecideApproval(_) => SopStage::Closeout,
        })
    }
}

impl Job {
    /// The job's data, if opened.
    pub fn data(&self) -> Option<&JobData> {
        self.data.as_ref()
    }

    /// The state, if opened.
    pub fn state(&self) -> Option<JobState> {
        self.data.as_ref().map(|d| d.state)
    }

    /// Rebuilds a job from its events.
    pub fn from_events(events: impl IntoIterator<Item = JobEvent>) -> Job {
        let mut job = Job::default();
        for e in events {
            job.apply(e);
        }
        job
    }

    fn next_approval_id(&self, job: &JobData) -> String {
        let name = format!("{}/approval/{}", job.job_id, self.version + 1);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
    }

    fn request_approval(
        &self,
        job: &JobData,
        cmd: &Issued<JobCommand>,
        action: ApprovalAction,
        reason: String,
    ) -> Vec<JobEvent> {
        vec![JobEvent::ApprovalRequested {
            approval_id: self.next_approval_id(job),
            action,
            reason,
            requested_by: cmd.by.clone(),
            at: cmd.at,
        }]
    }

    /// Decides a command: the events it yields, or why it is refused. Pure.
    ///
    /// Every command is decided on its own rules first; then **the
    /// destructive rule** ([`Job::person_decides`]) looks at what it would
    /// do: an agent's command whose events would end the job or discard
    /// recorded work yields only an `ApprovalRequested`, and a person decides.
    pub fn decide(
        &self,
        cmd: &Issued<JobCommand>,
        svc: &JobServices,
    ) -> Result<Vec<JobEvent>, JobError> {
        let events = self.decide_command(cmd, svc)?;
        self.person_decides(cmd, events)
    }

    /// The destructive rule, stated once for every command: when the agent's
    /// command would yield an event of [`DESTRUCTIVE_EVENTS`] (it ends the
    /// job or discards recorded work) on a job that was ever offered to a
    /// technician — or would dismiss a possible duplicate, which the agent
    /// never does alone — nothing but an `ApprovalRequested` for that effect
    /// happens, and a dispatcher or admin decides (`decide_approval`). An
    /// effect no approval can carry out is refused outright.
    fn person_decides(
        &self,
        cmd: &Issued<JobCommand>,
        events: Vec<JobEvent>,
    ) -> Result<Vec<JobEvent>, JobError> {
        let Some(job) = self.data.as_ref() else {
            return Ok(events);
        };
        if cmd.by.role != Role::Agent {
            return Ok(events);
        }
        let ever_offered = !job.visits.is_empty();
        let Some(effect) = events.iter().find(|e| {
            e.is_destructive() && (ever_offered || matches!(e, JobEvent::DuplicateDismissed { .. }))
        }) else {
            return Ok(events);
        };
        let (action, reason) = match effect {
            JobEvent::JobCancelled { reason, .. } => (
                ApprovalAction::CancelJob {
                    reason: reason.clone(),
                },
                reason.clone(),
            ),
            JobEvent::DuplicateDismissed {
                possible_duplicate_of,
                ..
            } => (
                ApprovalAction::DismissDuplicate {
                    possible_duplicate_of: possible_duplicate_of.clone(),
                },
                format!("agent asks to dismiss possible duplicate of {possible_duplicate_of}"),
            ),
            JobEvent::JobLinkedAsDuplicate { duplicate_of } => (
                ApprovalAction::LinkDuplicate {
                    duplicate_of: duplicate_of.clone(),
                },
                format!("agent asks to link as a duplicate of {duplicate_of}"),
            ),
            _ => return Err(JobError::Forbidden),
        };
        Ok(self.request_approval(job, cmd, action, reason))
    }

    /// Decides a command on its own rules (before the destructive rule).
    fn decide_command(
        &self,
        cmd: &Issued<JobCommand>,
        svc: &JobServices,
    ) -> Result<Vec<JobEvent>, JobError> {
        if let JobCommand::OpenJob(c) = &cmd.command {
            if self.data.is_some() {
                return Err(JobError::JobAlreadyExists);
            }
            return open_job(c, cmd.at, svc);
        }
        let job = self.data.as_ref().ok_or(JobError::JobNotFound)?;
        if cmd.by.role == Role::Technician {
            // The technician of the current offer or visit, while it stands:
            // a declined or expired offer leaves them no rights on the job.
            let mine = job.current_visit().is_some_and(|v| {
                cmd.by.technician_id.as_deref() == Some(v.technician_id.as_str())
                    && matches!(
                        v.status,
                        VisitStatus::Offered
                            | VisitStatus::Confirmed
                            | VisitStatus::EnRoute
                            | VisitStatus::OnSite
                            | VisitStatus::CheckedOut
                    )
            });
            if !mine {
                return Err(JobError::NotYourJob);
            }
        }
        let sop = svc
            .sops
            .get(&job.incident_type)
            .ok_or_else(|| JobError::UnknownIncidentType(job.incident_type.clone()))?;
        let at = cmd.at;
        let name = cmd.command.wire_name();
        match &cmd.command {
            JobCommand::OpenJob(_) => unreachable!("handled above"),
            JobCommand::RecordIntake(c) => {
                require(job, name, &[JobState::Intake])?;
                if c.fields.is_empty() {
                    return Err(JobError::Validation {
                        field: "fields".into(),
                        problem: "must not be empty",
                    });
                }
                let bad: Vec<String> = c
                    .fields
                    .iter()
                    .filter(|(k, v)| {
                        sop.intake
                            .field(k)
                            .is_none_or(|spec| spec.check(v).is_err())
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if !bad.is_empty() {
                    return Err(JobError::InvalidIntakeFields { fields: bad });
                }
                Ok(vec![JobEvent::IntakeRecorded {
                    fields: c.fields.clone(),
                }])
            }
            JobCommand::TriageJob(c) => {
                require(job, name, &[JobState::Intake])?;
                let mut missing: Vec<String> = sop
                    .intake
                    .fields
                    .iter()
                    .filter(|f| f.required && !job.intake.contains_key(&f.name))
                    .map(|f| f.name.clone())
                    .collect();
                if job.channel == Channel::Ifm && job.ifm.is_none() {
                    missing.extend([
                        "ifm.work_order_number".to_string(),
                        "ifm.nte_cents".to_string(),
                    ]);
                }
                if !missing.is_empty() {
                    return Err(JobError::MissingIntakeFields { missing });
                }
                if let Some(other) = &job.flags.possible_duplicate_of {
                    return Err(JobError::UnresolvedDuplicate {
                        possible_duplicate_of: other.clone(),
                    });
                }
                let (computed, p1_reasons) = sop_priority(sop, job);
                let priority = match c.priority {
                    Some(p) if cmd.by.role == Role::Agent && p > computed => {
                        return Err(JobError::PriorityBelowSop {
                            requested: p,
                            sop_priority: computed,
                        })
                    }
                    Some(p) => p,
                    None => computed,
                };
                let (sla_due_at, completion_due_at) = sla_dues(&svc.policy, job, priority);
                let make_safe_required = sop
                    .field
                    .make_safe_when
                    .iter()
                    .any(|r| r.matches(&job.intake));
                Ok(vec![JobEvent::JobTriaged {
                    priority,
                    p1_reasons,
                    sla_due_at,
                    completion_due_at,
                    make_safe_required,
                }])
            }
            JobCommand::SetPriority(c) => {
                require(job, name, &[JobState::Triaged])?;
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                let (computed, _) = sop_priority(sop, job);
                if cmd.by.role == Role::Agent && c.priority > computed {
                    return Err(JobError::PriorityBelowSop {
                        requested: c.priority,
                        sop_priority: computed,
                    });
                }
                let from = job.priority.unwrap_or(computed);
                let (sla_due_at, completion_due_at) = sla_dues(&svc.policy, job, c.priority);
                Ok(vec![JobEvent::PriorityChanged {
                    from,
                    to: c.priority,
                    reason: c.reason.clone(),
                    sla_due_at,
                    completion_due_at,
                }])
            }
            JobCommand::ResolveDuplicate(c) => match c.resolution {
                DuplicateResolution::Link => {
                    require(job, name, &[JobState::Intake, JobState::Triaged])?;
                    let target = c
                        .duplicate_of
                        .clone()
                        .or_else(|| job.flags.possible_duplicate_of.clone())
                        .ok_or(JobError::NoDuplicateToResolve)?;
                    check_text("duplicate_of", &target, MAX_ID_BYTES)?;
                    check_link_target(job, &target, c.target.as_ref())?;
                    Ok(vec![JobEvent::JobLinkedAsDuplicate {
                        duplicate_of: target,
                    }])
                }
                DuplicateResolution::NotDuplicate => {
                    require(job, name, &[JobState::Intake])?;
                    let other = job
                        .flags
                        .possible_duplicate_of
                        .clone()
                        .ok_or(JobError::NoDuplicateToResolve)?;
                    Ok(vec![JobEvent::DuplicateDismissed {
                        possible_duplicate_of: other,
                        approval_id: None,
                    }])
                }
            },
            JobCommand::OfferJob(c) => {
                require(job, name, &[JobState::Triaged])?;
                let tech = c
                    .technician
                    .as_ref()
                    .ok_or_else(|| JobError::UnknownTechnician(c.technician_id.clone()))?;
                let today = at.date_naive();
                let mut missing: Vec<String> = sop
                    .intake
                    .required_skills
                    .iter()
                    .filter(|s| !tech.skills.contains(s))
                    .cloned()
                    .collect();
                for cert in &sop.intake.required_certifications {
                    let valid = tech
                        .certifications
                        .iter()
                        .any(|(n, exp)| n == cert && *exp >= today);
                    if !valid {
                        missing.push(cert.clone());
                    }
                }
                if !missing.is_empty() {
                    return Err(JobError::TechnicianNotQualified { missing });
                }
                if !tech.active || tech.shift == Shift::Off {
                    return Err(JobError::TechnicianUnavailable {
                        shift: tech.shift,
                        active: tech.active,
                    });
                }
                let priority = job.priority.unwrap_or(sop.intake.default_priority);
                Ok(vec![JobEvent::JobOffered {
                    visit: job.visits.len() as u32 + 1,
                    technician_id: tech.technician_id.clone(),
                    labor_rate_cents: tech.labor_rate_cents,
                    offered_at: at,
                    ack_due_at: at + svc.policy.ack_window(priority),
                    preferred: job.flags.preferred_technician_id.as_deref()
                        == Some(tech.technician_id.as_str()),
                }])
            }
            JobCommand::AcceptOffer(c) => {
                require(job, name, &[JobState::Offered])?;
                let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
                if c.eta < at {
                    return Err(JobError::Validation {
                        field: "eta".into(),
                        problem: "must not be in the past",
                    });
                }
                Ok(vec![JobEvent::OfferAccepted {
                    technician_id: visit.technician_id.clone(),
                    eta: c.eta,
                    eta_beyond_sla: job.sla_due_at.is_some_and(|due| c.eta > due),
                }])
            }
            JobCommand::DeclineOffer(c) => {
                require(job, name, &[JobState::Offered])?;
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
                Ok(vec![JobEvent::OfferDeclined {
                    technician_id: visit.technician_id.clone(),
                    reason: c.reason.clone(),
                }])
            }
            JobCommand::ExpireOffer(_) => {
                if cmd.by.role != Role::System {
                    return Err(JobError::Forbidden);
                }
                require(job, name, &[JobState::Offered])?;
                let visit = job.current_visit().ok_or(JobError::OfferNotExpired)?;
                if at < visit.ack_due_at {
                    return Err(JobError::OfferNotExpired);
                }
                Ok(vec![JobEvent::OfferExpired {
                    technician_id: visit.technician_id.clone(),
                }])
            }
            JobCommand::StartTravel(_) => {
                require(job, name, &[JobState::Confirmed])?;
                let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
                Ok(vec![JobEvent::TravelStarted {
                    technician_id: visit.technician_id.clone(),
                    at,
                }])
            }
            JobCommand::CheckIn(c) => {
                require(job, name, &[JobState::Confirmed, JobState::EnRoute])?;
                if c.lat.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
                    return Err(JobError::Validation {
                        field: "lat".into(),
                        problem: "must be within -90..90",
                    });
                }
                if c.lon.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
                    return Err(JobError::Validation {
                        field: "lon".into(),
                        problem: "must be within -180..180",
                    });
                }
                let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
                Ok(vec![JobEvent::CheckedIn {
                    technician_id: visit.technician_id.clone(),
                    method: c.method,
                    lat: c.lat,
                    lon: c.lon,
                    at,
                }])
            }
            JobCommand::CompleteChecklistItem(c) => {
                require(job, name, &[JobState::OnSite])?;
                check_opt_text("note", &c.note)?;
                if !sop.field.checklist.iter().any(|i| i.id == c.item_id) {
                    return Err(JobError::UnknownChecklistItem(c.item_id.clone()));
                }
                Ok(vec![JobEvent::ChecklistItemCompleted {
                    item_id: c.item_id.clone(),
                    result: c.result,
                    note: c.note.clone(),
                }])
            }
            JobCommand::AttachEvidence(c) => {
                require_open(job, name)?;
                check_opt_text("note", &c.note)?;
                let hex_ok = c.sha256.len() == 64
                    && c.sha256
                        .chars()
                        .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase());
                if !hex_ok {
                    return Err(JobError::Validation {
                        field: "sha256".into(),
                        problem: "must be 64 lowercase hex digits",
                    });
                }
                if !sop.field.evidence_allowed.contains(&c.kind) {
                    return Err(JobError::EvidenceKindNotAllowed(c.kind));
                }
                Ok(vec![JobEvent::EvidenceAttached {
                    kind: c.kind,
                    sha256: c.sha256.clone(),
                    note: c.note.clone(),
                    content_type: c.upload.as_ref().map(|u| u.content_type.clone()),
                    uploaded_by: c.upload.as_ref().map(|u| u.uploaded_by.clone()),
                }])
            }
            JobCommand::CheckOut(c) => {
                require(job, name, &[JobState::OnSite])?;
                check_text("resolution", &c.resolution, MAX_TEXT_BYTES)?;
                for (i, p) in c.parts.iter().enumerate() {
                    check_text(
                        &format!("parts[{i}].part_number"),
                        &p.part_number,
                        MAX_ID_BYTES,
                    )?;
                    check_text(
                        &format!("parts[{i}].description"),
                        &p.description,
                        MAX_TEXT_BYTES,
                    )?;
                    check_cents(&format!("parts[{i}].unit_price_cents"), p.unit_price_cents)?;
                    if !(1..=10_000).contains(&p.quantity) {
                        return Err(JobError::Validation {
                            field: format!("parts[{i}].quantity"),
                            problem: "must be 1..10000",
                        });
                    }
                }
                let make_safe_confirmed = c.make_safe_confirmed.unwrap_or(false);
                if c.outcome == CheckOutcome::Completed {
                    let mut missing: Vec<String> = sop
                        .field
                        .checklist
                        .iter()
                        .filter(|i| i.required)
                        .filter(|i| {
                            !job.checklist.get(&i.id).is_some_and(|e| {
                                matches!(e.result, ChecklistResult::Pass | ChecklistResult::Na)
                            })
                        })
                        .map(|i| i.id.clone())
                        .collect();
                    missing.extend(
                        sop.field
                            .evidence_required
                            .iter()
                            .filter(|k| !job.has_evidence(**k))
                            .map(|k| k.as_str().to_string()),
                    );
                    if c.door_left_state == DoorLeftState::LockedOut {
                        missing.push("door_left_state".into());
                    }
                    if job.flags.make_safe_required && !make_safe_confirmed {
                        missing.push("make_safe_confirmed".into());
                    }
                    if !missing.is_empty() {
                        return Err(JobError::MissingFieldEvidence { missing });
                    }
                } else if job.flags.make_safe_required
                    && c.door_left_state == DoorLeftState::Operational
                {
                    return Err(JobError::DoorNotSecured);
                }
                let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
                let checked_in = visit.checked_in_at.unwrap_or(at);
                let seconds = (at - checked_in).num_seconds().max(0);
                let minutes =
                    round_up_minutes((seconds + 59) / 60, sop.closeout.labor_increment_minutes);
                Ok(vec![JobEvent::CheckedOut {
                    technician_id: visit.technician_id.clone(),
                    outcome: c.outcome,
                    door_left_state: c.door_left_state,
                    make_safe_confirmed,
                    resolution: c.resolution.clone(),
                    parts: c.parts.clone(),
                    at,
                    labor_minutes: minutes,
                }])
            }
            JobCommand::ScheduleReturnVisit(c) => {
                require(job, name, &[JobState::OnHold])?;
                check_opt_text("reason", &c.reason)?;
                if job.flags.hold_reason == Some(CheckOutcome::NeedsQuote)
                    && !job.flags.quote_approved
                {
                    return Err(JobError::QuoteNotApproved);
                }
                Ok(vec![JobEvent::ReturnVisitScheduled {
                    reason: c.reason.clone(),
                }])
            }
            JobCommand::VerifyCloseout(c) => {
                require(job, name, &[JobState::WorkCompleted])?;
                if let Some(bad) = c
                    .items
                    .iter()
                    .find(|r| !sop.closeout.items.iter().any(|i| i.id == r.id))
                {
                    return Err(JobError::Validation {
                        field: format!("items.{}", truncate(&bad.id)),
                        problem: "not a closeout item of the SOP",
                    });
                }
                let mut missing: Vec<String> = sop
                    .closeout
                    .items
                    .iter()
                    .filter(|i| {
                        !c.items.iter().any(|r| {
                            r.id == i.id
                                && matches!(r.result, ChecklistResult::Pass | ChecklistResult::Na)
                        })
                    })
                    .map(|i| i.id.clone())
                    .collect();
                if sop.closeout.customer_signoff_required
                    && !job.has_evidence(super::events::EvidenceKind::Signature)
                {
                    missing.push("signature".into());
                }
                if !missing.is_empty() {
                    return Err(JobError::CloseoutIncomplete { missing });
                }
                Ok(vec![JobEvent::CloseoutVerified {
                    items: c.items.clone(),
                }])
            }
            JobCommand::ReopenUnsatisfactory(c) => {
                require(
                    job,
                    name,
                    &[JobState::WorkCompleted, JobState::CloseoutVerified],
                )?;
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                Ok(vec![JobEvent::JobReopened {
                    reason: c.reason.clone(),
                }])
            }
            JobCommand::MarkBillingReady(_) => {
                let invoice = Invoice::for_job(job, sop.closeout.trip_charge_cents);
                // Before closeout is verified, the NTE blocker is reported first:
                // it needs a person's approval, so it should be raised early.
                if job.state == JobState::WorkCompleted {
                    if let Some(nte) = job.nte_cents.filter(|n| invoice.total_cents > *n) {
                        return Err(JobError::NteExceeded {
                            total_cents: invoice.total_cents,
                            nte_cents: nte,
                        });
                    }
                }
                require(job, name, &[JobState::CloseoutVerified])?;
                let mut missing = Vec::new();
                if job.channel == Channel::Ifm
                    && job
                        .ifm
                        .as_ref()
                        .is_none_or(|i| i.work_order_number.trim().is_empty())
                {
                    missing.push("work_order_number".to_string());
                }
                if invoice.lines.is_empty() {
                    missing.push("invoice_lines".to_string());
                }
                if !missing.is_empty() {
                    return Err(JobError::MissingBillingData { missing });
                }
                if let Some(nte) = job.nte_cents {
                    if invoice.total_cents > nte {
                        return Err(JobError::NteExceeded {
                            total_cents: invoice.total_cents,
                            nte_cents: nte,
                        });
                    }
                }
                Ok(vec![JobEvent::BillingReadyMarked {
                    invoice,
                    nte_cents: job.nte_cents,
                }])
            }
            JobCommand::CloseJob(c) => {
                require(job, name, &[JobState::BillingReady])?;
                check_text("invoice_number", &c.invoice_number, MAX_ID_BYTES)?;
                Ok(vec![JobEvent::JobClosed {
                    invoice_number: c.invoice_number.clone(),
                }])
            }
            JobCommand::CancelJob(c) => {
                if !job.state.before_work_completed() {
                    return Err(JobError::InvalidTransition {
                        command: name,
                        current_state: job.state,
                    });
                }
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                Ok(vec![JobEvent::JobCancelled {
                    reason: c.reason.clone(),
                    trip_charge_cents: cancel_trip_charge(sop, job),
                    approval_id: None,
                }])
            }
            JobCommand::AddNote(c) => {
                require_open(job, name)?;
                check_text("text", &c.text, MAX_TEXT_BYTES)?;
                Ok(vec![JobEvent::NoteAdded {
                    text: c.text.clone(),
                }])
            }
            JobCommand::RequestNteIncrease(c) => {
                require_open(job, name)?;
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                check_cents("amount_cents", c.amount_cents)?;
                if job.nte_cents.is_some_and(|n| c.amount_cents <= n) {
                    return Err(JobError::NteNotIncreased {
                        current_cents: job.nte_cents,
                    });
                }
                let action = ApprovalAction::NteIncrease {
                    amount_cents: c.amount_cents,
                };
                Ok(self.request_approval(job, cmd, action, c.reason.clone()))
            }
            JobCommand::DecideApproval(c) => decide_approval(job, c, cmd, sop),
            JobCommand::FlagSlaBreach(c) => {
                if cmd.by.role != Role::System {
                    return Err(JobError::Forbidden);
                }
                require_open(job, name)?;
                let (due, label) = match c.kind {
                    SlaKind::Response => (job.sla_due_at, "response"),
                    SlaKind::Completion => (job.completion_due_at, "completion"),
                };
                let due = due.ok_or(JobError::SlaNotBreached(label))?;
                let met = match c.kind {
                    SlaKind::Response => job
                        .visits
                        .iter()
                        .any(|v| v.checked_in_at.is_some_and(|t| t <= due)),
                    SlaKind::Completion => job.visits.iter().any(|v| {
                        v.outcome == Some(CheckOutcome::Completed)
                            && v.checked_out_at.is_some_and(|t| t <= due)
                    }),
                };
                if at <= due || met || job.flags.sla_breached.contains(&c.kind) {
                    return Err(JobError::SlaNotBreached(label));
                }
                Ok(vec![JobEvent::SlaBreached {
                    kind: c.kind,
                    due_at: due,
                }])
            }
        }
    }
}

/// `link` accepts the job's own flagged possible duplicate, or another open
/// job at the same site and door; the target must exist and be open.
fn check_link_target(
    job: &JobData,
    target: &str,
    found: Option<&DuplicateTarget>,
) -> Result<(), JobError> {
    let open = found.filter(|t| t.open);
    let Some(t) = open.filter(|_| target != job.job_id) else {
        return Err(JobError::DuplicateTargetNotOpen {
            duplicate_of: target.to_string(),
        });
    };
    let flagged = job.flags.possible_duplicate_of.as_deref() == Some(target);
    let same_door = t.site_id == job.site.id && t.door_id == job.door.id;
    if flagged || same_door {
        Ok(())
    } else {
        Err(JobError::DuplicateTargetUnrelated {
            duplicate_of: target.to_string(),
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn open_job(c: &OpenJob, at: DateTime<Utc>, svc: &JobServices) -> Result<Vec<JobEvent>, JobError> {
    if svc.sops.get(&c.incident_type).is_none() {
        return Err(JobError::UnknownIncidentType(truncate(&c.incident_type)));
    }
    check_text("job_id", &c.job_id, MAX_ID_BYTES)?;
    check_text("client_id", &c.client_id, MAX_ID_BYTES)?;
    check_text("site.id", &c.site.id, MAX_ID_BYTES)?;
    check_text("site.name", &c.site.name, MAX_TEXT_BYTES)?;
    check_text("site.address", &c.site.address, MAX_TEXT_BYTES)?;
    check_text("contact.name", &c.contact.name, MAX_TEXT_BYTES)?;
    check_text("contact.phone", &c.contact.phone, MAX_ID_BYTES)?;
    check_text("door.id", &c.door.id, MAX_ID_BYTES)?;
    check_text("door.location", &c.door.location, MAX_TEXT_BYTES)?;
    check_text("description", &c.description, MAX_TEXT_BYTES)?;
    if let Some(ifm) = &c.ifm {
        check_text(
            "ifm.work_order_number",
            &ifm.work_order_number,
            MAX_ID_BYTES,
        )?;
        check_cents("ifm.nte_cents", ifm.nte_cents)?;
    } else if c.channel == Channel::Ifm {
        return Err(JobError::Validation {
            field: "ifm".into(),
            problem: "required for IFM work orders",
        });
    }
    let recall = c.related.recall_of.clone();
    let nte_cents = if recall.is_some() {
        Some(0)
    } else {
        c.ifm.as_ref().map(|i| i.nte_cents)
    };
    Ok(vec![JobEvent::JobOpened {
        job_id: c.job_id.clone(),
        incident_type: c.incident_type.clone(),
        channel: c.channel,
        client_id: c.client_id.clone(),
        site: c.site.clone(),
        contact: c.contact.clone(),
        door: c.door.clone(),
        description: c.description.clone(),
        ifm: c.ifm.clone(),
        opened_at: at,
        possible_duplicate_of: c.related.open_duplicate_of.clone(),
        preferred_technician_id: recall.as_ref().and_then(|r| r.technician_id.clone()),
        recall_of: recall.map(|r| r.job_id),
        nte_cents,
    }])
}

fn decide_approval(
    job: &JobData,
    c: &DecideApproval,
    cmd: &Issued<JobCommand>,
    sop: &IncidentSop,
) -> Result<Vec<JobEvent>, JobError> {
    if !cmd.by.role.is_supervisor() {
        return Err(JobError::Forbidden);
    }
    require_open(job, "decide_approval")?;
    check_opt_text("reason", &c.reason)?;
    let approval = job
        .approval(&c.approval_id)
        .ok_or_else(|| JobError::ApprovalNotFound(truncate(&c.approval_id)))?;
    if approval.status != ApprovalStatus::Pending {
        return Err(JobError::ApprovalNotPending(approval.approval_id.clone()));
    }
    if approval.requested_by.id == cmd.by.id && approval.requested_by.role == cmd.by.role {
        return Err(JobError::SelfApproval);
    }
    let id = approval.approval_id.clone();
    if c.decision == Decision::Reject {
        return Ok(vec![JobEvent::ApprovalRejected {
            approval_id: id,
            decided_by: cmd.by.clone(),
            reason: c.reason.clone(),
        }]);
    }
    let stale = || JobError::ApprovalStale {
        approval_id: id.clone(),
        current_state: job.state,
    };
    let effect = match &approval.action {
        ApprovalAction::NteIncrease { amount_cents } => {
            if job.state.is_final() || job.nte_cents.is_some_and(|n| *amount_cents <= n) {
                return Err(stale());
            }
            JobEvent::NteIncreased {
                from_cents: job.nte_cents,
                to_cents: *amount_cents,
                approval_id: id.clone(),
            }
        }
        ApprovalAction::CancelJob { reason } => {
            if !job.state.before_work_completed() {
                return Err(stale());
            }
            JobEvent::JobCancelled {
                reason: reason.clone(),
                trip_charge_cents: cancel_trip_charge(sop, job),
                approval_id: Some(id.clone()),
            }
        }
        ApprovalAction::DismissDuplicate {
            possible_duplicate_of,
        } => {
            if job.state != JobState::Intake
                || job.flags.possible_duplicate_of.as_ref() != Some(possible_duplicate_of)
            {
                return Err(stale());
            }
            JobEvent::DuplicateDismissed {
                possible_duplicate_of: possible_duplicate_of.clone(),
                approval_id: Some(id.clone()),
            }
        }
        ApprovalAction::LinkDuplicate { duplicate_of } => {
            if !matches!(job.state, JobState::Intake | JobState::Triaged)
                || check_link_target(job, duplicate_of, c.link_target.as_ref()).is_err()
            {
                return Err(stale());
            }
            JobEvent::JobLinkedAsDuplicate {
                duplicate_of: duplicate_of.clone(),
            }
        }
    };
    Ok(vec![
        JobEvent::ApprovalGranted {
            approval_id: id,
            decided_by: cmd.by.clone(),
            reason: c.reason.clone(),
        },
        effect,
    ])
}

impl Aggregate for Job {
    const TYPE: &'static str = "job";
    type Command = Issued<JobCommand>;
    type Event = JobEvent;
    type Error = JobError;
    type Services = JobServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), JobError> {
        let events = self.decide(&command, services)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: JobEvent) {
        self.version += 1;
        match &mut self.data {
            None => self.data = JobData::opened(&event),
            Some(data) => data.apply(event),
        }
    }
}
