//! Verifying a stream's hash chain for auditors: every row's hash and MAC
//! recomputed (across threads for long streams), the chain, the recorded
//! head and the heads signed checkpoints recorded, checked in order; the
//! first bad or missing sequence reported with the check that found it.
//!
//! In two steps, so that the whole-store audit (`store::scan`) decides
//! exactly as the per-stream one: [`check_row`] (a row on its own: hash
//! and MAC, on any thread) and [`verify_chain`] (the walk in order).
//!
//! Rows as the database sent them are checked by [`check_stored_row`]: the
//! hash of their stored text first, which is the stored hash for every row
//! the store wrote, and the decoded row's canonical hash only when it is
//! not (see [`envelope_hash_text`] for why only equality is trusted). Both
//! audits read rows that way; decoding every payload and metadata into
//! JSON values and freeing them again was most of a long stream's audit.

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::chain::{ChainKeys, MacFailure};
use super::checkpoint::CheckpointedHead;
use super::hash::{envelope_hash, envelope_hash_text, Envelope, GENESIS_HASH};
use super::repo::{RawRow, StreamState};

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

/// A stored hash (`hash` or `prev_hash`) as the chain walk compares it: 32
/// bytes when it is lowercase hex, as the store writes every hash, else the
/// text as stored. Two of them are equal exactly when their texts are
/// (lowercase hex is one text per value), so the walk decides as a
/// comparison of the stored strings would, in a fraction of the memory the
/// whole-store audit holds per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredHash {
    /// Lowercase hex, decoded.
    Hex([u8; 32]),
    /// Anything else (an altered row), as stored.
    Text(Box<str>),
}

impl StoredHash {
    /// The stored text `s`.
    pub(crate) fn of(s: &str) -> StoredHash {
        let lower_hex = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut bytes = [0u8; 32];
        if lower_hex && hex::decode_to_slice(s, &mut bytes).is_ok() {
            StoredHash::Hex(bytes)
        } else {
            StoredHash::Text(s.into())
        }
    }

    /// Whether this is the hash a checkpoint recorded (as
    /// [`CheckpointedHead::matches`] decides it for the stored text).
    fn is_recorded_by(&self, c: &CheckpointedHead) -> bool {
        match self {
            StoredHash::Hex(bytes) => *bytes == c.hash,
            StoredHash::Text(text) => c.matches(text),
        }
    }
}

/// One event as the chain walk ([`verify_chain`]) sees it: where it is,
/// what it links to, and what its own fields say about it ([`check_row`]).
#[derive(Debug, Clone)]
pub(crate) struct ChainRow {
    /// Its sequence.
    pub(crate) sequence: i64,
    prev_hash: StoredHash,
    hash: StoredHash,
    /// Whether the stored `hash` is the SHA-256 of its envelope.
    hash_ok: bool,
    /// For a keyed row, whether its MAC verifies (`None`: unkeyed).
    mac: Option<Result<(), MacFailure>>,
}

/// What a row's own fields say about it: its hash recomputed from its
/// stored fields and compared, and for a keyed row its MAC checked. Both
/// depend only on the row itself (the previous hash is one of its stored
/// fields), so rows are checked on any thread in any order; the chain is
/// walked afterwards, in order ([`verify_chain`]).
pub(crate) fn check_row(
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    r: &RawRow,
) -> ChainRow {
    let envelope = Envelope {
        aggregate_type,
        aggregate_id,
        sequence: r.sequence,
        event_id: &r.event_id.to_string(),
        event_type: &r.event_type,
        event_version: &r.event_version,
        prev_hash: &r.prev_hash,
    };
    let hash_ok = envelope_hash(&envelope, &r.payload, &r.metadata) == r.hash;
    ChainRow::checked(
        keys,
        &envelope,
        &r.hash,
        hash_ok,
        r.key_id.as_deref(),
        r.mac.as_deref(),
    )
}

impl ChainRow {
    /// A row whose hash was found `hash_ok` (or not), with its MAC checked
    /// under `keys` when it is keyed (`key_id`).
    fn checked(
        keys: &ChainKeys,
        e: &Envelope<'_>,
        hash: &str,
        hash_ok: bool,
        key_id: Option<&str>,
        mac: Option<&str>,
    ) -> ChainRow {
        let mac = key_id.map(|key_id| {
            keys.verify_mac(
                e.aggregate_type,
                e.aggregate_id,
                e.sequence,
                key_id,
                hash,
                mac,
            )
        });
        ChainRow {
            sequence: e.sequence,
            prev_hash: StoredHash::of(e.prev_hash),
            hash: StoredHash::of(hash),
            hash_ok,
            mac,
        }
    }
}

/// [`check_row`] of a row as the database sent it (`RAW_COLUMNS`): when the
/// hash of its stored payload and metadata text is its stored hash, the
/// row's hash is intact without decoding either; otherwise the row is
/// decoded and decided by [`check_row`].
pub(crate) fn check_stored_row(
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    r: &PgRow,
) -> Result<ChainRow, sqlx::Error> {
    let stored: &str = r.try_get("hash")?;
    let text = |column: &str| r.try_get_raw(column).ok().and_then(|v| v.as_str().ok());
    let (Some(payload), Some(metadata)) = (text("payload"), text("metadata")) else {
        return Ok(check_row(
            keys,
            aggregate_type,
            aggregate_id,
            &RawRow::from_row(r)?,
        ));
    };
    let envelope = Envelope {
        aggregate_type,
        aggregate_id,
        sequence: r.try_get("sequence")?,
        event_id: &r.try_get::<uuid::Uuid, _>("event_id")?.to_string(),
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        prev_hash: r.try_get("prev_hash")?,
    };
    if envelope_hash_text(&envelope, payload, metadata).as_deref() != Some(stored) {
        return Ok(check_row(
            keys,
            aggregate_type,
            aggregate_id,
            &RawRow::from_row(r)?,
        ));
    }
    Ok(ChainRow::checked(
        keys,
        &envelope,
        stored,
        true,
        r.try_get("key_id")?,
        r.try_get("mac")?,
    ))
}

/// Each row of one stream checked ([`check_row`]); a long stream across
/// the machine's cores.
fn row_checks(
    keys: &ChainKeys,
    aggregate_type: &str,
    aggregate_id: &str,
    rows: &[RawRow],
) -> Vec<ChainRow> {
    let check = |r: &RawRow| check_row(keys, aggregate_type, aggregate_id, r);
    if rows.len() < PARALLEL_HASHING_FROM {
        return rows.iter().map(check).collect();
    }
    use rayon::prelude::*;
    rows.par_iter().map(check).collect()
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
    let checks = row_checks(keys, aggregate_type, aggregate_id, rows);
    verify_chain(&checks, head, checkpointed)
}

/// The walk of [`verify_rows`] over rows already checked ([`check_row`]),
/// in sequence order: what the per-stream audit and the whole-store audit
/// (`store::scan`) both decide with.
pub(crate) fn verify_chain(
    rows: &[ChainRow],
    head: Option<&StreamState>,
    checkpointed: &[CheckpointedHead],
) -> AuditReport {
    let mut prev = StoredHash::of(GENESIS_HASH);
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
                .is_some_and(|r| r.sequence == c.sequence && r.hash.is_recorded_by(c))
        })
        .map(|c| c.sequence)
        .max()
        .unwrap_or(0);
    for (i, r) in rows.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if r.sequence != expected_seq {
            return bad(expected_seq, AuditCheck::Sequence, unkeyed);
        }
        if r.prev_hash != prev {
            return bad(r.sequence, AuditCheck::PrevHash, unkeyed);
        }
        if !r.hash_ok {
            return bad(r.sequence, AuditCheck::Hash, unkeyed);
        }
        match r.mac {
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
            .any(|c| c.sequence == r.sequence && !r.hash.is_recorded_by(c))
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
        if h.sequence == last && last > 0 && StoredHash::of(&h.hash) != prev {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

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
                let envelope = Envelope {
                    aggregate_type: "job",
                    aggregate_id: stream_id,
                    sequence,
                    event_id: &r.event_id.to_string(),
                    event_type: &r.event_type,
                    event_version: &r.event_version,
                    prev_hash: &r.prev_hash,
                };
                r.hash = envelope_hash(&envelope, &r.payload, &r.metadata);
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
