//! The pages under `/ui`: through the real router on a fresh database
//! (sessions, CSRF, roles, escaping, decisions, the timeline's chain marks,
//! the board's event stream, one-time sign-in links), and in a real
//! headless Chromium against the real binary (`browser`).

mod browser;
mod doors;
mod events_out;
mod field;
mod field_pages;
mod geofence;
mod pages;
mod signin;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use chrono::Duration;
use serde_json::{json, Value};
use tower::ServiceExt;

use support::*;

/// The host the router tests send, and the origin of "our" pages.
pub const HOST: &str = "ui.test";
pub const ORIGIN: &str = "http://ui.test";

/// An HTML answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first hidden input named `name`.
    pub fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.body))
            + needle.len();
        self.body[start..].split('"').next().unwrap().to_string()
    }
}

pub async fn send(t: &TestApp, req: Request<Body>) -> Page {
    let resp = t.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get_page(t: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    let mut b = Request::builder().uri(path).header("host", HOST);
    if let Some(c) = cookie {
        b = b.header("cookie", format!("dispatch_session={c}"));
    }
    send(t, b.body(Body::empty()).unwrap()).await
}

/// Posts a form as a page of this origin would (`origin: None` sends none).
pub async fn post_form(
    t: &TestApp,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> Page {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", HOST)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header("cookie", format!("dispatch_session={c}"));
    }
    if let Some(o) = origin {
        b = b.header("origin", o);
    }
    send(t, b.body(Body::from(body)).unwrap()).await
}

/// Logs in with a key; returns the session token from the cookie.
pub async fn login(t: &TestApp, key: &str) -> String {
    let p = login_form(t, &[("key", key)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let cookie = p.headers.get("set-cookie").unwrap().to_str().unwrap();
    cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("dispatch_session=")
        .unwrap()
        .to_string()
}

/// A test app with the canonical technicians and a job on site with
/// technician D at `site`: the app and the job.
pub async fn spawn_with_job_on_site(site: &str) -> (TestApp, String) {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = job_on_site(&t, site, &t.keys.tech_d, "tech-d").await;
    (t, job)
}

/// [`spawn_with_job_on_site`], then technician D asks for an NTE increase
/// to `cents` and the dispatcher logs in: the app, the job, the approval
/// and the dispatcher's session.
pub async fn nte_request_for_the_desk(
    site: &str,
    cents: i64,
    reason: &str,
) -> (TestApp, String, String, String) {
    let (t, job) = spawn_with_job_on_site(site).await;
    let approval = request_nte(&t, &job, &t.keys.tech_d, cents, reason).await;
    let desk = login(&t, &t.keys.dispatcher).await;
    (t, job, approval, desk)
}

/// Posts an approval's decision form with `fields` in `session`, from our
/// origin.
pub async fn decide_form(
    t: &TestApp,
    approval: &str,
    session: &str,
    fields: &[(&str, &str)],
) -> Page {
    let path = format!("/ui/approvals/{approval}/decide");
    post_form(t, &path, Some(session), fields, Some(ORIGIN)).await
}

/// `GET /ui/jobs/{job}` in `session`.
pub async fn job_page(t: &TestApp, job: &str, session: &str) -> Page {
    get_page(t, &format!("/ui/jobs/{job}"), Some(session)).await
}

/// Posts the login form with `fields`, from our origin.
pub async fn login_form(t: &TestApp, fields: &[(&str, &str)]) -> Page {
    post_form(t, "/ui/login", None, fields, Some(ORIGIN)).await
}

/// Opens the canonical IFM job (as the agent) at a site named after its id
/// (`harbor-mall` is "Harbor Mall").
pub async fn open_named(t: &TestApp, site: &str) -> String {
    let name: Vec<String> = site
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect();
    let mut body = open_body(site);
    body["site"]["name"] = json!(name.join(" "));
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    r.json["job_id"].as_str().unwrap().to_string()
}

/// Drives a job to `on_site` with `tech` (registered by `register_technicians`).
pub async fn job_on_site(t: &TestApp, site: &str, tech_key: &str, tech: &str) -> String {
    let job = open_named(t, site).await;
    let agent = &t.keys.agent;
    let eta = (t0() + Duration::hours(1)).to_rfc3339();
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("record_intake", agent,    TestApp::intake(),               Want::Status(200)),
        ("triage_job",    agent,    json!({}),                       Want::Status(200)),
        ("offer_job",     agent,    json!({"technician_id": tech}),  Want::Status(200)),
        ("accept_offer",  tech_key, json!({"eta": eta}),             Want::Status(200)),
        ("start_travel",  tech_key, json!({}),                       Want::Status(200)),
        ("check_in",      tech_key, json!({"method": "app"}),        Want::State("on_site")),
    ];
    t.script(&job, steps).await;
    job
}

/// Asks for an NTE increase; returns the approval id.
pub async fn request_nte(t: &TestApp, job: &str, key: &str, cents: i64, reason: &str) -> String {
    let r = t
        .cmd(
            job,
            "request_nte_increase",
            key,
            json!({"amount_cents": cents, "reason": reason}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.json);
    r.json["approval_id"].as_str().unwrap().to_string()
}

/// A job's stored events.
pub async fn stored_events(t: &TestApp, job: &str) -> Vec<Value> {
    t.events(job).await
}
