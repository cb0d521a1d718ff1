//! Each technician's open offers and visits.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::board::is_active;
use super::jobs::{delete_jobs, upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};

/// The technician schedule projection.
pub struct TechnicianSchedule;

#[async_trait]
impl Projection for TechnicianSchedule {
    fn definition(&self) -> &Definition {
        definition!("technician_schedule.toml")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        _: &[EventRow],
        changes: &[JobChange],
        _: &ProjectionContext,
    ) -> Result<()> {
        let ids: Vec<String> = changes.iter().map(|c| c.job_id.clone()).collect();
        delete_jobs(conn, table, &ids).await?;
        let mut rows: Vec<Value> = Vec::new();
        for c in changes {
            let Some(d) = c.after.data() else { continue };
            if !d.state.is_open() {
                continue;
            }
            for v in d.visits.iter().filter(|v| is_active(v.status)) {
                rows.push(json!({
                    "technician_id": v.technician_id,
                    "job_id": d.job_id,
                    "visit": v.number,
                    "status": v.status,
                    "priority": d.priority,
                    "incident_type": d.incident_type,
                    "site_name": d.site.name,
                    "site_address": d.site.address,
                    "door_location": d.door.location,
                    "offered_at": v.offered_at,
                    "ack_due_at": v.ack_due_at,
                    "eta": v.eta,
                    "sla_due_at": d.sla_due_at,
                    "last_position": c.last_position,
                }));
            }
        }
        upsert_rows(conn, table, &["technician_id", "job_id", "visit"], &rows).await
    }
}
