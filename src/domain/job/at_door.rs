//! What a job knows of the registry and of its own findings: the
//! maintenance plan's occurrence it does, a new caller's site and door
//! registered with it, and the deficiencies a visit found.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::policy::Priority;
use crate::domain::registry::door::{DoorKind, RegisterDoor};

/// Recurring work a maintenance plan opened (resolved: only the system
/// actor's scheduler sets it, `src/app/registry/schedule.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedWork {
    /// The plan.
    pub plan_id: String,
    /// The occurrence's scheduled due date (with the door, what names it).
    pub due_on: NaiveDate,
    /// The plan's priority for its jobs.
    pub priority: Priority,
    /// When the work is due: the job's completion SLA.
    pub due_at: DateTime<Utc>,
}

/// A new caller's site and door, registered by `open_job` before the job
/// opens (the caller's role must be allowed `register_site` and
/// `register_door`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAtCall {
    /// The site to register; absent when the door is at a registered site
    /// (`door.site_id`).
    #[serde(default)]
    pub site: Option<crate::domain::registry::site::RegisterSite>,
    /// The door to register.
    pub door: NewDoor,
}

/// The door `open_job`'s `register` registers: `register_door`'s body
/// whose site may be the one registered with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoor {
    /// Id; the service makes one when absent.
    #[serde(default)]
    pub door_id: Option<String>,
    /// A registered site (default: the site registered with it).
    #[serde(default)]
    pub site_id: Option<String>,
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

impl NewDoor {
    /// `register_door` for this door at `site_id` (its own, else the
    /// given one).
    pub fn at(self, site_id: Option<String>) -> RegisterDoor {
        RegisterDoor {
            door_id: self.door_id,
            site_id: self.site_id.or(site_id).unwrap_or_default(),
            kind: self.kind,
            location: self.location,
            manufacturer: self.manufacturer,
            model: self.model,
            serial: self.serial,
            installed_on: self.installed_on,
            fire_rating: self.fire_rating,
            tag: self.tag,
        }
    }
}

/// A deficiency found at the door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deficiency {
    /// What is wrong (e.g. "closer does not latch the door").
    pub description: String,
    /// The checklist item it fails, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// The corrective action recommended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrective_action: Option<String>,
}
