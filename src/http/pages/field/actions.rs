//! The field app's actions, as the phone sends them (JSON answers, the
//! API's problem documents): a job command, or a file of evidence stored
//! and attached in one action. Each carries the `Idempotency-Key` the phone
//! gave it when it was made, so a replay after a dead zone is the stored
//! answer, and the session's CSRF token in `X-CSRF-Token`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::super::command::run_job_command;
use super::super::session::{check_script_post, UiSession};
use crate::app::RequestMeta;
use crate::domain::job::EvidenceKind;
use crate::error::{ApiError, Result};
use crate::http::extract::{mutation_meta, read_body, read_json};
use crate::http::{reply_response, AppState};
use crate::tools::gate::Access;

/// Media types the field app stores: photos, a PDF form, and the checklist
/// form the phone makes from its answers (JSON).
const FILE_TYPES: [&str; 5] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "application/pdf",
    "application/json",
];

/// The most actions a phone is believed to hold for one job.
const MAX_PENDING: u32 = 10_000;

/// The most jobs one contact report names.
const MAX_REPORTED_JOBS: usize = 50;

/// The widest or tallest signature image read (the pad is 600×220).
const MAX_SIGNATURE_SIDE: u32 = 4000;

/// The fewest dark pixels a drawn signature has (a dot is not one).
const SIGNATURE_MIN_INK: usize = 40;

/// `POST /ui/field/jobs/{job_id}/actions/{command}`: the job command of
/// that wire name with the JSON body as its arguments — whatever the
/// allowlist lets the session's role run, decided by the domain as any
/// other call (a technician only on their own visit).
pub(super) async fn command(
    State(state): State<AppState>,
    s: UiSession,
    Path((job_id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run = async {
        check_script_post(&headers, &s)?;
        if !crate::http::decode::is_routed_job_command(&command) {
            return Err(ApiError::NotFound(format!(
                "no job command named `{}`",
                crate::http::decode::echo(&command)
            )));
        }
        let args = read_json(&headers, body, state.limits.max_body_bytes).await?;
        let path = format!("/v1/jobs/{job_id}/commands/{command}");
        let meta = mutation_meta(&headers, "POST", &path, &args)?;
        run_job_command(&state, &s, &job_id, &command, args, &meta).await
    };
    let answer = match run.await {
        Ok(reply) => reply_response(reply),
        Err(e) => e.into_response(),
    };
    if check_script_post(&headers, &s).is_ok() {
        heard(&state, &s, &job_id, &headers).await;
    }
    answer
}

/// What the phone says it still holds for a job, from an action's headers:
/// `X-Field-Pending` (actions after this one) and `X-Field-Oldest` (when
/// the oldest of them was made).
fn holding(headers: &HeaderMap) -> (u32, Option<DateTime<Utc>>) {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let pending = text("x-field-pending")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .min(MAX_PENDING);
    let oldest = text("x-field-oldest")
        .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
        .map(|t| t.with_timezone(&Utc));
    (pending, oldest)
}

/// Records that the technician's phone was heard from about `job_id`
/// (the board and the job page show it), when the job is theirs. A
/// failure here is logged, never the action's answer.
async fn heard(state: &AppState, s: &UiSession, job_id: &str, headers: &HeaderMap) {
    let (pending, oldest) = holding(headers);
    if let Err(e) = touch_if_mine(state, s, job_id, pending, oldest).await {
        tracing::warn!(error = %e, job_id, "the phone's contact was not recorded");
    }
}

async fn touch_if_mine(
    state: &AppState,
    s: &UiSession,
    job_id: &str,
    pending: u32,
    oldest: Option<DateTime<Utc>>,
) -> Result<()> {
    let Some(technician) = s.caller.technician_id.as_deref() else {
        return Ok(());
    };
    if !is_mine(state, s, job_id).await? {
        return Ok(());
    }
    let now = state.app.clock.now();
    crate::app::field::touch(&state.app.pool, technician, job_id, pending, oldest, now).await
}

/// Whether the job's current offer or visit is the session's technician's
/// (the domain's rule, [`JobData::is_technicians_now`]); an unknown job is
/// not.
///
/// [`JobData::is_technicians_now`]: crate::domain::job::JobData::is_technicians_now
async fn is_mine(state: &AppState, s: &UiSession, job_id: &str) -> Result<bool> {
    let job = match state.app.load_job(job_id, None).await {
        Ok(job) => job,
        Err(ApiError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(job
        .data()
        .is_some_and(|d| d.is_technicians_now(s.caller.technician_id.as_deref())))
}

/// What `POST /ui/field/contact` reads: the jobs the phone holds actions
/// for (and the visit it shows, with none).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Contact {
    jobs: Vec<Holding>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Holding {
    job_id: String,
    pending: u32,
    #[serde(default)]
    oldest_pending_at: Option<DateTime<Utc>>,
}

/// `POST /ui/field/contact`: the phone reports, when it has a network,
/// what it still holds for each job (sent on opening a page, when the
/// network comes back, and every minute while a page is open), so the
/// dispatcher sees when each phone was last heard from. Jobs that are not
/// the technician's are left out. `204` without a body.
pub(super) async fn contact(
    State(state): State<AppState>,
    s: UiSession,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run = async {
        check_script_post(&headers, &s)?;
        // Not a command, but a call of the key like any other: it spends
        // the key's budget.
        state
            .tools
            .gate
            .rate(&s.caller)
            .map_err(|r| r.rest_error(s.caller.role, Access::Handler))?;
        let value = read_json(&headers, body, 16 * 1024).await?;
        let report: Contact = serde_json::from_value(value).map_err(|e| ApiError::Validation {
            detail: format!("not a contact report: {e}"),
            field: None,
        })?;
        if report.jobs.len() > MAX_REPORTED_JOBS {
            return Err(ApiError::Validation {
                detail: format!("at most {MAX_REPORTED_JOBS} jobs per report"),
                field: Some("jobs".into()),
            });
        }
        for h in &report.jobs {
            touch_if_mine(
                &state,
                &s,
                &h.job_id,
                h.pending.min(MAX_PENDING),
                h.oldest_pending_at,
            )
            .await?;
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    match run.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// `POST /ui/field/jobs/{job_id}/evidence?kind=…[&note=…]`: the body is the
/// file (a photo, the signature drawn on the screen as PNG, a PDF, or the
/// checklist form as JSON). It is stored (under the action's key with
/// `.upload` appended) and attached as evidence of that kind (under the
/// action's key): both answers are kept, so a replay stores and attaches
/// nothing twice.
pub(super) async fn evidence(
    State(state): State<AppState>,
    s: UiSession,
    Path(job_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = match store_and_attach(&state, &s, &job_id, &q, &headers, body).await {
        Ok(reply) => reply_response(reply),
        Err(e) => e.into_response(),
    };
    if check_script_post(&headers, &s).is_ok() {
        heard(&state, &s, &job_id, &headers).await;
    }
    answer
}

async fn store_and_attach(
    state: &AppState,
    s: &UiSession,
    job_id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<crate::app::Reply> {
    check_script_post(headers, s)?;
    let upload = Access::Endpoint("POST /v1/evidence");
    if !state.tools.gate.allows(s.caller.role, upload) {
        return Err(ApiError::Forbidden(format!(
            "role `{}` may not call POST /v1/evidence",
            s.caller.role.as_str()
        )));
    }
    let kind: EvidenceKind = q
        .get("kind")
        .and_then(|k| serde_json::from_value(json!(k)).ok())
        .ok_or_else(|| ApiError::Validation {
            detail: "`kind` must name an evidence kind (photo_before, photo_after, label_photo, signature, checklist_form, …)".into(),
            field: Some("kind".into()),
        })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !FILE_TYPES.contains(&content_type.as_str()) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a field file is one of {}",
            FILE_TYPES.join(", ")
        )));
    }
    let bytes = read_body(headers, body, state.limits.max_evidence_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::Validation {
            detail: "the file is empty".into(),
            field: Some("file".into()),
        });
    }
    check_content(kind, &content_type, &bytes)?;
    let mut args = json!({"kind": kind.as_str(), "sha256": crate::store::hash::sha256_hex(&bytes)});
    if let Some(note) = q.get("note").map(|n| n.trim()).filter(|n| !n.is_empty()) {
        args["note"] = note.into();
    }
    let path = format!("/v1/jobs/{job_id}/commands/attach_evidence");
    let meta = mutation_meta(headers, "POST", &path, &args)?;
    // Nothing is stored that could not be attached: the arguments decode,
    // the visit is this technician's now, and the upload spends the key's
    // budget as `POST /v1/evidence` does (the attach spends its own).
    crate::http::decode::job_command("attach_evidence", args.clone())?;
    if !is_mine(state, s, job_id).await? {
        return Err(ApiError::Forbidden(
            "this job is not offered or assigned to you".into(),
        ));
    }
    state
        .tools
        .gate
        .rate(&s.caller)
        .map_err(|r| r.rest_error(s.caller.role, upload))?;
    let digest = json!({"sha256": args["sha256"], "content_type": content_type});
    let upload_meta = RequestMeta {
        idempotency_key: format!("{}.upload", meta.idempotency_key),
        request_hash: crate::http::extract::request_hash("POST", "/v1/evidence", &digest),
        ..meta.clone()
    };
    let stored = state
        .app
        .upload_evidence(&s.caller, &upload_meta, bytes, content_type)
        .await?;
    if stored.status >= 400 {
        return Ok(stored);
    }
    run_job_command(state, s, job_id, "attach_evidence", args, &meta).await
}

/// What a file of a kind must be: the signature a PNG with ink on it (a
/// blank pad is refused), the checklist form a JSON object.
fn check_content(kind: EvidenceKind, content_type: &str, bytes: &[u8]) -> Result<()> {
    let bad = |detail: &str, field: &str| ApiError::Validation {
        detail: detail.into(),
        field: Some(field.into()),
    };
    match kind {
        EvidenceKind::Signature => {
            if content_type != "image/png" {
                return Err(bad("a signature is sent as image/png", "file"));
            }
            match ink(bytes) {
                None => Err(bad("the signature is not a readable PNG image", "file")),
                Some(n) if n < SIGNATURE_MIN_INK => Err(bad(
                    "the signature has no strokes: ask the customer to sign in the box",
                    "signature",
                )),
                Some(_) => Ok(()),
            }
        }
        EvidenceKind::ChecklistForm if content_type == "application/json" => {
            match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(_)) => Ok(()),
                _ => Err(bad("the checklist form is not a JSON object", "file")),
            }
        }
        _ if content_type == "application/json" => {
            Err(bad("only the checklist form is sent as JSON", "kind"))
        }
        _ => Ok(()),
    }
}

/// The number of dark, visible pixels of a PNG (`None`: not a PNG this
/// decoder reads within 16 MiB and 4,000 px a side).
fn ink(bytes: &[u8]) -> Option<usize> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits {
            bytes: 16 * 1024 * 1024,
        },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().ok()?;
    let info = reader.info();
    if info.width > MAX_SIGNATURE_SIDE || info.height > MAX_SIGNATURE_SIDE {
        return None;
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).ok()?;
    let data = &buf[..frame.buffer_size()];
    let dark = |l: u8| l < 160;
    let count = match frame.color_type {
        png::ColorType::Rgba => data
            .chunks_exact(4)
            .filter(|p| p[3] > 64 && dark(((p[0] as u16 + p[1] as u16 + p[2] as u16) / 3) as u8))
            .count(),
        png::ColorType::Rgb => data
            .chunks_exact(3)
            .filter(|p| dark(((p[0] as u16 + p[1] as u16 + p[2] as u16) / 3) as u8))
            .count(),
        png::ColorType::GrayscaleAlpha => data
            .chunks_exact(2)
            .filter(|p| p[1] > 64 && dark(p[0]))
            .count(),
        png::ColorType::Grayscale => data.iter().filter(|l| dark(**l)).count(),
        png::ColorType::Indexed => return None,
    };
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(pixels).unwrap();
        drop(w);
        out
    }

    #[test]
    fn a_blank_pad_is_no_signature_and_strokes_are() {
        let (w, h) = (60u32, 20u32);
        let blank = vec![0u8; (w * h * 4) as usize];
        assert_eq!(ink(&png(w, h, &blank)), Some(0));
        let mut signed = blank.clone();
        for x in 5..55 {
            let i = ((10 * w + x) * 4) as usize;
            signed[i..i + 4].copy_from_slice(&[10, 10, 30, 255]);
        }
        assert_eq!(ink(&png(w, h, &signed)), Some(50));
        assert!(check_content(EvidenceKind::Signature, "image/png", &png(w, h, &blank)).is_err());
        assert!(check_content(EvidenceKind::Signature, "image/png", &png(w, h, &signed)).is_ok());
        assert!(check_content(EvidenceKind::Signature, "image/jpeg", b"x").is_err());
        assert_eq!(ink(b"not a png"), None);
    }

    #[test]
    fn json_is_only_the_checklist_form() {
        assert!(check_content(
            EvidenceKind::ChecklistForm,
            "application/json",
            b"{\"items\":[]}"
        )
        .is_ok());
        assert!(check_content(EvidenceKind::ChecklistForm, "application/json", b"[1]").is_err());
        assert!(check_content(EvidenceKind::PhotoBefore, "application/json", b"{}").is_err());
        assert!(check_content(EvidenceKind::PhotoBefore, "image/jpeg", b"\xff\xd8").is_ok());
    }
}
