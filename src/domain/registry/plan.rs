//! The `MaintenancePlan` aggregate: which doors of a customer get which
//! recurring work (an incident type: `fire_door_inspection` every 12
//! months, `preventive_maintenance` every 3), from when, with how many
//! days' lead, at which priority; and the occurrences a dispatcher skipped
//! or moved.
//!
//! The schedule is pure ([`PlanDetails::occurrences`]): occurrence *n* of a
//! door is due `starts_on + n × every_months` and its job opens `lead_days`
//! before. Each occurrence has one job id ([`Occurrence::job_id`]), so the
//! store's one-stream-per-id rule makes opening it happen exactly once,
//! whoever tries and however often (`src/app/registry/schedule.rs`).

use std::collections::BTreeMap;

use chrono::{Duration, Months, NaiveDate};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::customer::Retire;
use super::{active_parent, check_id, check_text, Facts, Kind, RegistryError};
use super::{MAX_ID_BYTES, MAX_TEXT_BYTES};
use crate::domain::policy::Priority;
use crate::domain::Issued;

/// Most doors one plan names.
pub const MAX_PLAN_DOORS: usize = 500;

/// What a plan says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDetails {
    /// The customer whose doors these are.
    pub customer_id: String,
    /// A name for people (e.g. "Annual NFPA 80 inspection").
    pub name: String,
    /// The doors.
    pub door_ids: Vec<String>,
    /// The work: a SOP library incident type.
    pub incident_type: String,
    /// Every how many months (1–60).
    pub every_months: u32,
    /// The first due date.
    pub starts_on: NaiveDate,
    /// How many days before its due date an occurrence's job opens (0–365).
    pub lead_days: u32,
    /// The jobs' priority.
    pub priority: Priority,
}

/// One occurrence of a plan at one door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    /// The door.
    pub door_id: String,
    /// Its scheduled due date: with the door, what names it.
    pub due_on: NaiveDate,
    /// Its due date now (moved, or the scheduled one).
    pub due: NaiveDate,
    /// When its job opens (`due − lead_days`).
    pub opens_on: NaiveDate,
    /// Why it was skipped, if it was.
    pub skipped: Option<String>,
}

impl Occurrence {
    /// The key an occurrence is recorded under: `door_id|due_on`.
    pub fn key(door_id: &str, due_on: NaiveDate) -> String {
        format!("{door_id}|{due_on}")
    }

    /// The id of the job that does this occurrence's work: the same for
    /// every replica and every retry.
    pub fn job_id(&self, plan_id: &str) -> String {
        let name = format!(
            "dispatch-api/plan/{plan_id}/{}/{}",
            self.door_id, self.due_on
        );
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
    }
}

/// A skipped or moved occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Not done this time.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Due on another date.
    Moved {
        /// The new due date.
        to: NaiveDate,
        /// Why.
        reason: String,
    },
}

impl PlanDetails {
    fn check(&self) -> Result<(), RegistryError> {
        check_id("customer_id", &self.customer_id)?;
        check_text("name", &self.name, MAX_TEXT_BYTES)?;
        check_text("incident_type", &self.incident_type, MAX_ID_BYTES)?;
        let bad = |field: &str, problem| {
            Err(RegistryError::Validation {
                field: field.into(),
                problem,
            })
        };
        if self.door_ids.is_empty() || self.door_ids.len() > MAX_PLAN_DOORS {
            return bad("door_ids", "between 1 and 500 doors");
        }
        for (i, d) in self.door_ids.iter().enumerate() {
            check_id(&format!("door_ids[{i}]"), d)?;
        }
        if !(1..=60).contains(&self.every_months) {
            return bad("every_months", "must be 1..60");
        }
        if self.lead_days > 365 {
            return bad("lead_days", "must be 0..365");
        }
        Ok(())
    }

    /// The due date of occurrence `n` as scheduled.
    fn scheduled(&self, n: u32) -> Option<NaiveDate> {
        self.starts_on
            .checked_add_months(Months::new(n.checked_mul(self.every_months)?))
    }

    /// The occurrences at `door_id` whose job opens on or before `through`,
    /// in order: none due before `created_on` (a plan does not make up for
    /// the time before it existed), moved ones where they were moved,
    /// skipped ones marked.
    pub fn occurrences(
        &self,
        door_id: &str,
        created_on: NaiveDate,
        changes: &BTreeMap<String, Change>,
        through: NaiveDate,
    ) -> Vec<Occurrence> {
        let lead = Duration::days(i64::from(self.lead_days));
        let mut out = Vec::new();
        // Moves are at most a few years: look that far past `through` for
        // an occurrence moved earlier.
        let horizon = through + lead + Duration::days(5 * 366);
        for n in 0..10_000 {
            let Some(due_on) = self.scheduled(n) else {
                break;
            };
            if due_on > horizon {
                break;
            }
            if due_on < created_on {
                continue;
            }
            let change = changes.get(&Occurrence::key(door_id, due_on));
            let due = match change {
                Some(Change::Moved { to, .. }) => *to,
                _ => due_on,
            };
            let opens_on = due - lead;
            if opens_on > through {
                continue;
            }
            out.push(Occurrence {
                door_id: door_id.to_string(),
                due_on,
                due,
                opens_on,
                skipped: match change {
                    Some(Change::Skipped { reason }) => Some(reason.clone()),
                    _ => None,
                },
            });
        }
        out.sort_by_key(|o| (o.opens_on, o.due_on));
        out
    }

    /// Whether `due_on` is a scheduled due date of this plan (on or after
    /// `created_on`).
    pub fn is_scheduled(&self, due_on: NaiveDate, created_on: NaiveDate) -> bool {
        due_on >= created_on
            && (0..10_000)
                .map_while(|n| self.scheduled(n).filter(|d| *d <= due_on))
                .any(|d| d == due_on)
    }
}

/// `create_plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    /// Id; the service makes one when absent.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// The customer whose doors these are.
    pub customer_id: String,
    /// A name for people.
    pub name: String,
    /// The doors (all the customer's, registered and not retired).
    pub door_ids: Vec<String>,
    /// A SOP library incident type.
    pub incident_type: String,
    /// Every how many months (1–60).
    pub every_months: u32,
    /// The first due date.
    pub starts_on: NaiveDate,
    /// Days of lead (0–365).
    pub lead_days: u32,
    /// The jobs' priority.
    pub priority: Priority,
}

/// `skip_occurrence` / `move_occurrence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeOccurrence {
    /// The door.
    pub door_id: String,
    /// The occurrence's scheduled due date.
    pub due_on: NaiveDate,
    /// The new due date (`move_occurrence` only).
    #[serde(default)]
    pub to: Option<NaiveDate>,
    /// Why.
    pub reason: String,
}

/// Every plan command.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanCommand {
    /// `create_plan`.
    Create(CreatePlan),
    /// `skip_occurrence`.
    Skip(ChangeOccurrence),
    /// `move_occurrence`.
    Move(ChangeOccurrence),
    /// `retire_plan`.
    Retire(Retire),
}

/// Every plan event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlanEvent {
    /// Created.
    PlanCreated {
        /// Id.
        plan_id: String,
        /// What it says.
        details: PlanDetails,
        /// The day it was created: no occurrence is due before it.
        created_on: NaiveDate,
    },
    /// One occurrence will not be done.
    OccurrenceSkipped {
        /// The door.
        door_id: String,
        /// Its scheduled due date.
        due_on: NaiveDate,
        /// Why.
        reason: String,
    },
    /// One occurrence is due on another date.
    OccurrenceMoved {
        /// The door.
        door_id: String,
        /// Its scheduled due date.
        due_on: NaiveDate,
        /// The new due date.
        to: NaiveDate,
        /// Why.
        reason: String,
    },
    /// Retired: opens nothing more.
    PlanRetired {
        /// Why.
        reason: String,
    },
}

impl DomainEvent for PlanEvent {
    fn event_type(&self) -> String {
        match self {
            PlanEvent::PlanCreated { .. } => "PlanCreated",
            PlanEvent::OccurrenceSkipped { .. } => "OccurrenceSkipped",
            PlanEvent::OccurrenceMoved { .. } => "OccurrenceMoved",
            PlanEvent::PlanRetired { .. } => "PlanRetired",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// The plan aggregate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MaintenancePlan {
    /// Events applied.
    pub version: u64,
    /// Its id once created.
    pub plan_id: Option<String>,
    /// What it says once created.
    pub details: Option<PlanDetails>,
    /// The day it was created.
    pub created_on: Option<NaiveDate>,
    /// Skipped and moved occurrences, by [`Occurrence::key`].
    pub changes: BTreeMap<String, Change>,
    /// Whether it was retired.
    pub retired: bool,
}

impl MaintenancePlan {
    /// Its occurrences at every door whose job opens on or before `through`.
    pub fn occurrences(&self, through: NaiveDate) -> Vec<Occurrence> {
        let (Some(d), Some(created)) = (&self.details, self.created_on) else {
            return vec![];
        };
        if self.retired {
            return vec![];
        }
        d.door_ids
            .iter()
            .flat_map(|door| d.occurrences(door, created, &self.changes, through))
            .collect()
    }

    /// Decides a command on the plan as it stands. Pure. `facts.parent`:
    /// the customer; `facts.doors`: the doors `create_plan` names, as
    /// found; `facts.opened`: occurrences whose job is open.
    pub fn decide(
        &self,
        cmd: &Issued<PlanCommand>,
        facts: &Facts,
    ) -> Result<Vec<PlanEvent>, RegistryError> {
        if let PlanCommand::Create(c) = &cmd.command {
            return self.create(c, cmd.at.date_naive(), facts);
        }
        let (Some(details), Some(created_on)) = (&self.details, self.created_on) else {
            return Err(RegistryError::NotFound {
                kind: Kind::MaintenancePlan,
                id: String::new(),
            });
        };
        if self.retired {
            return Err(RegistryError::Retired {
                kind: Kind::MaintenancePlan,
                id: self.plan_id.clone().unwrap_or_default(),
            });
        }
        match &cmd.command {
            PlanCommand::Create(_) => unreachable!("decided above"),
            PlanCommand::Skip(c) | PlanCommand::Move(c) => {
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                if !details.door_ids.contains(&c.door_id)
                    || !details.is_scheduled(c.due_on, created_on)
                {
                    return Err(RegistryError::Occurrence(format!(
                        "the plan has no occurrence at door {} due on {}",
                        c.door_id, c.due_on
                    )));
                }
                let key = Occurrence::key(&c.door_id, c.due_on);
                if facts.opened.contains(&key) {
                    return Err(RegistryError::Occurrence(format!(
                        "the occurrence due on {} at door {} has its job open already; cancel or reschedule the job instead",
                        c.due_on, c.door_id
                    )));
                }
                if let PlanCommand::Move(_) = &cmd.command {
                    let Some(to) = c.to else {
                        return Err(RegistryError::Validation {
                            field: "to".into(),
                            problem: "the new due date is required",
                        });
                    };
                    Ok(vec![PlanEvent::OccurrenceMoved {
                        door_id: c.door_id.clone(),
                        due_on: c.due_on,
                        to,
                        reason: c.reason.clone(),
                    }])
                } else {
                    if c.to.is_some() {
                        return Err(RegistryError::Validation {
                            field: "to".into(),
                            problem: "only move_occurrence takes a new date",
                        });
                    }
                    if matches!(self.changes.get(&key), Some(Change::Skipped { .. })) {
                        return Ok(vec![]);
                    }
                    Ok(vec![PlanEvent::OccurrenceSkipped {
                        door_id: c.door_id.clone(),
                        due_on: c.due_on,
                        reason: c.reason.clone(),
                    }])
                }
            }
            PlanCommand::Retire(c) => {
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                Ok(vec![PlanEvent::PlanRetired {
                    reason: c.reason.clone(),
                }])
            }
        }
    }

    fn create(
        &self,
        c: &CreatePlan,
        today: NaiveDate,
        facts: &Facts,
    ) -> Result<Vec<PlanEvent>, RegistryError> {
        if self.details.is_some() {
            return Err(RegistryError::AlreadyExists {
                kind: Kind::MaintenancePlan,
            });
        }
        let id = c.plan_id.clone().unwrap_or_default();
        check_id("plan_id", &id)?;
        let details = PlanDetails {
            customer_id: c.customer_id.clone(),
            name: c.name.clone(),
            door_ids: c.door_ids.clone(),
            incident_type: c.incident_type.clone(),
            every_months: c.every_months,
            starts_on: c.starts_on,
            lead_days: c.lead_days,
            priority: c.priority,
        };
        details.check()?;
        if !facts.incident_type_known {
            return Err(RegistryError::UnknownIncidentType(
                details.incident_type.chars().take(100).collect(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in details.door_ids.iter().enumerate() {
            if !seen.insert(d) {
                return Err(RegistryError::Validation {
                    field: format!("door_ids[{i}]"),
                    problem: "named twice",
                });
            }
        }
        let customer = active_parent(Kind::Customer, &c.customer_id, facts)?;
        for door in &details.door_ids {
            let Some(found) = facts.doors.iter().find(|e| &e.id == door) else {
                return Err(RegistryError::NotFound {
                    kind: Kind::Door,
                    id: door.clone(),
                });
            };
            if found.retired {
                return Err(RegistryError::Retired {
                    kind: Kind::Door,
                    id: door.clone(),
                });
            }
            if found.customer_id != customer.id {
                return Err(RegistryError::DoorOfAnotherCustomer {
                    door_id: door.clone(),
                });
            }
        }
        Ok(vec![PlanEvent::PlanCreated {
            plan_id: id,
            details,
            created_on: today,
        }])
    }
}

impl MaintenancePlan {
    /// How one event changes it (`Aggregate::apply`).
    fn fold(&mut self, event: PlanEvent) {
        self.version += 1;
        match event {
            PlanEvent::PlanCreated {
                plan_id,
                details,
                created_on,
            } => {
                self.plan_id = Some(plan_id);
                self.details = Some(details);
                self.created_on = Some(created_on);
            }
            PlanEvent::OccurrenceSkipped {
                door_id,
                due_on,
                reason,
            } => {
                self.changes.insert(
                    Occurrence::key(&door_id, due_on),
                    Change::Skipped { reason },
                );
            }
            PlanEvent::OccurrenceMoved {
                door_id,
                due_on,
                to,
                reason,
            } => {
                self.changes.insert(
                    Occurrence::key(&door_id, due_on),
                    Change::Moved { to, reason },
                );
            }
            PlanEvent::PlanRetired { .. } => self.retired = true,
        }
    }
}

super::registry_aggregate!(MaintenancePlan, "maintenance_plan", PlanCommand, PlanEvent);
