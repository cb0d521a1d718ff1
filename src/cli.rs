//! The command-line subcommands other than `serve`: migrations, keys, audit,
//! read models, SOPs and the registry import.

use std::process::ExitCode;

use anyhow::Context;
use sqlx::{PgPool, Row};

use crate::app::checkpoints::load_index;
use crate::app::evidence::EvidenceStore;
use crate::app::keys;
use crate::app::queries::audit_stream;
use crate::app::registry::import::{self, ImportError};
use crate::app::App;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::domain::policy::DispatchPolicy;
use crate::domain::sop::SopLibrary;
use crate::domain::Role;
use crate::store::chain::{default_keyring_path, ChainKeys};
use crate::{db, server};

/// A command's connections, and the database they are on: a private
/// cluster the command started is stopped when the command drops it (as
/// `serve` stops it at shutdown), so callers keep it until they are done.
async fn pool(config: &Config) -> anyhow::Result<(PgPool, server::Database)> {
    let database = server::resolve_database(config).await?;
    let pool = db::connect(&database.url, 2).await?;
    db::migrate(&pool).await?;
    Ok((pool, database))
}

/// `dispatch-api migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    pool(config).await?;
    eprintln!("migrations applied");
    Ok(())
}

/// `dispatch-api keys create`: prints the key alone on stdout.
pub async fn create_key(
    config: &Config,
    role: Role,
    name: &str,
    technician: Option<&str>,
) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let key = keys::create_key(&pool, role, name, technician).await?;
    println!("{key}");
    Ok(())
}

/// `dispatch-api keys revoke`.
pub async fn revoke_key(config: &Config, name: &str) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    keys::revoke_key(&pool, name).await?;
    eprintln!("revoked {name}");
    Ok(())
}

/// The server's chain keyring, read, never created: events keyed or
/// verified with a keyring the service does not have would not verify.
fn keyring(config: &Config) -> anyhow::Result<ChainKeys> {
    let (keys, _) = config.chain_keys(false)?.with_context(|| {
        format!(
            "no chain keyring: set DISPATCH_CHAIN_KEYS_FILE or DISPATCH_CHAIN_KEYRING, or DISPATCH_DATA_DIR to the server's data folder (looked for {})",
            default_keyring_path(&config.data_dir).display()
        )
    })?;
    Ok(keys)
}

/// `dispatch-api audit verify`: reads the chain keyring (never creates
/// one) and every signed checkpoint in the evidence store itself, then
/// prints one line per stream; exits 1 if any stream fails or a checkpoint
/// object does not verify.
pub async fn audit_verify(
    config: &Config,
    job_id: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    if job_id.is_none() && !all {
        anyhow::bail!("name a JOB_ID or pass --all");
    }
    let keys = keyring(config)?;
    let (pool, _database) = pool(config).await?;
    let (index, loaded) = match local_evidence_missing(config) {
        true => Default::default(),
        false => load_index(&EvidenceStore::from_config(config)?, &keys)
            .await
            .context("cannot read the checkpoints from the evidence store")?,
    };
    let mut failed = 0usize;
    for name in &loaded.rejected {
        println!("checkpoint {name}: signature does not verify");
        failed += 1;
    }
    let streams: Vec<(String, String)> = match job_id {
        Some(id) => vec![("job".to_string(), id.to_string())],
        None => {
            let mut streams: std::collections::BTreeSet<(String, String)> =
                sqlx::query("SELECT aggregate_type, aggregate_id FROM stream_heads")
                    .fetch_all(&pool)
                    .await?
                    .into_iter()
                    .map(|r| Ok((r.try_get("aggregate_type")?, r.try_get("aggregate_id")?)))
                    .collect::<Result<_, sqlx::Error>>()?;
            // A stream whose head row is gone is still one a checkpoint saw.
            streams.extend(index.streams().cloned());
            streams.into_iter().collect()
        }
    };
    let mut conn = pool.acquire().await?;
    let (mut unkeyed, mut verified) = (0i64, 0usize);
    for (kind, id) in &streams {
        let checkpointed = index.get(kind, id);
        match audit_stream(&mut conn, &keys, &checkpointed, kind, id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            None => {
                println!("{kind} {id}: not found");
                failed += 1;
            }
            Some(r) if r.verified => {
                verified += 1;
                unkeyed += r.unkeyed_events;
                if r.unkeyed_events > 0 {
                    println!(
                        "{kind} {id}: verified ({} events, {} unkeyed vouched by a checkpoint)",
                        r.events, r.unkeyed_events
                    );
                } else {
                    println!("{kind} {id}: verified ({} events)", r.events);
                }
            }
            Some(r) => {
                failed += 1;
                println!(
                    "{kind} {id}: FAILED at sequence {} (check {}) ({} events)",
                    r.first_bad_sequence.unwrap_or(0),
                    r.check.map_or("?", |c| c.as_str()),
                    r.events
                );
            }
        }
    }
    println!(
        "{} verified, {} failed; {} checkpoint(s) read, {} unkeyed event(s) accepted",
        verified, failed, loaded.verified, unkeyed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether the evidence store is the default local folder and it does not
/// exist (nothing was ever written there; the CLI does not create it).
fn local_evidence_missing(config: &Config) -> bool {
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

fn runtime(config: &Config, pool: PgPool) -> anyhow::Result<crate::read_models::runtime::Runtime> {
    let sops = SopLibrary::load(&config.sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(crate::read_models::runtime::Runtime::new(
        pool,
        crate::read_models::ProjectionContext {
            sops: std::sync::Arc::new(sops),
        },
    ))
}

/// `dispatch-api projections status`.
pub async fn projections_status(config: &Config) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let rt = runtime(config, pool.clone())?;
    rt.register().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    for s in crate::read_models::runtime::status(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        println!(
            "{:<20} v{:<3} {:<10} position {:>10}  lag {:>8} events {:>8.1} s  ({})",
            s["name"].as_str().unwrap_or(""),
            s["version"],
            s["status"].as_str().unwrap_or(""),
            s["position"],
            s["lag_events"],
            s["lag_seconds"].as_f64().unwrap_or(0.0),
            s["table"].as_str().unwrap_or("")
        );
    }
    Ok(())
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

/// `dispatch-api projections rebuild NAME|--all`: starts the rebuilds and
/// works them to the swap (a running service shares the work safely).
pub async fn projections_rebuild(
    config: &Config,
    name: Option<&str>,
    all: bool,
) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let rt = runtime(config, pool)?;
    rt.register().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let names: Vec<String> = match (name, all) {
        (Some(n), _) => vec![n.to_string()],
        (None, true) => rt.names(),
        (None, false) => anyhow::bail!("name a read model or pass --all"),
    };
    for n in &names {
        let table = rt
            .request_rebuild(n)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        eprintln!("rebuilding {n} into {table}");
    }
    let started = std::time::Instant::now();
    rt.catch_up().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "rebuilt {} read model(s) in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `dispatch-api registry import FILE.csv [--dry-run]`: prints one line per
/// problem (exit 1, nothing written) or the summary.
pub async fn registry_import(
    config: &Config,
    file: &std::path::Path,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let chain = keyring(config)?;
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let sops = SopLibrary::load(&config.sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (pool, _database) = pool(config).await?;
    let app = App {
        chain: std::sync::Arc::new(chain),
        checkpoints: crate::app::checkpoints::Checkpoints::default(),
        sops: std::sync::Arc::new(sops),
        policy: std::sync::Arc::new(DispatchPolicy::default()),
        clock: std::sync::Arc::new(SystemClock),
        // An import stores no evidence: nothing is made under the data folder.
        evidence: EvidenceStore::in_memory(),
        jobs: crate::app::cache::JobCache::new(config.job_cache_size),
        keys: crate::app::KnownKeys::new(config.job_cache_size),
        writer: crate::store::Writer::start(&pool, 1),
        invocations: crate::tools::log::InvocationLog::start(&pool),
        pool,
    };
    match import::import(&app, input, dry_run).await {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Refused(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            println!(
                "{} problem(s) in {}; nothing written",
                problems.len(),
                file.display()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
