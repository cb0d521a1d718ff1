//! The read–decide–write runner every command on one stream shares (job
//! and technician commands), and its one rule on version races:
//!
//! **A conflict the caller did not ask for is never answered.** A command
//! whose write finds that another command appended to the stream since its
//! read is decided again on the fresh stream — every guard, fact and SOP
//! rule checked again, the idempotency key looked up again — at most
//! [`DECISIONS`] times. With `If-Match` the fresh decision compares the
//! caller's version with the stream's new one, so a stale `If-Match` is
//! still `409 version_conflict` (with the current version); without it,
//! commands that do not depend on each other (two notes, a check-in and a
//! timer's event) both land. Only a stream that changed under every one of
//! the decisions answers 409 without `If-Match`.
//!
//! Callers run it in their stream's turn ([`crate::app::turns`]), so the
//! races it decides again are only those with writers outside this process.

use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{idempotency, Decided, Reply};
use crate::app::{App, Caller, RequestMeta};
use crate::error::{ApiError, Result};
use crate::store::{self, Refused};

/// How many times one request is decided at most before a lost race is
/// answered `409 version_conflict`.
pub const DECISIONS: u32 = 8;

/// What reading a command's stream found.
enum Read {
    /// The key was used before: its stored answer.
    Answered(Reply),
    /// The stream's rows, to decide on.
    Stream(Vec<PgRow>),
}

impl App {
    /// Runs a command on one stream (`stream`: aggregate type and id): reads
    /// the key's stored answer or else the stream (one statement), decides,
    /// and writes everything the decision leaves with its answer (one
    /// write, [`App::write`]); decided again on a lost version race (the
    /// module's rule). The runner of every job and technician command.
    pub(super) async fn command<F>(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        stream: (&str, &str),
        decide: F,
    ) -> Result<Reply>
    where
        F: for<'c> Fn(&'c mut PgConnection, Vec<PgRow>) -> BoxFuture<'c, Result<Decided>>,
    {
        for decision in 1..=DECISIONS {
            let mut conn = self.pool.acquire().await?;
            let rows = match read(&mut conn, caller, meta, stream).await? {
                Read::Answered(reply) => return Ok(reply),
                Read::Stream(rows) => rows,
            };
            let decided = match decide(&mut conn, rows).await {
                Ok(d) => d,
                Err(e) if e.is_final_answer() => Decided::from((e.status(), e.problem())),
                Err(e) => return Err(e),
            };
            // The writer has connections of its own: this one goes back to
            // the pool while the write waits for its batch.
            drop(conn);
            let status = decided.status;
            match self.write(caller, meta, decided, None).await? {
                Ok(body) => {
                    return Ok(Reply {
                        status,
                        body,
                        replayed: false,
                    })
                }
                // Another request committed first: the same key (its answer
                // is the answer) or the same stream version (decided again).
                Err(Refused::Conflict) => {
                    let mut conn = self.pool.acquire().await?;
                    if let Some(reply) = self.stored_answer(&mut conn, caller, meta).await? {
                        return Ok(reply);
                    }
                    metrics::counter!("dispatch_command_redecided_total").increment(1);
                    // Racers that lost together do not come back together.
                    let pause = rand::thread_rng().gen_range(0..=decision);
                    tokio::time::sleep(Duration::from_millis(u64::from(pause))).await;
                }
                Err(Refused::KeyRefused) => return Err(ApiError::Unauthorized),
                Err(Refused::Failed(e)) => return Err(e.into()),
            }
        }
        tracing::warn!(
            stream = %format!("{}/{}", stream.0, stream.1),
            decisions = DECISIONS,
            "a command lost the version race on every decision"
        );
        Err(ApiError::VersionConflict {
            expected: meta.if_match,
            current: None,
        })
    }
}

/// The key's stored answer, or else the stream's rows (one statement).
async fn read(
    conn: &mut PgConnection,
    caller: &Caller,
    meta: &RequestMeta,
    stream: (&str, &str),
) -> Result<Read> {
    let rows = sqlx::query(&format!(
        "SELECT r.request_hash, r.status_code, r.response_body, {} \
         FROM (SELECT 1) AS one \
         LEFT JOIN idempotency_records r ON r.caller = $1 AND r.idempotency_key = $2 \
         LEFT JOIN LATERAL (SELECT * FROM events WHERE aggregate_type = $3 AND aggregate_id = $4) e \
           ON r.caller IS NULL \
         ORDER BY e.sequence",
        store::STREAM_COLUMNS
    ))
    .bind(&caller.key_name)
    .bind(&meta.idempotency_key)
    .bind(stream.0)
    .bind(stream.1)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(first) = rows.first() {
        if let Some(hash) = first.try_get::<Option<String>, _>("request_hash")? {
            return idempotency::replay(
                meta,
                hash,
                first.try_get("status_code")?,
                first.try_get("response_body")?,
            )
            .map(Read::Answered);
        }
    }
    Ok(Read::Stream(rows))
}
