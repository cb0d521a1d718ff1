//! The fault suite as a test target (`harness = false`): crash, database
//! outage, races and replicas, graceful shutdown. The suite lives in
//! `e2e/faults/`; see `docs/reliability.md`.

#[path = "../e2e/faults/mod.rs"]
mod faults;

fn main() -> std::process::ExitCode {
    faults::main()
}
