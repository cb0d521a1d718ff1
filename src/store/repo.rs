//! Reading and appending streams, and verifying their hash chains.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::hash::{sha256_canonical, GENESIS_HASH};
use super::upcast::upcast;
use super::{is_unique_violation, StoreError};
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
    /// The event or request that caused this one.
    pub causation_id: Option<Uuid>,
    /// The SOP that guarded it.
    pub sop: Option<SopRef>,
    /// The command's wire name (`open_job`, `decide_approval`, …).
    #[serde(default)]
    pub command: Option<String>,
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

/// The object whose canonical form is hashed: the envelope without `hash`
/// and `global_position` (the database assigns the position at insert, and it
/// orders events; it does not identify them).
/// Public so that generators (the benchmark's bulk loader) hash exactly as the store does.
#[allow(clippy::too_many_arguments)]
pub fn hash_input(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_id: &str,
    event_type: &str,
    event_version: &str,
    payload: &Value,
    metadata: &Value,
    prev_hash: &str,
) -> Value {
    let mut obj = match metadata {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("metadata".into(), other.clone());
            m
        }
    };
    obj.insert("aggregate_type".into(), aggregate_type.into());
    obj.insert("aggregate_id".into(), aggregate_id.into());
    obj.insert("sequence".into(), sequence.into());
    obj.insert("event_id".into(), event_id.into());
    obj.insert("event_type".into(), event_type.into());
    obj.insert("event_version".into(), event_version.into());
    obj.insert("payload".into(), payload.clone());
    obj.insert("prev_hash".into(), prev_hash.into());
    Value::Object(obj)
}

/// A raw row, undecoded: what verification reads.
#[derive(Debug, Clone)]
pub struct RawRow {
    sequence: i64,
    global_position: i64,
    event_id: Uuid,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    prev_hash: String,
    hash: String,
}

const SELECT_ROWS: &str = "SELECT sequence, global_position, event_id, event_type, event_version, \
     payload, metadata, prev_hash, hash FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3 ORDER BY sequence";

/// Reads a stream's rows (up to `to_sequence`) without decoding them.
pub async fn load_stream_rows(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    to_sequence: Option<i64>,
) -> Result<Vec<RawRow>, StoreError> {
    let rows = sqlx::query(SELECT_ROWS)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(to_sequence.unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|r| {
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
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

impl RawRow {
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
        })
    }

    /// Decodes the payload into a domain event, through the upcasters.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, StoreError> {
        let (event_type, payload) =
            upcast(&self.event_type, &self.event_version, self.payload.clone());
        let mut tagged = Map::new();
        tagged.insert(event_type, payload);
        serde_json::from_value(Value::Object(tagged)).map_err(|source| StoreError::Decode {
            sequence: self.sequence,
            source,
        })
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

/// Loads a stream's domain events and its head.
pub async fn load_stream<E: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<(Vec<E>, StreamState), StoreError> {
    let rows = load_stream_rows(conn, aggregate_type, aggregate_id, None).await?;
    let state = rows
        .last()
        .map(|r| StreamState {
            sequence: r.sequence,
            hash: r.hash.clone(),
        })
        .unwrap_or_default();
    let events = rows
        .iter()
        .map(RawRow::decode)
        .collect::<Result<Vec<E>, _>>()?;
    Ok((events, state))
}

/// Where an event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// Its id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its sequence.
    pub sequence: i64,
    /// Its global position.
    pub global_position: i64,
}

/// Appends events to a stream inside the caller's transaction, chaining their
/// hashes and moving the stream head. A concurrent append to the same stream
/// is [`StoreError::Conflict`].
pub async fn append(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    head: &StreamState,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    let mut prev = head.hash.clone();
    let mut sequence = head.sequence;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        sequence += 1;
        let event_id = Uuid::new_v4();
        let metadata = serde_json::to_value(&e.meta)
            .map_err(|source| StoreError::Decode { sequence, source })?;
        let input = hash_input(
            aggregate_type,
            aggregate_id,
            sequence,
            &event_id.to_string(),
            &e.event_type,
            &e.event_version,
            &e.payload,
            &metadata,
            &prev,
        );
        let hash = sha256_canonical(&input);
        let row = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata, event_id, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING global_position",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence)
        .bind(&e.event_type)
        .bind(&e.event_version)
        .bind(&e.payload)
        .bind(&metadata)
        .bind(event_id)
        .bind(&prev)
        .bind(&hash)
        .fetch_one(&mut *conn)
        .await
        .map_err(|err| if is_unique_violation(&err) { StoreError::Conflict } else { StoreError::Database(err) })?;
        out.push(Appended {
            event_id,
            event_type: e.event_type,
            sequence,
            global_position: row.try_get("global_position")?,
        });
        prev = hash;
    }
    sqlx::query(
        "INSERT INTO stream_heads (aggregate_type, aggregate_id, sequence, hash) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET sequence = EXCLUDED.sequence, hash = EXCLUDED.hash",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(&prev)
    .execute(&mut *conn)
    .await?;
    Ok(out)
}

/// The result of verifying a stream's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Whether every event is intact and in place.
    pub verified: bool,
    /// Events read.
    pub events: i64,
    /// The first sequence that is altered, missing or out of place.
    pub first_bad_sequence: Option<i64>,
}

/// Verifies a stream's rows against their hashes, their chain and the
/// stream head (`head`: the recorded last sequence and hash, if any).
pub fn verify_rows(
    aggregate_type: &str,
    aggregate_id: &str,
    rows: &[RawRow],
    head: Option<&StreamState>,
) -> AuditReport {
    let mut prev = GENESIS_HASH.to_string();
    let bad = |seq: i64| AuditReport {
        verified: false,
        events: rows.len() as i64,
        first_bad_sequence: Some(seq),
    };
    for (i, r) in rows.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if r.sequence != expected_seq {
            return bad(expected_seq);
        }
        let input = hash_input(
            aggregate_type,
            aggregate_id,
            r.sequence,
            &r.event_id.to_string(),
            &r.event_type,
            &r.event_version,
            &r.payload,
            &r.metadata,
            &r.prev_hash,
        );
        if r.prev_hash != prev || sha256_canonical(&input) != r.hash {
            return bad(r.sequence);
        }
        prev = r.hash.clone();
    }
    if let Some(h) = head {
        let last = rows.len() as i64;
        if h.sequence > last {
            return bad(last + 1);
        }
        if h.sequence == last && last > 0 && h.hash != prev {
            return bad(last);
        }
    }
    AuditReport {
        verified: true,
        events: rows.len() as i64,
        first_bad_sequence: None,
    }
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
