//! The command-line subcommands other than `serve`: migrations, keys, audit.

use std::process::ExitCode;

use anyhow::Context;
use sqlx::{PgPool, Row};

use crate::app::keys;
use crate::app::queries::audit_stream;
use crate::config::Config;
use crate::domain::sop::SopLibrary;
use crate::domain::Role;
use crate::{db, server};

async fn pool(config: &Config) -> anyhow::Result<PgPool> {
    let url = server::resolve_database(config).await?;
    let pool = db::connect(&url, 2).await?;
    db::migrate(&pool).await?;
    Ok(pool)
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
    let pool = pool(config).await?;
    let key = keys::create_key(&pool, role, name, technician).await?;
    println!("{key}");
    Ok(())
}

/// `dispatch-api keys revoke`.
pub async fn revoke_key(config: &Config, name: &str) -> anyhow::Result<()> {
    let pool = pool(config).await?;
    keys::revoke_key(&pool, name).await?;
    eprintln!("revoked {name}");
    Ok(())
}

/// `dispatch-api audit verify`: prints one line per stream; exits 1 if any fails.
pub async fn audit_verify(
    config: &Config,
    job_id: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let pool = pool(config).await?;
    let streams: Vec<(String, String)> = match (job_id, all) {
        (Some(id), _) => vec![("job".to_string(), id.to_string())],
        (None, true) => sqlx::query("SELECT aggregate_type, aggregate_id FROM stream_heads ORDER BY aggregate_type, aggregate_id")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get("aggregate_type")?, r.try_get("aggregate_id")?)))
            .collect::<Result<_, sqlx::Error>>()?,
        (None, false) => anyhow::bail!("name a JOB_ID or pass --all"),
    };
    let mut failed = 0usize;
    let mut conn = pool.acquire().await?;
    for (kind, id) in &streams {
        match audit_stream(&mut conn, kind, id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            None => {
                println!("{kind} {id}: not found");
                failed += 1;
            }
            Some(r) if r.verified => println!("{kind} {id}: verified ({} events)", r.events),
            Some(r) => {
                failed += 1;
                println!(
                    "{kind} {id}: FAILED at sequence {} ({} events)",
                    r.first_bad_sequence.unwrap_or(0),
                    r.events
                );
            }
        }
    }
    println!("{} verified, {} failed", streams.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    let pool = pool(config).await?;
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

/// `dispatch-api projections rebuild NAME|--all`: starts the rebuilds and
/// works them to the swap (a running service shares the work safely).
pub async fn projections_rebuild(
    config: &Config,
    name: Option<&str>,
    all: bool,
) -> anyhow::Result<()> {
    let pool = pool(config).await?;
    let rt = runtime(config, pool)?;
    rt.register().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let names: Vec<String> = match (name, all) {
        (Some(n), _) => vec![n.to_string()],
        (None, true) => rt
            .projections()
            .iter()
            .map(|p| p.definition().name.clone())
            .collect(),
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
