//! The operator's and auditor's command line (issue 23): the whole-store
//! audit prints only what failed and decides every stream as the per-stream
//! audit does; exit codes 0/1/2; `--json` documents that match their
//! schemas (`schemas/cli/`); progress bars on a terminal and never in a
//! pipe; `projections rebuild --wait` returns once swapped in.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

/// A finished CLI run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON document on stdout, validated against `schemas/cli/<schema>`.
    #[track_caller]
    pub fn document(&self, schema: &str) -> Value {
        let doc: Value = serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not one JSON document ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        });
        validate(&format!("cli/{schema}.schema.json"), &doc);
        doc
    }
}

/// The environment `cli_with` gives the binary (the tests' keyring, no
/// checkpoints), with its data folder `data`.
pub fn cli_env(db_url: &str, data: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db_url.to_string()),
        (
            "DISPATCH_SOPS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/sops").to_string(),
        ),
        ("DISPATCH_DATA_DIR", data.display().to_string()),
        ("DISPATCH_CHAIN_KEYRING", chain_keys().to_toml()),
    ]
}

/// Variables the binary must not inherit from the test's environment.
pub const CLI_UNSET: &[&str] = &["DISPATCH_CHAIN_KEYS_FILE", "DISPATCH_EVIDENCE_STORE"];

/// `dispatch-api ARGS` with stdout and stderr in pipes, environment `env`.
pub fn run_cli(env: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch-api"));
    cmd.args(args);
    for k in CLI_UNSET {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `dispatch-api ARGS` on `t`'s database, in pipes.
pub fn cli(t: &TestApp, args: &[&str]) -> Run {
    let data = tempfile::tempdir().unwrap();
    run_cli(&cli_env(&t.db_url, data.path()), args)
}

/// Runs `sql` as the tables' owner with the triggers of `events` and
/// `stream_heads` disabled (an intruder with the owner's rights).
async fn tamper(t: &TestApp, sql: &[String]) {
    let mut tx = t.app.pool.begin().await.unwrap();
    for stmt in [
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "ALTER TABLE stream_heads DISABLE TRIGGER ALL",
    ] {
        sqlx::query(stmt).execute(&mut *tx).await.unwrap();
    }
    for stmt in sql {
        sqlx::query(stmt).execute(&mut *tx).await.unwrap();
    }
    for stmt in [
        "ALTER TABLE events ENABLE TRIGGER ALL",
        "ALTER TABLE stream_heads ENABLE TRIGGER ALL",
    ] {
        sqlx::query(stmt).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// `n` jobs with a note each (several events per stream).
async fn jobs(t: &TestApp, n: usize) -> Vec<String> {
    let mut jobs = Vec::new();
    for i in 0..n {
        let job = t.open_ifm_job(&format!("site-cli-{i}")).await;
        let r = t.note(&job, &t.keys.agent, &format!("note {i}")).await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        jobs.push(job);
    }
    jobs
}

async fn last_sequence(t: &TestApp, job: &str) -> i64 {
    sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_id = $1")
        .bind(job)
        .fetch_one(&t.app.pool)
        .await
        .unwrap()
}

async fn http_audit(t: &TestApp, job: &str) -> Value {
    let r = t
        .get(&format!("/v1/jobs/{job}/audit"), &t.keys.auditor)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json
}

/// The command line's verdict on `job` (`result`) is the HTTP audit's.
async fn agrees_with_http(t: &TestApp, job: &str, result: &Value) {
    let http = http_audit(t, job).await;
    for k in [
        "verified",
        "events",
        "first_bad_sequence",
        "check",
        "unkeyed_events",
    ] {
        assert_eq!(result[k], http[k], "{job} {k}: {result} vs {http}");
    }
}

#[tokio::test]
async fn a_tampered_stream_among_many_is_the_only_one_printed() {
    let t = TestApp::spawn().await;
    let jobs = jobs(&t, 8).await;
    // A clean store: the summary alone, exit 0.
    let clean = cli(&t, &["audit", "verify", "--all", "--connections", "3"]);
    assert_eq!(clean.code, Some(0), "{}{}", clean.stdout, clean.stderr);
    let lines: Vec<&str> = clean.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", clean.stdout);
    assert!(lines[0].contains(" verified, 0 failed;"), "{}", lines[0]);
    let streams: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    assert!(streams >= jobs.len(), "{}", lines[0]);

    let victim = &jobs[3];
    let seq = last_sequence(&t, victim).await;
    tamper(
        &t,
        &[format!(
            "UPDATE events SET payload = '{{\"text\": \"forged\"}}' WHERE aggregate_id = '{victim}' AND sequence = {seq}"
        )],
    )
    .await;
    for connections in ["1", "3"] {
        let run = cli(
            &t,
            &["audit", "verify", "--all", "--connections", connections],
        );
        assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", run.stdout);
        assert_eq!(
            lines[0],
            format!("job {victim}: FAILED at sequence {seq} (check hash) ({seq} events)")
        );
        assert!(
            lines[1].starts_with(&format!("{streams} stream(s), "))
                && lines[1].contains(" verified, 1 failed;"),
            "{}",
            lines[1]
        );
    }
    // --verbose lists every stream; the failed one as failed.
    let verbose = cli(&t, &["audit", "verify", "--all", "--verbose"]);
    assert_eq!(verbose.code, Some(1));
    assert_eq!(
        verbose.stdout.lines().count(),
        streams + 1,
        "{}",
        verbose.stdout
    );
    for job in &jobs[..3] {
        assert!(
            verbose.stdout.contains(&format!("job {job}: verified (")),
            "{}",
            verbose.stdout
        );
    }
    // The document: the one failure, as the HTTP audit names it.
    let doc = cli(&t, &["audit", "verify", "--all", "--json"]).document("audit_verify");
    assert_eq!(doc["verified"], false);
    assert_eq!(doc["scope"], "all");
    assert_eq!(doc["streams"], json!(streams));
    assert_eq!(doc["failed_streams"], 1);
    assert!(doc.get("results").is_none());
    let failure = &doc["failures"][0];
    agrees_with_http(&t, victim, failure).await;
    assert_eq!(failure["aggregate_id"], json!(victim));
}

#[tokio::test]
async fn the_whole_store_audit_decides_every_stream_as_the_per_stream_audit() {
    let t = TestApp::spawn().await;
    let jobs = jobs(&t, 7).await;
    for i in 0..3 {
        t.note(&jobs[5], &t.keys.agent, &format!("more {i}")).await;
    }
    let (j1, j2, j3, j4) = (&jobs[1], &jobs[2], &jobs[4], &jobs[5]);
    let (s1, s2, s4) = (
        last_sequence(&t, j1).await,
        last_sequence(&t, j2).await,
        last_sequence(&t, j4).await,
    );
    tamper(
        &t,
        &[
            // An altered link.
            format!("UPDATE events SET prev_hash = repeat('ab', 32) WHERE aggregate_id = '{j1}' AND sequence = {s1}"),
            // A row gone from the middle.
            format!("DELETE FROM events WHERE aggregate_id = '{j2}' AND sequence = {}", s2 - 1),
            // A MAC stripped.
            format!("UPDATE events SET mac = NULL WHERE aggregate_id = '{j3}' AND sequence = 1"),
            // The head moved back one event (a row past the recorded head).
            format!(
                "UPDATE stream_heads SET sequence = {0}, hash = (SELECT hash FROM events WHERE aggregate_id = '{j4}' AND sequence = {0}) WHERE aggregate_id = '{j4}'",
                s4 - 1
            ),
        ],
    )
    .await;
    for connections in ["1", "2", "4"] {
        let run = cli(
            &t,
            &[
                "audit",
                "verify",
                "--all",
                "--json",
                "--verbose",
                "--connections",
                connections,
            ],
        );
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        let doc = run.document("audit_verify");
        let results = doc["results"].as_array().unwrap();
        assert_eq!(results.len() as u64, doc["streams"].as_u64().unwrap());
        assert_eq!(doc["failed_streams"], 4, "{doc:#}");
        for job in &jobs {
            let mine = results
                .iter()
                .find(|r| r["aggregate_type"] == "job" && r["aggregate_id"] == json!(job))
                .unwrap_or_else(|| panic!("{job} missing: {doc:#}"));
            agrees_with_http(&t, job, mine).await;
        }
        let check = |job: &str| {
            results
                .iter()
                .find(|r| r["aggregate_id"] == json!(job))
                .map(|r| r["check"].clone())
                .unwrap()
        };
        assert_eq!(
            [check(j1), check(j2), check(j3), check(j4)],
            [
                json!("prev_hash"),
                json!("sequence"),
                json!("mac"),
                json!("head")
            ]
        );
    }
}

#[tokio::test]
async fn one_job_and_an_unknown_one_as_documents_and_exit_codes() {
    let t = TestApp::spawn().await;
    let jobs = jobs(&t, 1).await;
    let run = cli(&t, &["audit", "verify", &jobs[0], "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc = run.document("audit_verify");
    assert_eq!(
        (doc["scope"].clone(), doc["verified"].clone()),
        (json!("stream"), json!(true))
    );
    assert_eq!(doc["events"], http_audit(&t, &jobs[0]).await["events"]);
    // One job on its own is always printed.
    let run = cli(&t, &["audit", "verify", &jobs[0]]);
    assert!(
        run.stdout
            .starts_with(&format!("job {}: verified (", jobs[0])),
        "{}",
        run.stdout
    );

    let run = cli(&t, &["audit", "verify", "job-nobody", "--json"]);
    assert_eq!(run.code, Some(1));
    let doc = run.document("audit_verify");
    assert_eq!(doc["failures"][0]["found"], false);
    assert_eq!(
        cli(&t, &["audit", "verify", "job-nobody"])
            .stdout
            .lines()
            .next(),
        Some("job job-nobody: not found")
    );

    // Could not run: exit 2, no document.
    let data = tempfile::tempdir().unwrap();
    let mut env = cli_env(&t.db_url, data.path());
    env.retain(|(k, _)| *k != "DISPATCH_CHAIN_KEYRING");
    let run = run_cli(&env, &["audit", "verify", "--all", "--json"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no chain keyring"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(cli(&t, &["audit", "verify"]).code, Some(2));
    assert_eq!(
        cli(&t, &["audit", "verify", "--all", "--connections", "0"]).code,
        Some(2)
    );
}

#[tokio::test]
async fn keys_list_shows_every_key_and_never_a_secret() {
    let t = TestApp::spawn().await;
    let made = cli(
        &t,
        &[
            "keys",
            "create",
            "--role",
            "auditor",
            "--name",
            "night-audit",
        ],
    );
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let secret = made.stdout.trim().to_string();
    assert_eq!(cli(&t, &["keys", "revoke", "night-audit"]).code, Some(0));
    let run = cli(&t, &["keys", "list", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc = run.document("keys_list");
    let hashes: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(&t.app.pool)
        .await
        .unwrap();
    for s in hashes.iter().chain([&secret, &t.keys.agent]) {
        assert!(!run.stdout.contains(s.as_str()), "a secret is listed");
    }
    let keys = doc["keys"].as_array().unwrap();
    let by_name = |n: &str| keys.iter().find(|k| k["name"] == n).cloned().unwrap();
    assert_eq!(by_name("tech-a")["technician_id"], "tech-a");
    assert_eq!(by_name("tech-a")["revoked_at"], Value::Null);
    assert_eq!(by_name("night-audit")["role"], "auditor");
    assert!(by_name("night-audit")["revoked_at"].is_string());
    let human = cli(&t, &["keys", "list"]);
    assert!(human
        .stdout
        .lines()
        .any(|l| l.starts_with("night-audit ") && l.contains("auditor")));
    assert!(!human.stdout.contains(&secret));
}

#[tokio::test]
async fn projections_status_and_rebuild_wait_return_once_swapped_in() {
    let t = TestApp::spawn_projected().await;
    jobs(&t, 2).await;
    let doc = cli(&t, &["projections", "status", "--json"]).document("projections_status");
    let live = doc["projections"].as_array().unwrap();
    assert_eq!(
        live.len(),
        dispatch_api::read_models::all().len(),
        "{doc:#}"
    );
    assert!(live.iter().all(|p| p["status"] == "live"));

    // Without --wait: requested, the shadow table recorded, exit 0.
    let run = cli(&t, &["projections", "rebuild", "board", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc = run.document("projections_rebuild");
    assert_eq!(
        (doc["waited"].clone(), doc["swapped"].clone()),
        (json!(false), json!(false))
    );
    let requested = doc["rebuilds"][0]["table"].as_str().unwrap().to_string();
    assert_eq!(doc["rebuilds"][0]["status"], "requested");
    let building: Option<String> =
        sqlx::query_scalar("SELECT building_table FROM projection_registry WHERE name = 'board'")
            .fetch_one(&t.app.pool)
            .await
            .unwrap();
    assert_eq!(building.as_deref(), Some(requested.as_str()));
    let doc = cli(&t, &["projections", "status", "--json"]).document("projections_status");
    assert!(doc["projections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["status"] == "rebuilding"));

    // --wait: returns only once the requested tables serve.
    let run = cli(&t, &["projections", "rebuild", "--all", "--wait", "--json"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let doc = run.document("projections_rebuild");
    assert_eq!(
        (doc["waited"].clone(), doc["swapped"].clone()),
        (json!(true), json!(true))
    );
    for r in doc["rebuilds"].as_array().unwrap() {
        assert_eq!(r["status"], "swapped", "{doc:#}");
        let active: String =
            sqlx::query_scalar("SELECT active_table FROM projection_registry WHERE name = $1")
                .bind(r["name"].as_str().unwrap())
                .fetch_one(&t.app.pool)
                .await
                .unwrap();
        assert_eq!(json!(active), r["table"]);
    }
    // The superseded board rebuild's table is not the one serving.
    assert!(doc["rebuilds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["table"] != json!(requested)));
    let human = cli(&t, &["projections", "rebuild", "approvals", "--wait"]);
    assert_eq!(human.code, Some(0), "{}", human.stderr);
    assert!(
        human.stdout.contains("approvals: rm_approvals_"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("swapped in"), "{}", human.stdout);
    assert_eq!(
        cli(&t, &["projections", "rebuild", "nothing-such", "--wait"]).code,
        Some(2)
    );
}
