//! Traces (docs/08, "Traces"): a request's W3C `traceparent` is continued
//! (a trace is started otherwise); its trace id goes into the logs (the
//! request span's `trace_id`) and into the metadata of the events the
//! request appends (beside the correlation id). Spans — the request, the
//! gate, the decision, the write and its batch, the projection passes — are
//! exported over OTLP/HTTP (protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set ([`TraceConfig`]); otherwise no OpenTelemetry layer is installed at
//! all, and a request only parses its `traceparent` header or draws a
//! random trace id.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The instrumentation scope the service's spans are reported under.
pub const SCOPE: &str = "dispatch-api";

/// Where spans go (from `OTEL_EXPORTER_OTLP_ENDPOINT` and its companions,
/// `crate::config::ServeConfig::traces`).
#[derive(Clone)]
pub struct TraceConfig {
    /// The collector's base URL; spans are POSTed to `{endpoint}/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Extra headers on every export (a collector's API key).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for TraceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceConfig")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TraceConfig {
    /// The URL the spans are POSTed to: the OTLP/HTTP signal path under the
    /// base URL (as the OpenTelemetry specification derives it from
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
    }
}

/// Whether spans are being exported (an OpenTelemetry layer is installed).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The tracer provider exporting to `config` in batches (a thread of its
/// own; every ~5 s and at shutdown), sampling what the caller sampled and
/// everything it starts itself.
pub(super) fn provider(config: &TraceConfig) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_url())
        .with_headers(config.headers.iter().cloned().collect())
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}

/// Marks spans as exported from now on (the layer is installed).
pub(super) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// The tracer the layer reports through.
pub(super) fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer(SCOPE)
}

/// A request's trace: its id (32 lower-case hex digits) and the request's span.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The W3C trace id.
    pub trace_id: String,
    /// The request span; work the request hands to another task runs in it
    /// ([`within`]).
    pub span: tracing::Span,
}

tokio::task_local! {
    static CURRENT: RequestTrace;
}

/// The trace id of the request this task is serving, if any: what
/// [`crate::app::RequestMeta::trace_id`] is filled from.
pub fn current_trace_id() -> Option<String> {
    CURRENT.try_with(|t| t.trace_id.clone()).ok()
}

/// Runs `fut` as part of `trace`'s request: in its span, with its trace id
/// current. The HTTP layer runs every request so; a transport that hands the
/// call to another task (MCP) does it again there.
pub async fn within<F: Future>(trace: Option<RequestTrace>, fut: F) -> F::Output {
    match trace {
        Some(trace) => {
            let span = trace.span.clone();
            CURRENT.scope(trace, fut.instrument(span)).await
        }
        None => fut.await,
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's span from a valid `traceparent` (and its `tracestate`), or
/// `None` (absent or malformed: a new trace is started, as the W3C
/// recommendation says).
pub fn remote_parent(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Joins `span` (a request's) to the caller's trace from `headers`, or to a
/// new one, and returns the trace id (hex). Exporting, the span's parent is
/// set to the caller's span and the id is the span's own; otherwise the id is
/// the caller's, or a random one.
pub fn join(span: &tracing::Span, headers: &HeaderMap) -> String {
    let remote = remote_parent(headers);
    let id = if exporting() {
        if let Some(cx) = remote {
            let _ = span.set_parent(cx);
        }
        span.context().span().span_context().trace_id()
    } else {
        remote
            .map(|cx| cx.span().span_context().trace_id())
            .unwrap_or_else(|| RandomIdGenerator::default().new_trace_id())
    };
    id.to_string()
}

/// A span that already happened (`started` to now), reported directly to
/// the tracer: for work whose worth reporting is known only once done (a
/// projection pass that applied events; the idle passes are not reported).
pub fn finished_span(
    name: &'static str,
    started: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
) {
    if !exporting() {
        return;
    }
    let tracer = opentelemetry::global::tracer(SCOPE);
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(started)
        .with_attributes(attributes)
        .start_with_context(&tracer, &opentelemetry::Context::new());
    if let Some(e) = error {
        span.set_status(opentelemetry::trace::Status::error(e));
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;

    use super::*;

    /// A trace id as the logs and the events carry it: 32 lower-case hex
    /// digits, not all zero.
    fn is_trace_id(hex: &str) -> bool {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && TraceId::from_hex(hex).is_ok_and(|id| id != TraceId::INVALID)
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_a_bad_one_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let span = tracing::Span::none();
        assert_eq!(join(&span, &h), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            assert!(remote_parent(&h).is_none(), "{bad}");
            let id = join(&span, &h);
            assert!(is_trace_id(&id), "{id}");
            assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        let a = join(&span, &HeaderMap::new());
        let b = join(&span, &HeaderMap::new());
        assert!(is_trace_id(&a) && is_trace_id(&b));
        assert_ne!(a, b, "each request without a traceparent starts a trace");
    }

    #[tokio::test]
    async fn the_trace_id_is_current_within_its_request_only() {
        assert_eq!(current_trace_id(), None);
        let trace = RequestTrace {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span: tracing::Span::none(),
        };
        let seen = within(Some(trace), async { current_trace_id() }).await;
        assert_eq!(seen.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(within(None, async { current_trace_id() }).await, None);
    }
}
