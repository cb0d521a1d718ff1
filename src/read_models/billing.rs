//! Billing readiness: ready to bill, or what blocks it.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::jobs::{upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};
use crate::domain::job::{ApprovalAction, ApprovalStatus, Channel, Invoice, Job, JobState};
use crate::domain::sop::SopLibrary;

/// The billing readiness projection.
pub struct BillingReadiness;

/// What stands between a job and billing, in the order a person would clear it.
pub fn blockers(job: &Job, invoice: &Invoice) -> Vec<&'static str> {
    let Some(d) = job.data() else { return vec![] };
    let mut out = Vec::new();
    match d.state {
        JobState::BillingReady => {}
        JobState::Closed => out.push("invoiced"),
        JobState::Cancelled => out.push("cancelled"),
        JobState::Duplicate => out.push("duplicate"),
        JobState::WorkCompleted => out.push("closeout_not_verified"),
        JobState::CloseoutVerified => {}
        _ => out.push("work_not_completed"),
    }
    if d.nte_cents.is_some_and(|n| invoice.total_cents > n) {
        out.push("nte_exceeded");
    }
    if d.approvals.iter().any(|a| {
        a.status == ApprovalStatus::Pending
            && matches!(a.action, ApprovalAction::NteIncrease { .. })
    }) {
        out.push("nte_increase_pending");
    }
    if d.channel == Channel::Ifm
        && d.ifm
            .as_ref()
            .is_none_or(|i| i.work_order_number.trim().is_empty())
    {
        out.push("missing_work_order");
    }
    if invoice.lines.is_empty() && !d.state.before_work_completed() && d.state.is_open() {
        out.push("no_invoice_lines");
    }
    if d.state == JobState::CloseoutVerified && out.is_empty() {
        out.push("not_marked_billing_ready");
    }
    out
}

/// The invoice as billing sees it: fixed at billing readiness, else as it stands.
pub fn invoice(job: &Job, sops: &SopLibrary) -> Invoice {
    match job.data() {
        None => Invoice::default(),
        Some(d) => d.invoice.clone().unwrap_or_else(|| {
            let trip = sops
                .get(&d.incident_type)
                .map_or(0, |s| s.closeout.trip_charge_cents);
            Invoice::for_job(d, trip)
        }),
    }
}

/// A job's billing row.
pub fn row(job: &Job, sops: &SopLibrary, last_position: i64) -> Option<Value> {
    let d = job.data()?;
    let inv = invoice(job, sops);
    let blockers = blockers(job, &inv);
    Some(json!({
        "job_id": d.job_id,
        "state": d.state,
        "client_id": d.client_id,
        "work_order_number": d.ifm.as_ref().map(|i| i.work_order_number.clone()),
        "ready": d.state == JobState::BillingReady,
        "blockers": blockers,
        "lines": inv.lines,
        "total_cents": inv.total_cents,
        "nte_cents": d.nte_cents,
        "invoice_number": d.invoice_number,
        "last_position": last_position,
    }))
}

#[async_trait]
impl Projection for BillingReadiness {
    fn definition(&self) -> &Definition {
        definition!("billing_readiness.toml")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        _: &[EventRow],
        changes: &[JobChange],
        ctx: &ProjectionContext,
    ) -> Result<()> {
        let rows: Vec<Value> = changes
            .iter()
            .filter_map(|c| row(&c.after, &ctx.sops, c.last_position))
            .collect();
        upsert_rows(conn, table, &["job_id"], &rows).await
    }
}
