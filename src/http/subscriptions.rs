//! Events out: the subscriptions' status (`GET /v1/subscriptions`). The
//! gate (`super::gate`) checks the allowlist and the rate limit first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::AppState;
use crate::app::Caller;
use crate::error::Result;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/subscriptions", get(subscriptions))
}

/// Each subscription's position, lag and last error, and the replica
/// delivering them.
async fn subscriptions(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>> {
    Ok(Json(
        crate::subscriptions::status::status(&state.app.pool).await?,
    ))
}
