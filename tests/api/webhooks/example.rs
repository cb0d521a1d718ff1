//! The example receiver of the docs
//! (`docs/examples/events/webhook-receiver.mjs`, written from the Standard
//! Webhooks specification with Node's own modules) against real deliveries:
//! it accepts every one (204), and prints each event once though a replay
//! delivers every event again.

use crate::consumers::{skip, ExampleReceiver};

use super::*;

#[tokio::test]
async fn the_example_receiver_in_the_docs_takes_real_deliveries_once_each() {
    if skip("the example webhook receiver", false) {
        return;
    }
    let t = local_app().await;
    let running = Running::start(&t, fast());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = t
        .post(
            "/v1/webhooks",
            &t.keys.admin,
            json!({"url": format!("http://127.0.0.1:{port}/"), "event_types": ["job.*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    let receiver = ExampleReceiver::start_on(port, r.json["secret"].as_str().unwrap()).await;
    let job = t.open_ifm_job("store-1").await;
    t.intake_and_triage(&job).await;
    caught_up(&t, &id).await;
    // Every event again: the receiver handles none twice.
    let r = t
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &t.keys.admin,
            json!({"from_position": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let events = stored(&t).await;
    until("the replay delivered", 20, || async {
        attempts(&t, &id).await.len() >= 2 * events.len()
    })
    .await;
    let log = attempts(&t, &id).await;
    assert!(
        log.iter().all(|a| a["http_status"] == 204),
        "every delivery verified and taken: {log:?}"
    );
    let printed = receiver.stop().await;
    assert_eq!(
        printed
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        events.iter().map(|e| e.1.clone()).collect::<Vec<_>>(),
        "each event once, in order"
    );
    running.stop().await;
}
