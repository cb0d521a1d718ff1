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

/// A touched job while its batch is folded.
struct Folding {
    /// Its sequence just before its first event in the batch: the state
    /// the batch starts from (0: opened in the batch).
    before_seq: i64,
    /// The state, first as stored (a snapshot), then as of `before_seq`,
    /// then after the batch.
    state: Job,
    /// The state before the batch, once known.
    before: Option<Job>,
    /// The global position of the batch's last event of the job.
    last_position: i64,
}

/// Loads the stored states of the jobs a batch touches from `state_table`,
/// applies the batch's job events in order, stores the new states there,
/// and returns the changes. Read models that stand at the same position
/// fold once, through the first one's state table.
///
/// A state table is a cache of snapshots, not an exact copy of its model's
/// position: a job's state after its event `n` is the same for every read
/// model, so the snapshot of a job in any table whose model stands at or
/// past it is good to start from. Models advancing together write only the
/// first table (writing the same few kB into seven tables was the largest
/// share of the projectors' PostgreSQL time); the others' snapshots fall
/// behind, and a model that later advances alone (or first in another
/// group) folds its snapshot forward from the job's own stored events up to
/// where the batch starts. A snapshot is never ahead of its table's
/// checkpoint (it is written in the transaction that moves it); one that is
/// would be set aside and the job folded from its first event.
pub async fn fold_jobs(
    conn: &mut PgConnection,
    state_table: &str,
    batch: &[EventRow],
) -> Result<Vec<JobChange>> {
    let mut order: Vec<String> = Vec::new();
    let mut touched: HashMap<String, Folding> = HashMap::new();
    for e in batch.iter().filter(|e| e.aggregate_type == Job::TYPE) {
        if !touched.contains_key(&e.aggregate_id) {
            order.push(e.aggregate_id.clone());
            touched.insert(
                e.aggregate_id.clone(),
                Folding {
                    before_seq: e.sequence - 1,
                    state: Job::default(),
                    before: None,
                    last_position: 0,
                },
            );
        }
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    // The states travel as JSON text, decoded straight into `Job` (no
    // intermediate `Value`: its allocations were the projectors' largest
    // cost in the service's profile).
    let rows = sqlx::query(&format!(
        "SELECT job_id, job::text AS job FROM {state_table} WHERE job_id = ANY($1)"
    ))
    .bind(&order)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: String = r.try_get("job_id")?;
        let job: Job = serde_json::from_str(r.try_get::<&str, _>("job")?).map_err(internal)?;
        if let Some(f) = touched.get_mut(&id) {
            if job.version as i64 <= f.before_seq {
                f.state = job;
            }
        }
    }
    catch_up_snapshots(conn, &order, &mut touched).await?;
    for f in touched.values_mut() {
        f.before = (f.before_seq > 0).then(|| f.state.clone());
    }
    for e in batch.iter().filter(|e| e.aggregate_type == Job::TYPE) {
        let f = touched.get_mut(&e.aggregate_id).expect("collected above");
        // Exactly-once is the checkpoint's job; this guard only refuses to
        // fold an event the state has already seen.
        if (e.sequence as u64) <= f.state.version {
            continue;
        }
        f.state.apply(e.decode::<JobEvent>()?);
        f.last_position = e.global_position;
    }
    write_states(conn, state_table, &order, &touched).await?;
    Ok(order
        .into_iter()
        .map(|id| {
            let f = touched.remove(&id).expect("present");
            JobChange {
                job_id: id,
                before: f.before,
                after: f.state,
                last_position: f.last_position,
            }
        })
        .collect())
}

/// Folds every snapshot that stands behind where its job's part of the
/// batch starts forward from the job's stored events (one query for all).
async fn catch_up_snapshots(
    conn: &mut PgConnection,
    order: &[String],
    touched: &mut HashMap<String, Folding>,
) -> Result<()> {
    let behind: Vec<(&String, i64, i64)> = order
        .iter()
        .filter_map(|id| {
            let f = &touched[id];
            let have = f.state.version as i64;
            (have < f.before_seq).then_some((id, have, f.before_seq))
        })
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    let ids: Vec<&String> = behind.iter().map(|b| b.0).collect();
    let after: Vec<i64> = behind.iter().map(|b| b.1).collect();
    let upto: Vec<i64> = behind.iter().map(|b| b.2).collect();
    let rows = sqlx::query(
        "SELECT e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload \
         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS g(id, after, upto) \
         JOIN events e ON e.aggregate_type = $4 AND e.aggregate_id = g.id AND e.sequence > g.after AND e.sequence <= g.upto \
         ORDER BY e.aggregate_id, e.sequence",
    )
    .bind(&ids)
    .bind(&after)
    .bind(&upto)
    .bind(Job::TYPE)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: String = r.try_get("aggregate_id")?;
        let sequence: i64 = r.try_get("sequence")?;
        let event: JobEvent = crate::store::upcast::decode(
            r.try_get("event_type")?,
            r.try_get("event_version")?,
            r.try_get("payload")?,
        )
        .map_err(|e| internal(format!("event {sequence} of job {id} does not decode: {e}")))?;
        let f = touched.get_mut(&id).expect("asked for");
        if sequence as u64 == f.state.version + 1 {
            f.state.apply(event);
        }
    }
    for (id, _, upto) in behind {
        let have = touched[id].state.version as i64;
        if have != upto {
            return Err(internal(format!(
                "job {id}: its stored events end at {have}, its events in the batch start after {upto}"
            )));
        }
    }
    Ok(())
}

/// Stores the new states in `table`.
async fn write_states(
    conn: &mut PgConnection,
    table: &str,
    order: &[String],
    touched: &HashMap<String, Folding>,
) -> Result<()> {
    let docs: Vec<String> = order
        .iter()
        .map(|id| serde_json::to_string(&touched[id].state))
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    let cast = if state_is_jsonb(conn, table).await? {
        "::jsonb[]"
    } else {
        ""
    };
    sqlx::query(&format!(
        "INSERT INTO {table} (job_id, job) SELECT * FROM UNNEST($1::text[], $2::text[]{cast}) \
         ON CONFLICT (job_id) DO UPDATE SET job = EXCLUDED.job"
    ))
    .bind(order)
    .bind(&docs)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
