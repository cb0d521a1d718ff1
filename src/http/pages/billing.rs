//! Billing readiness: the jobs ready to invoice and, for the rest, what
//! blocks them.

use std::collections::HashMap;

use axum::extract::State;
use maud::html;
use serde_json::Value;

use super::layout::{self, Nav};
use super::session::UiSession;
use super::{PageResult, Within};
use crate::http::extract::require_tool;
use crate::http::AppState;

/// A blocker code for people (unknown codes are shown as words).
fn blocker_text(code: &str) -> String {
    match code {
        "nte_exceeded" => "invoice over the NTE (needs an approved NTE increase)".into(),
        "nte_increase_pending" => "an NTE increase waits for approval".into(),
        "missing_work_order" => "IFM work-order number missing".into(),
        "closeout_not_verified" => "closeout not verified".into(),
        "work_not_completed" => "work not completed".into(),
        "no_invoice_lines" => "no invoice lines".into(),
        "not_marked_billing_ready" => "not yet marked billing-ready".into(),
        other => layout::words(other),
    }
}

/// `GET /ui/billing`.
pub(super) async fn page(State(state): State<AppState>, s: UiSession) -> PageResult {
    require_tool(&state, &s.caller, "get_billing_status").within(&s)?;
    let answer = state
        .app
        .billing_readiness(&HashMap::new())
        .await
        .within(&s)?;
    let rows: Vec<&Value> = answer["rows"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let ready: Vec<&&Value> = rows
        .iter()
        .filter(|r| r["ready"].as_bool() == Some(true))
        .collect();
    let blocked: Vec<&&Value> = rows
        .iter()
        .filter(|r| r["ready"].as_bool() != Some(true))
        .collect();
    let job_link = |r: &Value| {
        let job = r["job_id"].as_str().unwrap_or("");
        html! { a href=(format!("/ui/jobs/{}", layout::seg(job))) { code { (job.chars().take(8).collect::<String>()) } } " " (layout::state_badge(r["state"].as_str().unwrap_or(""))) }
    };
    let body = html! {
        p.muted { "Read model position " (answer["position"].as_i64().unwrap_or(0)) "." }
        section aria-labelledby="ready-h" {
            h2 #ready-h { "Ready to bill " span.count { "(" (ready.len()) ")" } }
            @if ready.is_empty() {
                p.empty { "No job is ready to bill." }
            } @else {
                (layout::table(
                    None,
                    None,
                    &[("Job", false), ("Client", false), ("Work order", false), ("Lines", false), ("Total", true), ("NTE", true)],
                    html! {
                        @for r in &ready {
                            tr data-job-id=(r["job_id"].as_str().unwrap_or("")) {
                                td { (job_link(r)) }
                                td { (layout::text_v(&r["client_id"])) }
                                td { (layout::text_v(&r["work_order_number"])) }
                                td { (r["lines"].as_array().map_or(0, Vec::len)) }
                                td.num { (layout::money_v(&r["total_cents"], "—")) }
                                td.num { (layout::money_v(&r["nte_cents"], "no cap")) }
                            }
                        }
                    },
                ))
            }
        }
        section aria-labelledby="blocked-h" {
            h2 #blocked-h { "Not ready " span.count { "(" (blocked.len()) ")" } }
            @if blocked.is_empty() {
                p.empty { "Nothing is blocked." }
            } @else {
                (layout::table(
                    None,
                    None,
                    &[("Job", false), ("Client", false), ("Blockers", false), ("Total so far", true), ("NTE", true)],
                    html! {
                        @for r in &blocked {
                            tr data-job-id=(r["job_id"].as_str().unwrap_or("")) {
                                td { (job_link(r)) }
                                td { (layout::text_v(&r["client_id"])) }
                                td {
                                    ul.blockers {
                                        @for b in r["blockers"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                                            li { (blocker_text(b)) }
                                        }
                                    }
                                }
                                td.num { (layout::money_v(&r["total_cents"], "—")) }
                                td.num { (layout::money_v(&r["nte_cents"], "no cap")) }
                            }
                        }
                    },
                ))
            }
        }
    };
    Ok(layout::ok(&s, "Billing readiness", Nav::Billing, body))
}
