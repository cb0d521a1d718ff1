//! Reading the global order: the events after a checkpoint, in
//! `(tx_id, global_position)` order and below the oldest running
//! transaction, so that a slow-committing writer is never skipped.

use std::time::Duration;

use sqlx::{PgConnection, Row};

use super::Runtime;
use crate::read_models::{EventRow, ReadModelError, Result};

/// A batch read ahead: the events after `from` (a `(tx_id, position)`).
pub(super) struct Prefetched {
    pub(super) from: (u64, i64),
    pub(super) rows: Vec<EventRow>,
}

impl Runtime {
    /// Reads the next batch after `(last_tx, last_pos)`, below the oldest
    /// running transaction.
    pub(super) async fn read_batch(
        &self,
        conn: &mut PgConnection,
        last_tx: &str,
        last_pos: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, global_position, tx_id::text AS tx, event_type, event_version, payload, \
                    (metadata->>'occurred_at') AS occurred_at \
             FROM events \
             WHERE (tx_id, global_position) > ($1::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, global_position LIMIT $3",
        )
        .bind(last_tx)
        .bind(last_pos)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut batch = Vec::with_capacity(rows.len());
        for r in rows {
            let tx_text: String = r.try_get("tx")?;
            let occurred: Option<String> = r.try_get("occurred_at")?;
            batch.push(EventRow {
                aggregate_type: r.try_get("aggregate_type")?,
                aggregate_id: r.try_get("aggregate_id")?,
                sequence: r.try_get("sequence")?,
                global_position: r.try_get("global_position")?,
                tx_id: tx_text.parse().map_err(|_| {
                    ReadModelError::Corrupt(format!("tx id {tx_text} is not a number"))
                })?,
                event_type: r.try_get("event_type")?,
                event_version: r.try_get("event_version")?,
                payload: r.try_get("payload")?,
                occurred_at: occurred
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
            });
        }
        Ok(batch)
    }

    /// Reads the batch after `from` on a connection of its own, for
    /// [`Runtime::advance_level`]'s next call; `None` if no connection is free
    /// soon or the read fails (the next call then reads it itself).
    pub(super) async fn read_ahead(&self, from: (u64, i64), limit: i64) -> Option<Prefetched> {
        let mut conn = tokio::time::timeout(Duration::from_millis(50), self.pool.acquire())
            .await
            .ok()?
            .ok()?;
        let rows = self
            .read_batch(&mut conn, &from.0.to_string(), from.1, limit)
            .await
            .ok()?;
        Some(Prefetched { from, rows })
    }
}
