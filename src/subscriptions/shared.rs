//! The store's order read once for every subscription: the batches read
//! most recently, kept in memory so that a subscription that follows
//! another closely (JetStream and each webhook endpoint, all woken by the
//! same commit) takes its events from the batch the first one read instead
//! of reading and decoding them again.
//!
//! A batch read after a cursor holds every event after it up to the oldest
//! transaction still running when it was read; events below that
//! transaction are final (they are committed, and nothing can commit
//! before them any more). So the part of a batch after any of its cursors
//! is exactly what a read after that cursor would give, up to the batch's
//! end — whoever asks, and however late.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::log::{Batch, Cursor};

/// How many batches are kept (a few hundred events each under load; the
/// subscriptions that follow closely need only the last one or two).
const KEEP: usize = 4;

/// A batch read after `from`.
pub struct ReadBatch {
    /// The cursor it was read after.
    pub from: Cursor,
    /// What the read gave.
    pub batch: Batch,
}

/// The recent reads of one replica's subscriptions.
#[derive(Default)]
pub struct RecentReads {
    batches: Mutex<VecDeque<Arc<ReadBatch>>>,
}

impl RecentReads {
    /// A batch holding the events right after `from`, the index of the
    /// first of them, and whether a later batch is kept too (the reader is
    /// behind the others: more events are waiting for it); `None` when no
    /// kept batch has an event after `from`.
    pub fn after(&self, from: Cursor) -> Option<(Arc<ReadBatch>, usize, bool)> {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        batches.iter().rev().enumerate().find_map(|(later, b)| {
            let start = if b.from == from {
                0
            } else {
                b.batch.cursors.binary_search(&from).ok()? + 1
            };
            (start < b.batch.events.len()).then(|| (b.clone(), start, later > 0))
        })
    }

    /// Keeps a batch just read if it reaches past every kept one (an empty
    /// one is not worth keeping, and an older one — a sink far behind, say
    /// a replay — would only push out the batches the others follow).
    pub fn keep(&self, read: Arc<ReadBatch>) {
        let Some(end) = read.batch.cursors.last() else {
            return;
        };
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let newest = batches.back().and_then(|b| b.batch.cursors.last());
        if newest.is_some_and(|n| n >= end) {
            return;
        }
        if batches.len() == KEEP {
            batches.pop_front();
        }
        batches.push_back(read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: Cursor, cursors: &[(u64, i64)]) -> Arc<ReadBatch> {
        let cursors: Vec<Cursor> = cursors
            .iter()
            .map(|&(tx, pos)| Cursor { tx, pos })
            .collect();
        let events = cursors.iter().map(|c| event(c.pos)).collect();
        Arc::new(ReadBatch {
            from,
            batch: Batch { events, cursors },
        })
    }

    fn event(pos: i64) -> crate::store::StoredEvent {
        let meta = crate::store::EventMeta::new(chrono::Utc::now(), crate::domain::Actor::system());
        crate::store::StoredEvent {
            event_id: uuid::Uuid::new_v4(),
            aggregate_type: "job".into(),
            aggregate_id: "j".into(),
            sequence: pos,
            global_position: pos,
            event_type: "NoteAdded".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({}),
            meta,
            prev_hash: String::new(),
            hash: String::new(),
            key_id: None,
            mac: None,
        }
    }

    #[test]
    fn a_cursor_inside_a_kept_batch_gets_the_rest_of_it_and_its_end_gets_nothing() {
        let recent = RecentReads::default();
        let start = Cursor { tx: 10, pos: 4 };
        recent.keep(batch(start, &[(11, 5), (11, 6), (12, 7)]));
        let (b, i, behind) = recent.after(start).expect("from its start");
        assert_eq!((b.batch.events.len(), i, behind), (3, 0, false));
        let (_, i, _) = recent.after(Cursor { tx: 11, pos: 5 }).expect("inside");
        assert_eq!(i, 1);
        // A reader inside an older batch is told that more are kept.
        recent.keep(batch(Cursor { tx: 12, pos: 7 }, &[(13, 8)]));
        let (_, i, behind) = recent.after(Cursor { tx: 11, pos: 6 }).expect("older");
        assert_eq!((i, behind), (2, true));
        let (_, i, behind) = recent.after(Cursor { tx: 12, pos: 7 }).expect("newest");
        assert_eq!((i, behind), (0, false));
        // The last event's cursor: nothing kept after it, read the store.
        assert!(recent.after(Cursor { tx: 13, pos: 8 }).is_none());
        // A cursor the batch does not hold (between its events, or before
        // its start) is not guessed at.
        assert!(recent.after(Cursor { tx: 11, pos: 4 }).is_none());
        assert!(recent.after(Cursor::START).is_none());
    }

    #[test]
    fn only_the_last_batches_are_kept_and_an_empty_read_is_not() {
        let recent = RecentReads::default();
        for n in 0..(KEEP as i64 + 2) {
            let p = n * 10;
            recent.keep(batch(Cursor { tx: 1, pos: p }, &[(1, p + 1), (1, p + 2)]));
        }
        assert!(recent.after(Cursor { tx: 1, pos: 0 }).is_none(), "evicted");
        let last = (KEEP as i64 + 1) * 10;
        assert!(recent.after(Cursor { tx: 1, pos: last }).is_some());
        recent.keep(batch(Cursor { tx: 1, pos: 1000 }, &[]));
        assert!(recent.after(Cursor { tx: 1, pos: 1000 }).is_none());
        // A read far behind the kept ones does not push them out.
        recent.keep(batch(Cursor::START, &[(1, 1), (1, 2)]));
        assert!(recent.after(Cursor::START).is_none(), "not kept");
        assert!(recent.after(Cursor { tx: 1, pos: last }).is_some());
    }
}
