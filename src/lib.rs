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

pub mod app;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod embedded_pg;
pub mod error;
pub mod http;
pub mod read_models;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod timers;
pub mod tools;
