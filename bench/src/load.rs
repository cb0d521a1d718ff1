//! The HTTP load driver: N keep-alive clients, each with its own keys, its
//! own technician and its own jobs, sending the command mix to the real
//! service; and the projection-lag watcher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::clients::{client, Identity};
use crate::mix::{MixSpec, Who};
use crate::stats::Samples;

/// A load: how many clients, how long, and whether they are paced.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Distinguishes this run's jobs and idempotency keys from every other run's.
    pub tag: String,
    /// Concurrent clients (each one request at a time).
    pub clients: usize,
    /// Not measured.
    pub warmup: Duration,
    /// Measured.
    pub measure: Duration,
    /// Total commands per second across clients; `None`: as fast as answered.
    pub rate: Option<f64>,
}

/// What a load measured (over the measured window).
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Acknowledged (2xx) commands completed in the window.
    pub ok: usize,
    /// Acknowledged commands, warm-up included (for CPU per command).
    pub all_ok: usize,
    /// Failed requests (any time).
    pub errors: usize,
    /// Latency of the acknowledged commands.
    pub latencies: Samples,
    /// Commands per second.
    pub throughput: f64,
    /// The first few failures.
    pub first_errors: Vec<String>,
}

impl LoadResult {
    /// The clients' results (`tasks`, each one client's) as one, over a
    /// window of `measure`; `who` names the clients in a panic's error.
    pub async fn combine(
        tasks: Vec<tokio::task::JoinHandle<LoadResult>>,
        measure: Duration,
        who: &str,
    ) -> anyhow::Result<LoadResult> {
        let mut total = LoadResult::default();
        for t in tasks {
            let r = t
                .await
                .with_context(|| format!("a {who} client panicked"))?;
            total.ok += r.ok;
            total.all_ok += r.all_ok;
            total.errors += r.errors;
            total.latencies.extend(r.latencies);
            if total.first_errors.len() < 5 {
                total.first_errors.extend(r.first_errors);
            }
        }
        total.throughput = total.ok as f64 / measure.as_secs_f64();
        Ok(total)
    }
}

#[derive(Deserialize)]
struct Ack {
    job_id: Option<String>,
    #[serde(default)]
    events: Vec<AckEvent>,
}

#[derive(Deserialize)]
struct AckEvent {
    global_position: i64,
}

/// Runs the mix from `ids[..spec.clients]` against `base`. Each acknowledged
/// command's last global position and ack time go to `lag` (if given).
pub async fn run(
    base: &str,
    ids: &[Identity],
    mix: &MixSpec,
    spec: &LoadSpec,
    lag: Option<UnboundedSender<(i64, Instant)>>,
) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(ids.len() >= spec.clients, "not enough client identities");
    let start = Instant::now();
    let warm_until = start + spec.warmup;
    let end = warm_until + spec.measure;
    let mix = Arc::new(mix.clone());
    let mut tasks = Vec::new();
    for id in ids.iter().take(spec.clients).cloned() {
        let http = client()?;
        let base = base.to_string();
        let mix = mix.clone();
        let lag = lag.clone();
        let tag = spec.tag.clone();
        let interval = spec
            .rate
            .map(|r| Duration::from_secs_f64(spec.clients as f64 / r.max(0.001)));
        // Paced clients start spread over one interval.
        let offset = interval
            .map(|i| i.mul_f64(id.index as f64 / spec.clients as f64))
            .unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let mut res = LoadResult::default();
            let mut next = start + offset;
            let mut job_n = 0usize;
            'jobs: loop {
                let site = format!("{tag}-c{}-j{job_n}", id.index);
                let invoice = format!("INV-{tag}-{}-{job_n}", id.index);
                let steps = mix.lifecycle(&site, &id.tech_id, &id.evidence, &invoice);
                let mut job_id = String::new();
                for (i, step) in steps.iter().enumerate() {
                    if let Some(iv) = interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += iv;
                    }
                    if Instant::now() >= end {
                        break 'jobs;
                    }
                    let url = if step.command == "open_job" {
                        format!("{base}/v1/jobs")
                    } else {
                        format!("{base}/v1/jobs/{job_id}/commands/{}", step.command)
                    };
                    let key = match step.who {
                        Who::Agent => &id.agent,
                        Who::Tech => &id.tech,
                        Who::Desk => &id.desk,
                    };
                    let body = serde_json::to_vec(&step.body).expect("JSON");
                    let sent = Instant::now();
                    let idempotency_key = format!("{tag}-{}-{job_n}-{i}", id.index);
                    let outcome = post(&http, url, key, idempotency_key, body, step.command).await;
                    let done = Instant::now();
                    match outcome {
                        Ok(bytes) => {
                            let ack: Ack = match serde_json::from_slice(bytes.as_ref()) {
                                Ok(a) => a,
                                Err(e) => {
                                    res.errors += 1;
                                    res.first_errors
                                        .push(format!("{}: unreadable answer: {e}", step.command));
                                    job_n += 1;
                                    continue 'jobs;
                                }
                            };
                            if let Some(j) = ack.job_id {
                                job_id = j;
                            }
                            res.all_ok += 1;
                            if sent >= warm_until && done <= end {
                                res.ok += 1;
                                res.latencies.push(done - sent);
                                if let (Some(tx), Some(pos)) =
                                    (&lag, ack.events.iter().map(|e| e.global_position).max())
                                {
                                    let _ = tx.send((pos, done));
                                }
                            }
                        }
                        Err(e) => {
                            res.errors += 1;
                            if res.first_errors.len() < 3 {
                                res.first_errors.push(e);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            job_n += 1;
                            continue 'jobs;
                        }
                    }
                }
                job_n += 1;
            }
            res
        }));
    }
    LoadResult::combine(tasks, spec.measure, "load").await
}

/// Sends one command; its answer's bytes if it succeeded, else what went
/// wrong (the status and the start of the body, or the transport's error).
async fn post(
    http: &reqwest::Client,
    url: String,
    key: &str,
    idempotency_key: String,
    body: Vec<u8>,
    command: &str,
) -> Result<impl AsRef<[u8]>, String> {
    let answer = http
        .post(url)
        .bearer_auth(key)
        .header("idempotency-key", idempotency_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) => {
            let status = r.status();
            match r.bytes().await {
                Ok(bytes) if status.is_success() => Ok(bytes),
                Ok(bytes) => Err(format!(
                    "{} {}: {}",
                    command,
                    status,
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )),
                Err(e) => Err(format!("{command}: {e}")),
            }
        }
        Err(e) => Err(format!("{command}: {e}")),
    }
}

/// Projection lag as seen by a reader of the board.
#[derive(Debug, Clone, Default)]
pub struct LagResult {
    /// Ack → covered by the board's checkpoint.
    pub lag: Samples,
    /// Acknowledged commands not covered when the watcher gave up.
    pub unresolved: usize,
}

/// Watches the board's checkpoint: a command's events are visible once the
/// checkpoint `(last_tx, last_pos)` covers the command's last event in the
/// projectors' `(tx_id, global_position)` order (the exact test of
/// `App::has_applied`). Ends once the senders are gone and everything is
/// covered, or `give_up` after that.
pub async fn watch_lag(
    pool: PgPool,
    mut rx: UnboundedReceiver<(i64, Instant)>,
    give_up: Duration,
) -> anyhow::Result<LagResult> {
    let mut pending: Vec<(i64, Instant, Option<u64>)> = Vec::new();
    let mut out = LagResult::default();
    let mut closed_at: Option<Instant> = None;
    loop {
        loop {
            match rx.try_recv() {
                Ok((pos, at)) => pending.push((pos, at, None)),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    closed_at.get_or_insert_with(Instant::now);
                    break;
                }
            }
        }
        let need: Vec<i64> = pending
            .iter()
            .filter(|p| p.2.is_none())
            .map(|p| p.0)
            .collect();
        if !need.is_empty() {
            let rows = sqlx::query("SELECT global_position, tx_id::text AS tx FROM events WHERE global_position = ANY($1)")
                .bind(&need)
                .fetch_all(&pool)
                .await?;
            let mut found = std::collections::HashMap::with_capacity(rows.len());
            for r in rows {
                let tx: String = r.try_get("tx")?;
                found.insert(r.try_get::<i64, _>("global_position")?, tx.parse::<u64>()?);
            }
            for p in pending.iter_mut().filter(|p| p.2.is_none()) {
                p.2 = found.get(&p.0).copied();
            }
        }
        if !pending.is_empty() {
            let cp = sqlx::query(
                "SELECT c.last_tx::text AS last_tx, c.last_pos FROM projection_registry r \
                 JOIN projection_checkpoints c ON c.table_name = r.active_table WHERE r.name = 'board'",
            )
            .fetch_optional(&pool)
            .await?;
            if let Some(cp) = cp {
                let last_tx: u64 = cp.try_get::<String, _>("last_tx")?.parse()?;
                let last_pos: i64 = cp.try_get("last_pos")?;
                let now = Instant::now();
                pending.retain(|p| match p.2 {
                    Some(tx) if (tx, p.0) <= (last_tx, last_pos) => {
                        out.lag.push(now.saturating_duration_since(p.1));
                        false
                    }
                    _ => true,
                });
            }
        }
        if let Some(c) = closed_at {
            if pending.is_empty() {
                return Ok(out);
            }
            if c.elapsed() > give_up {
                out.unresolved = pending.len();
                return Ok(out);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The floor of "commit → noticed": a `pg_notify` committed on one
/// connection and received on a listening one, repeated every 20 ms while
/// the load runs (same server, same load).
pub async fn notify_probe(
    pool: PgPool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Samples> {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen("dispatch_bench_probe").await?;
    let mut out = Samples::new();
    while !*stop.borrow() {
        let t = Instant::now();
        sqlx::query("SELECT pg_notify('dispatch_bench_probe', '')")
            .execute(&pool)
            .await?;
        if tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .is_ok()
        {
            out.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}
