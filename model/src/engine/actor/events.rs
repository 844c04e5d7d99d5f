//! Event classification (`spec/protocol.md` §4.4) and the acknowledgement book of one step
//! (§4.5). The application of an event's effects is the step's (`step`), since it changes the
//! status; this module only decides stale / duplicate / next / gap and collects the acks.
//!
//! Canaries living here:
//! - `event-filter-drops-out-of-order`: an event is applied whenever `i > last`, and the cursor
//!   jumps to it; a gap is applied, and the skipped indices are dropped later as duplicates.
//! - `event-batch-duplicate-applied`: the duplicate check compares with the cursor as read once at
//!   the start of the batch (one `Events` signal) and not advanced while the batch is applied, so
//!   an index that appears twice in one batch is applied twice.

use std::collections::BTreeMap;

use crate::canary::{Canaries, Canary};
use crate::fact::EventClass;
use crate::keys::RunnerId;

/// Classify event index `index` of the current placement's generation, given the live cursor
/// `last` and the cursor `batch_cursor` read at the start of its batch. Stale events (no
/// placement, or another `(R, g)`) are classified by the caller before this.
pub fn classify(index: i64, last: i64, batch_cursor: i64, canaries: Canaries) -> EventClass {
    let batch_dup_canary = canaries.on(Canary::EventBatchDuplicateApplied);
    let filter_canary = canaries.on(Canary::EventFilterDropsOutOfOrder);
    let dedupe_cursor = if batch_dup_canary { batch_cursor } else { last };
    if index <= dedupe_cursor {
        EventClass::Dup
    } else if index == last.saturating_add(1)
        || filter_canary
        || (batch_dup_canary && index <= last)
    {
        EventClass::Applied
    } else {
        EventClass::Gap
    }
}

/// The acknowledgements one step decides, before they go to the outbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckBook {
    /// The step consumed at least one `Events` signal (rules 1, 3, 5 are evaluated).
    pub consumed_events: bool,
    /// A duplicate of this generation was seen (rule 3), if it was the current one then.
    pub dup_generation: Option<u32>,
    /// `(runner, generation) -> k`: stale (rule 4), `Stopped` (rule 2) and cursor acks.
    pub acks: BTreeMap<(RunnerId, u32), i64>,
}

impl AckBook {
    /// Acknowledge `(A, generation, k)` to `runner` (cumulative: the highest `k` wins).
    pub fn ack(&mut self, runner: &RunnerId, generation: u32, k: i64) {
        let slot = self.acks.entry((runner.clone(), generation)).or_insert(k);
        *slot = (*slot).max(k);
    }

    /// The acks grouped per runner topic, checkpoints ascending by generation.
    pub fn per_runner(&self) -> BTreeMap<RunnerId, Vec<(u32, i64)>> {
        let mut out: BTreeMap<RunnerId, Vec<(u32, i64)>> = BTreeMap::new();
        for ((runner, generation), k) in &self.acks {
            out.entry(runner.clone()).or_default().push((*generation, *k));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `indices` of one generation, one batch, through `classify` as the step does
    /// (`last := max(last, i)` on application) and return the applied indices in order.
    fn applied(indices: &[i64], canaries: Canaries) -> Vec<i64> {
        let mut last = -1;
        let batch_cursor = last;
        let mut out = Vec::new();
        for &i in indices {
            if classify(i, last, batch_cursor, canaries) == EventClass::Applied {
                out.push(i);
                last = last.max(i);
            }
        }
        out
    }

    #[test]
    fn table_rows_in_the_correct_model() {
        // last = 4: dup at or below, next at 5, gap above.
        assert_eq!(classify(0, 4, 4, Canaries::NONE), EventClass::Dup);
        assert_eq!(classify(4, 4, 4, Canaries::NONE), EventClass::Dup);
        assert_eq!(classify(5, 4, 4, Canaries::NONE), EventClass::Applied);
        assert_eq!(classify(6, 4, 4, Canaries::NONE), EventClass::Gap);
        assert_eq!(classify(0, -1, -1, Canaries::NONE), EventClass::Applied);
    }

    #[test]
    fn canaries_change_the_applied_sequence_as_described() {
        let filter = Canaries::only(Canary::EventFilterDropsOutOfOrder);
        let dup = Canaries::only(Canary::EventBatchDuplicateApplied);
        // Out of order: the correct model drops the gap and applies 1 when it comes.
        assert_eq!(applied(&[0, 2, 1], Canaries::NONE), vec![0, 1]);
        assert_eq!(applied(&[0, 2, 1], filter), vec![0, 2]);
        // A checkpoint twice in one batch.
        assert_eq!(applied(&[0, 1, 1], Canaries::NONE), vec![0, 1]);
        assert_eq!(applied(&[0, 1, 1], dup), vec![0, 1, 1]);
    }

    proptest! {
        /// In the correct model, whatever the arrival order and duplication, the applied indices
        /// are exactly `0, 1, …, k` (S4), and `k + 1` is what an independent scan that only
        /// accepts the next expected index reaches.
        #[test]
        fn correct_model_applies_a_gap_free_prefix(indices in proptest::collection::vec(0i64..12, 0..40)) {
            let got = applied(&indices, Canaries::NONE);
            let expected: Vec<i64> = (0..got.len() as i64).collect();
            prop_assert_eq!(&got, &expected);
            // Independent reference: scan arrivals, applying the next expected index only.
            let mut next = 0i64;
            for &i in &indices {
                if i == next {
                    next += 1;
                }
            }
            prop_assert_eq!(got.len() as i64, next);
        }
    }
}
