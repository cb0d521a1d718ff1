//! The example consumers of `docs/examples/events/` against real output:
//!
//! - `nats-consumer.mjs` reads a JetStream stream that the service's own
//!   subscription runner filled (a unique stream and subject prefix per
//!   run, on the machine's nats-server) and must print every event of the
//!   store exactly once — a message published twice under another message
//!   id included — in order per stream, each a valid CloudEvent equal to
//!   the service's mapping of the stored event;
//! - `webhook-receiver.mjs` gets deliveries signed here per the Standard
//!   Webhooks specification ([`standard_webhook_signature`], written from
//!   the specification, not from the service's sink) and must accept
//!   exactly the verified ones, once each, and answer 401 to a tampered
//!   body, a wrong secret, a stale or future timestamp and missing headers.
//!
//! They need node (≥ 18) and, for the NATS consumer, the npm packages of
//! `docs/examples/events` (`npm ci` there). Where those are missing the
//! tests print `skipped: …` and pass, unless `DISPATCH_BROWSER_TESTS=required`
//! (set by `.ci/run` once it has installed node and the packages), where
//! that is a failure — the same convention as the browser tests. NATS is
//! found and required as in `subscriptions.rs` (`TEST_NATS_URL`,
//! `DISPATCH_NATS_TESTS=required`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use dispatch_api::app::cloudevents::cloud_event;
use dispatch_api::subscriptions::nats::{NatsConfig, NatsSource};
use dispatch_api::subscriptions::SinkSource;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Row;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::subscriptions::{caught_up, deliver, nats_config, nats_reachable, nats_url};
use crate::support::*;

/// `docs/examples/events`.
pub(crate) fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/examples/events")
}

/// What is missing to run the example consumers, if anything: node ≥ 18,
/// and the npm packages when `packages` is true.
pub(crate) fn missing(packages: bool) -> Option<String> {
    if let Some(why) = node_missing() {
        return Some(why);
    }
    let installed = examples_dir()
        .join("node_modules/@nats-io/jetstream/package.json")
        .exists();
    if packages && !installed {
        return Some(
            "the example's npm packages are not installed (cd docs/examples/events && npm ci)"
                .into(),
        );
    }
    None
}

/// True (after printing why) when the test cannot run here and may skip;
/// panics instead when `DISPATCH_BROWSER_TESTS=required`.
pub(crate) fn skip(test: &str, packages: bool) -> bool {
    let Some(why) = missing(packages) else {
        return false;
    };
    let required = std::env::var("DISPATCH_BROWSER_TESTS").is_ok_and(|v| v == "required");
    assert!(!required, "{test}: {why} (DISPATCH_BROWSER_TESTS=required)");
    eprintln!("skipped: {test}: {why}");
    true
}

/// The Standard Webhooks signature of a delivery: `v1,` and the base64 of
/// HMAC-SHA-256 over `{id}.{timestamp}.{body}`, keyed with the secret's
/// bytes (`whsec_` and their base64).
pub(crate) fn standard_webhook_signature(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("the secret's base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

/// A new secret in the Standard Webhooks form.
pub(crate) fn new_webhook_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// `docs/examples/events/webhook-receiver.mjs`, running on a free loopback
/// port with `secret`.
pub(crate) struct ExampleReceiver {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    pub(crate) url: String,
}

impl ExampleReceiver {
    /// Starts it and waits until it accepts connections.
    pub(crate) async fn start(secret: &str) -> ExampleReceiver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, secret).await
    }

    /// Starts it on `port` (known before its secret: a webhook endpoint is
    /// registered at its URL, and the secret is in the answer).
    pub(crate) async fn start_on(port: u16, secret: &str) -> ExampleReceiver {
        let mut child = Command::new("node")
            .arg("webhook-receiver.mjs")
            .args(["--port", &port.to_string()])
            .current_dir(examples_dir())
            .env("WEBHOOK_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("webhook-receiver.mjs exited at start: {status}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return ExampleReceiver {
                    child,
                    url: format!("http://127.0.0.1:{port}/"),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("webhook-receiver.mjs did not listen on port {port} within 10 s");
    }

    /// Stops it and returns what it printed, one JSON value per line (each
    /// line is written before the request is answered, so every answered
    /// delivery's line is there).
    pub(crate) async fn stop(mut self) -> Vec<Value> {
        self.child.start_kill().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        let _ = self.child.wait().await;
        json_lines(&out)
    }
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Every stored event's CloudEvent from `source`, in the store's order
/// (`tx_id`, `global_position`).
async fn store_cloud_events(t: &TestApp, source: &str) -> Vec<Value> {
    let streams = sqlx::query("SELECT DISTINCT aggregate_type, aggregate_id FROM events")
        .fetch_all(&t.app.pool)
        .await
        .unwrap();
    let mut events = Vec::new();
    for s in streams {
        let (kind, id): (String, String) = (s.get("aggregate_type"), s.get("aggregate_id"));
        events.extend(t.app.stream_events(&kind, &id).await.unwrap());
    }
    let order: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM events ORDER BY tx_id, global_position")
            .fetch_all(&t.app.pool)
            .await
            .unwrap();
    let rank: HashMap<i64, usize> = order.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    events.sort_by_key(|e| rank[&e.global_position]);
    events.iter().map(|e| cloud_event(e, source)).collect()
}

/// A few jobs through several commands each, and the registry's events.
async fn some_history(t: &TestApp) -> (String, String) {
    t.register_technicians().await;
    let a = t.open_ifm_job("store-12").await;
    t.intake_and_triage(&a).await;
    assert_eq!(
        t.offer(&a, &t.keys.agent, "tech-a").await.state(),
        "offered"
    );
    let b = t.open_ifm_job_with_key("harbor-mall").await;
    t.intake_and_triage(&b).await;
    t.note(&b, &t.keys.agent, "Gate code 4411; ask for Sam")
        .await;
    t.note(&a, &t.keys.dispatcher, "Customer called again")
        .await;
    (a, b)
}

/// Runs the subscription runner with the NATS sink over `t` until the
/// stream holds every stored event, with one of them published a second
/// time under another message id before the last one; the store's events
/// as CloudEvents, in order.
async fn fill_stream(
    t: &TestApp,
    js: &async_nats::jetstream::Context,
    config: &NatsConfig,
    job: &str,
) -> Vec<Value> {
    let source: Arc<dyn SinkSource> = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop, runner) = deliver(t, "consumers-test", vec![source]);
    let first = store_cloud_events(t, &config.source).await;
    caught_up(t, "nats").await;

    // A message published again under another message id (as after a
    // restart past JetStream's duplicate window): the stream holds it twice,
    // the consumer must handle it once. Then one more event after it.
    let again = &first[1];
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(again.to_string().into())
        .message_id(format!("again-{}", uuid::Uuid::new_v4()));
    let kind: Vec<&str> = again["type"].as_str().unwrap().split('.').collect();
    js.send_publish(
        format!("{}.{}.{}", config.subject_prefix, kind[2], kind[3]),
        publish,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    t.note(job, &t.keys.agent, "Arriving after the duplicate")
        .await;
    let expected = store_cloud_events(t, &config.source).await;
    assert_eq!(expected.len(), first.len() + 1);
    caught_up(t, "nats").await;
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(15), runner)
        .await
        .expect("the runner stops")
        .unwrap();
    let held = js
        .get_stream(&config.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(
        held as usize,
        expected.len() + 1,
        "the stream holds every event once, and the duplicate"
    );

    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_nats_consumer_prints_every_event_once_in_order_per_job() {
    if skip("the example NATS consumer", true) || !nats_reachable().await {
        return;
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let t = TestApp::spawn().await;
    let (job_a, job_b) = some_history(&t).await;
    let config = nats_config();
    let expected = fill_stream(&t, &js, &config, &job_b).await;
    let run = Command::new("node")
        .arg("nats-consumer.mjs")
        .args(["--server", &config.url, "--stream", &config.stream])
        .args(["--durable", "consumers-test"])
        .args(["--count", &expected.len().to_string()])
        .current_dir(examples_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await;
    js.delete_stream(&config.stream).await.unwrap();
    let out = out
        .expect("nats-consumer.mjs ends within 60 s")
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nats-consumer.mjs failed: {stderr}");
    let printed = json_lines(&String::from_utf8_lossy(&out.stdout));

    for ce in &printed {
        validate("cloudevent.schema.json", ce);
    }
    let ids: Vec<&str> = printed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "an event printed twice: {ids:?}"
    );
    let by_id: HashMap<&str, &Value> = expected
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    assert_eq!(printed.len(), expected.len(), "{stderr}");
    for ce in &printed {
        let id = ce["id"].as_str().unwrap();
        assert_eq!(
            Some(&ce),
            by_id.get(id),
            "as the service maps the stored event"
        );
    }
    // In order per stream: each stream's events in their sequence, none missing.
    let mut next: HashMap<(String, String), i64> = HashMap::new();
    for ce in &printed {
        let stream = (
            ce["type"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(2)
                .unwrap()
                .to_string(),
            ce["subject"].as_str().unwrap().to_string(),
        );
        let n = next.entry(stream.clone()).or_insert(1);
        assert_eq!(ce["streamsequence"], json!(*n), "{stream:?} out of order");
        *n += 1;
    }
    for job in [&job_a, &job_b] {
        let stored = t.app.stream_events("job", job).await.unwrap().len() as i64;
        assert_eq!(next[&("job".to_string(), job.to_string())], stored + 1);
    }
}

#[tokio::test]
async fn the_example_webhook_receiver_accepts_exactly_the_verified_deliveries() {
    if skip("the example webhook receiver", false) {
        return;
    }
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("store-12").await;
    t.intake_and_triage(&job).await;
    let events = store_cloud_events(&t, "urn:dispatch-api:consumers-test").await;
    assert!(events.len() >= 4);

    let secret = new_webhook_secret();
    let receiver = ExampleReceiver::start(&secret).await;
    let http = reqwest::Client::new();
    let post = |id: String, timestamp: i64, signature: Option<String>, body: Vec<u8>| {
        let mut req = http
            .post(&receiver.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(s) = signature {
            req = req.header("webhook-signature", s);
        }
        let req = req.body(body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let now = || chrono::Utc::now().timestamp();
    let signed = |e: &Value, secret: &str, ts: i64| {
        let id = e["id"].as_str().unwrap().to_string();
        let body = e.to_string().into_bytes();
        let sig = standard_webhook_signature(secret, &id, ts, &body);
        (id, body, sig)
    };

    // Refused, and not handled: each a delivery of the first event.
    let ts = now();
    let (id, body, sig) = signed(&events[0], &secret, ts);
    let mut tampered = events[0].clone();
    tampered["data"]["actor"]["id"] = json!("someone-else");
    assert_eq!(
        post(
            id.clone(),
            ts,
            Some(sig.clone()),
            tampered.to_string().into_bytes()
        )
        .await,
        401,
        "a tampered body"
    );
    let (_, _, wrong) = signed(&events[0], &new_webhook_secret(), ts);
    assert_eq!(
        post(id.clone(), ts, Some(wrong), body.clone()).await,
        401,
        "another secret"
    );
    for (skew, what) in [(-6 * 60, "a stale timestamp"), (6 * 60, "a future one")] {
        let (_, _, s) = signed(&events[0], &secret, ts + skew);
        assert_eq!(
            post(id.clone(), ts + skew, Some(s), body.clone()).await,
            401,
            "{what}"
        );
    }
    assert_eq!(
        post(id.clone(), ts, None, body.clone()).await,
        401,
        "no signature"
    );
    let v2 = sig.replacen("v1,", "v2,", 1);
    assert_eq!(
        post(id.clone(), ts, Some(v2), body.clone()).await,
        401,
        "an unknown version"
    );
    let other_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        post(other_id, ts, Some(sig.clone()), body.clone()).await,
        401,
        "a signature of another id"
    );

    // Accepted: every event, one of them among several signatures (a secret
    // being rotated), and a retry of one with a new timestamp, handled once.
    for (i, e) in events.iter().enumerate() {
        let ts = now();
        let (id, body, sig) = signed(e, &secret, ts);
        let header = if i == 1 {
            let (_, _, old) = signed(e, &new_webhook_secret(), ts);
            format!("{old} {sig}")
        } else {
            sig
        };
        assert_eq!(post(id, ts, Some(header), body).await, 204, "event {i}");
    }
    let ts = now() + 1;
    let (id, body, sig) = signed(&events[2], &secret, ts);
    assert_eq!(post(id, ts, Some(sig), body).await, 204, "a retry");

    let printed = receiver.stop().await;
    for ce in &printed {
        validate("cloudevent.schema.json", ce);
    }
    let ids =
        |list: &[Value]| -> Vec<String> { list.iter().map(|e| e["id"].to_string()).collect() };
    assert_eq!(
        ids(&printed),
        ids(&events),
        "every verified event once, in the order sent"
    );
    assert!(printed == events, "each printed as it was sent");
}
