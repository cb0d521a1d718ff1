//! Read-model rebuilds (`Runtime::request_rebuild` + `catch_up`) over the
//! generated store, against a plain `SELECT * FROM events` in the same run.

use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use sqlx::PgPool;

use dispatch_api::domain::sop::SopLibrary;
use dispatch_api::read_models::runtime::Runtime;
use dispatch_api::read_models::ProjectionContext;

/// Rates in events per second.
#[derive(Debug, Clone, Default)]
pub struct RebuildResult {
    /// Events in the store.
    pub events: u64,
    /// Plain scan.
    pub scan_rate: f64,
    /// One read model at a time: (name, rate).
    pub per_model: Vec<(String, f64)>,
    /// All read models rebuilt together: store events per second.
    pub all_rate: f64,
    /// Seconds of the all-models rebuild.
    pub all_seconds: f64,
}

/// Streams every row of `events` to the client and counts them.
pub async fn plain_scan(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let mut rows = sqlx::query("SELECT * FROM events").fetch(pool);
    let mut n = 0u64;
    while rows.try_next().await?.is_some() {
        n += 1;
    }
    Ok((n, t.elapsed().as_secs_f64()))
}

/// Registers the read models and marks their serving tables as caught up
/// (so that only the rebuilds' shadow tables are built and timed).
pub async fn runtime(pool: &PgPool, sops: Arc<SopLibrary>) -> anyhow::Result<Runtime> {
    let rt = Runtime::new(pool.clone(), ProjectionContext { sops });
    rt.register().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::generate::mark_projected(pool).await?;
    Ok(rt)
}

/// Rebuilds each read model alone, then all of them together.
pub async fn measure(
    pool: &PgPool,
    rt: &Runtime,
    events: u64,
    progress: impl Fn(&str),
) -> anyhow::Result<RebuildResult> {
    let mut out = RebuildResult {
        events,
        ..Default::default()
    };
    // Warm the cache the way the rebuild will read, untimed; then the timed scan.
    plain_scan(pool).await?;
    let (n, secs) = plain_scan(pool).await?;
    out.scan_rate = n as f64 / secs;
    progress(&format!(
        "plain scan: {n} rows in {secs:.2} s ({:.0} rows/s)",
        out.scan_rate
    ));
    let names = rt.names();
    for name in &names {
        rt.request_rebuild(name)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        rt.catch_up().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let secs = t.elapsed().as_secs_f64();
        out.per_model.push((name.clone(), events as f64 / secs));
        progress(&format!(
            "rebuilt {name} alone in {secs:.2} s ({:.0} events/s)",
            events as f64 / secs
        ));
    }
    for name in &names {
        rt.request_rebuild(name)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let t = Instant::now();
    rt.catch_up().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    out.all_seconds = t.elapsed().as_secs_f64();
    out.all_rate = events as f64 / out.all_seconds;
    progress(&format!(
        "rebuilt all {} read models in {:.2} s ({:.0} events/s)",
        names.len(),
        out.all_seconds,
        out.all_rate
    ));
    Ok(out)
}
