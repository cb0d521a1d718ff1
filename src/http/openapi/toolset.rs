//! The closed toolset: the manifest, tool calls (one envelope; each tool's
//! input schema is served by `GET /v1/tools` and checked in under
//! `schemas/tools/`), the invocation log, and the MCP endpoint.

use serde_json::{json, Map, Value};

use super::hoist;
use super::parts::{json_body, ok_json, operation, problem, query_param, query_text, Roles};
use crate::domain::Role;

const TOOL_INVOCATION_SCHEMA: &str = include_str!("../../../schemas/tool_invocation.schema.json");

/// The toolset's paths, and the schemas of its envelope, answer, manifest
/// and invocation record.
pub(super) fn paths(
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
    roles: &Roles,
) {
    let any_role: Vec<String> = [
        Role::Agent,
        Role::Dispatcher,
        Role::Technician,
        Role::Auditor,
        Role::Admin,
    ]
    .iter()
    .map(|r| r.as_str().to_string())
    .collect();
    manifest(paths, &any_role);
    tool_call(paths, &any_role, roles);
    invocation_log(paths, roles);
    mcp(paths, &any_role);
    toolset_schemas(schemas);
}

/// `GET /v1/tools`: the caller's manifest, for any role.
fn manifest(paths: &mut Map<String, Value>, any_role: &[String]) {
    let mut manifest = operation(
        "The caller's tools: name, description, input_schema (a JSON Schema, draft 2020-12), risk",
        any_role.to_vec(),
        json!([]),
        None,
        (
            "200",
            ok_json(
                "The manifest for the key's role",
                json!({"$ref": "#/components/schemas/ToolManifest"}),
            ),
        ),
        false,
    );
    for code in ["400", "403", "404"] {
        manifest["responses"]
            .as_object_mut()
            .expect("object")
            .remove(code);
    }
    paths.insert("/v1/tools".into(), json!({ "get": manifest }));
}

/// A tool call's answer: the envelope, whatever the outcome.
fn answer(description: &str) -> Value {
    ok_json(
        description,
        json!({"$ref": "#/components/schemas/ToolAnswer"}),
    )
}

/// `POST /v1/tools/{tool}`: one envelope for every tool, an answer for
/// every outcome.
fn tool_call(paths: &mut Map<String, Value>, any_role: &[String], roles: &Roles) {
    let tools: Vec<&String> = roles.0.tools.keys().collect();
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        answer("`outcome: ok`: a query's answer or a command's events (`result`)"),
    );
    responses.insert(
        "201".into(),
        answer("`outcome: ok`: `open_job` opened the job"),
    );
    responses.insert(
        "202".into(),
        answer("`outcome: approval_required`: only an approval was requested; `approval_id`"),
    );
    for (code, what) in [
        ("400", "`outcome: error`: the envelope or an argument is invalid (`validation_error` naming the field, `idempotency_key_required`)"),
        ("403", "`outcome: refused`: `tool_not_allowed` (the role may not call it, or no such tool) or `forbidden` (not your job, your own approval)"),
        ("404", "`outcome: error`: no such job, approval or SOP (`not_found`)"),
        ("409", "`outcome: refused` for `idempotency_key_reused`, `error` for `version_conflict`"),
        ("413", "`outcome: error`: body over the limit (`payload_too_large`)"),
        ("415", "`outcome: error`: the body is not JSON (`unsupported_media_type`)"),
        ("422", "`outcome: refused`: a guard refused the command (`invalid_transition`, `missing_intake_fields`, `nte_exceeded`, …)"),
        ("429", "`outcome: refused`: `rate_limited`; see Retry-After"),
        ("503", "`outcome: error`: `unavailable` or `projection_behind`; see Retry-After"),
    ] {
        responses.insert(code.into(), answer(what));
    }
    responses.insert(
        "401".into(),
        problem("Missing, unknown or revoked key (`unauthorized`); not recorded"),
    );
    let tool_param =
        json!({"name": "tool", "in": "path", "required": true, "schema": {"enum": tools}});
    paths.insert(
        "/v1/tools/{tool}".into(),
        json!({"post": {
            "summary": "Call one tool. Every call — ok, refused, approval required, error — is recorded in the tool-invocation log. Which roles may call which tool: GET /v1/tools and the allowlist (docs/06_tool_surface.md).",
            "x-roles": any_role,
            "parameters": [tool_param, {"$ref": "#/components/parameters/CorrelationId"}, {"$ref": "#/components/parameters/CausationId"}],
            "requestBody": json_body(json!({"$ref": "#/components/schemas/ToolEnvelope"})),
            "responses": responses,
        }}),
    );
}

/// `GET /v1/tool-invocations`: the invocation log, paged.
fn invocation_log(paths: &mut Map<String, Value>, roles: &Roles) {
    paths.insert(
        "/v1/tool-invocations".into(),
        json!({"get": operation(
            "The invocation log, in order: every call through the gate — REST, tool, MCP, page form — with actor, transport, operation, argument digest, outcome and the events it caused",
            roles.endpoint("GET /v1/tool-invocations"),
            json!([
                query_param("job_id", query_text(crate::app::read_models::QUERY_TEXT_CHARS)),
                query_param("actor", query_text(crate::app::read_models::QUERY_TEXT_CHARS)),
                query_param("tool", query_text(100)),
                query_param("transport", json!({"enum": ["rest", "tool", "mcp", "ui"]})),
                query_param("after", super::parts::whole(0)),
                query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
            ]),
            None,
            ("200", ok_json("Records (valid against schemas/tool_invocation.schema.json); `next_after` pages on", json!({"$ref": "#/components/schemas/ToolInvocationPage"}))),
            false,
        )}),
    );
}

/// `POST /mcp`: the same tools over the Model Context Protocol.
fn mcp(paths: &mut Map<String, Value>, any_role: &[String]) {
    let text = |d: &str| json!({"description": d, "content": {"text/plain": {"schema": {"type": "string"}}}});
    paths.insert(
        "/mcp".into(),
        json!({"post": {
            "summary": "The same tools as a Model Context Protocol server (streamable HTTP)",
            "description": "A Model Context Protocol server (streamable HTTP, stateless, JSON answers): initialize, tools/list (the key's tools), tools/call (arguments plus a required `idempotency_key`).\n\n**Accept**: every request must send `Accept: application/json, text/event-stream` (both media types, as the MCP transport requires); without either the answer is 406. The answer itself is `application/json`.\n\nThe Host must be one of DISPATCH_MCP_ALLOWED_HOSTS, and a browser's Origin one of DISPATCH_MCP_ALLOWED_ORIGINS.",
            "x-roles": any_role,
            "parameters": [{"name": "MCP-Protocol-Version", "in": "header", "required": false, "schema": {"type": "string"}}],
            "requestBody": json_body(json!({"type": "object", "required": ["jsonrpc", "method"], "properties": {
                "jsonrpc": {"type": "string", "const": "2.0"}, "id": {"type": ["integer", "string"]}, "method": {"type": "string"}, "params": {"type": "object"}}})),
            "responses": {
                "200": ok_json("A JSON-RPC response; a refused tool call is a result with isError and the problem in structuredContent; params that do not fit a served method are the JSON-RPC error `-32602 Invalid params`", json!({"type": "object", "required": ["jsonrpc"], "properties": {
                    "jsonrpc": {"type": "string", "enum": ["2.0"]}, "id": {"type": ["integer", "string", "null"]},
                    "result": {"type": "object", "description": "The method's result (a tool call's: content, structuredContent, isError)"},
                    "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}}}}})),
                "202": {"description": "A notification, accepted"},
                "400": {"description": "Not a valid MCP request: a body that is not JSON (JSON-RPC `-32700 Parse error`) or JSON that is no JSON-RPC message (`-32600 Invalid Request`), as a JSON-RPC error; headers or protocol version (plain text)",
                    "content": {
                        "application/json": {"schema": {"type": "object", "required": ["jsonrpc", "id", "error"], "properties": {
                            "jsonrpc": {"type": "string", "enum": ["2.0"]}, "id": {"type": ["number", "string", "null"], "description": "The request's id when it had one (JSON-RPC allows any number), else null"},
                            "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}}}}}},
                        "text/plain": {"schema": {"type": "string"}}}},
                "401": problem("Missing, unknown or revoked key (`unauthorized`)"),
                "403": {"description": "A cross-site Origin (not one of DISPATCH_MCP_ALLOWED_ORIGINS: problem+json, `forbidden`), or a Host not allowed (plain text)",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
                        "text/plain": {"schema": {"type": "string"}}}},
                "404": ok_json("A JSON-RPC error: no such method", json!({"type": "object"})),
                "406": text("The request's Accept does not list both application/json and text/event-stream"),
                "413": text("Body over the limit"),
                "415": text("The Content-Type is not application/json"),
                "503": problem("The database is unavailable (`unavailable`); see Retry-After")
            }
        }}),
    );
}

/// The toolset's schemas: the invocation record (bundled), the envelope,
/// the answer and the manifest.
fn toolset_schemas(schemas: &mut Map<String, Value>) {
    hoist::add_bundled(schemas, TOOL_INVOCATION_SCHEMA, "ToolInvocation");
    schemas.insert(
        "ToolInvocationPage".into(),
        json!({"type": "object", "required": ["invocations", "next_after"], "properties": {
            "invocations": {"type": "array", "items": {"$ref": "#/components/schemas/ToolInvocation"}},
            "next_after": {"type": ["integer", "null"], "description": "`after` for the next page (null: no more)"}}}),
    );
    schemas.insert(
        "ToolOutcome".into(),
        json!({"type": "string", "enum": ["ok", "refused", "approval_required", "error"], "description": "`ok`: done; `refused`: the allowlist, a guard or the rate limit said no; `approval_required`: only an approval was requested; `error`: the call could not be carried out"}),
    );
    schemas.insert(
        "ToolEnvelope".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["idempotency_key", "arguments"], "properties": {
            "invocation_id": {"type": "string", "format": "uuid", "description": "Your id for the call (e.g. from the gateway's tool-call id); made by the service if absent."},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]+$", "description": "A retry with the same key and arguments replays the first answer."},
            "arguments": {"type": "object", "description": "The tool's arguments, valid against its input schema (GET /v1/tools)."}}}),
    );
    schemas.insert(
        "ToolAnswer".into(),
        json!({"type": "object", "required": ["invocation_id", "tool", "outcome"], "properties": {
            "invocation_id": {"type": "string", "format": "uuid"},
            "tool": {"type": "string"},
            "outcome": {"$ref": "#/components/schemas/ToolOutcome"},
            "approval_id": {"type": "string", "description": "With `approval_required`."},
            "replayed": {"type": "boolean", "const": true, "description": "Present (true) when a stored answer was replayed for a retried idempotency key."},
            "result": {"description": "The command's answer (CommandAnswer) or the query's."},
            "error": {"$ref": "#/components/schemas/Problem"}}}),
    );
    schemas.insert(
        "ToolManifest".into(),
        json!({"type": "object", "required": ["role", "tools"], "properties": {
            "role": {"$ref": "#/components/schemas/Role"},
            "tools": {"type": "array", "items": {"type": "object", "required": ["name", "description", "input_schema", "risk"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "input_schema": {"type": "object"},
                "risk": {"enum": ["read", "write", "needs_approval"]}}}}}}),
    );
}
