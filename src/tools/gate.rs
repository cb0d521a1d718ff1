//! The one gate every transport passes (docs/06_tool_surface.md, "One
//! gate"): REST routes under `/v1` (through the middleware in
//! `crate::http::gate`), `POST /v1/tools/{tool}` and `/mcp` `tools/call`
//! (through `crate::http::tools::invoke`) and the pages' forms that run a
//! command (`crate::http::pages`).
//!
//! For an authenticated caller and an operation, [`Gate::admit`] is the one
//! check: the key's rate limit first (one budget per key across every
//! transport), then the allowlist. [`Gate::record`] is the one log: every
//! call that was admitted or refused here lands in the invocation log with
//! its transport, operation, argument digest, outcome, status and code.
//! Unauthenticated calls cannot be attributed to a key: they are counted
//! ([`unauthenticated`]), not logged.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::allowlist::Allowlist;
use super::log::{InvocationLog, InvocationRecord, Outcome, Transport};
use super::rate_limit::ToolRateLimiter;
use crate::app::Caller;
use crate::domain::{Actor, Role};
use crate::store::hash::{canonical_json, sha256_hex};

/// Which allowlist entry an operation answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// A tool (or the job command of that name): `[tools.NAME]`.
    Tool(&'a str),
    /// An endpoint that is no tool: `[endpoints."METHOD /path/{param}"]`.
    Endpoint(&'a str),
    /// The handler decides (a path that names no command: it answers 404).
    Handler,
}

/// Why the gate did not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key's budget is spent.
    RateLimited {
        /// Seconds until a call would be admitted (at least 1).
        retry_after_secs: u64,
    },
    /// The allowlist does not give the caller's role this operation.
    NotAllowed,
}

/// The allowlist and the per-key rate limit, shared by every transport.
#[derive(Debug)]
pub struct Gate {
    allowlist: Arc<Allowlist>,
    limiter: ToolRateLimiter,
}

impl Gate {
    /// A gate over `allowlist`, admitting `per_minute` calls per key
    /// (bursts of `burst`; 0 per minute: no limit).
    pub fn new(allowlist: Arc<Allowlist>, per_minute: u32, burst: u32) -> Gate {
        Gate {
            allowlist,
            limiter: ToolRateLimiter::new(per_minute, burst),
        }
    }

    /// The one check: the key's rate limit, then the allowlist.
    pub fn admit(&self, caller: &Caller, access: Access<'_>) -> Result<(), Refusal> {
        self.rate(caller)?;
        if self.allows(caller.role, access) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    /// Spends one call of the key's budget, or says how long to wait.
    pub fn rate(&self, caller: &Caller) -> Result<(), Refusal> {
        self.limiter.check(&caller.key_name).map_err(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Refusal::RateLimited {
                retry_after_secs: secs.max(1),
            }
        })
    }

    /// Whether the allowlist gives `role` this operation.
    pub fn allows(&self, role: Role, access: Access<'_>) -> bool {
        match access {
            Access::Tool(tool) => self.allowlist.tool_allowed(tool, role),
            Access::Endpoint(endpoint) => self.allowlist.endpoint_allowed(endpoint, role),
            Access::Handler => true,
        }
    }

    /// The one log: counts the call — and a refusal by its code, on every
    /// transport — and queues its record (the answer does not wait for the
    /// write; see [`InvocationLog`]).
    pub fn record(&self, log: &InvocationLog, record: InvocationRecord) {
        metrics::counter!(
            "dispatch_gate_calls_total",
            "transport" => record.transport.as_str(),
            "outcome" => record.outcome.as_str()
        )
        .increment(1);
        if record.outcome == Outcome::Refused {
            // Codes are the service's own (`Call::finish` keeps only
            // lower-case words): a bounded label.
            let code = record
                .error_code
                .clone()
                .unwrap_or_else(|| "unknown".into());
            metrics::counter!("dispatch_refusals_total",
                "code" => code, "transport" => record.transport.as_str())
            .increment(1);
        }
        if matches!(record.transport, Transport::Tool | Transport::Mcp) {
            // Only allowlisted names become label values: a caller cannot grow the metric set.
            let label = if self.allowlist.tools.contains_key(&record.tool) {
                record.tool.clone()
            } else {
                "unknown".to_string()
            };
            metrics::counter!("dispatch_tool_calls_total", "tool" => label, "outcome" => record.outcome.as_str())
                .increment(1);
        }
        log.record(record);
    }
}

/// The span of one pass through the gate (docs/08, "Traces"): its
/// transport, its operation and what the gate said ([`close_span`]).
pub fn span(transport: Transport, operation: &str) -> tracing::Span {
    tracing::info_span!(
        "gate",
        transport = transport.as_str(),
        operation = %operation,
        outcome = tracing::field::Empty,
    )
}

/// Ends a gate's span, recording `admitted` or the code of the refusal.
pub fn close_span(span: tracing::Span, refused: Option<&str>) {
    span.record("outcome", refused.unwrap_or("admitted"));
}

/// Counts a call refused before it could be attributed to a key (no key, an
/// unknown or revoked key: 401). Such calls are not logged per key.
pub fn unauthenticated(transport: Transport) {
    metrics::counter!("dispatch_gate_unauthenticated_total", "transport" => transport.as_str())
        .increment(1);
}

/// SHA-256 of a value's canonical JSON.
pub fn digest(asked: &Value) -> String {
    sha256_hex(canonical_json(asked).as_bytes())
}

/// Whether a caller's text can be recorded as an id (it may come from a refused call).
pub fn plausible_id(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 200 && !s.chars().any(char::is_control)
}

/// An idempotency key as the contract allows it: 1–200 printable ASCII characters.
pub fn usable_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// One call as it passes the gate, before its answer: its transport makes
/// the record from the answer (`crate::http::gate`, `Call::finish`).
#[derive(Debug, Clone)]
pub struct Call {
    /// The call's id.
    pub invocation_id: Uuid,
    /// How it came.
    pub transport: Transport,
    /// The operation (tool or command wire name, or endpoint key).
    pub operation: String,
    /// Who.
    pub actor: Actor,
    /// Its idempotency key, when usable.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical JSON of what was asked.
    pub argument_digest: String,
    /// The job it names, when it names one (a path parameter, an argument).
    pub job_id: Option<String>,
    /// The approval it names, when it names one.
    pub approval_id: Option<String>,
    /// When it came (the service's clock).
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, role: Role) -> Caller {
        Caller {
            key_name: name.into(),
            role,
            technician_id: None,
        }
    }

    #[test]
    fn one_budget_per_key_then_the_allowlist() {
        let gate = Gate::new(Arc::new(Allowlist::builtin().unwrap()), 60, 2);
        let agent = caller("agent-1", Role::Agent);
        assert_eq!(gate.admit(&agent, Access::Tool("add_note")), Ok(()));
        assert_eq!(
            gate.admit(&agent, Access::Tool("decide_approval")),
            Err(Refusal::NotAllowed)
        );
        // The refused call spent budget too: the third is over the limit,
        // whatever it asks for.
        assert!(matches!(
            gate.admit(&agent, Access::Endpoint("GET /v1/tools")),
            Err(Refusal::RateLimited { retry_after_secs }) if retry_after_secs >= 1
        ));
        let other = caller("agent-2", Role::Agent);
        assert_eq!(
            gate.admit(&other, Access::Endpoint("GET /v1/tools")),
            Ok(())
        );
        assert_eq!(
            gate.admit(&other, Access::Endpoint("GET /v1/jobs/{job_id}/events")),
            Err(Refusal::NotAllowed)
        );
    }
}
