//! What every request leaves behind, whatever it asked: its span (the
//! trace it continues or starts, its request, correlation and trace ids on
//! every log line), its count and latency by route template and status
//! (`dispatch_http_requests_total`, `dispatch_http_request_duration_seconds`)
//! and one log line with its answer. The outermost layer of the router.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ExpectedWait;
use crate::telemetry::trace::{self, RequestTrace};

/// The `route` label of a request no route matched (a 404): never the raw
/// path, which a caller could vary without end.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label: the method, or `other` for an extension method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A header's value for the logs, if it is short printable text.
fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 200)
}

/// The span every log line of a request carries: request and correlation ids
/// (from `X-Request-Id` / `X-Correlation-Id`, or made here) and the trace id;
/// tool calls add a `tool` span with the invocation id. Never the body,
/// never the key. Exported, it is named by the method and route template,
/// and records the answer's status.
fn request_span(request: &Request, method: &'static str, route: Option<&str>) -> tracing::Span {
    let request_id = header(request, "x-request-id")
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let correlation_id = header(request, "x-correlation-id").unwrap_or_default();
    let shown: String = match route {
        Some(r) => r.to_string(),
        None => request.uri().path().chars().take(200).collect(),
    };
    if !trace::exporting() {
        return tracing::info_span!(
            "request",
            method = %request.method(),
            route = %shown,
            request_id = %request_id,
            correlation_id = %correlation_id,
            trace_id = tracing::field::Empty,
        );
    }
    let name = match route {
        Some(r) => format!("{method} {r}"),
        None => method.to_string(),
    };
    tracing::info_span!(
        "request",
        otel.name = %name,
        otel.kind = "server",
        method = %request.method(),
        route = %shown,
        request_id = %request_id,
        correlation_id = %correlation_id,
        trace_id = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

/// The layer: span and trace, the handler, then the metrics and the log line.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let span = request_span(&request, method, route.as_deref());
    let trace_id = trace::join(&span, request.headers());
    span.record("trace_id", trace_id.as_str());
    let trace = RequestTrace {
        trace_id,
        span: span.clone(),
    };
    request.extensions_mut().insert(trace.clone());
    let response = trace::within(Some(trace), next.run(request)).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = route.unwrap_or_else(|| UNMATCHED.to_string());
    metrics::counter!("dispatch_http_requests_total",
        "method" => method, "route" => route.clone(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!("dispatch_http_request_duration_seconds",
        "method" => method, "route" => route)
    .record(elapsed.as_secs_f64());
    span.record("status", status);
    let latency_us = elapsed.as_micros() as u64;
    let expected = response.extensions().get::<ExpectedWait>().is_some();
    let _in = span.enter();
    // `503 projection_behind` is the contract's answer to a read that asked
    // to wait for a position (INFO); another 503 (the database away) is
    // retried by the caller but needs a look (WARN); any other 5xx is a
    // fault (ERROR).
    match status {
        _ if expected || status < 500 => {
            tracing::info!(status, latency_us, "finished processing request")
        }
        503 => tracing::warn!(status, latency_us, "finished processing request"),
        _ => tracing::error!(status, latency_us, "finished processing request"),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(
            method_label(&Method::from_bytes(b"PURGE").unwrap()),
            "other"
        );
    }
}
