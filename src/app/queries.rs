//! Strong reads straight from the event stream: the job now, its envelopes,
//! its audit, and its state as it was after any event.

use std::sync::Arc;

use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::App;
use crate::domain::job::{Invoice, Job, JobEvent};
use crate::domain::money::CURRENCY;
use crate::domain::sop::IncidentSop;
use crate::error::{ApiError, Result};
use crate::store::chain::ChainKeys;
use crate::store::checkpoint::CheckpointedHead;
use crate::store::{self, AuditReport, StoredEvent};

/// The JSON view of a job (`GET /v1/jobs/{id}`, replay).
pub fn job_view(app: &App, job: &Job) -> Option<Value> {
    let data = job.data()?;
    let mut v = serde_json::to_value(data).ok()?;
    let invoice = match &data.invoice {
        Some(i) => i.clone(),
        None => {
            let trip = app
                .sops
                .get(&data.incident_type)
                .map_or(0, |s| s.closeout.trip_charge_cents);
            Invoice::for_job(data, trip)
        }
    };
    let obj = v.as_object_mut()?;
    obj.insert("version".into(), job.version.into());
    obj.insert("currency".into(), CURRENCY.into());
    obj.insert("invoice".into(), json!({"lines": invoice.lines, "total_cents": invoice.total_cents, "final": data.invoice.is_some()}));
    Some(v)
}

impl App {
    /// The SOPs of the incident type a caller named in `field` (`get_sop`'s
    /// `incident_type`, `find_technicians`' `eligible_for`), or `422
    /// unknown_incident_type` naming that field — the answer `open_job`
    /// gives, on every transport.
    pub fn sop_for(&self, incident_type: &str, field: &str) -> Result<&IncidentSop> {
        self.sops
            .get(incident_type)
            .ok_or_else(|| ApiError::unknown_incident_type(incident_type, field))
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// The job rebuilt from its events, optionally only up to `to_sequence`.
    pub async fn load_job(&self, job_id: &str, to_sequence: Option<i64>) -> Result<Job> {
        if !super::storable_id(job_id) {
            return Err(ApiError::NotFound("job not found".into()));
        }
        let mut conn = self.conn().await?;
        let rows = store::load_stream_rows(&mut conn, Job::TYPE, job_id, to_sequence).await?;
        if rows.is_empty() {
            return Err(ApiError::NotFound("job not found".into()));
        }
        let events = rows
            .iter()
            .map(|r| r.decode::<JobEvent>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Job::from_events(events))
    }

    /// `GET /v1/jobs/{id}` and `/replay`.
    pub async fn job(&self, job_id: &str, to_sequence: Option<i64>) -> Result<Value> {
        let job = self.load_job(job_id, to_sequence).await?;
        self.job_now(&job).await
    }

    /// A job's view (`GET /v1/jobs/{id}`, `get_job`): [`job_view`] and, for
    /// a job at a registered door, the door as the registry knows it now
    /// (`registered_door`); for a job a technician's phone has reached the
    /// service about, its last contact and the actions it still holds
    /// (`phone`, [`super::field`]). Neither is the job's state at its
    /// version: replays leave them out.
    pub async fn job_now(&self, job: &Job) -> Result<Value> {
        let mut view =
            job_view(self, job).ok_or_else(|| ApiError::NotFound("job not found".into()))?;
        if let Some(job_id) = job.data().map(|d| d.job_id.clone()) {
            let phone = super::field::contacts_for_jobs(&self.pool, std::slice::from_ref(&job_id))
                .await?
                .remove(&job_id);
            if let Some(c) = phone {
                view["phone"] = json!({
                    "technician_id": c.technician_id,
                    "last_contact_at": c.last_contact_at,
                    "pending": c.pending,
                    "oldest_pending_at": c.oldest_pending_at,
                });
            }
        }
        if let Some(door_id) = job.data().and_then(|d| d.door_id.as_deref()) {
            let mut conn = self.conn().await?;
            let door = super::registry::index::view(
                &mut conn,
                crate::domain::registry::Kind::Door,
                door_id,
            )
            .await?;
            view["registered_door"] = door.unwrap_or(Value::Null);
        }
        Ok(view)
    }

    /// A stream's envelopes.
    pub async fn stream_events(&self, aggregate_type: &str, id: &str) -> Result<Vec<StoredEvent>> {
        if !super::storable_id(id) {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let rows = store::load_stream_rows(&mut conn, aggregate_type, id, None).await?;
        rows.iter()
            .map(|r| r.envelope(aggregate_type, id).map_err(ApiError::from))
            .collect()
    }

    /// Verifies one stream: its hash chain, its MACs, its head and the
    /// heads signed checkpoints recorded for it.
    pub async fn audit(&self, aggregate_type: &str, id: &str) -> Result<Option<AuditReport>> {
        if !super::storable_id(id) {
            return Ok(None);
        }
        let mut conn = self.conn().await?;
        let checkpointed = self.checkpoints.heads(aggregate_type, id);
        audit_stream(&mut conn, &self.chain, &checkpointed, aggregate_type, id).await
    }
}

/// Verifies one stream against `keys` and the heads checkpoints recorded
/// for it (`checkpointed`); `None` when the stream never existed (neither
/// events, nor a head, nor a checkpoint). See [`store::verify_stream`].
pub async fn audit_stream(
    conn: &mut PgConnection,
    keys: &Arc<ChainKeys>,
    checkpointed: &[CheckpointedHead],
    aggregate_type: &str,
    id: &str,
) -> Result<Option<AuditReport>> {
    Ok(store::verify_stream(conn, keys, checkpointed, aggregate_type, id).await?)
}

impl App {
    /// The job's state transitions, each derived from the event that caused it
    /// (validates against `schemas/state_transition.schema.json`).
    pub async fn transitions(&self, job_id: &str) -> Result<Vec<Value>> {
        if !super::storable_id(job_id) {
            return Err(ApiError::NotFound("job not found".into()));
        }
        let mut conn = self.conn().await?;
        let rows = store::load_stream_rows(&mut conn, Job::TYPE, job_id, None).await?;
        if rows.is_empty() {
            return Err(ApiError::NotFound("job not found".into()));
        }
        let mut job = Job::default();
        let mut out = Vec::new();
        for row in &rows {
            let before = job.state();
            job.apply(row.decode::<JobEvent>()?);
            let after = job.state();
            if before != after {
                let env = row.envelope(Job::TYPE, job_id)?;
                out.push(json!({
                    "job_id": job_id,
                    "from": before.map(|s| s.as_str()),
                    "to": after.map(|s| s.as_str()),
                    "command": env.meta.command.clone().unwrap_or_else(|| "unknown".into()),
                    "event_id": env.event_id,
                    "sequence": env.sequence,
                    "actor": env.meta.actor,
                    "at": env.meta.occurred_at,
                }));
            }
        }
        Ok(out)
    }
}
