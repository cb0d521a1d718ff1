//! The registry's reads, from its write-side index (`registry_entries`,
//! [`super::index`]): one entry as shown (a site with its doors, a door with
//! its site, a plan with its coming occurrences), and `find_site`, the
//! fuzzy search the agent uses while a caller describes where they are.
//!
//! The search is PostgreSQL's pg_trgm on `registry_entries.search` (a
//! site's name, address and reference, lowercased): a site matches when
//! the query's trigrams are similar to the whole text (`%`) or to some run
//! of its words (`<%`), both at [`MATCH_THRESHOLD`]; the GIN index of
//! migration 0016 serves both operators. The score is the better of the
//! two similarities, best first.

use chrono::{Duration, NaiveDate};
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};

use super::index;
use crate::app::App;
use crate::domain::registry::{Kind, MaintenancePlan, PlanEvent, RegistryError};
use crate::error::{ApiError, Result};
use crate::store;

/// How similar (0–1) a site's text must be to the query to be found: low
/// enough for "St Marys Hosp" to find "St. Mary's Hospital".
pub const MATCH_THRESHOLD: f64 = 0.3;
/// Results `find_site` answers when the caller names no limit.
pub const DEFAULT_FIND_LIMIT: i64 = 10;
/// The most results `find_site` answers.
pub const MAX_FIND_LIMIT: i64 = 50;
/// The longest query `find_site` takes, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most occurrences a plan's view lists.
const MAX_SHOWN_OCCURRENCES: usize = 200;

fn invalid(field: &str, detail: &str) -> ApiError {
    ApiError::Validation {
        detail: detail.to_string(),
        field: Some(field.to_string()),
    }
}

/// Checks `find_site`'s query and limit: the query 1–200 characters, not
/// blank, no control characters; the limit 1–50 (default 10).
pub fn find_site_params(query: &str, limit: Option<i64>) -> Result<(String, i64)> {
    let q = query.trim();
    if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) {
        return Err(invalid(
            "query",
            "the query must be 1-200 characters without control characters",
        ));
    }
    let limit = limit.unwrap_or(DEFAULT_FIND_LIMIT);
    if !(1..=MAX_FIND_LIMIT).contains(&limit) {
        return Err(invalid(
            "limit",
            "limit must be a whole number from 1 to 50",
        ));
    }
    Ok((q.to_lowercase(), limit))
}

/// A door as listed under its site.
fn door_row(entry: &Value) -> Value {
    json!({
        "door_id": entry["door_id"],
        // A door's details carry its kind of door under `kind`.
        "kind": entry["kind"],
        "location": entry["location"],
        "tag": entry.get("tag").cloned().unwrap_or(Value::Null),
        "status": entry["status"],
        "retired": entry["retired"],
    })
}

/// The doors of some sites, by site id, in id order (`active`: retired
/// ones left out).
async fn doors_of(
    conn: &mut PgConnection,
    site_ids: &[String],
    active: bool,
) -> Result<Vec<(String, Value)>> {
    let rows = sqlx::query(
        "SELECT site_id, entry FROM registry_entries \
         WHERE kind = 'door' AND site_id = ANY($1) AND (NOT $2 OR NOT retired) ORDER BY site_id, id",
    )
    .bind(site_ids)
    .bind(active)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let entry: Value = r.try_get("entry")?;
            Ok((r.try_get("site_id")?, door_row(&entry)))
        })
        .collect()
}

impl App {
    /// `find_site`: active sites whose name, address or reference is like
    /// `query`, best first, each with its active doors.
    pub async fn find_site(&self, query: &str, limit: Option<i64>) -> Result<Value> {
        let (q, limit) = find_site_params(query, limit)?;
        let mut tx = self.pool.begin().await?;
        // The operators' thresholds, for this transaction only.
        sqlx::query(
            "SELECT set_config('pg_trgm.similarity_threshold', $1, true), \
                    set_config('pg_trgm.word_similarity_threshold', $1, true)",
        )
        .bind(MATCH_THRESHOLD.to_string())
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT id, customer_id, entry, \
                    GREATEST(similarity(search, $1), word_similarity($1, search))::float8 AS score \
             FROM registry_entries \
             WHERE kind = 'site' AND NOT retired AND (search % $1 OR $1 <% search) \
             ORDER BY score DESC, id LIMIT $2",
        )
        .bind(&q)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut sites = Vec::with_capacity(rows.len());
        for r in &rows {
            let entry: Value = r.try_get("entry")?;
            let score: f64 = r.try_get("score")?;
            sites.push((r.try_get::<String, _>("id")?, entry, score));
        }
        let ids: Vec<String> = sites.iter().map(|(id, _, _)| id.clone()).collect();
        let doors = doors_of(&mut tx, &ids, true).await?;
        tx.commit().await?;
        let results: Vec<Value> = sites
            .into_iter()
            .map(|(id, e, score)| {
                let site_doors: Vec<&Value> = doors
                    .iter()
                    .filter(|(s, _)| *s == id)
                    .map(|(_, d)| d)
                    .collect();
                json!({
                    "site_id": id,
                    "name": e["name"],
                    "address": e["address"],
                    "customer_id": e["customer_id"],
                    "reference": e.get("reference").cloned().unwrap_or(Value::Null),
                    "score": (score * 1000.0).round() / 1000.0,
                    "doors": site_doors,
                })
            })
            .collect();
        Ok(json!({"query": query.trim(), "sites": results}))
    }

    /// One registry entry as shown (`GET /v1/{customers|sites|doors|
    /// maintenance-plans}/{id}`, `get_door`): a site lists its doors, a
    /// door names its site, a plan lists its occurrences of the coming
    /// year. `not_found` when there is no such entry.
    pub async fn registry_entry(&self, kind: Kind, id: &str) -> Result<Value> {
        let mut conn = self.pool.acquire().await?;
        let Some(mut entry) = index::view(&mut conn, kind, id).await? else {
            return Err(RegistryError::NotFound {
                kind,
                id: id.to_string(),
            }
            .into());
        };
        match kind {
            Kind::Customer => {}
            Kind::Site => {
                let doors = doors_of(&mut conn, &[id.to_string()], false).await?;
                entry["doors"] = doors.into_iter().map(|(_, d)| d).collect();
            }
            Kind::Door => {
                let site_id = entry["site_id"].as_str().unwrap_or_default().to_string();
                entry["site"] = match index::view(&mut conn, Kind::Site, &site_id).await? {
                    Some(s) => json!({
                        "site_id": site_id,
                        "name": s["name"],
                        "address": s["address"],
                        "time_zone": s["time_zone"],
                        "customer_id": s["customer_id"],
                    }),
                    None => Value::Null,
                };
                entry["customer_id"] = entry["site"]["customer_id"].clone();
            }
            Kind::MaintenancePlan => {
                let today = self.clock.now().date_naive();
                entry["occurrences"] = plan_occurrences(&mut conn, id, today).await?.into();
            }
        }
        Ok(entry)
    }
}

/// A plan's occurrences due from a year ago whose job opens within the
/// coming year, each with its job's id and whether that job is open.
async fn plan_occurrences(
    conn: &mut PgConnection,
    plan_id: &str,
    today: NaiveDate,
) -> Result<Vec<Value>> {
    let (events, _) = store::load_stream::<PlanEvent>(conn, MaintenancePlan::TYPE, plan_id).await?;
    let plan = events
        .into_iter()
        .fold(MaintenancePlan::default(), |mut p, e| {
            p.apply(e);
            p
        });
    let since = today - Duration::days(366);
    let mut shown: Vec<_> = plan
        .occurrences(today + Duration::days(366))
        .into_iter()
        .filter(|o| o.due >= since)
        .collect();
    shown.sort_by_key(|o| (o.due, o.door_id.clone()));
    shown.truncate(MAX_SHOWN_OCCURRENCES);
    let job_ids: Vec<String> = shown.iter().map(|o| o.job_id(plan_id)).collect();
    let opened: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM stream_heads WHERE aggregate_type = 'job' AND aggregate_id = ANY($1)",
    )
    .bind(&job_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(shown
        .into_iter()
        .zip(job_ids)
        .map(|(o, job_id)| {
            json!({
                "door_id": o.door_id,
                "due_on": o.due_on,
                "due": o.due,
                "opens_on": o.opens_on,
                "skipped": o.skipped,
                "job_id": job_id,
                "job_opened": opened.contains(&job_id),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_site_params_are_bounded() {
        assert_eq!(
            find_site_params("  St Marys Hosp ", None).unwrap(),
            ("st marys hosp".to_string(), DEFAULT_FIND_LIMIT)
        );
        assert_eq!(find_site_params("x", Some(50)).unwrap().1, 50);
        for (q, limit) in [
            ("", None),
            ("   ", None),
            ("a\u{0}b", None),
            ("ok", Some(0)),
            ("ok", Some(51)),
        ] {
            assert!(find_site_params(q, limit).is_err(), "{q:?} {limit:?}");
        }
        assert!(find_site_params(&"x".repeat(201), None).is_err());
    }
}
