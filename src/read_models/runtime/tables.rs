//! The registry of read-model tables (`projection_registry`): each model's
//! serving table and, while it is rebuilt, its shadow table; creating them
//! with their checkpoints, and dropping retired ones after a grace.

use std::sync::Arc;

use sqlx::{PgConnection, Row};

use super::Runtime;
use crate::read_models::{Projection, Result};

/// How long a replaced table is kept before it is dropped.
const RETIRE_GRACE_SECONDS: i64 = 30;

/// A registry row.
#[derive(Debug, Clone)]
pub(super) struct Registered {
    pub(super) active_table: String,
    pub(super) building_table: Option<String>,
    pub(super) building_version: Option<i32>,
}

/// A table's name: the model, its version and the generation of the build.
pub(super) fn table_name(name: &str, version: i32, generation: i32) -> String {
    format!("rm_{name}_v{version}_g{generation}")
}

/// Creates a read model's table (and its job-state table) with a checkpoint
/// at the start of the order.
pub(super) async fn create_tables(
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

    /// Every read model with its registry row.
    pub(super) async fn registered_all(&self) -> Result<Vec<(Arc<dyn Projection>, Registered)>> {
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

    pub(super) async fn drop_retired(&self) -> Result<()> {
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
}
