//! Stored answers: every mutation answers once per `(caller, idempotency
//! key)`, and a retry with the same key gets the stored answer (or a
//! refusal if the key was used for another request). Commands store their
//! answer in their write (`super::App::command`); evidence uploads, which
//! write outside the event store, claim their key first, in one
//! transaction ([`App::idempotent`]).

use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, Row};

use crate::app::{App, Caller, RequestMeta};
use crate::error::{ApiError, Result};
use crate::store;

/// The answer to a mutation: status and the exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON or problem+json).
    pub body: Vec<u8>,
    /// Whether this is a stored answer replayed for a retried key.
    pub replayed: bool,
}

impl Reply {
    /// Whether the body is a problem document.
    pub fn is_problem(&self) -> bool {
        self.status >= 400
    }
}

/// A stored answer for `meta`'s key: replayed, or refused if it answered
/// another request.
pub(super) fn replay(
    meta: &RequestMeta,
    request_hash: String,
    status: i32,
    body: Vec<u8>,
) -> Result<Reply> {
    if request_hash != meta.request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    metrics::counter!("dispatch_idempotent_replays_total").increment(1);
    Ok(Reply {
        status: status as u16,
        body,
        replayed: true,
    })
}

impl App {
    /// Claims `(caller, key)` inside the transaction. `Some(reply)` means the
    /// key was used before: the stored answer (or a reuse refusal).
    async fn claim(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
    ) -> Result<Option<Reply>> {
        // ON CONFLICT waits for a concurrent holder of the same key to finish;
        // if it committed, nothing is inserted and its answer is read below.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_records (caller, idempotency_key, request_hash, status_code, response_body) \
             VALUES ($1, $2, $3, 0, ''::bytea) ON CONFLICT (caller, idempotency_key) DO NOTHING",
        )
        .bind(&caller.key_name)
        .bind(&meta.idempotency_key)
        .bind(&meta.request_hash)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        self.stored_answer(conn, caller, meta).await
    }

    /// The stored answer of `(caller, key)`, if there is one; a reuse
    /// refusal if it was stored for another request.
    pub(super) async fn stored_answer(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
    ) -> Result<Option<Reply>> {
        let row = sqlx::query("SELECT request_hash, status_code, response_body FROM idempotency_records WHERE caller = $1 AND idempotency_key = $2")
            .bind(&caller.key_name)
            .bind(&meta.idempotency_key)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        replay(
            meta,
            row.try_get("request_hash")?,
            row.try_get("status_code")?,
            row.try_get("response_body")?,
        )
        .map(Some)
    }

    /// Runs `decide` under an idempotency claim in one transaction and
    /// stores its answer (for writes outside the event store: evidence).
    pub(crate) async fn idempotent<F>(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        decide: F,
    ) -> Result<Reply>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(u16, Value)>>,
    {
        let mut tx = self.pool.begin().await?;
        if let Some(reply) = self.claim(&mut tx, caller, meta).await? {
            return Ok(reply);
        }
        let (status, body) = match decide(&mut tx).await {
            Ok(answer) => answer,
            Err(e) if e.is_final_answer() => (e.status(), e.problem()),
            Err(e) => return Err(e),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.into()))?;
        sqlx::query("UPDATE idempotency_records SET status_code = $3, response_body = $4 WHERE caller = $1 AND idempotency_key = $2")
            .bind(&caller.key_name)
            .bind(&meta.idempotency_key)
            .bind(i32::from(status))
            .bind(&bytes)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.map_err(|e| {
            if store::is_unique_violation(&e) {
                ApiError::VersionConflict {
                    expected: meta.if_match,
                    current: None,
                }
            } else {
                e.into()
            }
        })?;
        Ok(Reply {
            status,
            body: bytes,
            replayed: false,
        })
    }
}
