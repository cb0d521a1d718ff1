//! The Prometheus metrics: the process's recorder, and every family the
//! service emits with its type, labels and help text ([`FAMILIES`]). Each
//! family is described to the recorder, so `/metrics` carries `# HELP` and
//! `# TYPE` for it (`promtool check metrics` accepts the page); docs/08 lists
//! the same families, and `tests/repo.rs` checks that the code emits no
//! family, and no label, that is not here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names (every series has all of them).
    pub labels: &'static [&'static str],
    /// What it counts or measures (`# HELP`).
    pub help: &'static str,
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric family the service emits.
pub const FAMILIES: &[Family] = &[
    // HTTP (src/http/observe.rs): every request, by route template.
    family("dispatch_http_requests_total", Counter, &["method", "route", "status"],
        "HTTP requests answered, by method, route template (`unmatched` for no route) and status code."),
    family("dispatch_http_request_duration_seconds", Histogram, &["method", "route"],
        "Time from a request's arrival to its answer's head, by method and route template."),
    // Commands and the gate.
    family("dispatch_commands_total", Counter, &["command", "outcome"],
        "Job commands run, by wire name and outcome (ok, refused, conflict, error)."),
    family("dispatch_command_seconds", Histogram, &["command"],
        "Job command latency (key, idempotency, load, decide, write), by wire name."),
    family("dispatch_refusals_total", Counter, &["code", "transport"],
        "Calls the gate recorded as refused (allowlist, rights, a domain guard, the rate limit, a reused key), by problem code and transport."),
    family("dispatch_conflicts_total", Counter, &[],
        "Job commands that lost an optimistic-concurrency race (409 version_conflict)."),
    family("dispatch_idempotent_replays_total", Counter, &[],
        "Retried commands answered from their idempotency record."),
    family("dispatch_command_redecided_total", Counter, &[],
        "Commands decided again after losing a version race (second and later decisions; docs/03, Concurrency)."),
    family("dispatch_job_cache_total", Counter, &["outcome"],
        "Job-cache lookups and stale entries, by outcome (hit, miss, stale, key_refused)."),
    family("dispatch_gate_calls_total", Counter, &["transport", "outcome"],
        "Calls through the one gate, by transport (rest, tool, mcp, ui) and outcome."),
    family("dispatch_tool_calls_total", Counter, &["tool", "outcome"],
        "Tool and MCP calls, by allowlisted tool (`unknown` otherwise) and outcome."),
    family("dispatch_gate_unauthenticated_total", Counter, &["transport"],
        "Calls refused 401 before they could be attributed to a key, by transport."),
    family("dispatch_mcp_origin_refused_total", Counter, &[],
        "/mcp requests refused 403 for a cross-site Origin."),
    // The invocation log.
    family("dispatch_invocation_log_batch_size", Histogram, &[],
        "Invocation records per insert."),
    family("dispatch_invocation_log_write_seconds", Histogram, &[],
        "Time one insert of invocation records took."),
    family("dispatch_tool_log_failures_total", Counter, &[],
        "Invocation records lost because the database refused their batch five times."),
    family("dispatch_invocation_log_dropped_total", Counter, &[],
        "Invocation records dropped because 100,000 were already queued."),
    // The store and the read models.
    family("dispatch_write_batch_size", Histogram, &[],
        "Command writes committed together in one call and commit (group commit)."),
    family("dispatch_checkpoints_written_total", Counter, &[],
        "Signed checkpoints of the stream heads written to the evidence store."),
    family("dispatch_projection_position", Gauge, &["projection", "status"],
        "Last global position a read model's table applied, by read model and table status (live, rebuilding)."),
    family("dispatch_projection_lag_events", Gauge, &["projection", "status"],
        "Events a read model's table has not yet applied, by read model and table status (live, rebuilding)."),
    family("dispatch_projection_lag_seconds", Gauge, &["projection", "status"],
        "Age of the oldest event a read model's table has not yet applied, by read model and table status."),
    family("dispatch_projection_batch_size", Histogram, &["projection"],
        "Events per projector batch, by read model."),
    family("dispatch_projection_batch_seconds", Histogram, &["projection"],
        "Time one projector batch took (read, fold, apply, checkpoint, commit), by read model."),
    // Events out.
    family("dispatch_subscription_lag_events", Gauge, &["subscription"],
        "Events a subscription has not yet delivered."),
    family("dispatch_subscription_lag_seconds", Gauge, &["subscription"],
        "Age of the oldest event a subscription has not yet delivered."),
    family("dispatch_subscription_failing", Gauge, &["subscription"],
        "1 while a subscription's last delivery attempt failed, else 0."),
    family("dispatch_subscription_events_total", Counter, &["subscription"],
        "Events a subscription delivered (acknowledged by its sink)."),
    family("dispatch_webhook_attempts_total", Counter, &["endpoint", "outcome"],
        "Webhook delivery attempts, by endpoint id and outcome (delivered, http_error, timeout, connection, refused)."),
    family("dispatch_webhook_attempt_seconds", Histogram, &["endpoint"],
        "Time one webhook delivery attempt took, by endpoint id."),
    family("dispatch_webhook_failing_seconds", Gauge, &["endpoint"],
        "How long an enabled webhook endpoint has failed every attempt (0: not failing)."),
    family("dispatch_webhook_endpoints_disabled", Gauge, &[],
        "Webhook endpoints disabled after three days of failures."),
    family("dispatch_webhook_disabled_total", Counter, &["endpoint"],
        "Webhook endpoints disabled, by endpoint id."),
    family("dispatch_webhook_dead_letters_total", Counter, &["endpoint"],
        "Events dead-lettered after 24 hours of failed attempts, by endpoint id."),
];

/// The family named `name`.
pub fn family_named(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// Bucket bounds of the histograms in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of the histograms of sizes (writes, events, records per batch).
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 5000.0,
];

/// Series that exist from start-up at 0, so that an alert's `increase()`
/// sees their first rise (a counter that first appears at 1 increased by
/// nothing Prometheus can see) and a sum over two of them is never empty.
const FROM_ZERO: &[(&str, &[(&str, &str)])] = &[
    ("dispatch_conflicts_total", &[]),
    ("dispatch_idempotent_replays_total", &[]),
    ("dispatch_checkpoints_written_total", &[]),
    ("dispatch_mcp_origin_refused_total", &[]),
    ("dispatch_tool_log_failures_total", &[]),
    ("dispatch_invocation_log_dropped_total", &[]),
    (
        "dispatch_refusals_total",
        &[("code", "tool_not_allowed"), ("transport", "tool")],
    ),
    (
        "dispatch_refusals_total",
        &[("code", "tool_not_allowed"), ("transport", "mcp")],
    ),
];

/// The process's Prometheus recorder. The `metrics` facade is process-global
/// by design, so the recorder is installed once and its handle shared; every
/// family of [`FAMILIES`] is described to it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                })
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
                for (name, labels) in FROM_ZERO {
                    let labels: Vec<metrics::Label> = labels
                        .iter()
                        .map(|(k, v)| metrics::Label::new(*k, *v))
                        .collect();
                    metrics::counter!(*name, labels).increment(0);
                }
            }
            handle
        })
        .clone()
}

/// Every 5 s until `shutdown`: moves the histograms' samples into their
/// buckets. A scrape does it too, but without one (no Prometheus yet) the
/// samples of every request would pile up in memory.
pub async fn upkeep(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let handle = metrics_handle();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
            _ = shutdown.changed() => return,
        }
    }
}

fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_unique_and_named_as_prometheus_asks() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "a family is listed twice");
        for f in FAMILIES {
            assert!(f.name.starts_with("dispatch_"), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                f.name
            );
            assert!(!f.help.is_empty() && !f.help.contains('\n'), "{}", f.name);
            assert!(
                !f.labels.iter().any(|l| *l == "le" || *l == "quantile"),
                "{}",
                f.name
            );
        }
        for (name, labels) in FROM_ZERO {
            let f = family_named(name).expect("a series from zero is of a family");
            let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, f.labels, "{name}");
        }
    }
}
