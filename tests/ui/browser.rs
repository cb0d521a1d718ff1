//! The pages in a real browser: headless Chromium (the system's `chromium`,
//! never a downloaded one) driven by `playwright-core` from
//! `e2e/browser/ui.test.mjs`, against the real binary started as the README
//! starts it, on a fresh database with its projectors running.
//!
//! This test prepares the world (keys, technicians, jobs in several states,
//! an evidence photo, pending approvals, a tampered event), starts
//! `dispatch-api serve` on a free loopback port, runs the node tests (which
//! save the screenshots under `target/tmp/ui-screenshots/`, or the folder
//! `UI_SCREENSHOT_DIR` names — `docs/screenshots` refreshes the README's), then stops the service
//! with SIGTERM while a board stream is open and checks it drains promptly.
//!
//! Where node, Chromium or `e2e/browser/node_modules` cannot be found it
//! prints `skipped: …` and passes, unless `DISPATCH_BROWSER_TESTS=required`
//! (set by `.ci/run` once it has installed them), where that is a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dispatch_api::app::evidence::EvidenceStore;
use dispatch_api::app::{keys, App};
use serde_json::json;

use crate::support::*;
use crate::*;

pub(crate) fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM_PATH") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/lib/chromium/chromium",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// What is missing to run the browser tests, if anything.
pub(crate) fn missing() -> Option<String> {
    if let Some(why) = node_missing() {
        return Some(why);
    }
    if chromium().is_none() {
        return Some("Chromium is not installed (apt-get install chromium chromium-driver, or set CHROMIUM_PATH)".into());
    }
    if !manifest()
        .join("e2e/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        return Some("playwright-core is not installed (cd e2e/browser && npm ci)".into());
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 exchange (the test needs no client library).
fn http(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Seeds the jobs the browser looks at; returns the environment for node.
async fn seed(t: &TestApp, evidence_dir: &Path) -> Vec<(String, String)> {
    t.register_technicians().await;
    let sop = t.app.sops.get("door_stuck_open").unwrap().clone();

    // On site with tech-d: checklist partly done, a photo, an NTE increase to approve.
    let approval_job = job_on_site(t, "harbor-mall", &t.keys.tech_d, "tech-d").await;
    for item in sop.field.checklist.iter().take(4) {
        let r = t
            .cmd(
                &approval_job,
                "complete_checklist_item",
                &t.keys.tech_d,
                json!({"item_id": item.id, "result": "pass"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
    let app = App {
        evidence: EvidenceStore::local(evidence_dir).unwrap(),
        ..t.app.clone()
    };
    let caller = keys::authenticate(&t.app.pool, &t.keys.tech_d)
        .await
        .unwrap();
    let png = std::fs::read(manifest().join("e2e/browser/door-before.png")).unwrap();
    let meta = request_meta("browser-photo");
    let reply = app
        .upload_evidence(&caller, &meta, png.into(), "image/png".into())
        .await
        .unwrap();
    let sha = serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let r = t.cmd(&approval_job, "attach_evidence", &t.keys.tech_d, json!({"kind": "photo_before", "sha256": sha, "note": "As found: both panels stuck fully open"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let approval = request_nte(
        t,
        &approval_job,
        &t.keys.tech_d,
        75000,
        "Operator motor burnt out; replacement needed",
    )
    .await;

    // SLA pressure: a P1 called 3.5 h before now (30 min left: at risk) and
    // one called 5 h before (overdue; the service's timer flags the breach).
    for (site, hours_ago) in [("riverside-clinic", 3.5), ("old-town-bank", 5.0)] {
        t.clock
            .set(t0() - chrono::Duration::minutes((hours_ago * 60.0) as i64));
        let job = open_named(t, site).await;
        assert_eq!(t.intake_and_triage(&job).await.state(), "triaged");
    }
    t.clock.set(t0());

    // The board's variety: a P1 make-safe waiting for a technician, its possible duplicate, one in intake, one offered.
    let triaged = open_named(t, "store-12").await;
    assert_eq!(t.intake_and_triage(&triaged).await.state(), "triaged");
    let mut second_call = open_body("store-12");
    second_call["site"]["name"] = json!("Store 12");
    second_call["description"] = json!("Caller says the same door is stuck again");
    let r = t.post("/v1/jobs", &t.keys.dispatcher, second_call).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let mut body = open_body("depot-3");
    body["site"]["name"] = json!("North Depot <Loading Dock 3>");
    body["incident_type"] = json!("door_stuck_open");
    assert_eq!(t.post("/v1/jobs", &t.keys.agent, body).await.status, 201);
    let offered = open_named(t, "civic-center").await;
    t.intake_and_triage(&offered).await;
    assert_eq!(
        t.offer(&offered, &t.keys.dispatcher, "tech-a")
            .await
            .state(),
        "offered"
    );

    // Confirmed with tech-d, with an NTE increase the agent asked for (a technician sees it, cannot decide it).
    let tech_job = open_named(t, "airport-t2").await;
    t.intake_and_triage(&tech_job).await;
    t.offer(&tech_job, &t.keys.agent, "tech-d").await;
    let eta = (t0() + chrono::Duration::minutes(90)).to_rfc3339();
    assert_eq!(
        t.cmd(
            &tech_job,
            "accept_offer",
            &t.keys.tech_d,
            json!({"eta": eta})
        )
        .await
        .state(),
        "confirmed"
    );
    let tech_approval =
        request_nte(t, &tech_job, &t.keys.agent, 60000, "After-hours premium").await;

    // A job whose stored history was altered behind the service's back.
    let tampered = open_named(t, "museum-east").await;
    t.intake_and_triage(&tampered).await;
    for i in 1..=3 {
        t.note(
            &tampered,
            &t.keys.agent,
            &format!("Called the site, update {i}"),
        )
        .await;
    }
    let tampered_seq = 4;
    t.tamper(&format!("UPDATE events SET payload = '{{\"text\":\"Customer waived the NTE\"}}' WHERE aggregate_id = '{tampered}' AND sequence = {tampered_seq}")).await;

    // A registered door (impaired) with a job at it and one opened at its
    // text before the registry.
    let (_, door_job) = crate::doors::door_with_jobs(t, "Badge at the security desk").await;

    let position: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&t.app.pool)
        .await
        .unwrap();
    vec![
        ("UI_DISPATCHER_KEY".into(), t.keys.dispatcher.clone()),
        ("UI_AGENT_KEY".into(), t.keys.agent.clone()),
        ("UI_TECH_KEY".into(), t.keys.tech_d.clone()),
        ("UI_APPROVAL_JOB".into(), approval_job),
        ("UI_APPROVAL_ID".into(), approval),
        ("UI_TECH_JOB".into(), tech_job),
        ("UI_TECH_APPROVAL_ID".into(), tech_approval),
        ("UI_TAMPERED_JOB".into(), tampered),
        ("UI_TAMPERED_SEQ".into(), tampered_seq.to_string()),
        ("UI_MIN_POSITION".into(), position.to_string()),
        ("UI_DOOR_JOB".into(), door_job),
    ]
}

/// Stops the child on drop, whatever happened.
pub(crate) struct Service(pub(crate) std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_dispatcher_board_live_approval_tamper_mark_and_technician_view() {
    let required = std::env::var("DISPATCH_BROWSER_TESTS").is_ok_and(|v| v == "required");
    if let Some(why) = missing() {
        assert!(!required, "browser tests are required here, but {why}");
        println!("skipped: browser tests need node, Chromium and e2e/browser/node_modules: {why}");
        eprintln!("skipped: browser tests need node, Chromium and e2e/browser/node_modules: {why}");
        return;
    }
    let started = Instant::now();
    let t = TestApp::spawn().await;
    let work = tempfile::tempdir().unwrap();
    let evidence_dir = work.path().join("evidence");
    let mut env = seed(&t, &evidence_dir).await;

    let (mut service, port, log_path) = serve(&t, work.path(), &evidence_dir);

    // Screenshots go under target/ by default so a test run leaves the tree
    // clean; `UI_SCREENSHOT_DIR=docs/screenshots` refreshes the README's.
    let shots = screenshot_dir();
    env.push(("UI_BASE_URL".into(), format!("http://127.0.0.1:{port}")));
    env.push(("UI_SCREENSHOT_DIR".into(), shots.display().to_string()));
    env.push((
        "CHROMIUM_PATH".into(),
        chromium().unwrap().display().to_string(),
    ));
    run_node("ui.test.mjs", env, &log_path).await;
    for shot in ["board.png", "job.png", "door.png"] {
        assert!(
            shots.join(shot).metadata().is_ok_and(|m| m.len() > 10_000),
            "{shot} was not saved"
        );
    }

    // SIGTERM with a board stream open: the stream ends and the service exits promptly.
    let login = http(
        port,
        &format!(
            "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\nkey={}",
            4 + t.keys.dispatcher.len(),
            t.keys.dispatcher
        ),
    )
    .unwrap();
    let token = login
        .split("dispatch_session=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut sse = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sse.write_all(format!("GET /ui/board/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: dispatch_session={token}\r\nAccept: text/event-stream\r\n\r\n").as_bytes()).unwrap();
    let mut first = [0u8; 512];
    let n = sse.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("text/event-stream"));
    let pid = service.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopping = Instant::now();
    let exited = loop {
        if let Some(status) = service.0.try_wait().unwrap() {
            break Some(status);
        }
        if stopping.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        exited.is_some_and(|s| s.success()),
        "the service did not drain within 10 s with a board stream open"
    );
    println!("browser tests: {} s in all", started.elapsed().as_secs());
}

/// Starts `dispatch-api serve` as the README does, on a free loopback port,
/// over the test's database (its keyring, a manual clock at `t0`, the
/// evidence in `evidence_dir`), and waits until it is ready.
pub(crate) fn serve(t: &TestApp, work: &Path, evidence_dir: &Path) -> (Service, u16, PathBuf) {
    let port = free_port();
    let log_path = work.join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch-api"))
        .arg("serve")
        .env("DATABASE_URL", &t.db_url)
        .env("DISPATCH_LISTEN", format!("127.0.0.1:{port}"))
        .env("DISPATCH_CLOCK", format!("manual:{}", t0().to_rfc3339()))
        .env("DISPATCH_DATA_DIR", work)
        // The seeded jobs were keyed in process with the tests' keyring: the
        // service verifies (and keys) with the same one, as replicas share one.
        .env("DISPATCH_CHAIN_KEYRING", support::chain_keys().to_toml())
        .env("DISPATCH_EVIDENCE_STORE", evidence_dir)
        .env("DISPATCH_SOPS_DIR", manifest().join("sops"))
        .env("DISPATCH_LOG_FORMAT", "json")
        .env("DISPATCH_TOOL_RATE_PER_MINUTE", "0")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the service binary starts");
    let service = Service(child);
    let ready = (0..300).any(|_| {
        let ok = http(
            port,
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .is_ok_and(|r| r.starts_with("HTTP/1.1 200"));
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(
        ready,
        "the service did not become ready: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );

    (service, port, log_path)
}

/// The screenshot folder (`UI_SCREENSHOT_DIR`, else under target/).
pub(crate) fn screenshot_dir() -> PathBuf {
    let shots = std::env::var("UI_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Runs one node test file of `e2e/browser` with `env`; fails the test with
/// its report and the service's log unless it passes within 240 s.
pub(crate) async fn run_node(file: &str, env: Vec<(String, String)>, log_path: &Path) {
    let node = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", file])
        .current_dir(manifest().join("e2e/browser"))
        .envs(env)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), node)
        .await
        .expect("the browser tests finish within 240 s")
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{report}\n--- service log ---\n{}",
        std::fs::read_to_string(log_path).unwrap_or_default()
    );
}
