//! API keys: made by the CLI, stored as SHA-256 only, resolved per request
//! ([`App::resolve_key`], [`App::look_up_key`]), and the callers recently
//! resolved keys map to ([`KnownKeys`]: what lets a job command skip the
//! lookup, on a *provisional* [`KeyedCaller`] that only a write checking the
//! key itself may act on; the rule is [`App::job_command`]'s).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use rand::RngCore;
use sqlx::{PgPool, Row};

use super::App;

use crate::domain::{Actor, Role};
use crate::error::{ApiError, Result};
use crate::store::hash::sha256_hex;

/// Who is calling: resolved from the bearer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name (recorded as the actor id).
    pub key_name: String,
    /// The key's role.
    pub role: Role,
    /// For technician keys.
    pub technician_id: Option<String>,
}

impl Caller {
    /// The actor recorded on events.
    pub fn actor(&self) -> Actor {
        match (&self.technician_id, self.role) {
            (Some(t), Role::Technician) => Actor::technician(self.key_name.clone(), t.clone()),
            _ => Actor::new(self.role, self.key_name.clone()),
        }
    }
}

/// Makes a new key: `dak_` and 32 random bytes, hex.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("dak_{}", hex::encode(bytes))
}

/// Why a key could not be made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The name is taken.
    #[error("a key named `{0}` already exists")]
    NameTaken(String),
    /// No such key.
    #[error("no active key named `{0}`")]
    NotFound(String),
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a key and returns it (shown once; only its hash is kept).
pub async fn create_key(
    pool: &PgPool,
    role: Role,
    name: &str,
    technician_id: Option<&str>,
) -> Result<String, KeyError> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "the name must be 1-200 printable characters".into(),
        ));
    }
    if (role == Role::Technician) != technician_id.is_some() {
        return Err(KeyError::Invalid(
            "--technician is required for, and only for, the technician role".into(),
        ));
    }
    let key = new_key();
    let res = sqlx::query(
        "INSERT INTO api_keys (name, key_hash, role, technician_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(name)
    .bind(sha256_hex(key.as_bytes()))
    .bind(role.as_str())
    .bind(technician_id)
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(key),
        Err(e) if crate::store::is_unique_violation(&e) => {
            Err(KeyError::NameTaken(name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Revokes a key by name.
pub async fn revoke_key(pool: &PgPool, name: &str) -> Result<(), KeyError> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(KeyError::NotFound(name.to_string()));
    }
    Ok(())
}

/// A key as `dispatch-api keys list` shows it: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The key's name (the actor id of what it does).
    pub name: String,
    /// Its role.
    pub role: String,
    /// The technician a technician key is bound to.
    pub technician_id: Option<String>,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was revoked (`None`: it is active).
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every key, active and revoked, by name.
pub async fn list_keys(pool: &PgPool) -> Result<Vec<KeyInfo>, KeyError> {
    let rows = sqlx::query(
        "SELECT name, role, technician_id, created_at, revoked_at FROM api_keys ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyInfo {
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                technician_id: r.try_get("technician_id")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(KeyError::from)
}

/// Resolves a bearer key to its caller; unknown or revoked keys are `Unauthorized`.
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Caller> {
    authenticate_hash(pool, &key_hash(key)?).await
}

/// The SHA-256 a key is stored and looked up by; a key that cannot be one
/// (empty, over 200 bytes) is `Unauthorized`.
pub fn key_hash(key: &str) -> Result<String> {
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::Unauthorized);
    }
    Ok(sha256_hex(key.as_bytes()))
}

/// [`authenticate`] by the key's SHA-256 ([`key_hash`]).
pub async fn authenticate_hash(pool: &PgPool, hash: &str) -> Result<Caller> {
    let row = sqlx::query(
        "SELECT name, role, technician_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    let row = row.ok_or(ApiError::Unauthorized)?;
    let role: String = row.try_get("role")?;
    Ok(Caller {
        key_name: row.try_get("name")?,
        role: Role::parse(&role).ok_or(ApiError::Unauthorized)?,
        technician_id: row.try_get("technician_id")?,
    })
}

/// A request's caller and the key it came with, as the gate resolved it
/// ([`App::resolve_key`]).
#[derive(Debug, Clone)]
pub struct KeyedCaller {
    /// Who.
    pub caller: Caller,
    /// SHA-256 of the bearer key.
    pub key_hash: String,
    /// Taken from the known keys without a lookup: nothing may be answered
    /// on it but a write that checks the key itself.
    provisional: bool,
}

impl KeyedCaller {
    /// Whether the caller was taken from the known keys without a lookup.
    pub fn is_provisional(&self) -> bool {
        self.provisional
    }
}

/// The most keys kept by [`KnownKeys`] (one per API key in use).
pub const KNOWN_KEYS: usize = 1024;

/// The callers that recently looked-up keys resolved to, by the key's
/// SHA-256. Only a job command's write that checks the key itself may act on
/// one without a lookup ([`App::job_command`]); everything else looks the
/// key up.
#[derive(Clone, Default)]
pub struct KnownKeys {
    inner: Option<Arc<Mutex<LruCache<String, Caller>>>>,
}

impl std::fmt::Debug for KnownKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKeys").finish_non_exhaustive()
    }
}

impl KnownKeys {
    /// Keeps up to `capacity` keys (at most [`KNOWN_KEYS`]); `0` keeps none
    /// (every request looks its key up).
    pub fn new(capacity: usize) -> Self {
        KnownKeys {
            inner: NonZeroUsize::new(capacity.min(KNOWN_KEYS))
                .map(|n| Arc::new(Mutex::new(LruCache::new(n)))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut LruCache<String, Caller>) -> T) -> Option<T> {
        self.inner
            .as_ref()
            .map(|c| f(&mut c.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// The caller a key (by its SHA-256) resolved to before, if kept.
    pub fn get(&self, key_hash: &str) -> Option<Caller> {
        self.with(|c| c.get(key_hash).cloned()).flatten()
    }

    /// Keeps the caller a key lookup resolved.
    pub fn put(&self, key_hash: &str, caller: &Caller) {
        self.with(|c| c.put(key_hash.to_string(), caller.clone()));
    }

    /// Forgets a key (its lookup failed).
    pub fn forget(&self, key_hash: &str) {
        self.with(|c| c.pop(key_hash));
    }
}

impl App {
    /// Resolves a request's key (by its SHA-256). A job command
    /// (`job_command`) from a known key gets its caller without a lookup
    /// (provisional, see the module); anything else is looked up.
    pub async fn resolve_key(&self, key_hash: String, job_command: bool) -> Result<KeyedCaller> {
        if job_command {
            if let Some(caller) = self.keys.get(&key_hash) {
                return Ok(KeyedCaller {
                    caller,
                    key_hash,
                    provisional: true,
                });
            }
        }
        let caller = self.look_up_key(&key_hash).await?;
        Ok(KeyedCaller {
            caller,
            key_hash,
            provisional: false,
        })
    }

    /// The caller, looked up if it was provisional: `Unauthorized` if the
    /// key is no longer active. A key's name, role and technician never
    /// change (only its revocation does), so the caller it resolves to now is
    /// the one the gate admitted; if it were not, the key is refused rather
    /// than run under an admission made for someone else.
    pub async fn confirm_key(&self, who: &KeyedCaller) -> Result<Caller> {
        if !who.provisional {
            return Ok(who.caller.clone());
        }
        let caller = self.look_up_key(&who.key_hash).await?;
        if caller != who.caller {
            self.keys.forget(&who.key_hash);
            return Err(ApiError::Unauthorized);
        }
        Ok(caller)
    }

    /// The answer to a request refused before its command ran (`error`):
    /// on a provisional caller, the key's own refusal if it is no longer
    /// active.
    pub async fn refusal(&self, who: &KeyedCaller, error: ApiError) -> ApiError {
        match self.confirm_key(who).await {
            Ok(_) => error,
            Err(refused) => refused,
        }
    }

    /// Looks a key up by its SHA-256: the caller, or `Unauthorized`, or
    /// `Forbidden` for the system role (internal: no request acts as it).
    /// What it resolved to is kept in the known keys; a key that no longer
    /// resolves is forgotten.
    pub async fn look_up_key(&self, key_hash: &str) -> Result<Caller> {
        let caller = match authenticate_hash(&self.pool, key_hash).await {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, ApiError::Unauthorized) {
                    self.keys.forget(key_hash);
                }
                return Err(e);
            }
        };
        if caller.role == Role::System {
            return Err(ApiError::Forbidden(
                "the system role cannot be used over HTTP".into(),
            ));
        }
        self.keys.put(key_hash, &caller);
        Ok(caller)
    }
}
