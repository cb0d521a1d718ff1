//! dispatch-api: the event-sourced enforcement service between an AI dispatch
//! agent and a door-service company's operations.
//!
//! Components, in the direction data flows:
//!
//! - [`domain`] — pure: the `Job` and `Technician` aggregates (cqrs-es), their
//!   commands, events and typed errors, the SOP library and the dispatch
//!   policy. No HTTP, no SQL. Every job command is decided by one function
//!   named after its wire name in `domain/job/decide/{intake,field,closeout,
//!   any_state}.rs`; `domain/job/aggregate.rs` dispatches to them and applies
//!   the destructive rule (an agent never ends a dispatched job alone);
//!   `domain/job/transitions.rs` is the state machine as a table.
//! - [`tools`] — the closed toolset: the allowlist (`tools/allowlist.toml`),
//!   the one gate every transport passes (`tools/gate.rs`: per-key limit,
//!   allowlist, invocation log), the tools' input schemas, the manifest.
//! - [`app`] — what a request does, independent of HTTP: idempotency, the
//!   facts a command needs, the decision, the write (`app/commands.rs`), the
//!   group-commit writer (`app/writer.rs`), the job cache, keys, evidence,
//!   UI sessions, the chain's signed checkpoints (`app/checkpoints.rs`).
//! - [`store`] — the event store on PostgreSQL: appending and reading
//!   streams, the SHA-256 chain and its HMAC (`store/chain.rs`), signed
//!   checkpoints, upcasters.
//! - [`read_models`] — the projector runtime (global order, exactly once,
//!   rebuilds into shadow tables) and one module per read model.
//! - [`http`] — axum: the router, the gate's middleware (`http/gate.rs`), one
//!   module per resource, MCP (`http/mcp.rs`), the pages, the OpenAPI
//!   document; [`error`] maps every layer's errors to the contract's codes.
//! - [`timers`] — the system actor (offer expiry, SLA breaches).
//! - [`server`], [`cli`], [`config`], [`db`], [`telemetry`] — wiring.
//! - Not here: the benchmark, a workspace member of its own (`bench/`,
//!   `dispatch-bench`), which drives this crate's binary from the outside;
//!   the service links no load generator.
//!
//! One command's path, `POST /v1/jobs/{id}/commands/accept_offer`:
//! `http/mod.rs` (router) → `http/gate.rs` (key, limit, allowlist, log) →
//! `http/jobs.rs` (`job_command`: decode) → `app/commands.rs` (idempotency,
//! facts, decide, write) → `domain/job/aggregate.rs` (`Job::decide`) →
//! `domain/job/decide/field.rs` (`accept_offer`) → `domain/job/state.rs`
//! (apply `OfferAccepted`) → `app/writer.rs` + `store/repo.rs` (hash chain,
//! MAC, the batch function of `migrations/0013_…`) → `read_models/runtime.rs`
//! → `read_models/board.rs`, `schedule.rs`, … (the projections). Shortening
//! this path is issue 17's unfinished part (docs/03).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
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
