//! The pages through the real router: sessions, CSRF and origin checks,
//! roles as in the API, escaping of stored text, decisions as idempotent
//! commands audited as the person, chain marks on the timeline, evidence
//! served with its type, and the board's server-sent events.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use serde_json::json;
use tower::ServiceExt;

use crate::support::*;
use crate::*;

#[tokio::test]
async fn login_keeps_only_a_hashed_session_in_a_secure_strict_http_only_cookie() {
    let t = TestApp::spawn().await;
    t.project().await;
    // No session: pages send you to the login form, and come back after.
    let p = get_page(&t, "/ui/board?state=triaged", None).await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/ui/login?next=%2Fui%2Fboard%3Fstate%3Dtriaged")
    );
    let form = get_page(&t, "/ui/login?next=%2Fui%2Fboard%3Fstate%3Dtriaged", None).await;
    assert!(
        form.body.contains(r#"<label for="key">API key</label>"#),
        "{}",
        form.body
    );

    let p = login_form(
        &t,
        &[
            ("key", &t.keys.dispatcher),
            ("next", "/ui/board?state=triaged"),
        ],
    )
    .await;
    assert_eq!((p.status, p.location()), (303, "/ui/board?state=triaged"));
    let cookie = p.headers["set-cookie"].to_str().unwrap().to_string();
    for attr in [
        "Path=/ui",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("dispatch_session=")
        .unwrap();
    assert!(
        !cookie.contains(&t.keys.dispatcher),
        "the key itself is never in the cookie"
    );
    assert_eq!(token.len(), 64);

    // The database keeps the token's hash, the key's name and an expiry; never the key or the token.
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT token_hash, key_name, expires_at > now() + interval '11 hours' FROM ui_sessions",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![(
            dispatch_api::store::hash::sha256_hex(token.as_bytes()),
            "dispatcher-1".to_string(),
            true
        )]
    );
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(to_jsonb(s)::text, ' ') FROM ui_sessions s")
            .fetch_one(&t.app.pool)
            .await
            .unwrap();
    assert!(!dump.contains(token) && !dump.contains(&t.keys.dispatcher));

    let board = get_page(&t, "/ui/board", Some(token)).await;
    assert_eq!(board.status, 200);
    assert!(board.body.contains("dispatcher-1"));
    // Open redirects are refused: a foreign `next` lands on the role's first page.
    let p = login_form(
        &t,
        &[("key", &t.keys.dispatcher), ("next", "//evil.example/")],
    )
    .await;
    assert_eq!(p.location(), "/ui/board");
    // The cookie never reaches the JSON API: /v1 stays bearer-only.
    let api = get_page(&t, "/v1/board", Some(token)).await;
    assert_eq!(api.status, 401);
}

#[tokio::test]
async fn unknown_revoked_and_logged_out_sessions_end_at_once() {
    let t = TestApp::spawn().await;
    t.project().await;
    let p = login_form(&t, &[("key", "dak_not_a_key")]).await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("unknown or revoked") && p.headers.get("set-cookie").is_none());

    // Logging out ends the session server-side (the old cookie is worthless).
    let token = login(&t, &t.keys.dispatcher).await;
    let board = get_page(&t, "/ui/board", Some(&token)).await;
    let csrf = board.hidden("csrf");
    let out = post_form(
        &t,
        "/ui/logout",
        Some(&token),
        &[("csrf", &csrf)],
        Some(ORIGIN),
    )
    .await;
    assert_eq!((out.status, out.location()), (303, "/ui/login"));
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(get_page(&t, "/ui/board", Some(&token)).await.status, 303);

    // Revoking the key ends every session made with it.
    let token = login(&t, &t.keys.auditor).await;
    assert_eq!(get_page(&t, "/ui/board", Some(&token)).await.status, 200);
    dispatch_api::app::keys::revoke_key(&t.app.pool, "auditor-1")
        .await
        .unwrap();
    assert_eq!(get_page(&t, "/ui/board", Some(&token)).await.status, 303);
    let p = login_form(&t, &[("key", &t.keys.auditor)]).await;
    assert_eq!(p.status, 401);
}

#[tokio::test]
async fn posts_need_this_sessions_csrf_token_and_this_origin() {
    let (t, job, approval, token) = nte_request_for_the_desk("site-csrf", 75000, "motor").await;
    let page = job_page(&t, &job, &token).await;
    let csrf = page.hidden("csrf");
    let idem = page.hidden("idem");
    let path = format!("/ui/approvals/{approval}/decide");
    let before = stored_events(&t, &job).await.len();
    for (case, csrf_value, origin) in [
        ("no token", None, Some(ORIGIN)),
        (
            "another session's token",
            Some("0".repeat(64)),
            Some(ORIGIN),
        ),
        (
            "another origin",
            Some(csrf.clone()),
            Some("http://evil.example"),
        ),
        ("opaque origin", Some(csrf.clone()), Some("null")),
    ] {
        let mut f = vec![
            ("job_id", job.as_str()),
            ("decision", "approve"),
            ("idem", idem.as_str()),
        ];
        if let Some(c) = &csrf_value {
            f.push(("csrf", c.as_str()));
        }
        let p = post_form(&t, &path, Some(&token), &f, origin).await;
        assert_eq!(p.status, 403, "{case}: {}", p.body);
        assert!(p.body.contains("Form refused"), "{case}");
    }
    // A login posted from another site is refused too (login CSRF).
    let p = post_form(
        &t,
        "/ui/login",
        None,
        &[("key", &t.keys.dispatcher)],
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(p.status, 403);
    assert_eq!(
        stored_events(&t, &job).await.len(),
        before,
        "nothing was decided"
    );
}

#[tokio::test]
async fn pages_and_buttons_follow_the_allowlist() {
    let (t, mine) = spawn_with_job_on_site("site-mine").await;
    let approval = request_nte(&t, &mine, &t.keys.agent, 90000, "new operator").await;
    let other = t.open_ifm_job("site-other").await;
    t.project().await;

    // Dispatcher: every page, and the buttons.
    let desk = login(&t, &t.keys.dispatcher).await;
    for path in [
        "/ui/board",
        "/ui/approvals",
        "/ui/billing",
        "/ui/technicians",
        "/ui/technicians/tech-d/schedule",
    ] {
        assert_eq!(get_page(&t, path, Some(&desk)).await.status, 200, "{path}");
    }
    let job = job_page(&t, &mine, &desk).await;
    assert!(
        job.body.contains("button class=\"approve\""),
        "{}",
        job.body
    );
    assert!(job.body.contains("Event timeline") && job.body.contains("data-chain=\"verified\""));
    let approvals = get_page(&t, "/ui/approvals", Some(&desk)).await;
    assert!(
        approvals
            .body
            .contains(&format!("data-approval-id=\"{approval}\""))
            && approvals.body.contains("button class=\"approve\"")
    );

    // Technician: their visits and their jobs, no board, no approvals, no buttons, no timeline.
    let tech = login(&t, &t.keys.tech_d).await;
    let landing = login_form(&t, &[("key", &t.keys.tech_d)]).await;
    assert_eq!(
        landing.location(),
        "/ui/field",
        "a technician lands on the field app"
    );
    for path in [
        "/ui/board",
        "/ui/approvals",
        "/ui/billing",
        "/ui/technicians",
        "/ui/technicians/tech-a/schedule",
        "/ui/board/stream",
    ] {
        let p = get_page(&t, path, Some(&tech)).await;
        assert_eq!(p.status, 403, "{path}: {}", p.body);
    }
    let visits = get_page(&t, "/ui/technicians/tech-d/schedule", Some(&tech)).await;
    assert_eq!(visits.status, 200);
    assert!(
        visits.body.contains(&mine)
            && !visits.body.contains(">Board<")
            && !visits.body.contains(">Approvals<")
    );
    let job = job_page(&t, &mine, &tech).await;
    assert_eq!(job.status, 200);
    assert!(
        job.body.contains("pending")
            && !job.body.contains("class=\"approve\"")
            && !job.body.contains("/decide"),
        "{}",
        job.body
    );
    assert!(
        job.body.contains("may not read this job's events") && !job.body.contains("data-chain=")
    );
    assert_eq!(job_page(&t, &other, &tech).await.status, 403);
    // Posting the decision anyway is refused by the allowlist, and changes nothing.
    let csrf = job.hidden("csrf");
    let before = stored_events(&t, &mine).await.len();
    let p = post_form(
        &t,
        &format!("/ui/approvals/{approval}/decide"),
        Some(&tech),
        &[
            ("csrf", &csrf),
            ("job_id", &mine),
            ("decision", "approve"),
            ("idem", "ui-x"),
        ],
        Some(ORIGIN),
    )
    .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(stored_events(&t, &mine).await.len(), before);

    // Auditor: reads approvals and the verified timeline, decides nothing.
    let audit = login(&t, &t.keys.auditor).await;
    let approvals = get_page(&t, "/ui/approvals", Some(&audit)).await;
    assert_eq!(approvals.status, 200);
    assert!(
        approvals.body.contains("may read approvals but not decide")
            && !approvals.body.contains("class=\"approve\"")
    );
    let job = job_page(&t, &mine, &audit).await;
    assert!(
        job.body.contains("data-chain=\"verified\"") && !job.body.contains("class=\"approve\"")
    );
    assert_eq!(
        get_page(&t, "/ui/technicians", Some(&audit)).await.status,
        403
    );

    // Agent (as in the API): the board, not the approvals.
    let agent = login(&t, &t.keys.agent).await;
    assert_eq!(get_page(&t, "/ui/board", Some(&agent)).await.status, 200);
    assert_eq!(
        get_page(&t, "/ui/approvals", Some(&agent)).await.status,
        403
    );
}

#[tokio::test]
async fn stored_text_is_shown_escaped_never_interpreted() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";
    let mut body = open_body("site-hostile");
    body["site"]["name"] = json!(hostile);
    body["description"] = json!(hostile);
    body["client_id"] = json!("c\"><svg onload=alert(3)>");
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let job = r.json["job_id"].as_str().unwrap().to_string();
    t.note(
        &job,
        &t.keys.agent,
        &format!("note {hostile}\r\nsecond line"),
    )
    .await;
    let r = t
        .cmd(
            &job,
            "request_nte_increase",
            &t.keys.agent,
            json!({"amount_cents": 90000, "reason": hostile}),
        )
        .await;
    assert_eq!(r.status, 202);
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    for path in [
        "/ui/board".to_string(),
        "/ui/approvals".to_string(),
        format!("/ui/jobs/{job}"),
    ] {
        let p = get_page(&t, &path, Some(&desk)).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(
            p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {}",
            p.body
        );
        for raw in ["<script>alert", "<img src=x", "<svg onload"] {
            assert!(!p.body.contains(raw), "{path} carries {raw} unescaped");
        }
        // No inline script at all: the policy allows scripts from this origin only.
        assert_eq!(p.body.matches("<script").count(), 1, "{path}");
        assert!(p.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
    }
}

#[tokio::test]
async fn a_decision_is_one_idempotent_command_audited_as_the_person() {
    let (t, job, approval, desk) =
        nte_request_for_the_desk("site-decide", 75000, "motor replacement").await;
    let page = job_page(&t, &job, &desk).await;
    assert!(page.body.contains("$500.00"));
    let (csrf, idem) = (page.hidden("csrf"), page.hidden("idem"));
    assert!(idem.starts_with("ui-"));
    let before = stored_events(&t, &job).await.len();
    let fields = [
        ("csrf", csrf.as_str()),
        ("job_id", job.as_str()),
        ("decision", "approve"),
        ("idem", idem.as_str()),
        ("back", "job"),
    ];
    // A double submit of the same form: one command, the same answer.
    let first = decide_form(&t, &approval, &desk, &fields).await;
    let second = decide_form(&t, &approval, &desk, &fields).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(
        first.location(),
        format!("/ui/jobs/{job}?done=approved#approvals")
    );
    assert_eq!(second.location(), first.location());
    let events = stored_events(&t, &job).await;
    let new: Vec<&serde_json::Value> = events[before..].iter().collect();
    assert_eq!(
        field_of_each(&events[before..], "event_type"),
        vec!["ApprovalGranted", "NteIncreased"]
    );
    for e in &new {
        assert_eq!(e["actor"]["id"], "dispatcher-1");
        assert_eq!(e["actor"]["kind"], "person");
        assert_eq!(e["command"], "decide_approval");
        assert_eq!(e["idempotency_key"], format!("{idem}-approve"));
    }
    let after = get_page(&t, &format!("/ui/jobs/{job}?done=approved"), Some(&desk)).await;
    assert!(after
        .body
        .contains("Approved: the requested action was carried out."));
    assert!(
        after.body.contains("<span id=\"nte\">$750.00</span>"),
        "{}",
        after.body
    );
    // A fresh form (new key) for a decided approval is refused by the domain, politely.
    t.project().await;
    let again = get_page(&t, "/ui/approvals", Some(&desk)).await;
    assert!(!again.body.contains("class=\"approve\""));
    let stale = [
        ("csrf", csrf.as_str()),
        ("job_id", job.as_str()),
        ("decision", "reject"),
        ("idem", "ui-fresh"),
        ("back", "approvals"),
    ];
    let p = decide_form(&t, &approval, &desk, &stale).await;
    assert_eq!(p.location(), "/ui/approvals?done=approval_not_pending");
    let shown = get_page(&t, p.location(), Some(&desk)).await;
    assert!(shown.body.contains("Not done: approval not pending."));
    // The person who asked may not decide their own request: no buttons for them.
    let second_ask = request_nte(&t, &job, &t.keys.dispatcher, 80000, "more").await;
    let own = job_page(&t, &job, &desk).await;
    assert!(
        own.body.contains("Your own request")
            && !own
                .body
                .contains(&format!("/ui/approvals/{second_ask}/decide"))
    );
}

#[tokio::test]
async fn the_timeline_marks_the_first_bad_sequence_of_a_tampered_chain() {
    let (t, job) = spawn_with_job_on_site("site-tamper").await;
    for i in 0..3 {
        t.note(&job, &t.keys.agent, &format!("note {i}")).await;
    }
    let desk = login(&t, &t.keys.auditor).await;
    let p = job_page(&t, &job, &desk).await;
    assert!(p.body.contains("data-verified=\"true\"") && !p.body.contains("data-chain=\"broken\""));
    assert!(
        p.body.contains("not through a tool") && p.body.contains("intake.door_stuck_open v"),
        "tool call and SOP version shown"
    );

    let count = stored_events(&t, &job).await.len();
    let seq = 9;
    t.tamper(&format!("UPDATE events SET payload = '{{\"text\":\"forged\"}}' WHERE aggregate_id = '{job}' AND sequence = {seq}")).await;
    let p = job_page(&t, &job, &desk).await;
    assert_eq!(p.status, 200);
    assert!(
        p.body
            .contains(&format!("data-verified=\"false\" data-first-bad=\"{seq}\"")),
        "{}",
        p.body
    );
    assert!(p
        .body
        .contains(&format!("Hash chain broken at sequence {seq}")));
    let marks: Vec<&str> = p
        .body
        .split("data-chain=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(marks.len(), count);
    for (i, m) in marks.iter().enumerate() {
        let expected = match (i + 1) as i64 {
            s if s < seq => "verified",
            s if s == seq => "broken",
            _ => "after-break",
        };
        assert_eq!(*m, expected, "sequence {}", i + 1);
    }
    assert!(
        p.body.contains(&format!("id=\"event-{seq}\"")) && p.body.contains("chain breaks here")
    );
}

#[tokio::test]
async fn evidence_is_served_to_the_session_with_a_safe_type() {
    let (t, job) = spawn_with_job_on_site("site-evidence").await;
    let png = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/e2e/browser/door-before.png"
    ))
    .unwrap();
    let mut shas = Vec::new();
    for (bytes, ct, kind) in [
        (png.clone(), "image/png", "photo_before"),
        (
            b"<html><script>alert(1)</script>".to_vec(),
            "text/html",
            "checklist_form",
        ),
    ] {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/evidence")
            .header("authorization", format!("Bearer {}", t.keys.tech_d))
            .header("idempotency-key", t.idem())
            .header("content-type", ct)
            .body(Body::from(bytes))
            .unwrap();
        let r = t.send(req).await;
        assert_eq!(r.status, 201, "{:?}", r.json);
        let sha = r.json["sha256"].as_str().unwrap().to_string();
        assert_eq!(
            t.cmd(
                &job,
                "attach_evidence",
                &t.keys.tech_d,
                json!({"kind": kind, "sha256": sha})
            )
            .await
            .status,
            200
        );
        shas.push(sha);
    }
    let tech = login(&t, &t.keys.tech_d).await;
    let page = job_page(&t, &job, &tech).await;
    assert!(
        page.body.contains(&format!(
            "<img src=\"/ui/evidence/{}\" alt=\"photo before\"",
            shas[0]
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!(
        "<a class=\"file\" href=\"/ui/evidence/{}\"",
        shas[1]
    )));
    let img = get_page(&t, &format!("/ui/evidence/{}", shas[0]), Some(&tech)).await;
    assert_eq!(
        (img.status, img.headers["content-type"].to_str().unwrap()),
        (200, "image/png")
    );
    assert_eq!(img.body.len(), String::from_utf8_lossy(&png).len());
    let html = get_page(&t, &format!("/ui/evidence/{}", shas[1]), Some(&tech)).await;
    assert_eq!(html.headers["content-type"], "application/octet-stream");
    assert_eq!(html.headers["content-disposition"], "attachment");
    assert!(html.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(
        get_page(&t, &format!("/ui/evidence/{}", shas[0]), None)
            .await
            .status,
        303
    );
}

/// Reads server-sent events from a body until `want` appears (or times out).
async fn read_until(body: &mut axum::body::BodyDataStream, seen: &mut String, want: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn the_board_stream_sends_fresh_rows_when_the_projector_moves() {
    let t = TestApp::spawn().await;
    let first = t.open_ifm_job("site-stream-1").await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    let page = get_page(&t, "/ui/board", Some(&desk)).await;
    assert!(page.body.contains(&first));
    let stream_path = page
        .body
        .split("data-stream=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        stream_path.starts_with("/ui/board/stream?since="),
        "{stream_path}"
    );
    let req = Request::builder()
        .uri(&stream_path)
        .header("host", HOST)
        .header("cookie", format!("dispatch_session={desk}"))
        .body(Body::empty())
        .unwrap();
    let resp = t.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    assert!(read_until(&mut body, &mut seen, "retry:").await, "{seen}");
    assert!(
        !seen.contains("event: rows"),
        "nothing moved since the page: {seen}"
    );

    // A command, then the projector: the stream sends rows with the new job.
    let second = t.open_ifm_job("site-stream-2").await;
    t.project().await;
    assert!(read_until(&mut body, &mut seen, &second).await, "{seen}");
    assert!(seen.contains("event: rows") && seen.contains(&first));
    let position: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&t.app.pool)
        .await
        .unwrap();
    assert!(seen.contains(&format!("id: {position}")), "{seen}");

    // Filters apply to the stream too.
    let req = Request::builder()
        .uri("/ui/board/stream?state=closed&since=0")
        .header("cookie", format!("dispatch_session={desk}"))
        .body(Body::empty())
        .unwrap();
    let mut closed = t
        .router
        .clone()
        .oneshot(req)
        .await
        .unwrap()
        .into_body()
        .into_data_stream();
    let mut seen = String::new();
    assert!(
        read_until(&mut closed, &mut seen, "No jobs match these filters.").await,
        "{seen}"
    );
    assert!(!seen.contains(&first));
}
