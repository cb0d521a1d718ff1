//! The command-line subcommands other than `serve`: migrations, keys, audit,
//! read models, subscriptions, SOPs and the registry import.
//!
//! Exit codes, for every subcommand (docs/08, "Exit codes"): 0 done (and,
//! for a check, all good); 1 the command ran and the answer is no (a chain
//! failed, a file was refused, a rebuild was not swapped in); 2 it could
//! not run (usage, no database, no keyring, …: `main` maps an `Err` here).
//! Output for people on stdout; `--json` for scripts; progress bars on
//! stderr only when it is a terminal ([`progress`]).

mod audit;
mod keys;
pub mod progress;
mod projections;
mod registry;

use anyhow::Context;
use sqlx::PgPool;

use crate::config::Config;
use crate::domain::sop::SopLibrary;
use crate::store::chain::{default_keyring_path, ChainKeys};
use crate::{db, server};

pub use audit::{audit_verify, VerifyArgs};
pub use keys::{create_key, list_keys, revoke_key};
pub use projections::{projections_rebuild, projections_status, RebuildArgs};
pub use registry::registry_import;

/// Exit code: the command ran and the answer is no.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command could not run.
pub const EXIT_COULD_NOT_RUN: u8 = 2;

/// A command's connections (two), and the database they are on.
async fn pool(config: &Config) -> anyhow::Result<(PgPool, server::Database)> {
    pool_of(config, 2).await
}

/// A migrated pool of `size` connections on the configured database, and
/// the database: a private cluster the command started is stopped when the
/// command drops it (as `serve` stops it at shutdown), so callers keep it
/// until they are done.
async fn pool_of(config: &Config, size: u32) -> anyhow::Result<(PgPool, server::Database)> {
    let database = server::resolve_database(config).await?;
    let pool = db::connect(&database.url, size).await?;
    db::migrate(&pool).await?;
    Ok((pool, database))
}

/// `dispatch-api migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    pool(config).await?;
    eprintln!("migrations applied");
    Ok(())
}

/// The server's chain keyring, read, never created: events keyed or
/// verified with a keyring the service does not have would not verify.
pub(crate) fn keyring(config: &Config) -> anyhow::Result<ChainKeys> {
    let (keys, _) = config.chain_keys(false)?.with_context(|| {
        format!(
            "no chain keyring: set DISPATCH_CHAIN_KEYS_FILE or DISPATCH_CHAIN_KEYRING, or DISPATCH_DATA_DIR to the server's data folder (looked for {})",
            default_keyring_path(&config.data_dir).display()
        )
    })?;
    Ok(keys)
}

/// Whether the evidence store is the default local folder and it does not
/// exist (nothing was ever written there; the CLI does not create it).
pub(crate) fn local_evidence_missing(config: &Config) -> bool {
    match &config.evidence_store {
        Some(s) if s.starts_with("s3://") => false,
        Some(dir) => !std::path::Path::new(dir).exists(),
        None => !config.data_dir.join("evidence").exists(),
    }
}

/// `dispatch-api sops check`.
pub fn sops_check(config: &Config) -> anyhow::Result<()> {
    let lib = SopLibrary::load(&config.sops_dir)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the SOP library is invalid")?;
    for s in lib.all() {
        println!(
            "{} {} {}",
            s.incident_type,
            s.intake.version,
            s.combined_sha256()
        );
    }
    Ok(())
}

pub(crate) fn runtime(
    config: &Config,
    pool: PgPool,
) -> anyhow::Result<crate::read_models::runtime::Runtime> {
    let sops = SopLibrary::load(&config.sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(crate::read_models::runtime::Runtime::new(
        pool,
        crate::read_models::ProjectionContext {
            sops: std::sync::Arc::new(sops),
        },
    ))
}

/// `dispatch-api subscriptions status [--json]`: one line per subscription
/// (or the JSON of `GET /v1/subscriptions`).
pub async fn subscriptions_status(config: &Config, json: bool) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let status = crate::subscriptions::status::status(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        println!("{status}");
        return Ok(());
    }
    match status["leader"]["instance"].as_str() {
        Some(leader) => println!("delivered by {leader}"),
        None => println!("no replica has delivered yet"),
    }
    let list = status["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        println!("no subscriptions (set DISPATCH_NATS_URL, or register a webhook endpoint)");
    }
    for s in list {
        let error = match (s["failing"].as_bool(), s["last_error"].as_str()) {
            (Some(true), Some(e)) => format!("  FAILING: {e}"),
            _ => String::new(),
        };
        println!(
            "{:<46} position {:>10}  lag {:>8} events {:>8.1} s{error}",
            s["name"].as_str().unwrap_or(""),
            s["position"],
            s["lag_events"],
            s["lag_seconds"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
