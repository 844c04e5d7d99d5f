//! The timing envelope: which faults break it, until when, and the labelling of S1/S2/S14.

use pegsim_model::fact::{ConnId, CrashPolicy, Fact};

use super::support::*;
use crate::check::envelope::{link_delay_ms, Envelope};
use crate::run::Entry;

#[test]
fn link_delay_details_name_their_delay() {
    assert_eq!(link_delay_ms("runner-1->edge-0 delay 1500ms"), Some(1500));
    assert_eq!(link_delay_ms("extra 250 ms on conn 17"), Some(250));
    assert_eq!(link_delay_ms("delay=2000 conn=3"), Some(2000));
    assert_eq!(link_delay_ms("runner-1 slowed"), None);
}

#[test]
fn breaking_faults_hold_until_grace_after_their_end() {
    let mut e = Envelope::new(20_000);
    e.on_fault(100, "link_delay", "delay 500ms");
    assert!(!e.broken(200), "a delay within MAX_LINK_DELAY does not break it");
    e.on_fault(300, "bus_loss", "runner topic");
    assert!(!e.broken(400));
    e.on_fault(1_000, "partition", "runner-1 | edge-0");
    e.on_fault(1_500, "one_way_clog", "c3 to runner");
    assert!(e.broken(2_000));
    e.on_fault(5_000, "partition", "end runner-1 | edge-0");
    assert!(e.broken(30_000), "the clog is still open");
    e.on_fault(8_000, "one_way_clog", "end");
    assert!(e.broken(27_999));
    assert!(!e.broken(28_000));
    e.on_node(40_000, "runner-2", "pause");
    assert!(e.broken(41_000));
    e.on_node(42_000, "runner-2", "resume");
    assert!(e.broken(61_999) && !e.broken(62_000));
    e.on_fault(70_000, "link_delay", "delay 1500ms");
    assert!(e.broken(70_001));
}

fn overlap(w: &mut World, actor: &str) {
    w.create_actor(actor, CrashPolicy::Restart);
    let (r1, r2) = (rid("r1"), rid("r2"));
    w.fact(
        &node_of(&r1),
        Fact::InstanceStart { runner: r1.clone(), actor: actor.into(), generation: 0 },
    );
    w.fact(
        &node_of(&r2),
        Fact::InstanceStart { runner: r2.clone(), actor: actor.into(), generation: 1 },
    );
}

#[test]
fn s1_inside_a_partition_is_labelled_outside_the_envelope() {
    let mut w = World::new();
    w.connect(&rid("r1"), ConnId(1));
    w.connect(&rid("r2"), ConnId(2));
    w.push("sim", Entry::Fault { class: "partition".into(), detail: "runner-r1 | edge-0".into() });
    overlap(&mut w, "a1");
    w.tick(1_000);
    w.push(
        "sim",
        Entry::Fault { class: "partition".into(), detail: "end runner-r1 | edge-0".into() },
    );
    w.tick(19_999);
    overlap(&mut w, "a2");
    let checker = w.check();
    assert_only(&checker, &[]);
    assert_eq!(ids(checker.outside_envelope()), ["S1"]);
    assert!(checker.outside_envelope()[0].outside_envelope);

    // After the grace the same violation counts.
    w.tick(1);
    overlap(&mut w, "a3");
    let checker = w.check();
    assert_only(&checker, &["S1"]);
    assert_eq!(checker.violations()[0].actor.as_deref(), Some("a3"));
}

#[test]
fn s14_under_a_long_link_delay_is_labelled_outside_the_envelope() {
    let mut w = World::new();
    w.push("sim", Entry::Fault { class: "link_delay".into(), detail: "c1 delay 4000ms".into() });
    w.create_actor("a1", CrashPolicy::Restart);
    w.commit(
        EDGE,
        pegsim_model::fact::TxnLabel::KvRequest,
        vec![set(pegsim_model::keys::actor_kv_key("a1", &[4]), kv_record(b"v", 1))],
    );
    let checker = w.check();
    assert_only(&checker, &[]);
    assert_eq!(ids(checker.outside_envelope()), ["S14"]);
}
