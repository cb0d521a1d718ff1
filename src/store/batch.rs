//! One call of `dispatch_write_batch` (migration 0015): the only way events
//! are appended. The group-commit writer ([`super::writer`]) sends the
//! writes of concurrent commands through it; [`super::append`] sends one
//! write inside its caller's transaction.
//!
//! Each write is one `dispatch_write` composite value (its events a
//! `dispatch_event[]` inside it), and the batch is one array of them: the
//! function runs each write in its own subtransaction, so a write the store
//! refuses leaves nothing and the others stand. Writes are sent in stream
//! order, so two batches that touch the same streams take their locks in
//! the same order and cannot deadlock on them.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::PgRecordEncoder;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};
use sqlx::{Encode, PgExecutor, Postgres, Row, Type};

use super::answer::Answer;
use super::{PreparedAppend, PreparedEvent, StoreError};

/// A job's row in `job_doors` (the `dispatch_door` composite).
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(type_name = "dispatch_door")]
pub struct DoorRow {
    /// The job.
    pub job_id: String,
    /// Its site.
    pub site_id: String,
    /// Its door.
    pub door_id: String,
    /// Its state's wire name.
    pub state: String,
    /// The technician of its current visit.
    pub technician_id: Option<String>,
    /// When its work was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When this row was written.
    pub updated_at: DateTime<Utc>,
}

/// What one command leaves to write, all or nothing.
#[derive(Debug)]
pub struct Write {
    /// The answer to store under the caller's idempotency key (`None`:
    /// none, as for [`super::append`]).
    pub answer: Option<Answer>,
    /// The SHA-256 of an API key the write must find still active.
    pub key_check: Option<String>,
    /// Events to append.
    pub append: Option<PreparedAppend>,
    /// The door-index row to upsert.
    pub door: Option<DoorRow>,
}

impl Write {
    /// The stream the write appends to, if any: the batch's sort key.
    fn stream(&self) -> Option<(&str, &str)> {
        self.append
            .as_ref()
            .map(|a| (a.aggregate_type.as_str(), a.aggregate_id.as_str()))
    }
}

/// Why the store refused a write (nothing of it was written).
#[derive(Debug)]
pub enum Refused {
    /// A key or version another write committed first: the idempotency key
    /// was used, or the stream moved past the write's head (SQLSTATE 23505,
    /// or 40P01 / 40001 when two writers met).
    Conflict,
    /// The key in [`Write::key_check`] is unknown or revoked (`DK401`).
    KeyRefused,
    /// Anything else.
    Failed(StoreError),
}

/// What a write that stood left: its stored answer (empty without one) and
/// its events' global positions, in sequence order.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The stored answer, positions in place.
    pub answer: Vec<u8>,
    /// The events' global positions.
    pub positions: Vec<i64>,
}

/// Writes `writes` in one call, each all-or-nothing, through `conn` (a pool
/// commits them at once; a connection in a transaction leaves the commit to
/// its owner). Their outcomes, in the order given; `Err` when the call
/// itself failed (nothing was written).
pub async fn write_batch<'c>(
    conn: impl PgExecutor<'c>,
    writes: &[&Write],
) -> Result<Vec<Result<Written, Refused>>, sqlx::Error> {
    // Stream order, so that concurrent batches lock streams in one order.
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by(|&a, &b| writes[a].stream().cmp(&writes[b].stream()));
    let records: Vec<WriteRecord<'_>> = order.iter().map(|&i| WriteRecord(writes[i])).collect();
    let rows = sqlx::query(
        "SELECT write_no, err_code, err_message, answer, positions FROM dispatch_write_batch($1)",
    )
    .bind(records)
    .fetch_all(conn)
    .await?;
    let mut outcomes: Vec<Option<Result<Written, Refused>>> =
        (0..writes.len()).map(|_| None).collect();
    for r in rows {
        let n: i32 = r.try_get("write_no")?;
        let code: Option<String> = r.try_get("err_code")?;
        let outcome = match code {
            None => Ok(Written {
                answer: r
                    .try_get::<Option<Vec<u8>>, _>("answer")?
                    .unwrap_or_default(),
                positions: r
                    .try_get::<Option<Vec<i64>>, _>("positions")?
                    .unwrap_or_default(),
            }),
            Some(code) => Err(refused(code, r.try_get("err_message")?)),
        };
        // `write_no` counts the sorted writes from 1.
        let at = usize::try_from(n - 1).ok().and_then(|i| order.get(i));
        if let Some(slot) = at.and_then(|&i| outcomes.get_mut(i)) {
            *slot = Some(outcome);
        }
    }
    Ok(outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or(Err(Refused::Failed(StoreError::NoOutcome(i + 1)))))
        .collect())
}

/// A write the function refused, by its SQLSTATE.
fn refused(code: String, message: Option<String>) -> Refused {
    match code.as_str() {
        "23505" | "40P01" | "40001" => Refused::Conflict,
        "DK401" => Refused::KeyRefused,
        _ => Refused::Failed(StoreError::Refused {
            code,
            message: message.unwrap_or_default(),
        }),
    }
}

/// A [`Write`] as the `dispatch_write` composite (field order as in the
/// migration).
struct WriteRecord<'a>(&'a Write);

impl Type<Postgres> for WriteRecord<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("dispatch_write")
    }
}

impl PgHasArrayType for WriteRecord<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("_dispatch_write")
    }
}

impl Encode<'_, Postgres> for WriteRecord<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let w = self.0;
        let answer = w.answer.as_ref();
        let append = w.append.as_ref();
        let pieces: Vec<&[u8]> =
            answer.map_or_else(Vec::new, |a| a.pieces.iter().map(Vec::as_slice).collect());
        let events: &[PreparedEvent] = append.map_or(&[], |a| a.events.as_slice());
        let mut record = PgRecordEncoder::new(buf);
        record
            .encode(answer.map(|a| a.caller.as_str()))?
            .encode(answer.map(|a| a.idempotency_key.as_str()))?
            .encode(answer.map(|a| a.request_hash.as_str()))?
            .encode(answer.map(|a| i32::from(a.status)))?
            .encode(pieces)?
            .encode(w.key_check.as_deref())?
            .encode(append.map(|a| a.aggregate_type.as_str()))?
            .encode(append.map(|a| a.aggregate_id.as_str()))?
            .encode(append.map(|a| a.head.sequence))?
            .encode(append.map(|a| a.head.hash.as_str()))?
            .encode(events)?
            .encode(w.door.as_ref())?;
        record.finish();
        Ok(IsNull::No)
    }
}
