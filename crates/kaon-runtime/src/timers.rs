//! Timers the engine asked for (timeouts, retry backoff), across runs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use kaon_engine::{Event, Millis, NodeId, Timer};

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Millis,
    seq: u64,
    run: String,
    node: u32,
    attempt: u32,
    timer: Timer,
}

/// Timers by due time; equal times fire in the order they were set.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Timers {
    /// Sets a timer for `run`'s node.
    pub(crate) fn set(&mut self, run: &str, node: NodeId, attempt: u32, at: Millis, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            run: run.to_string(),
            node: node.0,
            attempt,
            timer,
        }));
    }

    /// When the next timer is due.
    pub(crate) fn next_at(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse(t)| t.at)
    }

    /// The events of every timer due at `now`, in order.
    pub(crate) fn due(&mut self, now: Millis) -> Vec<(String, Event)> {
        let mut out = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(t)| t.at <= now) {
            let Some(Reverse(t)) = self.heap.pop() else {
                break;
            };
            out.push((
                t.run,
                Event::TimerFired {
                    node: NodeId(t.node),
                    attempt: t.attempt,
                    timer: t.timer,
                },
            ));
        }
        out
    }

    /// Forgets the timers of runs this loop lets go of.
    pub(crate) fn drop_runs(&mut self, runs: &dyn Fn(&str) -> bool) {
        self.heap.retain(|Reverse(t)| !runs(&t.run));
    }
}
