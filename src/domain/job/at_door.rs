//! What a job knows of the registry and of its own findings: the
//! maintenance plan's occurrence it does, a new caller's site and door
//! registered with it, and the deficiencies a visit found.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::policy::Priority;

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
    /// The door to register (its `site_id` defaults to the new site's).
    pub door: crate::domain::registry::door::RegisterDoor,
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
