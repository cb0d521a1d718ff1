//! The OpenAPI 3.1 document, generated from the code: request bodies from the
//! command types (schemars), paths from the command table, roles from the
//! allowlist, the audit envelope from `schemas/audit_event.schema.json`.
//! `docs/05_openapi.json` is this document checked in; a test fails on drift.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::decode;
use crate::domain::job::{JobCommand, JOB_COMMANDS};
use crate::domain::technician::{RegisterTechnician, SetShift, UpdateSkills};
use crate::domain::Role;
use crate::tools::allowlist::Allowlist;

const AUDIT_EVENT_SCHEMA: &str = include_str!("../../schemas/audit_event.schema.json");
const STATE_TRANSITION_SCHEMA: &str = include_str!("../../schemas/state_transition.schema.json");

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn mutation_params() -> Value {
    json!([
        {"$ref": "#/components/parameters/IdempotencyKey"},
        {"$ref": "#/components/parameters/IfMatch"},
        {"$ref": "#/components/parameters/CorrelationId"},
        {"$ref": "#/components/parameters/CausationId"}
    ])
}

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

fn operation(
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

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// A command's body with the document's example, when it has one.
fn command_body(name: &str, schema: Value) -> Value {
    let mut body = json_body(schema);
    if let Some(example) = command_example(name) {
        body["content"]["application/json"]["example"] = example;
    }
    body
}

/// A body a client would send for a job or technician command (by wire
/// name; `register_technician` is `POST /v1/technicians`). The document
/// shows it, and the hostile-input run sends it (schemathesis's examples
/// phase) against a job offered to `tech-a`. Each decodes as its command
/// (`tests/api/openapi.rs`).
pub fn command_example(name: &str) -> Option<Value> {
    let id = "0b5e0c7e-3f7e-5d7a-9a52-3b0c0a9f1e21";
    Some(match name {
        "open_job" => json!({
            "incident_type": "door_stuck_open", "channel": "ifm", "client_id": "retail-co",
            "site": {"id": "site-12", "name": "Retail Store 12", "address": "12 Market St"},
            "contact": {"name": "Sam Store", "phone": "+1-555-0100"},
            "door": {"id": "entrance-1", "location": "Main entrance"},
            "description": "Automatic sliding door stuck open after hours",
            "ifm": {"work_order_number": "WO-778812", "nte_cents": 50000}
        }),
        "record_intake" => json!({"fields": {
            "access_hours": "24/7 via security desk", "anyone_hurt_or_trapped": false,
            "opening_can_be_secured": false, "after_hours": true,
            "operator_make_model": "Stanley Dura-Glide", "stuck_position": "fully_open",
            "mode_switch_position": "automatic", "power_cycled": true, "obstruction_visible": false
        }}),
        "triage_job" => json!({"priority": "P1"}),
        "set_priority" => json!({"priority": "P2", "reason": "the store manager called back"}),
        "resolve_duplicate" => json!({"resolution": "link", "duplicate_of": id}),
        "offer_job" => json!({"technician_id": "tech-a"}),
        "accept_offer" => json!({"eta": "2099-11-21T01:30:00Z"}),
        "decline_offer" => json!({"reason": "on another call across town"}),
        "check_in" => json!({"method": "app", "lat": 40.7128, "lon": -74.006}),
        "complete_checklist_item" => {
            json!({"item_id": "sensor_test", "result": "pass", "note": "both sensors respond"})
        }
        "attach_evidence" => {
            json!({"kind": "photo_before", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "note": "door as found"})
        }
        "check_out" => json!({
            "outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true,
            "resolution": "Replaced the drive belt; tested ten cycles",
            "parts": [{"part_number": "BLT-220", "description": "Drive belt", "quantity": 1, "unit_price_cents": 4500}]
        }),
        "schedule_return_visit" => json!({"reason": "waiting for a replacement sensor"}),
        "verify_closeout" => json!({"items": [{"id": "door_operational", "result": "pass"}]}),
        "reopen_unsatisfactory" => json!({"reason": "the door sticks again"}),
        "close_job" => json!({"invoice_number": "INV-2026-0042"}),
        "cancel_job" => json!({"reason": "the customer fixed it"}),
        "add_note" => json!({"text": "Customer asks to call before arrival"}),
        "request_nte_increase" => {
            json!({"amount_cents": 65000, "reason": "a second sensor is needed"})
        }
        "decide_approval" => {
            json!({"approval_id": id, "decision": "approve", "reason": "within budget"})
        }
        "flag_sla_breach" => json!({"kind": "response"}),
        "start_travel" | "expire_offer" | "mark_billing_ready" => json!({}),
        "register_technician" => json!({
            "technician_id": "tech-e", "name": "Technician E", "skills": ["automatic_doors"],
            "certifications": [{"name": "AAADM", "expires_on": "2099-06-30"}],
            "territory": "north", "shift": "available", "labor_rate_cents": 9000
        }),
        "update_skills" => json!({
            "skills": ["automatic_doors", "swing_doors"],
            "certifications": [{"name": "AAADM", "expires_on": "2099-06-30"}]
        }),
        "set_shift" => json!({"shift": "on_call"}),
        _ => return None,
    })
}

/// A text query parameter as the service checks it: bounded, no control characters.
fn query_text(max: usize) -> Value {
    json!({"type": "string", "maxLength": max, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

/// The OpenAPI document the service serves at `/openapi.json`.
pub fn document(allowlist: &Allowlist) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let tool_roles = |name: &str| -> Vec<String> {
        allowlist
            .tools
            .get(name)
            .map(|t| t.roles.iter().map(|r| r.as_str().to_string()).collect())
            .unwrap_or_default()
    };
    let endpoint_roles = |name: &str| -> Vec<String> {
        allowlist
            .endpoints
            .get(name)
            .map(|e| e.roles.iter().map(|r| r.as_str().to_string()).collect())
            .unwrap_or_default()
    };
    let answer = json!({"$ref": "#/components/schemas/CommandAnswer"});
    let mut paths = Map::new();

    let open_schema = JobCommand::body_schema("open_job", &mut generator)
        .map(Value::from)
        .unwrap_or_default();
    paths.insert(
        "/v1/jobs".into(),
        json!({"post": operation("open_job: open a job", tool_roles("open_job"), mutation_params(), Some(command_body("open_job", open_schema)), ("201", ok_json("The job was opened", answer.clone())), true)}),
    );
    for name in JOB_COMMANDS.iter().filter(|n| **n != "open_job") {
        let schema = JobCommand::body_schema(name, &mut generator)
            .map(Value::from)
            .unwrap_or_default();
        let mut params = mutation_params();
        params
            .as_array_mut()
            .expect("array")
            .insert(0, path_param("job_id"));
        let description = allowlist
            .tools
            .get(*name)
            .map(|t| t.description.clone())
            .unwrap_or_default();
        let mut op = operation(
            &format!("{name}: {description}"),
            tool_roles(name),
            params,
            Some(command_body(name, schema)),
            ("200", ok_json("The command's events", answer.clone())),
            true,
        );
        if allowlist
            .tools
            .get(*name)
            .is_some_and(|t| t.risk == crate::tools::allowlist::Risk::NeedsApproval)
        {
            op["responses"]["202"] = ok_json(
                "Only an approval was requested (`status: approval_required`, `approval_id`)",
                answer.clone(),
            );
        }
        paths.insert(
            format!("/v1/jobs/{{job_id}}/commands/{name}"),
            json!({ "post": op }),
        );
    }
    let job_read = |summary: &str, roles: Vec<String>, schema: Value, extra: Vec<Value>| {
        let mut params = vec![path_param("job_id")];
        params.extend(extra);
        json!({"get": operation(summary, roles, Value::Array(params), None, ("200", ok_json(summary, schema)), false)})
    };
    paths.insert(
        "/v1/jobs/{job_id}".into(),
        job_read(
            "The job now, from its event stream",
            tool_roles("get_job"),
            json!({"$ref": "#/components/schemas/JobView"}),
            vec![],
        ),
    );
    paths.insert(
        "/v1/jobs/{job_id}/events".into(),
        job_read("The job's event envelopes in order", endpoint_roles("GET /v1/jobs/{job_id}/events"), json!({"type": "object", "required": ["job_id", "events"], "properties": {"job_id": {"type": "string"}, "events": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}}}), vec![]),
    );
    paths.insert(
        "/v1/jobs/{job_id}/audit".into(),
        job_read("Verify the job's hash chain: hashes, MACs, head and signed checkpoints; the first bad or missing sequence and the check that found it", endpoint_roles("GET /v1/jobs/{job_id}/audit"), json!({"type": "object", "required": ["verified", "events", "first_bad_sequence"], "properties": {"job_id": {"type": "string"}, "verified": {"type": "boolean"}, "events": {"type": "integer"}, "first_bad_sequence": {"type": ["integer", "null"]}, "check": {"description": "The check that found first_bad_sequence", "enum": ["sequence", "prev_hash", "hash", "mac", "unknown_key", "unkeyed", "head", "checkpoint", null]}, "unkeyed_events": {"description": "Events written before the chain was keyed, accepted because a signed checkpoint vouches for them", "type": "integer", "minimum": 0}}}), vec![]),
    );
    paths.insert(
        "/v1/jobs/{job_id}/replay".into(),
        job_read(
            "The job as it was after event N",
            endpoint_roles("GET /v1/jobs/{job_id}/replay"),
            json!({"type": "object", "required": ["job_id", "to_sequence", "job"], "properties": {"job_id": {"type": "string"}, "to_sequence": {"type": "integer"}, "job": {"$ref": "#/components/schemas/JobView"}}}),
            vec![json!({"name": "to_sequence", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}})],
        ),
    );
    paths.insert(
        "/v1/jobs/{job_id}/transitions".into(),
        job_read("The job's state transitions", endpoint_roles("GET /v1/jobs/{job_id}/transitions"), json!({"type": "object", "required": ["job_id", "transitions"], "properties": {"job_id": {"type": "string"}, "transitions": {"type": "array", "items": {"$ref": "#/components/schemas/StateTransition"}}}}), vec![]),
    );
    let tech_answer = ok_json(
        "The technician's events",
        json!({"$ref": "#/components/schemas/TechnicianAnswer"}),
    );
    let register = Value::from(generator.subschema_for::<RegisterTechnician>());
    paths.insert(
        "/v1/technicians".into(),
        json!({"post": operation("Register a technician", endpoint_roles("POST /v1/technicians"), mutation_params(), Some(command_body(decode::REGISTER_TECHNICIAN, register)), ("201", tech_answer.clone()), true)}),
    );
    for (name, schema) in [
        (
            "update_skills",
            Value::from(generator.subschema_for::<UpdateSkills>()),
        ),
        (
            "set_shift",
            Value::from(generator.subschema_for::<SetShift>()),
        ),
    ] {
        let mut params = mutation_params();
        params
            .as_array_mut()
            .expect("array")
            .insert(0, path_param("technician_id"));
        let endpoint = format!("POST /v1/technicians/{{technician_id}}/commands/{name}");
        paths.insert(
            format!("/v1/technicians/{{technician_id}}/commands/{name}"),
            json!({"post": operation(name, endpoint_roles(&endpoint), params, Some(command_body(name, schema)), ("200", tech_answer.clone()), true)}),
        );
    }
    // A raw upload is any bytes in any media type: `{}` admits every body
    // (a JSON-string schema would call most files invalid).
    let upload_body = json!({"required": true, "content": {
        "application/octet-stream": {"schema": {}},
        "image/*": {"schema": {}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "additionalProperties": false, "properties": {"file": {"contentMediaType": "application/octet-stream"}}}}
    }});
    let evidence_schema = json!({"type": "object", "required": ["sha256", "size", "content_type"], "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "size": {"type": "integer"}, "content_type": {"type": "string"}}});
    paths.insert(
        "/v1/evidence".into(),
        json!({"post": operation("Upload evidence (raw body or multipart with one file field)", endpoint_roles("POST /v1/evidence"), json!([{"$ref": "#/components/parameters/IdempotencyKey"}]), Some(upload_body), ("201", ok_json("Stored, content-addressed", evidence_schema)), true)}),
    );
    paths.insert(
        "/v1/evidence/{sha256}".into(),
        json!({"get": operation("Download evidence", endpoint_roles("GET /v1/evidence/{sha256}"), json!([path_param("sha256")]), None, ("200", json!({"description": "The content", "content": {"application/octet-stream": {"schema": {"type": "string"}}}})), false)}),
    );
    paths.insert(
        "/v1/sops".into(),
        json!({"get": operation("The SOP library", tool_roles("get_sop"), json!([]), None, ("200", ok_json("Every incident type", json!({"type": "object", "required": ["sops"], "properties": {"sops": {"type": "array", "items": {"type": "object"}}}}))), false)}),
    );
    paths.insert(
        "/v1/sops/{incident_type}".into(),
        json!({"get": operation("One incident type's SOPs: intake script, checklist, evidence, closeout", tool_roles("get_sop"), json!([path_param("incident_type")]), None, ("200", ok_json("The SOP", json!({"$ref": "#/components/schemas/Sop"}))), false)}),
    );
    read_model_paths(&mut paths, &tool_roles, &endpoint_roles);
    for (path, summary, content) in [
        ("/healthz", "The process is up", "application/json"),
        (
            "/readyz",
            "Database reachable and migrations applied (503 otherwise)",
            "application/json",
        ),
        ("/metrics", "Prometheus metrics", "text/plain"),
        ("/openapi.json", "This document", "application/json"),
    ] {
        let schema = if content == "text/plain" {
            json!({"type": "string"})
        } else {
            json!({"type": "object"})
        };
        let mut responses =
            json!({"200": {"description": summary, "content": {content: {"schema": schema}}}});
        if path == "/readyz" {
            responses["503"] = json!({"description": "Not ready", "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        paths.insert(
            path.into(),
            json!({"get": {"summary": summary, "security": [], "responses": responses}}),
        );
    }

    let mut schemas = generator.take_definitions(true);
    toolset_paths(&mut paths, &mut schemas, allowlist);
    let strip = |text: &str| -> Value {
        let mut v: Value = serde_json::from_str(text).expect("bundled schema is JSON");
        if let Some(o) = v.as_object_mut() {
            o.remove("$schema");
            o.remove("$id");
        }
        v
    };
    let audit = strip(AUDIT_EVENT_SCHEMA);
    let transition = strip(STATE_TRANSITION_SCHEMA);
    schemas.insert("AuditEvent".into(), rewrite_defs(audit, "AuditEvent"));
    schemas.insert(
        "StateTransition".into(),
        rewrite_defs(transition, "StateTransition"),
    );
    schemas.insert(
        "Problem".into(),
        json!({"type": "object", "required": ["type", "title", "status", "detail", "code"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
            "code": {"type": "string", "pattern": "^[a-z_]+$"}, "field": {"type": "string"},
            "missing": {"type": "array", "items": {"type": "string"}}, "current_state": {"type": "string"}, "current_version": {"type": "integer"}}}),
    );
    schemas.insert(
        "CommandAnswer".into(),
        json!({"type": "object", "required": ["job_id", "version", "state", "events"], "properties": {
            "job_id": {"type": "string"}, "version": {"type": "integer", "minimum": 0}, "state": {"type": "string"},
            "status": {"const": "approval_required"}, "approval_id": {"type": "string"},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventRef"}}}}),
    );
    schemas.insert(
        "EventRef".into(),
        json!({"type": "object", "required": ["event_id", "event_type", "sequence", "global_position"], "properties": {
            "event_id": {"type": "string", "format": "uuid"}, "event_type": {"type": "string"}, "sequence": {"type": "integer"}, "global_position": {"type": "integer"}}}),
    );
    schemas.insert(
        "TechnicianAnswer".into(),
        json!({"type": "object", "required": ["technician_id", "version", "events"], "properties": {
            "technician_id": {"type": "string"}, "version": {"type": "integer"}, "technician": {"type": ["object", "null"]},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventRef"}}}}),
    );
    schemas.insert(
        "JobView".into(),
        json!({"type": "object", "required": ["job_id", "version", "state", "incident_type", "flags", "visits", "checklist", "evidence", "approvals", "invoice"], "properties": {
            "job_id": {"type": "string"}, "version": {"type": "integer"}, "state": {"type": "string"}, "incident_type": {"type": "string"},
            "priority": {"type": ["string", "null"]}, "sla_due_at": {"type": ["string", "null"]}, "nte_cents": {"type": ["integer", "null"]},
            "flags": {"type": "object"}, "visits": {"type": "array"}, "checklist": {"type": "object"}, "evidence": {"type": "array"},
            "approvals": {"type": "array"}, "invoice": {"type": "object", "required": ["lines", "total_cents"]}}}),
    );
    schemas.insert(
        "Sop".into(),
        json!({"type": "object", "required": ["id", "version", "sha256", "incident_type", "required_skills", "intake", "field", "closeout"]}),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dispatch-api",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The event-sourced enforcement service between an AI dispatch agent and a door-service company's operations. Every mutation is an idempotent command; every event is hash-chained. Roles per operation are in `x-roles` (from the declarative allowlist)."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key made with `dispatch-api keys create`."}},
            "parameters": {
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": true, "description": "1-200 printable characters; the same key with the same body replays the first answer.", "schema": {"type": "string", "minLength": 1, "maxLength": 200}},
                "IfMatch": {"name": "If-Match", "in": "header", "required": false, "description": "The job version the caller expects, e.g. \"3\".", "schema": {"type": "string"}},
                "CorrelationId": {"name": "X-Correlation-Id", "in": "header", "required": false, "schema": {"type": "string", "format": "uuid"}},
                "CausationId": {"name": "X-Causation-Id", "in": "header", "required": false, "schema": {"type": "string", "format": "uuid"}}
            },
            "schemas": schemas
        }
    })
}

/// The read-model queries: each answer carries `position`; `min_position`
/// waits for the model to apply a command's event or answers 503.
fn read_model_paths(
    paths: &mut Map<String, Value>,
    tool_roles: &dyn Fn(&str) -> Vec<String>,
    endpoint_roles: &dyn Fn(&str) -> Vec<String>,
) {
    let q = |name: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "schema": schema});
    let text = query_text(crate::app::read_models::QUERY_TEXT_CHARS);
    let min_position = q("min_position", json!({"type": "integer", "minimum": 0}));
    let rows = |summary: &str| {
        ok_json(
            summary,
            json!({"type": "object", "required": ["position", "rows"], "properties": {"position": {"type": "integer"}, "rows": {"type": "array", "items": {"type": "object"}}}}),
        )
    };
    let behind = problem("The read model has not applied `min_position` in time (`projection_behind`, with `position`)");
    let read = |summary: &str, roles: Vec<String>, params: Vec<Value>, ok: Value| {
        let mut op = operation(
            summary,
            roles,
            Value::Array(params),
            None,
            ("200", ok),
            false,
        );
        op["responses"]["503"] = behind.clone();
        json!({ "get": op })
    };
    let states = json!({"type": "string", "maxLength": crate::app::read_models::QUERY_STATES_CHARS, "description": "a job state, or several separated by commas"});
    paths.insert(
        "/v1/board".into(),
        read(
            "The dispatch board (projection): open jobs with priority, SLA countdown and at-risk marker, technician, ETA, flags",
            tool_roles("search_board"),
            vec![
                q("state", states),
                q("priority", json!({"enum": ["P1", "P2", "P3", "P4"]})),
                q("technician_id", text.clone()),
                q("client_id", text.clone()),
                q("incident_type", text.clone()),
                q("sla", json!({"enum": ["at_risk", "breached"]})),
                q("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                min_position.clone(),
            ],
            rows("Board rows"),
        ),
    );
    paths.insert(
        "/v1/billing/readiness".into(),
        read(
            "Billing readiness (projection): ready, or the blockers; invoice lines and total against the NTE",
            tool_roles("get_billing_status"),
            vec![
                q("ready", json!({"enum": ["true", "false"]})),
                q("job_id", text.clone()),
                q("client_id", text.clone()),
                q("include_final", json!({"enum": ["true", "false"]})),
                q("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                min_position.clone(),
            ],
            rows("Billing rows"),
        ),
    );
    let roster = read(
        "The roster (projection): shift, skills, territory, current load; eligibility for an incident type",
        tool_roles("find_technicians"),
        vec![q("eligible_for", text.clone()), q("territory", text.clone()), q("shift", json!({"enum": ["available", "on_call", "off"]})), min_position.clone()],
        rows("Technicians"),
    );
    if let Some(entry) = paths
        .get_mut("/v1/technicians")
        .and_then(Value::as_object_mut)
    {
        entry.insert("get".into(), roster["get"].clone());
    }
    let mut schedule = read(
        "A technician's open offers and visits with ETAs (projection)",
        endpoint_roles("GET /v1/technicians/{technician_id}/schedule"),
        vec![path_param("technician_id"), min_position.clone()],
        ok_json(
            "Visits",
            json!({"type": "object", "required": ["position", "technician_id", "visits"], "properties": {"position": {"type": "integer"}, "technician_id": {"type": "string"}, "visits": {"type": "array", "items": {"type": "object"}}}}),
        ),
    );
    schedule["get"]["responses"]
        .as_object_mut()
        .expect("object")
        .remove("400");
    schedule["get"]["responses"]["400"] = problem("Bad query parameter (`validation_error`)");
    paths.insert("/v1/technicians/{technician_id}/schedule".into(), schedule);
    paths.insert(
        "/v1/approvals".into(),
        read(
            "Approvals (projection): pending ones wait for a person",
            endpoint_roles("GET /v1/approvals"),
            vec![
                q(
                    "status",
                    json!({"enum": ["pending", "granted", "rejected", "moot"]}),
                ),
                q("job_id", text),
                q(
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 1000}),
                ),
                min_position,
            ],
            rows("Approvals"),
        ),
    );
    paths.insert(
        "/v1/projections".into(),
        json!({"get": operation(
            "Each read model: name, version, position, lag in events and seconds, live or rebuilding",
            endpoint_roles("GET /v1/projections"),
            json!([]),
            None,
            ("200", ok_json("Read models", json!({"type": "object", "required": ["projections"], "properties": {"projections": {"type": "array", "items": {"type": "object", "required": ["name", "version", "status", "position", "lag_events", "lag_seconds"]}}}}))),
            false,
        )}),
    );
}

/// Moves a bundled schema's `$defs` references under its own component.
fn rewrite_defs(mut schema: Value, name: &str) -> Value {
    let text = schema
        .to_string()
        .replace("#/$defs/", &format!("#/components/schemas/{name}/$defs/"));
    schema = serde_json::from_str(&text).expect("still JSON");
    schema
}

const TOOL_INVOCATION_SCHEMA: &str = include_str!("../../schemas/tool_invocation.schema.json");

/// The closed toolset: the manifest, tool calls (one envelope; each tool's
/// input schema is served by `GET /v1/tools` and checked in under
/// `schemas/tools/`), the invocation log, and the MCP endpoint.
fn toolset_paths(
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
    allowlist: &Allowlist,
) {
    let tools: Vec<&String> = allowlist.tools.keys().collect();
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
    let answer = |description: &str| {
        ok_json(
            description,
            json!({"$ref": "#/components/schemas/ToolAnswer"}),
        )
    };
    let mut manifest = operation(
        "The caller's tools: name, description, input_schema (a JSON Schema, draft 2020-12), risk",
        any_role.clone(),
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

    let q = |name: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "schema": schema});
    paths.insert(
        "/v1/tool-invocations".into(),
        json!({"get": operation(
            "The invocation log, in order: every call through the gate — REST, tool, MCP, page form — with actor, transport, operation, argument digest, outcome and the events it caused",
            allowlist
                .endpoints
                .get("GET /v1/tool-invocations")
                .map(|e| e.roles.iter().map(|r| r.as_str().to_string()).collect())
                .unwrap_or_default(),
            json!([
                q("job_id", query_text(crate::app::read_models::QUERY_TEXT_CHARS)),
                q("actor", query_text(crate::app::read_models::QUERY_TEXT_CHARS)),
                q("tool", query_text(100)),
                q("transport", json!({"enum": ["rest", "tool", "mcp", "ui"]})),
                q("after", json!({"type": "integer", "minimum": 0})),
                q("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
            ]),
            None,
            ("200", ok_json("Records (valid against schemas/tool_invocation.schema.json); `next_after` pages on", json!({
                "type": "object", "required": ["invocations", "next_after"], "properties": {
                    "invocations": {"type": "array", "items": {"$ref": "#/components/schemas/ToolInvocation"}},
                    "next_after": {"type": ["integer", "null"]}}}))),
            false,
        )}),
    );

    let text = |d: &str| json!({"description": d, "content": {"text/plain": {"schema": {"type": "string"}}}});
    paths.insert(
        "/mcp".into(),
        json!({"post": {
            "summary": "The same tools as a Model Context Protocol server (streamable HTTP, stateless, JSON answers): initialize, tools/list (the key's tools), tools/call (arguments plus a required `idempotency_key`). Send `Accept: application/json, text/event-stream`; the Host must be one of DISPATCH_MCP_ALLOWED_HOSTS, and a browser's Origin one of DISPATCH_MCP_ALLOWED_ORIGINS.",
            "x-roles": any_role,
            "parameters": [{"name": "MCP-Protocol-Version", "in": "header", "required": false, "schema": {"type": "string"}}],
            "requestBody": json_body(json!({"type": "object", "required": ["jsonrpc", "method"], "properties": {
                "jsonrpc": {"const": "2.0"}, "id": {"type": ["integer", "string"]}, "method": {"type": "string"}, "params": {"type": "object"}}})),
            "responses": {
                "200": ok_json("A JSON-RPC response; a refused tool call is a result with isError and the problem in structuredContent", json!({"type": "object", "required": ["jsonrpc"]})),
                "202": {"description": "A notification, accepted"},
                "400": text("Not a valid MCP request (headers, protocol version)"),
                "401": problem("Missing, unknown or revoked key (`unauthorized`)"),
                "403": {"description": "A cross-site Origin (not one of DISPATCH_MCP_ALLOWED_ORIGINS: problem+json, `forbidden`), or a Host not allowed (plain text)",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
                        "text/plain": {"schema": {"type": "string"}}}},
                "404": ok_json("A JSON-RPC error: no such method", json!({"type": "object"})),
                "406": text("The client must accept application/json and text/event-stream"),
                "413": text("Body over the limit"),
                "415": text("The body is not a JSON-RPC message"),
                "503": problem("The database is unavailable (`unavailable`); see Retry-After")
            }
        }}),
    );

    let mut record: Value =
        serde_json::from_str(TOOL_INVOCATION_SCHEMA).expect("bundled schema is JSON");
    if let Some(o) = record.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    schemas.insert(
        "ToolInvocation".into(),
        rewrite_defs(record, "ToolInvocation"),
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
            "outcome": {"enum": ["ok", "refused", "approval_required", "error"]},
            "approval_id": {"type": "string", "description": "With `approval_required`."},
            "replayed": {"const": true, "description": "A stored answer replayed for a retried idempotency key."},
            "result": {"description": "The command's answer (CommandAnswer) or the query's."},
            "error": {"$ref": "#/components/schemas/Problem"}}}),
    );
    schemas.insert(
        "ToolManifest".into(),
        json!({"type": "object", "required": ["role", "tools"], "properties": {
            "role": {"type": "string"},
            "tools": {"type": "array", "items": {"type": "object", "required": ["name", "description", "input_schema", "risk"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "input_schema": {"type": "object"},
                "risk": {"enum": ["read", "write", "needs_approval"]}}}}}}),
    );
}
