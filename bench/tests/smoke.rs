//! The benchmark cannot rot: `dispatch-bench --smoke` (tiny sizes) runs
//! every phase against TEST_DATABASE_URL's server and writes a table with
//! every figure. No timing is asserted — only that each figure is produced.
//!
//! It measures the `dispatch-api` binary beside `dispatch-bench` in the
//! target directory: `cargo test` at the repository root builds both (the
//! root package's tests need its binary); `cargo test -p dispatch-bench`
//! alone does not rebuild the service.

use std::process::Command;
use std::time::Instant;

const FIGURES: &[&str] = &[
    "command throughput, 4 clients, vs pgbench",
    "command p99, 4 clients",
    "command throughput, 4 clients, vs stock cqrs-es",
    "projection lag p99, 4 clients",
    "subscription lag p99, 4 clients",
    "webhook lag p99, 4 clients",
    "command throughput, 8 clients, vs pgbench",
    "command p99, 8 clients",
    "command throughput, 8 clients, vs stock cqrs-es",
    "projection lag p99, 8 clients",
    "subscription lag p99, 8 clients",
    "webhook lag p99, 8 clients",
    "peak RSS under the throughput load",
    "strong read p99",
    "audit of a",
    "RSS growth over a",
    "command p99 at",
    "whole-store audit, ",
];

#[test]
fn bench_smoke_writes_every_figure() {
    let server = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("benchmarks.md");
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_dispatch-bench"))
        .args(["--smoke", "--out"])
        .arg(&out)
        .env("DATABASE_URL", &server)
        .env(
            "DISPATCH_SOPS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../sops"),
        )
        .env("DISPATCH_LOG_FORMAT", "pretty")
        .env("RUST_LOG", "warn")
        .env("BENCH_SERVICE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "dispatch-bench --smoke failed:\n{stderr}"
    );
    let table = std::fs::read_to_string(&out).unwrap();
    // The rebuild rows follow the service's own list of read models, so a
    // new model is measured (and missed) without this list being edited.
    let models = dispatch_api::read_models::all();
    let mut figures: Vec<String> = FIGURES.iter().map(|f| f.to_string()).collect();
    figures.push(format!("read-model rebuild, all {} models", models.len()));
    for model in &models {
        figures.push(format!(
            "read-model rebuild, {} alone",
            model.definition().name
        ));
    }
    for figure in &figures {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("| {figure}"))),
            "the table has no `{figure}` row:\n{table}"
        );
    }
    for section in [
        "### Machine",
        "**nproc**",
        "**cpu**",
        "**memory**",
        "**postgresql**",
        "**fsync**",
        "**load average at start",
    ] {
        assert!(
            table.contains(section),
            "the table has no {section}:\n{table}"
        );
    }
    eprintln!(
        "dispatch-bench --smoke ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
