//! The registry over REST, `/v1/tools` and MCP (issue 18): customers,
//! sites, doors and maintenance plans registered, read and found; the roles
//! the allowlist gives; and every refusal a clear 4xx that writes nothing.

use chrono::Duration;
use serde_json::{json, Value};

use crate::mcp::{call, handshake};
use crate::support::*;
use crate::tools::tool;

fn customer(id: &str, name: &str) -> Value {
    json!({"customer_id": id, "name": name, "billing": "direct"})
}

fn site(id: &str, customer: &str, name: &str, address: &str) -> Value {
    json!({"site_id": id, "customer_id": customer, "name": name, "address": address, "time_zone": "America/Chicago"})
}

fn door(id: &str, site: &str, serial: &str) -> Value {
    json!({"door_id": id, "site_id": site, "kind": "swinging_fire", "location": "East corridor, stair B",
           "manufacturer": "Ceco", "serial": serial, "fire_rating": "90 min", "tag": "FD-2B"})
}

/// Every event and index row: what a refusal must leave as it was.
async fn written(t: &TestApp) -> (i64, i64) {
    (
        t.count("SELECT count(*) FROM events").await,
        t.count("SELECT count(*) FROM registry_entries").await,
    )
}

/// Registers `body` at `path` as `key`, expecting 201.
async fn register(t: &TestApp, path: &str, key: &str, body: Value) -> Value {
    let r = t.post(path, key, body).await;
    assert_eq!(r.status, 201, "{path}: {:?}", r.json);
    r.json
}

/// St. Mary's (customer, site, fire door) and Mercy (customer, site, door).
async fn installed_base(t: &TestApp) {
    let desk = &t.keys.dispatcher;
    register(
        t,
        "/v1/customers",
        desk,
        customer("st-marys", "St. Mary's Health"),
    )
    .await;
    register(t, "/v1/customers", desk, customer("mercy", "Mercy Clinics")).await;
    let east = site(
        "smh-east",
        "st-marys",
        "St. Mary's Hospital",
        "1200 E Main St, Springfield",
    );
    register(t, "/v1/sites", desk, east).await;
    let clinic = site(
        "mercy-1",
        "mercy",
        "Mercy Clinic",
        "88 Oak Ave, Shelbyville",
    );
    register(t, "/v1/sites", desk, clinic).await;
    register(t, "/v1/doors", desk, door("smh-fd-2b", "smh-east", "CE-1")).await;
    register(t, "/v1/doors", desk, door("mercy-fd-1", "mercy-1", "CE-2")).await;
}

#[tokio::test]
async fn the_installed_base_registers_reads_and_is_found_over_rest() {
    let t = TestApp::spawn().await;
    let desk = &t.keys.dispatcher;
    // A retried registration answers the same bytes and writes nothing more.
    let idem = t.idem();
    let body = customer("st-marys", "St. Mary's Health").to_string();
    let first = t.post_text("/v1/customers", desk, &idem, &body).await;
    assert_eq!(first.status, 201, "{:?}", first.json);
    assert_eq!(first.json["customer_id"], "st-marys");
    assert_eq!(first.json["events"][0]["event_type"], "CustomerRegistered");
    let before = written(&t).await;
    let again = t.post_text("/v1/customers", desk, &idem, &body).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(written(&t).await, before);

    // The agent registers a new caller's site and door.
    let agent = &t.keys.agent;
    let east = site(
        "smh-east",
        "st-marys",
        "St. Mary's Hospital",
        "1200 E Main St, Springfield",
    );
    register(&t, "/v1/sites", agent, east).await;
    let d = register(
        &t,
        "/v1/doors",
        agent,
        door("smh-fd-2b", "smh-east", "CE-1"),
    )
    .await;
    assert_eq!(d["status"], "in_service");
    // An id the service makes: the same for a retry of the same key.
    let idem = t.idem();
    let unnamed =
        json!({"site_id": "smh-east", "kind": "automatic_sliding", "location": "Main entrance"});
    let a = t
        .post_text("/v1/doors", agent, &idem, &unnamed.to_string())
        .await;
    let b = t
        .post_text("/v1/doors", agent, &idem, &unnamed.to_string())
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.json["door_id"], b.json["door_id"]);
    let sliding = a.json["door_id"].as_str().unwrap().to_string();

    let starts_on = (t.app.clock.now() + Duration::days(60)).date_naive();
    let plan = json!({"plan_id": "smh-annual", "customer_id": "st-marys", "name": "Annual NFPA 80 inspection",
        "door_ids": ["smh-fd-2b"], "incident_type": "fire_door_inspection", "every_months": 12,
        "starts_on": starts_on, "lead_days": 30, "priority": "P4"});
    register(&t, "/v1/maintenance-plans", desk, plan).await;

    // Reads: the site with its doors, the door with its site, the plan with
    // its coming occurrence.
    let tech = &t.keys.tech_a;
    let r = t.get("/v1/sites/smh-east", tech).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let doors: Vec<&str> = strings(&r.json["doors"], "door_id");
    assert_eq!(doors.len(), 2);
    assert!(doors.contains(&"smh-fd-2b") && doors.contains(&sliding.as_str()));
    let r = t.get("/v1/doors/smh-fd-2b", tech).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["kind"], "swinging_fire");
    assert_eq!(r.json["site"]["name"], "St. Mary's Hospital");
    assert_eq!(r.json["site"]["address"], "1200 E Main St, Springfield");
    assert_eq!(r.json["customer_id"], "st-marys");
    let r = t.get("/v1/maintenance-plans/smh-annual", desk).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let occurrences = r.json["occurrences"].as_array().unwrap();
    assert_eq!(occurrences[0]["door_id"], "smh-fd-2b");
    assert_eq!(occurrences[0]["due_on"], json!(starts_on));
    assert_eq!(occurrences[0]["job_opened"], false);
    let r = t.get("/v1/customers/st-marys", &t.keys.auditor).await;
    assert_eq!(
        (r.status, &r.json["name"]),
        (200, &json!("St. Mary's Health"))
    );

    // The fuzzy search: what a caller says finds the site, with its doors.
    let other = site(
        "mercy-1",
        "st-marys",
        "Mercy Clinic",
        "88 Oak Ave, Shelbyville",
    );
    register(&t, "/v1/sites", desk, other).await;
    for q in ["St%20Marys%20Hosp", "st.+mary%27s+hospital", "1200+E+Main"] {
        let r = t.get(&format!("/v1/sites?q={q}"), agent).await;
        assert_eq!(r.status, 200, "{q}: {:?}", r.json);
        let sites = r.json["sites"].as_array().unwrap();
        assert_eq!(sites[0]["site_id"], "smh-east", "{q}: {sites:?}");
        assert_eq!(sites[0]["customer_id"], "st-marys");
        assert_eq!(sites[0]["doors"].as_array().unwrap().len(), 2);
        assert!(sites.iter().all(|s| s["site_id"] != "mercy-1"), "{q}");
    }
    let r = t.get("/v1/sites?q=Mercy&limit=1", agent).await;
    assert_eq!(strings(&r.json["sites"], "site_id"), ["mercy-1"]);
    for bad in [
        "",
        "?q=",
        "?q=x&limit=51",
        "?q=x&limit=two",
        "?q=x&colour=red",
    ] {
        let r = t.get(&format!("/v1/sites{bad}"), agent).await;
        assert_eq!((r.status, r.code()), (400, "validation_error"), "{bad}");
    }
    // The agent does not read customers or plans.
    assert_eq!(t.get("/v1/customers/st-marys", agent).await.status, 403);
    assert_eq!(
        t.get("/v1/maintenance-plans/smh-annual", agent)
            .await
            .status,
        403
    );

    // Every call passed the gate under its wire name.
    t.app.invocations.flush().await;
    let tools: Vec<String> = sqlx::query_scalar(
        "SELECT tool FROM tool_invocations WHERE transport = 'rest' ORDER BY position",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap();
    for name in [
        "register_customer",
        "register_site",
        "register_door",
        "create_plan",
        "get_door",
        "find_site",
        "GET /v1/sites/{site_id}",
    ] {
        assert!(tools.iter().any(|t| t == name), "{name}: {tools:?}");
    }
}

#[tokio::test]
async fn the_registry_over_tools_and_mcp() {
    let t = TestApp::spawn().await;
    let (desk, agent, tech) = (&t.keys.dispatcher, &t.keys.agent, &t.keys.tech_a);
    let r = tool(
        &t,
        desk,
        "register_customer",
        customer("st-marys", "St. Mary's Health"),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "ok");
    let east = site(
        "smh-east",
        "st-marys",
        "St. Mary's Hospital",
        "1200 E Main St, Springfield",
    );
    let r = tool(&t, agent, "register_site", east).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    // A retried tool call replays its answer.
    let args = door("smh-fd-2b", "smh-east", "CE-1");
    let first = crate::tools::tool_with(&t, agent, "register_door", "call-1", args.clone()).await;
    assert_eq!(first.status, 201, "{:?}", first.json);
    let before = written(&t).await;
    let again = crate::tools::tool_with(&t, agent, "register_door", "call-1", args).await;
    assert_eq!(again.json["result"], first.json["result"]);
    assert_eq!(again.json["replayed"], true);
    assert_eq!(written(&t).await, before);

    // A technician corrects the door on site; the agent may not.
    let fix = json!({"door_id": "smh-fd-2b", "model": "Regent II"});
    let r = tool(&t, agent, "update_door", fix.clone()).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (403, Some("tool_not_allowed"))
    );
    let r = tool(&t, tech, "update_door", fix).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["model"], "Regent II");
    assert_eq!(r.json["result"]["events"][0]["event_type"], "DoorUpdated");
    let label = json!({"door_id": "smh-fd-2b", "fire_rating": "90 min", "legible": false});
    let r = tool(&t, tech, "record_door_label", label).await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    let r = tool(&t, agent, "get_door", json!({"door_id": "smh-fd-2b"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["site"]["name"], "St. Mary's Hospital");
    let r = tool(&t, agent, "get_door", json!({"door_id": "no-such-door"})).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = tool(&t, agent, "find_site", json!({"query": "St Marys Hosp"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["result"]["sites"][0]["site_id"], "smh-east");
    assert_eq!(
        r.json["result"]["sites"][0]["doors"][0]["door_id"],
        "smh-fd-2b"
    );
    let r = tool(&t, agent, "find_site", json!({"query": "x", "limit": 500})).await;
    assert_eq!(r.json["error"]["field"], "limit");

    // Over MCP, the agent finds the site and registers a door there.
    handshake(&t, agent).await;
    let args = json!({"query": "St. Mary's Hospital", "idempotency_key": "run-1/call-1"});
    let r = call(&t, agent, 2, "find_site", args).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(
        r["structuredContent"]["result"]["sites"][0]["site_id"],
        "smh-east"
    );
    let mut args =
        json!({"site_id": "smh-east", "kind": "automatic_swing", "location": "ER entrance"});
    args["idempotency_key"] = "run-1/call-2".into();
    let r = call(&t, agent, 3, "register_door", args).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["result"]["kind"], "automatic_swing");
    let args = json!({"name": "X", "billing": "direct", "idempotency_key": "run-1/call-3"});
    let r = call(&t, agent, 4, "register_customer", args).await;
    assert_eq!(r["structuredContent"]["error"]["code"], "tool_not_allowed");
}

#[tokio::test]
async fn roles_and_bad_input_are_refused_and_write_nothing() {
    let t = TestApp::spawn().await;
    installed_base(&t).await;
    let (desk, agent, tech, auditor) = (
        &t.keys.dispatcher,
        &t.keys.agent,
        &t.keys.tech_a,
        &t.keys.auditor,
    );
    let update = "/v1/doors/smh-fd-2b/commands/update_door";
    let plan = |doors: Value| {
        json!({"customer_id": "st-marys", "name": "Annual", "door_ids": doors,
               "incident_type": "fire_door_inspection", "every_months": 12,
               "starts_on": "2027-03-01", "lead_days": 30, "priority": "P4"})
    };
    let refusals: Vec<(&str, &str, Value, u16, &str)> = vec![
        // Roles.
        ("/v1/customers", agent, customer("x", "X"), 403, "forbidden"),
        (
            "/v1/customers",
            auditor,
            customer("x", "X"),
            403,
            "forbidden",
        ),
        (update, agent, json!({"model": "M"}), 403, "forbidden"),
        (update, auditor, json!({"model": "M"}), 403, "forbidden"),
        (
            "/v1/doors/smh-fd-2b/commands/set_door_status",
            tech,
            json!({"status": "impaired", "reason": "r"}),
            403,
            "forbidden",
        ),
        (
            "/v1/maintenance-plans",
            agent,
            plan(json!(["smh-fd-2b"])),
            403,
            "forbidden",
        ),
        // No such door, no such command of that kind.
        (
            "/v1/doors/no-such-door/commands/update_door",
            desk,
            json!({"model": "M"}),
            404,
            "not_found",
        ),
        (
            "/v1/doors/smh-fd-2b/commands/update_site",
            desk,
            json!({}),
            404,
            "not_found",
        ),
        (
            "/v1/doors/smh-fd-2b/commands/register_door",
            desk,
            json!({}),
            404,
            "not_found",
        ),
        (
            "/v1/sites/smh-east/commands/approve_everything",
            desk,
            json!({}),
            404,
            "not_found",
        ),
        (
            "/v1/doors",
            desk,
            door("d-9", "no-such-site", "CE-9"),
            404,
            "not_found",
        ),
        // The same manufacturer and serial as an active door (case and
        // spaces aside).
        (
            "/v1/doors",
            desk,
            json!({"site_id": "smh-east", "kind": "dock", "location": "Dock 4",
            "manufacturer": " CECO", "serial": "ce-2 "}),
            409,
            "duplicate_serial",
        ),
        // A plan on another customer's door.
        (
            "/v1/maintenance-plans",
            desk,
            plan(json!(["smh-fd-2b", "mercy-fd-1"])),
            422,
            "door_of_another_customer",
        ),
        (
            "/v1/maintenance-plans",
            desk,
            plan(json!(["no-such-door"])),
            404,
            "not_found",
        ),
        // Unknown fields, bad values.
        (
            "/v1/customers",
            desk,
            json!({"name": "X", "billing": "direct", "colour": "red"}),
            400,
            "validation_error",
        ),
        (
            update,
            desk,
            json!({"door_id": "other"}),
            400,
            "validation_error",
        ),
        (
            "/v1/sites",
            desk,
            json!({"customer_id": "st-marys", "name": "N", "address": "A",
            "time_zone": "Mars/Olympus_Mons"}),
            400,
            "validation_error",
        ),
        (
            "/v1/doors",
            desk,
            json!({"site_id": "smh-east", "kind": "revolving", "location": "L"}),
            400,
            "validation_error",
        ),
    ];
    for (path, key, body, status, code) in refusals {
        let before = written(&t).await;
        let r = t.post(path, key, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{path} {body}: {:?}",
            r.json
        );
        assert_eq!(written(&t).await, before, "{path} {body}: wrote something");
    }
    // Mutations need an idempotency key; If-Match is honoured.
    let before = written(&t).await;
    let r = t
        .post_raw(update, Some(desk), None, r#"{"model":"M"}"#, &[])
        .await;
    assert_eq!((r.status, r.code()), (400, "idempotency_key_required"));
    let r = t
        .post_raw(
            update,
            Some(desk),
            Some("if-1"),
            r#"{"model":"M"}"#,
            &[("if-match", "7")],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "version_conflict"),
        "{:?}",
        r.json
    );
    assert_eq!(written(&t).await, before);
    let r = t
        .post_raw(
            update,
            Some(tech),
            Some("if-2"),
            r#"{"model":"M"}"#,
            &[("if-match", "1")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["version"], 2);

    // Reads: the auditor reads everything, writes nothing.
    for path in [
        "/v1/customers/st-marys",
        "/v1/sites/smh-east",
        "/v1/doors/smh-fd-2b",
        "/v1/sites?q=mercy",
    ] {
        assert_eq!(t.get(path, auditor).await.status, 200, "{path}");
    }
    assert_eq!(
        t.get("/v1/doors/no-such-door", auditor).await.code(),
        "not_found"
    );

    // A retired door takes no more commands.
    let retire = json!({"reason": "replaced"});
    let r = t
        .post("/v1/doors/smh-fd-2b/commands/retire_door", desk, retire)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["retired"], true);
    for (command, body) in [
        ("update_door", json!({"model": "M2"})),
        (
            "set_door_status",
            json!({"status": "impaired", "reason": "r"}),
        ),
        ("retire_door", json!({"reason": "again"})),
    ] {
        let before = written(&t).await;
        let path = format!("/v1/doors/smh-fd-2b/commands/{command}");
        let r = t.post(&path, desk, body).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "door_retired"),
            "{command}: {:?}",
            r.json
        );
        assert_eq!(written(&t).await, before);
    }
    // …and no plan.
    let before = written(&t).await;
    let r = t
        .post("/v1/maintenance-plans", desk, plan(json!(["smh-fd-2b"])))
        .await;
    assert_eq!((r.status, r.code()), (422, "door_retired"));
    assert_eq!(written(&t).await, before);
    // Its serial is free again.
    let reused = json!({"site_id": "smh-east", "kind": "swinging_fire", "location": "Stair B",
        "manufacturer": "Ceco", "serial": "CE-1"});
    register(&t, "/v1/doors", desk, reused).await;
}
