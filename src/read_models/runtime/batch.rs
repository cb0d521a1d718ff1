//! Applying a batch: the events, the folded job states and the checkpoint
//! move in one transaction (exactly once), each table held by one replica
//! at a time (`FOR UPDATE SKIP LOCKED` on its checkpoint).

use std::sync::Arc;
use std::time::Instant;

use sqlx::{PgConnection, Row};

use super::order::Prefetched;
use super::{instance_id, Runtime};
use crate::read_models::jobs::{fold_jobs, JobChange};
use crate::read_models::{EventRow, Projection, ReadModelError, Result};

impl Runtime {
    /// Moves `table`'s checkpoint past `batch` (inside the batch's transaction).
    async fn mark(&self, conn: &mut PgConnection, table: &str, batch: &[EventRow]) -> Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE projection_checkpoints SET last_tx = $2::text::xid8, last_pos = $3, events_applied = events_applied + $4, updated_at = now(), applied_by = $5 WHERE table_name = $1",
        )
        .bind(table)
        .bind(last.tx_id.to_string())
        .bind(last.global_position)
        .bind(batch.len() as i64)
        .bind(instance_id())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Counts a batch applied to one read model's table (its position and
    /// lag are published every few seconds by the housekeeping loop).
    fn record_batch(projection: &dyn Projection, batch: &[EventRow], started: Instant) {
        if batch.is_empty() {
            return;
        }
        let name = projection.definition().name.clone();
        metrics::histogram!("dispatch_projection_batch_size", "projection" => name.clone())
            .record(batch.len() as f64);
        metrics::histogram!("dispatch_projection_batch_seconds", "projection" => name)
            .record(started.elapsed().as_secs_f64());
    }

    /// Applies one batch to `table`. `None`: another replica holds the table.
    pub async fn advance(&self, projection: &dyn Projection, table: &str) -> Result<Option<usize>> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let checkpoint = sqlx::query("SELECT last_tx::text AS last_tx, last_pos FROM projection_checkpoints WHERE table_name = $1 FOR UPDATE SKIP LOCKED")
            .bind(table)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(checkpoint) = checkpoint else {
            return Ok(None);
        };
        let last_tx: String = checkpoint.try_get("last_tx")?;
        let last_pos: i64 = checkpoint.try_get("last_pos")?;
        let batch = self
            .read_batch(&mut tx, &last_tx, last_pos, self.batch_size)
            .await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(Some(0));
        }
        let changes = if projection.needs_job_state() {
            fold_jobs(&mut tx, &format!("{table}_jobs"), &batch).await?
        } else {
            Vec::new()
        };
        projection
            .apply(&mut tx, table, &batch, &changes, &self.ctx)
            .await?;
        self.mark(&mut tx, table, &batch).await?;
        tx.commit().await?;
        Self::record_batch(projection, &batch, started);
        Ok(Some(batch.len()))
    }

    /// Applies one batch to every serving table that stands at the same
    /// position as the most others (at least two), in one transaction: the
    /// batch is read once and the touched jobs folded once for all of them
    /// (see [`fold_jobs`]). Returns the events applied and the tables
    /// advanced (or found caught up); `None` if fewer than two tables stand
    /// level (or could be locked), which leaves them to [`Runtime::advance`].
    ///
    /// `prefetch`: for a run of batches (rebuilds): a batch read ahead by
    /// the previous call is used if it starts where the tables stand, and
    /// the next batch is read, on another connection, while this one is
    /// folded and written (reading it is a fifth of a batch's time, and the
    /// machine is otherwise one connection's worth busy).
    pub(super) async fn advance_level(
        &self,
        live: &[(Arc<dyn Projection>, String)],
        limit: i64,
        mut prefetch: Option<&mut Option<Prefetched>>,
    ) -> Result<Option<(usize, Vec<String>)>> {
        let started = Instant::now();
        let tables: Vec<&str> = live.iter().map(|(_, t)| t.as_str()).collect();
        let positions = sqlx::query(
            "SELECT table_name, last_tx::text AS last_tx, last_pos FROM projection_checkpoints WHERE table_name = ANY($1)",
        )
        .bind(&tables)
        .fetch_all(&self.pool)
        .await?;
        let mut level: std::collections::BTreeMap<(u64, i64), Vec<String>> = Default::default();
        for r in positions {
            let last_tx: String = r.try_get("last_tx")?;
            let at = (
                last_tx.parse::<u64>().unwrap_or(0),
                r.try_get::<i64, _>("last_pos")?,
            );
            level.entry(at).or_default().push(r.try_get("table_name")?);
        }
        // The most tables; of equals, the furthest behind.
        let Some((at, members)) = level.into_iter().rev().max_by_key(|(_, m)| m.len()) else {
            return Ok(None);
        };
        if members.len() < 2 {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query(
            "SELECT table_name FROM projection_checkpoints WHERE table_name = ANY($1) AND last_tx = $2::text::xid8 AND last_pos = $3 \
             ORDER BY table_name FOR UPDATE SKIP LOCKED",
        )
        .bind(&members)
        .bind(at.0.to_string())
        .bind(at.1)
        .fetch_all(&mut *tx)
        .await?;
        let locked: Vec<String> = locked
            .iter()
            .map(|r| r.try_get("table_name"))
            .collect::<std::result::Result<_, _>>()?;
        if locked.len() < 2 {
            return Ok(None);
        }
        // A batch read ahead is used only if it starts where the tables stand.
        let ahead = prefetch
            .as_deref_mut()
            .and_then(Option::take)
            .filter(|p| p.from == at);
        let batch = match ahead {
            Some(p) => p.rows,
            None => {
                self.read_batch(&mut tx, &at.0.to_string(), at.1, limit)
                    .await?
            }
        };
        let Some(last) = batch.last() else {
            tx.commit().await?;
            return Ok(Some((0, locked)));
        };
        let next_from = (last.tx_id as u64, last.global_position);
        let group: Vec<&(Arc<dyn Projection>, String)> =
            live.iter().filter(|(_, t)| locked.contains(t)).collect();
        // The group folds once, through the first state-keeping table.
        let state_table = group
            .iter()
            .find(|(p, _)| p.needs_job_state())
            .map(|(_, t)| format!("{t}_jobs"));
        let work = async {
            let changes = match &state_table {
                Some(table) => fold_jobs(&mut tx, table, &batch).await?,
                None => Vec::new(),
            };
            for (p, table) in &group {
                let changes: &[JobChange] = if p.needs_job_state() { &changes } else { &[] };
                p.apply(&mut tx, table, &batch, changes, &self.ctx).await?;
                self.mark(&mut tx, table, &batch).await?;
            }
            Ok::<(), ReadModelError>(())
        };
        match prefetch {
            Some(slot) => {
                let (done, next) =
                    futures::future::join(work, self.read_ahead(next_from, limit)).await;
                done?;
                *slot = next;
            }
            None => work.await?,
        }
        tx.commit().await?;
        for (p, _) in &group {
            Self::record_batch(p.as_ref(), &batch, started);
        }
        Ok(Some((batch.len(), locked)))
    }
}
