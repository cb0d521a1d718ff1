//! A registered door on the pages: its own page (details, a status badge in
//! words, site, customer, history newest first with the jobs linked, the
//! jobs opened before the registry included, stored text escaped), the job
//! page's door card, the board's door link and planned work's due date with
//! its overdue mark; roles as in the API.

use chrono::Duration;
use dispatch_api::app::registry::RegistryCommand;
use dispatch_api::app::{Caller, RequestMeta};
use dispatch_api::domain::job::{JobCommand, PlannedWork};
use dispatch_api::domain::policy::Priority;
use dispatch_api::domain::Role;
use serde_json::{json, Value};

use crate::support::*;
use crate::*;

fn caller(role: Role, name: &str) -> Caller {
    Caller {
        key_name: name.into(),
        role,
        technician_id: None,
    }
}

fn meta(key: &str) -> RequestMeta {
    RequestMeta {
        idempotency_key: key.into(),
        request_hash: key.into(),
        if_match: None,
        correlation_id: uuid::Uuid::new_v4(),
        trace_id: None,
        causation_id: None,
        tool_invocation_id: None,
    }
}

/// Runs a registry command as the dispatcher through the application.
pub async fn registry(t: &TestApp, name: &str, id: Option<&str>, body: Value) {
    let cmd = RegistryCommand::decode(name, body).unwrap().unwrap();
    let reply = t
        .app
        .registry_command(
            &caller(Role::Dispatcher, "dispatcher-1"),
            &meta(&t.idem()),
            id,
            cmd,
        )
        .await
        .unwrap();
    assert!(reply.status < 300, "{name}: {:?}", reply.body);
}

/// A customer, a site (reference `MRC-E`), an automatic door (tag `AD-1`)
/// marked impaired, a job opened at its text before the registry and one
/// opened at it: the two jobs' ids.
pub async fn door_with_jobs(t: &TestApp, access_notes: &str) -> (String, String) {
    let mut legacy = open_body("MRC-E");
    legacy["door"]["id"] = json!("AD-1");
    let r = t.post("/v1/jobs", &t.keys.agent, legacy).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let legacy = r.json["job_id"].as_str().unwrap().to_string();
    registry(
        t,
        "register_customer",
        None,
        json!({"customer_id": "cust-mercy", "name": "Mercy Health", "billing": "direct"}),
    )
    .await;
    registry(t, "register_site", None, json!({"site_id": "site-mercy-east", "customer_id": "cust-mercy", "name": "Mercy Hospital East",
        "address": "100 Mercy Way", "time_zone": "America/Chicago", "reference": "MRC-E", "access_notes": access_notes})).await;
    registry(t, "register_door", None, json!({"door_id": "door-ad-1", "site_id": "site-mercy-east", "kind": "automatic_sliding",
        "location": "Main entrance", "manufacturer": "Stanley", "model": "Dura-Glide", "serial": "S-77",
        "installed_on": "2019-05-01", "tag": "AD-1"})).await;
    registry(
        t,
        "set_door_status",
        Some("door-ad-1"),
        json!({"status": "impaired", "reason": "sensor intermittent"}),
    )
    .await;
    let body = json!({"incident_type": "door_stuck_open", "channel": "phone", "door_id": "door-ad-1",
        "contact": {"name": "Pat", "phone": "+1-555-0142"}, "description": "Stuck open"});
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    (legacy, r.json["job_id"].as_str().unwrap().to_string())
}

/// Opens a planned job at the door as the scheduler does (the system, on
/// the service's own channel; `planned` is never read from the wire), due
/// at `due_at`: its id.
async fn planned_job(t: &TestApp, due_at: chrono::DateTime<chrono::Utc>) -> String {
    let body = json!({"incident_type": "door_stuck_open", "channel": "maintenance_plan", "door_id": "door-ad-1",
        "contact": {"name": "Plan", "phone": "+1-555-0100"}, "description": "Quarterly maintenance"});
    let mut command = JobCommand::decode("open_job", body).unwrap().unwrap();
    let JobCommand::OpenJob(c) = &mut command else {
        unreachable!()
    };
    c.planned = Some(PlannedWork {
        plan_id: "plan-q".into(),
        due_on: due_at.date_naive(),
        priority: Priority::P4,
        due_at,
    });
    let reply = t
        .app
        .execute_job(
            &caller(Role::System, "system"),
            &meta(&t.idem()),
            None,
            command,
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(reply.status, 201, "{v}");
    v["job_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_doors_page_shows_its_details_status_and_history_with_the_jobs_linked() {
    let t = TestApp::spawn().await;
    let hostile = "<script>alert(1)</script> badge desk";
    let (legacy, job) = door_with_jobs(&t, hostile).await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    let p = get_page(&t, "/ui/doors/door-ad-1", Some(&desk)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let b = &p.body;
    for text in [
        "Main entrance",
        "Stanley",
        "Dura-Glide",
        "S-77",
        "2019-05-01",
        "automatic sliding",
        "Mercy Hospital East",
        "100 Mercy Way",
        "Mercy Health",
        r#"class="badge door-status door-impaired""#,
        ">impaired<",
    ] {
        assert!(b.contains(text), "the door's page shows {text}: {b}");
    }
    // Stored text is shown, never interpreted.
    assert!(!b.contains("<script>alert(1)"), "{b}");
    assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // History newest first: the job at the door, the door's events, the legacy job.
    let events: Vec<&str> = b
        .split("data-event=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "JobOpened",
            "DoorStatusChanged",
            "DoorRegistered",
            "JobOpened"
        ]
    );
    let first = b.find(&format!("/ui/jobs/{job}")).unwrap();
    let last = b.find(&format!("/ui/jobs/{legacy}")).unwrap();
    assert!(first < last, "newest first");
    assert!(b.contains("by site and door text"));

    // The job page: the door's card, its recent history and the link.
    let jp = job_page(&t, &job, &desk).await;
    assert!(
        jp.body
            .contains(r#"id="door-link" href="/ui/doors/door-ad-1""#),
        "{}",
        jp.body
    );
    assert!(jp.body.contains(r#"id="summary-door-link""#));
    assert!(jp.body.contains("Recent history") && jp.body.contains("door-impaired"));
    // A job at free text has no door card.
    let lp = job_page(&t, &legacy, &desk).await;
    assert!(!lp.body.contains("door-link"), "{}", lp.body);

    // An unknown door: the page says so.
    let p = get_page(&t, "/ui/doors/no-such-door", Some(&desk)).await;
    assert_eq!(p.status, 404, "{}", p.body);
    // Roles as the tool's: a technician reads it, no session does not.
    let tech = login(&t, &t.keys.tech_d).await;
    assert_eq!(
        get_page(&t, "/ui/doors/door-ad-1", Some(&tech))
            .await
            .status,
        200
    );
    let anon = get_page(&t, "/ui/doors/door-ad-1", None).await;
    assert_eq!(anon.status, 303);
}

#[tokio::test]
async fn the_board_shows_the_door_and_marks_planned_work_overdue() {
    let t = TestApp::spawn().await;
    let (_, job) = door_with_jobs(&t, "front desk").await;
    let late = planned_job(&t, t0() - Duration::hours(2)).await;
    let due = planned_job(&t, t0() + Duration::days(3)).await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    let p = get_page(&t, "/ui/board", Some(&desk)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let row = |id: &str| {
        let start = p.body.find(&format!("data-job-id=\"{id}\"")).unwrap();
        let end = p.body[start..].find("</tr>").unwrap() + start;
        p.body[start..end].to_string()
    };
    assert!(
        row(&job).contains(r#"href="/ui/doors/door-ad-1""#),
        "{}",
        row(&job)
    );
    assert!(!row(&job).contains("planned"));
    // The door's details as the registry has them now: kind, location and
    // the impaired status set after registration.
    for shown in ["automatic sliding", "Main entrance", "door impaired"] {
        assert!(row(&job).contains(shown), "{shown}: {}", row(&job));
    }
    let late_row = row(&late);
    assert!(
        late_row.contains("flag-planned") && late_row.contains("flag-overdue"),
        "{late_row}"
    );
    let due_row = row(&due);
    assert!(
        due_row.contains("flag-planned") && !due_row.contains("flag-overdue"),
        "{due_row}"
    );
    assert!(due_row.contains(&(t0() + Duration::days(3)).format("%Y-%m-%d").to_string()));
}
