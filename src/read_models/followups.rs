//! Deficiency follow-ups: what the `system` actor's follow-up flow
//! (`src/app/registry/followups.rs`) acts on. One `finding` row per job
//! and visit that found deficiencies at a registered door, and one
//! `follow_up` row per follow-up job (with the visit that left the door
//! repaired, if one did). The table says what there is to do; whether it
//! was done is read from the store, so a rebuild repeats nothing.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::jobs::{upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};
use crate::domain::job::{CheckOutcome, DoorLeftState, Job};

/// The follow-ups projection.
pub struct DoorFollowups;

/// The id of the follow-up job of the deficiencies found on `visit` of
/// `job_id`: the same for every replica and every retry.
pub fn follow_up_id(job_id: &str, visit: u32) -> String {
    let name = format!("dispatch-api/follow-up/{job_id}/{visit}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// A job's rows.
pub fn rows(job: &Job, last_position: i64) -> Vec<Value> {
    let Some(d) = job.data() else { return vec![] };
    let Some(door_id) = d.door_id.as_deref() else {
        return vec![];
    };
    let mut out = Vec::new();
    for v in d.visits.iter().filter(|v| !v.deficiencies.is_empty()) {
        out.push(json!({
            "key": format!("finding:{}:{}", d.job_id, v.number),
            "kind": "finding",
            "job_id": d.job_id,
            "door_id": door_id,
            "visit": v.number,
            "deficiencies": v.deficiencies,
            "follow_up_id": follow_up_id(&d.job_id, v.number),
            "follow_up_of": null,
            "state": d.state,
            "completed_visit": null,
            "last_position": last_position,
        }));
    }
    if let Some(of) = &d.follow_up_of {
        // The last visit checked out decides: completed with the door left
        // operational is a repair.
        let repaired = d
            .visits
            .iter()
            .rev()
            .find(|v| v.outcome.is_some())
            .filter(|v| {
                v.outcome == Some(CheckOutcome::Completed)
                    && v.door_left_state == Some(DoorLeftState::Operational)
            })
            .map(|v| v.number);
        out.push(json!({
            "key": format!("follow_up:{}", d.job_id),
            "kind": "follow_up",
            "job_id": d.job_id,
            "door_id": door_id,
            "visit": null,
            "deficiencies": null,
            "follow_up_id": null,
            "follow_up_of": of,
            "state": d.state,
            "completed_visit": repaired,
            "last_position": last_position,
        }));
    }
    out
}

#[async_trait]
impl Projection for DoorFollowups {
    fn definition(&self) -> &Definition {
        definition!("door_followups.toml")
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
            .flat_map(|c| rows(&c.after, c.last_position))
            .collect();
        upsert_rows(conn, table, &["key"], &rows).await
    }
}
