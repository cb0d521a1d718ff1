//! The tool-invocation log: one append-only record per tool call, whatever
//! its outcome, valid against `schemas/tool_invocation.schema.json`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::domain::Actor;
use crate::error::Result;

/// How the call arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// `POST /v1/tools/{tool}`.
    Http,
    /// `tools/call` at `/mcp`.
    Mcp,
}

impl Transport {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Mcp => "mcp",
        }
    }
}

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (a query answered, a command's events appended).
    Ok,
    /// A rule said no: the allowlist, the caller's rights, a domain guard,
    /// the rate limit, a reused idempotency key.
    Refused,
    /// Only an `ApprovalRequested` event happened; a person decides.
    ApprovalRequired,
    /// The call could not be carried out: invalid arguments, an unknown job,
    /// a lost race, the database unavailable.
    Error,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::ApprovalRequired => "approval_required",
            Outcome::Error => "error",
        }
    }

    /// The outcome of an answer with this status and problem code.
    pub fn of(status: u16, code: Option<&str>) -> Outcome {
        match status {
            202 => Outcome::ApprovalRequired,
            200..=299 => Outcome::Ok,
            403 | 422 | 429 => Outcome::Refused,
            409 if code != Some("version_conflict") => Outcome::Refused,
            _ => Outcome::Error,
        }
    }
}

/// One tool call as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Position in the log (store-wide order of records).
    pub position: i64,
    /// The call's id (the envelope's, or made by the service).
    pub invocation_id: Uuid,
    /// The tool asked for (as asked, clipped to 100 characters).
    pub tool: String,
    /// Who called (from the key).
    pub actor: Actor,
    /// HTTP or MCP.
    pub transport: Transport,
    /// The envelope's idempotency key, when it had a usable one.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the arguments' canonical JSON.
    pub argument_digest: String,
    /// What became of it.
    pub outcome: Outcome,
    /// The problem code, when not ok.
    pub error_code: Option<String>,
    /// The HTTP status of the answer (the same over MCP).
    pub http_status: u16,
    /// The job it concerned, when known.
    pub job_id: Option<String>,
    /// The approval it requested or decided, when any.
    pub approval_id: Option<String>,
    /// The events it appended (`event_id`, `event_type`, `sequence`, `global_position`).
    pub events: Vec<Value>,
    /// Whether the answer was a stored one replayed for a retried key.
    pub replayed: bool,
    /// When (the service's clock).
    pub at: DateTime<Utc>,
}

/// Appends a record; returns its position.
pub async fn append(pool: &PgPool, r: &InvocationRecord) -> Result<i64> {
    let actor =
        serde_json::to_value(&r.actor).map_err(|e| crate::error::ApiError::Internal(e.into()))?;
    let row = sqlx::query(
        "INSERT INTO tool_invocations (invocation_id, tool, actor, actor_id, transport, idempotency_key, \
         argument_digest, outcome, error_code, http_status, job_id, approval_id, events, replayed, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING position",
    )
    .bind(r.invocation_id)
    .bind(&r.tool)
    .bind(&actor)
    .bind(&r.actor.id)
    .bind(r.transport.as_str())
    .bind(&r.idempotency_key)
    .bind(&r.argument_digest)
    .bind(r.outcome.as_str())
    .bind(&r.error_code)
    .bind(i32::from(r.http_status))
    .bind(&r.job_id)
    .bind(&r.approval_id)
    .bind(Value::Array(r.events.clone()))
    .bind(r.replayed)
    .bind(r.at)
    .fetch_one(pool)
    .await?;
    Ok(row.try_get("position")?)
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only calls about this job.
    pub job_id: Option<String>,
    /// Only calls by this key (the actor id).
    pub actor: Option<String>,
    /// Only calls of this tool.
    pub tool: Option<String>,
    /// Only records after this position (paging).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Lists records in log order.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<Vec<InvocationRecord>> {
    let rows = sqlx::query(
        "SELECT position, invocation_id, tool, actor, transport, idempotency_key, argument_digest, outcome, \
         error_code, http_status, job_id, approval_id, events, replayed, at FROM tool_invocations \
         WHERE ($1::text IS NULL OR job_id = $1) AND ($2::text IS NULL OR actor_id = $2) \
         AND ($3::text IS NULL OR tool = $3) AND position > $4 ORDER BY position LIMIT $5",
    )
    .bind(&f.job_id)
    .bind(&f.actor)
    .bind(&f.tool)
    .bind(f.after.unwrap_or(0))
    .bind(f.limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode).collect()
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<InvocationRecord> {
    let internal = |e: serde_json::Error| crate::error::ApiError::Internal(e.into());
    let actor: Value = row.try_get("actor")?;
    let transport: String = row.try_get("transport")?;
    let outcome: String = row.try_get("outcome")?;
    let events: Value = row.try_get("events")?;
    let status: i32 = row.try_get("http_status")?;
    Ok(InvocationRecord {
        position: row.try_get("position")?,
        invocation_id: row.try_get("invocation_id")?,
        tool: row.try_get("tool")?,
        actor: serde_json::from_value(actor).map_err(internal)?,
        transport: serde_json::from_value(Value::String(transport)).map_err(internal)?,
        idempotency_key: row.try_get("idempotency_key")?,
        argument_digest: row.try_get("argument_digest")?,
        outcome: serde_json::from_value(Value::String(outcome)).map_err(internal)?,
        error_code: row.try_get("error_code")?,
        http_status: u16::try_from(status).unwrap_or(500),
        job_id: row.try_get("job_id")?,
        approval_id: row.try_get("approval_id")?,
        events: serde_json::from_value(events).map_err(internal)?,
        replayed: row.try_get("replayed")?,
        at: row.try_get("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcomes_follow_status_and_code() {
        assert_eq!(Outcome::of(200, None), Outcome::Ok);
        assert_eq!(Outcome::of(201, None), Outcome::Ok);
        assert_eq!(Outcome::of(202, None), Outcome::ApprovalRequired);
        assert_eq!(Outcome::of(403, Some("tool_not_allowed")), Outcome::Refused);
        assert_eq!(Outcome::of(422, Some("nte_exceeded")), Outcome::Refused);
        assert_eq!(Outcome::of(429, Some("rate_limited")), Outcome::Refused);
        assert_eq!(
            Outcome::of(409, Some("idempotency_key_reused")),
            Outcome::Refused
        );
        assert_eq!(Outcome::of(409, Some("version_conflict")), Outcome::Error);
        assert_eq!(Outcome::of(400, Some("validation_error")), Outcome::Error);
        assert_eq!(Outcome::of(404, Some("not_found")), Outcome::Error);
        assert_eq!(Outcome::of(503, Some("unavailable")), Outcome::Error);
    }
}
