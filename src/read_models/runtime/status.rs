//! What the runtime reports about itself: each table's position and lag,
//! and the process that applied its latest batch.

use serde_json::{json, Value};
use sqlx::{PgPool, Row};

use crate::read_models::Result;

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

/// Where a rebuild into `table` stands ([`rebuild_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildState {
    /// `table` is the serving table: it was swapped in.
    Swapped,
    /// `table` is still being built; events applied to it so far.
    Building {
        /// Events the shadow table has applied.
        events_applied: i64,
    },
    /// Another rebuild replaced it (`table` was retired unswapped).
    Superseded {
        /// The table being built instead, if any.
        building: Option<String>,
        /// The serving table.
        active: String,
    },
}

/// Where read model `name`'s rebuild into `table` stands.
pub async fn rebuild_state(pool: &PgPool, name: &str, table: &str) -> Result<RebuildState> {
    let row = sqlx::query(
        "SELECT r.active_table, r.building_table, c.events_applied FROM projection_registry r \
         LEFT JOIN projection_checkpoints c ON c.table_name = $2 WHERE r.name = $1",
    )
    .bind(name)
    .bind(table)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        crate::read_models::ReadModelError::Unknown(format!(
            "read model `{name}` is not registered"
        ))
    })?;
    let active: String = row.try_get("active_table")?;
    let building: Option<String> = row.try_get("building_table")?;
    Ok(if active == table {
        RebuildState::Swapped
    } else if building.as_deref() == Some(table) {
        RebuildState::Building {
            events_applied: row
                .try_get::<Option<i64>, _>("events_applied")?
                .unwrap_or(0),
        }
    } else {
        RebuildState::Superseded { building, active }
    })
}
