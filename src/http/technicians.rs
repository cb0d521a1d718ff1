//! `/v1/technicians`: register a technician and run `update_skills` / `set_shift`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::extract::{mutation_meta, read_json, require_endpoint};
use super::{reply_response, AppState};
use crate::app::Caller;
use crate::domain::technician::{TechnicianCommand, TECHNICIAN_COMMANDS};
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
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    require_endpoint(&state, &caller, "POST /v1/technicians")?;
    let value = read_json(&headers, body, state.limits.max_body_bytes).await?;
    let meta = mutation_meta(&headers, "POST", "/v1/technicians", &value)?;
    let cmd = serde_json::from_value(value).map_err(|e| ApiError::from_serde(&e))?;
    let reply = state
        .app
        .execute_technician(
            &caller,
            &meta,
            None,
            TechnicianCommand::RegisterTechnician(cmd),
        )
        .await?;
    Ok(reply_response(reply))
}

async fn command(
    State(state): State<AppState>,
    caller: Caller,
    Path((technician_id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if !TECHNICIAN_COMMANDS.contains(&command.as_str()) {
        return Err(ApiError::NotFound(
            "no technician command by that name".into(),
        ));
    }
    require_endpoint(
        &state,
        &caller,
        &format!("POST /v1/technicians/{{technician_id}}/commands/{command}"),
    )?;
    let value = read_json(&headers, body, state.limits.max_body_bytes).await?;
    let meta = mutation_meta(
        &headers,
        "POST",
        &format!("/v1/technicians/{technician_id}/commands/{command}"),
        &value,
    )?;
    let cmd = TechnicianCommand::decode(&command, value)
        .map_err(|e| ApiError::from_serde(&e))?
        .ok_or_else(|| ApiError::NotFound("unknown command".into()))?;
    let reply = state
        .app
        .execute_technician(&caller, &meta, Some(&technician_id), cmd)
        .await?;
    Ok(reply_response(reply))
}
