//! The fault suite's clients: each works whole job lifecycles (the
//! benchmark's command mix, `bench/src/mix.rs`), one request at a
//! time, and retries every unacknowledged command with the **same**
//! idempotency key and body until it is answered — the way the agent's tool
//! bridge must. Every attempt goes into a ledger that the checks read.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::clients::Identity;
use super::mix::{MixSpec, Who};

/// One attempt of a command.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When the request was sent.
    pub sent: Instant,
    /// When its answer (or the failure) came back.
    pub done: Instant,
    /// Which service (index into the bases).
    pub base: usize,
    /// The HTTP status, if an answer came back.
    pub status: Option<u16>,
    /// The problem's `code`, if any.
    pub code: Option<String>,
    /// Whether a `Retry-After` header came with it.
    pub retry_after: bool,
    /// Whether the answer was a replay (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// A transport failure (refused, reset, timed out, cut mid-answer).
    pub error: Option<String>,
}

/// What became of a command.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx answer: the events it reports.
    Acked {
        /// The global positions of the events it reports.
        positions: Vec<i64>,
    },
    /// A final refusal the mix did not expect (a failure of the case).
    Refused(String),
    /// Still unanswered when the client gave up (a failure of the case).
    GaveUp(String),
}

/// One command of the mix and all its attempts.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its idempotency key (unique in the run).
    pub key: String,
    /// Wire name.
    pub command: &'static str,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Every command of a run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// In no particular order.
    pub commands: Vec<Sent>,
}

impl Ledger {
    /// Acknowledged commands.
    pub fn acked(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Acked { .. }))
            .count()
    }

    /// Commands sent more than once.
    pub fn retried(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| c.attempts.len() > 1)
            .count()
    }

    /// Requests sent in all.
    pub fn requests(&self) -> usize {
        self.commands.iter().map(|c| c.attempts.len()).sum()
    }

    /// Acknowledged commands whose answer was a replay of a stored answer
    /// (their first attempt committed but its answer was lost).
    pub fn replayed(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| c.attempts.last().is_some_and(|a| a.replayed))
            .count()
    }

    /// Commands that did not end acknowledged, described.
    pub fn failures(&self) -> Vec<String> {
        self.commands
            .iter()
            .filter_map(|c| match &c.outcome {
                Outcome::Acked { .. } => None,
                Outcome::Refused(why) => Some(format!("{} ({}): refused: {why}", c.command, c.key)),
                Outcome::GaveUp(why) => Some(format!("{} ({}): gave up: {why}", c.command, c.key)),
            })
            .collect()
    }

    /// Every attempt.
    pub fn attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.commands.iter().flat_map(|c| c.attempts.iter())
    }
}

/// How the clients run.
#[derive(Clone)]
pub struct Load {
    /// Makes this run's keys and sites unique.
    pub tag: String,
    /// The services to spread requests over (round robin per request).
    pub bases: Vec<String>,
    /// Stop once this many commands are acknowledged (across clients).
    pub target: usize,
    /// Stop starting commands after this long whatever the count.
    pub max_duration: Duration,
    /// Client-side timeout of one request.
    pub request_timeout: Duration,
    /// How long one command is retried before the client gives up on it.
    pub give_up_after: Duration,
    /// Set to stop the clients early (they finish the command in hand).
    pub stop: Arc<AtomicBool>,
    /// Acknowledged so far (shared with whoever watches the run).
    pub acked: Arc<AtomicUsize>,
}

impl Load {
    /// A load over `bases` until `target` commands are acknowledged.
    pub fn new(tag: &str, bases: Vec<String>, target: usize) -> Load {
        Load {
            tag: tag.to_string(),
            bases,
            target,
            max_duration: Duration::from_secs(600),
            request_timeout: Duration::from_secs(40),
            give_up_after: Duration::from_secs(90),
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::new(AtomicUsize::new(0)),
        }
    }
}

fn classify(status: u16, body: &[u8]) -> Option<String> {
    if (200..300).contains(&status) {
        return None;
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string))
}

/// Whether an answer means "not done, send the same request again".
fn retryable(status: u16, code: Option<&str>) -> bool {
    status == 503
        || status == 502
        || status == 504
        || (status == 409 && code == Some("version_conflict"))
}

/// Runs `ids.len()` clients; returns the ledger once every client stopped.
pub async fn run(load: Load, ids: Vec<Identity>, mix: MixSpec) -> Ledger {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let mix = Arc::new(mix);
    let load = Arc::new(load);
    let mut tasks = Vec::new();
    for id in ids {
        let (ledger, mix, load) = (ledger.clone(), mix.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(2)
                .timeout(load.request_timeout)
                .build()
                .expect("an HTTP client");
            let mut turn = id.index;
            let mut job_n = 0usize;
            'jobs: loop {
                let site = format!("{}-c{}-j{job_n}", load.tag, id.index);
                let invoice = format!("INV-{}-{}-{job_n}", load.tag, id.index);
                let steps = mix.lifecycle(&site, &id.tech_id, &id.evidence, &invoice);
                let mut job_id = String::new();
                for (i, step) in steps.iter().enumerate() {
                    if load.stop.load(Ordering::Relaxed)
                        || load.acked.load(Ordering::Relaxed) >= load.target
                        || started.elapsed() > load.max_duration
                    {
                        break 'jobs;
                    }
                    let path = if step.command == "open_job" {
                        "/v1/jobs".to_string()
                    } else {
                        format!("/v1/jobs/{job_id}/commands/{}", step.command)
                    };
                    let bearer = match step.who {
                        Who::Agent => &id.agent,
                        Who::Tech => &id.tech,
                        Who::Desk => &id.desk,
                    };
                    let key = format!("{}-{}-{job_n}-{i}", load.tag, id.index);
                    let body = serde_json::to_vec(&step.body).expect("JSON");
                    let mut sent = Sent {
                        key: key.clone(),
                        command: step.command,
                        attempts: Vec::new(),
                        outcome: Outcome::GaveUp("never sent".into()),
                    };
                    let first = Instant::now();
                    let mut backoff = Duration::from_millis(25);
                    loop {
                        turn += 1;
                        let b = turn % load.bases.len();
                        let t0 = Instant::now();
                        let answer = http
                            .post(format!("{}{path}", load.bases[b]))
                            .bearer_auth(bearer)
                            .header("idempotency-key", &key)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        let mut attempt = Attempt {
                            sent: t0,
                            done: t0,
                            base: b,
                            status: None,
                            code: None,
                            retry_after: false,
                            replayed: false,
                            error: None,
                        };
                        let mut wait_hint = None;
                        match answer {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                attempt.retry_after = r.headers().contains_key("retry-after");
                                wait_hint = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse::<u64>().ok());
                                attempt.replayed = r
                                    .headers()
                                    .get("idempotent-replayed")
                                    .is_some_and(|v| v == "true");
                                match r.bytes().await {
                                    Ok(bytes) => {
                                        attempt.status = Some(status);
                                        attempt.code = classify(status, &bytes);
                                        if (200..300).contains(&status) {
                                            let v: Value =
                                                serde_json::from_slice(&bytes).unwrap_or_default();
                                            let positions = v["events"]
                                                .as_array()
                                                .into_iter()
                                                .flatten()
                                                .filter_map(|e| e["global_position"].as_i64())
                                                .collect();
                                            if let Some(j) = v["job_id"].as_str() {
                                                job_id = j.to_string();
                                            }
                                            sent.outcome = Outcome::Acked { positions };
                                        } else if !retryable(status, attempt.code.as_deref()) {
                                            sent.outcome = Outcome::Refused(format!(
                                                "{status} {}",
                                                String::from_utf8_lossy(&bytes)
                                                    .chars()
                                                    .take(300)
                                                    .collect::<String>()
                                            ));
                                        }
                                    }
                                    Err(e) => attempt.error = Some(format!("answer cut: {e}")),
                                }
                            }
                            Err(e) => attempt.error = Some(format!("{e}")),
                        }
                        attempt.done = Instant::now();
                        sent.attempts.push(attempt);
                        match sent.outcome {
                            Outcome::Acked { .. } => {
                                load.acked.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Outcome::Refused(_) => break,
                            Outcome::GaveUp(_) => {}
                        }
                        if first.elapsed() > load.give_up_after {
                            let last = sent.attempts.last().expect("one attempt");
                            sent.outcome = Outcome::GaveUp(
                                last.error
                                    .clone()
                                    .or(last.code.clone())
                                    .unwrap_or_else(|| format!("{:?}", last.status)),
                            );
                            break;
                        }
                        let hint = wait_hint
                            .map(|s| Duration::from_secs(s).min(Duration::from_millis(500)))
                            .unwrap_or(backoff);
                        tokio::time::sleep(hint).await;
                        backoff = (backoff * 2).min(Duration::from_millis(400));
                    }
                    let acked = matches!(sent.outcome, Outcome::Acked { .. });
                    ledger.lock().expect("ledger").commands.push(sent);
                    if !acked {
                        job_n += 1;
                        continue 'jobs;
                    }
                }
                job_n += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(ledger)
        .map(|m| m.into_inner().expect("ledger"))
        .unwrap_or_else(|arc| Ledger {
            commands: arc.lock().expect("ledger").commands.clone(),
        })
}
