//! The webhook endpoints' paths (`src/http/webhooks.rs`) and their named
//! schema, `Webhook`. The event types a registration may name are listed
//! from the domain's event enums (`domain::event_types`).

use serde_json::{json, Map, Value};

use super::parts::{json_body, ok_json, operation, path_param, problem, query_param, Roles};
use crate::domain::event_types;

const REF: &str = "#/components/schemas/Webhook";

/// Every filter entry a registration may give: `*`, `<aggregate type>.*`,
/// and each known event type.
fn filter_entries() -> Vec<String> {
    let mut entries = vec!["*".to_string()];
    entries.extend(event_types::known().iter().map(|(a, _)| format!("{a}.*")));
    entries.extend(event_types::filter_names());
    entries
}

fn id_param() -> Value {
    let mut p = path_param("webhook_id");
    p["schema"] = json!({"type": "string", "format": "uuid"});
    p
}

fn limit_param() -> Value {
    query_param(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    )
}

/// An operation on one endpoint (its id in the path); 404 when none.
fn on_endpoint(
    summary: &str,
    roles: Vec<String>,
    extra: Vec<Value>,
    body: Option<Value>,
    success: (&str, Value),
    mutation: bool,
) -> Value {
    let mut params = vec![id_param()];
    params.extend(extra);
    let mut op = operation(summary, roles, json!(params), body, success, mutation);
    op["responses"]["404"] = problem("No such webhook endpoint (`not_found`)");
    op
}

/// The webhook paths.
pub(super) fn paths(paths: &mut Map<String, Value>, roles: &Roles) {
    let registration = json!({"type": "object", "additionalProperties": false, "required": ["url", "event_types"], "properties": {
        "url": {"type": "string", "format": "uri", "maxLength": 2000, "description": "https:// on the public internet (http:// and local addresses only with DISPATCH_WEBHOOKS_ALLOW_LOCAL)"},
        "event_types": {"type": "array", "minItems": 1, "maxItems": 200, "items": {"enum": filter_entries()}, "description": "`<aggregate type>.<EventType>`, `<aggregate type>.*`, or `*` for every event (also those added later)"},
        "include_personal_data": {"type": "boolean", "default": false, "description": "false: contact names, phones and emails and technicians' names are removed from every event sent (docs/03, \"Events out: webhooks\")"},
        "description": {"type": ["string", "null"], "maxLength": 500}
    }});
    let mut created = json!({"allOf": [{"$ref": REF}, {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]{43}=$", "description": "The signing secret (Standard Webhooks): shown here only, never again"}}}]});
    created = ok_json(
        "Registered; it gets the events committed from now on",
        created,
    );
    let mut register = operation(
        "Register a webhook endpoint",
        roles.endpoint("POST /v1/webhooks"),
        json!([]),
        Some(json_body(registration)),
        ("201", created),
        true,
    );
    register["description"] = json!("Not an idempotent command (no Idempotency-Key): the answer holds the secret, which is never stored for a replay; registering the same URL again is 409 `webhook_already_registered` (with `webhook_id`).");
    register["responses"]["409"] =
        problem("A live endpoint has this URL (`webhook_already_registered`, with `webhook_id`)");
    register["responses"]["422"] = problem("The URL is not https or points to a non-public address (`webhook_url_refused`), or an event type is unknown (`unknown_event_type`)");
    let list = operation(
        "Every webhook endpoint (no secrets)",
        roles.endpoint("GET /v1/webhooks"),
        json!([]),
        None,
        (
            "200",
            ok_json(
                "The endpoints",
                json!({"type": "object", "required": ["webhooks"], "properties": {"webhooks": {"type": "array", "items": {"$ref": REF}}}}),
            ),
        ),
        false,
    );
    paths.insert(
        "/v1/webhooks".into(),
        json!({"post": register, "get": list}),
    );
    one(paths, roles);
    logs(paths, roles);
    replays(paths, roles);
}

/// `GET` and `DELETE /v1/webhooks/{webhook_id}`.
fn one(paths: &mut Map<String, Value>, roles: &Roles) {
    let shown = json!({"allOf": [{"$ref": REF}, {"type": "object", "properties": {
        "lag_events": {"type": ["integer", "null"], "description": "events after its checkpoint (any type: those it did not ask for pass at once)"},
        "lag_seconds": {"type": ["number", "null"], "description": "age of the first event not yet delivered"},
        "retrying_events": {"type": "array", "items": {"type": "object", "properties": {
            "event_id": {"type": "string", "format": "uuid"}, "global_position": {"type": "integer"}, "attempts": {"type": "integer"},
            "first_failed_at": {"type": "string", "format": "date-time"}, "last_attempt_at": {"type": "string", "format": "date-time"}, "last_error": {"type": "string"}}}}
    }}]});
    let get = on_endpoint(
        "A webhook endpoint: status, position, lag, failing time, events being retried",
        roles.endpoint("GET /v1/webhooks/{webhook_id}"),
        vec![],
        None,
        ("200", ok_json("The endpoint", shown)),
        false,
    );
    let delete = on_endpoint(
        "Delete a webhook endpoint (no more deliveries; its attempts and dead letters are kept)",
        roles.endpoint("DELETE /v1/webhooks/{webhook_id}"),
        vec![],
        None,
        (
            "200",
            ok_json(
                "Deleted",
                json!({"type": "object", "required": ["id", "deleted_at"], "properties": {"id": {"type": "string", "format": "uuid"}, "deleted_at": {"type": "string", "format": "date-time"}}}),
            ),
        ),
        false,
    );
    paths.insert(
        "/v1/webhooks/{webhook_id}".into(),
        json!({"get": get, "delete": delete}),
    );
}

/// The attempts log and the dead letters.
fn logs(paths: &mut Map<String, Value>, roles: &Roles) {
    let attempt = json!({"type": "object", "required": ["event_id", "global_position", "attempt", "latency_ms", "at"], "properties": {
        "event_id": {"type": "string", "format": "uuid"}, "global_position": {"type": "integer"}, "attempt": {"type": "integer", "minimum": 1},
        "http_status": {"type": ["integer", "null"], "description": "null: no answer (timeout, refused address, connection)"},
        "error": {"type": ["string", "null"], "description": "null: delivered (2xx)"},
        "latency_ms": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}}});
    paths.insert(
        "/v1/webhooks/{webhook_id}/attempts".into(),
        json!({"get": on_endpoint("The newest delivery attempts", roles.endpoint("GET /v1/webhooks/{webhook_id}/attempts"), vec![limit_param()], None,
            ("200", ok_json("Attempts, newest first", json!({"type": "object", "required": ["attempts"], "properties": {"attempts": {"type": "array", "items": attempt}}}))), false)}),
    );
    let dead = json!({"type": "object", "required": ["event_id", "global_position", "attempts", "last_error", "dead_at"], "properties": {
        "event_id": {"type": "string", "format": "uuid"}, "global_position": {"type": "integer"}, "attempts": {"type": "integer"},
        "last_error": {"type": "string"}, "first_failed_at": {"type": "string", "format": "date-time"}, "dead_at": {"type": "string", "format": "date-time"},
        "replay_requested_at": {"type": ["string", "null"], "format": "date-time"}, "replayed_at": {"type": ["string", "null"], "format": "date-time", "description": "when a replay delivered it"}}});
    paths.insert(
        "/v1/webhooks/{webhook_id}/dead-letters".into(),
        json!({"get": on_endpoint("Events given up on after 24 hours of failed attempts", roles.endpoint("GET /v1/webhooks/{webhook_id}/dead-letters"), vec![limit_param()], None,
            ("200", ok_json("Dead letters, newest first", json!({"type": "object", "required": ["dead_letters"], "properties": {"dead_letters": {"type": "array", "items": dead}}}))), false)}),
    );
}

/// Replays and re-enabling.
fn replays(paths: &mut Map<String, Value>, roles: &Roles) {
    let empty = json!({"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false}}}});
    paths.insert(
        "/v1/webhooks/{webhook_id}/dead-letters/replay".into(),
        json!({"post": on_endpoint("Deliver the dead letters again (each once more, out of order, by the leading replica; the outcome shows in the dead letters)", roles.endpoint("POST /v1/webhooks/{webhook_id}/dead-letters/replay"), vec![], Some(empty.clone()),
            ("202", ok_json("Queued", json!({"type": "object", "required": ["id", "queued"], "properties": {"id": {"type": "string", "format": "uuid"}, "queued": {"type": "integer"}}}))), true)}),
    );
    let from = json!({"type": "object", "additionalProperties": false, "required": ["from_position"], "properties": {"from_position": {"type": "integer", "minimum": 1, "description": "global position of the first event to deliver again (past the end: skip to the end)"}}});
    paths.insert(
        "/v1/webhooks/{webhook_id}/replay".into(),
        json!({"post": on_endpoint("Deliver again from a global position (the endpoint's checkpoint is reset)", roles.endpoint("POST /v1/webhooks/{webhook_id}/replay"), vec![], Some(json_body(from)),
            ("200", ok_json("Reset", json!({"type": "object", "required": ["id", "from_position", "position"], "properties": {"id": {"type": "string", "format": "uuid"}, "from_position": {"type": "integer"}, "position": {"type": "integer", "description": "the checkpoint's new position"}}}))), true)}),
    );
    paths.insert(
        "/v1/webhooks/{webhook_id}/enable".into(),
        json!({"post": on_endpoint("Re-enable a disabled endpoint (deliveries resume at its checkpoint, with fresh retry windows)", roles.endpoint("POST /v1/webhooks/{webhook_id}/enable"), vec![], Some(empty),
            ("200", ok_json("The endpoint", json!({"$ref": REF}))), true)}),
    );
}

/// The `Webhook` schema.
pub(super) fn schemas(schemas: &mut Map<String, Value>) {
    let at = json!({"type": ["string", "null"], "format": "date-time"});
    schemas.insert("Webhook".into(), json!({"type": "object", "required": ["id", "subscription", "url", "event_types", "include_personal_data", "status", "created_by", "created_at", "dead_letters", "retrying"], "properties": {
        "id": {"type": "string", "format": "uuid"},
        "subscription": {"type": "string", "description": "`webhook:<id>`: its checkpoint in GET /v1/subscriptions"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "include_personal_data": {"type": "boolean"},
        "description": {"type": ["string", "null"]},
        "status": {"enum": ["enabled", "disabled"]},
        "disabled_reason": {"type": ["string", "null"]},
        "disabled_at": at,
        "failing_since": {"type": ["string", "null"], "format": "date-time", "description": "the first failed attempt since the last successful one"},
        "created_by": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "position": {"type": ["integer", "null"], "description": "global position of the last event acknowledged"},
        "events_delivered": {"type": "integer"},
        "delivered_at": at,
        "last_error": {"type": ["string", "null"]},
        "last_error_at": at,
        "dead_letters": {"type": "integer", "description": "dead letters not replayed"},
        "retrying": {"type": "integer", "description": "events waiting for a retry"}
    }}));
}
