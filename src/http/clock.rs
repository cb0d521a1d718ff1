//! The test clock's control: `POST /v1/admin/clock` (admin only), served only
//! when the service runs with `DISPATCH_CLOCK=manual:<RFC 3339>`. With the
//! system clock the path does not exist (404 `not_found`), so production
//! cannot move time. The end-to-end scenarios (`e2e/`) use it to pass time
//! between check-in and check-out deterministically.
//!
//! Body: `{"advance_seconds": n}` (0 ≤ n ≤ ten years) or `{"set": "<RFC 3339>"}`,
//! and optionally `"tick": true`: the system actor's timers then run once at
//! the new time — after the read models they read (the board, the
//! follow-ups) have applied every committed event — before the answer (a scenario that sets
//! `DISPATCH_TIMER_INTERVAL_MS` high decides exactly when they act);
//! answer: `{"now": "<RFC 3339>"}` (with `tick`, also `"timers"`: what the
//! tick did). Not idempotent (`advance` twice moves twice), not an event:
//! the clock is the service's input, not the domain's.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::extract::read_json;
use super::AppState;
use crate::app::Caller;
use crate::clock::Clock;
use crate::domain::Role;
use crate::error::{ApiError, Result};

/// The longest single advance: ten years.
const MAX_ADVANCE_SECONDS: i64 = 10 * 366 * 24 * 3600;

/// The route, when the service's clock is manual; no route otherwise.
pub fn router(state: &AppState) -> Router<AppState> {
    if state.app.clock.manual().is_some() {
        Router::new().route("/v1/admin/clock", post(move_clock))
    } else {
        Router::new()
    }
}

fn invalid(field: &str, detail: &str) -> ApiError {
    ApiError::Validation {
        detail: detail.to_string(),
        field: Some(field.to_string()),
    }
}

async fn move_clock(
    State(state): State<AppState>,
    caller: Caller,
    asked: super::gate::Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "only an admin may move the test clock".into(),
        ));
    }
    let clock = state
        .app
        .clock
        .manual()
        .ok_or_else(|| ApiError::NotFound("no such endpoint".into()))?;
    let body = read_json(&headers, body, state.limits.max_body_bytes).await?;
    asked.body(&body);
    let fields = body.as_object().cloned().unwrap_or_default();
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "advance_seconds" | "set" | "tick"))
    {
        let name: String = unknown
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        return Err(invalid(
            &name,
            &format!("unknown field `{name}`: give advance_seconds or set"),
        ));
    }
    let tick = match fields.get("tick") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("tick", "tick must be true or false")),
    };
    match (fields.get("advance_seconds"), fields.get("set")) {
        (None, None) if tick => {}
        (Some(n), None) => {
            let secs = n
                .as_i64()
                .filter(|s| (0..=MAX_ADVANCE_SECONDS).contains(s))
                .ok_or_else(|| {
                    invalid(
                        "advance_seconds",
                        "advance_seconds must be a whole number from 0 to ten years",
                    )
                })?;
            clock.advance(Duration::seconds(secs));
        }
        (None, Some(t)) => {
            let to = t
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .ok_or_else(|| invalid("set", "set must be an RFC 3339 time"))?;
            clock.set(to.with_timezone(&Utc));
        }
        _ => {
            return Err(ApiError::Validation {
                detail: "give exactly one of advance_seconds and set (or only tick)".into(),
                field: None,
            })
        }
    }
    let now = clock.now();
    tracing::warn!(actor = %caller.key_name, %now, "test clock moved");
    let mut answer = json!({"now": now.to_rfc3339_opts(SecondsFormat::AutoSi, true)});
    if tick {
        // The timers read the board and the follow-ups' read model: a tick
        // asked for acts on everything committed before it.
        let head: Option<i64> = sqlx::query_scalar("SELECT max(global_position) FROM events")
            .fetch_one(&state.app.pool)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        for name in ["board", "door_followups"] {
            state.app.wait_for(name, head).await?;
        }
        let report = crate::timers::tick(&state.app)
            .await
            .map_err(ApiError::Internal)?;
        answer["timers"] = report.to_json();
    }
    Ok(Json(answer))
}
