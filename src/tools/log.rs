//! The invocation log: one append-only record per call that passed the
//! gate's authentication (`super::gate`) — REST, the tool envelope, MCP, the
//! pages' forms — whatever its outcome, valid against
//! `schemas/tool_invocation.schema.json`.
//!
//! Records are written by one background task ([`InvocationLog`]) that
//! inserts whatever has queued up in one multi-row statement; an answer
//! does not wait for its record (docs/decisions.md, "The gate's log is
//! written behind the answer"). [`InvocationLog::flush`] waits until every
//! record queued before it is committed: the log's reader and the
//! shutdown sequence call it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::Actor;
/// What can go wrong writing or reading the invocation log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database refused or could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored record that does not decode (a bug or a damaged table).
    #[error("{0}")]
    Corrupt(String),
}

/// `Result` with [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// How the call arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// A REST route under `/v1` (commands and queries).
    Rest,
    /// `POST /v1/tools/{tool}` (recorded as `http` before migration 0011,
    /// and read as this).
    #[serde(alias = "http")]
    Tool,
    /// `tools/call` at `/mcp`.
    Mcp,
    /// A form of the pages under `/ui` that runs a command.
    Ui,
}

impl Transport {
    /// Every transport, in the order the docs list them.
    pub const ALL: [Transport; 4] = [
        Transport::Rest,
        Transport::Tool,
        Transport::Mcp,
        Transport::Ui,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Rest => "rest",
            Transport::Tool => "tool",
            Transport::Mcp => "mcp",
            Transport::Ui => "ui",
        }
    }

    /// The transport of a wire name (`http`, the old name of `tool`, included).
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "rest" => Some(Transport::Rest),
            "tool" | "http" => Some(Transport::Tool),
            "mcp" => Some(Transport::Mcp),
            "ui" => Some(Transport::Ui),
            _ => None,
        }
    }
}

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (a query answered, a command's events appended).
    Ok,
    /// A rule said no: the allowlist, the caller's rights, a domain guard,
    /// the rate limit, a reused idempotency key.
    Refused,
    /// Only an `ApprovalRequested` event happened; a person decides.
    ApprovalRequired,
    /// The call could not be carried out: invalid arguments, an unknown job,
    /// a lost race, the database unavailable.
    Error,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::ApprovalRequired => "approval_required",
            Outcome::Error => "error",
        }
    }
}

/// One call as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Position in the log (store-wide order of records).
    pub position: i64,
    /// The call's id (the envelope's, or made by the service).
    pub invocation_id: Uuid,
    /// The operation: the tool or command wire name where there is one
    /// (`add_note`, `get_job`, `register_technician`), otherwise the
    /// allowlist's endpoint key (`GET /v1/jobs/{job_id}/events`); over the
    /// tool transports the tool as asked, clipped to 100 characters.
    pub tool: String,
    /// Who called (from the key).
    pub actor: Actor,
    /// REST, tool, MCP or UI.
    pub transport: Transport,
    /// The call's idempotency key (envelope, `Idempotency-Key` header or
    /// form), when it had a usable one.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical JSON of what was asked: a tool's arguments;
    /// for REST `{"path": …, "query": …, "body": …}`.
    pub argument_digest: String,
    /// What became of it.
    pub outcome: Outcome,
    /// The problem code, when not ok.
    pub error_code: Option<String>,
    /// The HTTP status of the answer (the same over MCP).
    pub http_status: u16,
    /// The job it concerned, when known.
    pub job_id: Option<String>,
    /// The approval it requested or decided, when any.
    pub approval_id: Option<String>,
    /// The events it appended (`event_id`, `event_type`, `sequence`, `global_position`).
    pub events: Vec<Value>,
    /// Whether the answer was a stored one replayed for a retried key.
    pub replayed: bool,
    /// When (the service's clock).
    pub at: DateTime<Utc>,
}

/// The log's columns, in the order [`copy_rows`] writes them.
const COLUMNS: &str = "invocation_id, tool, actor, actor_id, transport, idempotency_key, \
     argument_digest, outcome, error_code, http_status, job_id, approval_id, events, replayed, at";

/// Appends records in one `COPY`, in the order given (their positions
/// follow that order). `COPY` rather than a multi-row `INSERT`: PostgreSQL
/// spends about half the CPU per row on it (no arrays to bind and unnest,
/// no executor per row; docs/benchmarks.md, item 19).
pub async fn append_batch(pool: &PgPool, records: &[InvocationRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let rows = copy_rows(records)?;
    let mut copy = pool
        .copy_in_raw(&format!("COPY tool_invocations ({COLUMNS}) FROM STDIN"))
        .await?;
    if let Err(e) = copy.send(rows).await {
        copy.abort("the invocation log could not send its rows")
            .await
            .ok();
        return Err(e.into());
    }
    copy.finish().await?;
    Ok(())
}

/// The records as `COPY … FROM STDIN` text: one line per record, columns
/// separated by tabs, `\N` for NULL, backslash, tab, newline and carriage
/// return escaped.
fn copy_rows(records: &[InvocationRecord]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(records.len() * 400);
    for r in records {
        let actor =
            serde_json::to_string(&r.actor).map_err(|e| LogError::Corrupt(e.to_string()))?;
        let events =
            serde_json::to_string(&r.events).map_err(|e| LogError::Corrupt(e.to_string()))?;
        let status = r.http_status.to_string();
        let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let uuid = r.invocation_id.to_string();
        let fields: [Option<&str>; 15] = [
            Some(&uuid),
            Some(&r.tool),
            Some(&actor),
            Some(&r.actor.id),
            Some(r.transport.as_str()),
            r.idempotency_key.as_deref(),
            Some(&r.argument_digest),
            Some(r.outcome.as_str()),
            r.error_code.as_deref(),
            Some(&status),
            r.job_id.as_deref(),
            r.approval_id.as_deref(),
            Some(&events),
            Some(if r.replayed { "t" } else { "f" }),
            Some(&at),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match field {
                None => out.extend_from_slice(b"\\N"),
                Some(text) => copy_escape(text, &mut out),
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// One field in `COPY` text format.
fn copy_escape(text: &str, out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Records that may wait in the queue; past this a record is dropped and
/// counted (`dispatch_invocation_log_dropped_total`) rather than the
/// answer held back. Per-key rate limits keep honest load far below it.
pub const QUEUE_CAPACITY: usize = 100_000;

/// Records one statement inserts at most.
pub const MAX_BATCH: usize = 1_000;

/// Attempts at writing one batch before its records are given up (and
/// counted in `dispatch_tool_log_failures_total`).
const WRITE_ATTEMPTS: u32 = 5;

/// How long the writer gathers records after the first of a batch before
/// it writes them (a flush request writes at once). Answers do not wait for
/// the write, so this costs them nothing; it turns a commit per call into a
/// commit per window under load. 100 ms, not 10: each statement's own cost
/// (fifteen arrays bound and unnested) was most of the log's cost per call
/// (quick bench: PostgreSQL CPU per command 0.250 → 0.233 ms).
pub const GATHER: Duration = Duration::from_millis(100);

enum Msg {
    Record(Box<InvocationRecord>),
    Flush(oneshot::Sender<()>),
}

/// The batching writer of the log: a handle to its one background task.
/// Cheap to clone; the task stops when the last handle is dropped, after
/// writing what was queued.
#[derive(Debug, Clone)]
pub struct InvocationLog {
    queue: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Record(r) => f.debug_tuple("Record").field(&r.invocation_id).finish(),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl InvocationLog {
    /// Starts the writer task with a connection of its own to `pool`'s
    /// database (it never queues behind requests for a connection). That
    /// connection commits with `synchronous_commit = off`: the records are
    /// written behind the answers anyway, and a commit that does not wait
    /// for the WAL flush keeps the log off the disk's critical path (a
    /// PostgreSQL crash may lose the last fraction of a second of records,
    /// never the events; docs/decisions.md).
    pub fn start(pool: &PgPool) -> InvocationLog {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let options = (*pool.connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        let connection = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        tokio::spawn(run(rx, connection));
        InvocationLog { queue }
    }

    /// Queues a record; never waits. A full queue (the database has been
    /// unreachable for a long while) drops the record, counted and logged.
    pub fn record(&self, record: InvocationRecord) {
        if let Err(e) = self.queue.try_send(Msg::Record(Box::new(record))) {
            metrics::counter!("dispatch_invocation_log_dropped_total").increment(1);
            let id = match &e {
                mpsc::error::TrySendError::Full(Msg::Record(r))
                | mpsc::error::TrySendError::Closed(Msg::Record(r)) => Some(r.invocation_id),
                _ => None,
            };
            tracing::error!(invocation_id = ?id, "invocation log queue full or closed: a record is lost");
        }
    }

    /// Waits until every record queued before this call has been written
    /// (or given up after its attempts).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Msg>, pool: PgPool) {
    let mut batch: Vec<InvocationRecord> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        match rx.recv().await {
            Some(Msg::Record(r)) => batch.push(*r),
            Some(Msg::Flush(w)) => waiting.push(w),
            None => return,
        }
        // Gather for a moment (a reader waiting, or a full batch, writes at once).
        let deadline = tokio::time::Instant::now() + GATHER;
        while waiting.is_empty() && batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Msg::Record(r))) => batch.push(*r),
                Ok(Some(Msg::Flush(w))) => waiting.push(w),
                Ok(None) | Err(_) => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Record(r)) => batch.push(*r),
                Ok(Msg::Flush(w)) => waiting.push(w),
                Err(_) => break,
            }
        }
        write(&pool, &batch).await;
        batch.clear();
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Writes one batch, retrying with growing pauses (the database may be
/// restarting); gives it up, counted, after [`WRITE_ATTEMPTS`].
async fn write(pool: &PgPool, batch: &[InvocationRecord]) {
    if batch.is_empty() {
        return;
    }
    metrics::histogram!("dispatch_invocation_log_batch_size").record(batch.len() as f64);
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match append_batch(pool, batch).await {
            Ok(()) => {
                metrics::histogram!("dispatch_invocation_log_write_seconds")
                    .record(started.elapsed().as_secs_f64());
                return;
            }
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = ?e, attempt, records = batch.len(), "could not write invocation records; retrying");
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
            Err(e) => {
                metrics::counter!("dispatch_tool_log_failures_total").increment(batch.len() as u64);
                tracing::error!(error = ?e, records = batch.len(), "could not write invocation records: they are lost");
            }
        }
    }
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only calls about this job.
    pub job_id: Option<String>,
    /// Only calls by this key (the actor id).
    pub actor: Option<String>,
    /// Only calls of this tool (operation).
    pub tool: Option<String>,
    /// Only calls that came this way (`tool` also finds the old `http`).
    pub transport: Option<Transport>,
    /// Only records after this position (paging).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Lists records in log order.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<Vec<InvocationRecord>> {
    let rows = sqlx::query(
        "SELECT position, invocation_id, tool, actor, transport, idempotency_key, argument_digest, outcome, \
         error_code, http_status, job_id, approval_id, events, replayed, at FROM tool_invocations \
         WHERE ($1::text IS NULL OR job_id = $1) AND ($2::text IS NULL OR actor_id = $2) \
         AND ($3::text IS NULL OR tool = $3) AND position > $4 \
         AND ($6::text[] IS NULL OR transport = ANY($6)) ORDER BY position LIMIT $5",
    )
    .bind(&f.job_id)
    .bind(&f.actor)
    .bind(&f.tool)
    .bind(f.after.unwrap_or(0))
    .bind(f.limit)
    .bind(f.transport.map(|t| match t {
        Transport::Tool => vec!["tool", "http"],
        other => vec![other.as_str()],
    }))
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode).collect()
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<InvocationRecord> {
    let internal = |e: serde_json::Error| LogError::Corrupt(e.to_string());
    let actor: Value = row.try_get("actor")?;
    let transport: String = row.try_get("transport")?;
    let outcome: String = row.try_get("outcome")?;
    let events: Value = row.try_get("events")?;
    let status: i32 = row.try_get("http_status")?;
    Ok(InvocationRecord {
        position: row.try_get("position")?,
        invocation_id: row.try_get("invocation_id")?,
        tool: row.try_get("tool")?,
        actor: serde_json::from_value(actor).map_err(internal)?,
        transport: Transport::parse(&transport)
            .ok_or_else(|| LogError::Corrupt(format!("unknown transport `{transport}`")))?,
        idempotency_key: row.try_get("idempotency_key")?,
        argument_digest: row.try_get("argument_digest")?,
        outcome: serde_json::from_value(Value::String(outcome)).map_err(internal)?,
        error_code: row.try_get("error_code")?,
        http_status: u16::try_from(status).unwrap_or(500),
        job_id: row.try_get("job_id")?,
        approval_id: row.try_get("approval_id")?,
        events: serde_json::from_value(events).map_err(internal)?,
        replayed: row.try_get("replayed")?,
        at: row.try_get("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::Transport;

    #[test]
    fn the_old_http_transport_reads_as_tool() {
        assert_eq!(Transport::parse("http"), Some(Transport::Tool));
        let t: Transport = serde_json::from_str("\"http\"").unwrap();
        assert_eq!(t, Transport::Tool);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"tool\"");
        for t in Transport::ALL {
            assert_eq!(Transport::parse(t.as_str()), Some(t));
        }
    }
}
