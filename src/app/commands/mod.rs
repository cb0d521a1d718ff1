//! Executing commands. A job or technician command is a read and a write
//! around the decision: one statement reads the key's stored answer (if any)
//! and the stream; one all-or-nothing write — committed with the writes of
//! concurrent commands by the store's group-commit writer
//! ([`crate::store::writer`]) — stores the events (hash-chained), the stream
//! head, the door index and the stored answer together. A crash anywhere
//! before that write commits leaves nothing; after it, a retry with the
//! same key gets the stored answer. Two requests that race are settled by
//! the primary keys: the second's write fails and it replays the first's
//! answer (same key) or answers 409 (same version, another key).
//!
//! By concern:
//! - this file: the read–decide–write runner ([`App::command`]) and the write;
//! - `idempotency.rs`: stored answers, and the claim-first transaction of
//!   evidence uploads;
//! - `facts.rs`: what a job command needs from outside its stream (jobs at
//!   the same door, a duplicate's target, a technician, an upload);
//! - `job.rs`: job commands — decided on the store or on the job cache
//!   ([`crate::app::cache`]) — and their answers;
//! - `fast_path.rs`: the one door of a job command from a key this process
//!   already knows ([`App::job_command`]: the key checked inside the write);
//! - `technician.rs`: technician commands.

mod facts;
mod fast_path;
mod idempotency;
mod job;
mod technician;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{App, Caller, RequestMeta};
use crate::domain::job::Job;
use crate::error::{ApiError, Result};
use crate::store::{self, Answer, Appended, DoorRow, EventMeta, Refused, Write};

pub use fast_path::KeyedCaller;
pub use idempotency::Reply;

/// What a decision leaves to write, in one write with its answer.
struct Decided {
    status: u16,
    body: Value,
    /// Events to append (their answer carries position markers).
    append: Option<store::PreparedAppend>,
    /// The job's row in the door index.
    door: Option<DoorRow>,
    /// The job as the events leave it (kept in the job cache once written).
    job: Option<Job>,
}

impl Decided {
    /// Whether the decision appends events.
    fn appends(&self) -> bool {
        self.append.as_ref().is_some_and(|a| !a.events.is_empty())
    }
}

impl From<(u16, Value)> for Decided {
    fn from((status, body): (u16, Value)) -> Self {
        Decided {
            status,
            body,
            append: None,
            door: None,
            job: None,
        }
    }
}

/// Counts a job command's outcome and time.
fn record_command(
    name: &'static str,
    started: std::time::Instant,
    result: std::result::Result<&Reply, &ApiError>,
) {
    let outcome = match result {
        Ok(r) if r.status < 400 => "ok",
        Ok(_) => "refused",
        Err(ApiError::VersionConflict { .. }) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!("dispatch_commands_total", "command" => name, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("dispatch_command_seconds", "command" => name)
        .record(started.elapsed().as_secs_f64());
    if let Ok(r) = result {
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
    } else if let Err(ApiError::VersionConflict { .. }) = result {
        metrics::counter!("dispatch_conflicts_total").increment(1);
    }
}

/// The id of a stream a caller creates without naming it (`kind`: `job`
/// or `technician`): derived from the caller and the idempotency key, so
/// retries agree.
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

/// The events an answer reports (positions are the store's markers until
/// the write puts the real ones in their place).
fn events_json(appended: &[Appended]) -> Value {
    Value::Array(
        appended
            .iter()
            .map(|a| json!({"event_id": a.event_id, "event_type": a.event_type, "sequence": a.sequence, "global_position": a.global_position}))
            .collect(),
    )
}

impl App {
    /// Runs a command on one stream (`stream`: aggregate type and id): reads
    /// the key's stored answer or else the stream (one statement), decides,
    /// and writes everything the decision leaves with its answer (one
    /// write, [`App::write`]).
    async fn command<F>(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        stream: (&str, &str),
        decide: F,
    ) -> Result<Reply>
    where
        F: for<'c> FnOnce(&'c mut PgConnection, Vec<PgRow>) -> BoxFuture<'c, Result<Decided>>,
    {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT r.request_hash, r.status_code, r.response_body, {} \
             FROM (SELECT 1) AS one \
             LEFT JOIN idempotency_records r ON r.caller = $1 AND r.idempotency_key = $2 \
             LEFT JOIN LATERAL (SELECT * FROM events WHERE aggregate_type = $3 AND aggregate_id = $4) e \
               ON r.caller IS NULL \
             ORDER BY e.sequence",
            store::STREAM_COLUMNS
        ))
        .bind(&caller.key_name)
        .bind(&meta.idempotency_key)
        .bind(stream.0)
        .bind(stream.1)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(first) = rows.first() {
            if let Some(hash) = first.try_get::<Option<String>, _>("request_hash")? {
                return idempotency::replay(
                    meta,
                    hash,
                    first.try_get("status_code")?,
                    first.try_get("response_body")?,
                );
            }
        }
        let decided = match decide(&mut conn, rows).await {
            Ok(d) => d,
            Err(e) if e.is_final_answer() => Decided::from((e.status(), e.problem())),
            Err(e) => return Err(e),
        };
        // The writer has connections of its own: this one goes back to the
        // pool while the write waits for its batch.
        drop(conn);
        let status = decided.status;
        match self.write(caller, meta, decided, None).await? {
            Ok(body) => Ok(Reply {
                status,
                body,
                replayed: false,
            }),
            // Another request committed first: the same key (its answer is
            // the answer) or the same stream version (a conflict).
            Err(Refused::Conflict) => {
                let mut conn = self.pool.acquire().await?;
                match self.stored_answer(&mut conn, caller, meta).await? {
                    Some(reply) => Ok(reply),
                    None => Err(ApiError::VersionConflict {
                        expected: meta.if_match,
                        current: None,
                    }),
                }
            }
            Err(Refused::KeyRefused) => Err(ApiError::Unauthorized),
            Err(Refused::Failed(e)) => Err(e.into()),
        }
    }

    /// Writes what a decision leaves — its events, stream head and door row,
    /// with its answer — as one all-or-nothing write, committed with the
    /// writes of concurrent commands (see [`crate::store::writer`]); returns
    /// the stored answer (with the events' positions in place). Once
    /// written, the job's new state is kept and the projectors are woken
    /// ([`App::written`]).
    ///
    /// `key_check`: the SHA-256 of a key that was not looked up for this
    /// request; the write is then refused ([`Refused::KeyRefused`]) unless
    /// the key is still active.
    async fn write(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        decided: Decided,
        key_check: Option<&str>,
    ) -> Result<std::result::Result<Vec<u8>, Refused>> {
        let bytes = serde_json::to_vec(&decided.body).map_err(|e| ApiError::Internal(e.into()))?;
        let events = decided.append.as_ref().map_or(0, |a| a.events.len());
        let answer = Answer::new(
            &caller.key_name,
            &meta.idempotency_key,
            &meta.request_hash,
            decided.status,
            &bytes,
            events,
        )?;
        let head = decided
            .append
            .as_ref()
            .filter(|a| !a.events.is_empty())
            .map(|a| {
                (
                    a.aggregate_type.clone(),
                    a.aggregate_id.clone(),
                    a.head.clone(),
                )
            });
        let outcome = self
            .writer
            .write(Write {
                answer: Some(answer),
                key_check: key_check.map(str::to_string),
                append: decided.append,
                door: decided.door,
            })
            .await;
        if outcome.is_ok() {
            if let Some((stream_type, stream_id, head)) = head {
                self.written((&stream_type, &stream_id), decided.job, head);
            }
        }
        Ok(outcome)
    }

    /// After a write that appended events to `stream` committed (`head`: its
    /// new head): wakes the projectors and keeps the job's new state.
    fn written(&self, stream: (&str, &str), job: Option<Job>, head: store::StreamState) {
        store::wake_projectors(&self.pool);
        if let Some(job) = job {
            // A job in a final state takes few commands more (most refused):
            // the cache keeps the jobs being worked.
            let open = job.data().is_some_and(|d| !d.state.is_final());
            if stream.0 == Job::TYPE && open {
                self.jobs.put(stream.1, job, head);
            }
        }
    }

    /// The envelope metadata of the events a command appends.
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
}
