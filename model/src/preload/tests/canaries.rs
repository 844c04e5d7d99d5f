//! Canaries prove power: with each preload canary of `batch_preload` switched on, the property
//! that `spec/canaries.md` names finds a counterexample through a plain `TestRunner` (default
//! configuration, so `PROPTEST_CASES` applies); with it off the same property passes.

use proptest::test_runner::{Config, TestError, TestRunner};

use crate::canary::{Canaries, Canary};
use crate::preload::oracle::Invariant;

use super::gen::{case, Case};
use super::properties::invariant_holds;

fn run(invariant: Invariant, canaries: Canaries) -> Result<(), TestError<Case>> {
    // Expected failures are not persisted as regressions.
    let config = Config { failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    runner.run(&case(), |case| invariant_holds(invariant, &case, canaries))
}

fn assert_caught(canary: Canary, invariant: Invariant) {
    match run(invariant, Canaries::only(canary)) {
        Err(TestError::Fail(reason, minimal)) => {
            assert!(
                reason.message().contains(invariant.name()),
                "{canary} was reported as `{reason}`, not as {invariant}"
            );
            eprintln!("{canary}: minimal counterexample {minimal:?}: {reason}");
        }
        other => panic!("{canary} was not caught by {invariant}: {other:?}"),
    }
    if let Err(e) = run(invariant, Canaries::NONE) {
        panic!("{invariant} fails without the canary: {e}");
    }
}

#[test]
fn canary_getkey_before_budget_is_caught_by_get_key_soundness() {
    assert_caught(Canary::PreloadGetkeyBeforeBudget, Invariant::P2);
}

#[test]
fn canary_requested_includes_skipped_is_caught_by_complete_prefix_exactness() {
    assert_caught(Canary::PreloadRequestedIncludesSkipped, Invariant::P4);
}

#[test]
fn canary_size_without_metadata_is_caught_by_budget_bound() {
    assert_caught(Canary::PreloadSizeWithoutMetadata, Invariant::P7);
}

/// `size-without-metadata` on a prefix bounded by its `maxBytes` (not by `T`): the bundle keeps
/// within `T`, and the reference's cuts cannot attribute its runs (a non-partial prefix recorded
/// that the reference discards; a partial run longer than the reference's, which shifts the next
/// one). The budget bound still names it, through what only that prefix can have placed.
#[test]
fn size_without_metadata_over_a_prefix_bound_is_reported_as_budget_bound() {
    use crate::preload::oracle::check_bundle;
    use crate::preload::{batch_preload, Manifest, PrefixItem};

    use super::support::{bytes_list, snapshot};

    // Two entries of 2 + 10 + 13 = 25 bytes under [2] (12 each without metadata), one under [3].
    let s = snapshot(&[(&[2, 1], &[0; 10]), (&[2, 2], &[0; 10]), (&[3, 1], &[0; 1])]);
    for partial in [false, true] {
        let m = Manifest {
            keys: bytes_list(&[&[1]]),
            prefixes: vec![
                PrefixItem::new(vec![2], 40, partial),
                PrefixItem::new(vec![3], 1_000, partial),
            ],
        };
        let canary = Canaries::only(Canary::PreloadSizeWithoutMetadata);
        let bundle = batch_preload(&s, &m, 100_000, canary);
        let violation = check_bundle(&s, Some(&m), 100_000, Some(&bundle))
            .expect_err("the canary's bundle breaks the budget bound");
        assert_eq!(violation.invariant(), Invariant::P7, "partial {partial}: {violation}");
        let clean = batch_preload(&s, &m, 100_000, Canaries::NONE);
        check_bundle(&s, Some(&m), 100_000, Some(&clean)).unwrap_or_else(|v| panic!("{v}"));
    }
}
