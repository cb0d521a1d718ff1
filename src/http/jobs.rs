//! `/v1/jobs`: open a job, run any job command by its wire name, and the
//! strong reads (the job now, its envelopes, its audit, its replay).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cqrs_es::Aggregate;
use serde_json::{json, Value};

use super::decode;
use super::extract::{mutation_meta, read_json};
use super::gate::Asked;
use super::{query_params, reply_response, AppState};
use crate::app::{Caller, KeyedCaller, RequestMeta};
use crate::domain::job::{Job, VisitStatus};
use crate::domain::Role;
use crate::error::{ApiError, Result};

/// The job commands `POST /v1/jobs/{job_id}/commands/{command}` runs, by
/// wire name, in lifecycle order: every job command but `open_job`, which
/// has its own route. The gate names a request after its command and
/// checks its allowlist entry (`[tools.accept_offer]` for `accept_offer`);
/// the handler decodes the body by it; the domain decides it in the
/// function of the same name (`domain/job/decide/`). Any other name is 404.
pub(super) const JOB_COMMAND_ROUTES: &[&str] = &[
    "record_intake",
    "triage_job",
    "set_priority",
    "resolve_duplicate",
    "offer_job",
    "accept_offer",
    "decline_offer",
    "expire_offer",
    "start_travel",
    "check_in",
    "complete_checklist_item",
    "attach_evidence",
    "check_out",
    "schedule_return_visit",
    "verify_closeout",
    "reopen_unsatisfactory",
    "mark_billing_ready",
    "close_job",
    "cancel_job",
    "add_note",
    "request_nte_increase",
    "decide_approval",
    "flag_sla_breach",
];

/// The routes of this resource. Each passes the gate (`super::gate`) first:
/// the allowlist check and the rate limit are there, not here. One route
/// serves every job command of [`JOB_COMMAND_ROUTES`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", post(open_job))
        .route("/v1/jobs/{job_id}", get(get_job))
        .route("/v1/jobs/{job_id}/commands/{command}", post(job_command))
        .route("/v1/jobs/{job_id}/events", get(job_events))
        .route("/v1/jobs/{job_id}/audit", get(job_audit))
        .route("/v1/jobs/{job_id}/replay", get(job_replay))
        .route("/v1/jobs/{job_id}/transitions", get(job_transitions))
}

async fn open_job(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let value = read_json(&headers, body, state.limits.max_body_bytes).await?;
    asked.body(&value);
    let meta = mutation_meta(&headers, "POST", "/v1/jobs", &value)?;
    let command = decode::job_command("open_job", value)?;
    let reply = state.app.execute_job(&caller, &meta, None, command).await?;
    Ok(reply_response(reply))
}

/// A job command: decoded, run through the application's one door for job
/// commands ([`App::job_command`](crate::app::App::job_command), which owns
/// the known-key shortcut and its rule), answered.
async fn job_command(
    State(state): State<AppState>,
    Extension(who): Extension<KeyedCaller>,
    asked: Asked,
    Path((job_id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (meta, command) =
        match prepare_job_command(&state, &asked, &job_id, &command, &headers, body).await {
            Ok(decoded) => decoded,
            Err(e) => return Err(state.app.refusal(&who, e).await),
        };
    let reply = state.app.job_command(&who, &meta, &job_id, command).await?;
    Ok(reply_response(reply))
}

/// What a job command request asks, checked and decoded: the route, the
/// body, the mutation headers (the gate checked the allowlist).
async fn prepare_job_command(
    state: &AppState,
    asked: &Asked,
    job_id: &str,
    command: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(RequestMeta, crate::domain::job::JobCommand)> {
    if !decode::is_routed_job_command(command) {
        return Err(ApiError::NotFound(format!(
            "no job command named `{}`",
            decode::echo(command)
        )));
    }
    let value = read_json(headers, body, state.limits.max_body_bytes).await?;
    asked.body(&value);
    let path = format!("/v1/jobs/{job_id}/commands/{command}");
    let meta = mutation_meta(headers, "POST", &path, &value)?;
    let decoded = decode::job_command(command, value)?;
    Ok((meta, decoded))
}

/// A technician may read only jobs offered or assigned to them.
pub(super) fn check_technician_scope(caller: &Caller, job: &Job) -> Result<()> {
    if caller.role != Role::Technician {
        return Ok(());
    }
    // Visits they accepted or are offered now; a declined or expired offer
    // gives no view of the job.
    let mine = job.data().is_some_and(|d| {
        d.visits.iter().any(|v| {
            caller.technician_id.as_deref() == Some(v.technician_id.as_str())
                && !matches!(v.status, VisitStatus::Declined | VisitStatus::Expired)
        })
    });
    if mine {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this job is not offered or assigned to you".into(),
        ))
    }
}

async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<Value>> {
    let job = state.app.load_job(&job_id, None).await?;
    check_technician_scope(&caller, &job)?;
    Ok(Json(state.app.job_now(&job).await?))
}

async fn job_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<Value>> {
    let events = state.app.stream_events(Job::TYPE, &job_id).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound("job not found".into()));
    }
    Ok(Json(json!({"job_id": job_id, "events": events})))
}

async fn job_audit(
    State(state): State<AppState>,
    _caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<Value>> {
    let report = state
        .app
        .audit(Job::TYPE, &job_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("job not found".into()))?;
    Ok(Json(json!({
        "job_id": job_id,
        "verified": report.verified,
        "events": report.events,
        "first_bad_sequence": report.first_bad_sequence,
        "check": report.check,
        "unkeyed_events": report.unkeyed_events,
    })))
}

async fn job_replay(
    State(state): State<AppState>,
    _caller: Caller,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let params = query_params(query.as_deref(), &["to_sequence"])?;
    let to = crate::app::read_models::whole_number(&params, "to_sequence", 1..=i64::MAX)?;
    let job = state.app.load_job(&job_id, to).await?;
    let view = crate::app::queries::job_view(&state.app, &job)
        .ok_or_else(|| ApiError::NotFound("job not found".into()))?;
    Ok(Json(
        json!({"job_id": job_id, "to_sequence": job.version, "job": view}),
    ))
}

async fn job_transitions(
    State(state): State<AppState>,
    _caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<Value>> {
    let transitions = state.app.transitions(&job_id).await?;
    Ok(Json(json!({"job_id": job_id, "transitions": transitions})))
}

#[cfg(test)]
mod tests {
    use super::JOB_COMMAND_ROUTES;
    use crate::domain::job::JOB_COMMANDS;

    #[test]
    fn the_route_table_routes_every_job_command_but_open_job() {
        let routed: Vec<&str> = JOB_COMMANDS
            .iter()
            .copied()
            .filter(|c| *c != "open_job")
            .collect();
        assert_eq!(JOB_COMMAND_ROUTES, routed.as_slice());
    }
}
