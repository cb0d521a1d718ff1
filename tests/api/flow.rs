//! Every job command reachable over HTTP and guarded, through a whole lifecycle.

use chrono::Duration;
use serde_json::json;

use crate::support::*;

async fn upload(t: &TestApp, key: &str, content: &str) -> String {
    let idem = t.idem();
    let r = t.upload(key, Some(&idem), content, "image/jpeg").await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    r.json["sha256"].as_str().unwrap().to_string()
}

/// Drives a job to `on_site` with technician D: returns the job id.
pub async fn job_on_site(t: &TestApp, site: &str) -> String {
    let job = job_en_route(t, site).await;
    t.clock.advance(Duration::minutes(50));
    let check_in = json!({"method": "app", "lat": 40.7, "lon": -74.0});
    let r = t.cmd(&job, "check_in", &t.keys.tech_d, check_in).await;
    assert_eq!(r.state(), "on_site", "{:?}", r.json);
    job
}

/// Drives a job to `en_route` with technician D: returns the job id.
pub async fn job_en_route(t: &TestApp, site: &str) -> String {
    let job = t.open_ifm_job(site).await;
    let (agent, tech_d) = (&t.keys.agent, &t.keys.tech_d);
    let eta = (t0() + Duration::hours(1)).to_rfc3339();
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("record_intake", agent,  TestApp::intake(),                  Want::Status(200)),
        ("triage_job",    agent,  json!({}),                          Want::Status(200)),
        ("offer_job",     agent,  json!({"technician_id": "tech-d"}), Want::Status(200)),
        ("accept_offer",  tech_d, json!({"eta": eta}),                Want::Status(200)),
        ("start_travel",  tech_d, json!({}),                          Want::Status(200)),
    ];
    t.script(&job, steps).await;
    job
}

/// Uploads each kind of evidence as technician D and attaches it to `job`.
async fn attach_all(t: &TestApp, job: &str, kinds: [&str; 2]) {
    for kind in kinds {
        let sha = upload(t, &t.keys.tech_d, kind).await;
        let body = json!({"kind": kind, "sha256": sha});
        let want = Want::Status(200);
        t.expect(job, "attach_evidence", &t.keys.tech_d, body, want)
            .await;
    }
}

#[tokio::test]
async fn canonical_lifecycle_over_http() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("site-12").await;
    let (agent, desk) = (&t.keys.agent, &t.keys.dispatcher);
    let (tech_a, tech_d) = (&t.keys.tech_a, &t.keys.tech_d);

    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("triage_job",    agent, json!({}),                                 Want::Code(422, "missing_intake_fields")),
        ("record_intake", agent, json!({"fields": {"no_such_field": 1}}), Want::Code(422, "invalid_intake_fields")),
        ("record_intake", agent, TestApp::intake(),                         Want::State("intake")),
        ("triage_job",    agent, json!({}),                                 Want::StatusState(200, "triaged")),
    ];
    let r = t.script(&job, steps).await;
    assert!(r[0].json["missing"]
        .as_array()
        .unwrap()
        .contains(&json!("anyone_hurt_or_trapped")));
    assert_eq!(r[0].headers["content-type"], "application/problem+json");
    let view = t.get(&format!("/v1/jobs/{job}"), agent).await.json;
    assert_eq!(view["priority"], "P1");
    assert_eq!(view["flags"]["make_safe_required"], true);
    assert_eq!(
        view["sla_due_at"],
        json!((t0() + Duration::hours(4)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    );

    let eta = json!({"eta": (t0() + Duration::hours(1)).to_rfc3339()});
    let to = |tech: &str| json!({"technician_id": tech});
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("set_priority",  desk,   json!({"priority": "P1", "reason": "confirmed emergency"}), Want::Status(200)),
        ("offer_job",     agent,  to("tech-b"),                        Want::Code(422, "technician_not_qualified")),
        ("offer_job",     agent,  to("tech-c"),                        Want::Code(422, "technician_unavailable")),
        ("offer_job",     agent,  to("nobody"),                        Want::Code(422, "unknown_technician")),
        ("offer_job",     agent,  to("tech-a"),                        Want::State("offered")),
        // Only the offered technician answers.
        ("accept_offer",  tech_d, eta.clone(),                         Want::Code(403, "forbidden")),
        ("decline_offer", tech_a, json!({"reason": "on another P1"}),  Want::State("triaged")),
        ("offer_job",     agent,  to("tech-d"),                        Want::State("offered")),
        ("accept_offer",  tech_d, eta,                                 Want::State("confirmed")),
        ("start_travel",  tech_d, json!({}),                           Want::State("en_route")),
    ];
    let r = t.script(&job, steps).await;
    assert_eq!(r[1].json["missing"], json!(["AAADM"]));
    t.clock.advance(Duration::minutes(50));
    let check_in = json!({"method": "app"});
    t.expect(&job, "check_in", tech_d, check_in, Want::State("on_site"))
        .await;

    let sop = t.get("/v1/sops/door_stuck_open", tech_d).await.json;
    for item in sop["field"]["checklist"].as_array().unwrap() {
        let body = json!({"item_id": item["id"], "result": "pass"});
        let want = Want::Status(200);
        t.expect(&job, "complete_checklist_item", tech_d, body, want)
            .await;
    }
    attach_all(&t, &job, ["photo_before", "checklist_form"]).await;
    let checkout = json!({"outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true, "resolution": "Replaced failed motion sensor", "parts": [{"part_number": "SNS-100", "description": "Motion sensor", "quantity": 1, "unit_price_cents": 30000}]});
    t.clock.advance(Duration::minutes(120));
    let want = Want::Code(422, "missing_field_evidence");
    let r = t
        .expect(&job, "check_out", tech_d, checkout.clone(), want)
        .await;
    assert_eq!(r.json["missing"], json!(["photo_after", "signature"]));
    attach_all(&t, &job, ["photo_after", "signature"]).await;
    let items = json!({"items": closeout_all_pass(&sop)});
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("check_out",            tech_d, checkout,  Want::State("work_completed")),
        ("verify_closeout",      agent,  items,     Want::State("closeout_verified")),
        ("mark_billing_ready",   agent,  json!({}), Want::Code(422, "nte_exceeded")),
        ("request_nte_increase", agent,  json!({"amount_cents": 65000, "reason": "sensor replacement"}), Want::Status(202)),
    ];
    let r = t.script(&job, steps).await;
    assert_eq!(r[3].json["status"], "approval_required");
    let approval = r[3].json["approval_id"].as_str().unwrap().to_string();
    let approve = json!({"approval_id": approval, "decision": "approve"});
    let invoice = json!({"invoice_number": "INV-1"});
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("decide_approval",    agent, approve.clone(),                     Want::Code(403, "forbidden")),
        ("decide_approval",    desk,  approve,                             Want::Status(200)),
        ("add_note",           agent, json!({"text": "customer informed"}), Want::Status(200)),
        ("mark_billing_ready", agent, json!({}),                           Want::State("billing_ready")),
        ("close_job",          agent, invoice.clone(),                     Want::Code(403, "forbidden")),
        ("close_job",          desk,  invoice,                             Want::State("closed")),
        ("add_note",           agent, json!({"text": "after close"}),       Want::Code(422, "invalid_transition")),
    ];
    let r = t.script(&job, steps).await;
    assert_eq!(
        strings(&r[1].json["events"], "event_type"),
        ["ApprovalGranted", "NteIncreased"]
    );
    assert_eq!(r[6].json["current_state"], "closed");

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
    let view = t.get(&format!("/v1/jobs/{job}"), desk).await.json;
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
    let (agent, desk, tech_d) = (&t.keys.agent, &t.keys.dispatcher, &t.keys.tech_d);
    let parts_out = |door: &str| json!({"outcome": "parts_on_order", "door_left_state": door, "resolution": "motor ordered"});
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("check_out",             tech_d, parts_out("operational"),              Want::Code(422, "door_not_secured")),
        ("check_out",             tech_d, parts_out("secured"),                  Want::State("on_hold")),
        ("schedule_return_visit", agent,  json!({}),                             Want::Code(403, "forbidden")),
        ("schedule_return_visit", desk,   json!({"reason": "motor arrived"}),    Want::State("triaged")),
        // The agent cancelling a dispatched job only asks; a dispatcher decides.
        ("offer_job",             agent,  json!({"technician_id": "tech-a"}),    Want::State("offered")),
        ("cancel_job",            agent,  json!({"reason": "customer fixed it"}), Want::StatusState(202, "offered")),
    ];
    let r = t.script(&job, steps).await;
    let approval = r[5].json["approval_id"].as_str().unwrap().to_string();
    let approve = json!({"approval_id": approval, "decision": "approve"});
    t.expect(
        &job,
        "decide_approval",
        desk,
        approve,
        Want::State("cancelled"),
    )
    .await;
    let view = t.get(&format!("/v1/jobs/{job}"), desk).await.json;
    assert_eq!(view["cancel_trip_charge_cents"], 9500);

    // A second call for the same door while a job is open: possible duplicate.
    let first = t.open_ifm_job("site-2").await;
    let second = t.open_ifm_job_with_key("site-2").await;
    let view = t.get(&format!("/v1/jobs/{second}"), agent).await.json;
    assert_eq!(view["flags"]["possible_duplicate_of"], json!(first));
    t.cmd(&second, "record_intake", agent, TestApp::intake())
        .await;
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("triage_job",        agent, json!({}),                              Want::Code(422, "unresolved_duplicate")),
        ("resolve_duplicate", agent, json!({"resolution": "not_duplicate"}), Want::Status(202)),
        ("resolve_duplicate", agent, json!({"resolution": "link"}),          Want::State("duplicate")),
    ];
    t.script(&second, steps).await;

    // Reopen after completion, and the system-only commands are not for people.
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("expire_offer",          &t.keys.admin, json!({}),                   Want::Code(403, "forbidden")),
        ("flag_sla_breach",       desk,          json!({"kind": "response"}), Want::Code(403, "forbidden")),
        ("reopen_unsatisfactory", desk,          json!({"reason": "x"}),      Want::Code(422, "invalid_transition")),
    ];
    t.script(&first, steps).await;
}

#[tokio::test]
async fn technicians_commands_and_scope() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let (agent, desk, tech_a) = (&t.keys.agent, &t.keys.dispatcher, &t.keys.tech_a);
    let skills = json!({"skills": ["automatic_doors"], "certifications": [{"name": "AAADM", "expires_on": "2030-01-01"}]});
    let no_skills = json!({"skills": [], "certifications": []});
    let off = || json!({"shift": "off"});
    #[rustfmt::skip]
    let steps = [
        ("tech-a/commands/set_shift",     tech_a, off(),     Want::Status(200)),
        ("tech-d/commands/set_shift",     tech_a, off(),     Want::Code(403, "forbidden")),
        ("tech-b/commands/update_skills", desk,   skills,    Want::Status(200)),
        ("tech-b/commands/update_skills", agent,  no_skills, Want::Code(403, "forbidden")),
        ("nobody/commands/set_shift",     desk,   off(),     Want::Code(404, "not_found")),
        ("tech-b/commands/fly",           desk,   json!({}), Want::Status(404)),
    ];
    for (path, key, body, want) in steps {
        let r = t.post(&format!("/v1/technicians/{path}"), key, body).await;
        want.check(path, &r);
    }
    // A technician reads only jobs offered or assigned to them.
    let job = t.open_ifm_job("site-9").await;
    let r = t.get(&format!("/v1/jobs/{job}"), tech_a).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
}
