//! Reading the store's order after a subscription's cursor, and moving its
//! checkpoint.

use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

use super::{Result, SubscriptionError};
use crate::store::{EventMeta, StoredEvent};

/// A place in the store's order: the writing transaction and the global
/// position of the last event passed. `Cursor::START` is before everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cursor {
    /// The writing transaction (`xid8`).
    pub tx: u64,
    /// The global position.
    pub pos: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor { tx: 0, pos: 0 };
}

/// A batch read from the store: the events, each with its place.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The events in order.
    pub events: Vec<StoredEvent>,
    /// Each event's place (same index).
    pub cursors: Vec<Cursor>,
}

fn tx_of(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| SubscriptionError::Corrupt(format!("tx id {text} is not a number")))
}

/// Reads up to `limit` events after `after`, below the oldest running
/// transaction (a transaction still writing may commit events that sort
/// before the ones visible now; they are read when it has ended).
pub async fn read_after(conn: &mut PgConnection, after: Cursor, limit: i64) -> Result<Batch> {
    let rows = sqlx::query(
        "SELECT tx_id::text AS tx, aggregate_type, aggregate_id, sequence, global_position, event_id, \
                event_type, event_version, payload, metadata, prev_hash, hash, key_id, mac \
         FROM events \
         WHERE (tx_id, global_position) > ($1::text::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id, global_position LIMIT $3",
    )
    .bind(after.tx.to_string())
    .bind(after.pos)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut batch = Batch::default();
    for r in rows {
        let position: i64 = r.try_get("global_position")?;
        // Decoded straight from the row's JSON (no `Value` tree in between).
        let meta: EventMeta = r
            .try_get::<sqlx::types::Json<EventMeta>, _>("metadata")
            .map_err(|e| {
                SubscriptionError::Corrupt(format!(
                    "the metadata of the event at position {position} does not decode: {e}"
                ))
            })?
            .0;
        batch.cursors.push(Cursor {
            tx: tx_of(r.try_get("tx")?)?,
            pos: position,
        });
        batch.events.push(StoredEvent {
            event_id: r.try_get("event_id")?,
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            sequence: r.try_get("sequence")?,
            global_position: position,
            event_type: r.try_get("event_type")?,
            event_version: r.try_get("event_version")?,
            payload: r.try_get("payload")?,
            meta,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
            key_id: r.try_get("key_id")?,
            mac: r.try_get("mac")?,
        });
    }
    Ok(batch)
}

/// The place of the event with `event_id`, if the store holds it.
pub async fn cursor_of_event(pool: &PgPool, event_id: uuid::Uuid) -> Result<Option<Cursor>> {
    let row =
        sqlx::query("SELECT tx_id::text AS tx, global_position FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(pool)
            .await?;
    match row {
        Some(r) => Ok(Some(Cursor {
            tx: tx_of(r.try_get("tx")?)?,
            pos: r.try_get("global_position")?,
        })),
        None => Ok(None),
    }
}

/// The place just before the first event at or after global position
/// `from` (replays start there); the end of what is committed now when no
/// such event exists.
pub async fn cursor_before_position(pool: &PgPool, from: i64) -> Result<Cursor> {
    let row = sqlx::query(
        "SELECT tx_id::text AS tx, global_position FROM events WHERE global_position >= $1 \
         ORDER BY global_position LIMIT 1",
    )
    .bind(from)
    .fetch_optional(pool)
    .await?;
    match row {
        // Everything after (tx, p - 1): the event at p and all that follows
        // it in the order (an event of an earlier position but a later
        // transaction included).
        Some(r) => Ok(Cursor {
            tx: tx_of(r.try_get("tx")?)?,
            pos: r.try_get::<i64, _>("global_position")? - 1,
        }),
        None => head(pool).await,
    }
}

/// The end of what is committed now: the last event below the oldest
/// running transaction (a new subscription that starts "now" starts here;
/// anything a running transaction commits later sorts after it).
pub async fn head(pool: &PgPool) -> Result<Cursor> {
    let row = sqlx::query(
        "SELECT tx_id::text AS tx, global_position FROM events \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) => Ok(Cursor {
            tx: tx_of(r.try_get("tx")?)?,
            pos: r.try_get("global_position")?,
        }),
        None => Ok(Cursor::START),
    }
}

/// Creates a subscription's checkpoint at `start` unless it exists.
pub async fn ensure(pool: &PgPool, name: &str, kind: &str, start: Cursor) -> Result<()> {
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, kind, last_tx, last_pos) \
         VALUES ($1, $2, $3::text::xid8, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(kind)
    .bind(start.tx.to_string())
    .bind(start.pos)
    .execute(pool)
    .await?;
    Ok(())
}

/// A subscription's checkpoint, if it has one.
pub async fn checkpoint(pool: &PgPool, name: &str) -> Result<Option<Cursor>> {
    let row = sqlx::query(
        "SELECT last_tx::text AS tx, last_pos FROM subscription_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) => Ok(Some(Cursor {
            tx: tx_of(r.try_get("tx")?)?,
            pos: r.try_get("last_pos")?,
        })),
        None => Ok(None),
    }
}

/// What a checkpoint move found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Moved.
    Yes,
    /// The checkpoint is no longer where the mover read it (a replay reset
    /// it): nothing moved; read it again.
    Elsewhere,
    /// `by` no longer leads: nothing moved; stop delivering.
    NotLeader,
}

/// Moves a checkpoint from `from` to `to` (`delivered` events), if it still
/// stands at `from` and `by` leads.
pub async fn advance(
    pool: &PgPool,
    name: &str,
    by: &str,
    from: Cursor,
    to: Cursor,
    delivered: i64,
) -> Result<Moved> {
    let row = sqlx::query(
        "WITH leads AS (SELECT EXISTS (SELECT 1 FROM subscription_leader WHERE leader = $2) AS yes), \
              moved AS ( \
                UPDATE subscription_checkpoints SET last_tx = $5::text::xid8, last_pos = $6, \
                       events_delivered = events_delivered + $7, delivered_by = $2, delivered_at = now(), updated_at = now() \
                WHERE name = $1 AND last_tx = $3::text::xid8 AND last_pos = $4 AND (SELECT yes FROM leads) \
                RETURNING 1) \
         SELECT (SELECT yes FROM leads) AS leads, EXISTS (SELECT 1 FROM moved) AS moved",
    )
    .bind(name)
    .bind(by)
    .bind(from.tx.to_string())
    .bind(from.pos)
    .bind(to.tx.to_string())
    .bind(to.pos)
    .bind(delivered)
    .fetch_one(pool)
    .await?;
    Ok(if !r_bool(&row, "leads")? {
        Moved::NotLeader
    } else if r_bool(&row, "moved")? {
        Moved::Yes
    } else {
        Moved::Elsewhere
    })
}

fn r_bool(row: &sqlx::postgres::PgRow, name: &str) -> Result<bool> {
    Ok(row.try_get::<bool, _>(name)?)
}

/// Moves a checkpoint to `to` whatever it stood at (a replay, a sink that
/// already holds events past it).
pub async fn reset(pool: &PgPool, name: &str, to: Cursor) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE subscription_checkpoints SET last_tx = $2::text::xid8, last_pos = $3, updated_at = now() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(to.tx.to_string())
    .bind(to.pos)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records why a subscription could not deliver.
pub async fn record_error(pool: &PgPool, name: &str, error: &str) -> Result<()> {
    let error: String = error.chars().take(1000).collect();
    sqlx::query(
        "UPDATE subscription_checkpoints SET last_error = $2, last_error_at = now(), updated_at = now() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
