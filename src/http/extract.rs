//! Request decoding shared by every handler: the caller from the bearer key,
//! the mutation headers, and bodies read within a size limit.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use crate::app::{keys, Caller, RequestMeta};
use crate::error::{ApiError, Result};
use crate::store::hash::{canonical_json, sha256_hex};
use crate::tools::gate::{Access, Refusal};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        // The gate (`super::gate`) resolved the key already on a `/v1` route.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let hash = keys::key_hash(bearer_key(&parts.headers)?)?;
        state.app.look_up_key(&hash).await
    }
}

/// The bearer key of a request (`Authorization: Bearer …`).
pub fn bearer_key(headers: &HeaderMap) -> Result<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?;
    let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
    Ok(value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized)?
        .trim())
}

/// Checks the allowlist for a tool-backed endpoint, without spending the
/// key's budget: the pages use it to decide what to show. Calls themselves pass
/// [`crate::tools::gate::Gate::admit`].
pub fn require_tool(state: &AppState, caller: &Caller, tool: &str) -> Result<()> {
    allowed(state, caller, Access::Tool(tool))
}

/// Checks the allowlist for a non-tool endpoint (`METHOD /path/{param}`),
/// without spending the key's budget (the pages' reads).
pub fn require_endpoint(state: &AppState, caller: &Caller, endpoint: &str) -> Result<()> {
    allowed(state, caller, Access::Endpoint(endpoint))
}

fn allowed(state: &AppState, caller: &Caller, access: Access<'_>) -> Result<()> {
    if state.tools.gate.allows(caller.role, access) {
        Ok(())
    } else {
        Err(Refusal::NotAllowed.rest_error(caller.role, access))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| ApiError::Validation {
            detail: format!("header {name} is not printable ASCII"),
            field: Some(name.to_string()),
        }),
    }
}

fn header_uuid(headers: &HeaderMap, name: &str) -> Result<Option<Uuid>> {
    super::decode::uuid_header(name, headers.get(name).map(|v| v.as_bytes()))
}

/// The longest idempotency key.
pub const IDEMPOTENCY_KEY_CHARS: usize = 200;

/// Checks an idempotency key that was given: 1-200 printable ASCII
/// characters (space to `~`). An empty one counts as not given
/// (`idempotency_key_required`); any other fault is `validation_error`
/// naming `field` (`Idempotency-Key`, or the argument that carried it).
pub fn check_idempotency_key(key: &[u8], field: &str) -> Result<String> {
    if key.is_empty() {
        return Err(ApiError::IdempotencyKeyRequired);
    }
    if !key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(ApiError::Validation {
            detail: format!(
                "{field} must be printable ASCII (space to ~): it has another character"
            ),
            field: Some(field.to_string()),
        });
    }
    if key.len() > IDEMPOTENCY_KEY_CHARS {
        return Err(ApiError::Validation {
            detail: format!(
                "{field} must be at most {IDEMPOTENCY_KEY_CHARS} characters (it has {})",
                key.len()
            ),
            field: Some(field.to_string()),
        });
    }
    Ok(String::from_utf8_lossy(key).into_owned())
}

/// The `Idempotency-Key` header: required ([`check_idempotency_key`]).
pub fn idempotency_key(headers: &HeaderMap) -> Result<String> {
    let value = headers
        .get("idempotency-key")
        .ok_or(ApiError::IdempotencyKeyRequired)?;
    check_idempotency_key(value.as_bytes(), "Idempotency-Key")
}

/// The `If-Match` header: a version, bare (`3`), quoted (`"3"`) or weak
/// (`W/"3"`), at most 18 digits — the document's pattern; anything else is
/// `validation_error`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    let Some(value) = header_str(headers, "if-match")? else {
        return Ok(None);
    };
    let bare = value.strip_prefix("W/").unwrap_or(value);
    let digits = match bare.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').unwrap_or(""),
        None => bare,
    };
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::Validation {
            detail: "If-Match must be a version like \"3\"".into(),
            field: Some("If-Match".into()),
        });
    }
    Ok(digits.parse().ok())
}

/// The Idempotency-Key (required), If-Match, correlation and causation ids.
pub fn mutation_meta(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<RequestMeta> {
    Ok(RequestMeta {
        idempotency_key: idempotency_key(headers)?,
        request_hash: request_hash(method, path, body),
        if_match: if_match(headers)?,
        correlation_id: header_uuid(headers, "x-correlation-id")?.unwrap_or_else(Uuid::new_v4),
        trace_id: crate::telemetry::trace::current_trace_id(),
        causation_id: header_uuid(headers, "x-causation-id")?,
        tool_invocation_id: None,
    })
}

/// SHA-256 of method, path and the body's canonical JSON.
pub fn request_hash(method: &str, path: &str, body: &Value) -> String {
    sha256_hex(format!("{method} {path}\n{}", canonical_json(body)).as_bytes())
}

/// Reads a body up to `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })
}

/// Reads a JSON object body (an empty body is `{}`): the `Content-Type` is
/// checked before the body is read, then [`super::decode::json_object`].
pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value> {
    super::decode::json_content_type(headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()))?;
    let bytes = read_body(headers, body, limit).await?;
    super::decode::json_object(&bytes)
}
