//! The field: offers and their answers, travel, check-in, the checklist,
//! evidence, check-out and return visits. One function per command, named
//! after its wire name; then how the field's events change the job
//! ([`apply`]).

use super::*;
use crate::domain::actor::Role;
use crate::domain::job::commands::*;
use crate::domain::job::errors::JobError;
use crate::domain::job::events::JobEvent;
use crate::domain::job::state::{
    ChecklistEntry, EvidenceRef, JobState, Missing, Visit, VisitStatus,
};
use crate::domain::money::round_up_minutes;
use crate::domain::technician::Shift;

/// `offer_job` (the state machine's row in `transitions.rs`): JobOffered —
/// technician qualified and available.
pub(in crate::domain::job) fn offer_job(cx: &Ctx<'_>, c: &OfferJob) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let at = cx.at;
    let svc = cx.svc;
    let name = "offer_job";
    require(job, name, &[JobState::Triaged])?;
    let tech = c
        .technician
        .as_ref()
        .ok_or_else(|| JobError::UnknownTechnician(c.technician_id.clone()))?;
    let today = at.date_naive();
    let mut missing: Vec<String> = sop
        .intake
        .required_skills
        .iter()
        .filter(|s| !tech.skills.contains(s))
        .cloned()
        .collect();
    for cert in &sop.intake.required_certifications {
        let valid = tech
            .certifications
            .iter()
            .any(|(n, exp)| n == cert && *exp >= today);
        if !valid {
            missing.push(cert.clone());
        }
    }
    if !missing.is_empty() {
        return Err(JobError::TechnicianNotQualified { missing });
    }
    if !tech.active || tech.shift == Shift::Off {
        return Err(JobError::TechnicianUnavailable {
            shift: tech.shift,
            active: tech.active,
        });
    }
    let priority = job.priority.unwrap_or(sop.intake.default_priority);
    Ok(vec![JobEvent::JobOffered {
        visit: job.visits.len() as u32 + 1,
        technician_id: tech.technician_id.clone(),
        labor_rate_cents: tech.labor_rate_cents,
        offered_at: at,
        ack_due_at: at + svc.policy.ack_window(priority),
        preferred: job.flags.preferred_technician_id.as_deref()
            == Some(tech.technician_id.as_str()),
    }])
}

/// `accept_offer` (the state machine's row in `transitions.rs`): OfferAccepted
/// — the offered technician; ETA.
pub(in crate::domain::job) fn accept_offer(cx: &Ctx<'_>, c: &AcceptOffer) -> Decided {
    let job = cx.job;
    let at = cx.at;
    let name = "accept_offer";
    require(job, name, &[JobState::Offered])?;
    let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
    if c.eta < at {
        return Err(JobError::Validation {
            field: "eta".into(),
            problem: "must not be in the past",
        });
    }
    Ok(vec![JobEvent::OfferAccepted {
        technician_id: visit.technician_id.clone(),
        eta: c.eta,
        eta_beyond_sla: job.sla_due_at.is_some_and(|due| c.eta > due),
    }])
}

/// `decline_offer` (the state machine's row in `transitions.rs`): OfferDeclined
/// — the offered technician; reason.
pub(in crate::domain::job) fn decline_offer(cx: &Ctx<'_>, c: &DeclineOffer) -> Decided {
    let job = cx.job;
    let name = "decline_offer";
    require(job, name, &[JobState::Offered])?;
    check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
    let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
    Ok(vec![JobEvent::OfferDeclined {
        technician_id: visit.technician_id.clone(),
        reason: c.reason.clone(),
    }])
}

/// `expire_offer` (the state machine's row in `transitions.rs`): OfferExpired —
/// system; acknowledgement window passed.
pub(in crate::domain::job) fn expire_offer(cx: &Ctx<'_>) -> Decided {
    let job = cx.job;
    let cmd = cx.cmd;
    let at = cx.at;
    let name = "expire_offer";
    if cmd.by.role != Role::System {
        return Err(JobError::Forbidden);
    }
    require(job, name, &[JobState::Offered])?;
    let visit = job.current_visit().ok_or(JobError::OfferNotExpired)?;
    if at < visit.ack_due_at {
        return Err(JobError::OfferNotExpired);
    }
    Ok(vec![JobEvent::OfferExpired {
        technician_id: visit.technician_id.clone(),
    }])
}

/// `start_travel` (the state machine's row in `transitions.rs`): TravelStarted
/// — the assigned technician.
pub(in crate::domain::job) fn start_travel(cx: &Ctx<'_>) -> Decided {
    let job = cx.job;
    let at = cx.at;
    let name = "start_travel";
    require(job, name, &[JobState::Confirmed])?;
    let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
    Ok(vec![JobEvent::TravelStarted {
        technician_id: visit.technician_id.clone(),
        at,
    }])
}

/// `check_in` (the state machine's row in `transitions.rs`): CheckedIn — the
/// assigned technician; `app` at a located site: inside its radius, or a
/// reason.
///
/// The geofence applies to the `app` method only: IVR and the agent's
/// relay carry no position of the technician's own. A site without
/// coordinates, or a job at a free-text door, has no `site_location` and
/// no geofence.
pub(in crate::domain::job) fn check_in(cx: &Ctx<'_>, c: &CheckIn) -> Decided {
    let job = cx.job;
    let at = cx.at;
    let name = "check_in";
    require(job, name, &[JobState::Confirmed, JobState::EnRoute])?;
    let position = check_position(c)?;
    check_opt_text("reason", &c.reason)?;
    let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
    let geofence = match (c.method, &c.site_location) {
        (CheckInMethod::App, Some(site)) => Some(site.judge(position)),
        _ => None,
    };
    if let Some(g) = geofence.as_ref().filter(|g| g.off_site()) {
        if c.reason.is_none() {
            return Err(JobError::CheckInReasonRequired {
                distance_m: g.distance_m,
                radius_m: g.radius_m,
            });
        }
    }
    Ok(vec![JobEvent::CheckedIn {
        technician_id: visit.technician_id.clone(),
        method: c.method,
        lat: c.lat,
        lon: c.lon,
        at,
        geofence,
        reason: c.reason.clone(),
        accuracy_m: c.accuracy_m,
    }])
}

/// A check-in's position, `(lat, lon)`: both in range and given together,
/// or neither; the accuracy in range.
fn check_position(c: &CheckIn) -> Result<Option<(f64, f64)>, JobError> {
    let bad = |field: &str, problem| {
        Err(JobError::Validation {
            field: field.into(),
            problem,
        })
    };
    if c.lat.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
        return bad("lat", "must be within -90..90");
    }
    if c.lon.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        return bad("lon", "must be within -180..180");
    }
    if c.accuracy_m
        .is_some_and(|v| !(0.0..=crate::domain::geo::MAX_ACCURACY_M).contains(&v))
    {
        return bad("accuracy_m", "must be within 0..100000");
    }
    match (c.lat, c.lon) {
        (Some(lat), Some(lon)) => Ok(Some((lat, lon))),
        (None, None) => Ok(None),
        (None, Some(_)) => bad("lat", "give both lat and lon, or neither"),
        (Some(_), None) => bad("lon", "give both lat and lon, or neither"),
    }
}

/// `complete_checklist_item` (the state machine's row in `transitions.rs`):
/// ChecklistItemCompleted — item from the field SOP.
pub(in crate::domain::job) fn complete_checklist_item(
    cx: &Ctx<'_>,
    c: &CompleteChecklistItem,
) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let name = "complete_checklist_item";
    require(job, name, &[JobState::OnSite])?;
    check_opt_text("note", &c.note)?;
    if !sop.field.checklist.iter().any(|i| i.id == c.item_id) {
        return Err(JobError::UnknownChecklistItem(c.item_id.clone()));
    }
    Ok(vec![JobEvent::ChecklistItemCompleted {
        item_id: c.item_id.clone(),
        result: c.result,
        note: c.note.clone(),
    }])
}

/// `attach_evidence` (the state machine's row in `transitions.rs`):
/// EvidenceAttached — kind from the SOP; content uploaded.
pub(in crate::domain::job) fn attach_evidence(cx: &Ctx<'_>, c: &AttachEvidence) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let name = "attach_evidence";
    require_open(job, name)?;
    check_opt_text("note", &c.note)?;
    let hex_ok = c.sha256.len() == 64
        && c.sha256
            .chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase());
    if !hex_ok {
        return Err(JobError::Validation {
            field: "sha256".into(),
            problem: "must be 64 lowercase hex digits",
        });
    }
    if !sop.field.evidence_allowed.contains(&c.kind) {
        return Err(JobError::EvidenceKindNotAllowed(c.kind));
    }
    Ok(vec![JobEvent::EvidenceAttached {
        kind: c.kind,
        sha256: c.sha256.clone(),
        note: c.note.clone(),
        content_type: c.upload.as_ref().map(|u| u.content_type.clone()),
        uploaded_by: c.upload.as_ref().map(|u| u.uploaded_by.clone()),
    }])
}

/// `check_out` (the state machine's row in `transitions.rs`): completed:
/// CheckedOut — checklist, evidence, make-safe, door state;
/// parts_on_order|return_visit|needs_quote: CheckedOut — unsafe door secured or
/// locked out.
pub(in crate::domain::job) fn check_out(cx: &Ctx<'_>, c: &CheckOut) -> Decided {
    let job = cx.job;
    let sop = cx.sop;
    let at = cx.at;
    let name = "check_out";
    require(job, name, &[JobState::OnSite])?;
    check_text("resolution", &c.resolution, MAX_TEXT_BYTES)?;
    for (i, p) in c.parts.iter().enumerate() {
        check_text(
            &format!("parts[{i}].part_number"),
            &p.part_number,
            MAX_ID_BYTES,
        )?;
        check_text(
            &format!("parts[{i}].description"),
            &p.description,
            MAX_TEXT_BYTES,
        )?;
        check_cents(&format!("parts[{i}].unit_price_cents"), p.unit_price_cents)?;
        if !(1..=10_000).contains(&p.quantity) {
            return Err(JobError::Validation {
                field: format!("parts[{i}].quantity"),
                problem: "must be 1..10000",
            });
        }
    }
    if c.deficiencies.len() > 100 {
        return Err(JobError::Validation {
            field: "deficiencies".into(),
            problem: "at most 100 entries",
        });
    }
    for (i, d) in c.deficiencies.iter().enumerate() {
        check_text(
            &format!("deficiencies[{i}].description"),
            &d.description,
            MAX_TEXT_BYTES,
        )?;
        check_opt_text(&format!("deficiencies[{i}].item_id"), &d.item_id)?;
        check_opt_text(
            &format!("deficiencies[{i}].corrective_action"),
            &d.corrective_action,
        )?;
    }
    let make_safe_confirmed = c.make_safe_confirmed.unwrap_or(false);
    if c.outcome == CheckOutcome::Completed {
        let found = |id: &str| {
            c.deficiencies
                .iter()
                .any(|d| d.item_id.as_deref() == Some(id))
        };
        let lacking = job.completion_missing(sop, found);
        let mut missing: Vec<String> = lacking
            .iter()
            .filter(|m| **m != Missing::MakeSafe)
            .map(Missing::wire)
            .collect();
        if c.door_left_state == DoorLeftState::LockedOut {
            missing.push("door_left_state".into());
        }
        if lacking.contains(&Missing::MakeSafe) && !make_safe_confirmed {
            missing.push(Missing::MakeSafe.wire());
        }
        if !missing.is_empty() {
            return Err(JobError::MissingFieldEvidence { missing });
        }
    } else if job.flags.make_safe_required && c.door_left_state == DoorLeftState::Operational {
        return Err(JobError::DoorNotSecured);
    }
    let visit = job.current_visit().ok_or(JobError::NotYourJob)?;
    let checked_in = visit.checked_in_at.unwrap_or(at);
    let seconds = (at - checked_in).num_seconds().max(0);
    let minutes = round_up_minutes((seconds + 59) / 60, sop.closeout.labor_increment_minutes);
    Ok(vec![JobEvent::CheckedOut {
        technician_id: visit.technician_id.clone(),
        outcome: c.outcome,
        door_left_state: c.door_left_state,
        make_safe_confirmed,
        resolution: c.resolution.clone(),
        parts: c.parts.clone(),
        at,
        labor_minutes: minutes,
        deficiencies: c.deficiencies.clone(),
    }])
}

/// `schedule_return_visit` (the state machine's row in `transitions.rs`):
/// ReturnVisitScheduled — needs-quote: quote approved.
pub(in crate::domain::job) fn schedule_return_visit(
    cx: &Ctx<'_>,
    c: &ScheduleReturnVisit,
) -> Decided {
    let job = cx.job;
    let name = "schedule_return_visit";
    require(job, name, &[JobState::OnHold])?;
    check_opt_text("reason", &c.reason)?;
    if job.flags.hold_reason == Some(CheckOutcome::NeedsQuote) && !job.flags.quote_approved {
        return Err(JobError::QuoteNotApproved);
    }
    Ok(vec![JobEvent::ReturnVisitScheduled {
        reason: c.reason.clone(),
    }])
}

/// How the field's events change the job (never fails: events are facts):
/// [`Job::apply`](crate::domain::job::Job) routes only them here.
pub(in crate::domain::job) fn apply(job: &mut JobData, event: JobEvent) {
    match event {
        JobEvent::JobOffered {
            visit,
            technician_id,
            labor_rate_cents,
            offered_at,
            ack_due_at,
            preferred,
        } => {
            job.state = JobState::Offered;
            job.visits.push(Visit::offered(
                visit,
                technician_id,
                labor_rate_cents,
                offered_at,
                ack_due_at,
                preferred,
            ));
            job.checklist.clear();
        }
        JobEvent::OfferAccepted {
            eta,
            eta_beyond_sla,
            ..
        } => {
            job.state = JobState::Confirmed;
            job.flags.eta_beyond_sla = eta_beyond_sla;
            if let Some(v) = job.current_visit_mut() {
                v.status = VisitStatus::Confirmed;
                v.eta = Some(eta);
            }
        }
        JobEvent::OfferDeclined { reason, .. } => {
            job.state = JobState::Triaged;
            if let Some(v) = job.current_visit_mut() {
                v.status = VisitStatus::Declined;
                v.decline_reason = Some(reason);
            }
        }
        JobEvent::OfferExpired { .. } => {
            job.state = JobState::Triaged;
            if let Some(v) = job.current_visit_mut() {
                v.status = VisitStatus::Expired;
            }
        }
        JobEvent::TravelStarted { at, .. } => {
            job.state = JobState::EnRoute;
            if let Some(v) = job.current_visit_mut() {
                v.status = VisitStatus::EnRoute;
                v.travel_started_at = Some(at);
            }
        }
        e @ JobEvent::CheckedIn { .. } => checked_in(job, e),
        JobEvent::ChecklistItemCompleted {
            item_id,
            result,
            note,
        } => {
            job.checklist
                .insert(item_id, ChecklistEntry { result, note });
        }
        JobEvent::EvidenceAttached {
            kind,
            sha256,
            note,
            content_type,
            uploaded_by,
        } => {
            job.evidence.push(EvidenceRef {
                kind,
                sha256,
                note,
                content_type,
                uploaded_by,
            });
        }
        JobEvent::CheckedOut {
            outcome,
            door_left_state,
            resolution,
            parts,
            at,
            labor_minutes,
            deficiencies,
            ..
        } => {
            if outcome == CheckOutcome::Completed {
                job.state = JobState::WorkCompleted;
                job.flags.hold_reason = None;
            } else {
                job.state = JobState::OnHold;
                job.flags.hold_reason = Some(outcome);
                job.flags.quote_approved = false;
            }
            if let Some(v) = job.current_visit_mut() {
                v.status = VisitStatus::CheckedOut;
                v.checked_out_at = Some(at);
                v.outcome = Some(outcome);
                v.door_left_state = Some(door_left_state);
                v.resolution = Some(resolution);
                v.parts = parts;
                v.labor_minutes = labor_minutes;
                v.deficiencies = deficiencies;
            }
        }
        JobEvent::ReturnVisitScheduled { .. } => {
            job.state = JobState::Triaged;
            job.flags.hold_reason = None;
        }
        _ => {}
    }
}

/// What `CheckedIn` does to the job: on site, the visit's check-in (with
/// its geofence and reason) and the off-site flag of the latest check-in.
fn checked_in(job: &mut JobData, event: JobEvent) {
    let JobEvent::CheckedIn {
        method,
        at,
        geofence,
        reason,
        accuracy_m,
        ..
    } = event
    else {
        return;
    };
    job.state = JobState::OnSite;
    job.flags.checked_in_off_site = geofence.as_ref().is_some_and(|g| g.off_site());
    if let Some(v) = job.current_visit_mut() {
        v.status = VisitStatus::OnSite;
        v.checked_in_at = Some(at);
        v.check_in_method = Some(method);
        v.check_in_geofence = geofence;
        v.check_in_reason = reason;
        v.check_in_accuracy_m = accuracy_m;
    }
}
