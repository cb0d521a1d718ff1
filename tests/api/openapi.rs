//! The OpenAPI document: served, valid JSON, and identical to the copy in docs/.
//! Regenerate the copy with `DISPATCH_WRITE_OPENAPI=1 cargo test --test api openapi`.

use crate::support::*;

#[tokio::test]
async fn served_document_matches_docs_copy() {
    let t = TestApp::spawn().await;
    let r = t.get("/openapi.json", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["openapi"], "3.1.0");
    for command in dispatch_api::domain::job::JOB_COMMANDS
        .iter()
        .filter(|c| **c != "open_job")
    {
        let path = format!("/v1/jobs/{{job_id}}/commands/{command}");
        assert!(r.json["paths"].get(&path).is_some(), "{path} missing");
    }
    for route in [
        "/v1/customers",
        "/v1/sites",
        "/v1/doors",
        "/v1/maintenance-plans",
        "/v1/customers/{customer_id}",
        "/v1/sites/{site_id}",
        "/v1/doors/{door_id}",
        "/v1/maintenance-plans/{plan_id}",
    ] {
        assert!(r.json["paths"].get(route).is_some(), "{route} missing");
    }
    assert!(r.json["paths"]["/v1/sites"]["get"].is_object(), "find_site");
    for (name, kind) in dispatch_api::app::registry::REGISTRY_COMMANDS {
        use dispatch_api::app::registry::wire;
        if !wire::registers(name) {
            let path = format!(
                "{}/{{{}}}/commands/{name}",
                wire::collection(*kind),
                wire::id_field(*kind)
            );
            assert!(r.json["paths"].get(&path).is_some(), "{path} missing");
        }
    }
    let pretty = serde_json::to_string_pretty(&r.json).unwrap() + "\n";
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/05_openapi.json");
    if std::env::var("DISPATCH_WRITE_OPENAPI").is_ok() {
        std::fs::write(file, &pretty).unwrap();
    }
    let checked_in = std::fs::read_to_string(file).unwrap_or_default();
    assert!(checked_in == pretty, "docs/05_openapi.json differs from the served document: regenerate it with DISPATCH_WRITE_OPENAPI=1 cargo test --test api openapi");
}

/// Every command example in the document decodes as its command, and every
/// command has one (the hostile-input run sends them).
#[test]
fn every_command_example_decodes() {
    use dispatch_api::http::decode;
    use dispatch_api::http::openapi::command_example;
    let technician = [decode::REGISTER_TECHNICIAN, "update_skills", "set_shift"];
    for name in dispatch_api::domain::job::JOB_COMMANDS {
        let example = command_example(name).unwrap_or_else(|| panic!("{name}: no example"));
        let command = decode::job_command(name, example).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(command.wire_name(), *name);
    }
    for (name, _) in dispatch_api::app::registry::REGISTRY_COMMANDS {
        let example = dispatch_api::http::openapi::registry_example(name)
            .unwrap_or_else(|| panic!("{name}: no example"));
        let command =
            decode::registry_command(name, example).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(command.wire_name(), *name);
    }
    for name in technician {
        let example = command_example(name).unwrap_or_else(|| panic!("{name}: no example"));
        decode::technician_command(name, example).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
