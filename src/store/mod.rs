//! The event store on PostgreSQL: an append-only `events` table with a
//! per-stream SHA-256 hash chain keyed by an HMAC whose secret is not in the
//! database (`chain`), stream heads, signed checkpoints of those heads kept
//! outside the database (`checkpoint`), upcasters on load, and chain
//! verification for auditors.
//!
//! The service writes through this module rather than postgres-es's
//! repository because one transaction must hold more than the events: the
//! idempotency record, the hash chain's head and the door index (docs/03).
//!
//! Every append goes one way, in one file ([`writer`]): events prepared
//! (hash chain, MACs), a [`Write`] (events, head, door row, stored answer)
//! sent through `dispatch_write_batch` — by the group-commit [`Writer`] for
//! commands and by [`append`] inside a caller's transaction for everything
//! else. The answer's position placeholders are [`answer`]'s; reading
//! streams is `repo`'s. Errors here are the store's own ([`StoreError`],
//! [`Refused`]); `crate::error` maps them to the contract's codes.

pub mod answer;
pub mod chain;
pub mod checkpoint;
pub mod hash;
mod repo;
pub mod scan;
mod stream_audit;
pub mod upcast;
mod verify;
pub mod wake;
pub mod writer;

pub use answer::{position_marker, Answer};
pub use hash::{envelope_hash, hash_input, Envelope};
pub use repo::{
    decode_stream, load_head, load_stream, load_stream_rows, EventMeta, NewEvent, RawRow,
    StoredEvent, StreamState, STREAM_COLUMNS,
};
pub use stream_audit::verify_stream;
pub use verify::{verify_rows, AuditCheck, AuditReport};
pub use wake::wake_projectors;
pub use writer::{
    append, prepare_append, Appended, DoorRow, PreparedAppend, PreparedEvent, Refused, Write,
    Writer,
};

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
    /// A batch call failed as a whole (every write in it shares the error).
    #[error("the batch write failed: {0}")]
    Batch(std::sync::Arc<sqlx::Error>),
    /// The batch function refused a write for a reason other than a
    /// conflict or a key (its SQLSTATE and message).
    #[error("write refused: {code}: {message}")]
    Refused {
        /// SQLSTATE.
        code: String,
        /// The database's message.
        message: String,
    },
    /// The batch function answered no row for this write (1-based).
    #[error("the batch write returned no row for write {0}")]
    NoOutcome(usize),
    /// The group-commit writer has stopped (the process is shutting down).
    #[error("the group-commit writer has stopped")]
    WriterStopped,
    /// An answer's event positions could not be placed: it does not carry
    /// its events' [`position_marker`]s (a bug).
    #[error("the answer's event positions could not be placed")]
    Unplaceable,
}

/// Whether a database error is a unique violation (SQLSTATE 23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}
