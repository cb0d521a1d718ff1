//! Helpers shared by projections: folding job states across batches, and
//! bulk upserts through `jsonb_populate_recordset`.

use std::collections::{BTreeMap, HashMap};

use cqrs_es::Aggregate;
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::EventRow;
use super::{ReadModelError, Result};
use crate::domain::job::{Job, JobEvent};

/// A job touched by a batch: as it was before the batch and after it.
#[derive(Debug, Clone)]
pub struct JobChange {
    /// The job.
    pub job_id: String,
    /// Before the batch (`None`: opened in this batch).
    pub before: Option<Job>,
    /// After the batch.
    pub after: Job,
    /// The global position of the batch's last event of this job.
    pub last_position: i64,
}

fn internal(e: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Corrupt(e.to_string())
}

/// Whether a state table keeps its states as `jsonb` (tables made before
/// they were kept as text; they are replaced at their read model's next
/// rebuild). Asked per batch: table names repeat across databases, and one
/// catalog lookup is nothing next to a batch.
async fn state_is_jsonb(conn: &mut PgConnection, state_table: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT atttypid = 'jsonb'::regtype FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'job'",
    )
    .bind(state_table)
    .fetch_one(&mut *conn)
    .await?)
}

/// Loads the stored states of the jobs a batch touches, applies the batch's
/// job events in order, stores the new states, and returns the changes.
pub async fn fold_jobs(
    conn: &mut PgConnection,
    state_table: &str,
    batch: &[EventRow],
) -> Result<Vec<JobChange>> {
    fold_jobs_into(conn, &[state_table], batch).await
}

/// [`fold_jobs`] for read models that stand at the same position: their
/// state tables hold the same states (every one is the fold of the same
/// events), so the states are read from the first, folded once, and the new
/// states written to each.
pub async fn fold_jobs_into(
    conn: &mut PgConnection,
    state_tables: &[&str],
    batch: &[EventRow],
) -> Result<Vec<JobChange>> {
    let Some(first) = state_tables.first() else {
        return Ok(Vec::new());
    };
    let mut order: Vec<String> = Vec::new();
    let mut touched: HashMap<String, (Option<Job>, Job, i64)> = HashMap::new();
    for e in batch.iter().filter(|e| e.aggregate_type == Job::TYPE) {
        if !touched.contains_key(&e.aggregate_id) {
            order.push(e.aggregate_id.clone());
            touched.insert(e.aggregate_id.clone(), (None, Job::default(), 0));
        }
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    // The states travel as JSON text, decoded straight into `Job` (no
    // intermediate `Value`: its allocations were the projectors' largest
    // cost in the service's profile).
    let rows = sqlx::query(&format!(
        "SELECT job_id, job::text AS job FROM {first} WHERE job_id = ANY($1)"
    ))
    .bind(&order)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: String = r.try_get("job_id")?;
        let job: Job = serde_json::from_str(r.try_get::<&str, _>("job")?).map_err(internal)?;
        if let Some(entry) = touched.get_mut(&id) {
            *entry = (Some(job.clone()), job, 0);
        }
    }
    for e in batch.iter().filter(|e| e.aggregate_type == Job::TYPE) {
        let entry = touched.get_mut(&e.aggregate_id).expect("collected above");
        // Exactly-once is the checkpoint's job; this guard only refuses to
        // fold an event the stored state has already seen.
        if (e.sequence as u64) <= entry.1.version {
            continue;
        }
        entry.1.apply(e.decode::<JobEvent>()?);
        entry.2 = e.global_position;
    }
    let ids: Vec<&String> = order.iter().collect();
    let docs: Vec<String> = order
        .iter()
        .map(|id| serde_json::to_string(&touched[id].1))
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    // The new states go over the wire once, into the first table; the
    // others copy them from it inside the server (no second transfer, no
    // second compression of the same documents).
    for (i, state_table) in state_tables.iter().enumerate() {
        let jsonb = state_is_jsonb(conn, state_table).await?;
        let sql = if i == 0 {
            let cast = if jsonb { "::jsonb[]" } else { "" };
            format!(
                "INSERT INTO {state_table} (job_id, job) SELECT * FROM UNNEST($1::text[], $2::text[]{cast}) \
                 ON CONFLICT (job_id) DO UPDATE SET job = EXCLUDED.job"
            )
        } else {
            let cast = if jsonb { "::jsonb" } else { "::text" };
            format!(
                "INSERT INTO {state_table} (job_id, job) SELECT job_id, job{cast} FROM {first} WHERE job_id = ANY($1::text[]) \
                 ON CONFLICT (job_id) DO UPDATE SET job = EXCLUDED.job"
            )
        };
        let q = sqlx::query(&sql).bind(&ids);
        let q = if i == 0 { q.bind(&docs) } else { q };
        q.execute(&mut *conn).await?;
    }
    Ok(order
        .into_iter()
        .map(|id| {
            let (before, after, last_position) = touched.remove(&id).expect("present");
            JobChange {
                job_id: id,
                before,
                after,
                last_position,
            }
        })
        .collect())
}

/// Inserts or updates rows (JSON objects whose keys are all the table's
/// columns) in one statement.
pub async fn upsert_rows(
    conn: &mut PgConnection,
    table: &str,
    key: &[&str],
    rows: &[Value],
) -> Result<()> {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        return Ok(());
    };
    let set: Vec<String> = first
        .keys()
        .filter(|c| !key.contains(&c.as_str()))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let conflict = if set.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", set.join(", "))
    };
    let sql = format!(
        "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1) ON CONFLICT ({}) {conflict}",
        key.join(", ")
    );
    sqlx::query(&sql)
        .bind(Value::Array(rows.to_vec()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes the rows of the given jobs.
pub async fn delete_jobs(conn: &mut PgConnection, table: &str, job_ids: &[String]) -> Result<()> {
    sqlx::query(&format!("DELETE FROM {table} WHERE job_id = ANY($1)"))
        .bind(job_ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Orders rows by key for deterministic comparisons (tests, rebuild checks).
pub fn by_key(rows: Vec<Value>, key: &str) -> BTreeMap<String, Value> {
    rows.into_iter()
        .map(|r| (r.get(key).map(|v| v.to_string()).unwrap_or_default(), r))
        .collect()
}
