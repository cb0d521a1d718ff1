//! What the webhook sink reads and writes: the endpoints, the events being
//! retried, and — once per batch, in one transaction — the attempts, the
//! retries, the dead letters and the endpoint's failing state.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// An endpoint as the sink needs it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The event filter.
    pub event_types: Vec<String>,
    /// Whether personal data is sent.
    pub include_personal_data: bool,
    /// The signing secret.
    pub secret: String,
}

/// What may change under a running sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// `enabled` (true) or `disabled`.
    pub enabled: bool,
    /// Bumped by a replay or a re-enable.
    pub generation: i64,
}

/// The subscription name of an endpoint (its checkpoint's key).
pub fn subscription(id: Uuid) -> String {
    format!("webhook:{id}")
}

/// The enabled endpoints that have a checkpoint (registration makes it).
pub async fn enabled(pool: &PgPool) -> sqlx::Result<Vec<Endpoint>> {
    let rows = sqlx::query(
        "SELECT w.id, w.url, w.event_types, w.include_personal_data, w.secret \
         FROM webhook_endpoints w JOIN subscription_checkpoints c ON c.name = 'webhook:' || w.id::text \
         WHERE w.status = 'enabled' AND w.deleted_at IS NULL ORDER BY w.created_at",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Endpoint {
                id: r.try_get("id")?,
                url: r.try_get("url")?,
                event_types: r.try_get("event_types")?,
                include_personal_data: r.try_get("include_personal_data")?,
                secret: r.try_get("secret")?,
            })
        })
        .collect()
}

/// An endpoint's standing; `None` when it was deleted.
pub async fn standing(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Standing>> {
    let row = sqlx::query(
        "SELECT status, generation FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Standing {
            enabled: r.try_get::<String, _>("status")? == "enabled",
            generation: r.try_get("generation")?,
        })
    })
    .transpose()
}

/// An event being retried.
#[derive(Debug, Clone)]
pub struct Retry {
    /// The event.
    pub event_id: Uuid,
    /// Its global position.
    pub position: i64,
    /// Attempts made.
    pub attempts: i32,
    /// When the first one failed (the retry window counts from it).
    pub first_failed_at: DateTime<Utc>,
    /// The last one's error.
    pub last_error: String,
    /// When the last one was made.
    pub last_attempt_at: DateTime<Utc>,
}

/// The events an endpoint is retrying.
pub async fn retries(pool: &PgPool, id: Uuid) -> sqlx::Result<Vec<Retry>> {
    let rows = sqlx::query(
        "SELECT event_id, global_position, attempts, first_failed_at, last_error, last_attempt_at \
         FROM webhook_retries WHERE endpoint_id = $1",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Retry {
                event_id: r.try_get("event_id")?,
                position: r.try_get("global_position")?,
                attempts: r.try_get("attempts")?,
                first_failed_at: r.try_get("first_failed_at")?,
                last_error: r.try_get("last_error")?,
                last_attempt_at: r.try_get("last_attempt_at")?,
            })
        })
        .collect()
}

/// One attempt, for the log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The event.
    pub event_id: Uuid,
    /// Its global position.
    pub position: i64,
    /// 1 for the first.
    pub attempt: i32,
    /// The receiver's status, when it answered.
    pub http_status: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: i32,
    /// When (the service's clock).
    pub at: DateTime<Utc>,
}

/// What one batch changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Every attempt made.
    pub attempts: Vec<AttemptRecord>,
    /// Events delivered (their retries end).
    pub delivered: Vec<Uuid>,
    /// Events that failed and will be retried.
    pub retried: Vec<Retry>,
    /// Events given up on (retries as they stood after the last attempt).
    pub dead: Vec<Retry>,
}

impl Changes {
    /// Whether any attempt succeeded.
    fn any_success(&self) -> bool {
        self.attempts.iter().any(|a| a.error.is_none())
    }

    /// The first failed attempt's time.
    fn first_failure(&self) -> Option<DateTime<Utc>> {
        self.attempts
            .iter()
            .filter(|a| a.error.is_some())
            .map(|a| a.at)
            .min()
    }
}

/// What recording a batch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Written; the endpoint fails since this time (`None`: it does not).
    Written(Option<DateTime<Utc>>),
    /// A replay or a re-enable came in between: only the attempts were
    /// written (what the sink remembered is stale).
    Stale,
}

/// Writes a batch's changes in one transaction: the attempts always; the
/// retries, dead letters and failing state only if the endpoint is still at
/// `generation`.
pub async fn record(
    pool: &PgPool,
    id: Uuid,
    generation: i64,
    changes: &Changes,
) -> sqlx::Result<Recorded> {
    let mut tx = pool.begin().await?;
    insert_attempts(&mut tx, id, &changes.attempts).await?;
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT generation FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if current != Some(generation) {
        tx.commit().await?;
        return Ok(Recorded::Stale);
    }
    let ended: Vec<Uuid> = changes
        .delivered
        .iter()
        .copied()
        .chain(changes.dead.iter().map(|d| d.event_id))
        .collect();
    sqlx::query("DELETE FROM webhook_retries WHERE endpoint_id = $1 AND event_id = ANY($2)")
        .bind(id)
        .bind(&ended)
        .execute(&mut *tx)
        .await?;
    for r in &changes.retried {
        sqlx::query(
            "INSERT INTO webhook_retries (endpoint_id, event_id, global_position, attempts, first_failed_at, last_error, last_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (endpoint_id, event_id) DO UPDATE SET attempts = EXCLUDED.attempts, \
                first_failed_at = EXCLUDED.first_failed_at, last_error = EXCLUDED.last_error, last_attempt_at = EXCLUDED.last_attempt_at",
        )
        .bind(id)
        .bind(r.event_id)
        .bind(r.position)
        .bind(r.attempts)
        .bind(r.first_failed_at)
        .bind(&r.last_error)
        .bind(r.last_attempt_at)
        .execute(&mut *tx)
        .await?;
    }
    for d in &changes.dead {
        sqlx::query(
            "INSERT INTO webhook_dead_letters (endpoint_id, event_id, global_position, attempts, last_error, first_failed_at, dead_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (endpoint_id, event_id) DO UPDATE SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, \
                first_failed_at = EXCLUDED.first_failed_at, dead_at = EXCLUDED.dead_at, replay_requested_at = NULL, replayed_at = NULL",
        )
        .bind(id)
        .bind(d.event_id)
        .bind(d.position)
        .bind(d.attempts)
        .bind(&d.last_error)
        .bind(d.first_failed_at)
        .bind(d.last_attempt_at)
        .execute(&mut *tx)
        .await?;
    }
    // Failing since the first failure with no success after it: a batch
    // with any success clears it (a failure in it is seen again next time).
    let failing_since: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE webhook_endpoints SET failing_since = CASE WHEN $2 THEN NULL ELSE COALESCE(failing_since, $3) END \
         WHERE id = $1 RETURNING failing_since",
    )
    .bind(id)
    .bind(changes.any_success())
    .bind(changes.first_failure())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Recorded::Written(failing_since))
}

/// Appends attempts to the log (one statement).
pub async fn insert_attempts(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    attempts: &[AttemptRecord],
) -> sqlx::Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&AttemptRecord) -> i64| attempts.iter().map(f).collect::<Vec<i64>>();
    let events: Vec<Uuid> = attempts.iter().map(|a| a.event_id).collect();
    let statuses: Vec<Option<i32>> = attempts.iter().map(|a| a.http_status).collect();
    let errors: Vec<Option<String>> = attempts.iter().map(|a| a.error.clone()).collect();
    let at: Vec<DateTime<Utc>> = attempts.iter().map(|a| a.at).collect();
    sqlx::query(
        "INSERT INTO webhook_attempts (endpoint_id, event_id, global_position, attempt, http_status, error, latency_ms, at) \
         SELECT $1, e, p, n::int, s, err, l::int, t \
         FROM UNNEST($2::uuid[], $3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::bigint[], $8::timestamptz[]) AS u(e, p, n, s, err, l, t)",
    )
    .bind(id)
    .bind(&events)
    .bind(col(|a| a.position))
    .bind(col(|a| i64::from(a.attempt)))
    .bind(&statuses)
    .bind(&errors)
    .bind(col(|a| i64::from(a.latency_ms)))
    .bind(&at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Disables an endpoint that has been failing since `since` (if it is
/// still enabled); whether this call disabled it.
pub async fn disable(
    pool: &PgPool,
    id: Uuid,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    last_error: &str,
) -> sqlx::Result<bool> {
    let reason = format!(
        "every delivery failed since {} (the last: {last_error})",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, disabled_at = $3 \
         WHERE id = $1 AND status = 'enabled' AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
