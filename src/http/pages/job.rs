//! A job's page: its state, visits, checklist, evidence, invoice, approvals,
//! notes and its event timeline, each event marked by the hash-chain
//! verification (`store::verify_rows`: hashes, MACs, head and signed
//! checkpoints): verified, the first bad sequence and the check that found
//! it, or past the break. Also the evidence images, read with the session.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use maud::{html, Markup};
use serde_json::Value;

use super::approvals::{action_text, decision_forms, flash};
use super::layout::{self, Nav};
use super::session::UiSession;
use super::{PageError, PageResult, Within};
use crate::domain::job::{Job, JobEvent};
use crate::error::ApiError;
use crate::http::extract::{require_endpoint, require_tool};
use crate::http::AppState;
use crate::store::{self, AuditCheck, AuditReport, RawRow};

/// Image types shown inline; anything else is offered as a download.
const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// One timeline entry's chain mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Verified,
    Broken,
    AfterBreak,
    NotChecked,
}

fn mark_of(sequence: i64, report: Option<&AuditReport>) -> Mark {
    match report {
        None => Mark::NotChecked,
        Some(r) => match r.first_bad_sequence {
            None => Mark::Verified,
            Some(bad) if sequence < bad => Mark::Verified,
            Some(bad) if sequence == bad => Mark::Broken,
            Some(_) => Mark::AfterBreak,
        },
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
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
            (super::board::flags_of(&v["flags"]))
            dl.facts {
                (dl_row("Incident", html! { (layout::words(v["incident_type"].as_str().unwrap_or(""))) " via " (v["channel"].as_str().unwrap_or("")) }))
                (dl_row("Client", layout::text_v(&v["client_id"])))
                (dl_row("Site", html! { (site["name"].as_str().unwrap_or("")) br; span.muted { (site["address"].as_str().unwrap_or("")) } }))
                (dl_row("Door", html! { (door["location"].as_str().unwrap_or("")) " " code.small { (door["id"].as_str().unwrap_or("")) } }))
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

fn visits(v: &Value) -> Markup {
    let visits: Vec<&Value> = v["visits"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        @if visits.is_empty() {
            p.empty { "Not offered to anyone yet." }
        } @else {
            div.table-wrap {
                table.visits {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { "Technician" }
                        th scope="col" { "Status" }
                        th scope="col" { "ETA" }
                        th scope="col" { "Checked in" }
                        th scope="col" { "Checked out" }
                        th scope="col" { "Outcome" }
                    } }
                    tbody {
                        @for vis in &visits {
                            tr {
                                td { (vis["number"].as_i64().unwrap_or(0)) }
                                td { (vis["technician_id"].as_str().unwrap_or("")) }
                                td { (layout::state_badge(vis["status"].as_str().unwrap_or(""))) }
                                td { (layout::time_v(&vis["eta"])) }
                                td { (layout::time_v(&vis["checked_in_at"])) }
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
                    }
                }
            }
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

async fn evidence_section(state: &AppState, s: &UiSession, v: &Value) -> Markup {
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

/// The chain banner and the events, each marked.
fn timeline(
    job_id: &str,
    rows: &[RawRow],
    report: Option<&AuditReport>,
    states: &[Option<String>],
) -> Markup {
    html! {
        @match report {
            Some(r) if r.verified => {
                p.chain.chain-ok #chain-status role="status" data-verified="true" {
                    span aria-hidden="true" { "✓ " } "Hash chain verified: all " (r.events) " events are intact and in order."
                    @if r.unkeyed_events > 0 {
                        " " (r.unkeyed_events) " of them predate the keyed chain and are vouched for by a signed checkpoint."
                    }
                }
            }
            Some(r) => {
                @let bad = r.first_bad_sequence.unwrap_or(0);
                @let check = r.check.map_or("", AuditCheck::as_str);
                p.chain.chain-broken #chain-status role="alert" data-verified="false" data-first-bad=(bad) data-check=(check) {
                    span aria-hidden="true" { "✗ " }
                    @if bad as usize > rows.len() {
                        @if r.check == Some(AuditCheck::Checkpoint) {
                            "Hash chain broken: a signed checkpoint saw more events than are stored; events from sequence " (bad) " on are missing."
                        } @else {
                            "Hash chain broken: the stream head records more events than are stored; events from sequence " (bad) " on are missing."
                        }
                    } @else {
                        "Hash chain broken at sequence " (bad) ": that event was altered, removed, moved or forged. Events after it cannot be trusted."
                    }
                    " " span.small { "Found by the " code { (check) } " check." }
                }
            }
            None => {
                p.muted { "Your role may read the events but not their verification." }
            }
        }
        div.table-wrap {
            table.timeline {
                caption.sr-only { "Every event of the job, oldest first, with its hash-chain mark" }
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { "Chain" }
                    th scope="col" { "Event" }
                    th scope="col" { "When" }
                    th scope="col" { "Actor" }
                    th scope="col" { "Command and tool call" }
                    th scope="col" { "SOP" }
                    th scope="col" { "Payload" }
                } }
                tbody {
                    @for (i, row) in rows.iter().enumerate() {
                        @let seq = row.sequence();
                        @let mark = mark_of(seq, report);
                        @let (class, symbol, label) = match mark {
                            Mark::Verified => ("event chain-ok", "✓", "verified"),
                            Mark::Broken => ("event chain-broken", "✗", "chain breaks here"),
                            Mark::AfterBreak => ("event chain-after", "?", "after the break: not verifiable"),
                            Mark::NotChecked => ("event", "·", "not checked"),
                        };
                        tr class=(class) id=(format!("event-{seq}")) data-sequence=(seq)
                            data-chain=(match mark { Mark::Verified => "verified", Mark::Broken => "broken", Mark::AfterBreak => "after-break", Mark::NotChecked => "unchecked" }) {
                            td.num { (seq) }
                            td.mark { span aria-hidden="true" { (symbol) } " " span.mark-label { (label) } }
                            @match row.envelope(Job::TYPE, job_id) {
                                Ok(e) => {
                                    td {
                                        strong.event-type { (e.event_type) }
                                        " " span.muted.small { "v" (e.event_version) }
                                        @if let Some(Some(st)) = states.get(i) { br; span.transition { "→ " (layout::state_badge(st)) } }
                                        br; span.muted.small { "position " (e.global_position) " · " code title=(e.hash) { (e.hash.chars().take(10).collect::<String>()) "…" } }
                                    }
                                    td.small { (layout::time(Some(e.meta.occurred_at))) }
                                    td.small { (layout::actor(&serde_json::to_value(&e.meta.actor).unwrap_or(Value::Null))) }
                                    td.small {
                                        @match &e.meta.command { Some(c) => code { (c) }, None => span.none { "—" } }
                                        br;
                                        @match e.meta.tool_invocation_id {
                                            Some(t) => { "tool call " code.tool-call title=(t) { (t.to_string().chars().take(8).collect::<String>()) "…" } },
                                            None => span.none { "not through a tool" },
                                        }
                                    }
                                    td.small {
                                        @match &e.meta.sop {
                                            Some(sop) => { (sop.id) " v" (sop.version) br; code title=(sop.sha256) { (sop.sha256.chars().take(8).collect::<String>()) } },
                                            None => span.none { "—" },
                                        }
                                    }
                                    td {
                                        details {
                                            summary { "Payload" (layout::sr(&format!(" of event {seq}"))) }
                                            pre.payload { (pretty(&e.payload)) }
                                        }
                                    }
                                }
                                Err(err) => {
                                    td colspan="6" { strong { "Unreadable event: " } (err.to_string()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The state after each event, where it changed (`None` where it did not).
fn state_changes(rows: &[RawRow]) -> Option<Vec<Option<String>>> {
    let mut job = Job::default();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let before = job.state();
        job.apply(r.decode::<JobEvent>().ok()?);
        let after = job.state();
        out.push(
            (before != after)
                .then(|| after.map(|s| s.as_str().to_string()))
                .flatten(),
        );
    }
    Some(out)
}

/// `GET /ui/jobs/{job_id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    s: UiSession,
    Path(job_id): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    require_tool(&state, &s.caller, "get_job").within(&s)?;
    let (rows, head) = async {
        let mut conn = state.app.pool.acquire().await?;
        let rows = store::load_stream_rows(&mut conn, Job::TYPE, &job_id, None).await?;
        let head = store::load_head(&mut conn, Job::TYPE, &job_id).await?;
        Ok::<_, ApiError>((rows, head))
    }
    .await
    .within(&s)?;
    if rows.is_empty() {
        return Err(
            PageError::new(StatusCode::NOT_FOUND, "Not found", "No job has that id.").within(&s),
        );
    }
    let events: Result<Vec<JobEvent>, _> = rows.iter().map(RawRow::decode::<JobEvent>).collect();
    let (job, decode_error) = match events {
        Ok(events) => (Some(Job::from_events(events)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    match &job {
        Some(j) => crate::http::jobs::check_technician_scope(&s.caller, j).within(&s)?,
        None if s.caller.role == crate::domain::Role::Technician => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Not allowed for your role",
                "This job cannot be shown.",
            )
            .within(&s));
        }
        None => {}
    }
    let view = job
        .as_ref()
        .and_then(|j| crate::app::queries::job_view(&state.app, j));
    let may_events = state
        .allowlist
        .endpoint_allowed("GET /v1/jobs/{job_id}/events", s.caller.role);
    let may_audit = state
        .allowlist
        .endpoint_allowed("GET /v1/jobs/{job_id}/audit", s.caller.role);
    let report = may_audit.then(|| {
        store::verify_rows(
            Job::TYPE,
            &job_id,
            &rows,
            head.as_ref(),
            &state.app.chain,
            &state.app.checkpoints.heads(Job::TYPE, &job_id),
        )
    });
    let states = state_changes(&rows).unwrap_or_default();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let title = match &view {
        Some(v) => format!("Job at {}", v["site"]["name"].as_str().unwrap_or("?")),
        None => "Job".to_string(),
    };
    let evidence = match &view {
        Some(v) => evidence_section(&state, &s, v).await,
        None => html! {},
    };
    let body = html! {
        (flash(&query))
        p.jobid { "Job " code #job-id { (job_id) } }
        @if let Some(e) = &decode_error {
            p.notice.error role="alert" { "The job's state cannot be rebuilt from its events: " (e) }
        }
        @if let Some(v) = &view {
            div.job-grid {
                section.card aria-labelledby="summary-h" {
                    h2 #summary-h { "Summary" }
                    (summary(v))
                }
                section.card #approvals aria-labelledby="approvals-h" {
                    h2 #approvals-h { "Approvals" }
                    (approvals(&state, &s, v))
                }
                section.card.wide aria-labelledby="visits-h" {
                    h2 #visits-h { "Visits" }
                    (visits(v))
                }
                section.card aria-labelledby="checklist-h" {
                    h2 #checklist-h { "Checklist" }
                    (checklist(&state, v))
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
        section.timeline-section #timeline aria-labelledby="timeline-h" {
            h2 #timeline-h { "Event timeline" }
            @if may_events {
                (timeline(&job_id, &rows, report.as_ref(), &states))
            } @else {
                p.muted { "Your role may not read this job's events." }
            }
        }
    };
    Ok(layout::ok(&s, &title, Nav::None, body))
}

/// `GET /ui/evidence/{sha256}`: the content, for the roles that may read
/// evidence over the API; images inline, anything else as a download, never
/// rendered as a page of this origin.
pub(super) async fn evidence(
    State(state): State<AppState>,
    s: UiSession,
    Path(sha256): Path<String>,
) -> PageResult {
    require_endpoint(&state, &s.caller, "GET /v1/evidence/{sha256}").within(&s)?;
    let bytes = state.app.evidence.get(&sha256).await.within(&s)?;
    let Some(bytes) = bytes else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "No evidence with that SHA-256.",
        )
        .within(&s));
    };
    let ct: Option<String> = crate::app::evidence::object_type(&state.app.pool, &sha256)
        .await
        .within(&s)?;
    let inline = ct.as_deref().and_then(|c| {
        INLINE_IMAGES
            .iter()
            .find(|i| c.eq_ignore_ascii_case(i))
            .copied()
    });
    let mut resp: Response = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(inline.unwrap_or("application/octet-stream")),
    );
    if inline.is_none() {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    // Content-addressed: the bytes behind a hash never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_follow_the_first_bad_sequence() {
        let r = AuditReport {
            verified: false,
            events: 5,
            first_bad_sequence: Some(3),
            check: Some(AuditCheck::Hash),
            unkeyed_events: 0,
        };
        let marks: Vec<Mark> = (1..=5).map(|i| mark_of(i, Some(&r))).collect();
        assert_eq!(
            marks,
            vec![
                Mark::Verified,
                Mark::Verified,
                Mark::Broken,
                Mark::AfterBreak,
                Mark::AfterBreak
            ]
        );
        let ok = AuditReport {
            verified: true,
            events: 2,
            first_bad_sequence: None,
            check: None,
            unkeyed_events: 0,
        };
        assert_eq!(mark_of(2, Some(&ok)), Mark::Verified);
        assert_eq!(mark_of(2, None), Mark::NotChecked);
    }
}
