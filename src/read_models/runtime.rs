//! The projector runtime: registration, batches, the live loop, rebuilds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;

use super::jobs::{fold_jobs, fold_jobs_into, JobChange};
use super::{EventRow, Projection, ProjectionContext};
use super::{ReadModelError, Result};

/// Events per batch in the live loop (rebuilds use the same size; the loop
/// simply runs more batches).
pub const DEFAULT_BATCH: i64 = 5000;

/// Shadow tables rebuilt together read batches this many times larger.
const REBUILD_GROUP_FACTOR: i64 = 4;

/// A batch read ahead: the events after `from` (a `(tx_id, position)`).
struct Prefetched {
    from: (u64, i64),
    rows: Vec<EventRow>,
}

/// A read model's loop starts a pass at most this often while events keep
/// coming: under load, waiting a moment gathers a batch instead of paying a
/// transaction per read model for every commit. A live pass goes on to the
/// next batch only while batches come back full, so each active job's state
/// is folded and written about once per interval, not once per commit (the
/// benchmark's lag p99 stays under its 500 ms bar; see docs/benchmarks.md).
pub const PASS_INTERVAL: Duration = Duration::from_millis(250);
/// How long a replaced table is kept before it is dropped.
const RETIRE_GRACE_SECONDS: i64 = 30;

/// The projectors of one process.
#[derive(Clone)]
pub struct Runtime {
    pool: PgPool,
    projections: Vec<Arc<dyn Projection>>,
    ctx: ProjectionContext,
    batch_size: i64,
    poll: Duration,
}

/// A registry row.
#[derive(Debug, Clone)]
struct Registered {
    active_table: String,
    building_table: Option<String>,
    building_version: Option<i32>,
}

fn table_name(name: &str, version: i32, generation: i32) -> String {
    format!("rm_{name}_v{version}_g{generation}")
}

async fn create_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    table: &str,
) -> Result<()> {
    let ddl = projection.definition().ddl.replace("{table}", table);
    for stmt in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(stmt).execute(&mut *conn).await?;
    }
    if projection.needs_job_state() {
        // Folded job states are a few kB each, rewritten on every batch that
        // touches the job and read only by the projectors: kept as text (no
        // jsonb parsing on the way in nor rendering on the way out) and
        // compressed with lz4 at a fraction of pglz's cost (pglz and json_lex
        // were the projectors' largest PostgreSQL costs in the benchmark's
        // profile). Servers built without lz4 keep the default.
        let lz4: bool = sqlx::query_scalar(
            "SELECT COALESCE((SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'), false)",
        )
        .fetch_one(&mut *conn)
        .await?;
        let compression = if lz4 { " COMPRESSION lz4" } else { "" };
        sqlx::query(&format!(
            "CREATE TABLE {table}_jobs (job_id text PRIMARY KEY, job text{compression} NOT NULL)"
        ))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("INSERT INTO projection_checkpoints (table_name) VALUES ($1) ON CONFLICT (table_name) DO NOTHING").bind(table).execute(&mut *conn).await?;
    Ok(())
}

impl Runtime {
    /// A runtime over every read model.
    pub fn new(pool: PgPool, ctx: ProjectionContext) -> Self {
        Runtime::with_projections(pool, ctx, super::all())
    }

    /// A runtime over the given projections (tests swap in other versions).
    pub fn with_projections(
        pool: PgPool,
        ctx: ProjectionContext,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        Runtime {
            pool,
            projections,
            ctx,
            batch_size: DEFAULT_BATCH,
            poll: Duration::from_millis(500),
        }
    }

    /// Sets the batch size.
    pub fn batch_size(mut self, n: i64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The projections this runtime runs.
    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    /// Makes sure every read model has a serving table; where a definition's
    /// version differs from the serving one, starts building a shadow table.
    pub async fn register(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dispatch_projection_registry'))")
            .execute(&mut *tx)
            .await?;
        for p in &self.projections {
            let def = p.definition();
            let row = sqlx::query("SELECT active_version, building_version, generation FROM projection_registry WHERE name = $1 FOR UPDATE")
                .bind(&def.name)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                None => {
                    let table = table_name(&def.name, def.version, 1);
                    create_tables(&mut tx, p.as_ref(), &table).await?;
                    sqlx::query("INSERT INTO projection_registry (name, active_table, active_version, generation) VALUES ($1, $2, $3, 1)")
                        .bind(&def.name)
                        .bind(&table)
                        .bind(def.version)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(r) => {
                    let active: i32 = r.try_get("active_version")?;
                    let building: Option<i32> = r.try_get("building_version")?;
                    if active != def.version && building != Some(def.version) {
                        let generation: i32 = r.try_get::<i32, _>("generation")? + 1;
                        let table = table_name(&def.name, def.version, generation);
                        create_tables(&mut tx, p.as_ref(), &table).await?;
                        sqlx::query("UPDATE projection_registry SET building_table = $2, building_version = $3, generation = $4, updated_at = now() WHERE name = $1")
                            .bind(&def.name)
                            .bind(&table)
                            .bind(def.version)
                            .bind(generation)
                            .execute(&mut *tx)
                            .await?;
                        tracing::info!(projection = %def.name, from = active, to = def.version, %table, "rebuilding read model for a new version");
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts a rebuild of a read model at its current version (a new
    /// generation); the live loop (or [`Runtime::catch_up`]) builds and swaps it.
    pub async fn request_rebuild(&self, name: &str) -> Result<String> {
        let p = self
            .projections
            .iter()
            .find(|p| p.definition().name == name)
            .ok_or_else(|| ReadModelError::Unknown(format!("no read model named `{name}`")))?;
        let def = p.definition();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dispatch_projection_registry'))")
            .execute(&mut *tx)
            .await?;
        let generation: i32 = sqlx::query_scalar(
            "SELECT generation + 1 FROM projection_registry WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ReadModelError::Unknown(format!("read model `{name}` is not registered")))?;
        let table = table_name(&def.name, def.version, generation);
        create_tables(&mut tx, p.as_ref(), &table).await?;
        // A rebuild already under way is superseded: its table is retired.
        sqlx::query("INSERT INTO projection_retired (table_name) SELECT building_table FROM projection_registry WHERE name = $1 AND building_table IS NOT NULL ON CONFLICT DO NOTHING")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE projection_registry SET building_table = $2, building_version = $3, generation = $4, updated_at = now() WHERE name = $1")
            .bind(name)
            .bind(&table)
            .bind(def.version)
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(table)
    }

    /// Reads the next batch after `(last_tx, last_pos)`, below the oldest
    /// running transaction.
    async fn read_batch(
        &self,
        conn: &mut PgConnection,
        last_tx: &str,
        last_pos: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, global_position, tx_id::text AS tx, event_type, event_version, payload, \
                    (metadata->>'occurred_at') AS occurred_at \
             FROM events \
             WHERE (tx_id, global_position) > ($1::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, global_position LIMIT $3",
        )
        .bind(last_tx)
        .bind(last_pos)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut batch = Vec::with_capacity(rows.len());
        for r in rows {
            let tx_text: String = r.try_get("tx")?;
            let occurred: Option<String> = r.try_get("occurred_at")?;
            batch.push(EventRow {
                aggregate_type: r.try_get("aggregate_type")?,
                aggregate_id: r.try_get("aggregate_id")?,
                sequence: r.try_get("sequence")?,
                global_position: r.try_get("global_position")?,
                tx_id: tx_text.parse().map_err(|_| {
                    ReadModelError::Corrupt(format!("tx id {tx_text} is not a number"))
                })?,
                event_type: r.try_get("event_type")?,
                event_version: r.try_get("event_version")?,
                payload: r.try_get("payload")?,
                occurred_at: occurred
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
            });
        }
        Ok(batch)
    }

    /// Reads the batch after `from` on a connection of its own, for
    /// [`Runtime::advance_level`]'s next call; `None` if no connection is free
    /// soon or the read fails (the next call then reads it itself).
    async fn read_ahead(&self, from: (u64, i64), limit: i64) -> Option<Prefetched> {
        let mut conn = tokio::time::timeout(Duration::from_millis(50), self.pool.acquire())
            .await
            .ok()?
            .ok()?;
        let rows = self
            .read_batch(&mut conn, &from.0.to_string(), from.1, limit)
            .await
            .ok()?;
        Some(Prefetched { from, rows })
    }

    /// Moves `table`'s checkpoint past `batch` (inside the batch's transaction).
    async fn mark(&self, conn: &mut PgConnection, table: &str, batch: &[EventRow]) -> Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE projection_checkpoints SET last_tx = $2::text::xid8, last_pos = $3, events_applied = events_applied + $4, updated_at = now(), applied_by = $5 WHERE table_name = $1",
        )
        .bind(table)
        .bind(last.tx_id.to_string())
        .bind(last.global_position)
        .bind(batch.len() as i64)
        .bind(instance_id())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    fn record_batch(
        projection: &dyn Projection,
        table: &str,
        batch: &[EventRow],
        started: Instant,
    ) {
        let Some(last) = batch.last() else {
            return;
        };
        let name = projection.definition().name.clone();
        metrics::histogram!("dispatch_projection_batch_size", "projection" => name.clone())
            .record(batch.len() as f64);
        metrics::histogram!("dispatch_projection_batch_seconds", "projection" => name)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("dispatch_projection_position", "table" => table.to_string())
            .set(last.global_position as f64);
    }

    /// Applies one batch to `table`. `None`: another replica holds the table.
    pub async fn advance(&self, projection: &dyn Projection, table: &str) -> Result<Option<usize>> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let checkpoint = sqlx::query("SELECT last_tx::text AS last_tx, last_pos FROM projection_checkpoints WHERE table_name = $1 FOR UPDATE SKIP LOCKED")
            .bind(table)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(checkpoint) = checkpoint else {
            return Ok(None);
        };
        let last_tx: String = checkpoint.try_get("last_tx")?;
        let last_pos: i64 = checkpoint.try_get("last_pos")?;
        let batch = self
            .read_batch(&mut tx, &last_tx, last_pos, self.batch_size)
            .await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(Some(0));
        }
        let changes = if projection.needs_job_state() {
            fold_jobs(&mut tx, &format!("{table}_jobs"), &batch).await?
        } else {
            Vec::new()
        };
        projection
            .apply(&mut tx, table, &batch, &changes, &self.ctx)
            .await?;
        self.mark(&mut tx, table, &batch).await?;
        tx.commit().await?;
        Self::record_batch(projection, table, &batch, started);
        Ok(Some(batch.len()))
    }

    /// Applies one batch to every serving table that stands at the same
    /// position as the most others (at least two), in one transaction: the
    /// batch is read once and the touched jobs folded once for all of them
    /// (see [`fold_jobs_into`]). Returns the events applied and the tables
    /// advanced (or found caught up); `None` if fewer than two tables stand
    /// level (or could be locked), which leaves them to [`Runtime::advance`].
    ///
    /// `prefetch`: for a run of batches (rebuilds): a batch read ahead by
    /// the previous call is used if it starts where the tables stand, and
    /// the next batch is read, on another connection, while this one is
    /// folded and written (reading it is a fifth of a batch's time, and the
    /// machine is otherwise one connection's worth busy).
    async fn advance_level(
        &self,
        live: &[(Arc<dyn Projection>, String)],
        limit: i64,
        mut prefetch: Option<&mut Option<Prefetched>>,
    ) -> Result<Option<(usize, Vec<String>)>> {
        let started = Instant::now();
        let tables: Vec<&str> = live.iter().map(|(_, t)| t.as_str()).collect();
        let positions = sqlx::query(
            "SELECT table_name, last_tx::text AS last_tx, last_pos FROM projection_checkpoints WHERE table_name = ANY($1)",
        )
        .bind(&tables)
        .fetch_all(&self.pool)
        .await?;
        let mut level: std::collections::BTreeMap<(u64, i64), Vec<String>> = Default::default();
        for r in positions {
            let last_tx: String = r.try_get("last_tx")?;
            let at = (
                last_tx.parse::<u64>().unwrap_or(0),
                r.try_get::<i64, _>("last_pos")?,
            );
            level.entry(at).or_default().push(r.try_get("table_name")?);
        }
        // The most tables; of equals, the furthest behind.
        let Some((at, members)) = level.into_iter().rev().max_by_key(|(_, m)| m.len()) else {
            return Ok(None);
        };
        if members.len() < 2 {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query(
            "SELECT table_name FROM projection_checkpoints WHERE table_name = ANY($1) AND last_tx = $2::text::xid8 AND last_pos = $3 \
             ORDER BY table_name FOR UPDATE SKIP LOCKED",
        )
        .bind(&members)
        .bind(at.0.to_string())
        .bind(at.1)
        .fetch_all(&mut *tx)
        .await?;
        let locked: Vec<String> = locked
            .iter()
            .map(|r| r.try_get("table_name"))
            .collect::<std::result::Result<_, _>>()?;
        if locked.len() < 2 {
            return Ok(None);
        }
        // A batch read ahead is used only if it starts where the tables stand.
        let ahead = prefetch
            .as_deref_mut()
            .and_then(Option::take)
            .filter(|p| p.from == at);
        let batch = match ahead {
            Some(p) => p.rows,
            None => {
                self.read_batch(&mut tx, &at.0.to_string(), at.1, limit)
                    .await?
            }
        };
        let Some(last) = batch.last() else {
            tx.commit().await?;
            return Ok(Some((0, locked)));
        };
        let next_from = (last.tx_id as u64, last.global_position);
        let group: Vec<&(Arc<dyn Projection>, String)> =
            live.iter().filter(|(_, t)| locked.contains(t)).collect();
        let state_tables: Vec<String> = group
            .iter()
            .filter(|(p, _)| p.needs_job_state())
            .map(|(_, t)| format!("{t}_jobs"))
            .collect();
        let work = async {
            let state_refs: Vec<&str> = state_tables.iter().map(String::as_str).collect();
            let changes = fold_jobs_into(&mut tx, &state_refs, &batch).await?;
            for (p, table) in &group {
                let changes: &[JobChange] = if p.needs_job_state() { &changes } else { &[] };
                p.apply(&mut tx, table, &batch, changes, &self.ctx).await?;
                self.mark(&mut tx, table, &batch).await?;
            }
            Ok::<(), ReadModelError>(())
        };
        match prefetch {
            Some(slot) => {
                let (done, next) =
                    futures::future::join(work, self.read_ahead(next_from, limit)).await;
                done?;
                *slot = next;
            }
            None => work.await?,
        }
        tx.commit().await?;
        for (p, table) in &group {
            Self::record_batch(p.as_ref(), table, &batch, started);
        }
        Ok(Some((batch.len(), locked)))
    }

    /// Advances `table` by up to `max_batches` on its own.
    async fn advance_alone(
        &self,
        p: &dyn Projection,
        table: &str,
        max_batches: usize,
    ) -> Result<usize> {
        let mut applied = 0;
        for _ in 0..max_batches {
            match self.advance(p, table).await? {
                Some(n) if n > 0 => applied += n,
                _ => break,
            }
        }
        Ok(applied)
    }

    /// Every read model with its registry row.
    async fn registered_all(&self) -> Result<Vec<(Arc<dyn Projection>, Registered)>> {
        // One read of the registry per pass (not one per model).
        let rows = sqlx::query(
            "SELECT name, active_table, building_table, building_version FROM projection_registry",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for p in &self.projections {
            let Some(r) = rows
                .iter()
                .find(|r| r.try_get::<&str, _>("name").ok() == Some(p.definition().name.as_str()))
            else {
                continue;
            };
            out.push((
                p.clone(),
                Registered {
                    active_table: r.try_get("active_table")?,
                    building_table: r.try_get("building_table")?,
                    building_version: r.try_get("building_version")?,
                },
            ));
        }
        Ok(out)
    }

    /// The serving tables' share of a pass: those standing level advance
    /// together ([`Runtime::advance_level`]), the rest (a model behind or
    /// ahead of the others) each on its own, side by side.
    pub async fn step_live(&self, max_batches: usize) -> Result<usize> {
        let live: Vec<(Arc<dyn Projection>, String)> = self
            .registered_all()
            .await?
            .into_iter()
            .map(|(p, reg)| (p, reg.active_table))
            .collect();
        let mut applied = 0;
        let mut together: Vec<String> = Vec::new();
        for _ in 0..max_batches {
            match self.advance_level(&live, self.batch_size, None).await? {
                Some((n, members)) => {
                    together = members;
                    applied += n;
                    if (n as i64) < self.batch_size {
                        break;
                    }
                }
                None => {
                    together.clear();
                    break;
                }
            }
        }
        let alone = live
            .iter()
            .filter(|(_, t)| !together.contains(t))
            .map(|(p, t)| self.advance_alone(p.as_ref(), t, max_batches));
        for r in futures::future::join_all(alone).await {
            applied += r?;
        }
        Ok(applied)
    }

    /// The rebuilds' share of a pass: shadow tables standing level advance
    /// together, the others each on its own (side by side); each is swapped
    /// in once it covers its serving table.
    pub async fn step_rebuilds(&self, max_batches: usize) -> Result<usize> {
        let regs = self.registered_all().await?;
        let shadows: Vec<(Arc<dyn Projection>, String)> = regs
            .iter()
            .filter_map(|(p, reg)| Some((p.clone(), reg.building_table.clone()?)))
            .collect();
        let mut applied = 0;
        // Shadows standing level (models rebuilt at the same time) advance
        // together first: one read and one fold for all of them.
        // Their batches are larger: a rebuild reads history, where a job's
        // events lie spread over thousands of others', and every batch that
        // touches a job writes its state once per table.
        let limit = self.batch_size.saturating_mul(REBUILD_GROUP_FACTOR);
        let mut ahead = None;
        for _ in 0..max_batches {
            match self
                .advance_level(&shadows, limit, Some(&mut ahead))
                .await?
            {
                Some((n, _)) if n > 0 => applied += n,
                _ => break,
            }
        }
        let rebuilds = regs
            .iter()
            .filter(|(_, reg)| reg.building_table.is_some())
            .map(|(p, reg)| self.step_rebuild(p.as_ref(), reg, max_batches));
        for r in futures::future::join_all(rebuilds).await {
            applied += r?;
        }
        Ok(applied)
    }

    /// One pass over every read model: [`Runtime::step_live`] and
    /// [`Runtime::step_rebuilds`] side by side, then drops retired tables
    /// past their grace. Returns the events applied.
    pub async fn step(&self, max_batches: usize) -> Result<usize> {
        let (live, rebuilds) =
            futures::future::join(self.step_live(max_batches), self.step_rebuilds(max_batches))
                .await;
        let applied = live? + rebuilds?;
        self.drop_retired().await?;
        Ok(applied)
    }

    /// Advances a read model's shadow table; swaps it in once it is caught up.
    async fn step_rebuild(
        &self,
        p: &dyn Projection,
        reg: &Registered,
        max_batches: usize,
    ) -> Result<usize> {
        let name = &p.definition().name;
        let mut applied = 0;
        if let Some(building) = &reg.building_table {
            let mut caught_up = false;
            for _ in 0..max_batches {
                let adv = self.advance(p, building);
                match adv.await? {
                    Some(0) => {
                        caught_up = true;
                        break;
                    }
                    Some(n) => applied += n,
                    None => break,
                }
            }
            // "Nothing visible" is not "caught up": the visibility horizon
            // (the oldest running transaction, cluster-wide) can hold both
            // tables back. Swap only once the shadow covers everything the
            // serving table has applied.
            if caught_up && self.covers(building, &reg.active_table).await? {
                self.swap(name, building, reg.building_version.unwrap_or_default())
                    .await?;
            }
        }
        Ok(applied)
    }

    /// Whether table `a`'s checkpoint has reached table `b`'s.
    async fn covers(&self, a: &str, b: &str) -> Result<bool> {
        let covers: Option<bool> = sqlx::query_scalar(
            "SELECT (ca.last_tx, ca.last_pos) >= (cb.last_tx, cb.last_pos) FROM projection_checkpoints ca, projection_checkpoints cb \
             WHERE ca.table_name = $1 AND cb.table_name = $2",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(&self.pool)
        .await?;
        Ok(covers.unwrap_or(false))
    }

    async fn swap(&self, name: &str, building: &str, version: i32) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let old: Option<String> = sqlx::query_scalar(
            "UPDATE projection_registry r SET active_table = $2, active_version = $3, building_table = NULL, building_version = NULL, updated_at = now() \
             FROM (SELECT active_table FROM projection_registry WHERE name = $1 FOR UPDATE) old \
             WHERE r.name = $1 AND r.building_table = $2 RETURNING old.active_table",
        )
        .bind(name)
        .bind(building)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old) = old {
            sqlx::query(
                "INSERT INTO projection_retired (table_name) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(&old)
            .execute(&mut *tx)
            .await?;
            tracing::info!(projection = name, table = building, replaced = %old, "read model rebuilt and swapped in");
        }
        tx.commit().await?;
        Ok(())
    }

    async fn drop_retired(&self) -> Result<()> {
        let due: Vec<String> = sqlx::query_scalar("SELECT table_name FROM projection_retired WHERE retired_at < now() - make_interval(secs => $1)")
            .bind(RETIRE_GRACE_SECONDS as f64)
            .fetch_all(&self.pool)
            .await?;
        for table in due {
            let mut tx = self.pool.begin().await?;
            for stmt in [
                format!("DROP TABLE IF EXISTS {table}_jobs"),
                format!("DROP TABLE IF EXISTS {table}"),
            ] {
                sqlx::query(&stmt).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM projection_checkpoints WHERE table_name = $1")
                .bind(&table)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM projection_retired WHERE table_name = $1")
                .bind(&table)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Steps until every committed event is applied by every table and no
    /// rebuild is pending (tests, CLI). Waits out a horizon held back by
    /// another transaction; gives up after two minutes.
    pub async fn catch_up(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let applied = self.step(50).await?;
            if applied > 0 {
                continue;
            }
            let pending: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projection_registry WHERE building_table IS NOT NULL) \
                 OR EXISTS (SELECT 1 FROM projection_registry r JOIN projection_checkpoints c ON c.table_name = r.active_table \
                            WHERE EXISTS (SELECT 1 FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos)))",
            )
            .fetch_one(&self.pool)
            .await?;
            if !pending {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(ReadModelError::TimedOut(
                    "read models did not catch up within two minutes".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs until `shutdown` turns true: a loop over the serving tables
    /// (those standing level advance together, one read and one fold for
    /// all; see [`Runtime::step_live`]) and a loop over rebuilds (so that a
    /// long rebuild never holds the serving tables back), woken by
    /// `pg_notify` on one shared listener, polling as a fallback; and a
    /// housekeeping loop (retired tables, lag metrics).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // Bumped on every notification; each loop remembers what it has seen.
        let (wake, _) = watch::channel(0u64);
        let wake = Arc::new(wake);
        let mut tasks = Vec::new();
        for rebuilds in [false, true] {
            let (this, mut woken, mut shutdown) =
                (this.clone(), wake.subscribe(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                let what = if rebuilds { "rebuild" } else { "live" };
                loop {
                    if *shutdown.borrow() {
                        return;
                    }
                    let next_pass = tokio::time::Instant::now() + PASS_INTERVAL;
                    woken.borrow_and_update();
                    let step = if rebuilds {
                        this.step_rebuilds(20).await
                    } else {
                        this.step_live(20).await
                    };
                    let worked = match step {
                        Ok(n) => n > 0,
                        Err(e) => {
                            tracing::warn!(error = %e, pass = what, "projector step failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            false
                        }
                    };
                    if !worked {
                        tokio::select! {
                            _ = woken.changed() => {}
                            _ = tokio::time::sleep(this.poll) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(next_pass) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }));
        }
        let listen = {
            let (this, wake, mut shutdown) = (this.clone(), wake.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    if *shutdown.borrow() {
                        return;
                    }
                    let listening = match PgListener::connect_with(&this.pool).await {
                        Ok(mut l) => l.listen("dispatch_events").await.map(|()| l).ok(),
                        Err(_) => None,
                    };
                    let mut listener = match listening {
                        Some(l) => l,
                        None => {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = shutdown.changed() => {}
                            }
                            continue;
                        }
                    };
                    // The connection is new: whatever was committed while it
                    // was away is picked up by this wake-up.
                    wake.send_modify(|n| *n += 1);
                    loop {
                        tokio::select! {
                            r = listener.recv() => match r {
                                Ok(_) => wake.send_modify(|n| *n += 1),
                                Err(_) => break,
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            })
        };
        let mut shutdown_h = shutdown.clone();
        loop {
            if *shutdown_h.borrow() {
                break;
            }
            if let Err(e) = this.drop_retired().await {
                tracing::warn!(error = %e, "dropping retired read-model tables failed; retrying");
            }
            if let Ok(list) = status(&this.pool).await {
                for s in list {
                    let table = s["table"].as_str().unwrap_or_default().to_string();
                    metrics::gauge!("dispatch_projection_lag_events", "table" => table.clone())
                        .set(s["lag_events"].as_f64().unwrap_or(0.0));
                    metrics::gauge!("dispatch_projection_lag_seconds", "table" => table)
                        .set(s["lag_seconds"].as_f64().unwrap_or(0.0));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown_h.changed() => {}
            }
        }
        // Each loop stops between batches (a batch is one transaction).
        for t in tasks {
            let _ = t.await;
        }
        let _ = listen.await;
    }
}

/// This process as `applied_by` names it: `host:pid`.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        format!("{host}:{}", std::process::id())
    })
}

/// Each read model's serving (and shadow) table: version, position, lag,
/// and which process applied its latest batch. Lag is counted along the
/// projectors' own index order (`ORDER BY … LIMIT`): a bare range over
/// `(tx_id, global_position)` against a correlated checkpoint is estimated
/// at a third of the table, and at 10 M events the planner scanned all of
/// it every five seconds. `lag_seconds` is the age of the first event not
/// yet applied.
pub async fn status(pool: &PgPool) -> Result<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT r.name, t.table_name, t.version, t.role, c.last_pos, c.events_applied, c.applied_by, \
                (SELECT count(*) FROM (SELECT 1 FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos) ORDER BY e.tx_id, e.global_position LIMIT 1000000) x) AS lag_events, \
                COALESCE(EXTRACT(EPOCH FROM now() - (SELECT e.recorded_at FROM events e WHERE (e.tx_id, e.global_position) > (c.last_tx, c.last_pos) ORDER BY e.tx_id, e.global_position LIMIT 1)), 0)::float8 AS lag_seconds \
         FROM projection_registry r \
         CROSS JOIN LATERAL (VALUES (r.active_table, r.active_version, 'live'), (r.building_table, r.building_version, 'rebuilding')) AS t(table_name, version, role) \
         JOIN projection_checkpoints c ON c.table_name = t.table_name \
         WHERE t.table_name IS NOT NULL ORDER BY r.name, t.role",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(json!({
            "name": r.try_get::<String, _>("name")?,
            "table": r.try_get::<String, _>("table_name")?,
            "version": r.try_get::<i32, _>("version")?,
            "status": r.try_get::<String, _>("role")?,
            "position": r.try_get::<i64, _>("last_pos")?,
            "events_applied": r.try_get::<i64, _>("events_applied")?,
            "lag_events": r.try_get::<i64, _>("lag_events")?,
            "lag_seconds": r.try_get::<f64, _>("lag_seconds")?,
            "applied_by": r.try_get::<Option<String>, _>("applied_by")?,
        }));
    }
    Ok(out)
}
