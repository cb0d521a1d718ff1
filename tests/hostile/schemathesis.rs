//! schemathesis over the served OpenAPI document (`GET /openapi.json`),
//! against the real `dispatch-api serve` on a fresh database, with the keys
//! of several roles: no 5xx other than 503, and every status code, content
//! type, header and body as the document says.
//!
//! schemathesis comes from PyPI, pinned in `e2e/hostile/requirements.txt`,
//! installed by this test into a virtual environment under `target/tmp/`
//! (reused while the pins do not change). Without PyPI the test fails, saying
//! so: it never passes without having run.
//!
//! Each pass is one `st run` with one role's key. "generated" passes let
//! schemathesis make every parameter up (hostile ids, paths and queries);
//! "fixtures" passes pin the path parameters to real resources (a job
//! offered to `tech-a`, that technician, an uploaded file, an incident type)
//! so that commands and reads reach the domain and the read models (with
//! `e2e/hostile/hooks.py` making valid idempotency keys unique). Besides
//! schemathesis's own checks, the test reads every exchange back from the
//! HAR report and fails on any 5xx other than a 503 `projection_behind`, on
//! an internal error or panic in the service's log, and if the service is
//! not healthy afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

use crate::installs;
use crate::server::{create_database, drop_database, Server};

/// The folder with the pins and the checks' settings.
const HOSTILE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/hostile");

/// The checks every pass runs (see `e2e/hostile/schemathesis.toml` for their settings).
const CHECKS: &[&str] = &[
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
];

/// Quick (in `cargo test`) or full (`DISPATCH_HOSTILE=full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Quick,
    Full,
}

impl Form {
    fn from_env() -> Form {
        match std::env::var("DISPATCH_HOSTILE").as_deref() {
            Ok("full") => Form::Full,
            Ok("quick") | Ok("") | Err(_) => Form::Quick,
            Ok(other) => panic!("DISPATCH_HOSTILE={other}: expected `quick` or `full`"),
        }
    }

    /// Examples per operation in the fuzzing phase.
    fn max_examples(self) -> u32 {
        match self {
            Form::Quick => 4,
            Form::Full => 100,
        }
    }

    /// The passes: (role, pinned path parameters?).
    fn passes(self) -> Vec<(&'static str, bool)> {
        match self {
            Form::Quick => vec![("agent", false), ("admin", true)],
            Form::Full => ["agent", "dispatcher", "technician", "auditor", "admin"]
                .into_iter()
                .flat_map(|r| [(r, false), (r, true)])
                .collect(),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
struct PassReport {
    name: String,
    operations: usize,
    requests: usize,
    statuses: BTreeMap<u16, usize>,
    server_errors: Vec<String>,
    failed: bool,
    output_tail: String,
}

/// The virtual environment with the pinned schemathesis: made once per set of
/// pins, reused after. Returns the `st` executable.
fn schemathesis() -> PathBuf {
    let requirements = Path::new(HOSTILE_DIR).join("requirements.txt");
    installs::venv("schemathesis", 10, &requirements, "st").join("bin/st")
}

async fn cli(server: &Server, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (code, stdout, stderr) = server.cli(&args).await.expect("the CLI runs");
    assert_eq!(code, 0, "dispatch-api {args:?}: {stderr}");
    stdout.trim().to_string()
}

/// Real resources for the "fixtures" passes.
#[derive(Debug)]
struct Fixtures {
    job_id: String,
    technician_id: String,
    sha256: String,
    incident_type: String,
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
    idem: &str,
    body: Value,
) -> Value {
    let r = client
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status < 300, "fixture POST {path}: {status} {answer}");
    answer
}

async fn fixtures(base: &str, keys: &BTreeMap<&str, String>) -> Fixtures {
    let client = reqwest::Client::new();
    let (agent, dispatcher) = (&keys["agent"], &keys["dispatcher"]);
    post(
        &client,
        base,
        "/v1/technicians",
        dispatcher,
        "fx-tech-a",
        json!({
            "technician_id": "tech-a", "name": "Technician A", "skills": ["automatic_doors"],
            "certifications": [{"name": "AAADM", "expires_on": "2099-06-30"}],
            "territory": "north", "shift": "available", "labor_rate_cents": 9000
        }),
    )
    .await;
    let opened = post(
        &client,
        base,
        "/v1/jobs",
        agent,
        "fx-open",
        json!({
            "incident_type": "door_stuck_open", "channel": "ifm", "client_id": "retail-co",
            "site": {"id": "site-12", "name": "Retail Store 12", "address": "12 Market St"},
            "contact": {"name": "Sam Store", "phone": "+1-555-0100"},
            "door": {"id": "entrance-1", "location": "Main entrance"},
            "description": "Automatic sliding door stuck open after hours",
            "ifm": {"work_order_number": "WO-778812", "nte_cents": 50000}
        }),
    )
    .await;
    let job_id = opened["job_id"].as_str().expect("job_id").to_string();
    let cmd = |c: &str| format!("/v1/jobs/{job_id}/commands/{c}");
    post(
        &client,
        base,
        &cmd("record_intake"),
        agent,
        "fx-intake",
        json!({"fields": {
            "access_hours": "24/7 via security desk", "anyone_hurt_or_trapped": false,
            "opening_can_be_secured": false, "after_hours": true,
            "operator_make_model": "Stanley Dura-Glide", "stuck_position": "fully_open",
            "mode_switch_position": "automatic", "power_cycled": true, "obstruction_visible": false
        }}),
    )
    .await;
    post(
        &client,
        base,
        &cmd("triage_job"),
        agent,
        "fx-triage",
        json!({}),
    )
    .await;
    post(
        &client,
        base,
        &cmd("offer_job"),
        agent,
        "fx-offer",
        json!({"technician_id": "tech-a"}),
    )
    .await;
    let upload = client
        .post(format!("{base}/v1/evidence"))
        .bearer_auth(&keys["technician"])
        .header("idempotency-key", "fx-evidence")
        .header("content-type", "image/jpeg")
        .body(b"\xff\xd8\xff\xe0 a door, before".to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status().as_u16(), 201, "fixture upload");
    let sha256 = upload.json::<Value>().await.unwrap()["sha256"]
        .as_str()
        .expect("sha256")
        .to_string();
    Fixtures {
        job_id,
        technician_id: "tech-a".into(),
        sha256,
        incident_type: "door_stuck_open".into(),
    }
}

/// The per-pass configuration: the shared checks' settings, and for a
/// "fixtures" pass the pinned path parameters.
fn pass_config(dir: &Path, fixtures: Option<&Fixtures>) -> PathBuf {
    let shared = std::fs::read_to_string(Path::new(HOSTILE_DIR).join("schemathesis.toml"))
        .expect("e2e/hostile/schemathesis.toml");
    let mut text = shared;
    if let Some(f) = fixtures {
        text.push_str(&format!(
            "\n[parameters]\n\"path.job_id\" = \"{}\"\n\"path.technician_id\" = \"{}\"\n\"path.sha256\" = \"{}\"\n\"path.incident_type\" = \"{}\"\n",
            f.job_id, f.technician_id, f.sha256, f.incident_type
        ));
    }
    let file = dir.join("schemathesis.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Reads the HAR report: requests, statuses, and every 5xx other than 503.
fn read_har(file: &Path, report: &mut PassReport) {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e} (did schemathesis run?)", file.display()));
    let har: Value = serde_json::from_str(&text).expect("the HAR report is JSON");
    for entry in har["log"]["entries"].as_array().into_iter().flatten() {
        let status = entry["response"]["status"].as_u64().unwrap_or(0) as u16;
        report.requests += 1;
        *report.statuses.entry(status).or_default() += 1;
        // The database is up throughout: a 503 may only be a read model
        // behind `min_position`, never `unavailable`.
        let body = entry["response"]["content"]["text"].as_str().unwrap_or("");
        let unavailable = status == 503 && !body.contains("projection_behind");
        if (status >= 500 && status != 503) || unavailable {
            report.server_errors.push(format!(
                "{status} {} {}",
                entry["request"]["method"].as_str().unwrap_or(""),
                entry["request"]["url"].as_str().unwrap_or("")
            ));
        }
    }
}

/// The API operations the JUnit report has a test case for (the stateful
/// phase has one of its own, which is not an operation).
fn count_operations(junit: &Path) -> usize {
    let text = std::fs::read_to_string(junit).unwrap_or_default();
    text.split("<testcase")
        .skip(1)
        .filter(|case| {
            case.split_once("name=\"").is_some_and(|(_, name)| {
                ["GET ", "POST ", "PUT ", "PATCH ", "DELETE "]
                    .iter()
                    .any(|m| name.starts_with(m))
            })
        })
        .count()
}

fn run_pass(
    st: &Path,
    base: &str,
    dir: &Path,
    name: &str,
    key: &str,
    fixtures: Option<&Fixtures>,
    form: Form,
) -> PassReport {
    let pass_dir = dir.join(name);
    std::fs::create_dir_all(&pass_dir).unwrap();
    let config = pass_config(&pass_dir, fixtures);
    let har = pass_dir.join("exchanges.har");
    let junit = pass_dir.join("junit.xml");
    let started = Instant::now();
    let out = Command::new(st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", base])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", &CHECKS.join(",")])
        .args(["--max-examples", &form.max_examples().to_string()])
        .args(["--seed", "20261125"])
        .args(["--workers", "1"])
        .args(["--report", "har,junit"])
        .arg("--report-har-path")
        .arg(&har)
        .arg("--report-junit-path")
        .arg(&junit)
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .envs(fixtures.map(|_| ("SCHEMATHESIS_HOOKS", "hooks")))
        .env("PYTHONPATH", HOSTILE_DIR)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", pass_dir.join("hypothesis"))
        .current_dir(&pass_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::write(pass_dir.join("output.txt"), &*stdout).unwrap();
    let mut report = PassReport {
        name: name.to_string(),
        failed: !out.status.success(),
        ..PassReport::default()
    };
    if report.failed {
        let lines: Vec<&str> = stdout.lines().collect();
        report.output_tail = format!(
            "{}\n{}",
            lines[lines.len().saturating_sub(150)..].join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    read_har(&har, &mut report);
    report.operations = count_operations(&junit);
    println!(
        "hostile: pass {name}: {} operations, {} requests in {:.0?}, statuses {:?}{}",
        report.operations,
        report.requests,
        started.elapsed(),
        report.statuses,
        if report.failed { " — FAILED" } else { "" }
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_departure_from_the_document() {
    let form = Form::from_env();
    let st = schemathesis();
    let database = create_database("hostile").await.expect("a fresh database");
    let env = BTreeMap::from([
        // Every tool call reaches its decoder rather than the rate limit.
        ("DISPATCH_TOOL_RATE_PER_MINUTE".to_string(), "0".to_string()),
        ("RUST_LOG".to_string(), "warn".to_string()),
    ]);
    let server = Server::start(&database, "system", &env)
        .await
        .expect("dispatch-api serve starts");
    let base = server.base.clone();
    let mut keys = BTreeMap::new();
    for role in ["agent", "dispatcher", "technician", "auditor", "admin"] {
        let mut args = vec!["keys", "create", "--role", role, "--name", role];
        if role == "technician" {
            args.extend(["--technician", "tech-a"]);
        }
        keys.insert(role, cli(&server, &args).await);
    }
    let fixtures = fixtures(&base, &keys).await;
    let document: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("the document is JSON");
    // Every operation of the document but the one serving it, which
    // schemathesis leaves out.
    let documented: usize = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| *path != "/openapi.json")
        .map(|(_, item)| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();
    let run_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-schemathesis-{}", std::process::id()));
    let started = Instant::now();
    // Two `st` processes at a time, one worker each: schemathesis's worker
    // threads share Python's parser, which is not thread-safe in 3.11 (runs
    // with `--workers 2` ended in "AST constructor recursion depth mismatch").
    let passes = form.passes();
    let reports: Vec<PassReport> = tokio::task::block_in_place(|| {
        passes
            .chunks(2)
            .flat_map(|pair| {
                std::thread::scope(|scope| {
                    let running: Vec<_> = pair
                        .iter()
                        .map(|&(role, pinned)| {
                            let name =
                                format!("{role}-{}", if pinned { "fixtures" } else { "generated" });
                            let (st, base, run_dir) = (&st, &base, &run_dir);
                            let key = &keys[role];
                            let fixtures = pinned.then_some(&fixtures);
                            scope.spawn(move || {
                                run_pass(st, base, run_dir, &name, key, fixtures, form)
                            })
                        })
                        .collect();
                    running
                        .into_iter()
                        .map(|h| h.join().expect("a pass panicked"))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    });
    let alive = reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let log_errors: Vec<String> = std::fs::read_to_string(server.log_path())
        .unwrap_or_default()
        .lines()
        // Internal errors are logged once with their cause (a 503 answer
        // is also an ERROR line of the trace layer, and checked above).
        .filter(|l| l.contains("\"message\":\"internal error") || l.contains("panicked"))
        .take(20)
        .map(|l| l.chars().take(400).collect())
        .collect();
    let requests: usize = reports.iter().map(|r| r.requests).sum();
    let operations = reports.iter().map(|r| r.operations).max().unwrap_or(0);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &reports {
        for (s, n) in &r.statuses {
            *statuses.entry(*s).or_default() += n;
        }
    }
    println!(
        "hostile: {form:?}: {} passes, {operations} operations, {requests} requests in {:.0?}; statuses {statuses:?}",
        reports.len(),
        started.elapsed()
    );
    let failed: Vec<&PassReport> = reports.iter().filter(|r| r.failed).collect();
    let server_errors: Vec<&String> = reports.iter().flat_map(|r| &r.server_errors).collect();
    let ok = failed.is_empty() && server_errors.is_empty() && alive == 200 && log_errors.is_empty();
    server.stop(!ok).await;
    if ok {
        drop_database(&database.name).await;
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    for r in &failed {
        eprintln!(
            "=== schemathesis pass {} failed:\n{}",
            r.name, r.output_tail
        );
    }
    assert!(
        server_errors.is_empty(),
        "5xx other than 503: {server_errors:#?}"
    );
    assert!(
        failed.is_empty(),
        "schemathesis found failures in {:?}; reports under {}",
        failed.iter().map(|r| &r.name).collect::<Vec<_>>(),
        run_dir.display()
    );
    assert_eq!(alive, 200, "the service is no longer healthy after the run");
    assert!(
        log_errors.is_empty(),
        "the service logged errors: {log_errors:#?}"
    );
    for r in &reports {
        assert_eq!(
            r.operations, documented,
            "pass {}: {} of the document's {documented} operations were tested",
            r.name, r.operations
        );
    }
    assert!(requests >= 300, "only {requests} requests were made");
}
