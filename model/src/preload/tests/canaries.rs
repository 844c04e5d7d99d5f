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
