//! A registered door's page: what the door is (kind, location, make,
//! serial, installed on, fire rating, status with a badge that says
//! impaired or out of service in words), its site and customer, and its
//! history newest first (`GET /v1/doors/{door_id}/history`), each job
//! linked to its page. The job page shows the same details and the last
//! few rows ([`door_card`]).

use std::collections::HashMap;

use axum::extract::{Path, State};
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, Nav};
use super::session::UiSession;
use super::{PageResult, Within};
use crate::http::extract::require_tool;
use crate::http::AppState;

/// The rows the door's page shows.
const PAGE_ROWS: &str = "200";

/// The link to a door's page.
pub(super) fn href(door_id: &str) -> String {
    format!("/ui/doors/{}", layout::seg(door_id))
}

/// A door's status as a badge: the words say it, the colour only repeats it.
pub(super) fn status_badge(status: &str, retired: bool) -> Markup {
    html! {
        @if retired {
            span.badge.door-status.door-retired { "retired" }
            " "
        }
        @match status {
            "impaired" => span.badge.door-status.door-impaired title="Works, but has a deficiency to repair" { "impaired" },
            "out_of_service" => span.badge.door-status.door-out { "out of service" },
            other => span.badge.door-status.door-ok { (layout::words(other)) },
        }
    }
}

fn dl_row(label: &str, value: Markup) -> Markup {
    html! { div { dt { (label) } dd { (value) } } }
}

fn date_v(v: &Value) -> Markup {
    layout::text_v(v)
}

/// What the registry knows of the door, its site and its customer.
pub(super) fn facts(answer: &Value) -> Markup {
    let door = &answer["door"];
    let site = &answer["site"];
    let customer = &answer["customer"];
    html! {
        dl.facts.door-facts {
            (dl_row("Status", status_badge(door["status"].as_str().unwrap_or("in_service"), door["retired"].as_bool() == Some(true))))
            (dl_row("Kind", html! { (layout::words(door["kind"].as_str().unwrap_or(""))) }))
            (dl_row("Location", layout::text_v(&door["location"])))
            (dl_row("Manufacturer", layout::text_v(&door["manufacturer"])))
            (dl_row("Model", layout::text_v(&door["model"])))
            (dl_row("Serial", layout::text_v(&door["serial"])))
            (dl_row("Installed on", date_v(&door["installed_on"])))
            (dl_row("Fire rating", layout::text_v(&door["fire_rating"])))
            @if let Some(tag) = door["tag"].as_str() {
                (dl_row("Tag", html! { code { (tag) } }))
            }
            (dl_row("Site", html! {
                @if site.is_object() {
                    (site["name"].as_str().unwrap_or("")) br;
                    span.muted { (site["address"].as_str().unwrap_or("")) }
                    @if let Some(notes) = site["access_notes"].as_str() {
                        br; span.muted.small.free-text { "Access: " (notes) }
                    }
                } @else {
                    code { (door["site_id"].as_str().unwrap_or("")) }
                }
            }))
            (dl_row("Customer", html! {
                @if customer.is_object() {
                    (customer["name"].as_str().unwrap_or(customer["customer_id"].as_str().unwrap_or("")))
                } @else {
                    span.none { "—" }
                }
            }))
        }
    }
}

fn tech(row: &Value) -> String {
    row["technician_id"].as_str().unwrap_or("?").to_string()
}

/// Parts and deficiencies of a check-out.
fn checkout_lists(d: &Value) -> Markup {
    let parts = d["parts"].as_array().cloned().unwrap_or_default();
    let defs = d["deficiencies"].as_array().cloned().unwrap_or_default();
    html! {
        @if let Some(r) = d["resolution"].as_str().filter(|r| !r.is_empty()) {
            br; span.free-text { (r) }
        }
        @if !parts.is_empty() {
            ul.parts {
                @for p in &parts {
                    li { (p["quantity"].as_i64().unwrap_or(1)) " × " (p["description"].as_str().unwrap_or("")) " " code.small { (p["part_number"].as_str().unwrap_or("")) } }
                }
            }
        }
        @if !defs.is_empty() {
            ul.deficiencies aria-label="Deficiencies found" {
                @for f in &defs {
                    li {
                        span.badge.flag-risk { "deficiency" } " "
                        span.free-text { (f["description"].as_str().unwrap_or("")) }
                        @if let Some(a) = f["corrective_action"].as_str() { br; span.muted.small.free-text { "Action: " (a) } }
                    }
                }
            }
        }
    }
}

/// What happened, for people.
fn what(row: &Value) -> Markup {
    let d = &row["detail"];
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    match row["event_type"].as_str().unwrap_or("") {
        "JobOpened" => html! {
            strong { "Job opened" } ": " (layout::words(&s("incident_type"))) " via " (s("channel"))
            ul.flags {
                @if d["planned"].is_object() {
                    li.badge.flag-planned title=(format!("plan {}", d["planned"]["plan_id"].as_str().unwrap_or(""))) {
                        "planned, due " (d["planned"]["due_on"].as_str().unwrap_or(""))
                    }
                }
                @if let Some(j) = d["follow_up_of"].as_str() { li.badge.flag-warn title=(format!("follow-up of {j}")) { "follow-up" } }
                @if let Some(j) = d["recall_of"].as_str() { li.badge.flag-recall title=(format!("recall of {j}")) { "recall" } }
                @if let Some(j) = d["possible_duplicate_of"].as_str() { li.badge.flag-duplicate title=(format!("possible duplicate of {j}")) { "possible duplicate" } }
            }
            @if let Some(t) = d["description"].as_str().filter(|t| !t.is_empty()) { span.muted.small.free-text { (t) } }
        },
        "JobOffered" => {
            html! { "Offered to " (tech(row)) " (visit " (d["visit"].as_i64().unwrap_or(1)) ")" }
        }
        "OfferAccepted" => {
            html! { "Accepted by " (tech(row)) ", ETA " (layout::time_v(&d["eta"])) }
        }
        "CheckedIn" => html! { (tech(row)) " checked in (" (layout::words(&s("method"))) ")" },
        "CheckedOut" => html! {
            strong { "Checked out" } ": " (layout::words(&s("outcome"))) "; door left " (layout::words(&s("door_left_state")))
            (checkout_lists(d))
        },
        "CloseoutVerified" => {
            let items = d["items"].as_array().cloned().unwrap_or_default();
            let failed = items.iter().filter(|i| i["result"] == "fail").count();
            html! { "Closeout verified (" (items.len()) " items" @if failed > 0 { ", " (failed) " failed" } ")" }
        }
        "JobLinkedAsDuplicate" => {
            html! { "Linked as a duplicate of " code.small { (s("duplicate_of")) } }
        }
        "JobReopened" => html! { "Reopened: " span.free-text { (s("reason")) } },
        "JobClosed" => html! { "Closed, invoice " (s("invoice_number")) },
        "JobCancelled" => html! { "Cancelled: " span.free-text { (s("reason")) } },
        "DoorRegistered" => {
            html! { strong { "Door registered" } ": " (layout::words(d["details"]["kind"].as_str().unwrap_or(""))) ", " (d["details"]["location"].as_str().unwrap_or("")) }
        }
        "DoorUpdated" => html! { "Details updated" },
        "DoorMoved" => {
            html! { "Moved from site " code.small { (s("from_site_id")) } " to " code.small { (s("to_site_id")) } " (" (s("location")) ")" }
        }
        "DoorLabelRecorded" => html! {
            "Label recorded: fire rating " (s("fire_rating")) ", "
            @if d["legible"].as_bool() == Some(true) { "legible" } @else { span.badge.flag-risk { "illegible" } }
            @if let Some(n) = d["note"].as_str() { br; span.muted.small.free-text { (n) } }
        },
        "DoorStatusChanged" => html! {
            "Status " (status_badge(&s("from"), false)) " → " (status_badge(&s("to"), false)) ": " span.free-text { (s("reason")) }
        },
        "DoorRetired" => html! { "Retired: " span.free-text { (s("reason")) } },
        other => html! { (other) },
    }
}

/// The history rows as a table, newest first.
pub(super) fn history(rows: &[Value]) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { "Nothing recorded at this door yet." } };
    }
    let body = html! {
        @for r in rows {
            tr data-position=(r["global_position"].as_i64().unwrap_or(0)) data-event=(r["event_type"].as_str().unwrap_or("")) {
                td { (layout::time_v(&r["at"])) }
                td { (what(r)) }
                td {
                    @match r["job_id"].as_str() {
                        Some(j) => {
                            a href=(format!("/ui/jobs/{}", layout::seg(j))) { code.small.jobid { (j.chars().take(8).collect::<String>()) } }
                            @if r["door_id"].is_null() { br; span.muted.small title="opened before the registry, at the site's reference and the door's tag" { "by site and door text" } }
                        }
                        None => span.none { "—" },
                    }
                }
                td { (layout::text_v(&r["technician_id"])) }
            }
        }
    };
    layout::table(
        Some("history"),
        Some("The door's history, newest first"),
        &[
            ("When", false),
            ("What", false),
            ("Job", false),
            ("Technician", false),
        ],
        body,
    )
}

/// `GET /ui/doors/{door_id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    s: UiSession,
    Path(door_id): Path<String>,
) -> PageResult {
    require_tool(&state, &s.caller, "get_door_history").within(&s)?;
    let params = HashMap::from([("limit".to_string(), PAGE_ROWS.to_string())]);
    let answer = state.app.door_history(&door_id, &params).await.within(&s)?;
    let rows: Vec<Value> = answer["rows"].as_array().cloned().unwrap_or_default();
    let door = &answer["door"];
    let title = format!(
        "Door: {}",
        door["location"].as_str().unwrap_or(door_id.as_str())
    );
    let body = html! {
        p.jobid { "Door " code #door-id { (door_id) } }
        div.job-grid {
            section.card aria-labelledby="door-h" {
                h2 #door-h { "The door" }
                (facts(&answer))
            }
            section.card.wide #history aria-labelledby="history-h" {
                h2 #history-h { "History" " " span.count { "(" (rows.len()) @if !answer["next_before"].is_null() { "+" } ")" } }
                @if let Some(key) = answer["legacy_key"].as_object() {
                    p.muted.small {
                        "Includes jobs opened before the registry at site "
                        code { (key["site_id"].as_str().unwrap_or("")) } ", door " code { (key["door_id"].as_str().unwrap_or("")) } "."
                    }
                }
                (history(&rows))
            }
        }
    };
    Ok(layout::ok(&s, &title, Nav::None, body))
}

/// The job page's door card: at a registered door, its details, the last
/// few rows of its history and the link to its page; nothing otherwise
/// (or when the caller may not read door histories).
pub(super) async fn door_card(state: &AppState, s: &UiSession, job: &Value) -> Markup {
    let Some(door_id) = job["door_id"].as_str() else {
        return html! {};
    };
    if !state
        .allowlist
        .tool_allowed("get_door_history", s.caller.role)
    {
        return html! {};
    }
    let params = HashMap::from([("limit".to_string(), "5".to_string())]);
    let body = match state.app.door_history(door_id, &params).await {
        Ok(answer) => {
            let rows: Vec<Value> = answer["rows"].as_array().cloned().unwrap_or_default();
            html! {
                (facts(&answer))
                h3 { "Recent history" }
                (history(&rows))
            }
        }
        Err(e) => {
            html! { p.notice role="status" { "The door's history cannot be shown now: " (e.to_string()) } }
        }
    };
    html! {
        section.card.wide #door aria-labelledby="door-card-h" {
            h2 #door-card-h { "Door" }
            (body)
            p { a #door-link href=(href(door_id)) { "The door's full history" } }
        }
    }
}
