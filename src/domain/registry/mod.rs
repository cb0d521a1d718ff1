//! The registry: the installed base the company serves — customers, their
//! sites, the doors at each site — and the maintenance plans that open
//! recurring work on those doors. Each is an aggregate in the same event
//! store as jobs, with the same hash chain and the same idempotent command
//! path (`src/app/registry/`); who may call which command is the
//! allowlist's alone (`src/tools/allowlist.toml`), as for every tool.
//!
//! What a decision needs from outside its own stream — the customer a site
//! belongs to, the site a door is at, whether a serial is taken, the doors
//! a plan names — is resolved by the application into [`Facts`] before the
//! aggregate decides, so every rule here stays pure.

/// The `cqrs_es::Aggregate` of a registry entry: decided by its `decide`
/// on the resolved [`Facts`], changed by its `fold`.
macro_rules! registry_aggregate {
    ($agg:ty, $type:literal, $cmd:ty, $event:ty) => {
        impl cqrs_es::Aggregate for $agg {
            const TYPE: &'static str = $type;
            type Command = crate::domain::Issued<$cmd>;
            type Event = $event;
            type Error = super::RegistryError;
            type Services = super::Facts;

            async fn handle(
                &mut self,
                command: Self::Command,
                facts: &super::Facts,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), super::RegistryError> {
                for event in self.decide(&command, facts)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: $event) {
                self.fold(event);
            }
        }
    };
}
pub(crate) use registry_aggregate;

pub mod customer;
pub mod door;
pub mod plan;
pub mod site;

use serde::{Deserialize, Serialize};

pub use customer::{Customer, CustomerCommand, CustomerDetails, CustomerEvent};
pub use door::{Door, DoorCommand, DoorDetails, DoorEvent, DoorKind, DoorStatus};
pub use plan::{MaintenancePlan, Occurrence, PlanCommand, PlanDetails, PlanEvent};
pub use site::{Site, SiteCommand, SiteDetails, SiteEvent};

/// Longest id, in bytes.
pub const MAX_ID_BYTES: usize = 200;
/// Longest text field, in bytes (the contract's 4 KiB).
pub const MAX_TEXT_BYTES: usize = 4096;

/// The kinds of registry entries, by their aggregate (stream) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Who is billed.
    Customer,
    /// A place with doors.
    Site,
    /// One door assembly at a site.
    Door,
    /// Recurring work on doors.
    MaintenancePlan,
}

impl Kind {
    /// The stream type (`events.aggregate_type`) and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Site => "site",
            Kind::Door => "door",
            Kind::MaintenancePlan => "maintenance_plan",
        }
    }

    /// Every kind.
    pub const ALL: [Kind; 4] = [
        Kind::Customer,
        Kind::Site,
        Kind::Door,
        Kind::MaintenancePlan,
    ];
}

/// A registry entry another one refers to, as the application found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Whether it was retired.
    pub retired: bool,
    /// The customer it belongs to (a customer: itself).
    pub customer_id: String,
    /// Its site (doors only).
    pub site_id: Option<String>,
}

/// What a registry command needs from outside its stream (resolved by the
/// application; never read from the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The entry the command names as parent: a site's customer, a door's
    /// site (register, move), a plan's customer. `None`: no such entry.
    pub parent: Option<Entry>,
    /// Another active door already carrying the serial this command would
    /// give (its id).
    pub serial_taken_by: Option<String>,
    /// Entries that still depend on this one and are not retired (a
    /// customer's sites and plans, a site's doors).
    pub active_children: usize,
    /// The doors a plan names, as found (missing ones are absent).
    pub doors: Vec<Entry>,
    /// Whether the incident type is in the SOP library (plans).
    pub incident_type_known: bool,
    /// Occurrences whose job is already open (plans: `door_id|due_on`).
    pub opened: Vec<String>,
}

/// A refused registry command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No such entry.
    #[error("{} not found: {id}", kind.as_str())]
    NotFound {
        /// Which kind.
        kind: Kind,
        /// The id asked for.
        id: String,
    },
    /// Registered already (under the same id).
    #[error("{} already registered", kind.as_str())]
    AlreadyExists {
        /// Which kind.
        kind: Kind,
    },
    /// The entry was retired: it takes no more work.
    #[error("{} {id} is retired", kind.as_str())]
    Retired {
        /// Which kind.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// Another active door carries the same manufacturer and serial.
    #[error("serial already registered to door {door_id}")]
    DuplicateSerial {
        /// The door that has it.
        door_id: String,
    },
    /// A plan names a door of another customer.
    #[error("door {door_id} belongs to another customer")]
    DoorOfAnotherCustomer {
        /// The door.
        door_id: String,
    },
    /// Active sites, doors or plans still depend on this entry.
    #[error("{count} active entries still depend on it; retire them first")]
    HasActiveChildren {
        /// How many.
        count: usize,
    },
    /// The occurrence is not one of the plan's, or its job is open already.
    #[error("{0}")]
    Occurrence(String),
    /// A field is malformed.
    #[error("invalid `{field}`: {problem}")]
    Validation {
        /// Field.
        field: String,
        /// Why.
        problem: &'static str,
    },
    /// A plan's `incident_type` is not in the SOP library (answered as
    /// `open_job`'s, `crate::domain::job::UNKNOWN_INCIDENT_TYPE`).
    #[error("unknown incident type `{0}`")]
    UnknownIncidentType(String),
}

impl RegistryError {
    /// The contract's machine code.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::AlreadyExists { kind } => match kind {
                Kind::Customer => "customer_already_exists",
                Kind::Site => "site_already_exists",
                Kind::Door => "door_already_exists",
                Kind::MaintenancePlan => "plan_already_exists",
            },
            RegistryError::Retired { kind, .. } => match kind {
                Kind::Customer => "customer_retired",
                Kind::Site => "site_retired",
                Kind::Door => "door_retired",
                Kind::MaintenancePlan => "plan_retired",
            },
            RegistryError::DuplicateSerial { .. } => "duplicate_serial",
            RegistryError::DoorOfAnotherCustomer { .. } => "door_of_another_customer",
            RegistryError::HasActiveChildren { .. } => "has_active_entries",
            RegistryError::Occurrence(_) => "invalid_occurrence",
            RegistryError::Validation { .. } => "validation_error",
            RegistryError::UnknownIncidentType(_) => crate::domain::job::UNKNOWN_INCIDENT_TYPE,
        }
    }

    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::NotFound { .. } => 404,
            RegistryError::AlreadyExists { .. } | RegistryError::DuplicateSerial { .. } => 409,
            RegistryError::Validation { .. } => 400,
            _ => 422,
        }
    }
}

/// A contact (a customer's or a site's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryContact {
    /// Name.
    pub name: String,
    /// What they do (facilities manager, security desk…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Checks one text field: not blank, bounded, no control characters other
/// than line breaks and tabs.
pub(crate) fn check_text(field: &str, s: &str, max: usize) -> Result<(), RegistryError> {
    let problem = if s.trim().is_empty() {
        Some("must not be blank")
    } else if s.len() > max {
        Some("too long")
    } else if s
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        Some("control characters are not allowed")
    } else {
        None
    };
    problem.map_or(Ok(()), |problem| {
        Err(RegistryError::Validation {
            field: field.to_string(),
            problem,
        })
    })
}

/// [`check_text`] for an optional field.
pub(crate) fn check_opt(field: &str, s: &Option<String>, max: usize) -> Result<(), RegistryError> {
    s.as_deref().map_or(Ok(()), |s| check_text(field, s, max))
}

/// Checks a list of contacts (at most 20).
pub(crate) fn check_contacts(
    field: &str,
    contacts: &[RegistryContact],
) -> Result<(), RegistryError> {
    if contacts.len() > 20 {
        return Err(RegistryError::Validation {
            field: field.to_string(),
            problem: "at most 20 contacts",
        });
    }
    for (i, c) in contacts.iter().enumerate() {
        check_text(&format!("{field}[{i}].name"), &c.name, MAX_TEXT_BYTES)?;
        check_opt(&format!("{field}[{i}].role"), &c.role, MAX_TEXT_BYTES)?;
        check_opt(&format!("{field}[{i}].phone"), &c.phone, MAX_ID_BYTES)?;
        check_opt(&format!("{field}[{i}].email"), &c.email, MAX_ID_BYTES)?;
    }
    Ok(())
}

/// Checks an id given on the wire.
pub(crate) fn check_id(field: &str, id: &str) -> Result<(), RegistryError> {
    check_text(field, id, MAX_ID_BYTES)?;
    if id
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '|')
    {
        return Err(RegistryError::Validation {
            field: field.to_string(),
            problem: "no spaces, `/` or `|` in ids",
        });
    }
    Ok(())
}

/// The parent a command names, found and active.
pub(crate) fn active_parent(kind: Kind, id: &str, facts: &Facts) -> Result<Entry, RegistryError> {
    match &facts.parent {
        None => Err(RegistryError::NotFound {
            kind,
            id: id.to_string(),
        }),
        Some(p) if p.retired => Err(RegistryError::Retired {
            kind,
            id: id.to_string(),
        }),
        Some(p) => Ok(p.clone()),
    }
}
