//! The end-to-end scenarios as a test target (`harness = false`: it prints its
//! own lines and ends with `N passed, N failed`). The harness and the
//! scenarios live in `e2e/`; see `e2e/README.md`.

#[path = "../e2e/harness/mod.rs"]
mod harness;

fn main() -> std::process::ExitCode {
    harness::main()
}
