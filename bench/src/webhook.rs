//! Events out to a webhook under the load: a minimal receiver in this
//! process (`http://127.0.0.1:<port>/hook`, answering 204 at once), which
//! the main service under test (started with `DISPATCH_WEBHOOKS_ALLOW_LOCAL`)
//! has as an endpoint for every event, registered with an admin key before
//! the measured load.
//!
//! **Webhook lag** is measured like the subscription lag ([`crate::fanout`]):
//! a command's answer → the arrival at the receiver of its last event (by
//! the CloudEvent's `globalposition`), the arrival noted as the request's
//! body has been read, before the 204 is sent. The receiver also keeps each
//! event's first arrival for the run, so that the run can check that every
//! event stored since the registration arrived at least once (at-least-once
//! delivery: a repeat is counted, not an error).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use dispatch_api::app::keys;
use dispatch_api::domain::Role;

/// How long the service may take to start delivering to a new endpoint: its
/// subscription runner refreshes its sinks every 2 s.
const PICKED_UP_WITHIN: Duration = Duration::from_secs(5);

/// What the receiver has seen over the run.
#[derive(Debug, Default)]
struct Seen {
    /// Each event's first arrival.
    first: HashMap<i64, Instant>,
    /// Deliveries of an event that had arrived before.
    repeats: usize,
    /// Requests whose body had no `globalposition`.
    unreadable: usize,
    /// Where the current round's watcher takes arrivals.
    tap: Option<UnboundedSender<(i64, Instant)>>,
}

#[derive(Deserialize)]
struct Position {
    globalposition: i64,
}

/// The receiver, registered with the service as an endpoint.
pub struct Receiver {
    seen: Arc<Mutex<Seen>>,
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's id at the service.
    pub endpoint: String,
    /// The global position the endpoint started after (the store's head at
    /// registration): every later event must arrive.
    pub after: i64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Notes an arrival and answers 204.
async fn hook(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    match serde_json::from_slice::<Position>(&body) {
        Ok(p) => {
            match seen.first.entry(p.globalposition) {
                Entry::Occupied(_) => seen.repeats += 1,
                Entry::Vacant(e) => {
                    e.insert(at);
                }
            }
            if let Some(tap) = &seen.tap {
                let _ = tap.send((p.globalposition, at));
            }
        }
        Err(_) => seen.unreadable += 1,
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    /// Starts the receiver and registers it at the service at `base` (for
    /// every event, personal data included) with an admin key made on
    /// `pool`; then waits for the service to pick the endpoint up. Why not,
    /// if it cannot.
    pub async fn start(base: &str, pool: &PgPool) -> Result<Receiver, String> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen for webhooks: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot listen for webhooks: {e}"))?;
        let url = format!("http://{addr}/hook");
        let admin = keys::create_key(pool, Role::Admin, "bench-webhook-admin", None)
            .await
            .map_err(|e| format!("cannot make an admin key: {e}"))?;
        let answer = crate::clients::client()
            .map_err(|e| e.to_string())?
            .post(format!("{base}/v1/webhooks"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({
                "url": url,
                "event_types": ["*"],
                "include_personal_data": true,
                "description": "dispatch-bench webhook lag",
            }))
            .send()
            .await
            .map_err(|e| format!("cannot register the webhook: {e}"))?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        if status.as_u16() != 201 {
            return Err(format!("registering the webhook: {status} {body}"));
        }
        let endpoint = body["id"].as_str().unwrap_or_default().to_string();
        let after = body["position"].as_i64().unwrap_or(0);
        // Served from now on (a delivery before this waits in the backlog).
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(seen.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        tokio::time::sleep(PICKED_UP_WITHIN).await;
        Ok(Receiver {
            seen,
            url,
            endpoint,
            after,
            server,
        })
    }

    /// The arrivals from now on (for one round's watcher; a new tap replaces
    /// the last).
    pub fn tap(&self) -> UnboundedReceiver<(i64, Instant)> {
        let (tx, rx) = unbounded_channel();
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).tap = Some(tx);
        rx
    }

    /// Ends the current tap (its watcher then ends too).
    pub fn untap(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).tap = None;
    }

    /// Whether every event stored in `pool` after [`Receiver::after`] has
    /// arrived at least once (waiting up to `wait` for the missing ones):
    /// what to say, with the repeats, and the failures of the run (events
    /// missing, requests without a `globalposition`).
    pub async fn every_event(
        &self,
        pool: &PgPool,
        wait: Duration,
    ) -> sqlx::Result<(String, Vec<String>)> {
        let started = Instant::now();
        let (missing, stored, repeats, unreadable) = loop {
            let stored: Vec<i64> = sqlx::query_scalar(
                "SELECT global_position FROM events WHERE global_position > $1 ORDER BY global_position",
            )
            .bind(self.after)
            .fetch_all(pool)
            .await?;
            let counted = {
                let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                let missing: Vec<i64> = stored
                    .iter()
                    .copied()
                    .filter(|p| !seen.first.contains_key(p))
                    .collect();
                (missing, stored.len(), seen.repeats, seen.unreadable)
            };
            if counted.0.is_empty() || started.elapsed() > wait {
                break counted;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut failures = Vec::new();
        if unreadable > 0 {
            failures.push(format!(
                "the webhook receiver got {unreadable} requests without a globalposition"
            ));
        }
        let said = if missing.is_empty() {
            format!("the webhook receiver got each of the {stored} events stored since its registration, {repeats} repeated deliveries")
        } else {
            let first: Vec<String> = missing.iter().take(5).map(i64::to_string).collect();
            let said = format!(
                "the webhook receiver never got {} of the {stored} events stored since its registration within {} s of the load's end (first positions {}); {repeats} repeated deliveries",
                missing.len(),
                wait.as_secs(),
                first.join(", ")
            );
            failures.push(said.clone());
            said
        };
        Ok((said, failures))
    }
}
