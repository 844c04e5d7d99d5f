//! S3 (events applied only for the current placement), S4, S5, S8; the §4.4 table; the two event
//! canaries' histories; a property over random deliveries.

use pegsim_model::fact::{ConnId, CrashPolicy, EventClass, Fact};
use pegsim_model::protocol as p;
use proptest::prelude::*;

use super::support::*;

/// r1 and r2 connected, a1 running generation 0 on r1 with `Running` (index 0) applied.
fn running_actor() -> World {
    let mut w = World::new();
    let (r1, r2) = (rid("r1"), rid("r2"));
    w.connect(&r1, ConnId(1));
    w.connect(&r2, ConnId(2));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.emit_apply("a1", &r1, ConnId(1), 0, 0, running());
    w.status("a1", pegsim_model::fact::ActorStatus::Running);
    w
}

#[test]
fn the_event_table_classified_correctly_passes() {
    let mut w = running_actor();
    let (r1, r2) = (rid("r1"), rid("r2"));
    for (i, ts) in [(1, 10), (2, 20), (3, 30)] {
        w.emit("a1", &r1, ConnId(1), 0, i, alarm(ts));
    }
    // duplicate, then a gap (3 before 1 and 2), then the next two in order
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 0, EventClass::Dup, running());
    w.classify("a1", &r1, 0, 3, EventClass::Gap, alarm(30));
    w.fact(
        CORE,
        Fact::EventAckPublished { runner: r1.clone(), actor: "a1".into(), generation: 0, index: 0 },
    );
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Applied, alarm(10));
    w.classify("a1", &r1, 0, 2, EventClass::Applied, alarm(20));
    // stale: an event of generation 0 from another runner, and of a generation never placed
    w.classify("a1", &r2, 0, 7, EventClass::Stale, alarm(70));
    w.classify("a1", &r1, 5, 0, EventClass::Stale, running());
    w.fact(
        CORE,
        Fact::EventAckPublished { runner: r2.clone(), actor: "a1".into(), generation: 0, index: 7 },
    );
    // out of order across connections: r1 reconnects and re-sends 1..=3 while the old
    // connection's copy of 3 is still queued: 1 and 2 are duplicates, 3 applies once.
    w.connect(&r1, ConnId(3));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Dup, alarm(10));
    w.classify("a1", &r1, 0, 2, EventClass::Dup, alarm(20));
    w.classify("a1", &r1, 0, 3, EventClass::Applied, alarm(30));
    w.classify("a1", &r1, 0, 3, EventClass::Dup, alarm(30));
    w.ack_events("a1", &r1, ConnId(3), 0, 3);
    assert_only(&w.check(), &[]);
}

#[test]
fn s4_reordered_delivery_with_the_filter_bug() {
    // event-filter-drops-out-of-order: 2 arrives before 1 and is applied; 1 is then a "dup".
    let mut w = running_actor();
    let r1 = rid("r1");
    w.emit("a1", &r1, ConnId(1), 0, 1, alarm(10));
    w.emit("a1", &r1, ConnId(1), 0, 2, alarm(20));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 2, EventClass::Applied, alarm(20));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Dup, alarm(10));
    assert_only(&w.check(), &["S4"]);
}

#[test]
fn s4_a_duplicate_inside_one_batch_applied_twice() {
    // event-batch-duplicate-applied
    let mut w = running_actor();
    let r1 = rid("r1");
    w.emit("a1", &r1, ConnId(1), 0, 1, alarm(10));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Applied, alarm(10));
    w.classify("a1", &r1, 0, 1, EventClass::Applied, alarm(10));
    assert_only(&w.check(), &["S4"]);
}

#[test]
fn s3_an_event_of_another_runner_applied() {
    let mut w = running_actor();
    let r2 = rid("r2");
    w.step("a1", vec![]);
    w.classify("a1", &r2, 0, 1, EventClass::Applied, alarm(10));
    assert_only(&w.check(), &["S3"]);
}

#[test]
fn s3_an_event_after_stopped_in_the_same_batch_applied() {
    let mut w = running_actor();
    let r1 = rid("r1");
    w.terminate("a1", &r1, ConnId(1), 0, 1, p::StopCode::Error);
    w.emit("a1", &r1, ConnId(1), 0, 2, alarm(5));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Applied, stopped(p::StopCode::Error));
    w.classify("a1", &r1, 0, 2, EventClass::Applied, alarm(5));
    assert_only(&w.check(), &["S3"]);
}

#[test]
fn s5_applied_content_differs_from_what_was_emitted() {
    let mut w = running_actor();
    let r1 = rid("r1");
    w.emit("a1", &r1, ConnId(1), 0, 1, alarm(10));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Applied, alarm(11));
    assert_only(&w.check(), &["S5"]);
}

#[test]
fn s5_an_event_no_instance_emitted() {
    let mut w = running_actor();
    let r1 = rid("r1");
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Applied, alarm(10));
    assert_only(&w.check(), &["S5"]);
}

#[test]
fn s8_an_ack_published_before_the_events_were_applied() {
    let mut w = running_actor();
    let r1 = rid("r1");
    w.emit("a1", &r1, ConnId(1), 0, 1, alarm(10));
    w.emit("a1", &r1, ConnId(1), 0, 2, alarm(20));
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 1, EventClass::Applied, alarm(10));
    w.fact(
        CORE,
        Fact::EventAckPublished { runner: r1.clone(), actor: "a1".into(), generation: 0, index: 2 },
    );
    assert_only(&w.check(), &["S8"]);
}

#[test]
fn s8_the_runner_forgets_without_an_ack() {
    let mut w = running_actor();
    let r1 = rid("r1");
    w.fact(
        &node_of(&r1),
        Fact::EventForget { runner: r1.clone(), actor: "a1".into(), generation: 0, index: 0 },
    );
    assert_only(&w.check(), &["S8"]);
}

#[test]
fn s8_the_runner_forgets_past_the_ack() {
    let mut w = running_actor();
    let r1 = rid("r1");
    w.emit_apply("a1", &r1, ConnId(1), 0, 1, alarm(10));
    w.fact(
        CORE,
        Fact::EventAckPublished { runner: r1.clone(), actor: "a1".into(), generation: 0, index: 0 },
    );
    w.send_to_runner(
        ConnId(1),
        &r1,
        p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
            last_event_checkpoints: vec![cp("a1", 0, 0)],
        }),
    );
    w.fact(
        &node_of(&r1),
        Fact::EventForget { runner: r1.clone(), actor: "a1".into(), generation: 0, index: 1 },
    );
    assert_only(&w.check(), &["S8"]);
}

// ---- property: random deliveries -----------------------------------------------------------------

/// How the simulated workflow classifies (a correct one, and the two event canaries), written
/// here independently of the checker.
#[derive(Clone, Copy, Debug)]
enum Workflow {
    Correct,
    FilterDropsOutOfOrder,
    BatchDuplicateApplied,
}

fn classify_batches(workflow: Workflow, batches: &[Vec<i64>]) -> Vec<Vec<(i64, EventClass)>> {
    let mut last = -1i64;
    let mut out = Vec::new();
    for batch in batches {
        let at_batch_start = last;
        let mut classes = Vec::new();
        for &i in batch {
            let class = match workflow {
                Workflow::Correct => {
                    if i <= last {
                        EventClass::Dup
                    } else if i == last + 1 {
                        last = i;
                        EventClass::Applied
                    } else {
                        EventClass::Gap
                    }
                }
                Workflow::FilterDropsOutOfOrder => {
                    if i > last {
                        last = i;
                        EventClass::Applied
                    } else {
                        EventClass::Dup
                    }
                }
                Workflow::BatchDuplicateApplied => {
                    if i <= at_batch_start {
                        EventClass::Dup
                    } else if i <= last + 1 {
                        last = last.max(i);
                        EventClass::Applied
                    } else {
                        EventClass::Gap
                    }
                }
            };
            classes.push((i, class));
        }
        out.push(classes);
    }
    out
}

fn history_for(batches: &[Vec<(i64, EventClass)>], emitted: i64) -> World {
    let mut w = running_actor();
    let r1 = rid("r1");
    // Index 0 (Running) is applied already; the property's events are 1..=emitted.
    for i in 1..=emitted {
        w.emit("a1", &r1, ConnId(1), 0, i, alarm(i));
    }
    for batch in batches {
        w.step("a1", vec![]);
        for (i, class) in batch {
            w.classify("a1", &r1, 0, *i, *class, alarm(*i));
        }
    }
    w
}

/// Batches of indices 1..=n (shifted by one because 0 is applied), with repeats and reordering.
fn batches() -> impl Strategy<Value = (i64, Vec<Vec<i64>>)> {
    (1i64..8).prop_flat_map(|n| {
        (Just(n), prop::collection::vec(prop::collection::vec(1..=n, 1..5), 1..6))
    })
}

proptest! {
    #[test]
    fn a_correct_workflow_never_violates_s3_to_s5((n, raw) in batches()) {
        let shifted: Vec<Vec<i64>> = raw.iter().map(|b| b.iter().map(|i| i - 1).collect()).collect();
        let classified: Vec<Vec<(i64, EventClass)>> = classify_batches(Workflow::Correct, &shifted)
            .into_iter()
            .map(|b| b.into_iter().map(|(i, c)| (i + 1, c)).collect())
            .collect();
        let checker = history_for(&classified, n).check();
        prop_assert!(checker.violations().is_empty(), "{:?}", checker.violations());
    }

    #[test]
    fn the_event_canaries_fail_s4_exactly_when_the_applied_sequence_is_not_a_prefix(
        (n, raw) in batches(),
        filter in any::<bool>(),
    ) {
        let workflow = if filter { Workflow::FilterDropsOutOfOrder } else { Workflow::BatchDuplicateApplied };
        let shifted: Vec<Vec<i64>> = raw.iter().map(|b| b.iter().map(|i| i - 1).collect()).collect();
        let classified: Vec<Vec<(i64, EventClass)>> = classify_batches(workflow, &shifted)
            .into_iter()
            .map(|b| b.into_iter().map(|(i, c)| (i + 1, c)).collect())
            .collect();
        let applied: Vec<i64> = classified
            .iter()
            .flatten()
            .filter(|(_, c)| *c == EventClass::Applied)
            .map(|(i, _)| *i)
            .collect();
        let prefix: Vec<i64> = (1..=applied.len() as i64).collect();
        let checker = history_for(&classified, n).check();
        let expected: Vec<String> = if applied == prefix { vec![] } else { vec!["S4".to_string()] };
        prop_assert_eq!(ids(checker.violations()), expected);
    }
}
