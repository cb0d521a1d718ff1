//! Jobs at registered doors: `open_job` with a `door_id` takes its site,
//! door and client from the registry; duplicates are found by the door's
//! id whatever the caller says about the door, and jobs opened before the
//! registry at the site's reference and the door's tag count as the
//! door's; an unknown or retired door is refused, writing nothing.

use serde_json::{json, Value};

use crate::support::*;

/// A customer, a site (reference `MRC-E`) and a fire door (tag `FD-2B`).
async fn installed_base(t: &TestApp) {
    registry(
        t,
        "register_customer",
        None,
        json!({"customer_id": "cust-mercy", "name": "Mercy Health", "billing": "direct"}),
    )
    .await;
    registry(
        t,
        "register_site",
        None,
        json!({"site_id": "site-mercy-east", "customer_id": "cust-mercy", "name": "Mercy Hospital East",
               "address": "100 Mercy Way", "time_zone": "America/Chicago", "reference": "MRC-E"}),
    )
    .await;
    registry(
        t,
        "register_door",
        None,
        json!({"door_id": "door-fd-2b", "site_id": "site-mercy-east", "kind": "swinging_fire",
               "location": "Stair B, level 2", "manufacturer": "Ceco", "serial": "C-1001", "tag": "FD-2B"}),
    )
    .await;
}

fn at_door(door_id: &str, description: &str) -> Value {
    json!({
        "incident_type": "fire_door_deficiency",
        "channel": "phone",
        "door_id": door_id,
        "contact": {"name": "Pat Facilities", "phone": "+1-555-0142"},
        "description": description,
    })
}

#[tokio::test]
async fn a_job_at_a_registered_door_takes_the_registrys_site_door_and_client() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    let r = t
        .post(
            "/v1/jobs",
            &t.keys.agent,
            at_door("door-fd-2b", "door does not latch"),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let job = r.json["job_id"].as_str().unwrap();
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(view.json["client_id"], "cust-mercy");
    assert_eq!(view.json["site"]["id"], "site-mercy-east");
    assert_eq!(view.json["site"]["name"], "Mercy Hospital East");
    assert_eq!(view.json["door"]["id"], "door-fd-2b");
    assert_eq!(view.json["door"]["location"], "Stair B, level 2");
    assert_eq!(view.json["door_id"], "door-fd-2b");
    assert_eq!(view.json["registered_door"]["kind"], "swinging_fire");
    assert_eq!(view.json["registered_door"]["serial"], "C-1001");
    assert_eq!(view.json["registered_door"]["status"], "in_service");
    let opened = &t.events(job).await[0];
    assert_eq!(opened["payload"]["door_id"], "door-fd-2b");
}

#[tokio::test]
async fn duplicates_are_found_by_the_doors_id_not_by_what_the_caller_says() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    let first = t
        .post(
            "/v1/jobs",
            &t.keys.agent,
            at_door("door-fd-2b", "stairwell door won't close"),
        )
        .await;
    let first = first.json["job_id"].as_str().unwrap().to_string();
    let second = t
        .post(
            "/v1/jobs",
            &t.keys.agent,
            at_door("door-fd-2b", "the grey door by the east stairs is stuck"),
        )
        .await;
    assert_eq!(second.status, 201, "{:?}", second.json);
    let job = second.json["job_id"].as_str().unwrap();
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(view.json["flags"]["possible_duplicate_of"], first.as_str());
}

#[tokio::test]
async fn a_job_from_before_the_registry_counts_at_its_reference_and_tag() {
    let t = TestApp::spawn().await;
    // Opened as text, before the site and door were registered.
    let mut legacy = open_body("MRC-E");
    legacy["door"] = json!({"id": "FD-2B", "location": "stairs"});
    let legacy = t.post("/v1/jobs", &t.keys.agent, legacy).await;
    assert_eq!(legacy.status, 201, "{:?}", legacy.json);
    let legacy = legacy.json["job_id"].as_str().unwrap().to_string();
    installed_base(&t).await;
    let r = t
        .post(
            "/v1/jobs",
            &t.keys.agent,
            at_door("door-fd-2b", "won't latch"),
        )
        .await;
    let job = r.json["job_id"].as_str().unwrap();
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(view.json["flags"]["possible_duplicate_of"], legacy.as_str());
}

#[tokio::test]
async fn an_unknown_or_retired_door_is_refused_and_nothing_is_written() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    let before = t.count("SELECT count(*) FROM events").await;
    let r = t
        .post("/v1/jobs", &t.keys.agent, at_door("door-nowhere", "stuck"))
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{:?}", r.json);
    let mut both = at_door("door-fd-2b", "stuck");
    both["site"] = json!({"id": "MRC-E", "name": "x", "address": "y"});
    let r = t.post("/v1/jobs", &t.keys.agent, both).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "validation_error"),
        "{:?}",
        r.json
    );
    let mut neither = at_door("door-fd-2b", "stuck");
    neither.as_object_mut().unwrap().remove("door_id");
    let r = t.post("/v1/jobs", &t.keys.agent, neither).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "validation_error"),
        "{:?}",
        r.json
    );
    assert_eq!(t.count("SELECT count(*) FROM events").await, before);
    registry(
        &t,
        "retire_door",
        Some("door-fd-2b"),
        json!({"reason": "replaced by FD-2B-2"}),
    )
    .await;
    let before = t.count("SELECT count(*) FROM events").await;
    let r = t
        .post("/v1/jobs", &t.keys.agent, at_door("door-fd-2b", "stuck"))
        .await;
    assert_eq!((r.status, r.code()), (422, "door_retired"), "{:?}", r.json);
    assert_eq!(t.count("SELECT count(*) FROM events").await, before);
}

#[tokio::test]
async fn a_new_callers_site_and_door_register_with_the_job_once() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    let body = json!({
        "incident_type": "overhead_door_off_track",
        "channel": "phone",
        "contact": {"name": "Lee Dock", "phone": "+1-555-0199"},
        "description": "dock door 4 came off its track",
        "register": {
            "site": {"customer_id": "cust-mercy", "name": "Mercy Warehouse", "address": "9 Depot Rd", "time_zone": "America/Chicago"},
            "door": {"kind": "dock", "location": "Dock 4"}
        }
    });
    let first = t
        .post_raw(
            "/v1/jobs",
            Some(&t.keys.dispatcher),
            Some("call-77"),
            &body.to_string(),
            &[],
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.json);
    let again = t
        .post_raw(
            "/v1/jobs",
            Some(&t.keys.dispatcher),
            Some("call-77"),
            &body.to_string(),
            &[],
        )
        .await;
    assert_eq!(again.body, first.body, "a retry answers the same");
    let job = first.json["job_id"].as_str().unwrap();
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    let door = view.json["door_id"].as_str().unwrap().to_string();
    assert_eq!(view.json["site"]["name"], "Mercy Warehouse");
    assert_eq!(view.json["client_id"], "cust-mercy");
    assert_eq!(
        t.count("SELECT count(*) FROM registry_entries WHERE kind IN ('site', 'door')")
            .await,
        4,
        "one site and one door more, once"
    );
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_type = 'door' AND aggregate_id = '{door}'"
        ))
        .await,
        1
    );
    // The agent may register a site and a door; an auditor may not open jobs at all,
    // and a technician's key may not register through open_job.
    let r = t.post("/v1/jobs", &t.keys.tech_d, body.clone()).await;
    assert_eq!(r.status, 403, "{:?}", r.json);
}
