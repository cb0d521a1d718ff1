//! The pure domain's test suite: one integration-test binary.
//!
//! - `transitions`: every row of lifecycle.md's transition table, given/when/then.
//! - `invalid_transitions`: the whole state × command matrix.
//! - `edge_cases`: lifecycle.md's edge cases that are domain matters.
//! - `geofence`: the geofenced check-in over method × site × position × reason.
//! - `approvals`: who decides, self-approval, replacing NTEs, stale approvals.
//! - `destructive`: the agent never ends an ever-offered job alone; duplicate links.
//! - `e2e_story`: the domain path of the canonical end-to-end story.
//! - `technician`: the Technician aggregate.
//! - `registry`: customers, sites, doors and maintenance plans; a plan's schedule.
//! - `sop_loader`: the real SOP library and malformed ones.
//! - `properties`: random command sequences against the invariants.
//!
//! Run with `cargo test --test domain`.

mod support;

mod approvals;
mod destructive;
mod e2e_story;
mod edge_cases;
mod geofence;
mod invalid_transitions;
mod properties;
mod registry;
mod sop_loader;
mod technician;
mod transition_table;
mod transitions;
