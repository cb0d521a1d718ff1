//! The audit trail: envelopes valid against their schema, append-only in the
//! database, tamper-evident at the right sequence over HTTP and the CLI, and
//! old event versions loaded through upcasters.

use serde_json::json;

use crate::chain::assert_failed_at;
use crate::flow::job_on_site;
use crate::support::*;

/// Replaces the stored payload text of `job`'s event `sequence`.
async fn set_payload(t: &TestApp, job: &str, sequence: i64, text: &str) {
    t.tamper(&format!(
        "UPDATE events SET payload = '{text}' WHERE aggregate_id = '{job}' AND sequence = {sequence}"
    ))
    .await;
}

/// A job with 8+ events.
async fn busy_job(t: &TestApp) -> String {
    t.register_technicians().await;
    let job = job_on_site(t, "site-audit").await;
    for i in 0..4 {
        t.note(&job, &t.keys.agent, &format!("note {i}")).await;
    }
    job
}

async fn audit(t: &TestApp, job: &str) -> serde_json::Value {
    let r = t
        .get(&format!("/v1/jobs/{job}/audit"), &t.keys.auditor)
        .await;
    assert_eq!(r.status, 200);
    r.json
}

fn cli_verify(t: &TestApp, job: &str) -> (bool, String) {
    let (code, out) = cli_with(&t.db_url, &["audit", "verify", job], None, None);
    (code == Some(0), out)
}

#[tokio::test]
async fn every_envelope_validates_and_carries_actor_and_sop() {
    let t = TestApp::spawn().await;
    let job = busy_job(&t).await;
    let events = t.events(&job).await;
    assert!(events.len() >= 8);
    for e in &events {
        validate("audit_event.schema.json", e);
        assert!(e["actor"]["id"].is_string());
        assert!(e["idempotency_key"].is_string());
    }
    let triaged = events
        .iter()
        .find(|e| e["event_type"] == "JobTriaged")
        .unwrap();
    assert_eq!(triaged["sop"]["id"], "intake.door_stuck_open");
    assert_eq!(triaged["command"], "triage_job");
    let checked_in = events
        .iter()
        .find(|e| e["event_type"] == "CheckedIn")
        .unwrap();
    assert_eq!(
        checked_in["actor"],
        json!({"kind": "person", "id": "tech-d", "role": "technician", "technician_id": "tech-d"})
    );
    assert_eq!(audit(&t, &job).await["verified"], true);
    assert!(cli_verify(&t, &job).0);
}

#[tokio::test]
async fn the_database_refuses_update_and_delete() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-ro").await;
    let upd = sqlx::query("UPDATE events SET payload = '{}' WHERE aggregate_id = $1")
        .bind(&job)
        .execute(&t.app.pool)
        .await;
    assert!(upd.is_err());
    let del = sqlx::query("DELETE FROM events WHERE aggregate_id = $1")
        .bind(&job)
        .execute(&t.app.pool)
        .await;
    assert!(del.is_err());
    let trunc = sqlx::query("TRUNCATE events").execute(&t.app.pool).await;
    assert!(trunc.is_err());
}

#[tokio::test]
async fn a_changed_payload_is_reported_at_its_sequence() {
    let t = TestApp::spawn().await;
    let job = busy_job(&t).await;
    t.tamper(&format!("UPDATE events SET payload = '{{\"text\":\"forged\"}}' WHERE aggregate_id = '{job}' AND sequence = 9")).await;
    let a = audit(&t, &job).await;
    assert_eq!(
        (a["verified"].clone(), a["first_bad_sequence"].clone()),
        (json!(false), json!(9))
    );
    let (ok, out) = cli_verify(&t, &job);
    assert!(!ok && out.contains("FAILED at sequence 9"), "{out}");
}

#[tokio::test]
async fn changed_metadata_deleted_and_swapped_rows_are_reported() {
    for (case, sql, expected) in [
        ("actor", "UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{actor,id}', '\"someone-else\"')::json WHERE aggregate_id = '{job}' AND sequence = 3", 3),
        ("delete middle", "DELETE FROM events WHERE aggregate_id = '{job}' AND sequence = 5", 5),
        ("delete last", "DELETE FROM events WHERE aggregate_id = '{job}' AND sequence = 11", 11),
        ("swap", "UPDATE events SET sequence = 1000 WHERE aggregate_id = '{job}' AND sequence = 6; UPDATE events SET sequence = 6 WHERE aggregate_id = '{job}' AND sequence = 7; UPDATE events SET sequence = 7 WHERE aggregate_id = '{job}' AND sequence = 1000", 6),
        ("event type", "UPDATE events SET event_type = 'NoteAdded' WHERE aggregate_id = '{job}' AND sequence = 2", 2),
    ] {
        let t = TestApp::spawn().await;
        let job = busy_job(&t).await;
        assert_eq!(audit(&t, &job).await["events"], 11, "fixture has 11 events");
        t.tamper(&sql.replace("{job}", &job)).await;
        let a = audit(&t, &job).await;
        assert_eq!(a["first_bad_sequence"], json!(expected), "{case}: {a}");
        let (ok, out) = cli_verify(&t, &job);
        assert!(!ok && out.contains(&format!("FAILED at sequence {expected}")), "{case}: {out}");
    }
}

/// The audit hashes a row's stored text and decodes it only when that text
/// does not give the stored hash: a row whose JSON is spelled another way
/// (white space, key order, escapes — the same values) still verifies, and a
/// changed value in such a spelling is still found, by the per-stream audit
/// over HTTP and the CLI and by the whole-store audit alike.
#[tokio::test]
async fn the_same_json_spelled_otherwise_verifies_and_a_changed_value_does_not() {
    let t = TestApp::spawn().await;
    let job = busy_job(&t).await;
    let note: String = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_id = $1 AND sequence = 9",
    )
    .bind(&job)
    .fetch_one(&t.app.pool)
    .await
    .unwrap();
    assert!(note.starts_with("{\"text\":\"note"), "{note}");
    // The same values: jsonb's spelling of the metadata (spaces, its own key
    // order) and the note's text with a space and an escaped letter.
    let respelled = note.replacen("{\"text\":\"n", "{ \"text\" : \"\\u006e", 1);
    t.tamper(&format!(
        "UPDATE events SET metadata = metadata::jsonb::json WHERE aggregate_id = '{job}' AND sequence = 3"
    ))
    .await;
    set_payload(&t, &job, 9, &respelled).await;
    let spelled: (String, String) = sqlx::query_as(
        "SELECT (SELECT metadata::text FROM events WHERE aggregate_id = $1 AND sequence = 3), \
                (SELECT payload::text FROM events WHERE aggregate_id = $1 AND sequence = 9)",
    )
    .bind(&job)
    .fetch_one(&t.app.pool)
    .await
    .unwrap();
    assert!(
        spelled.0.contains("\": "),
        "jsonb spells it otherwise: {}",
        spelled.0
    );
    assert!(spelled.1.contains("\\u006e"), "{}", spelled.1);
    let a = audit(&t, &job).await;
    assert_eq!(
        (a["verified"].clone(), a["events"].clone()),
        (json!(true), json!(11)),
        "{a}"
    );
    assert!(cli_verify(&t, &job).0);
    let (code, out) = cli_with(&t.db_url, &["audit", "verify", "--all"], None, None);
    assert_eq!(code, Some(0), "{out}");
    // A changed value in the respelled text is found at its sequence.
    let changed = respelled.replacen("ote", "ever forged", 1);
    assert_ne!(changed, respelled);
    set_payload(&t, &job, 9, &changed).await;
    assert_failed_at(&audit(&t, &job).await, 9, "hash");
    let (ok, out) = cli_verify(&t, &job);
    assert!(!ok && out.contains("FAILED at sequence 9"), "{out}");
    let (code, out) = cli_with(&t.db_url, &["audit", "verify", "--all"], None, None);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains(&job), "{out}");
}

/// A stream long enough to be checked in batches on several threads while
/// it is read: intact, it verifies; a row changed in the first batch, in a
/// middle one or in the last (read and checked last) is the first bad
/// sequence found, and with two changed rows the earlier one is.
#[tokio::test]
async fn a_long_streams_first_bad_row_is_found_in_whichever_batch_it_is() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-long").await;
    let meta: dispatch_api::store::EventMeta =
        serde_json::from_value(t.events(&job).await[0].clone()).unwrap();
    let mut conn = t.app.pool.acquire().await.unwrap();
    let (_, head) = dispatch_api::store::load_stream::<dispatch_api::domain::job::JobEvent>(
        &mut conn, "job", &job,
    )
    .await
    .unwrap();
    let notes = (0..1300)
        .map(|i| dispatch_api::store::NewEvent {
            event_type: "NoteAdded".into(),
            event_version: "1.0".into(),
            payload: json!({"text": format!("line {i}")}),
            meta: meta.clone(),
        })
        .collect();
    dispatch_api::store::append(&mut conn, &t.app.chain, "job", &job, &head, notes)
        .await
        .unwrap();
    drop(conn);
    let a = audit(&t, &job).await;
    assert_eq!(
        (a["verified"].clone(), a["events"].clone()),
        (json!(true), json!(1301)),
        "{a}"
    );
    for (changed, found) in [
        (&[3][..], 3),
        (&[700][..], 700),
        (&[1290][..], 1290),
        (&[1100, 600][..], 600),
    ] {
        for &sequence in changed {
            set_payload(&t, &job, sequence, r#"{"text":"forged"}"#).await;
        }
        assert_failed_at(&audit(&t, &job).await, found, "hash");
        // Put back as the store wrote them.
        for &sequence in changed {
            let text = format!(r#"{{"text":"line {}"}}"#, sequence - 2);
            set_payload(&t, &job, sequence, &text).await;
        }
        assert_eq!(
            audit(&t, &job).await["verified"],
            true,
            "{changed:?} put back"
        );
    }
}

#[tokio::test]
async fn an_old_event_version_loads_through_its_upcaster() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-up").await;
    let mut conn = t.app.pool.acquire().await.unwrap();
    let (_, head) = dispatch_api::store::load_stream::<dispatch_api::domain::job::JobEvent>(
        &mut conn, "job", &job,
    )
    .await
    .unwrap();
    let meta: dispatch_api::store::EventMeta =
        serde_json::from_value(t.events(&job).await[0].clone()).unwrap();
    let legacy = dispatch_api::store::NewEvent {
        event_type: "NoteAdded".into(),
        event_version: "0.9".into(),
        payload: json!({"note": "written by the prototype"}),
        meta,
    };
    dispatch_api::store::append(&mut conn, &t.app.chain, "job", &job, &head, vec![legacy])
        .await
        .unwrap();
    let view = t
        .get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher)
        .await
        .json;
    assert_eq!(view["notes"], json!([{"text": "written by the prototype"}]));
    let events = t.events(&job).await;
    assert_eq!(events[1]["event_version"], "0.9");
    assert_eq!(
        events[1]["payload"],
        json!({"note": "written by the prototype"}),
        "stored rows are never rewritten"
    );
    assert_eq!(audit(&t, &job).await["verified"], true);
}
