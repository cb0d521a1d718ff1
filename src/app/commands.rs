//! Executing commands: one transaction holds the idempotency claim, the
//! aggregate's load, the decision, the appended events (hash-chained), the
//! door index and the stored answer. A crash anywhere before commit leaves
//! nothing; after commit, a retry with the same key gets the stored answer.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{evidence, App, Caller, RequestMeta};
use crate::domain::job::{
    CheckOutcome, Job, JobCommand, JobEvent, JobState, RecallOf, RelatedJobs,
};
use crate::domain::technician::{Technician, TechnicianCommand};
use crate::domain::Issued;
use crate::error::{ApiError, Result};
use crate::store::{self, Appended, EventMeta, NewEvent};

/// The answer to a mutation: status and the exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON or problem+json).
    pub body: Vec<u8>,
    /// Whether this is a stored answer replayed for a retried key.
    pub replayed: bool,
}

impl Reply {
    /// Whether the body is a problem document.
    pub fn is_problem(&self) -> bool {
        self.status >= 400
    }
}

/// How long ago a completed job at the same door makes a new one a recall.
const RECALL_WINDOW_DAYS: i64 = 30;

fn derived_id(caller: &Caller, meta: &RequestMeta, kind: &str) -> String {
    let name = format!(
        "dispatch-api/{kind}/{}/{}",
        caller.key_name, meta.idempotency_key
    );
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// Splits an externally tagged event into (type, payload).
fn split_event<E: serde::Serialize>(event: &E) -> Result<(String, Value)> {
    match serde_json::to_value(event).map_err(|e| ApiError::Internal(e.into()))? {
        Value::Object(m) if m.len() == 1 => Ok(m.into_iter().next().expect("one entry")),
        other => Err(ApiError::Internal(anyhow::anyhow!(
            "event did not serialize as a tagged object: {other}"
        ))),
    }
}

/// Runs the aggregate's `handle` through an event sink and collects its events.
async fn run<A: Aggregate>(
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
) -> std::result::Result<Vec<A::Event>, A::Error> {
    let sink = EventSink::default();
    aggregate.handle(command, services, &sink).await?;
    Ok(sink.collect().await)
}

impl App {
    /// Claims `(caller, key)` inside the transaction. `Some(reply)` means the
    /// key was used before: the stored answer (or a reuse refusal).
    async fn claim(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
    ) -> Result<Option<Reply>> {
        // ON CONFLICT waits for a concurrent holder of the same key to finish;
        // if it committed, nothing is inserted and its answer is read below.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_records (caller, idempotency_key, request_hash, status_code, response_body) \
             VALUES ($1, $2, $3, 0, ''::bytea) ON CONFLICT (caller, idempotency_key) DO NOTHING",
        )
        .bind(&caller.key_name)
        .bind(&meta.idempotency_key)
        .bind(&meta.request_hash)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT request_hash, status_code, response_body FROM idempotency_records WHERE caller = $1 AND idempotency_key = $2")
            .bind(&caller.key_name)
            .bind(&meta.idempotency_key)
            .fetch_one(&mut *conn)
            .await?;
        let hash: String = row.try_get("request_hash")?;
        if hash != meta.request_hash {
            return Err(ApiError::IdempotencyKeyReused);
        }
        metrics::counter!("dispatch_idempotent_replays_total").increment(1);
        let status: i32 = row.try_get("status_code")?;
        Ok(Some(Reply {
            status: status as u16,
            body: row.try_get("response_body")?,
            replayed: true,
        }))
    }

    /// Runs `decide` under an idempotency claim in one transaction and stores its answer.
    async fn idempotent<F>(&self, caller: &Caller, meta: &RequestMeta, decide: F) -> Result<Reply>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(u16, Value)>>,
    {
        let mut tx = self.pool.begin().await?;
        if let Some(reply) = self.claim(&mut tx, caller, meta).await? {
            return Ok(reply);
        }
        let (status, body) = match decide(&mut tx).await {
            Ok(answer) => answer,
            Err(e) if e.is_final_answer() => (e.status(), e.problem()),
            Err(e) => return Err(e),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.into()))?;
        sqlx::query("UPDATE idempotency_records SET status_code = $3, response_body = $4 WHERE caller = $1 AND idempotency_key = $2")
            .bind(&caller.key_name)
            .bind(&meta.idempotency_key)
            .bind(i32::from(status))
            .bind(&bytes)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.map_err(|e| {
            if store::is_unique_violation(&e) {
                ApiError::VersionConflict {
                    expected: meta.if_match,
                    current: None,
                }
            } else {
                e.into()
            }
        })?;
        Ok(Reply {
            status,
            body: bytes,
            replayed: false,
        })
    }

    fn event_meta(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        at: DateTime<Utc>,
        sop: Option<crate::domain::sop::SopRef>,
        command: &str,
    ) -> EventMeta {
        EventMeta {
            occurred_at: at,
            actor: caller.actor(),
            tool_invocation_id: meta.tool_invocation_id,
            idempotency_key: Some(meta.idempotency_key.clone()),
            correlation_id: Some(meta.correlation_id),
            causation_id: meta.causation_id,
            sop,
            command: Some(command.to_string()),
        }
    }

    /// Executes a job command. `job_id` is `None` for `open_job` (the id is
    /// derived from the caller and the idempotency key, so retries agree).
    pub async fn execute_job(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: Option<&str>,
        command: JobCommand,
    ) -> Result<Reply> {
        let started = std::time::Instant::now();
        let name = command.wire_name();
        let job_id = job_id
            .map(str::to_string)
            .unwrap_or_else(|| derived_id(caller, meta, "job"));
        let app = self.clone();
        let caller2 = caller.clone();
        let meta2 = meta.clone();
        let result = self
            .idempotent(caller, meta, move |conn| {
                Box::pin(async move {
                    app.decide_job(conn, &caller2, &meta2, &job_id, command)
                        .await
                })
            })
            .await;
        let outcome = match &result {
            Ok(r) if r.status < 400 => "ok",
            Ok(_) => "refused",
            Err(ApiError::VersionConflict { .. }) => "conflict",
            Err(_) => "error",
        };
        metrics::counter!("dispatch_commands_total", "command" => name, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("dispatch_command_seconds", "command" => name)
            .record(started.elapsed().as_secs_f64());
        if let Ok(r) = &result {
            if r.status >= 400 {
                if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                    let code = v
                        .get("code")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string();
                    metrics::counter!("dispatch_refusals_total", "code" => code).increment(1);
                }
            }
        } else if let Err(ApiError::VersionConflict { .. }) = &result {
            metrics::counter!("dispatch_conflicts_total").increment(1);
        }
        result
    }

    async fn resolve_job_command(
        &self,
        conn: &mut PgConnection,
        job_id: &str,
        command: &mut JobCommand,
        at: DateTime<Utc>,
    ) -> Result<()> {
        match command {
            JobCommand::OpenJob(c) => {
                c.job_id = job_id.to_string();
                let rows = sqlx::query(
                    "SELECT job_id, state, technician_id, completed_at FROM job_doors WHERE site_id = $1 AND door_id = $2 ORDER BY updated_at DESC",
                )
                .bind(&c.site.id)
                .bind(&c.door.id)
                .fetch_all(&mut *conn)
                .await?;
                let mut related = RelatedJobs::default();
                for r in rows {
                    let id: String = r.try_get("job_id")?;
                    let state = JobState::parse(&r.try_get::<String, _>("state")?);
                    let completed_at: Option<DateTime<Utc>> = r.try_get("completed_at")?;
                    match state {
                        Some(s)
                            if s.before_work_completed() && related.open_duplicate_of.is_none() =>
                        {
                            related.open_duplicate_of = Some(id);
                        }
                        Some(JobState::Cancelled | JobState::Duplicate) | None => {}
                        Some(_) => {
                            let recent = completed_at
                                .is_some_and(|t| t > at - Duration::days(RECALL_WINDOW_DAYS));
                            if recent && related.recall_of.is_none() {
                                related.recall_of = Some(RecallOf {
                                    job_id: id,
                                    technician_id: r.try_get("technician_id")?,
                                });
                            }
                        }
                    }
                }
                c.related = related;
            }
            JobCommand::ResolveDuplicate(c) => {
                if let Some(target) = &c.duplicate_of {
                    let row = sqlx::query("SELECT state FROM job_doors WHERE job_id = $1")
                        .bind(target)
                        .fetch_optional(&mut *conn)
                        .await?;
                    c.target_open = match row {
                        Some(r) => JobState::parse(&r.try_get::<String, _>("state")?)
                            .map(JobState::is_open),
                        None => None,
                    };
                } else {
                    // Default target: the job's own possible duplicate, resolved after load.
                    c.target_open = None;
                }
            }
            JobCommand::OfferJob(c) => {
                let (events, _) = store::load_stream::<crate::domain::technician::TechnicianEvent>(
                    conn,
                    Technician::TYPE,
                    &c.technician_id,
                )
                .await?;
                let tech = events.into_iter().fold(Technician::default(), |mut t, e| {
                    t.apply(e);
                    t
                });
                c.technician = tech.data.map(|d| d.profile());
            }
            JobCommand::AttachEvidence(c) if !evidence::exists(conn, &c.sha256).await? => {
                return Err(ApiError::UnknownEvidence(
                    c.sha256.chars().take(64).collect(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    async fn decide_job(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: &str,
        mut command: JobCommand,
    ) -> Result<(u16, Value)> {
        let at = self.clock.now();
        self.resolve_job_command(conn, job_id, &mut command, at)
            .await?;
        let (events, head) = store::load_stream::<JobEvent>(conn, Job::TYPE, job_id).await?;
        let mut job = Job::from_events(events);
        if let Some(expected) = meta.if_match {
            if expected != job.version as i64 {
                return Err(ApiError::VersionConflict {
                    expected: Some(expected),
                    current: Some(job.version as i64),
                });
            }
        }
        // resolve_duplicate with no explicit target: check the job's own candidate.
        if let JobCommand::ResolveDuplicate(c) = &mut command {
            if c.duplicate_of.is_none() {
                if let Some(target) = job
                    .data()
                    .and_then(|d| d.flags.possible_duplicate_of.clone())
                {
                    let row = sqlx::query("SELECT state FROM job_doors WHERE job_id = $1")
                        .bind(&target)
                        .fetch_optional(&mut *conn)
                        .await?;
                    c.target_open = match row {
                        Some(r) => JobState::parse(&r.try_get::<String, _>("state")?)
                            .map(JobState::is_open),
                        None => None,
                    };
                }
            }
        }
        let is_open = matches!(command, JobCommand::OpenJob(_));
        let name = command.wire_name();
        let stage = command.sop_stage();
        let incident_type = match &command {
            JobCommand::OpenJob(c) => Some(c.incident_type.clone()),
            _ => job.data().map(|d| d.incident_type.clone()),
        };
        let sop = match (stage, incident_type) {
            (Some(stage), Some(t)) => self.sops.get(&t).map(|s| s.reference(stage).clone()),
            _ => None,
        };
        let issued = Issued::new(caller.actor(), at, command);
        let events = run(&mut job, issued, &self.job_services()).await?;
        let mut new_events = Vec::with_capacity(events.len());
        for e in &events {
            let (event_type, payload) = split_event(e)?;
            new_events.push(NewEvent {
                event_type,
                event_version: e.event_version(),
                payload,
                meta: self.event_meta(caller, meta, at, sop.clone(), name),
            });
        }
        let appended = store::append(conn, Job::TYPE, job_id, &head, new_events).await?;
        let data = job.data().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("job without data after a command"))
        })?;
        let completed_at = if events.iter().any(|e| {
            matches!(
                e,
                JobEvent::CheckedOut {
                    outcome: CheckOutcome::Completed,
                    ..
                }
            )
        }) {
            Some(at)
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO job_doors (job_id, site_id, door_id, state, technician_id, completed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (job_id) DO UPDATE SET state = EXCLUDED.state, technician_id = EXCLUDED.technician_id, \
             completed_at = COALESCE(EXCLUDED.completed_at, job_doors.completed_at), updated_at = EXCLUDED.updated_at",
        )
        .bind(job_id)
        .bind(&data.site.id)
        .bind(&data.door.id)
        .bind(data.state.as_str())
        .bind(data.current_visit().map(|v| v.technician_id.clone()))
        .bind(completed_at)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        let approval = events.iter().find_map(|e| match e {
            JobEvent::ApprovalRequested { approval_id, .. } => Some(approval_id.clone()),
            _ => None,
        });
        let only_approval = approval.is_some() && events.len() == 1;
        let mut body = json!({
            "job_id": job_id,
            "version": job.version,
            "state": data.state.as_str(),
            "events": events_json(&appended),
        });
        let status = if only_approval {
            body["status"] = "approval_required".into();
            body["approval_id"] = approval.into();
            202
        } else if is_open {
            201
        } else {
            200
        };
        Ok((status, body))
    }

    /// Executes a technician command (`technician_id` is `None` to register).
    pub async fn execute_technician(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        technician_id: Option<&str>,
        mut command: TechnicianCommand,
    ) -> Result<Reply> {
        let id = match (&mut command, technician_id) {
            (TechnicianCommand::RegisterTechnician(c), _) => {
                let id = c
                    .technician_id
                    .clone()
                    .unwrap_or_else(|| derived_id(caller, meta, "technician"));
                c.technician_id = Some(id.clone());
                id
            }
            (_, Some(id)) => id.to_string(),
            (_, None) => return Err(ApiError::NotFound("technician not found".into())),
        };
        let app = self.clone();
        let caller2 = caller.clone();
        let meta2 = meta.clone();
        self.idempotent(caller, meta, move |conn| {
            Box::pin(async move {
                let at = app.clock.now();
                let created = matches!(command, TechnicianCommand::RegisterTechnician(_));
                let name = command.wire_name();
                let (events, head) = store::load_stream(conn, Technician::TYPE, &id).await?;
                let mut tech = events.into_iter().fold(Technician::default(), |mut t, e| {
                    t.apply(e);
                    t
                });
                if let Some(expected) = meta2.if_match {
                    if expected != tech.version as i64 {
                        return Err(ApiError::VersionConflict {
                            expected: Some(expected),
                            current: Some(tech.version as i64),
                        });
                    }
                }
                let events = run(&mut tech, Issued::new(caller2.actor(), at, command), &()).await?;
                let mut new_events = Vec::new();
                for e in &events {
                    let (event_type, payload) = split_event(e)?;
                    new_events.push(NewEvent {
                        event_type,
                        event_version: e.event_version(),
                        payload,
                        meta: app.event_meta(&caller2, &meta2, at, None, name),
                    });
                }
                let appended =
                    store::append(conn, Technician::TYPE, &id, &head, new_events).await?;
                let body = json!({
                    "technician_id": id,
                    "version": tech.version,
                    "technician": tech.data,
                    "events": events_json(&appended),
                });
                Ok((if created { 201 } else { 200 }, body))
            })
        })
        .await
    }
}

fn events_json(appended: &[Appended]) -> Value {
    Value::Array(
        appended
            .iter()
            .map(|a| json!({"event_id": a.event_id, "event_type": a.event_type, "sequence": a.sequence, "global_position": a.global_position}))
            .collect(),
    )
}

impl App {
    /// Stores an evidence upload under the idempotency rules of every mutation.
    pub async fn upload_evidence(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        content: bytes::Bytes,
        content_type: String,
    ) -> Result<Reply> {
        let app = self.clone();
        let by = caller.key_name.clone();
        self.idempotent(caller, meta, move |_conn| {
            Box::pin(async move {
                let info = app
                    .evidence
                    .put(&app.pool, content, &content_type, &by)
                    .await?;
                Ok((
                    201,
                    serde_json::to_value(info).map_err(|e| ApiError::Internal(e.into()))?,
                ))
            })
        })
        .await
    }
}
