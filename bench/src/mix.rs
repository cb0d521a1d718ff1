//! The command mix: a whole job lifecycle as the real API sees it (the same
//! bodies as tests/api/flow.rs), shared by the HTTP driver and the stock
//! cqrs-es driver so that both run exactly the same commands.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use dispatch_api::domain::sop::SopLibrary;

/// The incident type every benchmark job uses.
pub const INCIDENT: &str = "door_stuck_open";

/// Who sends a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The client's agent key.
    Agent,
    /// The client's technician key.
    Tech,
    /// The client's dispatcher key.
    Desk,
}

/// One command of the mix.
#[derive(Debug, Clone)]
pub struct Step {
    /// Wire name (`open_job` posts to `/v1/jobs`).
    pub command: &'static str,
    /// Who sends it.
    pub who: Who,
    /// The body.
    pub body: Value,
}

/// What the lifecycle needs from the SOP library.
#[derive(Debug, Clone)]
pub struct MixSpec {
    /// Checklist items to complete.
    pub checklist: Vec<String>,
    /// Evidence kinds to attach.
    pub evidence: Vec<String>,
    /// Closeout items to verify.
    pub closeout: Vec<String>,
}

impl MixSpec {
    /// From the SOP of [`INCIDENT`].
    pub fn from_library(sops: &SopLibrary) -> anyhow::Result<MixSpec> {
        let sop = sops
            .get(INCIDENT)
            .ok_or_else(|| anyhow::anyhow!("the SOP library has no `{INCIDENT}`"))?;
        Ok(MixSpec {
            checklist: sop.field.checklist.iter().map(|i| i.id.clone()).collect(),
            evidence: sop
                .field
                .evidence_required
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            closeout: sop.closeout.items.iter().map(|i| i.id.clone()).collect(),
        })
    }

    /// Commands per job.
    pub fn steps_per_job(&self) -> usize {
        self.lifecycle("s", "t", &[], "i").len()
    }

    /// The whole lifecycle of one job at `site`, worked by technician `tech`.
    /// `evidence` maps each kind to an uploaded file's SHA-256.
    pub fn lifecycle(
        &self,
        site: &str,
        tech: &str,
        evidence: &[(String, String)],
        invoice: &str,
    ) -> Vec<Step> {
        let step = |command, who, body| Step { command, who, body };
        let mut s = vec![
            step("open_job", Who::Agent, open_body(site)),
            step("record_intake", Who::Agent, intake_body()),
            step("triage_job", Who::Agent, json!({})),
            step("offer_job", Who::Agent, json!({"technician_id": tech})),
            step(
                "accept_offer",
                Who::Tech,
                json!({"eta": (Utc::now() + Duration::hours(1)).to_rfc3339()}),
            ),
            step("start_travel", Who::Tech, json!({})),
            step(
                "check_in",
                Who::Tech,
                json!({"method": "app", "lat": 40.7, "lon": -74.0}),
            ),
        ];
        for item in &self.checklist {
            s.push(step(
                "complete_checklist_item",
                Who::Tech,
                json!({"item_id": item, "result": "pass"}),
            ));
        }
        for kind in &self.evidence {
            let sha = evidence
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| "0".repeat(64));
            s.push(step(
                "attach_evidence",
                Who::Tech,
                json!({"kind": kind, "sha256": sha}),
            ));
        }
        s.push(step(
            "check_out",
            Who::Tech,
            json!({"outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true,
                   "resolution": "Replaced failed motion sensor",
                   "parts": [{"part_number": "SNS-100", "description": "Motion sensor", "quantity": 1, "unit_price_cents": 3000}]}),
        ));
        s.push(step(
            "add_note",
            Who::Agent,
            json!({"text": "customer informed"}),
        ));
        let items: Vec<Value> = self
            .closeout
            .iter()
            .map(|i| json!({"id": i, "result": "pass"}))
            .collect();
        s.push(step("verify_closeout", Who::Agent, json!({"items": items})));
        s.push(step("mark_billing_ready", Who::Agent, json!({})));
        s.push(step(
            "close_job",
            Who::Desk,
            json!({"invoice_number": invoice}),
        ));
        s
    }
}

/// The `open_job` body (an IFM automatic door stuck open, NTE $500).
pub fn open_body(site: &str) -> Value {
    json!({
        "incident_type": INCIDENT,
        "channel": "ifm",
        "client_id": "retail-co",
        "site": {"id": site, "name": "Retail Store 12", "address": "12 Market St"},
        "contact": {"name": "Sam Store", "phone": "+1-555-0100"},
        "door": {"id": "entrance-1", "location": "Main entrance"},
        "description": "Automatic sliding door stuck open after hours",
        "ifm": {"work_order_number": "WO-778812", "nte_cents": 50000}
    })
}

/// Intake fields that complete the job (P1: after hours, not securable).
pub fn intake_body() -> Value {
    json!({"fields": {
        "access_hours": "24/7 via security desk",
        "anyone_hurt_or_trapped": false,
        "opening_can_be_secured": false,
        "after_hours": true,
        "operator_make_model": "Stanley Dura-Glide",
        "stuck_position": "fully_open",
        "mode_switch_position": "automatic",
        "power_cycled": true,
        "obstruction_visible": false
    }})
}

/// A technician's registration body.
pub fn technician_body(id: &str) -> Value {
    json!({"technician_id": id, "name": format!("Technician {id}"), "skills": ["automatic_doors"],
           "certifications": [{"name": "AAADM", "expires_on": "2030-06-30"}],
           "territory": "north", "shift": "available", "labor_rate_cents": 9000})
}
