//! The `Door` aggregate: one door assembly at a site — its kind, where it
//! is, what it is (manufacturer, model, serial, installed on, the fire
//! rating on its label) and whether it is in service.

use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::customer::Retire;
use super::{active_parent, check_id, check_opt, check_text, Facts, Kind, RegistryError};
use super::{MAX_ID_BYTES, MAX_TEXT_BYTES};
use crate::domain::Issued;

/// What kind of door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoorKind {
    /// Automatic sliding door (AAADM).
    AutomaticSliding,
    /// Automatic swing door (AAADM).
    AutomaticSwing,
    /// Overhead sectional door.
    Overhead,
    /// Dock door.
    Dock,
    /// Rolling fire door (NFPA 80, drop-tested).
    RollingFire,
    /// Swinging fire door (NFPA 80).
    SwingingFire,
    /// Storefront door.
    Storefront,
}

impl DoorKind {
    /// Whether it is a fire door assembly (carries a fire rating label).
    pub fn is_fire_door(self) -> bool {
        matches!(self, DoorKind::RollingFire | DoorKind::SwingingFire)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DoorKind::AutomaticSliding => "automatic_sliding",
            DoorKind::AutomaticSwing => "automatic_swing",
            DoorKind::Overhead => "overhead",
            DoorKind::Dock => "dock",
            DoorKind::RollingFire => "rolling_fire",
            DoorKind::SwingingFire => "swinging_fire",
            DoorKind::Storefront => "storefront",
        }
    }
}

/// Whether a door can be used.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DoorStatus {
    /// Working.
    #[default]
    InService,
    /// Works but has a deficiency (a fire door that may not close and latch).
    Impaired,
    /// Not usable.
    OutOfService,
}

impl DoorStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DoorStatus::InService => "in_service",
            DoorStatus::Impaired => "impaired",
            DoorStatus::OutOfService => "out_of_service",
        }
    }
}

/// What is known of a door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorDetails {
    /// The site it is at.
    pub site_id: String,
    /// What kind of door.
    pub kind: DoorKind,
    /// Where on the site (e.g. "East corridor, 2nd floor, stair B").
    pub location: String,
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number (unique with the manufacturer among active doors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Installed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_on: Option<NaiveDate>,
    /// The fire rating on the label (fire doors), e.g. `90 min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_rating: Option<String>,
    /// The site's own name for the door (a door schedule number, a tag):
    /// jobs opened with a free-text `door.id` equal to it, at the site's
    /// `reference`, are this door's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl DoorDetails {
    fn check(&self) -> Result<(), RegistryError> {
        check_id("site_id", &self.site_id)?;
        check_text("location", &self.location, MAX_TEXT_BYTES)?;
        check_opt("manufacturer", &self.manufacturer, MAX_ID_BYTES)?;
        check_opt("model", &self.model, MAX_ID_BYTES)?;
        check_opt("serial", &self.serial, MAX_ID_BYTES)?;
        check_opt("fire_rating", &self.fire_rating, MAX_ID_BYTES)?;
        check_opt("tag", &self.tag, MAX_ID_BYTES)?;
        if self.fire_rating.is_some() && !self.kind.is_fire_door() {
            return Err(RegistryError::Validation {
                field: "fire_rating".into(),
                problem: "only fire doors carry a fire rating label",
            });
        }
        Ok(())
    }

    /// The key a serial is unique under: manufacturer and serial, trimmed
    /// and lowercased (`None` without a serial).
    pub fn serial_key(&self) -> Option<String> {
        self.serial.as_ref().map(|s| {
            format!(
                "{}|{}",
                self.manufacturer
                    .as_deref()
                    .unwrap_or("")
                    .trim()
                    .to_lowercase(),
                s.trim().to_lowercase()
            )
        })
    }
}

/// `register_door`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDoor {
    /// Id; the service makes one when absent.
    #[serde(default)]
    pub door_id: Option<String>,
    /// The site it is at.
    pub site_id: String,
    /// What kind of door.
    pub kind: DoorKind,
    /// Where on the site.
    pub location: String,
    /// Manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Installed on.
    #[serde(default)]
    pub installed_on: Option<NaiveDate>,
    /// Fire rating on the label (fire doors).
    #[serde(default)]
    pub fire_rating: Option<String>,
    /// The site's own name for the door.
    #[serde(default)]
    pub tag: Option<String>,
}

impl RegisterDoor {
    /// The details it registers.
    pub fn details(&self) -> DoorDetails {
        DoorDetails {
            site_id: self.site_id.clone(),
            kind: self.kind,
            location: self.location.clone(),
            manufacturer: self.manufacturer.clone(),
            model: self.model.clone(),
            serial: self.serial.clone(),
            installed_on: self.installed_on,
            fire_rating: self.fire_rating.clone(),
            tag: self.tag.clone(),
        }
    }
}

/// `update_door`: corrects what is known (the fields given replace the
/// ones recorded). Where the door is goes through `move_door`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDoor {
    /// What kind of door.
    #[serde(default)]
    pub kind: Option<DoorKind>,
    /// Where on the site.
    #[serde(default)]
    pub location: Option<String>,
    /// Manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Installed on.
    #[serde(default)]
    pub installed_on: Option<NaiveDate>,
    /// The site's own name for the door.
    #[serde(default)]
    pub tag: Option<String>,
}

/// `move_door`: to another site of the same customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveDoor {
    /// The site it is at now.
    pub site_id: String,
    /// Where on that site.
    pub location: String,
}

/// `record_door_label`: what the technician reads on a fire door's label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDoorLabel {
    /// The fire rating on the label, e.g. `90 min`.
    pub fire_rating: String,
    /// Whether the label is legible (NFPA 80).
    pub legible: bool,
    /// What else was seen.
    #[serde(default)]
    pub note: Option<String>,
}

/// `set_door_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDoorStatus {
    /// The new status.
    pub status: DoorStatus,
    /// Why.
    pub reason: String,
    /// The job that found or fixed it.
    #[serde(default)]
    pub job_id: Option<String>,
}

/// Every door command.
#[derive(Debug, Clone, PartialEq)]
pub enum DoorCommand {
    /// `register_door`.
    Register(RegisterDoor),
    /// `update_door`.
    Update(UpdateDoor),
    /// `move_door`.
    Move(MoveDoor),
    /// `record_door_label`.
    RecordLabel(RecordDoorLabel),
    /// `set_door_status`.
    SetStatus(SetDoorStatus),
    /// `retire_door`.
    Retire(Retire),
}

/// Every door event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DoorEvent {
    /// Registered (in service).
    DoorRegistered {
        /// Id.
        door_id: String,
        /// What is known.
        details: DoorDetails,
    },
    /// Details corrected (the whole record as it now stands).
    DoorUpdated {
        /// What is known now.
        details: DoorDetails,
    },
    /// Moved to another site.
    DoorMoved {
        /// From which site.
        from_site_id: String,
        /// To which site.
        to_site_id: String,
        /// Where on it.
        location: String,
    },
    /// The fire rating label read on site.
    DoorLabelRecorded {
        /// The rating on it.
        fire_rating: String,
        /// Whether it is legible.
        legible: bool,
        /// What else was seen.
        note: Option<String>,
    },
    /// In service, impaired or out of service.
    DoorStatusChanged {
        /// Before.
        from: DoorStatus,
        /// After.
        to: DoorStatus,
        /// Why.
        reason: String,
        /// The job that found or fixed it.
        job_id: Option<String>,
    },
    /// Retired: takes no new jobs or plans.
    DoorRetired {
        /// Why.
        reason: String,
    },
}

impl DomainEvent for DoorEvent {
    fn event_type(&self) -> String {
        match self {
            DoorEvent::DoorRegistered { .. } => "DoorRegistered",
            DoorEvent::DoorUpdated { .. } => "DoorUpdated",
            DoorEvent::DoorMoved { .. } => "DoorMoved",
            DoorEvent::DoorLabelRecorded { .. } => "DoorLabelRecorded",
            DoorEvent::DoorStatusChanged { .. } => "DoorStatusChanged",
            DoorEvent::DoorRetired { .. } => "DoorRetired",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// The door aggregate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Door {
    /// Events applied.
    pub version: u64,
    /// Its id once registered.
    pub door_id: Option<String>,
    /// What is known once registered.
    pub details: Option<DoorDetails>,
    /// In service, impaired, out of service.
    pub status: DoorStatus,
    /// Whether it was retired.
    pub retired: bool,
}

impl Door {
    /// Decides a command on the door as it stands. Pure. `facts.parent`:
    /// the site (`register_door`, `move_door`); `facts.serial_taken_by`:
    /// another active door with the serial the command would give.
    pub fn decide(
        &self,
        cmd: &Issued<DoorCommand>,
        facts: &Facts,
    ) -> Result<Vec<DoorEvent>, RegistryError> {
        if let DoorCommand::Register(c) = &cmd.command {
            if self.details.is_some() {
                return Err(RegistryError::AlreadyExists { kind: Kind::Door });
            }
            let id = c.door_id.clone().unwrap_or_default();
            check_id("door_id", &id)?;
            let details = c.details();
            details.check()?;
            active_parent(Kind::Site, &c.site_id, facts)?;
            serial_free(facts)?;
            return Ok(vec![DoorEvent::DoorRegistered {
                door_id: id,
                details,
            }]);
        }
        let current = self.details.as_ref().ok_or(RegistryError::NotFound {
            kind: Kind::Door,
            id: String::new(),
        })?;
        if self.retired {
            return Err(RegistryError::Retired {
                kind: Kind::Door,
                id: self.door_id.clone().unwrap_or_default(),
            });
        }
        match &cmd.command {
            DoorCommand::Register(_) => unreachable!("decided above"),
            DoorCommand::Update(c) => {
                let mut d = current.clone();
                if let Some(k) = c.kind {
                    d.kind = k;
                }
                if let Some(v) = &c.location {
                    d.location.clone_from(v);
                }
                for (to, v) in [
                    (&mut d.manufacturer, &c.manufacturer),
                    (&mut d.model, &c.model),
                    (&mut d.serial, &c.serial),
                    (&mut d.tag, &c.tag),
                ] {
                    if v.is_some() {
                        to.clone_from(v);
                    }
                }
                if c.installed_on.is_some() {
                    d.installed_on = c.installed_on;
                }
                if !d.kind.is_fire_door() {
                    d.fire_rating = None;
                }
                d.check()?;
                if &d == current {
                    return Ok(vec![]);
                }
                if d.serial_key() != current.serial_key() {
                    serial_free(facts)?;
                }
                Ok(vec![DoorEvent::DoorUpdated { details: d }])
            }
            DoorCommand::Move(c) => {
                check_id("site_id", &c.site_id)?;
                check_text("location", &c.location, MAX_TEXT_BYTES)?;
                let site = active_parent(Kind::Site, &c.site_id, facts)?;
                if c.site_id == current.site_id && c.location == current.location {
                    return Ok(vec![]);
                }
                // A door stays with its customer: the parent's customer is
                // checked against the door's own by the application, which
                // gives the door's customer as `facts.doors[0]`.
                if let Some(own) = facts.doors.first() {
                    if own.customer_id != site.customer_id {
                        return Err(RegistryError::DoorOfAnotherCustomer {
                            door_id: self.door_id.clone().unwrap_or_default(),
                        });
                    }
                }
                Ok(vec![DoorEvent::DoorMoved {
                    from_site_id: current.site_id.clone(),
                    to_site_id: c.site_id.clone(),
                    location: c.location.clone(),
                }])
            }
            DoorCommand::RecordLabel(c) => {
                if !current.kind.is_fire_door() {
                    return Err(RegistryError::Validation {
                        field: "fire_rating".into(),
                        problem: "only fire doors carry a fire rating label",
                    });
                }
                check_text("fire_rating", &c.fire_rating, MAX_ID_BYTES)?;
                check_opt("note", &c.note, MAX_TEXT_BYTES)?;
                Ok(vec![DoorEvent::DoorLabelRecorded {
                    fire_rating: c.fire_rating.clone(),
                    legible: c.legible,
                    note: c.note.clone(),
                }])
            }
            DoorCommand::SetStatus(c) => {
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                check_opt("job_id", &c.job_id, MAX_ID_BYTES)?;
                if c.status == self.status {
                    return Ok(vec![]);
                }
                Ok(vec![DoorEvent::DoorStatusChanged {
                    from: self.status,
                    to: c.status,
                    reason: c.reason.clone(),
                    job_id: c.job_id.clone(),
                }])
            }
            DoorCommand::Retire(c) => {
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                Ok(vec![DoorEvent::DoorRetired {
                    reason: c.reason.clone(),
                }])
            }
        }
    }
}

fn serial_free(facts: &Facts) -> Result<(), RegistryError> {
    match &facts.serial_taken_by {
        Some(other) => Err(RegistryError::DuplicateSerial {
            door_id: other.clone(),
        }),
        None => Ok(()),
    }
}

impl Door {
    /// How one event changes it (`Aggregate::apply`).
    fn fold(&mut self, event: DoorEvent) {
        self.version += 1;
        match event {
            DoorEvent::DoorRegistered { door_id, details } => {
                self.door_id = Some(door_id);
                self.details = Some(details);
            }
            DoorEvent::DoorUpdated { details } => self.details = Some(details),
            DoorEvent::DoorMoved {
                to_site_id,
                location,
                ..
            } => {
                if let Some(d) = &mut self.details {
                    d.site_id = to_site_id;
                    d.location = location;
                }
            }
            DoorEvent::DoorLabelRecorded { fire_rating, .. } => {
                if let Some(d) = &mut self.details {
                    d.fire_rating = Some(fire_rating);
                }
            }
            DoorEvent::DoorStatusChanged { to, .. } => self.status = to,
            DoorEvent::DoorRetired { .. } => self.retired = true,
        }
    }
}

super::registry_aggregate!(Door, "door", DoorCommand, DoorEvent);
