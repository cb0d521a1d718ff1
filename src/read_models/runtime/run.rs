//! The live loop: the passes over serving and shadow tables, woken by one
//! shared `pg_notify` listener, and housekeeping.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{status, Runtime};

impl Runtime {
    /// Runs until `shutdown` turns true: a loop over the serving tables
    /// (those standing level advance together, one read and one fold for
    /// all; see [`Runtime::step_live`]) and a loop over rebuilds (so that a
    /// long rebuild never holds the serving tables back), woken by
    /// `pg_notify` on one shared listener, polling as a fallback; and a
    /// housekeeping loop (retired tables, lag metrics).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // Bumped on every notification; each loop remembers what it has seen.
        let (wake, _) = watch::channel(0u64);
        let wake = Arc::new(wake);
        let mut tasks = Vec::new();
        for rebuilds in [false, true] {
            tasks.push(tokio::spawn(passes(
                this.clone(),
                rebuilds,
                wake.subscribe(),
                shutdown.clone(),
            )));
        }
        let listener = tokio::spawn(crate::store::wake::listen(
            this.pool.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        housekeeping(&this, shutdown.clone()).await;
        // Each loop stops between batches (a batch is one transaction).
        for t in tasks {
            let _ = t.await;
        }
        let _ = listener.await;
    }
}

/// One loop of passes, over the serving tables or (`rebuilds`) the shadow
/// tables: a pass at most every [`Runtime::pass_interval`]; after a pass that found
/// nothing, a wait for a notification or the polling interval.
async fn passes(
    this: Arc<Runtime>,
    rebuilds: bool,
    mut woken: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let what = if rebuilds { "rebuild" } else { "live" };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next_pass = tokio::time::Instant::now() + this.pass_interval;
        woken.borrow_and_update();
        let step = if rebuilds {
            this.step_rebuilds(20).await
        } else {
            this.step_live(20).await
        };
        let worked = match step {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, pass = what, "projector step failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        };
        if !worked {
            tokio::select! {
                _ = woken.changed() => {}
                _ = tokio::time::sleep(this.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_pass) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Every five seconds until shutdown: drops retired tables past their grace
/// and publishes each table's lag as metrics.
async fn housekeeping(this: &Runtime, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = this.drop_retired().await {
            tracing::warn!(error = %e, "dropping retired read-model tables failed; retrying");
        }
        if let Ok(list) = status(&this.pool).await {
            for s in list {
                let table = s["table"].as_str().unwrap_or_default().to_string();
                metrics::gauge!("dispatch_projection_lag_events", "table" => table.clone())
                    .set(s["lag_events"].as_f64().unwrap_or(0.0));
                metrics::gauge!("dispatch_projection_lag_seconds", "table" => table)
                    .set(s["lag_seconds"].as_f64().unwrap_or(0.0));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
