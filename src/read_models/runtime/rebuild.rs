//! Rebuilds into shadow tables: a new generation's table is built from the
//! start of the event order while the old one keeps serving, and swapped in
//! once it covers everything the serving table has applied.

use std::sync::Arc;

use super::tables::{create_tables, table_name, Registered};
use super::Runtime;
use crate::read_models::{Projection, ReadModelError, Result};

/// Shadow tables rebuilt together read batches this many times larger.
const REBUILD_GROUP_FACTOR: i64 = 4;

impl Runtime {
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
}
