//! Events out: subscriptions that follow the event store and hand every
//! event to a sink outside the service — NATS JetStream ([`nats`]) and
//! webhook endpoints ([`webhooks`]) — in the one format of
//! [`crate::app::cloudevents`].
//!
//! A subscription reads the store in the projectors' order,
//! `(tx_id, global_position)` below the oldest running transaction (so a
//! slow-committing writer is never skipped), and keeps its own checkpoint
//! (`subscription_checkpoints`): the last event its sink acknowledged. It
//! delivers **at least once, in order**: a batch goes to the sink in order,
//! the sink says how long a prefix it acknowledged, and only that prefix
//! moves the checkpoint; whatever follows is offered again. Consumers
//! deduplicate on the event id (the CloudEvent `id`, JetStream's
//! `Nats-Msg-Id`, the webhook's `webhook-id`).
//!
//! One replica at a time delivers ([`runner`]): the one holding a session
//! advisory lock; when it dies its connection closes, the lock is released
//! and another replica takes over from the checkpoints. Split by concern:
//!
//! - `log.rs` — reading the order after a cursor, and the checkpoints;
//! - `runner.rs` — the lead, one task per subscription, the wake-ups;
//! - `shared.rs` — the recent reads, shared by the subscriptions;
//! - `status.rs` — each subscription's position, lag and last error;
//! - `nats.rs` — the JetStream sink;
//! - `webhooks/` — the webhook endpoints and their sink.

pub mod log;
pub mod nats;
pub mod runner;
pub mod shared;
pub mod status;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::StoredEvent;

pub use log::Cursor;
pub use runner::Subscriptions;

/// What can go wrong in a subscription's own bookkeeping (a sink's failure
/// to deliver is not an error here: it is a [`Delivery`] with an error).
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The database refused or could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Stored data that should not exist (metadata that does not decode).
    #[error("{0}")]
    Corrupt(String),
}

/// `Result` with [`SubscriptionError`].
pub type Result<T, E = SubscriptionError> = std::result::Result<T, E>;

/// What a sink did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// How long a prefix of the batch is acknowledged (delivered, or
    /// deliberately passed over, e.g. an event the endpoint did not ask
    /// for): the checkpoint moves past exactly these.
    pub acknowledged: usize,
    /// Why the rest was not, if it was not.
    pub error: Option<String>,
    /// When to offer the rest again (default: a second).
    pub retry_in: Option<Duration>,
}

impl Delivery {
    /// The whole batch acknowledged.
    pub fn all(batch: &[StoredEvent]) -> Delivery {
        Delivery {
            acknowledged: batch.len(),
            ..Delivery::default()
        }
    }
}

/// Where a subscription's events go.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The subscription's name, its checkpoint's key (`nats`,
    /// `webhook:<endpoint id>`).
    fn name(&self) -> &str;

    /// `nats` or `webhook`.
    fn kind(&self) -> &'static str;

    /// Called when this replica starts delivering: a cursor past the
    /// checkpoint if the sink knows it already holds events beyond it
    /// (JetStream's last message); `None` to start at the checkpoint.
    async fn resume(&self, _checkpoint: Cursor) -> std::result::Result<Option<Cursor>, String> {
        Ok(None)
    }

    /// Delivers `batch` (in the store's order, after the checkpoint).
    async fn deliver(&self, batch: &[StoredEvent]) -> Delivery;
}

/// What gives the runner its sinks: asked every few seconds while this
/// replica leads, so that sinks added or removed at run time (webhook
/// endpoints) start and stop without a restart.
#[async_trait]
pub trait SinkSource: Send + Sync {
    /// The sinks that should be delivering now. Each one's checkpoint row
    /// exists when this returns.
    async fn sinks(&self) -> std::result::Result<Vec<Arc<dyn Sink>>, String>;
}
