//! The whole-store audit (`dispatch-api audit verify --all`) at scan speed:
//! every stream's chain, MACs, head and checkpointed heads verified in one
//! pass over the `events` table in its physical order, instead of one
//! stream after another through the primary key.
//!
//! - One snapshot: a leading connection opens a `REPEATABLE READ` read-only
//!   transaction, exports its snapshot and reads every stream head in it;
//!   the scanning connections import the snapshot, so events and heads are
//!   read as of one instant while the service keeps writing.
//! - Parallel ranges: the table's blocks are split into as many TID ranges
//!   as there are scanning connections ([`ScanOptions::connections`]); each
//!   range is streamed (`fetch`, never loaded whole) in batches.
//! - Every core: each row's hash and MAC are checked
//!   ([`check_stored_row`], the per-stream audit's own: from the stored
//!   text, decoding only a row whose text does not give its hash) on a
//!   rayon pool.
//! - Streams assembled: checked rows are grouped by stream; a stream is
//!   walked ([`verify_chain`], the per-stream audit's own) as soon as it
//!   holds exactly the sequences 1..=its head, the others once the scan has
//!   ended. Only a checked row (sequence, the two hashes as 32 bytes, the
//!   outcome of its own checks) is kept until then, never the event. A row
//!   reaching a stream already walked (a row past its head) has that
//!   stream read again whole, in the same snapshot, and verified by the
//!   per-stream path.
//!
//! So every stream is decided exactly as `GET /v1/jobs/{id}/audit` decides
//! it, over the same rows; streams that only a head or a signed checkpoint
//! knows of are included (and fail).

use std::collections::{hash_map::Entry, HashMap, HashSet};
use std::sync::Arc;

use futures::{SinkExt, StreamExt, TryStreamExt};
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, PgPool, Row};

use super::chain::ChainKeys;
use super::checkpoint::HeadIndex;
use super::repo::{load_stream_rows, StreamState, RAW_COLUMNS};
use super::verify::{check_stored_row, verify_chain, verify_rows, AuditReport, ChainRow};
use super::StoreError;

/// Rows per batch handed to a hashing thread.
const BATCH_ROWS: usize = 1024;

/// How the scan uses the machine.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Scanning connections, each streaming its own range of the table.
    pub connections: usize,
    /// Hashing threads.
    pub threads: usize,
}

impl Default for ScanOptions {
    /// Every core hashes; one scanning connection per four cores (one
    /// PostgreSQL backend streams rows several times faster than one core
    /// hashes them).
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        ScanOptions {
            connections: (threads / 4).max(1),
            threads,
        }
    }
}

/// Told how far the scan is: the events expected (the sum of the stream
/// heads), then the events checked as they are.
pub trait ScanProgress: Send + Sync {
    /// The events the scan expects to read.
    fn start(&self, events: u64);
    /// `events` more have been checked.
    fn advance(&self, events: u64);
}

impl ScanProgress for () {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// One stream's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAudit {
    /// `job`, `technician`, `door`, …
    pub aggregate_type: String,
    /// The stream's id.
    pub aggregate_id: String,
    /// What the per-stream audit says of it.
    pub report: AuditReport,
}

/// The whole store's verdict.
#[derive(Debug, Clone, Default)]
pub struct StoreAudit {
    /// Rows the scan read.
    pub rows_read: u64,
    /// Every stream, ordered by type and id.
    pub streams: Vec<StreamAudit>,
}

impl StoreAudit {
    /// Events in the streams verified (each stream's `events`).
    pub fn events(&self) -> u64 {
        self.streams.iter().map(|s| s.report.events as u64).sum()
    }

    /// The streams that failed.
    pub fn failures(&self) -> impl Iterator<Item = &StreamAudit> {
        self.streams.iter().filter(|s| !s.report.verified)
    }
}

type StreamKey = (String, String);

/// Verifies every stream in the store against `keys` and the heads the
/// signed checkpoints in `checkpoints` recorded. `pool` must be able to
/// lend `opts.connections + 1` connections.
pub async fn verify_store(
    pool: &PgPool,
    keys: Arc<ChainKeys>,
    checkpoints: &HeadIndex,
    opts: ScanOptions,
    progress: &dyn ScanProgress,
) -> Result<StoreAudit, StoreError> {
    let mut lead = pool.acquire().await?.detach();
    lead.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut lead)
        .await?;
    let heads = load_heads(&mut lead).await?;
    progress.start(heads.values().map(|h| h.sequence.max(0) as u64).sum());
    let blocks: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size('events') / current_setting('block_size')::bigint",
    )
    .fetch_one(&mut lead)
    .await?;
    let mut scanners = Vec::new();
    for range in ranges(blocks, opts.connections) {
        let mut conn = pool.acquire().await?.detach();
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        conn.execute(
            format!(
                "SET TRANSACTION SNAPSHOT '{}'",
                snapshot.replace('\'', "''")
            )
            .as_str(),
        )
        .await?;
        scanners.push((conn, range));
    }
    let mut streams = Streams {
        heads,
        checkpoints,
        open: HashMap::new(),
        done: HashMap::new(),
        reopened: HashSet::new(),
    };
    let rows_read = scan(scanners, &keys, opts.threads, &mut streams, progress).await?;
    let streams = streams.finish(&mut lead, &keys).await?;
    lead.execute("COMMIT").await?;
    Ok(StoreAudit { rows_read, streams })
}

/// Every stream head, read in the lead's snapshot.
async fn load_heads(
    conn: &mut PgConnection,
) -> Result<HashMap<StreamKey, StreamState>, StoreError> {
    let mut heads = HashMap::new();
    let mut rows =
        sqlx::query("SELECT aggregate_type, aggregate_id, sequence, hash FROM stream_heads")
            .fetch(conn);
    while let Some(r) = rows.try_next().await? {
        heads.insert(
            (r.try_get("aggregate_type")?, r.try_get("aggregate_id")?),
            StreamState {
                sequence: r.try_get("sequence")?,
                hash: r.try_get("hash")?,
            },
        );
    }
    Ok(heads)
}

/// A range of the table's blocks: `from..to` (`to` open at the end, so that
/// nothing past the size read at the start is left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    from: i64,
    to: Option<i64>,
}

impl Range {
    fn filter(self) -> String {
        match (self.from, self.to) {
            (0, None) => String::new(),
            (from, None) => format!(" WHERE ctid >= '({from},0)'::tid"),
            (from, Some(to)) => {
                format!(" WHERE ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid")
            }
        }
    }
}

/// `blocks` split into `parts` ranges of about the same size.
fn ranges(blocks: i64, parts: usize) -> Vec<Range> {
    let parts = (parts.max(1) as i64).min(blocks.max(1));
    let step = (blocks.max(1) + parts - 1) / parts;
    (0..parts)
        .map(|i| Range {
            from: i * step,
            to: (i + 1 < parts).then_some((i + 1) * step),
        })
        .collect()
}

/// Checks a batch of rows on the calling (hashing) thread.
fn check_batch(
    keys: &ChainKeys,
    batch: &[PgRow],
) -> Result<Vec<(StreamKey, ChainRow)>, sqlx::Error> {
    batch
        .iter()
        .map(|r| {
            let kind: String = r.try_get("aggregate_type")?;
            let id: String = r.try_get("aggregate_id")?;
            let row = check_stored_row(keys, &kind, &id, r)?;
            Ok(((kind, id), row))
        })
        .collect()
}

/// Streams every range on its own connection, checks the rows on a pool
/// of `threads`, and hands them to `streams`; returns the rows read.
async fn scan(
    scanners: Vec<(PgConnection, Range)>,
    keys: &Arc<ChainKeys>,
    threads: usize,
    streams: &mut Streams<'_>,
    progress: &dyn ScanProgress,
) -> Result<u64, StoreError> {
    let threads = threads.max(1);
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("audit-hash-{i}"))
            .build()
            .expect("a thread pool can be started"),
    );
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<PgRow>, sqlx::Error>>(threads);
    let fetchers: Vec<_> = scanners
        .into_iter()
        .map(|(conn, range)| tokio::spawn(fetch_range(conn, range, tx.clone())))
        .collect();
    drop(tx);
    let mut checked = rx
        .map(|batch| {
            let (keys, pool) = (keys.clone(), pool.clone());
            async move {
                let batch = batch?;
                let (done, answer) = tokio::sync::oneshot::channel();
                pool.spawn(move || {
                    let _ = done.send(check_batch(&keys, &batch));
                });
                answer.await.expect("a hashing thread answers")
            }
        })
        .buffer_unordered(threads * 2);
    let mut rows_read = 0u64;
    while let Some(batch) = checked.next().await {
        let batch = batch?;
        rows_read += batch.len() as u64;
        progress.advance(batch.len() as u64);
        for (key, row) in batch {
            streams.take(key, row);
        }
    }
    for f in fetchers {
        if let Ok(conn) = f.await {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
    Ok(rows_read)
}

/// Streams one range's rows in batches into `tx` (an error ends it, sent
/// on); gives the connection back.
async fn fetch_range(
    mut conn: PgConnection,
    range: Range,
    mut tx: futures::channel::mpsc::Sender<Result<Vec<PgRow>, sqlx::Error>>,
) -> PgConnection {
    let sql = format!(
        "SELECT aggregate_type, aggregate_id, {RAW_COLUMNS} FROM events{}",
        range.filter()
    );
    {
        let mut rows = sqlx::query(&sql).fetch(&mut conn);
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        loop {
            match rows.try_next().await {
                Ok(Some(r)) => {
                    batch.push(r);
                    if batch.len() == BATCH_ROWS {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                        if tx.send(Ok(full)).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    if !batch.is_empty() {
                        let _ = tx.send(Ok(batch)).await;
                    }
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    }
    conn
}

/// A stream being assembled: its checked rows, and the highest sequence.
#[derive(Default)]
struct Open {
    rows: Vec<ChainRow>,
    last: i64,
}

/// The streams as the scan assembles them.
struct Streams<'a> {
    heads: HashMap<StreamKey, StreamState>,
    checkpoints: &'a HeadIndex,
    open: HashMap<StreamKey, Open>,
    done: HashMap<StreamKey, AuditReport>,
    /// Streams a row reached after they were walked.
    reopened: HashSet<StreamKey>,
}

impl Streams<'_> {
    /// Takes a checked row; walks its stream once it holds exactly the
    /// sequences up to its head.
    fn take(&mut self, key: StreamKey, row: ChainRow) {
        if self.done.contains_key(&key) {
            self.reopened.insert(key);
            return;
        }
        let mut entry = match self.open.entry(key) {
            Entry::Occupied(o) => o,
            Entry::Vacant(v) => v.insert_entry(Open::default()),
        };
        let (last, held) = {
            let open = entry.get_mut();
            open.last = open.last.max(row.sequence);
            open.rows.push(row);
            (open.last, open.rows.len() as i64)
        };
        let complete = self
            .heads
            .get(entry.key())
            .is_some_and(|h| h.sequence > 0 && last == h.sequence && held == h.sequence);
        if complete {
            let (key, open) = entry.remove_entry();
            let report = self.walk(&key, open.rows);
            self.done.insert(key, report);
        }
    }

    /// Walks a stream's checked rows (in any order) as the per-stream audit does.
    fn walk(&self, key: &StreamKey, mut rows: Vec<ChainRow>) -> AuditReport {
        rows.sort_unstable_by_key(|r| r.sequence);
        verify_chain(
            &rows,
            self.heads.get(key),
            &self.checkpoints.get(&key.0, &key.1),
        )
    }

    /// Every stream's verdict, once the scan has read everything: streams
    /// reopened (read again whole, in the lead's snapshot), streams still
    /// open, heads without events, checkpointed streams without either.
    async fn finish(
        mut self,
        lead: &mut PgConnection,
        keys: &ChainKeys,
    ) -> Result<Vec<StreamAudit>, StoreError> {
        for key in std::mem::take(&mut self.reopened) {
            let rows = load_stream_rows(lead, &key.0, &key.1, None).await?;
            let report = verify_rows(
                &key.0,
                &key.1,
                &rows,
                self.heads.get(&key),
                keys,
                &self.checkpoints.get(&key.0, &key.1),
            );
            self.done.insert(key, report);
        }
        for (key, open) in std::mem::take(&mut self.open) {
            let report = self.walk(&key, open.rows);
            self.done.insert(key, report);
        }
        let unseen: Vec<StreamKey> = self
            .heads
            .keys()
            .chain(self.checkpoints.streams())
            .filter(|k| !self.done.contains_key(*k))
            .cloned()
            .collect();
        for key in unseen {
            let report = self.walk(&key, Vec::new());
            self.done.insert(key, report);
        }
        let mut out: Vec<StreamAudit> = self
            .done
            .into_iter()
            .map(|((aggregate_type, aggregate_id), report)| StreamAudit {
                aggregate_type,
                aggregate_id,
                report,
            })
            .collect();
        out.sort_unstable_by(|a, b| {
            (&a.aggregate_type, &a.aggregate_id).cmp(&(&b.aggregate_type, &b.aggregate_id))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_block_once_and_leave_the_end_open() {
        assert_eq!(ranges(0, 4), vec![Range { from: 0, to: None }]);
        assert_eq!(ranges(10, 1), vec![Range { from: 0, to: None }]);
        let r = ranges(10, 3);
        assert_eq!(
            r,
            vec![
                Range {
                    from: 0,
                    to: Some(4)
                },
                Range {
                    from: 4,
                    to: Some(8)
                },
                Range { from: 8, to: None },
            ]
        );
        assert_eq!(ranges(2, 8).len(), 2);
        assert_eq!(Range { from: 0, to: None }.filter(), "");
        assert_eq!(
            Range {
                from: 4,
                to: Some(8)
            }
            .filter(),
            " WHERE ctid >= '(4,0)'::tid AND ctid < '(8,0)'::tid"
        );
    }
}
