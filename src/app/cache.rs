//! Job states kept in memory between commands.
//!
//! A job command needs the job as its stream's events make it, and reading
//! and decoding every event of the stream on every command was the largest
//! part of a command's cost after the write. The service keeps the state a
//! command left behind (the folded `Job` and its stream head) for the next
//! command on the same job.
//!
//! The cache is only ever an optimisation; the store stays the truth:
//!
//! - a state is put here only after the write that produced it committed,
//!   and only while the job is not in a final state (closed, cancelled…);
//! - a command takes the state out while it decides, so two commands on one
//!   job never decide on the same copy;
//! - a command decided on a cached state is written only if it appends
//!   events, and the events' primary key `(aggregate, sequence)` refuses the
//!   write if anything (another replica, a timer, another process) appended
//!   after the cached head. Any other outcome — a refusal, an `If-Match`
//!   mismatch, a key used before, a conflict — is decided again from the
//!   store by the ordinary path (`App::command`), which is what answers.
//!
//! So a stale entry costs one refused write, never a wrong answer.
//!
//! A job command from a key this process already knows may also skip the
//! key lookup on a kept job (its write checks the key): that shortcut is
//! `App::job_command`'s (`app/commands/job.rs`).
//!
//! The cache also holds this process's turns on streams ([`Turns`]): what
//! a replica keeps of the jobs it commands is its own, so a second replica
//! (in tests, an `App` with another cache) races the first through the
//! store as another process would.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::turns::{Turn, Turns};
use crate::domain::job::Job;
use crate::store::StreamState;

/// The default number of jobs kept (a job's state is a few kB).
pub const DEFAULT_CAPACITY: usize = 4096;

/// Job id → the job and its stream head, least recently used evicted first.
type Entries = LruCache<String, (Job, StreamState)>;

/// Recently commanded jobs.
#[derive(Clone)]
pub struct JobCache {
    inner: Option<Arc<Mutex<Entries>>>,
    turns: Turns,
}

impl std::fmt::Debug for JobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.inner.as_ref().map(|c| Self::lock(c).len());
        f.debug_struct("JobCache").field("len", &len).finish()
    }
}

impl Default for JobCache {
    fn default() -> Self {
        JobCache::new(DEFAULT_CAPACITY)
    }
}

impl JobCache {
    /// A cache of up to `capacity` jobs; `0` keeps none (every command reads its stream).
    pub fn new(capacity: usize) -> Self {
        JobCache {
            inner: NonZeroUsize::new(capacity).map(|n| Arc::new(Mutex::new(LruCache::new(n)))),
            turns: Turns::default(),
        }
    }

    fn lock<T>(c: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        c.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this process's turn on stream `(aggregate_type,
    /// aggregate_id)` (see [`crate::app::turns`]); kept even when no state
    /// is (capacity 0).
    pub async fn turn(&self, aggregate_type: &str, aggregate_id: &str) -> Turn {
        self.turns.take(aggregate_type, aggregate_id).await
    }

    /// Takes a job's state out (the caller puts back what its write left).
    pub fn take(&self, job_id: &str) -> Option<(Job, StreamState)> {
        let taken = self.inner.as_ref().and_then(|c| Self::lock(c).pop(job_id));
        let outcome = if taken.is_some() { "hit" } else { "miss" };
        metrics::counter!("dispatch_job_cache_total", "outcome" => outcome).increment(1);
        taken
    }

    /// Keeps the state a committed write left.
    pub fn put(&self, job_id: &str, job: Job, head: StreamState) {
        if let Some(c) = &self.inner {
            Self::lock(c).put(job_id.to_string(), (job, head));
        }
    }

    /// How many jobs are kept.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |c| Self::lock(c).len())
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
