//! The technician's phone, as the service keeps it outside the event store:
//! one-time sign-in links (`signin_links`) and the phone's last contact per
//! job with the actions it still holds (`field_contacts`).
//!
//! A sign-in link is made by a dispatcher for a technician and bound to the
//! technician's newest active key; the phone redeems it once for a page
//! session of that key (the pages own the cookie, [`super::sessions`] the
//! session). Only the token's SHA-256 is stored; the token itself is in the
//! answer once. A link lasts [`SIGNIN_LINK_TTL_MINUTES`], is redeemed by one
//! atomic UPDATE, and dies with its key.
//!
//! A contact is what a phone said when it last reached the service about a
//! job: how many actions it still queues for it and since when. It is not an
//! event (nothing happened to the job); each contact replaces the last.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use rand::RngCore;
use serde::Serialize;
use sqlx::{PgPool, Row};

use super::{storable_id, Caller};
use crate::domain::technician::{Technician, TechnicianError, TechnicianEvent};
use crate::error::{ApiError, Result};
use crate::store::{self, hash::sha256_hex};

/// How long a sign-in link may be redeemed after it was made.
pub const SIGNIN_LINK_TTL_MINUTES: i64 = 15;

/// A new sign-in link: the token (shown once, never stored), for whom, and
/// its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigninLink {
    /// 32 random bytes, hex: the last segment of `/ui/field/signin/<token>`.
    pub token: String,
    /// The technician it signs in.
    pub technician_id: String,
    /// Their name on the roster.
    pub technician_name: String,
    /// The key the session will be bound to.
    pub key_name: String,
    /// After this the link no longer signs anyone in.
    pub expires_at: DateTime<Utc>,
}

/// A link that may still be redeemed, as its page shows it before the
/// technician presses the button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignin {
    /// The technician the session will be for.
    pub technician_id: String,
    /// Their name on the roster.
    pub technician_name: String,
    /// The key the session will be bound to.
    pub key_name: String,
    /// When the link expires.
    pub expires_at: DateTime<Utc>,
}

/// A phone's last contact about a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldContact {
    /// The technician whose phone it was.
    pub technician_id: String,
    /// When the phone last reached the service about this job.
    pub last_contact_at: DateTime<Utc>,
    /// Actions the phone said it still holds for this job.
    pub pending: u32,
    /// When the oldest of them was made on the phone (none when `pending` is 0).
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

/// The registered technician `technician_id`, or `not_found`.
async fn registered(pool: &PgPool, technician_id: &str) -> Result<(String, String)> {
    if !storable_id(technician_id) {
        return Err(ApiError::Technician(TechnicianError::NotFound));
    }
    let mut conn = pool.acquire().await?;
    let (events, _) =
        store::load_stream::<TechnicianEvent>(&mut conn, Technician::TYPE, technician_id).await?;
    let tech = events.into_iter().fold(Technician::default(), |mut t, e| {
        t.apply(e);
        t
    });
    let data = tech
        .data
        .ok_or(ApiError::Technician(TechnicianError::NotFound))?;
    Ok((data.technician_id, data.name))
}

/// Makes a sign-in link for a registered technician, bound to their newest
/// active technician key (`technician_has_no_key` when they have none),
/// recorded as made by `caller`. The roster has no deactivation: a
/// registered technician may always be sent a link.
pub async fn create_signin_link(
    pool: &PgPool,
    caller: &Caller,
    technician_id: &str,
    now: DateTime<Utc>,
) -> Result<SigninLink> {
    let (technician_id, technician_name) = registered(pool, technician_id).await?;
    let key_name: Option<String> = sqlx::query_scalar(
        "SELECT name FROM api_keys WHERE role = 'technician' AND technician_id = $1 \
         AND revoked_at IS NULL ORDER BY created_at DESC, name DESC LIMIT 1",
    )
    .bind(&technician_id)
    .fetch_optional(pool)
    .await?;
    let key_name = key_name.ok_or_else(|| ApiError::TechnicianHasNoKey(technician_id.clone()))?;
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let expires_at = now + Duration::minutes(SIGNIN_LINK_TTL_MINUTES);
    sqlx::query(
        "INSERT INTO signin_links (token_hash, technician_id, key_name, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(&technician_id)
    .bind(&key_name)
    .bind(&caller.key_name)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?;
    tracing::info!(technician = %technician_id, key = %key_name, by = %caller.key_name, "sign-in link made");
    Ok(SigninLink {
        token,
        technician_id,
        technician_name,
        key_name,
        expires_at,
    })
}

/// The stored hash of a token that can be one (64 lowercase hex digits);
/// anything else names no link.
fn token_hash(token: &str) -> Result<String> {
    let ok = token.len() == 64
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(sha256_hex(token.as_bytes()))
    } else {
        Err(ApiError::SigninLinkExpired)
    }
}

/// The link behind `token` if it could be redeemed at `now` (unused,
/// unexpired, its key active); changes nothing, so a link previewer that
/// fetches the page does not spend it. Otherwise `signin_link_expired`.
pub async fn peek_signin_link(
    pool: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<PendingSignin> {
    let hash = token_hash(token)?;
    let row = sqlx::query(
        "SELECT l.technician_id, l.key_name, l.expires_at FROM signin_links l \
         JOIN api_keys k ON k.name = l.key_name \
         WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > $2 AND k.revoked_at IS NULL",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::SigninLinkExpired)?;
    let technician_id: String = row.try_get("technician_id")?;
    let technician_name = match registered(pool, &technician_id).await {
        Ok((_, name)) => name,
        Err(ApiError::Technician(TechnicianError::NotFound)) => technician_id.clone(),
        Err(e) => return Err(e),
    };
    Ok(PendingSignin {
        technician_id,
        technician_name,
        key_name: row.try_get("key_name")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Redeems the link behind `token` at `now`, exactly once: the name of the
/// key the session is to be bound to. One UPDATE decides, so two phones
/// racing with the same link get one session between them. An unknown,
/// used or expired link, or one whose key was revoked, is
/// `signin_link_expired`.
pub async fn redeem_signin_link(pool: &PgPool, token: &str, now: DateTime<Utc>) -> Result<String> {
    let hash = token_hash(token)?;
    let key_name: Option<String> = sqlx::query_scalar(
        "UPDATE signin_links l SET used_at = $2 \
         WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > $2 \
         AND EXISTS (SELECT 1 FROM api_keys k WHERE k.name = l.key_name AND k.revoked_at IS NULL) \
         RETURNING l.key_name",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    let key_name = key_name.ok_or(ApiError::SigninLinkExpired)?;
    tracing::info!(key = %key_name, "sign-in link redeemed");
    Ok(key_name)
}

/// Records a phone's contact about `job_id` at `now`: it still holds
/// `pending` actions for the job, the oldest made at `oldest_pending_at`
/// (dropped when `pending` is 0). A contact older than the one stored
/// (a request that took longer) changes nothing. The caller has checked
/// that the technician may act on the job.
pub async fn touch(
    pool: &PgPool,
    technician_id: &str,
    job_id: &str,
    pending: u32,
    oldest_pending_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    for (field, id) in [("technician_id", technician_id), ("job_id", job_id)] {
        if id.is_empty() || id.len() > 200 || !storable_id(id) {
            return Err(ApiError::Validation {
                detail: format!("`{field}` must be 1-200 characters"),
                field: Some(field.into()),
            });
        }
    }
    let pending = i32::try_from(pending).unwrap_or(i32::MAX);
    let oldest = oldest_pending_at.filter(|_| pending > 0);
    sqlx::query(
        "INSERT INTO field_contacts (job_id, technician_id, last_contact_at, pending, oldest_pending_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (job_id, technician_id) DO UPDATE SET \
         last_contact_at = EXCLUDED.last_contact_at, pending = EXCLUDED.pending, \
         oldest_pending_at = EXCLUDED.oldest_pending_at \
         WHERE field_contacts.last_contact_at <= EXCLUDED.last_contact_at",
    )
    .bind(job_id)
    .bind(technician_id)
    .bind(now)
    .bind(pending)
    .bind(oldest)
    .execute(pool)
    .await?;
    Ok(())
}

/// The last phone contact of each of `job_ids` that has one, by job id.
/// Where phones of several technicians reached the service about one job
/// (it was reassigned), the latest contact stands for the job.
pub async fn contacts_for_jobs(
    pool: &PgPool,
    job_ids: &[String],
) -> Result<HashMap<String, FieldContact>> {
    let ids: Vec<&str> = job_ids
        .iter()
        .map(String::as_str)
        .filter(|id| storable_id(id))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT DISTINCT ON (job_id) job_id, technician_id, last_contact_at, pending, oldest_pending_at \
         FROM field_contacts WHERE job_id = ANY($1) \
         ORDER BY job_id, last_contact_at DESC, technician_id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let pending: i32 = r.try_get("pending")?;
            Ok((
                r.try_get("job_id")?,
                FieldContact {
                    technician_id: r.try_get("technician_id")?,
                    last_contact_at: r.try_get("last_contact_at")?,
                    pending: u32::try_from(pending).unwrap_or(0),
                    oldest_pending_at: r.try_get("oldest_pending_at")?,
                },
            ))
        })
        .collect()
}
