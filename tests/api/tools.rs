//! The closed toolset over HTTP: the manifest, the role × tool matrix from the
//! allowlist, the envelope, idempotency, approvals, rate limits and the
//! invocation log (every record valid against its schema).

use std::collections::BTreeSet;
use std::sync::Arc;

use dispatch_api::domain::Role;
use dispatch_api::http::{router, AppState};
use dispatch_api::tools::allowlist::{Allowlist, ToolKind};
use dispatch_api::tools::{ToolsConfig, Toolset};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

/// Calls a tool with a fresh idempotency key.
pub async fn tool(t: &TestApp, key: &str, name: &str, arguments: Value) -> Resp {
    let idem = t.idem();
    tool_with(t, key, name, &idem, arguments).await
}

/// Calls a tool with a given idempotency key.
pub async fn tool_with(t: &TestApp, key: &str, name: &str, idem: &str, arguments: Value) -> Resp {
    let body = json!({"idempotency_key": idem, "arguments": arguments});
    t.post_raw(
        &format!("/v1/tools/{name}"),
        Some(key),
        None,
        &body.to_string(),
        &[],
    )
    .await
}

/// The log as the auditor reads it (every page), each record schema-checked.
pub async fn invocations(t: &TestApp, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let r = t
            .get(
                &format!("/v1/tool-invocations?{query}{sep}after={after}&limit=1000"),
                &t.keys.auditor,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        let page = r.json["invocations"].as_array().unwrap().clone();
        for record in &page {
            validate("tool_invocation.schema.json", record);
        }
        out.extend(page);
        match r.json["next_after"].as_i64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

/// The same app with other tool settings (rate limits).
pub fn with_tools(t: TestApp, config: ToolsConfig) -> TestApp {
    let allowlist = Arc::new(Allowlist::builtin().unwrap());
    let state = AppState {
        app: t.app.clone(),
        allowlist: allowlist.clone(),
        limits: Default::default(),
        metrics: None,
        tools: Arc::new(Toolset::new(allowlist, config).unwrap()),
        webhook_urls: Default::default(),
    };
    TestApp {
        router: router(state),
        ..t
    }
}

/// No rate limit: suites that make hundreds of calls with one key.
pub fn unlimited() -> ToolsConfig {
    ToolsConfig {
        rate_per_minute: 0,
        ..ToolsConfig::default()
    }
}

/// Arguments that pass each tool's schema (whether the domain agrees is another matter).
pub fn valid_arguments(name: &str, job: &str) -> Value {
    let mut args = match name {
        "get_sop" => json!({"incident_type": "door_stuck_open"}),
        "search_board" | "find_technicians" | "get_billing_status" => json!({}),
        "get_door_history" => json!({"door_id": "no-such-door"}),
        "open_job" => open_body("matrix-site"),
        "record_intake" => json!({"fields": {"access_hours": "24/7"}}),
        "set_priority" => json!({"priority": "P2", "reason": "caller says it can wait"}),
        "resolve_duplicate" => json!({"resolution": "not_duplicate"}),
        "offer_job" => json!({"technician_id": "tech-a"}),
        "accept_offer" => json!({"eta": "2026-11-21T01:00:00Z"}),
        "decline_offer" | "cancel_job" | "reopen_unsatisfactory" => {
            json!({"reason": "customer request"})
        }
        "check_in" => json!({"method": "app"}),
        "complete_checklist_item" => json!({"item_id": "photo_before", "result": "pass"}),
        "attach_evidence" => json!({"kind": "photo_before", "sha256": "0".repeat(64)}),
        "check_out" => {
            json!({"outcome": "completed", "door_left_state": "operational", "resolution": "fixed"})
        }
        "verify_closeout" => json!({"items": []}),
        "close_job" => json!({"invoice_number": "INV-1"}),
        "add_note" => json!({"text": "called the site"}),
        "request_nte_increase" => json!({"amount_cents": 65000, "reason": "extra parts"}),
        "decide_approval" => {
            json!({"approval_id": Uuid::new_v4().to_string(), "decision": "approve"})
        }
        "flag_sla_breach" => json!({"kind": "response"}),
        _ => match registry_arguments(name) {
            Some(args) => return args,
            None => json!({}),
        },
    };
    if !matches!(
        name,
        "open_job"
            | "get_sop"
            | "search_board"
            | "find_technicians"
            | "get_billing_status"
            | "get_door_history"
    ) {
        args["job_id"] = job.into();
    }
    args
}

/// Arguments that pass each registry tool's schema (on entries that need
/// not exist: a command on one answers `not_found`).
fn registry_arguments(name: &str) -> Option<Value> {
    let reason = json!({"reason": "no longer served"});
    let mut args = match name {
        "find_site" => return Some(json!({"query": "St Marys Hosp"})),
        "get_door" => return Some(json!({"door_id": "matrix-door"})),
        "register_customer" => json!({"name": "Matrix Co", "billing": "direct"}),
        "register_site" => json!({"customer_id": "matrix-co", "name": "Matrix HQ",
            "address": "1 Matrix Way", "time_zone": "America/Chicago"}),
        "register_door" => json!({"site_id": "matrix-site", "kind": "dock", "location": "Dock 1"}),
        "create_plan" => {
            json!({"customer_id": "matrix-co", "name": "PM", "door_ids": ["matrix-door"],
            "incident_type": "preventive_maintenance", "every_months": 3, "starts_on": "2027-01-01",
            "lead_days": 14, "priority": "P4"})
        }
        "update_customer" | "update_site" | "update_door" => json!({}),
        "move_door" => json!({"site_id": "matrix-site", "location": "Dock 2"}),
        "record_door_label" => json!({"fire_rating": "90 min", "legible": true}),
        "set_door_status" => json!({"status": "impaired", "reason": "does not latch"}),
        "skip_occurrence" => {
            json!({"door_id": "matrix-door", "due_on": "2027-01-01", "reason": "closed"})
        }
        "move_occurrence" => json!({"door_id": "matrix-door", "due_on": "2027-01-01",
            "to": "2027-01-15", "reason": "asked"}),
        "retire_customer" | "retire_site" | "retire_door" | "retire_plan" => reason,
        _ => return None,
    };
    let id = match name {
        n if n.ends_with("_customer") && n != "register_customer" => {
            Some(("customer_id", "matrix-co"))
        }
        n if n.ends_with("_site") && n != "register_site" => Some(("site_id", "matrix-site")),
        "update_door" | "move_door" | "record_door_label" | "set_door_status" | "retire_door" => {
            Some(("door_id", "matrix-door"))
        }
        "skip_occurrence" | "move_occurrence" | "retire_plan" => Some(("plan_id", "matrix-plan")),
        _ => None,
    };
    if let Some((field, value)) = id {
        args[field] = value.into();
    }
    Some(args)
}

fn role_key(t: &TestApp, role: Role) -> &str {
    match role {
        Role::Agent => &t.keys.agent,
        Role::Dispatcher => &t.keys.dispatcher,
        Role::Technician => &t.keys.tech_a,
        Role::Auditor => &t.keys.auditor,
        Role::Admin => &t.keys.admin,
        Role::System => unreachable!("no key can act as the system"),
    }
}

fn key_name(role: Role) -> &'static str {
    match role {
        Role::Agent => "agent-1",
        Role::Dispatcher => "dispatcher-1",
        Role::Technician => "tech-a",
        Role::Auditor => "auditor-1",
        Role::Admin => "admin-1",
        Role::System => "system",
    }
}

const HTTP_ROLES: [Role; 5] = [
    Role::Agent,
    Role::Dispatcher,
    Role::Technician,
    Role::Auditor,
    Role::Admin,
];

#[tokio::test]
async fn manifest_is_the_callers_allowlist_and_serves_the_checked_in_schemas() {
    let t = TestApp::spawn().await;
    let list = Allowlist::builtin().unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tools");
    // Every schema file names an allowlisted tool, and every tool has one.
    let files: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")
                .unwrap_or_else(|| panic!("{name}: not a .json file"))
                .to_string()
        })
        .collect();
    let tools: BTreeSet<String> = list.tools.keys().cloned().collect();
    assert_eq!(files, tools, "schemas/tools/ and the allowlist differ");
    for role in HTTP_ROLES {
        let r = t.get("/v1/tools", role_key(&t, role)).await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        assert_eq!(r.json["role"], role.as_str());
        let served = r.json["tools"].as_array().unwrap();
        let names: Vec<&str> = field_of_each(served, "name");
        let expected: Vec<&str> = list.tools_for(role).map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "{role:?}");
        for entry in served {
            let name = entry["name"].as_str().unwrap();
            let file: Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(
                entry["input_schema"], file,
                "{name}: the manifest does not serve schemas/tools/{name}.json as checked in"
            );
            assert_eq!(
                entry["risk"],
                serde_json::to_value(list.tools[name].risk).unwrap()
            );
            assert_eq!(entry["description"], list.tools[name].description);
            let keys: BTreeSet<&str> = entry
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["name", "description", "input_schema", "risk"])
            );
        }
    }
    let agent: Vec<String> = list
        .tools_for(Role::Agent)
        .map(|(n, _)| n.clone())
        .collect();
    for name in [
        "get_sop",
        "get_job",
        "search_board",
        "find_technicians",
        "get_billing_status",
        "get_door_history",
        "open_job",
        "record_intake",
        "triage_job",
        "set_priority",
        "resolve_duplicate",
        "offer_job",
        "add_note",
        "request_nte_increase",
        "cancel_job",
        "verify_closeout",
        "mark_billing_ready",
        "find_site",
        "get_door",
        "register_site",
        "register_door",
    ] {
        assert!(agent.contains(&name.to_string()), "the agent lacks {name}");
    }
    assert_eq!(
        agent.len(),
        21,
        "the agent holds exactly the contract's 21 tools: {agent:?}"
    );
    let r = t.get("/v1/tools", "not-a-key").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_role_tool_matrix_follows_the_allowlist_and_every_refusal_is_recorded() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    t.project().await;
    let list = Allowlist::builtin().unwrap();
    let mut expected_refusals = 0;
    for role in HTTP_ROLES {
        // A job of its own for each role, so one role's cancel does not shape another's answers.
        let job = t
            .open_ifm_job_with_key(&format!("matrix-{}", role.as_str()))
            .await;
        let key = role_key(&t, role);
        let mut names: Vec<&String> = list.tools.keys().collect();
        // Cancel last: before it, commands meet the job open.
        names.sort_by_key(|n| (n.as_str() == "cancel_job", n.to_string()));
        for name in names {
            let r = tool(&t, key, name, valid_arguments(name, &job)).await;
            assert_eq!(r.json["tool"], name.as_str(), "{:?}", r.json);
            if list.tool_allowed(name, role) {
                let code = r.json["error"]["code"].as_str().unwrap_or("");
                assert!(
                    !matches!(
                        code,
                        "tool_not_allowed" | "validation_error" | "idempotency_key_required"
                    ),
                    "{role:?} may call {name}, but got {}: {:?}",
                    r.status,
                    r.json
                );
                assert!(
                    r.status != 429 && r.status < 500,
                    "{role:?} {name}: {:?}",
                    r.json
                );
            } else {
                expected_refusals += 1;
                assert_eq!(r.status, 403, "{role:?} must not call {name}: {:?}", r.json);
                assert_eq!(r.json["outcome"], "refused");
                assert_eq!(r.json["error"]["code"], "tool_not_allowed");
                assert!(r.json.get("result").is_none());
            }
        }
        // A name that is no tool at all is refused the same way.
        let r = tool(&t, key, "approve_everything", json!({})).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.json["error"]["code"], "tool_not_allowed");
        expected_refusals += 1;
    }
    let records = invocations(&t, "transport=tool").await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["error_code"] == "tool_not_allowed")
        .collect();
    assert_eq!(refused.len(), expected_refusals);
    for role in HTTP_ROLES {
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["actor"]["id"] == key_name(role))
            .collect();
        assert_eq!(
            mine.len(),
            list.tools.len() + 1,
            "{role:?}: one record per call"
        );
        for r in &mine {
            let name = r["tool"].as_str().unwrap();
            let allowed = list.tool_allowed(name, role);
            assert_eq!(
                r["error_code"] == "tool_not_allowed",
                !allowed,
                "{role:?} {name}: {r}"
            );
            assert_eq!(r["actor"]["role"], role.as_str());
            assert_eq!(r["transport"], "tool");
            if !allowed {
                assert_eq!(r["http_status"], 403);
                assert_eq!(r["events"], json!([]));
            }
        }
    }
    // The refused calls changed nothing: the agent's job has no approval
    // granted and no close, whatever it asked.
    for e in records.iter().filter(|r| r["actor"]["role"] == "agent") {
        assert!(e["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ev| ev["event_type"] != "ApprovalGranted" && ev["event_type"] != "JobClosed"));
    }
}

#[tokio::test]
async fn the_envelope_is_strict_and_its_refusals_are_recorded() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("envelope").await;
    let post = |body: String| {
        let t = &t;
        async move {
            t.post_raw("/v1/tools/add_note", Some(&t.keys.agent), None, &body, &[])
                .await
        }
    };
    let args = json!({"job_id": job, "text": "hello"});
    let r = post(json!({"arguments": args}).to_string()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["outcome"], "error");
    assert_eq!(r.json["error"]["code"], "idempotency_key_required");
    let r = post(json!({"idempotency_key": "", "arguments": args}).to_string()).await;
    assert_eq!(r.json["error"]["code"], "idempotency_key_required");
    let r = post(json!({"idempotency_key": "k1", "arguments": args, "role": "admin"}).to_string())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "validation_error");
    assert_eq!(r.json["error"]["field"], "role");
    let r = post(
        json!({"idempotency_key": "k1", "invocation_id": "nope", "arguments": args}).to_string(),
    )
    .await;
    assert_eq!(r.json["error"]["field"], "invocation_id");
    let r = post(json!({"idempotency_key": "k1", "arguments": "text"}).to_string()).await;
    assert_eq!(r.json["error"]["field"], "arguments");
    let r = post(json!({"idempotency_key": "k1"}).to_string()).await;
    assert_eq!(r.json["error"]["field"], "arguments");
    let r = post("{not json".to_string()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "validation_error");
    let r = post(json!({"idempotency_key": "k1", "arguments": {"job_id": job}}).to_string()).await;
    assert_eq!(r.json["error"]["code"], "validation_error");
    assert_eq!(r.json["error"]["field"], "text");
    let r = post(
        json!({"idempotency_key": "k1", "arguments": {"job_id": "not-a-uuid", "text": "x"}})
            .to_string(),
    )
    .await;
    assert_eq!(r.json["error"]["field"], "job_id");
    // A tool the role may not call is refused as such, whatever the envelope.
    let r = t
        .post_raw(
            "/v1/tools/decide_approval",
            Some(&t.keys.agent),
            None,
            "{not json",
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json["error"]["code"], "tool_not_allowed");
    // Unauthenticated calls are 401 problem documents (there is no actor to record).
    let r = t
        .post_raw(
            "/v1/tools/add_note",
            None,
            None,
            &json!({"idempotency_key": "k", "arguments": args}).to_string(),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthorized");
    let records = invocations(&t, "actor=agent-1&transport=tool").await;
    assert_eq!(records.len(), 10);
    assert!(records.iter().all(|r| r["events"] == json!([])));
    assert!(records[..9]
        .iter()
        .all(|r| r["outcome"] == "error" && r["http_status"] == 400));
    assert_eq!(records[0]["idempotency_key"], Value::Null);
    assert_eq!(
        records[0]["job_id"],
        json!(job),
        "the job a refused call named is recorded"
    );
    assert_eq!(records[9]["error_code"], "tool_not_allowed");
    // Nothing was appended to the job.
    assert_eq!(t.events(&job).await.len(), 1);
}

#[tokio::test]
async fn the_agent_triages_a_job_through_tools_and_retries_replay_without_new_events() {
    let t = TestApp::spawn().await;
    let agent = &t.keys.agent;
    let args = json!({"incident_type": "door_stuck_open"});
    let r = tool(&t, agent, "get_sop", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "ok");
    assert_eq!(r.json["result"]["incident_type"], "door_stuck_open");
    let invocation_id = Uuid::new_v4();
    let body = json!({"invocation_id": invocation_id, "idempotency_key": "call-1-open", "arguments": open_body("tools-site")});
    let r = t
        .post_raw(
            "/v1/tools/open_job",
            Some(agent),
            None,
            &body.to_string(),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    assert_eq!(r.json["invocation_id"], json!(invocation_id));
    assert_eq!(r.json["tool"], "open_job");
    assert_eq!(r.json["outcome"], "ok");
    let job = r.json["result"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(r.json["result"]["state"], "intake");
    let r = tool(&t, agent, "triage_job", json!({"job_id": job})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json["outcome"], "refused");
    assert_eq!(r.json["error"]["code"], "missing_intake_fields");
    assert!(r.json["error"]["missing"].as_array().unwrap().len() > 1);
    let mut intake = TestApp::intake();
    intake["job_id"] = job.clone().into();
    let r = tool(&t, agent, "record_intake", intake).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let args = json!({"job_id": job});
    let r = tool_with(&t, agent, "triage_job", "call-1-triage", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["state"], "triaged");
    let first = r.json.clone();
    let events_before = t.events(&job).await;
    // The same key and arguments: the same answer, replayed, nothing appended.
    let args = json!({"job_id": job});
    let r = tool_with(&t, agent, "triage_job", "call-1-triage", args).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["idempotent-replayed"], "true");
    assert_eq!(r.json["result"], first["result"]);
    assert_eq!(r.json["replayed"], true);
    assert_ne!(r.json["invocation_id"], first["invocation_id"]);
    assert_eq!(t.events(&job).await.len(), events_before.len());
    // The same key, other arguments: refused.
    let args = json!({"job_id": job, "priority": "P1"});
    let r = tool_with(&t, agent, "triage_job", "call-1-triage", args).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json["outcome"], "refused");
    assert_eq!(r.json["error"]["code"], "idempotency_key_reused");
    // Every event names the tool call that caused it.
    let events = t.events(&job).await;
    assert_eq!(events[0]["tool_invocation_id"], json!(invocation_id));
    let records = invocations(&t, &format!("job_id={job}&transport=tool")).await;
    assert_eq!(
        records.len(),
        6,
        "open, triage, intake, triage, replay, reuse"
    );
    let tools: Vec<&str> = field_of_each(&records, "tool");
    assert_eq!(
        tools,
        [
            "open_job",
            "triage_job",
            "record_intake",
            "triage_job",
            "triage_job",
            "triage_job"
        ]
    );
    for (record, event) in records.iter().zip([0usize]) {
        assert_eq!(record["events"][0]["event_id"], events[event]["event_id"]);
    }
    for e in &events {
        let id = e["tool_invocation_id"]
            .as_str()
            .expect("every event names its tool call");
        let record = records.iter().find(|r| r["invocation_id"] == id).unwrap();
        assert!(record["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["event_id"] == e["event_id"]));
    }
    assert_eq!(records[4]["replayed"], true);
    assert_eq!(records[4]["events"], json!([]));
    assert_eq!(records[4]["outcome"], "ok");
    assert_eq!(records[5]["error_code"], "idempotency_key_reused");
    assert_eq!(records[1]["outcome"], "refused");
    assert_eq!(records[1]["error_code"], "missing_intake_fields");
    let digest = dispatch_api::store::hash::sha256_hex(
        dispatch_api::store::hash::canonical_json(&json!({"job_id": job})).as_bytes(),
    );
    assert_eq!(records[3]["argument_digest"], digest);
    // Read tools answer through the same path.
    let r = tool(&t, agent, "get_job", json!({"job_id": job})).await;
    assert_eq!(r.json["result"]["state"], "triaged");
}

#[tokio::test]
async fn query_tools_answer_from_the_read_models() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("queries").await;
    t.project().await;
    let agent = &t.keys.agent;
    let r = tool(
        &t,
        agent,
        "search_board",
        json!({"state": ["intake"], "limit": 10}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert!(r.json["result"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["job_id"] == job.as_str()));
    let args = json!({"eligible_for": "door_stuck_open"});
    let r = tool(&t, agent, "find_technicians", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let ids: Vec<&str> = strings(&r.json["result"]["rows"], "technician_id");
    assert!(
        ids.contains(&"tech-a") && !ids.contains(&"tech-b"),
        "{ids:?}"
    );
    let args = json!({"job_id": job, "ready": false});
    let r = tool(&t, agent, "get_billing_status", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["rows"][0]["job_id"], job.as_str());
    let r = tool(&t, agent, "search_board", json!({"state": ["nowhere"]})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["field"], "state.0");
    // A technician reads only jobs offered or assigned to them.
    let r = tool(&t, &t.keys.tech_a, "get_job", json!({"job_id": job})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json["error"]["code"], "forbidden");
    assert_eq!(r.json["outcome"], "refused");
}

#[tokio::test]
async fn the_agent_only_requests_an_nte_increase_and_one_approval_carries_it_out_once() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("nte").await;
    let agent = &t.keys.agent;
    let r = tool(
        &t,
        agent,
        "request_nte_increase",
        json!({"job_id": job, "amount_cents": 65000, "reason": "spring and cable"}),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "approval_required");
    let approval = r.json["approval_id"].as_str().unwrap().to_string();
    assert_eq!(r.json["result"]["approval_id"], approval.as_str());
    assert_eq!(
        r.json["result"]["events"][0]["event_type"],
        "ApprovalRequested"
    );
    let job_now = t.get(&format!("/v1/jobs/{job}"), agent).await;
    assert_eq!(
        job_now.json["nte_cents"], 50000,
        "a request changes nothing"
    );
    // The agent cannot decide, not even its own request.
    let decide = json!({"job_id": job, "approval_id": approval, "decision": "approve"});
    let r = tool(&t, agent, "decide_approval", decide.clone()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json["error"]["code"], "tool_not_allowed");
    // Nor through the plain command endpoint.
    let r = t
        .cmd(
            &job,
            "decide_approval",
            agent,
            json!({"approval_id": approval, "decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 403);
    // The dispatcher approves: the effect happens once.
    let desk = &t.keys.dispatcher;
    let desk_approves = || {
        tool_with(
            &t,
            desk,
            "decide_approval",
            "desk-approve-1",
            decide.clone(),
        )
    };
    let r = desk_approves().await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "ok");
    let types: Vec<&str> = strings(&r.json["result"]["events"], "event_type");
    assert_eq!(types, ["ApprovalGranted", "NteIncreased"]);
    let r = desk_approves().await;
    assert_eq!(r.json["replayed"], true);
    let r = tool(&t, &t.keys.admin, "decide_approval", decide.clone()).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json["error"]["code"], "approval_not_pending");
    let job_now = t.get(&format!("/v1/jobs/{job}"), agent).await;
    assert_eq!(job_now.json["nte_cents"], 65000);
    let increases = t.count_events(&job, "NteIncreased").await;
    assert_eq!(increases, 1);
    let records = invocations(&t, &format!("job_id={job}&transport=tool")).await;
    let decided = with_field(&records, "tool", "decide_approval");
    assert_eq!(decided.len(), 4);
    assert!(decided
        .iter()
        .all(|r| r["approval_id"] == approval.as_str()));
    assert_eq!(
        records
            .iter()
            .filter(|r| r["outcome"] == "approval_required")
            .count(),
        1
    );
}

#[tokio::test]
async fn nobody_approves_their_own_request_and_stale_approvals_are_refused() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("own").await;
    let desk = &t.keys.dispatcher;
    let args = json!({"job_id": job, "amount_cents": 70000, "reason": "quote"});
    let r = tool(&t, desk, "request_nte_increase", args).await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    let own = r.json["approval_id"].as_str().unwrap().to_string();
    let args = json!({"job_id": job, "amount_cents": 65000, "reason": "parts"});
    let r = tool(&t, &t.keys.agent, "request_nte_increase", args).await;
    let agents = r.json["approval_id"].as_str().unwrap().to_string();
    let args = json!({"job_id": job, "approval_id": own, "decision": "approve"});
    let r = tool(&t, desk, "decide_approval", args).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json["error"]["code"], "forbidden", "self-approval");
    assert_eq!(r.json["outcome"], "refused");
    let args = json!({"job_id": job, "approval_id": own, "decision": "approve"});
    let r = tool(&t, &t.keys.admin, "decide_approval", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    // The agent's smaller increase is no longer an increase: stale.
    let args = json!({"job_id": job, "approval_id": agents, "decision": "approve"});
    let r = tool(&t, desk, "decide_approval", args).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json["error"]["code"], "approval_stale");
    // Rejecting is always possible while pending.
    let args =
        json!({"job_id": job, "approval_id": agents, "decision": "reject", "reason": "superseded"});
    let r = tool(&t, desk, "decide_approval", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let job_now = t.get(&format!("/v1/jobs/{job}"), desk).await;
    assert_eq!(job_now.json["nte_cents"], 70000);
}

#[tokio::test]
async fn the_agent_cannot_cancel_a_dispatched_job_or_dismiss_a_duplicate_alone() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let agent = &t.keys.agent;
    let desk = &t.keys.dispatcher;
    let job = t.open_ifm_job("cancel").await;
    let mut intake = TestApp::intake();
    intake["job_id"] = job.clone().into();
    assert_eq!(tool(&t, agent, "record_intake", intake).await.status, 200);
    assert_eq!(
        tool(&t, agent, "triage_job", json!({"job_id": job}))
            .await
            .status,
        200
    );
    let r = tool(
        &t,
        agent,
        "offer_job",
        json!({"job_id": job, "technician_id": "tech-a"}),
    )
    .await;
    assert_eq!(r.json["result"]["state"], "offered", "{:?}", r.json);
    let args = json!({"job_id": job, "reason": "customer fixed it"});
    let r = tool(&t, agent, "cancel_job", args).await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "approval_required");
    assert_eq!(r.json["result"]["state"], "offered");
    let approval = r.json["approval_id"].as_str().unwrap().to_string();
    let args = json!({"job_id": job, "approval_id": approval, "decision": "approve"});
    let r = tool(&t, desk, "decide_approval", args).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["state"], "cancelled");
    let cancels = t.count_events(&job, "JobCancelled").await;
    assert_eq!(cancels, 1);

    // A possible duplicate: the agent's dismissal is only a request; once the
    // dispatcher resolved it directly, approving the request is stale.
    let first = t.open_ifm_job("dup-site").await;
    let r = t
        .post("/v1/jobs", &t.keys.admin, open_body("dup-site"))
        .await;
    let dup = r.json["job_id"].as_str().unwrap().to_string();
    assert_eq!(r.json["state"], "intake");
    let args = json!({"job_id": dup, "resolution": "not_duplicate"});
    let r = tool(&t, agent, "resolve_duplicate", args).await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    let approval = r.json["approval_id"].as_str().unwrap().to_string();
    let flags = t.get(&format!("/v1/jobs/{dup}"), desk).await.json["flags"].clone();
    assert_eq!(
        flags["possible_duplicate_of"],
        first.as_str(),
        "unchanged: {flags}"
    );
    let args = json!({"job_id": dup, "resolution": "not_duplicate"});
    let r = tool(&t, desk, "resolve_duplicate", args).await;
    assert_eq!(
        r.status, 200,
        "the dispatcher needs no approval: {:?}",
        r.json
    );
    let args = json!({"job_id": dup, "approval_id": approval, "decision": "approve"});
    let r = tool(&t, desk, "decide_approval", args).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json["error"]["code"], "approval_stale");
}

#[tokio::test]
async fn rate_limited_calls_answer_429_with_retry_after_and_are_recorded() {
    let t = with_tools(
        TestApp::spawn().await,
        ToolsConfig {
            rate_per_minute: 1,
            rate_burst: 2,
            ..ToolsConfig::default()
        },
    );
    let args = json!({"incident_type": "door_stuck_open"});
    assert_eq!(
        tool(&t, &t.keys.agent, "get_sop", args.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        tool(&t, &t.keys.agent, "get_sop", args.clone())
            .await
            .status,
        200
    );
    let r = tool(&t, &t.keys.agent, "get_sop", args.clone()).await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "refused");
    assert_eq!(r.json["error"]["code"], "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.json["error"]["retry_after"], retry);
    // Per key: another key still has its budget.
    assert_eq!(
        tool(&t, &t.keys.dispatcher, "get_sop", args).await.status,
        200
    );
    let records = invocations(&t, "actor=agent-1&transport=tool").await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[2]["error_code"], "rate_limited");
    assert_eq!(records[2]["http_status"], 429);
}

#[tokio::test]
async fn the_log_is_role_checked_filterable_and_append_only() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("log").await;
    let args = json!({"job_id": job, "text": "one"});
    tool(&t, &t.keys.agent, "add_note", args).await;
    let args = json!({"job_id": job, "text": "two"});
    tool(&t, &t.keys.dispatcher, "add_note", args).await;
    let args = json!({"incident_type": "door_stuck_open"});
    tool(&t, &t.keys.agent, "get_sop", args).await;
    for key in [&t.keys.agent, &t.keys.tech_a] {
        let r = t.get("/v1/tool-invocations", key).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.code(), "forbidden");
    }
    for key in [&t.keys.dispatcher, &t.keys.admin] {
        assert_eq!(t.get("/v1/tool-invocations", key).await.status, 200);
    }
    // The tool calls (the REST calls around them are in the log too, with
    // transport `rest`: tests/api/gate.rs).
    let tool = "transport=tool";
    assert_eq!(
        invocations(&t, &format!("job_id={job}&{tool}")).await.len(),
        2
    );
    assert_eq!(
        invocations(&t, &format!("job_id={job}&actor=agent-1&{tool}"))
            .await
            .len(),
        1
    );
    assert_eq!(
        invocations(&t, &format!("actor=agent-1&{tool}"))
            .await
            .len(),
        2
    );
    assert_eq!(
        invocations(&t, &format!("tool=get_sop&{tool}")).await.len(),
        1
    );
    let r = t
        .get(
            "/v1/tool-invocations?limit=1&transport=tool",
            &t.keys.auditor,
        )
        .await;
    assert_eq!(r.json["invocations"].as_array().unwrap().len(), 1);
    let next = r.json["next_after"].as_i64().unwrap();
    let r = t
        .get(
            &format!("/v1/tool-invocations?after={next}&transport=tool"),
            &t.keys.auditor,
        )
        .await;
    assert_eq!(r.json["invocations"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["next_after"], Value::Null);
    let r = t.get("/v1/tool-invocations?limit=0", &t.keys.auditor).await;
    assert_eq!(r.status, 400);
    let r = t
        .get("/v1/tool-invocations?role=admin", &t.keys.auditor)
        .await;
    assert_eq!(r.status, 400);
    for sql in [
        "UPDATE tool_invocations SET outcome = 'ok'",
        "DELETE FROM tool_invocations",
        "TRUNCATE tool_invocations",
    ] {
        let e = sqlx::query(sql).execute(&t.app.pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(invocations(&t, "transport=tool").await.len(), 3);
}

#[tokio::test]
async fn tool_kinds_in_the_allowlist_match_the_job_commands() {
    // Every command tool decodes into the job command of the same name: a
    // schema-valid argument set of each is accepted by the command decoder.
    let list = Allowlist::builtin().unwrap();
    let job = Uuid::new_v4().to_string();
    for (name, entry) in &list.tools {
        if entry.kind != ToolKind::Command {
            continue;
        }
        let mut args = valid_arguments(name, &job);
        args.as_object_mut().unwrap().remove("job_id");
        dispatch_api::domain::job::JobCommand::decode(name, args)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: no such command"));
    }
}

/// Replaces the text between `<!-- generated:{name}:start -->` and its end marker.
fn splice(doc: &str, name: &str, body: &str) -> String {
    let start = format!("<!-- generated:{name}:start -->\n");
    let end = format!("<!-- generated:{name}:end -->");
    let i = doc
        .find(&start)
        .unwrap_or_else(|| panic!("docs/06: no {start}"))
        + start.len();
    let j = doc[i..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/06: no {end}"))
        + i;
    format!("{}{body}{}", &doc[..i], &doc[j..])
}

#[test]
fn docs_06_tables_match_the_allowlist_and_schemas() {
    let list = Allowlist::builtin().unwrap();
    let schemas = dispatch_api::tools::schemas::ToolSchemas::load(&list).unwrap();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/06_tool_surface.md");
    let doc = std::fs::read_to_string(file).unwrap();
    let fresh = splice(
        &splice(
            &doc,
            "tools",
            &dispatch_api::tools::manifest::docs_table(&list),
        ),
        "arguments",
        &dispatch_api::tools::manifest::docs_arguments(&list, &schemas),
    );
    if std::env::var("DISPATCH_WRITE_DOCS").is_ok() {
        std::fs::write(file, &fresh).unwrap();
    }
    assert!(
        std::fs::read_to_string(file).unwrap() == fresh,
        "docs/06_tool_surface.md's tables differ from the allowlist and schemas/tools: regenerate them with DISPATCH_WRITE_DOCS=1 cargo test --test api docs_06"
    );
}

#[test]
fn the_gateway_example_includes_exactly_the_agents_tools() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ops/openclaw.mcp.example.json5"
    ))
    .unwrap();
    let start = text.find("include: [").expect("toolFilter.include") + "include: [".len();
    let end = text[start..].find(']').unwrap() + start;
    let listed: BTreeSet<String> = text[start..end]
        .lines()
        .map(|l| l.trim())
        .filter(|l| l.starts_with('"'))
        .map(|l| l.trim_end_matches(',').trim_matches('"').to_string())
        .collect();
    let list = Allowlist::builtin().unwrap();
    let agent: BTreeSet<String> = list
        .tools_for(Role::Agent)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(listed, agent);
    assert!(text.contains(r#"transport: "streamable-http""#));
    assert!(text.contains("Authorization: \"Bearer ${DISPATCH_AGENT_KEY}\""));
}
