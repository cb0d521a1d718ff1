//! A door's history (`GET /v1/doors/{door_id}/history`, the
//! `get_door_history` tool, the door's page): the door as the registry has
//! it, its site and customer, then the `door_history` read model's rows of
//! the door, newest first — its own events, the jobs opened at it, and the
//! jobs opened before the registry at its site's `reference` and its `tag`.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::QueryBuilder;

use super::read_models::{check_params, min_position, whole_number};
use super::registry::index;
use super::App;
use crate::domain::registry::{Kind, RegistryError};
use crate::error::{ApiError, Result};

/// The read model's name.
pub const DOOR_HISTORY: &str = "door_history";
/// Rows answered when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most rows one answer carries.
pub const MAX_LIMIT: i64 = 1000;

fn history_limit(params: &HashMap<String, String>) -> Result<i64> {
    Ok(whole_number(params, "limit", 1..=MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT))
}

/// `before`: a row's `global_position`.
fn before(params: &HashMap<String, String>) -> Result<Option<i64>> {
    whole_number(params, "before", 1..=i64::MAX)
}

/// The text a legacy job names a registered door by: the site's
/// `reference` and the door's `tag` (both needed).
fn legacy_key(site: &Value, door: &Value) -> Option<(String, String)> {
    let text = |v: &Value, k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    Some((text(site, "reference")?, text(door, "tag")?))
}

impl App {
    /// A door's history: `limit` (1..1000, default 100), `before` (a row's
    /// `global_position`: the rows before it, for the next page),
    /// `min_position`. Unknown door: `404 not_found`.
    pub async fn door_history(
        &self,
        door_id: &str,
        params: &HashMap<String, String>,
    ) -> Result<Value> {
        check_params(params, &["limit", "before", "min_position"])?;
        let min_position = min_position(params)?;
        let limit = history_limit(params)?;
        let before = before(params)?;
        let (door, site, customer) = {
            let mut conn = self.pool.acquire().await?;
            let door = index::view(&mut conn, Kind::Door, door_id)
                .await?
                .ok_or_else(|| {
                    ApiError::Registry(RegistryError::NotFound {
                        kind: Kind::Door,
                        id: door_id.chars().take(200).collect(),
                    })
                })?;
            let site_id = door["site_id"].as_str().unwrap_or_default().to_string();
            let site = index::view(&mut conn, Kind::Site, &site_id).await?;
            let customer_id = site
                .as_ref()
                .and_then(|s| s["customer_id"].as_str())
                .unwrap_or_default()
                .to_string();
            let customer = index::view(&mut conn, Kind::Customer, &customer_id).await?;
            (door, site, customer)
        };
        let legacy = site.as_ref().and_then(|s| legacy_key(s, &door));
        self.wait_for(DOOR_HISTORY, min_position).await?;
        let id = door_id.to_string();
        let key = legacy.clone();
        let (position, rows) = self
            .query_rows(DOOR_HISTORY, move |table| {
                let mut qb = QueryBuilder::new(format!(
                    "SELECT to_jsonb(t) AS row FROM {table} t WHERE (door_id = "
                ));
                qb.push_bind(id.clone());
                if let Some((site_text, door_text)) = &key {
                    qb.push(" OR (door_id IS NULL AND site_text = ")
                        .push_bind(site_text.clone())
                        .push(" AND door_text = ")
                        .push_bind(door_text.clone())
                        .push(")");
                }
                qb.push(")");
                if let Some(b) = before {
                    qb.push(" AND global_position < ").push_bind(b);
                }
                qb.push(" ORDER BY global_position DESC LIMIT ")
                    .push_bind(limit);
                qb
            })
            .await?;
        let next_before = (rows.len() as i64 == limit)
            .then(|| rows.last().and_then(|r| r["global_position"].as_i64()))
            .flatten();
        Ok(json!({
            "position": position,
            "door": door,
            "site": site,
            "customer": customer,
            "legacy_key": legacy.map(|(s, d)| json!({"site_id": s, "door_id": d})),
            "rows": rows,
            "next_before": next_before,
        }))
    }

    /// What the board page shows of its jobs' doors: per job id, whether it
    /// was opened at a registered door (`door_id`), the maintenance plan
    /// occurrence it does (`planned`), from the jobs' opening rows, and the
    /// door as the registry has it now (`door`: kind, location, status,
    /// retired).
    pub async fn jobs_at_doors(&self, job_ids: &[String]) -> Result<HashMap<String, Value>> {
        if job_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = job_ids.to_vec();
        let (_, rows) = self
            .query_rows(DOOR_HISTORY, move |table| {
                let mut qb = QueryBuilder::new(format!(
                    "SELECT jsonb_build_object('job_id', h.job_id, 'door_id', h.door_id, 'planned', h.detail->'planned', \
                            'door', CASE WHEN r.id IS NOT NULL THEN jsonb_build_object('kind', r.entry->'kind', \
                                'location', r.entry->'location', 'status', r.entry->'status', 'retired', r.retired) END) AS row \
                     FROM {table} h \
                     LEFT JOIN registry_entries r ON r.kind = 'door' AND r.id = h.door_id \
                     WHERE h.event_type = 'JobOpened' AND h.job_id = ANY("
                ));
                qb.push_bind(ids.clone()).push(")");
                qb
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r["job_id"].as_str()?.to_string(), r)))
            .collect())
    }
}
