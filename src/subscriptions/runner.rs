//! The lead and the delivery loops: one replica at a time delivers every
//! subscription, one task per subscription (a slow sink never holds
//! another back), woken by the store's `pg_notify` and polling as a
//! fallback.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::log::{self, Moved};
use super::shared::{ReadBatch, RecentReads};
use super::{Sink, SinkSource};

/// The advisory lock the leading replica holds (`'DSUB'`).
const LEAD_LOCK: i64 = 0x4453_5542;

/// Events per batch handed to a sink.
pub const DEFAULT_BATCH: i64 = 500;

/// After a step that delivered less than a full batch, how long from its
/// start the next step waits (when events keep coming, a sink takes them
/// in fewer, larger batches: fewer reads and checkpoint writes per event,
/// for at most this much more lag).
pub const LINGER: Duration = Duration::from_millis(20);

/// How often the leader checks its lock, refreshes its sinks and publishes
/// the lag metrics; also how often a replica that does not lead tries to.
const TICK: Duration = Duration::from_secs(2);

/// The subscriptions of one process.
#[derive(Clone)]
pub struct Subscriptions {
    pool: PgPool,
    sources: Vec<Arc<dyn SinkSource>>,
    batch_size: i64,
    poll: Duration,
    instance: String,
}

/// Why a delivery loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Asked to stop, or its subscription is gone.
    Stopped,
    /// Another replica leads now.
    NotLeader,
}

impl Subscriptions {
    /// Subscriptions over the sinks `sources` give.
    pub fn new(pool: PgPool, sources: Vec<Arc<dyn SinkSource>>) -> Self {
        Subscriptions {
            pool,
            sources,
            batch_size: DEFAULT_BATCH,
            poll: Duration::from_millis(500),
            instance: crate::read_models::runtime::instance_id().to_string(),
        }
    }

    /// Names this replica (tests run several in one process).
    pub fn instance(mut self, name: &str) -> Self {
        self.instance = name.to_string();
        self
    }

    /// Sets the batch size.
    pub fn batch_size(mut self, n: i64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Runs until `shutdown` turns true: tries to lead every [`TICK`]; while
    /// leading, delivers.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match this.try_lead().await {
                Ok(Some(lock)) => {
                    tracing::info!(instance = %this.instance, "delivering the subscriptions");
                    this.clone().lead(lock, shutdown.clone()).await;
                    tracing::info!(instance = %this.instance, "no longer delivering the subscriptions");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot try to lead the subscriptions; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Takes the lead if no other replica holds it: the advisory lock on a
    /// connection of its own, then the leader row.
    async fn try_lead(&self) -> Result<Option<PgConnection>, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEAD_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO subscription_leader (only_row, leader, since) VALUES (true, $1, now()) \
             ON CONFLICT (only_row) DO UPDATE SET leader = EXCLUDED.leader, since = EXCLUDED.since",
        )
        .bind(&self.instance)
        .execute(&mut conn)
        .await?;
        Ok(Some(conn))
    }

    /// Delivers while the lock holds and until shutdown: one task per sink,
    /// refreshed every [`TICK`].
    async fn lead(self: Arc<Self>, mut lock: PgConnection, mut shutdown: watch::Receiver<bool>) {
        let (stop, stopped) = watch::channel(false);
        let (wake, _) = watch::channel(0u64);
        let wake = Arc::new(wake);
        // Dropped with this future (a replica that dies mid-lead, a test
        // that aborts it), the tasks go too: none delivers on unled.
        let listener = {
            let (pool, wake, stopped) = (self.pool.clone(), wake.clone(), stopped.clone());
            Task(tokio::spawn(async move {
                crate::store::wake::listen(pool, wake, stopped).await;
                Ended::Stopped
            }))
        };
        let mut tasks: HashMap<String, Task> = HashMap::new();
        // One replica's subscriptions share their reads.
        let recent = Arc::new(RecentReads::default());
        let mut ticks = 0u64;
        loop {
            let alive = tokio::time::timeout(
                Duration::from_secs(5),
                sqlx::query("SELECT 1").execute(&mut lock),
            )
            .await;
            if !matches!(alive, Ok(Ok(_))) {
                tracing::warn!("the subscriptions' lock connection is gone: stepping down");
                break;
            }
            let mut lost = false;
            tasks.retain(|_, t| {
                if !t.0.is_finished() {
                    return true;
                }
                lost |= matches!(t.ended(), Some(Ended::NotLeader));
                false
            });
            if lost {
                tracing::warn!("another replica leads the subscriptions: stepping down");
                break;
            }
            self.refresh(&mut tasks, &wake, &stopped, &recent).await;
            if ticks % 3 == 0 {
                super::status::publish_metrics(&self.pool).await;
            }
            ticks += 1;
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        let _ = stop.send(true);
        // Each stops between batches; one stuck in a delivery is aborted
        // after five seconds (its batch is offered again: at least once).
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            for (_, mut t) in tasks {
                let _ = (&mut t.0).await;
            }
        })
        .await;
        drop(listener);
        // Closing the connection releases the lock.
        let _ = lock.close().await;
    }

    /// Starts a task for every sink the sources give that has none, and
    /// stops the tasks of sinks no longer given.
    async fn refresh(
        &self,
        tasks: &mut HashMap<String, Task>,
        wake: &Arc<watch::Sender<u64>>,
        stopped: &watch::Receiver<bool>,
        recent: &Arc<RecentReads>,
    ) {
        let mut wanted: HashMap<String, Arc<dyn Sink>> = HashMap::new();
        for source in &self.sources {
            match source.sinks().await {
                Ok(sinks) => {
                    for s in sinks {
                        wanted.insert(s.name().to_string(), s);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the subscriptions' sinks; keeping the running ones");
                    return;
                }
            }
        }
        // A task dropped is aborted.
        tasks.retain(|name, _| wanted.contains_key(name));
        for (name, sink) in wanted {
            if tasks.contains_key(&name) {
                continue;
            }
            let delivery = Delivering {
                pool: self.pool.clone(),
                sink,
                instance: self.instance.clone(),
                batch_size: self.batch_size,
                poll: self.poll,
                recent: recent.clone(),
                moved_to: None,
            };
            tasks.insert(
                name,
                Task(tokio::spawn(
                    delivery.run(wake.subscribe(), stopped.clone()),
                )),
            );
        }
    }
}

/// A spawned task that is aborted when dropped.
struct Task(JoinHandle<Ended>);

impl Task {
    /// A finished task's outcome, without waiting.
    fn ended(&mut self) -> Option<Ended> {
        use futures::FutureExt;
        (&mut self.0).now_or_never().and_then(|r| r.ok())
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One subscription's delivery loop.
struct Delivering {
    pool: PgPool,
    sink: Arc<dyn Sink>,
    instance: String,
    batch_size: i64,
    poll: Duration,
    /// The reads shared with the replica's other subscriptions.
    recent: Arc<RecentReads>,
    /// Where this loop's last step moved the checkpoint: the next step
    /// starts there without reading it back. Kept for one step only (a
    /// step that finds nothing to deliver forgets it), so a checkpoint
    /// moved by someone else (a replay) is read again once the loop is
    /// idle; and a step that starts from it moves the checkpoint only if
    /// it still stands there ([`log::advance`]).
    moved_to: Option<log::Cursor>,
}

impl Delivering {
    async fn run(
        mut self,
        mut woken: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) -> Ended {
        let name = self.sink.name().to_string();
        if !self.resume(&mut stop).await {
            return Ended::Stopped;
        }
        loop {
            if *stop.borrow() {
                return Ended::Stopped;
            }
            woken.borrow_and_update();
            let started = tokio::time::Instant::now();
            match self.step().await {
                Ok(Step::Delivered { full: true }) => {}
                Ok(Step::Delivered { full: false }) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(started + LINGER) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(Step::Idle) => {
                    tokio::select! {
                        _ = woken.changed() => {}
                        _ = tokio::time::sleep(self.poll) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(Step::Failed(wait)) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(Step::Ended(e)) => return e,
                Err(e) => {
                    tracing::warn!(subscription = %name, error = %e, "subscription step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    /// Moves the checkpoint to where the sink says it already is, retrying
    /// until it answers; false when stopped first.
    async fn resume(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let name = self.sink.name();
        loop {
            if *stop.borrow() {
                return false;
            }
            let checkpoint = match log::checkpoint(&self.pool, name).await {
                Ok(Some(c)) => c,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(subscription = %name, error = %e, "cannot read the checkpoint; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match self.sink.resume(checkpoint).await {
                Ok(Some(at)) if at > checkpoint => {
                    tracing::info!(subscription = %name, position = at.pos, "the sink already holds events past the checkpoint: resuming after them");
                    match log::reset(&self.pool, name, at).await {
                        Ok(_) => return true,
                        Err(e) => {
                            tracing::warn!(subscription = %name, error = %e, "cannot move the checkpoint; retrying")
                        }
                    }
                }
                Ok(_) => return true,
                Err(e) => {
                    let _ = log::record_error(&self.pool, name, &e).await;
                    tracing::warn!(subscription = %name, error = %e, "the sink cannot say where it stands; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One batch: read after the checkpoint, deliver, move the checkpoint
    /// past what the sink acknowledged.
    async fn step(&mut self) -> super::Result<Step> {
        let name = self.sink.name();
        let from = match self.moved_to.take() {
            Some(at) => at,
            None => match log::checkpoint(&self.pool, name).await? {
                Some(at) => at,
                None => return Ok(Step::Ended(Ended::Stopped)),
            },
        };
        let (read, start, behind) = match self.recent.after(from) {
            Some(kept) => kept,
            None => {
                let batch = {
                    let mut conn = self.pool.acquire().await?;
                    log::read_after(&mut conn, from, self.batch_size).await?
                };
                let read = Arc::new(ReadBatch { from, batch });
                self.recent.keep(read.clone());
                (read, 0, false)
            }
        };
        let events = &read.batch.events[start..];
        if events.is_empty() {
            return Ok(Step::Idle);
        }
        // A full read, or a kept batch with later ones kept too: more are
        // waiting after it (a sink behind the others catches up at once).
        let full = behind || read.batch.events.len() as i64 >= self.batch_size;
        let delivery = self.sink.deliver(events).await;
        let acked = delivery.acknowledged.min(events.len());
        if acked > 0 {
            let to = read.batch.cursors[start + acked - 1];
            match log::advance(&self.pool, name, &self.instance, from, to, acked as i64).await? {
                Moved::Yes => {
                    self.moved_to = Some(to);
                    metrics::counter!("dispatch_subscription_events_total", "subscription" => name.to_string())
                        .increment(acked as u64);
                }
                Moved::Elsewhere => return Ok(Step::Delivered { full }),
                Moved::NotLeader => return Ok(Step::Ended(Ended::NotLeader)),
            }
        }
        match delivery.error {
            Some(e) => {
                log::record_error(&self.pool, name, &e).await?;
                Ok(Step::Failed(
                    delivery.retry_in.unwrap_or(Duration::from_secs(1)),
                ))
            }
            None => Ok(Step::Delivered { full }),
        }
    }
}

/// What one step did.
enum Step {
    /// Delivered; `full` when more are likely waiting (a full read, or a
    /// sink behind the others): the next step goes at once.
    Delivered {
        full: bool,
    },
    Idle,
    Failed(Duration),
    Ended(Ended),
}
