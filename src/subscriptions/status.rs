//! What the subscriptions report: each one's position, lag and last error,
//! and which replica delivers them (`GET /v1/subscriptions`,
//! `dispatch-api subscriptions status`, the metrics).

use serde_json::{json, Value};
use sqlx::{PgPool, Row};

use super::Result;

/// Every subscription: position, events delivered, lag (events and the age
/// of the first event not yet delivered, counted like the projectors' lag),
/// who delivered last and when, the last error, and whether it is failing
/// now (an error since its last delivery); and the replica leading.
pub async fn status(pool: &PgPool) -> Result<Value> {
    let rows = sqlx::query(
        "SELECT c.name, c.kind, c.last_pos, c.events_delivered, c.delivered_by, c.delivered_at, c.last_error, c.last_error_at, \
                (c.last_error_at IS NOT NULL AND c.last_error_at > COALESCE(c.delivered_at, '-infinity')) AS failing, \
                (SELECT count(*) FROM (SELECT 1 FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos) ORDER BY e.tx_id, e.global_position LIMIT 1000000) x) AS lag_events, \
                COALESCE(EXTRACT(EPOCH FROM now() - (SELECT e.recorded_at FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos) ORDER BY e.tx_id, e.global_position LIMIT 1)), 0)::float8 AS lag_seconds \
         FROM subscription_checkpoints c ORDER BY c.kind, c.name",
    )
    .fetch_all(pool)
    .await?;
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        list.push(json!({
            "name": r.try_get::<String, _>("name")?,
            "kind": r.try_get::<String, _>("kind")?,
            "position": r.try_get::<i64, _>("last_pos")?,
            "events_delivered": r.try_get::<i64, _>("events_delivered")?,
            "lag_events": r.try_get::<i64, _>("lag_events")?,
            "lag_seconds": r.try_get::<f64, _>("lag_seconds")?,
            "delivered_by": r.try_get::<Option<String>, _>("delivered_by")?,
            "delivered_at": r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("delivered_at")?,
            "last_error": r.try_get::<Option<String>, _>("last_error")?,
            "last_error_at": r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("last_error_at")?,
            "failing": r.try_get::<bool, _>("failing")?,
        }));
    }
    let leader = sqlx::query("SELECT leader, since FROM subscription_leader")
        .fetch_optional(pool)
        .await?;
    let leader = match leader {
        Some(r) => json!({
            "instance": r.try_get::<String, _>("leader")?,
            "since": r.try_get::<chrono::DateTime<chrono::Utc>, _>("since")?,
        }),
        None => Value::Null,
    };
    Ok(json!({ "subscriptions": list, "leader": leader }))
}

/// Publishes each subscription's lag and failing state as gauges
/// (`dispatch_subscription_lag_events`, `dispatch_subscription_lag_seconds`,
/// `dispatch_subscription_failing`), labelled by subscription.
pub async fn publish_metrics(pool: &PgPool) {
    let Ok(status) = status(pool).await else {
        return;
    };
    for s in status["subscriptions"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default().to_string();
        metrics::gauge!("dispatch_subscription_lag_events", "subscription" => name.clone())
            .set(s["lag_events"].as_f64().unwrap_or(0.0));
        metrics::gauge!("dispatch_subscription_lag_seconds", "subscription" => name.clone())
            .set(s["lag_seconds"].as_f64().unwrap_or(0.0));
        metrics::gauge!("dispatch_subscription_failing", "subscription" => name).set(
            if s["failing"].as_bool() == Some(true) {
                1.0
            } else {
                0.0
            },
        );
    }
}

/// A subscription that has delivered nothing for a while and whose last
/// attempt failed: what the board's operators are shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Stalled {
    /// The subscription (`nats`, `webhook:<id>`).
    pub name: String,
    /// Its last delivery (or its creation, if it never delivered).
    pub since: chrono::DateTime<chrono::Utc>,
    /// Why its last attempt failed.
    pub error: String,
}

/// The subscriptions failing with nothing delivered for at least
/// `for_secs` seconds (a moment's hiccup is not shown).
pub async fn stalled(pool: &PgPool, for_secs: i64) -> Result<Vec<Stalled>> {
    let rows = sqlx::query(
        "SELECT name, COALESCE(delivered_at, created_at) AS since, last_error FROM subscription_checkpoints \
         WHERE last_error_at IS NOT NULL AND last_error_at > COALESCE(delivered_at, '-infinity') \
           AND COALESCE(delivered_at, created_at) < now() - make_interval(secs => $1) \
         ORDER BY name",
    )
    .bind(for_secs as f64)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Stalled {
            name: r.try_get("name")?,
            since: r.try_get("since")?,
            error: r
                .try_get::<Option<String>, _>("last_error")?
                .unwrap_or_default(),
        });
    }
    Ok(out)
}
