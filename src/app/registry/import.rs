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

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{event_types, index, RegistryCommand};
use crate::app::{App, Caller, RequestMeta};
use crate::domain::registry::customer::{Billing, RegisterCustomer, UpdateCustomer};
use crate::domain::registry::door::{RegisterDoor, UpdateDoor};
use crate::domain::registry::site::{RegisterSite, UpdateSite};
use crate::domain::registry::{
    CustomerCommand, DoorCommand, DoorKind, Entry, Kind, RegistryContact, RegistryError,
    SiteCommand,
};
use crate::domain::Role;
use crate::error::ApiError;

/// The caller every row runs as (an admin; the actor of its events).
pub const IMPORT_CALLER: &str = "registry-import";

/// The columns a file's header must name.
pub const REQUIRED_COLUMNS: &[&str] = &[
    "record",
    "customer_id",
    "site_id",
    "door_id",
    "name",
    "billing",
    "address",
    "time_zone",
    "kind",
    "location",
];

/// The columns a file may leave out.
pub const OPTIONAL_COLUMNS: &[&str] = &[
    "ifm_account",
    "latitude",
    "longitude",
    "access_notes",
    "reference",
    "contact_name",
    "contact_role",
    "contact_phone",
    "contact_email",
    "manufacturer",
    "model",
    "serial",
    "installed_on",
    "fire_rating",
    "tag",
];

/// The columns a row of each kind reads; the others must be empty in it.
fn columns_of(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Customer => &[
            "record",
            "customer_id",
            "name",
            "billing",
            "ifm_account",
            "contact_name",
            "contact_role",
            "contact_phone",
            "contact_email",
        ],
        Kind::Site => &[
            "record",
            "site_id",
            "customer_id",
            "name",
            "address",
            "latitude",
            "longitude",
            "time_zone",
            "access_notes",
            "reference",
            "contact_name",
            "contact_role",
            "contact_phone",
            "contact_email",
        ],
        Kind::Door => &[
            "record",
            "door_id",
            "site_id",
            "kind",
            "location",
            "manufacturer",
            "model",
            "serial",
            "installed_on",
            "fire_rating",
            "tag",
        ],
        Kind::MaintenancePlan => &[],
    }
}

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

/// One row, read: the entry it names and the command registering it.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    kind: Kind,
    id: String,
    /// The entry it hangs from (a site's customer, a door's site).
    parent: Option<(Kind, String)>,
    /// `import:` and the SHA-256 of the row's cells.
    key: String,
    register: RegistryCommand,
}

/// The rows of a file, and what was wrong with the others.
#[derive(Default)]
struct Parsed {
    rows: Vec<Row>,
    count: usize,
    errors: Vec<RowError>,
    /// Entries whose row is refused, by the line of the row.
    failed: HashMap<(Kind, String), u64>,
}

/// Imports a CSV file: every row checked and applied in one transaction,
/// committed only if none is refused (and not `dry_run`).
pub async fn import(
    app: &App,
    input: impl std::io::Read,
    dry_run: bool,
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
    for row in &rows {
        let refused = match blocked(row, &failed) {
            Some(e) => Err(e),
            None => {
                let meta = RequestMeta {
                    idempotency_key: row.key.clone(),
                    request_hash: row.key.clone(),
                    if_match: None,
                    correlation_id,
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

/// Reads the header and every row; a header problem ends it at once.
fn parse(input: impl std::io::Read) -> Result<Parsed, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    check_header(&header)?;
    let mut parsed = Parsed::default();
    let mut seen: HashMap<(Kind, String), u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) if e.is_io_error() => return Err(e.into()),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                parsed.count += 1;
                parsed.errors.push(RowError::new(
                    line,
                    "record",
                    "malformed_row",
                    e.to_string(),
                ));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let values: BTreeMap<String, String> = header
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, v)| (h.clone(), v.to_string()))
            .collect();
        if values.is_empty() {
            continue; // a blank row, as spreadsheets leave at the end
        }
        parsed.count += 1;
        let mut cells = Cells {
            line,
            values,
            errors: Vec::new(),
        };
        if let Some(row) = read_row(&mut cells) {
            let entry = (row.kind, row.id.clone());
            if let Some(first) = seen.get(&entry) {
                // The entry's first row stands or falls on its own.
                cells.error(
                    &id_column(row.kind),
                    "duplicate_id",
                    format!("also on line {first}"),
                );
            } else {
                seen.insert(entry.clone(), line);
                match cells.errors.is_empty() {
                    true => parsed.rows.push(row),
                    false => {
                        parsed.failed.insert(entry, line);
                    }
                }
            }
        }
        parsed.errors.append(&mut cells.errors);
    }
    Ok(parsed)
}

fn check_header(header: &[String]) -> Result<(), ImportError> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for h in header {
        if !REQUIRED_COLUMNS.contains(&h.as_str()) && !OPTIONAL_COLUMNS.contains(&h.as_str()) {
            errors.push(RowError::new(1, h, "unknown_column", "not in the layout"));
        } else if !seen.insert(h.as_str()) {
            errors.push(RowError::new(1, h, "duplicate_column", "named twice"));
        }
    }
    for c in REQUIRED_COLUMNS {
        if !header.iter().any(|h| h == c) {
            errors.push(RowError::new(
                1,
                c,
                "missing_column",
                "the header must name it",
            ));
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(ImportError::Refused(errors)),
    }
}

/// A row's non-empty cells by column, and what is wrong with them.
struct Cells {
    line: u64,
    values: BTreeMap<String, String>,
    errors: Vec<RowError>,
}

impl Cells {
    fn error(&mut self, field: &str, code: &str, detail: impl Into<String>) {
        self.errors
            .push(RowError::new(self.line, field, code, detail));
    }

    fn opt(&self, column: &str) -> Option<String> {
        self.values.get(column).cloned()
    }

    fn req(&mut self, column: &str, kind: Kind) -> String {
        self.opt(column).unwrap_or_else(|| {
            self.error(
                column,
                "missing",
                format!("required in a {} row", kind.as_str()),
            );
            String::new()
        })
    }

    fn parsed<T>(&mut self, column: &str, want: &str, f: impl Fn(&str) -> Option<T>) -> Option<T> {
        let v = self.opt(column)?;
        let parsed = f(&v);
        if parsed.is_none() {
            self.error(column, "invalid", format!("`{v}`: {want}"));
        }
        parsed
    }

    /// The row's one contact, if it names any.
    fn contacts(&mut self) -> Vec<RegistryContact> {
        let (role, phone, email) = (
            self.opt("contact_role"),
            self.opt("contact_phone"),
            self.opt("contact_email"),
        );
        match self.opt("contact_name") {
            Some(name) => vec![RegistryContact {
                name,
                role,
                phone,
                email,
            }],
            None if role.is_some() || phone.is_some() || email.is_some() => {
                self.error("contact_name", "missing", "a contact needs a name");
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The SHA-256 of the row's cells (column order does not matter).
    fn key(&self) -> String {
        let canonical = serde_json::to_vec(&self.values).unwrap_or_default();
        format!("import:{}", hex::encode(Sha256::digest(canonical)))
    }
}

/// A wire name (`ifm`, `swinging_fire`) as the domain's enum.
fn wire<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(Value::String(s.to_string())).ok()
}

/// Reads one row; `None` when not even its kind and id can be told.
fn read_row(cells: &mut Cells) -> Option<Row> {
    let kind = match cells.opt("record").as_deref() {
        Some("customer") => Kind::Customer,
        Some("site") => Kind::Site,
        Some("door") => Kind::Door,
        Some(other) => {
            let other = other.to_string();
            cells.error(
                "record",
                "invalid",
                format!("`{other}`: one of customer, site, door"),
            );
            return None;
        }
        None => {
            cells.error("record", "missing", "one of customer, site, door");
            return None;
        }
    };
    let stray: Vec<String> = cells
        .values
        .keys()
        .filter(|c| !columns_of(kind).contains(&c.as_str()))
        .cloned()
        .collect();
    for c in stray {
        cells.error(
            &c,
            "not_applicable",
            format!("a {} row leaves it empty", kind.as_str()),
        );
    }
    let id = cells.req(&id_column(kind), kind);
    let (parent, register) = match kind {
        Kind::Customer => (None, customer(cells, &id)),
        Kind::Site => {
            let c = site(cells, &id);
            (
                Some((Kind::Customer, c.customer_id.clone())),
                RegistryCommand::Site(SiteCommand::Register(c)),
            )
        }
        _ => {
            let d = door(cells, &id);
            (
                Some((Kind::Site, d.site_id.clone())),
                RegistryCommand::Door(DoorCommand::Register(d)),
            )
        }
    };
    (!id.is_empty()).then(|| Row {
        line: cells.line,
        kind,
        id,
        parent,
        key: cells.key(),
        register,
    })
}

fn customer(cells: &mut Cells, id: &str) -> RegistryCommand {
    let name = cells.req("name", Kind::Customer);
    let billing = cells.req("billing", Kind::Customer);
    let billing = match wire::<Billing>(&billing) {
        Some(b) => b,
        None => {
            if !billing.is_empty() {
                cells.error("billing", "invalid", format!("`{billing}`: direct or ifm"));
            }
            Billing::Direct
        }
    };
    RegistryCommand::Customer(CustomerCommand::Register(RegisterCustomer {
        customer_id: Some(id.to_string()),
        name,
        billing,
        ifm_account: cells.opt("ifm_account"),
        contacts: cells.contacts(),
    }))
}

fn site(cells: &mut Cells, id: &str) -> RegisterSite {
    let degrees = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    RegisterSite {
        site_id: Some(id.to_string()),
        customer_id: cells.req("customer_id", Kind::Site),
        name: cells.req("name", Kind::Site),
        address: cells.req("address", Kind::Site),
        latitude: cells.parsed("latitude", "degrees, e.g. 41.8781", degrees),
        longitude: cells.parsed("longitude", "degrees, e.g. -87.6298", degrees),
        time_zone: cells.req("time_zone", Kind::Site),
        access_notes: cells.opt("access_notes"),
        contacts: cells.contacts(),
        reference: cells.opt("reference"),
    }
}

fn door(cells: &mut Cells, id: &str) -> RegisterDoor {
    const KINDS: &str = "one of automatic_sliding, automatic_swing, overhead, dock, \
                         rolling_fire, swinging_fire, storefront";
    let site_id = cells.req("site_id", Kind::Door);
    let location = cells.req("location", Kind::Door);
    let kind = match cells.opt("kind") {
        None => {
            cells.req("kind", Kind::Door);
            None
        }
        some => some.and_then(|_| cells.parsed("kind", KINDS, wire::<DoorKind>)),
    };
    let installed_on = cells.parsed("installed_on", "a date as YYYY-MM-DD", |s| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    });
    let fire_rating = cells.opt("fire_rating");
    if fire_rating.is_some() && kind.is_some_and(|k| !k.is_fire_door()) {
        cells.error(
            "fire_rating",
            "invalid",
            "only fire doors carry a fire rating label",
        );
    }
    RegisterDoor {
        door_id: Some(id.to_string()),
        site_id,
        kind: kind.unwrap_or(DoorKind::Storefront),
        location,
        manufacturer: cells.opt("manufacturer"),
        model: cells.opt("model"),
        serial: cells.opt("serial"),
        installed_on,
        fire_rating,
        tag: cells.opt("tag"),
    }
}
