//! What the admin API does with webhook endpoints (`src/http/webhooks.rs`
//! decodes and encodes): register, list, show, delete, the attempts and
//! dead letters, replays, re-enabling. Not events: the endpoints are the
//! service's configuration, not something a job or the registry did.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::signing::new_secret;
use super::store::subscription;
use super::urls::{self, UrlError, UrlPolicy};
use crate::domain::event_types::check_filter;
use crate::subscriptions::{log, SubscriptionError};

/// The most event types one endpoint names.
pub const MAX_EVENT_TYPES: usize = 200;
/// The longest description.
pub const MAX_DESCRIPTION_BYTES: usize = 500;

/// Why an admin request is refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A body or parameter that does not decode or is out of bounds (400).
    #[error("{detail}")]
    Validation {
        /// What is wrong.
        detail: String,
        /// The field.
        field: Option<String>,
    },
    /// A URL the policy refuses (422 `webhook_url_refused`).
    #[error("{0}")]
    UrlRefused(String),
    /// An event type filter entry no event has (422 `unknown_event_type`).
    #[error("{0}")]
    UnknownEventType(String),
    /// The URL is registered already (409 `webhook_already_registered`).
    #[error("an endpoint with this url is registered already: {0}")]
    AlreadyRegistered(Uuid),
    /// No such endpoint (404).
    #[error("no such webhook endpoint")]
    NotFound,
    /// The database.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The subscription's bookkeeping.
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
}

fn invalid(field: &str, detail: impl Into<String>) -> WebhookError {
    WebhookError::Validation {
        detail: detail.into(),
        field: Some(field.to_string()),
    }
}

/// `POST /v1/webhooks`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Where deliveries go.
    pub url: String,
    /// `<aggregate type>.<EventType>`, `<aggregate type>.*` or `*`.
    pub event_types: Vec<String>,
    /// Whether contact names, phones and emails may be sent.
    #[serde(default)]
    pub include_personal_data: bool,
    /// What the endpoint is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// Checks a registration (everything but the URL's addresses); the event
/// types deduplicated and sorted.
fn checked_types(r: &Registration) -> Result<Vec<String>, WebhookError> {
    if r.event_types.is_empty() || r.event_types.len() > MAX_EVENT_TYPES {
        return Err(invalid(
            "event_types",
            format!("give 1 to {MAX_EVENT_TYPES} event types (`*` for every one)"),
        ));
    }
    if let Some(d) = &r.description {
        if d.len() > MAX_DESCRIPTION_BYTES || d.chars().any(char::is_control) {
            return Err(invalid(
                "description",
                format!("at most {MAX_DESCRIPTION_BYTES} bytes, no control characters"),
            ));
        }
    }
    let mut types = Vec::with_capacity(r.event_types.len());
    for t in &r.event_types {
        check_filter(t).map_err(WebhookError::UnknownEventType)?;
        types.push(t.clone());
    }
    types.sort();
    types.dedup();
    Ok(types)
}

fn url_error(e: UrlError) -> WebhookError {
    match e {
        UrlError::Malformed(m) => invalid("url", m),
        UrlError::Refused(m) => WebhookError::UrlRefused(m),
    }
}

/// The live endpoint registered with `url`, if any.
async fn registered(pool: &PgPool, url: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE url = $1 AND deleted_at IS NULL")
        .bind(url)
        .fetch_optional(pool)
        .await
}

/// Registers an endpoint: checks the event types, the URL and its
/// addresses; makes its secret and its checkpoint at the store's head (it
/// gets the events committed from now on). The answer carries the secret —
/// the only time it is shown.
pub async fn register(
    pool: &PgPool,
    policy: UrlPolicy,
    by: &str,
    now: DateTime<Utc>,
    r: Registration,
) -> Result<Value, WebhookError> {
    let types = checked_types(&r)?;
    let url = urls::check(&r.url, policy).map_err(url_error)?;
    if let Some(id) = registered(pool, url.as_str()).await? {
        return Err(WebhookError::AlreadyRegistered(id));
    }
    let url = urls::check_resolved(url.as_str(), policy)
        .await
        .map_err(url_error)?;
    let id = Uuid::new_v4();
    let secret = new_secret();
    let head = log::head(pool).await?;
    let inserted = sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, event_types, include_personal_data, secret, description, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(url.as_str())
    .bind(&types)
    .bind(r.include_personal_data)
    .bind(&secret)
    .bind(&r.description)
    .bind(by)
    .bind(now)
    .execute(pool)
    .await;
    match inserted {
        Err(e) if crate::store::is_unique_violation(&e) => {
            let other = registered(pool, url.as_str()).await?.unwrap_or_default();
            return Err(WebhookError::AlreadyRegistered(other));
        }
        other => other?,
    };
    if let Err(e) = log::ensure(pool, &subscription(id), "webhook", head).await {
        // No checkpoint, no deliveries: the registration is undone.
        let _ = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await;
        return Err(e.into());
    }
    tracing::info!(endpoint = %id, url = %url, by, "webhook endpoint registered");
    let mut answer = show(pool, id).await?;
    answer["secret"] = json!(secret);
    Ok(answer)
}

const VIEW: &str = "SELECT w.id, w.url, w.event_types, w.include_personal_data, w.description, w.status, \
        w.disabled_reason, w.disabled_at, w.failing_since, w.created_by, w.created_at, \
        c.last_pos, c.events_delivered, c.delivered_at, c.last_error, c.last_error_at, \
        (SELECT count(*) FROM webhook_dead_letters d WHERE d.endpoint_id = w.id AND d.replayed_at IS NULL) AS dead_letters, \
        (SELECT count(*) FROM webhook_retries r WHERE r.endpoint_id = w.id) AS retrying \
     FROM webhook_endpoints w LEFT JOIN subscription_checkpoints c ON c.name = 'webhook:' || w.id::text \
     WHERE w.deleted_at IS NULL";

fn view(r: &PgRow) -> Result<Value, sqlx::Error> {
    let id: Uuid = r.try_get("id")?;
    let at = |name: &str| r.try_get::<Option<DateTime<Utc>>, _>(name);
    Ok(json!({
        "id": id,
        "subscription": subscription(id),
        "url": r.try_get::<String, _>("url")?,
        "event_types": r.try_get::<Vec<String>, _>("event_types")?,
        "include_personal_data": r.try_get::<bool, _>("include_personal_data")?,
        "description": r.try_get::<Option<String>, _>("description")?,
        "status": r.try_get::<String, _>("status")?,
        "disabled_reason": r.try_get::<Option<String>, _>("disabled_reason")?,
        "disabled_at": at("disabled_at")?,
        "failing_since": at("failing_since")?,
        "created_by": r.try_get::<String, _>("created_by")?,
        "created_at": r.try_get::<DateTime<Utc>, _>("created_at")?,
        "position": r.try_get::<Option<i64>, _>("last_pos")?,
        "events_delivered": r.try_get::<Option<i64>, _>("events_delivered")?.unwrap_or(0),
        "delivered_at": at("delivered_at")?,
        "last_error": r.try_get::<Option<String>, _>("last_error")?,
        "last_error_at": at("last_error_at")?,
        "dead_letters": r.try_get::<i64, _>("dead_letters")?,
        "retrying": r.try_get::<i64, _>("retrying")?,
    }))
}

/// Every live endpoint (no secrets).
pub async fn list(pool: &PgPool) -> Result<Value, WebhookError> {
    let rows = sqlx::query(&format!("{VIEW} ORDER BY w.created_at, w.id"))
        .fetch_all(pool)
        .await?;
    let items = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "webhooks": items }))
}

/// One endpoint: its standing, position and lag, and the events it is
/// retrying (no secret).
pub async fn show(pool: &PgPool, id: Uuid) -> Result<Value, WebhookError> {
    let row = sqlx::query(&format!("{VIEW} AND w.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(WebhookError::NotFound)?;
    let mut v = view(&row)?;
    let lag = sqlx::query(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos) ORDER BY e.tx_id, e.global_position LIMIT 1000000) x) AS lag_events, \
                COALESCE(EXTRACT(EPOCH FROM now() - (SELECT e.recorded_at FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos) ORDER BY e.tx_id, e.global_position LIMIT 1)), 0)::float8 AS lag_seconds \
         FROM subscription_checkpoints c WHERE c.name = $1",
    )
    .bind(subscription(id))
    .fetch_optional(pool)
    .await?;
    v["lag_events"] = json!(lag
        .as_ref()
        .map(|r| r.try_get::<i64, _>("lag_events"))
        .transpose()?);
    v["lag_seconds"] = json!(lag
        .as_ref()
        .map(|r| r.try_get::<f64, _>("lag_seconds"))
        .transpose()?);
    let retrying = sqlx::query(
        "SELECT event_id, global_position, attempts, first_failed_at, last_error, last_attempt_at \
         FROM webhook_retries WHERE endpoint_id = $1 ORDER BY global_position LIMIT 100",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    v["retrying_events"] = retrying
        .iter()
        .map(|r| {
            Ok(json!({
                "event_id": r.try_get::<Uuid, _>("event_id")?,
                "global_position": r.try_get::<i64, _>("global_position")?,
                "attempts": r.try_get::<i32, _>("attempts")?,
                "first_failed_at": r.try_get::<DateTime<Utc>, _>("first_failed_at")?,
                "last_attempt_at": r.try_get::<DateTime<Utc>, _>("last_attempt_at")?,
                "last_error": r.try_get::<String, _>("last_error")?,
            }))
        })
        .collect::<Result<Vec<Value>, sqlx::Error>>()?
        .into();
    Ok(v)
}

/// Deletes an endpoint: no more deliveries (its checkpoint and retries go);
/// its attempts and dead letters stay in the database; its URL may be
/// registered again.
pub async fn delete(
    pool: &PgPool,
    id: Uuid,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Value, WebhookError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at = $2, deleted_by = $3 WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(WebhookError::NotFound);
    }
    sqlx::query("DELETE FROM subscription_checkpoints WHERE name = $1")
        .bind(subscription(id))
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM webhook_retries WHERE endpoint_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE webhook_dead_letters SET replay_requested_at = NULL WHERE endpoint_id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(endpoint = %id, by, "webhook endpoint deleted");
    Ok(json!({ "id": id, "deleted_at": now }))
}

/// Not found unless `id` is a live endpoint.
async fn exists(pool: &PgPool, id: Uuid) -> Result<(), WebhookError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    found.map(|_| ()).ok_or(WebhookError::NotFound)
}

/// Locks a live endpoint's row and bumps its generation (a running sink
/// drops what it remembers); not found when it is deleted.
async fn bump(tx: &mut sqlx::PgConnection, id: Uuid, enable: bool) -> Result<(), WebhookError> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET generation = generation + 1, \
            status = CASE WHEN $2 THEN 'enabled' ELSE status END, \
            disabled_reason = CASE WHEN $2 THEN NULL ELSE disabled_reason END, \
            disabled_at = CASE WHEN $2 THEN NULL ELSE disabled_at END, \
            failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(enable)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(WebhookError::NotFound);
    }
    sqlx::query("DELETE FROM webhook_retries WHERE endpoint_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Re-enables an endpoint: deliveries resume at its checkpoint, every event
/// with a fresh retry window, the failing time cleared. An enabled one is
/// left as it is.
pub async fn enable(pool: &PgPool, id: Uuid) -> Result<Value, WebhookError> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    match status.as_deref() {
        None => return Err(WebhookError::NotFound),
        Some("enabled") => {}
        Some(_) => {
            let mut tx = pool.begin().await?;
            bump(&mut tx, id, true).await?;
            tx.commit().await?;
            tracing::info!(endpoint = %id, "webhook endpoint enabled again");
        }
    }
    show(pool, id).await
}

/// Replays an endpoint from `from_position`: its checkpoint is put just
/// before the first event at or after that position (past the end: at the
/// end, skipping what was not delivered), every event from there is
/// delivered again, with fresh retry windows.
pub async fn replay_from(
    pool: &PgPool,
    id: Uuid,
    from_position: i64,
) -> Result<Value, WebhookError> {
    if from_position < 1 {
        return Err(invalid(
            "from_position",
            "from_position is a global position, 1 or more",
        ));
    }
    exists(pool, id).await?;
    let to = log::cursor_before_position(pool, from_position).await?;
    // The checkpoint first, then the generation: a sink that sees the new
    // generation reads from the new checkpoint.
    if !log::reset(pool, &subscription(id), to).await? {
        return Err(WebhookError::NotFound);
    }
    let mut tx = pool.begin().await?;
    bump(&mut tx, id, false).await?;
    tx.commit().await?;
    tracing::info!(endpoint = %id, from_position, "webhook endpoint replayed from a position");
    Ok(json!({ "id": id, "from_position": from_position, "position": to.pos }))
}

/// Asks for the endpoint's dead letters (those not replayed yet) to be
/// delivered again; the leading replica does it (`replay.rs`). How many.
pub async fn replay_dead_letters(
    pool: &PgPool,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Value, WebhookError> {
    exists(pool, id).await?;
    let queued = sqlx::query(
        "UPDATE webhook_dead_letters SET replay_requested_at = $2 \
         WHERE endpoint_id = $1 AND replayed_at IS NULL AND replay_requested_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(json!({ "id": id, "queued": queued }))
}

/// The newest attempts (at most `limit`).
pub async fn attempts(pool: &PgPool, id: Uuid, limit: i64) -> Result<Value, WebhookError> {
    exists(pool, id).await?;
    let rows = sqlx::query(
        "SELECT event_id, global_position, attempt, http_status, error, latency_ms, at FROM webhook_attempts \
         WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "event_id": r.try_get::<Uuid, _>("event_id")?,
                "global_position": r.try_get::<i64, _>("global_position")?,
                "attempt": r.try_get::<i32, _>("attempt")?,
                "http_status": r.try_get::<Option<i32>, _>("http_status")?,
                "error": r.try_get::<Option<String>, _>("error")?,
                "latency_ms": r.try_get::<i32, _>("latency_ms")?,
                "at": r.try_get::<DateTime<Utc>, _>("at")?,
            }))
        })
        .collect::<Result<Vec<Value>, sqlx::Error>>()?;
    Ok(json!({ "attempts": items }))
}

/// The dead letters, newest first (at most `limit`), replayed ones too.
pub async fn dead_letters(pool: &PgPool, id: Uuid, limit: i64) -> Result<Value, WebhookError> {
    exists(pool, id).await?;
    let rows = sqlx::query(
        "SELECT event_id, global_position, attempts, last_error, first_failed_at, dead_at, replay_requested_at, replayed_at \
         FROM webhook_dead_letters WHERE endpoint_id = $1 ORDER BY dead_at DESC, global_position DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let at = |name: &str| r.try_get::<Option<DateTime<Utc>>, _>(name);
            Ok(json!({
                "event_id": r.try_get::<Uuid, _>("event_id")?,
                "global_position": r.try_get::<i64, _>("global_position")?,
                "attempts": r.try_get::<i32, _>("attempts")?,
                "last_error": r.try_get::<String, _>("last_error")?,
                "first_failed_at": r.try_get::<DateTime<Utc>, _>("first_failed_at")?,
                "dead_at": r.try_get::<DateTime<Utc>, _>("dead_at")?,
                "replay_requested_at": at("replay_requested_at")?,
                "replayed_at": at("replayed_at")?,
            }))
        })
        .collect::<Result<Vec<Value>, sqlx::Error>>()?;
    Ok(json!({ "dead_letters": items }))
}
