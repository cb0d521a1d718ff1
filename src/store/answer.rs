//! A command's stored answer and its events' global positions.
//!
//! An answer names the global position of every event it appended, but the
//! database assigns positions only when it inserts the events, in the same
//! statement that stores the answer. So the answer is rendered before the
//! write with a placeholder per event ([`position_marker`], which
//! [`prepare_append`](super::prepare_append) gives each event it reports),
//! split at those placeholders here ([`Answer::new`]), and the batch
//! function (`dispatch_write_batch`, migration 0015) puts the real
//! positions between the pieces as it stores the answer. The three steps —
//! marker, split, splice — are this module's and the migration's only.

use super::StoreError;

/// The global position an [`Appended`](super::Appended) carries until the
/// database assigns the real one (`-9000000000000000000 - i` for the i-th
/// event): answers are rendered with it and the position is put in its
/// place in the statement that inserts the events.
pub fn position_marker(i: usize) -> i64 {
    -9_000_000_000_000_000_000 - i as i64
}

/// What the key in a rendered answer is called: a marker is searched as
/// this key's value, which a marker inside a JSON string (whose quotes are
/// escaped) can never be.
const KEY: &str = "\"global_position\":";

/// The answer a write stores under its caller's idempotency key.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The caller (its key's name).
    pub caller: String,
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// The request's hash.
    pub request_hash: String,
    /// The answer's status.
    pub status: u16,
    /// The answer's body split at its events' positions: one piece more
    /// than the write appends events (one piece when it appends none).
    pub pieces: Vec<Vec<u8>>,
}

impl Answer {
    /// The answer `body` (rendered with the [`position_marker`]s of `events`
    /// appended events), split at the markers.
    pub fn new(
        caller: &str,
        idempotency_key: &str,
        request_hash: &str,
        status: u16,
        body: &[u8],
        events: usize,
    ) -> Result<Answer, StoreError> {
        Ok(Answer {
            caller: caller.to_string(),
            idempotency_key: idempotency_key.to_string(),
            request_hash: request_hash.to_string(),
            status,
            pieces: split_at_positions(body, events).ok_or(StoreError::Unplaceable)?,
        })
    }
}

/// Splits an answer at the position markers of `n` appended events:
/// `n + 1` pieces, between which the database puts the real positions.
fn split_at_positions(body: &[u8], n: usize) -> Option<Vec<Vec<u8>>> {
    let mut pieces = Vec::with_capacity(n + 1);
    let mut rest = 0;
    for i in 0..n {
        let needle = format!("{KEY}{}", position_marker(i));
        let at = body[rest..]
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())?
            + rest;
        let digits = at + KEY.len();
        let end = at + needle.len();
        if body.get(end).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        pieces.push(body[rest..digits].to_vec());
        rest = end;
    }
    pieces.push(body[rest..].to_vec());
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(positions: &[i64]) -> serde_json::Value {
        positions
            .iter()
            .map(|p| json!({"event_type": "T", "global_position": p}))
            .collect()
    }

    #[test]
    fn answers_split_at_each_position_marker() {
        let markers = [position_marker(0), position_marker(1)];
        let body =
            json!({"job_id": "-9000000000000000000", "events": events(&markers), "version": 6});
        let bytes = serde_json::to_vec(&body).unwrap();
        let pieces = split_at_positions(&bytes, 2).unwrap();
        assert_eq!(pieces.len(), 3);
        let mut rebuilt = pieces[0].clone();
        for (i, p) in pieces[1..].iter().enumerate() {
            rebuilt.extend(format!("{}", 41 + i).as_bytes());
            rebuilt.extend(p);
        }
        let want =
            json!({"job_id": "-9000000000000000000", "events": events(&[41, 42]), "version": 6});
        assert_eq!(rebuilt, serde_json::to_vec(&want).unwrap());
        assert!(split_at_positions(&bytes, 3).is_none());
        assert!(matches!(
            Answer::new("c", "k", "h", 200, &bytes, 3),
            Err(StoreError::Unplaceable)
        ));
    }
}
