//! Redocly CLI's lint (its `recommended` rules) finds no error in the
//! OpenAPI document (issue 21), and no warning but one the document means:
//! the service's own endpoints (`/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`) have no 4xx answer, because they have none.
//!
//! Redocly is pinned in `e2e/openapi/package-lock.json` and installed by
//! this test with `npm ci` under `target/tmp/` (node and npm from the
//! machine). The document linted is `docs/05_openapi.json`, which
//! `tests/api/openapi.rs` holds identical to the served one.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::installs;

const OPENAPI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/openapi");
const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/05_openapi.json");

/// The warnings the document means (rule, pointer).
const MEANT: &[(&str, &str)] = &[
    ("operation-4xx-response", "#/paths/~1healthz/get/responses"),
    ("operation-4xx-response", "#/paths/~1readyz/get/responses"),
    ("operation-4xx-response", "#/paths/~1metrics/get/responses"),
    (
        "operation-4xx-response",
        "#/paths/~1openapi.json/get/responses",
    ),
];

#[test]
fn redocly_lint_finds_no_error_in_the_document() {
    let redocly = installs::npm("redocly", Path::new(OPENAPI_DIR), "redocly");
    let out = Command::new(&redocly)
        .args(["lint", DOCUMENT, "--format=json", "--max-problems=10000"])
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
        .output()
        .expect("redocly runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "redocly's report is not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let problems = report["problems"].as_array().expect("a list of problems");
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for p in problems {
        let rule = p["ruleId"].as_str().unwrap_or("");
        let pointer = p["location"][0]["pointer"].as_str().unwrap_or("");
        let line = format!("{rule} at {pointer}: {}", p["message"]);
        match p["severity"].as_str() {
            Some("error") => errors.push(line),
            _ if MEANT.contains(&(rule, pointer)) => {}
            _ => warnings.push(line),
        }
    }
    println!(
        "redocly lint: {} problems, {} errors, {} unexpected warnings",
        problems.len(),
        errors.len(),
        warnings.len()
    );
    assert!(errors.is_empty(), "redocly lint errors:\n{errors:#?}");
    assert!(warnings.is_empty(), "redocly lint warnings:\n{warnings:#?}");
    assert!(
        out.status.success(),
        "redocly lint exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
