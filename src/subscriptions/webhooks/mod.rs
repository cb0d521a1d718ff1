//! Webhooks: events out to HTTPS endpoints an admin registers
//! (`POST /v1/webhooks`), each its own subscription `webhook:<id>` on the
//! store's order, starting at the store's head when it was registered.
//!
//! Deliveries follow the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>): `POST` of the event's CloudEvent
//! (`content-type: application/cloudevents+json`) with `webhook-id` = the
//! event id (the receiver's deduplication key, the same on every retry),
//! `webhook-timestamp` (unix seconds) and `webhook-signature` (`v1,` +
//! base64 HMAC-SHA-256 with the endpoint's secret). At least once, in order
//! per stream; retried with back-off for 24 hours, then dead-lettered; an
//! endpoint failing for 3 days is disabled. Split by concern:
//!
//! - `urls.rs` — where an endpoint may point (https, public addresses; the
//!   client's resolver);
//! - `signing.rs` — secrets and signatures;
//! - `personal.rs` — the personal fields removed for endpoints without
//!   `include_personal_data`;
//! - `attempt.rs` — one signed POST, bounded in time and answer size;
//! - `sink.rs` — one endpoint's deliveries: streams, retries, dead letters,
//!   disabling;
//! - `store.rs` — the sink's reads and writes;
//! - `replay.rs` — dead letters delivered again;
//! - `admin.rs` — what the admin API does (register, list, replay, enable…).

pub mod admin;
pub mod attempt;
pub mod personal;
pub mod replay;
pub mod signing;
pub mod sink;
pub mod store;
pub mod urls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use sink::WebhookSink;
pub use urls::UrlPolicy;

use super::{Sink, SinkSource};
use crate::clock::Clock;

/// How long the attempts log is kept (older rows are deleted hourly).
pub const ATTEMPTS_KEPT_DAYS: i64 = 30;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The CloudEvents `source`.
    pub source: String,
    /// Where endpoints may point.
    pub policy: UrlPolicy,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// The first retry's back-off (doubling after each failure).
    pub retry_base: Duration,
    /// The longest back-off.
    pub retry_max: Duration,
    /// How long a failing event is retried (from its first failed attempt,
    /// on the service's clock) before it is dead-lettered.
    pub retry_window: chrono::Duration,
    /// How long an endpoint may fail without a success before it is
    /// disabled (the service's clock).
    pub disable_after: chrono::Duration,
    /// Streams of one endpoint delivered at once.
    pub concurrency: usize,
    /// How long one batch may take before what is done is acknowledged and
    /// the rest offered again (so that the log and the checkpoint move
    /// while a slow receiver works through a batch).
    pub batch_time: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            source: crate::app::cloudevents::DEFAULT_SOURCE.to_string(),
            policy: UrlPolicy::default(),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            retry_window: chrono::Duration::hours(24),
            disable_after: chrono::Duration::days(3),
            concurrency: 32,
            batch_time: Duration::from_secs(5),
        }
    }
}

/// The client every delivery is made with: no redirects, no proxy (the
/// connection goes to the checked addresses), [`urls::PublicResolver`],
/// https only unless local endpoints are allowed.
pub fn client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(!config.policy.allow_local)
        .dns_resolver(Arc::new(urls::PublicResolver {
            policy: config.policy,
        }))
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        .timeout(config.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("dispatch-api-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Gives the runner one sink per enabled endpoint, and while this replica
/// leads: replays requested dead letters, publishes the endpoints' gauges
/// and prunes the attempts log.
pub struct WebhookSource {
    pool: sqlx::PgPool,
    config: Arc<WebhookConfig>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    sinks: Mutex<HashMap<Uuid, Arc<WebhookSink>>>,
    replays: Mutex<HashMap<Uuid, JoinHandle<()>>>,
    pruned_at: Mutex<Option<Instant>>,
}

impl WebhookSource {
    /// The source of `config`, on the service's clock.
    pub fn new(
        pool: sqlx::PgPool,
        config: WebhookConfig,
        clock: Arc<dyn Clock>,
    ) -> reqwest::Result<Self> {
        Ok(WebhookSource {
            client: client(&config)?,
            pool,
            config: Arc::new(config),
            clock,
            sinks: Mutex::new(HashMap::new()),
            replays: Mutex::new(HashMap::new()),
            pruned_at: Mutex::new(None),
        })
    }

    /// Starts a replay task for each enabled endpoint with requested dead
    /// letters and none running.
    async fn start_replays(&self) -> sqlx::Result<()> {
        let wanted = replay::requested(&self.pool).await?;
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let mut replays = self.replays.lock().unwrap_or_else(|p| p.into_inner());
        replays.retain(|_, t| !t.is_finished());
        for id in wanted {
            if let (Some(sink), false) = (sinks.get(&id), replays.contains_key(&id)) {
                replays.insert(id, tokio::spawn(replay::run(sink.clone())));
            }
        }
        Ok(())
    }

    /// The gauges: endpoints disabled, and how long each enabled one has
    /// been failing (0: it is not).
    async fn publish_gauges(&self) -> sqlx::Result<()> {
        let rows: Vec<(Uuid, String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
            "SELECT id, status, failing_since FROM webhook_endpoints WHERE deleted_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = self.clock.now();
        let disabled = rows.iter().filter(|(_, s, _)| s == "disabled").count();
        metrics::gauge!("dispatch_webhook_endpoints_disabled").set(disabled as f64);
        for (id, status, since) in rows {
            let failing = match (status.as_str(), since) {
                ("enabled", Some(since)) => (now - since).num_milliseconds().max(0) as f64 / 1000.0,
                _ => 0.0,
            };
            metrics::gauge!("dispatch_webhook_failing_seconds", "endpoint" => id.to_string())
                .set(failing);
        }
        Ok(())
    }

    /// Deletes attempts older than [`ATTEMPTS_KEPT_DAYS`], at most hourly.
    async fn prune(&self) -> sqlx::Result<()> {
        {
            let mut at = self.pruned_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < Duration::from_secs(3600)) {
                return Ok(());
            }
            *at = Some(Instant::now());
        }
        let before = self.clock.now() - chrono::Duration::days(ATTEMPTS_KEPT_DAYS);
        sqlx::query("DELETE FROM webhook_attempts WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SinkSource for WebhookSource {
    async fn sinks(&self) -> Result<Vec<Arc<dyn Sink>>, String> {
        let endpoints = store::enabled(&self.pool)
            .await
            .map_err(|e| format!("cannot list the webhook endpoints: {e}"))?;
        let out: Vec<Arc<dyn Sink>> = {
            let mut cache = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
            // A sink no longer wanted is forgotten: enabled again, the
            // endpoint starts with a fresh one.
            cache.retain(|id, _| endpoints.iter().any(|e| e.id == *id));
            endpoints
                .into_iter()
                .map(|e| {
                    let sink = cache.entry(e.id).or_insert_with(|| {
                        Arc::new(WebhookSink::new(
                            e,
                            self.pool.clone(),
                            self.client.clone(),
                            self.config.clone(),
                            self.clock.clone(),
                        ))
                    });
                    sink.clone() as Arc<dyn Sink>
                })
                .collect()
        };
        let housekeeping = async {
            self.start_replays().await?;
            self.publish_gauges().await?;
            self.prune().await
        };
        if let Err(e) = housekeeping.await {
            tracing::warn!(error = %e, "webhooks: housekeeping failed; retrying on the next tick");
        }
        Ok(out)
    }
}
