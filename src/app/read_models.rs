//! Queries on the read models (projections): the board, billing readiness,
//! the roster, schedules, approvals. Every answer carries the global position
//! it reflects; `min_position` waits (bounded) until the model has applied it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{Postgres, QueryBuilder, Row};

use super::App;
use crate::domain::job::JobState;
use crate::domain::policy::Priority;
use crate::error::{ApiError, Result};

/// How long `min_position` waits before answering `503 projection_behind`.
pub const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn bad(field: &str, detail: &str) -> ApiError {
    ApiError::Validation {
        detail: detail.to_string(),
        field: Some(field.to_string()),
    }
}

/// The longest text a query parameter may carry (ids, names, incident types),
/// as the OpenAPI document says.
pub const QUERY_TEXT_CHARS: usize = 200;
/// The longest `state` list (job states separated by commas).
pub const QUERY_STATES_CHARS: usize = 300;

/// A text query parameter: at most `max` characters, no control characters
/// (PostgreSQL cannot even store a NUL). Checked before anything is queried.
pub fn query_text<'a>(
    params: &'a HashMap<String, String>,
    name: &str,
    max: usize,
) -> Result<Option<&'a str>> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::Validation {
            detail: format!("{name} must be at most {max} characters"),
            field: Some(name.to_string()),
        }),
        Some(v) if v.chars().any(char::is_control) => {
            Err(bad(name, "control characters are not allowed"))
        }
        Some(v) => Ok(Some(v.as_str())),
    }
}

fn owned(v: Option<&str>) -> Option<String> {
    v.map(str::to_string)
}

pub(crate) fn check_params(params: &HashMap<String, String>, allowed: &[&str]) -> Result<()> {
    for k in params.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(bad(k, "unknown query parameter"));
        }
    }
    Ok(())
}

/// A whole-number query parameter within `range`, if given; otherwise a
/// `validation_error` that says the range in digits.
pub(crate) fn whole_number(
    params: &HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>> {
    params
        .get(name)
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    bad(
                        name,
                        &format!(
                            "{name} must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                })
        })
        .transpose()
}

pub(crate) fn min_position(params: &HashMap<String, String>) -> Result<Option<i64>> {
    whole_number(params, "min_position", 0..=i64::MAX)
}

pub(crate) fn limit(params: &HashMap<String, String>) -> Result<i64> {
    Ok(whole_number(params, "limit", 1..=1000)?.unwrap_or(500))
}

fn bool_param(params: &HashMap<String, String>, name: &str) -> Result<Option<bool>> {
    match params.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(bad(name, "must be true or false")),
    }
}

/// The board's `planned`, `overdue` and `checked_in_off_site` filters:
/// planned work is a maintenance plan's occurrence; overdue, a job past its
/// completion due time whose work is not done (an inspection past its due
/// date); checked in off site, a job whose latest check-in was outside its
/// site's radius or without a position (the job's flag).
fn push_work_filters(
    qb: &mut QueryBuilder<'static, Postgres>,
    (planned, overdue, off_site): (Option<bool>, Option<bool>, Option<bool>),
    now: DateTime<Utc>,
) {
    if let Some(off_site) = off_site {
        qb.push(" AND checked_in_off_site = ").push_bind(off_site);
    }
    match planned {
        Some(true) => qb.push(" AND planned IS NOT NULL"),
        Some(false) => qb.push(" AND planned IS NULL"),
        None => qb,
    };
    let late = "completion_due_at IS NOT NULL AND state IN ('intake', 'triaged', 'offered', 'confirmed', 'en_route', 'on_site', 'on_hold') AND completion_due_at < ";
    match overdue {
        Some(true) => {
            qb.push(format!(" AND {late}")).push_bind(now);
        }
        Some(false) => {
            qb.push(format!(" AND NOT ({late}"))
                .push_bind(now)
                .push(")");
        }
        None => {}
    }
}

fn is_undefined_table(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42P01")
}

impl App {
    /// The serving table of a read model and the position it reflects.
    pub async fn read_model(&self, name: &str) -> Result<(String, i64)> {
        let row = sqlx::query(
            "SELECT r.active_table, c.last_pos FROM projection_registry r JOIN projection_checkpoints c ON c.table_name = r.active_table WHERE r.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok((r.try_get("active_table")?, r.try_get("last_pos")?)),
            None => Err(ApiError::ProjectionBehind {
                wanted: 0,
                position: 0,
            }),
        }
    }

    /// Whether the read model's serving table has applied the event at `position`.
    async fn has_applied(&self, name: &str, position: i64) -> Result<bool> {
        let applied: Option<bool> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events e WHERE e.global_position = $2 AND (e.tx_id, e.global_position) <= (c.last_tx, c.last_pos)) \
             FROM projection_registry r JOIN projection_checkpoints c ON c.table_name = r.active_table WHERE r.name = $1",
        )
        .bind(name)
        .bind(position)
        .fetch_optional(&self.pool)
        .await?;
        Ok(applied.unwrap_or(false))
    }

    /// Whether any event has this global position.
    async fn event_exists(&self, position: i64) -> Result<bool> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE global_position = $1)")
                .bind(position)
                .fetch_one(&self.pool)
                .await?;
        Ok(exists)
    }

    /// Waits until the read model has applied `min_position` (if given).
    pub async fn wait_for(&self, name: &str, min_position: Option<i64>) -> Result<()> {
        let Some(wanted) = min_position else {
            return Ok(());
        };
        if wanted == 0 || self.has_applied(name, wanted).await? {
            return Ok(());
        }
        let behind = |position| ApiError::ProjectionBehind { wanted, position };
        // Positions come from committed commands' answers: one that no event
        // has (past the last, or never used) cannot appear by waiting, so it
        // is answered now rather than after the bound.
        if !self.event_exists(wanted).await? {
            let position = self.read_model(name).await.map(|(_, p)| p).unwrap_or(0);
            return Err(behind(position));
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            if started.elapsed() >= MIN_POSITION_WAIT {
                let position = self.read_model(name).await.map(|(_, p)| p).unwrap_or(0);
                return Err(behind(position));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
            if self.has_applied(name, wanted).await? {
                return Ok(());
            }
        }
    }

    /// Runs `SELECT to_jsonb(t) …` on a read model, retrying once if a
    /// rebuild swapped and dropped the table in between.
    pub(crate) async fn query_rows(
        &self,
        name: &str,
        build: impl Fn(&str) -> QueryBuilder<'static, Postgres>,
    ) -> Result<(i64, Vec<Value>)> {
        for attempt in 0..2 {
            let (table, position) = self.read_model(name).await?;
            let mut qb = build(&table);
            match qb.build().fetch_all(&self.pool).await {
                Ok(rows) => {
                    let rows = rows
                        .into_iter()
                        .map(|r| r.try_get::<Value, _>("row"))
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok((position, rows));
                }
                Err(e) if attempt == 0 && is_undefined_table(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Unavailable)
    }

    /// `GET /v1/board`: `state` (comma list), `priority`, `technician_id`,
    /// `client_id`, `incident_type`, `sla=at_risk|breached`,
    /// `planned=true|false` (a maintenance plan's occurrence or not),
    /// `overdue=true|false` (past its completion due time, work not done),
    /// `checked_in_off_site=true|false` (the latest check-in outside the
    /// site's radius or without a position), `limit`, `min_position`.
    pub async fn board(&self, params: &HashMap<String, String>) -> Result<Value> {
        check_params(
            params,
            &[
                "state",
                "priority",
                "technician_id",
                "client_id",
                "incident_type",
                "sla",
                "planned",
                "overdue",
                "checked_in_off_site",
                "limit",
                "min_position",
            ],
        )?;
        let min_position = min_position(params)?;
        let work = (
            bool_param(params, "planned")?,
            bool_param(params, "overdue")?,
            bool_param(params, "checked_in_off_site")?,
        );
        query_text(params, "state", QUERY_STATES_CHARS)?;
        let filters: Vec<(&'static str, Option<String>)> =
            ["technician_id", "client_id", "incident_type"]
                .into_iter()
                .map(|col| Ok((col, owned(query_text(params, col, QUERY_TEXT_CHARS)?))))
                .collect::<Result<_>>()?;
        let states: Option<Vec<String>> = match params.get("state") {
            None => None,
            Some(s) if s.split(',').count() > JobState::ALL.len() => {
                return Err(bad(
                    "state",
                    &format!("at most {} states", JobState::ALL.len()),
                ))
            }
            Some(s) => Some(
                s.split(',')
                    .map(|x| {
                        JobState::parse(x.trim())
                            .map(|st| st.as_str().to_string())
                            .ok_or_else(|| bad("state", "not a job state"))
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        let priority = match params.get("priority") {
            None => None,
            Some(p) => Some(
                serde_json::from_value::<Priority>(json!(p))
                    .map_err(|_| bad("priority", "must be P1..P4"))?,
            ),
        };
        let sla = match params.get("sla").map(String::as_str) {
            None => None,
            Some(s @ ("at_risk" | "breached")) => Some(s.to_string()),
            Some(_) => return Err(bad("sla", "must be at_risk or breached")),
        };
        let limit = limit(params)?;
        self.wait_for("board", min_position).await?;
        let now = self.clock.now();
        let horizon = now + chrono::Duration::minutes(self.policy.at_risk_minutes.into());
        let (position, rows) = self
            .query_rows("board", move |table| {
                let mut qb = QueryBuilder::new(format!("SELECT to_jsonb(t) AS row FROM {table} t WHERE true"));
                match &states {
                    Some(s) => {
                        qb.push(" AND state = ANY(").push_bind(s.clone()).push(")");
                    }
                    None => {
                        qb.push(" AND state NOT IN ('closed', 'cancelled', 'duplicate')");
                    }
                }
                if let Some(pr) = priority {
                    qb.push(" AND priority = ").push_bind(pr.as_str());
                }
                for (col, value) in &filters {
                    if let Some(v) = value {
                        qb.push(format!(" AND {col} = ")).push_bind(v.clone());
                    }
                }
                match sla.as_deref() {
                    Some("at_risk") => {
                        qb.push(" AND NOT checked_in AND sla_due_at IS NOT NULL AND sla_due_at <= ").push_bind(horizon);
                    }
                    Some(_) => {
                        qb.push(" AND (jsonb_array_length(flags->'sla_breached') > 0 OR (NOT checked_in AND sla_due_at < ").push_bind(now).push("))");
                    }
                    None => {}
                }
                push_work_filters(&mut qb, work, now);
                qb.push(" ORDER BY priority NULLS LAST, sla_due_at NULLS LAST, opened_at LIMIT ").push_bind(limit);
                qb
            })
            .await?;
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|mut r| {
                let due = r["sla_due_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc));
                let open = JobState::parse(r["state"].as_str().unwrap_or(""))
                    .is_some_and(|s| s.before_work_completed());
                let waiting = open && !r["checked_in"].as_bool().unwrap_or(false);
                r["sla_remaining_seconds"] =
                    json!(due.filter(|_| waiting).map(|d| (d - now).num_seconds()));
                r["sla_at_risk"] = json!(waiting && due.is_some_and(|d| d <= horizon));
                let completion_due = r["completion_due_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
                r["overdue"] = json!(open && completion_due.is_some_and(|d| d < now));
                r
            })
            .collect();
        Ok(json!({"position": position, "as_of": now, "rows": rows}))
    }

    /// `GET /v1/billing/readiness`: `ready`, `job_id`, `client_id`, `include_final`, `limit`, `min_position`.
    pub async fn billing_readiness(&self, params: &HashMap<String, String>) -> Result<Value> {
        check_params(
            params,
            &[
                "ready",
                "job_id",
                "client_id",
                "include_final",
                "limit",
                "min_position",
            ],
        )?;
        let min_position = min_position(params)?;
        let filters: Vec<(&'static str, Option<String>)> = ["job_id", "client_id"]
            .into_iter()
            .map(|col| Ok((col, owned(query_text(params, col, QUERY_TEXT_CHARS)?))))
            .collect::<Result<_>>()?;
        let ready = bool_param(params, "ready")?;
        let include_final =
            bool_param(params, "include_final")?.unwrap_or(false) || params.contains_key("job_id");
        let limit = limit(params)?;
        self.wait_for("billing_readiness", min_position).await?;
        let (position, rows) = self
            .query_rows("billing_readiness", move |table| {
                let mut qb = QueryBuilder::new(format!(
                    "SELECT to_jsonb(t) AS row FROM {table} t WHERE true"
                ));
                if let Some(r) = ready {
                    qb.push(" AND ready = ").push_bind(r);
                }
                if !include_final {
                    qb.push(" AND state NOT IN ('closed', 'cancelled', 'duplicate')");
                }
                for (col, value) in &filters {
                    if let Some(v) = value {
                        qb.push(format!(" AND {col} = ")).push_bind(v.clone());
                    }
                }
                qb.push(" ORDER BY ready DESC, job_id LIMIT ")
                    .push_bind(limit);
                qb
            })
            .await?;
        Ok(json!({"position": position, "rows": rows}))
    }

    /// `GET /v1/technicians`: `eligible_for` (incident type), `territory`, `shift`, `min_position`.
    pub async fn technicians(&self, params: &HashMap<String, String>) -> Result<Value> {
        check_params(
            params,
            &["eligible_for", "territory", "shift", "min_position"],
        )?;
        let min_position = min_position(params)?;
        let territory = owned(query_text(params, "territory", QUERY_TEXT_CHARS)?);
        let shift = match params.get("shift").map(String::as_str) {
            None => None,
            Some(s @ ("available" | "on_call" | "off")) => Some(s.to_string()),
            Some(_) => return Err(bad("shift", "must be available, on_call or off")),
        };
        let sop = match query_text(params, "eligible_for", QUERY_TEXT_CHARS)? {
            None => None,
            Some(t) => Some(self.sop_for(t, "eligible_for")?.clone()),
        };
        self.wait_for("technicians", min_position).await?;
        let (position, rows) = self
            .query_rows("technicians", move |table| {
                let mut qb = QueryBuilder::new(format!(
                    "SELECT to_jsonb(t) AS row FROM {table} t WHERE registered"
                ));
                for (col, value) in [("territory", &territory), ("shift", &shift)] {
                    if let Some(v) = value {
                        qb.push(format!(" AND {col} = ")).push_bind(v.clone());
                    }
                }
                qb.push(" ORDER BY active_load, technician_id");
                qb
            })
            .await?;
        let today = self.clock.now().date_naive();
        let rows: Vec<Value> = rows
            .into_iter()
            .filter_map(|mut r| {
                let available = matches!(r["shift"].as_str(), Some("available" | "on_call"));
                r["available"] = json!(available);
                if let Some(sop) = &sop {
                    let skills: Vec<&str> = r["skills"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let certs: Vec<(String, String)> = r["certifications"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|c| {
                                    (
                                        c["name"].as_str().unwrap_or("").to_string(),
                                        c["expires_on"].as_str().unwrap_or("").to_string(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let has_skills = sop
                        .intake
                        .required_skills
                        .iter()
                        .all(|s| skills.contains(&s.as_str()));
                    let has_certs = sop.intake.required_certifications.iter().all(|need| {
                        certs.iter().any(|(n, exp)| {
                            n == need
                                && chrono::NaiveDate::parse_from_str(exp, "%Y-%m-%d")
                                    .is_ok_and(|d| d >= today)
                        })
                    });
                    if !(has_skills && has_certs) {
                        return None;
                    }
                    r["eligible"] = json!(available);
                }
                Some(r)
            })
            .collect();
        Ok(json!({"position": position, "rows": rows}))
    }

    /// `GET /v1/technicians/{id}/schedule`.
    pub async fn schedule(
        &self,
        technician_id: &str,
        params: &HashMap<String, String>,
    ) -> Result<Value> {
        check_params(params, &["min_position"])?;
        self.wait_for("technician_schedule", min_position(params)?)
            .await?;
        // An id no technician can have has no visits (and is not sent to the database).
        let id = super::storable_id(technician_id).then(|| technician_id.to_string());
        let (position, rows) = self
            .query_rows("technician_schedule", move |table| {
                let mut qb = QueryBuilder::new(format!(
                    "SELECT to_jsonb(t) AS row FROM {table} t WHERE technician_id = "
                ));
                qb.push_bind(id.clone())
                    .push(" ORDER BY eta NULLS LAST, offered_at");
                qb
            })
            .await?;
        Ok(json!({"position": position, "technician_id": technician_id, "visits": rows}))
    }

    /// `GET /v1/approvals`: `status` (pending, granted, rejected, moot), `job_id`, `min_position`.
    pub async fn approvals(&self, params: &HashMap<String, String>) -> Result<Value> {
        check_params(params, &["status", "job_id", "limit", "min_position"])?;
        let min_position = min_position(params)?;
        let job = owned(query_text(params, "job_id", QUERY_TEXT_CHARS)?);
        let status = match params.get("status").map(String::as_str) {
            None => None,
            Some(s @ ("pending" | "granted" | "rejected" | "moot")) => Some(s.to_string()),
            Some(_) => return Err(bad("status", "must be pending, granted, rejected or moot")),
        };
        let limit = limit(params)?;
        self.wait_for("approvals", min_position).await?;
        let (position, rows) = self
            .query_rows("approvals", move |table| {
                let mut qb = QueryBuilder::new(format!(
                    "SELECT to_jsonb(t) AS row FROM {table} t WHERE true"
                ));
                if let Some(s) = &status {
                    qb.push(" AND status = ").push_bind(s.clone());
                }
                if let Some(j) = &job {
                    qb.push(" AND job_id = ").push_bind(j.clone());
                }
                qb.push(" ORDER BY requested_at, approval_id LIMIT ")
                    .push_bind(limit);
                qb
            })
            .await?;
        Ok(json!({"position": position, "rows": rows}))
    }

    /// `GET /v1/projections`.
    pub async fn projections_status(&self) -> Result<Value> {
        Ok(json!({"projections": crate::read_models::runtime::status(&self.pool).await?}))
    }
}
