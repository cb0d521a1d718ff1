//! The deficiency follow-up flow (the fire door deficiency flow), run by
//! the `system` actor from the timers' tick (`src/timers.rs`).
//!
//! When a job at a registered door is checked out with deficiencies, the
//! door is marked `impaired` (`set_door_status`, naming the job) and a
//! follow-up job opens at the same door, linked to the job that found them
//! (`follow_up_of`): `fire_door_deficiency` for a fire door,
//! `automatic_door_malfunction` for an automatic door. Other kinds of door
//! (overhead, dock, storefront) get no follow-up and keep their status:
//! their findings are recorded on the visit and a dispatcher decides.
//! When a follow-up is checked out `completed` with the door left
//! `operational`, the door goes back `in_service` — unless another
//! follow-up at that door is still open (or a finding there still waits
//! for its follow-up); then the last of them to be repaired does it.
//!
//! **Crash-safe, exactly once.** The work is found in a read model
//! (`door_followups`, [`crate::read_models::followups`]), rebuildable; what
//! was done is read from the store, never from that table: a finding is
//! done once its follow-up job exists (its id is derived from the job and
//! the visit), a repair once the system's answer to its key is stored.
//! Each action runs under an idempotency key naming the job and visit, so
//! a crash between the two actions of a finding, a second replica, or a
//! rebuild of the read model replays stored answers and writes nothing
//! twice. The door is marked impaired before the follow-up opens, so a
//! finding is never left with its follow-up open and the door in service.

use serde_json::Value;
use sqlx::Row;

use super::RegistryCommand;
use crate::app::App;
use crate::domain::job::{Channel, Deficiency, JobCommand, OpenJob};
use crate::domain::registry::door::{DoorStatus, SetDoorStatus};
use crate::domain::registry::DoorCommand;
use crate::error::{ApiError, Result};
use crate::timers::{meta, system};

/// Most findings and repairs one tick acts on (each).
pub const MAX_PER_TICK: i64 = 50;

/// The follow-up's incident type for a kind of door (`None`: no follow-up).
pub fn follow_up_type(door_kind: &str) -> Option<&'static str> {
    match door_kind {
        "swinging_fire" | "rolling_fire" => Some("fire_door_deficiency"),
        "automatic_sliding" | "automatic_swing" => Some("automatic_door_malfunction"),
        _ => None,
    }
}

/// The follow-up's description: the finding's job and its deficiencies.
fn describe(job_id: &str, visit: i32, deficiencies: &[Deficiency]) -> String {
    let mut s = format!("Follow-up of job {job_id} (visit {visit}): deficiencies found:");
    for (i, d) in deficiencies.iter().enumerate() {
        s.push_str(&format!("\n{}. {}", i + 1, d.description));
        if let Some(item) = &d.item_id {
            s.push_str(&format!(" [checklist item {item}]"));
        }
        if let Some(action) = &d.corrective_action {
            s.push_str(&format!(" — corrective action: {action}"));
        }
    }
    // Bounded like every description.
    if s.len() > 4000 {
        let mut end = 3990;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …");
    }
    s
}

/// Whether an answer is of an action that wrote events now (not a replay,
/// a refusal, or a status the door already had).
fn acted(result: &Result<crate::app::registry::Reply>) -> bool {
    let Ok(r) = result else { return false };
    !r.is_problem()
        && !r.replayed
        && serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|b| b["events"].as_array().map(|e| !e.is_empty()))
            .unwrap_or(false)
}

async fn set_status(
    app: &App,
    key: String,
    door_id: &str,
    status: DoorStatus,
    job_id: &str,
    reason: String,
) -> Result<crate::app::registry::Reply> {
    app.registry_command(
        &system(),
        &meta(key),
        Some(door_id),
        RegistryCommand::Door(DoorCommand::SetStatus(SetDoorStatus {
            status,
            reason,
            job_id: Some(job_id.to_string()),
        })),
    )
    .await
}

/// Acts on every finding whose follow-up is not open yet and on every
/// repair not yet carried to its door (at most [`MAX_PER_TICK`] each);
/// answers how many of its actions wrote events.
pub async fn tick(app: &App) -> Result<usize> {
    let (table, _) = app.read_model("door_followups").await?;
    Ok(findings(app, &table).await? + repairs(app, &table).await?)
}

async fn findings(app: &App, table: &str) -> Result<usize> {
    let rows = sqlx::query(&format!(
        "SELECT f.job_id, f.visit, f.door_id, f.deficiencies, f.follow_up_id, d.entry->>'kind' AS door_kind \
         FROM {table} f JOIN registry_entries d ON d.kind = 'door' AND d.id = f.door_id \
         WHERE f.kind = 'finding' AND NOT d.retired \
           AND d.entry->>'kind' IN ('swinging_fire', 'rolling_fire', 'automatic_sliding', 'automatic_swing') \
           AND NOT EXISTS (SELECT 1 FROM stream_heads h WHERE h.aggregate_type = 'job' AND h.aggregate_id = f.follow_up_id) \
           AND NOT EXISTS (SELECT 1 FROM idempotency_records r WHERE r.caller = 'system' \
                           AND r.idempotency_key = 'followup:open:' || f.job_id || ':' || f.visit) \
         ORDER BY f.last_position, f.key LIMIT {MAX_PER_TICK}"
    ))
    .fetch_all(&app.pool)
    .await?;
    let mut done = 0;
    for r in rows {
        let job_id: String = r.try_get("job_id")?;
        let visit: i32 = r.try_get("visit")?;
        let door_id: String = r.try_get("door_id")?;
        let follow_up_id: String = r.try_get("follow_up_id")?;
        let kind: String = r.try_get("door_kind")?;
        let deficiencies: Vec<Deficiency> =
            serde_json::from_value(r.try_get::<Value, _>("deficiencies")?).unwrap_or_default();
        let Some(incident_type) = follow_up_type(&kind) else {
            continue;
        };
        let first = deficiencies
            .first()
            .map(|d| d.description.as_str())
            .unwrap_or("deficiency");
        let reason = format!("deficiency found by job {job_id} (visit {visit}): {first}");
        let reason: String = reason.chars().take(900).collect();
        let impaired = set_status(
            app,
            format!("followup:impair:{job_id}:{visit}"),
            &door_id,
            DoorStatus::Impaired,
            &job_id,
            reason,
        )
        .await;
        done += usize::from(acted(&impaired));
        if let Err(e) = &impaired {
            tracing::warn!(job_id, visit, door_id, error = %e, "door not marked impaired; retrying next tick");
            continue;
        }
        let mut conn = app.pool.acquire().await?;
        let contact = super::schedule::site_contact(&mut conn, &door_id).await?;
        drop(conn);
        let open = OpenJob {
            job_id: String::new(),
            incident_type: incident_type.to_string(),
            channel: Channel::MaintenancePlan,
            client_id: String::new(),
            site: Default::default(),
            contact,
            door: Default::default(),
            door_id: Some(door_id.clone()),
            register: None,
            description: describe(&job_id, visit, &deficiencies),
            ifm: None,
            related: Default::default(),
            planned: None,
            follow_up_of: Some(job_id.clone()),
        };
        let opened = app
            .execute_job(
                &system(),
                &meta(format!("followup:open:{job_id}:{visit}")),
                Some(&follow_up_id),
                JobCommand::OpenJob(open),
            )
            .await;
        match &opened {
            Ok(r) if r.is_problem() => {
                tracing::warn!(
                    job_id,
                    visit,
                    door_id,
                    status = r.status,
                    "follow-up refused"
                )
            }
            Err(ApiError::Job(crate::domain::job::JobError::JobAlreadyExists)) => {}
            Err(e) => tracing::warn!(job_id, visit, door_id, error = %e, "follow-up not opened"),
            Ok(_) => {}
        }
        done += usize::from(acted(&opened));
    }
    Ok(done)
}

async fn repairs(app: &App, table: &str) -> Result<usize> {
    // A repair waits while another follow-up at the door is open, or a
    // finding there waits for its follow-up.
    let rows = sqlx::query(&format!(
        "SELECT f.job_id, f.completed_visit, f.door_id FROM {table} f \
         WHERE f.kind = 'follow_up' AND f.completed_visit IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM idempotency_records r WHERE r.caller = 'system' \
                           AND r.idempotency_key = 'followup:restore:' || f.job_id || ':' || f.completed_visit) \
           AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.door_id = f.door_id AND o.kind = 'follow_up' \
                           AND o.completed_visit IS NULL AND o.state NOT IN ('cancelled', 'duplicate', 'closed')) \
           AND NOT EXISTS (SELECT 1 FROM {table} p WHERE p.door_id = f.door_id AND p.kind = 'finding' \
                           AND NOT EXISTS (SELECT 1 FROM stream_heads h WHERE h.aggregate_type = 'job' AND h.aggregate_id = p.follow_up_id) \
                           AND EXISTS (SELECT 1 FROM registry_entries d WHERE d.kind = 'door' AND d.id = p.door_id AND NOT d.retired \
                                       AND d.entry->>'kind' IN ('swinging_fire', 'rolling_fire', 'automatic_sliding', 'automatic_swing'))) \
         ORDER BY f.last_position, f.key LIMIT {MAX_PER_TICK}"
    ))
    .fetch_all(&app.pool)
    .await?;
    let mut done = 0;
    for r in rows {
        let job_id: String = r.try_get("job_id")?;
        let visit: i32 = r.try_get("completed_visit")?;
        let door_id: String = r.try_get("door_id")?;
        let restored = set_status(
            app,
            format!("followup:restore:{job_id}:{visit}"),
            &door_id,
            DoorStatus::InService,
            &job_id,
            format!("repaired by follow-up job {job_id} (visit {visit})"),
        )
        .await;
        if let Err(e) = &restored {
            tracing::warn!(job_id, visit, door_id, error = %e, "door not put back in service");
        }
        done += usize::from(acted(&restored));
    }
    Ok(done)
}
