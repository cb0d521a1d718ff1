//! The cards of a job's page, each rendered from the job's view.

use std::collections::HashMap;

use maud::{html, Markup};
use serde_json::Value;

use super::INLINE_IMAGES;
use crate::http::pages::approvals::{action_text, decision_forms};
use crate::http::pages::layout;
use crate::http::pages::session::UiSession;
use crate::http::AppState;

/// The job's cards: summary, approvals, visits, checklist, evidence (its
/// markup already made, as it reads the objects' types), invoice, notes;
/// the registered door's card (made already, as it reads its history).
pub(super) fn all(
    state: &AppState,
    s: &UiSession,
    v: &Value,
    evidence: Markup,
    door: Markup,
) -> Markup {
    html! {
        div.job-grid {
            section.card aria-labelledby="summary-h" {
                h2 #summary-h { "Summary" }
                (summary(v))
            }
            (door)
            section.card #approvals aria-labelledby="approvals-h" {
                h2 #approvals-h { "Approvals" }
                (approvals(state, s, v))
            }
            section.card.wide aria-labelledby="visits-h" {
                h2 #visits-h { "Visits" }
                (visits(v))
            }
            section.card aria-labelledby="checklist-h" {
                h2 #checklist-h { "Checklist" }
                (checklist(state, v))
            }
            section.card aria-labelledby="evidence-h" {
                h2 #evidence-h { "Evidence" }
                (evidence)
            }
            section.card aria-labelledby="invoice-h" {
                h2 #invoice-h { "Invoice" }
                (invoice(v))
            }
            @if let Some(notes) = v["notes"].as_array().filter(|n| !n.is_empty()) {
                section.card aria-labelledby="notes-h" {
                    h2 #notes-h { "Notes" }
                    ul.notes { @for n in notes { li.free-text { (n["text"].as_str().unwrap_or("")) } } }
                }
            }
        }
    }
}

fn dl_row(label: &str, value: Markup) -> Markup {
    html! { div { dt { (label) } dd { (value) } } }
}

fn summary(v: &Value) -> Markup {
    let site = &v["site"];
    let door = &v["door"];
    let contact = &v["contact"];
    html! {
        div.summary {
            p.headline {
                (layout::state_badge(v["state"].as_str().unwrap_or("")))
                " " (layout::priority_badge(v["priority"].as_str()))
                " " span.muted { "version " (v["version"].as_i64().unwrap_or(0)) }
            }
            (crate::http::pages::board::flags_of(&v["flags"], last_check_in(v)))
            dl.facts {
                (dl_row("Incident", html! { (layout::words(v["incident_type"].as_str().unwrap_or(""))) " via " (v["channel"].as_str().unwrap_or("")) }))
                (dl_row("Client", layout::text_v(&v["client_id"])))
                (dl_row("Site", html! { (site["name"].as_str().unwrap_or("")) br; span.muted { (site["address"].as_str().unwrap_or("")) } }))
                (dl_row("Door", html! {
                    (door["location"].as_str().unwrap_or("")) " "
                    @match v["door_id"].as_str() {
                        Some(id) => { a #summary-door-link href=(crate::http::pages::doors::href(id)) { code.small { (id) } } }
                        None => { code.small { (door["id"].as_str().unwrap_or("")) } }
                    }
                }))
                (dl_row("Contact", html! { (contact["name"].as_str().unwrap_or("")) " " span.muted { (contact["phone"].as_str().unwrap_or("")) } }))
                (dl_row("Called", layout::time_v(&v["opened_at"])))
                (dl_row("Response due", layout::time_v(&v["sla_due_at"])))
                (dl_row("Completion due", layout::time_v(&v["completion_due_at"])))
                (dl_row("NTE", html! { span #nte { (layout::money_v(&v["nte_cents"], "no cap")) } }))
                @if let Some(wo) = v["ifm"]["work_order_number"].as_str() {
                    (dl_row("Work order", html! { (wo) }))
                }
                @if let Some(n) = v["invoice_number"].as_str() {
                    (dl_row("Invoice number", html! { (n) }))
                }
                @if let Some(r) = v["cancel_reason"].as_str() {
                    (dl_row("Cancelled because", html! { span.free-text { (r) } }))
                }
            }
            h3 { "Description" }
            p.free-text { (v["description"].as_str().unwrap_or("")) }
            @if let Some(reasons) = v["p1_reasons"].as_array().filter(|a| !a.is_empty()) {
                p { "P1 because: " @for (i, r) in reasons.iter().enumerate() { @if i > 0 { "; " } (r.as_str().unwrap_or("")) } }
            }
            @if let Some(intake) = v["intake"].as_object().filter(|o| !o.is_empty()) {
                details {
                    summary { "Intake answers (" (intake.len()) ")" }
                    dl.facts.intake {
                        @for (k, val) in intake {
                            (dl_row(&layout::words(k), html! { @match val.as_str() { Some(s) => (s), None => (val.to_string()) } }))
                        }
                    }
                }
            }
        }
    }
}

/// The latest checked-in visit's geofence and reason (`null`s if none).
fn last_check_in(v: &Value) -> (&Value, &Value) {
    let visit = v["visits"]
        .as_array()
        .and_then(|a| a.iter().rev().find(|x| !x["checked_in_at"].is_null()))
        .unwrap_or(&Value::Null);
    (&visit["check_in_geofence"], &visit["check_in_reason"])
}

/// A visit's check-in: when, how, and where against the site's radius,
/// with the reason given and the reported accuracy.
fn check_in_cell(vis: &Value) -> Markup {
    let g = &vis["check_in_geofence"];
    html! {
        (layout::time_v(&vis["checked_in_at"]))
        @if let Some(m) = vis["check_in_method"].as_str() { br; span.muted.small { "by " (layout::words(m)) } }
        @if let Some(text) = layout::geofence_text(g) {
            br;
            @let verdict = g["verdict"].as_str().unwrap_or("");
            span.small class=(format!("geofence geofence-{}", layout::css_token(verdict))) data-verdict=(verdict) { (text) }
        }
        @if let Some(a) = vis["check_in_accuracy_m"].as_f64() { br; span.muted.small { "accuracy ±" (a.round() as i64) " m" } }
        @if let Some(r) = vis["check_in_reason"].as_str() { br; span.small { "reason: " span.free-text { (r) } } }
    }
}

fn visits(v: &Value) -> Markup {
    let visits: Vec<&Value> = v["visits"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        @if visits.is_empty() {
            p.empty { "Not offered to anyone yet." }
        } @else {
            (layout::table(
                Some("visits"),
                None,
                &[("#", false), ("Technician", false), ("Status", false), ("ETA", false), ("Checked in", false), ("Checked out", false), ("Outcome", false)],
                html! {
                    @for vis in &visits {
                        tr {
                            td { (vis["number"].as_i64().unwrap_or(0)) }
                            td { (vis["technician_id"].as_str().unwrap_or("")) }
                            td { (layout::state_badge(vis["status"].as_str().unwrap_or(""))) }
                            td { (layout::time_v(&vis["eta"])) }
                            td { (check_in_cell(vis)) }
                            td { (layout::time_v(&vis["checked_out_at"])) }
                            td {
                                @if let Some(o) = vis["outcome"].as_str() {
                                    (layout::words(o))
                                    @if let Some(d) = vis["door_left_state"].as_str() { br; span.muted.small { "door " (layout::words(d)) } }
                                    @if let Some(r) = vis["resolution"].as_str() { br; span.free-text.small { (r) } }
                                    @if vis["labor_minutes"].as_i64().unwrap_or(0) > 0 { br; span.small { (vis["labor_minutes"].as_i64().unwrap_or(0)) " min labour" } }
                                } @else if let Some(r) = vis["decline_reason"].as_str() {
                                    "declined: " span.free-text { (r) }
                                } @else {
                                    span.none { "—" }
                                }
                            }
                        }
                    }
                },
            ))
        }
    }
}

fn checklist(state: &AppState, v: &Value) -> Markup {
    let sop = v["incident_type"]
        .as_str()
        .and_then(|t| state.app.sops.get(t));
    let results = v["checklist"].as_object().cloned().unwrap_or_default();
    let items: Vec<(String, String, bool)> = match sop {
        Some(sop) => sop
            .field
            .checklist
            .iter()
            .map(|i| (i.id.clone(), i.text.clone(), i.required))
            .collect(),
        None => results
            .keys()
            .map(|k| (k.clone(), layout::words(k), false))
            .collect(),
    };
    html! {
        @if items.is_empty() {
            p.empty { "This incident type has no field checklist." }
        } @else {
            p.muted.small { "Results recorded during the current visit." }
            ul.checklist {
                @for (id, text, required) in &items {
                    @let r = &results.get(id).cloned().unwrap_or(Value::Null);
                    @let result = r["result"].as_str();
                    li class=(format!("check check-{}", layout::css_token(result.unwrap_or("open")))) {
                        span.result { @match result { Some(x) => (layout::words(x)), None => "not recorded" } }
                        " " (text)
                        @if *required { " " span.badge.small { "required" } }
                        @if let Some(n) = r["note"].as_str() { br; span.free-text.muted.small { (n) } }
                    }
                }
            }
        }
    }
}

/// The evidence card: each attachment, an image inline where the role may
/// read evidence.
pub(super) async fn evidence(state: &AppState, s: &UiSession, v: &Value) -> Markup {
    let items: Vec<&Value> = v["evidence"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if items.is_empty() {
        return html! { p.empty { "No evidence attached." } };
    }
    let may_read = state
        .allowlist
        .endpoint_allowed("GET /v1/evidence/{sha256}", s.caller.role);
    let shas: Vec<String> = items
        .iter()
        .filter_map(|e| e["sha256"].as_str().map(str::to_string))
        .collect();
    let types: HashMap<String, String> = crate::app::evidence::object_types(&state.app.pool, &shas)
        .await
        .unwrap_or_default();
    html! {
        ul.evidence {
            @for e in &items {
                @let sha = e["sha256"].as_str().unwrap_or("");
                @let kind = layout::words(e["kind"].as_str().unwrap_or("evidence"));
                // The attachment's own upload's type; the object's first
                // upload's for evidence attached before uploads kept theirs.
                @let ct = e["content_type"].as_str().or(types.get(sha).map(String::as_str)).unwrap_or("");
                @let href = format!("/ui/evidence/{}", layout::seg(sha));
                li {
                    figure {
                        @if may_read && INLINE_IMAGES.contains(&ct) {
                            a href=(href) {
                                img src=(href) alt=(format!("{kind}{}", e["note"].as_str().map(|n| format!(": {n}")).unwrap_or_default())) loading="lazy" width="160" height="120";
                            }
                        } @else if may_read {
                            a.file href=(href) { "Open file" (layout::sr(&format!(" ({kind})"))) }
                        } @else {
                            span.file { "(not readable by your role)" }
                        }
                        figcaption {
                            strong { (kind) }
                            @if let Some(n) = e["note"].as_str() { br; span.free-text.small { (n) } }
                            br; code.small title=(sha) { (sha.chars().take(12).collect::<String>()) "…" }
                        }
                    }
                }
            }
        }
    }
}

fn invoice(v: &Value) -> Markup {
    let inv = &v["invoice"];
    let lines: Vec<&Value> = inv["lines"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        @if lines.is_empty() {
            p.empty { "No invoice lines yet." }
        } @else {
            div.table-wrap {
                table.invoice {
                    caption.sr-only { "Invoice lines" }
                    thead { tr {
                        th scope="col" { "Line" }
                        th scope="col" class="num" { "Quantity" }
                        th scope="col" class="num" { "Unit" }
                        th scope="col" class="num" { "Amount" }
                    } }
                    tbody {
                        @for l in &lines {
                            tr {
                                td { (l["description"].as_str().unwrap_or("")) " " span.muted.small { "(" (l["kind"].as_str().unwrap_or("")) ")" } }
                                td.num { (l["quantity"].as_i64().unwrap_or(0)) }
                                td.num { (layout::money_v(&l["unit_cents"], "—")) }
                                td.num { (layout::money_v(&l["amount_cents"], "—")) }
                            }
                        }
                    }
                    tfoot { tr {
                        th scope="row" colspan="3" { "Total" @if inv["final"].as_bool() == Some(true) { " (final)" } @else { " (so far)" } }
                        td.num { strong { (layout::money_v(&inv["total_cents"], "—")) } }
                    } }
                }
            }
        }
    }
}

fn approvals(state: &AppState, s: &UiSession, v: &Value) -> Markup {
    let list: Vec<&Value> = v["approvals"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let job = v["job_id"].as_str().unwrap_or("");
    html! {
        @if list.is_empty() {
            p.empty { "No approvals were asked for." }
        } @else {
            ul.approvals-list {
                @for a in &list {
                    @let id = a["approval_id"].as_str().unwrap_or("");
                    @let status = a["status"].as_str().unwrap_or("");
                    li data-approval-id=(id) data-status=(status) {
                        p {
                            (layout::state_badge(status)) " "
                            (action_text(&a["action"], &v["nte_cents"]))
                        }
                        p.small { "Asked by " (layout::actor(&a["requested_by"])) " at " (layout::time_v(&a["requested_at"])) ": " span.free-text { (a["reason"].as_str().unwrap_or("")) } }
                        @if !a["decided_by"].is_null() {
                            p.small { "Decided by " (layout::actor(&a["decided_by"]))
                                @if let Some(r) = a["decision_reason"].as_str() { ": " span.free-text { (r) } } }
                        }
                        @if status == "pending" && !v["state"].as_str().and_then(crate::domain::job::JobState::parse).is_some_and(|st| st.is_final()) {
                            (decision_forms(state, s, id, job, &a["requested_by"], "job", &layout::words(a["action"]["kind"].as_str().unwrap_or("approval"))))
                        }
                    }
                }
            }
        }
    }
}
