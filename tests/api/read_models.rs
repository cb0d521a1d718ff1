//! Read models: no event skipped or applied twice under slow concurrent
//! writers, convergence after a killed projector, rebuilds that serve from the
//! old version until the swap, read-your-writes, and the system timers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Minutes;
use dispatch_api::domain::job::{JobEvent, Site};
use dispatch_api::read_models::runtime::Runtime;
use dispatch_api::read_models::{
    board::Board, Definition, EventRow, Projection, ProjectionContext,
};
use dispatch_api::store::{self, EventMeta, NewEvent};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::*;

/// `rt` with its read models registered.
async fn registered(rt: Runtime) -> Runtime {
    rt.register().await.unwrap();
    rt
}

/// A runtime for `projections` alone on `t`'s database.
fn only(t: &TestApp, projections: Vec<Arc<dyn Projection>>) -> Runtime {
    Runtime::with_projections(
        t.app.pool.clone(),
        ProjectionContext {
            sops: t.app.sops.clone(),
        },
        projections,
    )
}

/// One timer tick of `app`.
async fn tick(app: &dispatch_api::app::App) -> dispatch_api::timers::TickReport {
    dispatch_api::timers::tick(app).await.unwrap()
}

/// `path` read at global position `pos` or later (`min_position`).
fn at_position(path: &str, pos: i64) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}min_position={pos}")
}

/// The global position of the first event `r`, a command's answer, wrote.
fn first_position(r: &Resp) -> i64 {
    r.json["events"][0]["global_position"].as_i64().unwrap()
}

/// `GET path` as `key`, read at least as far as the first event of `r`.
async fn get_after(t: &TestApp, r: &Resp, path: &str, key: &str) -> Resp {
    t.get(&at_position(path, first_position(r)), key).await
}

fn new_event(event: &JobEvent) -> NewEvent {
    let v = serde_json::to_value(event).unwrap();
    let (event_type, payload) = v
        .as_object()
        .unwrap()
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let meta = EventMeta {
        command: Some("test".into()),
        ..EventMeta::new(
            t0(),
            dispatch_api::domain::Actor::new(dispatch_api::domain::Role::Dispatcher, "writer"),
        )
    };
    NewEvent {
        event_type,
        event_version: "1.0".into(),
        payload,
        meta,
    }
}

fn opened(job_id: &str) -> JobEvent {
    let body = open_body(&format!("site-{job_id}"));
    JobEvent::JobOpened {
        job_id: job_id.to_string(),
        incident_type: "door_stuck_open".into(),
        channel: dispatch_api::domain::job::Channel::Phone,
        client_id: "c".into(),
        site: serde_json::from_value::<Site>(body["site"].clone()).unwrap(),
        contact: serde_json::from_value(body["contact"].clone()).unwrap(),
        door: serde_json::from_value(body["door"].clone()).unwrap(),
        description: "d".into(),
        ifm: None,
        opened_at: t0(),
        possible_duplicate_of: None,
        recall_of: None,
        preferred_technician_id: None,
        nte_cents: None,
        door_id: None,
        planned: None,
        follow_up_of: None,
    }
}

/// Appends `events` to a job stream in one transaction held open for `hold`.
async fn slow_append(pool: &PgPool, job: &str, events: Vec<JobEvent>, hold: Duration) {
    loop {
        let mut tx = pool.begin().await.unwrap();
        let (_, head) = store::load_stream::<JobEvent>(&mut tx, "job", job)
            .await
            .unwrap();
        let news = events.iter().map(new_event).collect();
        if store::append(
            &mut tx,
            &crate::support::chain_keys(),
            "job",
            job,
            &head,
            news,
        )
        .await
        .is_err()
        {
            continue;
        }
        tokio::time::sleep(hold).await;
        tx.commit().await.unwrap();
        return;
    }
}

async fn table_rows(pool: &PgPool, name: &str, key: &str) -> Vec<Value> {
    let table: String =
        sqlx::query_scalar("SELECT active_table FROM projection_registry WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await
            .unwrap();
    sqlx::query_scalar::<_, Value>(&format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {key}"))
        .fetch_all(pool)
        .await
        .unwrap()
}

const MODELS: [(&str, &str); 7] = [
    ("board", "job_id"),
    ("billing_readiness", "job_id"),
    ("technicians", "technician_id"),
    ("technician_schedule", "technician_id, job_id, visit"),
    ("approvals", "approval_id"),
    ("door_followups", "key"),
    ("door_history", "global_position"),
];

async fn snapshot(pool: &PgPool) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for (name, key) in MODELS {
        out.push(table_rows(pool, name, key).await);
    }
    out
}

/// Every serving table applied every event exactly once, and equals a fresh rebuild.
async fn assert_exactly_once_and_equal_to_rebuild(t: &TestApp, rt: &Runtime) {
    rt.catch_up().await.unwrap();
    let total = t.count("SELECT count(*) FROM events").await;
    let applied: Vec<(String, i64)> = sqlx::query_as("SELECT r.name, c.events_applied FROM projection_registry r JOIN projection_checkpoints c ON c.table_name = r.active_table")
        .fetch_all(&t.app.pool)
        .await
        .unwrap();
    assert_eq!(applied.len(), MODELS.len());
    for (name, n) in &applied {
        assert_eq!(*n, total, "{name} applied {n} of {total} events");
    }
    let per_job: Vec<(String, i64)> = sqlx::query_as("SELECT aggregate_id, count(*) FROM events WHERE aggregate_type = 'job' GROUP BY aggregate_id").fetch_all(&t.app.pool).await.unwrap();
    let board = table_rows(&t.app.pool, "board", "job_id").await;
    assert_eq!(board.len(), per_job.len());
    for (job, count) in per_job {
        let row = board.iter().find(|r| r["job_id"] == json!(job)).unwrap();
        assert_eq!(row["version"], json!(count), "board version of {job}");
    }
    let before = snapshot(&t.app.pool).await;
    for (name, _) in MODELS {
        rt.request_rebuild(name).await.unwrap();
    }
    rt.catch_up().await.unwrap();
    let after = snapshot(&t.app.pool).await;
    assert_eq!(before, after, "read models equal a rebuild from scratch");
}

#[tokio::test]
async fn slow_concurrent_writers_skip_nothing_and_double_nothing() {
    let t = TestApp::spawn().await;
    let rt = registered(t.runtime().batch_size(7)).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let projector = tokio::spawn(rt.clone().run(stopped));
    let mut writers = Vec::new();
    for w in 0..8 {
        let pool = t.app.pool.clone();
        writers.push(tokio::spawn(async move {
            for j in 0..3 {
                let job = format!("job-{w}-{j}");
                slow_append(&pool, &job, vec![opened(&job)], Duration::from_millis(0)).await;
                for n in 0..6 {
                    // Some transactions stay open long after later ones commit.
                    let hold = Duration::from_millis(rand::thread_rng().gen_range(0..250));
                    let notes = (0..=n % 3)
                        .map(|k| JobEvent::NoteAdded {
                            text: format!("w{w} j{j} n{n} k{k}"),
                        })
                        .collect();
                    slow_append(&pool, &job, notes, hold).await;
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(true);
    projector.await.unwrap();
    assert_exactly_once_and_equal_to_rebuild(&t, &rt).await;
}

#[tokio::test]
async fn a_projector_killed_mid_batch_converges_to_a_rebuild() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let rt = registered(t.runtime().batch_size(3)).await;
    let writer = {
        let pool = t.app.pool.clone();
        tokio::spawn(async move {
            for j in 0..12 {
                let job = format!("kill-{j}");
                slow_append(&pool, &job, vec![opened(&job)], Duration::from_millis(5)).await;
                for n in 0..5 {
                    slow_append(
                        &pool,
                        &job,
                        vec![JobEvent::NoteAdded {
                            text: format!("n{n}"),
                        }],
                        Duration::from_millis(3),
                    )
                    .await;
                }
            }
        })
    };
    // Kill the projector task at random moments: an aborted batch rolls back.
    for _ in 0..12 {
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(rt.clone().run(stopped));
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(5..60))).await;
        task.abort();
        let _ = task.await;
    }
    writer.await.unwrap();
    assert_exactly_once_and_equal_to_rebuild(&t, &rt).await;
}

/// The board at another version: same rows, a new table.
struct BoardV2(Definition);

#[async_trait::async_trait]
impl Projection for BoardV2 {
    fn definition(&self) -> &Definition {
        &self.0
    }
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        table: &str,
        batch: &[EventRow],
        changes: &[dispatch_api::read_models::jobs::JobChange],
        ctx: &ProjectionContext,
    ) -> dispatch_api::read_models::Result<()> {
        Board.apply(conn, table, batch, changes, ctx).await
    }
}

#[tokio::test]
async fn a_version_bump_rebuilds_behind_the_serving_table_then_swaps() {
    let t = TestApp::spawn().await;
    let rt = registered(t.runtime()).await;
    for j in 0..20 {
        t.open_ifm_job(&format!("bump-{j}")).await;
    }
    rt.catch_up().await.unwrap();
    let old_rows = table_rows(&t.app.pool, "board", "job_id").await;
    let (old_table, _) = t.app.read_model("board").await.unwrap();

    let mut def = Board.definition().clone();
    def.version = Board.definition().version + 1;
    let def_version = def.version;
    let v2 = only(&t, vec![Arc::new(BoardV2(def))]).batch_size(4);
    v2.register().await.unwrap();
    // One small step: the shadow is part-built, queries still answer from v1.
    v2.step(1).await.unwrap();
    let (serving, _) = t.app.read_model("board").await.unwrap();
    assert_eq!(serving, old_table);
    let answer = t.get("/v1/board", &t.keys.dispatcher).await;
    assert_eq!(answer.json["rows"].as_array().unwrap().len(), 20);
    let status = t.get("/v1/projections", &t.keys.admin).await.json;
    let models = status["projections"].as_array().unwrap();
    let board_status = with_field(models, "name", "board");
    assert_eq!(board_status.len(), 2);
    assert!(board_status
        .iter()
        .any(|p| p["status"] == "rebuilding" && p["version"] == def_version));

    v2.catch_up().await.unwrap();
    let (serving, _) = t.app.read_model("board").await.unwrap();
    assert_ne!(serving, old_table);
    assert!(serving.starts_with(&format!("rm_board_v{def_version}_")));
    assert_eq!(
        table_rows(&t.app.pool, "board", "job_id").await,
        old_rows,
        "rows equal a rebuild from scratch"
    );
    let answer = t.get("/v1/board", &t.keys.dispatcher).await;
    assert_eq!(answer.json["rows"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn min_position_reads_the_commands_own_effect() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let rt = registered(t.runtime()).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let projector = tokio::spawn(rt.clone().run(stopped));
    let job = t.open_ifm_job("site-mp").await;
    t.cmd(&job, "record_intake", &t.keys.agent, TestApp::intake())
        .await;
    let r = t.cmd(&job, "triage_job", &t.keys.agent, json!({})).await;
    let pos = first_position(&r);
    let board = t.get(&at_position("/v1/board", pos), &t.keys.agent).await;
    assert_eq!(board.status, 200, "{:?}", board.json);
    assert!(board.json["position"].as_i64().unwrap() >= pos);
    let row = board.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["job_id"] == json!(job))
        .unwrap()
        .clone();
    assert_eq!(
        (row["state"].clone(), row["priority"].clone()),
        (json!("triaged"), json!("P1"))
    );
    assert_eq!(row["sla_at_risk"], false);

    let r = t.offer(&job, &t.keys.agent, "tech-d").await;
    let sched = get_after(&t, &r, "/v1/technicians/tech-d/schedule", &t.keys.tech_d).await;
    assert_eq!(sched.json["visits"][0]["job_id"], json!(job));
    let roster = get_after(
        &t,
        &r,
        "/v1/technicians?eligible_for=door_stuck_open",
        &t.keys.agent,
    )
    .await;
    let ids: Vec<&str> = strings(&roster.json["rows"], "technician_id");
    assert_eq!(ids.len(), 3, "A, C and D hold AAADM: {ids:?}");
    assert!(!ids.contains(&"tech-b"));
    let d = roster.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["technician_id"] == "tech-d")
        .unwrap();
    assert_eq!(d["active_load"], 1);
    let r = t
        .cmd(
            &job,
            "request_nte_increase",
            &t.keys.agent,
            json!({"amount_cents": 90000, "reason": "scope"}),
        )
        .await;
    let pending = get_after(&t, &r, "/v1/approvals?status=pending", &t.keys.dispatcher).await;
    assert_eq!(pending.json["rows"][0]["kind"], "nte_increase");
    let readiness = format!("/v1/billing/readiness?job_id={job}");
    let billing = get_after(&t, &r, &readiness, &t.keys.agent).await;
    let blockers = billing.json["rows"][0]["blockers"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        blockers.contains(&json!("work_not_completed"))
            && blockers.contains(&json!("nte_increase_pending")),
        "{blockers:?}"
    );
    assert_eq!(t.get("/v1/approvals", &t.keys.agent).await.status, 403);
    assert_eq!(
        t.get("/v1/technicians/tech-a/schedule", &t.keys.tech_d)
            .await
            .status,
        403
    );

    let _ = stop.send(true);
    projector.await.unwrap();
    // With the projector stopped, a position it never applied is 503 projection_behind.
    let r = t.note(&job, &t.keys.agent, "later").await;
    let pos = first_position(&r);
    let behind = t.get(&at_position("/v1/board", pos), &t.keys.agent).await;
    assert_eq!((behind.status, behind.code()), (503, "projection_behind"));
    assert!(behind.headers.contains_key("retry-after"));
    assert!(behind.json["position"].as_i64().unwrap() < pos);
}

#[tokio::test]
async fn timers_expire_offers_and_flag_breaches_once_across_restarts() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let rt = registered(t.runtime()).await;
    let job = t.open_ifm_job("site-timer").await;
    t.intake_and_triage(&job).await;
    t.offer(&job, &t.keys.agent, "tech-a").await;
    rt.catch_up().await.unwrap();
    let first = tick(&t.app).await;
    assert_eq!(
        (first.expired, first.breaches),
        (0, 0),
        "nothing is due yet"
    );

    t.clock.advance(Minutes::minutes(16));
    rt.catch_up().await.unwrap();
    assert_eq!(tick(&t.app).await.expired, 1);
    // Before the board catches up, and after: never twice.
    assert_eq!(tick(&t.app).await.expired, 0);
    rt.catch_up().await.unwrap();
    assert_eq!(tick(&t.app).await.expired, 0);
    let view = t
        .get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher)
        .await
        .json;
    assert_eq!(view["state"], "triaged");

    // The P1 response SLA (4 h) passes with nobody on site.
    t.clock.advance(Minutes::hours(4));
    rt.catch_up().await.unwrap();
    assert_eq!(tick(&t.app).await.breaches, 1);
    // A restarted service (new pool, new runtime) does not repeat it.
    let pool = PgPool::connect(&t.db_url).await.unwrap();
    let mut restarted = t.app.clone();
    restarted.pool = pool.clone();
    let rt2 = t.runtime_on(pool);
    rt2.register().await.unwrap();
    rt2.catch_up().await.unwrap();
    assert_eq!(tick(&restarted).await.breaches, 0);
    // Completion (24 h) later, once.
    t.clock.advance(Minutes::hours(21));
    rt2.catch_up().await.unwrap();
    assert_eq!(tick(&restarted).await.breaches, 1);
    rt2.catch_up().await.unwrap();
    assert_eq!(tick(&restarted).await.breaches, 0);
    let events = t.events(&job).await;
    let count = |ty: &str| events.iter().filter(|e| e["event_type"] == ty).count();
    assert_eq!((count("OfferExpired"), count("SlaBreached")), (1, 2));
    let system_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["actor"]["kind"] == "system")
        .collect();
    assert_eq!(system_events.len(), 3);
    let board = t.get("/v1/board?sla=breached", &t.keys.dispatcher).await;
    assert_eq!(
        board.json["rows"][0]["flags"]["sla_breached"],
        json!(["response", "completion"])
    );
}

#[tokio::test]
async fn a_held_back_horizon_does_not_end_catch_up_early() {
    // The visibility horizon is cluster-wide: a transaction open anywhere
    // (here: another connection, as a parallel test's writer would be)
    // hides every later event from projectors until it ends.
    let t = TestApp::spawn().await;
    let rt = registered(t.runtime()).await;
    let mut holder = t.app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *holder)
        .await
        .unwrap();
    for j in 0..5 {
        t.open_ifm_job(&format!("held-{j}")).await;
    }
    let mut def = Board.definition().clone();
    def.version = Board.definition().version + 1;
    let v2 = only(&t, vec![Arc::new(BoardV2(def))]);
    v2.register().await.unwrap();
    let waiting = tokio::spawn({
        let rt = rt.clone();
        async move { rt.catch_up().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiting.is_finished(),
        "catch_up returned while events were still hidden"
    );
    v2.step(5).await.unwrap();
    holder.commit().await.unwrap();
    waiting.await.unwrap().unwrap();
    v2.catch_up().await.unwrap();
    let board = table_rows(&t.app.pool, "board", "job_id").await;
    assert_eq!(board.len(), 5, "the swapped-in v2 table has every job");
    let v = Board.definition().version + 1;
    let (serving, _) = t.app.read_model("board").await.unwrap();
    assert!(serving.starts_with(&format!("rm_board_v{v}_")), "{serving}");
}

/// State tables made before job states were kept as text hold `jsonb`: the
/// projectors keep advancing them (until the read model's next rebuild
/// replaces them) and their rows equal a rebuild's.
#[tokio::test]
async fn job_state_tables_made_as_jsonb_keep_working() {
    states_as_jsonb(&[
        "board",
        "billing_readiness",
        "technicians",
        "technician_schedule",
        "approvals",
        "door_followups",
        "door_history",
    ])
    .await;
}

/// Models advancing together read the job states from the first one's
/// table and write them back to it alone; the others' snapshots fall behind.
/// A model whose snapshots are stale (or missing) that then advances first
/// in a group folds them forward from the jobs' stored events — into `text`
/// and `jsonb` tables alike — and every model still equals a rebuild.
#[tokio::test]
async fn stale_job_states_are_folded_forward_in_text_and_jsonb_tables() {
    // jsonb first: the board's table, and another.
    states_as_jsonb(&["board", "technicians"]).await;
    // text first, a jsonb table behind it that then leads its group.
    states_as_jsonb(&["billing_readiness"]).await;
}

/// Turns the named models' state tables into `jsonb`, then twice: commands
/// projected by every model together (the board's table first), more
/// commands, the board alone ahead, and the six others advancing together
/// from the billing model's stale snapshots. Checks the snapshots' versions
/// and types, and every model against a rebuild.
async fn states_as_jsonb(models: &[&str]) {
    let t = TestApp::spawn().await;
    let rt = registered(t.runtime()).await;
    let tables: Vec<(String, String)> =
        sqlx::query_as("SELECT name, active_table FROM projection_registry")
            .fetch_all(&t.app.pool)
            .await
            .unwrap();
    let table_of = |name: &str| {
        tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    for (name, table) in &tables {
        if models.contains(&name.as_str()) {
            sqlx::query(&format!(
                "ALTER TABLE {table}_jobs ALTER COLUMN job TYPE jsonb USING job::jsonb"
            ))
            .execute(&t.app.pool)
            .await
            .unwrap();
        }
    }
    let snapshot = |name: &str| {
        let table = table_of(name);
        let pool = t.app.pool.clone();
        async move {
            let row: Option<(String, i64)> = sqlx::query_as(&format!(
                "SELECT pg_typeof(job)::text, (job::jsonb->>'version')::bigint FROM {table}_jobs"
            ))
            .fetch_optional(&pool)
            .await
            .unwrap();
            row
        }
    };
    let kind = |name: &str| match models.contains(&name) {
        true => "jsonb".to_string(),
        false => "text".to_string(),
    };
    let job = t.open_ifm_job("site-jsonb-state").await;
    let board_only = only(&t, vec![Arc::new(Board)]);
    for round in 0..2i64 {
        // Together: the board's table is the first and the only one written.
        t.note(&job, &t.keys.agent, "together").await;
        rt.catch_up().await.unwrap();
        let v = 2 + 3 * round;
        assert_eq!(snapshot("board").await, Some((kind("board"), v)));
        // The billing model's snapshot is behind (or absent): it was last
        // written when it led the six, a round ago.
        let billing = snapshot("billing_readiness").await;
        match round {
            0 => assert_eq!(billing, None),
            _ => assert_eq!(billing, Some((kind("billing_readiness"), v - 1))),
        }
        t.note(&job, &t.keys.agent, "board ahead").await;
        below_the_horizon(&t).await;
        board_only.step(1).await.unwrap();
        t.note(&job, &t.keys.agent, "the six behind").await;
        below_the_horizon(&t).await;
        // The six stand level behind the board: they advance together from
        // the billing model's snapshot, folded forward from the store.
        rt.step_live(5).await.unwrap();
        assert_eq!(
            snapshot("billing_readiness").await,
            Some((kind("billing_readiness"), v + 2))
        );
        assert_eq!(snapshot("board").await, Some((kind("board"), v + 2)));
    }
    assert_exactly_once_and_equal_to_rebuild(&t, &rt).await;
}

/// Read models that stand level advance together (one read and one fold for
/// all); one that is ahead or behind advances alone until it is level again.
/// Either way each applies every event once and equals a rebuild.
#[tokio::test]
async fn models_out_of_step_advance_alone_then_together() {
    let t = TestApp::spawn().await;
    let rt = registered(t.runtime().batch_size(5)).await;
    for j in 0..6 {
        let job = t.open_ifm_job(&format!("step-{j}")).await;
        t.cmd(&job, "record_intake", &t.keys.agent, TestApp::intake())
            .await;
    }
    // The horizon is cluster-wide: another test's open transaction can hold
    // these events above it for a moment; a batch must find them all.
    below_the_horizon(&t).await;
    // The board alone moves ahead by one batch: the five others stand level
    // behind it.
    let board_only = only(&t, vec![Arc::new(Board)]).batch_size(5);
    assert_eq!(board_only.step(1).await.unwrap(), 5);
    let positions = || async {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.name, c.last_pos FROM projection_registry r JOIN projection_checkpoints c ON c.table_name = r.active_table ORDER BY r.name",
        )
        .fetch_all(&t.app.pool)
        .await
        .unwrap();
        rows
    };
    let p = positions().await;
    assert!(
        p.iter()
            .filter(|(n, pos)| n != "board" && *pos == 0)
            .count()
            == MODELS.len() - 1,
        "{p:?}"
    );
    // One pass of one batch: the others advance together (they stay level);
    // the board, ahead of them, advances alone.
    rt.step_live(1).await.unwrap();
    let p = positions().await;
    let others: Vec<i64> = p
        .iter()
        .filter(|(n, _)| n != "board")
        .map(|(_, x)| *x)
        .collect();
    assert!(others.iter().all(|x| *x == others[0] && *x > 0), "{p:?}");
    for j in 6..9 {
        t.open_ifm_job(&format!("step-{j}")).await;
    }
    // Caught up, all six stand level and every event was applied once.
    rt.catch_up().await.unwrap();
    let p = positions().await;
    assert!(p.iter().all(|(_, x)| *x == p[0].1), "{p:?}");
    assert_exactly_once_and_equal_to_rebuild(&t, &rt).await;
}

/// Waits until every event in the store is below the visibility horizon
/// (`pg_snapshot_xmin`), so that a projector's batch can read them all.
async fn below_the_horizon(t: &TestApp) {
    for _ in 0..200 {
        let below: bool = sqlx::query_scalar(
            "SELECT coalesce(max(tx_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM events",
        )
        .fetch_one(&t.app.pool)
        .await
        .unwrap();
        if below {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the store's events stayed above the horizon for 10 s");
}
