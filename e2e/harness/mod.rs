//! The end-to-end harness: plays every scenario of `e2e/scenarios/` against
//! the real `dispatch-api` binary on a real PostgreSQL, one service and one
//! fresh database per scenario (run side by side, printed in order). One
//! line per call; `N passed, N failed` last; exit status 1 on any failure.
//!
//! `cargo test --test e2e` runs it; `cargo test --test e2e -- canonical` runs
//! the scenarios whose name contains `canonical`.

pub mod checks;
pub mod events_out;
pub mod runner;
pub mod scenario;
pub mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The scenario files, sorted (the canonical one first).
fn scenario_files() -> Result<Vec<PathBuf>, String> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/scenarios"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort_by_key(|p| {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (stem != "canonical", stem)
    });
    Ok(files)
}

/// Which scenarios to run, read like libtest reads its arguments (`cargo test
/// NAME`, `--exact`, `--skip NAME`, `--ignored`): a scenario is a test named
/// after its file.
struct Selection {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    only_ignored: bool,
}

impl Selection {
    fn from_args(args: &[String]) -> Selection {
        let mut sel = Selection {
            filters: Vec::new(),
            skip: Vec::new(),
            exact: false,
            only_ignored: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--skip" => sel.skip.extend(it.next().cloned()),
                "--exact" => sel.exact = true,
                "--ignored" => sel.only_ignored = true,
                // libtest options that take a value: not names.
                "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                    it.next();
                }
                other if other.starts_with('-') => {}
                name => sel.filters.push(name.to_string()),
            }
        }
        sel
    }

    fn matches(&self, pattern: &str, name: &str) -> bool {
        if self.exact {
            pattern == name
        } else {
            name.contains(pattern)
        }
    }

    fn wants(&self, name: &str) -> bool {
        !self.only_ignored
            && (self.filters.is_empty() || self.filters.iter().any(|f| self.matches(f, name)))
            && !self.skip.iter().any(|f| self.matches(f, name))
    }
}

/// The test binary's `main`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selection = Selection::from_args(&args);
    let files = match scenario_files() {
        Ok(f) => f,
        Err(e) => {
            println!("FAIL e2e: {e}\n0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let mut scenarios = Vec::new();
    let mut load_failures = 0;
    for f in &files {
        match scenario::Scenario::load(f) {
            Ok(s) => {
                if selection.wants(&s.name) {
                    scenarios.push(s);
                }
            }
            Err(e) => {
                println!("FAIL {}: {e}", f.display());
                load_failures += 1;
            }
        }
    }
    if args.iter().any(|a| a == "--list") {
        for s in &scenarios {
            println!("{}: test", s.name);
        }
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (mut passed, mut failed) = (0, load_failures);
    runtime.block_on(async {
        // Every database first, dropped only at the end (see server::create_database).
        let mut databases = Vec::new();
        for s in &scenarios {
            databases.push(server::create_database(&s.name).await);
        }
        let mut running = Vec::new();
        for (s, db) in scenarios.into_iter().zip(databases) {
            let title = format!("--- {}: {}", s.name, s.title);
            running.push((title, tokio::spawn(runner::run(s, db))));
        }
        let mut to_drop = Vec::new();
        for (title, task) in running {
            println!("{title}");
            match task.await {
                Ok(report) => {
                    for line in &report.lines {
                        println!("{line}");
                    }
                    passed += report.passed;
                    failed += report.failed;
                    to_drop.extend(report.drop_database);
                }
                Err(e) => {
                    println!("FAIL the scenario's task ended: {e}");
                    failed += 1;
                }
            }
        }
        futures::future::join_all(to_drop.iter().map(|name| server::drop_database(name))).await;
    });
    println!("e2e: {:.1} s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
