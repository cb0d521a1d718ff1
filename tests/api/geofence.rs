//! The geofenced check-in through the API: at a registered site with
//! coordinates, an `app` check-in inside the radius is located; outside it,
//! or without a position, it needs a reason (`422
//! check_in_reason_required`, nothing written) and, with one, flags the job
//! (`checked_in_off_site`) on its view and on the board, which filters by
//! it. Impossible coordinates are a `validation_error`, nothing written.

use serde_json::{json, Value};

use crate::support::*;
use crate::tools::tool;

/// 33 m north of the site.
const NEAR: (f64, f64) = (41.8463, SITE_LON);
/// 445 m north of the site.
const FAR: (f64, f64) = (41.85, SITE_LON);

async fn all_events(t: &TestApp) -> i64 {
    t.count("SELECT count(*) FROM events").await
}

/// The board's rows for `query` once it has applied the job's last event.
async fn board(t: &TestApp, query: &str) -> Vec<Value> {
    t.project().await;
    let r = t
        .get(&format!("/v1/board?{query}"), &t.keys.dispatcher)
        .await;
    assert_eq!(r.status, 200, "{query}: {:?}", r.json);
    r.json["rows"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], job: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["job_id"] == job)
}

#[tokio::test]
async fn an_app_check_in_is_located_inside_the_radius_and_needs_a_reason_outside_it() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    located_site(&t, 2).await;
    let tech_d = t.keys.tech_d.clone();

    // Inside: a located check-in, no flag.
    let near = en_route_at(&t, "geo-door-1").await;
    let body = json!({"method": "app", "lat": NEAR.0, "lon": NEAR.1, "accuracy_m": 18.0});
    t.expect(&near, "check_in", &tech_d, body, Want::State("on_site"))
        .await;
    let view = t.get(&format!("/v1/jobs/{near}"), &t.keys.dispatcher).await;
    assert_eq!(view.json["flags"]["checked_in_off_site"], false);
    let visit = &view.json["visits"][0];
    assert_eq!(
        visit["check_in_geofence"],
        json!({"verdict": "inside", "distance_m": 33, "radius_m": 150, "site_id": "geo-site"})
    );
    assert_eq!(visit["check_in_accuracy_m"], 18.0);
    assert!(visit.get("check_in_reason").is_none(), "{visit}");
    let events = t.events(&near).await;
    let checked_in = &events.last().unwrap()["payload"];
    assert_eq!(checked_in["geofence"]["verdict"], "inside");
    assert_eq!(checked_in["accuracy_m"], 18.0);

    // Outside without a reason, or without a position: refused, nothing written.
    let far = en_route_at(&t, "geo-door-2").await;
    let before = (all_events(&t).await, t.events(&far).await.len());
    let r = t
        .cmd(
            &far,
            "check_in",
            &tech_d,
            json!({"method": "app", "lat": FAR.0, "lon": FAR.1}),
        )
        .await;
    Want::Code(422, "check_in_reason_required").check("check_in", &r);
    assert_eq!(
        (r.json["distance_m"].as_u64(), r.json["radius_m"].as_u64()),
        (Some(445), Some(150))
    );
    assert!(r.text().contains("445 m"), "{}", r.text());
    let r = t
        .cmd(&far, "check_in", &tech_d, json!({"method": "app"}))
        .await;
    Want::Code(422, "check_in_reason_required").check("check_in", &r);
    assert_eq!(r.json["distance_m"], Value::Null);
    assert!(r.text().contains("no location"), "{}", r.text());
    // A blank reason is no reason.
    let blank = json!({"method": "app", "lat": FAR.0, "lon": FAR.1, "reason": "  "});
    let r = t.cmd(&far, "check_in", &tech_d, blank).await;
    Want::Code(400, "validation_error").check("check_in", &r);
    assert_eq!(r.json["field"], "reason");
    assert_eq!(
        (all_events(&t).await, t.events(&far).await.len()),
        before,
        "refused check-ins wrote nothing"
    );

    // Outside with a reason: checked in, the job and the board flag it.
    let reason = "Loading dock gate locked; checked in from the street";
    let body =
        json!({"method": "app", "lat": FAR.0, "lon": FAR.1, "accuracy_m": 30, "reason": reason});
    t.expect(&far, "check_in", &tech_d, body, Want::State("on_site"))
        .await;
    let view = t.get(&format!("/v1/jobs/{far}"), &tech_d).await;
    assert_eq!(view.json["flags"]["checked_in_off_site"], true);
    let visit = &view.json["visits"][0];
    assert_eq!(visit["check_in_geofence"]["verdict"], "outside");
    assert_eq!(visit["check_in_geofence"]["distance_m"], 445);
    assert_eq!(visit["check_in_reason"], reason);
    assert_eq!(t.events(&far).await.len(), before.1 + 1);

    let rows = board(&t, "").await;
    let (n, f) = (row(&rows, &near).unwrap(), row(&rows, &far).unwrap());
    assert_eq!(n["flags"]["checked_in_off_site"], false);
    assert_eq!(f["flags"]["checked_in_off_site"], true);
    assert_eq!(f["checked_in_off_site"], true);
    assert_eq!(n["checked_in_off_site"], false);
    assert_eq!(f["check_in_reason"], reason);
    assert_eq!(f["check_in_geofence"]["verdict"], "outside");
    assert_eq!(n["check_in_geofence"]["verdict"], "inside");
    let off = board(&t, "checked_in_off_site=true").await;
    assert_eq!(strings(&Value::Array(off), "job_id"), vec![far.as_str()]);
    let on = board(&t, "checked_in_off_site=false").await;
    assert!(row(&on, &near).is_some() && row(&on, &far).is_none());
    let r = t
        .get("/v1/board?checked_in_off_site=maybe", &t.keys.dispatcher)
        .await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    // The search_board tool takes the filter as a boolean.
    let r = tool(
        &t,
        &t.keys.agent,
        "search_board",
        json!({"checked_in_off_site": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        strings(&r.json["result"]["rows"], "job_id"),
        vec![far.as_str()]
    );
}

#[tokio::test]
async fn impossible_or_half_coordinates_write_nothing_and_other_methods_are_not_fenced() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    located_site(&t, 3).await;
    let tech_d = t.keys.tech_d.clone();
    let job = en_route_at(&t, "geo-door-1").await;
    let before = all_events(&t).await;
    for (body, field) in [
        (
            json!({"method": "app", "lat": 91.0, "lon": SITE_LON, "reason": "x"}),
            "lat",
        ),
        (
            json!({"method": "app", "lat": SITE_LAT, "lon": -180.01, "reason": "x"}),
            "lon",
        ),
        (
            json!({"method": "app", "lat": SITE_LAT, "reason": "x"}),
            "lon",
        ),
        (
            json!({"method": "app", "lon": SITE_LON, "reason": "x"}),
            "lat",
        ),
        (
            json!({"method": "app", "lat": SITE_LAT, "lon": SITE_LON, "accuracy_m": -1}),
            "accuracy_m",
        ),
        (
            json!({"method": "app", "lat": SITE_LAT, "lon": SITE_LON, "accuracy_m": 100001}),
            "accuracy_m",
        ),
    ] {
        let r = t.cmd(&job, "check_in", &tech_d, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "validation_error"),
            "{body}: {:?}",
            r.json
        );
        assert_eq!(r.json["field"], field, "{body}");
        // The tool refuses it too, before or in the domain.
        let mut args = body.clone();
        args["job_id"] = job.as_str().into();
        let r = tool(&t, &tech_d, "check_in", args).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.json);
        assert_eq!(r.json["error"]["code"], "validation_error");
    }
    assert_eq!(all_events(&t).await, before, "nothing written");

    // IVR and the agent's relay (entered by the desk) carry no position of
    // the technician's own: no geofence, no flag, at the same located site.
    t.expect(
        &job,
        "check_in",
        &tech_d,
        json!({"method": "ivr"}),
        Want::State("on_site"),
    )
    .await;
    let relayed = en_route_at(&t, "geo-door-2").await;
    let body = json!({"method": "agent_relay"});
    t.expect(
        &relayed,
        "check_in",
        &t.keys.dispatcher,
        body,
        Want::State("on_site"),
    )
    .await;
    for j in [&job, &relayed] {
        let view = t.get(&format!("/v1/jobs/{j}"), &t.keys.dispatcher).await;
        assert_eq!(view.json["flags"]["checked_in_off_site"], false);
        assert!(view.json["visits"][0].get("check_in_geofence").is_none());
        assert!(t.events(j).await.last().unwrap()["payload"]
            .get("geofence")
            .is_none());
    }

    // Through the tool, an off-site app check-in without a reason is a
    // refusal with the same code; a site without coordinates fences nothing.
    let third = en_route_at(&t, "geo-door-3").await;
    let r = tool(
        &t,
        &tech_d,
        "check_in",
        json!({"job_id": third, "method": "app"}),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "refused");
    assert_eq!(r.json["error"]["code"], "check_in_reason_required");
    registry(
        &t,
        "register_site",
        None,
        json!({"site_id": "geo-plain", "customer_id": "geo-cust",
        "name": "No coordinates", "address": "1 Plain St", "time_zone": "America/Chicago"}),
    )
    .await;
    registry(
        &t,
        "register_door",
        None,
        json!({"door_id": "geo-plain-door", "site_id": "geo-plain",
        "kind": "automatic_sliding", "location": "Front"}),
    )
    .await;
    let plain = en_route_at(&t, "geo-plain-door").await;
    t.expect(
        &plain,
        "check_in",
        &tech_d,
        json!({"method": "app"}),
        Want::State("on_site"),
    )
    .await;
    let view = t
        .get(&format!("/v1/jobs/{plain}"), &t.keys.dispatcher)
        .await;
    assert_eq!(view.json["flags"]["checked_in_off_site"], false);
}

#[tokio::test]
async fn a_sites_radius_is_registered_and_updated_and_used_at_check_in() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    located_site(&t, 2).await;
    let before = all_events(&t).await;
    for bad in [json!(24), json!(5001), json!(-5), json!(150.5)] {
        let path = "/v1/sites/geo-site/commands/update_site";
        let r = t
            .post(path, &t.keys.dispatcher, json!({"geofence_radius_m": bad}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "validation_error"),
            "{bad}: {:?}",
            r.json
        );
        assert_eq!(r.json["field"], "geofence_radius_m", "{bad}");
    }
    assert_eq!(all_events(&t).await, before);
    // 500 m: the far position (445 m) is inside now.
    let v = registry(
        &t,
        "update_site",
        Some("geo-site"),
        json!({"geofence_radius_m": 500}),
    )
    .await;
    assert_eq!(v["geofence_radius_m"], 500);
    assert_eq!(v["latitude"], SITE_LAT);
    let site = t.get("/v1/sites/geo-site", &t.keys.dispatcher).await;
    assert_eq!(site.json["geofence_radius_m"], 500);
    let job = en_route_at(&t, "geo-door-1").await;
    let body = json!({"method": "app", "lat": FAR.0, "lon": FAR.1});
    t.expect(
        &job,
        "check_in",
        &t.keys.tech_d,
        body,
        Want::State("on_site"),
    )
    .await;
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(
        view.json["visits"][0]["check_in_geofence"],
        json!({"verdict": "inside", "distance_m": 445, "radius_m": 500, "site_id": "geo-site"})
    );
}
