//! Writing the chain's signed checkpoints to the evidence object store, and
//! the in-memory index of the heads they recorded.
//!
//! At start-up the index is loaded from every checkpoint in the store (each
//! signature checked); then, at an interval, at start-up and at graceful
//! shutdown, the server checkpoints the heads of the streams that changed
//! since (`store::checkpoint` reads them in commit order). The per-job audit
//! consults the index instead of listing the store on every request.
//!
//! Replicas each keep their own cursor and write their own objects (names
//! carry a digest, so no two overwrite each other): a stream checkpointed
//! twice is harmless, and the index of each holds what it loaded and wrote.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Mutex};

use super::evidence::EvidenceStore;
use crate::store::chain::ChainKeys;
use crate::store::checkpoint::{self, Checkpoint, CheckpointedHead, Cursor, HeadIndex};

/// What loading the store's checkpoints found.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    /// Checkpoints whose signature verified.
    pub verified: usize,
    /// Objects that do not parse or whose signature does not verify (by name).
    pub rejected: Vec<String>,
}

/// Reads and verifies every checkpoint in `store` into an index.
pub async fn load_index(
    store: &EvidenceStore,
    keys: &ChainKeys,
) -> anyhow::Result<(HeadIndex, Loaded)> {
    let mut index = HeadIndex::default();
    let mut loaded = Loaded::default();
    for name in store.checkpoint_names().await? {
        let bytes = store.get_checkpoint(&name).await?;
        match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(cp) if cp.verify(keys) => {
                index.add(&cp);
                loaded.verified += 1;
            }
            _ => loaded.rejected.push(name),
        }
    }
    Ok((index, loaded))
}

#[derive(Debug)]
struct WriterState {
    covers: Option<Cursor>,
    prev: Option<String>,
}

/// The checkpointed heads this process knows, and its checkpoint writer's
/// state. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    index: Arc<RwLock<HeadIndex>>,
    writer: Arc<Mutex<WriterState>>,
    id: String,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self::new(HeadIndex::default())
    }
}

impl Checkpoints {
    /// Starts from an index loaded from the store (its furthest checkpoint
    /// is where this process's next one continues).
    pub fn new(index: HeadIndex) -> Checkpoints {
        let state = WriterState {
            covers: index.covers,
            prev: index.last_digest.clone(),
        };
        Checkpoints {
            index: Arc::new(RwLock::new(index)),
            writer: Arc::new(Mutex::new(state)),
            id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The heads signed checkpoints recorded for a stream.
    pub fn heads(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<CheckpointedHead> {
        self.index
            .read()
            .map(|i| i.get(aggregate_type, aggregate_id))
            .unwrap_or_default()
    }

    /// Streams checkpointed so far.
    pub fn streams(&self) -> usize {
        self.index.read().map(|i| i.len()).unwrap_or(0)
    }

    /// Writes the checkpoints that cover everything committed since the last
    /// one (several when the backlog is long); how many objects were written.
    pub async fn write(
        &self,
        pool: &PgPool,
        store: &EvidenceStore,
        keys: &ChainKeys,
    ) -> anyhow::Result<usize> {
        self.write_parts(pool, store, keys, false).await
    }

    /// As [`Checkpoints::write`], but a long backlog (a store upgraded or
    /// bulk-loaded behind the service's back) is caught up at half speed: as
    /// long a pause after each part as the part took, so the commands being
    /// served keep the database's attention. What the server's loop uses.
    pub async fn write_paced(
        &self,
        pool: &PgPool,
        store: &EvidenceStore,
        keys: &ChainKeys,
    ) -> anyhow::Result<usize> {
        self.write_parts(pool, store, keys, true).await
    }

    async fn write_parts(
        &self,
        pool: &PgPool,
        store: &EvidenceStore,
        keys: &ChainKeys,
        pace: bool,
    ) -> anyhow::Result<usize> {
        let mut state = self.writer.lock().await;
        let mut written = 0;
        loop {
            let started = std::time::Instant::now();
            let mut conn = pool.acquire().await?;
            let Some(changes) = checkpoint::changes_since(&mut conn, keys, state.covers).await?
            else {
                break;
            };
            drop(conn);
            for (t, id, seq) in &changes.refused {
                tracing::warn!(aggregate_type = %t, aggregate_id = %id, sequence = seq,
                    "the stream's newest event carries no valid MAC: not checkpointed (audit the stream)");
            }
            let cps = checkpoint::build(
                keys,
                &self.id,
                chrono::Utc::now(),
                state.prev.clone(),
                &changes,
            );
            for cp in &cps {
                let bytes = serde_json::to_vec(cp)?;
                store.put_checkpoint(&cp.object_name(), bytes).await?;
                if let Ok(mut index) = self.index.write() {
                    index.add(cp);
                }
                state.prev = Some(cp.digest());
                written += 1;
            }
            state.covers = Some(changes.covers);
            metrics::counter!("dispatch_checkpoints_written_total").increment(cps.len() as u64);
            if !changes.more {
                break;
            }
            if pace {
                tokio::time::sleep(started.elapsed()).await;
            }
        }
        Ok(written)
    }
}

impl Checkpoints {
    /// Whether the store holds committed events past what this process's
    /// checkpoints cover (some may wait for an older transaction anywhere on
    /// the server to end before they can be covered).
    pub async fn behind(&self, pool: &PgPool) -> anyhow::Result<bool> {
        let covers = self.writer.lock().await.covers;
        let behind: bool = match covers {
            None => sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
                .fetch_one(pool)
                .await?,
            Some(c) => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2))",
            )
            .bind(c.tx_id.to_string())
            .bind(c.global_position)
            .fetch_one(pool)
            .await?,
        };
        Ok(behind)
    }
}

/// How long the shutdown checkpoint waits for the last events to become
/// coverable (below every running transaction on the server).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Writes a checkpoint now, then every `interval`, and a last one when
/// `stopped` turns true (graceful shutdown). Failures are logged and retried
/// at the next tick: the service keeps serving.
pub async fn run(
    checkpoints: Checkpoints,
    pool: PgPool,
    store: EvidenceStore,
    keys: Arc<ChainKeys>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let once = |why: &'static str, pace: bool| {
        let (checkpoints, pool, store, keys) = (
            checkpoints.clone(),
            pool.clone(),
            store.clone(),
            keys.clone(),
        );
        async move {
            let written = if pace {
                checkpoints.write_paced(&pool, &store, &keys).await
            } else {
                checkpoints.write(&pool, &store, &keys).await
            };
            match written {
                Ok(0) => tracing::debug!(why, "nothing new to checkpoint"),
                Ok(n) => tracing::debug!(objects = n, why, "checkpoint written"),
                Err(e) => tracing::error!(error = %e, why, "cannot write a checkpoint"),
            }
        }
    };
    once("start-up", true).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => once("interval", true).await,
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
    }
    // The drained requests' writes are committed, but a checkpoint covers
    // only transactions below the snapshot's xmin: an older transaction
    // anywhere on the server holds the last ones back for a moment.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    loop {
        once("shutdown", false).await;
        match checkpoints.behind(&pool).await {
            Ok(true) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(true) => {
                tracing::warn!("the shutdown checkpoint does not cover the newest events (a long transaction held them back); the next start covers them");
                break;
            }
            _ => break,
        }
    }
}
