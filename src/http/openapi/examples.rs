//! The document's example bodies: one a client would send for each job or
//! technician command.

use serde_json::{json, Value};

/// A body a client would send for a job or technician command (by wire
/// name; `register_technician` is `POST /v1/technicians`). The document
/// shows it, and the hostile-input run sends it (schemathesis's examples
/// phase) against a job offered to `tech-a`. Each decodes as its command
/// (`tests/api/openapi.rs`).
pub fn command_example(name: &str) -> Option<Value> {
    let id = "0b5e0c7e-3f7e-5d7a-9a52-3b0c0a9f1e21";
    Some(match name {
        "open_job" => json!({
            "incident_type": "door_stuck_open", "channel": "ifm", "client_id": "retail-co",
            "site": {"id": "site-12", "name": "Retail Store 12", "address": "12 Market St"},
            "contact": {"name": "Sam Store", "phone": "+1-555-0100"},
            "door": {"id": "entrance-1", "location": "Main entrance"},
            "description": "Automatic sliding door stuck open after hours",
            "ifm": {"work_order_number": "WO-778812", "nte_cents": 50000}
        }),
        "record_intake" => json!({"fields": {
            "access_hours": "24/7 via security desk", "anyone_hurt_or_trapped": false,
            "opening_can_be_secured": false, "after_hours": true,
            "operator_make_model": "Stanley Dura-Glide", "stuck_position": "fully_open",
            "mode_switch_position": "automatic", "power_cycled": true, "obstruction_visible": false
        }}),
        "triage_job" => json!({"priority": "P1"}),
        "set_priority" => json!({"priority": "P2", "reason": "the store manager called back"}),
        "resolve_duplicate" => json!({"resolution": "link", "duplicate_of": id}),
        "offer_job" => json!({"technician_id": "tech-a"}),
        "accept_offer" => json!({"eta": "2099-11-21T01:30:00Z"}),
        "decline_offer" => json!({"reason": "on another call across town"}),
        "check_in" => json!({"method": "app", "lat": 40.7128, "lon": -74.006}),
        "complete_checklist_item" => {
            json!({"item_id": "sensor_test", "result": "pass", "note": "both sensors respond"})
        }
        "attach_evidence" => {
            json!({"kind": "photo_before", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "note": "door as found"})
        }
        "check_out" => json!({
            "outcome": "completed", "door_left_state": "operational", "make_safe_confirmed": true,
            "resolution": "Replaced the drive belt; tested ten cycles",
            "parts": [{"part_number": "BLT-220", "description": "Drive belt", "quantity": 1, "unit_price_cents": 4500}]
        }),
        "schedule_return_visit" => json!({"reason": "waiting for a replacement sensor"}),
        "verify_closeout" => json!({"items": [{"id": "door_operational", "result": "pass"}]}),
        "reopen_unsatisfactory" => json!({"reason": "the door sticks again"}),
        "close_job" => json!({"invoice_number": "INV-2026-0042"}),
        "cancel_job" => json!({"reason": "the customer fixed it"}),
        "add_note" => json!({"text": "Customer asks to call before arrival"}),
        "request_nte_increase" => {
            json!({"amount_cents": 65000, "reason": "a second sensor is needed"})
        }
        "decide_approval" => {
            json!({"approval_id": id, "decision": "approve", "reason": "within budget"})
        }
        "flag_sla_breach" => json!({"kind": "response"}),
        "start_travel" | "expire_offer" | "mark_billing_ready" => json!({}),
        "register_technician" => json!({
            "technician_id": "tech-e", "name": "Technician E", "skills": ["automatic_doors"],
            "certifications": [{"name": "AAADM", "expires_on": "2099-06-30"}],
            "territory": "north", "shift": "available", "labor_rate_cents": 9000
        }),
        "update_skills" => json!({
            "skills": ["automatic_doors", "swing_doors"],
            "certifications": [{"name": "AAADM", "expires_on": "2099-06-30"}]
        }),
        "set_shift" => json!({"shift": "on_call"}),
        _ => return None,
    })
}

/// A body a client would send for a registry command (by wire name); each
/// decodes as its command (`tests/api/openapi.rs`).
pub fn registry_example(name: &str) -> Option<Value> {
    Some(match name {
        "register_customer" => json!({
            "customer_id": "st-marys", "name": "St. Mary's Health", "billing": "ifm",
            "ifm_account": "IFM-20931",
            "contacts": [{"name": "Dana Facilities", "role": "facilities manager", "phone": "+1-555-0142"}]
        }),
        "update_customer" => {
            json!({"contacts": [{"name": "Lee Ops", "email": "ops@stmarys.example"}]})
        }
        "register_site" => json!({
            "site_id": "st-marys-east", "customer_id": "st-marys",
            "name": "St. Mary's Hospital — East Wing", "address": "1200 E Main St, Springfield",
            "latitude": 39.7817, "longitude": -89.6501, "time_zone": "America/Chicago",
            "access_notes": "Badge desk at the loading dock", "reference": "SMH-E"
        }),
        "update_site" => json!({"access_notes": "Security desk, lobby B, after 8 pm"}),
        "register_door" => json!({
            "door_id": "smh-e-fd-2b", "site_id": "st-marys-east", "kind": "swinging_fire",
            "location": "East corridor, 2nd floor, stair B", "manufacturer": "Ceco",
            "model": "Regent", "serial": "CE-448120", "installed_on": "2019-04-02",
            "fire_rating": "90 min", "tag": "FD-2B"
        }),
        "update_door" => json!({"serial": "CE-448121", "model": "Regent II"}),
        "move_door" => json!({"site_id": "st-marys-west", "location": "West lobby"}),
        "record_door_label" => {
            json!({"fire_rating": "90 min", "legible": true, "note": "label painted over at one corner"})
        }
        "set_door_status" => {
            json!({"status": "impaired", "reason": "does not latch", "job_id": "0b5e0c7e-3f7e-5d7a-9a52-3b0c0a9f1e21"})
        }
        "create_plan" => json!({
            "plan_id": "smh-fire-doors", "customer_id": "st-marys",
            "name": "Annual NFPA 80 inspection", "door_ids": ["smh-e-fd-2b"],
            "incident_type": "fire_door_inspection", "every_months": 12,
            "starts_on": "2027-03-01", "lead_days": 30, "priority": "P4"
        }),
        "skip_occurrence" => {
            json!({"door_id": "smh-e-fd-2b", "due_on": "2027-03-01", "reason": "wing closed for renovation"})
        }
        "move_occurrence" => {
            json!({"door_id": "smh-e-fd-2b", "due_on": "2027-03-01", "to": "2027-03-15", "reason": "the site asked for a later date"})
        }
        "retire_customer" | "retire_site" | "retire_door" | "retire_plan" => {
            json!({"reason": "no longer served"})
        }
        _ => return None,
    })
}
