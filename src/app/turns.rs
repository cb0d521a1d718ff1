//! One command at a time per stream, in this process.
//!
//! Every command on a stream reads it, decides, and writes at the version
//! it read; a write that finds the stream moved on is decided again
//! ([`App::command`](crate::app::App::command)). Without more, concurrent
//! commands on one job race each other for every version, and on a busy
//! machine one of them can lose every decision it is allowed and answer a
//! conflict its caller never asked for (issue 22's rule).
//!
//! So within one process, commands on the same stream take turns: a command
//! takes its stream's turn before it reads, and gives it back once its write
//! committed (or it was answered otherwise). Waiting commands are served in
//! the order they asked (tokio's mutex is fair). Commands on different
//! streams never wait for each other, and a stream nobody is commanding
//! holds no memory here.
//!
//! This is an optimisation of the races, never the guard against them: the
//! store's `(aggregate, sequence)` key still refuses a write behind another
//! replica's, a timer in another process, or anything else outside this
//! process, and that command is decided again as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as Queue, OwnedMutexGuard};

/// The streams being commanded now, each with its queue.
type Queues = HashMap<String, Arc<Queue<()>>>;

/// This process's turns on streams.
#[derive(Clone, Default)]
pub struct Turns {
    queues: Arc<Mutex<Queues>>,
}

/// A command's turn on one stream: the stream is its alone (in this
/// process) until the turn is dropped.
pub struct Turn {
    held: Option<OwnedMutexGuard<()>>,
    stream: String,
    queues: Arc<Mutex<Queues>>,
}

fn lock(queues: &Mutex<Queues>) -> std::sync::MutexGuard<'_, Queues> {
    queues.lock().unwrap_or_else(|e| e.into_inner())
}

impl Turns {
    /// Waits for the turn on stream `(aggregate_type, aggregate_id)`.
    pub async fn take(&self, aggregate_type: &str, aggregate_id: &str) -> Turn {
        let stream = format!("{aggregate_type}/{aggregate_id}");
        let queue = lock(&self.queues)
            .entry(stream.clone())
            .or_default()
            .clone();
        let held = queue.lock_owned().await;
        Turn {
            held: Some(held),
            stream,
            queues: self.queues.clone(),
        }
    }

    /// How many streams have a command holding or waiting for their turn.
    pub fn len(&self) -> usize {
        lock(&self.queues).len()
    }

    /// Whether no stream is being commanded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // The next in line (if any) is woken; the queue is forgotten once
        // nobody holds or waits for it (each of those holds a clone of it,
        // and clones are only made under the map's lock).
        drop(self.held.take());
        let mut queues = lock(&self.queues);
        if queues
            .get(&self.stream)
            .is_some_and(|q| Arc::strong_count(q) == 1)
        {
            queues.remove(&self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_turn_per_stream_in_order_and_nothing_kept_after() {
        let turns = Turns::default();
        let first = turns.take("job", "a").await;
        // Another stream is not held up.
        let other = turns.take("job", "b").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = turns.take("job", "a").await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Each asks after the one before: on the test's one thread, the
            // spawned command runs up to its wait before this one goes on.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        assert!(order.lock().unwrap().is_empty(), "a turn was taken twice");
        drop(other);
        assert_eq!(turns.len(), 1);
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert!(turns.is_empty(), "a queue outlived its last command");
    }
}
