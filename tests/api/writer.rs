//! Group commit (src/store/writer.rs, migration 0015): writes committed
//! together each stand alone — a write the store refuses leaves nothing,
//! and the writes beside it commit.

use dispatch_api::app::keys::key_hash;
use dispatch_api::domain::actor::{Actor, ActorKind, Role};
use dispatch_api::store::writer::write_together;
use dispatch_api::store::{self, EventMeta, NewEvent, StreamState};
use dispatch_api::store::{Answer, Refused, Write};
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

fn meta() -> EventMeta {
    let actor = Actor {
        kind: ActorKind::Agent,
        id: "writer-test".into(),
        role: Role::Agent,
        technician_id: None,
    };
    EventMeta {
        command: Some("add_note".into()),
        ..EventMeta::new(t0(), actor)
    }
}

/// A write of `events` notes to job `job` after `head`, under `key`.
fn write(job: &str, head: &StreamState, events: usize, key: &str) -> Write {
    let new = (0..events)
        .map(|i| NewEvent {
            event_type: "NoteAdded".into(),
            event_version: "1.0".into(),
            payload: json!({"text": format!("{job} note {i}")}),
            meta: meta(),
        })
        .collect();
    let (append, _) = store::prepare_append(&chain_keys(), "job", job, head, new).unwrap();
    // The answer names each event's position: the database fills them in
    // between the pieces.
    let mut pieces = vec![format!("{{\"job\":\"{job}\",\"positions\":[").into_bytes()];
    for i in 0..events {
        pieces.push(if i + 1 == events {
            b"]}".to_vec()
        } else {
            b",".to_vec()
        });
    }
    if events == 0 {
        pieces = vec![format!("{{\"job\":\"{job}\"}}").into_bytes()];
    }
    Write {
        answer: Some(Answer {
            caller: "writer-test".into(),
            idempotency_key: key.into(),
            request_hash: format!("hash-{key}"),
            status: if events == 0 { 422 } else { 200 },
            pieces,
        }),
        key_check: None,
        append: (events > 0).then_some(append),
        door: None,
    }
}

async fn events_of(pool: &PgPool, job: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT sequence, global_position FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(job)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn answer_of(pool: &PgPool, key: &str) -> Option<Vec<u8>> {
    sqlx::query_scalar(
        "SELECT response_body FROM idempotency_records WHERE caller = 'writer-test' AND idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn head_of(pool: &PgPool, job: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT sequence FROM stream_heads WHERE aggregate_type = 'job' AND aggregate_id = $1",
    )
    .bind(job)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Whether a write was refused as a conflict.
fn is_conflict<T>(outcome: &Result<T, Refused>) -> bool {
    matches!(outcome, Err(Refused::Conflict))
}

/// Whether a write was refused for its key.
fn is_key_refused<T>(outcome: &Result<T, Refused>) -> bool {
    matches!(outcome, Err(Refused::KeyRefused))
}

#[tokio::test]
async fn writes_committed_together_each_stand_alone() {
    let t = TestApp::spawn().await;
    let pool = &t.app.pool;
    let fresh = StreamState::default();

    let mut revoked = write("wt-c", &fresh, 1, "k-revoked");
    revoked.key_check = Some(key_hash("no-such-key").unwrap());
    let mut checked = write("wt-d", &fresh, 1, "k-checked");
    checked.key_check = Some(key_hash(&t.keys.agent).unwrap());
    let writes = vec![
        // Two events on a new stream.
        write("wt-a", &fresh, 2, "k-a"),
        // Another stream under the same idempotency key: refused.
        write("wt-b", &fresh, 1, "k-a"),
        // The first stream again from the same head: stale, refused.
        write("wt-a", &fresh, 1, "k-stale"),
        // A key that is not active: refused.
        revoked,
        // A key that is: written.
        checked,
        // A refusal's answer, nothing appended.
        write("wt-e", &fresh, 0, "k-refusal"),
    ];
    let outcomes = write_together(pool, &writes).await;
    assert_eq!(outcomes.len(), 6);

    let a = events_of(pool, "wt-a").await;
    assert_eq!(a.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2]);
    let expected = format!("{{\"job\":\"wt-a\",\"positions\":[{},{}]}}", a[0].1, a[1].1);
    match &outcomes[0] {
        Ok(body) => assert_eq!(String::from_utf8_lossy(body), expected),
        Err(e) => panic!("the first write was refused: {e:?}"),
    }
    assert_eq!(
        answer_of(pool, "k-a").await.as_deref(),
        Some(expected.as_bytes())
    );
    assert_eq!(head_of(pool, "wt-a").await, Some(2));

    assert!(is_conflict(&outcomes[1]), "{:?}", outcomes[1]);
    assert!(events_of(pool, "wt-b").await.is_empty());
    assert_eq!(head_of(pool, "wt-b").await, None);

    assert!(is_conflict(&outcomes[2]), "{:?}", outcomes[2]);
    assert_eq!(answer_of(pool, "k-stale").await, None);

    assert!(is_key_refused(&outcomes[3]), "{:?}", outcomes[3]);
    assert!(events_of(pool, "wt-c").await.is_empty());
    assert_eq!(head_of(pool, "wt-c").await, None);
    assert_eq!(answer_of(pool, "k-revoked").await, None);

    assert!(outcomes[4].is_ok(), "{:?}", outcomes[4]);
    assert_eq!(events_of(pool, "wt-d").await.len(), 1);

    match &outcomes[5] {
        Ok(body) => assert_eq!(body.as_slice(), b"{\"job\":\"wt-e\"}"),
        Err(e) => panic!("the refusal's answer was not stored: {e:?}"),
    }
    assert_eq!(head_of(pool, "wt-e").await, None);

    // What was written chains and verifies.
    for job in ["wt-a", "wt-d"] {
        let rows = store::load_stream_rows(&mut pool.acquire().await.unwrap(), "job", job, None)
            .await
            .unwrap();
        let head = store::load_head(&mut pool.acquire().await.unwrap(), "job", job)
            .await
            .unwrap();
        assert!(
            store::verify_rows("job", job, &rows, head.as_ref(), &chain_keys(), &[]).verified,
            "{job}"
        );
    }
}

#[tokio::test]
async fn concurrent_writes_through_the_writer_all_commit_once() {
    let t = TestApp::spawn().await;
    let fresh = StreamState::default();
    // Many commands at once, so that the writer batches them; each of 20
    // streams is written twice from the same head: one of each pair wins.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let writer = t.app.writer.clone();
        let w = write(&format!("wc-{}", i % 20), &fresh, 1, &format!("kc-{i}"));
        tasks.push(tokio::spawn(async move { writer.write(w).await }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Refused::Conflict) => conflicts += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((ok, conflicts), (20, 20));
    for i in 0..20 {
        assert_eq!(events_of(&t.app.pool, &format!("wc-{i}")).await.len(), 1);
    }
    let answers = t
        .count("SELECT count(*) FROM idempotency_records WHERE caller = 'writer-test'")
        .await;
    assert_eq!(answers, 20);
}
