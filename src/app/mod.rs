//! The application layer: what a request does, independent of HTTP.
//!
//! It resolves the facts a command needs (technician profiles, jobs at the
//! same door, uploaded evidence), runs the aggregate's decision, and hands
//! the events with the stored answer to the store as one write
//! ([`commands`]). A job command enters by one door, [`App::job_command`].

pub mod cache;
pub mod checkpoints;
pub mod cloudevents;
mod commands;
pub mod door_history;
pub mod evidence;
pub mod field;
pub mod keys;
pub mod queries;
pub mod read_models;
pub mod registry;
pub mod sessions;
pub mod turns;

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

pub use commands::Reply;
pub use keys::{Caller, KeyedCaller, KnownKeys};

use crate::clock::Clock;
use crate::domain::job::JobServices;
use crate::domain::policy::DispatchPolicy;
use crate::domain::sop::SopLibrary;

/// Per-request metadata that travels onto every event.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// SHA-256 of what was asked (method, path, canonical body).
    pub request_hash: String,
    /// `If-Match`: the job version the caller expects.
    pub if_match: Option<i64>,
    /// Correlation id (from `X-Correlation-Id` or made per request).
    pub correlation_id: Uuid,
    /// The request's W3C trace id (continued from its `traceparent`, or
    /// started by the service; see [`crate::telemetry::trace`]).
    pub trace_id: Option<String>,
    /// Causation id (from `X-Causation-Id`).
    pub causation_id: Option<Uuid>,
    /// The tool call, when a tool caused it.
    pub tool_invocation_id: Option<Uuid>,
}

/// The application: shared by every request.
#[derive(Debug, Clone)]
pub struct App {
    /// The database.
    pub pool: PgPool,
    /// The SOP library.
    pub sops: Arc<SopLibrary>,
    /// SLA and acknowledgement policy.
    pub policy: Arc<DispatchPolicy>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Evidence object store.
    pub evidence: evidence::EvidenceStore,
    /// Job states left by recent commands (see [`cache`]).
    pub jobs: cache::JobCache,
    /// The callers recently looked-up API keys resolved to (see [`keys`]).
    pub keys: keys::KnownKeys,
    /// Commits command writes together (see [`crate::store::writer`]).
    pub writer: crate::store::Writer,
    /// The chain's keys: every new event's MAC, checkpoint signatures.
    pub chain: Arc<crate::store::chain::ChainKeys>,
    /// The heads signed checkpoints recorded (see [`checkpoints`]).
    pub checkpoints: checkpoints::Checkpoints,
    /// Writes the gate's invocation records in batches
    /// ([`crate::tools::log::InvocationLog`]).
    pub invocations: crate::tools::log::InvocationLog,
}

/// Whether an id a caller sent can name anything stored. Ids are checked
/// for control characters when they are made, and PostgreSQL cannot even
/// hold a NUL in text: an id with one names nothing, and lookups answer "not
/// found" without asking the database (which would refuse the query).
pub fn storable_id(id: &str) -> bool {
    !id.contains('\0')
}

/// What `/readyz` reports: the migrations applied and the read models
/// registered, or that the database cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Migrations recorded as applied.
    pub migrations: i64,
    /// Read models in the registry.
    pub read_models_registered: i64,
}

impl App {
    /// Asks the database what `/readyz` reports; `None` when it cannot be reached.
    pub async fn readiness(&self) -> Option<Readiness> {
        let migrations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .ok()?;
        let read_models_registered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM projection_registry")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        Some(Readiness {
            migrations,
            read_models_registered,
        })
    }

    /// The services the job aggregate consults.
    pub fn job_services(&self) -> JobServices {
        JobServices {
            sops: self.sops.clone(),
            policy: self.policy.clone(),
        }
    }
}
