//! The registry's write-side index (`registry_entries`, migration 0016):
//! one row per entry as its events leave it, written in the transaction
//! that appends them. Registry commands find their facts here (the parent
//! entry, a serial already taken, the entries still depending on one);
//! `open_job` resolves a `door_id` here; `find_site` searches here.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};

use super::{entry_json, RegistryCommand};
use crate::domain::registry::{
    Customer, CustomerCommand, Door, DoorCommand, Entry as Found, Facts, Kind, MaintenancePlan,
    Occurrence, PlanCommand, Site, SiteCommand,
};
use crate::domain::sop::SopLibrary;
use crate::error::Result;

/// The lock every registry write takes first (a transaction-level advisory
/// lock): registry writes are few, and one at a time they see each
/// other's entries (a serial, a parent) without a race.
pub async fn lock(conn: &mut PgConnection) -> Result<()> {
    // "registry" in ASCII, as a lock key of its own. Bound, not written
    // into the SQL: PostgreSQL before 16 reads no `_` in a number.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(7_310_868_164_567_898_489_i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One row of `registry_entries`.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    /// Its kind.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// The customer it belongs to.
    pub customer_id: String,
    /// A door's site.
    pub site_id: Option<String>,
    /// Retired.
    pub retired: bool,
    /// A door's serial key.
    pub serial_key: Option<String>,
    /// A door's status.
    pub status: Option<String>,
    /// What the fuzzy site search looks at.
    pub search: String,
    /// The entry as shown.
    pub entry: Value,
    /// Events applied.
    pub version: i64,
}

/// An aggregate of the registry, as the index and the answers see it.
pub trait Entry: Default {
    /// Its command type (inside [`crate::domain::Issued`]).
    type Command;
    /// Events applied.
    fn version(&self) -> u64;
    /// Its index row.
    fn row(&self, id: &str) -> EntryRow;
    /// How it is shown.
    fn view(&self, id: &str) -> Value {
        self.row(id).entry
    }
}

fn details_json<T: serde::Serialize>(d: &Option<T>) -> Value {
    d.as_ref()
        .and_then(|d| serde_json::to_value(d).ok())
        .unwrap_or(Value::Null)
}

impl Entry for Customer {
    type Command = CustomerCommand;
    fn version(&self) -> u64 {
        self.version
    }
    fn row(&self, id: &str) -> EntryRow {
        let extra = json!({"retired": self.retired, "version": self.version});
        EntryRow {
            kind: Kind::Customer,
            id: id.to_string(),
            customer_id: id.to_string(),
            site_id: None,
            retired: self.retired,
            serial_key: None,
            status: None,
            search: self
                .details
                .as_ref()
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            entry: entry_json(Kind::Customer, id, details_json(&self.details), extra),
            version: self.version as i64,
        }
    }
}

impl Entry for Site {
    type Command = SiteCommand;
    fn version(&self) -> u64 {
        self.version
    }
    fn row(&self, id: &str) -> EntryRow {
        let d = self.details.as_ref();
        let extra = json!({"retired": self.retired, "version": self.version});
        EntryRow {
            kind: Kind::Site,
            id: id.to_string(),
            customer_id: d.map(|d| d.customer_id.clone()).unwrap_or_default(),
            site_id: None,
            retired: self.retired,
            serial_key: None,
            status: None,
            search: d
                .map(|d| {
                    format!(
                        "{} {} {}",
                        d.name,
                        d.address,
                        d.reference.as_deref().unwrap_or("")
                    )
                    .to_lowercase()
                })
                .unwrap_or_default(),
            entry: entry_json(Kind::Site, id, details_json(&self.details), extra),
            version: self.version as i64,
        }
    }
}

impl Entry for Door {
    type Command = DoorCommand;
    fn version(&self) -> u64 {
        self.version
    }
    fn row(&self, id: &str) -> EntryRow {
        let d = self.details.as_ref();
        let extra = json!({
            "status": self.status.as_str(),
            "retired": self.retired,
            "version": self.version,
        });
        EntryRow {
            kind: Kind::Door,
            id: id.to_string(),
            // A door's customer is its site's: filled in by `upsert`.
            customer_id: String::new(),
            site_id: d.map(|d| d.site_id.clone()),
            retired: self.retired,
            serial_key: d.and_then(|d| d.serial_key()),
            status: Some(self.status.as_str().to_string()),
            search: String::new(),
            entry: entry_json(Kind::Door, id, details_json(&self.details), extra),
            version: self.version as i64,
        }
    }
}

impl Entry for MaintenancePlan {
    type Command = PlanCommand;
    fn version(&self) -> u64 {
        self.version
    }
    fn row(&self, id: &str) -> EntryRow {
        let changes: Vec<Value> = self
            .changes
            .iter()
            .map(|(k, c)| json!({"occurrence": k, "change": c}))
            .collect();
        let extra = json!({
            "created_on": self.created_on,
            "changes": changes,
            "retired": self.retired,
            "version": self.version,
        });
        EntryRow {
            kind: Kind::MaintenancePlan,
            id: id.to_string(),
            customer_id: self
                .details
                .as_ref()
                .map(|d| d.customer_id.clone())
                .unwrap_or_default(),
            site_id: None,
            retired: self.retired,
            serial_key: None,
            status: None,
            search: String::new(),
            entry: entry_json(
                Kind::MaintenancePlan,
                id,
                details_json(&self.details),
                extra,
            ),
            version: self.version as i64,
        }
    }
}

/// Writes an entry's row (a door's customer is its site's).
pub async fn upsert(conn: &mut PgConnection, e: &EntryRow, at: DateTime<Utc>) -> Result<()> {
    if e.version == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO registry_entries (kind, id, customer_id, site_id, retired, serial_key, status, search, entry, version, updated_at) \
         VALUES ($1, $2, COALESCE(NULLIF($3, ''), (SELECT customer_id FROM registry_entries WHERE kind = 'site' AND id = $4), ''), \
                 $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (kind, id) DO UPDATE SET customer_id = EXCLUDED.customer_id, site_id = EXCLUDED.site_id, \
           retired = EXCLUDED.retired, serial_key = EXCLUDED.serial_key, status = EXCLUDED.status, \
           search = EXCLUDED.search, entry = EXCLUDED.entry, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at",
    )
    .bind(e.kind.as_str())
    .bind(&e.id)
    .bind(&e.customer_id)
    .bind(&e.site_id)
    .bind(e.retired)
    .bind(&e.serial_key)
    .bind(&e.status)
    .bind(&e.search)
    .bind(&e.entry)
    .bind(e.version)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One entry as found in the index.
pub async fn find(conn: &mut PgConnection, kind: Kind, id: &str) -> Result<Option<Found>> {
    if !crate::app::storable_id(id) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT id, retired, customer_id, site_id FROM registry_entries WHERE kind = $1 AND id = $2",
    )
    .bind(kind.as_str())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => Some(Found {
            id: r.try_get("id")?,
            retired: r.try_get("retired")?,
            customer_id: r.try_get("customer_id")?,
            site_id: r.try_get("site_id")?,
        }),
        None => None,
    })
}

/// An entry's shown JSON (`None`: no such entry).
pub async fn view(conn: &mut PgConnection, kind: Kind, id: &str) -> Result<Option<Value>> {
    if !crate::app::storable_id(id) {
        return Ok(None);
    }
    let row = sqlx::query("SELECT entry FROM registry_entries WHERE kind = $1 AND id = $2")
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get("entry")?),
        None => None,
    })
}

async fn count_active(conn: &mut PgConnection, sql: &str, id: &str) -> Result<usize> {
    let n: i64 = sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n as usize)
}

async fn serial_taken(
    conn: &mut PgConnection,
    key: Option<String>,
    door_id: &str,
) -> Result<Option<String>> {
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(sqlx::query_scalar(
        "SELECT id FROM registry_entries WHERE kind = 'door' AND serial_key = $1 AND NOT retired AND id <> $2",
    )
    .bind(key)
    .bind(door_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The facts `command` on entry `id` needs, from the index (and the SOP
/// library, for a plan's incident type).
pub async fn facts(
    conn: &mut PgConnection,
    sops: &SopLibrary,
    id: &str,
    command: &RegistryCommand,
) -> Result<Facts> {
    let mut f = Facts::default();
    match command {
        RegistryCommand::Customer(CustomerCommand::Retire(_)) => {
            f.active_children = count_active(
                conn,
                "SELECT count(*) FROM registry_entries WHERE customer_id = $1 AND kind IN ('site', 'maintenance_plan') AND NOT retired",
                id,
            )
            .await?;
        }
        RegistryCommand::Site(SiteCommand::Register(c)) => {
            f.parent = find(conn, Kind::Customer, &c.customer_id).await?;
        }
        RegistryCommand::Site(SiteCommand::Retire(_)) => {
            f.active_children = count_active(
                conn,
                "SELECT count(*) FROM registry_entries WHERE site_id = $1 AND kind = 'door' AND NOT retired",
                id,
            )
            .await?;
        }
        RegistryCommand::Door(DoorCommand::Register(c)) => {
            f.parent = find(conn, Kind::Site, &c.site_id).await?;
            f.serial_taken_by = serial_taken(conn, c.details().serial_key(), id).await?;
        }
        RegistryCommand::Door(DoorCommand::Update(c)) => {
            let current = view(conn, Kind::Door, id).await?;
            let field = |name: &str, given: &Option<String>| {
                given.clone().or_else(|| {
                    current
                        .as_ref()
                        .and_then(|v| v[name].as_str().map(str::to_string))
                })
            };
            let (manufacturer, serial) = (
                field("manufacturer", &c.manufacturer),
                field("serial", &c.serial),
            );
            let key = serial.map(|s| {
                format!(
                    "{}|{}",
                    manufacturer.as_deref().unwrap_or("").trim().to_lowercase(),
                    s.trim().to_lowercase()
                )
            });
            f.serial_taken_by = serial_taken(conn, key, id).await?;
        }
        RegistryCommand::Door(DoorCommand::Move(c)) => {
            f.parent = find(conn, Kind::Site, &c.site_id).await?;
            f.doors = find(conn, Kind::Door, id).await?.into_iter().collect();
        }
        RegistryCommand::Plan(PlanCommand::Create(c)) => {
            f.parent = find(conn, Kind::Customer, &c.customer_id).await?;
            f.incident_type_known = sops.get(&c.incident_type).is_some();
            for door in c
                .door_ids
                .iter()
                .take(crate::domain::registry::plan::MAX_PLAN_DOORS)
            {
                if let Some(found) = find(conn, Kind::Door, door).await? {
                    f.doors.push(found);
                }
            }
        }
        RegistryCommand::Plan(PlanCommand::Skip(c) | PlanCommand::Move(c)) => {
            let occurrence = Occurrence {
                door_id: c.door_id.clone(),
                due_on: c.due_on,
                due: c.due_on,
                opens_on: c.due_on,
                skipped: None,
            };
            let opened: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM stream_heads WHERE aggregate_type = 'job' AND aggregate_id = $1)",
            )
            .bind(occurrence.job_id(id))
            .fetch_one(&mut *conn)
            .await?;
            if opened {
                f.opened.push(Occurrence::key(&c.door_id, c.due_on));
            }
        }
        _ => {}
    }
    Ok(f)
}
