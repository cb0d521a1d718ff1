//! Assembling and running the service: database, migrations, SOPs, evidence
//! store, router; graceful shutdown on SIGTERM or Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::evidence::EvidenceStore;
use crate::app::App;
use crate::clock::Clock;
use crate::config::{redact_url, Config, ServeConfig, DEFAULT_DATABASE_URL};
use crate::domain::policy::DispatchPolicy;
use crate::domain::sop::SopLibrary;
use crate::http::{AppState, Limits};
use crate::read_models::runtime::Runtime;
use crate::read_models::ProjectionContext;
use crate::store::chain::KeyringSource;
use crate::tools::allowlist::Allowlist;
use crate::{db, embedded_pg};

fn is_connection_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            || c.downcast_ref::<sqlx::Error>().is_some_and(|s| matches!(s, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused))
    })
}

/// The database a process uses: its URL and, when it is the private
/// cluster, the handle that stops it with the process that started it.
#[derive(Debug)]
pub struct Database {
    /// The URL.
    pub url: String,
    /// The private cluster, when the database is on it.
    pub private: Option<embedded_pg::PrivateCluster>,
}

impl Database {
    /// Lets the database go as the process ends: stops the private cluster
    /// if this process started it, leaves it running otherwise, and logs
    /// which (nothing to say for a server of its own).
    pub async fn close(self) {
        let Some(cluster) = self.private else {
            return;
        };
        match tokio::task::spawn_blocking(move || cluster.release()).await {
            Ok(release @ embedded_pg::Release::StopFailed { .. }) => tracing::warn!("{release}"),
            Ok(release) => tracing::info!("{release}"),
            Err(e) => tracing::warn!(error = %e, "could not stop the private PostgreSQL cluster"),
        }
    }
}

/// The database to use: the configured one, the local default, or a
/// private cluster when nothing answers locally. Creates the database.
pub async fn resolve_database(config: &Config) -> anyhow::Result<Database> {
    resolve_database_with(
        config.database_url.as_deref(),
        &config.data_dir,
        DEFAULT_DATABASE_URL,
        embedded_pg::EMBEDDED_PORT,
    )
    .await
}

/// [`resolve_database`] with its defaults given: the URL tried when none is
/// configured, and the private cluster's port.
pub async fn resolve_database_with(
    configured: Option<&str>,
    data_dir: &std::path::Path,
    default_url: &str,
    private_port: u16,
) -> anyhow::Result<Database> {
    if let Some(url) = configured {
        db::ensure_database(url)
            .await
            .with_context(|| format!("database {}", redact_url(url)))?;
        return Ok(Database {
            url: url.to_string(),
            private: None,
        });
    }
    match db::ensure_database(default_url).await {
        Ok(()) => Ok(Database {
            url: default_url.to_string(),
            private: None,
        }),
        Err(e) if is_connection_refused(&e) => {
            tracing::info!(
                "no PostgreSQL at {}; using a private cluster under {} (port {private_port})",
                redact_url(default_url),
                data_dir.display()
            );
            let dir = data_dir.to_path_buf();
            let cluster =
                tokio::task::spawn_blocking(move || embedded_pg::start_private(&dir, private_port))
                    .await??;
            if !cluster.started_here() {
                tracing::info!("the private cluster was running already: it is left running when this process ends");
            }
            // Should this fail, dropping the handle stops what was started.
            db::ensure_database(cluster.url()).await?;
            Ok(Database {
                url: cluster.url().to_string(),
                private: Some(cluster),
            })
        }
        Err(e) => Err(e),
    }
}

/// Builds the application: connects, migrates, loads and validates the SOPs,
/// reads the chain keyring (creating one under the data folder when none is
/// configured) and loads the signed checkpoints' index. The database comes
/// back with it, to be [closed](Database::close) when the process ends.
pub async fn build_app(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<(App, Database)> {
    let sops = SopLibrary::load(&config.sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (chain, source) = config
        .chain_keys(true)?
        .context("no chain keyring could be read or created")?;
    if let KeyringSource::Created(path) = &source {
        tracing::info!(path = %path.display(), key_id = chain.active_id(),
            "no chain keyring configured: created one (mode 0600); back it up or move it to a secret store (README, \"Chain keys\")");
    }
    let database = resolve_database(config).await?;
    let pool = db::connect(&database.url, config.db_pool_size).await?;
    db::migrate(&pool).await?;
    let evidence = EvidenceStore::from_config(config)?;
    let (index, loaded) = crate::app::checkpoints::load_index(&evidence, &chain)
        .await
        .context("cannot read the chain checkpoints from the evidence store")?;
    if !loaded.rejected.is_empty() {
        tracing::error!(rejected = ?loaded.rejected,
            "checkpoint objects whose signature does not verify were ignored (docs/08, \"A failed audit\")");
    }
    let app = App {
        chain: Arc::new(chain),
        checkpoints: crate::app::checkpoints::Checkpoints::new(index),
        sops: Arc::new(sops),
        policy: Arc::new(DispatchPolicy::default()),
        clock,
        evidence,
        jobs: crate::app::cache::JobCache::new(config.job_cache_size),
        // No job kept, no command could act on a known key: none is kept.
        keys: crate::app::KnownKeys::new(config.job_cache_size),
        writer: crate::store::Writer::start(&pool, config.db_writers),
        invocations: crate::tools::log::InvocationLog::start(&pool),
        pool,
    };
    Ok((app, database))
}

/// A bound, ready-to-run HTTP service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    addr: SocketAddr,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and builds the router.
    pub async fn build(app: App, serve: &ServeConfig) -> anyhow::Result<Application> {
        let allowlist = Allowlist::builtin()?;
        let limits = Limits {
            max_body_bytes: serve.max_body_bytes,
            max_evidence_bytes: serve.max_evidence_bytes,
            request_timeout: std::time::Duration::from_secs(serve.request_timeout_secs),
        };
        let allowlist = Arc::new(allowlist);
        let tools = crate::tools::Toolset::new(
            allowlist.clone(),
            crate::tools::ToolsConfig {
                rate_per_minute: serve.tool_rate_per_minute,
                rate_burst: serve.tool_rate_burst,
                mcp_allowed_hosts: serve.mcp_allowed_hosts.clone(),
                mcp_allowed_origins: serve.mcp_allowed_origins.clone(),
            },
        )?;
        let state = AppState {
            app,
            allowlist,
            limits,
            metrics: Some(crate::telemetry::metrics_handle()),
            tools: Arc::new(tools),
            webhook_urls: serve.webhook_urls(),
        };
        let listener = TcpListener::bind(serve.listen)
            .await
            .with_context(|| format!("cannot listen on {}", serve.listen))?;
        let addr = listener.local_addr()?;
        Ok(Application {
            listener,
            router: crate::http::router(state),
            addr,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining in-flight requests");
}

/// `dispatch-api serve`: the HTTP service, the projectors, the timers and
/// the checkpoint writer; on SIGTERM, drains in-flight requests, writes the
/// invocation log's queued records, then stops projectors and timers between
/// batches (each batch is one transaction: nothing half-written) and writes a
/// last checkpoint.
pub async fn serve(config: &Config, serve: &ServeConfig) -> anyhow::Result<()> {
    if let crate::clock::ClockSetting::Manual(start) = serve.clock {
        tracing::warn!(%start, "DISPATCH_CLOCK is manual: time stands still and POST /v1/admin/clock moves it; never use this in production");
    }
    let (app, database) = build_app(config, serve.clock.build()).await?;
    // The projectors have connections of their own (see db::sibling).
    let runtime = Runtime::new(
        crate::db::sibling(&app.pool, 6),
        ProjectionContext {
            sops: app.sops.clone(),
        },
    )
    .pass_interval(std::time::Duration::from_millis(serve.projection_pass_ms));
    runtime
        .register()
        .await
        .map_err(|e| anyhow::anyhow!("cannot register read models: {e}"))?;
    let (stop, stopped) = watch::channel(false);
    let projectors = tokio::spawn(runtime.run(stopped.clone()));
    // Events out (src/subscriptions): delivered by one replica at a time,
    // on connections of their own.
    let mut sinks: Vec<Arc<dyn crate::subscriptions::SinkSource>> = Vec::new();
    let outbound = crate::db::sibling(&app.pool, 4);
    if let Some(nats) = serve.nats() {
        tracing::info!(url = %crate::config::redact_url(&nats.url), stream = %nats.stream, "publishing every event to NATS JetStream");
        sinks.push(Arc::new(crate::subscriptions::nats::NatsSource::new(
            outbound.clone(),
            nats,
        )));
    }
    // Webhook endpoints are registered at run time (POST /v1/webhooks): the
    // source lists them every few seconds.
    sinks.push(Arc::new(
        crate::subscriptions::webhooks::WebhookSource::new(
            outbound.clone(),
            serve.webhooks(),
            app.clock.clone(),
        )
        .context("cannot build the webhooks' HTTP client")?,
    ));
    let subscriptions = tokio::spawn(
        crate::subscriptions::Subscriptions::new(outbound, sinks).run(stopped.clone()),
    );
    let timers = tokio::spawn(crate::timers::run(
        app.clone(),
        std::time::Duration::from_millis(serve.timer_interval_ms),
        stopped.clone(),
    ));
    let upkeep = tokio::spawn(crate::telemetry::metrics::upkeep(stopped.clone()));
    let checkpoints = tokio::spawn(crate::app::checkpoints::run(
        app.checkpoints.clone(),
        app.pool.clone(),
        app.evidence.clone(),
        app.chain.clone(),
        std::time::Duration::from_secs(serve.checkpoint_interval_secs),
        stopped,
    ));
    let invocations = app.invocations.clone();
    let application = Application::build(app, serve).await?;
    tracing::info!(addr = %application.addr(), "dispatch-api listening");
    let served = application.run_until(shutdown_signal()).await;
    // Every answered call's record is written before the process ends.
    if tokio::time::timeout(std::time::Duration::from_secs(10), invocations.flush())
        .await
        .is_err()
    {
        tracing::error!("the invocation log could not be written within 10 s of shutdown");
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let _ = projectors.await;
        let _ = timers.await;
        let _ = subscriptions.await;
        let _ = upkeep.await;
        // The last checkpoint covers what the drained requests committed.
        let _ = checkpoints.await;
    })
    .await;
    tracing::info!("stopped");
    // The private cluster stops with the process that started it (the log
    // line says whether it was stopped or left running, and how to stop it).
    database.close().await;
    served
}
