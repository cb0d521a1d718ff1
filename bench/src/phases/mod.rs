//! The run's phases in order, one module and one function each (named as
//! `--only` names them); the state they share ([`Ctx`]); and the service
//! under test on the main database, which phases 1–3 share.

mod reads;
mod rebuild;
mod scale;
mod soak;
mod throughput;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;

use crate::clients::{self, Identity};
use crate::databases::{migrated, Databases};
use crate::fanout::Fanout;
use crate::generate::Generator;
use crate::mix::MixSpec;
use crate::report::Row;
use crate::service::Service;
use crate::sizes::Sizes;
use crate::stats;
use dispatch_api::cli::progress::Progress as BarLine;
use dispatch_api::config::Config;
use dispatch_api::domain::sop::SopLibrary;
use dispatch_api::store::chain::ChainKeys;

/// Progress on stderr with the time since start.
pub(crate) struct Progress(Instant);

impl Progress {
    /// Starts the clock.
    pub(crate) fn start() -> Progress {
        Progress(Instant::now())
    }

    /// Time since start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// One line on stderr.
    pub(crate) fn say(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[bench {:>7.1}s] {}",
            self.0.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    /// A bar for the bulk load of `n` events on a terminal (rate and time
    /// left); in a pipe, `None`: the phase keeps its lines every so often.
    pub(crate) fn events_bar(&self, what: &str, n: u64) -> Option<BarLine> {
        let bar = BarLine::new(what, "events");
        bar.is_drawn().then(|| {
            bar.set_length(n);
            bar
        })
    }

    /// Runs `work`, which takes about `total`, with a bar of the time left
    /// on a terminal (nothing in a pipe).
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        total: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let bar = BarLine::clock(what, total);
        if !bar.is_drawn() {
            return work.await;
        }
        let started = Instant::now();
        let ticking = async {
            loop {
                bar.set_elapsed(started.elapsed());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let out = tokio::select! {
            out = work => out,
            never = ticking => never,
        };
        bar.clear();
        out
    }
}

/// Shared state of a run.
pub(crate) struct Ctx {
    pub(crate) sizes: Sizes,
    pub(crate) sops: Arc<SopLibrary>,
    pub(crate) sops_dir: PathBuf,
    pub(crate) mix: MixSpec,
    pub(crate) work: PathBuf,
    /// The run's chain keyring file (the services read it).
    pub(crate) keyring: PathBuf,
    /// The `dispatch-api` binary under test.
    pub(crate) service_bin: PathBuf,
    /// The service's connections: its pool and its writers.
    pub(crate) connections: (u32, u32),
    pub(crate) progress: Progress,
    pub(crate) gen: Arc<Generator>,
    pub(crate) rows: Vec<Row>,
    pub(crate) failures: Vec<String>,
    pub(crate) cpu_notes: Vec<String>,
    /// The run's NATS stream the main service publishes to, or why there is
    /// none (the subscription lag's note).
    pub(crate) fanout: Result<Arc<Fanout>, String>,
}

impl Ctx {
    /// Loads the SOP library, derives the mix, writes the run's chain
    /// keyring into `work` and sets up the bulk loader.
    pub(crate) fn new(
        config: &Config,
        sizes: Sizes,
        progress: Progress,
        work: &Path,
        service_bin: PathBuf,
        fanout: Result<Arc<Fanout>, String>,
    ) -> anyhow::Result<Ctx> {
        let sops_dir = std::fs::canonicalize(&config.sops_dir)
            .with_context(|| format!("the SOP library at {}", config.sops_dir.display()))?;
        let sops = Arc::new(SopLibrary::load(&sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?);
        let mix = MixSpec::from_library(&sops)?;
        // One chain keyring for the run: the bulk loader keys its events with
        // it and every service started reads it (DISPATCH_CHAIN_KEYS_FILE).
        let keys = ChainKeys::generate();
        let keyring = work.join("chain-keyring.toml");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            opts.open(&keyring)?.write_all(keys.to_toml().as_bytes())?;
        }
        let gen = Arc::new(Generator::new(sops.clone(), &mix, 24, 100, Arc::new(keys))?);
        Ok(Ctx {
            sizes,
            sops,
            sops_dir,
            mix,
            work: work.to_path_buf(),
            keyring,
            service_bin,
            connections: (config.db_pool_size, config.db_writers),
            progress,
            gen,
            rows: Vec::new(),
            failures: Vec::new(),
            cpu_notes: Vec::new(),
            fanout,
        })
    }

    /// Starts the service under test on `database_url`, its data in
    /// `work/<name>`; publishing every event to the run's NATS stream if
    /// `fanout` and NATS is reachable, and accepting local webhook
    /// endpoints if `fanout`.
    pub(crate) async fn start_service(
        &self,
        database_url: &str,
        name: &str,
        fanout: bool,
    ) -> anyhow::Result<Service> {
        let mut env = match &self.fanout {
            Ok(f) if fanout => f.service_env(),
            _ => Vec::new(),
        };
        if fanout {
            // The webhook receiver in this process is at http://127.0.0.1.
            env.push(("DISPATCH_WEBHOOKS_ALLOW_LOCAL".into(), "true".into()));
        }
        Service::start(
            &self.service_bin,
            database_url,
            &self.sops_dir,
            &self.work.join(name),
            &self.keyring,
            self.connections,
            &env,
        )
        .await
    }
}

/// The service under test on the main database, shared by phases 1–3.
pub(crate) struct Main {
    /// A small pool on it (lag watcher, raw-select baselines, generators).
    pub(crate) pool: PgPool,
    /// The clients' keys, technicians and evidence.
    pub(crate) ids: Vec<Identity>,
    /// The running service.
    pub(crate) svc: Service,
    /// Its RSS once idle after start, MB.
    pub(crate) idle_rss: Option<f64>,
}

/// Every phase `--only` leaves in, in order.
pub(crate) async fn all(ctx: &mut Ctx, dbs: &mut Databases) -> anyhow::Result<()> {
    let main = start_main(ctx, dbs).await?;
    throughput::throughput(ctx, dbs, &main).await?;
    if ctx.sizes.wants("reads") {
        reads::reads(ctx, &main).await?;
    }
    if ctx.sizes.wants("soak") {
        soak::soak(ctx, &main).await?;
    }
    main.svc.stop().await?;
    main.pool.close().await;
    dbs.drop_one("main").await?;
    if ctx.sizes.wants("rebuild") {
        rebuild::rebuild(ctx, dbs).await?;
    }
    if ctx.sizes.wants("scale") {
        scale::scale(ctx, dbs).await?;
    }
    Ok(())
}

/// Setup: the main database, the clients' keys, the service on it, the
/// clients' technicians and evidence; then its idle RSS.
async fn start_main(ctx: &Ctx, dbs: &mut Databases) -> anyhow::Result<Main> {
    let max_clients = ctx.sizes.clients[1].max(ctx.sizes.soak_clients);
    let url = dbs.create("main").await?;
    let pool = migrated(&url, 4).await?;
    let mut ids = clients::create_identities(&pool, max_clients).await?;
    let svc = ctx.start_service(&url, "main", true).await?;
    ctx.progress
        .say(format!("service up at {} (pid {})", svc.base, svc.pid));
    clients::prepare(&svc.base, &mut ids, &ctx.mix).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = svc.memory_kb().map(|m| m.0 as f64 / 1024.0);
    Ok(Main {
        pool,
        ids,
        svc,
        idle_rss,
    })
}

/// A latency summary for the progress lines.
fn ms(s: &stats::Summary) -> String {
    format!(
        "p50 {:.1} / p95 {:.1} / p99 {:.1} ms (n={})",
        s.p50, s.p95, s.p99, s.count
    )
}

/// Reports a load's failed commands (if any) as a failure of the run.
fn failed_commands(ctx: &mut Ctx, label: &str, r: &crate::load::LoadResult) {
    if r.errors > 0 {
        ctx.failures.push(format!(
            "{label}: {} failed commands: {:?}",
            r.errors, r.first_errors
        ));
    }
}

/// Bulk-loads `n` generated events into `db`, with a progress bar labelled
/// `label` on a terminal (a line per chunk otherwise).
async fn generate_jobs(
    ctx: &Ctx,
    db: &PgPool,
    n: u64,
    label: &str,
) -> anyhow::Result<crate::generate::Generated> {
    let p = &ctx.progress;
    let bar = p.events_bar(label, n);
    let g = ctx
        .gen
        .jobs(
            db,
            n,
            ctx.sizes.interleave,
            ctx.sizes.per_tx,
            |w| match &bar {
                Some(b) => b.set_position(w),
                None => p.say(format!("  … {w} events")),
            },
        )
        .await?;
    if let Some(b) = &bar {
        b.clear();
    }
    Ok(g)
}
