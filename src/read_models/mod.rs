//! Read models: asynchronous projectors over the global event order.
//!
//! Each read model has a versioned definition under `projections/` (its DDL
//! and version) and a [`Projection`] here that turns events into rows. The
//! [`runtime`] reads events in `(tx_id, global_position)` order below the
//! oldest running transaction (so a slow-committing writer is never skipped),
//! applies a batch and moves the table's checkpoint in one transaction
//! (exactly once), keeps each table on one replica at a time (`FOR UPDATE
//! SKIP LOCKED` on its checkpoint), and rebuilds a model whose version
//! changed into a shadow table while the old one keeps serving, then swaps.

pub mod approvals;
pub mod billing;
pub mod board;
pub mod door_history;
pub mod followups;
pub mod jobs;
pub mod runtime;
pub mod schedule;
pub mod technicians;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::domain::sop::SopLibrary;
/// What can go wrong in the projectors and the read models' queries. The
/// HTTP layer maps it to the contract's codes (`crate::error`).
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// No read model of that name (or not registered).
    #[error("{0}")]
    Unknown(String),
    /// The database refused or could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stream could not be read or folded.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Waiting for the read models took longer than its bound.
    #[error("{0}")]
    TimedOut(String),
    /// Stored data that should not exist (an event that does not decode, a
    /// checkpoint that is no number): a bug or a damaged store.
    #[error("{0}")]
    Corrupt(String),
}

/// `Result` with [`ReadModelError`].
pub type Result<T, E = ReadModelError> = std::result::Result<T, E>;

/// A read model's versioned definition (`projections/<name>.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The read model's name.
    pub name: String,
    /// Its version: changing it rebuilds the model from the event stream.
    pub version: i32,
    /// What it holds.
    pub description: String,
    /// DDL with `{table}` standing for the versioned table name.
    pub ddl: String,
}

impl Definition {
    /// Parses a definition file.
    pub fn parse(text: &str) -> std::result::Result<Definition, toml::de::Error> {
        toml::from_str(text)
    }
}

/// One event as projectors see it.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// `job` or `technician`.
    pub aggregate_type: String,
    /// Stream id.
    pub aggregate_id: String,
    /// Position in the stream.
    pub sequence: i64,
    /// Store-wide position.
    pub global_position: i64,
    /// The writing transaction.
    pub tx_id: i64,
    /// Event type.
    pub event_type: String,
    /// Stored version.
    pub event_version: String,
    /// Stored payload.
    pub payload: Value,
    /// When it was decided.
    pub occurred_at: Option<DateTime<Utc>>,
}

impl EventRow {
    /// Decodes the payload into a domain event, through the upcasters.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E> {
        crate::store::upcast::decode(&self.event_type, &self.event_version, self.payload.clone())
            .map_err(|e| {
                ReadModelError::Corrupt(format!(
                    "event at position {} does not decode: {e}",
                    self.global_position
                ))
            })
    }
}

/// What a projection may consult while applying.
#[derive(Debug, Clone)]
pub struct ProjectionContext {
    /// The SOP library (trip charges for invoices).
    pub sops: Arc<SopLibrary>,
}

/// Turns batches of events into rows of one read model.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Its definition.
    fn definition(&self) -> &Definition;

    /// Whether the runtime keeps a `{table}_jobs` table of folded job states
    /// for it (and passes it the jobs each batch changed).
    fn needs_job_state(&self) -> bool {
        true
    }

    /// Applies a batch (in global order) to `table`, inside the caller's
    /// transaction. `changes` are the jobs the batch touched, before and
    /// after it, folded by the runtime (empty if the model keeps no job
    /// states): once for every read model that stands at the same position.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        batch: &[EventRow],
        changes: &[jobs::JobChange],
        ctx: &ProjectionContext,
    ) -> Result<()>;
}

macro_rules! definition {
    ($file:literal) => {{
        static DEF: std::sync::OnceLock<Definition> = std::sync::OnceLock::new();
        DEF.get_or_init(|| {
            Definition::parse(include_str!(concat!("../../projections/", $file))).expect(concat!(
                "projections/",
                $file,
                " is valid"
            ))
        })
    }};
}
pub(crate) use definition;

/// Every read model of the service.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(board::Board),
        Arc::new(billing::BillingReadiness),
        Arc::new(technicians::Technicians),
        Arc::new(schedule::TechnicianSchedule),
        Arc::new(approvals::Approvals),
        Arc::new(followups::DoorFollowups),
        Arc::new(door_history::DoorHistory),
    ]
}
