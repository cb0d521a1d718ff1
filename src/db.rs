//! Connecting to PostgreSQL: pool settings, creating the database when it is
//! missing, and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

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

/// A pool that answers quickly when the database is down (requests get 503).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .connect_with(opts)
        .await
        .context("cannot connect to PostgreSQL")?;
    Ok(pool)
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("migrations failed")
}
