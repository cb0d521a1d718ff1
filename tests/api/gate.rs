//! One gate for every transport (issue 16): REST routes, `/v1/tools`, `/mcp`
//! and the pages' decision form pass the same allowlist check and the same
//! per-key rate limit, and every call lands in one invocation log with its
//! transport. And `/mcp` refuses a cross-site `Origin`.

use axum::body::Body;
use axum::http::Request;
use dispatch_api::tools::ToolsConfig;
use serde_json::{json, Value};

use crate::mcp::{call, handshake, mcp_request};
use crate::support::*;
use crate::tools::{invocations, tool, with_tools};

/// `/mcp` with an optional `Origin`.
async fn mcp_from(t: &TestApp, key: &str, origin: Option<&str>, body: &Value) -> Resp {
    let mut b = mcp_request(key);
    if let Some(o) = origin {
        b = b.header("origin", o);
    }
    t.send(b.body(Body::from(body.to_string())).unwrap()).await
}

#[tokio::test]
async fn rest_calls_spend_the_same_key_budget_as_tool_and_mcp_calls() {
    let t = TestApp::spawn().await;
    // Opened before the limit applies (another router over the same app).
    let job = t.open_ifm_job("gate-budget").await;
    let t = with_tools(
        t,
        ToolsConfig {
            rate_per_minute: 1,
            rate_burst: 4,
            ..ToolsConfig::default()
        },
    );
    let agent = t.keys.agent.clone();
    // MCP's handshake is not a call: only tools/call spends budget.
    handshake(&t, &agent).await;
    // Four calls, one budget: a REST command, a REST read, a tool, an MCP call.
    let r = t.note(&job, &agent, "one").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let r = t.get(&format!("/v1/jobs/{job}"), &agent).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let args = json!({"incident_type": "door_stuck_open"});
    let r = tool(&t, &agent, "get_sop", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let args = json!({"incident_type": "door_stuck_open", "idempotency_key": "mcp-1"});
    let r = call(&t, &agent, 1, "get_sop", args).await;
    assert_eq!(r["isError"], false, "{r}");
    // The budget is spent, whichever way the next call comes.
    let before = t.events(&job).await.len();
    for r in [
        t.note(&job, &agent, "two").await,
        t.get(&format!("/v1/jobs/{job}"), &agent).await,
        t.get("/v1/board", &agent).await,
        t.get("/v1/tools", &agent).await,
    ] {
        assert_eq!(r.status, 429, "{:?}", r.json);
        assert_eq!(r.code(), "rate_limited");
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{:?}",
            r.headers
        );
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(r.json["retry_after"], retry);
    }
    assert_eq!(
        t.events(&job).await.len(),
        before,
        "a refused command appends nothing"
    );
    let r = tool(&t, &agent, "add_note", json!({"job_id": job, "text": "x"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["error"]["code"], "rate_limited");
    let args = json!({"incident_type": "door_stuck_open", "idempotency_key": "mcp-2"});
    let r = call(&t, &agent, 2, "get_sop", args).await;
    assert_eq!(r["isError"], true);
    assert_eq!(r["structuredContent"]["error"]["code"], "rate_limited");
    // Another key has its own budget.
    let r = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(r.status, 200);
    // Every one of the agent's calls is in the log, the refused ones too.
    let records = invocations(&t, "actor=agent-1").await;
    assert_eq!(records[0]["tool"], "open_job", "opened before the limit");
    let records = &records[1..];
    let seen: Vec<(&str, &str, i64)> = records
        .iter()
        .map(|r| {
            (
                r["transport"].as_str().unwrap(),
                r["tool"].as_str().unwrap(),
                r["http_status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("rest", "add_note", 200),
            ("rest", "get_job", 200),
            ("tool", "get_sop", 200),
            ("mcp", "get_sop", 200),
            ("rest", "add_note", 429),
            ("rest", "get_job", 429),
            ("rest", "search_board", 429),
            ("rest", "GET /v1/tools", 429),
            ("tool", "add_note", 429),
            ("mcp", "get_sop", 429),
        ]
    );
    assert!(records[4..]
        .iter()
        .all(|r| r["outcome"] == "refused" && r["error_code"] == "rate_limited"));
}

/// The form fields of the first decision form on a page.
fn hidden(page: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&needle)
        .unwrap_or_else(|| panic!("no input {name} in {page}"))
        + needle.len();
    page[start..].split('"').next().unwrap().to_string()
}

async fn page(
    t: &TestApp,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "ui.test");
    if let Some(c) = cookie {
        b = b.header("cookie", format!("dispatch_session={c}"));
    }
    let body = if method == "POST" {
        b = b
            .header("origin", "http://ui.test")
            .header("content-type", "application/x-www-form-urlencoded");
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish()
    } else {
        String::new()
    };
    t.send(b.body(Body::from(body)).unwrap()).await
}

#[tokio::test]
async fn every_transport_lands_in_one_log_with_its_name() {
    let t = TestApp::spawn().await;
    let agent = t.keys.agent.clone();
    // REST, as the agent: a command answered, a read, a refusal by the
    // allowlist, a refusal by a guard, a request that needs approval, a
    // reused key, and a call with no key at all.
    let job = t.open_ifm_job("gate-log").await;
    let r = t.note(&job, &agent, "called the site").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let note_events = r.json["events"].clone();
    let r = t.get(&format!("/v1/jobs/{job}"), &agent).await;
    assert_eq!(r.status, 200);
    let r = t.cmd(&job, "triage_job", &agent, json!({})).await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    let guard_code = r.code().to_string();
    let r = t
        .cmd(
            &job,
            "request_nte_increase",
            &agent,
            json!({"amount_cents": 65000, "reason": "spring and cable"}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    let approval = r.json["approval_id"].as_str().unwrap().to_string();
    let r = t
        .cmd(
            &job,
            "decide_approval",
            &agent,
            json!({"approval_id": approval, "decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "forbidden");
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let first = t
        .post_text(&path, &agent, "reused-1", r#"{"text":"a"}"#)
        .await;
    assert_eq!(first.status, 200);
    let again = t
        .post_text(&path, &agent, "reused-1", r#"{"text":"a"}"#)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let reused = t
        .post_text(&path, &agent, "reused-1", r#"{"text":"b"}"#)
        .await;
    assert_eq!(reused.status, 409);
    assert_eq!(reused.code(), "idempotency_key_reused");
    let r = t.get(&format!("/v1/jobs/{job}"), "not-a-key").await;
    assert_eq!(r.status, 401);

    let rest = invocations(&t, "actor=agent-1&transport=rest").await;
    let seen: Vec<(&str, i64, &str, &str)> = rest
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap(),
                r["http_status"].as_i64().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["error_code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("open_job", 201, "ok", ""),
            ("add_note", 200, "ok", ""),
            ("get_job", 200, "ok", ""),
            ("triage_job", 422, "refused", guard_code.as_str()),
            ("request_nte_increase", 202, "approval_required", ""),
            ("decide_approval", 403, "refused", "forbidden"),
            ("add_note", 200, "ok", ""),
            ("add_note", 200, "ok", ""),
            ("add_note", 409, "refused", "idempotency_key_reused"),
        ],
        "one record per call, the 401 not among them"
    );
    for r in &rest {
        assert_eq!(r["job_id"], job.as_str(), "{r}");
        assert_eq!(r["actor"]["id"], "agent-1");
        assert_eq!(r["argument_digest"].as_str().unwrap().len(), 64);
    }
    assert_eq!(rest[1]["events"], note_events);
    assert!(rest[1]["idempotency_key"].is_string());
    assert_eq!(rest[4]["approval_id"], approval.as_str(), "{}", rest[4]);
    assert_eq!(rest[4]["events"][0]["event_type"], "ApprovalRequested");
    assert_eq!(rest[5]["approval_id"], approval.as_str());
    assert_eq!(rest[5]["events"], json!([]));
    assert_eq!(rest[6]["idempotency_key"], "reused-1");
    assert_eq!(
        (rest[6]["replayed"].clone(), rest[7]["replayed"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(rest[7]["events"], json!([]), "a replay appends nothing");
    assert_ne!(
        rest[6]["argument_digest"], rest[8]["argument_digest"],
        "the digest covers the body"
    );
    assert_eq!(rest[6]["argument_digest"], rest[7]["argument_digest"]);

    // The tool envelope and MCP.
    let args = json!({"job_id": job, "text": "by tool"});
    let r = tool(&t, &agent, "add_note", args).await;
    assert_eq!(r.status, 200);
    handshake(&t, &agent).await;
    let args = json!({"job_id": job, "text": "by mcp", "idempotency_key": "mcp-note"});
    let r = call(&t, &agent, 1, "add_note", args).await;
    assert_eq!(r["isError"], false, "{r}");

    // The dispatcher approves on the page: transport `ui`.
    let login = page(
        &t,
        "POST",
        "/ui/login",
        None,
        &[("key", &t.keys.dispatcher)],
    )
    .await;
    assert_eq!(login.status, 303);
    let cookie = login.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("dispatch_session=")
        .unwrap()
        .to_string();
    let job_page = page(&t, "GET", &format!("/ui/jobs/{job}"), Some(&cookie), &[]).await;
    let html = job_page.text();
    let (csrf, idem) = (hidden(&html, "csrf"), hidden(&html, "idem"));
    let decided = page(
        &t,
        "POST",
        &format!("/ui/approvals/{approval}/decide"),
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("job_id", &job),
            ("decision", "approve"),
            ("idem", &idem),
            ("back", "job"),
        ],
    )
    .await;
    assert_eq!(decided.status, 303, "{}", decided.text());

    for (transport, actor, count) in [
        ("tool", "agent-1", 1),
        ("mcp", "agent-1", 1),
        ("ui", "dispatcher-1", 1),
    ] {
        let records = invocations(&t, &format!("transport={transport}")).await;
        assert_eq!(records.len(), count, "{transport}: {records:?}");
        assert_eq!(records[0]["actor"]["id"], actor);
        assert_eq!(records[0]["outcome"], "ok");
    }
    let ui = &invocations(&t, "transport=ui").await[0];
    assert_eq!(ui["tool"], "decide_approval");
    assert_eq!(ui["job_id"], job.as_str());
    assert_eq!(ui["approval_id"], approval.as_str());
    assert_eq!(ui["idempotency_key"], format!("{idem}-approve"));
    let types: Vec<&str> = strings(&ui["events"], "event_type");
    assert_eq!(types, ["ApprovalGranted", "NteIncreased"]);
    // The whole log, every transport, each record valid (the helper checks
    // each against schemas/tool_invocation.schema.json); the auditor's own
    // reads of it are REST calls too.
    let all = invocations(&t, "").await;
    for transport in ["rest", "tool", "mcp", "ui"] {
        assert!(
            all.iter().any(|r| r["transport"] == transport),
            "{transport}"
        );
    }
    assert!(all
        .iter()
        .any(|r| r["actor"]["id"] == "auditor-1" && r["tool"] == "GET /v1/tool-invocations"));
    let r = t
        .get("/v1/tool-invocations?transport=http", &t.keys.auditor)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "validation_error");
}

#[tokio::test]
async fn mcp_refuses_a_cross_site_origin() {
    let t = TestApp::spawn().await;
    let agent = t.keys.agent.clone();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    for origin in [
        "http://evil.example",
        "null",
        "http://localhost.evil.example",
    ] {
        let r = mcp_from(&t, &agent, Some(origin), &list).await;
        assert_eq!(r.status, 403, "{origin}");
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.code(), "forbidden");
    }
    // Refused before the key is looked at: no key, same answer.
    let r = t
        .send(
            Request::builder()
                .method("POST")
                .uri("/mcp")
                .header("host", "localhost")
                .header("origin", "http://evil.example")
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(Body::from(list.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 403);
    for origin in [
        None,
        Some("http://localhost:3000"),
        Some("http://127.0.0.1"),
    ] {
        let r = mcp_from(&t, &agent, origin, &list).await;
        assert_eq!(r.status, 200, "{origin:?}: {}", r.text());
        assert!(r.json["result"]["tools"].as_array().unwrap().len() > 1);
    }
    // Configurable: a gateway's own origin, and nothing else.
    let t = with_tools(
        t,
        ToolsConfig {
            rate_per_minute: 0,
            mcp_allowed_origins: vec!["https://gateway.example".into()],
            ..ToolsConfig::default()
        },
    );
    let r = mcp_from(&t, &agent, Some("https://gateway.example"), &list).await;
    assert_eq!(r.status, 200);
    let r = mcp_from(&t, &agent, Some("http://localhost:3000"), &list).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn the_log_writes_queued_records_in_order_and_flush_waits_for_them() {
    use dispatch_api::domain::{Actor, Role};
    use dispatch_api::tools::log::{InvocationLog, InvocationRecord, Outcome, Transport};
    let t = TestApp::spawn().await;
    let log = InvocationLog::start(&t.app.pool);
    let n = 2_500;
    for i in 0..n {
        log.record(InvocationRecord {
            position: 0,
            invocation_id: uuid::Uuid::new_v4(),
            tool: "get_sop".into(),
            actor: Actor::new(Role::Agent, "bulk-agent"),
            transport: Transport::ALL[i % 4],
            idempotency_key: Some(format!("bulk-{i}")),
            argument_digest: "0".repeat(64),
            outcome: Outcome::Ok,
            error_code: None,
            http_status: 200,
            job_id: None,
            approval_id: None,
            events: Vec::new(),
            replayed: false,
            at: t0(),
        });
    }
    // Everything queued before the flush is written when it returns (as at
    // shutdown, and before `GET /v1/tool-invocations` reads).
    log.flush().await;
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM tool_invocations WHERE actor_id = 'bulk-agent' ORDER BY position",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap();
    assert_eq!(keys.len(), n);
    assert!(
        keys.iter()
            .enumerate()
            .all(|(i, k)| *k == format!("bulk-{i}")),
        "positions follow the queue's order"
    );
    let records = invocations(&t, "actor=bulk-agent&transport=ui").await;
    assert_eq!(records.len(), n / 4);
    // An old `http` row (before migration 0011) reads as `tool`; no new row may say `http`.
    let insert = |transport: &'static str| {
        let pool = t.app.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO tool_invocations (invocation_id, tool, actor, actor_id, transport, \
                 argument_digest, outcome, http_status, at) VALUES (gen_random_uuid(), 'get_sop', \
                 '{\"kind\":\"agent\",\"id\":\"old-agent\",\"role\":\"agent\"}', 'old-agent', $1, \
                 repeat('0', 64), 'ok', 200, now())",
            )
            .bind(transport)
            .execute(&pool)
            .await
        }
    };
    let refused = insert("http").await.unwrap_err();
    assert!(refused.to_string().contains("transport_check"), "{refused}");
    let mut tx = t.app.pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE tool_invocations DROP CONSTRAINT tool_invocations_transport_check")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO tool_invocations (invocation_id, tool, actor, actor_id, transport, \
         argument_digest, outcome, http_status, at) VALUES (gen_random_uuid(), 'get_sop', \
         '{\"kind\":\"agent\",\"id\":\"old-agent\",\"role\":\"agent\"}', 'old-agent', 'http', \
         repeat('0', 64), 'ok', 200, now())",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let old = invocations(&t, "actor=old-agent&transport=tool").await;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["transport"], "tool");
}

#[tokio::test]
async fn a_record_reads_back_exactly_as_written_whatever_its_text() {
    // The log is written with COPY's text format: backslashes, tabs,
    // newlines, quotes, `\N` and non-ASCII text must come back unchanged,
    // and an absent value as absent (not as the text "\N").
    use dispatch_api::domain::{Actor, Role};
    use dispatch_api::tools::log::{self, InvocationRecord, Outcome, Transport};
    let t = TestApp::spawn().await;
    let awkward = "a\\b\tc\nd\re \\N \\. \"q\" ß☃ {\"x\":1}";
    let record = |i: usize, text: Option<&str>| InvocationRecord {
        position: 0,
        invocation_id: uuid::Uuid::new_v4(),
        tool: text.unwrap_or("get_sop").chars().take(100).collect(),
        actor: Actor::new(Role::Agent, "copy-agent"),
        transport: Transport::ALL[i % 4],
        idempotency_key: text.map(|s| format!("key {s}")),
        argument_digest: "f".repeat(64),
        outcome: Outcome::Refused,
        error_code: text.map(|_| "not_found".to_string()),
        http_status: 404,
        job_id: text.map(str::to_string),
        approval_id: None,
        events: vec![json!({"event_type": text.unwrap_or("none"), "sequence": i})],
        replayed: i % 2 == 1,
        at: t0() + chrono::Duration::microseconds(i as i64 * 1_001),
    };
    let written = vec![
        record(0, Some(awkward)),
        record(1, None),
        record(2, Some("\\N")),
    ];
    log::append_batch(&t.app.pool, &written).await.unwrap();
    let read = log::list(
        &t.app.pool,
        &log::Filter {
            actor: Some("copy-agent".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(read.len(), written.len());
    for (r, w) in read.iter().zip(&written) {
        assert_eq!(
            InvocationRecord {
                position: 0,
                ..r.clone()
            },
            *w
        );
    }
}

#[tokio::test]
async fn head_requests_pass_the_gate_like_gets() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("gate-head").await;
    let head = |key: String, path: String| {
        let t = &t;
        async move {
            t.send(
                Request::builder()
                    .method("HEAD")
                    .uri(path)
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    // The agent may not read a job's audit: not by GET, not by HEAD.
    let r = head(t.keys.agent.clone(), format!("/v1/jobs/{job}/audit")).await;
    assert_eq!(r.status, 403);
    let r = head(t.keys.auditor.clone(), format!("/v1/jobs/{job}/audit")).await;
    assert_eq!(r.status, 200);
    let records = invocations(&t, "transport=rest&tool=GET%20/v1/jobs/%7Bjob_id%7D/audit").await;
    let seen: Vec<(&str, i64)> = records
        .iter()
        .map(|r| {
            (
                r["actor"]["id"].as_str().unwrap(),
                r["http_status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("agent-1", 403), ("auditor-1", 200)]);
}
