//! `dispatch-api projections status [--json]` and `projections rebuild
//! NAME|--all [--wait] [--json]`.
//!
//! A rebuild is requested (a shadow table made and recorded); without
//! `--wait` the command returns there and the service's projectors build
//! and swap it. With `--wait` the command works the rebuild itself beside
//! any running service (they share the batches safely) and returns only
//! once every requested table is the serving one; a rebuild superseded by
//! another request, or one that has not moved for `--timeout` seconds,
//! fails with the reason (exit 1).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::progress::Progress;
use super::{pool, pool_of, runtime, EXIT_FAILED};
use crate::config::Config;
use crate::read_models::runtime::{rebuild_state, status, RebuildState, Runtime};

/// What `projections rebuild` was asked.
#[derive(Debug, Clone)]
pub struct RebuildArgs {
    /// One read model.
    pub name: Option<String>,
    /// Every read model.
    pub all: bool,
    /// Return only once the swap happened.
    pub wait: bool,
    /// One JSON document on stdout.
    pub json: bool,
    /// With `--wait`: give up after this long without progress.
    pub timeout: Duration,
}

/// `dispatch-api projections status`: one line per table (or the JSON of
/// `GET /v1/projections`).
pub async fn projections_status(config: &Config, as_json: bool) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let rt = runtime(config, pool.clone())?;
    rt.register().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let list = status(&pool).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if as_json {
        println!("{}", json!({ "projections": list }));
        return Ok(());
    }
    for s in list {
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

/// One requested rebuild and where it ended.
struct Requested {
    name: String,
    table: String,
    /// `requested`, `swapped`, `superseded`, `stalled`.
    status: &'static str,
    detail: Option<String>,
}

/// `dispatch-api projections rebuild`.
pub async fn projections_rebuild(config: &Config, args: &RebuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (pool, _database) = pool_of(config, 4).await?;
    let rt = runtime(config, pool.clone())?;
    rt.register().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let names: Vec<String> = match (&args.name, args.all) {
        (Some(n), _) => vec![n.clone()],
        (None, true) => rt.names(),
        (None, false) => anyhow::bail!("name a read model or pass --all"),
    };
    let mut requested = Vec::new();
    for name in names {
        let table = rt
            .request_rebuild(&name)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !args.json {
            eprintln!("rebuilding {name} into {table}");
        }
        requested.push(Requested {
            name,
            table,
            status: "requested",
            detail: None,
        });
    }
    if args.wait {
        wait_for_swaps(&rt, &pool, &mut requested, args.timeout).await?;
    }
    let swapped = requested.iter().all(|r| r.status == "swapped");
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", to_json(&requested, args.wait, swapped, seconds));
    } else {
        for r in &requested {
            match (r.status, &r.detail) {
                ("requested", _) => println!(
                    "{}: rebuild into {} requested; the service builds and swaps it (`projections status` shows it; --wait waits)",
                    r.name, r.table
                ),
                ("swapped", _) => println!("{}: {} swapped in", r.name, r.table),
                (status, detail) => println!(
                    "{}: {} not swapped in: {status}: {}",
                    r.name,
                    r.table,
                    detail.as_deref().unwrap_or("")
                ),
            }
        }
        if args.wait && swapped {
            println!(
                "rebuilt {} read model(s) in {seconds:.1} s",
                requested.len()
            );
        }
    }
    Ok(if !args.wait || swapped {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// The document of `schemas/cli/projections_rebuild.schema.json`.
fn to_json(requested: &[Requested], waited: bool, swapped: bool, seconds: f64) -> Value {
    json!({
        "waited": waited,
        "swapped": waited && swapped,
        "seconds": seconds,
        "rebuilds": requested.iter().map(|r| json!({
            "name": r.name,
            "table": r.table,
            "status": r.status,
            "detail": r.detail,
        })).collect::<Vec<_>>(),
    })
}

/// Works the rebuilds (with any running service) until every requested
/// table is swapped in, one is superseded, or none has moved for `timeout`;
/// records each one's end in `requested`. A bar on a terminal shows the
/// events the shadow tables have applied.
async fn wait_for_swaps(
    rt: &Runtime,
    pool: &sqlx::PgPool,
    requested: &mut [Requested],
    timeout: Duration,
) -> anyhow::Result<()> {
    let events: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(sequence), 0)::bigint FROM stream_heads")
            .fetch_one(pool)
            .await?;
    let events = events.max(0) as u64;
    let progress = Progress::new("rebuilding", "events");
    progress.set_length(events * requested.len() as u64);
    let (mut moved_at, mut last_done) = (Instant::now(), 0u64);
    loop {
        let applied = rt.step(50).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut done = 0u64;
        for r in requested.iter_mut().filter(|r| r.status == "requested") {
            match rebuild_state(pool, &r.name, &r.table)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                RebuildState::Swapped => r.status = "swapped",
                RebuildState::Building { events_applied } => {
                    done += (events_applied.max(0) as u64).min(events)
                }
                RebuildState::Superseded { building, active } => {
                    r.status = "superseded";
                    r.detail = Some(match building {
                        Some(b) => format!("another rebuild replaced it: {b} is being built"),
                        None => format!("another rebuild replaced it: {active} serves"),
                    });
                }
            }
        }
        let swapped = requested.iter().filter(|r| r.status == "swapped").count() as u64;
        done += swapped * events;
        progress.set_position(done);
        if requested.iter().all(|r| r.status != "requested") {
            progress.finish();
            return Ok(());
        }
        if applied > 0 || done > last_done {
            // Moving: here, or in a running service that holds the batches.
            (moved_at, last_done) = (Instant::now(), done);
        } else if moved_at.elapsed() > timeout {
            for r in requested.iter_mut().filter(|r| r.status == "requested") {
                r.status = "stalled";
                r.detail = Some(format!(
                    "no progress for {} s: a long transaction may hold the projectors back (docs/08, \"a projector is lagging\")",
                    timeout.as_secs()
                ));
            }
            progress.clear();
            return Ok(());
        }
        if applied == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
