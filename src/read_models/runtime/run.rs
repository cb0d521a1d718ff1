//! The live loop: the passes over serving and shadow tables, woken by one
//! shared `pg_notify` listener, and housekeeping.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
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
        let started = SystemTime::now();
        let step = if rebuilds {
            this.step_rebuilds(20).await
        } else {
            this.step_live(20).await
        };
        report_pass(what, started, &step);
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
/// and publishes each read model's position and lag as metrics.
async fn housekeeping(this: &Runtime, mut shutdown: watch::Receiver<bool>) {
    let mut published = HashSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = this.drop_retired().await {
            tracing::warn!(error = %e, "dropping retired read-model tables failed; retrying");
        }
        if let Ok(list) = status(&this.pool).await {
            published = publish_lag(&list, published);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Publishes each table of `list` ([`status`]) as its read model's
/// position and lag, labelled by read model (`projection`) and the table's
/// `status` (`live`, or `rebuilding` for a shadow table). A series published
/// before whose table is gone (a rebuild swapped in) has nothing left to
/// apply: its lag is set to 0. Returns the series published.
fn publish_lag(list: &[Value], before: HashSet<(String, String)>) -> HashSet<(String, String)> {
    let mut now = HashSet::new();
    for s in list {
        let name = s["name"].as_str().unwrap_or_default().to_string();
        let state = s["status"].as_str().unwrap_or_default().to_string();
        let labels = [("projection", name.clone()), ("status", state.clone())];
        metrics::gauge!("dispatch_projection_position", &labels)
            .set(s["position"].as_f64().unwrap_or(0.0));
        metrics::gauge!("dispatch_projection_lag_events", &labels)
            .set(s["lag_events"].as_f64().unwrap_or(0.0));
        metrics::gauge!("dispatch_projection_lag_seconds", &labels)
            .set(s["lag_seconds"].as_f64().unwrap_or(0.0));
        now.insert((name, state));
    }
    for (name, state) in before.difference(&now) {
        let labels = [("projection", name.clone()), ("status", state.clone())];
        metrics::gauge!("dispatch_projection_lag_events", &labels).set(0.0);
        metrics::gauge!("dispatch_projection_lag_seconds", &labels).set(0.0);
    }
    now
}

/// The trace of a pass that applied events or failed (docs/08, "Traces"):
/// one `projection_pass` span with the loop (`live` or `rebuild`) and the
/// events applied; the idle passes, several a second, are not reported.
fn report_pass(what: &'static str, started: SystemTime, step: &crate::read_models::Result<usize>) {
    use opentelemetry::KeyValue;
    let (events, error) = match step {
        Ok(0) => return,
        Ok(n) => (*n as i64, None),
        Err(e) => (0, Some(e.to_string())),
    };
    crate::telemetry::trace::finished_span(
        "projection_pass",
        started,
        vec![KeyValue::new("pass", what), KeyValue::new("events", events)],
        error,
    );
}
