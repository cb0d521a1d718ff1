//! The cases of `../shared/spec/quality.md`'s reliability table: crash,
//! database outage, races and replicas, graceful shutdown. Each one runs the
//! real binary on its own database, injects its fault under a load of
//! retrying clients, and then checks exactly-once effects, the hash chains
//! and the read models (`verify::everything`).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dispatch_api::domain::sop::SopLibrary;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::clients::{create_identities, prepare, Identity};
use super::load::{self, Ledger, Load};
use super::mix::{open_body, MixSpec};
use super::proc::{Cluster, Service};
use super::verify;
use super::{Figures, Sizes};

/// What a case reports: its figures, and its problems (none: it passed).
pub type CaseResult = (Figures, Vec<String>);

fn mix() -> Result<MixSpec, String> {
    let sops = SopLibrary::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sops")))
        .map_err(|e| format!("the SOP library: {e}"))?;
    MixSpec::from_library(&sops).map_err(|e| e.to_string())
}

/// Keys for `clients` clients, their technicians registered and their
/// evidence uploaded through `base`.
async fn identities(
    database_url: &str,
    base: &str,
    clients: usize,
    mix: &MixSpec,
) -> Result<Vec<Identity>, String> {
    let pool = PgPool::connect(database_url)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut ids = create_identities(&pool, clients)
        .await
        .map_err(|e| format!("creating keys: {e:#}"))?;
    pool.close().await;
    prepare(base, &mut ids, mix)
        .await
        .map_err(|e| format!("registering technicians: {e:#}"))?;
    Ok(ids)
}

pub(super) fn ledger_figures(f: &mut Figures, ledger: &Ledger) {
    f.put("commands sent", ledger.commands.len());
    f.put("acknowledged", ledger.acked());
    f.put("requests", ledger.requests());
    f.put("retried", ledger.retried());
    f.put("answered by replay", ledger.replayed());
}

pub(super) fn panics(services: &[&Service]) -> Vec<String> {
    services
        .iter()
        .flat_map(|s| s.log_panics())
        .take(5)
        .collect()
}

pub(super) async fn check(
    f: &mut Figures,
    problems: &mut Vec<String>,
    database_url: &str,
    dir: &Path,
    ledger: &Ledger,
    tag: &str,
) {
    let (store, rows, found) = verify::everything(database_url, dir, ledger, tag).await;
    f.put("events in the store", store.events);
    f.put("commands with events", store.commands_with_events);
    f.put("applied twice", store.duplicates);
    f.put("acked but not stored as answered", store.mismatched);
    f.put("chains verified", store.streams_verified);
    f.put("read-model rows equal to rebuild", rows);
    problems.extend(found);
}

pub(super) fn server_errors(ledger: &Ledger) -> Vec<String> {
    ledger
        .attempts()
        .filter(|a| a.status.is_some_and(|s| s >= 500 && s != 503))
        .take(5)
        .map(|a| format!("a {} answer ({:?})", a.status.unwrap_or(0), a.code))
        .collect()
}

/// The common start of a case: the command mix, one service started on
/// `url`, and `clients` clients' keys, technicians and evidence.
pub(super) async fn start_with_clients(
    name: &str,
    url: &str,
    dir: &Path,
    env: &[(&str, String)],
    clients: usize,
) -> Result<(Service, Vec<Identity>, MixSpec), String> {
    let mix = mix()?;
    let mut svc = Service::new(name, url, dir, env)?;
    svc.start().await?;
    let ids = identities(url, &svc.base, clients, &mix).await?;
    Ok((svc, ids, mix))
}

/// `kill -9` at random moments under load; clients retry with the same keys.
pub async fn crash(url: &str, dir: &Path, sizes: &Sizes) -> CaseResult {
    let mut f = Figures::default();
    let mut problems = Vec::new();
    let (mut svc, ids, mix) = match start_with_clients("crash", url, dir, &[], sizes.clients).await
    {
        Ok(started) => started,
        Err(e) => return (f, vec![e]),
    };
    let tag = "crash";
    let spec = Load::new(tag, vec![svc.base.clone()], sizes.crash_commands);
    let acked = spec.acked.clone();
    let started = Instant::now();
    let run = tokio::spawn(load::run(spec, ids, mix));
    let mut kills = 0usize;
    let mut ready_times = Vec::new();
    while !run.is_finished() {
        let pause = rand::thread_rng().gen_range(sizes.kill_every.0..sizes.kill_every.1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if run.is_finished() || acked.load(Ordering::Relaxed) >= sizes.crash_commands {
            break;
        }
        svc.kill9();
        kills += 1;
        let t = Instant::now();
        if let Err(e) = svc.start().await {
            problems.push(format!("restart {kills}: {e}"));
            break;
        }
        ready_times.push(t.elapsed());
    }
    let ledger = match run.await {
        Ok(l) => l,
        Err(e) => return (f, vec![format!("the load's task: {e}")]),
    };
    f.put(
        "seconds under load",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
    f.put("kill -9", kills);
    if let Some(max) = ready_times.iter().max() {
        let mean = ready_times.iter().sum::<Duration>() / ready_times.len() as u32;
        f.put(
            "restart to ready (mean / max)",
            format!("{} / {} ms", mean.as_millis(), max.as_millis()),
        );
    }
    ledger_figures(&mut f, &ledger);
    if kills == 0 {
        problems.push("the load ended before the first kill".into());
    }
    problems.extend(server_errors(&ledger));
    check(&mut f, &mut problems, url, dir, &ledger, tag).await;
    svc.stop().await;
    problems.extend(panics(&[&svc]));
    (f, problems)
}

/// How the database goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The private cluster is stopped (`pg_ctl stop -m fast`) and started again.
    Stop,
    /// The database refuses connections and every session on it is
    /// terminated (`pg_terminate_backend`), repeatedly, then allowed again.
    Terminate,
}

async fn terminate_loop(admin: &PgPool, db: &str, until: Instant) -> Result<(), String> {
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
        .execute(admin)
        .await
        .map_err(|e| e.to_string())?;
    while Instant::now() < until {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(db)
            .execute(admin)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .execute(admin)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The database goes away mid-load for `sizes.outage` and comes back.
pub async fn outage(
    kind: Outage,
    shared: Option<(&str, &str)>,
    dir: &Path,
    sizes: &Sizes,
) -> CaseResult {
    let mut f = Figures::default();
    let mut problems = Vec::new();
    // Stop: a private cluster of our own (stopping the shared server would
    // take every other database with it). Terminate: a database of the shared server.
    let cluster = if kind == Outage::Stop {
        match Cluster::start(&dir.join("cluster")) {
            Ok(c) => Some(c),
            Err(e) => return (f, vec![e]),
        }
    } else {
        None
    };
    let (url, db_name) = match (&cluster, shared) {
        (Some(c), _) => (c.url("dispatch_api"), "dispatch_api".to_string()),
        (None, Some((url, name))) => (url.to_string(), name.to_string()),
        (None, None) => return (f, vec!["no database for the outage".into()]),
    };
    let timeout = sizes.request_timeout_secs;
    let (mut svc, ids, mix) = match start_with_clients(
        &format!("outage-{kind:?}").to_lowercase(),
        &url,
        dir,
        &[("DISPATCH_REQUEST_TIMEOUT_SECS", timeout.to_string())],
        sizes.outage_clients,
    )
    .await
    {
        Ok(started) => started,
        Err(e) => return (f, vec![e]),
    };
    let tag = format!("outage{kind:?}").to_lowercase();
    let mut spec = Load::new(&tag, vec![svc.base.clone()], usize::MAX);
    spec.request_timeout = Duration::from_secs(timeout + 20);
    let stop = spec.stop.clone();
    let run = tokio::spawn(load::run(spec, ids, mix));
    tokio::time::sleep(Duration::from_secs(sizes.outage_before)).await;
    let down = Instant::now();
    let outage_for = Duration::from_secs(sizes.outage_secs);
    let result = match kind {
        Outage::Stop => {
            let c = cluster.as_ref().expect("a cluster");
            let stopped = tokio::task::block_in_place(|| c.stop());
            match stopped {
                Ok(()) => {
                    tokio::time::sleep(outage_for.saturating_sub(down.elapsed())).await;
                    tokio::task::block_in_place(|| c.restart())
                }
                Err(e) => Err(e),
            }
        }
        Outage::Terminate => {
            let admin = match PgPool::connect(&super::server::admin_url()).await {
                Ok(p) => p,
                Err(e) => return (f, vec![format!("admin connection: {e}")]),
            };
            let r = terminate_loop(&admin, &db_name, down + outage_for).await;
            admin.close().await;
            r
        }
    };
    let up = Instant::now();
    if let Err(e) = result {
        problems.push(format!("the outage itself failed: {e}"));
    }
    // The service must find its feet by itself: poll /readyz.
    let http = reqwest::Client::new();
    let mut ready_after = None;
    while up.elapsed() < Duration::from_secs(30) {
        if super::server::is_ready(&http, &svc.base, Duration::from_secs(5)).await {
            ready_after = Some(up.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(sizes.outage_after)).await;
    stop.store(true, Ordering::Relaxed);
    let ledger = match run.await {
        Ok(l) => l,
        Err(e) => return (f, vec![format!("the load's task: {e}")]),
    };
    f.put("outage", format!("{} s", outage_for.as_secs()));
    ledger_figures(&mut f, &ledger);
    let during: Vec<_> = ledger
        .attempts()
        .filter(|a| a.sent >= down && a.sent < up)
        .collect();
    let unavailable = during.iter().filter(|a| a.status == Some(503)).count();
    let without_retry_after = during
        .iter()
        .filter(|a| a.status == Some(503) && !a.retry_after)
        .count();
    let other: Vec<String> = ledger
        .attempts()
        .filter(|a| a.sent >= down && a.sent < up + Duration::from_secs(1))
        .filter(|a| match a.status {
            Some(s) => !(200..300).contains(&s) && s != 503,
            None => false,
        })
        .map(|a| format!("{:?} {:?}", a.status, a.code))
        .collect();
    let slowest = ledger
        .attempts()
        .map(|a| a.done - a.sent)
        .max()
        .unwrap_or_default();
    let recovered = ledger
        .attempts()
        .filter(|a| a.status.is_some_and(|s| (200..300).contains(&s)) && a.done > up)
        .map(|a| a.done - up)
        .min();
    f.put("requests during the outage", during.len());
    f.put("503 during the outage", unavailable);
    f.put(
        "cut off (no answer) during the outage",
        during.iter().filter(|a| a.status.is_none()).count(),
    );
    f.put("other answers around the outage", other.len());
    f.put("slowest request", format!("{} ms", slowest.as_millis()));
    f.put(
        "ready again after the database's return",
        ready_after.map_or("never".to_string(), |d| format!("{} ms", d.as_millis())),
    );
    f.put(
        "first acknowledged command after the return",
        recovered.map_or("never".to_string(), |d| format!("{} ms", d.as_millis())),
    );
    if unavailable == 0 {
        problems.push("no request met the outage (no 503 seen)".into());
    }
    if without_retry_after > 0 {
        problems.push(format!(
            "{without_retry_after} 503 answers without Retry-After"
        ));
    }
    if !other.is_empty() {
        problems.push(format!(
            "answers other than 2xx and 503 around the outage: {:?}",
            &other[..other.len().min(5)]
        ));
    }
    if slowest > Duration::from_secs(timeout) + Duration::from_secs(1) {
        problems.push(format!(
            "a request took {} ms, past the request timeout of {timeout} s",
            slowest.as_millis()
        ));
    }
    match (ready_after, recovered) {
        (Some(r), Some(c)) if r <= Duration::from_secs(5) && c <= Duration::from_secs(5) => {}
        _ => problems.push(format!(
            "not recovered within 5 s of the database's return (ready {ready_after:?}, first command {recovered:?})"
        )),
    }
    problems.extend(server_errors(&ledger));
    check(&mut f, &mut problems, &url, dir, &ledger, &tag).await;
    svc.stop().await;
    problems.extend(panics(&[&svc]));
    (f, problems)
}

async fn job_version(http: &reqwest::Client, base: &str, key: &str, job: &str) -> Option<i64> {
    let r = http
        .get(format!("{base}/v1/jobs/{job}"))
        .bearer_auth(key)
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()?["version"].as_i64()
}

/// 100 conflicting commands on one job, spread over the replicas, per round.
async fn races(
    bases: &[String],
    agent: &str,
    sizes: &Sizes,
    f: &mut Figures,
    problems: &mut Vec<String>,
) {
    let http = reqwest::Client::new();
    let opened = http
        .post(format!("{}/v1/jobs", bases[0]))
        .bearer_auth(agent)
        .header("idempotency-key", "race-open")
        .json(&open_body("race-site"))
        .send()
        .await;
    let job = match opened {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["job_id"].as_str().map(str::to_string)),
        Err(_) => None,
    };
    let Some(job) = job else {
        problems.push("races: could not open the job".into());
        return;
    };
    let Some(v0) = job_version(&http, &bases[0], agent, &job).await else {
        problems.push("races: no version".into());
        return;
    };
    let mut winners_total = 0;
    let mut conflicts_total = 0;
    for round in 0..sizes.race_rounds {
        let Some(v) = job_version(&http, &bases[round % bases.len()], agent, &job).await else {
            problems.push("races: no version".into());
            return;
        };
        let sends = (0..sizes.race_concurrency).map(|i| {
            let http = http.clone();
            let url = format!("{}/v1/jobs/{job}/commands/add_note", bases[i % bases.len()]);
            let agent = agent.to_string();
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(agent)
                    .header("idempotency-key", format!("race-{round}-{i}"))
                    .header("if-match", format!("\"{v}\""))
                    .json(&json!({"text": format!("racer {i} of round {round}")}))
                    .send()
                    .await;
                match r {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let code = r
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|v| v["code"].as_str().map(str::to_string));
                        (Some(s), code)
                    }
                    Err(_) => (None, None),
                }
            }
        });
        let answers = futures::future::join_all(sends).await;
        let winners = answers
            .iter()
            .filter(|(s, _)| s.is_some_and(|s| (200..300).contains(&s)))
            .count();
        let conflicts = answers
            .iter()
            .filter(|(s, c)| *s == Some(409) && c.as_deref() == Some("version_conflict"))
            .count();
        winners_total += winners;
        conflicts_total += conflicts;
        if winners != 1 || winners + conflicts != answers.len() {
            let odd: Vec<_> = answers
                .iter()
                .filter(|(s, c)| {
                    !(s.is_some_and(|s| (200..300).contains(&s))
                        || (*s == Some(409) && c.as_deref() == Some("version_conflict")))
                })
                .take(3)
                .collect();
            problems.push(format!(
                "race round {round} at version {v}: {winners} winners, {conflicts} conflicts of {}; others {odd:?}",
                answers.len()
            ));
        }
    }
    let end = job_version(&http, &bases[0], agent, &job)
        .await
        .unwrap_or(-1);
    if end != v0 + winners_total as i64 {
        problems.push(format!(
            "races: the job went from version {v0} to {end} with {winners_total} winners (a lost or doubled update)"
        ));
    }
    f.put(
        "races",
        format!(
            "{} rounds × {}: {winners_total} won, {conflicts_total} × 409",
            sizes.race_rounds, sizes.race_concurrency
        ),
    );
}

async fn checkpoint(pool: &PgPool, table: &str) -> Option<(i64, Option<String>)> {
    sqlx::query_as("SELECT last_pos, applied_by FROM projection_checkpoints WHERE table_name = $1")
        .bind(table)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

/// Three replicas on one database: races, shared projectors, a replica killed.
pub async fn replicas(url: &str, dir: &Path, sizes: &Sizes) -> CaseResult {
    let mut f = Figures::default();
    let mut problems = Vec::new();
    let mix = match mix() {
        Ok(m) => m,
        Err(e) => return (f, vec![e]),
    };
    let mut services = Vec::new();
    for i in 1..=3 {
        // Three replicas share one PostgreSQL (max_connections 100 here):
        // each is sized as an operator would size it for that, half the
        // default pool, so that the case does not run the server out of
        // connections when anything else is connected.
        let mut s = match Service::new(
            &format!("replica {i}"),
            url,
            &dir.join(format!("r{i}")),
            &[("DISPATCH_DB_POOL_SIZE", "8".to_string())],
        ) {
            Ok(s) => s,
            Err(e) => return (f, vec![e]),
        };
        if let Err(e) = s.start().await {
            return (f, vec![e]);
        }
        services.push(s);
    }
    let bases: Vec<String> = services.iter().map(|s| s.base.clone()).collect();
    let ids = match identities(url, &bases[0], sizes.clients, &mix).await {
        Ok(i) => i,
        Err(e) => return (f, vec![e]),
    };
    races(&bases, &ids[0].agent, sizes, &mut f, &mut problems).await;
    let pool = match PgPool::connect(url).await {
        Ok(p) => p,
        Err(e) => return (f, vec![e.to_string()]),
    };
    let board: Option<String> =
        sqlx::query_scalar("SELECT active_table FROM projection_registry WHERE name = 'board'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
    let Some(board) = board else {
        return (f, vec!["no board read model".into()]);
    };
    let tag = "replicas";
    let spec = Load::new(tag, bases.clone(), sizes.replica_commands);
    let acked = spec.acked.clone();
    let probe_agent = ids[0].agent.clone();
    let run = tokio::spawn(load::run(spec, ids, mix));
    // Who applies the board's batches while all three run.
    let mut appliers = std::collections::BTreeSet::new();
    while acked.load(Ordering::Relaxed) < sizes.replica_commands / 2 && !run.is_finished() {
        if let Some((_, Some(by))) = checkpoint(&pool, &board).await {
            appliers.insert(by);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Kill the replica that applied the board's latest batch.
    let last_by = checkpoint(&pool, &board).await.and_then(|c| c.1);
    let victim = last_by
        .as_deref()
        .and_then(|by| by.rsplit(':').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .and_then(|pid| services.iter().position(|s| s.pid() == Some(pid)));
    let Some(victim) = victim else {
        run.abort();
        return (
            f,
            vec![format!(
                "no replica applied the board's batches (applied_by {last_by:?})"
            )],
        );
    };
    let dead_by = last_by.clone().unwrap_or_default();
    services[victim].kill9();
    let killed = Instant::now();
    // A fresh event through a live replica must reach the board, applied by
    // another replica, within 5 s.
    let live = &bases[(victim + 1) % bases.len()];
    let http = reqwest::Client::new();
    let probe = http
        .post(format!("{live}/v1/jobs"))
        .bearer_auth(&probe_agent)
        .header("idempotency-key", "probe-after-kill")
        .json(&open_body("replica-probe-site"))
        .send()
        .await;
    let probe_pos = match probe {
        Ok(r) => r.json::<Value>().await.ok().and_then(|v| {
            v["events"]
                .as_array()?
                .iter()
                .filter_map(|e| e["global_position"].as_i64())
                .max()
        }),
        Err(_) => None,
    };
    let mut moved = None;
    if let Some(pos) = probe_pos {
        while killed.elapsed() < Duration::from_secs(30) {
            if let Some((p, Some(by))) = checkpoint(&pool, &board).await {
                if p >= pos && by != dead_by {
                    moved = Some((killed.elapsed(), by));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        problems.push("the probe command after the kill was not acknowledged".into());
    }
    // The dead replica comes back and rejoins.
    if let Err(e) = services[victim].start().await {
        problems.push(format!("restarting the killed replica: {e}"));
    }
    let ledger = match run.await {
        Ok(l) => l,
        Err(e) => return (f, vec![format!("the load's task: {e}")]),
    };
    f.put("replicas", 3);
    let per_replica: Vec<usize> = (0..bases.len())
        .map(|b| ledger.attempts().filter(|a| a.base == b).count())
        .collect();
    f.put("requests per replica", format!("{per_replica:?}"));
    f.put(
        "replicas that applied board batches before the kill",
        appliers.len(),
    );
    match &moved {
        Some((d, _)) => f.put(
            "board caught up after its replica's kill -9",
            format!("{} ms", d.as_millis()),
        ),
        None => problems.push("the board did not move to another replica within 30 s".into()),
    }
    if moved
        .as_ref()
        .is_some_and(|(d, _)| *d > Duration::from_secs(5))
    {
        problems.push("the board took more than 5 s to move to another replica".into());
    }
    // Nothing applied twice: each live table's counter equals the events
    // up to its checkpoint.
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT c.table_name, c.events_applied, (SELECT count(*) FROM events e WHERE (e.tx_id, e.global_position) <= (c.last_tx, c.last_pos)) \
         FROM projection_checkpoints c JOIN projection_registry r ON r.active_table = c.table_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    for (table, applied, events) in &counts {
        if applied != events {
            problems.push(format!(
                "{table} applied {applied} events, the store has {events} up to its checkpoint"
            ));
        }
    }
    f.put("read-model tables with exact apply counts", counts.len());
    pool.close().await;
    ledger_figures(&mut f, &ledger);
    problems.extend(server_errors(&ledger));
    check(&mut f, &mut problems, url, dir, &ledger, tag).await;
    for s in services.iter_mut() {
        s.stop().await;
    }
    problems.extend(panics(&services.iter().collect::<Vec<_>>()));
    (f, problems)
}

/// A slow evidence upload over a raw connection: the body goes out in
/// `chunks` pieces `gap` apart. Returns the HTTP status of the answer.
async fn slow_upload(
    base: &str,
    key: &str,
    idem: &str,
    body: Vec<u8>,
    chunks: usize,
    gap: Duration,
) -> Result<u16, String> {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /v1/evidence HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nIdempotency-Key: {idem}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let size = body.len().div_ceil(chunks);
    for piece in body.chunks(size) {
        tokio::time::sleep(gap).await;
        s.write_all(piece)
            .await
            .map_err(|e| format!("sending: {e}"))?;
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "no HTTP answer: {:?}",
                text.chars().take(80).collect::<String>()
            )
        })
}

/// SIGTERM under load, with slow uploads in flight.
pub async fn shutdown(url: &str, dir: &Path, sizes: &Sizes) -> CaseResult {
    let mut f = Figures::default();
    let mut problems = Vec::new();
    let (mut svc, ids, mix) =
        match start_with_clients("shutdown", url, dir, &[], sizes.clients).await {
            Ok(started) => started,
            Err(e) => return (f, vec![e]),
        };
    let tech = ids[0].tech.clone();
    let tag = "shutdown";
    // The load runs until well after the restart (it must still be running
    // when the signal comes).
    let spec = Load::new(tag, vec![svc.base.clone()], usize::MAX);
    let stop = spec.stop.clone();
    let run = tokio::spawn(load::run(spec, ids, mix));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Uploads that are mid-body when SIGTERM arrives.
    let mut uploads = Vec::new();
    for i in 0..4 {
        let body: Vec<u8> = (0..65536u32)
            .map(|b| (b.wrapping_mul(31).wrapping_add(i)) as u8)
            .collect();
        let sha = dispatch_api::store::hash::sha256_hex(&body);
        let (base, tech) = (svc.base.clone(), tech.clone());
        uploads.push((
            sha,
            tokio::spawn(async move {
                slow_upload(
                    &base,
                    &tech,
                    &format!("slow-upload-{i}"),
                    body,
                    16,
                    Duration::from_millis(100),
                )
                .await
            }),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Instant::now();
    if let Err(e) = svc.sigterm() {
        return (f, vec![e]);
    }
    let exit = svc.wait_exit(Duration::from_secs(30)).await;
    let drained = term.elapsed();
    match exit {
        Some(s) if s.success() => {}
        Some(s) => problems.push(format!("the service exited {s} after SIGTERM")),
        None => problems.push("the service did not exit within 30 s of SIGTERM".into()),
    }
    let log = std::fs::read_to_string(svc.log_path()).unwrap_or_default();
    if !log
        .lines()
        .rev()
        .take(20)
        .any(|l| l.contains("\"stopped\""))
    {
        problems.push(
            "the service's log does not end with `stopped` (projectors and timers stopped)".into(),
        );
    }
    let mut upload_ok = 0;
    for (sha, task) in uploads {
        match task.await {
            Ok(Ok(s)) if (200..300).contains(&s) => upload_ok += 1,
            Ok(Ok(s)) => problems.push(format!("an upload in flight at SIGTERM got {s}")),
            Ok(Err(e)) => problems.push(format!("an upload in flight at SIGTERM: {e}")),
            Err(e) => problems.push(e.to_string()),
        }
        let _ = sha;
    }
    // The clients keep retrying; the service comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Err(e) = svc.start().await {
        problems.push(format!("restart: {e}"));
    }
    tokio::time::sleep(Duration::from_millis(sizes.shutdown_after_ms)).await;
    stop.store(true, Ordering::Relaxed);
    let ledger = match run.await {
        Ok(l) => l,
        Err(e) => return (f, vec![format!("the load's task: {e}")]),
    };
    // Every request already being handled when SIGTERM came was answered.
    // A request sent within 20 ms of the signal may meet a keep-alive
    // connection the draining server is closing: it was never read, and the
    // client retries it (the exactly-once check covers it).
    let in_flight: Vec<_> = ledger
        .attempts()
        .filter(|a| a.sent < term && a.done > term)
        .collect();
    let answered = in_flight.iter().filter(|a| a.status.is_some()).count();
    let cut = in_flight
        .iter()
        .filter(|a| a.status.is_none() && a.sent + Duration::from_millis(20) < term)
        .count();
    f.put(
        "commands in flight at SIGTERM (answered)",
        format!("{} ({answered})", in_flight.len()),
    );
    f.put(
        "uploads in flight at SIGTERM (answered 2xx)",
        format!("4 ({upload_ok})"),
    );
    f.put("SIGTERM to exit", format!("{} ms", drained.as_millis()));
    if cut > 0 {
        problems.push(format!("{cut} requests in flight at SIGTERM got no answer"));
    }
    ledger_figures(&mut f, &ledger);
    problems.extend(server_errors(&ledger));
    check(&mut f, &mut problems, url, dir, &ledger, tag).await;
    if let Ok(pool) = PgPool::connect(url).await {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM evidence_objects WHERE size_bytes = 65536")
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
        if stored != 4 {
            problems.push(format!("{stored} of the 4 slow uploads are stored"));
        }
        pool.close().await;
    }
    svc.stop().await;
    problems.extend(panics(&[&svc]));
    (f, problems)
}
