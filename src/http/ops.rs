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
    let applied: Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.app.pool)
            .await;
    let models = crate::read_models::all().len() as i64;
    let registered: Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT count(*) FROM projection_registry")
            .fetch_one(&state.app.pool)
            .await;
    match applied {
        Ok(n) if n >= expected && registered.as_ref().is_ok_and(|r| *r >= models) => {
            (StatusCode::OK, Json(json!({"status": "ready", "database": "ok", "migrations": n, "read_models": models}))).into_response()
        }
        Ok(n) if n >= expected => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "database": "ok", "migrations": n, "read_models": "not registered"}))).into_response(),
        Ok(n) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "database": "ok", "migrations": n, "expected": expected}))).into_response(),
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
    Json(super::openapi::document(&state.allowlist))
}
