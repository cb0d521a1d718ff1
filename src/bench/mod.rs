//! `dispatch-api bench`: every performance figure of
//! `../shared/spec/quality.md`, each against a baseline measured in the same
//! run on the same machine, printed as a table and written with the
//! machine's description to `docs/benchmarks.md`.
//!
//! Phases (each on its own fresh database on the configured server, dropped
//! at the end unless `--keep`):
//!
//! 1. throughput and latency of the whole HTTP stack (the real binary,
//!    projectors running) with 16 and 64 keep-alive clients on the job
//!    lifecycle mix, against `pgbench` inserting one row into an identical
//!    events table and against stock cqrs-es + postgres-es; projection lag
//!    under that load against the NOTIFY round trip; peak RSS;
//! 2. strong read of a 200-event job and audit of a 10,000-event job, each
//!    against a raw SELECT of the same rows;
//! 3. a soak at moderate load: RSS growth;
//! 4. read-model rebuilds over 1 M generated events against a plain scan;
//! 5. command p99 with 10 M events in the store against 10 k.

pub mod generate;
pub mod load;
pub mod mix;
pub mod pgbench;
pub mod reads;
pub mod rebuild;
pub mod report;
pub mod service;
pub mod stats;
pub mod stock;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::Config;
use crate::domain::sop::SopLibrary;
use load::{Identity, LoadSpec};
use mix::MixSpec;
use report::{Bar, Row};
use service::Service;

/// `dispatch-api bench` options.
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
}

/// Sizes and durations of one mode.
#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    warmup: Duration,
    measure: Duration,
    clients: [usize; 2],
    rebuild_events: u64,
    audit_events: u64,
    audit_runs: usize,
    read_events: usize,
    read_samples: usize,
    soak: Duration,
    soak_clients: usize,
    soak_rate: f64,
    scale_small: u64,
    scale_large: u64,
    scale_clients: usize,
    scale_rate: f64,
    scale_warmup: Duration,
    scale_measure: Duration,
    interleave: usize,
    per_tx: u64,
    only: Vec<String>,
}

impl Sizes {
    fn wants(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

impl Sizes {
    fn of(args: &BenchArgs) -> Sizes {
        let s = Duration::from_secs_f64;
        if args.smoke {
            Sizes {
                mode: "smoke",
                warmup: s(0.2),
                measure: s(0.8),
                clients: [4, 8],
                rebuild_events: 2_000,
                audit_events: 300,
                audit_runs: 2,
                read_events: 20,
                read_samples: 10,
                soak: s(1.0),
                soak_clients: 4,
                soak_rate: 80.0,
                scale_small: 1_000,
                scale_large: 3_000,
                scale_clients: 4,
                scale_rate: 80.0,
                scale_warmup: s(0.2),
                scale_measure: s(0.8),
                interleave: 50,
                per_tx: 100_000,
                only: Vec::new(),
            }
        } else if args.quick {
            Sizes {
                mode: "quick",
                warmup: s(2.0),
                measure: s(8.0),
                clients: [16, 64],
                rebuild_events: 200_000,
                audit_events: 10_000,
                audit_runs: 5,
                read_events: 200,
                read_samples: 300,
                soak: s(20.0),
                soak_clients: 8,
                soak_rate: 300.0,
                scale_small: 10_000,
                scale_large: 1_000_000,
                scale_clients: 8,
                scale_rate: 400.0,
                scale_warmup: s(2.0),
                scale_measure: s(8.0),
                interleave: 200,
                per_tx: 250_000,
                only: Vec::new(),
            }
        } else {
            Sizes {
                mode: "full",
                warmup: s(5.0),
                measure: s(30.0),
                clients: [16, 64],
                rebuild_events: 1_000_000,
                audit_events: 10_000,
                audit_runs: 7,
                read_events: 200,
                read_samples: 2_000,
                soak: s(600.0),
                soak_clients: 8,
                soak_rate: 300.0,
                scale_small: 10_000,
                scale_large: 10_000_000,
                scale_clients: 8,
                scale_rate: 400.0,
                scale_warmup: s(5.0),
                scale_measure: s(30.0),
                interleave: 200,
                per_tx: 500_000,
                only: Vec::new(),
            }
        }
    }
}

/// Progress on stderr with the time since start.
struct Progress(Instant);

impl Progress {
    fn say(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[bench {:>7.1}s] {}",
            self.0.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }
}

/// The benchmark's databases on one server.
struct Databases {
    server: String,
    prefix: String,
    created: Vec<String>,
    keep: bool,
}

impl Databases {
    fn named(&self, database: &str) -> anyhow::Result<String> {
        let mut u = url::Url::parse(&self.server).context("the server URL")?;
        u.set_path(database);
        Ok(u.to_string())
    }

    fn url(&self, suffix: &str) -> anyhow::Result<String> {
        self.named(&format!("{}_{suffix}", self.prefix))
    }

    async fn admin(&self) -> anyhow::Result<sqlx::PgConnection> {
        let opts = PgConnectOptions::from_str(&self.server)?
            .database("postgres")
            .disable_statement_logging();
        opts.connect().await.context("cannot connect to PostgreSQL")
    }

    /// Creates `<prefix>_<suffix>` and returns its URL.
    async fn create(&mut self, suffix: &str) -> anyhow::Result<String> {
        let name = format!("{}_{suffix}", self.prefix);
        let mut c = self.admin().await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await?;
        c.close().await.ok();
        self.created.push(name);
        self.url(suffix)
    }

    async fn drop_one(&mut self, suffix: &str) -> anyhow::Result<()> {
        if self.keep {
            return Ok(());
        }
        let name = format!("{}_{suffix}", self.prefix);
        let mut c = self.admin().await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await?;
        c.close().await.ok();
        self.created.retain(|n| n != &name);
        Ok(())
    }

    async fn drop_all(&mut self) {
        let names = std::mem::take(&mut self.created);
        if let Ok(mut c) = self.admin().await {
            for n in names {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            }
        }
    }
}

/// A pool whose sessions are set up as the service's are (`db::connect_options`).
async fn pool(url: &str, n: u32) -> anyhow::Result<PgPool> {
    let opts = crate::db::connect_options(url)?;
    Ok(PgPoolOptions::new()
        .max_connections(n)
        .connect_with(opts)
        .await?)
}

async fn migrated(url: &str, n: u32) -> anyhow::Result<PgPool> {
    let p = pool(url, n).await?;
    crate::db::migrate(&p).await?;
    Ok(p)
}

async fn checkpoint(pool: &PgPool) {
    let _ = sqlx::query("CHECKPOINT").execute(pool).await;
}

fn ms(s: &stats::Summary) -> String {
    format!(
        "p50 {:.1} / p95 {:.1} / p99 {:.1} ms (n={})",
        s.p50, s.p95, s.p99, s.count
    )
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

/// Shared state of a run.
struct Ctx {
    sizes: Sizes,
    sops: Arc<SopLibrary>,
    sops_dir: PathBuf,
    mix: MixSpec,
    work: PathBuf,
    /// The run's chain keyring file (the services read it).
    keyring: PathBuf,
    /// The service's connections: its pool and its writers.
    connections: (u32, u32),
    progress: Progress,
    gen: Arc<generate::Generator>,
    rows: Vec<Row>,
    failures: Vec<String>,
    cpu_notes: Vec<String>,
}

/// Runs the benchmark.
pub async fn run(config: &Config, args: BenchArgs) -> anyhow::Result<()> {
    let load_at_start = report::loadavg();
    let mut sizes = Sizes::of(&args);
    if let Some(secs) = args.seconds {
        sizes.measure = Duration::from_secs_f64(secs);
    }
    sizes.only = args.only.clone();
    let progress = Progress(Instant::now());
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
    let sops_dir = std::fs::canonicalize(&config.sops_dir)
        .with_context(|| format!("the SOP library at {}", config.sops_dir.display()))?;
    let sops = Arc::new(SopLibrary::load(&sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mix = MixSpec::from_library(&sops)?;
    // One chain keyring for the run: the bulk loader keys its events with it
    // and every service started reads it (DISPATCH_CHAIN_KEYS_FILE).
    let keys = crate::store::chain::ChainKeys::generate();
    let keyring = work.join("chain-keyring.toml");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(&keyring)?.write_all(keys.to_toml().as_bytes())?;
    }
    let gen = Arc::new(generate::Generator::new(
        sops.clone(),
        &mix,
        24,
        100,
        Arc::new(keys),
    )?);
    progress.say(format!(
        "mode {}; load average at start {load_at_start}; {} commands per job; databases {}_*",
        sizes.mode,
        mix.steps_per_job(),
        dbs.prefix
    ));
    let mut machine = {
        let p = pool(&dbs.named("postgres")?, 1).await?;
        let m = report::machine(&p, sizes.mode).await;
        p.close().await;
        m
    };
    for (k, v) in machine.lines.iter_mut() {
        if k.starts_with("load average") {
            *v = load_at_start.clone();
        }
    }
    let mut ctx = Ctx {
        sizes,
        sops,
        sops_dir,
        mix,
        work: work.clone(),
        keyring,
        connections: (config.db_pool_size, config.db_writers),
        progress,
        gen,
        rows: Vec::new(),
        failures: Vec::new(),
        cpu_notes: Vec::new(),
    };
    // Interrupted: the phase's futures are dropped (the service child is
    // killed with them) and the databases are dropped below.
    let outcome = tokio::select! {
        r = phases(&mut ctx, &mut dbs) => r,
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
    let _ = std::fs::remove_dir_all(&work);
    machine
        .lines
        .push(("load average at end (1/5/15 min)".into(), report::loadavg()));
    machine.lines.push((
        "total time".into(),
        format!("{:.0} s", ctx.progress.0.elapsed().as_secs_f64()),
    ));
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
    let out = args
        .out
        .clone()
        .or_else(|| (!args.quick && !args.smoke).then(|| PathBuf::from("docs/benchmarks.md")));
    if let Some(path) = out {
        report::write(&path, &machine, &ctx.rows, &extra)?;
        ctx.progress.say(format!("wrote {}", path.display()));
    }
    if !ctx.failures.is_empty() {
        anyhow::bail!("the benchmark had failures:\n{}", ctx.failures.join("\n"));
    }
    Ok(())
}

async fn phases(ctx: &mut Ctx, dbs: &mut Databases) -> anyhow::Result<()> {
    let max_clients = ctx.sizes.clients[1].max(ctx.sizes.soak_clients);
    // ---- setup: the service's database, the pgbench and stock databases.
    let main_url = dbs.create("main").await?;
    let main = migrated(&main_url, 4).await?;
    let mut ids = load::create_identities(&main, max_clients).await?;
    let svc = Service::start(
        &main_url,
        &ctx.sops_dir,
        &ctx.work.join("main"),
        &ctx.keyring,
        ctx.connections,
    )
    .await?;
    ctx.progress
        .say(format!("service up at {} (pid {})", svc.base, svc.pid));
    load::prepare(&svc.base, &mut ids, &ctx.mix).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = svc.memory_kb().map(|m| m.0 as f64 / 1024.0);
    let pgb_url = dbs.create("pgbench").await?;
    migrated(&pgb_url, 1).await?.close().await;
    let (sample_payload, sample_meta) = ctx.gen.sample_row();
    let script = pgbench::write_script(&ctx.work, &sample_payload, &sample_meta)?;
    let have_pgbench = pgbench::available();
    let stock_url = dbs.create("stock").await?;
    {
        let p = pool(&stock_url, 1).await?;
        stock::create_schema(&p).await?;
        p.close().await;
    }
    let services = crate::domain::job::JobServices {
        sops: ctx.sops.clone(),
        policy: Arc::new(crate::domain::policy::DispatchPolicy::default()),
    };

    // ---- 1. throughput, latency, lag.
    let rounds: &[usize] = if ctx.sizes.wants("throughput") {
        &ctx.sizes.clients.clone()
    } else {
        &[]
    };
    for (round, &clients) in rounds.iter().enumerate() {
        checkpoint(&main).await;
        ctx.progress.say(format!(
            "HTTP: {clients} clients, {:.0} s",
            ctx.sizes.measure.as_secs_f64()
        ));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(load::watch_lag(main.clone(), rx, Duration::from_secs(15)));
        let (stop_probe, probe_rx) = tokio::sync::watch::channel(false);
        let probe = tokio::spawn(load::notify_probe(main.clone(), probe_rx));
        let spec = LoadSpec {
            tag: format!("t{round}"),
            clients,
            warmup: ctx.sizes.warmup,
            measure: ctx.sizes.measure,
            rate: None,
        };
        let cpu0 = service::CpuMeter::now(Some(svc.pid));
        let ours = load::run(&svc.base, &ids, &ctx.mix, &spec, Some(tx)).await?;
        let ours_cpu = service::CpuMeter::now(Some(svc.pid)).per_op_ms(&cpu0, ours.all_ok);
        let _ = stop_probe.send(true);
        let lag = watcher.await??;
        let probe = probe.await??;
        let s = ours.latencies.summary();
        ctx.progress.say(format!(
            "HTTP {clients}: {:.0} cmd/s, {}, {} errors{}",
            ours.throughput,
            ms(&s),
            ours.errors,
            if ours.first_errors.is_empty() {
                String::new()
            } else {
                format!(" (first: {})", ours.first_errors[0])
            }
        ));
        ctx.progress.say(format!(
            "HTTP {clients}: CPU per command: service {:.3} ms, postgres {:.3} ms, load driver {:.3} ms",
            ours_cpu.0, ours_cpu.1, ours_cpu.2
        ));
        ctx.cpu_notes.push(format!(
            "{clients} clients, full stack: service {:.3} ms, PostgreSQL {:.3} ms, load driver {:.3} ms of CPU per command",
            ours_cpu.0, ours_cpu.1, ours_cpu.2
        ));
        if ours.errors > 0 {
            ctx.failures.push(format!(
                "HTTP {clients} clients: {} failed commands: {:?}",
                ours.errors, ours.first_errors
            ));
            for p in svc.log_problems() {
                ctx.progress.say(format!("service: {p}"));
            }
        }
        let l = lag.lag.summary();
        ctx.progress.say(format!(
            "lag {clients}: {} ({} unresolved)",
            ms(&l),
            lag.unresolved
        ));

        let pg = if have_pgbench {
            checkpoint(&main).await;
            ctx.progress.say(format!("pgbench: {clients} clients"));
            match pgbench::run(
                &pgb_url,
                &script,
                clients,
                ctx.sizes.measure.as_secs_f64().round() as u64,
                &ctx.work.join("pgblog"),
            )
            .await
            {
                Ok(r) => {
                    ctx.progress.say(format!(
                        "pgbench {clients}: {:.0} tps, {}",
                        r.tps,
                        ms(&r.latencies.summary())
                    ));
                    Some(r)
                }
                Err(e) => {
                    ctx.failures.push(format!("pgbench {clients}: {e:#}"));
                    None
                }
            }
        } else {
            ctx.failures.push("pgbench is not installed".into());
            None
        };

        checkpoint(&main).await;
        ctx.progress
            .say(format!("stock cqrs-es + postgres-es: {clients} clients"));
        // Its own pool for the run (closed after, so that pgbench can open all its connections).
        let stock_pool = pool(&stock_url, ctx.connections.0).await?;
        let cpu0 = service::CpuMeter::now(None);
        let st = stock::run(
            stock_pool.clone(),
            services.clone(),
            &ctx.mix,
            &format!("s{round}"),
            clients,
            ctx.sizes.warmup,
            ctx.sizes.measure,
        )
        .await?;
        let stock_cpu = service::CpuMeter::now(None).per_op_ms(&cpu0, st.all_ok);
        stock_pool.close().await;
        ctx.progress.say(format!(
            "stock {clients}: {:.0} cmd/s, {}, {} errors",
            st.throughput,
            ms(&st.latencies.summary()),
            st.errors
        ));
        ctx.progress.say(format!(
            "stock {clients}: CPU per command: postgres {:.3} ms, framework (in this process) {:.3} ms",
            stock_cpu.1, stock_cpu.2
        ));
        ctx.cpu_notes.push(format!(
            "{clients} clients, stock cqrs-es: PostgreSQL {:.3} ms, framework {:.3} ms of CPU per command",
            stock_cpu.1, stock_cpu.2
        ));
        if st.errors > 0 {
            ctx.failures.push(format!(
                "stock {clients} clients: {} failed commands: {:?}",
                st.errors, st.first_errors
            ));
        }

        let pg_p99 = pg.as_ref().map(|p| p.latencies.summary());
        ctx.rows.push(Row {
            figure: format!("command throughput, {clients} clients, vs pgbench"),
            value: Some(ours.throughput),
            unit: "cmd/s",
            baseline: pg.as_ref().map(|p| p.tps),
            baseline_label: "pgbench one-row insert, tps".into(),
            bar: if round == 0 {
                Bar::RatioAtLeast(0.25)
            } else {
                Bar::None
            },
            note: format!(
                "{} commands in {:.0} s; goal ≥ 0.50×",
                ours.ok,
                ctx.sizes.measure.as_secs_f64()
            ),
        });
        ctx.rows.push(Row {
            figure: format!("command p99, {clients} clients"),
            value: Some(s.p99),
            unit: "ms",
            baseline: pg_p99.map(|p| p.p99),
            baseline_label: "pgbench insert p99, ms".into(),
            bar: if round == 0 {
                Bar::ValueAtMost(50.0)
            } else {
                Bar::None
            },
            note: format!(
                "p50 {:.1} / p95 {:.1} ms; stock p99 {:.1} ms",
                s.p50,
                s.p95,
                st.latencies.summary().p99
            ),
        });
        ctx.rows.push(Row {
            figure: format!("command throughput, {clients} clients, vs stock cqrs-es"),
            value: Some(ours.throughput),
            unit: "cmd/s",
            baseline: Some(st.throughput),
            baseline_label: "stock cqrs-es + postgres-es, cmd/s".into(),
            bar: Bar::RatioAtLeast(1.0),
            note: "same mix, stock without HTTP; goal ≥ 2×".into(),
        });
        ctx.rows.push(Row {
            figure: format!("projection lag p99, {clients} clients"),
            value: Some(l.p99),
            unit: "ms",
            baseline: Some(probe.summary().p99),
            baseline_label: "NOTIFY round trip p99 under the same load, ms".into(),
            bar: Bar::ValueAtMost(500.0),
            note: format!(
                "p50 {:.1} ms, n={}, unresolved {}; goal ≤ 100 ms",
                l.p50, l.count, lag.unresolved
            ),
        });
    }
    let peak = svc.memory_kb().map(|m| m.1 as f64 / 1024.0);
    dbs.drop_one("stock").await?;
    dbs.drop_one("pgbench").await?;
    ctx.rows.push(Row {
        figure: "peak RSS under the throughput load".into(),
        value: peak,
        unit: "MB",
        baseline: idle_rss,
        baseline_label: "RSS idle after start, MB".into(),
        bar: Bar::ValueAtMost(200.0),
        note: "VmHWM of the service process; goal ≤ 80 MB".into(),
    });

    if ctx.sizes.wants("reads") {
        // ---- 2. strong read and audit.
        ctx.progress.say(format!(
            "strong read: building a {}-event job over HTTP",
            ctx.sizes.read_events
        ));
        let read_job =
            reads::build_long_job(&svc.base, &ids[0], ctx.sizes.read_events, "read").await?;
        let (ours, raw) = reads::strong_read(
            &svc.base,
            &ids[0].desk,
            &main,
            &read_job,
            ctx.sizes.read_samples,
        )
        .await?;
        let (o, r) = (ours.summary(), raw.summary());
        ctx.progress
            .say(format!("strong read: {} vs raw select {}", ms(&o), ms(&r)));
        ctx.rows.push(Row {
            figure: format!("strong read p99, {}-event job", ctx.sizes.read_events),
            value: Some(o.p99),
            unit: "ms",
            baseline: Some(r.p99),
            baseline_label: "raw SELECT of the same rows p99, ms".into(),
            bar: Bar::ValueAtMost(20.0),
            note: format!(
                "GET /v1/jobs/{{id}}, p50 {:.2} ms, n={}; goal ≤ 5 ms",
                o.p50, o.count
            ),
        });
        let g = ctx.gen.long_job(&main, ctx.sizes.audit_events).await?;
        let audit_job = g.job_id.clone().unwrap_or_default();
        ctx.progress.say(format!(
            "audit: generated a {}-event job in {:.2} s",
            g.events, g.seconds
        ));
        let (ours, raw) = reads::audit(
            &svc.base,
            &ids[0].desk,
            &main,
            &audit_job,
            ctx.sizes.audit_events,
            ctx.sizes.audit_runs,
        )
        .await?;
        let (o, r) = (ours.summary(), raw.summary());
        ctx.progress
            .say(format!("audit: {} vs raw select {}", ms(&o), ms(&r)));
        ctx.rows.push(Row {
            figure: format!("audit of a {}-event job", ctx.sizes.audit_events),
            value: Some(o.p50),
            unit: "ms",
            baseline: Some(r.p50),
            baseline_label: "raw SELECT of the same rows, ms".into(),
            bar: Bar::ValueAtMost(200.0),
            note: format!(
                "GET …/audit verified; median of {} (max {:.1} ms); goal ≤ 50 ms",
                o.count, o.max
            ),
        });
    }
    if ctx.sizes.wants("soak") {
        // ---- 3. soak: RSS growth at moderate load.
        ctx.progress.say(format!(
            "soak: {} clients at {:.0} cmd/s for {:.0} s",
            ctx.sizes.soak_clients,
            ctx.sizes.soak_rate,
            ctx.sizes.soak.as_secs_f64()
        ));
        let pid = svc.pid;
        let soak_warm = ctx.sizes.soak.mul_f64(0.05);
        let (stop_sampler, sampler_rx) = tokio::sync::watch::channel(false);
        let every = (ctx.sizes.soak / 30).max(Duration::from_millis(100));
        let sampler = tokio::spawn(async move {
            let mut out = Vec::new();
            tokio::time::sleep(soak_warm).await;
            while !*sampler_rx.borrow() {
                if let Some((rss, _)) = service::memory_kb(pid) {
                    out.push(rss as f64 / 1024.0);
                }
                tokio::time::sleep(every).await;
            }
            if let Some((rss, _)) = service::memory_kb(pid) {
                out.push(rss as f64 / 1024.0);
            }
            out
        });
        let spec = LoadSpec {
            tag: "soak".into(),
            clients: ctx.sizes.soak_clients,
            warmup: soak_warm,
            measure: ctx.sizes.soak - soak_warm,
            rate: Some(ctx.sizes.soak_rate),
        };
        let soak = load::run(&svc.base, &ids, &ctx.mix, &spec, None).await?;
        let _ = stop_sampler.send(true);
        let rss = sampler.await?;
        let (first, last) = (rss.first().copied(), rss.last().copied());
        let max = rss.iter().copied().fold(0.0, f64::max);
        ctx.progress.say(format!(
            "soak: {:.0} cmd/s, {}, RSS {:.1} → {:.1} MB (max {:.1})",
            soak.throughput,
            ms(&soak.latencies.summary()),
            first.unwrap_or(0.0),
            last.unwrap_or(0.0),
            max
        ));
        if soak.errors > 0 {
            ctx.failures.push(format!(
                "soak: {} failed commands: {:?}",
                soak.errors, soak.first_errors
            ));
        }
        let growth = match (first, last) {
            (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
            _ => None,
        };
        ctx.rows.push(Row {
            figure: format!(
                "RSS growth over a {:.0} s soak",
                ctx.sizes.soak.as_secs_f64()
            ),
            value: growth,
            unit: "%",
            baseline: first,
            baseline_label: "RSS at the soak's start, MB".into(),
            bar: Bar::ValueAtMost(10.0),
            note: format!(
                "{} clients at {:.0} cmd/s ({} commands); end {:.1} MB, max {:.1} MB; goal ≤ 2 %",
                ctx.sizes.soak_clients,
                ctx.sizes.soak_rate,
                soak.ok,
                last.unwrap_or(0.0),
                max
            ),
        });
    }
    svc.stop().await?;
    main.close().await;
    dbs.drop_one("main").await?;

    if ctx.sizes.wants("rebuild") {
        // ---- 4. rebuild.
        let n = ctx.sizes.rebuild_events;
        ctx.progress.say(format!("rebuild: generating {n} events"));
        let rb_url = dbs.create("rebuild").await?;
        let rb = migrated(&rb_url, 4).await?;
        ctx.gen.register_technicians(&rb).await?;
        let g = {
            let p = &ctx.progress;
            ctx.gen
                .jobs(&rb, n, ctx.sizes.interleave, ctx.sizes.per_tx, |w| {
                    p.say(format!("  … {w} events"))
                })
                .await?
        };
        ctx.progress.say(format!(
            "rebuild: generated {} events ({} jobs) in {:.1} s ({:.0} events/s)",
            g.events,
            g.jobs,
            g.seconds,
            g.events as f64 / g.seconds
        ));
        let _ = sqlx::query("VACUUM ANALYZE").execute(&rb).await;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&rb)
            .await?;
        let rt = rebuild::runtime(&rb, ctx.sops.clone()).await?;
        let res = {
            let p = &ctx.progress;
            rebuild::measure(&rb, &rt, total as u64, |m| p.say(format!("rebuild: {m}"))).await?
        };
        ctx.rows.push(Row {
            figure: format!(
                "read-model rebuild, all {} models, {} events",
                res.per_model.len(),
                total
            ),
            value: Some(res.all_rate),
            unit: "events/s",
            baseline: Some(res.scan_rate),
            baseline_label: "plain SELECT * FROM events, rows/s".into(),
            bar: Bar::ValueAtLeast(50_000.0),
            note: format!(
                "{:.1} s; store events per second with every model rebuilt; goal ≥ 0.25× the scan",
                res.all_seconds
            ),
        });
        for (name, rate) in &res.per_model {
            ctx.rows.push(Row {
                figure: format!("read-model rebuild, {name} alone"),
                value: Some(*rate),
                unit: "events/s",
                baseline: Some(res.scan_rate),
                baseline_label: "plain SELECT * FROM events, rows/s".into(),
                bar: Bar::None,
                note: String::new(),
            });
        }
        rb.close().await;
        dbs.drop_one("rebuild").await?;
    }
    if !ctx.sizes.wants("scale") {
        return Ok(());
    }
    // ---- 5. scale: command p99 with many events against few.
    scale(ctx, dbs).await
}

async fn scale(ctx: &mut Ctx, dbs: &mut Databases) -> anyhow::Result<()> {
    let (small, large) = (ctx.sizes.scale_small, ctx.sizes.scale_large);
    ctx.progress.say(format!("scale: {small} events"));
    let url = dbs.create("scale").await?;
    let db = migrated(&url, 4).await?;
    let mut ids = load::create_identities(&db, ctx.sizes.scale_clients).await?;
    rebuild::runtime(&db, ctx.sops.clone()).await?;
    ctx.gen.register_technicians(&db).await?;
    ctx.gen
        .jobs(&db, small, ctx.sizes.interleave, ctx.sizes.per_tx, |_| {})
        .await?;
    let _ = sqlx::query("VACUUM ANALYZE").execute(&db).await;
    // Both runs start from a checkpoint: neither measures the write-back of
    // the bulk load before it.
    sqlx::query("CHECKPOINT").execute(&db).await?;
    generate::mark_projected(&db).await?;
    let few = scale_load(ctx, &url, &mut ids, true, "small").await?;
    let f = few.latencies.summary();
    let at_small: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await?;
    ctx.progress
        .say(format!("scale: {at_small} events in the store: {}", ms(&f)));
    let extra = large.saturating_sub(at_small as u64);
    ctx.progress
        .say(format!("scale: bulk-loading {extra} more events"));
    let g = {
        let p = &ctx.progress;
        ctx.gen
            .jobs(&db, extra, ctx.sizes.interleave, ctx.sizes.per_tx, |w| {
                p.say(format!("  … {w} events"))
            })
            .await?
    };
    ctx.progress.say(format!(
        "scale: loaded {} events in {:.1} s ({:.0} events/s); VACUUM ANALYZE",
        g.events,
        g.seconds,
        g.events as f64 / g.seconds
    ));
    let t = Instant::now();
    sqlx::query("VACUUM ANALYZE").execute(&db).await?;
    sqlx::query("CHECKPOINT").execute(&db).await?;
    generate::mark_projected(&db).await?;
    chain_checkpoints(ctx, &db).await?;
    let at_large: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await?;
    ctx.progress.say(format!(
        "scale: vacuumed in {:.1} s; {at_large} events in the store",
        t.elapsed().as_secs_f64()
    ));
    let many = scale_load(ctx, &url, &mut ids, false, "large").await?;
    let m = many.latencies.summary();
    ctx.progress
        .say(format!("scale: {at_large} events in the store: {}", ms(&m)));
    for (label, r) in [("small", &few), ("large", &many)] {
        if r.errors > 0 {
            ctx.failures.push(format!(
                "scale {label}: {} failed commands: {:?}",
                r.errors, r.first_errors
            ));
        }
    }
    ctx.rows.push(Row {
        figure: format!(
            "command p99 at {} events vs {}",
            human(at_large as u64),
            human(at_small as u64)
        ),
        value: Some(m.p99),
        unit: "ms",
        baseline: Some(f.p99),
        baseline_label: format!("p99 at {} events, ms", human(at_small as u64)),
        bar: Bar::RatioAtMost(1.5),
        note: format!(
            "{} clients at {:.0} cmd/s for {:.0} s; p50 {:.1} vs {:.1} ms; goal ≤ 1.1×",
            ctx.sizes.scale_clients,
            ctx.sizes.scale_rate,
            ctx.sizes.scale_measure.as_secs_f64(),
            m.p50,
            f.p50
        ),
    });
    db.close().await;
    dbs.drop_one("scale").await?;
    Ok(())
}

/// Writes the chain's signed checkpoints over the bulk-loaded events into the
/// scale service's evidence store, as a service running while they arrived
/// would have (like `mark_projected` for the read models): the large run
/// measures a store of that size, not the catch-up of a backlog written
/// behind the service's back.
async fn chain_checkpoints(ctx: &Ctx, db: &sqlx::PgPool) -> anyhow::Result<()> {
    let keys = crate::store::chain::ChainKeys::from_toml(&std::fs::read_to_string(&ctx.keyring)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store =
        crate::app::evidence::EvidenceStore::local(&ctx.work.join("scale").join("evidence"))?;
    let (index, _) = crate::app::checkpoints::load_index(&store, &keys).await?;
    let t = Instant::now();
    let written = crate::app::checkpoints::Checkpoints::new(index)
        .write(db, &store, &keys)
        .await?;
    ctx.progress.say(format!(
        "scale: {written} chain checkpoint object(s) written in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Starts the service on the scale database, runs the fixed paced load, stops it.
async fn scale_load(
    ctx: &Ctx,
    url: &str,
    ids: &mut [Identity],
    prepare: bool,
    label: &str,
) -> anyhow::Result<load::LoadResult> {
    let svc = Service::start(
        url,
        &ctx.sops_dir,
        &ctx.work.join("scale"),
        &ctx.keyring,
        ctx.connections,
    )
    .await?;
    if prepare {
        load::prepare(&svc.base, ids, &ctx.mix).await?;
    }
    let spec = LoadSpec {
        tag: format!("scale-{label}"),
        clients: ctx.sizes.scale_clients,
        warmup: ctx.sizes.scale_warmup,
        measure: ctx.sizes.scale_measure,
        rate: Some(ctx.sizes.scale_rate),
    };
    let r = load::run(&svc.base, ids, &ctx.mix, &spec, None).await;
    svc.stop().await?;
    r
}

fn human(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1} M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.0} k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}
