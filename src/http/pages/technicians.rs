//! The roster (shift, skills, certifications, load; for the desk, each
//! technician's "Sign-in link" button, `super::signin`) and one
//! technician's open visits.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use maud::html;
use serde_json::Value;

use super::layout::{self, Nav};
use super::session::UiSession;
use super::{PageError, PageResult, Within};
use crate::domain::Role;
use crate::http::extract::{require_endpoint, require_tool};
use crate::http::AppState;

/// `GET /ui/technicians`.
pub(super) async fn page(State(state): State<AppState>, s: UiSession) -> PageResult {
    require_tool(&state, &s.caller, "find_technicians").within(&s)?;
    let answer = state.app.technicians(&HashMap::new()).await.within(&s)?;
    let rows: Vec<&Value> = answer["rows"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let today = state.app.clock.now().date_naive();
    let may_schedule = state.allowlist.endpoint_allowed(
        "GET /v1/technicians/{technician_id}/schedule",
        s.caller.role,
    );
    let may_link = state
        .allowlist
        .endpoint_allowed(crate::http::technicians::SIGNIN_LINKS, s.caller.role);
    let mut cols = vec![
        ("Technician", false),
        ("Shift", false),
        ("Skills", false),
        ("Certifications", false),
        ("Territory", false),
        ("Load", true),
    ];
    if may_link {
        cols.push(("Phone", false));
    }
    let body = html! {
        @if rows.is_empty() {
            p.empty { "No technician is registered." }
        } @else {
            (layout::table(
                Some("roster"),
                None,
                &cols,
                html! {
                    @for r in &rows {
                        @let id = r["technician_id"].as_str().unwrap_or("");
                        @let shift = r["shift"].as_str().unwrap_or("unknown");
                        tr data-technician-id=(id) {
                            td {
                                strong { (r["name"].as_str().unwrap_or(id)) }
                                br; code.small { (id) }
                                @if may_schedule {
                                    br; a.small href=(format!("/ui/technicians/{}/schedule", layout::seg(id))) { "visits" (layout::sr(&format!(" of {id}"))) }
                                }
                            }
                            td { span class=(format!("badge shift shift-{}", layout::css_token(shift))) { (layout::words(shift)) } }
                            td {
                                ul.tags {
                                    @for sk in r["skills"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                                        li { (layout::words(sk)) }
                                    }
                                }
                            }
                            td {
                                ul.tags {
                                    @for c in r["certifications"].as_array().into_iter().flatten() {
                                        @let exp = c["expires_on"].as_str().unwrap_or("");
                                        @let expired = chrono::NaiveDate::parse_from_str(exp, "%Y-%m-%d").map_or(true, |d| d < today);
                                        li class=[expired.then_some("expired")] {
                                            (c["name"].as_str().unwrap_or("?")) " "
                                            span.small { @if expired { "expired " } @else { "until " } (exp) }
                                        }
                                    }
                                }
                            }
                            td { (layout::text_v(&r["territory"])) }
                            td.num { (r["active_load"].as_i64().unwrap_or(0)) (layout::sr(" active offers and visits")) }
                            @if may_link {
                                td { (super::signin::link_form(&s, id, r["name"].as_str().unwrap_or(id))) }
                            }
                        }
                    }
                },
            ))
            p.muted { "Load counts active offers and visits. Read model position " (answer["position"].as_i64().unwrap_or(0)) "." }
        }
    };
    Ok(layout::ok(&s, "Technicians", Nav::Technicians, body))
}

/// `GET /ui/technicians/{technician_id}/schedule` (a technician: only their own).
pub(super) async fn schedule(
    State(state): State<AppState>,
    s: UiSession,
    Path(technician_id): Path<String>,
) -> PageResult {
    require_endpoint(
        &state,
        &s.caller,
        "GET /v1/technicians/{technician_id}/schedule",
    )
    .within(&s)?;
    if s.caller.role == Role::Technician
        && s.caller.technician_id.as_deref() != Some(technician_id.as_str())
    {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Not allowed for your role",
            "A technician sees only their own visits.",
        )
        .within(&s));
    }
    let answer = state
        .app
        .schedule(&technician_id, &HashMap::new())
        .await
        .within(&s)?;
    let visits: Vec<&Value> = answer["visits"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let own = s.caller.technician_id.as_deref() == Some(technician_id.as_str());
    let title = if own {
        "My visits".to_string()
    } else {
        format!("Visits of {technician_id}")
    };
    let body = html! {
        @if visits.is_empty() {
            p.empty { "No open offers or visits." }
        } @else {
            (layout::table(
                None,
                None,
                &[("Priority", false), ("Job", false), ("Status", false), ("Answer by", false), ("ETA", false), ("Response due", false)],
                html! {
                    @for v in &visits {
                        @let job = v["job_id"].as_str().unwrap_or("");
                        tr data-job-id=(job) {
                            td { (layout::priority_badge(v["priority"].as_str())) }
                            td {
                                a href=(format!("/ui/jobs/{}", layout::seg(job))) { (v["site_name"].as_str().unwrap_or("?")) }
                                br; span.muted.small { (v["site_address"].as_str().unwrap_or("")) " · " (v["door_location"].as_str().unwrap_or("")) }
                                br; span.small { (layout::words(v["incident_type"].as_str().unwrap_or(""))) ", visit " (v["visit"].as_i64().unwrap_or(0)) }
                            }
                            td { (layout::state_badge(v["status"].as_str().unwrap_or(""))) }
                            td { @if v["status"] == "offered" { (layout::time_v(&v["ack_due_at"])) } @else { span.none { "—" } } }
                            td { (layout::time_v(&v["eta"])) }
                            td { (layout::time_v(&v["sla_due_at"])) }
                        }
                    }
                },
            ))
        }
    };
    let nav = if own { Nav::Schedule } else { Nav::Technicians };
    Ok(layout::ok(&s, &title, nav, body))
}
