//! Logs (tracing, JSON by default), the Prometheus metrics ([`metrics`]) and
//! OpenTelemetry traces ([`trace`]).

pub mod metrics;
pub mod trace;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use self::metrics::metrics_handle;

/// What [`init`] installed; [`Telemetry::shutdown`] sends the spans still
/// queued before the process ends.
#[must_use = "shut the telemetry down to export the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued (waiting up to the exporter's timeout)
    /// and stops the exporter; nothing when spans are not exported.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "could not export the last spans");
            }
        }
    }
}

/// Installs the log subscriber (once per process; later calls do nothing).
pub fn init_logs(format: &str) {
    let _ = install(format, None);
}

/// Installs the log subscriber and, with `traces`, the OpenTelemetry layer
/// that exports spans over OTLP/HTTP (once per process). An exporter that
/// cannot be built is an error (the logs are installed regardless).
pub fn init(format: &str, traces: Option<&trace::TraceConfig>) -> anyhow::Result<Telemetry> {
    let provider = match traces {
        Some(config) => match trace::provider(config) {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = install(format, None);
                return Err(e.context(format!(
                    "cannot export traces to {} (OTEL_EXPORTER_OTLP_ENDPOINT)",
                    config.traces_url()
                )));
            }
        },
        None => None,
    };
    if install(format, provider.as_ref()) {
        if let (Some(p), Some(config)) = (&provider, traces) {
            opentelemetry::global::set_tracer_provider(p.clone());
            trace::set_exporting();
            tracing::info!(url = %config.traces_url(), service = %config.service_name,
                "exporting traces over OTLP/HTTP");
        }
    }
    Ok(Telemetry { provider })
}

/// The subscriber: the log lines (filtered by `RUST_LOG`) and, with a
/// provider, the service's own spans and events for OpenTelemetry (INFO and
/// above from this crate, whatever `RUST_LOG` says; never the exporter's
/// own HTTP client). Whether it was installed (the first call wins).
fn install(format: &str, provider: Option<&SdkTracerProvider>) -> bool {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = if format == "pretty" {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            // Every span of the line (request, then tool): request,
            // correlation, trace and tool invocation ids on every line.
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(filter)
            .boxed()
    };
    let spans = provider.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(trace::tracer(p))
            .with_filter(Targets::new().with_target("dispatch_api", tracing::Level::INFO))
    });
    Registry::default()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok()
}
