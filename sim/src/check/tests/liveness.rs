//! Liveness obligations: open at `finish` past their bound is a violation; closed in time is not.
//! Also the progress marker and bounded memory.

use pegsim_model::fact::{ConnId, CrashPolicy, EventClass, Fact, TxnLabel};
use pegsim_model::protocol as p;

use super::support::*;
use crate::check::LIVENESS_DELTA_MS;
use crate::run::Entry;

fn heal(w: &mut World) {
    w.push("sim", Entry::Phase { phase: "heal".into() });
}

#[test]
fn l2_a_persisted_command_never_received_is_reported_at_finish() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    heal(&mut w);
    w.allocate("a1", &r1, 0);
    let persisted = w.now;
    let mut checker = w.check();
    let open = checker.obligations(persisted + 1);
    assert!(open.iter().any(|o| o.starts_with("L2")), "{open:?}");
    // Within Δ it is still open but not overdue; the start deadline is far away.
    checker.finish(persisted + LIVENESS_DELTA_MS);
    assert_only(&checker, &[]);
    let mut checker = w.check();
    checker.finish(persisted + LIVENESS_DELTA_MS + 1);
    assert_only(&checker, &["L2"]);
    assert!(checker.violations()[0].detail.contains("not received"));
}

#[test]
fn l2_closed_in_time_when_the_start_is_delivered() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    heal(&mut w);
    w.allocate("a1", &r1, 0);
    w.tick(1_000);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    let mut checker = w.check();
    checker.finish(w.now + 20_000);
    assert_only(&checker, &[]);
}

#[test]
fn l3_an_emitted_event_never_applied() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    heal(&mut w);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    // demux-first-event-dropped: Running is emitted and sent but never reaches the workflow.
    w.emit("a1", &r1, ConnId(1), 0, 0, running());
    // Emitted in the heal phase on a ready connection, so the runner's history bound (L10)
    // expires first, then event delivery (L3).
    let mut checker = w.check();
    checker.finish(w.now + 8_000);
    assert_only(&checker, &["L10"]);
    let mut checker = w.check();
    checker.finish(w.now + 16_000);
    assert_only(&checker, &["L3", "L10"]);
    // ... and the actor then never leaves Starting.
    let mut checker = w.check();
    checker.finish(w.now + 36_000);
    assert_only(&checker, &["L3", "L10", "L4"]);
}

/// An event emitted before the heal phase, then applied `apply_after` ms into it and
/// acknowledged (and forgotten) `ack_after` ms later; the run then converges.
fn late_event(apply_after: u64, ack_after: u64) -> World {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    // Emitted in the fault phase: no L10 history-bound obligation, only L3 from T_q.
    w.emit("a1", &r1, ConnId(1), 0, 0, running());
    w.tick(1_000);
    heal(&mut w);
    w.tick(apply_after);
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 0, EventClass::Applied, running());
    w.tick(ack_after);
    w.ack_events("a1", &r1, ConnId(1), 0, 0);
    w
}

#[test]
fn l3_an_event_applied_after_its_bound_is_reported_although_the_run_converges() {
    // EVENT_RESEND_INTERVAL + Δ = 15 s from T_q: applied at 15.5 s, nothing open at the end.
    let w = late_event(15_500, 1_000);
    let mut checker = w.check();
    let open = checker.obligations(w.now + 1);
    assert!(!open.iter().any(|o| o.starts_with("L3")), "{open:?}");
    // (The actor is still Starting in this history; finish before L4's bound.)
    checker.finish(w.now + 1);
    assert_only(&checker, &["L3"]);
    assert!(checker.violations()[0].detail.contains("applied or classified stale"));
}

#[test]
fn l3_an_event_forgotten_after_its_bound_is_reported_although_the_run_converges() {
    // Applied in time (14 s), forgotten after the further EVENT_ACK_MAX_DELAY + Δ (22 s total).
    let w = late_event(14_000, 8_500);
    let mut checker = w.check();
    checker.finish(w.now + 1);
    assert_only(&checker, &["L3"]);
    assert!(checker.violations()[0].detail.contains("acknowledged and forgotten"));
}

#[test]
fn l3_quiet_when_an_event_is_applied_and_forgotten_within_its_bounds() {
    let w = late_event(14_000, 7_000);
    let mut checker = w.check();
    checker.finish(w.now + 1);
    assert_only(&checker, &[]);
}

#[test]
fn l10_a_heal_phase_event_forgotten_only_after_a_periodic_resend() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    heal(&mut w);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    // demux-first-event-dropped: the first send is lost, the re-send 10 s later is applied.
    w.emit("a1", &r1, ConnId(1), 0, 0, running());
    w.tick(10_000);
    w.step("a1", vec![]);
    w.classify("a1", &r1, 0, 0, EventClass::Applied, running());
    w.tick(2_000);
    w.ack_events("a1", &r1, ConnId(1), 0, 0);
    let mut checker = w.check();
    checker.finish(w.now + 1_000);
    assert_only(&checker, &["L10"]);
}

#[test]
fn l10_quiet_when_a_heal_phase_event_is_acknowledged_within_the_ack_delay() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    heal(&mut w);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.emit_apply("a1", &r1, ConnId(1), 0, 0, running());
    w.tick(2_000);
    w.ack_events("a1", &r1, ConnId(1), 0, 0);
    let mut checker = w.check();
    checker.finish(w.now + 30_000);
    assert_only(&checker, &[]);
}

#[test]
fn l7_a_silent_disconnected_runner_is_never_expired() {
    let mut w = World::new();
    let r1 = rid("r1");
    let epoch = w.connect(&r1, ConnId(1));
    heal(&mut w);
    w.fact(
        &node_of(&r1),
        Fact::RunnerConnClosed { runner: r1.clone(), conn: ConnId(1), reason: "reset".into() },
    );
    w.fact(
        EDGE,
        Fact::EdgeConnClosed { runner: Some(r1.clone()), conn: ConnId(1), reason: "reset".into() },
    );
    w.info(&r1).connected = false;
    w.info(&r1).ready = false;
    let m = w.put_info(&r1);
    w.commit(EDGE, TxnLabel::Teardown, vec![m]);
    w.fact(EDGE, Fact::Teardown { runner: r1.clone(), conn: ConnId(1), epoch, current: true });
    let mut checker = w.check();
    checker.finish(w.now + 27_000);
    assert_only(&checker, &["L7"]);
    // Expired in time: nothing (the process still has L1's longer bound).
    w.tick(20_000);
    w.expire(&r1, vec![]);
    let mut checker = w.check();
    checker.finish(w.now + 1_000);
    assert_only(&checker, &[]);
}

#[test]
fn the_progress_marker_moves_with_progress_only() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    let after_connect = w.check().progress_marker();
    // A reconnect loop that never becomes ready: registrations and metadata, no progress.
    for conn in 2..6 {
        w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(conn) });
        w.fact(EDGE, Fact::SubscriptionConfirmed { runner: r1.clone(), conn: ConnId(conn) });
        w.register(&r1, ConnId(conn));
        w.fact(
            EDGE,
            Fact::EdgeConnClosed {
                runner: Some(r1.clone()),
                conn: ConnId(conn),
                reason: "ws.invalid_packet".into(),
            },
        );
    }
    assert_eq!(w.check().progress_marker(), after_connect);
    w.create_actor("a1", CrashPolicy::Restart);
    assert!(w.check().progress_marker() > after_connect);
}

#[test]
fn memory_stays_bounded_over_many_generations() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    for generation in 0..40 {
        w.sleep_cycle("a1", &r1, ConnId(1), generation);
        w.tick(100);
    }
    let checker = w.check();
    assert_only(&checker, &[]);
    assert!(checker.gens.is_empty(), "{:?}", checker.gens.keys().collect::<Vec<_>>());
    let proc = &checker.procs[&r1];
    assert!(proc.gens.len() <= 1 && proc.events.is_empty() && proc.tombstone_due.is_empty());
    assert!(proc.startups.len() <= 1);
    assert!(checker.idents[&r1].edge_acks.is_empty());
    assert!(checker.conns.values().all(|c| c.fetched.is_empty() && c.first_start.is_empty()));
}

#[test]
fn l2_an_acknowledged_command_that_is_never_deleted() {
    // commands-never-deleted, seen from liveness: the ack arrives, the key stays.
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    heal(&mut w);
    w.allocate("a1", &r1, 0);
    w.send_to_runner(
        ConnId(1),
        &r1,
        p::ToEnvoy::ToEnvoyCommands(vec![wrapper("a1", 0, 0, start_content(None))]),
    );
    w.fact(
        &node_of(&r1),
        Fact::RunnerCommand {
            runner: r1.clone(),
            conn: ConnId(1),
            actor: "a1".into(),
            generation: 0,
            index: 0,
            kind: pegsim_model::fact::CommandKind::Start,
            disposition: pegsim_model::fact::CommandDisposition::Exec,
        },
    );
    w.fact(
        &node_of(&r1),
        Fact::InstanceStart { runner: r1.clone(), actor: "a1".into(), generation: 0 },
    );
    w.fact(
        &node_of(&r1),
        Fact::RunnerAckCommands {
            runner: r1.clone(),
            conn: ConnId(1),
            actor: "a1".into(),
            generation: 0,
            index: 0,
        },
    );
    w.send_to_engine(
        ConnId(1),
        &r1,
        p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
            last_command_checkpoints: vec![cp("a1", 0, 0)],
        }),
    );
    let acked = w.now;
    let mut checker = w.check();
    checker.finish(acked + LIVENESS_DELTA_MS + 1);
    assert_only(&checker, &["L2"]);
    assert!(checker.violations()[0].detail.contains("acknowledged but not deleted"));
}
