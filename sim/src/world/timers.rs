//! A node's pending model timers. Model components ask for one-shot timers on their node's
//! monotonic clock; the node keeps them here, in simulated time, and hands each back when due.
//! Ties fire in the order they were set, so the order is deterministic.

use std::collections::BTreeMap;

use crate::world::clock::SimClock;

/// Pending timers of one node (or one connection task).
#[derive(Debug)]
pub struct Timers<T> {
    pending: BTreeMap<(u64, u64), T>,
    next_seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { pending: BTreeMap::new(), next_seq: 0 }
    }
}

/// Far enough in the future to mean "never" within any run.
const NEVER_MS: u64 = 1 << 50;

impl<T> Timers<T> {
    /// Add a timer due at simulated time `at_ms`.
    pub fn insert(&mut self, at_ms: u64, timer: T) {
        self.next_seq += 1;
        self.pending.insert((at_ms, self.next_seq), timer);
    }

    /// Simulated time of the earliest pending timer (or "never").
    pub fn next_at(&self) -> u64 {
        self.pending.keys().next().map_or(NEVER_MS, |(at, _)| *at)
    }

    /// The madsim instant to sleep until for the earliest timer.
    pub fn next_instant(&self, clock: &SimClock) -> madsim::time::Instant {
        clock.instant(self.next_at())
    }

    /// Remove and return the earliest timer if it is due at `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<T> {
        let key = *self.pending.keys().next()?;
        if key.0 <= now_ms {
            self.pending.remove(&key)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
