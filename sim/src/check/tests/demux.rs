//! The demuxer's accounting of accepted events (§4.3, reported as L3): a queue removed while it
//! holds events the workflow never received, before the connection's flush timeout, is flagged;
//! handed-over events, gone workflows and the flush deadline are not.

use pegsim_model::engine::signal::Signal;
use pegsim_model::fact::{ActorStatus, ConnId, CrashPolicy, Fact, TxnLabel};
use pegsim_model::keys::{self, RunnerId};
use pegsim_model::protocol as p;
use pegsim_model::records;
use pegsim_model::store::VERSIONSTAMP_LEN;

use super::support::*;
use crate::check::CheckConfig;

const C1: ConnId = ConnId(1);

/// r1 connected on c1 with epoch returned, a1 running generation 0 with `Running` applied (its
/// demuxer queue handed it over).
fn running_actor() -> (World, RunnerId, u64) {
    let mut w = World::new();
    let r1 = rid("r1");
    let epoch = w.connect(&r1, C1);
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, C1, 0, Some(p::preloaded_kv::empty_keyspace()));
    w.emit("a1", &r1, C1, 0, 0, running());
    w.fact(EDGE, Fact::DemuxEnqueue { conn: C1, actor: "a1".into(), events: 1 });
    hand_over(&mut w, &r1, epoch, &[(0, running())]);
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 0, pegsim_model::fact::EventClass::Applied, running());
    w.status("a1", ActorStatus::Running);
    (w, r1, epoch)
}

/// The signal bus enqueues one `Events` batch of a1 generation 0 from `(r, epoch)`.
fn hand_over(w: &mut World, r: &RunnerId, epoch: u64, events: &[(i64, p::Event)]) {
    let events = events
        .iter()
        .map(|(i, e)| p::EventWrapper { checkpoint: cp("a1", 0, *i), inner: e.clone() })
        .collect();
    let signal = Signal::Events { runner: r.clone(), epoch, events };
    let mut key = keys::actor_inbox_prefix("a1");
    key.extend_from_slice(&w.version.to_be_bytes());
    key.resize(key.len() + VERSIONSTAMP_LEN - 8, 0);
    w.commit(CORE, TxnLabel::SignalEnqueue, vec![set(key, records::encode(&signal))]);
}

/// a1 emits an alarm (index 1) the edge accepts.
fn accept_alarm(w: &mut World, r: &RunnerId) {
    w.emit("a1", r, C1, 0, 1, alarm(10));
    w.fact(EDGE, Fact::DemuxEnqueue { conn: C1, actor: "a1".into(), events: 1 });
}

fn close(w: &mut World, r: &RunnerId) {
    let reason = "peer closed".to_string();
    w.fact(EDGE, Fact::EdgeConnClosed { runner: Some(r.clone()), conn: C1, reason });
}

fn remove(w: &mut World) {
    w.fact(EDGE, Fact::DemuxRemove { conn: C1, actor: "a1".into() });
}

fn flush_ms() -> u64 {
    CheckConfig::default().timing.demux_flush_timeout_ms
}

#[test]
fn a_queue_drained_before_removal_passes() {
    let (mut w, r1, epoch) = running_actor();
    accept_alarm(&mut w, &r1);
    hand_over(&mut w, &r1, epoch, &[(1, alarm(10))]);
    close(&mut w, &r1);
    remove(&mut w);
    assert_only(&w.check(), &[]);
}

#[test]
fn a_queue_cancelled_at_connection_end_with_accepted_events_is_l3() {
    let (mut w, r1, _) = running_actor();
    accept_alarm(&mut w, &r1);
    close(&mut w, &r1);
    remove(&mut w);
    let checker = w.check();
    assert_only(&checker, &["L3"]);
    assert!(checker.violations()[0].detail.contains("never handed to the workflow"));
}

#[test]
fn a_busy_queue_removed_on_a_live_connection_is_l3() {
    let (mut w, r1, _) = running_actor();
    accept_alarm(&mut w, &r1);
    w.tick(60_000);
    remove(&mut w);
    assert_only(&w.check(), &["L3"]);
}

#[test]
fn a_batch_of_another_connection_does_not_drain_the_queue() {
    let (mut w, r1, epoch) = running_actor();
    accept_alarm(&mut w, &r1);
    hand_over(&mut w, &r1, epoch + 1, &[(1, alarm(10))]);
    close(&mut w, &r1);
    remove(&mut w);
    assert_only(&w.check(), &["L3"]);
}

#[test]
fn events_discarded_after_the_flush_timeout_pass_and_before_it_are_l3() {
    for (waited, expected) in [(flush_ms(), vec![]), (flush_ms() - 1, vec!["L3"])] {
        let (mut w, r1, _) = running_actor();
        accept_alarm(&mut w, &r1);
        close(&mut w, &r1);
        w.tick(waited);
        w.fact(EDGE, Fact::DemuxDiscard { conn: C1, actor: "a1".into(), events: 1 });
        remove(&mut w);
        assert_only(&w.check(), &expected);
    }
}

#[test]
fn a_gone_workflow_excuses_the_queue() {
    let (mut w, r1, _) = running_actor();
    accept_alarm(&mut w, &r1);
    w.step("a1", vec![clear(keys::actor_namespace("a1"))]);
    close(&mut w, &r1);
    remove(&mut w);
    assert_only(&w.check(), &[]);
}

#[test]
fn an_edge_crash_loses_queues_without_a_violation() {
    let (mut w, r1, _) = running_actor();
    accept_alarm(&mut w, &r1);
    w.push("sim", crate::run::Entry::Node { node: EDGE.to_string(), event: "crash".to_string() });
    remove(&mut w);
    assert_only(&w.check(), &[]);
}
