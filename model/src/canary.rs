//! Canaries: the known defects of `spec/canaries.md`, one enum value each.
//!
//! A canary is switched on by configuration: a [`Canaries`] set is passed into every component
//! that hosts one, and each defect is one small branch at the exact place the real defect lived,
//! guarded by `canaries.on(Canary::…)`. There is no global switch. With the empty set (the
//! default) the model behaves as the specs say.

use std::fmt;
use std::str::FromStr;

/// One known defect. The string form is the name used on the command line (`--canary NAME`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Canary {
    /// Demuxer: the event that creates a per-actor queue is not enqueued.
    DemuxFirstEventDropped,
    /// Demuxer: a queue's last-seen time is never refreshed, so busy queues are collected.
    DemuxGcAbortsBusyQueue,
    /// Demuxer: collected or closed queues are cancelled instead of drained.
    DemuxAbortDropsInFlight,
    /// Workflow: an event is applied if greater than the last one, and the cursor jumps to it.
    EventFilterDropsOutOfOrder,
    /// Workflow: the dedupe cursor is read once per batch and not advanced while applying it.
    EventBatchDuplicateApplied,
    /// Handshake: the runner becomes eligible before its metadata is stored and it is subscribed.
    InitEligibleBeforeReady,
    /// Handshake: replay reads every unacked command in one transaction and sends one frame.
    ReplayUnbounded,
    /// Command log: acked commands and commands of stopped generations are never deleted.
    CommandsNeverDeleted,
    /// Preload: a get-key is recorded as requested before checking that it fits the budget.
    PreloadGetkeyBeforeBudget,
    /// Preload: a skipped or discarded prefix is still listed in requested prefixes.
    PreloadRequestedIncludesSkipped,
    /// Preload: an entry's size is counted without its metadata.
    PreloadSizeWithoutMetadata,
    /// Command log: the preload bundle is stored inside the persisted start command.
    PreloadBundlePersisted,
}

impl Canary {
    /// Every canary, in the order of `spec/canaries.md`.
    pub const ALL: [Canary; 12] = [
        Canary::DemuxFirstEventDropped,
        Canary::DemuxGcAbortsBusyQueue,
        Canary::DemuxAbortDropsInFlight,
        Canary::EventFilterDropsOutOfOrder,
        Canary::EventBatchDuplicateApplied,
        Canary::InitEligibleBeforeReady,
        Canary::ReplayUnbounded,
        Canary::CommandsNeverDeleted,
        Canary::PreloadGetkeyBeforeBudget,
        Canary::PreloadRequestedIncludesSkipped,
        Canary::PreloadSizeWithoutMetadata,
        Canary::PreloadBundlePersisted,
    ];

    /// The name used in `spec/canaries.md` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Canary::DemuxFirstEventDropped => "demux-first-event-dropped",
            Canary::DemuxGcAbortsBusyQueue => "demux-gc-aborts-busy-queue",
            Canary::DemuxAbortDropsInFlight => "demux-abort-drops-in-flight",
            Canary::EventFilterDropsOutOfOrder => "event-filter-drops-out-of-order",
            Canary::EventBatchDuplicateApplied => "event-batch-duplicate-applied",
            Canary::InitEligibleBeforeReady => "init-eligible-before-ready",
            Canary::ReplayUnbounded => "replay-unbounded",
            Canary::CommandsNeverDeleted => "commands-never-deleted",
            Canary::PreloadGetkeyBeforeBudget => "preload-getkey-before-budget",
            Canary::PreloadRequestedIncludesSkipped => "preload-requested-includes-skipped",
            Canary::PreloadSizeWithoutMetadata => "preload-size-without-metadata",
            Canary::PreloadBundlePersisted => "preload-bundle-persisted",
        }
    }

    /// Whether the defect lives in the preload algorithm or the bundle's handling.
    pub fn is_preload(self) -> bool {
        matches!(
            self,
            Canary::PreloadGetkeyBeforeBudget
                | Canary::PreloadRequestedIncludesSkipped
                | Canary::PreloadSizeWithoutMetadata
                | Canary::PreloadBundlePersisted
        )
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the canaries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown canary `{0}` (known: {known})", known = Canary::ALL.map(Canary::name).join(", "))]
pub struct UnknownCanary(pub String);

impl FromStr for Canary {
    type Err = UnknownCanary;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Canary::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownCanary(s.to_string()))
    }
}

/// The set of canaries switched on for one run. Empty by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Canaries(u16);

impl Canaries {
    /// No canary: the model as specified.
    pub const NONE: Canaries = Canaries(0);

    /// A set holding exactly `canary`.
    pub fn only(canary: Canary) -> Self {
        Canaries::NONE.with(canary)
    }

    /// This set plus `canary`.
    pub fn with(self, canary: Canary) -> Self {
        Canaries(self.0 | Self::bit(canary))
    }

    /// Whether `canary` is switched on.
    pub fn on(self, canary: Canary) -> bool {
        self.0 & Self::bit(canary) != 0
    }

    /// Whether no canary is on.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The canaries switched on, in the order of [`Canary::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Canary> {
        Canary::ALL.into_iter().filter(move |c| self.on(*c))
    }

    fn bit(canary: Canary) -> u16 {
        1 << (canary as u16)
    }
}

impl FromIterator<Canary> for Canaries {
    fn from_iter<I: IntoIterator<Item = Canary>>(iter: I) -> Self {
        iter.into_iter().fold(Canaries::NONE, Canaries::with)
    }
}

impl fmt::Display for Canaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Canary::name).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for c in Canary::ALL {
            assert_eq!(c.name().parse::<Canary>(), Ok(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.name()));
        }
        let mut names: Vec<_> = Canary::ALL.map(Canary::name).to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let err = "demux-bogus".parse::<Canary>().unwrap_err();
        assert!(err.to_string().contains("demux-first-event-dropped"), "{err}");
    }

    #[test]
    fn sets_hold_exactly_what_was_added() {
        let set: Canaries =
            [Canary::ReplayUnbounded, Canary::PreloadBundlePersisted].into_iter().collect();
        assert!(set.on(Canary::ReplayUnbounded));
        assert!(set.on(Canary::PreloadBundlePersisted));
        assert!(!set.on(Canary::DemuxFirstEventDropped));
        assert_eq!(set.iter().count(), 2);
        assert!(Canaries::default().is_empty());
        assert_eq!(Canaries::NONE.to_string(), "none");
    }
}
