//! The closed toolset over HTTP — `GET /v1/tools` (the caller's manifest),
//! `POST /v1/tools/{tool}` (one tool_invocation envelope),
//! `GET /v1/tool-invocations` (the log of every transport) — and the
//! invocation path that the MCP transport (`super::mcp`) shares: the gate
//! (rate limit → allowlist) → envelope → input schema → exactly one command
//! or query → one log record.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::decode::{self, Invocation, ToolRequest};
use super::extract::{read_json, request_hash};
use super::{query_params, AppState};
use crate::app::read_models::{query_text, QUERY_TEXT_CHARS};
use crate::app::{Caller, RequestMeta};
use crate::domain::registry::Kind;
use crate::error::{ApiError, Result};
use crate::tools::gate::{self, plausible_id, Access, Call};
use crate::tools::log::{self, Outcome, Transport};
use crate::tools::manifest;

/// `POST /v1/tools/{tool}`: it passes the gate in [`invoke`], as MCP does.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tools/{tool}", post(call_tool))
}

/// The manifest and the log: REST routes, behind the REST gate (`super::gate`).
pub fn gated_router() -> Router<AppState> {
    Router::new()
        .route("/v1/tools", get(list_tools))
        .route("/v1/tool-invocations", get(invocations))
}

/// The answer to a tool call.
#[derive(Debug, Clone)]
pub struct ToolAnswer {
    /// The HTTP status (`POST /v1/tools/{tool}` answers with it; MCP records it).
    pub status: u16,
    /// `{invocation_id, tool, outcome, result | error}`.
    pub body: Value,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// A stored answer replayed for a retried key.
    pub replayed: bool,
    /// What became of it.
    pub outcome: Outcome,
}

/// What a dispatched call produced: a status and a body (which is a
/// problem document when the status is 400 or more — a replayed refusal).
struct Done {
    status: u16,
    body: Value,
    replayed: bool,
}

/// Runs one tool call end to end and records it, whatever happens.
pub async fn invoke(state: &AppState, caller: &Caller, inv: Invocation) -> ToolAnswer {
    let invocation_id = inv.invocation_id.unwrap_or_else(Uuid::new_v4);
    let tool_name = record_tool_name(&inv.tool);
    let span = tracing::info_span!("tool", tool = %tool_name, %invocation_id, transport = inv.transport.as_str(), actor = %caller.key_name);
    answer_and_record(state, caller, inv, invocation_id, tool_name)
        .instrument(span)
        .await
}

async fn answer_and_record(
    state: &AppState,
    caller: &Caller,
    mut inv: Invocation,
    invocation_id: Uuid,
    tool_name: String,
) -> ToolAnswer {
    let arg = |name: &str| {
        inv.arguments
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| plausible_id(s))
            .map(str::to_string)
    };
    let call = Call {
        invocation_id,
        transport: inv.transport,
        operation: tool_name.clone(),
        actor: caller.actor(),
        idempotency_key: inv.idempotency_key.clone(),
        argument_digest: argument_digest(&inv.arguments),
        job_id: arg("job_id"),
        approval_id: arg("approval_id"),
        at: state.app.clock.now(),
    };
    let result = dispatch(state, caller, &mut inv, invocation_id).await;
    let (status, doc, replayed, retry_after) = match result {
        Ok(done) => (done.status, done.body, done.replayed, None),
        Err(e) => {
            let retry = match &e {
                ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
                ApiError::Unavailable | ApiError::ProjectionBehind { .. } => {
                    Some(u64::from(super::error::RETRY_AFTER_SECONDS))
                }
                ApiError::Internal(cause) => {
                    tracing::error!(error = ?cause, "internal error in a tool call");
                    None
                }
                _ => None,
            };
            (e.status(), e.problem(), false, retry)
        }
    };
    let record = call.finish(status, &doc, replayed);
    let outcome = record.outcome;
    let mut body = json!({
        "invocation_id": invocation_id,
        "tool": tool_name,
        "outcome": outcome.as_str(),
    });
    if status >= 400 {
        body["error"] = doc;
    } else {
        if outcome == Outcome::ApprovalRequired {
            body["approval_id"] = doc
                .get("approval_id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .into();
        }
        body["result"] = doc;
    }
    if replayed {
        body["replayed"] = true.into();
    }
    // The answer goes out without waiting for the write (docs/decisions.md):
    // a command that committed has its effect, and its events carry this
    // invocation id.
    state.tools.gate.record(&state.app.invocations, record);
    ToolAnswer {
        status,
        body,
        retry_after,
        replayed,
        outcome,
    }
}

/// The longest tool name the log is searched by (as the OpenAPI document says).
const TOOL_NAME_CHARS: usize = 100;

/// The tool name as recorded: no control characters, 1–100 characters.
fn record_tool_name(tool: &str) -> String {
    let clean: String = tool
        .chars()
        .filter(|c| !c.is_control())
        .take(TOOL_NAME_CHARS)
        .collect();
    if clean.is_empty() {
        "(none)".to_string()
    } else {
        clean
    }
}

/// SHA-256 of the arguments' canonical JSON.
pub fn argument_digest(arguments: &Value) -> String {
    gate::digest(arguments)
}

async fn dispatch(
    state: &AppState,
    caller: &Caller,
    inv: &mut Invocation,
    invocation_id: Uuid,
) -> Result<Done> {
    let tools = &state.tools;
    // The one gate: the key's budget (shared with REST, MCP and the pages),
    // then the allowlist (`403 tool_not_allowed`, also for no such tool);
    // then the envelope and the tool's input schema.
    let span = gate::span(inv.transport, &record_tool_name(&inv.tool));
    let call = span.in_scope(|| {
        tools
            .gate
            .admit(caller, Access::Tool(&inv.tool))
            .map_err(|refusal| refusal.tool_error(caller.role, &decode::echo(&inv.tool)))?;
        decode::tool_call(tools, caller.role, inv)
    });
    gate::close_span(span, call.as_ref().err().map(ApiError::code));
    let call = call?;
    match call.request {
        ToolRequest::Command { job_id, command } => {
            let meta = command_meta(inv, call.idempotency_key, invocation_id);
            let reply = state
                .app
                .execute_job(caller, &meta, job_id.as_deref(), command)
                .await?;
            let body =
                serde_json::from_slice(&reply.body).map_err(|e| ApiError::Internal(e.into()))?;
            Ok(Done {
                status: reply.status,
                body,
                replayed: reply.replayed,
            })
        }
        ToolRequest::Registry { id, command } => {
            let meta = command_meta(inv, call.idempotency_key, invocation_id);
            let reply = state
                .app
                .registry_command(caller, &meta, id.as_deref(), command)
                .await?;
            let body =
                serde_json::from_slice(&reply.body).map_err(|e| ApiError::Internal(e.into()))?;
            Ok(Done {
                status: reply.status,
                body,
                replayed: reply.replayed,
            })
        }
        ToolRequest::Query => {
            let body = query(state, caller, &inv.tool, &inv.arguments).await?;
            Ok(Done {
                status: 200,
                body,
                replayed: false,
            })
        }
    }
}

/// A command tool call's request metadata: its key, a hash of its tool and
/// arguments, its ids.
fn command_meta(inv: &Invocation, idempotency_key: String, invocation_id: Uuid) -> RequestMeta {
    RequestMeta {
        idempotency_key,
        request_hash: request_hash("TOOL", &inv.tool, &inv.arguments),
        if_match: None,
        correlation_id: inv.correlation_id.unwrap_or_else(Uuid::new_v4),
        trace_id: crate::telemetry::trace::current_trace_id(),
        causation_id: inv.causation_id,
        tool_invocation_id: Some(invocation_id),
    }
}

/// A query tool's arguments as the read model's query parameters.
fn as_params(arguments: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in arguments.as_object().into_iter().flatten() {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        out.insert(k.clone(), s);
    }
    out
}

async fn query(state: &AppState, caller: &Caller, tool: &str, arguments: &Value) -> Result<Value> {
    let app = &state.app;
    let text = |name: &str| arguments.get(name).and_then(Value::as_str).unwrap_or("");
    match tool {
        "get_sop" => app
            .sop_for(text("incident_type"), "incident_type")
            .map(super::sops::sop_json),
        "get_job" => {
            let job = app.load_job(text("job_id"), None).await?;
            super::jobs::check_technician_scope(caller, &job)?;
            app.job_now(&job).await
        }
        "search_board" => app.board(&as_params(arguments)).await,
        "find_technicians" => app.technicians(&as_params(arguments)).await,
        "get_billing_status" => app.billing_readiness(&as_params(arguments)).await,
        // The registry's queries (issue 18); each is also in `QUERY_TOOLS`
        // (`crate::tools`) and has its schema under `schemas/tools/`.
        "find_site" => {
            let limit = arguments.get("limit").and_then(Value::as_i64);
            app.find_site(text("query"), limit).await
        }
        "get_door" => app.registry_entry(Kind::Door, text("door_id")).await,
        "get_door_history" => {
            let mut params = as_params(arguments);
            params.remove("door_id");
            app.door_history(text("door_id"), &params).await
        }
        other => Err(ApiError::Internal(anyhow::anyhow!(
            "query tool `{other}` has no implementation"
        ))),
    }
}

fn answer_response(answer: ToolAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let expected = answer.body["error"]["code"] == "projection_behind";
    let mut resp = (status, Json(answer.body)).into_response();
    if let Some(secs) = answer.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if answer.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if expected {
        resp.extensions_mut().insert(super::error::ExpectedWait);
    }
    resp
}

async fn call_tool(
    State(state): State<AppState>,
    caller: std::result::Result<Caller, ApiError>,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match caller {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, ApiError::Unauthorized) {
                gate::unauthenticated(Transport::Tool);
            }
            return e.into_response();
        }
    };
    let envelope = read_json(&headers, body, state.limits.max_body_bytes).await;
    let raw = |name: &str| headers.get(name).map(|v| v.as_bytes());
    let inv = decode::tool_envelope(
        tool,
        envelope,
        raw("x-correlation-id"),
        raw("x-causation-id"),
    );
    answer_response(invoke(&state, &caller, inv).await)
}

async fn list_tools(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let tools = manifest::manifest(&state.tools.allowlist, &state.tools.schemas, caller.role);
    Json(json!({"role": caller.role.as_str(), "tools": tools}))
}

async fn invocations(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let params = query_params(
        query.as_deref(),
        &["job_id", "actor", "tool", "transport", "after", "limit"],
    )?;
    let number = |name: &str, min: i64, max: i64| -> Result<Option<i64>> {
        params
            .get(name)
            .map(|s| {
                s.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ApiError::Validation {
                        detail: format!("{name} must be a whole number from {min} to {max}"),
                        field: Some(name.to_string()),
                    })
            })
            .transpose()
    };
    let text = |name: &str, max: usize| -> Result<Option<String>> {
        Ok(query_text(&params, name, max)?.map(str::to_string))
    };
    let transport = params
        .get("transport")
        .map(|t| {
            Transport::ALL
                .into_iter()
                .find(|known| known.as_str() == t)
                .ok_or_else(|| ApiError::Validation {
                    detail: "transport must be one of rest, tool, mcp, ui".into(),
                    field: Some("transport".into()),
                })
        })
        .transpose()?;
    let filter = log::Filter {
        job_id: text("job_id", QUERY_TEXT_CHARS)?,
        actor: text("actor", QUERY_TEXT_CHARS)?,
        tool: text("tool", TOOL_NAME_CHARS)?,
        transport,
        after: number("after", 0, i64::MAX)?,
        limit: number("limit", 1, 1000)?.unwrap_or(100),
    };
    // Everything this process answered before this request is in the log
    // when it is read (records are written behind their answers).
    state.app.invocations.flush().await;
    let records = log::list(&state.app.pool, &filter).await?;
    let next_after = (records.len() as i64 == filter.limit)
        .then(|| records.last().map(|r| r.position))
        .flatten();
    Ok(Json(
        json!({"invocations": records, "next_after": next_after}),
    ))
}
