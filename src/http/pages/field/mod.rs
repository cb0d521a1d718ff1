//! The technician's field app, made for a phone: "My work" (offers to
//! answer, today's and upcoming visits) and a visit's page (travel,
//! geofenced check-in, the SOP checklist, photos, the customer's signature,
//! parts and check-out), under `/ui/field`.
//!
//! The pages are server-rendered like the others; `field.js` turns their
//! forms into actions kept on the phone (IndexedDB) with an idempotency key
//! each, and sends them in order to the JSON endpoints of `actions.rs`
//! whenever there is a network. Every action is a job command run through
//! the one gate ([`super::command::run_job_command`]): a replay of a sent
//! action is the stored answer, never a second effect.

mod actions;
mod visit;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;

use super::layout;
use super::session::UiSession;
use super::{PageError, PageResult, Within};
use crate::domain::Role;
use crate::http::extract::require_endpoint;
use crate::http::AppState;

/// The field app's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/field", get(work))
        .route("/ui/field/jobs/{job_id}", get(visit::page))
        .route(
            "/ui/field/jobs/{job_id}/actions/{command}",
            post(actions::command),
        )
        .route("/ui/field/jobs/{job_id}/evidence", post(actions::evidence))
        .route("/ui/field/contact", post(actions::contact))
}

/// The technician a field page is for: the session's own. Other roles are
/// sent to their pages; a technician key without a technician id (which
/// `keys create` does not make) cannot use the field app.
fn technician(s: &UiSession) -> PageResult<String> {
    match (s.caller.role, &s.caller.technician_id) {
        (Role::Technician, Some(t)) => Ok(t.clone()),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Not allowed for your role",
            "These pages are a technician's: sign in with a technician's key or sign-in link.",
        )
        .within(s)),
    }
}

/// `GET /ui/field`: offers waiting for an answer, then today's and the
/// upcoming visits, from the technician's schedule (`min_position` after
/// an action: the schedule has caught up with it).
async fn work(
    State(state): State<AppState>,
    s: UiSession,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let me = technician(&s)?;
    require_endpoint(
        &state,
        &s.caller,
        "GET /v1/technicians/{technician_id}/schedule",
    )
    .within(&s)?;
    let params: HashMap<String, String> = q
        .get("min_position")
        .map(|p| HashMap::from([("min_position".to_string(), p.clone())]))
        .unwrap_or_default();
    let answer = state.app.schedule(&me, &params).await.within(&s)?;
    let visits: Vec<&Value> = answer["visits"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let now = state.app.clock.now();
    let today = now.date_naive();
    let offers: Vec<&&Value> = visits.iter().filter(|v| v["status"] == "offered").collect();
    let (current, upcoming): (Vec<&&Value>, Vec<&&Value>) = visits
        .iter()
        .filter(|v| v["status"] != "offered")
        .partition(|v| {
            v["status"] != "confirmed"
                || layout::ts(&v["eta"]).is_none_or(|eta| eta.date_naive() <= today)
        });
    let body = html! {
        noscript { p.notice.error { "This app needs JavaScript to keep your work while there is no signal." } }
        section #offers aria-labelledby="offers-h" {
            h2 #offers-h { "Offers to answer (" (offers.len()) ")" }
            @if offers.is_empty() { p.empty { "No offers waiting." } }
            @for v in &offers { (card(&state, v, now, true)) }
        }
        section #today aria-labelledby="today-h" {
            h2 #today-h { "Today (" (current.len()) ")" }
            @if current.is_empty() { p.empty { "No visits today." } }
            @for v in &current { (card(&state, v, now, false)) }
        }
        section #upcoming aria-labelledby="upcoming-h" {
            h2 #upcoming-h { "Upcoming (" (upcoming.len()) ")" }
            @if upcoming.is_empty() { p.empty { "Nothing later." } }
            @for v in &upcoming { (card(&state, v, now, false)) }
        }
    };
    Ok(layout::render_field(&s, "My work", body))
}

/// One offer or visit on "My work".
fn card(state: &AppState, v: &Value, now: DateTime<Utc>, offer: bool) -> Markup {
    let job = v["job_id"].as_str().unwrap_or("");
    let incident = v["incident_type"].as_str().unwrap_or("");
    let sop = state.app.sops.get(incident);
    let href = format!("/ui/field/jobs/{}", layout::seg(job));
    html! {
        article.card.work data-job-id=(job) {
            header {
                (layout::priority_badge(v["priority"].as_str()))
                " " (layout::state_badge(v["status"].as_str().unwrap_or("")))
                h3 { a href=(href) { (v["site_name"].as_str().unwrap_or("?")) } }
            }
            p { (v["site_address"].as_str().unwrap_or("")) br; "Door: " (v["door_location"].as_str().unwrap_or("")) }
            p.small { (layout::title_case(incident)) }
            dl.facts {
                @if offer {
                    dt { "Answer by" }
                    dd { (layout::time_v(&v["ack_due_at"])) " " (left(&v["ack_due_at"], now)) }
                } @else {
                    dt { "ETA" } dd { (layout::time_v(&v["eta"])) }
                }
                dt { "Response due" } dd { (layout::time_v(&v["sla_due_at"])) }
            }
            @if let Some(sop) = sop.filter(|s| !s.field.safety.is_empty()) {
                details.safety {
                    summary { "Safety (" (sop.field.safety.len()) ")" }
                    ul { @for step in &sop.field.safety { li { (step) } } }
                }
            }
            @if offer {
                (answer_forms(job, now))
            } @else {
                p { a.button href=(href) { "Open visit" } }
            }
        }
    }
}

/// A countdown to `t` (the page's script keeps it running).
fn left(t: &Value, now: DateTime<Utc>) -> Markup {
    match layout::ts(t) {
        Some(t) => {
            html! { span.countdown data-remaining=((t - now).num_seconds()) { "" } }
        }
        None => html! {},
    }
}

/// Accept with an ETA (minutes from the moment it is tapped, on the
/// service's clock: `data-now` is its time when the page was made), or
/// decline with a reason: actions the phone keeps until they are sent.
fn answer_forms(job: &str, now: DateTime<Utc>) -> Markup {
    html! {
        form.field-action.accept data-command="accept_offer" data-job=(job) data-now=(now.to_rfc3339()) {
            fieldset {
                legend { "Accept: I can be there in" }
                div.choices {
                    @for m in [15, 30, 45, 60, 90, 120] {
                        button.big type="submit" name="eta_minutes" value=(m) { (m) " min" }
                    }
                }
            }
        }
        form.field-action.decline data-command="decline_offer" data-job=(job) {
            label for=(format!("decline-{job}")) { "Or decline, because" }
            select id=(format!("decline-{job}")) name="reason" required {
                option value="" { "Choose a reason…" }
                @for r in ["On another job", "Too far away", "Not qualified for this door", "Off shift", "Vehicle or tools unavailable"] {
                    option value=(r) { (r) }
                }
            }
            button.big.secondary type="submit" { "Decline" }
        }
    }
}
