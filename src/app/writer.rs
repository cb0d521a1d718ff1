//! Group commit: the writes of concurrent commands, committed together.
//!
//! A command's write — its events, stream head, door row and stored answer —
//! is one statement. Committed one by one, every command paid a round trip,
//! a statement and a commit of its own, and on a loaded machine those fixed
//! costs were most of PostgreSQL's work per command (a one-row insert per
//! transaction runs at a fifth of the rows per second of eight rows per
//! transaction). Commands now hand their write to a writer: a few tasks, each
//! with a connection of its own, that take every write waiting when they are
//! free and send them in one call of `dispatch_write_batch` (migration 0009;
//! 0010 added the events' key ids and MACs)
//! — one round trip and one commit for all of them.
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
//! Writes are sent in stream order, so two batches that touch the same
//! streams take their locks in the same order and cannot deadlock on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use crate::error::{database_unavailable, sqlx_unavailable, ApiError};
use crate::store::PreparedAppend;

/// Writer tasks (and connections) per process, by default
/// (`DISPATCH_DB_WRITERS`).
pub const DEFAULT_WRITERS: u32 = 2;

/// Writes a writer waits for while another writer's batch is in flight
/// before it sends them without waiting for that batch to come back.
pub const FOLLOW_MIN: usize = 16;

/// The most writes sent in one call.
pub const MAX_BATCH: usize = 64;

/// A job's row in `job_doors`.
#[derive(Debug, Clone)]
pub struct DoorRow {
    /// The job.
    pub job_id: String,
    /// Its site.
    pub site_id: String,
    /// Its door.
    pub door_id: String,
    /// Its state's wire name.
    pub state: &'static str,
    /// The technician of its current visit.
    pub technician_id: Option<String>,
    /// When its work was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When this row was written.
    pub updated_at: DateTime<Utc>,
}

/// What one command leaves to write.
#[derive(Debug)]
pub struct Write {
    /// The caller (its key's name), for the stored answer.
    pub caller: String,
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// The request's hash.
    pub request_hash: String,
    /// The answer's status.
    pub status: u16,
    /// The answer, split at its events' positions (one piece more than
    /// events; one piece when nothing is appended).
    pub pieces: Vec<Vec<u8>>,
    /// The SHA-256 of an API key the write must find still active.
    pub key_check: Option<String>,
    /// Events to append.
    pub append: Option<PreparedAppend>,
    /// The door-index row to upsert.
    pub door: Option<DoorRow>,
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
    Failed(ApiError),
}

/// A write's outcome: the stored answer, or why nothing was written.
pub type Outcome = Result<Vec<u8>, Refused>;

struct Pending {
    write: Write,
    reply: oneshot::Sender<Outcome>,
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
            .send(Pending { write, reply })
            .map_err(|_| Refused::Failed(ApiError::Unavailable))?;
        answer
            .await
            .unwrap_or(Err(Refused::Failed(ApiError::Unavailable)))
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
    loop {
        let Some(batch) = gather(&relay).await else {
            return;
        };
        relay.in_flight.fetch_add(1, Ordering::SeqCst);
        send(&pool, batch).await;
        relay.in_flight.fetch_sub(1, Ordering::SeqCst);
        relay.returned.notify_waiters();
    }
}

/// Takes the next batch: at once when no other batch is in flight (a lone
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
            return Some(batch);
        }
        tokio::select! {
            () = &mut returned => {}
            next = rx.recv() => match next {
                Some(p) => batch.push(p),
                None => return Some(batch),
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

/// Sends one batch and answers each of its writes.
async fn send(pool: &PgPool, batch: Vec<Pending>) {
    metrics::histogram!("dispatch_write_batch_size").record(batch.len() as f64);
    let (writes, replies): (Vec<Write>, Vec<_>) =
        batch.into_iter().map(|p| (p.write, p.reply)).unzip();
    for (outcome, reply) in write_together(pool, &writes).await.into_iter().zip(replies) {
        let _ = reply.send(outcome);
    }
}

/// Writes `writes` in one call and one commit, each all-or-nothing; their
/// outcomes, in the order given. The writer's batches go through here.
pub async fn write_together(pool: &PgPool, writes: &[Write]) -> Vec<Outcome> {
    // Stream order, so that concurrent batches lock streams in one order.
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by(|&a, &b| stream_of(&writes[a]).cmp(&stream_of(&writes[b])));
    let sorted: Vec<&Write> = order.iter().map(|&i| &writes[i]).collect();
    let mut outcomes: Vec<Option<Outcome>> = (0..writes.len()).map(|_| None).collect();
    match call(pool, &sorted).await {
        Ok(called) => {
            for (at, outcome) in order.into_iter().zip(called) {
                outcomes[at] = outcome;
            }
        }
        Err(e) => {
            let unavailable = sqlx_unavailable(&e);
            for slot in &mut outcomes {
                *slot = Some(Err(Refused::Failed(if unavailable {
                    ApiError::Unavailable
                } else {
                    ApiError::Internal(anyhow::anyhow!("the batch write failed: {e}"))
                })));
            }
        }
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.unwrap_or_else(|| {
                Err(Refused::Failed(ApiError::Internal(anyhow::anyhow!(
                    "the batch write returned no row for write {}",
                    i + 1
                ))))
            })
        })
        .collect()
}

fn stream_of(w: &Write) -> Option<(&str, &str)> {
    w.append
        .as_ref()
        .map(|a| (a.aggregate_type.as_str(), a.aggregate_id.as_str()))
}

/// The function's arguments, one array per column.
#[derive(Default)]
struct Columns<'a> {
    caller: Vec<&'a str>,
    idem_key: Vec<&'a str>,
    request_hash: Vec<&'a str>,
    status: Vec<i32>,
    key_check: Vec<Option<&'a str>>,
    stream_type: Vec<Option<&'a str>>,
    stream_id: Vec<Option<&'a str>>,
    head_sequence: Vec<Option<i64>>,
    head_hash: Vec<Option<&'a str>>,
    ev_from: Vec<i32>,
    ev_to: Vec<i32>,
    piece_from: Vec<i32>,
    piece_to: Vec<i32>,
    door_job: Vec<Option<&'a str>>,
    door_site: Vec<Option<&'a str>>,
    door_door: Vec<Option<&'a str>>,
    door_state: Vec<Option<&'a str>>,
    door_technician: Vec<Option<&'a str>>,
    door_completed: Vec<Option<DateTime<Utc>>>,
    door_updated: Vec<Option<DateTime<Utc>>>,
    ev_sequence: Vec<i64>,
    ev_type: Vec<&'a str>,
    ev_version: Vec<&'a str>,
    ev_payload: Vec<&'a str>,
    ev_metadata: Vec<&'a str>,
    ev_id: Vec<uuid::Uuid>,
    ev_prev_hash: Vec<&'a str>,
    ev_hash: Vec<&'a str>,
    pieces: Vec<&'a [u8]>,
    ev_key_id: Vec<&'a str>,
    ev_mac: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, w: &'a Write) {
        self.caller.push(&w.caller);
        self.idem_key.push(&w.idempotency_key);
        self.request_hash.push(&w.request_hash);
        self.status.push(i32::from(w.status));
        self.key_check.push(w.key_check.as_deref());
        // 1-based, inclusive slices of the flattened arrays.
        self.ev_from.push(self.ev_sequence.len() as i32 + 1);
        self.piece_from.push(self.pieces.len() as i32 + 1);
        match &w.append {
            Some(a) => {
                self.stream_type.push(Some(&a.aggregate_type));
                self.stream_id.push(Some(&a.aggregate_id));
                self.head_sequence.push(Some(a.head.sequence));
                self.head_hash.push(Some(&a.head.hash));
                self.ev_sequence.extend(&a.sequences);
                self.ev_type
                    .extend(a.event_types.iter().map(String::as_str));
                self.ev_version
                    .extend(a.event_versions.iter().map(String::as_str));
                self.ev_payload
                    .extend(a.payloads.iter().map(String::as_str));
                self.ev_metadata
                    .extend(a.metadata.iter().map(String::as_str));
                self.ev_id.extend(&a.event_ids);
                self.ev_prev_hash
                    .extend(a.prev_hashes.iter().map(String::as_str));
                self.ev_hash.extend(a.hashes.iter().map(String::as_str));
                self.ev_key_id.extend(a.key_ids.iter().map(String::as_str));
                self.ev_mac.extend(a.macs.iter().map(String::as_str));
            }
            None => {
                self.stream_type.push(None);
                self.stream_id.push(None);
                self.head_sequence.push(None);
                self.head_hash.push(None);
            }
        }
        self.ev_to.push(self.ev_sequence.len() as i32);
        self.pieces.extend(w.pieces.iter().map(Vec::as_slice));
        self.piece_to.push(self.pieces.len() as i32);
        let d = w.door.as_ref();
        self.door_job.push(d.map(|d| d.job_id.as_str()));
        self.door_site.push(d.map(|d| d.site_id.as_str()));
        self.door_door.push(d.map(|d| d.door_id.as_str()));
        self.door_state.push(d.map(|d| d.state));
        self.door_technician
            .push(d.and_then(|d| d.technician_id.as_deref()));
        self.door_completed.push(d.and_then(|d| d.completed_at));
        self.door_updated.push(d.map(|d| d.updated_at));
    }
}

const CALL: &str = "SELECT write_no, err_code, err_message, answer FROM dispatch_write_batch(\
     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
     $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)";

/// Calls `dispatch_write_batch`; each write's outcome, in batch order.
async fn call(pool: &PgPool, batch: &[&Write]) -> Result<Vec<Option<Outcome>>, sqlx::Error> {
    let mut c = Columns::default();
    for w in batch {
        c.push(w);
    }
    let rows = sqlx::query(CALL)
        .bind(&c.caller)
        .bind(&c.idem_key)
        .bind(&c.request_hash)
        .bind(&c.status)
        .bind(&c.key_check)
        .bind(&c.stream_type)
        .bind(&c.stream_id)
        .bind(&c.head_sequence)
        .bind(&c.head_hash)
        .bind(&c.ev_from)
        .bind(&c.ev_to)
        .bind(&c.piece_from)
        .bind(&c.piece_to)
        .bind(&c.door_job)
        .bind(&c.door_site)
        .bind(&c.door_door)
        .bind(&c.door_state)
        .bind(&c.door_technician)
        .bind(&c.door_completed)
        .bind(&c.door_updated)
        .bind(&c.ev_sequence)
        .bind(&c.ev_type)
        .bind(&c.ev_version)
        .bind(&c.ev_payload)
        .bind(&c.ev_metadata)
        .bind(&c.ev_id)
        .bind(&c.ev_prev_hash)
        .bind(&c.ev_hash)
        .bind(&c.pieces)
        .bind(&c.ev_key_id)
        .bind(&c.ev_mac)
        .fetch_all(pool)
        .await?;
    let mut out: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
    for r in rows {
        let n: i32 = r.try_get("write_no")?;
        let code: Option<String> = r.try_get("err_code")?;
        let outcome = match code.as_deref() {
            None => Ok(r.try_get::<Vec<u8>, _>("answer")?),
            Some("23505" | "40P01" | "40001") => Err(Refused::Conflict),
            Some("DK401") => Err(Refused::KeyRefused),
            Some(code) => {
                let message: String = r
                    .try_get::<Option<String>, _>("err_message")?
                    .unwrap_or_default();
                Err(Refused::Failed(if database_unavailable(code, &message) {
                    ApiError::Unavailable
                } else {
                    ApiError::Internal(anyhow::anyhow!("write refused: {code}: {message}"))
                }))
            }
        };
        if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(outcome);
        }
    }
    Ok(out)
}
