//! What a job command needs to know from outside its job's stream, found
//! before the decision (the domain decides without I/O): the jobs at the
//! same door (`open_job`: duplicates and recalls, from `job_doors`), another
//! job a duplicate link names (`resolve_duplicate`, and a `decide_approval`
//! that would carry a link out), the offered technician (`offer_job`) and
//! the uploaded evidence (`attach_evidence`) and, for an `app` check-in at a
//! registered door, where its site is (`check_in`'s geofence).

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use sqlx::{PgConnection, Row};

use crate::app::evidence;
use crate::db::LazyConn;
use crate::domain::geo::{SiteLocation, DEFAULT_RADIUS_M};
use crate::domain::job::{
    ApprovalAction, CheckInMethod, DuplicateTarget, Job, JobCommand, JobState, RecallOf,
    RelatedJobs,
};
use crate::domain::technician::{Technician, TechnicianEvent};
use crate::error::{ApiError, Result};
use crate::store;

/// How long ago a completed job at the same door makes a new one a recall.
const RECALL_WINDOW_DAYS: i64 = 30;

/// Gives `command` (on job `job_id`, as it stands: `job`) the facts it
/// needs. `at`: the decision's time; `uploader`: the caller's key name
/// (evidence is found among its own uploads).
pub(super) async fn gather(
    conn: &mut LazyConn<'_>,
    job_id: &str,
    job: &Job,
    command: &mut JobCommand,
    at: DateTime<Utc>,
    uploader: &str,
) -> Result<()> {
    match command {
        JobCommand::OpenJob(c) => {
            c.job_id = job_id.to_string();
            let conn = conn.get().await?;
            let keys = crate::app::registry::jobs::resolve_door(conn, c).await?;
            // Planned work and follow-ups are the service's own: neither a
            // duplicate of a caller's report nor a recall.
            if c.planned.is_none() && c.follow_up_of.is_none() {
                c.related = related_jobs(conn, &keys, at).await?;
            }
        }
        JobCommand::OfferJob(c) => {
            let (events, _) = store::load_stream::<TechnicianEvent>(
                conn.get().await?,
                Technician::TYPE,
                &c.technician_id,
            )
            .await?;
            let tech = events.into_iter().fold(Technician::default(), |mut t, e| {
                t.apply(e);
                t
            });
            c.technician = tech.data.map(|d| d.profile());
        }
        JobCommand::CheckIn(c) if c.method == CheckInMethod::App => {
            let door = job.data().and_then(|d| d.door_id.as_deref());
            if let Some(door_id) = door {
                c.site_location = site_location(conn.get().await?, door_id).await?;
            }
        }
        JobCommand::AttachEvidence(c) => {
            c.upload = evidence::upload_for(conn.get().await?, &c.sha256, uploader).await?;
            if c.upload.is_none() {
                return Err(ApiError::UnknownEvidence(
                    c.sha256.chars().take(64).collect(),
                ));
            }
        }
        _ => {}
    }
    // A duplicate link sees its target as it is now: the one it names, or
    // (naming none) the job's own candidate; an approval that would carry a
    // link out, the link's target.
    let link = match &*command {
        JobCommand::ResolveDuplicate(c) => c.duplicate_of.clone().or_else(|| {
            job.data()
                .and_then(|d| d.flags.possible_duplicate_of.clone())
        }),
        JobCommand::DecideApproval(c) => job
            .data()
            .and_then(|d| d.approval(&c.approval_id))
            .and_then(|a| match &a.action {
                ApprovalAction::LinkDuplicate { duplicate_of } => Some(duplicate_of.clone()),
                _ => None,
            }),
        _ => None,
    };
    if let Some(target) = link {
        let found = duplicate_target(conn.get().await?, &target).await?;
        match command {
            JobCommand::ResolveDuplicate(c) => c.target = found,
            JobCommand::DecideApproval(c) => c.link_target = found,
            _ => {}
        }
    }
    Ok(())
}

/// The jobs at a door (`job_doors`), newest first, as `open_job` weighs
/// them: the first one still before its work is done is a possible
/// duplicate; the first one completed within [`RECALL_WINDOW_DAYS`] makes
/// the new job a recall of it. A registered door's jobs are found by its
/// id wherever it stood, and with them the jobs opened before the registry
/// under the site's reference and the door's tag.
async fn related_jobs(
    conn: &mut PgConnection,
    keys: &crate::app::registry::jobs::DoorKeys,
    at: DateTime<Utc>,
) -> Result<RelatedJobs> {
    let rows = sqlx::query(
        "SELECT job_id, state, technician_id, completed_at FROM job_doors \
         WHERE ($1::text IS NOT NULL AND door_id = $1) \
            OR (site_id = $2 AND door_id = $3) \
         ORDER BY updated_at DESC",
    )
    .bind(&keys.door_id)
    .bind(&keys.site_text)
    .bind(&keys.door_text)
    .fetch_all(&mut *conn)
    .await?;
    let mut related = RelatedJobs::default();
    for r in rows {
        let id: String = r.try_get("job_id")?;
        let state = JobState::parse(&r.try_get::<String, _>("state")?);
        let completed_at: Option<DateTime<Utc>> = r.try_get("completed_at")?;
        match state {
            Some(s) if s.before_work_completed() && related.open_duplicate_of.is_none() => {
                related.open_duplicate_of = Some(id);
            }
            Some(JobState::Cancelled | JobState::Duplicate) | None => {}
            Some(_) => {
                let recent =
                    completed_at.is_some_and(|t| t > at - Duration::days(RECALL_WINDOW_DAYS));
                if recent && related.recall_of.is_none() {
                    related.recall_of = Some(RecallOf {
                        job_id: id,
                        technician_id: r.try_get("technician_id")?,
                    });
                }
            }
        }
    }
    Ok(related)
}

/// Another job as a duplicate link sees it: open or not, its site and door
/// (`job_doors`); `None` when no such job exists.
async fn duplicate_target(
    conn: &mut PgConnection,
    job_id: &str,
) -> Result<Option<DuplicateTarget>> {
    let row = sqlx::query("SELECT state, site_id, door_id FROM job_doors WHERE job_id = $1")
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let Some(state) = JobState::parse(&r.try_get::<String, _>("state")?) else {
        return Ok(None);
    };
    Ok(Some(DuplicateTarget {
        open: state.is_open(),
        site_id: r.try_get("site_id")?,
        door_id: r.try_get("door_id")?,
    }))
}

/// Where a registered door's site is, as a check-in's geofence sees it
/// (`registry_entries`: the door's site as it stands now, its coordinates
/// and radius); `None` when the site records no coordinates.
async fn site_location(conn: &mut PgConnection, door_id: &str) -> Result<Option<SiteLocation>> {
    let row = sqlx::query(
        "SELECT s.id, s.entry FROM registry_entries d \
         JOIN registry_entries s ON s.kind = 'site' AND s.id = d.site_id \
         WHERE d.kind = 'door' AND d.id = $1",
    )
    .bind(door_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let entry: serde_json::Value = r.try_get("entry")?;
    let (Some(latitude), Some(longitude)) =
        (entry["latitude"].as_f64(), entry["longitude"].as_f64())
    else {
        return Ok(None);
    };
    let radius_m = entry["geofence_radius_m"]
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(DEFAULT_RADIUS_M);
    Ok(Some(SiteLocation {
        site_id: r.try_get("id")?,
        latitude,
        longitude,
        radius_m,
    }))
}
