//! Command deduplication on the runner (`spec/protocol.md` §3.5–§3.7): the record per `(A, g)`
//! (`last_cmd` and the instance), the classification of a received command, and the held
//! commands (at most one per `(A, g)`).
//!
//! Owns: [`Record`], [`classify`] and [`Classification`], [`HeldCommands`]. Must not touch: what
//! executing a command does to an instance, the acknowledgement frame, facts, or when held
//! commands are dropped (the runner client does those, in `runner/mod.rs`).
//!
//! Choices where the spec is silent:
//! - A second command held for the same `(A, g)` (impossible with indices 0 and 1 only) keeps the
//!   lower index, which is the one that can be released first; the other is dropped unacknowledged
//!   and comes back with the next replay.
//! - The stateless rules (a `Stop` at index 0, a `Start` elsewhere, a negative index, an invalid
//!   actor id) are checked on the whole frame by `wire::validate_to_envoy` before any command of it
//!   is classified, so a frame that breaks one is rejected as a whole.

use std::collections::BTreeMap;

use crate::keys::ActorId;
use crate::protocol::Command;

use super::instance::Instance;

/// The runner's record of one generation `(A, g)`: the highest processed command index and the
/// instance (a tombstone once it terminated).
#[derive(Debug)]
pub struct Record {
    /// The highest processed command index.
    pub last_cmd: i64,
    /// The instance started for this generation.
    pub instance: Instance,
}

/// How §3.5 classifies one received command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classification {
    /// A record exists and `i <= last_cmd`: discard, acknowledge.
    Duplicate,
    /// The record's instance terminated: `last_cmd = max(last_cmd, i)`, acknowledge, run nothing.
    Moot,
    /// A `Start` while a newer generation of the actor has a record: discard, acknowledge.
    Stale,
    /// A `Start` with no record: create it and start the instance, after force-stopping the
    /// listed older generations that still run (an engine protocol violation).
    Start { supersede: Vec<u32> },
    /// `i = last_cmd + 1`: execute.
    Execute,
    /// Hold until the predecessor arrives.
    Hold,
}

/// Classify command `(actor, generation, index)` (a `Start` when `is_start`) against `records`.
pub fn classify(
    records: &BTreeMap<(ActorId, u32), Record>,
    actor: &str,
    generation: u32,
    index: i64,
    is_start: bool,
) -> Classification {
    if let Some(record) = records.get(&(actor.to_owned(), generation)) {
        if index <= record.last_cmd {
            return Classification::Duplicate;
        }
        if record.instance.is_terminated() {
            return Classification::Moot;
        }
        if record.last_cmd.checked_add(1) == Some(index) {
            return Classification::Execute;
        }
        return Classification::Hold;
    }
    if index == 0 && is_start {
        let mut supersede = Vec::new();
        for ((_, g), record) in generations_of(records, actor) {
            if *g > generation {
                return Classification::Stale;
            }
            if !record.instance.is_terminated() {
                supersede.push(*g);
            }
        }
        return Classification::Start { supersede };
    }
    Classification::Hold
}

/// Every record of `actor`, ascending by generation.
pub fn generations_of<'a>(
    records: &'a BTreeMap<(ActorId, u32), Record>,
    actor: &str,
) -> impl DoubleEndedIterator<Item = (&'a (ActorId, u32), &'a Record)> + 'a {
    records.range((actor.to_owned(), 0)..=(actor.to_owned(), u32::MAX))
}

/// Commands waiting for their predecessor, at most one per `(A, g)`. Memory-only, dropped at
/// every connection end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeldCommands {
    held: BTreeMap<(ActorId, u32), (i64, Command)>,
}

impl HeldCommands {
    /// Hold `command` (index `index`) of `(actor, generation)`. Returns `false` when a command
    /// with a lower index was already held, in which case this one is dropped.
    pub fn hold(&mut self, actor: &str, generation: u32, index: i64, command: Command) -> bool {
        let key = (actor.to_owned(), generation);
        match self.held.get(&key) {
            Some((held, _)) if *held <= index => false,
            _ => {
                self.held.insert(key, (index, command));
                true
            }
        }
    }

    /// Take the held command of `(actor, generation)` if its index is `index`.
    pub fn take(&mut self, actor: &str, generation: u32, index: i64) -> Option<Command> {
        let key = (actor.to_owned(), generation);
        match self.held.get(&key) {
            Some((held, _)) if *held == index => self.held.remove(&key).map(|(_, c)| c),
            _ => None,
        }
    }

    /// Drop every held command (connection end).
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// Number of held commands.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CommandStopActor, StopActorReason};
    use crate::runner::instance::Phase;

    fn stop() -> Command {
        Command::CommandStopActor(CommandStopActor { reason: StopActorReason::StopIntent })
    }

    fn records(entries: &[(&str, u32, i64, bool)]) -> BTreeMap<(ActorId, u32), Record> {
        entries
            .iter()
            .map(|(a, g, last, terminated)| {
                let phase = if *terminated {
                    Phase::Terminated { stopped_index: 0 }
                } else {
                    Phase::Stopping
                };
                ((a.to_string(), *g), Record { last_cmd: *last, instance: Instance::new(phase) })
            })
            .collect()
    }

    #[test]
    fn the_rows_of_section_3_5() {
        let r = records(&[("a", 1, 0, false), ("t", 0, 0, true)]);
        assert_eq!(classify(&r, "a", 1, 0, true), Classification::Duplicate);
        assert_eq!(classify(&r, "a", 1, 1, false), Classification::Execute);
        assert_eq!(classify(&r, "a", 1, 2, false), Classification::Hold);
        assert_eq!(classify(&r, "t", 0, 1, false), Classification::Moot);
        assert_eq!(classify(&r, "t", 0, 0, true), Classification::Duplicate);
        assert_eq!(classify(&r, "a", 0, 0, true), Classification::Stale);
        assert_eq!(classify(&r, "a", 2, 0, true), Classification::Start { supersede: vec![1] });
        assert_eq!(classify(&r, "t", 1, 0, true), Classification::Start { supersede: vec![] });
        assert_eq!(classify(&r, "new", 0, 1, false), Classification::Hold);
        assert_eq!(classify(&r, "new", 0, 0, true), Classification::Start { supersede: vec![] });
    }

    #[test]
    fn the_largest_index_never_overflows() {
        let r = records(&[("a", 0, i64::MAX, false), ("b", 0, 0, false)]);
        assert_eq!(classify(&r, "a", 0, i64::MAX, false), Classification::Duplicate);
        assert_eq!(classify(&r, "b", 0, i64::MAX, false), Classification::Hold);
    }

    #[test]
    fn at_most_one_command_is_held_per_generation() {
        let mut held = HeldCommands::default();
        assert!(held.hold("a", 0, 2, stop()));
        assert!(held.hold("a", 0, 1, stop()), "a lower index replaces");
        assert!(!held.hold("a", 0, 3, stop()));
        assert_eq!(held.len(), 1);
        assert!(held.take("a", 0, 2).is_none());
        assert!(held.take("a", 0, 1).is_some());
        assert!(held.is_empty());
    }
}
