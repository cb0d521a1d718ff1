//! Approvals: what waits for a person, and the approve/reject buttons.
//!
//! A decision goes through exactly the API's path: the `decide_approval` job
//! command through [`App::execute_job`](crate::app::App::execute_job), as the
//! person whose key logged in, under an idempotency key that is fresh for
//! each rendered form and the same for every submit of that form (a double
//! click is one command; the second answer is the stored first one).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use serde_json::{json, Value};
use uuid::Uuid;

use super::command::run_job_command;
use super::layout::{self, Nav};
use super::session::{check_post, read_form, UiSession};
use super::{PageError, PageResult, Within};
use crate::app::RequestMeta;
use crate::error::ApiError;
use crate::http::extract::{request_hash, require_endpoint};
use crate::http::AppState;
use crate::tools::gate::{self, Call};
use crate::tools::log::Transport;

/// What an approval would carry out, for people.
pub(super) fn action_text(action: &Value, nte_now: &Value) -> Markup {
    match action["kind"].as_str() {
        Some("nte_increase") => html! {
            "Raise the NTE to " strong { (layout::money_v(&action["amount_cents"], "?")) }
            " (now " (layout::money_v(nte_now, "no cap")) ")"
        },
        Some("cancel_job") => {
            html! { "Cancel the job: " q { (action["reason"].as_str().unwrap_or("")) } }
        }
        Some("dismiss_duplicate") => html! {
            "Dismiss the possible duplicate of " code { (action["possible_duplicate_of"].as_str().unwrap_or("?")) }
        },
        Some("link_duplicate") => html! {
            "Link the job as a duplicate of " code { (action["duplicate_of"].as_str().unwrap_or("?")) }
            " (it ends this job)"
        },
        _ => html! { (action.to_string()) },
    }
}

/// Whether the caller asked for this approval themselves (they may not decide it).
pub(super) fn own_request(s: &UiSession, requested_by: &Value) -> bool {
    requested_by["id"].as_str() == Some(s.caller.key_name.as_str())
        && requested_by["role"].as_str() == Some(s.caller.role.as_str())
}

/// The approve and reject forms for one pending approval, when the role may
/// decide (`decide_approval` in the allowlist) and did not ask for it.
pub(super) fn decision_forms(
    state: &AppState,
    s: &UiSession,
    approval_id: &str,
    job_id: &str,
    requested_by: &Value,
    back: &str,
    what: &str,
) -> Markup {
    if !state
        .allowlist
        .tool_allowed("decide_approval", s.caller.role)
    {
        return html! {};
    }
    if own_request(s, requested_by) {
        return html! { span.muted { "Your own request: another person decides it." } };
    }
    let nonce = layout::form_nonce();
    let action = format!("/ui/approvals/{}/decide", layout::seg(approval_id));
    let reason_id = format!("reason-{}", layout::css_token(approval_id));
    html! {
        div.decide {
            form.once method="post" action=(action) {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="job_id" value=(job_id);
                input type="hidden" name="idem" value=(nonce);
                input type="hidden" name="decision" value="approve";
                input type="hidden" name="back" value=(back);
                button.approve type="submit" data-approval-id=(approval_id) { "Approve" (layout::sr(&format!(": {what}"))) }
            }
            form.once.reject method="post" action=(action) {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="job_id" value=(job_id);
                input type="hidden" name="idem" value=(nonce);
                input type="hidden" name="decision" value="reject";
                input type="hidden" name="back" value=(back);
                label.sr-only for=(reason_id) { "Reason for rejecting (optional)" }
                input id=(reason_id) type="text" name="reason" placeholder="Reason (optional)" maxlength="4000";
                button.reject type="submit" data-approval-id=(approval_id) { "Reject" (layout::sr(&format!(": {what}"))) }
            }
        }
    }
}

/// The message after a decision (`done=` in the address: a fixed word or a problem code).
pub(super) fn flash(q: &HashMap<String, String>) -> Markup {
    let Some(done) = q.get("done").filter(|d| {
        !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }) else {
        return html! {};
    };
    match done.as_str() {
        "approved" => {
            html! { p.notice.ok role="status" { "Approved: the requested action was carried out." } }
        }
        "rejected" => html! { p.notice.ok role="status" { "Rejected." } },
        code => html! { p.notice.error role="alert" { "Not done: " (layout::words(code)) "." } },
    }
}

fn query(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `GET /ui/approvals`.
pub(super) async fn page(
    State(state): State<AppState>,
    s: UiSession,
    RawQuery(q): RawQuery,
) -> PageResult {
    require_endpoint(&state, &s.caller, "GET /v1/approvals").within(&s)?;
    let q = query(q.as_deref());
    let mut params = HashMap::new();
    if let Some(p) = q.get("min_position").filter(|p| p.parse::<i64>().is_ok()) {
        params.insert("min_position".to_string(), p.clone());
    }
    // After a decision the page waits (bounded) for the approvals read model
    // to show it; if the projector is behind, it shows what it has and says so.
    let (answer, behind) = match state.app.approvals(&params).await {
        Err(ApiError::ProjectionBehind { .. }) => {
            (state.app.approvals(&HashMap::new()).await.within(&s)?, true)
        }
        other => (other.within(&s)?, false),
    };
    let rows: Vec<&Value> = answer["rows"]
        .as_array()
        .map(|a| a.iter().rev().collect())
        .unwrap_or_default();
    let pending: Vec<&&Value> = rows.iter().filter(|r| r["status"] == "pending").collect();
    let decided: Vec<&&Value> = rows
        .iter()
        .filter(|r| r["status"] != "pending")
        .take(50)
        .collect();
    let may_decide = state
        .allowlist
        .tool_allowed("decide_approval", s.caller.role);
    let mut pending_cols = vec![
        ("Job", false),
        ("Action", false),
        ("Reason given", false),
        ("Requested by", false),
    ];
    if may_decide {
        pending_cols.push(("Decision", false));
    }
    let body = html! {
        (flash(&q))
        @if behind {
            p.notice role="status" { "The list below may not show your decision yet: the read model is catching up. Reload in a moment." }
        }
        section aria-labelledby="pending-h" {
            h2 #pending-h { "Pending " span.count { "(" (pending.len()) ")" } }
            @if !may_decide {
                p.muted { "Your role may read approvals but not decide them." }
            }
            @if pending.is_empty() {
                p.empty { "Nothing waits for a decision." }
            } @else {
                (layout::table(
                    Some("approvals"),
                    None,
                    &pending_cols,
                    html! {
                        @for r in &pending {
                            @let job = r["job_id"].as_str().unwrap_or("");
                            @let id = r["approval_id"].as_str().unwrap_or("");
                            tr data-approval-id=(id) {
                                td {
                                    a href=(format!("/ui/jobs/{}", layout::seg(job))) { (r["site_name"].as_str().unwrap_or("?")) }
                                    br; span.muted.small { (layout::words(r["incident_type"].as_str().unwrap_or(""))) }
                                    " " (layout::state_badge(r["job_state"].as_str().unwrap_or("")))
                                }
                                td { (action_text(&r["action"], &r["nte_cents"])) }
                                td.free-text { (r["reason"].as_str().unwrap_or("")) }
                                td { (layout::actor(&r["requested_by"])) br; span.small { (layout::time_v(&r["requested_at"])) } }
                                @if may_decide {
                                    td { (decision_forms(&state, &s, id, job, &r["requested_by"], "approvals", &format!("{} at {}", layout::words(r["kind"].as_str().unwrap_or("")), r["site_name"].as_str().unwrap_or("?")))) }
                                }
                            }
                        }
                    },
                ))
            }
        }
        section aria-labelledby="decided-h" {
            h2 #decided-h { "Recently decided" }
            @if decided.is_empty() {
                p.empty { "None yet." }
            } @else {
                (layout::table(
                    Some("approvals"),
                    None,
                    &[("Job", false), ("Action", false), ("Status", false), ("Requested by", false), ("Decided by", false)],
                    html! {
                        @for r in &decided {
                            @let job = r["job_id"].as_str().unwrap_or("");
                            tr data-approval-id=(r["approval_id"].as_str().unwrap_or("")) {
                                td { a href=(format!("/ui/jobs/{}", layout::seg(job))) { (r["site_name"].as_str().unwrap_or("?")) } }
                                td { (action_text(&r["action"], &r["nte_cents"])) }
                                td { (layout::state_badge(r["status"].as_str().unwrap_or(""))) }
                                td { (layout::actor(&r["requested_by"])) }
                                td { (layout::actor(&r["decided_by"])) }
                            }
                        }
                    },
                ))
            }
        }
    };
    Ok(layout::ok(&s, "Approvals", Nav::Approvals, body))
}

fn bad(s: &UiSession, detail: &str) -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "That request could not be used",
        detail,
    )
    .within(s)
}

/// `POST /ui/approvals/{approval_id}/decide`: runs `decide_approval`.
///
/// A form that comes from a page of this session (origin and CSRF token
/// checked) is the person's call: it passes the one gate — the key's rate
/// limit and the allowlist — and is recorded in the invocation log with
/// transport `ui`, whatever its answer.
pub(super) async fn decide(
    State(state): State<AppState>,
    s: UiSession,
    Path(approval_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let form = read_form(&headers, body).await.map_err(|e| e.within(&s))?;
    check_post(&headers, &form, &s)?;
    let mut asked = json!({"approval_id": approval_id});
    for field in ["job_id", "decision", "reason", "back"] {
        if let Some(v) = form.get(field) {
            asked[field] = v.as_str().into();
        }
    }
    let (job_id, decision, args, meta) = match read_decision(&approval_id, &form) {
        Ok(read) => read,
        Err(detail) => {
            // A form that names no command is still the person's call:
            // recorded, refused before the gate.
            let call = Call {
                invocation_id: Uuid::new_v4(),
                transport: Transport::Ui,
                operation: "decide_approval".into(),
                actor: s.caller.actor(),
                idempotency_key: None,
                argument_digest: gate::digest(&asked),
                job_id: form
                    .get("job_id")
                    .filter(|j| gate::plausible_id(j))
                    .cloned(),
                approval_id: Some(approval_id.clone()).filter(|a| gate::plausible_id(a)),
                at: state.app.clock.now(),
            };
            let doc = json!({"code": "validation_error"});
            state
                .tools
                .gate
                .record(&state.app.invocations, call.finish(400, &doc, false));
            return Err(bad(&s, detail));
        }
    };
    // The one gate, the command and its record: as every page's command.
    let reply = run_job_command(&state, &s, &job_id, "decide_approval", args, &meta)
        .await
        .map_err(|e| PageError::from(e).within(&s))?;
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let job_id = job_id.as_str();
    let done = if reply.status < 400 {
        if decision == "approve" {
            "approved"
        } else {
            "rejected"
        }
        .to_string()
    } else {
        answer["code"].as_str().unwrap_or("refused").to_string()
    };
    let position = answer["events"]
        .as_array()
        .and_then(|e| e.iter().filter_map(|e| e["global_position"].as_i64()).max());
    let target = if form.get("back").map(String::as_str) == Some("job") {
        format!("/ui/jobs/{}?done={done}#approvals", layout::seg(job_id))
    } else {
        match position {
            Some(p) => format!("/ui/approvals?done={done}&min_position={p}"),
            None => format!("/ui/approvals?done={done}"),
        }
    };
    Ok(Redirect::to(&target).into_response())
}

/// The decision form's fields: the job, the decision, the command's
/// arguments and its request metadata (the form's nonce is its idempotency
/// key); or what is wrong with the form.
fn read_decision(
    approval_id: &str,
    form: &HashMap<String, String>,
) -> Result<(String, &'static str, Value, RequestMeta), &'static str> {
    let Some(job_id) = form
        .get("job_id")
        .filter(|j| !j.is_empty() && j.len() <= 200)
    else {
        return Err("The form names no job.");
    };
    let Some(decision) = form.get("decision").and_then(|d| match d.as_str() {
        "approve" => Some("approve"),
        "reject" => Some("reject"),
        _ => None,
    }) else {
        return Err("The decision must be approve or reject.");
    };
    let Some(nonce) = form.get("idem").filter(|n| {
        n.starts_with("ui-")
            && n.len() <= 100
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) else {
        return Err("The form is incomplete; reload the page.");
    };
    let idempotency_key = format!("{nonce}-{decision}");
    let mut args = json!({"approval_id": approval_id, "decision": decision});
    if let Some(r) = form
        .get("reason")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
    {
        args["reason"] = r.into();
    }
    let path = format!("/v1/jobs/{job_id}/commands/decide_approval");
    let meta = RequestMeta {
        idempotency_key,
        request_hash: request_hash("POST", &path, &args),
        if_match: None,
        correlation_id: Uuid::new_v4(),
        trace_id: crate::telemetry::trace::current_trace_id(),
        causation_id: None,
        tool_invocation_id: None,
    };
    Ok((job_id.clone(), decision, args, meta))
}
