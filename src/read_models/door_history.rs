//! A door's history: one row per thing that happened at a door — its jobs'
//! milestones (opened, offered, accepted, checked in, checked out with the
//! parts and deficiencies, closeout verified, closed, cancelled) and the
//! door's own registry events. A job's rows carry the registered door's id
//! when it was opened at one, and always its site and door as text, so the
//! jobs opened before the registry are found by the site's reference and
//! the door's tag.

use std::collections::HashMap;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::jobs::{upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};
use crate::domain::job::{Job, JobEvent};
use crate::domain::registry::{Door, DoorEvent};

/// The door history projection.
pub struct DoorHistory;

/// What a history row says, before it is keyed to a door.
struct Entry {
    technician_id: Option<String>,
    detail: Value,
}

fn entry(technician_id: Option<&str>, detail: Value) -> Option<Entry> {
    Some(Entry {
        technician_id: technician_id.map(str::to_string),
        detail,
    })
}

/// The history entry of a job event (`None`: not a door's milestone).
fn job_entry(event: JobEvent) -> Option<Entry> {
    match event {
        JobEvent::JobOpened {
            incident_type,
            channel,
            description,
            possible_duplicate_of,
            recall_of,
            planned,
            follow_up_of,
            ..
        } => entry(
            None,
            json!({
                "incident_type": incident_type,
                "channel": channel,
                "description": description,
                "planned": planned,
                "follow_up_of": follow_up_of,
                "recall_of": recall_of,
                "possible_duplicate_of": possible_duplicate_of,
            }),
        ),
        JobEvent::JobOffered {
            visit,
            technician_id,
            ..
        } => entry(Some(&technician_id), json!({"visit": visit})),
        JobEvent::OfferAccepted {
            technician_id, eta, ..
        } => entry(Some(&technician_id), json!({"eta": eta})),
        JobEvent::CheckedIn {
            technician_id,
            method,
            ..
        } => entry(Some(&technician_id), json!({"method": method})),
        JobEvent::CheckedOut {
            technician_id,
            outcome,
            door_left_state,
            resolution,
            parts,
            labor_minutes,
            deficiencies,
            ..
        } => entry(
            Some(&technician_id),
            json!({
                "outcome": outcome,
                "door_left_state": door_left_state,
                "resolution": resolution,
                "parts": parts,
                "labor_minutes": labor_minutes,
                "deficiencies": deficiencies,
            }),
        ),
        JobEvent::CloseoutVerified { items } => entry(None, json!({"items": items})),
        JobEvent::JobLinkedAsDuplicate { duplicate_of } => {
            entry(None, json!({"duplicate_of": duplicate_of}))
        }
        JobEvent::JobReopened { reason } => entry(None, json!({"reason": reason})),
        JobEvent::JobClosed { invoice_number } => {
            entry(None, json!({"invoice_number": invoice_number}))
        }
        JobEvent::JobCancelled { reason, .. } => entry(None, json!({"reason": reason})),
        _ => None,
    }
}

/// The history entry of a door event (all of them are), and the job it names.
fn door_entry(event: DoorEvent) -> (Entry, Option<String>) {
    let (detail, job_id) = match event {
        DoorEvent::DoorRegistered { details, .. } | DoorEvent::DoorUpdated { details } => {
            (json!({ "details": details }), None)
        }
        DoorEvent::DoorMoved {
            from_site_id,
            to_site_id,
            location,
        } => (
            json!({"from_site_id": from_site_id, "to_site_id": to_site_id, "location": location}),
            None,
        ),
        DoorEvent::DoorLabelRecorded {
            fire_rating,
            legible,
            note,
        } => (
            json!({"fire_rating": fire_rating, "legible": legible, "note": note}),
            None,
        ),
        DoorEvent::DoorStatusChanged {
            from,
            to,
            reason,
            job_id,
        } => (
            json!({"from": from, "to": to, "reason": reason, "job_id": job_id}),
            job_id,
        ),
        DoorEvent::DoorRetired { reason } => (json!({ "reason": reason }), None),
    };
    (
        Entry {
            technician_id: None,
            detail,
        },
        job_id,
    )
}

/// The rows a batch adds (one per door milestone, keyed by its position).
fn rows(batch: &[EventRow], changes: &[JobChange]) -> Result<Vec<Value>> {
    let jobs: HashMap<&str, &Job> = changes
        .iter()
        .map(|c| (c.job_id.as_str(), &c.after))
        .collect();
    let mut out = Vec::new();
    for e in batch {
        let row = |door_id: Option<&str>,
                   site: Option<&str>,
                   door: Option<&str>,
                   job: Option<&str>,
                   source: &str,
                   en: Entry| {
            json!({
                "global_position": e.global_position,
                "door_id": door_id,
                "site_text": site,
                "door_text": door,
                "job_id": job,
                "source": source,
                "event_type": e.event_type,
                "at": e.occurred_at,
                "technician_id": en.technician_id,
                "detail": en.detail,
            })
        };
        if e.aggregate_type == Job::TYPE {
            let Some(d) = jobs.get(e.aggregate_id.as_str()).and_then(|j| j.data()) else {
                continue;
            };
            if let Some(en) = job_entry(e.decode::<JobEvent>()?) {
                out.push(row(
                    d.door_id.as_deref(),
                    Some(&d.site.id),
                    Some(&d.door.id),
                    Some(&d.job_id),
                    "job",
                    en,
                ));
            }
        } else if e.aggregate_type == Door::TYPE {
            let (en, job_id) = door_entry(e.decode::<DoorEvent>()?);
            out.push(row(
                Some(&e.aggregate_id),
                None,
                None,
                job_id.as_deref(),
                "door",
                en,
            ));
        }
    }
    Ok(out)
}

#[async_trait]
impl Projection for DoorHistory {
    fn definition(&self) -> &Definition {
        definition!("door_history.toml")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        batch: &[EventRow],
        changes: &[JobChange],
        _: &ProjectionContext,
    ) -> Result<()> {
        let rows = rows(batch, changes)?;
        // Rows are facts of one event each: keyed by its position, so a
        // batch applied again writes the same rows.
        upsert_rows(conn, table, &["global_position"], &rows).await
    }
}
