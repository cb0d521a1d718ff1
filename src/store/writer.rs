//! The store's writer: the one way events are appended, read top to
//! bottom in the order a command's write takes.
//!
//! 1. **Prepare** ([`prepare_append`]): the events' ids, metadata, the
//!    stream's SHA-256 hash chain and each event's MAC under the active chain
//!    key; the answer reports positions as [`position_marker`]s until the
//!    database assigns them.
//! 2. **The write** ([`Write`]): what one command leaves, all or nothing —
//!    its events, the stream head, the door-index row and the stored answer
//!    (and the key to check, for a caller taken without a lookup).
//! 3. **Group commit** ([`Writer`]): the writes of concurrent commands,
//!    committed together.
//! 4. **The batch call** ([`write_batch`]): one call of
//!    `dispatch_write_batch` (migration 0015), which runs each write in its
//!    own subtransaction. [`append`] sends one write through the same call
//!    inside its caller's transaction (the timers, the tests).
//!
//! Group commit. Committed one by one, every command paid a round trip, a
//! statement and a commit of its own, and on a loaded machine those fixed
//! costs were most of PostgreSQL's work per command (a one-row insert per
//! transaction runs at a fifth of the rows per second of eight rows per
//! transaction). Commands now hand their write to a writer: a few tasks, each
//! with a connection of its own, that take every write waiting when they are
//! free and send them in one call of `dispatch_write_batch` — one round trip
//! and one commit for all of them.
//!
//! Each write still stands alone: the function runs it in a subtransaction,
//! so a write refused by the store (a stale stream version, a used
//! idempotency key, a revoked API key) leaves nothing and the others commit.
//! A command hears back only after the commit, so an answer is never given
//! for a write that could still be lost. A lone write goes at once: nothing
//! waits for a batch to fill.
//!
//! Two writers by default, taking turns: while one batch is in flight the
//! other writer gathers the next, and sends it the moment the first comes
//! back (or at once if [`FOLLOW_MIN`] writes are already waiting). On this
//! two-core machine that took 16-client throughput from 0.85–0.89× to
//! 0.99–1.03× the stock library in the same runs, where two writers that
//! each took whatever was waiting had lost (docs/decisions.md).
//!
//! Each write is one `dispatch_write` composite value (its events a
//! `dispatch_event[]` inside it), and the batch is one array of them. Writes
//! are sent in stream order, so two batches that touch the same streams take
//! their locks in the same order and cannot deadlock on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::PgRecordEncoder;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};
use sqlx::{Encode, PgConnection, PgExecutor, PgPool, Postgres, Row, Type};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tracing::Instrument;
use uuid::Uuid;

use super::answer::{position_marker, Answer};
use super::chain::ChainKeys;
use super::hash::{envelope_hash, Envelope};
use super::{NewEvent, StoreError, StreamState};
use crate::db::LazyConn;

// 1. Prepare.

/// Where an event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// Its id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its sequence.
    pub sequence: i64,
    /// Its global position.
    pub global_position: i64,
}

/// Events ready to append: ids, metadata and chained hashes computed; the
/// database assigns their global positions at insert.
#[derive(Debug, Clone)]
pub struct PreparedAppend {
    /// `job` or `technician`.
    pub aggregate_type: String,
    /// The stream.
    pub aggregate_id: String,
    /// The events, in sequence order.
    pub events: Vec<PreparedEvent>,
    /// The stream's head after these events.
    pub head: StreamState,
}

/// One event ready to append (the `dispatch_event` composite of migration
/// 0015, fields in its order).
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(type_name = "dispatch_event")]
pub struct PreparedEvent {
    /// 1-based, continuing the head.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Payload version.
    pub event_version: String,
    /// Payload, JSON text.
    pub payload: String,
    /// Metadata, JSON text.
    pub metadata: String,
    /// Event id.
    pub event_id: Uuid,
    /// The previous event's hash.
    pub prev_hash: String,
    /// The event's hash.
    pub hash: String,
    /// The chain key the event is keyed with (the active one).
    pub key_id: String,
    /// The event's MAC under that key.
    pub mac: String,
}

/// Computes ids, metadata, the hash chain and the MACs (under the active
/// key of `keys`) for `events` after `head`; returns them with the events as
/// they will be reported (positions are [`position_marker`]s).
pub fn prepare_append(
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    head: &StreamState,
    events: Vec<NewEvent>,
) -> Result<(PreparedAppend, Vec<Appended>), StoreError> {
    let mut p = PreparedAppend {
        aggregate_type: aggregate_type.to_string(),
        aggregate_id: aggregate_id.to_string(),
        events: Vec::with_capacity(events.len()),
        head: head.clone(),
    };
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let sequence = p.head.sequence + 1;
        // Time-ordered (UUIDv7): new ids land at the right edge of the
        // `events_event_id` index instead of on a random leaf of it, which
        // with millions of events was a page read and a full-page WAL image
        // per append (the benchmark's 10 M-event p99).
        let event_id = Uuid::now_v7();
        let metadata = serde_json::to_value(&e.meta)
            .map_err(|source| StoreError::Decode { sequence, source })?;
        let envelope = Envelope {
            aggregate_type,
            aggregate_id,
            sequence,
            event_id: &event_id.to_string(),
            event_type: &e.event_type,
            event_version: &e.event_version,
            prev_hash: &p.head.hash,
        };
        let hash = envelope_hash(&envelope, &e.payload, &metadata);
        out.push(Appended {
            event_id,
            event_type: e.event_type.clone(),
            sequence,
            global_position: position_marker(i),
        });
        let (key_id, mac) = keys.mac(aggregate_type, aggregate_id, sequence, &hash);
        p.events.push(PreparedEvent {
            sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload.to_string(),
            metadata: metadata.to_string(),
            event_id,
            prev_hash: std::mem::replace(&mut p.head.hash, hash.clone()),
            hash,
            key_id: key_id.to_string(),
            mac,
        });
        p.head.sequence = sequence;
    }
    Ok((p, out))
}

// 2. The write.

/// A job's row in `job_doors` (the `dispatch_door` composite).
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(type_name = "dispatch_door")]
pub struct DoorRow {
    /// The job.
    pub job_id: String,
    /// Its site.
    pub site_id: String,
    /// Its door.
    pub door_id: String,
    /// Its state's wire name.
    pub state: String,
    /// The technician of its current visit.
    pub technician_id: Option<String>,
    /// When its work was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When this row was written.
    pub updated_at: DateTime<Utc>,
}

/// What one command leaves to write, all or nothing.
#[derive(Debug)]
pub struct Write {
    /// The answer to store under the caller's idempotency key (`None`:
    /// none, as for [`append`]).
    pub answer: Option<Answer>,
    /// The SHA-256 of an API key the write must find still active.
    pub key_check: Option<String>,
    /// Events to append.
    pub append: Option<PreparedAppend>,
    /// The door-index row to upsert.
    pub door: Option<DoorRow>,
}

impl Write {
    /// The stream the write appends to, if any: the batch's sort key.
    fn stream(&self) -> Option<(&str, &str)> {
        self.append
            .as_ref()
            .map(|a| (a.aggregate_type.as_str(), a.aggregate_id.as_str()))
    }
}

/// Why the store refused a write (nothing of it was written).
#[derive(Debug)]
pub enum Refused {
    /// A key or version another write committed first: the idempotency key
    /// was used, or the stream moved past the write's head (SQLSTATE 23505,
    /// or 40P01 / 40001 when two writers met).
    Conflict,
    /// The key in [`Write::key_check`] is unknown or revoked (`DK401`).
    KeyRefused,
    /// Anything else.
    Failed(StoreError),
}

/// What a write that stood left: its stored answer (empty without one) and
/// its events' global positions, in sequence order.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The stored answer, positions in place.
    pub answer: Vec<u8>,
    /// The events' global positions.
    pub positions: Vec<i64>,
}

// 3. Group commit.

/// Writer tasks (and connections) per process, by default
/// (`DISPATCH_DB_WRITERS`).
pub const DEFAULT_WRITERS: u32 = 2;

/// Writes a writer waits for while another writer's batch is in flight
/// before it sends them without waiting for that batch to come back.
pub const FOLLOW_MIN: usize = 16;

/// The most writes sent in one call.
pub const MAX_BATCH: usize = 64;

/// A write's outcome: the stored answer (positions in place), or why
/// nothing was written.
pub type Outcome = Result<Vec<u8>, Refused>;

struct Pending {
    write: Write,
    reply: oneshot::Sender<Outcome>,
    /// The span of the command's write (the batch's span follows from it).
    span: tracing::Span,
}

/// Hands writes to the writer tasks. Cloning shares them.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts `writers` tasks (at least one), with connections of their own
    /// to `pool`'s database (a writer never queues behind requests for a
    /// connection). They stop when the last `Writer` is dropped.
    pub fn start(pool: &PgPool, writers: u32) -> Writer {
        let writers = writers.max(1);
        let (queue, rx) = mpsc::unbounded_channel();
        let relay = Arc::new(Relay {
            queue: Mutex::new(rx),
            in_flight: AtomicUsize::new(0),
            returned: Notify::new(),
        });
        let connections = crate::db::sibling(pool, writers);
        for _ in 0..writers {
            tokio::spawn(run(relay.clone(), connections.clone()));
        }
        Writer { queue }
    }

    /// Writes `write` with whatever else is waiting; its answer (the stored
    /// body, positions in place) once committed.
    pub async fn write(&self, write: Write) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                write,
                reply,
                span: tracing::Span::current(),
            })
            .map_err(|_| Refused::Failed(StoreError::WriterStopped))?;
        answer
            .await
            .unwrap_or(Err(Refused::Failed(StoreError::WriterStopped)))
    }
}

/// What the writer tasks share: the queue, how many batches are in
/// flight, and a signal when one comes back.
struct Relay {
    queue: Mutex<mpsc::UnboundedReceiver<Pending>>,
    in_flight: AtomicUsize,
    returned: Notify,
}

async fn run(relay: Arc<Relay>, pool: PgPool) {
    // The writer's connection, kept between batches: one given back to the
    // pool costs a round trip (sqlx checks it on release), one per batch.
    // Let go after a failed call, so that a broken one is replaced.
    let mut conn = LazyConn::pooled(&pool);
    loop {
        let Some(batch) = gather(&relay).await else {
            return;
        };
        send(&mut conn, batch).await;
        relay.in_flight.fetch_sub(1, Ordering::SeqCst);
        relay.returned.notify_waiters();
    }
}

/// Takes the next batch (counting it in flight): at once when no other batch is in flight (a lone
/// write never waits); while one is, only once [`FOLLOW_MIN`] writes are
/// waiting or that batch has come back. So a second writer overlaps its
/// statement with the first one's commit without cutting the batches into
/// ones and twos (docs/03, "Group commit").
async fn gather(relay: &Relay) -> Option<Vec<Pending>> {
    let mut rx = relay.queue.lock().await;
    let mut batch = vec![rx.recv().await?];
    drain(&mut rx, &mut batch);
    loop {
        let returned = relay.returned.notified();
        tokio::pin!(returned);
        returned.as_mut().enable();
        if batch.len() >= FOLLOW_MIN || relay.in_flight.load(Ordering::SeqCst) == 0 {
            // Counted in flight before the queue is let go, so the next
            // gatherer sees it.
            relay.in_flight.fetch_add(1, Ordering::SeqCst);
            return Some(batch);
        }
        tokio::select! {
            () = &mut returned => {}
            next = rx.recv() => match next {
                Some(p) => batch.push(p),
                None => {
                    relay.in_flight.fetch_add(1, Ordering::SeqCst);
                    return Some(batch);
                }
            },
        }
        drain(&mut rx, &mut batch);
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

/// Sends one batch and answers each of its writes. The batch's span
/// (`write_batch`, docs/08 "Traces") is a child of its first write's span
/// and follows from the others'; each write's span records the batch size.
async fn send(conn: &mut LazyConn<'_>, batch: Vec<Pending>) {
    metrics::histogram!("dispatch_write_batch_size").record(batch.len() as f64);
    let span = tracing::info_span!(
        parent: batch.first().and_then(|p| p.span.id()),
        "write_batch",
        batch_size = batch.len(),
        events = batch.iter().map(|p| p.write.append.as_ref().map_or(0, |a| a.events.len())).sum::<usize>(),
    );
    for (i, p) in batch.iter().enumerate() {
        p.span.record("batch_size", batch.len());
        if i > 0 {
            span.follows_from(&p.span);
        }
    }
    let (writes, replies): (Vec<Write>, Vec<_>) =
        batch.into_iter().map(|p| (p.write, p.reply)).unzip();
    let refs: Vec<&Write> = writes.iter().collect();
    let result = async { write_batch(conn.get().await?, &refs).await }
        .instrument(span)
        .await;
    if result.is_err() {
        conn.release();
    }
    let outcomes = outcomes_of(writes.len(), result);
    for (outcome, reply) in outcomes.into_iter().zip(replies) {
        let _ = reply.send(outcome);
    }
}

/// Writes `writes` in one call and one commit, each all-or-nothing; their
/// outcomes, in the order given. The writer's batches go through here.
pub async fn write_together(pool: &PgPool, writes: &[Write]) -> Vec<Outcome> {
    let refs: Vec<&Write> = writes.iter().collect();
    outcomes_of(writes.len(), write_batch(pool, &refs).await)
}

/// Each write's outcome from the batch call's result.
fn outcomes_of(
    writes: usize,
    result: Result<Vec<Result<Written, Refused>>, sqlx::Error>,
) -> Vec<Outcome> {
    match result {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| o.map(|written| written.answer))
            .collect(),
        Err(e) => {
            // The call failed as a whole: nothing of any write was written.
            let e = Arc::new(e);
            (0..writes)
                .map(|_| Err(Refused::Failed(StoreError::Batch(e.clone()))))
                .collect()
        }
    }
}

// 4. The batch call.

/// Writes `writes` in one call, each all-or-nothing, through `conn` (a pool
/// commits them at once; a connection in a transaction leaves the commit to
/// its owner). Their outcomes, in the order given; `Err` when the call
/// itself failed (nothing was written).
pub async fn write_batch<'c>(
    conn: impl PgExecutor<'c>,
    writes: &[&Write],
) -> Result<Vec<Result<Written, Refused>>, sqlx::Error> {
    // Stream order, so that concurrent batches lock streams in one order.
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by(|&a, &b| writes[a].stream().cmp(&writes[b].stream()));
    let records: Vec<WriteRecord<'_>> = order.iter().map(|&i| WriteRecord(writes[i])).collect();
    let rows = sqlx::query(
        "SELECT write_no, err_code, err_message, answer, positions FROM dispatch_write_batch($1)",
    )
    .bind(records)
    .fetch_all(conn)
    .await?;
    let mut outcomes: Vec<Option<Result<Written, Refused>>> =
        (0..writes.len()).map(|_| None).collect();
    for r in rows {
        let n: i32 = r.try_get("write_no")?;
        let code: Option<String> = r.try_get("err_code")?;
        let outcome = match code {
            None => Ok(Written {
                answer: r
                    .try_get::<Option<Vec<u8>>, _>("answer")?
                    .unwrap_or_default(),
                positions: r
                    .try_get::<Option<Vec<i64>>, _>("positions")?
                    .unwrap_or_default(),
            }),
            Some(code) => Err(refused(code, r.try_get("err_message")?)),
        };
        // `write_no` counts the sorted writes from 1.
        let at = usize::try_from(n - 1).ok().and_then(|i| order.get(i));
        if let Some(slot) = at.and_then(|&i| outcomes.get_mut(i)) {
            *slot = Some(outcome);
        }
    }
    Ok(outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or(Err(Refused::Failed(StoreError::NoOutcome(i + 1)))))
        .collect())
}

/// A write the function refused, by its SQLSTATE.
fn refused(code: String, message: Option<String>) -> Refused {
    match code.as_str() {
        "23505" | "40P01" | "40001" => Refused::Conflict,
        "DK401" => Refused::KeyRefused,
        _ => Refused::Failed(StoreError::Refused {
            code,
            message: message.unwrap_or_default(),
        }),
    }
}

/// A [`Write`] as the `dispatch_write` composite (field order as in the
/// migration).
struct WriteRecord<'a>(&'a Write);

impl Type<Postgres> for WriteRecord<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("dispatch_write")
    }
}

impl PgHasArrayType for WriteRecord<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("_dispatch_write")
    }
}

impl Encode<'_, Postgres> for WriteRecord<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let w = self.0;
        let answer = w.answer.as_ref();
        let append = w.append.as_ref();
        let pieces: Vec<&[u8]> =
            answer.map_or_else(Vec::new, |a| a.pieces.iter().map(Vec::as_slice).collect());
        let events: &[PreparedEvent] = append.map_or(&[], |a| a.events.as_slice());
        let mut record = PgRecordEncoder::new(buf);
        record
            .encode(answer.map(|a| a.caller.as_str()))?
            .encode(answer.map(|a| a.idempotency_key.as_str()))?
            .encode(answer.map(|a| a.request_hash.as_str()))?
            .encode(answer.map(|a| i32::from(a.status)))?
            .encode(pieces)?
            .encode(w.key_check.as_deref())?
            .encode(append.map(|a| a.aggregate_type.as_str()))?
            .encode(append.map(|a| a.aggregate_id.as_str()))?
            .encode(append.map(|a| a.head.sequence))?
            .encode(append.map(|a| a.head.hash.as_str()))?
            .encode(events)?
            .encode(w.door.as_ref())?;
        record.finish();
        Ok(IsNull::No)
    }
}

/// Appends events to a stream inside the caller's transaction, chaining their
/// hashes, keying them with the active key of `keys` and moving the stream
/// head: one write of the batch function the group-commit writer uses
/// (below), with no stored answer. A concurrent append to the
/// same stream is [`StoreError::Conflict`].
pub async fn append(
    conn: &mut PgConnection,
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    head: &StreamState,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    let (prepared, mut out) = prepare_append(keys, aggregate_type, aggregate_id, head, events)?;
    let write = Write {
        answer: None,
        key_check: None,
        append: Some(prepared),
        door: None,
    };
    let outcome = write_batch(&mut *conn, &[&write]).await?.pop();
    match outcome {
        Some(Ok(written)) => {
            for (a, position) in out.iter_mut().zip(written.positions) {
                a.global_position = position;
            }
            Ok(out)
        }
        Some(Err(Refused::Conflict)) => Err(StoreError::Conflict),
        Some(Err(Refused::Failed(e))) => Err(e),
        Some(Err(Refused::KeyRefused)) | None => Err(StoreError::NoOutcome(1)),
    }
}
