//! `dispatch-api registry import FILE.csv`: an installed base brought in
//! from one CSV file — customers, their sites and the sites' doors, one row
//! per entry (the layout: `docs/registry-import.md`).
//!
//! Every row becomes the registry command an operator would have sent
//! (`register_*`, or `update_*` when the entry exists already, which the
//! domain answers with no events when nothing changed), run through
//! [`App::registry_in`] as the caller [`IMPORT_CALLER`], all of them in one
//! transaction that holds the registry's lock: a file is taken whole or
//! not at all. Every row is checked before anything is kept, and every
//! problem is reported with its line and column, not just the first.

use std::collections::HashMap;
use std::fmt;

use sqlx::PgConnection;
use uuid::Uuid;

use super::{event_types, index, RegistryCommand};
use crate::app::{App, Caller, RequestMeta};
use crate::domain::registry::customer::UpdateCustomer;
use crate::domain::registry::door::UpdateDoor;
use crate::domain::registry::site::UpdateSite;
use crate::domain::registry::{
    CustomerCommand, DoorCommand, Entry, Kind, RegistryError, SiteCommand,
};
use crate::domain::Role;
use crate::error::ApiError;

mod rows;

use rows::{parse, Parsed, Row};
pub use rows::{OPTIONAL_COLUMNS, REQUIRED_COLUMNS};

/// The caller every row runs as (an admin; the actor of its events).
pub const IMPORT_CALLER: &str = "registry-import";

/// The column naming an entry of `kind`.
fn id_column(kind: Kind) -> String {
    match kind {
        Kind::MaintenancePlan => "plan_id".to_string(),
        k => format!("{}_id", k.as_str()),
    }
}

/// One problem: the line (1 is the header), the column, a stable code and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file's line the row starts on.
    pub line: u64,
    /// The column (`record` when no one column is at fault).
    pub field: String,
    /// A stable code: the domain's (`duplicate_serial`, `not_found`,
    /// `validation_error`…) or the import's own (`missing`, `invalid`,
    /// `not_applicable`, `duplicate_id`, `not_imported`, `site_differs`,
    /// `customer_differs`, `label_differs`, `malformed_row`,
    /// `missing_column`, `unknown_column`, `duplicate_column`).
    pub code: String,
    /// What is wrong, for the operator.
    pub detail: String,
}

impl RowError {
    fn new(line: u64, field: &str, code: &str, detail: impl Into<String>) -> RowError {
        RowError {
            line,
            field: field.to_string(),
            code: code.to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.code)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The header or some rows are refused (each one listed).
    #[error("{} problem(s); nothing written", .0.len())]
    Refused(Vec<RowError>),
    /// The file cannot be read.
    #[error("cannot read the file: {0}")]
    Unreadable(#[from] csv::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] ApiError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(e.into())
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows read (blank rows aside).
    pub rows: usize,
    /// Entries registered.
    pub registered: usize,
    /// Entries that existed and changed.
    pub updated: usize,
    /// Entries that existed as the row has them.
    pub unchanged: usize,
    /// Events appended.
    pub events: usize,
    /// Rolled back on purpose (`--dry-run`).
    pub dry_run: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows: {} registered, {} updated, {} unchanged",
            self.rows, self.registered, self.updated, self.unchanged
        )?;
        if self.dry_run {
            write!(f, "\ndry run: nothing written")?;
        }
        Ok(())
    }
}

/// Imports a CSV file: every row checked and applied in one transaction,
/// committed only if none is refused (and not `dry_run`).
pub async fn import(
    app: &App,
    input: impl std::io::Read,
    dry_run: bool,
) -> Result<Summary, ImportError> {
    import_with_progress(app, input, dry_run, &|_, _| {}).await
}

/// [`import`], telling `progress` (rows applied so far, rows in the file)
/// before each row and once at the end.
pub async fn import_with_progress(
    app: &App,
    input: impl std::io::Read,
    dry_run: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Summary, ImportError> {
    let Parsed {
        mut rows,
        count,
        mut errors,
        mut failed,
    } = parse(input)?;
    // Customers, then sites, then doors; file order within each.
    rows.sort_by_key(|r| r.kind);
    let caller = Caller {
        key_name: IMPORT_CALLER.to_string(),
        role: Role::Admin,
        technician_id: None,
    };
    let correlation_id = Uuid::new_v4();
    let mut summary = Summary {
        rows: count,
        dry_run,
        ..Summary::default()
    };
    let mut tx = app.pool.begin().await?;
    index::lock(&mut tx).await?;
    for (done, row) in rows.iter().enumerate() {
        progress(done, rows.len());
        let refused = match blocked(row, &failed) {
            Some(e) => Err(e),
            None => {
                let meta = RequestMeta {
                    idempotency_key: row.key.clone(),
                    request_hash: row.key.clone(),
                    if_match: None,
                    correlation_id,
                    trace_id: None,
                    causation_id: None,
                    tool_invocation_id: None,
                };
                // A refusal comes before the row writes anything (the
                // decision precedes the append), so the transaction goes
                // on with the next row.
                apply(app, &mut tx, &caller, &meta, row).await?
            }
        };
        match refused {
            Ok((events, registered)) => summary.add(events, registered),
            Err(e) => {
                failed.insert((row.kind, row.id.clone()), row.line);
                errors.push(e);
            }
        }
    }
    progress(rows.len(), rows.len());
    if !errors.is_empty() {
        tx.rollback().await?;
        errors.sort_by_key(|e| e.line);
        return Err(ImportError::Refused(errors));
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
        // The service's projectors listen; they also poll, so a lost
        // wake-up only delays them.
        let _ = sqlx::query("SELECT pg_notify('dispatch_events', '')")
            .execute(&app.pool)
            .await;
    }
    Ok(summary)
}

impl Summary {
    fn add(&mut self, events: usize, registered: bool) {
        self.events += events;
        match (registered, events) {
            (true, _) => self.registered += 1,
            (false, 0) => self.unchanged += 1,
            (false, _) => self.updated += 1,
        }
    }
}

/// A row whose parent's row was refused is not tried: it would only fail
/// for want of that parent.
fn blocked(row: &Row, failed: &HashMap<(Kind, String), u64>) -> Option<RowError> {
    let (kind, id) = row.parent.as_ref()?;
    let line = failed.get(&(*kind, id.clone()))?;
    Some(RowError::new(
        row.line,
        &id_column(*kind),
        "not_imported",
        format!("{} {id} is refused on line {line}", kind.as_str()),
    ))
}

/// Runs one row: `Ok(Ok((events appended, registered)))`, or the row's
/// refusal; `Err` when the database fails.
async fn apply(
    app: &App,
    conn: &mut PgConnection,
    caller: &Caller,
    meta: &RequestMeta,
    row: &Row,
) -> Result<Result<(usize, bool), RowError>, ImportError> {
    let (id, command) = match index::find(conn, row.kind, &row.id).await? {
        None => (None, row.register.clone()),
        Some(found) => match update_of(conn, row, &found).await? {
            Ok(command) => (Some(row.id.as_str()), command),
            Err(e) => return Ok(Err(e)),
        },
    };
    let registers = command.registers();
    match app.registry_in(conn, caller, meta, id, command).await {
        Ok((_, body)) => Ok(Ok((event_types(&body).len(), registers))),
        Err(e) => Ok(Err(refusal(row.line, e)?)),
    }
}

/// The `update_*` command bringing an existing entry to what its row says
/// (empty cells leave the recorded values as they are).
async fn update_of(
    conn: &mut PgConnection,
    row: &Row,
    found: &Entry,
) -> Result<Result<RegistryCommand, RowError>, ImportError> {
    let refuse = |field: &str, code: &str, detail: String| {
        Ok(Err(RowError::new(row.line, field, code, detail)))
    };
    Ok(Ok(match &row.register {
        RegistryCommand::Customer(CustomerCommand::Register(c)) => {
            RegistryCommand::Customer(CustomerCommand::Update(UpdateCustomer {
                name: Some(c.name.clone()),
                billing: Some(c.billing),
                ifm_account: c.ifm_account.clone(),
                contacts: (!c.contacts.is_empty()).then(|| c.contacts.clone()),
            }))
        }
        RegistryCommand::Site(SiteCommand::Register(c)) => {
            if found.customer_id != c.customer_id {
                return refuse(
                    "customer_id",
                    "customer_differs",
                    format!(
                        "site {} belongs to customer {}; a site does not change customer",
                        row.id, found.customer_id
                    ),
                );
            }
            RegistryCommand::Site(SiteCommand::Update(UpdateSite {
                name: Some(c.name.clone()),
                address: Some(c.address.clone()),
                latitude: c.latitude,
                longitude: c.longitude,
                geofence_radius_m: c.geofence_radius_m,
                time_zone: Some(c.time_zone.clone()),
                access_notes: c.access_notes.clone(),
                contacts: (!c.contacts.is_empty()).then(|| c.contacts.clone()),
                reference: c.reference.clone(),
            }))
        }
        RegistryCommand::Door(DoorCommand::Register(c)) => {
            let at = found.site_id.clone().unwrap_or_default();
            if at != c.site_id {
                return refuse(
                    "site_id",
                    "site_differs",
                    format!("door {} is at site {at}; move_door moves it", row.id),
                );
            }
            let recorded = index::view(conn, Kind::Door, &row.id)
                .await?
                .and_then(|v| v["fire_rating"].as_str().map(str::to_string));
            if c.fire_rating.is_some() && c.fire_rating != recorded {
                return refuse(
                    "fire_rating",
                    "label_differs",
                    format!(
                        "the label on record reads {}; record_door_label records a new reading",
                        recorded.as_deref().unwrap_or("nothing")
                    ),
                );
            }
            RegistryCommand::Door(DoorCommand::Update(UpdateDoor {
                kind: Some(c.kind),
                location: Some(c.location.clone()),
                manufacturer: c.manufacturer.clone(),
                model: c.model.clone(),
                serial: c.serial.clone(),
                installed_on: c.installed_on,
                tag: c.tag.clone(),
            }))
        }
        other => other.clone(),
    }))
}

/// A registry refusal as the row's problem; anything else is the
/// database's and ends the import.
fn refusal(line: u64, e: ApiError) -> Result<RowError, ImportError> {
    let r = match e {
        ApiError::Registry(r) => r,
        ApiError::Validation { detail, field } => {
            let field = field.unwrap_or_else(|| "record".to_string());
            return Ok(RowError::new(line, &field, "validation_error", detail));
        }
        other => return Err(other.into()),
    };
    let (field, detail) = match &r {
        RegistryError::Validation { field, problem } => (column_of(field), (*problem).to_string()),
        RegistryError::NotFound { kind, id } => {
            (id_column(*kind), format!("no {} {id}", kind.as_str()))
        }
        RegistryError::Retired { kind, id } => (
            id_column(*kind),
            format!("{} {id} is retired", kind.as_str()),
        ),
        RegistryError::AlreadyExists { kind } => (id_column(*kind), r.to_string()),
        RegistryError::DuplicateSerial { door_id } => {
            ("serial".to_string(), format!("door {door_id} has it"))
        }
        other => ("record".to_string(), other.to_string()),
    };
    Ok(RowError::new(line, &field, r.code(), detail))
}

/// The column a domain field comes from (a row's one contact is the
/// domain's `contacts[0]`).
fn column_of(field: &str) -> String {
    match field.strip_prefix("contacts[0].") {
        Some(rest) => format!("contact_{rest}"),
        None if field == "contacts" => "contact_name".to_string(),
        None => field.to_string(),
    }
}
