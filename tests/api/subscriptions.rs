//! Events out: the subscriptions runtime and the NATS JetStream sink, on
//! the machine's real nats-server (`127.0.0.1:4222`, or `TEST_NATS_URL`).
//! Each test publishes to a stream and subjects of its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use dispatch_api::subscriptions::nats::{NatsConfig, NatsSource};
use dispatch_api::subscriptions::{self, Cursor, SinkSource, Subscriptions};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::support::*;

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Whether NATS answers; where it does not, the test prints `skipped: …`
/// and passes, unless `DISPATCH_NATS_TESTS=required` (`.ci/run` sets it
/// after starting nats-server), which makes it fail.
pub async fn nats_reachable() -> bool {
    let url = nats_url();
    let reachable = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url.as_str())
        .await
        .is_ok();
    if !reachable {
        assert!(
            std::env::var("DISPATCH_NATS_TESTS").as_deref() != Ok("required"),
            "NATS is required (DISPATCH_NATS_TESTS=required) and does not answer at {url}"
        );
        eprintln!(
            "skipped: NATS does not answer at {url} (start nats-server -js, or set TEST_NATS_URL)"
        );
    }
    reachable
}

/// A stream and subject prefix no other test uses.
pub fn nats_config() -> NatsConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    NatsConfig {
        url: nats_url(),
        stream: format!("TEST_{}", &tag[..16]),
        subject_prefix: format!("test.{}", &tag[..16]),
        source: "urn:dispatch-api:test".into(),
    }
}

/// A runner delivering `sources` in the background, as replica `instance`;
/// dropping the returned sender stops it.
pub fn deliver(
    t: &TestApp,
    instance: &str,
    sources: Vec<Arc<dyn SinkSource>>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let runner = Subscriptions::new(t.app.pool.clone(), sources).instance(instance);
    (stop, tokio::spawn(runner.run(stopped)))
}

/// Waits until subscription `name` has delivered every event in the store.
/// (Not `log::head`: its horizon is the cluster's oldest running
/// transaction, which other tests' databases hold back, so it can stand
/// before events this test has committed.)
pub async fn caught_up(t: &TestApp, name: &str) {
    let (tx, pos): (String, i64) = sqlx::query_as(
        "SELECT tx_id::text, global_position FROM events ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(&t.app.pool)
    .await
    .unwrap();
    let head = Cursor {
        tx: tx.parse().unwrap(),
        pos,
    };
    for _ in 0..300 {
        let at = subscriptions::log::checkpoint(&t.app.pool, name)
            .await
            .unwrap();
        if at.is_some_and(|c| c >= head) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = subscriptions::status::status(&t.app.pool).await.unwrap();
    panic!("{name} did not catch up with {head:?} in 15 s: {status}");
}

/// Every message of a stream, in the stream's order: (subject, msg id, CloudEvent).
pub async fn stream_messages(config: &NatsConfig) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(config.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(&config.stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

/// Deletes the stream and waits until the server no longer has it (on a
/// busy disk a deletion can outlast the client's request timeout and land
/// later, after events the test meant for a new stream).
pub async fn delete_stream(config: &NatsConfig) {
    let client = async_nats::connect(config.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    for _ in 0..60 {
        let _ = js.delete_stream(&config.stream).await;
        if let Err(e) = js.get_stream(&config.stream).await {
            if let jetstream::context::GetStreamErrorKind::JetStream(e) = e.kind() {
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the stream {} is still there after 30 s", config.stream);
}

/// A job taken through intake, triage, an offer and a note, and a customer
/// registered: events of two aggregate types.
async fn some_events(t: &TestApp) -> String {
    t.register_technicians().await;
    let job = t.open_ifm_job("store-12").await;
    t.intake_and_triage(&job).await;
    t.offer(&job, &t.keys.agent, "tech-a").await;
    t.note(&job, &t.keys.agent, "gate code 4512").await;
    registry(
        t,
        "register_customer",
        None,
        json!({"customer_id": "cust-out", "name": "Out Corp", "billing": "direct"}),
    )
    .await;
    job
}

/// Every event in the store, in global order.
async fn store_events(t: &TestApp) -> Vec<(String, String, i64, String)> {
    sqlx::query_as(
        "SELECT event_id::text, aggregate_id, sequence, aggregate_type || '.' || event_type \
         FROM events ORDER BY global_position",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap()
}

/// The store's events and the stream's messages are the same set, once
/// each, in order per stream, each a valid CloudEvent on its subject.
fn assert_once_in_order(
    config: &NatsConfig,
    stored: &[(String, String, i64, String)],
    messages: &[(String, String, Value)],
) {
    assert_eq!(
        messages.len(),
        stored.len(),
        "the stream holds every event once"
    );
    let ids: HashSet<&str> = messages.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "no message id twice");
    let mut last_in_stream: BTreeMap<String, i64> = BTreeMap::new();
    for (subject, id, ce) in messages {
        validate("cloudevent.schema.json", ce);
        assert_eq!(ce["id"], json!(id), "Nats-Msg-Id is the event id");
        assert_eq!(ce["source"], json!(config.source));
        let (_, _, seq, kind) = stored
            .iter()
            .find(|(e, ..)| e == id)
            .unwrap_or_else(|| panic!("{id} is not an event of the store"));
        assert_eq!(subject, &format!("{}.{kind}", config.subject_prefix));
        assert_eq!(ce["streamsequence"], json!(seq));
        let stream = format!("{}/{}", subject, ce["subject"]);
        let stream = stream.split('.').nth(2).unwrap_or_default().to_string()
            + "/"
            + ce["subject"].as_str().unwrap();
        if let Some(prev) = last_in_stream.insert(stream.clone(), *seq) {
            assert!(prev < *seq, "{stream}: {seq} after {prev}");
        }
    }
}

#[tokio::test]
async fn every_event_reaches_jetstream_once_in_order() {
    if !nats_reachable().await {
        return;
    }
    let t = TestApp::spawn().await;
    some_events(&t).await;
    let config = nats_config();
    let source = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop, runner) = deliver(&t, "replica-a", vec![source]);
    caught_up(&t, "nats").await;
    // More events while it runs: they follow.
    let job = t.open_ifm_job("store-13").await;
    t.note(&job, &t.keys.agent, "after the first batch").await;
    caught_up(&t, "nats").await;
    let _ = stop.send(true);
    runner.await.unwrap();

    let stored = store_events(&t).await;
    let messages = stream_messages(&config).await;
    assert_once_in_order(&config, &stored, &messages);

    let status = t.get("/v1/subscriptions", &t.keys.auditor).await;
    assert_eq!(status.status, 200, "{}", status.text());
    let nats = &status.json["subscriptions"][0];
    assert_eq!(nats["name"], "nats");
    assert_eq!(nats["kind"], "nats");
    assert_eq!(nats["events_delivered"], json!(stored.len()));
    assert_eq!(nats["lag_events"], 0);
    assert_eq!(nats["delivered_by"], "replica-a");
    assert_eq!(nats["failing"], false);
    assert_eq!(status.json["leader"]["instance"], "replica-a");
    let agent = t.get("/v1/subscriptions", &t.keys.agent).await;
    assert_eq!(agent.status, 403, "{}", agent.text());
    delete_stream(&config).await;
}

/// A leader that published but died before moving its checkpoint: the next
/// one resumes after the stream's last message instead of publishing again
/// (so the stream holds every event once even past the duplicate window).
#[tokio::test]
async fn a_new_leader_resumes_after_what_the_stream_already_holds() {
    if !nats_reachable().await {
        return;
    }
    let t = TestApp::spawn().await;
    some_events(&t).await;
    let config = nats_config();
    let source = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop, runner) = deliver(&t, "replica-a", vec![source]);
    caught_up(&t, "nats").await;
    let _ = stop.send(true);
    runner.await.unwrap();
    // The checkpoint as if the acknowledgements came and the move did not.
    subscriptions::log::reset(&t.app.pool, "nats", Cursor::START)
        .await
        .unwrap();
    t.note(&t.open_ifm_job("store-14").await, &t.keys.agent, "later")
        .await;

    let source = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop, runner) = deliver(&t, "replica-b", vec![source]);
    caught_up(&t, "nats").await;
    let _ = stop.send(true);
    runner.await.unwrap();

    let stored = store_events(&t).await;
    let messages = stream_messages(&config).await;
    assert_once_in_order(&config, &stored, &messages);
    delete_stream(&config).await;
}

/// Two replicas: one delivers; when it dies (its lock connection closes),
/// the other takes over from the checkpoint, and the first's late
/// checkpoint moves are refused.
#[tokio::test]
async fn one_replica_delivers_and_another_takes_over_when_it_dies() {
    if !nats_reachable().await {
        return;
    }
    let t = TestApp::spawn().await;
    some_events(&t).await;
    let config = nats_config();
    let a = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (_stop_a, runner_a) = deliver(&t, "replica-a", vec![a]);
    caught_up(&t, "nats").await;
    let b = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop_b, runner_b) = deliver(&t, "replica-b", vec![b]);
    t.note(&t.open_ifm_job("store-15").await, &t.keys.agent, "one")
        .await;
    caught_up(&t, "nats").await;
    let status = subscriptions::status::status(&t.app.pool).await.unwrap();
    assert_eq!(status["leader"]["instance"], "replica-a", "{status}");

    // Replica A dies: its task and its connections go.
    runner_a.abort();
    let _ = runner_a.await;
    t.note(&t.open_ifm_job("store-16").await, &t.keys.agent, "two")
        .await;
    caught_up(&t, "nats").await;
    let status = subscriptions::status::status(&t.app.pool).await.unwrap();
    assert_eq!(status["leader"]["instance"], "replica-b", "{status}");
    assert_eq!(
        status["subscriptions"][0]["delivered_by"], "replica-b",
        "{status}"
    );
    // A replica that is not the leader cannot move a checkpoint.
    let at = subscriptions::log::checkpoint(&t.app.pool, "nats")
        .await
        .unwrap()
        .unwrap();
    let moved = subscriptions::log::advance(
        &t.app.pool,
        "nats",
        "replica-a",
        at,
        Cursor {
            tx: at.tx,
            pos: at.pos + 1,
        },
        1,
    )
    .await
    .unwrap();
    assert_eq!(moved, subscriptions::log::Moved::NotLeader);
    let _ = stop_b.send(true);
    runner_b.await.unwrap();

    let stored = store_events(&t).await;
    let messages = stream_messages(&config).await;
    assert_once_in_order(&config, &stored, &messages);
    delete_stream(&config).await;
}

/// NATS unreachable: nothing is acknowledged, the checkpoint stays, the
/// error is reported; the service goes on taking commands.
#[tokio::test]
async fn an_unreachable_server_holds_the_checkpoint_and_reports_why() {
    let t = TestApp::spawn().await;
    some_events(&t).await;
    let mut config = nats_config();
    // Nothing listens on port 1.
    config.url = "nats://127.0.0.1:1".into();
    let source = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop, runner) = deliver(&t, "replica-a", vec![source]);
    let mut status = Value::Null;
    for _ in 0..200 {
        status = t.get("/v1/subscriptions", &t.keys.admin).await.json;
        if status["subscriptions"][0]["failing"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nats = &status["subscriptions"][0];
    assert_eq!(nats["failing"], true, "{status}");
    assert_eq!(nats["position"], 0, "{status}");
    assert!(nats["lag_events"].as_i64().unwrap() > 0, "{status}");
    assert!(nats["last_error"].as_str().unwrap().len() > 5, "{status}");
    let r = t
        .note(
            &t.open_ifm_job("store-17").await,
            &t.keys.agent,
            "still working",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let _ = stop.send(true);
    runner.await.unwrap();
}

/// The stream deleted under a running publisher (an operator's mistake, a
/// server restarted without its store): it is made again and what follows
/// is published; nothing after the deletion is lost.
#[tokio::test]
async fn a_deleted_stream_is_made_again() {
    if !nats_reachable().await {
        return;
    }
    let t = TestApp::spawn().await;
    some_events(&t).await;
    let config = nats_config();
    let source = Arc::new(NatsSource::new(t.app.pool.clone(), config.clone()));
    let (stop, runner) = deliver(&t, "replica-a", vec![source]);
    caught_up(&t, "nats").await;
    delete_stream(&config).await;
    let before: i64 = t.count("SELECT count(*) FROM events").await;
    let job = t.open_ifm_job("store-18").await;
    t.note(&job, &t.keys.agent, "after the deletion").await;
    caught_up(&t, "nats").await;
    let _ = stop.send(true);
    runner.await.unwrap();
    let after: i64 = t.count("SELECT count(*) FROM events").await;
    let messages = stream_messages(&config).await;
    assert_eq!(messages.len() as i64, after - before, "{messages:?}");
    delete_stream(&config).await;
}

/// A sink in memory that takes at most `per_call` events of each batch.
struct Recording {
    name: String,
    per_call: usize,
    got: std::sync::Mutex<Vec<uuid::Uuid>>,
}

#[async_trait::async_trait]
impl subscriptions::Sink for Recording {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, batch: &[dispatch_api::store::StoredEvent]) -> subscriptions::Delivery {
        let n = batch.len().min(self.per_call);
        let mut got = self.got.lock().unwrap();
        got.extend(batch[..n].iter().map(|e| e.event_id));
        subscriptions::Delivery {
            acknowledged: n,
            ..Default::default()
        }
    }
}

/// Gives the runner fixed sinks, each with its checkpoint at the start.
struct Fixed(sqlx::PgPool, Vec<Arc<Recording>>);

#[async_trait::async_trait]
impl SinkSource for Fixed {
    async fn sinks(&self) -> Result<Vec<Arc<dyn subscriptions::Sink>>, String> {
        let mut out: Vec<Arc<dyn subscriptions::Sink>> = Vec::new();
        for s in &self.1 {
            subscriptions::log::ensure(&self.0, &s.name, "webhook", Cursor::START)
                .await
                .map_err(|e| e.to_string())?;
            out.push(s.clone());
        }
        Ok(out)
    }
}

/// The subscriptions of a replica share their reads (a sink takes the rest
/// of a batch another one read): a sink that takes whole batches and one
/// that takes a single event per batch — so its cursor falls inside the
/// batches the other read, and behind the four kept — each get every event
/// of the store once, in the store's order, while events keep coming.
#[tokio::test]
async fn sinks_sharing_reads_each_get_every_event_once_in_order() {
    let t = TestApp::spawn().await;
    some_events(&t).await;
    let sink = |name: &str, per_call| {
        Arc::new(Recording {
            name: name.into(),
            per_call,
            got: Default::default(),
        })
    };
    let (fast, slow) = (sink("webhook:fast", usize::MAX), sink("webhook:slow", 1));
    let source = Fixed(t.app.pool.clone(), vec![fast.clone(), slow.clone()]);
    let (stop, stopped) = watch::channel(false);
    let runner = Subscriptions::new(t.app.pool.clone(), vec![Arc::new(source)])
        .instance("replica-a")
        .batch_size(4);
    let runner = tokio::spawn(runner.run(stopped));
    for n in 0..8 {
        let job = t.open_ifm_job(&format!("store-{}", 20 + n)).await;
        t.note(&job, &t.keys.agent, "while delivering").await;
    }
    caught_up(&t, "webhook:fast").await;
    caught_up(&t, "webhook:slow").await;
    let _ = stop.send(true);
    runner.await.unwrap();

    let order: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM events ORDER BY tx_id, global_position")
            .fetch_all(&t.app.pool)
            .await
            .unwrap();
    // More than the four kept batches of four hold.
    assert!(order.len() > 24, "{} events", order.len());
    assert_eq!(*fast.got.lock().unwrap(), order, "the fast sink");
    assert_eq!(*slow.got.lock().unwrap(), order, "the slow sink");
}
