//! Reading and appending streams, and verifying their hash chains.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use std::io::Write;

use super::answer::position_marker;
use super::batch::{self, write_batch, Refused};
use super::chain::{ChainKeys, MacFailure};
use super::checkpoint::CheckpointedHead;
use super::hash::{sha256_canonical, write_canonical, write_str, Hasher, GENESIS_HASH};
use super::upcast::upcast;
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

/// SHA-256 of the canonical form of [`hash_input`], written straight into
/// the hasher (no merged object, no copies of payload and metadata).
#[allow(clippy::too_many_arguments)]
pub fn envelope_hash(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_id: &str,
    event_type: &str,
    event_version: &str,
    payload: &Value,
    metadata: &Value,
    prev_hash: &str,
) -> String {
    enum Field<'a> {
        Value(&'a Value),
        Str(&'a str),
        Int(i64),
    }
    let Value::Object(meta) = metadata else {
        return sha256_canonical(&hash_input(
            aggregate_type,
            aggregate_id,
            sequence,
            event_id,
            event_type,
            event_version,
            payload,
            metadata,
            prev_hash,
        ));
    };
    let envelope = [
        ("aggregate_type", Field::Str(aggregate_type)),
        ("aggregate_id", Field::Str(aggregate_id)),
        ("sequence", Field::Int(sequence)),
        ("event_id", Field::Str(event_id)),
        ("event_type", Field::Str(event_type)),
        ("event_version", Field::Str(event_version)),
        ("payload", Field::Value(payload)),
        ("prev_hash", Field::Str(prev_hash)),
    ];
    let mut fields: Vec<(&str, Field<'_>)> = Vec::with_capacity(meta.len() + envelope.len());
    for (k, v) in meta {
        // The envelope's own fields win over metadata keys of the same name.
        if !envelope.iter().any(|(e, _)| *e == k.as_str()) {
            fields.push((k.as_str(), Field::Value(v)));
        }
    }
    fields.extend(envelope);
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Hasher::default();
    let mut write = || -> std::io::Result<()> {
        h.write_all(b"{")?;
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                h.write_all(b",")?;
            }
            write_str(k, &mut h)?;
            h.write_all(b":")?;
            match v {
                Field::Value(v) => write_canonical(v, &mut h)?,
                Field::Str(s) => write_str(s, &mut h)?,
                Field::Int(n) => write!(h, "{n}")?,
            }
        }
        h.write_all(b"}")
    };
    write().expect("hashing does not fail");
    h.hex()
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
    key_id: Option<String>,
    mac: Option<String>,
}

const SELECT_ROWS: &str = "SELECT sequence, global_position, event_id, event_type, event_version, \
     payload, metadata, prev_hash, hash, key_id, mac FROM events \
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
                key_id: r.try_get("key_id")?,
                mac: r.try_get("mac")?,
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
            key_id: self.key_id.clone(),
            mac: self.mac.clone(),
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
        let (event_type, payload) = upcast(event_type, event_version, value);
        let mut tagged = Map::new();
        tagged.insert(event_type, payload);
        return serde_json::from_value(Value::Object(tagged)).map_err(decode_err);
    }
    scratch.clear();
    scratch.push('{');
    scratch.push_str(&serde_json::to_string(event_type).map_err(decode_err)?);
    scratch.push(':');
    scratch.push_str(payload);
    scratch.push('}');
    serde_json::from_str(scratch).map_err(decode_err)
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

/// Events ready to append: ids, metadata and chained hashes computed; the
/// database assigns their global positions at insert.
#[derive(Debug, Clone)]
pub struct PreparedAppend {
    /// `job` or `technician`.
    pub aggregate_type: String,
    /// The stream.
    pub aggregate_id: String,
    /// The events, in sequence order.
    pub events: Vec<PreparedEvent>,
    /// The stream's head after these events.
    pub head: StreamState,
}

/// One event ready to append (the `dispatch_event` composite of migration
/// 0015, fields in its order).
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(type_name = "dispatch_event")]
pub struct PreparedEvent {
    /// 1-based, continuing the head.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Payload version.
    pub event_version: String,
    /// Payload, JSON text.
    pub payload: String,
    /// Metadata, JSON text.
    pub metadata: String,
    /// Event id.
    pub event_id: Uuid,
    /// The previous event's hash.
    pub prev_hash: String,
    /// The event's hash.
    pub hash: String,
    /// The chain key the event is keyed with (the active one).
    pub key_id: String,
    /// The event's MAC under that key.
    pub mac: String,
}

/// Computes ids, metadata, the hash chain and the MACs (under the active
/// key of `keys`) for `events` after `head`; returns them with the events as
/// they will be reported (positions are [`position_marker`]s).
pub fn prepare_append(
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    head: &StreamState,
    events: Vec<NewEvent>,
) -> Result<(PreparedAppend, Vec<Appended>), StoreError> {
    let mut p = PreparedAppend {
        aggregate_type: aggregate_type.to_string(),
        aggregate_id: aggregate_id.to_string(),
        events: Vec::with_capacity(events.len()),
        head: head.clone(),
    };
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let sequence = p.head.sequence + 1;
        // Time-ordered (UUIDv7): new ids land at the right edge of the
        // `events_event_id` index instead of on a random leaf of it, which
        // with millions of events was a page read and a full-page WAL image
        // per append (the benchmark's 10 M-event p99).
        let event_id = Uuid::now_v7();
        let metadata = serde_json::to_value(&e.meta)
            .map_err(|source| StoreError::Decode { sequence, source })?;
        let hash = envelope_hash(
            aggregate_type,
            aggregate_id,
            sequence,
            &event_id.to_string(),
            &e.event_type,
            &e.event_version,
            &e.payload,
            &metadata,
            &p.head.hash,
        );
        out.push(Appended {
            event_id,
            event_type: e.event_type.clone(),
            sequence,
            global_position: position_marker(i),
        });
        let (key_id, mac) = keys.mac(aggregate_type, aggregate_id, sequence, &hash);
        p.events.push(PreparedEvent {
            sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload.to_string(),
            metadata: metadata.to_string(),
            event_id,
            prev_hash: std::mem::replace(&mut p.head.hash, hash.clone()),
            hash,
            key_id: key_id.to_string(),
            mac,
        });
        p.head.sequence = sequence;
    }
    Ok((p, out))
}

/// Appends events to a stream inside the caller's transaction, chaining their
/// hashes, keying them with the active key of `keys` and moving the stream
/// head: one write of the batch function the group-commit writer uses
/// ([`super::batch`]), with no stored answer. A concurrent append to the
/// same stream is [`StoreError::Conflict`].
pub async fn append(
    conn: &mut PgConnection,
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    head: &StreamState,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    let (prepared, mut out) = prepare_append(keys, aggregate_type, aggregate_id, head, events)?;
    let write = batch::Write {
        answer: None,
        key_check: None,
        append: Some(prepared),
        door: None,
    };
    let outcome = write_batch(&mut *conn, &[&write]).await?.pop();
    match outcome {
        Some(Ok(written)) => {
            for (a, position) in out.iter_mut().zip(written.positions) {
                a.global_position = position;
            }
            Ok(out)
        }
        Some(Err(Refused::Conflict)) => Err(StoreError::Conflict),
        Some(Err(Refused::Failed(e))) => Err(e),
        Some(Err(Refused::KeyRefused)) | None => Err(StoreError::NoOutcome(1)),
    }
}

/// Which check found a stream's first bad or missing sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditCheck {
    /// A sequence is missing, repeated or out of place.
    Sequence,
    /// The event's `prev_hash` is not the previous event's `hash`.
    PrevHash,
    /// The event's `hash` is not the SHA-256 of its envelope.
    Hash,
    /// The event's MAC does not verify under its key.
    Mac,
    /// The event names a chain key the keyring does not hold.
    UnknownKey,
    /// An event without a MAC that no signed checkpoint vouches for.
    Unkeyed,
    /// The recorded stream head does not match the events.
    Head,
    /// A signed checkpoint's head of the stream is not among its events.
    Checkpoint,
}

impl AuditCheck {
    /// The wire name (`prev_hash`, `unknown_key`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditCheck::Sequence => "sequence",
            AuditCheck::PrevHash => "prev_hash",
            AuditCheck::Hash => "hash",
            AuditCheck::Mac => "mac",
            AuditCheck::UnknownKey => "unknown_key",
            AuditCheck::Unkeyed => "unkeyed",
            AuditCheck::Head => "head",
            AuditCheck::Checkpoint => "checkpoint",
        }
    }
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
    /// The check that found `first_bad_sequence` (`null` when verified).
    #[serde(default)]
    pub check: Option<AuditCheck>,
    /// Events without a MAC (written before the chain was keyed) accepted
    /// because a signed checkpoint vouches for them.
    #[serde(default)]
    pub unkeyed_events: i64,
}

/// Streams at least this long are hashed on several threads.
const PARALLEL_HASHING_FROM: usize = 1024;

/// What a row's own fields say about it: its recomputed hash, and for a
/// keyed row whether its MAC verifies (`None`: unkeyed).
type RowCheck = (String, Option<Result<(), MacFailure>>);

/// Each row's hash recomputed from its stored fields, and its MAC checked.
/// Both depend only on the row itself (the previous hash is one of its
/// stored fields), so a long stream is split across the machine's cores;
/// the chain itself is checked afterwards, in order.
fn row_checks(
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    rows: &[RawRow],
) -> Vec<RowCheck> {
    let check = |r: &RawRow| {
        let hash = envelope_hash(
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
        let mac = r.key_id.as_deref().map(|key_id| {
            keys.verify_mac(
                aggregate_type,
                aggregate_id,
                r.sequence,
                key_id,
                &r.hash,
                r.mac.as_deref(),
            )
        });
        (hash, mac)
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if rows.len() < PARALLEL_HASHING_FROM || threads < 2 {
        return rows.iter().map(check).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(check).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("hashing does not panic"))
            .collect()
    })
}

/// Verifies a stream's rows, in order, against: their sequence, their
/// chain (`prev_hash`), their hashes, their MACs under `keys` (an event
/// without one is accepted only below a head in `checkpointed` that the
/// chain reaches), the heads signed checkpoints recorded for the stream
/// (`checkpointed`: each must be among the rows), and the stream head
/// (`head`: the recorded last sequence and hash, if any). Reports the first
/// bad or missing sequence and the check that found it.
pub fn verify_rows(
    aggregate_type: &str,
    aggregate_id: &str,
    rows: &[RawRow],
    head: Option<&StreamState>,
    keys: &ChainKeys,
    checkpointed: &[CheckpointedHead],
) -> AuditReport {
    let mut prev = GENESIS_HASH.to_string();
    let mut unkeyed = 0i64;
    let mut keyed_seen = false;
    let bad = |seq: i64, check: AuditCheck, unkeyed: i64| AuditReport {
        verified: false,
        events: rows.len() as i64,
        first_bad_sequence: Some(seq),
        check: Some(check),
        unkeyed_events: unkeyed,
    };
    // The highest unkeyed checkpointed head (recorded by a store's first
    // checkpoint, before the chain was keyed) that the rows reach with the
    // same hash: the unkeyed events up to it are vouched for. Keyed heads
    // vouch for no unkeyed event: a legitimate writer may have appended on
    // top of a forged row.
    let vouched_to = checkpointed
        .iter()
        .filter(|c| c.unkeyed)
        .filter(|c| {
            usize::try_from(c.sequence - 1)
                .ok()
                .and_then(|i| rows.get(i))
                .is_some_and(|r| r.sequence == c.sequence && c.matches(&r.hash))
        })
        .map(|c| c.sequence)
        .max()
        .unwrap_or(0);
    let checks = row_checks(keys, aggregate_type, aggregate_id, rows);
    for (i, (r, (hash, mac))) in rows.iter().zip(&checks).enumerate() {
        let expected_seq = i as i64 + 1;
        if r.sequence != expected_seq {
            return bad(expected_seq, AuditCheck::Sequence, unkeyed);
        }
        if r.prev_hash != prev {
            return bad(r.sequence, AuditCheck::PrevHash, unkeyed);
        }
        if *hash != r.hash {
            return bad(r.sequence, AuditCheck::Hash, unkeyed);
        }
        match mac {
            Some(Ok(())) => keyed_seen = true,
            Some(Err(MacFailure::UnknownKey)) => {
                return bad(r.sequence, AuditCheck::UnknownKey, unkeyed)
            }
            Some(Err(MacFailure::Mismatch)) => return bad(r.sequence, AuditCheck::Mac, unkeyed),
            // Legacy events are a prefix: none follows a keyed one.
            None if r.sequence <= vouched_to && !keyed_seen => unkeyed += 1,
            None => return bad(r.sequence, AuditCheck::Unkeyed, unkeyed),
        }
        if checkpointed
            .iter()
            .any(|c| c.sequence == r.sequence && !c.matches(&r.hash))
        {
            return bad(r.sequence, AuditCheck::Checkpoint, unkeyed);
        }
        prev.clone_from(&r.hash);
    }
    let last = rows.len() as i64;
    if let Some(h) = head {
        if h.sequence > last {
            return bad(last + 1, AuditCheck::Head, unkeyed);
        }
        if h.sequence == last && last > 0 && h.hash != prev {
            return bad(last, AuditCheck::Head, unkeyed);
        }
        if h.sequence < last {
            // Events past the recorded head: the head was moved back.
            return bad(h.sequence + 1, AuditCheck::Head, unkeyed);
        }
    }
    if checkpointed.iter().any(|c| c.sequence > last) {
        // A signed checkpoint saw events that are gone.
        return bad(last + 1, AuditCheck::Checkpoint, unkeyed);
    }
    AuditReport {
        verified: true,
        events: rows.len() as i64,
        first_bad_sequence: None,
        check: None,
        unkeyed_events: unkeyed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_hash_is_the_hash_of_hash_input() {
        let metadata = [
            json!({"actor": {"id": "a", "kind": "agent", "role": "agent"}, "occurred_at": "2026-01-01T00:00:00Z",
                   "note": "é \"q\" \n\u{1} \u{2028}", "causation_id": null}),
            json!({"payload": "shadowed", "sequence": 99, "prev_hash": "x", "zz": [1, 2.5, null, true, -74.0, 1e300]}),
            json!("not an object"),
            json!(null),
            json!({}),
        ];
        let payloads = [
            json!({"b": 1, "a": {"y": [1, -74.0], "x": "s"}, "": "empty key", "ü": 1}),
            json!([]),
            json!("text"),
        ];
        for m in &metadata {
            for p in &payloads {
                assert_eq!(
                    envelope_hash("job", "id-1", 7, "e-1", "T", "1.0", p, m, "prev"),
                    sha256_canonical(&hash_input(
                        "job", "id-1", 7, "e-1", "T", "1.0", p, m, "prev"
                    )),
                    "{m} {p}"
                );
            }
        }
    }

    /// A chained stream of `n` rows, hashed and keyed as the store does it.
    fn chain(keys: &ChainKeys, n: usize) -> Vec<RawRow> {
        rows("long", Some(keys), 1, n as i64, GENESIS_HASH)
    }

    /// Rows `from..=to` of stream `job`/`stream_id` chained after `prev`,
    /// hashed as the store hashes them and keyed with `keys` (unkeyed, as
    /// legacy events are, with `None`).
    pub(super) fn rows(
        stream_id: &str,
        keys: Option<&ChainKeys>,
        from: i64,
        to: i64,
        prev: &str,
    ) -> Vec<RawRow> {
        let mut prev = prev.to_string();
        (from..=to)
            .map(|sequence| {
                let mut r = RawRow {
                    sequence,
                    global_position: sequence,
                    event_id: Uuid::now_v7(),
                    event_type: "NoteAdded".into(),
                    event_version: "1.0".into(),
                    payload: json!({"text": format!("note {sequence}")}),
                    metadata: json!({"actor": {"id": "a", "kind": "agent", "role": "agent"}}),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                    key_id: None,
                    mac: None,
                };
                r.hash = envelope_hash(
                    "job",
                    stream_id,
                    sequence,
                    &r.event_id.to_string(),
                    &r.event_type,
                    &r.event_version,
                    &r.payload,
                    &r.metadata,
                    &r.prev_hash,
                );
                if let Some(k) = keys {
                    let (id, mac) = k.mac("job", stream_id, sequence, &r.hash);
                    r.key_id = Some(id.to_string());
                    r.mac = Some(mac);
                }
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    #[test]
    fn a_long_stream_is_verified_across_threads_to_the_first_bad_sequence() {
        let keys = ChainKeys::generate();
        let n = PARALLEL_HASHING_FROM * 3 + 7;
        let mut rows = chain(&keys, n);
        let head = StreamState {
            sequence: n as i64,
            hash: rows[n - 1].hash.clone(),
        };
        let report = verify_rows("job", "long", &rows, Some(&head), &keys, &[]);
        assert!(report.verified, "{report:?}");
        assert_eq!(report.events, n as i64);
        // Altered in the last of the chunks, and then also earlier: the
        // first altered sequence is the one reported.
        rows[n - 3].payload = json!({"text": "forged"});
        let report = verify_rows("job", "long", &rows, Some(&head), &keys, &[]);
        assert_eq!(report.first_bad_sequence, Some(n as i64 - 2));
        rows[PARALLEL_HASHING_FROM + 1].metadata = json!({"actor": "someone else"});
        let report = verify_rows("job", "long", &rows, Some(&head), &keys, &[]);
        assert_eq!(
            report.first_bad_sequence,
            Some(PARALLEL_HASHING_FROM as i64 + 2)
        );
        // A row that went missing breaks the chain where it was.
        let mut gap = chain(&keys, n);
        gap.remove(2000);
        let report = verify_rows("job", "long", &gap, None, &keys, &[]);
        assert_eq!(report.first_bad_sequence, Some(2001));
        assert_eq!(report.check, Some(AuditCheck::Sequence));
    }

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

#[cfg(test)]
mod keyed_tests {
    use super::*;

    fn stream(keys: Option<&ChainKeys>, from: i64, to: i64, prev: &str) -> Vec<RawRow> {
        super::tests::rows("s", keys, from, to, prev)
    }

    fn at(rows: &[RawRow], seq: i64) -> CheckpointedHead {
        let r = &rows[seq as usize - 1];
        if r.key_id.is_some() {
            CheckpointedHead::new(seq, &r.hash).unwrap()
        } else {
            CheckpointedHead::legacy(seq, &r.hash).unwrap()
        }
    }

    fn check(r: &AuditReport) -> (Option<i64>, Option<&'static str>) {
        (r.first_bad_sequence, r.check.map(AuditCheck::as_str))
    }

    #[test]
    fn each_check_is_named_where_it_fails() {
        let keys = ChainKeys::generate();
        let rows = stream(Some(&keys), 1, 5, GENESIS_HASH);
        let ok = verify_rows("job", "s", &rows, None, &keys, &[]);
        assert!(ok.verified && ok.check.is_none(), "{ok:?}");

        let mut bad_mac = rows.clone();
        bad_mac[2].mac = Some("00".repeat(32));
        assert_eq!(
            check(&verify_rows("job", "s", &bad_mac, None, &keys, &[])),
            (Some(3), Some("mac"))
        );
        let mut no_mac = rows.clone();
        no_mac[3].mac = None;
        assert_eq!(
            check(&verify_rows("job", "s", &no_mac, None, &keys, &[])),
            (Some(4), Some("mac"))
        );
        let other = ChainKeys::generate();
        assert_eq!(
            check(&verify_rows("job", "s", &rows, None, &other, &[])),
            (Some(1), Some("unknown_key"))
        );
        let mut forged = rows.clone();
        forged.extend(stream(None, 6, 6, &rows[4].hash));
        assert_eq!(
            check(&verify_rows("job", "s", &forged, None, &keys, &[])),
            (Some(6), Some("unkeyed"))
        );
        let mut prev = rows.clone();
        prev[1].prev_hash = GENESIS_HASH.into();
        assert_eq!(
            check(&verify_rows("job", "s", &prev, None, &keys, &[])),
            (Some(2), Some("prev_hash"))
        );
        let head = StreamState {
            sequence: 7,
            hash: "x".into(),
        };
        assert_eq!(
            check(&verify_rows("job", "s", &rows, Some(&head), &keys, &[])),
            (Some(6), Some("head"))
        );
        let back = StreamState {
            sequence: 3,
            hash: rows[2].hash.clone(),
        };
        assert_eq!(
            check(&verify_rows("job", "s", &rows, Some(&back), &keys, &[])),
            (Some(4), Some("head"))
        );
        // The tail after a checkpoint is gone, the head rolled back with it.
        let cut = &rows[..3];
        let head = StreamState {
            sequence: 3,
            hash: rows[2].hash.clone(),
        };
        assert_eq!(
            check(&verify_rows(
                "job",
                "s",
                cut,
                Some(&head),
                &keys,
                &[at(&rows, 5)]
            )),
            (Some(4), Some("checkpoint"))
        );
    }

    #[test]
    fn unkeyed_events_pass_only_under_a_checkpoint_the_chain_reaches() {
        let keys = ChainKeys::generate();
        let legacy = stream(None, 1, 4, GENESIS_HASH);
        let mut rows = legacy.clone();
        rows.extend(stream(Some(&keys), 5, 6, &legacy[3].hash));
        let r = verify_rows("job", "s", &rows, None, &keys, &[]);
        assert_eq!(check(&r), (Some(1), Some("unkeyed")));
        let r = verify_rows("job", "s", &rows, None, &keys, &[at(&legacy, 4)]);
        assert!(r.verified, "{r:?}");
        assert_eq!(r.unkeyed_events, 4);
        // Vouched only up to the checkpointed head.
        let r = verify_rows("job", "s", &rows, None, &keys, &[at(&legacy, 2)]);
        assert_eq!(check(&r), (Some(3), Some("unkeyed")));
        // A checkpoint whose hash the chain does not reach vouches for nothing.
        let wrong = CheckpointedHead::legacy(4, &"ab".repeat(32)).unwrap();
        let r = verify_rows("job", "s", &rows, None, &keys, &[wrong]);
        assert_eq!(check(&r), (Some(1), Some("unkeyed")));
        // A keyed head vouches for no unkeyed event: a forged unkeyed row
        // that a legitimate keyed append then built on is still found.
        let mut built_on = legacy.clone();
        built_on.extend(stream(None, 5, 5, &legacy[3].hash));
        built_on.extend(stream(Some(&keys), 6, 6, &built_on[4].hash));
        let r = verify_rows(
            "job",
            "s",
            &built_on,
            None,
            &keys,
            &[at(&legacy, 4), at(&built_on, 6)],
        );
        assert_eq!(check(&r), (Some(5), Some("unkeyed")));
        // And no unkeyed event follows a keyed one, whatever vouches.
        let mut after_keyed = stream(Some(&keys), 1, 2, GENESIS_HASH);
        after_keyed.extend(stream(None, 3, 3, &after_keyed[1].hash));
        let r = verify_rows(
            "job",
            "s",
            &after_keyed,
            None,
            &keys,
            &[at(&after_keyed, 3)],
        );
        assert_eq!(check(&r), (Some(3), Some("unkeyed")));
    }
}
