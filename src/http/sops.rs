//! `/v1/sops`: the SOP library as clients read it.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Value};

use super::AppState;
use crate::app::Caller;
use crate::domain::job::EvidenceKind;
use crate::domain::policy::Priority;
use crate::domain::sop::{
    ChecklistItem, CloseoutItem, Condition, FieldSpec, IncidentSop, ScriptStep, SopRef,
};
use crate::error::Result;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sops", get(list))
        .route("/v1/sops/{incident_type}", get(one))
}

/// One incident type's SOPs as clients read them (`GET /v1/sops/{incident_type}`,
/// `get_sop`); the OpenAPI document's `Sop` is this type's schema.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SopView<'a> {
    /// The intake SOP's id.
    pub id: &'a str,
    /// The intake SOP's version.
    pub version: &'a str,
    /// SHA-256 over the three documents' hashes.
    pub sha256: String,
    /// The incident type.
    pub incident_type: &'a str,
    /// For people.
    pub title: &'a str,
    /// Skills a technician needs.
    pub required_skills: &'a [String],
    /// Unexpired certifications a technician needs.
    pub required_certifications: &'a [String],
    /// The three documents' references, as events record them.
    pub documents: SopDocuments<'a>,
    /// What the agent asks at intake.
    pub intake: SopIntake<'a>,
    /// What the technician does on site.
    pub field: SopField<'a>,
    /// What closeout verifies and bills.
    pub closeout: SopCloseout<'a>,
}

/// The three documents of an incident type.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SopDocuments<'a> {
    /// `sops/intake/`.
    pub intake: &'a SopRef,
    /// `sops/field/`.
    pub field: &'a SopRef,
    /// `sops/closeout/`.
    pub closeout: &'a SopRef,
}

/// The intake script and fields.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SopIntake<'a> {
    /// The questions, in order.
    pub script: &'a [ScriptStep],
    /// The fields triage needs.
    pub required_fields: Vec<&'a FieldSpec>,
    /// The other fields.
    pub optional_fields: Vec<&'a FieldSpec>,
    /// Priority when no P1 rule matches.
    pub default_priority: Priority,
    /// What raises the job to P1.
    pub p1_when: &'a [Condition],
}

/// The field checklist and evidence.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SopField<'a> {
    /// Safety steps.
    pub safety: &'a [String],
    /// The checklist.
    pub checklist: &'a [ChecklistItem],
    /// Evidence kinds a completed check-out needs.
    pub evidence_required: &'a [EvidenceKind],
    /// Evidence kinds that may be attached.
    pub evidence_allowed: &'a [EvidenceKind],
    /// When triage requires a make-safe.
    pub make_safe_when: &'a [Condition],
}

/// The closeout items and billing terms.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SopCloseout<'a> {
    /// Verification items.
    pub items: &'a [CloseoutItem],
    /// Whether signature evidence is needed.
    pub customer_signoff_required: bool,
    /// Billing requirements, for people.
    pub billing: &'a [String],
    /// Trip charge per visit that travelled, cents.
    pub trip_charge_cents: i64,
    /// Labor is rounded up to this many minutes per visit.
    pub labor_increment_minutes: i64,
}

/// One incident type in the library's list (`GET /v1/sops`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct SopSummary<'a> {
    /// The incident type.
    pub incident_type: &'a str,
    /// The intake SOP's id.
    pub id: &'a str,
    /// The intake SOP's version.
    pub version: &'a str,
    /// SHA-256 over the three documents' hashes.
    pub sha256: String,
    /// For people.
    pub title: &'a str,
    /// Priority when no P1 rule matches.
    pub default_priority: Priority,
}

/// The contract's shape of one incident type's SOPs.
pub fn sop_view(s: &IncidentSop) -> SopView<'_> {
    SopView {
        id: &s.intake.id,
        version: &s.intake.version,
        sha256: s.combined_sha256(),
        incident_type: &s.incident_type,
        title: &s.intake.title,
        required_skills: &s.intake.required_skills,
        required_certifications: &s.intake.required_certifications,
        documents: SopDocuments {
            intake: &s.intake_ref,
            field: &s.field_ref,
            closeout: &s.closeout_ref,
        },
        intake: SopIntake {
            script: &s.intake.script,
            required_fields: s.intake.fields.iter().filter(|f| f.required).collect(),
            optional_fields: s.intake.fields.iter().filter(|f| !f.required).collect(),
            default_priority: s.intake.default_priority,
            p1_when: &s.intake.p1_when,
        },
        field: SopField {
            safety: &s.field.safety,
            checklist: &s.field.checklist,
            evidence_required: &s.field.evidence_required,
            evidence_allowed: &s.field.evidence_allowed,
            make_safe_when: &s.field.make_safe_when,
        },
        closeout: SopCloseout {
            items: &s.closeout.items,
            customer_signoff_required: s.closeout.customer_signoff_required,
            billing: &s.closeout.billing,
            trip_charge_cents: s.closeout.trip_charge_cents,
            labor_increment_minutes: s.closeout.labor_increment_minutes,
        },
    }
}

/// [`sop_view`] as JSON.
pub fn sop_json(s: &IncidentSop) -> Value {
    serde_json::to_value(sop_view(s)).unwrap_or_default()
}

async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>> {
    let sops: Vec<SopSummary> = state
        .app
        .sops
        .all()
        .map(|s| SopSummary {
            incident_type: &s.incident_type,
            id: &s.intake.id,
            version: &s.intake.version,
            sha256: s.combined_sha256(),
            title: &s.intake.title,
            default_priority: s.intake.default_priority,
        })
        .collect();
    Ok(Json(json!({ "sops": sops })))
}

async fn one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(incident_type): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(sop_json(
        state.app.sop_for(&incident_type, "incident_type")?,
    )))
}
