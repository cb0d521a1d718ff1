//! Commands open to a job in many states: cancelling, notes, NTE requests,
//! decisions on approvals and SLA breaches. One function per command, named
//! after its wire name; then how their events change the job ([`apply`]).

use super::*;
use crate::domain::actor::Actor;
use crate::domain::actor::Role;
use crate::domain::job::commands::*;
use crate::domain::job::errors::JobError;
use crate::domain::job::events::{ApprovalAction, JobEvent, SlaKind};
use crate::domain::job::state::{Approval, ApprovalStatus, JobState, Note, VisitStatus};

/// `cancel_job` (the state machine's row in `transitions.rs`): JobCancelled —
/// agent on an ever-offered job: ApprovalRequested only.
pub(in crate::domain::job) fn cancel_job(cx: &Ctx<'_>, c: &CancelJob) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let name = "cancel_job";
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

/// `add_note` (the state machine's row in `transitions.rs`): NoteAdded.
pub(in crate::domain::job) fn add_note(cx: &Ctx<'_>, c: &AddNote) -> Decided {
    let job = cx.job;
    let name = "add_note";
    require_open(job, name)?;
    check_text("text", &c.text, MAX_TEXT_BYTES)?;
    Ok(vec![JobEvent::NoteAdded {
        text: c.text.clone(),
    }])
}

/// `request_nte_increase` (the state machine's row in `transitions.rs`):
/// ApprovalRequested — above the current NTE.
pub(in crate::domain::job) fn request_nte_increase(
    cx: &Ctx<'_>,
    c: &RequestNteIncrease,
) -> Decided {
    let job = cx.job;
    let cmd = cx.cmd;
    let name = "request_nte_increase";
    require_open(job, name)?;
    check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
    check_cents("amount_cents", c.amount_cents)?;
    if let Some(current_cents) = job.nte_cents.filter(|n| c.amount_cents <= *n) {
        return Err(JobError::NteNotIncreased { current_cents });
    }
    let action = ApprovalAction::NteIncrease {
        amount_cents: c.amount_cents,
    };
    Ok(cx
        .aggregate
        .request_approval(job, cmd, action, c.reason.clone()))
}

/// `flag_sla_breach` (the state machine's row in `transitions.rs`): SlaBreached
/// — system; due time passed; once per kind.
pub(in crate::domain::job) fn flag_sla_breach(cx: &Ctx<'_>, c: &FlagSlaBreach) -> Decided {
    let job = cx.job;
    let cmd = cx.cmd;
    let at = cx.at;
    let name = "flag_sla_breach";
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
            v.outcome == Some(CheckOutcome::Completed) && v.checked_out_at.is_some_and(|t| t <= due)
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

/// `decide_approval`: approve (carrying out the requested effect) or reject.
pub(in crate::domain::job) fn decide_approval(cx: &Ctx<'_>, c: &DecideApproval) -> Decided {
    let (job, cmd, sop) = (cx.job, cx.cmd, cx.sop);
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

/// How the events of these commands change the job (never fails: events are facts):
/// [`Job::apply`](crate::domain::job::Job) routes only them here.
pub(in crate::domain::job) fn apply(job: &mut JobData, event: JobEvent) {
    match event {
        JobEvent::JobCancelled {
            reason,
            trip_charge_cents,
            ..
        } => {
            job.state = JobState::Cancelled;
            job.cancel_reason = Some(reason);
            job.cancel_trip_charge_cents = trip_charge_cents;
            if let Some(v) = job.current_visit_mut() {
                if v.status != VisitStatus::CheckedOut
                    && v.status != VisitStatus::Declined
                    && v.status != VisitStatus::Expired
                {
                    v.status = VisitStatus::Cancelled;
                }
            }
        }
        JobEvent::NoteAdded { text } => job.notes.push(Note { text }),
        JobEvent::ApprovalRequested {
            approval_id,
            action,
            reason,
            requested_by,
            at,
        } => {
            job.approvals.push(Approval {
                approval_id,
                action,
                reason,
                requested_by,
                requested_at: at,
                status: ApprovalStatus::Pending,
                decided_by: None,
                decision_reason: None,
            });
        }
        JobEvent::ApprovalGranted {
            approval_id,
            decided_by,
            reason,
        } => {
            settle(
                job,
                &approval_id,
                ApprovalStatus::Granted,
                decided_by,
                reason,
            );
        }
        JobEvent::ApprovalRejected {
            approval_id,
            decided_by,
            reason,
        } => {
            settle(
                job,
                &approval_id,
                ApprovalStatus::Rejected,
                decided_by,
                reason,
            );
        }
        JobEvent::NteIncreased { to_cents, .. } => {
            job.nte_cents = Some(to_cents);
            if job.state == JobState::OnHold
                && job.flags.hold_reason == Some(CheckOutcome::NeedsQuote)
            {
                job.flags.quote_approved = true;
            }
        }
        JobEvent::SlaBreached { kind, .. } if !job.flags.sla_breached.contains(&kind) => {
            job.flags.sla_breached.push(kind);
        }
        _ => {}
    }
}

/// An approval decided: its status, who decided, their remark.
fn settle(job: &mut JobData, id: &str, status: ApprovalStatus, by: Actor, reason: Option<String>) {
    if let Some(a) = job.approvals.iter_mut().find(|a| a.approval_id == id) {
        a.status = status;
        a.decided_by = Some(by);
        a.decision_reason = reason;
    }
}
