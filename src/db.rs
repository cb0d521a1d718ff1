//! Connecting to PostgreSQL: pool settings, creating the database when it is
//! missing, and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres};

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database named in `url` if it does not exist (connecting to
/// the `postgres` maintenance database of the same server).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let opts =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let name = opts.get_database().unwrap_or("postgres").to_string();
    let admin = opts.clone().database("postgres");
    let mut conn = admin
        .connect()
        .await
        .context("cannot connect to PostgreSQL")?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(e) = sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            // Another process may have created it meanwhile.
            if !e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04" || c == "23505")
            {
                return Err(e).context("cannot create the database");
            }
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// How the service's sessions connect:
///
/// - `dispatch.wake_after_commit = on`: the service wakes the projectors
///   after its commits itself (`store::wake_projectors`) instead of notifying
///   inside the transaction, which PostgreSQL serialises (migration 0006);
/// - `jit = off`: the service's statements are short; compiling the odd
///   costlier one (the lag count) cost more than it saved;
/// - no TLS to a loopback server unless asked for (`sslmode` in the URL or
///   `PGSSLMODE`): encrypting traffic that never leaves the machine only
///   costs CPU on both sides of every round trip.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let mut opts = PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .options([
            (crate::store::wake::WAKE_AFTER_COMMIT, "on"),
            ("jit", "off"),
        ]);
    if plain_loopback(url) {
        opts = opts.ssl_mode(PgSslMode::Disable);
    }
    Ok(opts)
}

/// Whether `url` names a loopback server (or a socket) without choosing a
/// TLS mode (neither `sslmode` in the URL nor `PGSSLMODE`).
pub fn plain_loopback(url: &str) -> bool {
    let tls_chosen = std::env::var_os("PGSSLMODE").is_some()
        || url::Url::parse(url).is_ok_and(|u| {
            u.query_pairs()
                .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
        });
    let host = PgConnectOptions::from_str(url)
        .map(|o| o.get_host().to_string())
        .unwrap_or_default();
    let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]")
        || host.starts_with('/');
    loopback && !tls_chosen
}

/// A pool that answers quickly when the database is down (requests get 503).
/// A connection idle for over a second is checked before it is handed out
/// (after an outage, say); one in constant use is not pinged before every
/// transaction.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = pool_options(max_connections)
        .connect_with(connect_options(url)?)
        .await
        .context("cannot connect to PostgreSQL")?;
    Ok(pool)
}

/// A second, smaller pool to the same database as `pool`, for background
/// work (the projectors) that must not queue behind requests for a
/// connection: under load every request connection is busy, and a projector
/// waiting its turn in the same queue lags by the length of that queue.
pub fn sibling(pool: &PgPool, max_connections: u32) -> PgPool {
    pool_options(max_connections)
        .min_connections(0)
        .connect_lazy_with((*pool.connect_options()).clone())
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(1) {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// A connection taken from the pool only when first asked for, or one the
/// caller already holds. A pooled connection costs a round trip to the
/// server when it goes back (sqlx checks it on release), so work that may
/// read nothing (most command decisions) takes none until it must.
pub enum LazyConn<'a> {
    /// A connection the caller holds.
    Held(&'a mut PgConnection),
    /// The pool, and the connection taken from it once asked for.
    Pooled(&'a PgPool, Option<PoolConnection<Postgres>>),
}

impl<'a> LazyConn<'a> {
    /// Nothing taken yet from `pool`.
    pub fn pooled(pool: &'a PgPool) -> Self {
        LazyConn::Pooled(pool, None)
    }

    /// The connection, taken from the pool the first time.
    pub async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        match self {
            LazyConn::Held(conn) => Ok(&mut **conn),
            LazyConn::Pooled(pool, slot) => {
                if slot.is_none() {
                    *slot = Some(pool.acquire().await?);
                }
                Ok(slot.as_mut().expect("taken just above"))
            }
        }
    }

    /// Gives a pooled connection back (after a failed call: a broken one is
    /// then replaced the next time one is asked for).
    pub fn release(&mut self) {
        if let LazyConn::Pooled(_, slot) = self {
            *slot = None;
        }
    }
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("migrations failed")
}
