//! Request decoding that needs no I/O: a body's bytes and `Content-Type` to a
//! JSON object; a JSON object to a job or technician command; a tool call's
//! HTTP envelope or MCP arguments to an [`Invocation`]; and an invocation,
//! through the allowlist and the tool's input schema, to what it asks for.
//!
//! The handlers call exactly these functions, and so do the fuzz targets
//! (`e2e/fuzz/`) and the hostile-input tests (`tests/hostile/`): what is
//! fuzzed is what serves. Every refusal is a 4xx [`ApiError`] with a stable
//! code; nothing here may panic, whatever the bytes.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::app::registry::{wire, RegistryCommand};
use crate::domain::job::{JobCommand, JOB_COMMANDS};
use crate::domain::technician::{TechnicianCommand, TECHNICIAN_COMMANDS};
use crate::domain::Role;
use crate::error::{ApiError, Result};
use crate::tools::allowlist::ToolKind;
use crate::tools::log::Transport;
use crate::tools::manifest::MCP_IDEMPOTENCY_ARGUMENT;
use crate::tools::Toolset;

/// The wire name under which `POST /v1/technicians` registers a technician.
pub const REGISTER_TECHNICIAN: &str = "register_technician";

/// At most this many characters of a caller's name (of a field, a command,
/// a tool) are echoed back in a refusal.
const ECHO_CHARS: usize = 64;

/// A caller-supplied name as it may appear in a refusal: no control
/// characters, bounded.
pub fn echo(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(ECHO_CHARS)
        .collect()
}

/// Checks a JSON body's `Content-Type` (the header's raw bytes): absent,
/// `application/json` or a `+json` type (parameters such as `charset` are
/// ignored).
pub fn json_content_type(content_type: Option<&[u8]>) -> Result<()> {
    let Some(raw) = content_type else {
        return Ok(());
    };
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
        .ok_or_else(|| ApiError::Validation {
            detail: "header content-type is not printable ASCII".into(),
            field: Some("content-type".into()),
        })?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "the body must be application/json".into(),
        ))
    }
}

/// Parses a body that must be a JSON object; an empty (or all-whitespace)
/// body is `{}`.
pub fn json_object(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::Validation {
        detail: format!("malformed JSON: {e}"),
        field: None,
    })?;
    if !value.is_object() {
        return Err(ApiError::Validation {
            detail: "the body must be a JSON object".into(),
            field: None,
        });
    }
    Ok(value)
}

/// Refuses a JSON value holding a NUL character in any string or key: no
/// field may hold one (PostgreSQL cannot store it in text or JSON), and
/// some ids are looked up before the domain's text checks run. Every
/// command body and tool call's arguments pass here before they decode.
pub fn refuse_nul(value: &Value) -> Result<()> {
    match nul_path(value, String::new()) {
        None => Ok(()),
        Some(path) => Err(ApiError::Validation {
            detail: format!(
                "`{}` contains a NUL character, which no field may hold",
                if path.is_empty() { "." } else { path.as_str() }
            ),
            field: (!path.is_empty()).then_some(path),
        }),
    }
}

/// The path of the first string or key with a NUL (`fields.access_hours`,
/// `items.0.id`, as the tool schemas name fields; each key clipped), if any.
fn nul_path(value: &Value, at: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(at),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            nul_path(
                v,
                if at.is_empty() {
                    i.to_string()
                } else {
                    format!("{at}.{i}")
                },
            )
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if at.is_empty() {
                echo(k)
            } else {
                format!("{at}.{}", echo(k))
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_path(v, here)
            }
        }),
        _ => None,
    }
}

/// [`json_content_type`] then [`json_object`]: a whole JSON request body.
pub fn json_body(content_type: Option<&[u8]>, bytes: &[u8]) -> Result<Value> {
    json_content_type(content_type)?;
    json_object(bytes)
}

/// A job command's wire body as the typed command (`open_job` included).
/// An unknown command is `404`; a NUL anywhere, unknown fields, wrong types
/// and unknown enum values are `400 validation_error` naming the field.
pub fn job_command(name: &str, body: Value) -> Result<JobCommand> {
    let unknown = || ApiError::NotFound(format!("no job command named `{}`", echo(name)));
    if !JOB_COMMANDS.contains(&name) {
        return Err(unknown());
    }
    refuse_nul(&body)?;
    JobCommand::decode(name, body)
        .map_err(|e| ApiError::from_body(&e))?
        .ok_or_else(unknown)
}

/// Whether `name` is a job command a caller may send to
/// `POST /v1/jobs/{job_id}/commands/{name}`: one of the route table's
/// (`http/jobs.rs`; `open_job` has its own route).
pub fn is_routed_job_command(name: &str) -> bool {
    super::jobs::JOB_COMMAND_ROUTES.contains(&name)
}

/// A technician command's wire body as the typed command: `update_skills`,
/// `set_shift`, or [`REGISTER_TECHNICIAN`] (the body of `POST /v1/technicians`).
pub fn technician_command(name: &str, body: Value) -> Result<TechnicianCommand> {
    let unknown = || ApiError::NotFound(format!("no technician command named `{}`", echo(name)));
    if name != REGISTER_TECHNICIAN && !TECHNICIAN_COMMANDS.contains(&name) {
        return Err(unknown());
    }
    refuse_nul(&body)?;
    TechnicianCommand::decode(name, body)
        .map_err(|e| ApiError::from_body(&e))?
        .ok_or_else(unknown)
}

/// Whether `name` is a technician command of `POST /v1/technicians/{id}/commands/{name}`.
pub fn is_routed_technician_command(name: &str) -> bool {
    TECHNICIAN_COMMANDS.contains(&name)
}

/// A registry command's wire body as the typed command. An unknown command
/// is `404`; a NUL anywhere, unknown fields, wrong types and unknown enum
/// values are `400 validation_error` naming the field.
pub fn registry_command(name: &str, body: Value) -> Result<RegistryCommand> {
    let unknown = || ApiError::NotFound(format!("no registry command named `{}`", echo(name)));
    if wire::command_kind(name).is_none() {
        return Err(unknown());
    }
    refuse_nul(&body)?;
    RegistryCommand::decode(name, body)
        .map_err(|e| ApiError::from_body(&e))?
        .ok_or_else(unknown)
}

/// One tool call, as a transport decoded it (nothing checked yet).
#[derive(Debug)]
pub struct Invocation {
    /// `tool` (`POST /v1/tools/{tool}`) or `mcp`.
    pub transport: Transport,
    /// The tool asked for (not yet checked).
    pub tool: String,
    /// The caller's id for the call, if it gave a valid one.
    pub invocation_id: Option<Uuid>,
    /// The idempotency key, if the caller gave a valid one.
    pub idempotency_key: Option<String>,
    /// The arguments (`Null` when the envelope had none usable).
    pub arguments: Value,
    /// What was wrong with the envelope itself; answered after the allowlist check.
    pub envelope_error: Option<ApiError>,
    /// `X-Correlation-Id`, when given.
    pub correlation_id: Option<Uuid>,
    /// `X-Causation-Id`, when given.
    pub causation_id: Option<Uuid>,
}

/// An idempotency key as the contract allows it: 1–200 printable ASCII
/// characters.
pub fn valid_idempotency_key(key: &str) -> bool {
    super::extract::check_idempotency_key(key.as_bytes(), "idempotency_key").is_ok()
}

/// A tool call's `idempotency_key` (the envelope's field on
/// `POST /v1/tools/{tool}`, an argument on MCP): absent, `null` or empty
/// (as an empty header on REST) is `400 idempotency_key_required` naming
/// where it goes; any other value that is not 1-200 printable ASCII
/// characters is `400 validation_error` naming it.
pub fn tool_idempotency_key(transport: Transport, key: Option<&Value>) -> Result<String> {
    match key {
        None | Some(Value::Null) => Err(ApiError::IdempotencyArgumentRequired(transport)),
        Some(Value::String(k)) if k.is_empty() => {
            Err(ApiError::IdempotencyArgumentRequired(transport))
        }
        Some(Value::String(k)) if valid_idempotency_key(k) => Ok(k.clone()),
        Some(_) => Err(ApiError::Validation {
            detail: "idempotency_key must be a string of 1-200 printable ASCII characters".into(),
            field: Some("idempotency_key".into()),
        }),
    }
}

/// An optional UUID header (`X-Correlation-Id`, `X-Causation-Id`) from its
/// raw bytes: absent is `None`; present, it must be a UUID.
pub fn uuid_header(name: &str, raw: Option<&[u8]>) -> Result<Option<Uuid>> {
    raw.map(|raw| {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| Uuid::parse_str(s.trim()).ok())
            .ok_or_else(|| ApiError::Validation {
                detail: format!("header {name} must be a UUID"),
                field: Some(name.to_string()),
            })
    })
    .transpose()
}

/// Decodes `POST /v1/tools/{tool}`'s envelope `{invocation_id?,
/// idempotency_key, arguments}` from the parsed body ([`json_body`]'s
/// result) and the raw `X-Correlation-Id` / `X-Causation-Id` headers.
/// Nothing here refuses yet: the first problem is kept for after the
/// allowlist check, so a role that may not call the tool hears
/// `tool_not_allowed` whatever it sent.
pub fn tool_envelope(
    tool: String,
    body: Result<Value>,
    correlation_id: Option<&[u8]>,
    causation_id: Option<&[u8]>,
) -> Invocation {
    let mut inv = Invocation {
        transport: Transport::Tool,
        tool,
        invocation_id: None,
        idempotency_key: None,
        arguments: Value::Null,
        envelope_error: None,
        correlation_id: None,
        causation_id: None,
    };
    let envelope = match body {
        Ok(Value::Object(m)) => m,
        Ok(_) => Map::new(),
        Err(e) => {
            inv.envelope_error = Some(e);
            return inv;
        }
    };
    let mut problem: Option<ApiError> = None;
    let mut note = |e: ApiError| {
        if problem.is_none() {
            problem = Some(e);
        }
    };
    for key in envelope.keys() {
        if !matches!(
            key.as_str(),
            "invocation_id" | "idempotency_key" | "arguments"
        ) {
            note(ApiError::Validation {
                detail: format!(
                    "unknown envelope field `{}`: the envelope is {{invocation_id?, idempotency_key, arguments}}",
                    echo(key)
                ),
                field: Some(echo(key)),
            });
        }
    }
    match envelope.get("invocation_id") {
        None => {}
        Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => inv.invocation_id = Some(id),
            None => note(ApiError::Validation {
                detail: "invocation_id must be a UUID".into(),
                field: Some("invocation_id".into()),
            }),
        },
    }
    match tool_idempotency_key(Transport::Tool, envelope.get("idempotency_key")) {
        Ok(key) => inv.idempotency_key = Some(key),
        Err(e) => note(e),
    }
    match envelope.get("arguments") {
        Some(a @ Value::Object(_)) => inv.arguments = a.clone(),
        Some(_) => note(ApiError::Validation {
            detail: "arguments must be a JSON object".into(),
            field: Some("arguments".into()),
        }),
        None => note(ApiError::Validation {
            detail: "arguments is required (an object; `{}` for none)".into(),
            field: Some("arguments".into()),
        }),
    }
    match uuid_header("x-correlation-id", correlation_id) {
        Ok(id) => inv.correlation_id = id,
        Err(e) => note(e),
    }
    match uuid_header("x-causation-id", causation_id) {
        Ok(id) => inv.causation_id = id,
        Err(e) => note(e),
    }
    inv.envelope_error = problem;
    inv
}

/// An MCP `tools/call`: the arguments carry the idempotency key as
/// [`MCP_IDEMPOTENCY_ARGUMENT`]; the rest are the tool's arguments.
pub fn mcp_invocation(tool: String, arguments: Option<Map<String, Value>>) -> Invocation {
    let mut arguments = arguments.unwrap_or_default();
    let key = arguments.remove(MCP_IDEMPOTENCY_ARGUMENT);
    let (idempotency_key, envelope_error) = match tool_idempotency_key(Transport::Mcp, key.as_ref())
    {
        Ok(key) => (Some(key), None),
        Err(e) => (None, Some(e)),
    };
    Invocation {
        transport: Transport::Mcp,
        tool,
        invocation_id: None,
        envelope_error,
        idempotency_key,
        arguments: Value::Object(arguments),
        correlation_id: None,
        causation_id: None,
    }
}

/// What a tool call asks for, once it has passed the allowlist, its
/// envelope and the tool's input schema.
// One exists per call, briefly (as `JobCommand` itself): boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ToolRequest {
    /// A job command; `job_id` is `None` for `open_job`.
    Command {
        /// The job it acts on.
        job_id: Option<String>,
        /// The decoded command.
        command: JobCommand,
    },
    /// A registry command; `id` is the entry it acts on (`None` for the
    /// commands that register one).
    Registry {
        /// The entry it acts on.
        id: Option<String>,
        /// The decoded command.
        command: RegistryCommand,
    },
    /// A query tool; its arguments are valid against its schema.
    Query,
}

/// A tool call the service will run.
#[derive(Debug)]
pub struct ToolCall {
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// What it asks for.
    pub request: ToolRequest,
}

/// Checks a tool call in the contract's order — the allowlist for `role`
/// (`403 tool_not_allowed`, also for a tool that does not exist), then the
/// envelope (taken from `inv`), the idempotency key, the tool's input schema
/// — and decodes a command tool's arguments into its command.
pub fn tool_call(tools: &Toolset, role: Role, inv: &mut Invocation) -> Result<ToolCall> {
    let entry = tools
        .allowlist
        .tools
        .get(&inv.tool)
        .filter(|t| t.roles.contains(&role))
        .ok_or_else(|| {
            ApiError::ToolNotAllowed(format!(
                "role `{}` may not call `{}`",
                role.as_str(),
                echo(&inv.tool)
            ))
        })?;
    if let Some(e) = inv.envelope_error.take() {
        return Err(e);
    }
    let idempotency_key = inv
        .idempotency_key
        .clone()
        .ok_or(ApiError::IdempotencyArgumentRequired(inv.transport))?;
    refuse_nul(&inv.arguments)?;
    tools.schemas.validate(&inv.tool, &inv.arguments)?;
    let request = match entry.kind {
        ToolKind::Command => {
            let mut args = inv.arguments.as_object().cloned().unwrap_or_default();
            let job_id = match inv.tool.as_str() {
                "open_job" => None,
                _ => args
                    .remove("job_id")
                    .and_then(|v| v.as_str().map(str::to_string)),
            };
            let command = JobCommand::decode(&inv.tool, Value::Object(args))
                .map_err(|e| ApiError::from_body(&e))?
                .ok_or_else(|| ApiError::ToolNotAllowed("no such tool".into()))?;
            ToolRequest::Command { job_id, command }
        }
        ToolKind::Registry => {
            let mut args = inv.arguments.as_object().cloned().unwrap_or_default();
            let kind = wire::command_kind(&inv.tool)
                .ok_or_else(|| ApiError::ToolNotAllowed("no such tool".into()))?;
            // A command on an existing entry names it by its id field
            // (`door_id` for `update_door`); a registering one carries its
            // optional own id in its body.
            let id = if wire::registers(&inv.tool) {
                None
            } else {
                args.remove(wire::id_field(kind))
                    .and_then(|v| v.as_str().map(str::to_string))
            };
            let command = RegistryCommand::decode(&inv.tool, Value::Object(args))
                .map_err(|e| ApiError::from_body(&e))?
                .ok_or_else(|| ApiError::ToolNotAllowed("no such tool".into()))?;
            ToolRequest::Registry { id, command }
        }
        ToolKind::Query => ToolRequest::Query,
    };
    Ok(ToolCall {
        idempotency_key,
        request,
    })
}
