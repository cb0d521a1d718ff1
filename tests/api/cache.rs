//! The job cache (src/app/cache.rs) is only an optimisation: commands
//! decided on a state that another replica has moved past still answer as
//! if the stream had been read, and retried keys still replay.

use dispatch_api::app::cache::JobCache;
use dispatch_api::app::App;
use serde_json::json;

use crate::support::*;

/// `t` served by a replica with its own job cache `jobs`: the same
/// database, keys and clock.
fn with_cache(t: &TestApp, jobs: JobCache) -> TestApp {
    t.serving(App {
        jobs,
        ..t.app.clone()
    })
}

/// A second replica: the same database, keys and clock, its own job cache.
fn replica(t: &TestApp) -> TestApp {
    with_cache(t, JobCache::default())
}

#[tokio::test]
async fn a_replica_with_a_stale_state_decides_on_the_stream() {
    let a = TestApp::spawn().await;
    let b = replica(&a);
    let job = a.open_ifm_job("site-cache-1").await;
    // A keeps the job as opened (version 1); B records the intake.
    let r = b
        .cmd(&job, "record_intake", &b.keys.agent, TestApp::intake())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(a.app.jobs.len(), 1, "A kept the state its open_job left");
    // On A's cached state (no intake yet) triage would be refused; on the
    // stream it is allowed, and that is the answer.
    let r = a.cmd(&job, "triage_job", &a.keys.agent, json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["version"], 3);
    // B's cached state is now stale by one event: its next append continues
    // the stream instead of colliding with it.
    let r = b.note(&job, &b.keys.dispatcher, "from B").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["version"], 4);
    let sequences: Vec<i64> = a
        .events(&job)
        .await
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, vec![1, 2, 3, 4]);
    let audit = a
        .get(&format!("/v1/jobs/{job}/audit"), &a.keys.auditor)
        .await
        .json;
    assert_eq!(audit["verified"], true, "{audit}");
}

#[tokio::test]
async fn if_match_is_checked_against_the_stream_not_the_cache() {
    let a = TestApp::spawn().await;
    let b = replica(&a);
    let job = a.open_ifm_job("site-cache-2").await;
    let r = b.note(&job, &b.keys.agent, "B first").await;
    assert_eq!(r.json["version"], 2);
    // A's cache says version 1; the stream says 2, which the caller expects.
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let note = |text: &str| json!({ "text": text }).to_string();
    let at_2 = [("if-match", "\"2\"")];
    let agent = Some(a.keys.agent.as_str());
    let r = a
        .post_raw(&path, agent, Some("a-at-2"), &note("A at 2"), &at_2)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["version"], 3);
    // And a version the stream has moved past is a conflict, cached or not.
    let r = a
        .post_raw(&path, agent, Some("a-at-2-again"), &note("again"), &at_2)
        .await;
    assert_eq!(r.status, 409, "{:?}", r.json);
    assert_eq!(r.code(), "version_conflict");
}

#[tokio::test]
async fn a_retried_key_replays_its_answer_from_a_cached_state() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-cache-3").await;
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let body = json!({"text": "once"}).to_string();
    let first = t.post_text(&path, &t.keys.agent, "note-once", &body).await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    // The state the note left is cached; the retry decides on it (a second
    // note would be allowed) but its key was used: the stored answer wins.
    assert_eq!(t.app.jobs.len(), 1);
    let again = t.post_text(&path, &t.keys.agent, "note-once", &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "the same bytes");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(t.events(&job).await.len(), 2, "one note, not two");
    // The same key for another body is refused, not applied.
    let other = json!({"text": "twice"}).to_string();
    let reused = t.post_text(&path, &t.keys.agent, "note-once", &other).await;
    assert_eq!(reused.status, 409, "{:?}", reused.json);
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(t.events(&job).await.len(), 2);
}

#[tokio::test]
async fn a_cache_of_none_reads_every_stream() {
    let t = TestApp::spawn().await;
    let uncached = with_cache(&t, JobCache::new(0));
    let job = uncached.open_ifm_job("site-cache-4").await;
    let r = uncached
        .cmd(&job, "record_intake", &t.keys.agent, TestApp::intake())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(t.app.jobs.len(), 0);
}

#[tokio::test]
async fn jobs_in_a_final_state_are_not_kept() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-cache-5").await;
    assert_eq!(t.app.jobs.len(), 1);
    let r = t
        .cmd(
            &job,
            "cancel_job",
            &t.keys.dispatcher,
            json!({"reason": "customer fixed it"}),
        )
        .await;
    assert_eq!(r.state(), "cancelled", "{:?}", r.json);
    assert!(t.app.jobs.is_empty(), "a cancelled job is not kept");
    // It still answers from its stream.
    let r = t.note(&job, &t.keys.dispatcher, "after").await;
    assert_eq!(r.code(), "invalid_transition", "{:?}", r.json);
    assert_eq!(r.json["current_state"], "cancelled");
}

/// A job command on a cached job with a key this process resolved before
/// skips the key lookup: its write checks the key. A revoked key is refused
/// from the revocation's commit on — 401, nothing written — whatever else
/// is wrong with the request.
#[tokio::test]
async fn a_key_revoked_after_use_is_refused_on_a_cached_job() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-cache-revoked").await;
    let r = t
        .cmd(&job, "record_intake", &t.keys.agent, TestApp::intake())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    // Both the job and the agent's key are known to this process now; the
    // next command takes the path that checks the key in its write.
    let r = t.note(&job, &t.keys.agent, "kept").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(t.app.jobs.len(), 1);
    let head = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(&job)
            .fetch_one(&t.app.pool)
            .await
            .unwrap()
    };
    let before = head().await;

    dispatch_api::app::keys::revoke_key(&t.app.pool, "agent-1")
        .await
        .unwrap();
    let r = t.note(&job, &t.keys.agent, "after revocation").await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{:?}", r.json);
    // A request that is also wrong in other ways still hears 401 first.
    let r = t
        .cmd(&job, "no_such_command", &t.keys.agent, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = t
        .cmd(&job, "add_note", &t.keys.agent, json!({"text": 5}))
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = t
        .cmd(&job, "decide_approval", &t.keys.agent, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    assert_eq!(head().await, before, "nothing was appended");
    let answers = t
        .count("SELECT count(*) FROM idempotency_records WHERE caller = 'agent-1'")
        .await;
    assert_eq!(answers, 3, "open, intake and the first note only");

    // Another key keeps working on the same cached job.
    let r = t.note(&job, &t.keys.dispatcher, "desk").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
}
