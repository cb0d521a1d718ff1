//! Reading streams (appending them is [`super::writer`]'s), and the raw
//! rows their hash chains are verified from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::hash::GENESIS_HASH;
use super::StoreError;
use crate::domain::sop::SopRef;
use crate::domain::Actor;

/// The envelope's metadata, stored in the `metadata` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMeta {
    /// When the command was decided (the service clock).
    pub occurred_at: DateTime<Utc>,
    /// Who (from the key).
    pub actor: Actor,
    /// The tool call that caused it.
    pub tool_invocation_id: Option<Uuid>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// Correlates everything one request (or conversation) caused.
    pub correlation_id: Option<Uuid>,
    /// The W3C trace id of the request that caused it (32 hex digits;
    /// absent on events no request caused, and on events from before
    /// traces). Hashed with the rest of the metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The event or request that caused this one.
    pub causation_id: Option<Uuid>,
    /// The SOP that guarded it.
    pub sop: Option<SopRef>,
    /// The command's wire name (`open_job`, `decide_approval`, …).
    #[serde(default)]
    pub command: Option<String>,
}

impl EventMeta {
    /// The metadata of an event decided at `occurred_at` by `actor`, with
    /// nothing else known (no request, tool call, SOP or command); set the
    /// rest with struct update syntax.
    pub fn new(occurred_at: DateTime<Utc>, actor: Actor) -> Self {
        EventMeta {
            occurred_at,
            actor,
            tool_invocation_id: None,
            idempotency_key: None,
            correlation_id: None,
            trace_id: None,
            causation_id: None,
            sop: None,
            command: None,
        }
    }
}

/// One stored event, as auditors see it: the full envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique id.
    pub event_id: Uuid,
    /// `job` or `technician`.
    pub aggregate_type: String,
    /// The stream's id.
    pub aggregate_id: String,
    /// 1-based position in the stream.
    pub sequence: i64,
    /// Store-wide order.
    pub global_position: i64,
    /// Event type.
    pub event_type: String,
    /// Payload version as stored.
    pub event_version: String,
    /// Payload as stored.
    pub payload: Value,
    /// Metadata.
    #[serde(flatten)]
    pub meta: EventMeta,
    /// Hash of the previous event in the stream.
    pub prev_hash: String,
    /// SHA-256 of the canonical envelope without `hash` and `global_position`.
    pub hash: String,
    /// The id of the chain key that keyed this event (`null`: written
    /// before the chain was keyed).
    #[serde(default)]
    pub key_id: Option<String>,
    /// HMAC-SHA-256 of the event's `hash` (with its stream and sequence)
    /// under `key_id` (docs/03, "Keyed chain").
    #[serde(default)]
    pub mac: Option<String>,
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Event type.
    pub event_type: String,
    /// Payload version.
    pub event_version: String,
    /// Payload.
    pub payload: Value,
    /// Metadata.
    pub meta: EventMeta,
}

/// Where a stream stands: its last sequence and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Last sequence (0 for a new stream).
    pub sequence: i64,
    /// Last hash (the genesis hash for a new stream).
    pub hash: String,
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            sequence: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

/// A raw row, undecoded: what verification reads.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub(super) sequence: i64,
    pub(super) global_position: i64,
    pub(super) event_id: Uuid,
    pub(super) event_type: String,
    pub(super) event_version: String,
    pub(super) payload: Value,
    pub(super) metadata: Value,
    pub(super) prev_hash: String,
    pub(super) hash: String,
    pub(super) key_id: Option<String>,
    pub(super) mac: Option<String>,
}

/// Reads a stream's rows (up to `to_sequence`) without decoding them.
pub async fn load_stream_rows(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    to_sequence: Option<i64>,
) -> Result<Vec<RawRow>, StoreError> {
    let rows = sqlx::query(&stream_rows_sql())
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(to_sequence.unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(RawRow::from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// A stream's rows of [`RAW_COLUMNS`] in order: `$1` aggregate type, `$2`
/// id, `$3` the last sequence wanted.
pub(super) fn stream_rows_sql() -> String {
    format!(
        "SELECT {RAW_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3 ORDER BY sequence"
    )
}

/// The columns [`RawRow::from_row`] reads.
pub(super) const RAW_COLUMNS: &str = "sequence, global_position, event_id, event_type, \
     event_version, payload, metadata, prev_hash, hash, key_id, mac";

impl RawRow {
    /// A row of [`RAW_COLUMNS`], undecoded: how every audit reads events.
    pub(super) fn from_row(r: &PgRow) -> Result<RawRow, sqlx::Error> {
        Ok(RawRow {
            sequence: r.try_get("sequence")?,
            global_position: r.try_get("global_position")?,
            event_id: r.try_get("event_id")?,
            event_type: r.try_get("event_type")?,
            event_version: r.try_get("event_version")?,
            payload: r.try_get("payload")?,
            metadata: r.try_get("metadata")?,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
            key_id: r.try_get("key_id")?,
            mac: r.try_get("mac")?,
        })
    }

    /// Decodes the envelope (metadata typed, payload as stored).
    pub fn envelope(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<StoredEvent, StoreError> {
        let meta: EventMeta =
            serde_json::from_value(self.metadata.clone()).map_err(|source| StoreError::Decode {
                sequence: self.sequence,
                source,
            })?;
        Ok(StoredEvent {
            event_id: self.event_id,
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence: self.sequence,
            global_position: self.global_position,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            payload: self.payload.clone(),
            meta,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            key_id: self.key_id.clone(),
            mac: self.mac.clone(),
        })
    }

    /// Decodes the payload into a domain event, through the upcasters.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, StoreError> {
        super::upcast::decode(&self.event_type, &self.event_version, self.payload.clone()).map_err(
            |source| StoreError::Decode {
                sequence: self.sequence,
                source,
            },
        )
    }

    /// Sequence.
    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    /// Hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// Loads a stream's domain events and its head. Reads only what deciding
/// needs (no metadata) and decodes each payload straight from its text.
pub async fn load_stream<E: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<(Vec<E>, StreamState), StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {STREAM_COLUMNS} FROM events e \
         WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 ORDER BY e.sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(conn)
    .await?;
    decode_stream(&rows)
}

/// The columns [`decode_stream`] reads, from a relation aliased `e` (for
/// callers that read a stream inside a bigger statement).
pub const STREAM_COLUMNS: &str =
    "e.sequence, e.event_type, e.event_version, e.payload::text AS payload, e.hash";

/// Decodes rows of [`STREAM_COLUMNS`] in sequence order (rows whose
/// `sequence` is NULL — an outer join's empty side — are skipped).
pub fn decode_stream<E: serde::de::DeserializeOwned>(
    rows: &[PgRow],
) -> Result<(Vec<E>, StreamState), StoreError> {
    let mut events = Vec::with_capacity(rows.len());
    let mut state = StreamState::default();
    let mut tagged = String::new();
    for r in rows {
        let Some(sequence) = r.try_get::<Option<i64>, _>("sequence")? else {
            continue;
        };
        let event_type: &str = r.try_get("event_type")?;
        let event_version: &str = r.try_get("event_version")?;
        let payload: &str = r.try_get("payload")?;
        events.push(decode_text(
            sequence,
            event_type,
            event_version,
            payload,
            &mut tagged,
        )?);
        state = StreamState {
            sequence,
            hash: r.try_get("hash")?,
        };
    }
    Ok((events, state))
}

/// Decodes a stored payload (JSON text) into a domain event, through the
/// upcasters when its version has one.
fn decode_text<E: serde::de::DeserializeOwned>(
    sequence: i64,
    event_type: &str,
    event_version: &str,
    payload: &str,
    scratch: &mut String,
) -> Result<E, StoreError> {
    let decode_err = |source| StoreError::Decode { sequence, source };
    if super::upcast::applies(event_type, event_version) {
        let value: Value = serde_json::from_str(payload).map_err(decode_err)?;
        return super::upcast::decode(event_type, event_version, value).map_err(decode_err);
    }
    scratch.clear();
    scratch.push('{');
    scratch.push_str(&serde_json::to_string(event_type).map_err(decode_err)?);
    scratch.push(':');
    scratch.push_str(payload);
    scratch.push('}');
    serde_json::from_str(scratch).map_err(decode_err)
}

/// Reads the recorded head of a stream.
pub async fn load_head(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<StreamState>, StoreError> {
    let row = sqlx::query(
        "SELECT sequence, hash FROM stream_heads WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => Some(StreamState {
            sequence: r.try_get("sequence")?,
            hash: r.try_get("hash")?,
        }),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_text_decodes_like_the_value_path() {
        let row = RawRow {
            sequence: 3,
            global_position: 9,
            event_id: Uuid::nil(),
            event_type: "NoteAdded".into(),
            event_version: "0.9".into(),
            payload: json!({"note": "old shape"}),
            metadata: json!({}),
            prev_hash: String::new(),
            hash: String::new(),
            key_id: None,
            mac: None,
        };
        let by_value: crate::domain::job::JobEvent = row.decode().unwrap();
        let mut scratch = String::new();
        let by_text: crate::domain::job::JobEvent = decode_text(
            3,
            "NoteAdded",
            "0.9",
            r#"{"note":"old shape"}"#,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(by_value, by_text);
        let current: crate::domain::job::JobEvent = decode_text(
            4,
            "NoteAdded",
            "1.0",
            r#"{"text": "new \"shape\""}"#,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(
            current,
            crate::domain::job::JobEvent::NoteAdded {
                text: "new \"shape\"".into()
            }
        );
        assert!(matches!(
            decode_text::<crate::domain::job::JobEvent>(
                5,
                "NoSuchEvent",
                "1.0",
                "{}",
                &mut scratch
            ),
            Err(StoreError::Decode { sequence: 5, .. })
        ));
    }
}
