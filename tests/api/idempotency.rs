//! Exactly-once under retries: the same key replays the first answer byte for
//! byte and appends nothing; the same key with another body is refused.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn fifty_concurrent_retries_give_one_set_of_events_and_identical_answers() {
    let t = TestApp::spawn().await;
    let body = open_body("site-idem").to_string();
    let mut handles = Vec::new();
    for _ in 0..50 {
        let router = t.router.clone();
        let key = t.keys.agent.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/v1/jobs")
                .header("authorization", format!("Bearer {key}"))
                .header("idempotency-key", "same-key")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
            let status = resp.status().as_u16();
            let replayed = resp.headers().get("idempotent-replayed").is_some();
            (
                status,
                replayed,
                axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap()
                    .to_vec(),
            )
        }));
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    let first = &answers[0].2;
    assert!(
        answers.iter().all(|(s, _, b)| *s == 201 && b == first),
        "answers differ"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "exactly one fresh answer"
    );
    let count = t.count("SELECT count(*) FROM events").await;
    assert_eq!(count, 1, "one JobOpened only");
}

/// A test app with one job open at `site`, that job's `add_note` path, and
/// the answer to the agent's first note there: `body` sent under the
/// idempotency key `idem`.
async fn a_noted_job(site: &str, idem: &str, body: &str) -> (TestApp, String, String, Resp) {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job(site).await;
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let first = t.post_text(&path, &t.keys.agent, idem, body).await;
    (t, job, path, first)
}

#[tokio::test]
async fn same_key_other_body_is_refused_and_refusals_replay_too() {
    let (t, job, path, a) = a_noted_job("site-r", "note-1", r#"{"text":"hello"}"#).await;
    assert_eq!(a.status, 200);
    let again = t
        .post_text(&path, &t.keys.agent, "note-1", r#"{ "text" : "hello" }"#)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, a.body, "byte for byte");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = t
        .post_text(&path, &t.keys.agent, "note-1", r#"{"text":"bye"}"#)
        .await;
    assert_eq!(
        (other.status, other.code()),
        (409, "idempotency_key_reused")
    );
    // Keys are per caller: another caller may use the same key string.
    let d = t
        .post_text(&path, &t.keys.dispatcher, "note-1", r#"{"text":"bye"}"#)
        .await;
    assert_eq!(d.status, 200);
    // A domain refusal is a final answer: replayed even after the state changed.
    let triage = format!("/v1/jobs/{job}/commands/triage_job");
    let refused = t.post_text(&triage, &t.keys.agent, "triage-1", "{}").await;
    assert_eq!(refused.code(), "missing_intake_fields");
    t.cmd(&job, "record_intake", &t.keys.agent, TestApp::intake())
        .await;
    let replay = t.post_text(&triage, &t.keys.agent, "triage-1", "{}").await;
    assert_eq!(replay.body, refused.body);
    let notes = t
        .count("SELECT count(*) FROM events WHERE event_type = 'NoteAdded'")
        .await;
    assert_eq!(notes, 2);
}

#[tokio::test]
async fn answers_survive_a_restart() {
    let (t, _, path, first) = a_noted_job("site-restart", "k", r#"{"text":"a"}"#).await;
    // A new router and pool on the same database: what a restarted process sees.
    let pool = sqlx::PgPool::connect(&t.db_url).await.unwrap();
    let mut app = t.app.clone();
    app.pool = pool;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(&path)
        .header("authorization", format!("Bearer {}", t.keys.agent))
        .header("idempotency-key", "k")
        .body(axum::body::Body::from(r#"{"text":"a"}"#))
        .unwrap();
    let resp = t.serving(app).send(req).await;
    assert_eq!(resp.headers["idempotent-replayed"], "true");
    assert_eq!(resp.body, first.body);
    let _ = json!({});
}
