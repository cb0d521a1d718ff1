//! The typed shape of SOP files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::job::EvidenceKind;
use crate::domain::policy::Priority;

/// The fields `open_job` itself carries, which an intake script may ask for.
pub const OPEN_JOB_FIELDS: [&str; 11] = [
    "client_id",
    "site.id",
    "site.name",
    "site.address",
    "contact.name",
    "contact.phone",
    "door.id",
    "door.location",
    "description",
    "ifm.work_order_number",
    "ifm.nte_cents",
];

/// Which of the three SOP documents guarded an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SopStage {
    /// `sops/intake/`.
    Intake,
    /// `sops/field/`.
    Field,
    /// `sops/closeout/`.
    Closeout,
}

/// The reference recorded on every event a SOP guarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SopRef {
    /// The SOP's id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// A script step: what the agent asks, and the field the answer fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    /// The question.
    pub ask: String,
    /// The intake or open_job field it fills.
    pub field: String,
}

/// The type of an intake field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text (bounded).
    String,
    /// true / false.
    Boolean,
    /// A whole number.
    Integer,
    /// One of a fixed list of strings.
    Enum,
}

impl FieldType {
    /// The name the SOP files use (`string`, `boolean`, `integer`, `enum`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
            FieldType::Integer => "integer",
            FieldType::Enum => "enum",
        }
    }
}

fn default_true() -> bool {
    true
}

/// One intake field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Field name (snake_case).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Allowed values for enums.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Whether triage needs it.
    #[serde(default = "default_true")]
    pub required: bool,
    /// What it means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Longest string accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Smallest integer accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Largest integer accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// Free text in any field is bounded at 4 KiB.
pub const MAX_TEXT_BYTES: usize = 4096;

impl FieldSpec {
    /// Checks a value against the field's type and bounds; `Err` says why not.
    pub fn check(&self, value: &Value) -> Result<(), &'static str> {
        match self.kind {
            FieldType::String => {
                let s = value.as_str().ok_or("expected a string")?;
                let limit = self
                    .max_length
                    .unwrap_or(MAX_TEXT_BYTES)
                    .min(MAX_TEXT_BYTES);
                if s.len() > limit {
                    return Err("string too long");
                }
                if s.trim().is_empty() {
                    return Err("must not be blank");
                }
                if s.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
                {
                    return Err("control characters are not allowed");
                }
                Ok(())
            }
            FieldType::Boolean => value.as_bool().map(|_| ()).ok_or("expected a boolean"),
            FieldType::Integer => {
                let n = value.as_i64().ok_or("expected an integer")?;
                if self.min.is_some_and(|m| n < m) || self.max.is_some_and(|m| n > m) {
                    return Err("integer out of range");
                }
                Ok(())
            }
            FieldType::Enum => {
                let s = value.as_str().ok_or("expected one of the enum values")?;
                let ok = self
                    .values
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|x| x == s));
                if ok {
                    Ok(())
                } else {
                    Err("not one of the enum values")
                }
            }
        }
    }
}

/// A rule: matches when every named field has the given value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A short machine name for why the rule fires.
    pub reason: String,
    /// Field name → value that must match.
    pub when: BTreeMap<String, Value>,
}

impl Condition {
    /// Whether the recorded intake satisfies this rule.
    pub fn matches(&self, intake: &BTreeMap<String, Value>) -> bool {
        self.when.iter().all(|(k, v)| intake.get(k) == Some(v))
    }
}

/// `sops/intake/<type>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSop {
    /// SOP id.
    pub id: String,
    /// SOP version.
    pub version: String,
    /// The incident type (equals the file name).
    pub incident_type: String,
    /// Human title.
    pub title: String,
    /// Priority when no P1 rule matches.
    pub default_priority: Priority,
    /// Skills a technician needs.
    #[serde(default)]
    pub required_skills: Vec<String>,
    /// Unexpired certifications a technician needs.
    #[serde(default)]
    pub required_certifications: Vec<String>,
    /// The questions, in order.
    pub script: Vec<ScriptStep>,
    /// The intake fields.
    pub fields: Vec<FieldSpec>,
    /// What raises the job to P1.
    #[serde(default)]
    pub p1_when: Vec<Condition>,
}

impl IntakeSop {
    /// The spec of a field, if the SOP defines it.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A field checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// Item id (snake_case).
    pub id: String,
    /// What the technician checks.
    pub text: String,
    /// Whether check-out `completed` needs it.
    #[serde(default = "default_true")]
    pub required: bool,
}

/// `sops/field/<type>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSop {
    /// SOP id.
    pub id: String,
    /// SOP version.
    pub version: String,
    /// The incident type.
    pub incident_type: String,
    /// Safety steps (lockout/tagout, make-safe).
    #[serde(default)]
    pub safety: Vec<String>,
    /// Evidence kinds required at check-out `completed`.
    pub evidence_required: Vec<EvidenceKind>,
    /// Evidence kinds that may be attached.
    pub evidence_allowed: Vec<EvidenceKind>,
    /// When triage requires a make-safe.
    #[serde(default)]
    pub make_safe_when: Vec<Condition>,
    /// The field checklist.
    pub checklist: Vec<ChecklistItem>,
}

/// A closeout verification item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseoutItem {
    /// Item id.
    pub id: String,
    /// What is verified.
    pub text: String,
}

/// `sops/closeout/<type>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseoutSop {
    /// SOP id.
    pub id: String,
    /// SOP version.
    pub version: String,
    /// The incident type.
    pub incident_type: String,
    /// Whether signature evidence is needed to verify closeout.
    pub customer_signoff_required: bool,
    /// Billing requirements, for people.
    #[serde(default)]
    pub billing: Vec<String>,
    /// Trip charge per visit that travelled.
    pub trip_charge_cents: i64,
    /// Labor is rounded up to this many minutes per visit.
    pub labor_increment_minutes: i64,
    /// Verification items.
    pub items: Vec<CloseoutItem>,
}

/// The three SOP documents of one incident type, with their references.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSop {
    /// The incident type.
    pub incident_type: String,
    /// Intake SOP.
    pub intake: IntakeSop,
    /// Field SOP.
    pub field: FieldSop,
    /// Closeout SOP.
    pub closeout: CloseoutSop,
    /// `{id, version, sha256}` of the intake file.
    pub intake_ref: SopRef,
    /// Of the field file.
    pub field_ref: SopRef,
    /// Of the closeout file.
    pub closeout_ref: SopRef,
}

impl IncidentSop {
    /// The reference of one stage's document.
    pub fn reference(&self, stage: SopStage) -> &SopRef {
        match stage {
            SopStage::Intake => &self.intake_ref,
            SopStage::Field => &self.field_ref,
            SopStage::Closeout => &self.closeout_ref,
        }
    }

    /// A stable digest of the three references: what `GET /v1/sops/{type}` calls `sha256`.
    pub fn combined_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for r in [&self.intake_ref, &self.field_ref, &self.closeout_ref] {
            h.update(r.sha256.as_bytes());
        }
        hex::encode(h.finalize())
    }
}
