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

/// Every reference of `value` (`$ref`), with where it is.
fn refs<'a>(value: &'a serde_json::Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push((at.clone(), r)),
                    _ => refs(v, format!("{at}/{k}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Every schema-like object of `value` typed `array` (alone or with null).
fn arrays<'a>(
    value: &'a serde_json::Value,
    at: String,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            let typed = match map.get("type") {
                Some(serde_json::Value::String(t)) => t == "array",
                Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "array"),
                _ => false,
            };
            // (`example`s are data, not schemas.)
            if typed {
                out.push((at.clone(), value));
            }
            for (k, v) in map.iter().filter(|(k, _)| *k != "example") {
                arrays(v, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                arrays(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// What generators need of the document (issue 21): servers; an
/// operationId on every operation, unique, the wire name where there is
/// one; every reference to a schema of its own under components (none into
/// another's `$defs`) that exists; every array with `items`; every
/// required property defined.
#[tokio::test]
async fn served_document_is_what_generators_need() {
    let t = TestApp::spawn().await;
    let doc = t.get("/openapi.json", "").await.json;
    assert!(doc["servers"].as_array().is_some_and(|s| !s.is_empty()));
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            if let Some((_, command)) = path.rsplit_once("/commands/") {
                assert_eq!(id, command, "{method} {path}");
            }
        }
    }
    for (op, id) in [
        ("/v1/jobs", "open_job"),
        ("/v1/technicians", "register_technician"),
        ("/v1/customers", "register_customer"),
    ] {
        assert_eq!(doc["paths"][op]["post"]["operationId"], id);
    }
    assert_eq!(
        doc["paths"]["/v1/jobs/{job_id}"]["get"]["operationId"],
        "get_job"
    );
    assert_eq!(
        doc["paths"]["/v1/board"]["get"]["operationId"],
        "search_board"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, String::new(), &mut all);
    for (at, r) in &all {
        if r.starts_with("#/components/parameters/") {
            continue;
        }
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{at}: {r} is not a component schema"));
        assert!(
            !name.contains('/') && schemas.contains_key(name),
            "{at}: {r} does not name a component schema"
        );
    }
    assert!(schemas.values().all(|s| s.get("$defs").is_none()));
    let mut found = Vec::new();
    arrays(&doc, String::new(), &mut found);
    assert!(found.len() > 50, "only {} arrays", found.len());
    for (at, schema) in found {
        assert!(
            schema.get("items").is_some(),
            "{at}: an array without items"
        );
    }
    for (name, schema) in schemas {
        let defined = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            let r = required.as_str().unwrap();
            assert!(
                defined.is_some_and(|p| p.contains_key(r)),
                "{name}: required `{r}` is not defined"
            );
        }
    }
}

/// Enums where the service takes or gives a closed set, the evidence upload
/// as bytes, and every header and parameter the service checks bounded.
#[tokio::test]
async fn served_document_has_enums_bytes_and_bounds() {
    let t = TestApp::spawn().await;
    let doc = t.get("/openapi.json", "").await.json;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for (name, len) in [("JobState", 13), ("Role", 6), ("ToolOutcome", 4)] {
        assert_eq!(
            schemas[name]["enum"].as_array().map(Vec::len),
            Some(len),
            "{name}"
        );
    }
    assert!(schemas["IncidentType"]["enum"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("door_stuck_open")));
    assert_eq!(
        schemas["ToolAnswer"]["properties"]["replayed"]["type"],
        "boolean"
    );
    // The evidence upload as bytes.
    let upload = &doc["paths"]["/v1/evidence"]["post"]["requestBody"]["content"];
    assert_eq!(
        upload["multipart/form-data"]["schema"]["$ref"],
        "#/components/schemas/EvidenceUpload"
    );
    assert_eq!(
        schemas["EvidenceUpload"]["properties"]["file"]["format"],
        "binary"
    );
    // Bounded headers and parameters.
    let params = &doc["components"]["parameters"];
    assert!(params["IdempotencyKey"]["schema"]["pattern"].is_string());
    assert!(params["IfMatch"]["schema"]["pattern"].is_string());
    let board = doc["paths"]["/v1/board"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |ps: &[serde_json::Value], n: &str| {
        ps.iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(
        param(board, "state")["schema"]["items"]["$ref"],
        "#/components/schemas/JobState"
    );
    assert_eq!(param(board, "min_position")["schema"]["maximum"], i64::MAX);
    let roster = doc["paths"]["/v1/technicians"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert_eq!(
        param(roster, "eligible_for")["schema"]["$ref"],
        "#/components/schemas/IncidentType"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let s = &p["schema"];
                if s["type"] == "integer" {
                    assert!(
                        s["maximum"].is_number(),
                        "{method} {path} {}: no maximum",
                        p["name"]
                    );
                }
            }
        }
    }
}

/// The headers the document bounds are checked as it says: a present but
/// malformed Idempotency-Key is a `validation_error` naming it (missing or
/// empty stays `idempotency_key_required`); If-Match takes `3`, `"3"` and
/// `W/"3"` and nothing else; the board's `state` may be repeated.
#[tokio::test]
async fn headers_and_parameters_are_checked_as_documented() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-headers").await;
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let body = r#"{"text":"x"}"#;
    let long = "k".repeat(201);
    for (idem, code) in [
        (None, "idempotency_key_required"),
        (Some(""), "idempotency_key_required"),
        (Some(long.as_str()), "validation_error"),
        (Some("caf\u{e9}"), "validation_error"),
    ] {
        let r = t
            .post_raw(&path, Some(&t.keys.agent), idem, body, &[])
            .await;
        assert_eq!((r.status, r.code()), (400, code), "{idem:?}: {:?}", r.json);
        if code == "validation_error" {
            assert_eq!(r.json["field"], "Idempotency-Key");
        }
    }
    // The same over the tool envelope.
    let envelope = serde_json::json!({"idempotency_key": "caf\u{e9}", "arguments": {"job_id": job, "text": "x"}});
    let r = t
        .post_raw(
            "/v1/tools/add_note",
            Some(&t.keys.agent),
            None,
            &envelope.to_string(),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("validation_error"))
    );
    assert_eq!(r.json["error"]["field"], "idempotency_key");
    let version = t.get(&format!("/v1/jobs/{job}"), &t.keys.agent).await.json["version"]
        .as_i64()
        .unwrap();
    for (n, if_match, status) in [
        (1, "\"3\"x", 400),
        (2, "\"3", 400),
        (3, "+3", 400),
        (4, "1234567890123456789", 400),
        (5, "W/\"0\"", 409),
    ] {
        let r = t
            .post_raw(
                &path,
                Some(&t.keys.agent),
                Some(&format!("im{n}")),
                body,
                &[("if-match", if_match)],
            )
            .await;
        assert_eq!(r.status, status, "If-Match {if_match}: {:?}", r.json);
    }
    let current = format!("W/\"{version}\"");
    let r = t
        .post_raw(
            &path,
            Some(&t.keys.agent),
            Some("im-ok"),
            body,
            &[("if-match", &current)],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    t.project().await;
    let one = t.get("/v1/board?state=intake,triaged", &t.keys.agent).await;
    let repeated = t
        .get("/v1/board?state=intake&state=triaged", &t.keys.agent)
        .await;
    assert_eq!((one.status, repeated.status), (200, 200), "{:?}", one.json);
    assert_eq!(one.json["rows"], repeated.json["rows"]);
    assert!(!one.json["rows"].as_array().unwrap().is_empty());
    let r = t
        .get("/v1/board?state=intake&state=nowhere", &t.keys.agent)
        .await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
}
