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
mod parts;
mod paths;
mod read_models;
mod registry;
mod toolset;
mod webhooks;

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::tools::allowlist::Allowlist;

pub use examples::{command_example, registry_example};

/// The OpenAPI document the service serves at `/openapi.json`.
pub fn document(allowlist: &Allowlist) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let roles = parts::Roles(allowlist);
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
    toolset::paths(&mut paths, &mut schemas, &roles);
    components::schemas(&mut schemas);
    registry::schemas(&mut schemas);
    webhooks::schemas(&mut schemas);

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
