//! Metrics and traces as their consumers see them: `promtool check metrics`
//! on a live `/metrics` of the real binary; the W3C trace context continued
//! into the events' metadata on every transport; and the spans of one
//! command received by an OTLP/HTTP receiver of the test's own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use dispatch_api::app::keys;
use dispatch_api::domain::Role;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

use crate::mcp::{handshake, mcp_request};
use crate::support::*;

#[path = "../common/promtool.rs"]
mod promtool;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

fn trace_ids(events: &[Value]) -> Vec<Option<&str>> {
    events.iter().map(|e| e["trace_id"].as_str()).collect()
}

#[tokio::test]
async fn each_transport_carries_the_callers_trace_into_the_events_it_appends() {
    let t = TestApp::spawn().await;
    let agent = &t.keys.agent;
    // REST: the caller's trace is continued.
    let tp = traceparent(TRACE_ID, PARENT_SPAN);
    let body = open_body("site-trace").to_string();
    let r = t
        .post_raw(
            "/v1/jobs",
            Some(agent),
            Some(&t.idem()),
            &body,
            &[("traceparent", &tp)],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let job = r.json["job_id"].as_str().unwrap().to_string();
    let events = t.events(&job).await;
    assert_eq!(trace_ids(&events), [Some(TRACE_ID)]);
    for e in &events {
        validate("audit_event.schema.json", e);
    }

    // Without a traceparent (or with a malformed one) each request starts a trace.
    t.cmd(&job, "add_note", agent, json!({"text": "one"})).await;
    let bad = [("traceparent", "00-zz-00f067aa0ba902b7-01")];
    let note = json!({"text": "two"}).to_string();
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let r = t
        .post_raw(&path, Some(agent), Some(&t.idem()), &note, &bad)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let events = t.events(&job).await;
    let started: Vec<&str> = trace_ids(&events)[1..]
        .iter()
        .map(|id| id.expect("a trace id"))
        .collect();
    assert_eq!(started.len(), 2);
    for id in &started {
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && *id != TRACE_ID,
            "{id}"
        );
    }
    assert_ne!(started[0], started[1]);

    // The tool envelope, and MCP (whose calls run on a task of their own).
    let tool_trace = "0af7651916cd43dd8448eb211c80319c";
    let tp = traceparent(tool_trace, "b7ad6b7169203331");
    let envelope =
        json!({"idempotency_key": t.idem(), "arguments": {"job_id": job, "text": "three"}});
    let r = t
        .post_raw(
            "/v1/tools/add_note",
            Some(agent),
            None,
            &envelope.to_string(),
            &[("traceparent", &tp)],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    handshake(&t, agent).await;
    let mcp_trace = "5b8efff798038103d269b633813fc60c";
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_note",
        "arguments": {"job_id": job, "text": "four", "idempotency_key": t.idem()}}});
    let req = mcp_request(agent)
        .header("traceparent", traceparent(mcp_trace, "eee19b7ec3c1b174"))
        .body(Body::from(call.to_string()))
        .unwrap();
    let r = t.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["result"]["isError"], false, "{}", r.json);
    let events = t.events(&job).await;
    assert_eq!(trace_ids(&events)[3..], [Some(tool_trace), Some(mcp_trace)]);
}

/// `dispatch-api serve` on a database of its own, with `env`; killed when dropped.
struct Service {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    async fn start(db_url: &str, env: &[(&str, String)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_dispatch-api"))
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("DISPATCH_LISTEN", format!("127.0.0.1:{port}"))
            .env("DISPATCH_DATA_DIR", dir.path())
            .env(
                "DISPATCH_SOPS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/sops"),
            )
            .env("DISPATCH_CHAIN_KEYRING", chain_keys().to_toml())
            .env("DISPATCH_LOG_FORMAT", "json")
            .env("DISPATCH_TOOL_RATE_PER_MINUTE", "0")
            .env_remove("DISPATCH_CHAIN_KEYS_FILE")
            .env_remove("DISPATCH_EVIDENCE_STORE")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the service binary starts");
        let mut service = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("the service exited ({status}):\n{}", service.log_text());
            }
            let ready = http.get(format!("{}/readyz", service.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return service;
            }
            assert!(
                Instant::now() < deadline,
                "not ready:\n{}",
                service.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (the service drains, writes its last records and exports
    /// its last spans), then waits for it to exit.
    async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "the service did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A fresh database with an agent's and an auditor's key.
async fn database() -> (String, TestDb, String, String) {
    let (url, name, pool) = fresh_database().await;
    let agent = keys::create_key(&pool, Role::Agent, "agent-1", None)
        .await
        .unwrap();
    let auditor = keys::create_key(&pool, Role::Auditor, "auditor-1", None)
        .await
        .unwrap();
    pool.close().await;
    (url, TestDb { name }, agent, auditor)
}

async fn send(
    req: reqwest::RequestBuilder,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = req.bearer_auth(key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A Prometheus text page's samples: name → [(labels, value)].
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

fn samples(page: &str) -> Samples {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").unwrap();
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.entry(name.to_string())
            .or_default()
            .push((labels, value.parse().unwrap()));
    }
    out
}

fn value_of(page: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.get(name)?.iter().find_map(|(l, v)| {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (*l == want).then_some(*v)
    })
}

#[tokio::test]
async fn promtool_accepts_a_live_metrics_page_with_requests_by_route_and_refusals_by_code() {
    let Some(promtool) = promtool::promtool() else {
        return;
    };
    let (url, _db, agent, _auditor) = database().await;
    let service = Service::start(&url, &[]).await;
    let http = reqwest::Client::new();
    let base = &service.base;
    let (status, opened) = send(
        http.post(format!("{base}/v1/jobs")),
        &agent,
        &[("idempotency-key", "metrics-1")],
        Some(open_body("site-metrics")),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let job = opened["job_id"].as_str().unwrap();
    // Refused on REST (`forbidden`) and on the tool envelope (`tool_not_allowed`).
    let (status, _) = send(
        http.get(format!("{base}/v1/jobs/{job}/events")),
        &agent,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 403);
    let envelope = json!({"idempotency_key": "metrics-2", "arguments": {"approval_id": "x", "decision": "approve"}});
    let (status, answer) = send(
        http.post(format!("{base}/v1/tools/decide_approval")),
        &agent,
        &[],
        Some(envelope),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "tool_not_allowed");
    let (status, _) = send(
        http.get(format!("{base}/v1/no/such/{job}")),
        &agent,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A read that asks for a position no model has reached: 503 after 5 s.
    let far = format!("{base}/v1/board?min_position=1000000");
    let (status, behind) = send(http.get(far), &agent, &[], None).await;
    assert_eq!(
        (status, behind["code"].as_str()),
        (503, Some("projection_behind"))
    );

    // The read models' gauges are published every 5 s from start-up.
    let lag = [("projection", "board"), ("status", "live")];
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let page = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if value_of(&samples(&page), "dispatch_projection_lag_events", &lag).is_some() {
            break page;
        }
        assert!(Instant::now() < deadline, "no projection gauges:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    promtool::run(
        promtool,
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &["check", "metrics"],
        Some(&page),
    );
    let s = samples(&page);
    let requests = "dispatch_http_requests_total";
    let post_jobs = [("method", "POST"), ("route", "/v1/jobs"), ("status", "201")];
    assert_eq!(value_of(&s, requests, &post_jobs), Some(1.0), "{page}");
    let events = [
        ("method", "GET"),
        ("route", "/v1/jobs/{job_id}/events"),
        ("status", "403"),
    ];
    assert_eq!(value_of(&s, requests, &events), Some(1.0));
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(value_of(&s, requests, &unmatched), Some(1.0));
    assert!(
        !page.contains(job),
        "a raw path is never a label value:\n{page}"
    );
    let latency = "dispatch_http_request_duration_seconds_count";
    assert_eq!(
        value_of(&s, latency, &[("method", "POST"), ("route", "/v1/jobs")]),
        Some(1.0)
    );
    let refusals = "dispatch_refusals_total";
    let rest = [("code", "forbidden"), ("transport", "rest")];
    assert_eq!(value_of(&s, refusals, &rest), Some(1.0));
    let tool = [("code", "tool_not_allowed"), ("transport", "tool")];
    assert_eq!(value_of(&s, refusals, &tool), Some(1.0));
    let mcp = [("code", "tool_not_allowed"), ("transport", "mcp")];
    assert_eq!(
        value_of(&s, refusals, &mcp),
        Some(0.0),
        "exists from start-up"
    );
    let position = [("projection", "board"), ("status", "live")];
    assert!(value_of(&s, "dispatch_projection_position", &position).is_some());
    let behind = [("method", "GET"), ("route", "/v1/board"), ("status", "503")];
    assert_eq!(value_of(&s, requests, &behind), Some(1.0));
    // That 503 is the contract's answer, not a fault: logged at INFO, and
    // nothing at ERROR.
    let log = service.log_text();
    let answered: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "finished processing request" && l["status"] == 503)
        .collect();
    assert_eq!(answered.len(), 1, "{log}");
    assert_eq!(answered[0]["level"], "INFO");
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
    // Every family on the page is one the code describes.
    for name in s.keys() {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|f| dispatch_api::telemetry::metrics::family_named(f).is_some())
            .unwrap_or(name);
        assert!(
            dispatch_api::telemetry::metrics::family_named(family).is_some(),
            "{name} is not described"
        );
    }
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with protobuf bodies; every span
/// received.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let keep = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let keep = keep.clone();
            async move {
                let request =
                    ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        keep.lock().unwrap().extend(scope.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn attribute(span: &Span, key: &str) -> Option<any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

/// An integer attribute (a field recorded after the span started arrives
/// as its text).
fn number(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        any_value::Value::IntValue(n) => Some(n),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

#[tokio::test]
async fn the_spans_of_a_command_reach_an_otlp_receiver_under_the_callers_trace() {
    let (endpoint, received) = otlp_receiver().await;
    let (url, _db, agent, auditor) = database().await;
    let mut service = Service::start(&url, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)]).await;
    let http = reqwest::Client::new();
    let base = service.base.clone();
    let tp = traceparent(TRACE_ID, PARENT_SPAN);
    let (status, opened) = send(
        http.post(format!("{base}/v1/jobs")),
        &agent,
        &[("idempotency-key", "traced-1"), ("traceparent", &tp)],
        Some(open_body("site-traced")),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let job = opened["job_id"].as_str().unwrap().to_string();
    let position = opened["events"][0]["global_position"].as_i64().unwrap();
    let (status, events) = send(
        http.get(format!("{base}/v1/jobs/{job}/events")),
        &auditor,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["events"][0]["trace_id"], TRACE_ID, "{events}");
    // The projectors have applied the event (a pass with work: its span).
    let (status, _) = send(
        http.get(format!("{base}/v1/board?min_position={position}")),
        &agent,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Stopping exports what is still queued.
    service.stop().await;
    let log = service.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("\"POST\"") && l.contains(&format!("\"trace_id\":\"{TRACE_ID}\""))),
        "the request's log lines carry its trace id:\n{log}"
    );

    let spans = received.lock().unwrap().clone();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let traced: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let names: Vec<&str> = traced.iter().map(|s| s.name.as_str()).collect();
    let root = traced
        .iter()
        .find(|s| hex(&s.parent_span_id) == PARENT_SPAN)
        .unwrap_or_else(|| panic!("no span is the child of the caller's: {names:?}\n{log}"));
    assert_eq!(root.name, "POST /v1/jobs");
    assert_eq!(root.kind, 2, "a server span");
    let by_name = |name: &str| {
        *traced
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no `{name}` span in the trace: {names:?}"))
    };
    let (gate, decide, write, batch) = (
        by_name("gate"),
        by_name("decide"),
        by_name("write"),
        by_name("write_batch"),
    );
    for child in [gate, decide, write] {
        assert_eq!(
            child.parent_span_id, root.span_id,
            "{} under the request",
            child.name
        );
    }
    assert_eq!(
        batch.parent_span_id, write.span_id,
        "the batch under its (only) write"
    );
    assert_eq!(
        attribute(gate, "outcome"),
        Some(any_value::Value::StringValue("admitted".into()))
    );
    assert_eq!(
        attribute(decide, "command"),
        Some(any_value::Value::StringValue("open_job".into()))
    );
    assert_eq!(number(write, "batch_size"), Some(1), "{write:?}");
    assert_eq!(number(batch, "batch_size"), Some(1), "{batch:?}");
    // Every span of the trace hangs off the request's.
    let ids: Vec<&[u8]> = traced.iter().map(|s| s.span_id.as_slice()).collect();
    for s in &traced {
        assert!(
            s.span_id == root.span_id || ids.contains(&s.parent_span_id.as_slice()),
            "{} hangs off nothing in the trace",
            s.name
        );
    }
    let pass = spans
        .iter()
        .find(|s| s.name == "projection_pass" && number(s, "events").is_some_and(|n| n >= 1))
        .unwrap_or_else(|| panic!("no projection pass with events among {} spans", spans.len()));
    assert_eq!(
        attribute(pass, "pass"),
        Some(any_value::Value::StringValue("live".into()))
    );
}
