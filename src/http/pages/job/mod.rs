//! A job's page: its state, the phone's last contact on a visit under way
//! (`super::phone`), visits, checklist, evidence, invoice, approvals, notes
//! (`sections.rs`) and its event timeline (`timeline.rs`), each event
//! marked by the hash-chain verification (`store::verify_rows`: hashes,
//! MACs, head and signed checkpoints): verified, the first bad sequence and
//! the check that found it, or past the break. Also the evidence images,
//! read with the session.

mod sections;
mod timeline;

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use maud::html;

use super::approvals::flash;
use super::layout::{self, Nav};
use super::session::UiSession;
use super::{PageError, PageResult, Within};
use crate::domain::job::{Job, JobEvent};
use crate::error::ApiError;
use crate::http::extract::{require_endpoint, require_tool};
use crate::http::AppState;
use crate::store::{self, RawRow};

/// Image types shown inline; anything else is offered as a download.
const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

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
    let states = timeline::state_changes(&rows).unwrap_or_default();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let title = match &view {
        Some(v) => format!("Job at {}", v["site"]["name"].as_str().unwrap_or("?")),
        None => "Job".to_string(),
    };
    let evidence = match &view {
        Some(v) => sections::evidence(&state, &s, v).await,
        None => html! {},
    };
    let door = match &view {
        Some(v) => super::doors::door_card(&state, &s, v).await,
        None => html! {},
    };
    let phones = super::phone::contacts(&state.app, vec![job_id.clone()]).await;
    let phone = super::phone::job_line(
        phones.get(&job_id),
        view.as_ref()
            .and_then(|v| v["state"].as_str())
            .unwrap_or(""),
        state.app.clock.now(),
    );
    let body = html! {
        (flash(&query))
        p.jobid { "Job " code #job-id { (job_id) } }
        (phone)
        @if let Some(e) = &decode_error {
            p.notice.error role="alert" { "The job's state cannot be rebuilt from its events: " (e) }
        }
        @if let Some(v) = &view {
            (sections::all(&state, &s, v, evidence, door))
        }
        section.timeline-section #timeline aria-labelledby="timeline-h" {
            h2 #timeline-h { "Event timeline" }
            @if may_events {
                (timeline::timeline(&job_id, &rows, report.as_ref(), &states))
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
