//! The projector runtime: one [`Runtime`] per process runs every read
//! model's projector. Split by concern:
//!
//! - `order.rs` — reading the global order: the next batch after a
//!   checkpoint, below the oldest running transaction, and reading ahead;
//! - `batch.rs` — applying a batch and moving its checkpoints in one
//!   transaction, one table alone or the tables standing level together;
//! - `tables.rs` — the registry of serving and shadow tables: registration,
//!   table creation, retired tables dropped after their grace;
//! - `rebuild.rs` — rebuilds into shadow tables and the swap once caught up;
//! - `run.rs` — the live loop: the passes, the `pg_notify` listener and
//!   housekeeping;
//! - `status.rs` — each table's position and lag, and this process's name.
//!
//! Here: the runtime itself, the live tables' share of a pass, and a pass
//! over everything (tests and the CLI step it by hand).

mod batch;
mod order;
mod rebuild;
mod run;
mod status;
mod tables;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{Projection, ProjectionContext};
use super::{ReadModelError, Result};

pub use status::{instance_id, rebuild_state, status, RebuildState};

/// Events per batch in the live loop (rebuilds use the same size; the loop
/// simply runs more batches).
pub const DEFAULT_BATCH: i64 = 5000;

/// A read model's loop starts a pass at most this often while events keep
/// coming (by default; `DISPATCH_PROJECTION_PASS_MS`,
/// [`Runtime::pass_interval`]): under load, waiting a moment gathers a
/// batch instead of paying a transaction per read model for every commit. A
/// live pass goes on to the next batch only while batches come back full,
/// so each active job's state is folded and written about once per
/// interval, not once per commit. 80 ms since the tenth session: against
/// 250 ms it cut the benchmark's lag p99 from 298 to 120 ms at 16 clients
/// (390 to 279 ms at 64) with the same CPU per command (docs/benchmarks.md).
pub const PASS_INTERVAL: Duration = Duration::from_millis(80);

/// The projectors of one process.
#[derive(Clone)]
pub struct Runtime {
    pool: PgPool,
    projections: Vec<Arc<dyn Projection>>,
    ctx: ProjectionContext,
    batch_size: i64,
    poll: Duration,
    pass_interval: Duration,
}

impl Runtime {
    /// A runtime over every read model.
    pub fn new(pool: PgPool, ctx: ProjectionContext) -> Self {
        Runtime::with_projections(pool, ctx, super::all())
    }

    /// A runtime over the given projections (tests swap in other versions).
    pub fn with_projections(
        pool: PgPool,
        ctx: ProjectionContext,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        Runtime {
            pool,
            projections,
            ctx,
            batch_size: DEFAULT_BATCH,
            poll: Duration::from_millis(500),
            pass_interval: PASS_INTERVAL,
        }
    }

    /// Sets the spacing of passes under load.
    pub fn pass_interval(mut self, every: Duration) -> Self {
        self.pass_interval = every;
        self
    }

    /// Sets the batch size.
    pub fn batch_size(mut self, n: i64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The projections this runtime runs.
    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    /// The names of the read models this runtime runs (what
    /// [`Runtime::request_rebuild`] takes).
    pub fn names(&self) -> Vec<String> {
        self.projections
            .iter()
            .map(|p| p.definition().name.clone())
            .collect()
    }

    /// The serving tables' share of a pass: those standing level advance
    /// together ([`Runtime::advance_level`]), the rest (a model behind or
    /// ahead of the others) each on its own, side by side.
    pub async fn step_live(&self, max_batches: usize) -> Result<usize> {
        let live: Vec<(Arc<dyn Projection>, String)> = self
            .registered_all()
            .await?
            .into_iter()
            .map(|(p, reg)| (p, reg.active_table))
            .collect();
        let mut applied = 0;
        let mut together: Vec<String> = Vec::new();
        for _ in 0..max_batches {
            match self.advance_level(&live, self.batch_size, None).await? {
                Some((n, members)) => {
                    together = members;
                    applied += n;
                    if (n as i64) < self.batch_size {
                        break;
                    }
                }
                None => {
                    together.clear();
                    break;
                }
            }
        }
        let alone = live
            .iter()
            .filter(|(_, t)| !together.contains(t))
            .map(|(p, t)| self.advance_alone(p.as_ref(), t, max_batches));
        for r in futures::future::join_all(alone).await {
            applied += r?;
        }
        Ok(applied)
    }

    /// Advances `table` by up to `max_batches` on its own.
    async fn advance_alone(
        &self,
        p: &dyn Projection,
        table: &str,
        max_batches: usize,
    ) -> Result<usize> {
        let mut applied = 0;
        for _ in 0..max_batches {
            match self.advance(p, table).await? {
                Some(n) if n > 0 => applied += n,
                _ => break,
            }
        }
        Ok(applied)
    }

    /// One pass over every read model: [`Runtime::step_live`] and
    /// [`Runtime::step_rebuilds`] side by side, then drops retired tables
    /// past their grace. Returns the events applied.
    pub async fn step(&self, max_batches: usize) -> Result<usize> {
        let (live, rebuilds) =
            futures::future::join(self.step_live(max_batches), self.step_rebuilds(max_batches))
                .await;
        let applied = live? + rebuilds?;
        self.drop_retired().await?;
        Ok(applied)
    }

    /// Steps until every committed event is applied by every table and no
    /// rebuild is pending (tests, CLI). Waits out a horizon held back by
    /// another transaction; gives up after two minutes.
    pub async fn catch_up(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let applied = self.step(50).await?;
            if applied > 0 {
                continue;
            }
            let pending: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projection_registry WHERE building_table IS NOT NULL) \
                 OR EXISTS (SELECT 1 FROM projection_registry r JOIN projection_checkpoints c ON c.table_name = r.active_table \
                            WHERE EXISTS (SELECT 1 FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos)))",
            )
            .fetch_one(&self.pool)
            .await?;
            if !pending {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(ReadModelError::TimedOut(
                    "read models did not catch up within two minutes".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
