//! Optimistic concurrency: racing writers never lose an update.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn twenty_conflicting_commands_one_winner_per_version() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-race").await;
    let mut handles = Vec::new();
    for i in 0..20 {
        let router = t.router.clone();
        let key = t.keys.agent.clone();
        let path = format!("/v1/jobs/{job}/commands/add_note");
        handles.push(tokio::spawn(async move {
            let req = axum::http::Request::builder()
                .method("POST")
                .uri(path)
                .header("authorization", format!("Bearer {key}"))
                .header("idempotency-key", format!("race-{i}"))
                .header("if-match", "\"1\"")
                .body(axum::body::Body::from(
                    json!({"text": format!("note {i}")}).to_string(),
                ))
                .unwrap();
            let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = serde_json::from_slice(
                &axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap(),
            )
            .unwrap();
            (status, body)
        }));
    }
    let mut ok = 0;
    for h in handles {
        let (status, body) = h.await.unwrap();
        match status {
            200 => ok += 1,
            409 => assert_eq!(body["code"], "version_conflict"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer wins version 1");
    let audit = t
        .get(&format!("/v1/jobs/{job}/audit"), &t.keys.auditor)
        .await
        .json;
    assert_eq!(audit["verified"], true);
    assert_eq!(audit["events"], 2);
}

#[tokio::test]
async fn racing_offers_without_if_match_lose_nothing() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("site-race2").await;
    t.cmd(&job, "record_intake", &t.keys.agent, TestApp::intake())
        .await;
    t.cmd(&job, "triage_job", &t.keys.agent, json!({})).await;
    let (a, b) = tokio::join!(
        t.offer(&job, &t.keys.agent, "tech-a"),
        t.offer(&job, &t.keys.dispatcher, "tech-d")
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    // One offer wins; the other either lost the race (409) or saw the job already offered (422).
    assert_eq!(statuses[0], 200, "{:?} {:?}", a.json, b.json);
    assert!(
        statuses[1] == 409 || statuses[1] == 422,
        "{:?} {:?}",
        a.json,
        b.json
    );
    let offers = t
        .count("SELECT count(*) FROM events WHERE event_type = 'JobOffered'")
        .await;
    assert_eq!(offers, 1);
    let r = t
        .post_raw(
            &format!("/v1/jobs/{job}/commands/add_note"),
            Some(&t.keys.agent),
            Some("stale"),
            r#"{"text":"x"}"#,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "version_conflict"));
    assert_eq!(r.json["current_version"], 4);
}
