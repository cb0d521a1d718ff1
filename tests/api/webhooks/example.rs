//! The example receiver of the docs (`docs/examples/webhook_receiver.py`)
//! against the real deliveries: it verifies every signature, refuses a
//! forged one, and prints each event once.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::*;

#[tokio::test]
async fn the_example_receiver_in_the_docs_verifies_and_deduplicates() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3 on this machine");
        return;
    }
    let t = local_app().await;
    let running = Running::start(&t, fast());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let r = t
        .post(
            "/v1/webhooks",
            &t.keys.admin,
            json!({"url": url, "event_types": ["job.*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/examples/webhook_receiver.py"
        ))
        .arg(port.to_string())
        .env("WEBHOOK_SECRET", r.json["secret"].as_str().unwrap())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("listening on"), "{first}");

    // A forged delivery is refused.
    let forged = reqwest::Client::new()
        .post(&url)
        .header("webhook-id", "forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let job = t.open_ifm_job("store-1").await;
    t.intake_and_triage(&job).await;
    caught_up(&t, &id).await;
    // Every event again: the receiver prints none twice.
    let r = t
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &t.keys.admin,
            json!({"from_position": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let events = stored(&t).await;
    let mut printed = Vec::new();
    while printed.len() < events.len() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the receiver printed every event")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        printed.push(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        printed,
        events.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    caught_up(&t, &id).await;
    let extra = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await;
    assert!(extra.is_err(), "a repeat was printed: {extra:?}");
    let log = attempts(&t, &id).await;
    assert!(
        log.len() >= 2 * events.len(),
        "the replay delivered again: {log:?}"
    );
    assert!(log.iter().all(|a| a["http_status"] == 204), "{log:?}");
    let _ = child.kill().await;
    running.stop().await;
}
