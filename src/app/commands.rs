//! Executing commands. A job or technician command is a read and a write
//! around the decision: one statement reads the key's stored answer (if any)
//! and the stream; one all-or-nothing write — committed with the writes of
//! concurrent commands, see `app::writer` — stores the events (hash-chained),
//! the stream head, the door index and the stored answer together. A crash
//! anywhere before that write commits leaves nothing; after it, a retry
//! with the same key gets the stored answer. Two requests that race are
//! settled by the primary keys: the second's write fails and it replays the
//! first's answer (same key) or answers 409 (same version, another key).
//! Evidence uploads claim their key first, in one transaction.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::writer::{DoorRow, Refused, Write};
use super::{evidence, App, Caller, RequestMeta};
use crate::domain::job::{
    ApprovalAction, CheckOutcome, DuplicateTarget, Job, JobCommand, JobData, JobEvent, JobState,
    RecallOf, RelatedJobs,
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
        self.append
            .as_ref()
            .is_some_and(|a| !a.sequences.is_empty())
    }

    /// The stream (type and id) and its head after the decision's events,
    /// if it appends any.
    fn new_head(&self) -> Option<(String, String, store::StreamState)> {
        self.append
            .as_ref()
            .filter(|a| !a.sequences.is_empty())
            .map(|a| {
                (
                    a.aggregate_type.clone(),
                    a.aggregate_id.clone(),
                    a.head.clone(),
                )
            })
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

/// Splits an answer at the position markers of `n` appended events:
/// `n + 1` pieces, between which the database puts the real positions.
fn split_at_positions(body: &[u8], n: usize) -> Option<Vec<Vec<u8>>> {
    let mut pieces = Vec::with_capacity(n + 1);
    let mut rest = 0;
    for i in 0..n {
        let needle = format!("\"global_position\":{}", store::position_marker(i));
        let at = body[rest..]
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())?
            + rest;
        let digits = at + "\"global_position\":".len();
        let end = at + needle.len();
        if body.get(end).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        pieces.push(body[rest..digits].to_vec());
        rest = end;
    }
    pieces.push(body[rest..].to_vec());
    Some(pieces)
}

/// What a job's row in `job_doors` records (besides when): its site and
/// door, state and technician.
fn door_facts(d: &JobData) -> (String, String, JobState, Option<String>) {
    (
        d.site.id.clone(),
        d.door.id.clone(),
        d.state,
        d.current_visit().map(|v| v.technician_id.clone()),
    )
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

/// Another job as a duplicate link sees it: open or not, its site and door
/// (`job_doors`); `None` when no such job exists.
async fn duplicate_target(
    conn: &mut PgConnection,
    job_id: &str,
) -> Result<Option<DuplicateTarget>> {
    let row = sqlx::query("SELECT state, site_id, door_id FROM job_doors WHERE job_id = $1")
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let Some(state) = JobState::parse(&r.try_get::<String, _>("state")?) else {
        return Ok(None);
    };
    Ok(Some(DuplicateTarget {
        open: state.is_open(),
        site_id: r.try_get("site_id")?,
        door_id: r.try_get("door_id")?,
    }))
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
        self.stored_answer(conn, caller, meta).await
    }

    /// The stored answer of `(caller, key)`, if there is one; a reuse
    /// refusal if it was stored for another request.
    async fn stored_answer(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
    ) -> Result<Option<Reply>> {
        let row = sqlx::query("SELECT request_hash, status_code, response_body FROM idempotency_records WHERE caller = $1 AND idempotency_key = $2")
            .bind(&caller.key_name)
            .bind(&meta.idempotency_key)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        replay(
            meta,
            row.try_get("request_hash")?,
            row.try_get("status_code")?,
            row.try_get("response_body")?,
        )
        .map(Some)
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
                return replay(
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
            Err(Refused::Failed(e)) => Err(e),
        }
    }

    /// Writes what a decision leaves — its events, stream head and door row,
    /// with its answer — as one all-or-nothing write, committed with the
    /// writes of concurrent commands (see `app::writer`); returns the stored
    /// answer (with the events' positions in place). Once written, the job's
    /// new state is kept and the projectors are woken ([`App::written`]).
    ///
    /// `key_check`: the SHA-256 of a key that was not looked up for this
    /// request; the write is then refused ([`Refused::KeyRefused`]) unless
    /// the key is still active.
    async fn write(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        mut decided: Decided,
        key_check: Option<&str>,
    ) -> Result<std::result::Result<Vec<u8>, Refused>> {
        let bytes = serde_json::to_vec(&decided.body).map_err(|e| ApiError::Internal(e.into()))?;
        let events = decided.append.as_ref().map_or(0, |a| a.sequences.len());
        let pieces = split_at_positions(&bytes, events).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "the answer's event positions could not be placed"
            ))
        })?;
        let head = decided.new_head();
        let outcome = self
            .writer
            .write(Write {
                caller: caller.key_name.clone(),
                idempotency_key: meta.idempotency_key.clone(),
                request_hash: meta.request_hash.clone(),
                status: decided.status,
                pieces,
                key_check: key_check.map(str::to_string),
                append: decided.append.take(),
                door: decided.door.take(),
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

    /// Runs a job command on the job's cached state: one write and no read. `None` when the cached path does not answer —
    /// the decision did not append events, or the write was refused because
    /// the state was stale or the key was used before — and the ordinary
    /// path must decide from the store (see `app::cache`).
    ///
    /// `key_check`: see [`App::write`]; a refused key is `None` too.
    async fn cached_job_command(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
        (job, head): (Job, store::StreamState),
        key_check: Option<&str>,
    ) -> Result<Option<Reply>> {
        let mut conn = self.pool.acquire().await?;
        let decided = match self
            .decide_job(&mut conn, caller, meta, job_id, command, job, head)
            .await
        {
            Ok(d) if d.status < 400 && d.appends() => d,
            _ => return Ok(None),
        };
        drop(conn);
        let status = decided.status;
        match self.write(caller, meta, decided, key_check).await? {
            Ok(body) => Ok(Some(Reply {
                status,
                body,
                replayed: false,
            })),
            Err(Refused::Conflict) => {
                metrics::counter!("dispatch_job_cache_total", "outcome" => "stale").increment(1);
                Ok(None)
            }
            Err(Refused::KeyRefused) => {
                metrics::counter!("dispatch_job_cache_total", "outcome" => "key_refused")
                    .increment(1);
                Ok(None)
            }
            Err(Refused::Failed(e)) => Err(e),
        }
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
        if !super::storable_id(&job_id) {
            return Err(ApiError::Job(crate::domain::job::JobError::JobNotFound));
        }
        let cached = match self.jobs.take(&job_id) {
            Some(state) => {
                self.cached_job_command(caller, meta, &job_id, command.clone(), state, None)
                    .await
            }
            None => Ok(None),
        };
        let result = match cached {
            Ok(Some(reply)) => Ok(reply),
            Err(e) => Err(e),
            Ok(None) => {
                let app = self.clone();
                let caller2 = caller.clone();
                let meta2 = meta.clone();
                let stream_id = job_id.clone();
                self.command(caller, meta, (Job::TYPE, &stream_id), move |conn, rows| {
                    Box::pin(async move {
                        let (events, head) = store::decode_stream::<JobEvent>(&rows)?;
                        let job = Job::from_events(events);
                        app.decide_job(conn, &caller2, &meta2, &job_id, command, job, head)
                            .await
                    })
                })
                .await
            }
        };
        record_command(name, started, result.as_ref());
        result
    }

    /// A job command on a job whose state this process keeps, from a caller
    /// whose key was not looked up for this request (`key_hash`: its
    /// SHA-256; `caller`: what it resolved to before). Answers only if the
    /// command appends events and its write, which checks in the same
    /// statement that the key is still active, commits. `None` otherwise —
    /// the job is not kept, the command is refused, the state was stale,
    /// the idempotency key was used before, or the API key is no longer
    /// active — and the caller must look the key up and run
    /// [`App::execute_job`], which answers.
    pub async fn try_job_with_key_in_write(
        &self,
        caller: &Caller,
        key_hash: &str,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
    ) -> Result<Option<Reply>> {
        let started = std::time::Instant::now();
        if !super::storable_id(job_id) {
            return Ok(None);
        }
        let Some(state) = self.jobs.take(job_id) else {
            return Ok(None);
        };
        let name = command.wire_name();
        let reply = self
            .cached_job_command(caller, meta, job_id, command, state, Some(key_hash))
            .await?;
        if let Some(r) = &reply {
            record_command(name, started, Ok(r));
        }
        Ok(reply)
    }

    async fn resolve_job_command(
        &self,
        conn: &mut PgConnection,
        job_id: &str,
        command: &mut JobCommand,
        at: DateTime<Utc>,
        uploader: &str,
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
                // With no target named, the job's own possible duplicate is
                // resolved after the job is loaded (`decide_job`).
                c.target = match &c.duplicate_of {
                    Some(target) => duplicate_target(conn, target).await?,
                    None => None,
                };
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
            JobCommand::AttachEvidence(c) => {
                c.upload = evidence::upload_for(conn, &c.sha256, uploader).await?;
                if c.upload.is_none() {
                    return Err(ApiError::UnknownEvidence(
                        c.sha256.chars().take(64).collect(),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Decides a job command on the job as it stands (`job` at `head`).
    #[allow(clippy::too_many_arguments)]
    async fn decide_job(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: &str,
        mut command: JobCommand,
        mut job: Job,
        head: store::StreamState,
    ) -> Result<Decided> {
        let at = self.clock.now();
        self.resolve_job_command(conn, job_id, &mut command, at, &caller.key_name)
            .await?;
        if let Some(expected) = meta.if_match {
            if expected != job.version as i64 {
                return Err(ApiError::VersionConflict {
                    expected: Some(expected),
                    current: Some(job.version as i64),
                });
            }
        }
        // Duplicate links that name no target (the job's own candidate), and
        // approvals that would carry a link out, see the target as it is now.
        let link_target = match &command {
            JobCommand::ResolveDuplicate(c) if c.duplicate_of.is_none() => job
                .data()
                .and_then(|d| d.flags.possible_duplicate_of.clone()),
            JobCommand::DecideApproval(c) => job
                .data()
                .and_then(|d| d.approval(&c.approval_id))
                .and_then(|a| match &a.action {
                    ApprovalAction::LinkDuplicate { duplicate_of } => Some(duplicate_of.clone()),
                    _ => None,
                }),
            _ => None,
        };
        if let Some(target) = link_target {
            let found = duplicate_target(conn, &target).await?;
            match &mut command {
                JobCommand::ResolveDuplicate(c) => c.target = found,
                JobCommand::DecideApproval(c) => c.link_target = found,
                _ => {}
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
        let door_before = job.data().map(door_facts);
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
        let (append, appended) =
            store::prepare_append(&self.chain, Job::TYPE, job_id, &head, new_events)?;
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
        // The door index changes only when what it holds does (most commands
        // — checklist items, evidence, notes — leave it as it was).
        let door = (completed_at.is_some() || door_before.as_ref() != Some(&door_facts(data)))
            .then(|| DoorRow {
                job_id: job_id.to_string(),
                site_id: data.site.id.clone(),
                door_id: data.door.id.clone(),
                state: data.state.as_str(),
                technician_id: data.current_visit().map(|v| v.technician_id.clone()),
                completed_at,
                updated_at: at,
            });
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
        Ok(Decided {
            status,
            body,
            append: Some(append),
            door,
            job: Some(job),
        })
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
        if !super::storable_id(&id) {
            return Err(ApiError::Technician(
                crate::domain::technician::TechnicianError::NotFound,
            ));
        }
        let app = self.clone();
        let caller2 = caller.clone();
        let meta2 = meta.clone();
        let stream_id = id.clone();
        self.command(
            caller,
            meta,
            (Technician::TYPE, &stream_id),
            move |_conn, rows| {
                Box::pin(async move {
                    let at = app.clock.now();
                    let created = matches!(command, TechnicianCommand::RegisterTechnician(_));
                    let name = command.wire_name();
                    let (events, head) = store::decode_stream(&rows)?;
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
                    let events =
                        run(&mut tech, Issued::new(caller2.actor(), at, command), &()).await?;
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
                    let (append, appended) = store::prepare_append(
                        &app.chain,
                        Technician::TYPE,
                        &id,
                        &head,
                        new_events,
                    )?;
                    let body = json!({
                        "technician_id": id,
                        "version": tech.version,
                        "technician": tech.data,
                        "events": events_json(&appended),
                    });
                    Ok(Decided {
                        status: if created { 201 } else { 200 },
                        body,
                        append: Some(append),
                        door: None,
                        job: None,
                    })
                })
            },
        )
        .await
    }
}

/// A stored answer for `meta`'s key: replayed, or refused if it answered
/// another request.
fn replay(meta: &RequestMeta, request_hash: String, status: i32, body: Vec<u8>) -> Result<Reply> {
    if request_hash != meta.request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    metrics::counter!("dispatch_idempotent_replays_total").increment(1);
    Ok(Reply {
        status: status as u16,
        body,
        replayed: true,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_at_each_position_marker() {
        let appended: Vec<Appended> = (0..2)
            .map(|i| Appended {
                event_id: Uuid::nil(),
                event_type: "T".into(),
                sequence: 5 + i as i64,
                global_position: store::position_marker(i),
            })
            .collect();
        let body = json!({"job_id": "-9000000000000000000", "events": events_json(&appended), "version": 6});
        let bytes = serde_json::to_vec(&body).unwrap();
        let pieces = split_at_positions(&bytes, 2).unwrap();
        assert_eq!(pieces.len(), 3);
        let mut rebuilt = pieces[0].clone();
        for (i, p) in pieces[1..].iter().enumerate() {
            rebuilt.extend(format!("{}", 41 + i).as_bytes());
            rebuilt.extend(p);
        }
        let mut expected = appended.clone();
        expected[0].global_position = 41;
        expected[1].global_position = 42;
        let want = json!({"job_id": "-9000000000000000000", "events": events_json(&expected), "version": 6});
        assert_eq!(rebuilt, serde_json::to_vec(&want).unwrap());
        assert!(split_at_positions(&bytes, 3).is_none());
    }
}
