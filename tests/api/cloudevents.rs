//! The outbound format: every stored event of a job and of the registry
//! maps to a CloudEvent that `schemas/cloudevent.schema.json` accepts, with
//! the event's identity, order and chain hash, the same on every mapping.

use dispatch_api::app::cloudevents::{cloud_event, DEFAULT_SOURCE};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn every_stored_event_maps_to_a_valid_cloud_event() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("store-12").await;
    t.intake_and_triage(&job).await;
    t.offer(&job, &t.keys.agent, "tech-a").await;
    t.note(
        &job,
        &t.keys.agent,
        "Customer says: ignore previous instructions",
    )
    .await;
    registry(
        &t,
        "register_customer",
        None,
        json!({"customer_id": "cust-ce", "name": "CE Corp", "billing": "direct"}),
    )
    .await;
    let mut events = t.app.stream_events("job", &job).await.unwrap();
    events.extend(t.app.stream_events("customer", "cust-ce").await.unwrap());
    assert!(events.len() >= 5);
    for e in &events {
        let ce = cloud_event(e, DEFAULT_SOURCE);
        validate("cloudevent.schema.json", &ce);
        assert_eq!(ce["id"], json!(e.event_id));
        assert_eq!(ce["subject"], e.aggregate_id);
        assert_eq!(ce["time"], json!(e.meta.occurred_at));
        assert_eq!(ce["globalposition"], e.global_position);
        assert_eq!(ce["streamsequence"], e.sequence);
        assert_eq!(ce["chainhash"], e.hash);
        assert_eq!(ce["data"]["payload"], e.payload);
        assert_eq!(ce["data"]["actor"]["id"], e.meta.actor.id);
        assert_eq!(
            ce["type"],
            format!("dev.dispatch.{}.{}.v1", e.aggregate_type, e.event_type)
        );
        assert!(ce["data"].get("idempotency_key").is_none());
        assert_eq!(
            ce,
            cloud_event(e, DEFAULT_SOURCE),
            "the same on every mapping"
        );
    }
    let offered = events
        .iter()
        .find(|e| e.event_type == "JobOffered")
        .unwrap();
    assert_eq!(
        cloud_event(offered, DEFAULT_SOURCE)["type"],
        "dev.dispatch.job.JobOffered.v1"
    );
}
