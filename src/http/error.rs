//! `ApiError` as an HTTP answer: problem+json, `Retry-After` on 503, and
//! internal errors logged once with their cause chain and answered opaquely.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::Role;
use crate::error::ApiError;
use crate::tools::gate::{Access, Refusal};

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// Marks an answer that is part of the contract's normal flow although its
/// status is 5xx — `503 projection_behind`, a read model not yet at the
/// caller's `min_position` — so that the request's log line says INFO, not
/// WARN or ERROR (`super::observe`).
#[derive(Debug, Clone, Copy)]
pub struct ExpectedWait;

/// Builds a problem+json response from a status and body bytes.
pub fn problem_response(status: u16, body: Vec<u8>) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == 503 || status == 429 {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            ApiError::Unavailable => tracing::warn!("database unavailable"),
            _ => {}
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = problem_response(self.status(), body);
        if let ApiError::ProjectionBehind { .. } = self {
            resp.extensions_mut().insert(ExpectedWait);
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            // The key's own wait, as the problem's `retry_after` says.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// How REST and the pages (`rest_error`) and the tool transports
/// (`tool_error`) answer a call the gate did not admit.
impl Refusal {
    /// As REST and the pages answer it: `429 rate_limited`, or `403
    /// forbidden` naming the tool or endpoint.
    pub fn rest_error(self, role: Role, access: Access<'_>) -> ApiError {
        match (self, access) {
            (Refusal::RateLimited { retry_after_secs }, _) => {
                ApiError::RateLimited { retry_after_secs }
            }
            (Refusal::NotAllowed, Access::Tool(tool)) => {
                ApiError::Forbidden(format!("role `{}` may not call `{tool}`", role.as_str()))
            }
            (Refusal::NotAllowed, Access::Endpoint(endpoint)) => {
                ApiError::Forbidden(format!("role `{}` may not call {endpoint}", role.as_str()))
            }
            (Refusal::NotAllowed, Access::Handler) => {
                ApiError::Forbidden(format!("role `{}` may not call this", role.as_str()))
            }
        }
    }

    /// As the tool transports answer it: `429 rate_limited`, or `403
    /// tool_not_allowed` (also for a tool that does not exist).
    pub fn tool_error(self, role: Role, tool_echo: &str) -> ApiError {
        match self {
            Refusal::RateLimited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            Refusal::NotAllowed => ApiError::ToolNotAllowed(format!(
                "role `{}` may not call `{tool_echo}`",
                role.as_str()
            )),
        }
    }
}
