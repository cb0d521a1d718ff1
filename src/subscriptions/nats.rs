//! The NATS JetStream sink: every event, as its CloudEvent, to the stream
//! `DISPATCH_EVENTS` (created if missing) on the subject
//! `dispatch.events.<aggregate type>.<event type>`, with `Nats-Msg-Id` =
//! the event id so that JetStream drops a re-publish inside its duplicate
//! window. A batch is published without waiting message by message, then
//! its acknowledgements are awaited in order; the checkpoint moves past the
//! acknowledged prefix only.
//!
//! On taking over, the sink reads the stream's last message: if it is an
//! event of this store past the checkpoint (published, acknowledged, but
//! the checkpoint not yet moved when the previous leader died), delivery
//! resumes after it — so JetStream holds every event once even when the
//! restart comes after the duplicate window.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{log, Cursor, Delivery, Sink, SinkSource};
use crate::app::cloudevents::CloudEvent;
use crate::store::StoredEvent;

/// The stream's name when none is configured.
pub const DEFAULT_STREAM: &str = "DISPATCH_EVENTS";
/// The subjects' prefix when none is configured.
pub const DEFAULT_SUBJECT_PREFIX: &str = "dispatch.events";
/// The subscription's name (its checkpoint's key).
pub const SUBSCRIPTION: &str = "nats";
/// How long JetStream remembers a message id (re-publishes inside it are
/// dropped).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a publish waits for JetStream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the events go.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The stream (`DISPATCH_EVENTS`).
    pub stream: String,
    /// The subjects' prefix (`dispatch.events`).
    pub subject_prefix: String,
    /// The CloudEvents `source`.
    pub source: String,
}

impl NatsConfig {
    /// The subject of an event.
    pub fn subject(&self, e: &StoredEvent) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix,
            token(&e.aggregate_type),
            token(&e.event_type)
        )
    }

    /// The stream's settings (created with these when missing; an existing
    /// stream is used as it is).
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("dispatch-api: every stored event as a CloudEvent".into()),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        }
    }
}

/// A subject token: NATS separates tokens by dots and matches on `*` and
/// `>`; aggregate and event type names never hold them, and if one did it
/// would be replaced rather than change the subject's shape.
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Gives the runner the NATS sink (one, connected on first use).
pub struct NatsSource {
    pool: sqlx::PgPool,
    config: NatsConfig,
    sink: OnceCell<Arc<NatsSink>>,
}

impl NatsSource {
    /// The source for `config`; every event from the first one is published.
    pub fn new(pool: sqlx::PgPool, config: NatsConfig) -> Self {
        NatsSource {
            pool,
            config,
            sink: OnceCell::new(),
        }
    }
}

#[async_trait]
impl SinkSource for NatsSource {
    async fn sinks(&self) -> Result<Vec<Arc<dyn Sink>>, String> {
        // The checkpoint is made once, with the sink (not on every ask).
        let sink = self
            .sink
            .get_or_try_init(|| async {
                log::ensure(&self.pool, SUBSCRIPTION, "nats", Cursor::START)
                    .await
                    .map_err(|e| e.to_string())?;
                NatsSink::connect(self.config.clone(), self.pool.clone()).await
            })
            .await?;
        Ok(vec![sink.clone() as Arc<dyn Sink>])
    }
}

/// Publishes to JetStream.
pub struct NatsSink {
    config: NatsConfig,
    pool: sqlx::PgPool,
    js: jetstream::Context,
    stream: tokio::sync::Mutex<Option<stream::Stream>>,
}

impl NatsSink {
    /// Connects (in the background: a server that is down now is retried,
    /// and publishes fail until it is up).
    pub async fn connect(config: NatsConfig, pool: sqlx::PgPool) -> Result<Arc<NatsSink>, String> {
        let client = async_nats::ConnectOptions::new()
            .name("dispatch-api")
            .retry_on_initial_connect()
            .connect(config.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", config.url))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(client);
        Ok(Arc::new(NatsSink {
            config,
            pool,
            js,
            stream: tokio::sync::Mutex::new(None),
        }))
    }

    /// The stream, created if missing (once per connection's life).
    async fn stream(&self) -> Result<stream::Stream, String> {
        let mut ready = self.stream.lock().await;
        if let Some(s) = ready.as_ref() {
            return Ok(s.clone());
        }
        let s = self
            .js
            .get_or_create_stream(self.config.stream_config())
            .await
            .map_err(|e| {
                format!(
                    "cannot get or create the stream {}: {e}",
                    self.config.stream
                )
            })?;
        *ready = Some(s.clone());
        Ok(s)
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        SUBSCRIPTION
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn resume(&self, checkpoint: Cursor) -> Result<Option<Cursor>, String> {
        let mut stream = self.stream().await?;
        let last = stream
            .info()
            .await
            .map_err(|e| format!("cannot read the stream's state: {e}"))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(None);
        }
        let message = stream
            .get_raw_message(last)
            .await
            .map_err(|e| format!("cannot read the stream's last message: {e}"))?;
        let Some(id) = message
            .headers
            // The standard header's constant: a name given as text is a
            // custom header and never matches it.
            .get(async_nats::header::NATS_MESSAGE_ID)
            .and_then(|v| uuid::Uuid::parse_str(v.as_str()).ok())
        else {
            return Ok(None);
        };
        // Only an event of this store moves the checkpoint (a stream that
        // outlived a rebuilt database must not make it skip anything).
        let at = log::cursor_of_event(&self.pool, id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(at.filter(|c| *c > checkpoint))
    }

    async fn deliver(&self, batch: &[StoredEvent]) -> Delivery {
        if let Err(e) = self.stream().await {
            return failed(0, e);
        }
        let mut acks = Vec::with_capacity(batch.len());
        for e in batch {
            let body = CloudEvent::of(e, &self.config.source).to_bytes();
            let publish = PublishMessage::build()
                .payload(body.into())
                .message_id(e.event_id.to_string())
                .header("Content-Type", "application/cloudevents+json");
            match self.js.send_publish(self.config.subject(e), publish).await {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    self.forget_stream().await;
                    // What was sent before stays in order; wait for it.
                    let acked = await_in_order(acks).await;
                    return failed(
                        acked.0,
                        acked.1.unwrap_or_else(|| format!("cannot publish: {err}")),
                    );
                }
            }
        }
        match await_in_order(acks).await {
            (n, None) => Delivery {
                acknowledged: n,
                ..Delivery::default()
            },
            (n, Some(e)) => {
                self.forget_stream().await;
                failed(n, e)
            }
        }
    }
}

impl NatsSink {
    /// After a failure, looks the stream up again on the next attempt (it
    /// may have been deleted, or the server restarted without its store):
    /// `get_or_create_stream` makes it again.
    async fn forget_stream(&self) {
        *self.stream.lock().await = None;
    }
}

/// Awaits the acknowledgements in order: how many came before the first
/// that did not, and why it did not.
async fn await_in_order(
    acks: Vec<async_nats::jetstream::context::PublishAckFuture>,
) -> (usize, Option<String>) {
    let mut n = 0;
    for ack in acks {
        match ack.await {
            Ok(_) => n += 1,
            Err(e) => return (n, Some(format!("JetStream did not acknowledge: {e}"))),
        }
    }
    (n, None)
}

fn failed(acknowledged: usize, error: String) -> Delivery {
    Delivery {
        acknowledged,
        error: Some(error),
        retry_in: Some(Duration::from_secs(1)),
    }
}
