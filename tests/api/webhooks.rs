//! Webhooks (issue 20): the subscriptions runner in-process, delivering to
//! receivers inside the test that verify every signature with the secret
//! of the 201 answer. Every event asked for arrives, none other; retries
//! carry the same `webhook-id` and every attempt is logged; an event
//! failing for a day is dead-lettered and an endpoint failing for three
//! is disabled (the test clock moves, nothing sleeps a day); dead letters
//! and positions are replayed; personal data is removed unless allowed;
//! bad registrations are refused with nothing written; a slow or huge
//! receiver holds no other endpoint back.

mod example;
mod receiver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::Duration as Days;
use dispatch_api::subscriptions::webhooks::{UrlPolicy, WebhookConfig, WebhookSource};
use dispatch_api::subscriptions::{log, Subscriptions};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::*;
use receiver::{Answer, Receiver};

/// Receivers on 127.0.0.1 are allowed; attempts time out after 3 s and are
/// retried after 20 to 80 ms.
fn fast() -> WebhookConfig {
    WebhookConfig {
        policy: UrlPolicy { allow_local: true },
        timeout: Duration::from_secs(3),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(80),
        ..WebhookConfig::default()
    }
}

async fn local_app() -> TestApp {
    TestApp::spawn()
        .await
        .with_webhook_urls(UrlPolicy { allow_local: true })
}

/// The runner, leading on the test's database, until dropped or stopped.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(t: &TestApp, config: WebhookConfig) -> Running {
        let source = WebhookSource::new(t.app.pool.clone(), config, t.clock.clone()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let runner = Subscriptions::new(t.app.pool.clone(), vec![Arc::new(source)]);
        Running {
            stop,
            task: tokio::spawn(runner.run(stopped)),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// Registers `receiver` for `types`: the endpoint's id; the receiver has
/// the secret of the answer.
async fn register(t: &TestApp, receiver: &Receiver, types: &[&str], personal: bool) -> String {
    let r = t
        .post(
            "/v1/webhooks",
            &t.keys.admin,
            json!({"url": receiver.url, "event_types": types, "include_personal_data": personal}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    receiver.set_secret(r.json["secret"].as_str().unwrap());
    r.json["id"].as_str().unwrap().to_string()
}

/// Waits up to `secs` for `check`.
async fn until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stored events: (position, id, aggregate type, aggregate id, type).
async fn stored(t: &TestApp) -> Vec<(i64, String, String, String, String)> {
    sqlx::query_as(
        "SELECT global_position, event_id::text, aggregate_type, aggregate_id, event_type FROM events ORDER BY global_position",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap()
}

/// Where the endpoint's checkpoint stands.
async fn position(t: &TestApp, id: &str) -> i64 {
    t.count(&format!(
        "SELECT COALESCE((SELECT last_pos FROM subscription_checkpoints WHERE name = 'webhook:{id}'), -1)"
    ))
    .await
}

async fn head(t: &TestApp) -> i64 {
    t.count("SELECT COALESCE(max(global_position), 0) FROM events")
        .await
}

/// Waits until the endpoint's checkpoint passed every stored event.
async fn caught_up(t: &TestApp, id: &str) {
    until("the checkpoint at the head", 20, || async {
        position(t, id).await >= head(t).await
    })
    .await;
}

async fn attempts(t: &TestApp, id: &str) -> Vec<Value> {
    let r = t
        .get(
            &format!("/v1/webhooks/{id}/attempts?limit=1000"),
            &t.keys.admin,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let mut list = r.json["attempts"].as_array().unwrap().clone();
    list.reverse();
    list
}

#[tokio::test]
async fn a_receiver_gets_every_event_it_asked_for_signed_and_no_other() {
    let t = local_app().await;
    let running = Running::start(&t, fast());
    t.register_technicians().await;
    let before = t.open_ifm_job("store-1").await;
    // A new endpoint starts at the store's horizon (the last event below the
    // oldest running transaction): once it passed them, the events before
    // are not delivered.
    until("the horizon past the events before", 10, || async {
        log::head(&t.app.pool).await.unwrap().pos >= head(&t).await
    })
    .await;
    let receiver = Receiver::start().await;
    let wanted = [
        "job.JobOpened",
        "job.JobTriaged",
        "job.JobOffered",
        "job.OfferAccepted",
    ];
    let id = register(&t, &receiver, &wanted, true).await;
    let job = t.open_ifm_job("store-2").await;
    t.intake_and_triage(&job).await;
    t.offer(&job, &t.keys.agent, "tech-a").await;
    t.note(&job, &t.keys.agent, "on the way").await;
    let eta = (t0() + chrono::Duration::hours(1)).to_rfc3339();
    t.cmd(&job, "accept_offer", &t.keys.tech_a, json!({"eta": eta}))
        .await;
    t.note(&before, &t.keys.agent, "an event of the first job")
        .await;
    caught_up(&t, &id).await;
    let events = stored(&t).await;
    let expected: Vec<&(i64, String, String, String, String)> = events
        .iter()
        .filter(|e| e.3 == job && wanted.contains(&format!("{}.{}", e.2, e.4).as_str()))
        .collect();
    assert_eq!(expected.len(), 4, "{events:?}");
    let got = receiver.got();
    let mut firsts: Vec<String> = Vec::new();
    for id in receiver.ids() {
        if !firsts.contains(&id) {
            firsts.push(id);
        }
    }
    assert_eq!(
        firsts,
        expected.iter().map(|e| e.1.clone()).collect::<Vec<_>>(),
        "every event asked for, in order; none other (not the first job's, not from before)"
    );
    for g in &got {
        assert!(g.verified, "signature of {}", g.id);
        assert_eq!(g.content_type, "application/cloudevents+json");
        assert_eq!(g.body["id"], g.id);
        validate("cloudevent.schema.json", &g.body);
    }
    assert_eq!(got[0].body["type"], "dev.dispatch.job.JobOpened.v1");
    assert_eq!(
        got[0].body["data"]["payload"]["contact"]["name"],
        "Sam Store"
    );
    let log = attempts(&t, &id).await;
    assert_eq!(log.len(), got.len(), "every attempt logged: {log:?}");
    for id in &firsts {
        assert!(log
            .iter()
            .any(|a| a["event_id"] == id.as_str() && a["http_status"] == 200));
    }

    let shown = t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json["status"], "enabled");
    assert_eq!(shown.json["lag_events"], 0);
    assert_eq!(shown.json["position"], head(&t).await);
    assert!(shown.json["failing_since"].is_null());
    assert!(
        shown.json.get("secret").is_none(),
        "the secret is shown once"
    );
    let subs = t.get("/v1/subscriptions", &t.keys.admin).await;
    let names: Vec<&str> = strings(&subs.json["subscriptions"], "name");
    assert!(
        names.contains(&format!("webhook:{id}").as_str()),
        "{names:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn retries_carry_the_same_id_in_order_per_stream_and_every_attempt_is_logged() {
    let t = local_app().await;
    let config = WebhookConfig {
        timeout: Duration::from_secs(1),
        ..fast()
    };
    let running = Running::start(&t, config);
    let receiver = Receiver::start().await;
    receiver.script(&[
        Answer::Status(500),
        Answer::Hang,
        Answer::Endless(503),
        Answer::Redirect,
    ]);
    let id = register(&t, &receiver, &["job.JobOpened", "job.NoteAdded"], false).await;
    let job = t.open_ifm_job("store-1").await;
    t.note(&job, &t.keys.agent, "second event of the stream")
        .await;
    caught_up(&t, &id).await;
    let events = stored(&t).await;
    let (opened, noted) = (&events[0].1, &events[1].1);
    let ids = receiver.ids();
    let first_noted = ids.iter().position(|i| i == noted).unwrap();
    assert!(
        first_noted >= 5 && ids[..first_noted].iter().all(|i| i == opened),
        "the first event until it was taken, then the second, never before: {ids:?}"
    );
    let got = receiver.got();
    assert!(got.iter().all(|g| g.verified));
    assert_eq!(
        got[..4].iter().map(|g| g.answer).collect::<Vec<_>>(),
        [
            Answer::Status(500),
            Answer::Hang,
            Answer::Endless(503),
            Answer::Redirect
        ],
        "the receiver answered as scripted"
    );
    assert_eq!(got[first_noted - 1].answer, Answer::Ok, "taken at last");
    assert!(
        got[..first_noted].iter().all(|g| g.raw == got[0].raw),
        "the same body on every retry"
    );
    let log = attempts(&t, &id).await;
    let (of_opened, of_noted): (Vec<&Value>, Vec<&Value>) =
        log.iter().partition(|a| a["event_id"] == opened.as_str());
    assert_eq!(
        of_opened.len(),
        first_noted,
        "every attempt logged: {log:?}"
    );
    for (n, a) in of_opened.iter().enumerate() {
        assert_eq!(a["attempt"], n + 1, "{log:?}");
        assert_eq!(a["error"].is_null(), n + 1 == first_noted, "{log:?}");
    }
    assert_eq!(of_opened[0]["http_status"], 500);
    assert!(of_opened[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 500"));
    assert!(of_opened[1]["http_status"].is_null());
    assert!(
        of_opened[1]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1000 ms"),
        "{log:?}"
    );
    // An endless answer: a few KiB read, the rest never (no waiting for it).
    let endless = of_opened[2]["error"].as_str().unwrap();
    assert!(
        endless.starts_with("HTTP 503: xxxx") && endless.len() < 300,
        "{endless}"
    );
    assert!(
        of_opened[2]["latency_ms"].as_i64().unwrap() < 900,
        "{log:?}"
    );
    assert_eq!(of_opened[3]["http_status"], 307, "no redirect followed");
    assert_eq!(of_opened[first_noted - 1]["http_status"], 200);
    assert_eq!(of_noted.last().unwrap()["http_status"], 200);
    let shown = t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin).await;
    assert!(
        shown.json["failing_since"].is_null(),
        "a success ends the failing"
    );
    assert_eq!(shown.json["retrying"], 0);
    running.stop().await;
}

#[tokio::test]
async fn a_day_of_failures_dead_letters_an_event_and_three_days_disable_the_endpoint() {
    let t = local_app().await;
    let running = Running::start(&t, fast());
    let receiver = Receiver::start().await;
    receiver.always(Answer::Status(500));
    let id = register(&t, &receiver, &["job.*"], false).await;
    let job = t.open_ifm_job("store-1").await;
    let opened = stored(&t).await[0].1.clone();
    until("a few attempts", 20, || async { receiver.got().len() >= 3 }).await;
    let shown = t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin).await;
    assert_eq!(shown.json["failing_since"], json!(t0()));
    assert_eq!(shown.json["retrying_events"][0]["event_id"], opened);
    assert_eq!(position(&t, &id).await, 0, "not passed while retried");
    t.clock.advance(Days::hours(25));
    until("the dead letter", 20, || async {
        t.count("SELECT count(*) FROM webhook_dead_letters").await == 1
    })
    .await;
    caught_up(&t, &id).await;
    let dead = t
        .get(&format!("/v1/webhooks/{id}/dead-letters"), &t.keys.admin)
        .await;
    let letter = &dead.json["dead_letters"][0];
    assert_eq!(letter["event_id"], opened);
    let tries = t
        .count(&format!(
            "SELECT count(*) FROM webhook_attempts WHERE event_id = '{opened}'"
        ))
        .await;
    assert_eq!(
        letter["attempts"], tries,
        "every attempt counted and logged"
    );
    assert!(letter["last_error"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 500"));
    assert!(letter["replayed_at"].is_null());
    let shown = t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin).await;
    assert_eq!(
        shown.json["status"], "enabled",
        "25 hours of failures: not yet disabled"
    );

    t.clock.advance(Days::hours(48));
    t.note(&job, &t.keys.agent, "after three days").await;
    until("the endpoint disabled", 20, || async {
        t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin)
            .await
            .json["status"]
            == "disabled"
    })
    .await;
    let shown = t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin).await;
    assert!(shown.json["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    let metrics = t.get("/metrics", &t.keys.admin).await.text();
    assert!(
        metrics.contains(&format!(
            "dispatch_webhook_disabled_total{{endpoint=\"{id}\"}} 1"
        )),
        "the metric"
    );

    // Mended: enabled again, the held event goes out; the dead letter on replay.
    receiver.always(Answer::Ok);
    let noted = stored(&t).await[1].1.clone();
    let r = t
        .post(
            &format!("/v1/webhooks/{id}/enable"),
            &t.keys.admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (200, Some("enabled")),
        "{:?}",
        r.json
    );
    assert!(r.json["failing_since"].is_null());
    caught_up(&t, &id).await;
    until("the held event", 20, || async {
        receiver.ids().contains(&noted)
    })
    .await;
    let r = t
        .post(
            &format!("/v1/webhooks/{id}/dead-letters/replay"),
            &t.keys.admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, &r.json["queued"]),
        (202, &json!(1)),
        "{:?}",
        r.json
    );
    until("the dead letter replayed", 20, || async {
        let d = t
            .get(&format!("/v1/webhooks/{id}/dead-letters"), &t.keys.admin)
            .await;
        !d.json["dead_letters"][0]["replayed_at"].is_null()
    })
    .await;
    let last = receiver.got().into_iter().last().unwrap();
    assert_eq!(last.id, opened, "the same webhook-id");
    assert!(last.verified);
    let log = attempts(&t, &id).await;
    assert_eq!(
        log.last().unwrap()["attempt"],
        tries + 1,
        "the replay continues the count"
    );
    running.stop().await;
}

#[tokio::test]
async fn an_endpoint_replays_from_a_position() {
    let t = local_app().await;
    let running = Running::start(&t, fast());
    let receiver = Receiver::start().await;
    let id = register(&t, &receiver, &["job.*"], false).await;
    let job = t.open_ifm_job("store-1").await;
    t.intake_and_triage(&job).await;
    t.note(&job, &t.keys.agent, "third").await;
    caught_up(&t, &id).await;
    let events = stored(&t).await;
    assert_eq!(receiver.ids().len(), events.len());
    let from = events[1].0;
    let r = t
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &t.keys.admin,
            json!({"from_position": from}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["position"], from - 1);
    until("the replay", 20, || async {
        receiver.ids().len() == 2 * events.len() - 1
    })
    .await;
    let again: Vec<String> = receiver.ids()[events.len()..].to_vec();
    assert_eq!(
        again,
        events[1..].iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    let bad = t
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &t.keys.admin,
            json!({"from_position": "x"}),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "validation_error"));
    let zero = t
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &t.keys.admin,
            json!({"from_position": 0}),
        )
        .await;
    assert_eq!((zero.status, zero.code()), (400, "validation_error"));
    running.stop().await;
}

#[tokio::test]
async fn personal_data_is_removed_unless_the_endpoint_may_have_it() {
    let t = local_app().await;
    let running = Running::start(&t, fast());
    let (plain, full) = (Receiver::start().await, Receiver::start().await);
    let types = ["job.JobOpened", "customer.*", "site.*", "technician.*"];
    let plain_id = register(&t, &plain, &types, false).await;
    let full_id = register(&t, &full, &types, true).await;
    t.register_technicians().await;
    t.open_ifm_job("store-1").await;
    let pat = json!([{"name": "Pat Facilities", "role": "facilities manager", "phone": "+1-555-0142", "email": "pat@example.com"}]);
    registry(
        &t,
        "register_customer",
        None,
        json!({"customer_id": "c-1", "name": "Mercy Health", "billing": "direct", "contacts": pat}),
    )
    .await;
    registry(&t, "register_site", None,
        json!({"site_id": "s-1", "customer_id": "c-1", "name": "Mercy East", "address": "1 Main St", "time_zone": "America/Chicago", "contacts": pat})).await;
    caught_up(&t, &plain_id).await;
    caught_up(&t, &full_id).await;
    let personal = [
        "Sam Store",
        "+1-555-0100",
        "Pat Facilities",
        "+1-555-0142",
        "pat@example.com",
        "Technician tech-a",
    ];
    let text = |r: &Receiver| {
        r.got()
            .iter()
            .map(|g| String::from_utf8_lossy(&g.raw).into_owned())
            .collect::<String>()
    };
    assert_eq!(plain.ids(), full.ids(), "the same events");
    assert_eq!(plain.ids().len(), 7);
    for p in personal {
        assert!(!text(&plain).contains(p), "{p} was sent");
        assert!(text(&full).contains(p), "{p} was not sent");
    }
    let opened = plain
        .got()
        .into_iter()
        .find(|g| g.body["type"] == "dev.dispatch.job.JobOpened.v1")
        .unwrap();
    assert_eq!(opened.body["data"]["payload"]["contact"], json!({}));
    assert_eq!(
        opened.body["data"]["payload"]["site"]["name"], "Retail Store 12",
        "not personal"
    );
    let site = plain
        .got()
        .into_iter()
        .find(|g| g.body["type"] == "dev.dispatch.site.SiteRegistered.v1")
        .unwrap();
    assert_eq!(
        site.body["data"]["payload"]["details"]["contacts"],
        json!([{"role": "facilities manager"}])
    );
    assert!(
        plain.got().iter().all(|g| g.verified),
        "signed over the body sent"
    );
    running.stop().await;
}

#[tokio::test]
async fn bad_registrations_are_refused_with_nothing_written() {
    let t = TestApp::spawn().await;
    let admin = &t.keys.admin.clone();
    let body = |url: &str, types: Value| json!({"url": url, "event_types": types});
    for (url, types, status, code) in [
        (
            "http://example.com/hook",
            json!(["*"]),
            422,
            "webhook_url_refused",
        ),
        (
            "https://10.0.0.1/hook",
            json!(["*"]),
            422,
            "webhook_url_refused",
        ),
        (
            "https://[::1]/hook",
            json!(["*"]),
            422,
            "webhook_url_refused",
        ),
        (
            "https://[::ffff:169.254.169.254]/",
            json!(["*"]),
            422,
            "webhook_url_refused",
        ),
        (
            "https://localhost/hook",
            json!(["*"]),
            422,
            "webhook_url_refused",
        ),
        (
            "https://example.com/hook",
            json!(["job.JobTeleported"]),
            422,
            "unknown_event_type",
        ),
        (
            "https://example.com/hook",
            json!(["jobs.*"]),
            422,
            "unknown_event_type",
        ),
        (
            "https://example.com/hook",
            json!([]),
            400,
            "validation_error",
        ),
        ("not a url", json!(["*"]), 400, "validation_error"),
        (
            "https://user:pw@example.com/",
            json!(["*"]),
            400,
            "validation_error",
        ),
    ] {
        let r = t.post("/v1/webhooks", admin, body(url, types)).await;
        assert_eq!((r.status, r.code()), (status, code), "{url}: {:?}", r.json);
    }
    let r = t
        .post(
            "/v1/webhooks",
            admin,
            json!({"url": "https://example.com/", "event_types": ["*"], "colour": "red"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "validation_error"),
        "{:?}",
        r.json
    );
    for key in [&t.keys.dispatcher, &t.keys.agent, &t.keys.auditor] {
        let r = t
            .post(
                "/v1/webhooks",
                key,
                body("https://example.com/", json!(["*"])),
            )
            .await;
        assert_eq!(r.status, 403, "{:?}", r.json);
        assert_eq!(t.get("/v1/webhooks", key).await.status, 403);
    }
    let nothing = "SELECT (SELECT count(*) FROM webhook_endpoints) + (SELECT count(*) FROM subscription_checkpoints)";
    assert_eq!(t.count(nothing).await, 0, "nothing written");

    // A duplicate (local receivers allowed, as the operator may).
    let t = t.with_webhook_urls(UrlPolicy { allow_local: true });
    let first = t
        .post(
            "/v1/webhooks",
            admin,
            body("http://127.0.0.1:9/hook", json!(["*"])),
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.json);
    let again = t
        .post(
            "/v1/webhooks",
            admin,
            body("HTTP://127.0.0.1:9/hook", json!(["job.*"])),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (409, "webhook_already_registered"),
        "{:?}",
        again.json
    );
    assert_eq!(again.json["webhook_id"], first.json["id"]);
    assert_eq!(t.count(nothing).await, 2, "one endpoint and its checkpoint");
    let list = t.get("/v1/webhooks", admin).await;
    assert_eq!(list.json["webhooks"].as_array().unwrap().len(), 1);
    assert!(!list.text().contains("whsec_"), "no secret listed");
    for path in [
        "/v1/webhooks/not-a-uuid",
        "/v1/webhooks/00000000-0000-0000-0000-000000000000",
    ] {
        assert_eq!(t.get(path, admin).await.status, 404);
    }
}

#[tokio::test]
async fn a_deleted_endpoint_gets_nothing_more_and_frees_its_url() {
    let t = local_app().await;
    let running = Running::start(&t, fast());
    let receiver = Receiver::start().await;
    let id = register(&t, &receiver, &["*"], false).await;
    let job = t.open_ifm_job("store-1").await;
    until("the first event", 20, || async {
        receiver.got().len() == 1
    })
    .await;
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/webhooks/{id}"))
        .header("authorization", format!("Bearer {}", t.keys.admin))
        .body(Body::empty())
        .unwrap();
    let r = t.send(req).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        t.get(&format!("/v1/webhooks/{id}"), &t.keys.admin)
            .await
            .status,
        404
    );
    assert_eq!(position(&t, &id).await, -1, "its checkpoint is gone");
    t.note(&job, &t.keys.agent, "after the delete").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.got().len(), 1, "nothing after the delete");
    let again = t
        .post(
            "/v1/webhooks",
            &t.keys.admin,
            json!({"url": receiver.url, "event_types": ["*"]}),
        )
        .await;
    assert_eq!(again.status, 201, "the url is free again: {:?}", again.json);
    running.stop().await;
}

#[tokio::test]
async fn a_slow_or_huge_receiver_does_not_delay_another_endpoint() {
    let t = local_app().await;
    let config = WebhookConfig {
        timeout: Duration::from_secs(30),
        ..fast()
    };
    let running = Running::start(&t, config);
    let (slow, huge, quick) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    slow.always(Answer::Slow(Duration::from_secs(20)));
    huge.always(Answer::Endless(200));
    let slow_id = register(&t, &slow, &["job.*"], false).await;
    let huge_id = register(&t, &huge, &["job.*"], false).await;
    register(&t, &quick, &["job.*"], false).await;
    // The runner starts each endpoint's task within its 2 s tick.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let job = t.open_ifm_job("store-1").await;
    t.intake_and_triage(&job).await;
    t.note(&job, &t.keys.agent, "four").await;
    // Behind the slow one, the quick one would wait 20 s per event.
    let started = Instant::now();
    until("the quick receiver", 10, || async {
        quick.got().len() >= 4
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(slow.got().len() <= 1, "the slow one is still on its first");
    until("the huge receiver", 10, || async { huge.got().len() >= 4 }).await;
    caught_up(&t, &huge_id).await;
    let log = attempts(&t, &huge_id).await;
    assert!(
        log.iter()
            .all(|a| a["http_status"] == 200 && a["latency_ms"].as_i64().unwrap() < 900),
        "{log:?}"
    );
    assert!(position(&t, &slow_id).await < head(&t).await);
    running.stop().await;
}
