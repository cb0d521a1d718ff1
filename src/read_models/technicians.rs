//! The technician roster with current load.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};

use super::board::is_active;
use super::jobs::{upsert_rows, JobChange};
use super::Result;
use super::{definition, Definition, EventRow, Projection, ProjectionContext};
use crate::domain::job::Job;
use crate::domain::technician::{Technician, TechnicianEvent};

/// The technicians projection.
pub struct Technicians;

fn active_technician(job: Option<&Job>) -> Option<String> {
    let d = job?.data()?;
    if !d.state.is_open() {
        return None;
    }
    d.current_visit()
        .filter(|v| is_active(v.status))
        .map(|v| v.technician_id.clone())
}

#[async_trait]
impl Projection for Technicians {
    fn definition(&self) -> &Definition {
        definition!("technicians.toml")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        table: &str,
        batch: &[EventRow],
        changes: &[JobChange],
        _: &ProjectionContext,
    ) -> Result<()> {
        // Load deltas from the jobs this batch touched.
        let mut delta: HashMap<String, i64> = HashMap::new();
        let mut position: HashMap<String, i64> = HashMap::new();
        for c in changes {
            let before = active_technician(c.before.as_ref());
            let after = active_technician(Some(&c.after));
            if before != after {
                if let Some(t) = before {
                    *delta.entry(t).or_default() -= 1;
                }
                if let Some(t) = after {
                    *delta.entry(t).or_default() += 1;
                }
            }
        }
        // `last_position` is the technician's own last event: load changes
        // come from job events whose batching varies, and a rebuild must give
        // the same rows as the live model.
        let tech_events: Vec<&EventRow> = batch
            .iter()
            .filter(|e| e.aggregate_type == Technician::TYPE)
            .collect();
        for e in &tech_events {
            position.insert(e.aggregate_id.clone(), e.global_position);
        }
        let mut ids: Vec<String> = position.keys().cloned().collect();
        ids.extend(delta.keys().filter(|k| !position.contains_key(*k)).cloned());
        if ids.is_empty() {
            return Ok(());
        }
        let existing = sqlx::query(&format!(
            "SELECT to_jsonb(t) AS row FROM {table} t WHERE technician_id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut rows: BTreeMap<String, Value> = BTreeMap::new();
        for r in existing {
            let v: Value = r.try_get("row")?;
            rows.insert(
                v["technician_id"].as_str().unwrap_or_default().to_string(),
                v,
            );
        }
        for id in &ids {
            rows.entry(id.clone()).or_insert_with(|| {
                json!({"technician_id": id, "name": null, "skills": [], "certifications": [], "territory": null, "shift": null,
                       "labor_rate_cents": null, "registered": false, "active_load": 0, "last_position": 0})
            });
        }
        for e in tech_events {
            let row = rows.get_mut(&e.aggregate_id).expect("inserted above");
            match e.decode::<TechnicianEvent>()? {
                TechnicianEvent::TechnicianRegistered {
                    name,
                    skills,
                    certifications,
                    territory,
                    shift,
                    labor_rate_cents,
                    ..
                } => {
                    row["name"] = json!(name);
                    row["skills"] = json!(skills);
                    row["certifications"] = json!(certifications);
                    row["territory"] = json!(territory);
                    row["shift"] = json!(shift);
                    row["labor_rate_cents"] = json!(labor_rate_cents);
                    row["registered"] = json!(true);
                }
                TechnicianEvent::SkillsUpdated {
                    skills,
                    certifications,
                } => {
                    row["skills"] = json!(skills);
                    row["certifications"] = json!(certifications);
                }
                TechnicianEvent::ShiftSet { shift } => row["shift"] = json!(shift),
            }
        }
        for (id, d) in delta {
            let row = rows.get_mut(&id).expect("inserted above");
            row["active_load"] = json!(row["active_load"].as_i64().unwrap_or(0) + d);
        }
        for (id, p) in position {
            rows.get_mut(&id).expect("inserted above")["last_position"] = json!(p);
        }
        let rows: Vec<Value> = rows.into_values().collect();
        upsert_rows(conn, table, &["technician_id"], &rows).await
    }
}
