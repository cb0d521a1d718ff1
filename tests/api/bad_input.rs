//! Bad input: a clear 4xx with a stable code, and nothing changes.

use dispatch_api::http::Limits;
use serde_json::json;

use crate::support::*;

async fn event_count(t: &TestApp) -> i64 {
    t.count("SELECT count(*) FROM events").await
}

#[tokio::test]
async fn malformed_unknown_and_missing_things_are_4xx_with_codes() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-bad").await;
    let before = event_count(&t).await;
    let cmd = format!("/v1/jobs/{job}/commands/add_note");
    type Case<'a> = (
        String,
        Option<&'a str>,
        String,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (cmd.clone(), Some("k1"), "{not json".into(), vec![], 400, "validation_error"),
        (cmd.clone(), Some("k2"), "[1,2]".into(), vec![], 400, "validation_error"),
        (cmd.clone(), Some("k3"), r#"{"text":"x","role":"admin"}"#.into(), vec![], 400, "validation_error"),
        (cmd.clone(), Some("k4"), r#"{"text":5}"#.into(), vec![], 400, "validation_error"),
        (cmd.clone(), None, r#"{"text":"x"}"#.into(), vec![], 400, "idempotency_key_required"),
        (cmd.clone(), Some(""), r#"{"text":"x"}"#.into(), vec![], 400, "idempotency_key_required"),
        (cmd.clone(), Some("k5"), r#"{"text":"x"}"#.into(), vec![("if-match", "soon")], 400, "validation_error"),
        (cmd.clone(), Some("k6"), r#"{"text":"a\u0000b"}"#.into(), vec![], 400, "validation_error"),
        (cmd.clone(), Some("k7"), json!({"text": "x".repeat(5000)}).to_string(), vec![], 400, "validation_error"),
        (format!("/v1/jobs/{job}/commands/fly_away"), Some("k8"), "{}".into(), vec![], 404, "not_found"),
        ("/v1/jobs/no-such-job/commands/add_note".into(), Some("k9"), r#"{"text":"x"}"#.into(), vec![], 404, "not_found"),
        ("/v1/jobs".into(), Some("k10"), r#"{"incident_type":"alien_invasion"}"#.into(), vec![], 400, "validation_error"),
        (cmd.clone(), Some("k11"), r#"{"text":"x"}"#.into(), vec![("content-type", "text/plain")], 415, "unsupported_media_type"),
    ];
    for (path, idem, body, extra, status, code) in cases {
        let r = t
            .post_raw(&path, Some(&t.keys.agent), idem, &body, &extra)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{path} {body}: {:?}",
            r.json
        );
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    let r = t
        .post_text(&cmd, &t.keys.agent, "k12", r#"{"text":"x","extra":1}"#)
        .await;
    assert_eq!(r.json["field"], "extra", "the unknown field is named");
    let r = t.post("/v1/jobs", &t.keys.agent, json!({"incident_type": "alien_invasion", "channel": "phone", "client_id": "c", "site": {"id": "s", "name": "n", "address": "a"}, "contact": {"name": "n", "phone": "p"}, "door": {"id": "d", "location": "l"}, "description": "d"})).await;
    assert_eq!((r.status, r.code()), (422, "unknown_incident_type"));
    let r = t.get("/v1/nowhere", &t.keys.agent).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    for query in ["to_sequence=zero", "to_sequence=1&evil=1"] {
        let path = format!("/v1/jobs/{job}/replay?{query}");
        let r = t.get(&path, &t.keys.auditor).await;
        assert_eq!((r.status, r.code()), (400, "validation_error"));
    }
    assert_eq!(event_count(&t).await, before, "nothing changed");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let t = TestApp::spawn_with(Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let job = t.open_ifm_job("site-big").await;
    let body = json!({"text": "y".repeat(2000)}).to_string();
    let r = t
        .post_text(
            &format!("/v1/jobs/{job}/commands/add_note"),
            &t.keys.agent,
            "big",
            &body,
        )
        .await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
}
