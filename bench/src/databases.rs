//! The benchmark's databases on one server: each phase creates its own
//! (`dispatch_bench_<run>_<phase>`) and drops it at the end unless `--keep`;
//! pools set up as the service's are.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// The benchmark's databases on one server.
pub(crate) struct Databases {
    pub(crate) server: String,
    pub(crate) prefix: String,
    pub(crate) created: Vec<String>,
    pub(crate) keep: bool,
}

impl Databases {
    pub(crate) fn named(&self, database: &str) -> anyhow::Result<String> {
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
    pub(crate) async fn create(&mut self, suffix: &str) -> anyhow::Result<String> {
        let name = format!("{}_{suffix}", self.prefix);
        let mut c = self.admin().await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await?;
        c.close().await.ok();
        self.created.push(name);
        self.url(suffix)
    }

    pub(crate) async fn drop_one(&mut self, suffix: &str) -> anyhow::Result<()> {
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

    pub(crate) async fn drop_all(&mut self) {
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
pub(crate) async fn pool(url: &str, n: u32) -> anyhow::Result<PgPool> {
    let opts = dispatch_api::db::connect_options(url)?;
    Ok(PgPoolOptions::new()
        .max_connections(n)
        .connect_with(opts)
        .await?)
}

/// A pool on a database the service's migrations have been applied to.
pub(crate) async fn migrated(url: &str, n: u32) -> anyhow::Result<PgPool> {
    let p = pool(url, n).await?;
    dispatch_api::db::migrate(&p).await?;
    Ok(p)
}

/// A `CHECKPOINT`, so that a run does not pay for the one before it.
pub(crate) async fn checkpoint(pool: &PgPool) {
    let _ = sqlx::query("CHECKPOINT").execute(pool).await;
}
