//! The document's named schemas (`components/schemas`): the bundled JSON
//! Schemas of the audit envelope and the state transition, and the answers
//! every command shares. The command bodies' schemas come from the code
//! (schemars) and the toolset's from `toolset.rs`.

use serde_json::{json, Map, Value};

use super::hoist;

const AUDIT_EVENT_SCHEMA: &str = include_str!("../../../schemas/audit_event.schema.json");
const STATE_TRANSITION_SCHEMA: &str = include_str!("../../../schemas/state_transition.schema.json");

/// Adds the audit envelope, the state transition, the problem, the
/// command answers and the SOP library's incident types to `schemas`.
/// (`JobState` and `Role` come from the code with the job's view,
/// `views.rs`.)
pub(super) fn schemas(schemas: &mut Map<String, Value>, incident_types: &[&str]) {
    schemas.insert(
        "IncidentType".into(),
        json!({"type": "string", "enum": incident_types, "description": "An incident type of the SOP library (GET /v1/sops)"}),
    );
    hoist::add_bundled(schemas, AUDIT_EVENT_SCHEMA, "AuditEvent");
    hoist::add_bundled(schemas, STATE_TRANSITION_SCHEMA, "StateTransition");
    schemas.insert(
        "JobEvents".into(),
        json!({"type": "object", "required": ["job_id", "events"], "properties": {"job_id": {"type": "string"}, "events": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}}}),
    );
    schemas.insert(
        "JobTransitions".into(),
        json!({"type": "object", "required": ["job_id", "transitions"], "properties": {"job_id": {"type": "string"}, "transitions": {"type": "array", "items": {"$ref": "#/components/schemas/StateTransition"}}}}),
    );
    schemas.insert(
        "JobReplay".into(),
        json!({"type": "object", "required": ["job_id", "to_sequence", "job"], "properties": {"job_id": {"type": "string"}, "to_sequence": {"type": "integer", "description": "the last event applied (the job's version then)"}, "job": {"$ref": "#/components/schemas/JobView"}}}),
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
            "job_id": {"type": "string"}, "version": {"type": "integer", "minimum": 0}, "state": {"$ref": "#/components/schemas/JobState"},
            "status": {"type": "string", "enum": ["approval_required"], "description": "Only an approval was requested (answered 202)"}, "approval_id": {"type": "string"},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventRef"}}}}),
    );
    schemas.insert(
        "EvidenceUpload".into(),
        json!({"type": "object", "required": ["file"], "additionalProperties": false, "properties": {
            "file": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream", "description": "The file's bytes; the part's Content-Type is stored with them"}}}),
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
}
