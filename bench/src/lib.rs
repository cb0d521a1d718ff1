//! dispatch-bench: every performance figure of
//! `../shared/spec/quality.md`, each against a baseline measured in the same
//! run on the same machine, printed as a table and written with the
//! machine's description to `docs/benchmarks.md`.
//!
//! A crate of its own so that the service never links a load generator: it
//! measures the real `dispatch-api` binary from the outside (`serve` as a
//! child process, found by [`service::locate`]) and uses the service's
//! library only for what a bulk loader and the baselines need (the domain,
//! the hash chain, migrations, the read-model runtime).
//!
//! Phases (`phases/`, one module and one function each; each on its own
//! fresh database on the configured server, dropped at the end unless
//! `--keep`):
//!
//! 1. `throughput`: the whole HTTP stack (the real binary, projectors
//!    running) with 16 and 64 keep-alive clients on the job lifecycle mix,
//!    against `pgbench` inserting one row into an identical events table and
//!    against stock cqrs-es + postgres-es; projection lag under that load
//!    against the NOTIFY round trip; subscription lag (every event published
//!    to NATS JetStream by the service, [`fanout`]) and webhook lag (a
//!    receiver in this process, [`webhook`]) beside it; peak RSS;
//! 2. `reads`: strong read of a 200-event job and audit of a 10,000-event
//!    job, each against a raw SELECT of the same rows;
//! 3. `soak`: a soak at moderate load: RSS growth;
//! 4. `rebuild`: read-model rebuilds over 1 M generated events against a
//!    plain scan;
//! 5. `scale`: command p99 with 10 M events in the store against 10 k; then
//!    the whole-store audit (`dispatch-api audit verify --all`, [`audit`])
//!    over those 10 M events against a plain scan of them.
//!
//! The instruments the phases use: [`clients`] and [`mix`] (the clients'
//! keys and the command mix, shared with the fault suite), [`load`] (the HTTP
//! driver and the lag watcher), [`fanout`] (the run's NATS stream and the
//! subscription-lag watcher), [`webhook`] (the webhook receiver), [`reads`], [`rebuild`], [`audit`], [`generate`] (the
//! bulk loader), [`pgbench`] and [`stock`] (the baselines), [`service`] (the
//! binary under test, its memory and CPU), [`stats`] and [`report`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod clients;
mod databases;
pub mod fanout;
pub mod generate;
pub mod load;
pub mod mix;
pub mod pgbench;
mod phases;
pub mod reads;
pub mod rebuild;
pub mod report;
pub mod service;
mod sizes;
pub mod stats;
pub mod stock;
pub mod webhook;

use std::path::{Path, PathBuf};

use rand::Rng;

use databases::Databases;
use dispatch_api::config::Config;
use phases::{Ctx, Progress};
use report::Machine;
use sizes::Sizes;

/// `dispatch-bench` options (besides the service's own settings, which it
/// reads as `dispatch-api` does: `DATABASE_URL`, `DISPATCH_SOPS_DIR`, …).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Short runs (about 3 minutes): smaller data, shorter loads.
    #[arg(long, conflicts_with = "smoke")]
    pub quick: bool,
    /// Tiny sizes (seconds): only checks that every figure is still produced.
    #[arg(long)]
    pub smoke: bool,
    /// Where to write the results (Markdown). Default: docs/benchmarks.md for
    /// a full run; quick and smoke runs write only when this is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the benchmark's databases afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Run only these phases (for profiling): throughput, reads, soak,
    /// rebuild, scale. The table then lacks the others' figures.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Override the measured seconds of each throughput run (for profiling).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// The NATS server (JetStream on) the service under test publishes every
    /// event to during phases 1–3, on a stream of the run's own deleted at
    /// the end, for the subscription lag. Not reachable: the run goes on
    /// without the fan-out and the lag is reported as not measured.
    #[arg(
        long,
        env = "DISPATCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Measure without the fan-out to NATS (the service publishes nothing).
    #[arg(long)]
    pub no_nats: bool,
    /// Measure without the webhook endpoint (no receiver is registered).
    #[arg(long)]
    pub no_webhooks: bool,
    /// The `dispatch-api` binary to measure. Default: `dispatch-api` beside
    /// this executable (cargo builds both into the same target directory:
    /// `cargo build --release --workspace`).
    #[arg(long, env = "DISPATCH_BENCH_SERVICE_BIN")]
    pub service_bin: Option<PathBuf>,
}

/// Runs the benchmark.
pub async fn run(config: &Config, args: BenchArgs) -> anyhow::Result<()> {
    let load_at_start = report::loadavg();
    let sizes = Sizes::of(&args);
    let progress = Progress::start();
    let service_bin = service::locate(args.service_bin.as_deref())?;
    let server = config
        .database_url
        .clone()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let run_id = format!(
        "{}_{:04x}",
        chrono::Utc::now().format("%m%d%H%M%S"),
        rand::thread_rng().gen::<u16>()
    );
    let mut dbs = Databases {
        server,
        prefix: format!("dispatch_bench_{run_id}"),
        created: Vec::new(),
        keep: args.keep,
    };
    let work = std::env::temp_dir().join(format!("dispatch-bench-{run_id}"));
    std::fs::create_dir_all(&work)?;
    let fanout = if args.no_nats {
        Err("not measured: --no-nats".to_string())
    } else {
        fanout::Fanout::connect(&args.nats_url, &run_id)
            .await
            .map(std::sync::Arc::new)
            .map_err(|e| format!("not measured: {e}"))
    };
    match &fanout {
        Ok(f) => progress.say(format!(
            "fan-out on: the service publishes every event to NATS {} (stream {}, subjects {}.>)",
            f.url, f.stream, f.subject_prefix
        )),
        Err(why) => progress.say(format!("fan-out off, subscription lag {why}")),
    }
    let mut ctx = Ctx::new(config, sizes, progress, &work, service_bin, fanout)?;
    ctx.progress.say(format!(
        "mode {}; load average at start {load_at_start}; {} commands per job; databases {}_*; service {}",
        ctx.sizes.mode,
        ctx.mix.steps_per_job(),
        dbs.prefix,
        ctx.service_bin.display()
    ));
    let mut machine = machine(&dbs, ctx.sizes.mode, &load_at_start).await?;
    // Interrupted: the phase's futures are dropped (the service child is
    // killed with them) and the databases are dropped below.
    let outcome = tokio::select! {
        r = phases::all(&mut ctx, &mut dbs) => r,
        _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = &outcome {
        ctx.failures.push(format!("{e:#}"));
    }
    if args.keep {
        ctx.progress
            .say(format!("keeping databases {}_*", dbs.prefix));
    } else {
        dbs.drop_all().await;
    }
    if let Ok(f) = &ctx.fanout {
        if args.keep {
            ctx.progress
                .say(format!("keeping NATS stream {}", f.stream));
        } else if let Err(e) = f.delete().await {
            ctx.progress.say(e);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    machine
        .lines
        .push(("load average at end (1/5/15 min)".into(), report::loadavg()));
    machine.lines.push((
        "total time".into(),
        format!("{:.0} s", ctx.progress.elapsed().as_secs_f64()),
    ));
    let out = args
        .out
        .clone()
        .or_else(|| (!args.quick && !args.smoke).then(|| PathBuf::from("docs/benchmarks.md")));
    report_results(&ctx, &machine, out.as_deref())
}

/// The machine's description, with the load average taken before the run.
async fn machine(dbs: &Databases, mode: &str, load_at_start: &str) -> anyhow::Result<Machine> {
    let p = databases::pool(&dbs.named("postgres")?, 1).await?;
    let mut machine = report::machine(&p, mode).await;
    p.close().await;
    for (k, v) in machine.lines.iter_mut() {
        if k.starts_with("load average") {
            *v = load_at_start.to_string();
        }
    }
    Ok(machine)
}

/// Prints the table, writes it to `out` (if any) with the CPU notes and the
/// failures, and fails if the run had any.
fn report_results(ctx: &Ctx, machine: &Machine, out: Option<&Path>) -> anyhow::Result<()> {
    let table = report::text_table(&ctx.rows);
    println!("\n{table}");
    let mut extra = String::new();
    if !ctx.cpu_notes.is_empty() {
        extra.push_str("**CPU per command** (user + system time of each process over the whole run, warm-up included, divided by the commands acknowledged; PostgreSQL counts every backend on the server):\n\n");
        for n in &ctx.cpu_notes {
            extra.push_str(&format!("- {n}\n"));
        }
        extra.push('\n');
    }
    if !ctx.failures.is_empty() {
        extra.push_str("**Failures in this run:**\n\n");
        for f in &ctx.failures {
            extra.push_str(&format!("- {}\n", f.replace('\n', " ")));
        }
    }
    if let Some(path) = out {
        report::write(path, machine, &ctx.rows, &extra)?;
        ctx.progress.say(format!("wrote {}", path.display()));
    }
    if !ctx.failures.is_empty() {
        anyhow::bail!("the benchmark had failures:\n{}", ctx.failures.join("\n"));
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
