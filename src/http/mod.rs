//! The HTTP API (axum): thin handlers that decode, call the application, and
//! encode. Each resource module exposes `router()`.

mod clock;
pub mod decode;
mod doors_history;
mod error;
mod evidence;
pub mod extract;
pub mod gate;
mod jobs;
mod mcp;
pub mod observe;
pub mod openapi;
mod ops;
pub mod pages;
mod read_models;
mod registry;
mod sops;
mod subscriptions;
mod technicians;
mod tools;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::problem_response;

use crate::app::{App, Reply};
use crate::error::{ApiError, Result};
use crate::tools::allowlist::Allowlist;

/// Body size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// JSON bodies.
    pub max_body_bytes: usize,
    /// Evidence uploads.
    pub max_evidence_bytes: usize,
    /// How long one request may take before it is answered 408.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 256 * 1024,
            max_evidence_bytes: 20 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The application.
    pub app: App,
    /// The allowlist every access check derives from.
    pub allowlist: Arc<Allowlist>,
    /// Size limits.
    pub limits: Limits,
    /// The Prometheus exporter, when installed.
    pub metrics: Option<PrometheusHandle>,
    /// The closed toolset: schemas, rate limit, settings (`POST /v1/tools`, `/mcp`).
    pub tools: Arc<crate::tools::Toolset>,
    /// Where webhook endpoints may point (`DISPATCH_WEBHOOKS_ALLOW_LOCAL`).
    pub webhook_urls: crate::subscriptions::webhooks::UrlPolicy,
}

/// The whole router. Every authenticated `/v1` route passes the one gate
/// ([`gate::rest`]: allowlist, per-key rate limit, invocation log);
/// `POST /v1/tools/{tool}` and `/mcp` pass the same gate in their shared
/// invocation path (`tools::invoke`), the pages' command forms in theirs.
/// Health, readiness, metrics, the document and the pages' reads are outside it.
pub fn router(state: AppState) -> Router {
    let timeout = state.limits.request_timeout;
    let gated = Router::new()
        .merge(jobs::router())
        .merge(technicians::router())
        .merge(registry::router())
        .merge(evidence::router())
        .merge(sops::router())
        .merge(subscriptions::router())
        .merge(webhooks::router())
        .merge(read_models::router())
        .merge(doors_history::router())
        .merge(tools::gated_router())
        .merge(clock::router(&state))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::rest,
        ));
    Router::new()
        .merge(gated)
        .merge(tools::router())
        .merge(ops::router())
        .merge(pages::router())
        .nest_service("/mcp", mcp::service(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        // Outermost: every answer is counted and logged, a panic's 500 too.
        .layer(axum::middleware::from_fn(observe::observe))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A stored or fresh mutation answer as an HTTP response.
pub fn reply_response(reply: Reply) -> Response {
    let mut resp = if reply.is_problem() {
        problem_response(reply.status, reply.body)
    } else {
        let mut r = (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
            reply.body,
        )
            .into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if reply.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Query parameters that take several values, as the OpenAPI document
/// says (`style: form`, `explode: true`): repeated, their values are joined
/// with commas (`state=a&state=b` is `state=a,b`, which is also accepted).
const REPEATABLE: &[&str] = &["state"];

/// Parses a query string, refusing parameters not in `allowed`. A repeated
/// parameter keeps its last value, but for [`REPEATABLE`] ones.
pub fn query_params(query: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::Validation {
                detail: format!(
                    "unknown query parameter `{}`",
                    k.chars().take(64).collect::<String>()
                ),
                field: Some(k.chars().take(64).collect()),
            });
        }
        match out.get_mut(k.as_ref()) {
            Some(values) if REPEATABLE.contains(&k.as_ref()) => {
                values.push(',');
                values.push_str(&v);
            }
            _ => {
                out.insert(k.into_owned(), v.into_owned());
            }
        }
    }
    Ok(out)
}
