//! Replaying dead letters: `POST /v1/webhooks/{id}/dead-letters/replay`
//! marks an endpoint's dead letters (not yet replayed) as requested; the
//! leading replica's [`super::WebhookSource`] then runs this for the
//! endpoint, outside the checkpoint's order: each requested event is
//! attempted once more (signed and shaped as any delivery, the attempt
//! logged, its number continuing the event's count). Delivered, the dead
//! letter is marked `replayed_at`; failed, it stays a dead letter with the
//! new error and count, and can be replayed again.

use std::sync::Arc;

use sqlx::Row;
use uuid::Uuid;

use super::sink::WebhookSink;
use super::store::{self, AttemptRecord};
use crate::store::StoredEvent;
use crate::subscriptions::{log, Cursor};

/// Dead letters taken per round.
const ROUND: i64 = 50;

/// Whether any endpoint has requested replays: the endpoints that have.
pub(super) async fn requested(pool: &sqlx::PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT DISTINCT endpoint_id FROM webhook_dead_letters \
         WHERE replay_requested_at IS NOT NULL AND replayed_at IS NULL",
    )
    .fetch_all(pool)
    .await
}

/// Replays the endpoint's requested dead letters, in position order, until
/// none is left.
pub(super) async fn run(sink: Arc<WebhookSink>) {
    let id = sink.endpoint.id;
    loop {
        match round(&sink).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(endpoint = %id, error = %e, "webhook: cannot replay dead letters; trying again later");
                return;
            }
        }
    }
}

/// One round: up to [`ROUND`] dead letters; how many were attempted.
async fn round(sink: &WebhookSink) -> Result<usize, String> {
    let pool = &sink.pool;
    let id = sink.endpoint.id;
    let rows = sqlx::query(
        "SELECT event_id, global_position, attempts FROM webhook_dead_letters \
         WHERE endpoint_id = $1 AND replay_requested_at IS NOT NULL AND replayed_at IS NULL \
         ORDER BY global_position LIMIT $2",
    )
    .bind(id)
    .bind(ROUND)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    for r in &rows {
        let event_id: Uuid = r.try_get("event_id").map_err(|e| e.to_string())?;
        let position: i64 = r.try_get("global_position").map_err(|e| e.to_string())?;
        let attempts: i32 = r.try_get("attempts").map_err(|e| e.to_string())?;
        let (status, error, latency_ms) = match load(pool, event_id).await? {
            Some(e) => {
                let o = sink.attempt(&e).await;
                let ms = i32::try_from(o.latency.as_millis()).unwrap_or(i32::MAX);
                (o.http_status.map(i32::from), o.error, ms)
            }
            None => (None, Some("the event is not in the store".to_string()), 0),
        };
        let now = sink.clock.now();
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        let record = AttemptRecord {
            event_id,
            position,
            attempt: attempts + 1,
            http_status: status,
            error: error.clone(),
            latency_ms,
            at: now,
        };
        store::insert_attempts(&mut tx, id, std::slice::from_ref(&record))
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(
            "UPDATE webhook_dead_letters SET attempts = attempts + 1, replay_requested_at = NULL, \
                replayed_at = CASE WHEN $3::text IS NULL THEN $4 END, last_error = COALESCE($3, last_error) \
             WHERE endpoint_id = $1 AND event_id = $2",
        )
        .bind(id)
        .bind(event_id)
        .bind(&error)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    Ok(rows.len())
}

/// The stored event with `event_id`.
async fn load(pool: &sqlx::PgPool, event_id: Uuid) -> Result<Option<StoredEvent>, String> {
    let Some(at) = log::cursor_of_event(pool, event_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
    // The first event after the place just before it is the event itself.
    let before = Cursor {
        tx: at.tx,
        pos: at.pos - 1,
    };
    let batch = log::read_after(&mut conn, before, 1)
        .await
        .map_err(|e| e.to_string())?;
    Ok(batch.events.into_iter().find(|e| e.event_id == event_id))
}
