//! Event numbering and history (`spec/protocol.md` §4.1, §4.2, §4.6): per instance `(A, g)` a
//! counter from 0 and the history of every emitted, unacknowledged event, kept after the
//! instance terminated until acknowledged.
//!
//! Owns: [`EventLog`] (numbering, history, which entries are due for a re-send, forgetting on
//! acknowledgement). Must not touch: frames, connections or timers (the runner client decides when
//! it is ready and sends what this module hands out), command records and tombstones (the client
//! drops a tombstone when [`EventLog::ack`] says the `Stopped` index is covered).
//!
//! Choices where the spec is silent:
//! - "Last sent" is per entry: the time the entry was last handed to a ready connection. The
//!   periodic re-send of an `(A, g)` is due when its oldest entry was last sent at least
//!   `interval` ago (or never, which cannot happen while ready: entries emitted while ready are
//!   sent at once, and every Init re-sends everything).
//! - An acknowledgement that forgets nothing (already forgotten, or for an unknown `(A, g)`) is
//!   ignored and reported as such, so the client records `EventForget` only when entries went.

use std::collections::{BTreeMap, VecDeque};

use crate::keys::ActorId;
use crate::protocol::{ActorCheckpoint, Event, EventWrapper};

/// One history entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    index: i64,
    event: Event,
    /// Local time it was last handed to a ready connection.
    sent_at: Option<u64>,
}

/// The history of one `(A, g)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct History {
    /// The index the next event gets.
    next_index: i64,
    /// Unacknowledged entries, ascending.
    entries: VecDeque<Entry>,
}

/// What an acknowledgement did to one `(A, g)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckOutcome {
    /// Whether at least one entry was forgotten.
    pub forgot: bool,
}

/// Every instance's event counter and unacknowledged history, by `(A, g)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog {
    histories: BTreeMap<(ActorId, u32), History>,
}

impl EventLog {
    /// Number `event` as the next event of `(actor, generation)` and append it to its history.
    /// `sent_now` marks it as handed to a ready connection at `now_ms`. Returns the wire event.
    pub fn append(
        &mut self,
        actor: &str,
        generation: u32,
        event: Event,
        now_ms: u64,
        sent_now: bool,
    ) -> EventWrapper {
        let history = self.histories.entry((actor.to_owned(), generation)).or_default();
        let index = history.next_index;
        history.next_index += 1;
        history.entries.push_back(Entry {
            index,
            event: event.clone(),
            sent_at: sent_now.then_some(now_ms),
        });
        wrapper(actor, generation, index, event)
    }

    /// Every unacknowledged event, per `(A, g)` ascending by index, `(A, g)` in key order; all
    /// marked as sent at `now_ms` (the re-send of every Init).
    pub fn all_unacked(&mut self, now_ms: u64) -> Vec<EventWrapper> {
        let mut out = Vec::new();
        for ((actor, generation), history) in &mut self.histories {
            for entry in &mut history.entries {
                entry.sent_at = Some(now_ms);
                out.push(wrapper(actor, *generation, entry.index, entry.event.clone()));
            }
        }
        out
    }

    /// The periodic re-send: the whole unacknowledged history of every `(A, g)` whose oldest
    /// entry was last sent at least `interval_ms` before `now_ms`, marked as sent now.
    pub fn due_resends(&mut self, now_ms: u64, interval_ms: u64) -> Vec<EventWrapper> {
        let mut out = Vec::new();
        for ((actor, generation), history) in &mut self.histories {
            let due = history
                .entries
                .front()
                .is_some_and(|e| e.sent_at.is_none_or(|t| now_ms.saturating_sub(t) >= interval_ms));
            if !due {
                continue;
            }
            for entry in &mut history.entries {
                entry.sent_at = Some(now_ms);
                out.push(wrapper(actor, *generation, entry.index, entry.event.clone()));
            }
        }
        out
    }

    /// When the next periodic re-send falls due (`None` when nothing is unacknowledged).
    pub fn next_resend_at(&self, interval_ms: u64) -> Option<u64> {
        self.histories
            .values()
            .filter_map(|h| h.entries.front())
            .map(|e| e.sent_at.map_or(0, |t| t.saturating_add(interval_ms)))
            .min()
    }

    /// `ToEnvoyAckEvents (A, g, k)`: forget the entries of exactly `(actor, generation)` with
    /// index `<= k`. Unknown `(A, g)`: nothing.
    pub fn ack(&mut self, actor: &str, generation: u32, k: i64) -> AckOutcome {
        let Some(history) = self.histories.get_mut(&(actor.to_owned(), generation)) else {
            return AckOutcome { forgot: false };
        };
        let mut forgot = false;
        while history.entries.front().is_some_and(|e| e.index <= k) {
            history.entries.pop_front();
            forgot = true;
        }
        AckOutcome { forgot }
    }

    /// Remove `(A, g)` entirely (its tombstone was dropped; its history is empty by then).
    pub fn remove(&mut self, actor: &str, generation: u32) {
        self.histories.remove(&(actor.to_owned(), generation));
    }

    /// Indices of the unacknowledged entries of `(A, g)`, ascending.
    pub fn unacked_indices(&self, actor: &str, generation: u32) -> Vec<i64> {
        self.histories
            .get(&(actor.to_owned(), generation))
            .map(|h| h.entries.iter().map(|e| e.index).collect())
            .unwrap_or_default()
    }

    /// Number of unacknowledged events over every `(A, g)`.
    pub fn unacked_count(&self) -> usize {
        self.histories.values().map(|h| h.entries.len()).sum()
    }
}

fn wrapper(actor: &str, generation: u32, index: i64, inner: Event) -> EventWrapper {
    EventWrapper {
        checkpoint: ActorCheckpoint { actor_id: actor.to_owned().into(), generation, index },
        inner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ActorState, EventActorStateUpdate};

    fn running() -> Event {
        Event::EventActorStateUpdate(EventActorStateUpdate { state: ActorState::ActorStateRunning })
    }

    fn indices(events: &[EventWrapper]) -> Vec<(String, u32, i64)> {
        events
            .iter()
            .map(|e| {
                (e.checkpoint.actor_id.to_string(), e.checkpoint.generation, e.checkpoint.index)
            })
            .collect()
    }

    #[test]
    fn numbering_is_per_instance_from_zero() {
        let mut log = EventLog::default();
        assert_eq!(log.append("a", 0, running(), 0, false).checkpoint.index, 0);
        assert_eq!(log.append("a", 0, running(), 0, false).checkpoint.index, 1);
        assert_eq!(log.append("a", 1, running(), 0, false).checkpoint.index, 0);
        assert_eq!(log.append("b", 0, running(), 0, false).checkpoint.index, 0);
    }

    #[test]
    fn an_ack_forgets_exactly_its_generation_up_to_k() {
        let mut log = EventLog::default();
        for _ in 0..3 {
            log.append("a", 0, running(), 0, false);
            log.append("a", 1, running(), 0, false);
        }
        assert!(log.ack("a", 0, 1).forgot);
        assert_eq!(log.unacked_indices("a", 0), vec![2]);
        assert_eq!(log.unacked_indices("a", 1), vec![0, 1, 2]);
        assert!(!log.ack("a", 0, 1).forgot, "already forgotten");
        assert!(!log.ack("zzz", 0, 9).forgot, "unknown (A, g)");
        // Numbering continues after forgetting.
        assert_eq!(log.append("a", 0, running(), 0, false).checkpoint.index, 3);
    }

    #[test]
    fn periodic_resend_is_due_per_instance_after_the_interval() {
        let mut log = EventLog::default();
        log.append("a", 0, running(), 100, true);
        log.append("b", 0, running(), 150, true);
        assert_eq!(log.next_resend_at(1_000), Some(1_100));
        assert!(log.due_resends(1_099, 1_000).is_empty());
        assert_eq!(indices(&log.due_resends(1_100, 1_000)), vec![("a".into(), 0, 0)]);
        assert_eq!(log.next_resend_at(1_000), Some(1_150));
        assert_eq!(indices(&log.all_unacked(2_000)), vec![("a".into(), 0, 0), ("b".into(), 0, 0)]);
        assert_eq!(log.next_resend_at(1_000), Some(3_000));
    }
}
