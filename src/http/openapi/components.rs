//! The document's named schemas (`components/schemas`): the bundled JSON
//! Schemas of the audit envelope and the state transition, and the answers
//! every command shares. The command bodies' schemas come from the code
//! (schemars) and the toolset's from `toolset.rs`.

use serde_json::{json, Map, Value};

const AUDIT_EVENT_SCHEMA: &str = include_str!("../../../schemas/audit_event.schema.json");
const STATE_TRANSITION_SCHEMA: &str = include_str!("../../../schemas/state_transition.schema.json");

/// A schema bundled from `schemas/`, as the component `name`: without its
/// `$schema` and `$id`, its `$defs` references moved under the component.
pub(super) fn bundled(text: &str, name: &str) -> Value {
    let mut v: Value = serde_json::from_str(text).expect("bundled schema is JSON");
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    rewrite_defs(v, name)
}

/// Moves a bundled schema's `$defs` references under its own component.
fn rewrite_defs(mut schema: Value, name: &str) -> Value {
    let text = schema
        .to_string()
        .replace("#/$defs/", &format!("#/components/schemas/{name}/$defs/"));
    schema = serde_json::from_str(&text).expect("still JSON");
    schema
}

/// Adds the audit envelope, the state transition, the problem and the
/// command answers to `schemas`.
pub(super) fn schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "AuditEvent".into(),
        bundled(AUDIT_EVENT_SCHEMA, "AuditEvent"),
    );
    schemas.insert(
        "StateTransition".into(),
        bundled(STATE_TRANSITION_SCHEMA, "StateTransition"),
    );
    schemas.insert(
        "Problem".into(),
        json!({"type": "object", "required": ["type", "title", "status", "detail", "code"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
            "code": {"type": "string", "pattern": "^[a-z_]+$"}, "field": {"type": "string"},
            "missing": {"type": "array", "items": {"type": "string"}}, "current_state": {"type": "string"}, "current_version": {"type": "integer"},
            "distance_m": {"type": ["integer", "null"], "description": "check_in_reason_required: how far from the site (null: no location given)"},
            "radius_m": {"type": "integer", "description": "check_in_reason_required: the site's radius"}}}),
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
            "flags": {"type": "object", "properties": {"checked_in_off_site": {"type": "boolean", "description": "the latest check-in was outside its site's radius or without a location (it carries a reason)"}}},
            "visits": {"type": "array", "items": {"type": "object", "properties": {
                "checked_in_at": {"type": ["string", "null"], "format": "date-time"}, "check_in_method": {"enum": ["app", "ivr", "agent_relay", null]},
                "check_in_geofence": {"$ref": "#/components/schemas/Geofence"}, "check_in_reason": {"type": "string"}, "check_in_accuracy_m": {"type": "number"}}}},
            "checklist": {"type": "object"}, "evidence": {"type": "array"},
            "approvals": {"type": "array"}, "invoice": {"type": "object", "required": ["lines", "total_cents"]},
            "phone": {"description": "Present once a technician's phone has reached the service about this job: its last contact and the actions it said it still holds (not part of the job's state: replays leave it out)", "type": "object", "required": ["technician_id", "last_contact_at", "pending", "oldest_pending_at"], "properties": {
                "technician_id": {"type": "string"}, "last_contact_at": {"type": "string", "format": "date-time"}, "pending": {"type": "integer", "minimum": 0}, "oldest_pending_at": {"type": ["string", "null"], "format": "date-time"}}}}}),
    );
    schemas.insert(
        "Geofence".into(),
        json!({"type": "object", "required": ["verdict", "distance_m", "radius_m", "site_id"],
            "description": "An app check-in's position against its registered site's radius (absent on other check-ins)",
            "properties": {
            "verdict": {"enum": ["inside", "outside", "no_location"]}, "distance_m": {"type": ["integer", "null"], "minimum": 0},
            "radius_m": {"type": "integer", "minimum": 25, "maximum": 5000}, "site_id": {"type": "string"}}}),
    );
    schemas.insert(
        "Sop".into(),
        json!({"type": "object", "required": ["id", "version", "sha256", "incident_type", "required_skills", "intake", "field", "closeout"]}),
    );
}
