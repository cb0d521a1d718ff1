//! One endpoint's sink: a batch in the store's order, one stream at a time
//! per stream and several streams at once, each attempt logged, the
//! acknowledged prefix handed back to the runner.
//!
//! - An event the endpoint did not ask for is acknowledged without sending.
//! - A stream's events go one after the other: an event that fails holds
//!   back the events after it *in its stream* until it is delivered or
//!   dead-lettered; other streams of the batch go on. The checkpoint moves
//!   only past the prefix in which every event is done, so an event
//!   delivered beyond a waiting one is remembered ([`Memory::sent`]) and not
//!   sent again when the batch is offered again.
//! - A failed event is retried with exponential back-off and jitter (in
//!   real time: `retry_base`, doubling, at most `retry_max`) until
//!   `retry_window` has passed on the service's clock since its first
//!   failed attempt; then it is dead-lettered and its stream goes on.
//! - An endpoint with no successful attempt for `disable_after` (the
//!   service's clock) is disabled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rand::Rng;
use uuid::Uuid;

use super::attempt::{self, Outcome};
use super::personal::without_personal_data;
use super::store::{self, AttemptRecord, Changes, Endpoint, Recorded, Retry};
use super::WebhookConfig;
use crate::app::cloudevents::CloudEvent;
use crate::clock::Clock;
use crate::domain::event_types::selects;
use crate::store::StoredEvent;
use crate::subscriptions::{Cursor, Delivery, Sink};

/// How long a blocked batch waits at most before it is offered again (new
/// events of other streams go out meanwhile).
const RECHECK: Duration = Duration::from_secs(5);

/// One endpoint's sink.
pub struct WebhookSink {
    name: String,
    /// The endpoint's id as the metrics' label (made once).
    label: String,
    pub(super) endpoint: Endpoint,
    pub(super) pool: sqlx::PgPool,
    pub(super) client: reqwest::Client,
    pub(super) config: Arc<WebhookConfig>,
    pub(super) clock: Arc<dyn Clock>,
    memory: tokio::sync::Mutex<Memory>,
}

/// What the sink keeps between batches (lost with the process, or when a
/// replay or re-enable bumps the endpoint's generation).
#[derive(Default)]
struct Memory {
    /// The generation this memory belongs to (`None`: not loaded).
    generation: Option<i64>,
    /// Delivered, but behind an event that is not done yet.
    sent: HashSet<Uuid>,
    /// Events being retried, with when the next attempt is due.
    retries: HashMap<Uuid, (Retry, Instant)>,
}

/// What one stream of a batch came to.
#[derive(Default)]
struct StreamRun {
    /// Indexes done (delivered or dead-lettered).
    done: Vec<usize>,
    changes: Changes,
    /// When its waiting event is due again.
    blocked_until: Option<Instant>,
    last_error: Option<String>,
}

impl WebhookSink {
    /// The sink of `endpoint`.
    pub fn new(
        endpoint: Endpoint,
        pool: sqlx::PgPool,
        client: reqwest::Client,
        config: Arc<WebhookConfig>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        WebhookSink {
            name: store::subscription(endpoint.id),
            label: endpoint.id.to_string(),
            endpoint,
            pool,
            client,
            config,
            clock,
            memory: tokio::sync::Mutex::new(Memory::default()),
        }
    }

    /// The body of an event as this endpoint gets it: its CloudEvent, with
    /// the personal data removed unless the endpoint may have it.
    pub(super) fn body(&self, e: &StoredEvent) -> bytes::Bytes {
        let source = &self.config.source;
        let ce = match self.endpoint.include_personal_data {
            true => CloudEvent::of(e, source),
            false => CloudEvent::with_payload(e, source, without_personal_data(e)),
        };
        ce.to_bytes().into()
    }

    /// One attempt to deliver `e`, with its metrics.
    pub(super) async fn attempt(&self, e: &StoredEvent) -> Outcome {
        let id = e.event_id.to_string();
        let outcome = attempt::post(
            &self.client,
            self.config.policy,
            self.config.timeout,
            attempt::Request {
                url: &self.endpoint.url,
                secret: &self.endpoint.secret,
                id: &id,
                body: self.body(e),
            },
        )
        .await;
        metrics::counter!("dispatch_webhook_attempts_total", "endpoint" => self.label.clone(), "outcome" => outcome.kind)
            .increment(1);
        metrics::histogram!("dispatch_webhook_attempt_seconds", "endpoint" => self.label.clone())
            .record(outcome.latency.as_secs_f64());
        outcome
    }

    /// The back-off before attempt `attempts + 1`: `retry_base · 2^(attempts
    /// − 1)`, at most `retry_max`, of which a random half is taken off
    /// (equal jitter: endpoints that failed together do not retry together).
    fn backoff(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let full = self
            .config
            .retry_base
            .saturating_mul(1u32 << doublings)
            .min(self.config.retry_max);
        let half = full / 2;
        half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// Reloads what is being retried when the generation changed.
    async fn refresh(&self, memory: &mut Memory, generation: i64) -> sqlx::Result<()> {
        if memory.generation == Some(generation) {
            return Ok(());
        }
        let now = Instant::now();
        memory.sent.clear();
        memory.retries = store::retries(&self.pool, self.endpoint.id)
            .await?
            .into_iter()
            .map(|r| (r.event_id, (r, now)))
            .collect();
        memory.generation = Some(generation);
        Ok(())
    }

    /// Delivers one stream's events in order until one has to wait.
    async fn run_stream(
        &self,
        batch: &[StoredEvent],
        indexes: Vec<usize>,
        retries: &HashMap<Uuid, (Retry, Instant)>,
        deadline: Instant,
    ) -> StreamRun {
        let mut run = StreamRun::default();
        for i in indexes {
            let e = &batch[i];
            let prior = retries.get(&e.event_id);
            if let Some((_, due)) = prior {
                if *due > Instant::now() {
                    run.blocked_until = Some(*due);
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            let attempt_no = prior.map_or(1, |(r, _)| r.attempts + 1);
            let outcome = self.attempt(e).await;
            let now = self.clock.now();
            run.changes.attempts.push(AttemptRecord {
                event_id: e.event_id,
                position: e.global_position,
                attempt: attempt_no,
                http_status: outcome.http_status.map(i32::from),
                error: outcome.error.clone(),
                latency_ms: i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX),
                at: now,
            });
            let Some(error) = outcome.error else {
                run.done.push(i);
                run.changes.delivered.push(e.event_id);
                continue;
            };
            let retry = Retry {
                event_id: e.event_id,
                position: e.global_position,
                attempts: attempt_no,
                first_failed_at: prior.map_or(now, |(r, _)| r.first_failed_at),
                last_error: error.clone(),
                last_attempt_at: now,
            };
            run.last_error = Some(error);
            if now - retry.first_failed_at >= self.config.retry_window {
                tracing::warn!(endpoint = %self.endpoint.id, event_id = %e.event_id, attempts = attempt_no,
                    "webhook: an event failed for the whole retry window; dead-lettered");
                metrics::counter!("dispatch_webhook_dead_letters_total", "endpoint" => self.endpoint.id.to_string())
                    .increment(1);
                run.done.push(i);
                run.changes.dead.push(retry);
                continue;
            }
            run.blocked_until = Some(Instant::now() + self.backoff(attempt_no));
            run.changes.retried.push(retry);
            break;
        }
        run
    }

    /// The endpoint's generation when it is still enabled (what is
    /// remembered reloaded if it changed); else the answer to give.
    async fn ready(&self, memory: &mut Memory) -> Result<i64, Delivery> {
        let retry_soon = Duration::from_secs(1);
        let standing = match store::standing(&self.pool, self.endpoint.id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(failed(0, "the endpoint was deleted", RECHECK)),
            Err(e) => {
                return Err(failed(
                    0,
                    format!("cannot read the endpoint: {e}"),
                    retry_soon,
                ))
            }
        };
        if !standing.enabled {
            return Err(failed(0, "the endpoint is disabled", RECHECK));
        }
        self.refresh(memory, standing.generation)
            .await
            .map_err(|e| failed(0, format!("cannot read the retries: {e}"), retry_soon))?;
        Ok(standing.generation)
    }

    /// Which events of a batch are done already (not asked for, or sent
    /// before), and the others by stream, in order.
    fn plan(&self, batch: &[StoredEvent], memory: &Memory) -> (Vec<bool>, Vec<Vec<usize>>) {
        let mut done = vec![false; batch.len()];
        let mut streams: Vec<Vec<usize>> = Vec::new();
        let mut stream_of: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, e) in batch.iter().enumerate() {
            if !selects(&self.endpoint.event_types, &e.aggregate_type, &e.event_type)
                || memory.sent.contains(&e.event_id)
            {
                done[i] = true;
                continue;
            }
            let key = (e.aggregate_type.as_str(), e.aggregate_id.as_str());
            let s = *stream_of.entry(key).or_insert_with(|| {
                streams.push(Vec::new());
                streams.len() - 1
            });
            streams[s].push(i);
        }
        (done, streams)
    }

    /// Disables the endpoint if it has failed for `disable_after`; whether
    /// it did.
    async fn disable_if_failing_too_long(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
        last_error: &str,
    ) -> bool {
        let Some(since) = since else {
            return false;
        };
        let now = self.clock.now();
        if now - since < self.config.disable_after {
            return false;
        }
        match store::disable(&self.pool, self.endpoint.id, since, now, last_error).await {
            Ok(true) => {
                tracing::warn!(endpoint = %self.endpoint.id, url = %self.endpoint.url, failing_since = %since,
                    "webhook endpoint disabled: every delivery failed for the disabling window (docs/08, \"A webhook endpoint was disabled\")");
                metrics::counter!("dispatch_webhook_disabled_total", "endpoint" => self.endpoint.id.to_string())
                    .increment(1);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint.id, error = %e, "webhook: cannot disable the endpoint");
                false
            }
        }
    }
}

/// The runs of a batch's streams put together.
struct Merged {
    changes: Changes,
    /// When the first waiting event is due again.
    blocked_until: Option<Instant>,
    last_error: Option<String>,
    /// The retried events, each with when it is due.
    due_again: Vec<(Retry, Instant)>,
}

impl Merged {
    /// Marks what the runs did in `done` and gathers their changes.
    fn of(runs: Vec<StreamRun>, done: &mut [bool]) -> Merged {
        let mut m = Merged {
            changes: Changes::default(),
            blocked_until: None,
            last_error: None,
            due_again: Vec::new(),
        };
        for run in runs {
            for i in run.done {
                done[i] = true;
            }
            m.changes.attempts.extend(run.changes.attempts);
            m.changes.delivered.extend(run.changes.delivered);
            if let Some(until) = run.blocked_until {
                m.due_again
                    .extend(run.changes.retried.iter().map(|r| (r.clone(), until)));
            }
            m.changes.retried.extend(run.changes.retried);
            m.changes.dead.extend(run.changes.dead);
            m.blocked_until = match (m.blocked_until, run.blocked_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            m.last_error = run.last_error.or(m.last_error);
        }
        m
    }
}

fn failed(acknowledged: usize, error: impl Into<String>, retry_in: Duration) -> Delivery {
    Delivery {
        acknowledged,
        error: Some(error.into()),
        retry_in: Some(retry_in),
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    /// A delivery task starting (this replica took the lead, or the
    /// endpoint was enabled again): what was remembered may be stale.
    async fn resume(&self, _checkpoint: Cursor) -> Result<Option<Cursor>, String> {
        *self.memory.lock().await = Memory::default();
        Ok(None)
    }

    async fn deliver(&self, batch: &[StoredEvent]) -> Delivery {
        let mut memory = self.memory.lock().await;
        let generation = match self.ready(&mut memory).await {
            Ok(g) => g,
            Err(refused) => return refused,
        };
        let deadline = Instant::now() + self.config.batch_time;
        let (mut done, streams) = self.plan(batch, &memory);
        let retries = &memory.retries;
        let runs: Vec<StreamRun> = futures::stream::iter(
            streams
                .into_iter()
                .map(|indexes| self.run_stream(batch, indexes, retries, deadline)),
        )
        .buffer_unordered(self.config.concurrency.max(1))
        .collect()
        .await;
        let Merged {
            changes,
            blocked_until,
            last_error,
            due_again,
        } = Merged::of(runs, &mut done);
        // Delivered is delivered, whatever the bookkeeping says next.
        memory.sent.extend(changes.delivered.iter().copied());
        let recorded = store::record(&self.pool, self.endpoint.id, generation, &changes).await;
        let failing_since = match recorded {
            Ok(Recorded::Written(since)) => since,
            Ok(Recorded::Stale) => {
                // Replayed or re-enabled meanwhile: offered again at once,
                // from wherever the checkpoint stands now.
                memory.generation = None;
                return Delivery::default();
            }
            Err(e) => {
                // Dead letters not recorded are not passed: they are
                // attempted (and dead-lettered) again.
                return failed(
                    0,
                    format!("cannot record the attempts: {e}"),
                    Duration::from_secs(1),
                );
            }
        };
        for id in changes
            .delivered
            .iter()
            .chain(changes.dead.iter().map(|d| &d.event_id))
        {
            memory.retries.remove(id);
        }
        for (r, until) in due_again {
            memory.retries.insert(r.event_id, (r, until));
        }
        let acknowledged = done.iter().take_while(|d| **d).count();
        for e in &batch[..acknowledged] {
            memory.sent.remove(&e.event_id);
        }
        let error = last_error.unwrap_or_default();
        if self
            .disable_if_failing_too_long(failing_since, &error)
            .await
        {
            return failed(
                acknowledged,
                format!("the endpoint was disabled: every delivery failed for the disabling window (the last: {error})"),
                RECHECK,
            );
        }
        match blocked_until {
            Some(until) => failed(
                acknowledged,
                error,
                until.saturating_duration_since(Instant::now()).min(RECHECK),
            ),
            // Done, or out of time for this batch: offered again at once.
            None => Delivery {
                acknowledged,
                ..Delivery::default()
            },
        }
    }
}
