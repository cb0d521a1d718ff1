//! The technician's field app in a real browser: headless Chromium with a
//! phone's viewport, touch and an emulated location, driven by
//! `e2e/browser/field.test.mjs` against the real binary. Everything the
//! technician does there goes through the pages; the node tests check the
//! results through the API with the dispatcher's key.
//!
//! Skipped (passes with `skipped: …`) where node, Chromium or
//! `e2e/browser/node_modules` are missing, unless
//! `DISPATCH_BROWSER_TESTS=required` (as `.ci/run` sets it).

use serde_json::json;

use crate::browser::{chromium, missing, run_node, screenshot_dir, serve};
use crate::support::*;

/// The site's coordinates (a hospital campus).
pub const SITE_LAT: f64 = 41.8781;
pub const SITE_LON: f64 = -87.6298;

/// Registers a customer, a located site and `doors` doors at it.
async fn located_site(t: &TestApp, doors: usize) {
    registry(
        t,
        "register_customer",
        None,
        json!({"customer_id": "cust-lakeside", "name": "Lakeside Health", "billing": "direct"}),
    )
    .await;
    registry(t, "register_site", None, json!({"site_id": "site-lakeside", "customer_id": "cust-lakeside",
        "name": "Lakeside Hospital", "address": "1 Lakeshore Dr, Chicago", "time_zone": "America/Chicago",
        "latitude": SITE_LAT, "longitude": SITE_LON})).await;
    for i in 1..=doors {
        registry(t, "register_door", None, json!({"door_id": format!("door-lk-{i}"), "site_id": "site-lakeside",
            "kind": "automatic_sliding", "location": format!("Entrance {i}"), "manufacturer": "Stanley",
            "model": "Dura-Glide", "serial": format!("LK-{i}")})).await;
    }
}

/// A job at door `i`, triaged and offered to tech-a (accepted when
/// `accept`): its id.
async fn job_at(t: &TestApp, i: usize, accept: bool) -> String {
    let body = json!({"incident_type": "door_stuck_open", "channel": "phone", "door_id": format!("door-lk-{i}"),
        "contact": {"name": "Robin Vega", "phone": "+1-555-0170"}, "description": "Sliding door stuck open"});
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let job = r.json["job_id"].as_str().unwrap().to_string();
    assert_eq!(t.intake_and_triage(&job).await.state(), "triaged");
    assert_eq!(
        t.offer(&job, &t.keys.dispatcher, "tech-a").await.state(),
        "offered"
    );
    if accept {
        let eta = (t0() + chrono::Duration::minutes(45)).to_rfc3339();
        let r = t
            .cmd(&job, "accept_offer", &t.keys.tech_a, json!({"eta": eta}))
            .await;
        assert_eq!(r.state(), "confirmed", "{:?}", r.json);
    }
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_technician_field_app_on_a_phone() {
    let required = std::env::var("DISPATCH_BROWSER_TESTS").is_ok_and(|v| v == "required");
    if let Some(why) = missing() {
        assert!(!required, "browser tests are required here, but {why}");
        println!("skipped: browser tests need node, Chromium and e2e/browser/node_modules: {why}");
        return;
    }
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    located_site(&t, 4).await;
    let canonical = job_at(&t, 1, false).await;
    let outside = job_at(&t, 2, true).await;
    let dead_zone = job_at(&t, 3, true).await;
    let cancelled = job_at(&t, 4, true).await;
    let work = tempfile::tempdir().unwrap();
    let evidence_dir = work.path().join("evidence");
    let (_service, port, log_path) = serve(&t, work.path(), &evidence_dir);
    let shots = screenshot_dir();
    let env = vec![
        (
            "UI_BASE_URL".to_string(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("UI_SCREENSHOT_DIR".into(), shots.display().to_string()),
        (
            "CHROMIUM_PATH".into(),
            chromium().unwrap().display().to_string(),
        ),
        ("UI_TECH_KEY".into(), t.keys.tech_a.clone()),
        ("UI_DISPATCHER_KEY".into(), t.keys.dispatcher.clone()),
        ("UI_AGENT_KEY".into(), t.keys.agent.clone()),
        ("UI_SITE_LAT".into(), SITE_LAT.to_string()),
        ("UI_SITE_LON".into(), SITE_LON.to_string()),
        ("UI_CANONICAL_JOB".into(), canonical),
        ("UI_OUTSIDE_JOB".into(), outside),
        ("UI_DEAD_ZONE_JOB".into(), dead_zone),
        ("UI_CANCELLED_JOB".into(), cancelled),
    ];
    run_node("field.test.mjs", env, &log_path).await;
    for shot in [
        "field-work.png",
        "field-visit.png",
        "field-offline.png",
        "field-refused.png",
    ] {
        assert!(
            shots.join(shot).metadata().is_ok_and(|m| m.len() > 5_000),
            "{shot} was not saved"
        );
    }
}
