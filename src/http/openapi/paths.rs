//! The resources' paths: jobs (open, every command by its wire name, the
//! reads of one job), technicians, evidence, SOPs, and the service's own
//! endpoints.

use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::parts::{
    command_body, mutation_params, ok_json, operation, path_param, problem, whole, Roles,
};
use crate::domain::job::{JobCommand, JOB_COMMANDS};
use crate::domain::technician::{RegisterTechnician, SetShift, UpdateSkills};
use crate::http::decode;

/// `POST /v1/jobs` (`open_job`) and `POST /v1/jobs/{job_id}/commands/{name}`
/// for every other job command, each with its body schema and example; a
/// command that may need approval also answers 202.
pub(super) fn jobs(paths: &mut Map<String, Value>, generator: &mut SchemaGenerator, roles: &Roles) {
    let answer = json!({"$ref": "#/components/schemas/CommandAnswer"});
    let open_schema = JobCommand::body_schema("open_job", generator)
        .map(Value::from)
        .unwrap_or_default();
    paths.insert(
        "/v1/jobs".into(),
        json!({"post": operation("open_job: open a job", roles.tool("open_job"), mutation_params(), Some(command_body("open_job", open_schema)), ("201", ok_json("The job was opened", answer.clone())), true)}),
    );
    for name in JOB_COMMANDS.iter().filter(|n| **n != "open_job") {
        let schema = JobCommand::body_schema(name, generator)
            .map(Value::from)
            .unwrap_or_default();
        let mut params = mutation_params();
        params
            .as_array_mut()
            .expect("array")
            .insert(0, path_param("job_id"));
        let description = roles
            .0
            .tools
            .get(*name)
            .map(|t| t.description.clone())
            .unwrap_or_default();
        let mut op = operation(
            &format!("{name}: {description}"),
            roles.tool(name),
            params,
            Some(command_body(name, schema)),
            ("200", ok_json("The command's events", answer.clone())),
            true,
        );
        if roles
            .0
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
}

/// The reads of one job: the job now, its events, its chain's audit, a
/// replay to an event, its state transitions.
pub(super) fn job_reads(paths: &mut Map<String, Value>, roles: &Roles) {
    let job_read = |summary: &str, who: Vec<String>, schema: Value, extra: Vec<Value>| {
        let mut params = vec![path_param("job_id")];
        params.extend(extra);
        json!({"get": operation(summary, who, Value::Array(params), None, ("200", ok_json(summary, schema)), false)})
    };
    paths.insert(
        "/v1/jobs/{job_id}".into(),
        job_read(
            "The job now, from its event stream",
            roles.tool("get_job"),
            json!({"$ref": "#/components/schemas/JobView"}),
            vec![],
        ),
    );
    paths.insert(
        "/v1/jobs/{job_id}/events".into(),
        job_read(
            "The job's event envelopes in order",
            roles.endpoint("GET /v1/jobs/{job_id}/events"),
            json!({"$ref": "#/components/schemas/JobEvents"}),
            vec![],
        ),
    );
    paths.insert(
        "/v1/jobs/{job_id}/audit".into(),
        job_read("Verify the job's hash chain: hashes, MACs, head and signed checkpoints; the first bad or missing sequence and the check that found it", roles.endpoint("GET /v1/jobs/{job_id}/audit"), json!({"type": "object", "required": ["verified", "events", "first_bad_sequence"], "properties": {"job_id": {"type": "string"}, "verified": {"type": "boolean"}, "events": {"type": "integer"}, "first_bad_sequence": {"type": ["integer", "null"]}, "check": {"description": "The check that found first_bad_sequence", "enum": ["sequence", "prev_hash", "hash", "mac", "unknown_key", "unkeyed", "head", "checkpoint", null]}, "unkeyed_events": {"description": "Events written before the chain was keyed, accepted because a signed checkpoint vouches for them", "type": "integer", "minimum": 0}}}), vec![]),
    );
    paths.insert(
        "/v1/jobs/{job_id}/replay".into(),
        job_read(
            "The job as it was after event N",
            roles.endpoint("GET /v1/jobs/{job_id}/replay"),
            json!({"$ref": "#/components/schemas/JobReplay"}),
            vec![json!({"name": "to_sequence", "in": "query", "required": false, "schema": whole(1)})],
        ),
    );
    paths.insert(
        "/v1/jobs/{job_id}/transitions".into(),
        job_read(
            "The job's state transitions",
            roles.endpoint("GET /v1/jobs/{job_id}/transitions"),
            json!({"$ref": "#/components/schemas/JobTransitions"}),
            vec![],
        ),
    );
}

/// Registering a technician and the technician commands.
pub(super) fn technicians(
    paths: &mut Map<String, Value>,
    generator: &mut SchemaGenerator,
    roles: &Roles,
) {
    let tech_answer = ok_json(
        "The technician's events",
        json!({"$ref": "#/components/schemas/TechnicianAnswer"}),
    );
    let register = Value::from(generator.subschema_for::<RegisterTechnician>());
    paths.insert(
        "/v1/technicians".into(),
        json!({"post": operation("Register a technician", roles.endpoint("POST /v1/technicians"), mutation_params(), Some(command_body(decode::REGISTER_TECHNICIAN, register)), ("201", tech_answer.clone()), true)}),
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
            json!({"post": operation(name, roles.endpoint(&endpoint), params, Some(command_body(name, schema)), ("200", tech_answer.clone()), true)}),
        );
    }
    signin_links(paths, roles);
}

/// `POST /v1/technicians/{technician_id}/signin-links`: a one-time sign-in
/// link for the technician's phone. Not an idempotent command: the token is
/// never stored, so no answer can be replayed; each call makes a new link.
fn signin_links(paths: &mut Map<String, Value>, roles: &Roles) {
    let endpoint = crate::http::technicians::SIGNIN_LINKS;
    let answer = json!({"type": "object", "required": ["technician_id", "key_name", "url", "expires_at"], "properties": {
        "technician_id": {"type": "string"},
        "key_name": {"type": "string", "description": "The technician key the session will be bound to (the newest active one): revoking it ends the link and the session."},
        "url": {"type": "string", "pattern": "^/ui/field/signin/[0-9a-f]{64}$", "description": "A path on this service; the token in it is shown only here."},
        "expires_at": {"type": "string", "format": "date-time", "description": "15 minutes after it was made."}
    }});
    let mut op = operation(
        "Make a one-time sign-in link for a technician's phone",
        roles.endpoint(endpoint),
        json!([path_param("technician_id")]),
        None,
        ("201", ok_json("The link: it signs in once, within 15 minutes, as the technician's newest active key", answer)),
        false,
    );
    op["description"] = json!("Each call makes a new link (no Idempotency-Key: the token is never stored, so an answer cannot be replayed; a lost answer is replaced by asking again, and the unused link expires). `GET` of the url shows a button and spends nothing; pressing it starts a page session for the bound key and opens `/ui/field`.");
    op["responses"]["422"] = problem("The technician has no active technician key (`technician_has_no_key`); make one with `dispatch-api keys create --role technician --name NAME --technician ID`");
    paths.insert(
        "/v1/technicians/{technician_id}/signin-links".into(),
        json!({ "post": op }),
    );
}

/// Uploading and downloading evidence, and the SOP library.
pub(super) fn evidence_and_sops(paths: &mut Map<String, Value>, roles: &Roles) {
    // Bytes, as generators send them: a multipart part of `format: binary`
    // is a file to them. The raw body the service also takes is in the
    // description only: a second request media type makes
    // openapi-python-client (0.29) write a module that does not import.
    let upload_body = json!({"required": true, "description": "The file (not empty), as `multipart/form-data` with one part named `file`: its part's Content-Type is stored as the evidence's `content_type` (`application/octet-stream` when it has none).\n\nThe service also takes the file as the raw body, with its own Content-Type (any media type with a `/`, e.g. `image/jpeg`, stored as `content_type`; required).", "content": {
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/EvidenceUpload"}, "encoding": {"file": {"contentType": "*/*"}}}
    }});
    let evidence_schema = json!({"$ref": "#/components/schemas/EvidenceInfo"});
    let mut sha256 = path_param("sha256");
    sha256["schema"] = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let mut incident_type = path_param("incident_type");
    incident_type["schema"] = json!({"$ref": "#/components/schemas/IncidentType"});
    paths.insert(
        "/v1/evidence".into(),
        json!({"post": operation("Upload evidence (multipart with one file part, or a raw body)", roles.endpoint("POST /v1/evidence"), json!([{"$ref": "#/components/parameters/IdempotencyKey"}]), Some(upload_body), ("201", ok_json("Stored, content-addressed", evidence_schema)), true)}),
    );
    paths.insert(
        "/v1/evidence/{sha256}".into(),
        json!({"get": operation("Download evidence", roles.endpoint("GET /v1/evidence/{sha256}"), json!([sha256]), None, ("200", json!({"description": "The content", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}}}})), false)}),
    );
    paths.insert(
        "/v1/sops".into(),
        json!({"get": operation("The SOP library", roles.tool("get_sop"), json!([]), None, ("200", ok_json("Every incident type", json!({"type": "object", "required": ["sops"], "properties": {"sops": {"type": "array", "items": {"$ref": "#/components/schemas/SopSummary"}}}}))), false)}),
    );
    let mut one = operation(
        "One incident type's SOPs: intake script, checklist, evidence, closeout",
        roles.tool("get_sop"),
        json!([incident_type]),
        None,
        (
            "200",
            ok_json("The SOP", json!({"$ref": "#/components/schemas/Sop"})),
        ),
        false,
    );
    one["responses"]["422"] = problem(
        "Not an incident type of the SOP library (`unknown_incident_type`, as `open_job` answers it)",
    );
    paths.insert("/v1/sops/{incident_type}".into(), json!({ "get": one }));
}

/// The service's own endpoints, open to anyone: health, readiness, metrics
/// and this document.
pub(super) fn service(paths: &mut Map<String, Value>) {
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
}
