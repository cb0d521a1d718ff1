//! Maintenance plans open their own jobs, each occurrence exactly once
//! (across replicas, restarts and a clock that jumps), and an inspection's
//! deficiency opens a linked follow-up and impairs the door until it is
//! repaired (issue 18). The registry is driven through `App` directly; the
//! jobs through their HTTP commands.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use dispatch_api::app::App;
use dispatch_api::clock::Clock;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

use crate::support::*;

async fn registered(app: &App, id: Option<&str>, name: &str, body: Value) {
    let (status, body) = registry_on(app, id, name, body).await;
    assert!(status < 300, "{name}: {status} {body}");
}

const FIRE: &str = "door-fire-1";
const AUTO: &str = "door-auto-1";

/// A customer, a site in New York, a swinging fire door inspected yearly
/// (due 2027-01-15, 30 days' lead) and an automatic sliding door serviced
/// every 3 months (due 2027-01-01, 14 days' lead).
async fn installed_base(app: &App) {
    registered(app, None, "register_customer", json!({"customer_id": "mercy", "name": "Mercy Hospital", "billing": "direct", "contacts": [{"name": "Accounts", "email": "ap@mercy.example"}]})).await;
    registered(app, None, "register_site", json!({"site_id": "mercy-main", "customer_id": "mercy", "name": "Mercy Main Campus", "address": "1 Hospital Way, New York, NY", "time_zone": "America/New_York", "contacts": [{"name": "Facilities desk", "phone": "+1-555-0199"}]})).await;
    registered(app, None, "register_door", json!({"door_id": FIRE, "site_id": "mercy-main", "kind": "swinging_fire", "location": "Stair B, level 2", "fire_rating": "90 min"})).await;
    registered(app, None, "register_door", json!({"door_id": AUTO, "site_id": "mercy-main", "kind": "automatic_sliding", "location": "ER entrance"})).await;
    registered(app, None, "create_plan", json!({"plan_id": "plan-fire", "customer_id": "mercy", "name": "Annual NFPA 80 inspection", "door_ids": [FIRE], "incident_type": "fire_door_inspection", "every_months": 12, "starts_on": "2027-01-15", "lead_days": 30, "priority": "P3"})).await;
    registered(app, None, "create_plan", json!({"plan_id": "plan-auto", "customer_id": "mercy", "name": "Quarterly automatic door maintenance", "door_ids": [AUTO], "incident_type": "preventive_maintenance", "every_months": 3, "starts_on": "2027-01-01", "lead_days": 14, "priority": "P4"})).await;
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// The plan jobs as stored: (plan, door, due_on) → how many `JobOpened`.
async fn plan_jobs(t: &TestApp) -> BTreeMap<(String, String, String), i64> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT payload->'planned'->>'plan_id', payload->>'door_id', \
                payload->'planned'->>'due_on', count(*) \
         FROM events WHERE aggregate_type = 'job' AND event_type = 'JobOpened' \
           AND payload->'planned' IS NOT NULL GROUP BY 1, 2, 3",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(p, d, due, n)| ((p, d, due), n))
        .collect()
}

fn key(plan: &str, door: &str, due: &str) -> (String, String, String) {
    (plan.into(), door.into(), due.into())
}

/// Every occurrence opening by 2027-11-20, with the day its job opens.
fn year_expected() -> Vec<((String, String, String), NaiveDate)> {
    vec![
        (key("plan-fire", FIRE, "2027-01-15"), day("2026-12-16")),
        (key("plan-auto", AUTO, "2027-01-01"), day("2026-12-18")),
        (key("plan-auto", AUTO, "2027-04-01"), day("2027-03-18")),
        (key("plan-auto", AUTO, "2027-07-01"), day("2027-06-17")),
        (key("plan-auto", AUTO, "2027-10-01"), day("2027-09-17")),
    ]
}

/// One scheduler tick.
async fn tick(app: &App) -> usize {
    dispatch_api::app::registry::schedule::tick(app)
        .await
        .unwrap()
}

/// Another replica of `t`'s app: its own pool, cache and writer, the same
/// database and clock.
async fn replica(t: &TestApp) -> App {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&t.db_url)
        .await
        .unwrap();
    App {
        pool: pool.clone(),
        jobs: dispatch_api::app::cache::JobCache::default(),
        keys: dispatch_api::app::KnownKeys::new(dispatch_api::app::cache::DEFAULT_CAPACITY),
        writer: dispatch_api::store::Writer::start(
            &pool,
            dispatch_api::store::writer::DEFAULT_WRITERS,
        ),
        invocations: dispatch_api::tools::log::InvocationLog::start(&pool),
        ..t.app.clone()
    }
}

#[tokio::test]
async fn a_year_in_daily_steps_opens_each_occurrence_once_on_its_lead_day() {
    let t = TestApp::spawn().await;
    installed_base(&t.app).await;
    let expected = year_expected();
    let mut seen: BTreeMap<(String, String, String), NaiveDate> = BTreeMap::new();
    for _ in 0..=365 {
        let today = t.clock.now().date_naive();
        tick(&t.app).await;
        for (k, n) in plan_jobs(&t).await {
            assert_eq!(n, 1, "{k:?} opened {n} times");
            seen.entry(k).or_insert(today);
        }
        t.clock.advance(Duration::days(1));
    }
    let want: BTreeMap<_, _> = expected.into_iter().collect();
    assert_eq!(seen, want, "each occurrence opens on its lead day, once");

    // The job: planned work at the door, on the service's own channel, its
    // plan's priority, due at the end of its due day where the door is.
    let job = dispatch_api::domain::registry::plan::Occurrence {
        door_id: FIRE.into(),
        due_on: day("2027-01-15"),
        due: day("2027-01-15"),
        opens_on: day("2026-12-16"),
        skipped: None,
    }
    .job_id("plan-fire");
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(view.status, 200, "{:?}", view.json);
    let v = &view.json;
    assert_eq!(v["channel"], "maintenance_plan");
    assert_eq!(v["priority"], "P3");
    assert_eq!(v["incident_type"], "fire_door_inspection");
    assert_eq!(v["door_id"], FIRE);
    assert_eq!(v["contact"]["phone"], "+1-555-0199");
    let end_of_day = Utc.with_ymd_and_hms(2027, 1, 16, 5, 0, 0).unwrap();
    assert_eq!(v["planned"]["due_at"], json!(end_of_day));
    assert_eq!(v["completion_due_at"], json!(end_of_day));
    assert!(v["description"]
        .as_str()
        .unwrap()
        .contains("Annual NFPA 80 inspection"));
}

#[tokio::test]
async fn racing_replicas_open_each_occurrence_once() {
    let t = TestApp::spawn().await;
    installed_base(&t.app).await;
    let other = replica(&t).await;
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 11, 20, 12, 0, 0).unwrap());
    let (a, b) = tokio::join!(tick(&t.app), tick(&other));
    assert_eq!(a + b, 5, "five occurrences opened between the two replicas");
    let (a, b) = tokio::join!(tick(&t.app), tick(&other));
    assert_eq!(a + b, 0);
    let jobs = plan_jobs(&t).await;
    assert_eq!(jobs.len(), 5);
    assert!(jobs.values().all(|n| *n == 1), "{jobs:?}");
}

#[tokio::test]
async fn a_clock_that_jumps_forward_then_back_opens_each_once() {
    let t = TestApp::spawn().await;
    installed_base(&t.app).await;
    let start = t.clock.now();
    // Forward a year at once: every occurrence jumped over opens.
    t.clock.set(start + Duration::days(365));
    assert_eq!(tick(&t.app).await, 5);
    // A restart (a new app on the database) and the clock back: nothing.
    let restarted = replica(&t).await;
    t.clock.set(start);
    assert_eq!(tick(&restarted).await, 0);
    t.clock.set(start + Duration::days(40));
    assert_eq!(tick(&restarted).await, 0);
    t.clock.set(start + Duration::days(365));
    assert_eq!(tick(&t.app).await, 0);
    let jobs = plan_jobs(&t).await;
    let want: BTreeMap<_, _> = year_expected().into_iter().map(|(k, _)| (k, 1)).collect();
    assert_eq!(jobs, want);
    // The next occurrences open in their turn, once.
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 12, 20, 12, 0, 0).unwrap());
    let (a, b) = tokio::join!(tick(&t.app), tick(&restarted));
    assert_eq!(a + b, 2, "the 2028 inspection and the January service");
}

#[tokio::test]
async fn skipped_and_moved_occurrences_are_honoured_and_opened_ones_stay() {
    let t = TestApp::spawn().await;
    installed_base(&t.app).await;
    let (s, b) = registry_on(
        &t.app,
        Some("plan-auto"),
        "skip_occurrence",
        json!({"door_id": AUTO, "due_on": "2027-04-01", "reason": "site closed for renovation"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = registry_on(&t.app, Some("plan-fire"), "move_occurrence", json!({"door_id": FIRE, "due_on": "2027-01-15", "to": "2027-02-20", "reason": "hospital asks for after the audit"})).await;
    assert_eq!(s, 200, "{b}");
    // Not a scheduled date: refused.
    let (s, b) = registry_on(
        &t.app,
        Some("plan-auto"),
        "skip_occurrence",
        json!({"door_id": AUTO, "due_on": "2027-04-02", "reason": "typo"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (422, Some("invalid_occurrence")));

    let mut seen: BTreeMap<(String, String, String), NaiveDate> = BTreeMap::new();
    for _ in 0..=200 {
        let today = t.clock.now().date_naive();
        tick(&t.app).await;
        for (k, n) in plan_jobs(&t).await {
            assert_eq!(n, 1);
            seen.entry(k).or_insert(today);
        }
        t.clock.advance(Duration::days(1));
    }
    let want: BTreeMap<_, _> = [
        // Moved to 2027-02-20: opens 30 days before, still named by its
        // scheduled date.
        (key("plan-fire", FIRE, "2027-01-15"), day("2027-01-21")),
        (key("plan-auto", AUTO, "2027-01-01"), day("2026-12-18")),
        // 2027-04-01 skipped.
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, want);

    // An occurrence whose job is open can be neither skipped nor moved.
    let (s, b) = registry_on(
        &t.app,
        Some("plan-auto"),
        "skip_occurrence",
        json!({"door_id": AUTO, "due_on": "2027-01-01", "reason": "too late"}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("invalid_occurrence")),
        "{b}"
    );
    let (s, b) = registry_on(
        &t.app,
        Some("plan-fire"),
        "move_occurrence",
        json!({"door_id": FIRE, "due_on": "2027-01-15", "to": "2027-03-01", "reason": "again"}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("invalid_occurrence")),
        "{b}"
    );
}

#[tokio::test]
async fn a_retired_plan_opens_nothing_more_and_the_channel_is_the_services_own() {
    let t = TestApp::spawn().await;
    installed_base(&t.app).await;
    registered(
        &t.app,
        Some("plan-auto"),
        "retire_plan",
        json!({"reason": "contract ended"}),
    )
    .await;
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 11, 20, 12, 0, 0).unwrap());
    assert_eq!(tick(&t.app).await, 1, "only the fire door's inspection");
    // No one else may open work on the service's own channel.
    let body = json!({"incident_type": "fire_door_inspection", "channel": "maintenance_plan", "door_id": FIRE, "contact": {"name": "A", "phone": "1"}, "description": "pretending to be a plan"});
    let r = t.post("/v1/jobs", &t.keys.dispatcher, body).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "validation_error"),
        "{:?}",
        r.json
    );
    assert_eq!(r.json["field"], "channel");
}

#[tokio::test]
async fn overdue_planned_work_is_flagged_and_filtered_on_the_board() {
    let t = TestApp::spawn_projected().await;
    installed_base(&t.app).await;
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 20, 12, 0, 0).unwrap());
    assert_eq!(tick(&t.app).await, 2);
    t.project().await;
    let r = t.get("/v1/board?planned=true", &t.keys.dispatcher).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["rows"].as_array().unwrap().len(), 2);
    let r = t.get("/v1/board?overdue=true", &t.keys.dispatcher).await;
    assert_eq!(r.json["rows"].as_array().unwrap().len(), 0);
    // Past the fire door's due day (end of 2027-01-15 in New York) and the
    // automatic door's (2027-01-01): both overdue, and the completion SLA
    // breach is flagged by the timers.
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 1, 16, 6, 0, 0).unwrap());
    let report = dispatch_api::timers::tick(&t.app).await.unwrap();
    assert_eq!(report.breaches, 2, "{report:?}");
    t.project().await;
    let r = t
        .get("/v1/board?planned=true&overdue=true", &t.keys.dispatcher)
        .await;
    let rows = r.json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{:?}", r.json);
    for row in rows {
        assert_eq!(row["overdue"], true);
        assert_eq!(row["flags"]["sla_breached"], json!(["completion"]));
        assert!(row["planned"]["plan_id"].is_string());
    }
    let r = t.get("/v1/board?planned=false", &t.keys.dispatcher).await;
    assert_eq!(r.json["rows"].as_array().unwrap().len(), 0);
    let r = t.get("/v1/board?overdue=maybe", &t.keys.dispatcher).await;
    assert_eq!(r.status, 400, "{:?}", r.json);
}

// ---- The deficiency follow-up flow ----

/// A technician who may do fire doors and automatic doors.
async fn register_inspector(t: &TestApp) {
    let certs = json!([{"name": "fire_door_inspector", "expires_on": "2030-01-01"}, {"name": "AAADM", "expires_on": "2030-01-01"}]);
    let r = t
        .post(
            "/v1/technicians",
            &t.keys.dispatcher,
            json!({"technician_id": "tech-d", "name": "Technician D", "skills": ["fire_doors", "automatic_doors", "overhead_doors"], "certifications": certs, "territory": "north", "shift": "available", "labor_rate_cents": 9000}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
}

/// A valid value for each required intake field of a SOP.
fn intake_fields(sop: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for f in sop["intake"]["required_fields"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let v = match f["type"].as_str().unwrap() {
            "boolean" => json!(name == "opening_can_be_secured"),
            "integer" => json!(f["min"].as_i64().unwrap_or(1).max(1)),
            _ => match f["enum"].as_array() {
                Some(values) => values[0].clone(),
                None => json!("n/a"),
            },
        };
        out.insert(name.to_string(), v);
    }
    json!({ "fields": out })
}

/// Drives `job` from intake to checked out with technician D: every
/// checklist item passed except `failed` (failed), the SOP's evidence
/// attached, then `check_out` with `checkout`.
async fn drive_to_check_out(t: &TestApp, job: &str, failed: Option<&str>, checkout: Value) -> Resp {
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    let incident = view.json["incident_type"].as_str().unwrap().to_string();
    let sop = t
        .get(&format!("/v1/sops/{incident}"), &t.keys.dispatcher)
        .await
        .json;
    let (desk, tech) = (&t.keys.dispatcher, &t.keys.tech_d);
    if view.json["flags"]["possible_duplicate_of"].is_string() {
        let body = json!({"resolution": "not_duplicate"});
        t.expect(job, "resolve_duplicate", desk, body, Want::Status(200))
            .await;
    }
    let eta = (t.clock.now() + Duration::hours(2)).to_rfc3339();
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("record_intake", desk, intake_fields(&sop),                Want::Status(200)),
        ("triage_job",    desk, json!({}),                          Want::State("triaged")),
        ("offer_job",     desk, json!({"technician_id": "tech-d"}), Want::State("offered")),
        ("accept_offer",  tech, json!({"eta": eta}),                Want::State("confirmed")),
        ("start_travel",  tech, json!({}),                          Want::State("en_route")),
        ("check_in",      tech, json!({"method": "app"}),           Want::State("on_site")),
    ];
    t.script(job, steps).await;
    for item in sop["field"]["checklist"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        let result = if Some(id) == failed { "fail" } else { "pass" };
        let body = json!({"item_id": id, "result": result});
        t.expect(
            job,
            "complete_checklist_item",
            tech,
            body,
            Want::Status(200),
        )
        .await;
    }
    for kind in sop["field"]["evidence_required"].as_array().unwrap() {
        let kind = kind.as_str().unwrap();
        let idem = t.idem();
        let content = format!("{kind} of {job}");
        let r = t.upload(tech, Some(&idem), &content, "image/jpeg").await;
        assert_eq!(r.status, 201, "{:?}", r.json);
        let body = json!({"kind": kind, "sha256": r.json["sha256"]});
        t.expect(job, "attach_evidence", tech, body, Want::Status(200))
            .await;
    }
    t.cmd(job, "check_out", tech, checkout).await
}

async fn door_status(t: &TestApp, door: &str) -> String {
    sqlx::query_scalar("SELECT status FROM registry_entries WHERE kind = 'door' AND id = $1")
        .bind(door)
        .fetch_one(&t.app.pool)
        .await
        .unwrap()
}

/// The follow-up ticks: the read models caught up, then the timers.
async fn settle(t: &TestApp) -> usize {
    t.project().await;
    dispatch_api::timers::tick(&t.app).await.unwrap().follow_ups
}

#[tokio::test]
async fn a_deficiency_opens_one_follow_up_and_impairs_the_door_until_repaired() {
    let t = TestApp::spawn_projected().await;
    installed_base(&t.app).await;
    register_inspector(&t).await;
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 16, 14, 0, 0).unwrap());
    assert_eq!(tick(&t.app).await, 1);
    let inspection = dispatch_api::domain::registry::plan::Occurrence {
        door_id: FIRE.into(),
        due_on: day("2027-01-15"),
        due: day("2027-01-15"),
        opens_on: day("2026-12-16"),
        skipped: None,
    }
    .job_id("plan-fire");
    let checkout = json!({"outcome": "completed", "door_left_state": "operational", "resolution": "Inspected; latch fails", "deficiencies": [{"description": "Latch does not engage the strike", "item_id": "latching_hardware_secures_door", "corrective_action": "Replace the latch"}]});
    let r = drive_to_check_out(
        &t,
        &inspection,
        Some("latching_hardware_secures_door"),
        checkout,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    // Two ticks (and a racing replica): one follow-up, the door impaired once.
    let other = replica(&t).await;
    assert_eq!(settle(&t).await, 2, "door impaired, follow-up opened");
    let (a, b) = tokio::join!(
        dispatch_api::app::registry::followups::tick(&t.app),
        dispatch_api::app::registry::followups::tick(&other)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 0);
    assert_eq!(settle(&t).await, 0);
    let follow_up = dispatch_api::read_models::followups::follow_up_id(&inspection, 1);
    let opened: Vec<Value> = sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'JobOpened' AND payload->>'follow_up_of' IS NOT NULL")
        .fetch_all(&t.app.pool)
        .await
        .unwrap();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["job_id"], follow_up.as_str());
    assert_eq!(opened[0]["follow_up_of"], inspection.as_str());
    assert_eq!(opened[0]["incident_type"], "fire_door_deficiency");
    assert_eq!(opened[0]["door_id"], FIRE);
    assert!(opened[0]["description"]
        .as_str()
        .unwrap()
        .contains("Latch does not engage the strike"));
    assert_eq!(door_status(&t, FIRE).await, "impaired");
    let changes = || async {
        t.count("SELECT count(*) FROM events WHERE aggregate_type = 'door' AND event_type = 'DoorStatusChanged'").await
    };
    assert_eq!(changes().await, 1);

    // A rebuild of the read model repeats nothing.
    let rt = t.runtime();
    rt.request_rebuild("door_followups").await.unwrap();
    assert_eq!(settle(&t).await, 0);
    assert_eq!(changes().await, 1);

    // The repair, checked out completed with the door operational: in service.
    let repaired = json!({"outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true, "resolution": "Latch replaced", "parts": [{"part_number": "LATCH-1", "description": "Fire-rated latch", "quantity": 1, "unit_price_cents": 9000}]});
    let r = drive_to_check_out(&t, &follow_up, None, repaired).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(settle(&t).await, 1);
    assert_eq!(door_status(&t, FIRE).await, "in_service");
    assert_eq!(settle(&t).await, 0);
    assert_eq!(changes().await, 2);
    let last: Value = sqlx::query_scalar("SELECT payload FROM events WHERE aggregate_type = 'door' ORDER BY global_position DESC LIMIT 1")
        .fetch_one(&t.app.pool)
        .await
        .unwrap();
    assert_eq!(last["job_id"], follow_up.as_str());
    // Later manual changes are the dispatcher's: the flow does not undo them.
    registered(
        &t.app,
        Some(FIRE),
        "set_door_status",
        json!({"status": "impaired", "reason": "site reports the door drags"}),
    )
    .await;
    assert_eq!(settle(&t).await, 0);
    assert_eq!(door_status(&t, FIRE).await, "impaired");
}

#[tokio::test]
async fn a_door_stays_impaired_while_another_follow_up_is_open() {
    let t = TestApp::spawn_projected().await;
    installed_base(&t.app).await;
    register_inspector(&t).await;
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 18, 14, 0, 0).unwrap());
    assert_eq!(tick(&t.app).await, 2);
    let service = dispatch_api::domain::registry::plan::Occurrence {
        door_id: AUTO.into(),
        due_on: day("2027-01-01"),
        due: day("2027-01-01"),
        opens_on: day("2026-12-18"),
        skipped: None,
    }
    .job_id("plan-auto");
    let found = |d: &str| json!({"outcome": "completed", "door_left_state": "operational", "resolution": "Serviced", "deficiencies": [{"description": d}]});
    let r = drive_to_check_out(&t, &service, None, found("Sensor intermittent")).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(settle(&t).await, 2);
    assert_eq!(door_status(&t, AUTO).await, "impaired");
    let first = dispatch_api::read_models::followups::follow_up_id(&service, 1);
    let view = t
        .get(&format!("/v1/jobs/{first}"), &t.keys.dispatcher)
        .await
        .json;
    assert_eq!(view["incident_type"], "automatic_door_malfunction");

    // A second finding at the same door (another job there, by a caller).
    let body = json!({"incident_type": "door_stuck_open", "channel": "phone", "door_id": AUTO, "contact": {"name": "Desk", "phone": "+1-555-0100"}, "description": "ER door stuck open"});
    let r = t.post("/v1/jobs", &t.keys.dispatcher, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let call = r.json["job_id"].as_str().unwrap().to_string();
    let r = drive_to_check_out(&t, &call, None, found("Header cover cracked")).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        settle(&t).await,
        1,
        "already impaired: only the follow-up opens"
    );
    let second = dispatch_api::read_models::followups::follow_up_id(&call, 1);

    // The first repair leaves the second open: still impaired.
    let fixed = json!({"outcome": "completed", "door_left_state": "operational", "resolution": "Sensor replaced"});
    let r = drive_to_check_out(&t, &first, None, fixed.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(settle(&t).await, 0);
    assert_eq!(door_status(&t, AUTO).await, "impaired");
    // The second repair: back in service.
    let r = drive_to_check_out(&t, &second, None, fixed).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(settle(&t).await, 1);
    assert_eq!(door_status(&t, AUTO).await, "in_service");
    assert_eq!(settle(&t).await, 0);
}
