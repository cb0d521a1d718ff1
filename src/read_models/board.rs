//! The dispatch board: one row per job.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::jobs::{upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};
use crate::domain::job::{Job, VisitStatus};

/// The board projection.
pub struct Board;

/// Whether a visit is live (waiting for an answer or being worked).
pub fn is_active(status: VisitStatus) -> bool {
    matches!(
        status,
        VisitStatus::Offered | VisitStatus::Confirmed | VisitStatus::EnRoute | VisitStatus::OnSite
    )
}

/// A job's board row.
pub fn row(job: &Job, last_position: i64) -> Option<Value> {
    let d = job.data()?;
    let visit = d.current_visit();
    let active = visit.filter(|v| is_active(v.status));
    let check_in = d.last_check_in();
    Some(json!({
        "job_id": d.job_id,
        "state": d.state,
        "priority": d.priority,
        "incident_type": d.incident_type,
        "client_id": d.client_id,
        "site_id": d.site.id,
        "site_name": d.site.name,
        "site_address": d.site.address,
        "door_id": d.door.id,
        "channel": d.channel,
        "technician_id": active.map(|v| v.technician_id.clone()),
        "visit_status": visit.map(|v| v.status),
        "eta": active.and_then(|v| v.eta),
        "ack_due_at": active.filter(|v| v.status == VisitStatus::Offered).map(|v| v.ack_due_at),
        "sla_due_at": d.sla_due_at,
        "completion_due_at": d.completion_due_at,
        "checked_in": d.visits.iter().any(|v| v.checked_in_at.is_some()),
        "opened_at": d.opened_at,
        "nte_cents": d.nte_cents,
        "flags": d.flags,
        "checked_in_off_site": d.flags.checked_in_off_site,
        "check_in_geofence": check_in.and_then(|v| v.check_in_geofence.as_ref()),
        "check_in_reason": check_in.and_then(|v| v.check_in_reason.as_deref()),
        "planned": d.planned,
        "follow_up_of": d.follow_up_of,
        "version": job.version,
        "last_position": last_position,
    }))
}

#[async_trait]
impl Projection for Board {
    fn definition(&self) -> &Definition {
        definition!("board.toml")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        _: &[EventRow],
        changes: &[JobChange],
        _: &ProjectionContext,
    ) -> Result<()> {
        let rows: Vec<Value> = changes
            .iter()
            .filter_map(|c| row(&c.after, c.last_position))
            .collect();
        upsert_rows(conn, table, &["job_id"], &rows).await
    }
}
