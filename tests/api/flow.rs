//! Every job command reachable over HTTP and guarded, through a whole lifecycle.

use chrono::Duration;
use serde_json::json;

use crate::support::*;

async fn upload(t: &TestApp, key: &str, content: &str) -> String {
    let idem = t.idem();
    let r = t
        .post_raw(
            "/v1/evidence",
            Some(key),
            Some(&idem),
            content,
            &[("content-type", "image/jpeg")],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    r.json["sha256"].as_str().unwrap().to_string()
}

/// Drives a job to `on_site` with technician D: returns the job id.
pub async fn job_on_site(t: &TestApp, site: &str) -> String {
    let job = t.open_ifm_job(site).await;
    t.expect_status(&job, "record_intake", &t.keys.agent, TestApp::intake(), 200)
        .await;
    t.expect_status(&job, "triage_job", &t.keys.agent, json!({}), 200)
        .await;
    t.expect_status(
        &job,
        "offer_job",
        &t.keys.agent,
        json!({"technician_id": "tech-d"}),
        200,
    )
    .await;
    let eta = (t0() + Duration::hours(1)).to_rfc3339();
    t.expect_status(
        &job,
        "accept_offer",
        &t.keys.tech_d,
        json!({"eta": eta}),
        200,
    )
    .await;
    t.expect_status(&job, "start_travel", &t.keys.tech_d, json!({}), 200)
        .await;
    t.clock.advance(Duration::minutes(50));
    let r = t
        .cmd(
            &job,
            "check_in",
            &t.keys.tech_d,
            json!({"method": "app", "lat": 40.7, "lon": -74.0}),
        )
        .await;
    assert_eq!(r.state(), "on_site", "{:?}", r.json);
    job
}

#[tokio::test]
async fn canonical_lifecycle_over_http() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("site-12").await;

    let r = t.cmd(&job, "triage_job", &t.keys.agent, json!({})).await;
    assert_eq!((r.status, r.code()), (422, "missing_intake_fields"));
    assert!(r.json["missing"]
        .as_array()
        .unwrap()
        .contains(&json!("anyone_hurt_or_trapped")));
    assert_eq!(r.headers["content-type"], "application/problem+json");

    let r = t
        .cmd(
            &job,
            "record_intake",
            &t.keys.agent,
            json!({"fields": {"no_such_field": 1}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_intake_fields"));
    t.expect_state(
        &job,
        "record_intake",
        &t.keys.agent,
        TestApp::intake(),
        "intake",
    )
    .await;
    let r = t.cmd(&job, "triage_job", &t.keys.agent, json!({})).await;
    assert_eq!((r.status, r.state()), (200, "triaged"), "{:?}", r.json);
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.agent).await.json;
    assert_eq!(view["priority"], "P1");
    assert_eq!(view["flags"]["make_safe_required"], true);
    assert_eq!(
        view["sla_due_at"],
        json!((t0() + Duration::hours(4)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    );

    let r = t
        .cmd(
            &job,
            "set_priority",
            &t.keys.dispatcher,
            json!({"priority": "P1", "reason": "confirmed emergency"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    let r = t
        .cmd(
            &job,
            "offer_job",
            &t.keys.agent,
            json!({"technician_id": "tech-b"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "technician_not_qualified"));
    assert_eq!(r.json["missing"], json!(["AAADM"]));
    let r = t
        .cmd(
            &job,
            "offer_job",
            &t.keys.agent,
            json!({"technician_id": "tech-c"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "technician_unavailable"));
    let r = t
        .cmd(
            &job,
            "offer_job",
            &t.keys.agent,
            json!({"technician_id": "nobody"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "unknown_technician"));
    t.expect_state(
        &job,
        "offer_job",
        &t.keys.agent,
        json!({"technician_id": "tech-a"}),
        "offered",
    )
    .await;

    // Only the offered technician answers.
    let r = t
        .cmd(
            &job,
            "accept_offer",
            &t.keys.tech_d,
            json!({"eta": (t0() + Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    t.expect_state(
        &job,
        "decline_offer",
        &t.keys.tech_a,
        json!({"reason": "on another P1"}),
        "triaged",
    )
    .await;
    t.expect_state(
        &job,
        "offer_job",
        &t.keys.agent,
        json!({"technician_id": "tech-d"}),
        "offered",
    )
    .await;
    let eta = (t0() + Duration::hours(1)).to_rfc3339();
    t.expect_state(
        &job,
        "accept_offer",
        &t.keys.tech_d,
        json!({"eta": eta}),
        "confirmed",
    )
    .await;
    t.expect_state(&job, "start_travel", &t.keys.tech_d, json!({}), "en_route")
        .await;
    t.clock.advance(Duration::minutes(50));
    t.expect_state(
        &job,
        "check_in",
        &t.keys.tech_d,
        json!({"method": "app"}),
        "on_site",
    )
    .await;

    let sop = t.get("/v1/sops/door_stuck_open", &t.keys.tech_d).await.json;
    for item in sop["field"]["checklist"].as_array().unwrap() {
        let r = t
            .cmd(
                &job,
                "complete_checklist_item",
                &t.keys.tech_d,
                json!({"item_id": item["id"], "result": "pass"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
    for kind in ["photo_before", "checklist_form"] {
        let sha = upload(&t, &t.keys.tech_d, kind).await;
        t.expect_status(
            &job,
            "attach_evidence",
            &t.keys.tech_d,
            json!({"kind": kind, "sha256": sha}),
            200,
        )
        .await;
    }
    let checkout = json!({"outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true, "resolution": "Replaced failed motion sensor", "parts": [{"part_number": "SNS-100", "description": "Motion sensor", "quantity": 1, "unit_price_cents": 30000}]});
    t.clock.advance(Duration::minutes(120));
    let r = t
        .cmd(&job, "check_out", &t.keys.tech_d, checkout.clone())
        .await;
    assert_eq!((r.status, r.code()), (422, "missing_field_evidence"));
    assert_eq!(r.json["missing"], json!(["photo_after", "signature"]));
    for kind in ["photo_after", "signature"] {
        let sha = upload(&t, &t.keys.tech_d, kind).await;
        t.expect_status(
            &job,
            "attach_evidence",
            &t.keys.tech_d,
            json!({"kind": kind, "sha256": sha}),
            200,
        )
        .await;
    }
    t.expect_state(
        &job,
        "check_out",
        &t.keys.tech_d,
        checkout,
        "work_completed",
    )
    .await;

    let items = closeout_all_pass(&sop);
    t.expect_state(
        &job,
        "verify_closeout",
        &t.keys.agent,
        json!({"items": items}),
        "closeout_verified",
    )
    .await;
    let r = t
        .cmd(&job, "mark_billing_ready", &t.keys.agent, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (422, "nte_exceeded"), "{:?}", r.json);

    let r = t
        .cmd(
            &job,
            "request_nte_increase",
            &t.keys.agent,
            json!({"amount_cents": 65000, "reason": "sensor replacement"}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    assert_eq!(r.json["status"], "approval_required");
    let approval = r.json["approval_id"].as_str().unwrap().to_string();
    let r = t
        .cmd(
            &job,
            "decide_approval",
            &t.keys.agent,
            json!({"approval_id": approval, "decision": "approve"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t
        .cmd(
            &job,
            "decide_approval",
            &t.keys.dispatcher,
            json!({"approval_id": approval, "decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let types: Vec<&str> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ApprovalGranted", "NteIncreased"]);

    t.expect_status(
        &job,
        "add_note",
        &t.keys.agent,
        json!({"text": "customer informed"}),
        200,
    )
    .await;
    t.expect_state(
        &job,
        "mark_billing_ready",
        &t.keys.agent,
        json!({}),
        "billing_ready",
    )
    .await;
    let r = t
        .cmd(
            &job,
            "close_job",
            &t.keys.agent,
            json!({"invoice_number": "INV-1"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    t.expect_state(
        &job,
        "close_job",
        &t.keys.dispatcher,
        json!({"invoice_number": "INV-1"}),
        "closed",
    )
    .await;
    let r = t
        .cmd(
            &job,
            "add_note",
            &t.keys.agent,
            json!({"text": "after close"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_transition"));
    assert_eq!(r.json["current_state"], "closed");

    // Every transition record validates; the job's view and its replay agree.
    let transitions = t
        .get(&format!("/v1/jobs/{job}/transitions"), &t.keys.auditor)
        .await
        .json;
    let list = transitions["transitions"].as_array().unwrap();
    assert_eq!(list.last().unwrap()["to"], "closed");
    for tr in list {
        validate("state_transition.schema.json", tr);
    }
    let view = t
        .get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher)
        .await
        .json;
    assert_eq!(view["invoice"]["total_cents"], 9500 + 18000 + 30000);
    let replay = t
        .get(&format!("/v1/jobs/{job}/replay"), &t.keys.auditor)
        .await
        .json;
    assert_eq!(replay["job"], view);
}

#[tokio::test]
async fn hold_return_visit_cancel_and_duplicates() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = job_on_site(&t, "site-1").await;
    let r = t.cmd(&job, "check_out", &t.keys.tech_d, json!({"outcome": "parts_on_order", "door_left_state": "operational", "resolution": "motor ordered"})).await;
    assert_eq!((r.status, r.code()), (422, "door_not_secured"));
    let r = t.cmd(&job, "check_out", &t.keys.tech_d, json!({"outcome": "parts_on_order", "door_left_state": "secured", "resolution": "motor ordered"})).await;
    assert_eq!(r.state(), "on_hold");
    let r = t
        .cmd(&job, "schedule_return_visit", &t.keys.agent, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    t.expect_state(
        &job,
        "schedule_return_visit",
        &t.keys.dispatcher,
        json!({"reason": "motor arrived"}),
        "triaged",
    )
    .await;

    // The agent cancelling a dispatched job only asks; a dispatcher decides.
    t.expect_state(
        &job,
        "offer_job",
        &t.keys.agent,
        json!({"technician_id": "tech-a"}),
        "offered",
    )
    .await;
    let r = t
        .cmd(
            &job,
            "cancel_job",
            &t.keys.agent,
            json!({"reason": "customer fixed it"}),
        )
        .await;
    assert_eq!((r.status, r.state()), (202, "offered"));
    let approval = r.json["approval_id"].as_str().unwrap().to_string();
    let r = t
        .cmd(
            &job,
            "decide_approval",
            &t.keys.dispatcher,
            json!({"approval_id": approval, "decision": "approve"}),
        )
        .await;
    assert_eq!(r.state(), "cancelled", "{:?}", r.json);
    let view = t
        .get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher)
        .await
        .json;
    assert_eq!(view["cancel_trip_charge_cents"], 9500);

    // A second call for the same door while a job is open: possible duplicate.
    let first = t.open_ifm_job("site-2").await;
    let second = t.open_ifm_job_with_key("site-2").await;
    let view = t
        .get(&format!("/v1/jobs/{second}"), &t.keys.agent)
        .await
        .json;
    assert_eq!(view["flags"]["possible_duplicate_of"], json!(first));
    t.cmd(&second, "record_intake", &t.keys.agent, TestApp::intake())
        .await;
    let r = t.cmd(&second, "triage_job", &t.keys.agent, json!({})).await;
    assert_eq!((r.status, r.code()), (422, "unresolved_duplicate"));
    let r = t
        .cmd(
            &second,
            "resolve_duplicate",
            &t.keys.agent,
            json!({"resolution": "not_duplicate"}),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = t
        .cmd(
            &second,
            "resolve_duplicate",
            &t.keys.agent,
            json!({"resolution": "link"}),
        )
        .await;
    assert_eq!(r.state(), "duplicate", "{:?}", r.json);

    // Reopen after completion, and the system-only commands are not for people.
    let r = t
        .cmd(&first, "expire_offer", &t.keys.admin, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t
        .cmd(
            &first,
            "flag_sla_breach",
            &t.keys.dispatcher,
            json!({"kind": "response"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t
        .cmd(
            &first,
            "reopen_unsatisfactory",
            &t.keys.dispatcher,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_transition"));
}

#[tokio::test]
async fn technicians_commands_and_scope() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let r = t
        .post(
            "/v1/technicians/tech-a/commands/set_shift",
            &t.keys.tech_a,
            json!({"shift": "off"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let r = t
        .post(
            "/v1/technicians/tech-d/commands/set_shift",
            &t.keys.tech_a,
            json!({"shift": "off"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t.post("/v1/technicians/tech-b/commands/update_skills", &t.keys.dispatcher, json!({"skills": ["automatic_doors"], "certifications": [{"name": "AAADM", "expires_on": "2030-01-01"}]})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let r = t
        .post(
            "/v1/technicians/tech-b/commands/update_skills",
            &t.keys.agent,
            json!({"skills": [], "certifications": []}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t
        .post(
            "/v1/technicians/nobody/commands/set_shift",
            &t.keys.dispatcher,
            json!({"shift": "off"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = t
        .post(
            "/v1/technicians/tech-b/commands/fly",
            &t.keys.dispatcher,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    // A technician reads only jobs offered or assigned to them.
    let job = t.open_ifm_job("site-9").await;
    let r = t.get(&format!("/v1/jobs/{job}"), &t.keys.tech_a).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
}
