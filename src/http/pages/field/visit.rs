//! A visit's page on the phone: the job's site, door and safety notes, and
//! the step the visit is at — answer the offer, start travel, check in
//! (with the phone's location against the site's), then on site the
//! checklist, photos, the signature, parts and check-out with what the SOP
//! still misses listed before the button.
//!
//! Everything on it is read from the job's events (a strong read), so the
//! page a technician opens is the job as it is. The on-site part is sent
//! with the page while the job is confirmed or en route too (hidden), so a
//! check-in made without signal opens it on the phone at once.

use axum::extract::{Path, State};
use maud::{html, Markup};
use serde_json::Value;

use super::super::layout;
use super::super::session::UiSession;
use super::super::{PageResult, Within};
use super::{answer_forms, technician};
use crate::domain::job::{
    CheckOutcome, ChecklistResult, DoorLeftState, EvidenceKind, JobData, JobState, Missing,
    VisitStatus,
};
use crate::domain::registry::Kind;
use crate::domain::sop::IncidentSop;
use crate::error::ApiError;
use crate::http::extract::require_tool;
use crate::http::AppState;

/// Evidence kinds taken with the camera, in the order a visit takes them.
const PHOTO_KINDS: [EvidenceKind; 3] = [
    EvidenceKind::PhotoBefore,
    EvidenceKind::LabelPhoto,
    EvidenceKind::PhotoAfter,
];

/// The site's location, when the registry has it: latitude, longitude,
/// radius in metres.
type SiteLocation = Option<(f64, f64, u64)>;

/// `GET /ui/field/jobs/{job_id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    s: UiSession,
    Path(job_id): Path<String>,
) -> PageResult {
    technician(&s)?;
    require_tool(&state, &s.caller, "get_job").within(&s)?;
    let job = state.app.load_job(&job_id, None).await.within(&s)?;
    crate::http::jobs::check_technician_scope(&s.caller, &job).within(&s)?;
    let Some(d) = job.data() else {
        return Err(ApiError::NotFound("job not found".into())).within(&s);
    };
    let sop = state
        .app
        .sops
        .get(&d.incident_type)
        .ok_or_else(|| ApiError::NotFound("the job's SOP is not loaded".into()))
        .within(&s)?;
    let (door, site) = registered(&state, d).await.within(&s)?;
    let location = site_location(site.as_ref());
    let title = format!("Visit: {}", d.site.name);
    let body = html! {
        (head(d, door.as_ref(), sop))
        @if d.state == JobState::Cancelled || d.is_technicians_now(s.caller.technician_id.as_deref()) {
            (step(d, sop, location, state.app.clock.now()))
        } @else {
            section.card #done aria-labelledby="done-h" {
                h2 #done-h { (layout::title_case(d.state.as_str())) }
                p { "This visit is no longer yours to work: it was answered, declined, expired or given to another technician." }
                p { a.button href="/ui/field" { "Back to my work" } }
            }
        }
    };
    Ok(layout::render_field(&s, &title, body))
}

/// The registered door and its site, for a job opened at one.
async fn registered(
    state: &AppState,
    d: &JobData,
) -> crate::error::Result<(Option<Value>, Option<Value>)> {
    let Some(door_id) = d.door_id.as_deref() else {
        return Ok((None, None));
    };
    let mut conn = state.app.pool.acquire().await?;
    let door = crate::app::registry::index::view(&mut conn, Kind::Door, door_id).await?;
    let site = match door.as_ref().and_then(|v| v["site_id"].as_str()) {
        Some(site_id) => crate::app::registry::index::view(&mut conn, Kind::Site, site_id).await?,
        None => None,
    };
    Ok((door, site))
}

fn site_location(site: Option<&Value>) -> SiteLocation {
    let site = site?;
    let lat = site["latitude"].as_f64()?;
    let lon = site["longitude"].as_f64()?;
    let radius = site["geofence_radius_m"]
        .as_u64()
        .unwrap_or(u64::from(crate::domain::geo::DEFAULT_RADIUS_M));
    Some((lat, lon, radius))
}

/// The job at a glance: where, what, how urgent, the contact, safety.
fn head(d: &JobData, door: Option<&Value>, sop: &IncidentSop) -> Markup {
    let visit = d.current_visit();
    html! {
        section.card #visit-head aria-label="The job" data-job-id=(d.job_id) data-state=(d.state.as_str()) {
            p {
                (layout::priority_badge(d.priority.map(wire).as_deref()))
                " " (layout::state_badge(d.state.as_str()))
            }
            p.big-text { (d.site.address) }
            p { "Door: " strong { (d.door.location) }
                @if let Some(door) = door {
                    " · " (layout::words(door["kind"].as_str().unwrap_or("")))
                    @if let Some(m) = door["manufacturer"].as_str() { " · " (m) }
                }
            }
            p.small { (layout::title_case(&d.incident_type)) }
            dl.facts {
                dt { "Response due" } dd { (layout::time(d.sla_due_at)) }
                @if let Some(eta) = visit.and_then(|v| v.eta) { dt { "Your ETA" } dd { (layout::time(Some(eta))) } }
                dt { "On-site contact" }
                dd { (d.contact.name) " " a href=(format!("tel:{}", d.contact.phone)) { (d.contact.phone) } }
            }
            @if d.flags.make_safe_required {
                p.notice.warn role="note" { "Make-safe required: secure the door before you leave it." }
            }
            @if !sop.field.safety.is_empty() {
                details.safety open[matches!(d.state, JobState::Confirmed | JobState::EnRoute)] {
                    summary { "Safety (" (sop.field.safety.len()) ")" }
                    ul { @for step in &sop.field.safety { li { (step) } } }
                }
            }
        }
    }
}

/// The part of the page for the step the visit is at.
fn step(
    d: &JobData,
    sop: &IncidentSop,
    location: SiteLocation,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    let visit = d.current_visit();
    let status = visit.map(|v| v.status);
    let job = d.job_id.as_str();
    html! {
        @match d.state {
            JobState::Offered if status == Some(VisitStatus::Offered) => {
                section.card #answer aria-labelledby="answer-h" {
                    h2 #answer-h { "Your answer" }
                    (answer_forms(job, now))
                }
            }
            JobState::Confirmed | JobState::EnRoute => {
                @if d.state == JobState::Confirmed {
                    section.card #travel aria-labelledby="travel-h" {
                        h2 #travel-h { "Travel" }
                        form.field-action data-command="start_travel" data-job=(job) {
                            button.big type="submit" { "Start travel" }
                        }
                    }
                }
                (check_in(job, location))
                (on_site(d, sop, true))
            }
            JobState::OnSite => { (on_site(d, sop, false)) }
            _ => {
                section.card #done aria-labelledby="done-h" {
                    h2 #done-h { (layout::title_case(d.state.as_str())) }
                    p { (after_visit(d)) }
                    p { a.button href="/ui/field" { "Back to my work" } }
                }
            }
        }
    }
}

/// What the page says once the visit is no longer the technician's to work.
fn after_visit(d: &JobData) -> String {
    match d.state {
        JobState::Cancelled => format!(
            "This job was cancelled ({}). Nothing more to do here; call your dispatcher if you are on site.",
            d.cancel_reason.as_deref().unwrap_or("no reason given")
        ),
        JobState::WorkCompleted | JobState::CloseoutVerified | JobState::BillingReady | JobState::Closed => {
            "You checked out: the work is recorded as completed.".to_string()
        }
        JobState::OnHold => "You checked out; the job is on hold until a return visit is scheduled.".to_string(),
        _ => "This visit is not waiting for you.".to_string(),
    }
}

/// Check in: the phone's location is compared with the site's (here for
/// the technician's information; the service decides and records it).
fn check_in(job: &str, location: SiteLocation) -> Markup {
    html! {
        section.card #checkin aria-labelledby="checkin-h"
            data-site-lat=[location.map(|l| l.0)] data-site-lon=[location.map(|l| l.1)]
            data-radius-m=[location.map(|l| l.2)] {
            h2 #checkin-h { "Check in" }
            @if location.is_some() {
                p.small { "Your location is compared with the site's. Inside the site, you are checked in; elsewhere, say why." }
            }
            form.field-action #checkin-form data-command="check_in" data-job=(job) {
                p #geo-status.small role="status" aria-live="polite" {}
                div #reason-box hidden {
                    label for="checkin-reason" { "Why are you checking in here?" }
                    textarea #checkin-reason name="reason" rows="2" maxlength="2000" {}
                }
                button.big type="submit" { "Check in" }
            }
        }
    }
}

/// The on-site work: checklist, evidence, then check-out.
fn on_site(d: &JobData, sop: &IncidentSop, hidden: bool) -> Markup {
    let job = d.job_id.as_str();
    let have: Vec<&str> = d.evidence.iter().map(|e| e.kind.as_str()).collect();
    html! {
        div #onsite hidden[hidden] data-job=(job) data-evidence=(have.join(" "))
            data-sop=(format!("{}@{}", d.incident_type, sop.field_ref.version)) {
            (checklist(d, sop))
            (evidence(d, sop))
            (check_out(d, sop))
        }
    }
}

/// A value's wire name (how serde writes it).
fn wire(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn result_word(r: ChecklistResult) -> &'static str {
    match r {
        ChecklistResult::Pass => "pass",
        ChecklistResult::Fail => "fail",
        ChecklistResult::Na => "na",
    }
}

/// The SOP's checklist, item by item: pass, fail (with what was found) or
/// N/A, each answer an action of its own.
fn checklist(d: &JobData, sop: &IncidentSop) -> Markup {
    let job = d.job_id.as_str();
    html! {
        section.card #checklist aria-labelledby="checklist-h" {
            h2 #checklist-h { "Checklist" }
            ol.checklist {
                @for item in &sop.field.checklist {
                    @let done = d.checklist.get(&item.id);
                    @let note_id = format!("note-{}", item.id);
                    li.item data-item=(item.id) data-required=(item.required)
                        data-result=(done.map(|e| result_word(e.result)).unwrap_or(""))
                        data-text=(item.text) {
                        p.item-text { (item.text) @if item.required { " " span.req { "(required)" } } }
                        p.item-state.small aria-live="polite" {
                            @if let Some(e) = done { "Recorded: " (result_word(e.result).to_uppercase()) }
                        }
                        form.field-action.answer data-command="complete_checklist_item" data-job=(job) {
                            input type="hidden" name="item_id" value=(item.id);
                            label.sr-only for=(note_id) { "Note for " (item.text) }
                            input id=(note_id) type="text" name="note" maxlength="2000"
                                placeholder="Note (what you found; needed when it fails)"
                                value=[done.and_then(|e| e.note.as_deref())];
                            div.choices.results role="group" aria-label=(format!("Result: {}", item.text)) {
                                button.big.pass type="submit" name="result" value="pass" { "Pass" }
                                button.big.fail type="submit" name="result" value="fail" { "Fail" }
                                button.big.na type="submit" name="result" value="na" { "N/A" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Photos from the camera, other documents, and the signature pad, for
/// the kinds the SOP allows (required ones marked).
fn evidence(d: &JobData, sop: &IncidentSop) -> Markup {
    let job = d.job_id.as_str();
    let allowed = &sop.field.evidence_allowed;
    let required = |k: &EvidenceKind| sop.field.evidence_required.contains(k);
    let label = |k: EvidenceKind| match k {
        EvidenceKind::PhotoBefore => "Before photo",
        EvidenceKind::PhotoAfter => "After photo",
        EvidenceKind::LabelPhoto => "Label photo",
        EvidenceKind::PartsReceipt => "Parts receipt",
        EvidenceKind::DropTestForm => "Drop-test form",
        EvidenceKind::ChecklistForm => "Checklist form",
        EvidenceKind::Signature => "Signature",
        EvidenceKind::Other => "Other document",
    };
    let files: Vec<EvidenceKind> = [
        EvidenceKind::PartsReceipt,
        EvidenceKind::DropTestForm,
        EvidenceKind::Other,
    ]
    .into_iter()
    .filter(|k| allowed.contains(k))
    .collect();
    html! {
        section.card #evidence aria-labelledby="evidence-h" {
            h2 #evidence-h { "Photos and documents" }
            div.photos {
                @for k in PHOTO_KINDS.iter().filter(|k| allowed.contains(k)) {
                    @let id = format!("file-{}", k.as_str());
                    div.photo data-kind=(k.as_str()) {
                        label.button.big for=(id) { "Take " (label(*k).to_lowercase()) @if required(k) { " (required)" } }
                        input.camera id=(id) type="file" accept="image/*" capture="environment" data-kind=(k.as_str()) data-job=(job);
                        p.photo-state.small aria-live="polite" {
                            @if d.has_evidence(*k) { "Recorded." }
                        }
                    }
                }
                @for k in &files {
                    @let id = format!("file-{}", k.as_str());
                    div.photo data-kind=(k.as_str()) {
                        label.button.secondary for=(id) { "Add " (label(*k).to_lowercase()) }
                        input.camera id=(id) type="file" accept="image/*,application/pdf" data-kind=(k.as_str()) data-job=(job);
                        p.photo-state.small aria-live="polite" {}
                    }
                }
            }
            @if allowed.contains(&EvidenceKind::Signature) {
                div.signature #signature data-job=(job) {
                    h3 { "Customer's signature" @if required(&EvidenceKind::Signature) { " (required)" } }
                    p.small #sig-hint { "Ask the customer to sign with a finger inside the box." }
                    canvas #sig-pad width="600" height="220" role="img" aria-label="Signature box" aria-describedby="sig-hint" {}
                    div.choices {
                        button.secondary #sig-clear type="button" { "Clear" }
                        button.big #sig-save type="button" { "Save signature" }
                    }
                    p.sig-state.small aria-live="polite" {
                        @if d.has_evidence(EvidenceKind::Signature) { "Recorded." }
                    }
                }
            }
        }
    }
}

/// What the SOP still misses before a completed check-out, one entry per
/// thing (the script hides an entry once its action is done or queued).
/// A failed item counts as done: check-out records it as a deficiency with
/// the item's note. The checklist form is made from the answers at
/// check-out.
fn missing_list(d: &JobData, sop: &IncidentSop) -> Markup {
    let lacking = d.completion_missing(sop, |_| true);
    let text = |id: &str| {
        sop.field
            .checklist
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.text.clone())
            .unwrap_or_else(|| id.to_string())
    };
    html! {
        div #missing-box {
            h3 #missing-h { "Still needed for a completed check-out" }
            ul #missing aria-labelledby="missing-h" {
                @for m in &lacking {
                    @match m {
                        Missing::ChecklistItem(id) => li data-need=(format!("item:{id}")) { "Checklist: " (text(id)) },
                        Missing::Evidence(EvidenceKind::ChecklistForm) => {},
                        Missing::Evidence(k) => li data-need=(format!("evidence:{}", k.as_str())) { (layout::title_case(k.as_str())) },
                        Missing::MakeSafe => li data-need="make_safe" { "Confirm the make-safe" },
                    }
                }
                li data-need="door_locked_out" hidden { "A completed check-out leaves the door operational or secured, not locked out" }
                @if d.flags.make_safe_required {
                    li data-need="door_secured" hidden { "Make-safe required: leave the door secured or locked out" }
                }
            }
            p #missing-none.ok hidden[!lacking.iter().all(|m| *m == Missing::Evidence(EvidenceKind::ChecklistForm))] {
                "Nothing missing: you can check out as completed."
            }
        }
    }
}

/// Check-out: outcome, how the door was left, make-safe, what was done and
/// the parts used.
fn check_out(d: &JobData, sop: &IncidentSop) -> Markup {
    let job = d.job_id.as_str();
    let outcomes = [
        (CheckOutcome::Completed, "Completed"),
        (CheckOutcome::PartsOnOrder, "Parts on order"),
        (CheckOutcome::ReturnVisit, "Return visit needed"),
        (CheckOutcome::NeedsQuote, "Needs a quote"),
    ];
    let doors = [
        (DoorLeftState::Operational, "Operational"),
        (DoorLeftState::Secured, "Secured (not in use)"),
        (DoorLeftState::LockedOut, "Locked out"),
    ];
    let form_kind = sop
        .field
        .evidence_allowed
        .contains(&EvidenceKind::ChecklistForm)
        && !d.has_evidence(EvidenceKind::ChecklistForm);
    html! {
        section.card #checkout aria-labelledby="checkout-h" {
            h2 #checkout-h { "Check out" }
            (missing_list(d, sop))
            form.field-action #checkout-form data-command="check_out" data-job=(job)
                data-checklist-form=(form_kind) {
                fieldset {
                    legend { "Outcome" }
                    @for (i, (o, text)) in outcomes.iter().enumerate() {
                        label.radio { input type="radio" name="outcome" value=(wire(o)) checked[i == 0] required; " " (text) }
                    }
                }
                fieldset {
                    legend { "The door is left" }
                    @for (i, (o, text)) in doors.iter().enumerate() {
                        label.radio { input type="radio" name="door_left_state" value=(wire(o)) checked[i == 0] required; " " (text) }
                    }
                }
                @if d.flags.make_safe_required {
                    label.radio { input #make-safe type="checkbox" name="make_safe_confirmed" value="true"; " I made the door safe" }
                }
                label for="resolution" { "What was done" }
                textarea #resolution name="resolution" rows="3" maxlength="2000" required {}
                fieldset #parts {
                    legend { "Parts used" }
                    div #part-rows {}
                    template #part-row {
                        div.part-row {
                            label { "Part number" input type="text" name="part_number" maxlength="200" required; }
                            label { "Description" input type="text" name="description" maxlength="2000" required; }
                            label { "Qty" input type="number" name="quantity" min="1" max="10000" value="1" required; }
                            label { "Unit price ($)" input type="number" name="unit_price" min="0" step="0.01" required; }
                            button.secondary.remove-part type="button" { "Remove" }
                        }
                    }
                    button.secondary #add-part type="button" { "Add a part" }
                }
                p #checkout-blocked.notice.warn hidden { "This check-out needs what the list above still shows first." }
                button.big #checkout-button type="submit" aria-describedby="missing-h" { "Check out" }
            }
        }
    }
}
