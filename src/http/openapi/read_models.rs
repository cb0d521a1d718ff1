//! The read-model queries: each answer carries `position`; `min_position`
//! waits for the model to apply a command's event or answers 503.

use serde_json::{json, Map, Value};

use super::parts::{
    ok_json, operation, path_param, problem, query_param, query_text, whole, Roles,
};
use crate::app::read_models::QUERY_TEXT_CHARS;
use crate::domain::job::JobState;

/// The board, billing readiness, the roster, schedules, approvals and the
/// read models' own status. The roster is the `get` of `/v1/technicians`,
/// whose `post` [`super::paths::technicians`] has already put there.
pub(super) fn paths(paths: &mut Map<String, Value>, roles: &Roles) {
    board_and_billing(paths, roles);
    roster_and_schedule(paths, roles);
    approvals_and_projections(paths, roles);
    subscriptions(paths, roles);
    door_history(paths, roles);
}

/// A free-text filter.
fn text() -> Value {
    query_text(QUERY_TEXT_CHARS)
}

/// `min_position`: the position the caller waits for.
fn min_position() -> Value {
    query_param("min_position", whole(0))
}

/// `limit`: at most this many rows.
fn limit() -> Value {
    query_param(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": 1000}),
    )
}

/// An answer of rows at a position.
fn rows(summary: &str) -> Value {
    ok_json(
        summary,
        json!({"type": "object", "required": ["position", "rows"], "properties": {"position": {"type": "integer"}, "rows": {"type": "array", "items": {"type": "object"}}}}),
    )
}

/// A read-model query: also 503 when the model is behind `min_position`.
fn read(summary: &str, roles: Vec<String>, params: Vec<Value>, ok: Value) -> Value {
    let behind = problem("The read model has not applied `min_position` in time (`projection_behind`, with `position`)");
    let mut op = operation(
        summary,
        roles,
        Value::Array(params),
        None,
        ("200", ok),
        false,
    );
    op["responses"]["503"] = behind;
    json!({ "get": op })
}

/// `GET /v1/board` and `GET /v1/billing/readiness`.
fn board_and_billing(paths: &mut Map<String, Value>, roles: &Roles) {
    let mut states = query_param(
        "state",
        json!({"type": "array", "items": {"$ref": "#/components/schemas/JobState"}, "minItems": 1, "maxItems": JobState::ALL.len()}),
    );
    states["description"] = json!("Jobs in any of these states: the parameter repeated (`state=intake&state=triaged`); one value with the states separated by commas is also accepted");
    states["style"] = json!("form");
    states["explode"] = json!(true);
    paths.insert(
        "/v1/board".into(),
        read(
            "The dispatch board (projection): open jobs with priority, SLA countdown and at-risk marker, technician, ETA, flags; planned work and overdue work; check-ins off site",
            roles.tool("search_board"),
            vec![
                states,
                query_param("priority", json!({"enum": ["P1", "P2", "P3", "P4"]})),
                query_param("technician_id", text()),
                query_param("client_id", text()),
                query_param("incident_type", text()),
                query_param("sla", json!({"enum": ["at_risk", "breached"]})),
                query_param("planned", json!({"enum": ["true", "false"]})),
                query_param("overdue", json!({"enum": ["true", "false"]})),
                query_param("checked_in_off_site", json!({"enum": ["true", "false"]})),
                limit(),
                min_position(),
            ],
            rows("Board rows"),
        ),
    );
    paths.insert(
        "/v1/billing/readiness".into(),
        read(
            "Billing readiness (projection): ready, or the blockers; invoice lines and total against the NTE",
            roles.tool("get_billing_status"),
            vec![
                query_param("ready", json!({"enum": ["true", "false"]})),
                query_param("job_id", text()),
                query_param("client_id", text()),
                query_param("include_final", json!({"enum": ["true", "false"]})),
                limit(),
                min_position(),
            ],
            rows("Billing rows"),
        ),
    );
}

/// `GET /v1/technicians` (the roster) and a technician's schedule.
fn roster_and_schedule(paths: &mut Map<String, Value>, roles: &Roles) {
    let mut roster = read(
        "The roster (projection): shift, skills, territory, current load; eligibility for an incident type",
        roles.tool("find_technicians"),
        vec![query_param("eligible_for", json!({"$ref": "#/components/schemas/IncidentType"})), query_param("territory", text()), query_param("shift", json!({"enum": ["available", "on_call", "off"]})), min_position()],
        rows("Technicians"),
    );
    roster["get"]["responses"]["422"] = problem(
        "`eligible_for` is not an incident type of the SOP library (`unknown_incident_type`)",
    );
    if let Some(entry) = paths
        .get_mut("/v1/technicians")
        .and_then(Value::as_object_mut)
    {
        entry.insert("get".into(), roster["get"].clone());
    }
    let mut schedule = read(
        "A technician's open offers and visits with ETAs (projection)",
        roles.endpoint("GET /v1/technicians/{technician_id}/schedule"),
        vec![path_param("technician_id"), min_position()],
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
}

/// `GET /v1/approvals` and `GET /v1/projections`.
fn approvals_and_projections(paths: &mut Map<String, Value>, roles: &Roles) {
    paths.insert(
        "/v1/approvals".into(),
        read(
            "Approvals (projection): pending ones wait for a person",
            roles.endpoint("GET /v1/approvals"),
            vec![
                query_param(
                    "status",
                    json!({"enum": ["pending", "granted", "rejected", "moot"]}),
                ),
                query_param("job_id", text()),
                limit(),
                min_position(),
            ],
            rows("Approvals"),
        ),
    );
    paths.insert(
        "/v1/projections".into(),
        json!({"get": operation(
            "Each read model: name, version, position, lag in events and seconds, live or rebuilding",
            roles.endpoint("GET /v1/projections"),
            json!([]),
            None,
            ("200", ok_json("Read models", json!({"type": "object", "required": ["projections"], "properties": {"projections": {"type": "array", "items": {"type": "object", "required": ["name", "table", "version", "status", "position", "events_applied", "lag_events", "lag_seconds", "applied_by"], "properties": {
                "name": {"type": "string"}, "table": {"type": "string", "description": "the table serving (or being built for) this version"},
                "version": {"type": "integer"}, "status": {"type": "string", "enum": ["live", "rebuilding"]},
                "position": {"type": "integer", "description": "global position of the last event applied"},
                "events_applied": {"type": "integer"}, "lag_events": {"type": "integer"},
                "lag_seconds": {"type": "number", "description": "age of the first event not yet applied"},
                "applied_by": {"type": ["string", "null"], "description": "the replica that applied the last batch"}}}}}}))),
            false,
        )}),
    );
}

/// `GET /v1/subscriptions`.
fn subscriptions(paths: &mut Map<String, Value>, roles: &Roles) {
    let item = json!({"type": "object", "required": ["name", "kind", "position", "events_delivered", "lag_events", "lag_seconds", "failing"], "properties": {
        "name": {"type": "string", "description": "`nats`, or `webhook:<endpoint id>`"},
        "kind": {"enum": ["nats", "webhook"]},
        "position": {"type": "integer", "description": "global position of the last event the sink acknowledged"},
        "events_delivered": {"type": "integer"},
        "lag_events": {"type": "integer"},
        "lag_seconds": {"type": "number", "description": "age of the first event not yet delivered"},
        "delivered_by": {"type": ["string", "null"], "description": "the replica that moved the checkpoint last"},
        "delivered_at": {"type": ["string", "null"], "format": "date-time"},
        "last_error": {"type": ["string", "null"]},
        "last_error_at": {"type": ["string", "null"], "format": "date-time"},
        "failing": {"type": "boolean", "description": "an error since the last delivery"}
    }});
    paths.insert(
        "/v1/subscriptions".into(),
        json!({"get": operation(
            "Events out: each subscription's position, lag and last error, and the replica delivering them",
            roles.endpoint("GET /v1/subscriptions"),
            json!([]),
            None,
            ("200", ok_json("Subscriptions", json!({"type": "object", "required": ["subscriptions", "leader"], "properties": {
                "subscriptions": {"type": "array", "items": item},
                "leader": {"type": ["object", "null"], "properties": {"instance": {"type": "string"}, "since": {"type": "string", "format": "date-time"}}}
            }}))),
            false,
        )}),
    );
}

/// `GET /v1/doors/{door_id}/history`.
fn door_history(paths: &mut Map<String, Value>, roles: &Roles) {
    let row = json!({"type": "object", "required": ["global_position", "source", "event_type", "detail"], "properties": {
        "global_position": {"type": "integer"},
        "door_id": {"type": ["string", "null"], "description": "the registered door (null: a job opened before the registry, found by its site and door text)"},
        "site_text": {"type": ["string", "null"]},
        "door_text": {"type": ["string", "null"]},
        "job_id": {"type": ["string", "null"]},
        "source": {"enum": ["job", "door"]},
        "event_type": {"type": "string", "description": "JobOpened, JobOffered, OfferAccepted, CheckedIn, CheckedOut, CloseoutVerified, JobLinkedAsDuplicate, JobReopened, JobClosed, JobCancelled; DoorRegistered, DoorUpdated, DoorMoved, DoorLabelRecorded, DoorStatusChanged, DoorRetired"},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "technician_id": {"type": ["string", "null"]},
        "detail": {"type": "object"}}});
    let mut op = read(
        "A registered door's history (projection): the door, its site and customer, then its jobs, visits, findings, parts and inspections and its own registry events, newest first; jobs opened before the registry at the site's reference and the door's tag included",
        roles.tool("get_door_history"),
        vec![
            path_param("door_id"),
            limit(),
            {
                let mut before = query_param("before", whole(1));
                before["description"] = json!("only rows older than this global_position (the previous answer's next_before)");
                before
            },
            min_position(),
        ],
        ok_json(
            "The door and its history",
            json!({"type": "object", "required": ["position", "door", "rows", "next_before"], "properties": {
                "position": {"type": "integer"},
                "door": {"type": "object"},
                "site": {"type": ["object", "null"]},
                "customer": {"type": ["object", "null"]},
                "legacy_key": {"type": ["object", "null"], "properties": {"site_id": {"type": "string"}, "door_id": {"type": "string"}}},
                "rows": {"type": "array", "items": row},
                "next_before": {"type": ["integer", "null"]}}}),
        ),
    );
    op["get"]["responses"]["404"] = problem("No such door (`not_found`)");
    paths.insert("/v1/doors/{door_id}/history".into(), op);
}
