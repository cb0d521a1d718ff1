//! Events out under the load: the service under test publishes every event
//! to NATS JetStream (`DISPATCH_NATS_URL`, on a stream and subject prefix of
//! the run's own, deleted at the end), and a plain NATS subscription in this
//! process on the run's subjects notes when each event arrives.
//!
//! **Subscription lag** is measured like the projection lag, from the same
//! start: a command's answer (the load driver's ack time) → the arrival of
//! its last event (by `globalposition`, which the CloudEvent carries) on the
//! subscription. A subscriber on the subject gets a message as JetStream
//! takes it in, the moment before JetStream acknowledges it to the service;
//! the service moves its checkpoint after that acknowledgement. An event
//! that arrives before the answer counts as 0.
//!
//! NATS not reachable: the run goes on without the fan-out and the figure
//! says "not measured".

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::GetStreamErrorKind;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::stats::Samples;

/// The run's stream on a reachable NATS server.
pub struct Fanout {
    client: async_nats::Client,
    /// The server.
    pub url: String,
    /// The stream the service creates and publishes to.
    pub stream: String,
    /// Its subjects' prefix.
    pub subject_prefix: String,
}

impl Fanout {
    /// Connects to `url` (within 3 s); why not, if it cannot. The stream and
    /// prefix are named after `run_id`.
    pub async fn connect(url: &str, run_id: &str) -> Result<Fanout, String> {
        let connecting = async_nats::ConnectOptions::new()
            .name("dispatch-bench")
            .subscription_capacity(1 << 20)
            .connection_timeout(Duration::from_secs(3))
            .connect(url);
        let client = match tokio::time::timeout(Duration::from_secs(4), connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("NATS not reachable at {url}: {e}")),
            Err(_) => return Err(format!("NATS at {url} did not answer within 3 s")),
        };
        let run = run_id.to_ascii_lowercase();
        let fanout = Fanout {
            client,
            url: url.to_string(),
            stream: format!("DISPATCH_BENCH_{}", run.to_ascii_uppercase()),
            subject_prefix: format!("dispatch_bench_{run}.events"),
        };
        // JetStream on? It answers that the run's stream does not exist yet
        // (a server without it answers nothing, and the service could only
        // log errors).
        match fanout.messages().await {
            Ok(None) => Ok(fanout),
            Ok(Some(_)) => Err(format!("the stream {} exists already", fanout.stream)),
            Err(e) => Err(format!("no JetStream at {url}: {e}")),
        }
    }

    /// The settings the service under test gets for it.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("DISPATCH_NATS_URL".into(), self.url.clone()),
            ("DISPATCH_NATS_STREAM".into(), self.stream.clone()),
            (
                "DISPATCH_NATS_SUBJECT_PREFIX".into(),
                self.subject_prefix.clone(),
            ),
        ]
    }

    /// A plain subscription to every subject of the run.
    pub async fn subscribe(&self) -> anyhow::Result<async_nats::Subscriber> {
        let sub = self
            .client
            .subscribe(format!("{}.>", self.subject_prefix))
            .await?;
        // The subscription is registered on the server before any load starts.
        self.client.flush().await?;
        Ok(sub)
    }

    /// How many messages the stream holds (`None` if it does not exist).
    pub async fn messages(&self) -> Result<Option<u64>, String> {
        let js = async_nats::jetstream::new(self.client.clone());
        match js.get_stream(&self.stream).await {
            Ok(mut s) => s
                .info()
                .await
                .map(|i| Some(i.state.messages))
                .map_err(|e| e.to_string()),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(e.to_string()),
            },
        }
    }

    /// Deletes the stream, if the service created it.
    pub async fn delete(&self) -> Result<(), String> {
        if self.messages().await?.is_none() {
            return Ok(());
        }
        async_nats::jetstream::new(self.client.clone())
            .delete_stream(&self.stream)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot delete the stream {}: {e}", self.stream))
    }
}

/// What the subscription watcher measured.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionLag {
    /// Command answer → its last event on the subscription.
    pub lag: Samples,
    /// Answered commands whose last event had not arrived when the watcher
    /// gave up.
    pub unresolved: usize,
    /// Events that arrived on the subscription (distinct).
    pub arrived: usize,
    /// Events that arrived more than once (a re-publish after a failed
    /// acknowledgement; JetStream keeps one).
    pub duplicates: usize,
}

#[derive(Deserialize)]
struct Position {
    globalposition: i64,
}

/// Pairs each answered command (its last global position and answer time,
/// from `answers`) with its last event's arrival on `sub`. Ends once the
/// senders are gone and every command's event has arrived, or `give_up`
/// after that.
pub async fn watch_subscription(
    sub: async_nats::Subscriber,
    answers: UnboundedReceiver<(i64, Instant)>,
    give_up: Duration,
) -> anyhow::Result<SubscriptionLag> {
    let arrivals = sub.filter_map(|m| {
        let at = Instant::now();
        std::future::ready(
            serde_json::from_slice::<Position>(&m.payload)
                .ok()
                .map(|p| (p.globalposition, at)),
        )
    });
    watch_arrivals(Box::pin(arrivals), answers, give_up).await
}

/// The same pairing on any stream of arrivals (global position, when),
/// e.g. a webhook receiver's ([`crate::webhook`]).
pub async fn watch_arrivals(
    mut arrivals_in: impl futures::Stream<Item = (i64, Instant)> + Unpin,
    mut answers: UnboundedReceiver<(i64, Instant)>,
    give_up: Duration,
) -> anyhow::Result<SubscriptionLag> {
    let mut out = SubscriptionLag::default();
    let mut arrivals: HashMap<i64, Instant> = HashMap::new();
    let mut waiting: HashMap<i64, Instant> = HashMap::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_some() && waiting.is_empty() {
            break;
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            m = arrivals_in.next() => {
                let Some((pos, at)) = m else {
                    anyhow::bail!("the arrivals ended (the subscription or receiver is gone)");
                };
                if arrivals.contains_key(&pos) {
                    out.duplicates += 1;
                    continue;
                }
                arrivals.insert(pos, at);
                if let Some(answered) = waiting.remove(&pos) {
                    out.lag.push(at.saturating_duration_since(answered));
                }
            }
            a = answers.recv(), if deadline.is_none() => match a {
                Some((pos, answered)) => match arrivals.get(&pos) {
                    Some(at) => out.lag.push(at.saturating_duration_since(answered)),
                    None => {
                        waiting.insert(pos, answered);
                    }
                },
                None => deadline = Some(tokio::time::Instant::now() + give_up),
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => break,
        }
    }
    out.unresolved = waiting.len();
    out.arrived = arrivals.len();
    Ok(out)
}
