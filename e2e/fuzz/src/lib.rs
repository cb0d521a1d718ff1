//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries
//! (`fuzz_targets/`) and the quick check in `cargo test`
//! (`tests/hostile/decoders.rs` includes this file). Each takes arbitrary
//! bytes, runs them through the service's own decoders
//! (`dispatch_api::http::decode`, the functions the handlers call) and
//! panics only when an invariant breaks:
//!
//! - a refusal is a 4xx with a stable code, never a 5xx;
//! - a refusal echoes at most a bounded, control-free piece of the input;
//! - what decodes is the command that was named;
//! - a tool call whose arguments pass the tool's input schema decodes (the
//!   schema and the decoder never disagree).
//!
//! Input formats (text, so that seeds are readable; see `seeds/`):
//!
//! - `command_decoder`: `NAME\nCONTENT-TYPE\nBODY`. `NAME` is a job command
//!   (`open_job` included), `register_technician`, `update_skills`,
//!   `set_shift`, or anything else (then the answer must be `404`). An empty
//!   `CONTENT-TYPE` line means no header.
//! - `tool_decoder`: `TRANSPORT ROLE TOOL\nBODY`. `TRANSPORT` is `http` (the
//!   body is the `POST /v1/tools/{tool}` envelope, after an optional
//!   `#X-CORRELATION-ID` line) or `mcp` (the body is the `tools/call`
//!   arguments object); `ROLE` is a role's wire name (anything else is
//!   `agent`).

use std::sync::OnceLock;

use dispatch_api::domain::job::{JobCommand, JOB_COMMANDS};
use dispatch_api::domain::Role;
use dispatch_api::error::ApiError;
use dispatch_api::http::decode::{self, ToolRequest};
use dispatch_api::tools::Toolset;
use serde_json::Value;

/// The longest `detail` a refusal may carry, in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// The longest `field` a refusal may name, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The shipped toolset (allowlist and compiled schemas), built once.
fn toolset() -> &'static Toolset {
    static TOOLS: OnceLock<Toolset> = OnceLock::new();
    TOOLS.get_or_init(|| Toolset::builtin().expect("the shipped toolset loads"))
}

/// Splits off the first line.
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A refusal must be a client error with a stable code, and must not
/// reflect unbounded or control-character input back.
fn check_refusal(what: &str, e: &ApiError) {
    let status = e.status();
    assert!(
        (400..500).contains(&status),
        "{what}: refused with {status} ({}): {e:?}",
        e.code()
    );
    assert_ne!(e.code(), "internal", "{what}: {e:?}");
    let doc = e.problem();
    let detail = doc["detail"].as_str().unwrap_or_default();
    assert!(
        detail.len() <= MAX_DETAIL_BYTES,
        "{what}: a refusal's detail is {} bytes long",
        detail.len()
    );
    assert!(
        !detail.chars().any(char::is_control),
        "{what}: a refusal's detail carries control characters: {detail:?}"
    );
    if let Some(field) = doc.get("field").and_then(Value::as_str) {
        assert!(
            field.chars().count() <= MAX_FIELD_CHARS && !field.chars().any(char::is_control),
            "{what}: a refusal names an unbounded or control-character field: {field:?}"
        );
    }
}

/// `NAME\nCONTENT-TYPE\nBODY` through the command decoder.
pub fn command_decoder(data: &[u8]) {
    let (name, rest) = line(data);
    let (content_type, body) = line(rest);
    let name = String::from_utf8_lossy(name);
    let content_type = (!content_type.is_empty()).then_some(content_type);
    let value = match decode::json_body(content_type, body) {
        Ok(v) => v,
        Err(e) => return check_refusal("json body", &e),
    };
    assert!(value.is_object(), "json_body answered a non-object");
    let technician =
        name == decode::REGISTER_TECHNICIAN || decode::is_routed_technician_command(&name);
    if technician {
        match decode::technician_command(&name, value) {
            Ok(cmd) => assert_eq!(cmd.wire_name(), name, "decoded another command"),
            Err(e) => check_refusal(&name, &e),
        }
        return;
    }
    let known = JOB_COMMANDS.contains(&name.as_ref());
    assert_eq!(
        known,
        name == "open_job" || decode::is_routed_job_command(&name),
        "the route and the decoder disagree on `{name}`"
    );
    match decode::job_command(&name, value) {
        Ok(cmd) => {
            assert!(known, "`{name}` decoded but is no command");
            assert_eq!(cmd.wire_name(), name, "decoded another command");
        }
        Err(e) => {
            check_refusal(&name, &e);
            if !known {
                assert_eq!(e.status(), 404, "an unknown command must be 404");
            }
        }
    }
}

/// `TRANSPORT ROLE TOOL\nBODY` through the tool decoder.
pub fn tool_decoder(data: &[u8]) {
    let (head, body) = line(data);
    let head = String::from_utf8_lossy(head);
    let mut words = head.splitn(3, ' ');
    let transport = words.next().unwrap_or("");
    let role = words
        .next()
        .and_then(Role::parse)
        .filter(|r| *r != Role::System)
        .unwrap_or(Role::Agent);
    let tool = words.next().unwrap_or("").to_string();
    let tools = toolset();
    let invocation = || {
        if transport == "mcp" {
            // rmcp hands over `arguments` only when they are an object.
            let arguments = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| match v {
                    Value::Object(m) => Some(m),
                    _ => None,
                });
            decode::mcp_invocation(tool.clone(), arguments)
        } else {
            // A body starting with `#` carries its correlation id on its first line.
            let (correlation, envelope) = match body.strip_prefix(b"#") {
                Some(rest) => {
                    let (header, rest) = line(rest);
                    (Some(header), rest)
                }
                None => (None, body),
            };
            let envelope = decode::json_body(Some(b"application/json"), envelope);
            decode::tool_envelope(tool.clone(), envelope, correlation, None)
        }
    };
    let mut inv = invocation();
    let allowed = tools
        .allowlist
        .tools
        .get(&tool)
        .is_some_and(|t| t.roles.contains(&role));
    match decode::tool_call(tools, role, &mut inv) {
        Ok(call) => {
            assert!(
                allowed,
                "`{tool}` passed for role {role:?}, which may not call it"
            );
            assert!(decode::valid_idempotency_key(&call.idempotency_key));
            match call.request {
                ToolRequest::Command { job_id, command } => {
                    assert_eq!(command.wire_name(), tool, "decoded another command");
                    assert_eq!(job_id.is_none(), tool == "open_job", "job_id of `{tool}`");
                }
                ToolRequest::Registry { id, command } => {
                    assert_eq!(command.wire_name(), tool, "decoded another command");
                    assert_eq!(
                        id.is_none(),
                        dispatch_api::app::registry::wire::registers(&tool),
                        "the entry id of `{tool}`"
                    );
                }
                ToolRequest::Query => {
                    assert!(JobCommand::decode(&tool, Value::Object(Default::default()))
                        .is_ok_and(|c| c.is_none()));
                }
            }
        }
        Err(e) => {
            check_refusal(&tool, &e);
            if !allowed {
                assert_eq!(e.code(), "tool_not_allowed", "`{tool}` for {role:?}: {e:?}");
                return;
            }
            // The schema let the arguments through: then the decoder must too.
            let fresh = invocation();
            let envelope_ok = fresh.envelope_error.is_none() && fresh.idempotency_key.is_some();
            assert!(
                !(envelope_ok && tools.schemas.validate(&tool, &fresh.arguments).is_ok()),
                "`{tool}`: the input schema accepts arguments the decoder refuses: {e:?}\n{}",
                fresh.arguments
            );
        }
    }
}
