//! The MCP endpoint, spoken as a client would: raw JSON-RPC over streamable
//! HTTP against the real router.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::Request;
use dispatch_api::domain::Role;
use dispatch_api::tools::allowlist::Allowlist;
use dispatch_api::tools::ToolsConfig;
use serde_json::{json, Value};

use crate::support::*;
use crate::tools::{invocations, with_tools};

pub const PROTOCOL: &str = "2025-06-18";

pub async fn mcp_raw(t: &TestApp, key: Option<&str>, host: &str, body: &Value) -> Resp {
    let mut b = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("host", host)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if body["method"] != "initialize" {
        b = b.header("mcp-protocol-version", PROTOCOL);
    }
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    t.send(b.body(Body::from(body.to_string())).unwrap()).await
}

/// A `POST /mcp` request as a client past its handshake sends it (Host
/// `localhost`, JSON, both Accept types, the protocol version, `key`), to
/// which a test adds headers of its own before the body.
pub fn mcp_request(key: &str) -> axum::http::request::Builder {
    Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
        .header("authorization", format!("Bearer {key}"))
}

pub async fn rpc(t: &TestApp, key: &str, id: u64, method: &str, params: Value) -> Value {
    let r = mcp_raw(
        t,
        Some(key),
        "localhost",
        &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    )
    .await;
    assert_eq!(r.status, 200, "{method}: {}", r.text());
    assert_eq!(r.json["jsonrpc"], "2.0");
    assert_eq!(r.json["id"], id);
    r.json
}

/// `tools/call`; returns the result (`content`, `structuredContent`, `isError`).
pub async fn call(t: &TestApp, key: &str, id: u64, name: &str, arguments: Value) -> Value {
    let r = rpc(
        t,
        key,
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
    .await;
    assert!(r.get("error").is_none(), "{name}: a protocol error: {r}");
    let result = r["result"].clone();
    let text = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        result["structuredContent"],
        "the text content carries the same answer"
    );
    result
}

pub async fn handshake(t: &TestApp, key: &str) -> Value {
    let init = rpc(
        t,
        key,
        0,
        "initialize",
        json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "openclaw-test", "version": "1.0"}}),
    )
    .await;
    let r = mcp_raw(
        t,
        Some(key),
        "localhost",
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    init
}

#[tokio::test]
async fn an_mcp_client_lists_the_agents_tools_and_runs_a_job_to_triaged() {
    let t = TestApp::spawn().await;
    let agent = &t.keys.agent;
    let init = handshake(&t, agent).await;
    assert_eq!(init["result"]["protocolVersion"], PROTOCOL);
    assert_eq!(init["result"]["serverInfo"]["name"], "dispatch-api");
    assert!(init["result"]["capabilities"]["tools"].is_object());

    let list = rpc(&t, agent, 1, "tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: BTreeSet<&str> = field_of_each(tools, "name").into_iter().collect();
    let allowlist = Allowlist::builtin().unwrap();
    let expected: BTreeSet<&str> = allowlist
        .tools_for(Role::Agent)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, expected);
    assert!(!names.contains("decide_approval") && !names.contains("close_job"));
    for tool in tools {
        let name = tool["name"].as_str().unwrap();
        let entry = &allowlist.tools[name];
        let schema = &tool["inputSchema"];
        assert_eq!(schema["additionalProperties"], false, "{name}");
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&json!("idempotency_key")),
            "{name}"
        );
        let a = &tool["annotations"];
        let read = entry.kind == dispatch_api::tools::allowlist::ToolKind::Query;
        assert_eq!(a["readOnlyHint"], read, "{name}");
        assert_eq!(a["openWorldHint"], false, "{name}");
        if !read {
            assert_eq!(a["destructiveHint"], entry.destructive, "{name}");
        }
    }
    let cancel = tools.iter().find(|x| x["name"] == "cancel_job").unwrap();
    assert_eq!(cancel["annotations"]["destructiveHint"], true);
    let open = tools.iter().find(|x| x["name"] == "open_job").unwrap();
    assert_eq!(open["annotations"]["destructiveHint"], false);

    let mut args = open_body("mcp-site");
    args["idempotency_key"] = "run-7/call-1".into();
    let r = call(&t, agent, 2, "open_job", args.clone()).await;
    assert_eq!(r["isError"], false, "{r}");
    let answer = &r["structuredContent"];
    assert_eq!(answer["outcome"], "ok");
    assert_eq!(answer["tool"], "open_job");
    let job = answer["result"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(answer["result"]["state"], "intake");
    // A retry of the same call replays the same answer.
    let again = call(&t, agent, 3, "open_job", args).await;
    assert_eq!(again["structuredContent"]["result"], answer["result"]);
    assert_eq!(again["structuredContent"]["replayed"], true);

    let mut intake = TestApp::intake();
    intake["job_id"] = job.clone().into();
    intake["idempotency_key"] = "run-7/call-2".into();
    let r = call(&t, agent, 4, "record_intake", intake).await;
    assert_eq!(r["isError"], false, "{r}");
    let args = json!({"job_id": job, "idempotency_key": "run-7/call-3"});
    let r = call(&t, agent, 5, "triage_job", args).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["result"]["state"], "triaged");

    // A tool outside the agent's allowlist: a tool result with isError and the code.
    let r = call(&t, agent, 6, "decide_approval", json!({"job_id": job, "approval_id": job, "decision": "approve", "idempotency_key": "run-7/call-4"})).await;
    assert_eq!(r["isError"], true);
    assert_eq!(r["structuredContent"]["outcome"], "refused");
    assert_eq!(r["structuredContent"]["error"]["code"], "tool_not_allowed");
    // An invalid argument: refused before anything is decoded.
    let r = call(
        &t,
        agent,
        7,
        "add_note",
        json!({"job_id": job, "text": "x".repeat(5000), "idempotency_key": "run-7/call-5"}),
    )
    .await;
    assert_eq!(r["isError"], true);
    assert_eq!(r["structuredContent"]["error"]["code"], "validation_error");
    assert_eq!(r["structuredContent"]["error"]["field"], "text");
    let args =
        json!({"job_id": job, "text": "hi", "role": "admin", "idempotency_key": "run-7/call-6"});
    let r = call(&t, agent, 8, "add_note", args).await;
    assert_eq!(r["structuredContent"]["error"]["field"], "role");
    // The idempotency key is required in every call's arguments.
    let args = json!({"job_id": job, "text": "hi"});
    let r = call(&t, agent, 9, "add_note", args).await;
    assert_eq!(r["isError"], true);
    assert_eq!(
        r["structuredContent"]["error"]["code"],
        "idempotency_key_required"
    );
    // Approvals behave as over HTTP.
    let r = call(&t, agent, 10, "request_nte_increase", json!({"job_id": job, "amount_cents": 70000, "reason": "parts", "idempotency_key": "run-7/call-7"})).await;
    assert_eq!(r["isError"], false);
    assert_eq!(r["structuredContent"]["outcome"], "approval_required");
    assert!(r["structuredContent"]["approval_id"].is_string());

    let records = invocations(&t, "actor=agent-1&transport=mcp").await;
    assert_eq!(records.len(), 9);
    assert!(records.iter().all(|r| r["transport"] == "mcp"));
    let outcomes: Vec<&str> = field_of_each(&records, "outcome");
    assert_eq!(
        outcomes,
        [
            "ok",
            "ok",
            "ok",
            "ok",
            "refused",
            "error",
            "error",
            "error",
            "approval_required"
        ]
    );
    assert_eq!(records[1]["replayed"], true);
    assert_eq!(records[4]["error_code"], "tool_not_allowed");
    assert_eq!(records[7]["idempotency_key"], Value::Null);
    assert_eq!(records[7]["error_code"], "idempotency_key_required");
    // The events name the MCP calls that caused them.
    let events = t.events(&job).await;
    for e in &events {
        let id = e["tool_invocation_id"].as_str().unwrap();
        assert!(records
            .iter()
            .any(|r| r["invocation_id"] == id && r["transport"] == "mcp"));
    }
    // Over MCP and HTTP, the same arguments have the same digest.
    let opened = &records[0];
    let mut plain = open_body("mcp-site");
    plain.as_object_mut().unwrap().remove("idempotency_key");
    assert_eq!(
        opened["argument_digest"],
        dispatch_api::store::hash::sha256_hex(
            dispatch_api::store::hash::canonical_json(&plain).as_bytes()
        )
    );
}

#[tokio::test]
async fn mcp_authenticates_checks_the_host_and_shows_each_role_its_own_tools() {
    let t = TestApp::spawn().await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let r = mcp_raw(&t, None, "localhost", &list).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(r.code(), "unauthorized");
    let r = mcp_raw(&t, Some("dak_not_a_key"), "localhost", &list).await;
    assert_eq!(r.status, 401);
    // DNS-rebinding protection: only configured hosts.
    let r = mcp_raw(&t, Some(&t.keys.agent), "evil.example", &list).await;
    assert_eq!(r.status, 403);
    let allowlist = Allowlist::builtin().unwrap();
    for (key, role) in [
        (&t.keys.tech_a, Role::Technician),
        (&t.keys.auditor, Role::Auditor),
        (&t.keys.dispatcher, Role::Dispatcher),
    ] {
        let r = rpc(&t, key, 1, "tools/list", json!({})).await;
        let names: BTreeSet<&str> = strings(&r["result"]["tools"], "name").into_iter().collect();
        let expected: BTreeSet<&str> = allowlist.tools_for(role).map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "{role:?}");
    }
    // Configured hosts replace the defaults.
    let t = with_tools(
        t,
        ToolsConfig {
            mcp_allowed_hosts: vec!["dispatch-api:8080".into()],
            ..ToolsConfig::default()
        },
    );
    let r = mcp_raw(&t, Some(&t.keys.agent), "dispatch-api:8080", &list).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = mcp_raw(&t, Some(&t.keys.agent), "localhost", &list).await;
    assert_eq!(r.status, 403);
    // Malformed requests are 4xx, never 5xx.
    for (body, accept) in [
        ("{not json", "application/json, text/event-stream"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            "text/html",
        ),
        (
            r#"{"hello":"world"}"#,
            "application/json, text/event-stream",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note","arguments":"x"}}"#,
            "application/json, text/event-stream",
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method","params":{}}"#,
            "application/json, text/event-stream",
        ),
    ] {
        let req = Request::builder()
            .method("POST")
            .uri("/mcp")
            .header("host", "dispatch-api:8080")
            .header("content-type", "application/json")
            .header("accept", accept)
            .header("mcp-protocol-version", PROTOCOL)
            .header("authorization", format!("Bearer {}", t.keys.agent))
            .body(Body::from(body))
            .unwrap();
        let r = t.send(req).await;
        assert!(r.status < 500, "{body}: {} {}", r.status, r.text());
    }
    // GET (an SSE stream) is not offered: stateless, JSON answers.
    let req = Request::builder()
        .method("GET")
        .uri("/mcp")
        .header("host", "dispatch-api:8080")
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {}", t.keys.agent))
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.send(req).await.status, 405);
}
