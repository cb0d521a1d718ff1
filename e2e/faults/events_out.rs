//! The events-out case: the service publishes every event to a NATS
//! JetStream server of the suite's own while clients send commands; it is
//! `kill -9`ed mid-delivery, and NATS itself is stopped for a while. After
//! recovery JetStream must hold every event of the store exactly once (its
//! deduplication on `Nats-Msg-Id`, and the publisher resuming after the
//! stream's last message), in order per stream — so no checkpoint ever
//! passed an event JetStream had not acknowledged (such an event would be
//! missing: nothing behind a checkpoint is published again).
//!
//! Beside it, a webhook endpoint (a receiver in the suite, subscribed to
//! every event from the first) answers 500 for a while and then does not
//! answer at all (the service's per-attempt timeout expires) before it
//! recovers: it must end up with every event at least once, each one
//! answered 2xx at least once (the checkpoint never passed an event the
//! receiver had not taken), every request signed, and no dead letter.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use sqlx::PgPool;

use super::cases::{check, ledger_figures, panics, server_errors, start_with_clients, CaseResult};
use super::load::{self, Load};
use super::proc::{cli, free_port};
use super::receiver::{Answer, Receiver};
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

/// A subscription's lag in events (None: no checkpoint yet).
async fn lag(pool: &PgPool, name: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos)) \
         FROM subscription_checkpoints c WHERE c.name = $1",
    )
    .bind(name)
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

/// The endpoint of the case: its receiver and id.
struct Webhook {
    receiver: Receiver,
    id: String,
    admin: String,
}

impl Webhook {
    fn subscription(&self) -> String {
        format!("webhook:{}", self.id)
    }
}

/// An admin key (by the CLI), the receiver, its endpoint registered for
/// every event and replayed from the first.
async fn register_webhook(url: &str, dir: &Path, base: &str) -> Result<Webhook, String> {
    let (code, out, err) = cli(
        url,
        dir,
        &[
            "keys",
            "create",
            "--role",
            "admin",
            "--name",
            "faults-admin",
        ],
    )
    .await;
    if code != 0 {
        return Err(format!("keys create: {err}"));
    }
    let admin = out.trim().to_string();
    let receiver = Receiver::start().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"url": receiver.url, "event_types": ["*"], "include_personal_data": true}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    if status.as_u16() != 201 {
        return Err(format!("registering the endpoint: {status} {body}"));
    }
    receiver.set_secret(body["secret"].as_str().unwrap_or_default());
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let r = http
        .post(format!("{base}/v1/webhooks/{id}/replay"))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "faults-replay-from-1")
        .json(&serde_json::json!({"from_position": 1}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("replaying from 1: {}", r.status()));
    }
    Ok(Webhook {
        receiver,
        id,
        admin,
    })
}

/// The receiver against the store: every event taken (answered 2xx) at
/// least once, every request signed, no dead letter.
async fn compare_webhook(
    pool: &PgPool,
    base: &str,
    hook: &Webhook,
    f: &mut Figures,
    problems: &mut Vec<String>,
) {
    let stored: Vec<String> = sqlx::query_scalar("SELECT event_id::text FROM events")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    let got = hook.receiver.got();
    let taken: HashSet<&str> = got
        .iter()
        .filter(|g| g.answer == Answer::Ok)
        .map(|g| g.id.as_str())
        .collect();
    let unsigned = got.iter().filter(|g| !g.verified).count();
    let refused = got
        .iter()
        .filter(|g| matches!(g.answer, Answer::Status(_)))
        .count();
    let hung = got.iter().filter(|g| g.answer == Answer::Hang).count();
    let never = stored
        .iter()
        .filter(|id| !taken.contains(id.as_str()))
        .count();
    f.put("webhook requests", got.len());
    f.put(
        "webhook requests answered 500 / left to time out",
        format!("{refused} / {hung}"),
    );
    f.put("webhook events taken", taken.len());
    f.put(
        "webhook events delivered again after a 2xx",
        got.iter().filter(|g| g.answer == Answer::Ok).count() - taken.len(),
    );
    if refused == 0 || hung == 0 {
        problems.push(format!(
            "the receiver's failures were not exercised ({refused} refused, {hung} timed out)"
        ));
    }
    if unsigned > 0 {
        problems.push(format!("{unsigned} webhook requests did not verify"));
    }
    if never > 0 {
        problems.push(format!(
            "{never} events were never taken by the webhook receiver"
        ));
    }
    let dead = reqwest::Client::new()
        .get(format!("{base}/v1/webhooks/{}/dead-letters", hook.id))
        .bearer_auth(&hook.admin)
        .send()
        .await;
    match dead {
        Ok(r) => {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let n = body["dead_letters"].as_array().map_or(0, Vec::len);
            f.put("webhook dead letters", n);
            if n > 0 {
                problems.push(format!("{n} dead letters: {body}"));
            }
        }
        Err(e) => problems.push(format!("reading the dead letters: {e}")),
    }
}

/// The service's settings for the case: NATS, local webhook endpoints,
/// one-second attempts and quick retries (the receiver's bad spell lasts
/// seconds, not hours).
fn service_env(nats: &Nats) -> Vec<(&'static str, String)> {
    vec![
        ("DISPATCH_NATS_URL", nats.url()),
        ("DISPATCH_WEBHOOKS_ALLOW_LOCAL", "true".into()),
        ("DISPATCH_WEBHOOKS_TIMEOUT_MS", "1000".into()),
        ("DISPATCH_WEBHOOKS_RETRY_BASE_MS", "200".into()),
        ("DISPATCH_WEBHOOKS_RETRY_MAX_MS", "2000".into()),
    ]
}

/// Waits (up to 90 s) until both subscriptions have nothing left; how long
/// after `since` that took, or the problem.
async fn drained(
    pool: &PgPool,
    names: &[String],
    since: Instant,
    max_lag: &mut i64,
) -> Result<Duration, String> {
    while since.elapsed() < Duration::from_secs(120) {
        let mut left = 0;
        for n in names {
            let l = lag(pool, n).await;
            *max_lag = (*max_lag).max(l.unwrap_or(0));
            left += l.unwrap_or(1);
        }
        if left == 0 {
            return Ok(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "{names:?} did not drain within 120 s of the faults' end"
    ))
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
    let env = service_env(&nats);
    let (mut svc, ids, mix) =
        match start_with_clients("events-out", url, dir, &env, sizes.outage_clients).await {
            Ok(started) => started,
            Err(e) => return (f, vec![e]),
        };
    let hook = match register_webhook(url, dir, &svc.base).await {
        Ok(h) => h,
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

    // Under load: kill -9 mid-delivery; then NATS away and the receiver
    // refusing (500), then silent (timeouts); both back; kill -9 again.
    tokio::time::sleep(Duration::from_secs(sizes.outage_before)).await;
    svc.kill9();
    if let Err(e) = svc.start().await {
        problems.push(format!("restart 1: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.kill();
    hook.receiver.always(Answer::Status(500));
    let away = Duration::from_secs(sizes.outage_secs.max(10));
    let down = Instant::now();
    while down.elapsed() < away {
        if down.elapsed() > away / 2 {
            hook.receiver.always(Answer::Hang);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        max_lag = max_lag.max(lag(&pool, "nats").await.unwrap_or(0));
    }
    if let Err(e) = nats.run().await {
        problems.push(format!("NATS did not come back: {e}"));
    }
    hook.receiver.always(Answer::Ok);
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
    let ended = Instant::now();
    let names = ["nats".to_string(), hook.subscription()];
    let drain = drained(&pool, &names, ended, &mut max_lag).await;
    f.put(
        "seconds under load",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
    f.put("kill -9 of the service", 2);
    f.put(
        "NATS away; receiver 500 then silent",
        format!("{} s", away.as_secs()),
    );
    f.put(
        "largest NATS subscription lag seen",
        format!("{max_lag} events"),
    );
    match drain {
        Ok(t) => f.put(
            "both subscriptions drained after the load ended",
            format!("{:.1} s", t.as_secs_f64()),
        ),
        Err(e) => problems.push(e),
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
    compare_webhook(&pool, &svc.base, &hook, &mut f, &mut problems).await;
    pool.close().await;
    check(&mut f, &mut problems, url, dir, &ledger, tag).await;
    svc.stop().await;
    problems.extend(panics(&[&svc]));
    (f, problems)
}
