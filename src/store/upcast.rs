//! Upcasters: turn a stored event of an older `event_version` into the
//! current shape before it is decoded. Stored rows are never rewritten.
//!
//! Changing an event's shape means a new version and an entry here, with a
//! test that loads a row stored at the old version.

use serde_json::Value;

/// One upcaster: from `(event_type, event_version)` to the next version.
struct Upcaster {
    event_type: &'static str,
    from_version: &'static str,
    to_version: &'static str,
    apply: fn(Value) -> Value,
}

/// `NoteAdded` 0.9 (the first prototype) called the text `note`; 1.0 calls it `text`.
fn note_added_0_9(mut payload: Value) -> Value {
    if let Some(obj) = payload.as_object_mut() {
        if let Some(note) = obj.remove("note") {
            obj.insert("text".into(), note);
        }
    }
    payload
}

/// `CheckedIn` 0.9 carried `coordinates: {lat, lon}`; 1.0 has `lat` and `lon`.
fn checked_in_0_9(mut payload: Value) -> Value {
    if let Some(obj) = payload.as_object_mut() {
        if let Some(Value::Object(c)) = obj.remove("coordinates") {
            obj.insert("lat".into(), c.get("lat").cloned().unwrap_or(Value::Null));
            obj.insert("lon".into(), c.get("lon").cloned().unwrap_or(Value::Null));
        }
    }
    payload
}

const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "NoteAdded",
        from_version: "0.9",
        to_version: "1.0",
        apply: note_added_0_9,
    },
    Upcaster {
        event_type: "CheckedIn",
        from_version: "0.9",
        to_version: "1.0",
        apply: checked_in_0_9,
    },
];

/// Whether a stored `(event_type, event_version)` has an upcaster.
pub fn applies(event_type: &str, event_version: &str) -> bool {
    UPCASTERS
        .iter()
        .any(|u| u.event_type == event_type && u.from_version == event_version)
}

/// Runs every applicable upcaster in turn; returns the event type and the current payload.
pub fn upcast(event_type: &str, event_version: &str, mut payload: Value) -> (String, Value) {
    let mut version = event_version.to_string();
    while let Some(u) = UPCASTERS
        .iter()
        .find(|u| u.event_type == event_type && u.from_version == version)
    {
        payload = (u.apply)(payload);
        version = u.to_version.to_string();
    }
    (event_type.to_string(), payload)
}

/// Decodes a stored payload into a domain event (externally tagged by its
/// type), through the upcasters.
pub fn decode<E: serde::de::DeserializeOwned>(
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<E, serde_json::Error> {
    let (event_type, payload) = upcast(event_type, event_version, payload);
    let mut tagged = serde_json::Map::new();
    tagged.insert(event_type, payload);
    serde_json::from_value(Value::Object(tagged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn note_added_0_9_is_renamed() {
        let (_, p) = upcast("NoteAdded", "0.9", json!({"note": "hi"}));
        assert_eq!(p, json!({"text": "hi"}));
    }

    #[test]
    fn current_versions_pass_through() {
        let (_, p) = upcast("NoteAdded", "1.0", json!({"text": "hi"}));
        assert_eq!(p, json!({"text": "hi"}));
    }
}
