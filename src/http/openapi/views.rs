//! The answers' schemas that come from the types the service serializes
//! (schemars, for serialization): the job (`JobView`: the job's state as
//! its events left it, with its version, currency, invoice and what the
//! service adds now), the SOPs (`Sop`, `SopSummary`), the invoice line.
//! They are merged beside the request bodies' schemas (`hoist::merge`): a
//! type whose serialized form differs from what a request accepts (a
//! `Site` as stored, say, against the stricter `Site` of `open_job`) gets
//! a schema of its own, suffixed `View`.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use super::hoist;
use crate::app::evidence::EvidenceInfo;
use crate::domain::job::{InvoiceLine, JobData};
use crate::http::sops::{SopSummary, SopView};

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Adds `JobView`, `JobInvoice`, `InvoiceLine`, `Sop`, `SopSummary`,
/// `EvidenceInfo` and the types they are made of to `schemas`.
pub(super) fn schemas(schemas: &mut Map<String, Value>) {
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    generator.subschema_for::<JobData>();
    generator.subschema_for::<SopView<'static>>();
    let mut invoice_line = Value::from(generator.subschema_for::<InvoiceLine>());
    // Referred to by name from the paths: they must keep it.
    let by_name = [
        generator.subschema_for::<SopSummary<'static>>(),
        generator.subschema_for::<EvidenceInfo>(),
    ];
    let mut defs = generator.take_definitions(true);
    // The view's invoice is `JobInvoice` (below), not the state's.
    defs.remove("Invoice");
    let job = defs.remove(&JobData::schema_name().to_string());
    let sop = defs.remove(&SopView::schema_name().to_string());
    let mut job = job_view(job.expect("JobData's schema"));
    let mut sop = sop.expect("SopView's schema");
    let renamed = hoist::merge(
        schemas,
        defs,
        "View",
        &mut [&mut invoice_line, &mut job, &mut sop],
    );
    for schema in by_name {
        let name = schema.get("$ref").and_then(Value::as_str).unwrap_or("");
        let name = name.trim_start_matches("#/components/schemas/");
        assert!(!renamed.contains_key(name), "{name} is named otherwise");
    }
    schemas.insert("JobView".into(), job);
    schemas.insert("Sop".into(), sop);
    schemas.insert(
        "JobInvoice".into(),
        json!({"type": "object", "required": ["lines", "total_cents", "final"],
            "description": "The job's invoice: fixed at billing readiness (`final`), otherwise what its visits add up to now",
            "properties": {
                "lines": {"type": "array", "items": invoice_line},
                "total_cents": {"type": "integer"},
                "final": {"type": "boolean", "description": "fixed at billing readiness"}}}),
    );
}

/// The job's state (`JobData`, as serialized) with what the view adds:
/// its version and currency, its invoice, and (not part of the job's
/// state: replays leave them out) the phone's last contact and the
/// registered door as the registry knows it now.
fn job_view(mut job: Value) -> Value {
    job["description"] = json!("The job now, from its event stream");
    let properties = job["properties"]
        .as_object_mut()
        .expect("JobData has properties");
    properties.insert(
        "version".into(),
        json!({"type": "integer", "minimum": 0, "description": "the job's version: its events' count"}),
    );
    properties.insert(
        "currency".into(),
        json!({"type": "string", "description": "ISO 4217 code of every amount"}),
    );
    properties.insert("invoice".into(), reference("JobInvoice"));
    properties.insert(
        "phone".into(),
        json!({"description": "Present once a technician's phone has reached the service about this job: its last contact and the actions it said it still holds (not part of the job's state: replays leave it out)", "type": "object", "required": ["technician_id", "last_contact_at", "pending", "oldest_pending_at"], "properties": {
            "technician_id": {"type": "string"}, "last_contact_at": {"type": "string", "format": "date-time"}, "pending": {"type": "integer", "minimum": 0}, "oldest_pending_at": {"type": ["string", "null"], "format": "date-time"}}}),
    );
    properties.insert(
        "registered_door".into(),
        json!({"type": ["object", "null"], "description": "For a job at a registered door: the door as the registry knows it now (see RegistryEntry; null if it is gone). Not part of the job's state: replays leave it out."}),
    );
    let required = job["required"]
        .as_array_mut()
        .expect("JobData has required properties");
    for name in ["version", "currency", "invoice"] {
        if !required.iter().any(|r| r == name) {
            required.push(json!(name));
        }
    }
    job
}
