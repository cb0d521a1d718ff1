//! dispatch-api: the event-sourced enforcement service between an AI dispatch
//! agent and a door-service company's operations.
//!
//! Components, in the direction data flows:
//!
//! - [`domain`] — pure: the `Job` and `Technician` aggregates (cqrs-es), their
//!   commands, events and typed errors, the SOP library and the dispatch
//!   policy. No HTTP, no SQL. Every job command is decided by one function
//!   named after its wire name in `domain/job/decide/{intake,field,closeout,
//!   any_state}.rs`, and each of those files also holds how its phase's
//!   events change the job (its `apply`); `domain/job/aggregate.rs` routes
//!   commands and events to them and applies the destructive rule (an agent
//!   never ends a dispatched job alone); `domain/job/state.rs` is the state
//!   the events build up; `domain/job/transitions.rs` is the state machine
//!   as a table.
//! - [`tools`] — the closed toolset: the allowlist (`tools/allowlist.toml`),
//!   the one gate every transport passes (`tools/gate.rs`: per-key limit,
//!   allowlist, invocation log), the tools' input schemas, the manifest.
//! - [`app`] — what a request does, independent of HTTP: commands
//!   (`app/commands/`: a job command's whole way in `job.rs` — the one door
//!   `App::job_command` with its known-key shortcut, the read–decide–write
//!   runner every command shares, the decision, the write, the answer;
//!   technician commands in `technician.rs`, stored answers in
//!   `idempotency.rs`, the facts a command needs in `facts.rs`), the job
//!   cache (`app/cache.rs`), API keys, the known keys and the gate's key
//!   resolution (`app/keys.rs`), evidence, UI sessions, the technician's
//!   phone (`app/field.rs`: one-time sign-in links, last contact and pending
//!   actions), the chain's signed checkpoints (`app/checkpoints.rs`).
//! - [`store`] — the event store on PostgreSQL: reading streams
//!   (`store/repo.rs`), the one append path in one file (`store/writer.rs`:
//!   `prepare_append` — hash chain, MAC — the write, the group-commit
//!   writer, the call of `dispatch_write_batch`, and `append` for writes
//!   inside a caller's transaction), the answer's position placeholders
//!   (`store/answer.rs`), the SHA-256 chain and its HMAC (`store/chain.rs`),
//!   signed checkpoints, upcasters; its own errors (`StoreError`,
//!   `Refused`).
//! - [`read_models`] — the projector runtime (`read_models/runtime/`: the
//!   global order in `order.rs`, batches applied exactly once with their
//!   checkpoints in `batch.rs`, the table registry in `tables.rs`, rebuilds
//!   into shadow tables in `rebuild.rs`, the live loop in `run.rs`) and one
//!   module per read model.
//! - [`http`] — axum: the router, the gate's middleware (`http/gate.rs`), one
//!   module per resource (`http/jobs.rs`'s route table names every job
//!   command by its wire name), MCP (`http/mcp.rs`), the pages
//!   (`http/pages/`; a job's page and timeline in `http/pages/job/`), the
//!   OpenAPI document (`http/openapi/`: paths, read-model queries, toolset,
//!   components); [`error`] maps every layer's errors to the contract's
//!   codes.
//! - [`timers`] — the system actor (offer expiry, SLA breaches).
//! - [`server`], [`cli`], [`config`], [`db`], [`telemetry`] — wiring.
//! - Not here: the benchmark, a workspace member of its own (`bench/`,
//!   `dispatch-bench`), which drives this crate's binary from the outside;
//!   the service links no load generator.
//!
//! One command's path, `POST /v1/jobs/{id}/commands/accept_offer`, in eight
//! files (*every …*: the hop every command of that kind shares):
//! 1. `http/jobs.rs` — the route table (`JOB_COMMAND_ROUTES`) and
//!    `job_command`: decode, call the door, encode;
//! 2. `http/gate.rs` — *every `/v1` route*: the operation `accept_offer`,
//!    the key, the rate limit, the allowlist, the invocation record;
//! 3. `app/commands/job.rs` — the door `App::job_command`, the runner
//!    (*every command*: stored answer or stream), `decide_job`, the write,
//!    the answer;
//! 4. `domain/job/aggregate.rs` — *every job command*: `Job::decide` and
//!    the destructive rule, `Job::apply`, each routed by phase;
//! 5. `domain/job/decide/field.rs` — `accept_offer` and the `apply` of
//!    `OfferAccepted`;
//! 6. `store/writer.rs` — *every append*: prepare (hash chain, MAC), group
//!    commit, `dispatch_write_batch` (migration 0015);
//! 7. `read_models/runtime/batch.rs` — *every event*: read in global order,
//!    each read model's batch applied with its checkpoint;
//! 8. `read_models/jobs.rs` — *every job event*: the jobs folded with
//!    `Job::apply` (so `OfferAccepted`'s projection is step 5's `apply`);
//!    the board, schedule and billing render their rows from that fold.
//!
//! docs/03, "One command's path", lists the same files and what the path
//! calls without one of them being opened.
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
pub mod subscriptions;
pub mod telemetry;
pub mod timers;
pub mod tools;
