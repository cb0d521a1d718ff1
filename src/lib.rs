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
//! - [`app`] — what a request does, independent of HTTP: commands
//!   (`app/commands/`: the read–decide–write runner in `mod.rs`, stored
//!   answers in `idempotency.rs`, the facts a command needs in `facts.rs`,
//!   job and technician commands in `job.rs` and `technician.rs`, and the
//!   one door of a job command, `App::job_command`, with its known-key
//!   shortcut in `fast_path.rs`), the job cache (`app/cache.rs`), API keys
//!   and the known keys (`app/keys.rs`), evidence, UI sessions, the
//!   chain's signed checkpoints (`app/checkpoints.rs`).
//! - [`store`] — the event store on PostgreSQL: reading streams and
//!   preparing appends (`store/repo.rs`), the one append path
//!   (`store/batch.rs`: `dispatch_write_batch`, used by the group-commit
//!   writer `store/writer.rs` and by `store::append`), the answer's
//!   position placeholders (`store/answer.rs`), the SHA-256 chain and its
//!   HMAC (`store/chain.rs`), signed checkpoints, upcasters; its own errors
//!   (`StoreError`, `Refused`).
//! - [`read_models`] — the projector runtime (`read_models/runtime/`: the
//!   global order in `order.rs`, batches applied exactly once with their
//!   checkpoints in `batch.rs`, the table registry in `tables.rs`, rebuilds
//!   into shadow tables in `rebuild.rs`, the live loop in `run.rs`) and one
//!   module per read model.
//! - [`http`] — axum: the router, the gate's middleware (`http/gate.rs`), one
//!   module per resource, MCP (`http/mcp.rs`), the pages (`http/pages/`; a
//!   job's page and timeline in `http/pages/job/`), the OpenAPI document
//!   (`http/openapi/`: paths, read-model queries, toolset, components);
//!   [`error`] maps every layer's errors to the contract's codes.
//! - [`timers`] — the system actor (offer expiry, SLA breaches).
//! - [`server`], [`cli`], [`config`], [`db`], [`telemetry`] — wiring.
//! - Not here: the benchmark, a workspace member of its own (`bench/`,
//!   `dispatch-bench`), which drives this crate's binary from the outside;
//!   the service links no load generator.
//!
//! One command's path, `POST /v1/jobs/{id}/commands/accept_offer`:
//! `http/jobs.rs` (route table) → `http/gate.rs` (key, limit, allowlist,
//! log) → `http/jobs.rs` (`job_command`: decode, call, encode) →
//! `app/commands/fast_path.rs` (`App::job_command`, the one door) →
//! `app/commands/job.rs` (stored answer or stream or job cache, facts,
//! decide, answer) → `domain/job/aggregate.rs` (`Job::decide`) →
//! `domain/job/decide/field.rs` (`accept_offer`) → `domain/job/state.rs`
//! (apply `OfferAccepted`) → `store/repo.rs` (`prepare_append`: hash chain,
//! MAC) → `store/writer.rs` + `store/batch.rs` (group commit, the batch
//! function of `migrations/0015_…`) → `read_models/runtime.rs` →
//! `read_models/board.rs`, `schedule.rs`, … (the projections). docs/03,
//! "One command's path", lists the same hops.
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
