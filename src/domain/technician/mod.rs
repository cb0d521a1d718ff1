//! The `Technician` aggregate: one person on the roster — skills,
//! certifications with expiry dates, territory, shift, labor rate.

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::domain::actor::{Issued, Role};
use crate::domain::job::TechnicianProfile;

/// Shift state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    /// Working now.
    Available,
    /// On call.
    OnCall,
    /// Off shift.
    Off,
}

impl Shift {
    /// The wire name (`available`, `on_call`, `off`).
    pub fn as_str(self) -> &'static str {
        match self {
            Shift::Available => "available",
            Shift::OnCall => "on_call",
            Shift::Off => "off",
        }
    }
}

/// A certification and its expiry date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Certification {
    /// Name, e.g. `AAADM`.
    pub name: String,
    /// Last valid day.
    pub expires_on: NaiveDate,
}

/// Register a technician (`POST /v1/technicians`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterTechnician {
    /// Id; the service makes one when absent.
    #[serde(default)]
    pub technician_id: Option<String>,
    /// Name.
    pub name: String,
    /// Skills.
    pub skills: Vec<String>,
    /// Certifications.
    #[serde(default)]
    pub certifications: Vec<Certification>,
    /// Territory.
    pub territory: String,
    /// Shift state.
    pub shift: Shift,
    /// Cents per hour.
    pub labor_rate_cents: i64,
}

/// `update_skills`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSkills {
    /// New skills (replaces).
    pub skills: Vec<String>,
    /// New certifications (replaces).
    pub certifications: Vec<Certification>,
}

/// `set_shift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetShift {
    /// New shift state.
    pub shift: Shift,
}

/// Every technician command.
#[derive(Debug, Clone, PartialEq)]
pub enum TechnicianCommand {
    /// Register.
    RegisterTechnician(RegisterTechnician),
    /// `update_skills`.
    UpdateSkills(UpdateSkills),
    /// `set_shift`.
    SetShift(SetShift),
}

/// Technician command wire names (for `POST /v1/technicians/{id}/commands/{command}`).
pub const TECHNICIAN_COMMANDS: &[&str] = &["update_skills", "set_shift"];

impl TechnicianCommand {
    /// The wire name.
    pub fn wire_name(&self) -> &'static str {
        match self {
            TechnicianCommand::RegisterTechnician(_) => "register_technician",
            TechnicianCommand::UpdateSkills(_) => "update_skills",
            TechnicianCommand::SetShift(_) => "set_shift",
        }
    }

    /// Decodes a wire body for a command name. `Ok(None)`: no such command.
    /// `register_technician` is the body of `POST /v1/technicians`.
    pub fn decode(
        name: &str,
        body: serde_json::Value,
    ) -> Result<Option<TechnicianCommand>, crate::domain::BodyError> {
        match name {
            "register_technician" => serde_path_to_error::deserialize(body)
                .map(|c| Some(TechnicianCommand::RegisterTechnician(c))),
            "update_skills" => serde_path_to_error::deserialize(body)
                .map(|c| Some(TechnicianCommand::UpdateSkills(c))),
            "set_shift" => {
                serde_path_to_error::deserialize(body).map(|c| Some(TechnicianCommand::SetShift(c)))
            }
            _ => Ok(None),
        }
    }
}

/// Every technician event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TechnicianEvent {
    /// Registered.
    TechnicianRegistered {
        /// Id.
        technician_id: String,
        /// Name.
        name: String,
        /// Skills.
        skills: Vec<String>,
        /// Certifications.
        certifications: Vec<Certification>,
        /// Territory.
        territory: String,
        /// Shift.
        shift: Shift,
        /// Cents per hour.
        labor_rate_cents: i64,
    },
    /// Skills and certifications replaced.
    SkillsUpdated {
        /// Skills.
        skills: Vec<String>,
        /// Certifications.
        certifications: Vec<Certification>,
    },
    /// Shift changed.
    ShiftSet {
        /// Shift.
        shift: Shift,
    },
}

impl DomainEvent for TechnicianEvent {
    fn event_type(&self) -> String {
        match self {
            TechnicianEvent::TechnicianRegistered { .. } => "TechnicianRegistered",
            TechnicianEvent::SkillsUpdated { .. } => "SkillsUpdated",
            TechnicianEvent::ShiftSet { .. } => "ShiftSet",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// A refused technician command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TechnicianError {
    /// No such technician.
    #[error("technician not found")]
    NotFound,
    /// Registered already.
    #[error("technician already registered")]
    AlreadyRegistered,
    /// The role may not do this.
    #[error("role may not do this")]
    Forbidden,
    /// A field is malformed.
    #[error("invalid `{field}`: {problem}")]
    Validation {
        /// Field.
        field: String,
        /// Why.
        problem: &'static str,
    },
}

impl TechnicianError {
    /// The contract's machine code.
    pub fn code(&self) -> &'static str {
        match self {
            TechnicianError::NotFound => "not_found",
            TechnicianError::AlreadyRegistered => "technician_already_exists",
            TechnicianError::Forbidden => "forbidden",
            TechnicianError::Validation { .. } => "validation_error",
        }
    }
}

/// What is known of a registered technician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechnicianData {
    /// Id.
    pub technician_id: String,
    /// Name.
    pub name: String,
    /// Skills.
    pub skills: Vec<String>,
    /// Certifications.
    pub certifications: Vec<Certification>,
    /// Territory.
    pub territory: String,
    /// Shift.
    pub shift: Shift,
    /// Cents per hour.
    pub labor_rate_cents: i64,
}

impl TechnicianData {
    /// The profile the job aggregate checks offers against.
    pub fn profile(&self) -> TechnicianProfile {
        TechnicianProfile {
            technician_id: self.technician_id.clone(),
            active: true,
            skills: self.skills.clone(),
            certifications: self
                .certifications
                .iter()
                .map(|c| (c.name.clone(), c.expires_on))
                .collect(),
            shift: self.shift,
            labor_rate_cents: self.labor_rate_cents,
        }
    }
}

/// The technician aggregate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Technician {
    /// Events applied.
    pub version: u64,
    /// Data once registered.
    pub data: Option<TechnicianData>,
}

fn check(field: &str, s: &str, max: usize) -> Result<(), TechnicianError> {
    let problem = if s.trim().is_empty() {
        Some("must not be blank")
    } else if s.len() > max {
        Some("too long")
    } else if s.chars().any(char::is_control) {
        Some("control characters are not allowed")
    } else {
        None
    };
    problem.map_or(Ok(()), |problem| {
        Err(TechnicianError::Validation {
            field: field.to_string(),
            problem,
        })
    })
}

fn check_skills(skills: &[String], certs: &[Certification]) -> Result<(), TechnicianError> {
    if skills.len() > 100 || certs.len() > 100 {
        return Err(TechnicianError::Validation {
            field: "skills".into(),
            problem: "at most 100 entries",
        });
    }
    for (i, s) in skills.iter().enumerate() {
        check(&format!("skills[{i}]"), s, 100)?;
    }
    for (i, c) in certs.iter().enumerate() {
        check(&format!("certifications[{i}].name"), &c.name, 100)?;
    }
    Ok(())
}

impl Technician {
    /// Decides a command. Pure.
    pub fn decide(
        &self,
        cmd: &Issued<TechnicianCommand>,
    ) -> Result<Vec<TechnicianEvent>, TechnicianError> {
        let supervisor = cmd.by.role.is_supervisor();
        match &cmd.command {
            TechnicianCommand::RegisterTechnician(c) => {
                if !supervisor {
                    return Err(TechnicianError::Forbidden);
                }
                if self.data.is_some() {
                    return Err(TechnicianError::AlreadyRegistered);
                }
                let id = c.technician_id.clone().unwrap_or_default();
                check("technician_id", &id, 200)?;
                check("name", &c.name, 200)?;
                check("territory", &c.territory, 200)?;
                check_skills(&c.skills, &c.certifications)?;
                if !(0..=1_000_000).contains(&c.labor_rate_cents) {
                    return Err(TechnicianError::Validation {
                        field: "labor_rate_cents".into(),
                        problem: "must be 0..1000000",
                    });
                }
                Ok(vec![TechnicianEvent::TechnicianRegistered {
                    technician_id: id,
                    name: c.name.clone(),
                    skills: c.skills.clone(),
                    certifications: c.certifications.clone(),
                    territory: c.territory.clone(),
                    shift: c.shift,
                    labor_rate_cents: c.labor_rate_cents,
                }])
            }
            TechnicianCommand::UpdateSkills(c) => {
                let data = self.data.as_ref().ok_or(TechnicianError::NotFound)?;
                let _ = data;
                if !supervisor {
                    return Err(TechnicianError::Forbidden);
                }
                check_skills(&c.skills, &c.certifications)?;
                Ok(vec![TechnicianEvent::SkillsUpdated {
                    skills: c.skills.clone(),
                    certifications: c.certifications.clone(),
                }])
            }
            TechnicianCommand::SetShift(c) => {
                let data = self.data.as_ref().ok_or(TechnicianError::NotFound)?;
                let own = cmd.by.role == Role::Technician
                    && cmd.by.technician_id.as_deref() == Some(data.technician_id.as_str());
                if !supervisor && !own {
                    return Err(TechnicianError::Forbidden);
                }
                Ok(vec![TechnicianEvent::ShiftSet { shift: c.shift }])
            }
        }
    }
}

impl Aggregate for Technician {
    const TYPE: &'static str = "technician";
    type Command = Issued<TechnicianCommand>;
    type Event = TechnicianEvent;
    type Error = TechnicianError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TechnicianError> {
        for event in self.decide(&command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TechnicianEvent) {
        self.version += 1;
        match event {
            TechnicianEvent::TechnicianRegistered {
                technician_id,
                name,
                skills,
                certifications,
                territory,
                shift,
                labor_rate_cents,
            } => {
                self.data = Some(TechnicianData {
                    technician_id,
                    name,
                    skills,
                    certifications,
                    territory,
                    shift,
                    labor_rate_cents,
                });
            }
            TechnicianEvent::SkillsUpdated {
                skills,
                certifications,
            } => {
                if let Some(d) = &mut self.data {
                    d.skills = skills;
                    d.certifications = certifications;
                }
            }
            TechnicianEvent::ShiftSet { shift } => {
                if let Some(d) = &mut self.data {
                    d.shift = shift;
                }
            }
        }
    }
}
