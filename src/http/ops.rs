//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let expected = crate::db::MIGRATOR.iter().count() as i64;
    let models = crate::read_models::all().len() as i64;
    match state.app.readiness().await.ok_or(()) {
        Ok(r) if r.migrations >= expected && r.read_models_registered >= models => {
            (StatusCode::OK, Json(json!({"status": "ready", "database": "ok", "migrations": r.migrations, "read_models": models}))).into_response()
        }
        Ok(r) if r.migrations >= expected => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "database": "ok", "migrations": r.migrations, "read_models": "not registered"}))).into_response(),
        Ok(r) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "database": "ok", "migrations": r.migrations, "expected": expected}))).into_response(),
        Err(_) => {
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "database": "unreachable"}))).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, super::error::RETRY_AFTER_SECONDS.into());
            r
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(super::openapi::document(&state.allowlist, &state.app.sops))
}
