//! `/v1/technicians`: register a technician, run `update_skills` /
//! `set_shift`, and make a one-time sign-in link for a technician's phone
//! (the gate, `super::gate`, checked the allowlist and the rate limit).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::decode;
use super::extract::{mutation_meta, read_json};
use super::gate::Asked;
use super::{reply_response, AppState};
use crate::app::{field, Caller};
use crate::error::{ApiError, Result};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/technicians",
            post(register).get(super::read_models::roster),
        )
        .route(
            "/v1/technicians/{technician_id}/commands/{command}",
            post(command),
        )
        .route(
            "/v1/technicians/{technician_id}/signin-links",
            post(signin_link),
        )
}

/// The allowlist's name for making a sign-in link (REST and the
/// technicians page's button).
pub(crate) const SIGNIN_LINKS: &str = "POST /v1/technicians/{technician_id}/signin-links";

/// `POST /v1/technicians/{technician_id}/signin-links`: a new one-time link,
/// `201 {url, expires_at, technician_id, key_name}`. Not replayable by
/// design (no `Idempotency-Key`): the token is never stored, so an answer
/// cannot be given twice, and each call makes a new link.
async fn signin_link(
    State(state): State<AppState>,
    caller: Caller,
    Path(technician_id): Path<String>,
) -> Result<Response> {
    let now = state.app.clock.now();
    let link = field::create_signin_link(&state.app.pool, &caller, &technician_id, now).await?;
    let body = serde_json::json!({
        "technician_id": link.technician_id,
        "key_name": link.key_name,
        "url": super::pages::signin_path(&link.token),
        "expires_at": link.expires_at,
    });
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    // The answer carries the only copy of the token.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn register(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let value = read_json(&headers, body, state.limits.max_body_bytes).await?;
    asked.body(&value);
    let meta = mutation_meta(&headers, "POST", "/v1/technicians", &value)?;
    let cmd = decode::technician_command(decode::REGISTER_TECHNICIAN, value)?;
    let reply = state
        .app
        .execute_technician(&caller, &meta, None, cmd)
        .await?;
    Ok(reply_response(reply))
}

async fn command(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    Path((technician_id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if !decode::is_routed_technician_command(&command) {
        return Err(ApiError::NotFound(
            "no technician command by that name".into(),
        ));
    }
    let value = read_json(&headers, body, state.limits.max_body_bytes).await?;
    asked.body(&value);
    let meta = mutation_meta(
        &headers,
        "POST",
        &format!("/v1/technicians/{technician_id}/commands/{command}"),
        &value,
    )?;
    let cmd = decode::technician_command(&command, value)?;
    let reply = state
        .app
        .execute_technician(&caller, &meta, Some(&technician_id), cmd)
        .await?;
    Ok(reply_response(reply))
}
