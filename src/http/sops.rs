//! `/v1/sops`: the SOP library as clients read it.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::app::Caller;
use crate::domain::sop::IncidentSop;
use crate::error::Result;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sops", get(list))
        .route("/v1/sops/{incident_type}", get(one))
}

/// The contract's shape of one incident type's SOPs.
pub fn sop_json(s: &IncidentSop) -> Value {
    json!({
        "id": s.intake.id,
        "version": s.intake.version,
        "sha256": s.combined_sha256(),
        "incident_type": s.incident_type,
        "title": s.intake.title,
        "required_skills": s.intake.required_skills,
        "required_certifications": s.intake.required_certifications,
        "documents": {"intake": s.intake_ref, "field": s.field_ref, "closeout": s.closeout_ref},
        "intake": {
            "script": s.intake.script,
            "required_fields": s.intake.fields.iter().filter(|f| f.required).collect::<Vec<_>>(),
            "optional_fields": s.intake.fields.iter().filter(|f| !f.required).collect::<Vec<_>>(),
            "default_priority": s.intake.default_priority,
            "p1_when": s.intake.p1_when,
        },
        "field": {
            "safety": s.field.safety,
            "checklist": s.field.checklist,
            "evidence_required": s.field.evidence_required,
            "evidence_allowed": s.field.evidence_allowed,
            "make_safe_when": s.field.make_safe_when,
        },
        "closeout": {
            "items": s.closeout.items,
            "customer_signoff_required": s.closeout.customer_signoff_required,
            "billing": s.closeout.billing,
            "trip_charge_cents": s.closeout.trip_charge_cents,
            "labor_increment_minutes": s.closeout.labor_increment_minutes,
        },
    })
}

async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>> {
    let sops: Vec<Value> = state
        .app
        .sops
        .all()
        .map(|s| json!({"incident_type": s.incident_type, "id": s.intake.id, "version": s.intake.version, "sha256": s.combined_sha256(), "title": s.intake.title, "default_priority": s.intake.default_priority}))
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
