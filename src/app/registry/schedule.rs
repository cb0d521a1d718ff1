//! The scheduler: the `system` actor opens each maintenance-plan
//! occurrence's job once its lead time has come (`opens_on <= today`, the
//! service clock's UTC date), from the timers' tick (`src/timers.rs`).
//!
//! **Exactly once.** An occurrence's job has one id, derived from the plan,
//! the door and the occurrence's *scheduled* due date
//! ([`Occurrence::job_id`]), and one idempotency key naming the same
//! (`plan:{plan_id}:{door_id}:{due_on}`). The store keeps one stream per
//! id, so whoever opens it first wins and every other attempt — a second
//! replica, a retry after a crash, a tick after the clock went back — is a
//! replay of the stored answer or a refused `open_job` on an existing job:
//! nothing is written twice. A clock that jumps forward opens every
//! occurrence it jumped over (each once); one that goes back opens nothing
//! again, because the jobs exist.
//!
//! **Against a skip or a move.** `skip_occurrence` and `move_occurrence`
//! are refused once an occurrence's job exists; they run under the
//! registry's lock ([`index::lock`]). The scheduler reads the plans and
//! opens their jobs while it holds that lock too, so a skip either comes
//! first (and the occurrence is not opened) or after (and is refused).
//!
//! **Bounded.** At most [`MAX_OPENS_PER_TICK`] jobs per tick; the rest
//! open on the next tick, oldest first.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use cqrs_es::Aggregate;
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::index;
use crate::app::App;
use crate::domain::job::{Channel, Contact, JobCommand, OpenJob, PlannedWork};
use crate::domain::registry::plan::{Occurrence, PlanEvent};
use crate::domain::registry::MaintenancePlan;
use crate::error::Result;
use crate::store;
use crate::timers::{meta, system};

/// Most occurrence jobs one tick opens.
pub const MAX_OPENS_PER_TICK: usize = 50;

/// An occurrence due to open, with what its job needs.
#[derive(Debug, Clone)]
struct Due {
    plan_id: String,
    plan: MaintenancePlan,
    occurrence: Occurrence,
    job_id: String,
}

/// Every active plan, folded from its stream.
async fn active_plans(conn: &mut PgConnection) -> Result<Vec<(String, MaintenancePlan)>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM registry_entries WHERE kind = 'maintenance_plan' AND NOT retired ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut plans = Vec::with_capacity(ids.len());
    for id in ids {
        let (events, _) =
            store::load_stream::<PlanEvent>(&mut *conn, MaintenancePlan::TYPE, &id).await?;
        let plan = events
            .into_iter()
            .fold(MaintenancePlan::default(), |mut p, e| {
                p.apply(e);
                p
            });
        plans.push((id, plan));
    }
    Ok(plans)
}

/// The occurrences that should have their job by `today` and do not yet,
/// oldest first (one query on `stream_heads` for every candidate).
async fn due(conn: &mut PgConnection, today: NaiveDate) -> Result<Vec<Due>> {
    let mut candidates = Vec::new();
    for (plan_id, plan) in active_plans(conn).await? {
        for occurrence in plan.occurrences(today) {
            if occurrence.skipped.is_some() {
                continue;
            }
            let job_id = occurrence.job_id(&plan_id);
            candidates.push(Due {
                plan_id: plan_id.clone(),
                plan: plan.clone(),
                occurrence,
                job_id,
            });
        }
    }
    if candidates.is_empty() {
        return Ok(candidates);
    }
    // A retired door (or one at a retired site) takes no new jobs: its
    // occurrences wait, unopened, until the plan drops it.
    let doors: Vec<String> = candidates
        .iter()
        .map(|c| c.occurrence.door_id.clone())
        .collect();
    let active: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT d.id FROM registry_entries d JOIN registry_entries s ON s.kind = 'site' AND s.id = d.site_id \
         WHERE d.kind = 'door' AND d.id = ANY($1) AND NOT d.retired AND NOT s.retired",
    )
    .bind(&doors)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    candidates.retain(|c| active.contains(&c.occurrence.door_id));
    let ids: Vec<String> = candidates.iter().map(|c| c.job_id.clone()).collect();
    let existing: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM stream_heads WHERE aggregate_type = 'job' AND aggregate_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    candidates.retain(|c| !existing.contains(&c.job_id));
    // An occurrence whose `open_job` was refused for good (its answer is
    // stored under its key, and no job exists) is not retried every tick:
    // the refusal was logged when it happened.
    let keys: Vec<String> = candidates
        .iter()
        .map(|c| occurrence_key(&c.plan_id, &c.occurrence))
        .collect();
    let refused: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM idempotency_records WHERE caller = 'system' AND idempotency_key = ANY($1)",
    )
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    candidates.retain(|c| !refused.contains(&occurrence_key(&c.plan_id, &c.occurrence)));
    candidates.sort_by(|a, b| {
        (a.occurrence.opens_on, a.occurrence.due_on, &a.job_id).cmp(&(
            b.occurrence.opens_on,
            b.occurrence.due_on,
            &b.job_id,
        ))
    });
    Ok(candidates)
}

/// The end of `day` where the door is: midnight after it in the site's
/// time zone (UTC when the zone is unknown), as an instant.
pub fn end_of_day(day: NaiveDate, time_zone: &str) -> DateTime<Utc> {
    let next = day
        .checked_add_days(Days::new(1))
        .unwrap_or(day)
        .and_time(NaiveTime::MIN);
    match time_zone.parse::<chrono_tz::Tz>() {
        // A midnight skipped by a DST change: the first instant after it.
        Ok(tz) => tz
            .from_local_datetime(&next)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(next + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| next.and_utc()),
        Err(_) => next.and_utc(),
    }
}

/// The first contact with a phone among `contacts` (a registry entry's).
fn phone_contact(entry: &Value) -> Option<Contact> {
    entry["contacts"].as_array()?.iter().find_map(|c| {
        let phone = c["phone"].as_str().filter(|p| !p.trim().is_empty())?;
        Some(Contact {
            name: c["name"].as_str().unwrap_or("site contact").to_string(),
            phone: phone.to_string(),
        })
    })
}

/// Who the technician calls at the site: the site's first contact with a
/// phone, else the customer's, else the customer's name with no number
/// (`"not on file"`) — the dispatcher finds one when scheduling.
pub(crate) async fn site_contact(conn: &mut PgConnection, door_id: &str) -> Result<Contact> {
    let row = sqlx::query(
        "SELECT s.entry AS site, c.entry AS customer FROM registry_entries d \
         JOIN registry_entries s ON s.kind = 'site' AND s.id = d.site_id \
         LEFT JOIN registry_entries c ON c.kind = 'customer' AND c.id = s.customer_id \
         WHERE d.kind = 'door' AND d.id = $1",
    )
    .bind(door_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (site, customer): (Value, Value) = match row {
        Some(r) => (
            r.try_get("site")?,
            r.try_get::<Option<Value>, _>("customer")?
                .unwrap_or(Value::Null),
        ),
        None => (Value::Null, Value::Null),
    };
    Ok(phone_contact(&site)
        .or_else(|| phone_contact(&customer))
        .unwrap_or_else(|| Contact {
            name: customer["name"]
                .as_str()
                .or(site["name"].as_str())
                .unwrap_or("site contact")
                .to_string(),
            phone: "not on file".into(),
        }))
}

/// The site's time zone for a door (`UTC` when unknown).
pub(crate) async fn door_time_zone(conn: &mut PgConnection, door_id: &str) -> Result<String> {
    let tz: Option<String> = sqlx::query_scalar(
        "SELECT s.entry->>'time_zone' FROM registry_entries d \
         JOIN registry_entries s ON s.kind = 'site' AND s.id = d.site_id \
         WHERE d.kind = 'door' AND d.id = $1",
    )
    .bind(door_id)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    Ok(tz.unwrap_or_else(|| "UTC".into()))
}

/// The `open_job` of an occurrence.
async fn open_command(conn: &mut PgConnection, d: &Due) -> Result<JobCommand> {
    let details = d.plan.details.as_ref().expect("an active plan has details");
    let door = &d.occurrence.door_id;
    let tz = door_time_zone(conn, door).await?;
    let contact = site_contact(conn, door).await?;
    let moved = if d.occurrence.due != d.occurrence.due_on {
        format!(" (moved from {})", d.occurrence.due_on)
    } else {
        String::new()
    };
    Ok(JobCommand::OpenJob(OpenJob {
        job_id: String::new(),
        incident_type: details.incident_type.clone(),
        channel: Channel::MaintenancePlan,
        client_id: String::new(),
        site: Default::default(),
        contact,
        door: Default::default(),
        door_id: Some(door.clone()),
        register: None,
        description: format!(
            "{}: {} due {}{moved} (maintenance plan {})",
            details.name, details.incident_type, d.occurrence.due, d.plan_id
        ),
        ifm: None,
        related: Default::default(),
        planned: Some(PlannedWork {
            plan_id: d.plan_id.clone(),
            due_on: d.occurrence.due_on,
            priority: details.priority,
            due_at: end_of_day(d.occurrence.due, &tz),
        }),
        follow_up_of: None,
    }))
}

/// The idempotency key of an occurrence's `open_job`.
pub fn occurrence_key(plan_id: &str, o: &Occurrence) -> String {
    format!("plan:{plan_id}:{}:{}", o.door_id, o.due_on)
}

/// Opens the job of every occurrence whose lead time has come and that has
/// none yet (at most [`MAX_OPENS_PER_TICK`]); answers how many it opened.
pub async fn tick(app: &App) -> Result<usize> {
    let caller = &system();
    let today = app.clock.now().date_naive();
    let mut conn = app.pool.acquire().await?;
    // Most ticks find nothing to do: look without the lock first.
    if due(&mut conn, today).await?.is_empty() {
        return Ok(0);
    }
    drop(conn);
    // Hold the registry's lock while the jobs open: a skip or a move of
    // one of these occurrences waits, then finds its job open.
    let mut lock = app.pool.begin().await?;
    index::lock(&mut lock).await?;
    let todo = due(&mut lock, today).await?;
    let mut opened = 0;
    for d in todo.iter().take(MAX_OPENS_PER_TICK) {
        let command = open_command(&mut lock, d).await?;
        let key = occurrence_key(&d.plan_id, &d.occurrence);
        match app
            .execute_job(caller, &meta(key), Some(&d.job_id), command)
            .await
        {
            Ok(reply) if !reply.is_problem() && !reply.replayed => opened += 1,
            Ok(reply) if reply.is_problem() => tracing::warn!(
                plan_id = %d.plan_id,
                door_id = %d.occurrence.door_id,
                due_on = %d.occurrence.due_on,
                status = reply.status,
                "plan occurrence not opened"
            ),
            Ok(_) => {}
            // Another replica opened it between our look and our write.
            Err(crate::error::ApiError::Job(crate::domain::job::JobError::JobAlreadyExists)) => {}
            Err(e) => {
                tracing::warn!(
                    plan_id = %d.plan_id,
                    door_id = %d.occurrence.door_id,
                    due_on = %d.occurrence.due_on,
                    error = %e,
                    "plan occurrence not opened"
                );
            }
        }
    }
    lock.commit().await?;
    Ok(opened)
}
