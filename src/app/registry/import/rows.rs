//! Reading a file: the header checked against the layout, each row's
//! cells turned into the command registering its entry, every problem
//! noted with its line and column.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{id_column, ImportError, RowError};
use crate::app::registry::RegistryCommand;
use crate::domain::registry::customer::{Billing, RegisterCustomer};
use crate::domain::registry::door::RegisterDoor;
use crate::domain::registry::site::RegisterSite;
use crate::domain::registry::{
    CustomerCommand, DoorCommand, DoorKind, Kind, RegistryContact, SiteCommand,
};

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
    "geofence_radius_m",
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
            "geofence_radius_m",
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

/// One row, read: the entry it names and the command registering it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) line: u64,
    pub(super) kind: Kind,
    pub(super) id: String,
    /// The entry it hangs from (a site's customer, a door's site).
    pub(super) parent: Option<(Kind, String)>,
    /// `import:` and the SHA-256 of the row's cells.
    pub(super) key: String,
    pub(super) register: RegistryCommand,
}

/// The rows of a file, and what was wrong with the others.
#[derive(Default)]
pub(super) struct Parsed {
    pub(super) rows: Vec<Row>,
    pub(super) count: usize,
    pub(super) errors: Vec<RowError>,
    /// Entries whose row is refused, by the line of the row.
    pub(super) failed: HashMap<(Kind, String), u64>,
}

/// Reads the header and every row; a header problem ends it at once.
pub(super) fn parse(input: impl std::io::Read) -> Result<Parsed, ImportError> {
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
        geofence_radius_m: cells.parsed("geofence_radius_m", "whole metres, e.g. 150", |s| {
            s.parse::<u32>().ok()
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(csv: &str) -> Parsed {
        match parse(csv.as_bytes()) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        }
    }

    const HEADER: &str =
        "record,customer_id,site_id,door_id,name,billing,address,time_zone,kind,location";

    #[test]
    fn a_rows_key_is_its_cells_whatever_the_column_order() {
        let a = read(&format!("{HEADER}\ncustomer,cust-a,,,A,direct,,,,\n"));
        let reordered =
            "name,record,billing,customer_id,site_id,door_id,address,time_zone,kind,location\n\
                         A,customer,direct,cust-a,,,,,,\n";
        let b = read(reordered);
        assert_eq!(a.rows[0].key, b.rows[0].key);
        assert!(a.rows[0].key.starts_with("import:"));
        let c = read(&format!("{HEADER}\ncustomer,cust-a,,,A2,direct,,,,\n"));
        assert_ne!(a.rows[0].key, c.rows[0].key);
    }

    #[test]
    fn blank_rows_are_skipped_and_lines_counted_from_the_header() {
        let p = read(&format!(
            "{HEADER}\n,,,,,,,,,\ncustomer,cust-a,,,A,direct,,,,\ncustomer,cust-b,,,B,ifm,,,,\n,,,,,,,,,\n"
        ));
        assert_eq!(p.count, 2);
        assert_eq!(
            p.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(
            p.errors.is_empty(),
            "ifm without an account is the domain's to refuse"
        );
    }

    #[test]
    fn a_short_row_is_malformed_not_fatal() {
        let p = read(&format!(
            "{HEADER}\ncustomer,cust-a\ncustomer,cust-b,,,B,direct,,,,\n"
        ));
        assert_eq!(p.rows.len(), 1);
        assert_eq!(
            (p.errors[0].line, p.errors[0].code.as_str()),
            (2, "malformed_row")
        );
    }
}
