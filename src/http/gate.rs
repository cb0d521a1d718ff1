//! The gate on the REST routes: one middleware on every authenticated `/v1`
//! route (not on `POST /v1/tools/{tool}`, whose invocation path passes the
//! same gate itself, nor on health, metrics, the document or the pages).
//!
//! For each request it names the operation (the tool or command wire name,
//! or the allowlist's endpoint key), authenticates the key (401 is answered
//! here and counted, not logged), asks [`Gate::admit`](crate::tools::gate::Gate::admit) — the key's rate
//! limit, then the allowlist — and, whatever the handler then answers,
//! hands one record with transport `rest` to the invocation log. The
//! handlers no longer check the allowlist themselves; they read the caller
//! the gate resolved ([`KeyedCaller`](crate::app::KeyedCaller), or `Caller`
//! from the extensions),
//! and report the body they decoded ([`Asked`]) for the argument digest.
//!
//! A job command from a key this process resolved before keeps its fast
//! path: the gate admits it on the known caller ([`App::resolve_key`],
//! provisional), and a refusal here is answered only after the key is
//! confirmed ([`App::confirm_key`]); the rest of the rule is
//! [`App::job_command`]'s.
//!
//! [`App::resolve_key`]: crate::app::App::resolve_key
//! [`App::confirm_key`]: crate::app::App::confirm_key
//! [`App::job_command`]: crate::app::App::job_command

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::decode;
use super::extract::bearer_key;
use super::AppState;
use crate::app::keys::{self, KeyedCaller};
use crate::error::ApiError;
use crate::tools::gate::{self, plausible_id, usable_key, Access, Call};
use crate::tools::log::{InvocationLog, InvocationRecord, Outcome, Transport};
use crate::tools::Toolset;

/// What the handler decoded from the body, for the record's argument
/// digest (a handler that reads no body leaves it empty).
#[derive(Debug, Clone, Default)]
pub struct Asked(Arc<OnceLock<Value>>);

impl Asked {
    /// Notes the body as decoded (the first call wins).
    pub fn body(&self, value: &Value) {
        let _ = self.0.set(value.clone());
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Asked {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Asked>().cloned().unwrap_or_default())
    }
}

/// What a REST route does, for the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Recorded as the record's `tool`.
    pub name: String,
    /// The allowlist entry it answers to.
    pub access: OwnedAccess,
    /// A job command, which may run on a cached caller.
    pub fast_path: bool,
}

/// [`Access`] with its names owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedAccess {
    /// `[tools.NAME]`.
    Tool(String),
    /// `[endpoints."METHOD /path"]`.
    Endpoint(String),
    /// The handler answers (404 for a path that names no command).
    Handler,
}

impl OwnedAccess {
    fn as_access(&self) -> Access<'_> {
        match self {
            OwnedAccess::Tool(t) => Access::Tool(t),
            OwnedAccess::Endpoint(e) => Access::Endpoint(e),
            OwnedAccess::Handler => Access::Handler,
        }
    }
}

/// The operation a request to `route` (axum's matched path) asks for, or
/// `None` for a route or method the gate does not cover (the router
/// answers 404 or 405 as before). A job command of the route table
/// (`http/jobs.rs`) is the tool of its name: `POST
/// /v1/jobs/{job_id}/commands/accept_offer` is `accept_offer`, admitted by
/// the allowlist's `[tools.accept_offer]`. The registry's routes are named
/// the same way ([`super::registry::operation`]).
pub fn operation(method: &Method, route: &str, params: &[(&str, &str)]) -> Option<Operation> {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let tool = |name: &str| Operation {
        name: name.to_string(),
        access: OwnedAccess::Tool(name.to_string()),
        fast_path: false,
    };
    let endpoint = |key: &str| Operation {
        name: key.to_string(),
        access: OwnedAccess::Endpoint(key.to_string()),
        fast_path: false,
    };
    // axum answers HEAD with the GET handler: it passes the same gate.
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    if let Some(op) = super::registry::operation(get, post, route, param("command")) {
        return Some(op);
    }
    if let Some(op) = super::webhooks::operation(method, route) {
        return Some(op);
    }
    Some(match route {
        "/v1/jobs" if post => tool("open_job"),
        "/v1/jobs/{job_id}" if get => tool("get_job"),
        "/v1/jobs/{job_id}/commands/{command}" if post => match param("command") {
            Some(c) if decode::is_routed_job_command(c) => Operation {
                fast_path: true,
                ..tool(c)
            },
            _ => Operation {
                name: format!("POST {route}"),
                access: OwnedAccess::Handler,
                fast_path: true,
            },
        },
        "/v1/jobs/{job_id}/events"
        | "/v1/jobs/{job_id}/audit"
        | "/v1/jobs/{job_id}/replay"
        | "/v1/jobs/{job_id}/transitions"
        | "/v1/technicians/{technician_id}/schedule"
        | "/v1/approvals"
        | "/v1/projections"
        | "/v1/subscriptions"
        | "/v1/evidence/{sha256}"
        | "/v1/tools"
        | "/v1/tool-invocations"
            if get =>
        {
            endpoint(&format!("GET {route}"))
        }
        "/v1/technicians" if post => Operation {
            name: decode::REGISTER_TECHNICIAN.to_string(),
            ..endpoint("POST /v1/technicians")
        },
        "/v1/technicians" if get => tool("find_technicians"),
        "/v1/technicians/{technician_id}/commands/{command}" if post => match param("command") {
            Some(c) if decode::is_routed_technician_command(c) => Operation {
                name: c.to_string(),
                ..endpoint(&format!(
                    "POST /v1/technicians/{{technician_id}}/commands/{c}"
                ))
            },
            _ => Operation {
                name: format!("POST {route}"),
                access: OwnedAccess::Handler,
                fast_path: false,
            },
        },
        "/v1/board" if get => tool("search_board"),
        "/v1/billing/readiness" if get => tool("get_billing_status"),
        "/v1/sops" | "/v1/sops/{incident_type}" if get => tool("get_sop"),
        "/v1/evidence" | "/v1/admin/clock" | "/v1/technicians/{technician_id}/signin-links"
            if post =>
        {
            endpoint(&format!("POST {route}"))
        }
        _ => return None,
    })
}

/// The REST gate (a `route_layer` over the `/v1` routes).
pub async fn rest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let params = RawPathParams::from_request_parts(&mut parts, &state).await;
    let owned: Vec<(String, String)> = match &params {
        Ok(p) => p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let borrowed: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let op = match (&route, &params) {
        (Some(route), Ok(_)) => operation(&parts.method, route, &borrowed),
        // A path segment that is not UTF-8: the handler refuses it (400);
        // the call still passes the gate under its route.
        (Some(route), Err(_)) => Some(Operation {
            name: format!("{} {route}", parts.method),
            access: OwnedAccess::Handler,
            fast_path: false,
        }),
        (None, _) => None,
    };
    let Some(op) = op else {
        return next.run(Request::from_parts(parts, body)).await;
    };

    // The gate's span: key, rate limit, allowlist; not the handler.
    let span = gate::span(Transport::Rest, &op.name);
    let resolving = resolve(&state, &parts.headers, op.fast_path).instrument(span.clone());
    let who = match resolving.await {
        Ok(who) => who,
        Err(e) => return unattributed(&span, e),
    };
    let caller = who.caller.clone();

    let mut pending = Pending {
        tools: state.tools.clone(),
        log: state.app.invocations.clone(),
        call: Some(Call {
            invocation_id: Uuid::new_v4(),
            transport: Transport::Rest,
            operation: op.name.clone(),
            actor: caller.actor(),
            idempotency_key: parts
                .headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .filter(|k| usable_key(k))
                .map(str::to_string),
            argument_digest: String::new(),
            job_id: borrowed
                .iter()
                .find(|(k, _)| *k == "job_id")
                .map(|(_, v)| *v)
                .filter(|v| plausible_id(v))
                .map(str::to_string),
            approval_id: None,
            at: state.app.clock.now(),
        }),
        path: owned,
        query: parts.uri.query().map(str::to_string),
        asked: Asked::default(),
    };

    let admitted = span.in_scope(|| state.tools.gate.admit(&caller, op.access.as_access()));
    if let Err(refusal) = admitted {
        if who.is_provisional() {
            // Nothing is answered on a known key's caller but a write that
            // checked the key: a revoked key hears 401, not this.
            if let Err(e) = state.app.confirm_key(&who).instrument(span.clone()).await {
                pending.call = None;
                return unattributed(&span, e);
            }
        }
        let error = refusal.rest_error(caller.role, op.access.as_access());
        gate::close_span(span, Some(error.code()));
        // What was asked, for the record: a refused command's JSON body
        // (within the body limit) is read here, as its handler would have.
        if parts.method == Method::POST {
            if let Ok(value) =
                super::extract::read_json(&parts.headers, body, state.limits.max_body_bytes).await
            {
                pending.asked.body(&value);
            }
        }
        pending.finish(error.status(), &error.problem(), false);
        return error.into_response();
    }

    gate::close_span(span, None);
    parts.extensions.insert(pending.asked.clone());
    if !who.is_provisional() {
        parts.extensions.insert(caller);
    }
    parts.extensions.insert(who);
    let is_post = parts.method == Method::POST;
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status().as_u16();
    if status == 401 {
        // A cached key found revoked by the write: not attributable.
        pending.call = None;
        gate::unauthenticated(Transport::Rest);
        return response;
    }
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v.as_bytes() == b"true");
    // Command answers and problem documents are small and carry what the
    // record needs (events, job and approval ids, the code); a successful
    // query's answer is not read.
    if is_post || status >= 400 {
        let (head, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let doc = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        pending.finish(status, &doc, replayed);
        Response::from_parts(head, Body::from(bytes))
    } else {
        pending.finish(status, &Value::Null, replayed);
        response
    }
}

/// The bearer key's caller (provisional on the fast path).
async fn resolve(s: &AppState, headers: &HeaderMap, fast: bool) -> Result<KeyedCaller, ApiError> {
    let hash = bearer_key(headers).and_then(keys::key_hash)?;
    s.app.resolve_key(hash, fast).await
}

/// A refusal before the caller is known (401, or the system role's 403):
/// counted, not logged per key.
fn unattributed(span: &tracing::Span, e: ApiError) -> Response {
    span.record("outcome", e.code());
    if matches!(e, ApiError::Unauthorized) {
        gate::unauthenticated(Transport::Rest);
    }
    e.into_response()
}

/// A call admitted or refused by the gate whose record is not yet written.
/// Dropped unfinished (the request timed out, or the client went away
/// while it ran), it is recorded as `408 request_abandoned`.
struct Pending {
    tools: Arc<Toolset>,
    log: InvocationLog,
    call: Option<Call>,
    path: Vec<(String, String)>,
    query: Option<String>,
    asked: Asked,
}

impl Pending {
    fn finish(&mut self, status: u16, doc: &Value, replayed: bool) {
        let Some(mut call) = self.call.take() else {
            return;
        };
        let body = self.asked.0.get().cloned().unwrap_or(Value::Null);
        if call.approval_id.is_none() {
            call.approval_id = body
                .get("approval_id")
                .and_then(Value::as_str)
                .filter(|s| plausible_id(s))
                .map(str::to_string);
        }
        let path: Map<String, Value> = self
            .path
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let query: Map<String, Value> =
            url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
        call.argument_digest = gate::digest(&serde_json::json!({
            "path": path,
            "query": query,
            "body": body,
        }));
        self.tools
            .gate
            .record(&self.log, call.finish(status, doc, replayed));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.call.is_some() {
            self.finish(
                408,
                &serde_json::json!({"code": "request_abandoned"}),
                false,
            );
        }
    }
}

/// The outcome of an answer with this status and problem code: the one
/// place an HTTP answer becomes a record's outcome.
pub fn outcome_of(status: u16, code: Option<&str>) -> Outcome {
    match status {
        202 => Outcome::ApprovalRequired,
        200..=299 => Outcome::Ok,
        403 | 422 | 429 => Outcome::Refused,
        409 if code != Some("version_conflict") => Outcome::Refused,
        _ => Outcome::Error,
    }
}

impl Call {
    /// The record of this call given its answer: the status, the answer's
    /// document (a problem document from 400 on; `Null` when the answer is
    /// not read, as a successful query's) and whether a stored answer was
    /// replayed. The outcome follows status and code
    /// ([`outcome_of`]); events are recorded only when this call appended them.
    pub fn finish(self, status: u16, doc: &Value, replayed: bool) -> InvocationRecord {
        let code = (status >= 400)
            .then(|| doc.get("code").and_then(Value::as_str))
            .flatten()
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map(str::to_string);
        let outcome = outcome_of(status, code.as_deref());
        let text = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .filter(|s| plausible_id(s))
                .map(str::to_string)
        };
        let events = match doc.get("events") {
            Some(Value::Array(events)) if status < 400 && !replayed => events.clone(),
            _ => Vec::new(),
        };
        let job_id = if status < 400 { text("job_id") } else { None }.or(self.job_id);
        let approval_id = text("approval_id").or(self.approval_id);
        InvocationRecord {
            position: 0,
            invocation_id: self.invocation_id,
            tool: self.operation,
            actor: self.actor,
            transport: self.transport,
            idempotency_key: self.idempotency_key,
            argument_digest: self.argument_digest,
            outcome,
            error_code: code,
            http_status: status.clamp(100, 599),
            job_id,
            approval_id,
            events,
            replayed,
            at: self.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, Role};
    use crate::tools::gate::digest;
    use chrono::Utc;
    use serde_json::json;

    #[test]
    fn a_record_takes_its_outcome_code_and_events_from_the_answer() {
        let call = Call {
            invocation_id: Uuid::new_v4(),
            transport: Transport::Rest,
            operation: "add_note".into(),
            actor: Actor::new(Role::Agent, "agent-1"),
            idempotency_key: Some("k".into()),
            argument_digest: digest(&json!({})),
            job_id: Some("job-1".into()),
            approval_id: None,
            at: Utc::now(),
        };
        let ok = call.clone().finish(
            200,
            &json!({"job_id": "job-1", "events": [{"event_id": "e", "event_type": "NoteAdded", "sequence": 2, "global_position": 9}]}),
            false,
        );
        assert_eq!(ok.outcome, Outcome::Ok);
        assert_eq!(ok.events.len(), 1);
        let replayed = call.clone().finish(200, &json!({"events": [{}]}), true);
        assert!(replayed.events.is_empty());
        let refused = call.finish(403, &json!({"code": "forbidden", "job_id": "x"}), false);
        assert_eq!(refused.outcome, Outcome::Refused);
        assert_eq!(refused.error_code.as_deref(), Some("forbidden"));
        assert_eq!(refused.job_id.as_deref(), Some("job-1"));
    }
    #[test]
    fn outcomes_follow_status_and_code() {
        assert_eq!(outcome_of(200, None), Outcome::Ok);
        assert_eq!(outcome_of(201, None), Outcome::Ok);
        assert_eq!(outcome_of(202, None), Outcome::ApprovalRequired);
        assert_eq!(outcome_of(403, Some("tool_not_allowed")), Outcome::Refused);
        assert_eq!(outcome_of(422, Some("nte_exceeded")), Outcome::Refused);
        assert_eq!(outcome_of(429, Some("rate_limited")), Outcome::Refused);
        assert_eq!(
            outcome_of(409, Some("idempotency_key_reused")),
            Outcome::Refused
        );
        assert_eq!(outcome_of(409, Some("version_conflict")), Outcome::Error);
        assert_eq!(outcome_of(400, Some("validation_error")), Outcome::Error);
        assert_eq!(outcome_of(404, Some("not_found")), Outcome::Error);
        assert_eq!(outcome_of(503, Some("unavailable")), Outcome::Error);
    }

    #[test]
    fn every_rest_route_names_its_operation() {
        let op = |m: Method, route: &str, params: &[(&str, &str)]| {
            operation(&m, route, params).map(|o| (o.name, o.access))
        };
        assert_eq!(
            op(
                Method::POST,
                "/v1/jobs/{job_id}/commands/{command}",
                &[("job_id", "j"), ("command", "add_note")]
            ),
            Some(("add_note".into(), OwnedAccess::Tool("add_note".into())))
        );
        assert_eq!(
            op(
                Method::POST,
                "/v1/jobs/{job_id}/commands/{command}",
                &[("job_id", "j"), ("command", "approve_everything")]
            ),
            Some((
                "POST /v1/jobs/{job_id}/commands/{command}".into(),
                OwnedAccess::Handler
            ))
        );
        assert_eq!(
            op(Method::GET, "/v1/jobs/{job_id}/events", &[("job_id", "j")]),
            Some((
                "GET /v1/jobs/{job_id}/events".into(),
                OwnedAccess::Endpoint("GET /v1/jobs/{job_id}/events".into())
            ))
        );
        assert_eq!(
            op(Method::GET, "/v1/board", &[]),
            Some((
                "search_board".into(),
                OwnedAccess::Tool("search_board".into())
            ))
        );
        assert_eq!(
            op(
                Method::POST,
                "/v1/technicians/{technician_id}/commands/{command}",
                &[("technician_id", "t"), ("command", "set_shift")]
            ),
            Some((
                "set_shift".into(),
                OwnedAccess::Endpoint(
                    "POST /v1/technicians/{technician_id}/commands/set_shift".into()
                )
            ))
        );
        assert_eq!(
            op(Method::HEAD, "/v1/jobs/{job_id}/audit", &[("job_id", "j")]),
            op(Method::GET, "/v1/jobs/{job_id}/audit", &[("job_id", "j")]),
            "HEAD runs the GET handler: the same gate"
        );
        assert_eq!(op(Method::DELETE, "/v1/jobs/{job_id}", &[]), None);
        assert_eq!(op(Method::GET, "/healthz", &[]), None);
    }

    #[test]
    fn every_endpoint_the_gate_names_is_in_the_allowlist() {
        let list = crate::tools::allowlist::Allowlist::builtin().unwrap();
        let webhooks = super::super::webhooks::ROUTES.map(|(m, r)| (m.parse().unwrap(), r));
        let routes = webhooks.into_iter().chain([
            (Method::GET, "/v1/jobs/{job_id}/events"),
            (Method::GET, "/v1/jobs/{job_id}/audit"),
            (Method::GET, "/v1/jobs/{job_id}/replay"),
            (Method::GET, "/v1/jobs/{job_id}/transitions"),
            (Method::GET, "/v1/technicians/{technician_id}/schedule"),
            (Method::GET, "/v1/approvals"),
            (Method::GET, "/v1/projections"),
            (Method::GET, "/v1/subscriptions"),
            (Method::GET, "/v1/evidence/{sha256}"),
            (Method::GET, "/v1/tools"),
            (Method::GET, "/v1/tool-invocations"),
            (Method::POST, "/v1/technicians"),
            (Method::POST, "/v1/evidence"),
            (Method::POST, "/v1/admin/clock"),
            (Method::POST, "/v1/technicians/{technician_id}/signin-links"),
            (Method::GET, "/v1/customers/{customer_id}"),
            (Method::GET, "/v1/sites/{site_id}"),
            (Method::GET, "/v1/maintenance-plans/{plan_id}"),
        ]);
        for (m, r) in routes {
            let op = operation(&m, r, &[]).unwrap();
            match op.access {
                OwnedAccess::Endpoint(e) => {
                    assert!(
                        list.endpoints.contains_key(&e),
                        "{e} is not in the allowlist"
                    )
                }
                other => panic!("{m} {r}: {other:?}"),
            }
        }
    }
}
