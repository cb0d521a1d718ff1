//! Browser sessions of the pages (`ui_sessions`): a session token's hash
//! stands for a key until it expires, is logged out, or its key is revoked.
//! The pages (`crate::http::pages::session`) own the cookie and CSRF; this
//! owns what is stored.

use sqlx::{PgPool, Row};

use super::Caller;
use crate::domain::Role;
use crate::error::Result;

/// How long a session lasts.
pub const SESSION_TTL_HOURS: i64 = 12;

/// The caller a session token's hash stands for: `None` for an unknown,
/// expired or logged-out session, a revoked key, or the system role.
pub async fn resolve(pool: &PgPool, token_hash: &str) -> Result<Option<Caller>> {
    let row = sqlx::query(
        "SELECT k.name, k.role, k.technician_id FROM ui_sessions s JOIN api_keys k ON k.name = s.key_name \
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND k.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role = Role::parse(&row.try_get::<String, _>("role")?).filter(|r| *r != Role::System);
    let Some(role) = role else { return Ok(None) };
    Ok(Some(Caller {
        key_name: row.try_get("name")?,
        role,
        technician_id: row.try_get("technician_id")?,
    }))
}

/// Starts a session for `key_name` under `token_hash`. Old sessions are
/// kept a week past their expiry for the record, then dropped.
pub async fn start(pool: &PgPool, token_hash: &str, key_name: &str) -> Result<()> {
    sqlx::query("DELETE FROM ui_sessions WHERE expires_at < now() - interval '7 days'")
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO ui_sessions (token_hash, key_name, expires_at) VALUES ($1, $2, now() + make_interval(hours => $3))")
        .bind(token_hash)
        .bind(key_name)
        .bind(SESSION_TTL_HOURS as i32)
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends a session (logout); ending one already ended changes nothing.
pub async fn end(pool: &PgPool, token_hash: &str) -> Result<()> {
    sqlx::query(
        "UPDATE ui_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(())
}
