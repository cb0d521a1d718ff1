//! Group commit: the writes of concurrent commands, committed together.
//!
//! A command's write — its events, stream head, door row and stored answer —
//! is one write of [`super::batch`]. Committed one by one, every command paid a round trip,
//! a statement and a commit of its own, and on a loaded machine those fixed
//! costs were most of PostgreSQL's work per command (a one-row insert per
//! transaction runs at a fifth of the rows per second of eight rows per
//! transaction). Commands now hand their write to a writer: a few tasks, each
//! with a connection of its own, that take every write waiting when they are
//! free and send them in one call of `dispatch_write_batch` (migration 0015)
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

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::batch::{write_batch, Refused, Write};
use super::StoreError;

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
    loop {
        let Some(batch) = gather(&relay).await else {
            return;
        };
        send(&pool, batch).await;
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
    let refs: Vec<&Write> = writes.iter().collect();
    match write_batch(pool, &refs).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| o.map(|written| written.answer))
            .collect(),
        Err(e) => {
            // The call failed as a whole: nothing of any write was written.
            let e = Arc::new(e);
            writes
                .iter()
                .map(|_| Err(Refused::Failed(StoreError::Batch(e.clone()))))
                .collect()
        }
    }
}
