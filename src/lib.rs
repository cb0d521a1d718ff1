//! dispatch-api: the event-sourced enforcement service between an AI dispatch
//! agent and a door-service company's operations.
//!
//! Components, in the direction data flows:
//!
//! - [`domain`] — pure: the `Job` and `Technician` aggregates (cqrs-es), their
//!   commands, events and typed errors, the SOP library and the dispatch
//!   policy. No HTTP, no SQL.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod domain;
pub mod app;
pub mod clock;
pub mod error;
pub mod store;
