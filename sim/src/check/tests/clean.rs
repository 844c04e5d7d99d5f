//! Correct histories produce no violation and close every obligation.

use pegsim_model::fact::{ConnId, CrashPolicy};

use super::support::*;

#[test]
fn a_full_sleep_cycle_and_a_second_generation_are_clean() {
    let mut w = World::new();
    let r = rid("r1");
    let c = ConnId(1);
    w.connect(&r, c);
    w.create_actor("a1", CrashPolicy::Restart);
    w.sleep_cycle("a1", &r, c, 0);
    w.tick(1_000);
    w.sleep_cycle("a1", &r, c, 1);
    let mut checker = w.check();
    assert_only(&checker, &[]);
    assert!(checker.outside_envelope().is_empty());
    let end = w.now + 600_000;
    assert_eq!(checker.obligations(end), Vec::<String>::new());
    checker.finish(end);
    assert_only(&checker, &[]);
}
