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

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::batch::{write_batch, Refused, Write};
use super::StoreError;

/// Writer tasks (and connections) per process, by default
/// (`DISPATCH_DB_WRITERS`).
pub const DEFAULT_WRITERS: u32 = 1;

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
        let rx = Arc::new(Mutex::new(rx));
        let connections = crate::db::sibling(pool, writers);
        for _ in 0..writers {
            tokio::spawn(run(rx.clone(), connections.clone()));
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

async fn run(rx: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>, pool: PgPool) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        send(&pool, batch).await;
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
