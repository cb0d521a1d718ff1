//! `/v1/technicians`: register a technician and run `update_skills` / `set_shift`
//! (the gate, `super::gate`, checked the allowlist and the rate limit).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::decode;
use super::extract::{mutation_meta, read_json};
use super::gate::Asked;
use super::{reply_response, AppState};
use crate::app::Caller;
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
