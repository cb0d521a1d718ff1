//! Approvals: pending ones wait for a person; those of final jobs are moot.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::jobs::{upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};
use crate::domain::job::{ApprovalAction, ApprovalStatus};

/// The approvals projection.
pub struct Approvals;

#[async_trait]
impl Projection for Approvals {
    fn definition(&self) -> &Definition {
        definition!("approvals.toml")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        _: &[EventRow],
        changes: &[JobChange],
        _: &ProjectionContext,
    ) -> Result<()> {
        let mut rows: Vec<Value> = Vec::new();
        for c in changes {
            let Some(d) = c.after.data() else { continue };
            for a in &d.approvals {
                let status = match a.status {
                    ApprovalStatus::Pending if d.state.is_final() => "moot",
                    ApprovalStatus::Pending => "pending",
                    ApprovalStatus::Granted => "granted",
                    ApprovalStatus::Rejected => "rejected",
                };
                let kind = match a.action {
                    ApprovalAction::NteIncrease { .. } => "nte_increase",
                    ApprovalAction::CancelJob { .. } => "cancel_job",
                    ApprovalAction::DismissDuplicate { .. } => "dismiss_duplicate",
                    ApprovalAction::LinkDuplicate { .. } => "link_duplicate",
                };
                rows.push(json!({
                    "approval_id": a.approval_id,
                    "job_id": d.job_id,
                    "kind": kind,
                    "action": a.action,
                    "reason": a.reason,
                    "status": status,
                    "requested_by": a.requested_by,
                    "requested_at": a.requested_at,
                    "decided_by": a.decided_by,
                    "job_state": d.state,
                    "incident_type": d.incident_type,
                    "site_name": d.site.name,
                    "nte_cents": d.nte_cents,
                    "last_position": c.last_position,
                }));
            }
        }
        upsert_rows(conn, table, &["approval_id"], &rows).await
    }
}
