//! The pure domain: aggregates, commands, events, guards and the SOP library.
//!
//! Nothing here knows about HTTP or the database. Every rule of the job
//! lifecycle is decided here, deterministically, from the events already
//! applied, the command, and the facts the application resolved for it.

pub mod actor;
pub mod event_types;
pub mod geo;
pub mod job;
pub mod money;
pub mod policy;
pub mod registry;
pub mod sop;
pub mod technician;

pub use actor::{Actor, ActorKind, Issued, Role};

/// A command's wire body that does not decode: serde's reason and the path
/// to the offending value (`site.name`, `parts[0].quantity`).
pub type BodyError = serde_path_to_error::Error<serde_json::Error>;
pub use money::Cents;
