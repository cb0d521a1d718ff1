//! Faults answered by the book on every transport (issue 21): JSON-RPC
//! errors on `/mcp` where the fault is the protocol's, and one code for one
//! fault whether it came over REST, `POST /v1/tools/{tool}` or MCP.

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::door_history::installed_base;
use crate::mcp::{call, mcp_raw, mcp_request};
use crate::support::*;
use crate::tools::{invocations, tool, tool_with};

/// `POST /mcp` with `body` sent as it is (JSON content type), as the agent.
async fn mcp_text(t: &TestApp, body: &str) -> Resp {
    let req = mcp_request(&t.keys.agent)
        .body(Body::from(body.to_string()))
        .unwrap();
    t.send(req).await
}

/// A JSON-RPC error answer: its HTTP status, error code, id and `data.field`.
fn rpc_error(r: &Resp) -> (u16, i64, Value, Option<&str>) {
    assert_eq!(r.json["jsonrpc"], "2.0", "{}", r.text());
    assert!(r.json.get("result").is_none(), "{}", r.text());
    let error = &r.json["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    (
        r.status,
        error["code"].as_i64().unwrap(),
        r.json["id"].clone(),
        error["data"]["field"].as_str(),
    )
}

#[tokio::test]
async fn mcp_protocol_faults_are_jsonrpc_errors_with_the_specified_codes() {
    let t = TestApp::spawn().await;
    // Not JSON at all: -32700 Parse error, as JSON, with a null id (the
    // request's could not be read); HTTP 400, not 415 text.
    for body in ["{not json", "", "{\"jsonrpc\":\"2.0\",\"id\":1,"] {
        let r = mcp_text(&t, body).await;
        assert_eq!(r.headers["content-type"], "application/json", "{body}");
        assert_eq!(rpc_error(&r), (400, -32700, Value::Null, None), "{body}");
    }
    // JSON, but no JSON-RPC message: -32600 Invalid Request.
    let r = mcp_text(&t, r#"{"hello":"world"}"#).await;
    assert_eq!(rpc_error(&r), (400, -32600, Value::Null, None));
    let r = mcp_text(&t, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!(rpc_error(&r).1, -32600);
    // tools/call whose params do not fit: -32602 Invalid params (not
    // -32601), in band, with the request's id and the parameter to blame.
    for (id, params, field) in [
        (11, json!({"arguments": {"text": "hi"}}), "name"),
        (12, json!({"name": 7, "arguments": {}}), "name"),
        (
            13,
            json!({"name": "add_note", "arguments": ["hi"]}),
            "arguments",
        ),
        (
            14,
            json!({"name": "add_note", "arguments": "hi"}),
            "arguments",
        ),
        (15, json!({"name": "add_note", "arguments": 3}), "arguments"),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let r = mcp_raw(&t, Some(&t.keys.agent), "localhost", &body).await;
        assert_eq!(
            rpc_error(&r),
            (200, -32602, json!(id), Some(field)),
            "{params}"
        );
    }
    // A method nobody serves is still -32601.
    let body = json!({"jsonrpc": "2.0", "id": 17, "method": "no/such/method", "params": {}});
    let r = mcp_raw(&t, Some(&t.keys.agent), "localhost", &body).await;
    assert_eq!(rpc_error(&r).1, -32601);
    // A well-formed call still works after all that, and the faults above
    // were no tool calls: none is in the invocation log.
    let r = call(
        &t,
        &t.keys.agent,
        18,
        "get_sop",
        json!({"incident_type": "door_stuck_open", "idempotency_key": "k-18"}),
    )
    .await;
    assert_eq!(r["isError"], false, "{r}");
    let records = invocations(&t, "transport=mcp").await;
    assert_eq!(field_of_each(&records, "tool"), ["get_sop"]);
    // What is not JSON by its Content-Type stays an HTTP refusal (415).
    let req = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("host", "localhost")
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {}", t.keys.agent))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(t.send(req).await.status, 415);
}

#[tokio::test]
async fn a_missing_idempotency_key_is_named_where_each_transport_carries_it() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("idem-site").await;
    let agent = &t.keys.agent;
    // MCP: the key is an argument.
    let r = call(
        &t,
        agent,
        1,
        "add_note",
        json!({"job_id": job, "text": "hi"}),
    )
    .await;
    let error = &r["structuredContent"]["error"];
    assert_eq!(error["code"], "idempotency_key_required");
    assert_eq!(error["field"], "idempotency_key");
    let detail = error["detail"].as_str().unwrap();
    assert!(detail.contains("`idempotency_key` argument"), "{detail}");
    assert!(!detail.contains("header"), "{detail}");
    // POST /v1/tools/{tool}: the key is the envelope's field.
    let body = json!({"arguments": {"job_id": job, "text": "hi"}}).to_string();
    let r = t
        .post_raw("/v1/tools/add_note", Some(agent), None, &body, &[])
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("idempotency_key_required"))
    );
    let detail = r.json["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("envelope's `idempotency_key`"), "{detail}");
    assert!(!detail.contains("header"), "{detail}");
    // REST: the key is the Idempotency-Key header.
    let path = format!("/v1/jobs/{job}/commands/add_note");
    let r = t
        .post_raw(&path, Some(agent), None, r#"{"text":"hi"}"#, &[])
        .await;
    assert_eq!((r.status, r.code()), (400, "idempotency_key_required"));
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key header"));
    // A key that is there but unusable is not "missing": 400
    // validation_error naming it, on both tool transports.
    let r = call(
        &t,
        agent,
        2,
        "add_note",
        json!({"job_id": job, "text": "hi", "idempotency_key": "ключ"}),
    )
    .await;
    let error = &r["structuredContent"]["error"];
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("validation_error"), Some("idempotency_key"))
    );
    let r = tool_with(
        &t,
        agent,
        "add_note",
        &"k".repeat(201),
        json!({"job_id": job, "text": "hi"}),
    )
    .await;
    assert_eq!(r.json["error"]["field"], "idempotency_key");
    assert_eq!(
        t.count_events(&job, "NoteAdded").await,
        0,
        "nothing was written"
    );
}

/// How a fault reached the service.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Rest,
    Tool,
    Mcp,
}

/// Each tool's call naming `incident_type` somewhere, the field it is
/// named by, and the REST request that does the same: (method, path, body).
fn naming(tool: &str, incident: &str) -> (Value, &'static str, (&'static str, String, Value)) {
    match tool {
        "get_sop" => (
            json!({"incident_type": incident}),
            "incident_type",
            ("GET", format!("/v1/sops/{incident}"), Value::Null),
        ),
        "find_technicians" => (
            json!({"eligible_for": incident}),
            "eligible_for",
            (
                "GET",
                format!("/v1/technicians?eligible_for={incident}"),
                Value::Null,
            ),
        ),
        "open_job" => {
            let mut body = open_body("unknown-type-site");
            body["incident_type"] = incident.into();
            (
                body.clone(),
                "incident_type",
                ("POST", "/v1/jobs".into(), body),
            )
        }
        "create_plan" => {
            let body = json!({"customer_id": "cust-mercy", "name": "Checks", "door_ids": ["door-ad-1"], "incident_type": incident, "every_months": 12, "starts_on": "2027-01-15", "lead_days": 30, "priority": "P3"});
            (
                body.clone(),
                "incident_type",
                ("POST", "/v1/maintenance-plans".into(), body),
            )
        }
        other => panic!("no case for {other}"),
    }
}

#[tokio::test]
async fn an_unknown_incident_type_gets_one_code_from_every_tool_on_every_transport() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    let events_before = t.count("SELECT count(*) FROM events").await;
    let incident = "alien_invasion";
    let mut mcp_id = 100;
    for tool_name in ["get_sop", "find_technicians", "open_job", "create_plan"] {
        // The agent may not plan maintenance; the dispatcher may call every one.
        let key = &t.keys.dispatcher;
        for transport in [Transport::Rest, Transport::Tool, Transport::Mcp] {
            let (arguments, field, (method, path, body)) = naming(tool_name, incident);
            let (status, problem) = match transport {
                Transport::Rest if method == "GET" => {
                    let r = t.get(&path, key).await;
                    (r.status, r.json)
                }
                Transport::Rest => {
                    let r = t.post(&path, key, body).await;
                    (r.status, r.json)
                }
                Transport::Tool => {
                    let r = tool(&t, key, tool_name, arguments).await;
                    assert_eq!(r.json["outcome"], "refused", "{tool_name}: {}", r.json);
                    (r.status, r.json["error"].clone())
                }
                Transport::Mcp => {
                    let mut arguments = arguments;
                    arguments["idempotency_key"] = format!("mcp-{mcp_id}").into();
                    mcp_id += 1;
                    let r = call(&t, key, mcp_id, tool_name, arguments).await;
                    assert_eq!(r["isError"], true, "{tool_name}: {r}");
                    let problem = r["structuredContent"]["error"].clone();
                    (problem["status"].as_u64().unwrap() as u16, problem)
                }
            };
            let seen = (status, problem["code"].as_str(), problem["field"].as_str());
            assert_eq!(
                seen,
                (422, Some("unknown_incident_type"), Some(field)),
                "{tool_name} over {transport:?}: {problem}"
            );
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(incident), "{detail}");
        }
    }
    assert_eq!(
        t.count("SELECT count(*) FROM events").await,
        events_before,
        "nothing was written"
    );
}
