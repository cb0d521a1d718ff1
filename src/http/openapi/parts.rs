//! The pieces every operation of the document is made of: bodies, answers,
//! the shared parameters and error answers, and the roles from the
//! allowlist.

use serde_json::{json, Map, Value};

use super::examples::command_example;
use crate::tools::allowlist::Allowlist;

/// `Idempotency-Key`: printable ASCII (`crate::http::extract::mutation_meta`
/// checks it; length 1-200 is the schema's).
pub(super) const IDEMPOTENCY_KEY_PATTERN: &str = "^[ -~]+$";

/// `If-Match`: a version, bare, quoted or weak
/// (`crate::http::extract::if_match`).
pub(super) const IF_MATCH_PATTERN: &str = "^(W/)?(\"[0-9]{1,18}\"|[0-9]{1,18})$";

/// A whole-number query parameter from `min` (the service parses it as a
/// 64-bit integer: larger is `validation_error`).
pub(super) fn whole(min: i64) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": min, "maximum": i64::MAX})
}

/// The roles the allowlist gives an operation, for its `x-roles`.
pub(super) struct Roles<'a>(pub(super) &'a Allowlist);

impl Roles<'_> {
    /// The roles that may call the tool `name` (its REST route shares them).
    pub(super) fn tool(&self, name: &str) -> Vec<String> {
        self.0
            .tools
            .get(name)
            .map(|t| t.roles.iter().map(|r| r.as_str().to_string()).collect())
            .unwrap_or_default()
    }

    /// The roles of an endpoint the allowlist names `METHOD /path`.
    pub(super) fn endpoint(&self, name: &str) -> Vec<String> {
        self.0
            .endpoints
            .get(name)
            .map(|e| e.roles.iter().map(|r| r.as_str().to_string()).collect())
            .unwrap_or_default()
    }
}

/// An error answer: problem+json with `description`.
pub(super) fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// A JSON answer with `schema`.
pub(super) fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// The headers of every mutation: idempotency key, expected version,
/// correlation and causation ids.
pub(super) fn mutation_params() -> Value {
    json!([
        {"$ref": "#/components/parameters/IdempotencyKey"},
        {"$ref": "#/components/parameters/IfMatch"},
        {"$ref": "#/components/parameters/CorrelationId"},
        {"$ref": "#/components/parameters/CausationId"}
    ])
}

/// The error answers every operation shares; a mutation's differ from a
/// query's.
fn common_errors(responses: &mut Map<String, Value>, mutation: bool) {
    responses.insert(
        "401".into(),
        problem("Missing, unknown or revoked key (`unauthorized`)"),
    );
    responses.insert(
        "403".into(),
        problem("The key's role may not do this (`forbidden`)"),
    );
    responses.insert(
        "404".into(),
        problem("No such job, technician or command (`not_found`)"),
    );
    responses.insert(
        "429".into(),
        problem("The key's call budget, shared by every transport, is spent (`rate_limited`); see Retry-After"),
    );
    responses.insert(
        "503".into(),
        problem("The database is unavailable (`unavailable`); see Retry-After"),
    );
    if mutation {
        responses.insert("400".into(), problem("Malformed body, unknown field, bad header (`validation_error`, `idempotency_key_required`)"));
        responses.insert(
            "409".into(),
            problem("`version_conflict`, `idempotency_key_reused`, `job_already_exists`"),
        );
        responses.insert(
            "413".into(),
            problem("Body over the limit (`payload_too_large`)"),
        );
        responses.insert(
            "415".into(),
            problem("Body is not JSON (`unsupported_media_type`)"),
        );
        responses.insert(
            "422".into(),
            problem(
                "A guard refused the command: `invalid_transition`, `missing_intake_fields`, …",
            ),
        );
    } else {
        responses.insert(
            "400".into(),
            problem("Bad query parameter (`validation_error`)"),
        );
    }
}

fn roles_of(list: &[String]) -> Value {
    json!(list)
}

/// One operation: its roles, parameters, body, success answer and the
/// shared error answers.
pub(super) fn operation(
    summary: &str,
    roles: Vec<String>,
    params: Value,
    body: Option<Value>,
    success: (&str, Value),
    mutation: bool,
) -> Value {
    let mut responses = Map::new();
    let (code, resp) = success;
    responses.insert(code.into(), resp);
    common_errors(&mut responses, mutation);
    let mut op = json!({"summary": summary, "x-roles": roles_of(&roles), "parameters": params, "responses": responses});
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

/// A required JSON request body.
pub(super) fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// A command's body with the document's example, when it has one.
pub(super) fn command_body(name: &str, schema: Value) -> Value {
    let mut body = json_body(schema);
    if let Some(example) = command_example(name) {
        body["content"]["application/json"]["example"] = example;
    }
    body
}

/// A text query parameter as the service checks it: bounded, no control characters.
pub(super) fn query_text(max: usize) -> Value {
    json!({"type": "string", "maxLength": max, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
}

/// A required path parameter.
pub(super) fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

/// An optional query parameter.
pub(super) fn query_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}
