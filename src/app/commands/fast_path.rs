//! The one door of a job command: [`App::job_command`].
//!
//! The shortcut it hides: a job command from an API key this process has
//! resolved before ([`KnownKeys`](crate::app::keys::KnownKeys)), on a job
//! whose state it keeps ([`crate::app::cache`]), skips the key lookup. The
//! gate admits it on the caller the key resolved to before (a *provisional*
//! [`KeyedCaller`]), and its write checks, in the same subtransaction, that
//! the key is still active (`dispatch_require_active_key`, migration 0008):
//! a revoked key takes effect at the revocation's commit, as it does with
//! the lookup.
//!
//! The rule: nothing is answered on a provisional caller but a write that
//! checked the key. Whatever that write does not settle — a bad request, a
//! refusal, a stale state, a reused idempotency key, a key no longer active
//! — is answered only after the key is looked up ([`App::confirm_key`]), so
//! the answers (401 before anything else) are those of the ordinary path.

use super::Reply;
use crate::app::{App, Caller, RequestMeta};
use crate::domain::job::JobCommand;
use crate::error::{ApiError, Result};

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

    /// Runs a job command on job `job_id` for `who`: on a provisional caller
    /// through the write that checks the key, and otherwise — or when that
    /// write does not settle it — on the confirmed caller
    /// ([`App::execute_job`]).
    pub async fn job_command(
        &self,
        who: &KeyedCaller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
    ) -> Result<Reply> {
        if who.provisional {
            match self.key_in_write(who, meta, job_id, command.clone()).await {
                Ok(Some(reply)) => return Ok(reply),
                Err(e) => return Err(self.refusal(who, e).await),
                Ok(None) => {}
            }
        }
        let caller = self.confirm_key(who).await?;
        self.execute_job(&caller, meta, Some(job_id), command).await
    }

    /// A job command on a job whose state this process keeps, from a
    /// provisional caller: answers only if the command appends events and
    /// its write, which checks in the same statement that the key is still
    /// active, commits. `None` otherwise — the job is not kept, the command
    /// is refused, the state was stale, the idempotency key was used
    /// before, or the API key is no longer active.
    async fn key_in_write(
        &self,
        who: &KeyedCaller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
    ) -> Result<Option<Reply>> {
        let started = std::time::Instant::now();
        if !crate::app::storable_id(job_id) {
            return Ok(None);
        }
        let Some(state) = self.jobs.take(job_id) else {
            return Ok(None);
        };
        let name = command.wire_name();
        let reply = self
            .cached_job_command(
                &who.caller,
                meta,
                job_id,
                command,
                state,
                Some(&who.key_hash),
            )
            .await?;
        if let Some(r) = &reply {
            super::record_command(name, started, Ok(r));
        }
        Ok(reply)
    }
}
