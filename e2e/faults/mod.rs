//! The fault suite: the reliability cases of `../shared/spec/quality.md` —
//! crash, database outage, races and replicas, graceful shutdown — against
//! the real binary on real PostgreSQL, each checked for exactly-once
//! effects, verified hash chains and read models equal to a fresh rebuild.
//!
//! `cargo test --test faults` runs the quick form (part of `cargo test`);
//! `DISPATCH_FAULTS=full cargo test --release --test faults` the full form,
//! which also writes its figures into `docs/reliability.md`. A case name as
//! an argument runs only the cases whose name contains it.

pub mod cases;
pub mod events_out;
// The benchmark's clients and command mix (the `dispatch-bench` crate),
// compiled into this target too: the suite drives the same workload, and a
// dev-dependency on dispatch-bench would be a cycle (it depends on this
// crate). See docs/decisions.md, "The benchmark in its own crate".
#[allow(dead_code)]
#[path = "../../bench/src/clients.rs"]
pub mod clients;
pub mod load;
#[allow(dead_code)]
#[path = "../../bench/src/mix.rs"]
pub mod mix;
pub mod plans;
pub mod proc;
// The webhook receiver of the API tests (it verifies signatures with its
// own code and answers as scripted).
#[allow(dead_code)]
#[path = "../../tests/api/webhooks/receiver.rs"]
pub mod receiver;
#[allow(dead_code)]
#[path = "../harness/server.rs"]
pub mod server;
pub mod verify;

use std::fmt::Display;
use std::process::ExitCode;
use std::time::Instant;

use cases::Outage;

/// A case's figures, in the order they were measured.
#[derive(Debug, Clone, Default)]
pub struct Figures(pub Vec<(String, String)>);

impl Figures {
    /// Records a figure.
    pub fn put(&mut self, name: &str, value: impl Display) {
        self.0.push((name.to_string(), value.to_string()));
    }
}

/// The sizes of a run.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Concurrent clients (crash, replicas, shutdown).
    pub clients: usize,
    /// Commands acknowledged before the crash case stops.
    pub crash_commands: usize,
    /// A kill every so many milliseconds (uniform range).
    pub kill_every: (u64, u64),
    /// Clients during the outages.
    pub outage_clients: usize,
    /// Seconds of load before, during and after an outage.
    pub outage_before: u64,
    /// Seconds the database is away.
    pub outage_secs: u64,
    /// Seconds of load after the database's return.
    pub outage_after: u64,
    /// The service's request timeout in the outage cases.
    pub request_timeout_secs: u64,
    /// Commands acknowledged in the replicas case.
    pub replica_commands: usize,
    /// Rounds of racing commands.
    pub race_rounds: usize,
    /// Racing commands per round.
    pub race_concurrency: usize,
    /// Milliseconds the shutdown case's load goes on after the restart.
    pub shutdown_after_ms: u64,
    /// Days each step of the plans case's year moves both clocks.
    pub plan_step_days: u32,
    /// `kill -9`s of a replica in the plans case's year.
    pub plan_kills: usize,
}

impl Sizes {
    /// The form `cargo test` runs (about a minute and a half on two busy cores).
    pub fn quick() -> Sizes {
        Sizes {
            mode: "quick",
            clients: 8,
            crash_commands: 1_500,
            kill_every: (400, 1_500),
            outage_clients: 4,
            outage_before: 2,
            outage_secs: 4,
            outage_after: 2,
            request_timeout_secs: 10,
            replica_commands: 1_200,
            race_rounds: 3,
            race_concurrency: 100,
            shutdown_after_ms: 1_000,
            plan_step_days: 3,
            plan_kills: 1,
        }
    }

    /// The form quality.md describes.
    pub fn full() -> Sizes {
        Sizes {
            mode: "full",
            clients: 16,
            crash_commands: 20_000,
            kill_every: (1_000, 4_000),
            outage_clients: 8,
            outage_before: 5,
            outage_secs: 10,
            outage_after: 5,
            request_timeout_secs: 10,
            replica_commands: 10_000,
            race_rounds: 10,
            race_concurrency: 100,
            shutdown_after_ms: 3_000,
            plan_step_days: 1,
            plan_kills: 3,
        }
    }
}

const CASES: [&str; 7] = [
    "crash",
    "outage_stop",
    "outage_terminate",
    "replicas",
    "shutdown",
    "plans",
    "events_out",
];

/// The test binary's `main`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.contains(f.as_str())))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for c in &wanted {
            println!("{c}: test");
        }
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--ignored") {
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let sizes = match std::env::var("DISPATCH_FAULTS").as_deref() {
        Ok("full") => Sizes::full(),
        _ => Sizes::quick(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    let results = runtime.block_on(run(&wanted, &sizes));
    let mut failed = 0;
    for (case, figures, problems) in &results {
        let verdict = if problems.is_empty() { "ok  " } else { "FAIL" };
        println!("{verdict} faults/{case}");
        for (k, v) in &figures.0 {
            println!("       {k}: {v}");
        }
        for p in problems {
            println!("     ! {p}");
        }
        if !problems.is_empty() {
            failed += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("faults ({}): {secs:.1} s", sizes.mode);
    if sizes.mode == "full" && failed == 0 && wanted.len() == CASES.len() {
        match write_docs(&results, &sizes, secs) {
            Ok(path) => println!("figures written to {path}"),
            Err(e) => println!("could not write the figures: {e}"),
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(wanted: &[&str], sizes: &Sizes) -> Vec<(String, Figures, Vec<String>)> {
    let mut out = Vec::new();
    // Every database first, dropped at the end (see server::create_database).
    let mut dbs = Vec::new();
    for case in wanted {
        // PostgreSQL truncates names past 63 bytes: keep the label short.
        let label: String = case.chars().filter(|c| *c != '_').take(12).collect();
        dbs.push(server::create_database(&format!("f_{label}")).await);
    }
    let mut keep = Vec::new();
    for (case, db) in wanted.iter().zip(dbs) {
        let db = match db {
            Ok(d) => d,
            Err(e) => {
                out.push((case.to_string(), Figures::default(), vec![e]));
                continue;
            }
        };
        let dir = match tempfile::Builder::new()
            .prefix("dispatch-faults-")
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => {
                out.push((case.to_string(), Figures::default(), vec![e.to_string()]));
                continue;
            }
        };
        let t = Instant::now();
        let (mut figures, problems) = match *case {
            "crash" => cases::crash(&db.url, dir.path(), sizes).await,
            "outage_stop" => cases::outage(Outage::Stop, None, dir.path(), sizes).await,
            "outage_terminate" => {
                cases::outage(
                    Outage::Terminate,
                    Some((&db.url, &db.name)),
                    dir.path(),
                    sizes,
                )
                .await
            }
            "replicas" => cases::replicas(&db.url, dir.path(), sizes).await,
            "shutdown" => cases::shutdown(&db.url, dir.path(), sizes).await,
            "plans" => plans::plans_case(&db.url, dir.path(), sizes).await,
            "events_out" => events_out::events_out(&db.url, dir.path(), sizes).await,
            other => (Figures::default(), vec![format!("unknown case {other}")]),
        };
        figures.put("case took", format!("{:.1} s", t.elapsed().as_secs_f64()));
        if problems.is_empty() {
            keep.push((db.name.clone(), None));
        } else {
            // Keep what a reader of the failure needs.
            let path = dir.keep();
            println!(
                "faults/{case}: database {} and logs in {} kept",
                db.name,
                path.display()
            );
            keep.push((db.name.clone(), Some(())));
        }
        out.push((case.to_string(), figures, problems));
    }
    for (name, kept) in keep {
        if kept.is_none() {
            server::drop_database(&name).await;
        }
    }
    out
}

/// Writes the figures between the markers of `docs/reliability.md`.
fn write_docs(
    results: &[(String, Figures, Vec<String>)],
    sizes: &Sizes,
    secs: f64,
) -> Result<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reliability.md");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let (begin, end) = ("<!-- faults:begin", "<!-- faults:end -->");
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        return Err(format!("{path} has no faults markers"));
    };
    let b_end = b + text[b..].find("-->").ok_or("unclosed marker")? + 3;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = format!(
        "\n\nLast full run: {} UTC, `{}` mode, {secs:.0} s in all; {cores} cores ({cpu}); \
         release build; PostgreSQL on loopback.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        sizes.mode
    );
    for (case, figures, _) in results {
        md.push_str(&format!(
            "\n**{case}**\n\n| figure | value |\n| --- | --- |\n"
        ));
        for (k, v) in &figures.0 {
            md.push_str(&format!("| {k} | {v} |\n"));
        }
    }
    md.push('\n');
    let new = format!("{}{}{}", &text[..b_end], md, &text[e..]);
    std::fs::write(path, new).map_err(|e| e.to_string())?;
    Ok(path.to_string())
}
