//! Intake: opening a job, its intake fields, triage, priority, duplicates.
//! One function per command, named after its wire name; then how the
//! intake's events change the job ([`opened`], [`apply`]).

use std::collections::BTreeMap;

use super::*;
use crate::domain::actor::Role;
use crate::domain::job::commands::*;
use crate::domain::job::errors::JobError;
use crate::domain::job::events::{Channel, JobEvent};
use crate::domain::job::state::{Flags, JobState};
use crate::domain::job::JobServices;

/// `record_intake` (the state machine's row in `transitions.rs`):
/// IntakeRecorded — fields defined by the SOP, typed.
pub(in crate::domain::job) fn record_intake(cx: &Ctx<'_>, c: &RecordIntake) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let name = "record_intake";
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

/// `triage_job` (the state machine's row in `transitions.rs`): JobTriaged —
/// required intake present; no unresolved duplicate.
pub(in crate::domain::job) fn triage_job(cx: &Ctx<'_>, c: &TriageJob) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let cmd = cx.cmd;
    let svc = cx.svc;
    let name = "triage_job";
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
        None => job.planned.as_ref().map_or(computed, |p| p.priority),
    };
    let (sla_due_at, mut completion_due_at) = sla_dues(&svc.policy, job, priority);
    if let Some(p) = &job.planned {
        // Planned work is due when its occurrence is, whatever the policy.
        completion_due_at = Some(p.due_at);
    }
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

/// `set_priority` (the state machine's row in `transitions.rs`):
/// PriorityChanged — SLA recomputed from the call time.
pub(in crate::domain::job) fn set_priority(cx: &Ctx<'_>, c: &SetPriority) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let cmd = cx.cmd;
    let svc = cx.svc;
    let name = "set_priority";
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

/// `resolve_duplicate` (the state machine's row in `transitions.rs`): link:
/// JobLinkedAsDuplicate — other job open, and flagged as this one's possible
/// duplicate or at the same site and door; agent on an ever-offered job:
/// ApprovalRequested only; not_duplicate: DuplicateDismissed — agent:
/// ApprovalRequested only.
pub(in crate::domain::job) fn resolve_duplicate(cx: &Ctx<'_>, c: &ResolveDuplicate) -> Decided {
    let job = cx.job;
    let name = "resolve_duplicate";
    match c.resolution {
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
    }
}

/// `open_job` (the state machine's row in `transitions.rs`): JobOpened —
/// incident type known; IFM jobs carry WO and NTE.
pub(in crate::domain::job) fn open_job(
    c: &OpenJob,
    cmd: &Issued<JobCommand>,
    svc: &JobServices,
) -> Result<Vec<JobEvent>, JobError> {
    let at = cmd.at;
    // The service's own work (a plan's occurrence, a finding's follow-up)
    // comes in on its own channel, which no one else may claim, and only
    // it carries planned work or a follow-up link.
    let own = c.planned.is_some() || c.follow_up_of.is_some();
    if (c.channel == Channel::MaintenancePlan || own) && cmd.by.role != Role::System {
        return Err(JobError::Validation {
            field: "channel".into(),
            problem: "maintenance_plan is the service's own channel",
        });
    }
    if own && c.channel != Channel::MaintenancePlan {
        return Err(JobError::Validation {
            field: "channel".into(),
            problem: "planned work and follow-ups come in on maintenance_plan",
        });
    }
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
        door_id: c.door_id.clone(),
        planned: c.planned.clone(),
        follow_up_of: c.follow_up_of.clone(),
    }])
}

/// How the intake's events change the job (never fails: events are facts):
/// [`Job::apply`](crate::domain::job::Job) routes only them here.
pub(in crate::domain::job) fn apply(job: &mut JobData, event: JobEvent) {
    match event {
        JobEvent::JobOpened { .. } => {}
        JobEvent::IntakeRecorded { fields } => job.intake.extend(fields),
        JobEvent::JobTriaged {
            priority,
            p1_reasons,
            sla_due_at,
            completion_due_at,
            make_safe_required,
        } => {
            job.state = JobState::Triaged;
            job.priority = Some(priority);
            job.p1_reasons = p1_reasons;
            job.sla_due_at = sla_due_at;
            job.completion_due_at = completion_due_at;
            job.flags.make_safe_required = make_safe_required;
        }
        JobEvent::PriorityChanged {
            to,
            sla_due_at,
            completion_due_at,
            ..
        } => {
            job.priority = Some(to);
            job.sla_due_at = sla_due_at;
            job.completion_due_at = completion_due_at;
        }
        JobEvent::JobLinkedAsDuplicate { duplicate_of } => {
            job.state = JobState::Duplicate;
            job.flags.duplicate_of = Some(duplicate_of);
            job.flags.possible_duplicate_of = None;
        }
        JobEvent::DuplicateDismissed { .. } => job.flags.possible_duplicate_of = None,
        _ => {}
    }
}

/// The job `JobOpened` opens (`None` for any other event).
pub(in crate::domain::job) fn opened(event: &JobEvent) -> Option<JobData> {
    let JobEvent::JobOpened {
        job_id,
        incident_type,
        channel,
        client_id,
        site,
        contact,
        door,
        description,
        ifm,
        opened_at,
        possible_duplicate_of,
        recall_of,
        preferred_technician_id,
        nte_cents,
        door_id,
        planned,
        follow_up_of,
    } = event.clone()
    else {
        return None;
    };
    Some(JobData {
        job_id,
        state: JobState::Intake,
        incident_type,
        channel,
        client_id,
        site,
        contact,
        door,
        description,
        ifm,
        opened_at,
        // Planned work carries its plan's priority and its due date as the
        // completion SLA from the start.
        priority: planned.as_ref().map(|p| p.priority),
        p1_reasons: Vec::new(),
        sla_due_at: None,
        completion_due_at: planned.as_ref().map(|p| p.due_at),
        nte_cents,
        intake: BTreeMap::new(),
        flags: Flags {
            possible_duplicate_of,
            recall_of,
            preferred_technician_id,
            ..Flags::default()
        },
        visits: Vec::new(),
        checklist: BTreeMap::new(),
        evidence: Vec::new(),
        approvals: Vec::new(),
        notes: Vec::new(),
        closeout: None,
        invoice: None,
        invoice_number: None,
        cancel_reason: None,
        cancel_trip_charge_cents: 0,
        door_id,
        planned,
        follow_up_of,
    })
}
