//! Issue 18's fault case: a year of maintenance plans on two replicas of one
//! database, each on its own manual clock, both clocks stepped through the
//! year together. Each step sets both clocks and ticks both (concurrently),
//! while each replica's own background timers run every 50 ms, so that
//! every occurrence is raced for by up to four schedulers. In the middle of
//! the year a replica is `kill -9`ed (more than once in full mode) and
//! restarted at once, its clock set to the time of the kill: until the next
//! step it runs behind the other, and a clock behind must open nothing
//! again. Then: every expected occurrence
//! has its job, opened exactly once (one `JobOpened` per occurrence job id,
//! none for any other id, none missing) with its plan, door and due date;
//! no system command was applied twice; the chains verify and the read
//! models equal a rebuild.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use dispatch_api::app::keys;
use dispatch_api::domain::registry::plan::PlanDetails;
use dispatch_api::domain::Role;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

use super::cases::CaseResult;
use super::proc::{self, Service};
use super::verify;
use super::{Figures, Sizes};

/// Where both clocks start (the plans are created then).
const START: &str = "2026-12-20T12:00:00Z";
/// How far they go.
const YEAR_DAYS: i64 = 365;
/// The background timers' interval on both replicas.
const TIMER_MS: &str = "50";
/// Replicas on the one database.
const REPLICAS: usize = 2;

/// The plans: every door of the sample installed base is on at least one,
/// at 1-, 2-, 3- and 12-month cadences with different lead times.
fn plans() -> Vec<(&'static str, Value)> {
    let plan = |customer: &str,
                name: &str,
                doors: &[&str],
                kind: &str,
                every: u32,
                starts: &str,
                lead: u32,
                priority: &str| {
        json!({
            "customer_id": customer, "name": name, "door_ids": doors, "incident_type": kind,
            "every_months": every, "starts_on": starts, "lead_days": lead, "priority": priority,
        })
    };
    vec![
        (
            "plan-mercy-fire",
            plan(
                "cust-mercy",
                "Annual NFPA 80 fire door inspection",
                &["door-mercy-fd-2b"],
                "fire_door_inspection",
                12,
                "2027-01-15",
                30,
                "P3",
            ),
        ),
        (
            "plan-ngdc-fire",
            plan(
                "cust-northgate",
                "Annual NFPA 80 rolling fire door test",
                &["door-ngdc-rf-1"],
                "fire_door_inspection",
                12,
                "2027-03-01",
                30,
                "P3",
            ),
        ),
        (
            "plan-mercy-auto",
            plan(
                "cust-mercy",
                "Quarterly AAADM preventive maintenance",
                &["door-mercy-ed-entry", "door-mercy-lobby-swing"],
                "preventive_maintenance",
                3,
                "2027-01-10",
                14,
                "P4",
            ),
        ),
        (
            "plan-mercy-monthly",
            plan(
                "cust-mercy",
                "Monthly door walk",
                &[
                    "door-mercy-ed-entry",
                    "door-mercy-lobby-swing",
                    "door-mercy-fd-2b",
                ],
                "preventive_maintenance",
                1,
                "2027-01-20",
                5,
                "P4",
            ),
        ),
        (
            "plan-ngdc-dock",
            plan(
                "cust-northgate",
                "Monthly dock door service",
                &["door-ngdc-dock-04", "door-ngdc-dock-05"],
                "preventive_maintenance",
                1,
                "2027-01-05",
                7,
                "P4",
            ),
        ),
        (
            "plan-ng112",
            plan(
                "cust-northgate",
                "Store doors every two months",
                &["door-ng112-front", "door-ng112-rear"],
                "preventive_maintenance",
                2,
                "2027-02-01",
                10,
                "P4",
            ),
        ),
    ]
}

/// One expected occurrence: its plan, door and scheduled due date.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    plan_id: String,
    door_id: String,
    due_on: NaiveDate,
}

/// A replica as the stepping task sees it: its address, whether it is down
/// (killed, not ready again) and how many times it was killed.
struct Replica {
    base: String,
    down: AtomicBool,
    kills: AtomicU32,
}

/// What the stepping task counted.
#[derive(Debug, Default)]
struct Stepped {
    ticks_answered: usize,
    ticks_cut_by_a_kill: usize,
    skipped_while_down: usize,
    retried_after_503: usize,
    opened_by_explicit_ticks: [i64; 2],
    problems: Vec<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Sets a replica's clock to `at` and ticks: the occurrences opened and
/// the `503`s retried on the way, or why not. A tick waits (at most 5 s)
/// for the board to apply every committed event; when a replica's death
/// leaves the board's batch to the other one and that takes longer, the
/// answer is `503 projection_behind`, which a caller retries (up to 20
/// times, 250 ms apart).
async fn tick(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    at: DateTime<Utc>,
) -> Result<(i64, usize), String> {
    let mut retried = 0;
    loop {
        let r = http
            .post(format!("{base}/v1/admin/clock"))
            .bearer_auth(admin)
            .json(&json!({"set": rfc3339(at), "tick": true}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.map_err(|e| format!("{status}: {e}"))?;
        if status == 503 && retried < 20 {
            retried += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if status != 200 {
            return Err(format!("{status} {body}"));
        }
        return body["timers"]["occurrences_opened"]
            .as_i64()
            .map(|n| (n, retried))
            .ok_or_else(|| format!("no timers.occurrences_opened in {body}"));
    }
}

/// Steps both clocks from `start` by `step` `steps` times, ticking both
/// replicas concurrently at each step.
async fn step_through(
    replicas: Arc<Vec<Replica>>,
    admin: String,
    start: DateTime<Utc>,
    step: chrono::Duration,
    steps: usize,
    at_step: Arc<AtomicUsize>,
    now: Arc<Mutex<DateTime<Utc>>>,
) -> Stepped {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");
    let mut out = Stepped::default();
    for i in 1..=steps {
        let at = start + step * i as i32;
        *now.lock().expect("the clock's lock") = at;
        at_step.store(i, Ordering::SeqCst);
        let sends = replicas.iter().enumerate().map(|(n, r)| {
            let (http, admin) = (&http, &admin);
            async move {
                if r.down.load(Ordering::SeqCst) {
                    return (n, None);
                }
                let kills = r.kills.load(Ordering::SeqCst);
                let answer = tick(http, &r.base, admin, at).await;
                // Killed while the tick was in flight (or just before)?
                let cut = r.kills.load(Ordering::SeqCst) != kills || r.down.load(Ordering::SeqCst);
                (n, Some((answer, cut)))
            }
        });
        for (n, result) in futures::future::join_all(sends).await {
            match result {
                None => out.skipped_while_down += 1,
                Some((Ok((opened, retried)), _)) => {
                    out.ticks_answered += 1;
                    out.retried_after_503 += retried;
                    out.opened_by_explicit_ticks[n] += opened;
                }
                Some((Err(_), true)) => out.ticks_cut_by_a_kill += 1,
                Some((Err(e), false)) => {
                    if out.problems.len() < 10 {
                        out.problems.push(format!(
                            "replica {} at {}: tick failed: {e}",
                            n + 1,
                            rfc3339(at)
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The steps (1-based) on which occurrences' lead days come: the plans are
/// created on `start`'s day, and step `i` moves the clocks to `start + i × step`.
fn opening_steps(start: DateTime<Utc>, step: chrono::Duration, steps: usize) -> Vec<usize> {
    let created = start.date_naive();
    let through = (start + step * steps as i32).date_naive();
    let mut opens = Vec::new();
    for (_, body) in plans() {
        let Ok(details) = serde_json::from_value::<PlanDetails>(body) else {
            continue;
        };
        for door in &details.door_ids {
            opens.extend(
                details
                    .occurrences(door, created, &BTreeMap::new(), through)
                    .iter()
                    .map(|o| o.opens_on),
            );
        }
    }
    (1..=steps)
        .filter(|i| {
            let from = (start + step * (*i as i32 - 1)).date_naive();
            let to = (start + step * *i as i32).date_naive();
            opens.iter().any(|d| *d > from && *d <= to)
        })
        .collect()
}

/// Keys, the installed base (the CLI's import), and the plans (through replica 1).
async fn set_up(url: &str, dir: &Path, base: &str) -> Result<String, String> {
    let pool = PgPool::connect(url)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let admin = keys::create_key(&pool, Role::Admin, "plans-admin", None)
        .await
        .map_err(|e| format!("admin key: {e}"))?;
    let desk = keys::create_key(&pool, Role::Dispatcher, "plans-desk", None)
        .await
        .map_err(|e| format!("dispatcher key: {e}"))?;
    pool.close().await;
    let (code, out, err) = proc::cli(
        url,
        dir,
        &["registry", "import", "docs/registry-sample.csv"],
    )
    .await;
    if code != 0 || !out.contains("13 registered") {
        return Err(format!("registry import exited {code}: {out}\n{err}"));
    }
    let http = reqwest::Client::new();
    for (id, body) in plans() {
        let mut body = body;
        body["plan_id"] = json!(id);
        let r = http
            .post(format!("{base}/v1/maintenance-plans"))
            .bearer_auth(&desk)
            .header("idempotency-key", format!("create-{id}"))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("creating {id}: {e}"))?;
        let status = r.status().as_u16();
        if status != 201 {
            return Err(format!(
                "creating {id}: {status} {}",
                r.text().await.unwrap_or_default()
            ));
        }
    }
    Ok(admin)
}

/// The occurrences whose job opens by `through`, from each plan's stored
/// `PlanCreated` (its details and the day it was created) and the domain's
/// own schedule.
async fn expected(pool: &PgPool, through: NaiveDate) -> Result<Vec<Expected>, String> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, payload::jsonb FROM events WHERE aggregate_type = 'maintenance_plan' AND event_type = 'PlanCreated'",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| format!("reading the plans: {e}"))?;
    if rows.len() != plans().len() {
        return Err(format!(
            "{} plans in the store, {} created",
            rows.len(),
            plans().len()
        ));
    }
    let mut out = Vec::new();
    for (plan_id, payload) in rows {
        let details: PlanDetails = serde_json::from_value(payload["details"].clone())
            .map_err(|e| format!("{plan_id}'s details: {e}"))?;
        let created_on: NaiveDate = serde_json::from_value(payload["created_on"].clone())
            .map_err(|e| format!("{plan_id}'s created_on: {e}"))?;
        for door in &details.door_ids {
            for o in details.occurrences(door, created_on, &BTreeMap::new(), through) {
                out.push(Expected {
                    plan_id: plan_id.clone(),
                    door_id: o.door_id.clone(),
                    due_on: o.due_on,
                });
            }
        }
    }
    Ok(out)
}

/// Idempotency keys whose events came from more than one transaction.
async fn applied_twice(pool: &PgPool, problems: &mut Vec<String>) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT metadata->>'idempotency_key', count(DISTINCT tx_id)::bigint FROM events \
         WHERE metadata->>'idempotency_key' IS NOT NULL GROUP BY 1 HAVING count(DISTINCT tx_id) > 1",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| {
        problems.push(format!("reading the events by key: {e}"));
        Vec::new()
    })
}

/// Exactly once: each expected occurrence's job opened once, with its plan,
/// door and due date; no other job; no system command applied twice.
async fn occurrences_once(
    pool: &PgPool,
    through: NaiveDate,
    by_explicit_ticks: i64,
    f: &mut Figures,
    problems: &mut Vec<String>,
) {
    let expected = match expected(pool, through).await {
        Ok(e) => e,
        Err(e) => return problems.push(e),
    };
    let by_job: HashMap<String, &Expected> = expected
        .iter()
        .map(|e| {
            let o = dispatch_api::domain::registry::Occurrence {
                door_id: e.door_id.clone(),
                due_on: e.due_on,
                due: e.due_on,
                opens_on: e.due_on,
                skipped: None,
            };
            (o.job_id(&e.plan_id), e)
        })
        .collect();
    let rows = sqlx::query(
        "SELECT aggregate_id, count(*) AS n, min(payload::text) AS first FROM events \
         WHERE aggregate_type = 'job' AND event_type = 'JobOpened' GROUP BY aggregate_id",
    )
    .fetch_all(pool)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return problems.push(format!("reading the JobOpened events: {e}")),
    };
    let (mut opened, mut twice, mut unexpected, mut wrong) = (0, 0, 0, 0);
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        let job: String = r.get("aggregate_id");
        let n: i64 = r.get("n");
        let payload: Value = serde_json::from_str(r.get::<&str, _>("first")).unwrap_or(Value::Null);
        let Some(e) = by_job.get(&job) else {
            unexpected += 1;
            if problems.len() < 10 {
                problems.push(format!(
                    "job {job} was opened ({n}×) but is no expected occurrence's: door {}, planned {}",
                    payload["door_id"], payload["planned"]
                ));
            }
            continue;
        };
        seen.insert(job.clone());
        opened += 1;
        if n != 1 {
            twice += 1;
            problems.push(format!(
                "the occurrence {} {} {} was opened {n} times",
                e.plan_id, e.door_id, e.due_on
            ));
        }
        let planned = &payload["planned"];
        if planned["plan_id"] != json!(e.plan_id)
            || planned["due_on"] != json!(e.due_on.to_string())
            || payload["door_id"] != json!(e.door_id)
        {
            wrong += 1;
            if problems.len() < 20 {
                problems.push(format!(
                    "job {job} of {e:?} was opened as {} at {} for {}",
                    planned, payload["door_id"], planned["plan_id"]
                ));
            }
        }
    }
    let missing: Vec<&Expected> = by_job
        .iter()
        .filter(|(job, _)| !seen.contains(*job))
        .map(|(_, e)| *e)
        .collect();
    for e in missing.iter().take(10) {
        problems.push(format!(
            "the occurrence {} {} due {} was never opened",
            e.plan_id, e.door_id, e.due_on
        ));
    }
    // Every command the system actor issued (occurrence opens, SLA
    // breaches) went into the store in one transaction.
    let doubled = applied_twice(pool, problems).await;
    for (key, txs) in doubled.iter().take(10) {
        problems.push(format!("command {key} was applied {txs} times"));
    }
    if expected.len() < 50 {
        problems.push(format!(
            "only {} occurrences in the year: too few to race for",
            expected.len()
        ));
    }
    f.put("occurrences expected", expected.len());
    f.put("occurrence jobs opened", opened);
    f.put("opened twice", twice);
    f.put("missing", missing.len());
    f.put("jobs that are no occurrence's", unexpected);
    f.put("jobs with the wrong plan, door or due date", wrong);
    // A tick counts the jobs it opened (not the replays): the explicit ticks
    // can account for no more jobs than there are, and the background
    // timers opened the rest.
    f.put(
        "opened by the background timers",
        opened as i64 - by_explicit_ticks,
    );
    if by_explicit_ticks > opened as i64 {
        problems.push(format!(
            "the explicit ticks reported {by_explicit_ticks} jobs opened, the store has {opened}"
        ));
    }
    f.put("system commands applied twice", doubled.len());
}

fn replica_env(at: DateTime<Utc>) -> Vec<(&'static str, String)> {
    vec![
        ("DISPATCH_CLOCK", format!("manual:{}", rfc3339(at))),
        ("DISPATCH_TIMER_INTERVAL_MS", TIMER_MS.to_string()),
        ("DISPATCH_DB_POOL_SIZE", "8".to_string()),
    ]
}

/// Ticks both replicas at `at` until neither opens anything more; answers
/// how many they opened.
async fn settle(replicas: &[Replica], admin: &str, at: DateTime<Utc>) -> Result<i64, String> {
    let http = reqwest::Client::new();
    let mut total = 0;
    for _ in 0..20 {
        let mut opened = 0;
        for r in replicas {
            opened += tick(&http, &r.base, admin, at)
                .await
                .map_err(|e| format!("{}: final tick: {e}", r.base))?
                .0;
        }
        total += opened;
        if opened == 0 {
            return Ok(total);
        }
    }
    Err("the final ticks kept opening occurrences".into())
}

/// What the kills did.
#[derive(Debug, Default)]
struct Kills {
    /// Restart to ready, per kill.
    ready_times: Vec<Duration>,
    /// Which replica, on which day of the clocks.
    killed_on: Vec<String>,
    problems: Vec<String>,
}

/// At each of `kill_steps` (sorted), a few milliseconds into the step,
/// `kill -9`s a random replica and restarts it on the clocks' current time.
async fn kill_mid_year(
    services: &mut [Service],
    replicas: &[Replica],
    at_step: &AtomicUsize,
    now: &Mutex<DateTime<Utc>>,
    kill_steps: Vec<usize>,
    run: &tokio::task::JoinHandle<Stepped>,
) -> Kills {
    let mut out = Kills::default();
    for k in kill_steps {
        while at_step.load(Ordering::SeqCst) < k && !run.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if run.is_finished() {
            break;
        }
        let (victim, pause) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(0..services.len()), rng.gen_range(0..30))
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        replicas[victim].down.store(true, Ordering::SeqCst);
        replicas[victim].kills.fetch_add(1, Ordering::SeqCst);
        services[victim].kill9();
        let at = *now.lock().expect("the clock's lock");
        out.killed_on
            .push(format!("replica {} on {}", victim + 1, at.date_naive()));
        // It comes back on the time of the kill (a restarted replica's
        // manual clock starts where its setting says); the steps go on
        // meanwhile, so it is behind the other until the next step sets it.
        services[victim].set_env("DISPATCH_CLOCK", format!("manual:{}", rfc3339(at)));
        let t = Instant::now();
        if let Err(e) = services[victim].start().await {
            out.problems
                .push(format!("restart {}: {e}", out.killed_on.len()));
            break;
        }
        out.ready_times.push(t.elapsed());
        replicas[victim].down.store(false, Ordering::SeqCst);
    }
    out
}

/// The checks after the year: each occurrence once, the chains, the read models.
async fn final_checks(
    url: &str,
    dir: &Path,
    through: NaiveDate,
    by_explicit_ticks: i64,
    f: &mut Figures,
    problems: &mut Vec<String>,
) {
    let pool = match PgPool::connect(url).await {
        Ok(p) => p,
        Err(e) => return problems.push(format!("connecting to check: {e}")),
    };
    occurrences_once(&pool, through, by_explicit_ticks, f, problems).await;
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
    {
        Ok(n) => f.put("events in the store", n),
        Err(e) => problems.push(e.to_string()),
    }
    match verify::chains(url, dir).await {
        Ok(n) => f.put("chains verified", n),
        Err(e) => problems.push(e),
    }
    match verify::read_models_equal_rebuild(&pool).await {
        Ok(n) => f.put("read-model rows equal to rebuild", n),
        Err(e) => problems.push(e),
    }
    pool.close().await;
}

/// The figures of the year's stepping and its kills.
fn stepping_figures(
    f: &mut Figures,
    stepped: &Stepped,
    kills: &Kills,
    sizes: &Sizes,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    started: Instant,
) {
    let steps = (YEAR_DAYS as usize).div_ceil(sizes.plan_step_days as usize);
    f.put("replicas", REPLICAS);
    f.put(
        "year",
        format!("{} to {}", start.date_naive(), end.date_naive()),
    );
    f.put(
        "steps (days each)",
        format!("{steps} ({})", sizes.plan_step_days),
    );
    f.put(
        "background timers",
        format!("every {TIMER_MS} ms on each replica"),
    );
    f.put(
        "seconds stepping",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
    f.put("kill -9", kills.ready_times.len());
    f.put("killed", kills.killed_on.join(", "));
    if let Some(max) = kills.ready_times.iter().max() {
        let mean = kills.ready_times.iter().sum::<Duration>() / kills.ready_times.len() as u32;
        f.put(
            "restart to ready (mean / max)",
            format!("{} / {} ms", mean.as_millis(), max.as_millis()),
        );
    }
    f.put("explicit ticks answered", stepped.ticks_answered);
    f.put("explicit ticks cut by a kill", stepped.ticks_cut_by_a_kill);
    f.put(
        "explicit ticks skipped (replica down)",
        stepped.skipped_while_down,
    );
    f.put(
        "explicit ticks retried after 503 (board catching up)",
        stepped.retried_after_503,
    );
    f.put(
        "opened by explicit ticks (replica 1 / 2)",
        format!(
            "{} / {}",
            stepped.opened_by_explicit_ticks[0], stepped.opened_by_explicit_ticks[1]
        ),
    );
}

/// The case.
pub async fn plans_case(url: &str, dir: &Path, sizes: &Sizes) -> CaseResult {
    let mut f = Figures::default();
    let mut problems = Vec::new();
    let start: DateTime<Utc> = START.parse().expect("START is RFC 3339");
    let mut services = Vec::new();
    for i in 1..=REPLICAS {
        let s = Service::new(
            &format!("replica {i}"),
            url,
            &dir.join(format!("r{i}")),
            &replica_env(start),
        );
        match s {
            Ok(s) => services.push(s),
            Err(e) => return (f, vec![e]),
        }
    }
    for s in services.iter_mut() {
        if let Err(e) = s.start().await {
            return (f, vec![e]);
        }
    }
    let admin = match set_up(url, dir, &services[0].base).await {
        Ok(a) => a,
        Err(e) => return (f, vec![e]),
    };
    let replicas: Arc<Vec<Replica>> = Arc::new(
        services
            .iter()
            .map(|s| Replica {
                base: s.base.clone(),
                down: AtomicBool::new(false),
                kills: AtomicU32::new(0),
            })
            .collect(),
    );
    let step = chrono::Duration::days(i64::from(sizes.plan_step_days));
    let steps = (YEAR_DAYS as usize).div_ceil(sizes.plan_step_days as usize);
    let end = start + step * steps as i32;
    let at_step = Arc::new(AtomicUsize::new(0));
    let now = Arc::new(Mutex::new(start));
    let started = Instant::now();
    let run = tokio::spawn(step_through(
        replicas.clone(),
        admin.clone(),
        start,
        step,
        steps,
        at_step.clone(),
        now.clone(),
    ));
    // The kills: a random replica, a few milliseconds into a step (its
    // tick in flight) on which occurrences open, in the middle half of the
    // year.
    let opening = opening_steps(start, step, steps);
    let middle: Vec<usize> = opening
        .iter()
        .copied()
        .filter(|i| (steps / 4..steps * 3 / 4).contains(i))
        .collect();
    if middle.len() < sizes.plan_kills {
        run.abort();
        return (
            f,
            vec![format!(
                "only {} steps open occurrences mid-year",
                middle.len()
            )],
        );
    }
    let mut kill_steps: Vec<usize> = {
        let mut rng = rand::thread_rng();
        rand::seq::index::sample(&mut rng, middle.len(), sizes.plan_kills)
            .into_iter()
            .map(|i| middle[i])
            .collect()
    };
    kill_steps.sort_unstable();
    let kills = kill_mid_year(&mut services, &replicas, &at_step, &now, kill_steps, &run).await;
    problems.extend(kills.problems.iter().cloned());
    let stepped = match run.await {
        Ok(s) => s,
        Err(e) => return (f, vec![format!("the stepping task: {e}")]),
    };
    let settled = match settle(&replicas, &admin, end).await {
        Ok(n) => n,
        Err(e) => {
            problems.push(e);
            0
        }
    };
    stepping_figures(&mut f, &stepped, &kills, sizes, (start, end), started);
    problems.extend(stepped.problems);
    if kills.ready_times.len() < sizes.plan_kills {
        problems.push(format!(
            "{} kills and restarts of {} planned",
            kills.ready_times.len(),
            sizes.plan_kills
        ));
    }
    // The replicas stop before the checks: their timers would otherwise go
    // on writing (breached SLAs) while the read models are compared.
    for s in services.iter_mut() {
        s.stop().await;
    }
    let explicit = stepped.opened_by_explicit_ticks.iter().sum::<i64>() + settled;
    final_checks(url, dir, end.date_naive(), explicit, &mut f, &mut problems).await;
    problems.extend(services.iter().flat_map(|s| s.log_panics()).take(5));
    (f, problems)
}
