//! The event store on PostgreSQL: an append-only `events` table with a
//! per-stream SHA-256 hash chain keyed by an HMAC whose secret is not in the
//! database (`chain`), stream heads, signed checkpoints of those heads kept
//! outside the database (`checkpoint`), upcasters on load, and chain
//! verification for auditors.
//!
//! The service writes through this module rather than postgres-es's
//! repository because one transaction must hold more than the events: the
//! idempotency record, the hash chain's head and the door index (docs/03).

pub mod chain;
pub mod checkpoint;
pub mod hash;
mod repo;
pub mod upcast;
pub mod wake;

pub use repo::{
    append, bind_append, decode_stream, envelope_hash, hash_input, load_head, load_stream,
    load_stream_rows, position_marker, prepare_append, verify_rows, Appended, AuditCheck,
    AuditReport, EventMeta, NewEvent, PreparedAppend, RawRow, StoredEvent, StreamState,
    APPEND_CTES, STREAM_COLUMNS,
};
pub use wake::wake_projectors;

/// A storage failure. Unique violations are concurrency conflicts; the rest
/// are infrastructure failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first.
    #[error("concurrent append to the same stream")]
    Conflict,
    /// A stored event could not be decoded (corrupt or unknown version).
    #[error("stored event {sequence} could not be decoded: {source}")]
    Decode {
        /// Its sequence.
        sequence: i64,
        /// Why.
        source: serde_json::Error,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Whether a database error is a unique violation (SQLSTATE 23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}
