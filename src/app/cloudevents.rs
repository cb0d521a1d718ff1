//! The one format events leave the service in: CloudEvents 1.0 in JSON
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md>),
//! documented by `schemas/cloudevent.schema.json`. It is the format the
//! outbound sinks of issue 20 (NATS JetStream, webhooks) are to send; each
//! event maps to exactly one CloudEvent, the same on every delivery, so a
//! consumer can deduplicate on `id`.
//!
//! - `id`: the event id; `source`: the service (configurable, a URI
//!   reference); `type`: `dev.dispatch.<aggregate type>.<event type>.v<major
//!   version>` (`dev.dispatch.job.JobOffered.v1`); `subject`: the aggregate
//!   id; `time`: when the command was decided.
//! - `data`: the event's payload, and who and why from its metadata (the
//!   actor, the command, the SOP, the correlation, causation and tool call
//!   ids). The caller's idempotency key stays inside.
//! - Extension attributes: `globalposition` (the store-wide order),
//!   `streamsequence` (the position in its stream) and `chainhash` (the
//!   event's hash in its stream's chain, which an auditor can verify).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::sop::SopRef;
use crate::domain::Actor;
use crate::store::StoredEvent;

/// The CloudEvents version of every event sent.
pub const SPEC_VERSION: &str = "1.0";

/// The `source` when none is configured.
pub const DEFAULT_SOURCE: &str = "urn:dispatch-api";

/// The CloudEvents `type` of an event: `dev.dispatch.job.JobOffered.v1` for
/// a `JobOffered` of version `1.0` on a job.
pub fn event_type(aggregate_type: &str, event_type: &str, event_version: &str) -> String {
    let major = event_version.split('.').next().unwrap_or(event_version);
    format!("dev.dispatch.{aggregate_type}.{event_type}.v{major}")
}

/// The CloudEvent of a stored event, as sent from `source`: serialized
/// straight from the stored event's fields (no intermediate JSON tree, no
/// copy of the payload), since every event is serialized once per sink.
#[derive(Serialize)]
pub struct CloudEvent<'a> {
    specversion: &'static str,
    id: Uuid,
    source: &'a str,
    #[serde(rename = "type")]
    kind: String,
    subject: &'a str,
    time: &'a DateTime<Utc>,
    datacontenttype: &'static str,
    globalposition: i64,
    streamsequence: i64,
    chainhash: &'a str,
    data: Data<'a>,
}

/// A CloudEvent's `data`: the payload and who and why.
#[derive(Serialize)]
struct Data<'a> {
    payload: Cow<'a, Value>,
    actor: &'a Actor,
    command: &'a Option<String>,
    sop: &'a Option<SopRef>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    tool_invocation_id: Option<Uuid>,
}

impl<'a> CloudEvent<'a> {
    /// The CloudEvent of `e` as sent from `source`.
    pub fn of(e: &'a StoredEvent, source: &'a str) -> Self {
        CloudEvent::with_payload(e, source, Cow::Borrowed(&e.payload))
    }

    /// The same with another payload (a redacted copy).
    pub fn with_payload(e: &'a StoredEvent, source: &'a str, payload: Cow<'a, Value>) -> Self {
        let m = &e.meta;
        CloudEvent {
            specversion: SPEC_VERSION,
            id: e.event_id,
            source,
            kind: event_type(&e.aggregate_type, &e.event_type, &e.event_version),
            subject: &e.aggregate_id,
            time: &m.occurred_at,
            datacontenttype: "application/json",
            globalposition: e.global_position,
            streamsequence: e.sequence,
            chainhash: &e.hash,
            data: Data {
                payload,
                actor: &m.actor,
                command: &m.command,
                sop: &m.sop,
                correlation_id: m.correlation_id,
                causation_id: m.causation_id,
                tool_invocation_id: m.tool_invocation_id,
            },
        }
    }

    /// Its JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing borrowed values of derived `Serialize` types into a
        // buffer cannot fail (no maps with non-string keys).
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The CloudEvent of a stored event, as sent from `source`, as a JSON value.
pub fn cloud_event(e: &StoredEvent, source: &str) -> Value {
    serde_json::to_value(CloudEvent::of(e, source)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_names_the_aggregate_the_event_and_its_major_version() {
        assert_eq!(
            event_type("job", "JobOffered", "1.0"),
            "dev.dispatch.job.JobOffered.v1"
        );
        assert_eq!(
            event_type("door", "DoorRegistered", "2.3"),
            "dev.dispatch.door.DoorRegistered.v2"
        );
        assert_eq!(event_type("job", "X", "3"), "dev.dispatch.job.X.v3");
    }
}
