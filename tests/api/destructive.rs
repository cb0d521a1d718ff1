//! Issue 16, attack 1, as a prompt-injected agent would try it over every
//! transport: a dispatched job (offered, declined, back in `triaged`) cannot
//! be ended by the agent alone through `resolve_duplicate` `link` — not to an
//! unrelated open job (refused, `duplicate_target_unrelated`), and not to an
//! open job at the same door (202 approval required) — and the NTE stays.

use serde_json::{json, Value};

use crate::mcp::{call, handshake};
use crate::support::*;
use crate::tools::tool;

/// The canonical job at `site`, offered to D, declined: `triaged`, ever offered.
async fn dispatched_then_declined(t: &TestApp, site: &str) -> String {
    let job = t.open_ifm_job(site).await;
    for (command, key, body) in [
        ("record_intake", &t.keys.agent, TestApp::intake()),
        ("triage_job", &t.keys.agent, json!({})),
        (
            "offer_job",
            &t.keys.agent,
            json!({"technician_id": "tech-d"}),
        ),
        (
            "decline_offer",
            &t.keys.tech_d,
            json!({"reason": "too far"}),
        ),
    ] {
        let r = t.cmd(&job, command, key, body).await;
        assert_eq!(r.status, 200, "{command}: {:?}", r.json);
    }
    job
}

/// Another open job opened by the agent, at `site` with a $100,000 NTE.
async fn open_other(t: &TestApp, site: &str, door: &str) -> String {
    let mut body = open_body(site);
    body["door"]["id"] = door.into();
    body["ifm"]["nte_cents"] = 10_000_000.into();
    body["ifm"]["work_order_number"] = "WO-OTHER".into();
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    r.json["job_id"].as_str().unwrap().to_string()
}

/// The job as the dispatcher reads it: state, NTE, event count.
async fn snapshot(t: &TestApp, job: &str) -> (Value, Value, usize) {
    let r = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(r.status, 200);
    (
        r.json["state"].clone(),
        r.json["nte_cents"].clone(),
        t.events(job).await.len(),
    )
}

#[tokio::test]
async fn the_agent_cannot_end_a_dispatched_job_by_linking_it_on_any_transport() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = dispatched_then_declined(&t, "site-a").await;
    let unrelated = open_other(&t, "site-z", "dock-9").await;
    let same_door = open_other(&t, "site-a", "entrance-1").await;
    let before = snapshot(&t, &job).await;
    assert_eq!(before.0, "triaged");
    assert_eq!(before.1, 50_000);

    // Cancel: approval required, as before.
    let r = t
        .cmd(&job, "cancel_job", &t.keys.agent, json!({"reason": "x"}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    let after_cancel = snapshot(&t, &job).await;
    assert_eq!(after_cancel.2, before.2 + 1, "one ApprovalRequested");

    // REST: an unrelated open job is refused and nothing is written.
    let link = |target: &str| json!({"resolution": "link", "duplicate_of": target});
    let r = t
        .cmd(&job, "resolve_duplicate", &t.keys.agent, link(&unrelated))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    assert_eq!(r.code(), "duplicate_target_unrelated");
    assert_eq!(snapshot(&t, &job).await, after_cancel);

    // /v1/tools: the same.
    let args = json!({"job_id": job, "resolution": "link", "duplicate_of": unrelated});
    let r = tool(&t, &t.keys.agent, "resolve_duplicate", args).await;
    assert_eq!(r.json["outcome"], "refused", "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "duplicate_target_unrelated");
    assert_eq!(snapshot(&t, &job).await, after_cancel);

    // /mcp: the same.
    handshake(&t, &t.keys.agent).await;
    let args = json!({"idempotency_key": "mcp-link-1", "job_id": job, "resolution": "link", "duplicate_of": unrelated});
    let result = call(&t, &t.keys.agent, 7, "resolve_duplicate", args).await;
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["structuredContent"]["error"]["code"],
        "duplicate_target_unrelated"
    );
    assert_eq!(snapshot(&t, &job).await, after_cancel);

    // A real duplicate (same site and door): the agent only asks, on every transport.
    let r = t
        .cmd(&job, "resolve_duplicate", &t.keys.agent, link(&same_door))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    assert!(r.json["approval_id"].is_string(), "{:?}", r.json);
    let args = json!({"job_id": job, "resolution": "link", "duplicate_of": same_door});
    let r = tool(&t, &t.keys.agent, "resolve_duplicate", args).await;
    assert_eq!(r.json["outcome"], "approval_required", "{:?}", r.json);
    let args = json!({"idempotency_key": "mcp-link-2", "job_id": job, "resolution": "link", "duplicate_of": same_door});
    let result = call(&t, &t.keys.agent, 8, "resolve_duplicate", args).await;
    assert_eq!(
        result["structuredContent"]["outcome"], "approval_required",
        "{result}"
    );
    let now = snapshot(&t, &job).await;
    assert_eq!((&now.0, &now.1), (&before.0, &before.1), "job unchanged");
    let events = t.events(&job).await;
    assert!(
        !events
            .iter()
            .any(|e| e["event_type"] == "JobLinkedAsDuplicate"),
        "no link without a person"
    );

    // A dispatcher approves one of the requests: only then is the job linked.
    let approval_id = events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "ApprovalRequested")
        .map(|e| e["payload"]["approval_id"].as_str().unwrap().to_string())
        .unwrap();
    let r = t
        .cmd(
            &job,
            "decide_approval",
            &t.keys.dispatcher,
            json!({"approval_id": approval_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let (state, nte, _) = snapshot(&t, &job).await;
    assert_eq!(state, "duplicate");
    assert_eq!(nte, 50_000, "linking never takes the other job's NTE");
}
