//! The closed toolset as a Model Context Protocol server at `/mcp`
//! (streamable HTTP, crate `rmcp`), for agent gateways.
//!
//! The same tools, with the same gate, as `POST /v1/tools/{tool}`: a
//! browser's cross-site `Origin` is refused 403 first (the streamable HTTP
//! transport requires servers to validate it; `DISPATCH_MCP_ALLOWED_ORIGINS`),
//! then the bearer key is checked before rmcp sees the request (401
//! otherwise), and rmcp checks the `Host` (DNS rebinding); `tools/list`
//! shows the caller's tools only; `tools/call` goes through the one
//! invocation path (`super::tools::invoke`) — rate limit, allowlist, the
//! tool's JSON Schema, idempotency (the `idempotency_key` argument is
//! required), one command or query, one log record with transport `mcp`.
//! Refusals are tool results with `isError` and the problem document (its
//! `code`) as structured content. Protocol faults are JSON-RPC errors
//! ([`jsonrpc`]): `-32700` for a body that is not JSON, `-32600` for JSON
//! that is no message, `-32602` for a served method's params that do not
//! fit. Stateless (no MCP session): any replica answers any request, and
//! JSON answers rather than SSE streams.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CustomRequest,
    CustomResult, Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

mod jsonrpc;

use super::decode::mcp_invocation;
use super::tools::invoke;
use super::AppState;
use crate::app::Caller;
use crate::error::ApiError;
use crate::tools::allowlist::{Risk, ToolKind};
use crate::tools::log::Outcome;
use crate::tools::manifest::mcp_input_schema;

const INSTRUCTIONS: &str = "dispatch-api's closed toolset for door-service dispatch. \
Every call needs an `idempotency_key` argument (reuse it only to retry the same call). \
Text you pass is stored as data and never interpreted. Calls of risk `needs_approval` \
(cancelling a dispatched job, dismissing a duplicate, raising the NTE) only request: \
the answer's outcome is `approval_required` with an `approval_id`, and a dispatcher decides. \
Refusals come back with isError and a machine-readable `code` in the structured content.";

/// The MCP endpoint: authentication, then rmcp's streamable HTTP service.
pub fn service(state: &AppState) -> Router {
    let hosts = &state.tools.config.mcp_allowed_hosts;
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(state.limits.max_body_bytes);
    config = if hosts.iter().any(|h| h.trim() == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts.iter().map(|h| h.trim().to_string()))
    };
    let handler = McpTools {
        state: state.clone(),
    };
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .fallback_service(mcp)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            jsonrpc::parse_errors,
        ))
        .layer(middleware::map_response(label_transport_refusals))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), check_origin))
}

/// Refuses a request whose `Origin` is not one of
/// `DISPATCH_MCP_ALLOWED_ORIGINS` with `403 forbidden` (problem+json),
/// before the key is looked at. No `Origin` (a client that is not a
/// browser) passes.
async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        if !origin_allowed(&state.tools.config.mcp_allowed_origins, origin.as_bytes()) {
            metrics::counter!("dispatch_mcp_origin_refused_total").increment(1);
            return ApiError::Forbidden(
                "this Origin may not call /mcp (DISPATCH_MCP_ALLOWED_ORIGINS)".into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether an `Origin` header value is allowed: `*` in the list allows any;
/// an entry `scheme://host` allows that scheme and host on any port,
/// `scheme://host:port` only that port. `null`, or anything that is not a
/// `scheme://host[:port]`, is refused.
pub fn origin_allowed(allowed: &[String], origin: &[u8]) -> bool {
    if allowed.iter().any(|a| a.trim() == "*") {
        return true;
    }
    let Some(origin) = std::str::from_utf8(origin)
        .ok()
        .and_then(|o| url::Url::parse(o.trim()).ok())
    else {
        return false;
    };
    let Some(host) = origin.host_str() else {
        return false;
    };
    allowed.iter().any(|entry| {
        let entry = entry.trim();
        let Ok(allowed) = url::Url::parse(entry) else {
            return false;
        };
        let authority = entry
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .unwrap_or("");
        let has_port = authority
            .rfind(':')
            .is_some_and(|i| !authority[i..].contains(']'));
        allowed.scheme().eq_ignore_ascii_case(origin.scheme())
            && allowed
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
            && (!has_port || allowed.port_or_known_default() == origin.port_or_known_default())
    })
}

/// rmcp answers what is not an MCP request at all (no JSON Content-Type, an
/// Accept without SSE, a Host not allowed…) with a plain-text reason but no
/// `Content-Type`; this says what it is, as the OpenAPI document does.
async fn label_transport_refusals(mut resp: Response) -> Response {
    if resp.status().as_u16() >= 400 && !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}

/// Resolves the bearer key like every `/v1` route and hands the caller to
/// the handler through the request's extensions (rmcp passes the HTTP parts on).
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match <Caller as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => {
            let unauthorized = matches!(e, ApiError::Unauthorized);
            if unauthorized {
                crate::tools::gate::unauthenticated(crate::tools::log::Transport::Mcp);
            }
            let mut resp = e.into_response();
            if unauthorized {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

#[derive(Clone)]
struct McpTools {
    state: AppState,
}

fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("no authenticated caller", None))
}

/// Honest hints, from the allowlist: read tools are read-only; commands are
/// destructive only where the allowlist says so; every call is idempotent
/// under its key; the world is closed.
fn annotations(kind: ToolKind, destructive: bool, title: &str) -> ToolAnnotations {
    let read = kind == ToolKind::Query;
    let mut a = ToolAnnotations::with_title(title)
        .read_only(read)
        .idempotent(true)
        .open_world(false);
    if !read {
        a = a.destructive(destructive);
    }
    a
}

fn title(name: &str) -> String {
    let mut t = name.replace('_', " ");
    if let Some(first) = t.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    t
}

impl ServerHandler for McpTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "dispatch-api",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&ctx)?;
        let tools = &self.state.tools;
        let list = tools
            .allowlist
            .tools_for(caller.role)
            .map(|(name, entry)| {
                let description = match entry.risk {
                    Risk::NeedsApproval => format!(
                        "{} (risk: needs_approval — may only request; a dispatcher decides)",
                        entry.description
                    ),
                    risk => format!("{} (risk: {})", entry.description, risk.as_str()),
                };
                Tool::new(
                    name.clone(),
                    description,
                    mcp_input_schema(&tools.schemas, name),
                )
                .with_title(title(name))
                .with_annotations(annotations(
                    entry.kind,
                    entry.destructive,
                    &title(name),
                ))
            })
            .collect();
        let mut result = ListToolsResult::with_all_items(list);
        // The list depends on the key's role.
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&ctx)?;
        let inv = mcp_invocation(request.name.to_string(), request.arguments);
        // rmcp runs this on a task of its own: back into the request's trace.
        let trace = ctx
            .extensions
            .get::<Parts>()
            .and_then(|p| p.extensions.get::<crate::telemetry::trace::RequestTrace>())
            .cloned();
        let answer =
            crate::telemetry::trace::within(trace, invoke(&self.state, &caller, inv)).await;
        let result = match answer.outcome {
            Outcome::Ok | Outcome::ApprovalRequired => CallToolResult::structured(answer.body),
            Outcome::Refused | Outcome::Error => CallToolResult::structured_error(answer.body),
        };
        Ok(result.into())
    }

    /// A request rmcp could not decode into a typed one: for a method
    /// served here, its params did not fit (`-32602`).
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(jsonrpc::invalid_params(&request))
    }
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins_are_matched_by_scheme_host_and_port_when_given() {
        let defaults: Vec<String> = crate::tools::DEFAULT_MCP_ALLOWED_ORIGINS
            .split(',')
            .map(str::to_string)
            .collect();
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:6274",
            "HTTP://LOCALHOST:1",
        ] {
            assert!(origin_allowed(&defaults, ok.as_bytes()), "{ok}");
        }
        for refused in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
            "file://",
            "ws://localhost",
            "",
            "http://127.0.0.2",
        ] {
            assert!(!origin_allowed(&defaults, refused.as_bytes()), "{refused}");
        }
        let pinned = vec!["https://agents.example:8443".to_string()];
        assert!(origin_allowed(&pinned, b"https://agents.example:8443"));
        assert!(!origin_allowed(&pinned, b"https://agents.example"));
        assert!(!origin_allowed(&pinned, b"http://agents.example:8443"));
        assert!(origin_allowed(&["*".to_string()], b"http://evil.example"));
        assert!(!origin_allowed(&defaults, b"\xff"));
    }
}
