//! Waking the projectors after commit, outside the writer's transaction.
//!
//! PostgreSQL serialises the commits of transactions that `NOTIFY`:
//! `PreCommit_Notify` takes a cluster-wide lock that is held until the commit
//! record is flushed, so appends that notified from inside their own
//! transaction (the `events_notify_insert` trigger) committed one WAL flush at
//! a time, whatever the number of clients. The service's own connections set
//! `dispatch.wake_after_commit = on` (see `db::connect`), which makes the
//! trigger skip them (migration 0006), and call [`wake_projectors`] once their
//! transaction has committed. Writers that do not set it still notify from
//! the trigger, as before.
//!
//! Wake-ups are coalesced per pool: one `pg_notify` is in flight at a time,
//! it covers every commit before it was sent, and the next one is sent no
//! sooner than [`MIN_GAP`] after it (the first after a quiet spell goes at
//! once). Under load that is a few dozen a second instead of one per
//! handful of commits; the projectors start a pass at most every 250 ms
//! anyway. The notify's own
//! transaction commits asynchronously (`synchronous_commit = off`): it has
//! nothing to make durable, so it does not wait for a WAL flush while it holds
//! the notify lock. A lost wake-up costs at most the projectors' polling
//! interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::PgPool;

/// The setting that tells the trigger this session wakes the projectors itself.
pub const WAKE_AFTER_COMMIT: &str = "dispatch.wake_after_commit";

const NOTIFY: &str =
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify('dispatch_events', '')";

/// The least time between two wake-ups of one pool.
pub const MIN_GAP: std::time::Duration = std::time::Duration::from_millis(25);

#[derive(Default)]
struct Waker {
    pending: AtomicBool,
    running: AtomicBool,
}

fn waker(pool: &PgPool) -> Arc<Waker> {
    static WAKERS: OnceLock<Mutex<HashMap<usize, Arc<Waker>>>> = OnceLock::new();
    // One entry per pool (its options are one allocation for its lifetime).
    let key = Arc::as_ptr(&pool.connect_options()) as usize;
    let mut map = WAKERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(key).or_default().clone()
}

/// Tells the projectors (of every replica) that events were committed.
/// Returns at once; the notify is sent by a task, coalesced with others.
pub fn wake_projectors(pool: &PgPool) {
    let w = waker(pool);
    w.pending.store(true, Ordering::SeqCst);
    if w.running.swap(true, Ordering::SeqCst) {
        return; // the running task will see `pending`
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        loop {
            while w.pending.swap(false, Ordering::SeqCst) {
                if let Err(e) = sqlx::query(NOTIFY).execute(&pool).await {
                    tracing::debug!(error = %e, "could not wake the projectors; they poll");
                }
                tokio::time::sleep(MIN_GAP).await;
            }
            w.running.store(false, Ordering::SeqCst);
            // A wake-up between the last check and `running = false` is ours to send.
            if !w.pending.load(Ordering::SeqCst) || w.running.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    });
}

/// The listening side: one `LISTEN dispatch_events` connection that bumps
/// `wake` on every notification until `stop` turns true, and reconnects
/// (after a second) when the connection is lost. Each (re)connection bumps
/// it once too: whatever was committed while it was away is picked up. The
/// projectors and the subscriptions each run one.
pub async fn listen(
    pool: PgPool,
    wake: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let listening = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut l) => l.listen("dispatch_events").await.map(|()| l).ok(),
            Err(_) => None,
        };
        let Some(mut listener) = listening else {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        wake.send_modify(|n| *n += 1);
        loop {
            tokio::select! {
                r = listener.recv() => match r {
                    Ok(_) => wake.send_modify(|n| *n += 1),
                    Err(_) => break,
                },
                _ = stop.changed() => return,
            }
        }
    }
}
