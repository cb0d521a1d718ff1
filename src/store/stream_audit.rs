//! One stream's audit while its rows arrive: the rows are read in order
//! (`fetch`, never loaded whole first) and handed in batches to rayon's
//! threads, which check each row on its own ([`check_stored_row`]: hash
//! from the stored text, MAC) while the next batch is still being read;
//! the walk in order ([`verify_chain`]) follows. What
//! `GET /v1/jobs/{id}/audit` and `dispatch-api audit verify <job>` run.

use std::sync::Arc;

use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::PgConnection;
use tokio::sync::oneshot;

use super::chain::ChainKeys;
use super::checkpoint::CheckpointedHead;
use super::repo::{load_head, stream_rows_sql};
use super::verify::{check_stored_row, verify_chain, AuditReport, ChainRow};
use super::StoreError;

/// Rows checked together on one thread.
const BATCH: usize = 512;

type Checked = Result<Vec<ChainRow>, sqlx::Error>;

/// Verifies stream `(aggregate_type, aggregate_id)`: its rows' hashes and
/// MACs under `keys`, its chain, its head and the heads signed checkpoints
/// recorded for it (`checkpointed`), as [`super::verify_rows`] does; `None`
/// when the stream never existed (neither events, nor a head, nor a
/// checkpoint).
pub async fn verify_stream(
    conn: &mut PgConnection,
    keys: &Arc<ChainKeys>,
    checkpointed: &[CheckpointedHead],
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<AuditReport>, StoreError> {
    let rows = check_rows(conn, keys, aggregate_type, aggregate_id).await?;
    let head = load_head(conn, aggregate_type, aggregate_id).await?;
    if rows.is_empty() && head.is_none() && checkpointed.is_empty() {
        return Ok(None);
    }
    Ok(Some(verify_chain(&rows, head.as_ref(), checkpointed)))
}

/// The stream's rows, each checked, in sequence order.
async fn check_rows(
    conn: &mut PgConnection,
    keys: &Arc<ChainKeys>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<ChainRow>, StoreError> {
    let stream: Arc<(String, String)> = Arc::new((aggregate_type.into(), aggregate_id.into()));
    let check = |keys: &ChainKeys, stream: &(String, String), batch: &[PgRow]| -> Checked {
        batch
            .iter()
            .map(|r| check_stored_row(keys, &stream.0, &stream.1, r))
            .collect()
    };
    let sql = stream_rows_sql();
    let mut rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(i64::MAX)
        .fetch(&mut *conn);
    let mut pending: Vec<oneshot::Receiver<Checked>> = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(row) = rows.try_next().await? {
        batch.push(row);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            let (done, answer) = oneshot::channel();
            let (keys, stream) = (keys.clone(), stream.clone());
            rayon::spawn(move || {
                let _ = done.send(check(&keys, &stream, &full));
            });
            pending.push(answer);
        }
    }
    drop(rows);
    // The last (or only) batch on this thread, while the others finish.
    let tail = check(keys, &stream, &batch)?;
    let mut checked = Vec::with_capacity(pending.len() * BATCH + tail.len());
    for answer in pending {
        checked.extend(answer.await.expect("a hashing thread answers")?);
    }
    checked.extend(tail);
    Ok(checked)
}
