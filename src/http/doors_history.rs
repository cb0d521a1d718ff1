//! `GET /v1/doors/{door_id}/history`: a door as the registry has it, then
//! its history, newest first (`crate::app::door_history`). The gate admits
//! it under the `get_door_history` tool's roles.

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{query_params, AppState};
use crate::app::Caller;
use crate::error::Result;

/// The route of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/doors/{door_id}/history", get(history))
}

async fn history(
    State(state): State<AppState>,
    _caller: Caller,
    Path(door_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let params = query_params(q.as_deref(), &["limit", "before", "min_position"])?;
    Ok(Json(state.app.door_history(&door_id, &params).await?))
}
