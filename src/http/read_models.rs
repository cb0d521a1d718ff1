//! The read-model queries: board, billing readiness, roster, schedules,
//! approvals, projection status. Each answer carries its position. The gate
//! (`super::gate`) checks the allowlist and the rate limit before these run.

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{query_params, AppState};
use crate::app::Caller;
use crate::domain::Role;
use crate::error::{ApiError, Result};

/// The routes of this resource (GET /v1/technicians lives with its POST in `technicians`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/board", get(board))
        .route("/v1/billing/readiness", get(billing))
        .route("/v1/technicians/{technician_id}/schedule", get(schedule))
        .route("/v1/approvals", get(approvals))
        .route("/v1/projections", get(projections))
}

fn params(query: Option<String>) -> Result<std::collections::HashMap<String, String>> {
    // Validation of names happens per query; here only decoding.
    query_params(
        query.as_deref(),
        &[
            "state",
            "priority",
            "technician_id",
            "client_id",
            "incident_type",
            "sla",
            "planned",
            "overdue",
            "checked_in_off_site",
            "limit",
            "min_position",
            "ready",
            "job_id",
            "include_final",
            "eligible_for",
            "territory",
            "shift",
            "status",
        ],
    )
}

async fn board(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(state.app.board(&params(q)?).await?))
}

async fn billing(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(state.app.billing_readiness(&params(q)?).await?))
}

/// `GET /v1/technicians` (routed from `technicians`).
pub async fn roster(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(state.app.technicians(&params(q)?).await?))
}

async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(technician_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    if caller.role == Role::Technician
        && caller.technician_id.as_deref() != Some(technician_id.as_str())
    {
        return Err(ApiError::Forbidden(
            "a technician sees only their own schedule".into(),
        ));
    }
    Ok(Json(state.app.schedule(&technician_id, &params(q)?).await?))
}

async fn approvals(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(state.app.approvals(&params(q)?).await?))
}

async fn projections(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>> {
    Ok(Json(state.app.projections_status().await?))
}
