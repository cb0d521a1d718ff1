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
//! - `job.rs`: a job command's whole way, in the order it runs — the one
//!   door ([`App::job_command`]: the known-key shortcut, the key checked
//!   inside the write), the read–decide–write runner every command shares
//!   ([`App::command`]) and the write ([`App::write`]), the decision on the
//!   store or on the job cache ([`crate::app::cache`]), the answer;
//! - `technician.rs`: technician commands (through the same runner);
//! - `idempotency.rs`: stored answers, and the claim-first transaction of
//!   evidence uploads;
//! - `facts.rs`: what a job command needs from outside its stream (jobs at
//!   the same door, a duplicate's target, a technician, an upload);
//! - this file: what a decision leaves to write ([`Decided`]) and the
//!   helpers both kinds of command use.

mod facts;
mod idempotency;
mod job;
mod runner;
mod technician;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{App, Caller, RequestMeta};
use crate::domain::job::Job;
use crate::error::{ApiError, Result};
use crate::store::{self, Appended, DoorRow, EventMeta};

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

/// The id of a stream a caller creates without naming it (`kind`: `job`
/// or `technician`): derived from the caller and the idempotency key, so
/// retries agree.
pub(super) fn derived_id(caller: &Caller, meta: &RequestMeta, kind: &str) -> String {
    let name = format!(
        "dispatch-api/{kind}/{}/{}",
        caller.key_name, meta.idempotency_key
    );
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// Splits an externally tagged event into (type, payload).
pub(super) fn split_event<E: serde::Serialize>(event: &E) -> Result<(String, Value)> {
    match serde_json::to_value(event).map_err(|e| ApiError::Internal(e.into()))? {
        Value::Object(m) if m.len() == 1 => Ok(m.into_iter().next().expect("one entry")),
        other => Err(ApiError::Internal(anyhow::anyhow!(
            "event did not serialize as a tagged object: {other}"
        ))),
    }
}

/// Runs the aggregate's `handle` through an event sink and collects its events.
pub(super) async fn run<A: Aggregate>(
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
pub(super) fn events_json(appended: &[Appended]) -> Value {
    Value::Array(
        appended
            .iter()
            .map(|a| json!({"event_id": a.event_id, "event_type": a.event_type, "sequence": a.sequence, "global_position": a.global_position}))
            .collect(),
    )
}

impl App {
    /// The envelope metadata of the events a command appends.
    pub(super) fn event_meta(
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
            trace_id: meta.trace_id.clone(),
            causation_id: meta.causation_id,
            sop,
            command: Some(command.to_string()),
        }
    }
}
