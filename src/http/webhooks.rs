//! Webhook endpoints over REST (admins only, by the allowlist):
//! `POST /v1/webhooks` registers one (its secret in the answer, once),
//! `GET /v1/webhooks` and `GET /v1/webhooks/{webhook_id}` show them (no
//! secret), `DELETE` removes one, `…/attempts` and `…/dead-letters` list
//! what happened, `…/dead-letters/replay` and `…/replay` deliver again,
//! `…/enable` re-enables a disabled one. Not idempotent commands (no
//! `Idempotency-Key`): a registration's answer holds the secret, which is
//! never stored for replay; registering a URL twice is `409`. The work is
//! [`crate::subscriptions::webhooks::admin`]'s.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use uuid::Uuid;

use super::extract::read_json;
use super::gate::{Asked, Operation, OwnedAccess};
use super::{query_params, AppState};
use crate::app::Caller;
use crate::error::{ApiError, Result};
use crate::subscriptions::webhooks::admin::{self, Registration};

/// Every route of this resource, as the allowlist names them.
pub const ROUTES: [(&str, &str); 9] = [
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{webhook_id}"),
    ("DELETE", "/v1/webhooks/{webhook_id}"),
    ("GET", "/v1/webhooks/{webhook_id}/attempts"),
    ("GET", "/v1/webhooks/{webhook_id}/dead-letters"),
    ("POST", "/v1/webhooks/{webhook_id}/dead-letters/replay"),
    ("POST", "/v1/webhooks/{webhook_id}/replay"),
    ("POST", "/v1/webhooks/{webhook_id}/enable"),
];

/// The most rows a list answers.
const MAX_LIMIT: i64 = 1000;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", post(register).get(list))
        .route("/v1/webhooks/{webhook_id}", get(show).delete(delete))
        .route("/v1/webhooks/{webhook_id}/attempts", get(attempts))
        .route("/v1/webhooks/{webhook_id}/dead-letters", get(dead_letters))
        .route(
            "/v1/webhooks/{webhook_id}/dead-letters/replay",
            post(replay_dead_letters),
        )
        .route("/v1/webhooks/{webhook_id}/replay", post(replay))
        .route("/v1/webhooks/{webhook_id}/enable", post(enable))
}

/// The operation the gate names a webhook request after: its allowlist
/// endpoint (`POST /v1/webhooks`, …); `None` outside this resource.
pub(super) fn operation(method: &Method, route: &str) -> Option<Operation> {
    // axum answers HEAD with the GET handler: it passes the same gate.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let (m, r) = ROUTES.iter().find(|(m, r)| *m == method && *r == route)?;
    let key = format!("{m} {r}");
    Some(Operation {
        name: key.clone(),
        access: OwnedAccess::Endpoint(key),
        fast_path: false,
    })
}

/// An endpoint id from the path: anything but a UUID names no endpoint.
fn endpoint_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("no such webhook endpoint".into()))
}

/// `?limit=` (1 to 1000, default 100).
fn limit(query: Option<&str>) -> Result<i64> {
    let params = query_params(query, &["limit"])?;
    match params.get("limit") {
        None => Ok(100),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::Validation {
                detail: format!("limit is a whole number from 1 to {MAX_LIMIT}"),
                field: Some("limit".into()),
            }),
    }
}

async fn register(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    let body = read_json(&headers, body, state.limits.max_body_bytes).await?;
    asked.body(&body);
    let registration: Registration =
        serde_json::from_value(body).map_err(|e| ApiError::from_serde(&e))?;
    let now = state.app.clock.now();
    let answer = admin::register(
        &state.app.pool,
        state.webhook_urls,
        &caller.key_name,
        now,
        registration,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>> {
    Ok(Json(admin::list(&state.app.pool).await?))
}

async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(admin::show(&state.app.pool, endpoint_id(&id)?).await?))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let now = state.app.clock.now();
    let answer = admin::delete(&state.app.pool, endpoint_id(&id)?, &caller.key_name, now).await?;
    Ok(Json(answer))
}

async fn attempts(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let (id, limit) = (endpoint_id(&id)?, limit(query.as_deref())?);
    Ok(Json(admin::attempts(&state.app.pool, id, limit).await?))
}

async fn dead_letters(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let (id, limit) = (endpoint_id(&id)?, limit(query.as_deref())?);
    Ok(Json(admin::dead_letters(&state.app.pool, id, limit).await?))
}

/// Reads a body that must be `{}` or absent.
async fn empty_body(
    state: &AppState,
    asked: &Asked,
    headers: &HeaderMap,
    body: Body,
) -> Result<()> {
    let body = read_json(headers, body, state.limits.max_body_bytes).await?;
    asked.body(&body);
    match body.as_object().and_then(|o| o.keys().next()) {
        None => Ok(()),
        Some(k) => Err(ApiError::Validation {
            detail: "this request takes no fields".into(),
            field: Some(k.chars().filter(|c| !c.is_control()).take(64).collect()),
        }),
    }
}

async fn replay_dead_letters(
    State(state): State<AppState>,
    _caller: Caller,
    asked: Asked,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    let id = endpoint_id(&id)?;
    empty_body(&state, &asked, &headers, body).await?;
    let now = state.app.clock.now();
    let answer = admin::replay_dead_letters(&state.app.pool, id, now).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// `{"from_position": N}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayFrom {
    from_position: i64,
}

async fn replay(
    State(state): State<AppState>,
    _caller: Caller,
    asked: Asked,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let id = endpoint_id(&id)?;
    let body = read_json(&headers, body, state.limits.max_body_bytes).await?;
    asked.body(&body);
    let asked: ReplayFrom = serde_json::from_value(body).map_err(|e| ApiError::from_serde(&e))?;
    Ok(Json(
        admin::replay_from(&state.app.pool, id, asked.from_position).await?,
    ))
}

async fn enable(
    State(state): State<AppState>,
    _caller: Caller,
    asked: Asked,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let id = endpoint_id(&id)?;
    empty_body(&state, &asked, &headers, body).await?;
    Ok(Json(admin::enable(&state.app.pool, id).await?))
}
