//! Signed checkpoints of the stream heads: what they hold, how they are
//! signed, how the heads they cover are read from the store, and the index
//! of checkpointed heads verification consults.
//!
//! A checkpoint is written outside the database (the application puts it in
//! the evidence object store, `checkpoints/`): the commit-order position it
//! covers, the heads (sequence, hash) of every stream that changed since the
//! previous one, the previous checkpoint's digest, and an Ed25519 signature.
//! Whoever can rewrite the database cannot rewrite what a checkpoint saw, so
//! a tail deleted together with its head is found missing against it.
//!
//! Events are covered in the order the projectors read them — `(tx_id,
//! global_position)` below the snapshot's xmin — so an event committed late
//! with a low position is not skipped (docs/03).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};

use super::chain::ChainKeys;
use super::hash::{canonical_json, sha256_hex};
use super::StoreError;

/// The `format` of the checkpoints this version writes and reads.
pub const FORMAT: &str = "dispatch-api/checkpoint/v1";

/// Most heads in one checkpoint object (a bigger change is split in parts).
pub const MAX_HEADS: usize = 20_000;

/// Most events read for one checkpoint (a longer backlog takes several).
const MAX_EVENTS: i64 = 200_000;

/// A place in the commit order: everything at or before it is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// The transaction id (`xid8`).
    #[serde(with = "as_text")]
    pub tx_id: u64,
    /// The global position within it.
    pub global_position: i64,
}

mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One stream's head as a checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `job` or `technician`.
    pub aggregate_type: String,
    /// The stream.
    pub aggregate_id: String,
    /// Its last sequence.
    pub sequence: i64,
    /// That event's hash.
    pub hash: String,
    /// The event carries no MAC (written before the chain was keyed): only
    /// the store's first checkpoint records such a head, and only such a
    /// head vouches for unkeyed events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unkeyed: bool,
}

/// A signed checkpoint (the object's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: String,
    /// The process that wrote it (replicas each write their own).
    pub writer: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Every event at or before this place in the commit order is covered.
    pub covers: Cursor,
    /// The highest global position among the events covered.
    pub global_position: i64,
    /// Part number, when one change was split across objects.
    pub part: u32,
    /// The digest of the checkpoint written before this one (`null`: first).
    pub prev: Option<String>,
    /// The heads of the streams that changed.
    pub heads: Vec<Head>,
    /// The Ed25519 public key that signed it (hex).
    pub signer: String,
    /// Ed25519 over the canonical JSON of every other field (hex).
    pub signature: String,
}

impl Checkpoint {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a checkpoint serializes");
        if let Value::Object(m) = &mut v {
            m.remove("signature");
        }
        canonical_json(&v).into_bytes()
    }

    /// Signs it with the keyring's checkpoint seed.
    pub fn sign(mut self, keys: &ChainKeys) -> Checkpoint {
        self.signer = keys.public_key_hex();
        self.signature = keys.sign(&self.signed_bytes());
        self
    }

    /// Whether its signature verifies under a key `keys` trusts.
    pub fn verify(&self, keys: &ChainKeys) -> bool {
        self.format == FORMAT
            && keys.verify_signature(&self.signer, &self.signed_bytes(), &self.signature)
    }

    /// SHA-256 of the whole signed document (what the next one's `prev` holds).
    pub fn digest(&self) -> String {
        sha256_hex(
            canonical_json(&serde_json::to_value(self).expect("a checkpoint serializes"))
                .as_bytes(),
        )
    }

    /// Its object name under `checkpoints/`: ordered by what it covers, then
    /// part, then digest (two replicas never overwrite each other).
    pub fn object_name(&self) -> String {
        format!(
            "{:020}-{:020}-{:04}-{}.json",
            self.covers.tx_id,
            self.covers.global_position,
            self.part,
            &self.digest()[..16]
        )
    }
}

/// A head a signed checkpoint recorded, as verification uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointedHead {
    /// The sequence.
    pub sequence: i64,
    /// The hash, decoded.
    pub hash: [u8; 32],
    /// The head event was unkeyed: it vouches for the unkeyed events up to it.
    pub unkeyed: bool,
}

impl CheckpointedHead {
    /// A keyed head from a hex hash (`None` if it is not 32 bytes of hex).
    pub fn new(sequence: i64, hash: &str) -> Option<CheckpointedHead> {
        let bytes: [u8; 32] = hex::decode(hash).ok()?.try_into().ok()?;
        Some(CheckpointedHead {
            sequence,
            hash: bytes,
            unkeyed: false,
        })
    }

    /// An unkeyed (legacy) head from a hex hash.
    pub fn legacy(sequence: i64, hash: &str) -> Option<CheckpointedHead> {
        Self::new(sequence, hash).map(|h| CheckpointedHead { unkeyed: true, ..h })
    }

    /// Whether `hash` (hex) is this head's hash.
    pub fn matches(&self, hash: &str) -> bool {
        hex::decode(hash).is_ok_and(|b| b == self.hash)
    }
}

/// The checkpointed heads by stream: for each, the highest sequence any
/// signed checkpoint recorded (several entries only if checkpoints disagree
/// about that sequence's hash, which verification then reports), and the
/// highest unkeyed head (what vouches for the stream's legacy events).
#[derive(Debug, Default, Clone)]
pub struct HeadIndex {
    heads: HashMap<(String, String), StreamHeads>,
    /// The furthest place in the commit order a loaded checkpoint covers.
    pub covers: Option<Cursor>,
    /// The digest of the checkpoint that covers furthest.
    pub last_digest: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct StreamHeads {
    top: Vec<CheckpointedHead>,
    legacy: Option<CheckpointedHead>,
}

fn keep_highest(slot: &mut Vec<CheckpointedHead>, mark: CheckpointedHead) {
    match slot.first().map(|m| m.sequence) {
        Some(s) if s > mark.sequence => {}
        Some(s) if s == mark.sequence => {
            if !slot.iter().any(|m| m.hash == mark.hash) {
                slot.push(mark);
            }
        }
        _ => *slot = vec![mark],
    }
}

impl HeadIndex {
    /// Adds a (verified) checkpoint's heads.
    pub fn add(&mut self, cp: &Checkpoint) {
        for h in &cp.heads {
            let made = if h.unkeyed {
                CheckpointedHead::legacy(h.sequence, &h.hash)
            } else {
                CheckpointedHead::new(h.sequence, &h.hash)
            };
            let Some(mark) = made else {
                continue;
            };
            let e = self
                .heads
                .entry((h.aggregate_type.clone(), h.aggregate_id.clone()))
                .or_default();
            keep_highest(&mut e.top, mark);
            if mark.unkeyed && e.legacy.is_none_or(|l| l.sequence < mark.sequence) {
                e.legacy = Some(mark);
            }
        }
        if self.covers.is_none_or(|c| cp.covers >= c) {
            self.covers = Some(cp.covers);
            self.last_digest = Some(cp.digest());
        }
    }

    /// The checkpointed heads of a stream.
    pub fn get(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<CheckpointedHead> {
        let Some(e) = self
            .heads
            .get(&(aggregate_type.to_string(), aggregate_id.to_string()))
        else {
            return Vec::new();
        };
        let mut out = e.top.clone();
        if let Some(l) = e.legacy {
            if !out.contains(&l) {
                out.push(l);
            }
        }
        out
    }

    /// Every stream a checkpoint has seen.
    pub fn streams(&self) -> impl Iterator<Item = &(String, String)> {
        self.heads.keys()
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether no stream is held.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }
}

/// What the store holds past a cursor, ready to be checkpointed.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The heads to record.
    pub heads: Vec<Head>,
    /// The place in the commit order they cover.
    pub covers: Cursor,
    /// The highest global position among them.
    pub global_position: i64,
    /// Streams whose newest event was not recorded because it carries no
    /// valid MAC (a forged or late unkeyed row: only the first checkpoint of
    /// a store vouches for unkeyed events).
    pub refused: Vec<(String, String, i64)>,
    /// Whether more is waiting past `covers`.
    pub more: bool,
}

fn parse_tx(text: &str) -> Result<u64, StoreError> {
    text.parse().map_err(|_| {
        StoreError::Database(sqlx::Error::Decode(
            format!("transaction id {text:?} is not a number").into(),
        ))
    })
}

/// The heads of the streams with events after `from` in the commit order
/// (`None`: the store's first checkpoint, which covers every stream from
/// `stream_heads`, each head checked against its event). Only events of
/// transactions below the snapshot's xmin are read, so nothing still
/// uncommitted can commit behind the cursor. `None` when nothing is new.
pub async fn changes_since(
    conn: &mut PgConnection,
    keys: &ChainKeys,
    from: Option<Cursor>,
) -> Result<Option<Changes>, StoreError> {
    match from {
        None => first_changes(conn, keys).await,
        Some(from) => later_changes(conn, keys, from).await,
    }
}

async fn first_changes(
    conn: &mut PgConnection,
    keys: &ChainKeys,
) -> Result<Option<Changes>, StoreError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // Every transaction below the snapshot's xmin is visible to it, and a
    // stream's head is written with its events: the heads read in the same
    // snapshot cover every event up to this cursor (and perhaps more, which
    // the next checkpoint then covers again, harmlessly).
    let top = sqlx::query(
        "SELECT tx_id::text AS tx, global_position FROM events \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(top) = top else {
        return Ok(None);
    };
    let covers = Cursor {
        tx_id: parse_tx(top.try_get("tx")?)?,
        global_position: top.try_get("global_position")?,
    };
    let rows = sqlx::query(
        "SELECT h.aggregate_type, h.aggregate_id, h.sequence, h.hash, e.key_id, e.mac FROM stream_heads h \
         JOIN events e ON e.aggregate_type = h.aggregate_type AND e.aggregate_id = h.aggregate_id \
                      AND e.sequence = h.sequence AND e.hash = h.hash \
         ORDER BY h.aggregate_type, h.aggregate_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut heads = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for r in &rows {
        let head = Head {
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            sequence: r.try_get("sequence")?,
            hash: r.try_get("hash")?,
            unkeyed: false,
        };
        let key_id: Option<String> = r.try_get("key_id")?;
        let mac: Option<String> = r.try_get("mac")?;
        // Trust on first use for events written before the chain was keyed;
        // a keyed head must still carry a MAC that verifies.
        match vouched(keys, &head, key_id.as_deref(), mac.as_deref()) {
            Some(unkeyed) => heads.push(Head { unkeyed, ..head }),
            None => refused.push((head.aggregate_type, head.aggregate_id, head.sequence)),
        }
    }
    Ok(Some(Changes {
        heads,
        covers,
        global_position: covers.global_position,
        refused,
        more: false,
    }))
}

/// Whether a head may be recorded: `Some(false)` keyed with a MAC that
/// verifies, `Some(true)` unkeyed (only the first checkpoint asks), `None`
/// neither.
fn vouched(keys: &ChainKeys, h: &Head, key_id: Option<&str>, mac: Option<&str>) -> Option<bool> {
    match key_id {
        None => Some(true),
        Some(k) => keys
            .verify_mac(
                &h.aggregate_type,
                &h.aggregate_id,
                h.sequence,
                k,
                &h.hash,
                mac,
            )
            .is_ok()
            .then_some(false),
    }
}

async fn later_changes(
    conn: &mut PgConnection,
    keys: &ChainKeys,
    from: Cursor,
) -> Result<Option<Changes>, StoreError> {
    // One statement, one snapshot: the heads and the cursor agree. Only the
    // changed streams' last events are read in full (by primary key).
    let rows = sqlx::query(
        "WITH c AS MATERIALIZED ( \
           SELECT aggregate_type, aggregate_id, sequence, tx_id, global_position \
           FROM events \
           WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
             AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
           ORDER BY tx_id, global_position LIMIT $3), \
         h AS (SELECT aggregate_type, aggregate_id, max(sequence) AS sequence FROM c GROUP BY 1, 2) \
         SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.hash, e.key_id, e.mac, \
                NULL::text AS tx, NULL::bigint AS pos, NULL::bigint AS n, NULL::bigint AS top \
         FROM h JOIN events e ON e.aggregate_type = h.aggregate_type \
                             AND e.aggregate_id = h.aggregate_id AND e.sequence = h.sequence \
         UNION ALL \
         SELECT NULL, NULL, NULL, NULL, NULL, NULL, m.tx, m.pos, m.n, m.top FROM ( \
           SELECT (SELECT tx_id::text FROM c ORDER BY tx_id DESC, global_position DESC LIMIT 1) AS tx, \
                  (SELECT global_position FROM c ORDER BY tx_id DESC, global_position DESC LIMIT 1) AS pos, \
                  (SELECT count(*) FROM c) AS n, (SELECT max(global_position) FROM c) AS top) m",
    )
    .bind(from.tx_id.to_string())
    .bind(from.global_position)
    .bind(MAX_EVENTS)
    .fetch_all(conn)
    .await?;
    let mut heads = Vec::new();
    let mut refused = Vec::new();
    let mut covers = None;
    let (mut n, mut top) = (0i64, 0i64);
    for r in &rows {
        if let Some(tx) = r.try_get::<Option<String>, _>("tx")? {
            covers = Some(Cursor {
                tx_id: parse_tx(&tx)?,
                global_position: r.try_get("pos")?,
            });
            n = r.try_get::<Option<i64>, _>("n")?.unwrap_or(0);
            top = r.try_get::<Option<i64>, _>("top")?.unwrap_or(0);
            continue;
        }
        let Some(aggregate_type) = r.try_get::<Option<String>, _>("aggregate_type")? else {
            continue;
        };
        let aggregate_id: String = r.try_get("aggregate_id")?;
        let sequence: i64 = r.try_get("sequence")?;
        let hash: String = r.try_get("hash")?;
        let key_id: Option<String> = r.try_get("key_id")?;
        let mac: Option<String> = r.try_get("mac")?;
        let head = Head {
            aggregate_type,
            aggregate_id,
            sequence,
            hash,
            unkeyed: false,
        };
        // Only a head the keys vouch for is recorded: a row anyone could
        // have inserted must not become trusted by being checkpointed.
        if vouched(keys, &head, key_id.as_deref(), mac.as_deref()) == Some(false) {
            heads.push(head);
        } else {
            refused.push((head.aggregate_type, head.aggregate_id, head.sequence));
        }
    }
    Ok(covers.map(|covers| Changes {
        heads,
        covers,
        global_position: top,
        refused,
        more: n >= MAX_EVENTS,
    }))
}

/// Builds the signed checkpoint objects for `changes` (split into parts of
/// at most [`MAX_HEADS`] heads, each chained to the one before).
pub fn build(
    keys: &ChainKeys,
    writer: &str,
    now: DateTime<Utc>,
    prev: Option<String>,
    changes: &Changes,
) -> Vec<Checkpoint> {
    let mut out: Vec<Checkpoint> = Vec::new();
    let mut prev = prev;
    let chunks: Vec<&[Head]> = if changes.heads.is_empty() {
        vec![&[]]
    } else {
        changes.heads.chunks(MAX_HEADS).collect()
    };
    for (part, heads) in chunks.into_iter().enumerate() {
        let cp = Checkpoint {
            format: FORMAT.to_string(),
            writer: writer.to_string(),
            created_at: now,
            covers: changes.covers,
            global_position: changes.global_position,
            part: part as u32,
            prev: prev.take(),
            heads: heads.to_vec(),
            signer: String::new(),
            signature: String::new(),
        }
        .sign(keys);
        prev = Some(cp.digest());
        out.push(cp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(keys: &ChainKeys) -> Checkpoint {
        let changes = Changes {
            heads: vec![Head {
                aggregate_type: "job".into(),
                aggregate_id: "j1".into(),
                sequence: 4,
                hash: "ab".repeat(32),
                unkeyed: false,
            }],
            covers: Cursor {
                tx_id: 900,
                global_position: 12,
            },
            global_position: 12,
            refused: Vec::new(),
            more: false,
        };
        build(keys, "w", Utc::now(), None, &changes).remove(0)
    }

    #[test]
    fn a_checkpoint_verifies_until_anything_in_it_changes() {
        let keys = ChainKeys::generate();
        let cp = sample(&keys);
        assert!(cp.verify(&keys));
        let text = serde_json::to_string(&cp).unwrap();
        let back: Checkpoint = serde_json::from_str(&text).unwrap();
        assert!(back.verify(&keys));
        assert_eq!(back.digest(), cp.digest());
        let mut forged = cp.clone();
        forged.heads[0].sequence = 3;
        assert!(!forged.verify(&keys));
        let mut moved = cp.clone();
        moved.covers.global_position = 11;
        assert!(!moved.verify(&keys));
        assert!(!cp.verify(&ChainKeys::generate()), "another seed");
    }

    #[test]
    fn the_index_keeps_the_highest_head_and_disagreements() {
        let keys = ChainKeys::generate();
        let mut idx = HeadIndex::default();
        let mut cp = sample(&keys);
        idx.add(&cp);
        cp.heads[0].sequence = 2;
        idx.add(&cp);
        assert_eq!(idx.get("job", "j1").len(), 1);
        assert_eq!(idx.get("job", "j1")[0].sequence, 4);
        cp.heads[0].sequence = 4;
        cp.heads[0].hash = "cd".repeat(32);
        idx.add(&cp);
        assert_eq!(idx.get("job", "j1").len(), 2);
        assert!(idx.get("job", "nope").is_empty());
        // A legacy head stays beside the higher keyed ones.
        cp.heads[0].sequence = 3;
        cp.heads[0].unkeyed = true;
        idx.add(&cp);
        let heads = idx.get("job", "j1");
        assert_eq!(heads.len(), 3);
        assert!(heads.iter().any(|h| h.unkeyed && h.sequence == 3));
    }
}
