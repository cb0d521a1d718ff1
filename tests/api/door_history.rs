//! A door's history (`GET /v1/doors/{door_id}/history`, the
//! `get_door_history` tool): the door's own events and every job at it,
//! newest first — jobs opened at the registered door by its id, jobs
//! opened before the registry by the site's reference and the door's tag
//! (and not another door's text) — the same after a rebuild; an unknown
//! door is `404 not_found`; bad paging is a `400`.

use chrono::Duration;
use serde_json::{json, Value};

use crate::support::*;
use crate::tools::tool;

/// A customer, a site (reference `MRC-E`) and an automatic door (tag `AD-1`).
pub async fn installed_base(t: &TestApp) {
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
        json!({"door_id": "door-ad-1", "site_id": "site-mercy-east", "kind": "automatic_sliding",
               "location": "Main entrance", "manufacturer": "Stanley", "model": "Dura-Glide",
               "serial": "S-77", "installed_on": "2019-05-01", "tag": "AD-1"}),
    )
    .await;
}

/// A job opened with free-text site and door, as before the registry.
fn legacy_body(site: &str, door: &str) -> Value {
    let mut body = open_body(site);
    body["channel"] = "phone".into();
    body.as_object_mut().unwrap().remove("ifm");
    body["door"]["id"] = door.into();
    body
}

async fn upload(t: &TestApp, kind: &str) -> String {
    let idem = t.idem();
    let r = t
        .upload(&t.keys.tech_d, Some(&idem), kind, "image/jpeg")
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    r.json["sha256"].as_str().unwrap().to_string()
}

/// Opens a job at the registered door and works it to a check-out that
/// records a deficiency and a part: the job's id.
async fn job_with_a_deficiency(t: &TestApp) -> String {
    let body = json!({
        "incident_type": "door_stuck_open",
        "channel": "phone",
        "door_id": "door-ad-1",
        "contact": {"name": "Pat Facilities", "phone": "+1-555-0142"},
        "description": "Sliding door stuck open",
    });
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let job = r.json["job_id"].as_str().unwrap().to_string();
    let (agent, tech_d) = (&t.keys.agent, &t.keys.tech_d);
    let eta = (t0() + Duration::hours(1)).to_rfc3339();
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("record_intake", agent,  TestApp::intake(),                  Want::Status(200)),
        ("triage_job",    agent,  json!({}),                          Want::Status(200)),
        ("offer_job",     agent,  json!({"technician_id": "tech-d"}), Want::Status(200)),
        ("accept_offer",  tech_d, json!({"eta": eta}),                Want::Status(200)),
        ("start_travel",  tech_d, json!({}),                          Want::Status(200)),
        ("check_in",      tech_d, json!({"method": "app"}),           Want::State("on_site")),
    ];
    t.script(&job, steps).await;
    let sop = t.get("/v1/sops/door_stuck_open", tech_d).await.json;
    for item in sop["field"]["checklist"].as_array().unwrap() {
        let body = json!({"item_id": item["id"], "result": "pass"});
        t.expect(
            &job,
            "complete_checklist_item",
            tech_d,
            body,
            Want::Status(200),
        )
        .await;
    }
    for kind in ["photo_before", "checklist_form", "photo_after", "signature"] {
        let sha = upload(t, kind).await;
        let body = json!({"kind": kind, "sha256": sha});
        t.expect(&job, "attach_evidence", tech_d, body, Want::Status(200))
            .await;
    }
    let checkout = json!({"outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true,
        "resolution": "Replaced the motion sensor",
        "parts": [{"part_number": "SNS-100", "description": "Motion sensor", "quantity": 1, "unit_price_cents": 30000}],
        "deficiencies": [{"description": "Threshold worn, trip hazard", "corrective_action": "Replace threshold"}]});
    t.expect(
        &job,
        "check_out",
        tech_d,
        checkout,
        Want::State("work_completed"),
    )
    .await;
    job
}

fn event_types(answer: &Value) -> Vec<&str> {
    strings(&answer["rows"], "event_type")
}

/// The door's history, after the projectors caught up.
async fn history(t: &TestApp, query: &str) -> Resp {
    t.project().await;
    t.get(
        &format!("/v1/doors/door-ad-1/history{query}"),
        &t.keys.dispatcher,
    )
    .await
}

#[tokio::test]
async fn a_doors_history_shows_its_jobs_and_its_own_events_newest_first() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    // Before the registry: one job at the door's text, one at another door's.
    let legacy = t
        .post("/v1/jobs", &t.keys.agent, legacy_body("MRC-E", "AD-1"))
        .await;
    assert_eq!(legacy.status, 201, "{:?}", legacy.json);
    let legacy = legacy.json["job_id"].as_str().unwrap().to_string();
    let other = t
        .post("/v1/jobs", &t.keys.agent, legacy_body("MRC-E", "AD-2"))
        .await;
    assert_eq!(other.status, 201, "{:?}", other.json);
    let cancel = json!({"reason": "caller fixed it"});
    t.expect(
        &legacy,
        "cancel_job",
        &t.keys.dispatcher,
        cancel,
        Want::State("cancelled"),
    )
    .await;
    installed_base(&t).await;
    let job = job_with_a_deficiency(&t).await;

    let r = history(&t, "").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let a = &r.json;
    assert_eq!(a["door"]["door_id"], "door-ad-1");
    assert_eq!(a["door"]["serial"], "S-77");
    assert_eq!(a["site"]["name"], "Mercy Hospital East");
    assert_eq!(a["customer"]["name"], "Mercy Health");
    assert_eq!(
        a["legacy_key"],
        json!({"site_id": "MRC-E", "door_id": "AD-1"})
    );
    assert!(a["position"].as_i64().unwrap() > 0);
    assert_eq!(
        event_types(a),
        [
            "CheckedOut",
            "CheckedIn",
            "OfferAccepted",
            "JobOffered",
            "JobOpened",
            "DoorRegistered",
            "JobCancelled",
            "JobOpened",
        ]
    );
    let rows = a["rows"].as_array().unwrap();
    let positions: Vec<i64> = rows
        .iter()
        .map(|r| r["global_position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    let out = &rows[0];
    assert_eq!(out["job_id"], job.as_str());
    assert_eq!(out["door_id"], "door-ad-1");
    assert_eq!(out["technician_id"], "tech-d");
    assert_eq!(out["detail"]["outcome"], "completed");
    assert_eq!(out["detail"]["door_left_state"], "operational");
    assert_eq!(out["detail"]["parts"][0]["part_number"], "SNS-100");
    assert_eq!(
        out["detail"]["deficiencies"][0]["description"],
        "Threshold worn, trip hazard"
    );
    assert_eq!(rows[4]["detail"]["incident_type"], "door_stuck_open");
    assert_eq!(rows[4]["detail"]["channel"], "phone");
    assert_eq!(rows[5]["source"], "door");
    assert_eq!(rows[5]["detail"]["details"]["kind"], "automatic_sliding");
    for legacy_row in &rows[6..] {
        assert_eq!(legacy_row["job_id"], legacy.as_str());
        assert_eq!(legacy_row["door_id"], Value::Null);
        assert_eq!(legacy_row["site_text"], "MRC-E");
        assert_eq!(legacy_row["door_text"], "AD-1");
    }
    assert_eq!(a["next_before"], Value::Null);

    // Pages: `limit` rows, then the rest from `next_before`.
    let first = history(&t, "?limit=3").await.json;
    assert_eq!(
        event_types(&first),
        ["CheckedOut", "CheckedIn", "OfferAccepted"]
    );
    let next = first["next_before"].as_i64().unwrap();
    assert_eq!(next, positions[2]);
    let rest = history(&t, &format!("?before={next}")).await.json;
    assert_eq!(event_types(&rest), event_types(a)[3..].to_vec());

    // The tool answers the same rows.
    let r = tool(
        &t,
        &t.keys.agent,
        "get_door_history",
        json!({"door_id": "door-ad-1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["rows"], a["rows"]);
    assert_eq!(r.json["result"]["door"], a["door"]);

    // A rebuild from the events gives the same rows.
    let rt = t.runtime();
    rt.request_rebuild("door_history").await.unwrap();
    rt.catch_up().await.unwrap();
    let (table, _) = t.app.read_model("door_history").await.unwrap();
    assert!(table.starts_with("rm_door_history_v1_"), "{table}");
    let again = history(&t, "").await;
    assert_eq!(
        again.json["rows"], a["rows"],
        "a rebuild gives the same rows"
    );
}

#[tokio::test]
async fn the_doors_own_events_are_in_its_history() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    registry(
        &t,
        "update_door",
        Some("door-ad-1"),
        json!({"location": "Main entrance, east"}),
    )
    .await;
    registry(
        &t,
        "set_door_status",
        Some("door-ad-1"),
        json!({"status": "out_of_service", "reason": "operator burned out"}),
    )
    .await;
    let r = history(&t, "").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        event_types(&r.json),
        ["DoorStatusChanged", "DoorUpdated", "DoorRegistered"]
    );
    let status = &r.json["rows"][0]["detail"];
    assert_eq!(
        (&status["from"], &status["to"]),
        (&json!("in_service"), &json!("out_of_service"))
    );
    assert_eq!(r.json["door"]["status"], "out_of_service");
}

#[tokio::test]
async fn an_unknown_door_is_not_found_and_bad_paging_is_refused() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    t.project().await;
    let r = t
        .get("/v1/doors/no-such-door/history", &t.keys.dispatcher)
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{:?}", r.json);
    let r = tool(
        &t,
        &t.keys.agent,
        "get_door_history",
        json!({"door_id": "no-such-door"}),
    )
    .await;
    assert_eq!(r.status, 404, "{:?}", r.json);
    for q in [
        "limit=0",
        "limit=1001",
        "before=0",
        "before=x",
        "min_position=-1",
        "door=1",
    ] {
        let r = t
            .get(
                &format!("/v1/doors/door-ad-1/history?{q}"),
                &t.keys.dispatcher,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "validation_error"),
            "{q}: {:?}",
            r.json
        );
    }
    // A position no event has is answered now: the model is behind it.
    let r = t
        .get(
            "/v1/doors/door-ad-1/history?min_position=999999",
            &t.keys.dispatcher,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (503, "projection_behind"),
        "{:?}",
        r.json
    );
    // Every role of the tool reads it; a key that is no key does not.
    for key in [
        &t.keys.agent,
        &t.keys.tech_a,
        &t.keys.auditor,
        &t.keys.admin,
    ] {
        let r = t.get("/v1/doors/door-ad-1/history", key).await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
    let r = t.get("/v1/doors/door-ad-1/history", "not-a-key").await;
    assert_eq!(r.status, 401);
}
