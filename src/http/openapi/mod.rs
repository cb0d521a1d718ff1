//! The OpenAPI 3.1 document, generated from the code: request bodies from the
//! command types (schemars), paths from the command table, roles from the
//! allowlist, the audit envelope from `schemas/audit_event.schema.json`.
//! `docs/05_openapi.json` is this document checked in; a test fails on drift.
//!
//! Split by part of the document: the pieces every operation is made of
//! (`parts.rs`), the command examples (`examples.rs`), the resources'
//! paths (`paths.rs`), the read models' (`read_models.rs`), the registry's (`registry.rs`), the webhooks' (`webhooks.rs`), the toolset's
//! (`toolset.rs`), and the named schemas (`components.rs`).

mod components;
mod examples;
mod hoist;
mod ids;
mod parts;
mod paths;
mod read_models;
mod registry;
mod toolset;
mod views;
mod webhooks;

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::domain::sop::SopLibrary;
use crate::tools::allowlist::Allowlist;

pub use examples::{command_example, registry_example};

/// The OpenAPI document the service serves at `/openapi.json`, for the
/// allowlist's roles and the SOP library's incident types.
pub fn document(allowlist: &Allowlist, sops: &SopLibrary) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let roles = parts::Roles(allowlist);
    let incident_types: Vec<&str> = sops.incident_types().collect();
    let mut paths = Map::new();
    // The generator gathers the command bodies' schemas as the paths are
    // made; they become components once the paths that use them are in.
    paths::jobs(&mut paths, &mut generator, &roles);
    paths::job_reads(&mut paths, &roles);
    paths::technicians(&mut paths, &mut generator, &roles);
    paths::evidence_and_sops(&mut paths, &roles);
    read_models::paths(&mut paths, &roles);
    registry::paths(&mut paths, &mut generator, &roles);
    webhooks::paths(&mut paths, &roles);
    paths::service(&mut paths);
    let mut schemas = generator.take_definitions(true);
    // `open_job` takes an incident type of the library (else 422
    // `unknown_incident_type`): the command type says only "a string".
    if let Some(t) = schemas
        .get_mut("OpenJob")
        .and_then(|s| s.pointer_mut("/properties/incident_type"))
    {
        *t = json!({"$ref": "#/components/schemas/IncidentType"});
    }
    toolset::paths(&mut paths, &mut schemas, &roles);
    ids::assign(&mut paths);
    components::schemas(&mut schemas, &incident_types);
    registry::schemas(&mut schemas);
    webhooks::schemas(&mut schemas);
    views::schemas(&mut schemas);
    let mut paths = Value::Object(paths);
    let mut schemas = Value::Object(schemas);
    hoist::const_unions_to_enums(&mut paths);
    hoist::const_unions_to_enums(&mut schemas);

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dispatch-api",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The event-sourced enforcement service between an AI dispatch agent and a door-service company's operations. Every mutation is an idempotent command; every event is hash-chained. Roles per operation are in `x-roles` (from the declarative allowlist).",
            "license": {"name": "Proprietary (UNLICENSED)", "identifier": "LicenseRef-UNLICENSED"}
        },
        "servers": [{"url": "/", "description": "The service that serves this document (e.g. http://127.0.0.1:8080)"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key made with `dispatch-api keys create`."}},
            "parameters": {
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": true, "description": "1-200 printable ASCII characters; the same key with the same body replays the first answer. Missing or empty: `idempotency_key_required`; longer, or with other characters: `validation_error` (field `Idempotency-Key`).", "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": parts::IDEMPOTENCY_KEY_PATTERN}},
                "IfMatch": {"name": "If-Match", "in": "header", "required": false, "description": "The version the caller expects, e.g. `\"3\"` (also `3` or `W/\"3\"`); a stale one is `version_conflict`, anything else `validation_error`.", "schema": {"type": "string", "maxLength": 24, "pattern": parts::IF_MATCH_PATTERN}},
                "CorrelationId": {"name": "X-Correlation-Id", "in": "header", "required": false, "schema": {"type": "string", "format": "uuid"}},
                "CausationId": {"name": "X-Causation-Id", "in": "header", "required": false, "schema": {"type": "string", "format": "uuid"}}
            },
            "schemas": schemas
        }
    })
}
