//! The events-out case: the service publishes every event to a NATS
//! JetStream server of the suite's own while clients send commands; it is
//! `kill -9`ed mid-delivery, and NATS itself is stopped for a while. After
//! recovery JetStream must hold every event of the store exactly once (its
//! deduplication on `Nats-Msg-Id`, and the publisher resuming after the
//! stream's last message), in order per stream — so no checkpoint ever
//! passed an event JetStream had not acknowledged (such an event would be
//! missing: nothing behind a checkpoint is published again).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use sqlx::PgPool;

use super::cases::{check, ledger_figures, panics, server_errors, start_with_clients, CaseResult};
use super::load::{self, Load};
use super::proc::free_port;
use super::{Figures, Sizes};

/// A nats-server of the suite's own, with JetStream, on a free port; its
/// store survives a stop and start.
pub struct Nats {
    port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The nats-server binary, if the machine has one.
fn nats_binary() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([
            PathBuf::from("/usr/sbin/nats-server"),
            PathBuf::from("/usr/bin/nats-server"),
        ])
        .find(|p| p.is_file())
}

impl Nats {
    /// Starts one under `dir`; `None` when the machine has no nats-server.
    pub async fn start(dir: &Path) -> Option<Result<Nats, String>> {
        nats_binary()?;
        let port = match free_port() {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let mut n = Nats {
            port,
            store: dir.join("nats-store"),
            log: dir.join("nats.log"),
            child: None,
        };
        Some(n.run().await.map(|()| n))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it accepts connections.
    pub async fn run(&mut self) -> Result<(), String> {
        let binary = nats_binary().ok_or("no nats-server")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("starting nats-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("nats-server did not listen within 20 s".into())
    }

    /// Stops the process at once (`kill -9`: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every message of `stream` on `url`: (Nats-Msg-Id, aggregate/stream key, stream sequence).
async fn stream_messages(url: &str, stream: &str) -> Result<Vec<(String, String, i64)>, String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let mut s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let last = s
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let mut out = Vec::with_capacity(last as usize);
    for n in 1..=last {
        let m = s
            .get_raw_message(n)
            .await
            .map_err(|e| format!("message {n}: {e}"))?;
        let ce: serde_json::Value =
            serde_json::from_slice(&m.payload).map_err(|e| format!("message {n}: {e}"))?;
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let key = format!(
            "{}/{}",
            ce["type"]
                .as_str()
                .unwrap_or_default()
                .split('.')
                .nth(2)
                .unwrap_or_default(),
            ce["subject"].as_str().unwrap_or_default()
        );
        out.push((id, key, ce["streamsequence"].as_i64().unwrap_or(-1)));
    }
    Ok(out)
}

/// The subscription's lag in events (None: no checkpoint yet).
async fn lag(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos)) \
         FROM subscription_checkpoints c WHERE c.name = 'nats'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

/// Compares the stream with the store: every event once, in order per stream.
async fn compare(pool: &PgPool, url: &str, f: &mut Figures, problems: &mut Vec<String>) {
    let stored: Vec<String> = sqlx::query_scalar("SELECT event_id::text FROM events")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    let messages = match stream_messages(url, "DISPATCH_EVENTS").await {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("reading the stream: {e}"));
            return;
        }
    };
    f.put("events compared with the stream", stored.len());
    f.put("messages in DISPATCH_EVENTS", messages.len());
    let mut seen = HashSet::new();
    let mut twice = 0usize;
    let mut out_of_order = 0usize;
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, key, seq) in &messages {
        if !seen.insert(id.as_str()) {
            twice += 1;
        }
        if let Some(prev) = last.insert(key.as_str(), *seq) {
            if prev >= *seq {
                out_of_order += 1;
            }
        }
    }
    let missing = stored
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .count();
    f.put("events in the stream twice", twice);
    f.put("events missing from the stream", missing);
    f.put("out of order within a stream", out_of_order);
    if twice > 0 {
        problems.push(format!("{twice} events are in the stream twice"));
    }
    if missing > 0 {
        problems.push(format!("{missing} events never reached the stream"));
    }
    if out_of_order > 0 {
        problems.push(format!(
            "{out_of_order} events arrived out of order within their stream"
        ));
    }
    if messages.len() != stored.len() {
        problems.push(format!(
            "the stream holds {} messages for {} events",
            messages.len(),
            stored.len()
        ));
    }
}

/// The case.
pub async fn events_out(url: &str, dir: &Path, sizes: &Sizes) -> CaseResult {
    let mut f = Figures::default();
    let mut problems = Vec::new();
    let mut nats = match Nats::start(dir).await {
        Some(Ok(n)) => n,
        Some(Err(e)) => return (f, vec![e]),
        None if std::env::var("DISPATCH_NATS_TESTS").as_deref() == Ok("required") => {
            return (
                f,
                vec!["no nats-server on this machine (DISPATCH_NATS_TESTS=required)".into()],
            )
        }
        None => {
            f.put("skipped", "no nats-server on this machine");
            return (f, problems);
        }
    };
    let env = [("DISPATCH_NATS_URL", nats.url())];
    let (mut svc, ids, mix) =
        match start_with_clients("events-out", url, dir, &env, sizes.outage_clients).await {
            Ok(started) => started,
            Err(e) => return (f, vec![e]),
        };
    let pool = match PgPool::connect(url).await {
        Ok(p) => p,
        Err(e) => return (f, vec![e.to_string()]),
    };
    let tag = "events-out";
    let spec = Load::new(tag, vec![svc.base.clone()], usize::MAX);
    let stop = spec.stop.clone();
    let acked = spec.acked.clone();
    let run = tokio::spawn(load::run(spec, ids, mix));
    let started = Instant::now();
    let mut max_lag = 0i64;
    let mut watch_lag = |l: Option<i64>| max_lag = max_lag.max(l.unwrap_or(0));

    // Under load: kill -9 mid-delivery, NATS away, kill -9 again.
    tokio::time::sleep(Duration::from_secs(sizes.outage_before)).await;
    watch_lag(lag(&pool).await);
    svc.kill9();
    if let Err(e) = svc.start().await {
        problems.push(format!("restart 1: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.kill();
    let nats_down = Instant::now();
    let away = Duration::from_secs(sizes.outage_secs.max(10));
    while nats_down.elapsed() < away {
        tokio::time::sleep(Duration::from_millis(500)).await;
        watch_lag(lag(&pool).await);
    }
    if let Err(e) = nats.run().await {
        problems.push(format!("NATS did not come back: {e}"));
    }
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    svc.kill9();
    if let Err(e) = svc.start().await {
        problems.push(format!("restart 2: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(sizes.outage_after)).await;
    stop.store(true, Ordering::Relaxed);
    let ledger = match run.await {
        Ok(l) => l,
        Err(e) => return (f, vec![format!("the load's task: {e}")]),
    };
    // Caught up: nothing left behind the checkpoint.
    let mut caught_up = None;
    while back.elapsed() < Duration::from_secs(90) {
        let l = lag(&pool).await;
        watch_lag(l);
        if l == Some(0) {
            caught_up = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.put(
        "seconds under load",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
    f.put("kill -9 of the service", 2);
    f.put("NATS away", format!("{} s", away.as_secs()));
    f.put("largest subscription lag seen", format!("{max_lag} events"));
    match caught_up {
        Some(t) => f.put(
            "caught up after NATS returned",
            format!("{:.1} s", t.as_secs_f64()),
        ),
        None => {
            problems.push("the subscription did not catch up within 90 s of NATS's return".into())
        }
    }
    f.put("acknowledged commands", acked.load(Ordering::Relaxed));
    // A leader that started after a kill and found the stream ahead of its
    // checkpoint (published and acknowledged, the move not yet made).
    let log = std::fs::read_to_string(svc.log_path()).unwrap_or_default();
    f.put(
        "restarts that resumed after the stream's last message",
        log.matches("the sink already holds events past the checkpoint")
            .count(),
    );
    ledger_figures(&mut f, &ledger);
    problems.extend(server_errors(&ledger));
    compare(&pool, &nats.url(), &mut f, &mut problems).await;
    pool.close().await;
    check(&mut f, &mut problems, url, dir, &ledger, tag).await;
    svc.stop().await;
    problems.extend(panics(&[&svc]));
    (f, problems)
}
