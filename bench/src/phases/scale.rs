//! Phase 5, `scale`: command p99 under a fixed paced load with many events
//! in the store against the same with few; the store grown by the bulk
//! loader in between, as a running service would have seen it grow.

use std::time::Instant;

use super::{failed_commands, ms, Ctx};
use crate::audit::{self, AuditTarget};
use crate::clients::{self, Identity};
use crate::databases::{migrated, Databases};
use crate::generate;
use crate::load::{self, LoadSpec};
use crate::rebuild;
use crate::report::{Bar, Row};
use dispatch_api::app::checkpoints::{load_index, Checkpoints};
use dispatch_api::app::evidence::EvidenceStore;
use dispatch_api::store::chain::ChainKeys;

/// The phase: the small run, the bulk load, the large run.
pub(super) async fn scale(ctx: &mut Ctx, dbs: &mut Databases) -> anyhow::Result<()> {
    let (small, large) = (ctx.sizes.scale_small, ctx.sizes.scale_large);
    ctx.progress.say(format!("scale: {small} events"));
    let url = dbs.create("scale").await?;
    let db = migrated(&url, 4).await?;
    let mut ids = clients::create_identities(&db, ctx.sizes.scale_clients).await?;
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
    let at_large = grow(ctx, &db, large.saturating_sub(at_small as u64)).await?;
    let many = scale_load(ctx, &url, &mut ids, false, "large").await?;
    let m = many.latencies.summary();
    ctx.progress
        .say(format!("scale: {at_large} events in the store: {}", ms(&m)));
    failed_commands(ctx, "scale small", &few);
    failed_commands(ctx, "scale large", &many);
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
    whole_store_audit(ctx, &db, &url).await?;
    db.close().await;
    dbs.drop_one("scale").await?;
    Ok(())
}

/// The whole-store audit over the grown store (after the large run, so that
/// its scans leave the p99 runs' cache alone), against a plain scan of the
/// same rows.
async fn whole_store_audit(ctx: &mut Ctx, db: &sqlx::PgPool, url: &str) -> anyhow::Result<()> {
    let dir = ctx.work.join("scale");
    let target = AuditTarget {
        exe: &ctx.service_bin,
        database_url: url,
        pool: db,
        keyring: &ctx.keyring,
        evidence: &dir.join("evidence"),
        sops_dir: &ctx.sops_dir,
        data_dir: &dir,
    };
    let res = {
        let p = &ctx.progress;
        audit::measure(&target, |m| p.say(format!("scale: {m}"))).await?
    };
    if res.failures > 0 {
        ctx.failures.push(format!(
            "audit verify --all over the generated store: {} failure(s)",
            res.failures
        ));
    }
    ctx.rows.push(Row {
        figure: format!("whole-store audit, {} events", human(res.events)),
        value: Some(res.rate),
        unit: "events/s",
        baseline: Some(res.scan_rate),
        baseline_label: "plain SELECT * FROM events, rows/s".into(),
        bar: Bar::RatioAtLeast(0.25),
        note: format!(
            "`dispatch-api audit verify --all` (every chain, MAC, head and checkpoint; {} streams) in {:.1} s of wall time; goal ≥ 0.5× the scan",
            res.streams, res.seconds
        ),
    });
    Ok(())
}

/// Bulk-loads `extra` more events, vacuums, checkpoints, and marks the read
/// models and the chain's checkpoints as caught up; returns the events in
/// the store.
async fn grow(ctx: &Ctx, db: &sqlx::PgPool, extra: u64) -> anyhow::Result<i64> {
    ctx.progress
        .say(format!("scale: bulk-loading {extra} more events"));
    let g = super::generate_jobs(ctx, db, extra, "scale: bulk-loading").await?;
    ctx.progress.say(format!(
        "scale: loaded {} events in {:.1} s ({:.0} events/s); VACUUM ANALYZE",
        g.events,
        g.seconds,
        g.events as f64 / g.seconds
    ));
    let t = Instant::now();
    sqlx::query("VACUUM ANALYZE").execute(db).await?;
    sqlx::query("CHECKPOINT").execute(db).await?;
    generate::mark_projected(db).await?;
    chain_checkpoints(ctx, db).await?;
    let at_large: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db)
        .await?;
    ctx.progress.say(format!(
        "scale: vacuumed in {:.1} s; {at_large} events in the store",
        t.elapsed().as_secs_f64()
    ));
    Ok(at_large)
}

/// Writes the chain's signed checkpoints over the bulk-loaded events into the
/// scale service's evidence store, as a service running while they arrived
/// would have (like `mark_projected` for the read models): the large run
/// measures a store of that size, not the catch-up of a backlog written
/// behind the service's back.
async fn chain_checkpoints(ctx: &Ctx, db: &sqlx::PgPool) -> anyhow::Result<()> {
    let keys = ChainKeys::from_toml(&std::fs::read_to_string(&ctx.keyring)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = EvidenceStore::local(&ctx.work.join("scale").join("evidence"))?;
    let (index, _) = load_index(&store, &keys).await?;
    let t = Instant::now();
    let written = Checkpoints::new(index).write(db, &store, &keys).await?;
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
    let svc = ctx.start_service(url, "scale", false).await?;
    if prepare {
        clients::prepare(&svc.base, ids, &ctx.mix).await?;
    }
    let spec = LoadSpec {
        tag: format!("scale-{label}"),
        clients: ctx.sizes.scale_clients,
        warmup: ctx.sizes.scale_warmup,
        measure: ctx.sizes.scale_measure,
        rate: Some(ctx.sizes.scale_rate),
    };
    let r = ctx
        .progress
        .timed(
            &format!("scale: {label} run"),
            spec.warmup + spec.measure,
            load::run(&svc.base, ids, &ctx.mix, &spec, None),
        )
        .await;
    svc.stop().await?;
    r
}

/// 10 M, 10 k, 300.
fn human(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1} M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.0} k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}
