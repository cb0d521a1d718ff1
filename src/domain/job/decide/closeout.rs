//! Closeout: verification, reopening, billing readiness and closing. One
//! function per command, named after its wire name; then how the
//! closeout's events change the job ([`apply`]).

use super::*;
use crate::domain::job::commands::*;
use crate::domain::job::errors::JobError;
use crate::domain::job::events::{Channel, JobEvent};
use crate::domain::job::invoice::Invoice;
use crate::domain::job::state::JobState;

/// `verify_closeout` (the state machine's row in `transitions.rs`):
/// CloseoutVerified — closeout items and sign-off.
pub(in crate::domain::job) fn verify_closeout(cx: &Ctx<'_>, c: &VerifyCloseout) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let name = "verify_closeout";
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
                r.id == i.id && matches!(r.result, ChecklistResult::Pass | ChecklistResult::Na)
            })
        })
        .map(|i| i.id.clone())
        .collect();
    if sop.closeout.customer_signoff_required
        && !job.has_evidence(crate::domain::job::events::EvidenceKind::Signature)
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

/// `reopen_unsatisfactory` (the state machine's row in `transitions.rs`):
/// JobReopened — reason.
pub(in crate::domain::job) fn reopen_unsatisfactory(
    cx: &Ctx<'_>,
    c: &ReopenUnsatisfactory,
) -> Decided {
    let job = cx.job;
    let name = "reopen_unsatisfactory";
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

/// `mark_billing_ready` (the state machine's row in `transitions.rs`):
/// BillingReadyMarked — WO for IFM; total within NTE.
pub(in crate::domain::job) fn mark_billing_ready(cx: &Ctx<'_>) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let name = "mark_billing_ready";
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

/// `close_job` (the state machine's row in `transitions.rs`): JobClosed —
/// invoice number.
pub(in crate::domain::job) fn close_job(cx: &Ctx<'_>, c: &CloseJob) -> Decided {
    let job = cx.job;
    let name = "close_job";
    require(job, name, &[JobState::BillingReady])?;
    check_text("invoice_number", &c.invoice_number, MAX_ID_BYTES)?;
    Ok(vec![JobEvent::JobClosed {
        invoice_number: c.invoice_number.clone(),
    }])
}

/// How the closeout's events change the job (never fails: events are facts):
/// [`Job::apply`](crate::domain::job::Job) routes only them here.
pub(in crate::domain::job) fn apply(job: &mut JobData, event: JobEvent) {
    match event {
        JobEvent::CloseoutVerified { items } => {
            job.state = JobState::CloseoutVerified;
            job.closeout = Some(items);
        }
        JobEvent::JobReopened { .. } => {
            job.state = JobState::Triaged;
            job.closeout = None;
        }
        JobEvent::BillingReadyMarked { invoice, .. } => {
            job.state = JobState::BillingReady;
            job.invoice = Some(invoice);
        }
        JobEvent::JobClosed { invoice_number } => {
            job.state = JobState::Closed;
            job.invoice_number = Some(invoice_number);
        }
        _ => {}
    }
}
