//! The registry's paths: customers, sites, doors and maintenance plans —
//! register one, run a command on one by its wire name, read one, find
//! sites — with the command bodies' schemas from the code (schemars).

use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::examples::registry_example;
use super::parts::{
    json_body, mutation_params, ok_json, operation, path_param, query_param, query_text, Roles,
};
use crate::app::registry::queries::{MAX_FIND_LIMIT, MAX_QUERY_CHARS};
use crate::app::registry::{wire, REGISTRY_COMMANDS};
use crate::domain::registry::Kind;

/// A registry command's body with its example.
fn body(name: &str, generator: &mut SchemaGenerator) -> Value {
    let schema = wire::body_schema(name, generator)
        .map(Value::from)
        .unwrap_or_default();
    let mut body = json_body(schema);
    if let Some(example) = registry_example(name) {
        body["content"]["application/json"]["example"] = example;
    }
    body
}

fn description(roles: &Roles, name: &str) -> String {
    let what = roles
        .0
        .tools
        .get(name)
        .map(|t| t.description.clone())
        .unwrap_or_default();
    format!("{name}: {what}")
}

/// Every registry path.
pub(super) fn paths(
    paths: &mut Map<String, Value>,
    generator: &mut SchemaGenerator,
    roles: &Roles,
) {
    let answer = ok_json(
        "The entry as its events leave it, with the events appended",
        json!({"$ref": "#/components/schemas/RegistryAnswer"}),
    );
    for kind in Kind::ALL {
        let collection = wire::collection(kind);
        let id = wire::id_field(kind);
        for (name, _) in REGISTRY_COMMANDS.iter().filter(|(_, k)| *k == kind) {
            if wire::registers(name) {
                let op = operation(
                    &description(roles, name),
                    roles.tool(name),
                    mutation_params(),
                    Some(body(name, generator)),
                    ("201", answer.clone()),
                    true,
                );
                paths.insert(collection.into(), json!({ "post": op }));
            } else {
                let mut params = mutation_params();
                params
                    .as_array_mut()
                    .expect("array")
                    .insert(0, path_param(id));
                let op = operation(
                    &description(roles, name),
                    roles.tool(name),
                    params,
                    Some(body(name, generator)),
                    ("200", answer.clone()),
                    true,
                );
                paths.insert(
                    format!("{collection}/{{{id}}}/commands/{name}"),
                    json!({ "post": op }),
                );
            }
        }
        let entry = format!("{collection}/{{{id}}}");
        let (summary, who) = match kind {
            Kind::Door => (
                "get_door: the door, with its site (name, address, time zone) and customer",
                roles.tool("get_door"),
            ),
            Kind::Site => (
                "The site, with its doors (id, kind, location, tag, status)",
                roles.endpoint(&format!("GET {entry}")),
            ),
            Kind::MaintenancePlan => (
                "The plan, with its occurrences due from a year ago whose job opens within the coming year (each with its job's id and whether that job is open)",
                roles.endpoint(&format!("GET {entry}")),
            ),
            Kind::Customer => ("The customer", roles.endpoint(&format!("GET {entry}"))),
        };
        let op = operation(
            summary,
            who,
            json!([path_param(id)]),
            None,
            (
                "200",
                ok_json(
                    summary,
                    json!({"$ref": "#/components/schemas/RegistryEntry"}),
                ),
            ),
            false,
        );
        paths.insert(entry, json!({ "get": op }));
    }
    find_site(paths, roles);
}

/// `GET /v1/sites?q=&limit=`: `find_site`, beside `POST /v1/sites`.
fn find_site(paths: &mut Map<String, Value>, roles: &Roles) {
    let q = json!({"name": "q", "in": "query", "required": true, "schema": query_text(MAX_QUERY_CHARS)});
    let site = json!({"type": "object", "required": ["site_id", "name", "address", "customer_id", "score", "doors"], "properties": {
        "site_id": {"type": "string"}, "name": {"type": "string"}, "address": {"type": "string"},
        "customer_id": {"type": "string"}, "reference": {"type": ["string", "null"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "doors": {"type": "array", "items": {"$ref": "#/components/schemas/DoorRow"}}}});
    let op = operation(
        "find_site: active sites whose name, address or reference is like `q` (pg_trgm similarity), best first, each with its active doors",
        roles.tool("find_site"),
        json!([q, query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": MAX_FIND_LIMIT}))]),
        None,
        ("200", ok_json("Sites, best match first", json!({"type": "object", "required": ["query", "sites"], "properties": {
            "query": {"type": "string"}, "sites": {"type": "array", "items": site}}}))),
        false,
    );
    if let Some(item) = paths.get_mut("/v1/sites").and_then(Value::as_object_mut) {
        item.insert("get".into(), op);
    }
}

/// The registry's named schemas: a command's answer, an entry as read, a
/// door as listed under its site.
pub(super) fn schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "RegistryAnswer".into(),
        json!({"type": "object", "required": ["kind", "version", "retired", "events"], "description": "The entry's id (`customer_id`, `site_id`, `door_id` or `plan_id`), its recorded details, and the events this command appended (none when it changed nothing).", "properties": {
            "kind": {"type": "string"}, "version": {"type": "integer", "minimum": 0}, "retired": {"type": "boolean"},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventRef"}}}}),
    );
    schemas.insert(
        "RegistryEntry".into(),
        json!({"type": "object", "required": ["kind", "version", "retired"], "description": "The entry's id, its recorded details, `retired` and `version`; a door also its `status`, `site` and `customer_id`; a site its `doors`; a plan its `occurrences`.", "properties": {
            "kind": {"type": "string"}, "version": {"type": "integer", "minimum": 0}, "retired": {"type": "boolean"},
            "status": {"enum": ["in_service", "impaired", "out_of_service"]},
            "doors": {"type": "array", "items": {"$ref": "#/components/schemas/DoorRow"}},
            "occurrences": {"type": "array", "items": {"type": "object", "required": ["door_id", "due_on", "due", "opens_on", "job_id", "job_opened"], "properties": {
                "door_id": {"type": "string"},
                "due_on": {"type": "string", "format": "date", "description": "the schedule's date for it"},
                "due": {"type": "string", "format": "date", "description": "when it is due (moved, or as scheduled)"},
                "opens_on": {"type": "string", "format": "date", "description": "when its job opens (lead days before `due`)"},
                "skipped": {"type": ["string", "null"], "description": "why it was skipped"},
                "job_id": {"type": "string", "description": "the id its job has (or will have)"},
                "job_opened": {"type": "boolean"}}}}}}),
    );
    schemas.insert(
        "DoorRow".into(),
        json!({"type": "object", "required": ["door_id", "kind", "location", "status"], "properties": {
            "door_id": {"type": "string"}, "kind": {"type": "string"}, "location": {"type": "string"},
            "tag": {"type": ["string", "null"]}, "status": {"enum": ["in_service", "impaired", "out_of_service"]}, "retired": {"type": "boolean"}}}),
    );
}
