//! The keyed chain (issue 16): a forged append with a recomputed SHA-256 is
//! found at its sequence and named by its check, over HTTP and the CLI; a
//! tail deleted with its head rolled back is found against a signed
//! checkpoint; the database refuses rewriting heads and stored answers; keys
//! rotate without rewriting history; legacy unkeyed events verify under a
//! checkpoint and the first keyed event chains to them.

use std::sync::Arc;

use dispatch_api::app::evidence::EvidenceStore;
use dispatch_api::app::App;
use dispatch_api::store::{self, chain::ChainKeys};
use serde_json::{json, Value};

use crate::support::*;

/// A job with a few keyed events (opened, then notes).
async fn job_with_notes(t: &TestApp, site: &str, notes: usize) -> String {
    let job = t.open_ifm_job(site).await;
    for i in 0..notes {
        let r = t.note(&job, &t.keys.agent, &format!("note {i}")).await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
    job
}

async fn audit(t: &TestApp, job: &str) -> Value {
    let r = t
        .get(&format!("/v1/jobs/{job}/audit"), &t.keys.auditor)
        .await;
    assert_eq!(r.status, 200);
    r.json
}

/// Asserts that the audit `a` failed first at `sequence`, on `check`.
#[track_caller]
pub(crate) fn assert_failed_at(a: &Value, sequence: i64, check: &str) {
    assert_eq!(
        failed_at(a),
        (json!(false), json!(sequence), json!(check)),
        "{a}"
    );
}

fn failed_at(a: &Value) -> (Value, Value, Value) {
    (
        a["verified"].clone(),
        a["first_bad_sequence"].clone(),
        a["check"].clone(),
    )
}

/// `dispatch-api audit verify TARGET` on `t`'s database, with `keyring`
/// (`None`: the tests' one) and checkpoints from `evidence`; see `cli_with`.
fn verify_cli(
    t: &TestApp,
    target: &str,
    keyring: Option<&str>,
    evidence: Option<&std::path::Path>,
) -> (Option<i32>, String) {
    cli_with(&t.db_url, &["audit", "verify", target], keyring, evidence)
}

/// Asserts that a CLI run (its exit code and output) exited `code`
/// and says `says`; the output.
#[track_caller]
fn assert_says((exit, out): (Option<i32>, String), code: i32, says: &str) -> String {
    assert_eq!(exit, Some(code), "{out}");
    assert!(out.contains(says), "{out}");
    out
}

/// Strips the key and MAC from every event of `job`: as the store held them
/// before the chain was keyed (migration 0010).
async fn unkey(t: &TestApp, job: &str) {
    as_owner(
        t,
        &["events"],
        &[format!(
            "UPDATE events SET key_id = NULL, mac = NULL WHERE aggregate_id = '{job}'"
        )],
    )
    .await;
}

/// A test app with a local checkpoint store (see `checkpoint_store`) and a
/// job opened at `site` with `notes` notes.
async fn noted_with_checkpoints(
    site: &str,
    notes: usize,
) -> (TestApp, tempfile::TempDir, EvidenceStore, String) {
    let t = TestApp::spawn().await;
    let (dir, cps) = checkpoint_store();
    let job = job_with_notes(&t, site, notes).await;
    (t, dir, cps, job)
}

/// A local checkpoint store for `t` (the CLI reads the same folder).
fn checkpoint_store() -> (tempfile::TempDir, EvidenceStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EvidenceStore::local(dir.path()).unwrap();
    (dir, store)
}

async fn checkpoint(t: &TestApp, store: &EvidenceStore) -> usize {
    t.app
        .checkpoints
        .write(&t.app.pool, store, &t.app.chain)
        .await
        .unwrap()
}

/// Checkpoints until `job`'s last event is covered. A checkpoint covers
/// transactions below the snapshot's xmin, which is the whole server's:
/// other tests' open transactions can hold it back for a moment.
async fn checkpoint_covering(t: &TestApp, store: &EvidenceStore, job: &str) {
    let (last, _) = last_row(t, job).await;
    for _ in 0..200 {
        checkpoint(t, store).await;
        if t.app
            .checkpoints
            .heads("job", job)
            .iter()
            .any(|h| h.sequence >= last)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no checkpoint covered {job} at {last}");
}

/// The stream's last row (sequence, hash).
async fn last_row(t: &TestApp, job: &str) -> (i64, String) {
    sqlx::query_as("SELECT sequence, hash FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 ORDER BY sequence DESC LIMIT 1")
        .bind(job)
        .fetch_one(&t.app.pool)
        .await
        .unwrap()
}

/// Runs `sql` as the tables' owner with every trigger of `tables` disabled.
async fn as_owner(t: &TestApp, tables: &[&str], sql: &[String]) {
    let mut tx = t.app.pool.begin().await.unwrap();
    for table in tables {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER ALL"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for stmt in sql {
        sqlx::query(stmt).execute(&mut *tx).await.unwrap();
    }
    for table in tables {
        sqlx::query(&format!("ALTER TABLE {table} ENABLE TRIGGER ALL"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// The attack of issue 16: with ordinary INSERT and UPDATE rights, an
/// `NteIncreased` row whose SHA-256 is recomputed (the chain's code is
/// public), then the head moved onto it.
async fn forge_nte_increase(
    t: &TestApp,
    job: &str,
    key_id: Option<&str>,
    mac: Option<&str>,
) -> i64 {
    let (last, prev) = last_row(t, job).await;
    let sequence = last + 1;
    let event_id = uuid::Uuid::now_v7();
    let payload = json!({"from_cents": 50000, "to_cents": 999999900, "approval_id": "forged"});
    let metadata = t.events(job).await[0].clone();
    let metadata = json!({
        "occurred_at": metadata["occurred_at"], "actor": metadata["actor"],
        "tool_invocation_id": null, "idempotency_key": "forged", "correlation_id": null,
        "causation_id": null, "sop": null, "command": "decide_approval"
    });
    let envelope = store::Envelope {
        aggregate_type: "job",
        aggregate_id: job,
        sequence,
        event_id: &event_id.to_string(),
        event_type: "NteIncreased",
        event_version: "1.0",
        prev_hash: &prev,
    };
    let hash = store::envelope_hash(&envelope, &payload, &metadata);
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                             event_id, prev_hash, hash, key_id, mac) \
         VALUES ('job', $1, $2, 'NteIncreased', '1.0', $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(job)
    .bind(sequence)
    .bind(&payload)
    .bind(&metadata)
    .bind(event_id)
    .bind(&prev)
    .bind(&hash)
    .bind(key_id)
    .bind(mac)
    .execute(&t.app.pool)
    .await
    .expect("an ordinary INSERT is accepted (append-only, not insert-proof)");
    sqlx::query("UPDATE stream_heads SET sequence = $2, hash = $3 WHERE aggregate_type = 'job' AND aggregate_id = $1")
        .bind(job)
        .bind(sequence)
        .bind(&hash)
        .execute(&t.app.pool)
        .await
        .expect("the head may move forward onto the stream's last event");
    sequence
}

#[tokio::test]
async fn a_forged_append_with_a_recomputed_hash_is_found_and_named() {
    let active = chain_keys().active_id().to_string();
    let zeros = "00".repeat(32);
    for (case, key_id, mac, check) in [
        (
            "wrong MAC",
            Some(active.as_str()),
            Some(zeros.as_str()),
            "mac",
        ),
        ("absent MAC", Some(active.as_str()), None, "mac"),
        ("unkeyed", None, None, "unkeyed"),
        (
            "unknown key",
            Some("k-nobody"),
            Some(zeros.as_str()),
            "unknown_key",
        ),
    ] {
        let (t, dir, cps, job) = noted_with_checkpoints("site-forge", 2).await;
        checkpoint_covering(&t, &cps, &job).await;
        let seq = forge_nte_increase(&t, &job, key_id, mac).await;
        // A checkpoint written after the forgery does not vouch for it.
        checkpoint(&t, &cps).await;
        let a = audit(&t, &job).await;
        assert_eq!(
            failed_at(&a),
            (json!(false), json!(seq), json!(check)),
            "{case}: {a}"
        );
        assert_eq!(a["events"], json!(seq), "{case}");
        let (code, out) = verify_cli(&t, &job, None, Some(dir.path()));
        assert_eq!(code, Some(1), "{case}: {out}");
        assert!(
            out.contains(&format!("FAILED at sequence {seq} (check {check})")),
            "{case}: {out}"
        );
        let (code, out) = verify_cli(&t, "--all", None, Some(dir.path()));
        assert_eq!(code, Some(1), "{case} --all: {out}");
    }
}

#[tokio::test]
async fn a_tail_deleted_with_its_head_rolled_back_is_found_against_the_checkpoint() {
    let (t, dir, cps, job) = noted_with_checkpoints("site-tail", 2).await;
    let other = job_with_notes(&t, "site-other", 1).await;
    // The store's first checkpoint, then one that covers what came after.
    checkpoint_covering(&t, &cps, &job).await;
    checkpoint_covering(&t, &cps, &other).await;
    for i in 0..3 {
        t.note(&job, &t.keys.agent, &format!("later {i}")).await;
    }
    checkpoint_covering(&t, &cps, &job).await;
    let (last, _) = last_row(&t, &job).await;
    assert_eq!(audit(&t, &job).await["verified"], true);
    let keep = last - 2;
    let (_, keep_hash): (i64, String) = sqlx::query_as(
        "SELECT sequence, hash FROM events WHERE aggregate_id = $1 AND sequence = $2",
    )
    .bind(&job)
    .bind(keep)
    .fetch_one(&t.app.pool)
    .await
    .unwrap();
    as_owner(
        &t,
        &["events", "stream_heads"],
        &[
            format!("DELETE FROM events WHERE aggregate_id = '{job}' AND sequence > {keep}"),
            format!("UPDATE stream_heads SET sequence = {keep}, hash = '{keep_hash}' WHERE aggregate_id = '{job}'"),
        ],
    )
    .await;
    let a = audit(&t, &job).await;
    assert_failed_at(&a, keep + 1, "checkpoint");
    assert_eq!(audit(&t, &other).await["verified"], true);
    // The CLI reads the checkpoints from the store itself.
    let says = format!(
        "job {job}: FAILED at sequence {} (check checkpoint)",
        keep + 1
    );
    let out = assert_says(verify_cli(&t, "--all", None, Some(dir.path())), 1, &says);
    assert!(
        !out.contains(&format!("job {other}")),
        "only failures: {out}"
    );
    let out = assert_says(
        cli_with(
            &t.db_url,
            &["audit", "verify", "--all", "--verbose"],
            None,
            Some(dir.path()),
        ),
        1,
        &says,
    );
    assert!(out.contains(&format!("job {other}: verified")), "{out}");
    // Without the checkpoints, the rolled-back tail is invisible: that is
    // what they are for.
    let (code, _) = verify_cli(&t, &job, None, None);
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_checkpoint_object_that_does_not_verify_fails_the_cli() {
    let (t, dir, cps, job) = noted_with_checkpoints("site-sig", 1).await;
    checkpoint_covering(&t, &cps, &job).await;
    let name = cps.checkpoint_names().await.unwrap().remove(0);
    let path = dir.path().join("checkpoints").join(&name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cp: Value = serde_json::from_str(&text).unwrap();
    cp["heads"][0]["sequence"] = json!(1);
    std::fs::write(&path, cp.to_string()).unwrap();
    assert_says(
        verify_cli(&t, &job, None, Some(dir.path())),
        1,
        "signature does not verify",
    );
}

fn refused(r: Result<sqlx::postgres::PgQueryResult, sqlx::Error>, what: &str) {
    let e = r.expect_err(what);
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("42501"), "{what}: {e}");
}

/// Asserts that each `(sql, what)` in turn is refused (see `refused`);
/// `$1` is `job` where one is given.
async fn each_refused(pool: &sqlx::PgPool, job: Option<&str>, cases: &[(&str, &str)]) {
    for (sql, what) in cases {
        let mut query = sqlx::query(sql);
        if let Some(job) = job {
            query = query.bind(job);
        }
        refused(query.execute(pool).await, what);
    }
}

#[tokio::test]
async fn the_database_refuses_rewriting_heads_and_stored_answers() {
    let t = TestApp::spawn().await;
    let job = job_with_notes(&t, "site-db", 2).await;
    let pool = &t.app.pool;
    let (last, _) = last_row(&t, &job).await;
    each_refused(
        pool,
        Some(&job),
        &[
            ("UPDATE stream_heads SET sequence = sequence - 1, hash = (SELECT hash FROM events WHERE aggregate_id = $1 AND sequence = 1) WHERE aggregate_id = $1", "a head moved back"),
            ("UPDATE stream_heads SET hash = repeat('ab', 32) WHERE aggregate_id = $1", "a head on a hash no event has"),
            ("UPDATE stream_heads SET sequence = sequence + 1 WHERE aggregate_id = $1", "a head past the last event"),
            ("DELETE FROM stream_heads WHERE aggregate_id = $1", "a head deleted"),
        ],
    )
    .await;
    each_refused(pool, None, &[("TRUNCATE stream_heads", "heads truncated")]).await;
    // A head inserted below a stream's last event: a stream with two events
    // and (yet) no head row.
    for seq in 1..=2i64 {
        let prev = if seq == 1 {
            store::hash::GENESIS_HASH.to_string()
        } else {
            "h1".to_string()
        };
        sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, prev_hash, hash) \
                     VALUES ('job', 'headless', $1, 'NoteAdded', '1.0', '{}', '{}', $2, $3, $4)")
            .bind(seq)
            .bind(uuid::Uuid::now_v7())
            .bind(prev)
            .bind(format!("h{seq}"))
            .execute(pool)
            .await
            .unwrap();
    }
    each_refused(
        pool,
        None,
        &[(
            "INSERT INTO stream_heads VALUES ('job', 'headless', 1, 'h1')",
            "a head inserted below the last event",
        )],
    )
    .await;
    sqlx::query("INSERT INTO stream_heads VALUES ('job', 'headless', 2, 'h2')")
        .execute(pool)
        .await
        .expect("a head on the last event is accepted");
    assert_eq!(last_row(&t, &job).await.0, last, "nothing moved");
    assert_eq!(audit(&t, &job).await["verified"], true);

    // Stored answers.
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_records WHERE status_code <> 0")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(n > 0);
    each_refused(
        pool,
        None,
        &[
            ("UPDATE idempotency_records SET response_body = '{\"forged\":true}'::bytea WHERE status_code <> 0", "a stored answer rewritten"),
            ("UPDATE idempotency_records SET status_code = 0, response_body = ''::bytea WHERE status_code <> 0", "a stored answer turned provisional"),
            ("DELETE FROM idempotency_records", "stored answers deleted"),
            ("TRUNCATE idempotency_records", "stored answers truncated"),
        ],
    )
    .await;
    // The one transition the code makes: a provisional claim completed once.
    sqlx::query("INSERT INTO idempotency_records (caller, idempotency_key, request_hash, status_code, response_body) VALUES ('c', 'k', 'h', 0, ''::bytea)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE idempotency_records SET status_code = 200, response_body = 'ok'::bytea WHERE caller = 'c'")
        .execute(pool)
        .await
        .expect("a provisional claim is completed");
    each_refused(
        pool,
        None,
        &[
            (
                "UPDATE idempotency_records SET status_code = 201 WHERE caller = 'c'",
                "a completed answer changed",
            ),
            (
                "UPDATE idempotency_records SET request_hash = 'other' WHERE caller = 'c'",
                "a request hash changed",
            ),
        ],
    )
    .await;
}

/// `t`'s router with another keyring (a replica restarted after rotation).
fn with_keys(t: &TestApp, keys: Arc<ChainKeys>) -> TestApp {
    t.serving(App {
        chain: keys,
        ..t.app.clone()
    })
}

#[tokio::test]
async fn keys_rotate_without_rewriting_history() {
    let t = TestApp::spawn().await;
    let k1 = chain_keys();
    let job = job_with_notes(&t, "site-rotate", 1).await;
    let k2 = Arc::new(k1.rotated("k2"));
    let t2 = with_keys(&t, k2.clone());
    let r = t2.note(&job, &t.keys.agent, "under k2").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let events = t2.events(&job).await;
    for e in &events {
        validate("audit_event.schema.json", e);
    }
    assert_eq!(events[0]["key_id"], json!(k1.active_id()));
    assert_eq!(events.last().unwrap()["key_id"], json!("k2"));
    let a = audit(&t2, &job).await;
    assert_eq!(a["verified"], true, "{a}");
    assert_eq!(a["unkeyed_events"], 0);
    let (code, out) = verify_cli(&t, &job, Some(&k2.to_toml()), None);
    assert_eq!(code, Some(0), "{out}");
    // A keyring that lost k1 cannot vouch for what k1 keyed.
    let lost = Arc::new(k2.without(k1.active_id()));
    let a = audit(&with_keys(&t, lost.clone()), &job).await;
    assert_failed_at(&a, 1, "unknown_key");
    assert_says(
        verify_cli(&t, &job, Some(&lost.to_toml()), None),
        1,
        "FAILED at sequence 1 (check unknown_key)",
    );
}

#[tokio::test]
async fn legacy_unkeyed_events_verify_under_a_checkpoint_and_keyed_ones_chain_to_them() {
    let (t, dir, cps, job) = noted_with_checkpoints("site-legacy", 2).await;
    // As the store held them before the chain was keyed (migration 0010).
    unkey(&t, &job).await;
    let legacy = last_row(&t, &job).await;
    let a = audit(&t, &job).await;
    assert_failed_at(&a, 1, "unkeyed");
    // The store's first checkpoint vouches for what it holds.
    checkpoint_covering(&t, &cps, &job).await;
    let a = audit(&t, &job).await;
    assert_eq!(a["verified"], true, "{a}");
    assert_eq!(a["unkeyed_events"], json!(legacy.0));
    // The first keyed event commits to the legacy head.
    let r = t.note(&job, &t.keys.agent, "keyed now").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let events = t.events(&job).await;
    let first_keyed = &events[legacy.0 as usize];
    assert_eq!(first_keyed["prev_hash"], json!(legacy.1));
    assert_eq!(first_keyed["key_id"], json!(chain_keys().active_id()));
    assert_eq!(events[0]["key_id"], Value::Null);
    for e in &events {
        validate("audit_event.schema.json", e);
    }
    checkpoint_covering(&t, &cps, &job).await;
    let a = audit(&t, &job).await;
    assert_eq!(a["verified"], true, "{a}");
    assert_eq!(a["events"], json!(legacy.0 + 1));
    assert_eq!(a["unkeyed_events"], json!(legacy.0));
    let says = format!("{} unkeyed vouched by a checkpoint", legacy.0);
    assert_says(verify_cli(&t, &job, None, Some(dir.path())), 0, &says);
}

#[tokio::test]
async fn an_unkeyed_forgery_a_keyed_append_then_built_on_is_still_found() {
    let (t, dir, cps, job) = noted_with_checkpoints("site-built-on", 1).await;
    unkey(&t, &job).await;
    checkpoint_covering(&t, &cps, &job).await;
    assert_eq!(audit(&t, &job).await["verified"], true);
    // Forged after the first checkpoint, on the legacy stream; then the
    // service appends a keyed event on top of it, and checkpoints that.
    let forged = forge_nte_increase(&t, &job, None, None).await;
    let r = t.note(&job, &t.keys.agent, "on top").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    checkpoint_covering(&t, &cps, &job).await;
    let a = audit(&t, &job).await;
    assert_failed_at(&a, forged, "unkeyed");
    let says = format!("FAILED at sequence {forged} (check unkeyed)");
    assert_says(verify_cli(&t, &job, None, Some(dir.path())), 1, &says);
}

#[tokio::test]
async fn a_restarted_server_loads_the_checkpoints_and_continues_after_them() {
    let (t, _dir, cps, job) = noted_with_checkpoints("site-restart", 1).await;
    checkpoint_covering(&t, &cps, &job).await;
    let before = cps.checkpoint_names().await.unwrap().len();
    // A new process: the index comes from the store, signatures checked.
    let (index, loaded) = dispatch_api::app::checkpoints::load_index(&cps, &t.app.chain)
        .await
        .unwrap();
    assert_eq!((loaded.verified, loaded.rejected.len()), (before, 0));
    let restarted = dispatch_api::app::checkpoints::Checkpoints::new(index);
    let (last, _) = last_row(&t, &job).await;
    assert_eq!(restarted.heads("job", &job)[0].sequence, last);
    // Once settled (the first checkpoint's cursor may trail its heads while
    // other transactions hold the server's xmin back), nothing new is
    // nothing written; then only what changed.
    let mut settled = false;
    for _ in 0..200 {
        if restarted
            .write(&t.app.pool, &cps, &t.app.chain)
            .await
            .unwrap()
            == 0
        {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(settled);
    t.note(&job, &t.keys.agent, "after restart").await;
    let (last, _) = last_row(&t, &job).await;
    for _ in 0..200 {
        restarted
            .write(&t.app.pool, &cps, &t.app.chain)
            .await
            .unwrap();
        if restarted.heads("job", &job)[0].sequence == last {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(restarted.heads("job", &job)[0].sequence, last);
    let names = cps.checkpoint_names().await.unwrap();
    let newest: dispatch_api::store::checkpoint::Checkpoint =
        serde_json::from_slice(&cps.get_checkpoint(names.last().unwrap()).await.unwrap()).unwrap();
    assert_eq!(newest.heads.len(), 1, "only the stream that changed");
    assert!(newest.prev.is_some(), "chained to the loaded checkpoint");
}
