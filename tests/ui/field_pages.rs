//! The field app's pages and actions through the real router: who may open
//! them, and bad input — another technician's job, impossible coordinates,
//! an oversized photo, a blank signature, a post from elsewhere — each a
//! clear refusal with its code that writes nothing; a replayed action is
//! the stored answer.

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::support::*;
use crate::*;

/// The CSRF token a field page gives its script.
fn csrf(page: &Page) -> String {
    let needle = "data-csrf=\"";
    let start = page.body.find(needle).expect("the sync bar") + needle.len();
    page.body[start..].split('"').next().unwrap().to_string()
}

/// A session on the field app: its token and CSRF token.
async fn phone(t: &TestApp, key: &str) -> (String, String) {
    t.project().await;
    let session = login(t, key).await;
    let page = get_page(t, "/ui/field", Some(&session)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    (session.clone(), csrf(&page))
}

/// Posts an action as the phone's script does.
async fn post_action(
    t: &TestApp,
    (session, token): &(String, String),
    path: &str,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", HOST)
        .header("origin", ORIGIN)
        .header("cookie", format!("dispatch_session={session}"))
        .header("x-csrf-token", token)
        .header("idempotency-key", key)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let page = send(t, req).await;
    let v = serde_json::from_str(&page.body).unwrap_or(Value::Null);
    (page.status, v)
}

async fn command(
    t: &TestApp,
    s: &(String, String),
    job: &str,
    name: &str,
    key: &str,
    args: Value,
) -> (u16, Value) {
    let path = format!("/ui/field/jobs/{job}/actions/{name}");
    post_action(
        t,
        s,
        &path,
        key,
        "application/json",
        args.to_string().into_bytes(),
    )
    .await
}

/// A PNG of `w`×`h` transparent pixels, with a dark line when `signed`.
fn pad_png(w: u32, h: u32, signed: bool) -> Vec<u8> {
    let mut pixels = vec![0u8; (w * h * 4) as usize];
    if signed {
        for x in 10..w - 10 {
            let i = ((h / 2 * w + x) * 4) as usize;
            pixels[i..i + 4].copy_from_slice(&[20, 20, 20, 255]);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    drop(writer);
    out
}

async fn uploads(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM evidence_uploads")
        .fetch_one(&t.app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_field_app_is_the_technicians_own() {
    let (t, job) = spawn_with_job_on_site("harbor-mall").await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    let p = get_page(&t, "/ui/field", Some(&desk)).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let d = login(&t, &t.keys.tech_d).await;
    let p = get_page(&t, "/ui/field", Some(&d)).await;
    assert_eq!(p.status, 200);
    assert!(
        p.body.contains(&format!("data-job-id=\"{job}\"")),
        "{}",
        p.body
    );
    let p = get_page(&t, &format!("/ui/field/jobs/{job}"), Some(&d)).await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("id=\"checklist\"") && p.body.contains("id=\"missing\""));
    let a = login(&t, &t.keys.tech_a).await;
    let p = get_page(&t, &format!("/ui/field/jobs/{job}"), Some(&a)).await;
    assert_eq!(p.status, 403, "another technician's visit: {}", p.body);
}

#[tokio::test]
async fn bad_actions_get_a_clear_code_and_write_nothing() {
    let (t, job) = spawn_with_job_on_site("harbor-mall").await;
    let item = t.app.sops.get("door_stuck_open").unwrap().field.checklist[0]
        .id
        .clone();
    let before = t.events(&job).await.len();
    let args = json!({"item_id": item, "result": "pass"});

    // Another technician's session on this job.
    let a = phone(&t, &t.keys.tech_a).await;
    let (status, v) = command(&t, &a, &job, "complete_checklist_item", "k-a", args.clone()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    // Nor may it store a file against the job.
    let path = format!("/ui/field/jobs/{job}/evidence?kind=photo_before");
    let (status, v) =
        post_action(&t, &a, &path, "k-a2", "image/png", pad_png(300, 100, true)).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );

    let d = phone(&t, &t.keys.tech_d).await;
    // Not from this session's page: no CSRF token.
    let bad = (d.0.clone(), "0".repeat(64));
    let (status, v) = command(
        &t,
        &bad,
        &job,
        "complete_checklist_item",
        "k-x",
        args.clone(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(v["code"], "csrf_rejected", "{v}");
    // No such command.
    let (status, v) = command(&t, &d, &job, "drop_tables", "k-y", json!({})).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    // A command the technician's role may not run.
    let (status, v) = command(
        &t,
        &d,
        &job,
        "close_job",
        "k-z",
        json!({"invoice_number": "1"}),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    // Impossible coordinates, on a visit waiting for its check-in.
    let confirmed = open_named(&t, "civic-center").await;
    t.intake_and_triage(&confirmed).await;
    t.offer(&confirmed, &t.keys.dispatcher, "tech-d").await;
    let eta = (t0() + chrono::Duration::hours(1)).to_rfc3339();
    let r = t
        .cmd(
            &confirmed,
            "accept_offer",
            &t.keys.tech_d,
            json!({"eta": eta}),
        )
        .await;
    assert_eq!(r.state(), "confirmed");
    let waiting = t.events(&confirmed).await.len();
    for (key, lat, lon) in [
        ("k-c1", 123.0, 10.0),
        ("k-c2", 45.0, 500.0),
        ("k-c3", -91.0, -181.0),
    ] {
        let (status, v) = command(
            &t,
            &d,
            &confirmed,
            "check_in",
            key,
            json!({"method": "app", "lat": lat, "lon": lon}),
        )
        .await;
        assert_eq!(v["code"], "validation_error", "{status} {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("must be within"),
            "{v}"
        );
    }
    assert_eq!(t.events(&confirmed).await.len(), waiting);
    // A blank signature pad.
    let path = format!("/ui/field/jobs/{job}/evidence?kind=signature");
    let (status, v) =
        post_action(&t, &d, &path, "k-s", "image/png", pad_png(300, 100, false)).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("validation_error")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("no strokes"), "{v}");
    // A photo of a type the app does not store.
    let path = format!("/ui/field/jobs/{job}/evidence?kind=photo_before");
    let (status, _) = post_action(&t, &d, &path, "k-t", "text/html", b"<b>x</b>".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(t.events(&job).await.len(), before, "nothing was written");
    assert_eq!(uploads(&t).await, 0, "nothing was stored");

    // A drawn signature is stored and attached once, however often it is sent.
    let path = format!("/ui/field/jobs/{job}/evidence?kind=signature");
    let png = pad_png(300, 100, true);
    let (status, v) = post_action(&t, &d, &path, "k-sig", "image/png", png.clone()).await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = post_action(&t, &d, &path, "k-sig", "image/png", png).await;
    assert_eq!(status, 200);
    let (s1, _) = command(&t, &d, &job, "complete_checklist_item", "k-1", args.clone()).await;
    let (s2, _) = command(&t, &d, &job, "complete_checklist_item", "k-1", args).await;
    assert_eq!((s1, s2), (200, 200));
    let events = t.events(&job).await;
    let types: Vec<&str> = events[before..]
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["EvidenceAttached", "ChecklistItemCompleted"]);
    assert_eq!(uploads(&t).await, 1);
}

#[tokio::test]
async fn an_oversized_photo_is_refused_before_anything_is_stored() {
    let limits = dispatch_api::http::Limits {
        max_evidence_bytes: 64 * 1024,
        ..Default::default()
    };
    let t = TestApp::spawn_with(limits).await;
    t.register_technicians().await;
    let job = job_on_site(&t, "harbor-mall", &t.keys.tech_d, "tech-d").await;
    let before = t.events(&job).await.len();
    let d = phone(&t, &t.keys.tech_d).await;
    let path = format!("/ui/field/jobs/{job}/evidence?kind=photo_before");
    let (status, v) =
        post_action(&t, &d, &path, "k-big", "image/jpeg", vec![0xff; 65 * 1024]).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    assert_eq!(t.events(&job).await.len(), before);
    assert_eq!(uploads(&t).await, 0);
}

#[tokio::test]
async fn the_dispatcher_sees_when_the_phone_was_last_heard_from_and_what_it_holds() {
    let (t, job) = spawn_with_job_on_site("harbor-mall").await;
    let d = phone(&t, &t.keys.tech_d).await;
    let report = |pending: u32| {
        json!({"jobs": [{"job_id": job, "pending": pending, "oldest_pending_at": "2026-11-20T21:30:00Z"}]})
            .to_string()
            .into_bytes()
    };
    // Another technician's report about this job is left out.
    let a = phone(&t, &t.keys.tech_a).await;
    let (status, _) = post_action(
        &t,
        &a,
        "/ui/field/contact",
        "-",
        "application/json",
        report(9),
    )
    .await;
    assert_eq!(status, 204);
    let desk = login(&t, &t.keys.dispatcher).await;
    let page = job_page(&t, &job, &desk).await;
    assert!(!page.body.contains("id=\"phone-contact\""), "{}", page.body);
    // The phone comes back with three actions for the job.
    let (status, _) = post_action(
        &t,
        &d,
        "/ui/field/contact",
        "-",
        "application/json",
        report(3),
    )
    .await;
    assert_eq!(status, 204);
    let page = job_page(&t, &job, &desk).await;
    assert!(page.body.contains("id=\"phone-contact\""), "{}", page.body);
    assert!(page.body.contains("data-pending=\"3\""), "{}", page.body);
    // An action says what is left after it: none.
    let item = t.app.sops.get("door_stuck_open").unwrap().field.checklist[0]
        .id
        .clone();
    let (status, _) = command(
        &t,
        &d,
        &job,
        "complete_checklist_item",
        "k-1",
        json!({"item_id": item, "result": "pass"}),
    )
    .await;
    assert_eq!(status, 200);
    let page = job_page(&t, &job, &desk).await;
    assert!(page.body.contains("id=\"phone-contact\""));
    assert!(!page.body.contains("id=\"phone-pending\""), "{}", page.body);
    // A report that is not one is refused.
    let (status, v) = post_action(
        &t,
        &d,
        "/ui/field/contact",
        "-",
        "application/json",
        b"{\"jobs\": 3}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("validation_error")),
        "{v}"
    );
}
