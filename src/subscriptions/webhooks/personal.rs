//! Personal data in a CloudEvent's `data`, and its removal for endpoints
//! registered without `include_personal_data`.
//!
//! The rule, once: [`PERSONAL_FIELDS`] lists each field of an event's
//! payload that names or reaches a person — the job's onsite contact, the
//! registry's customer and site contacts, a technician's name — as an event
//! filter (the syntax of a webhook's `event_types`) and a path in `data`
//! (`[]` steps into every element of an array). [`remove_personal_data`]
//! deletes those fields (the key is absent, not blanked); everything else
//! is sent as stored. Free text (a job's description, notes, a reason) is
//! not searched for personal data: it is sent as it is.
//!
//! With a field removed, the CloudEvent's `chainhash` no longer matches its
//! `data.payload`: an auditor verifies the chain from the store, not from
//! redacted deliveries.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::domain::event_types::selects_one;
use crate::store::StoredEvent;

/// Each personal field: the events it is in (a filter entry) and its path
/// in the CloudEvent's `data`.
pub const PERSONAL_FIELDS: &[(&str, &str)] = &[
    // The job's onsite contact (`open_job`'s `contact`).
    ("job.JobOpened", "payload.contact.name"),
    ("job.JobOpened", "payload.contact.phone"),
    // The registry's contacts (customers' and sites' `contacts`; `role` stays).
    ("customer.*", "payload.details.contacts[].name"),
    ("customer.*", "payload.details.contacts[].phone"),
    ("customer.*", "payload.details.contacts[].email"),
    ("site.*", "payload.details.contacts[].name"),
    ("site.*", "payload.details.contacts[].phone"),
    ("site.*", "payload.details.contacts[].email"),
    // A technician's name (the technician id stays).
    ("technician.TechnicianRegistered", "payload.name"),
];

/// Removes every [`PERSONAL_FIELDS`] field of an event of
/// `aggregate_type`/`event_type` from its CloudEvent `data`.
pub fn remove_personal_data(aggregate_type: &str, event_type: &str, data: &mut Value) {
    for (events, path) in PERSONAL_FIELDS {
        if selects_one(events, aggregate_type, event_type) {
            let steps: Vec<&str> = path.split('.').collect();
            remove_path(data, &steps);
        }
    }
}

/// The payload of `e` as an endpoint without personal data gets it: the
/// stored one when the event has no personal field (no copy), else a copy
/// with them removed.
pub fn without_personal_data(e: &StoredEvent) -> Cow<'_, Value> {
    let (a, t) = (e.aggregate_type.as_str(), e.event_type.as_str());
    if !PERSONAL_FIELDS.iter().any(|(f, _)| selects_one(f, a, t)) {
        return Cow::Borrowed(&e.payload);
    }
    let mut data = json!({ "payload": e.payload.clone() });
    remove_personal_data(a, t, &mut data);
    Cow::Owned(data["payload"].take())
}

/// Removes the field at `steps` under `value`; a step `name[]` goes into
/// every element of the array `name`.
fn remove_path(value: &mut Value, steps: &[&str]) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let Some(object) = value.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        object.remove(*first);
        return;
    }
    match first.strip_suffix("[]") {
        Some(name) => {
            if let Some(Value::Array(items)) = object.get_mut(name) {
                for item in items {
                    remove_path(item, rest);
                }
            }
        }
        None => {
            if let Some(inner) = object.get_mut(*first) {
                remove_path(inner, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contacts_names_phones_and_emails_are_removed() {
        let mut job = json!({"payload": {"job_id": "j", "contact": {"name": "Sam", "phone": "+1"}, "description": "stuck"}, "actor": {"id": "agent-1"}});
        remove_personal_data("job", "JobOpened", &mut job);
        assert_eq!(
            job,
            json!({"payload": {"job_id": "j", "contact": {}, "description": "stuck"}, "actor": {"id": "agent-1"}})
        );
        let mut site = json!({"payload": {"site_id": "s", "details": {"name": "Mercy East", "contacts": [
            {"name": "Pat", "role": "facilities", "phone": "+1", "email": "p@x"}, {"name": "Lee"}]}}});
        remove_personal_data("site", "SiteUpdated", &mut site);
        assert_eq!(
            site,
            json!({"payload": {"site_id": "s", "details": {"name": "Mercy East", "contacts": [{"role": "facilities"}, {}]}}})
        );
        let mut tech = json!({"payload": {"technician_id": "t", "name": "Ada"}});
        remove_personal_data("technician", "TechnicianRegistered", &mut tech);
        assert_eq!(tech, json!({"payload": {"technician_id": "t"}}));
    }

    #[test]
    fn other_events_and_missing_fields_are_left_as_they_are() {
        let note =
            json!({"payload": {"text": "call Sam", "name": "x", "contact": {"name": "kept"}}});
        let mut same = note.clone();
        remove_personal_data("job", "NoteAdded", &mut same);
        assert_eq!(same, note);
        let mut odd = json!({"payload": {"details": {"contacts": "not a list"}}});
        remove_personal_data("customer", "CustomerUpdated", &mut odd);
        assert_eq!(odd["payload"]["details"]["contacts"], "not a list");
    }
}
