//! Refusals' messages say what is true in the wire's words, never Rust's
//! debug text (`Some(99)`, `OnCall`, `Single(String)`) — issue 21.

use serde_json::json;

use crate::support::*;
use crate::tools::tool;

/// Asserts that a refusal's detail holds `want` and no debug text.
fn says(r: &Resp, status: u16, code: &str, want: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.text());
    let detail = r.json["detail"].as_str().unwrap();
    assert!(detail.contains(want), "{detail:?} should say {want:?}");
    for debug in ["Some(", "None", "OnCall", "Single(", "Multiple("] {
        assert!(!detail.contains(debug), "debug text in {detail:?}");
    }
}

#[tokio::test]
async fn refusal_messages_are_true_and_free_of_debug_text() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("messages-site").await;
    let agent = &t.keys.agent;
    let path = format!("/v1/jobs/{job}/commands/add_note");
    // A stale If-Match names the versions as numbers.
    let r = t
        .post_raw(
            &path,
            Some(agent),
            Some("k-if-match"),
            r#"{"text":"hi"}"#,
            &[("if-match", "\"99\"")],
        )
        .await;
    says(
        &r,
        409,
        "version_conflict",
        "version 99 is no longer current (the current version is 1)",
    );
    assert_eq!(r.json["current_version"], 1);
    // Whole-number parameters say their true range in digits.
    for (query, want) in [
        (
            "/v1/board?min_position=9223372036854775808",
            "min_position must be a whole number from 0 to 9223372036854775807",
        ),
        (
            "/v1/board?min_position=-1",
            "min_position must be a whole number from 0 to 9223372036854775807",
        ),
        (
            "/v1/approvals?limit=0",
            "limit must be a whole number from 1 to 1000",
        ),
        (
            &format!("/v1/jobs/{job}/replay?to_sequence=0"),
            "to_sequence must be a whole number from 1 to 9223372036854775807",
        ),
    ] {
        let r = t.get(query, &t.keys.admin).await;
        says(&r, 400, "validation_error", want);
    }
    // An NTE "increase" that is not one names the current NTE in cents.
    let r = t
        .cmd(
            &job,
            "request_nte_increase",
            agent,
            json!({"amount_cents": 40000, "reason": "parts"}),
        )
        .await;
    says(
        &r,
        422,
        "nte_not_increased",
        "above the current NTE of 50000 cents",
    );
    // An unavailable technician's shift is named as the wire names it.
    t.intake_and_triage(&job).await;
    let r = t.offer(&job, &t.keys.dispatcher, "tech-c").await;
    says(&r, 422, "technician_unavailable", "their shift is `off`");
    // A tool argument of the wrong type names the JSON type it should be.
    let r = tool(&t, agent, "add_note", json!({"job_id": job, "text": 5})).await;
    let problem = &r.json["error"];
    assert_eq!(problem["field"], "text");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("has the wrong type (expected string)"),
        "{detail}"
    );
}
