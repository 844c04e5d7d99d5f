//! The ping loop (`spec/protocol.md` §6.3): liveness write then ping, pong timeout, eviction and
//! expiry found by the liveness write, store failures skip a tick.

use super::*;
use crate::store::CommitFault;

/// The ping timer among `out`.
fn ping_timer(out: &[EdgeOutput]) -> (u64, EdgeTimer) {
    timers(out).into_iter().find(|(_, t)| matches!(t, EdgeTimer::Ping { .. })).unwrap()
}

/// Fire the ping timer of `out` at its time.
fn tick(rig: &mut Rig, c: &mut EdgeConn, out: &[EdgeOutput]) -> Vec<EdgeOutput> {
    let (at, timer) = ping_timer(out);
    let now = rig.h.now_ms;
    rig.h.advance(at - now);
    rig.timer(c, timer)
}

#[test]
fn each_tick_writes_liveness_then_pings_with_the_wall_clock() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let (mut c, out) = rig.connect(1, "key-1");
    let epoch = c.epoch().unwrap();
    rig.h.take_facts();
    let out = tick(&mut rig, &mut c, &out);
    let wall = rig.h.wall_ms;
    assert_eq!(sent(&out), vec![p::ToEnvoy::ToEnvoyPing(p::ToEnvoyPing { ts: wall })]);
    let facts = rig.h.model_facts();
    assert_eq!(
        facts,
        vec![Fact::LivenessWrite { runner: r.clone(), conn: ConnId(1), epoch, seq: 2 }]
    );
    // The pong's RTT (wall clock) is stored by the next liveness write.
    rig.h.advance(40);
    rig.recv_msg(&mut c, &p::ToRivet::ToRivetPong(p::ToRivetPong { ts: wall }));
    let out = tick(&mut rig, &mut c, &out);
    assert_eq!(kinds(&out), vec!["ToEnvoyPing"]);
    assert_eq!(rig.h.info(&r).unwrap().last_rtt_ms, 40);
    // A pong from the future (skewed clock) is clamped to 0.
    let future = rig.h.wall_ms + 1_000;
    rig.recv_msg(&mut c, &p::ToRivet::ToRivetPong(p::ToRivetPong { ts: future }));
    tick(&mut rig, &mut c, &out);
    assert_eq!(rig.h.info(&r).unwrap().last_rtt_ms, 0);
}

#[test]
fn no_pong_for_the_ping_timeout_closes_with_timed_out() {
    let mut rig = Rig::new();
    let (mut c, mut out) = rig.connect(1, "key-1");
    let start = rig.h.now_ms;
    loop {
        out = tick(&mut rig, &mut c, &out);
        if !closes(&out).is_empty() {
            break;
        }
        assert_eq!(kinds(&out), vec!["ToEnvoyPing"]);
    }
    assert_eq!(closes(&out), vec![CloseReason::TimedOut]);
    assert!(sent(&out).is_empty(), "no ping without a pong in time");
    let waited = rig.h.now_ms - start;
    let timeout = crate::constants::PING_TIMEOUT_MS;
    let step = crate::constants::PING_INTERVAL_MS + crate::constants::PING_JITTER_MS;
    assert!(waited > timeout && waited <= timeout + step, "closed after {waited} ms");
    assert!(!rig.h.info(&runner("key-1")).unwrap().connected);
}

#[test]
fn pongs_keep_the_connection_open() {
    let mut rig = Rig::new();
    let (mut c, mut out) = rig.connect(1, "key-1");
    for _ in 0..10 {
        out = tick(&mut rig, &mut c, &out);
        assert_eq!(kinds(&out), vec!["ToEnvoyPing"]);
        let ts = rig.h.wall_ms;
        rig.recv_msg(&mut c, &p::ToRivet::ToRivetPong(p::ToRivetPong { ts }));
    }
}

#[test]
fn a_lost_eviction_message_is_caught_by_the_liveness_write() {
    let mut rig = Rig::new();
    let (mut c1, out1) = rig.connect(1, "key-1");
    let _c2 = rig.connect(2, "key-1");
    rig.h.take_facts();
    let out = tick(&mut rig, &mut c1, &out1);
    assert_eq!(closes(&out), vec![CloseReason::Eviction]);
    assert!(sent(&out).is_empty(), "no ping without a liveness write");
    assert!(rig.h.model_facts().iter().all(|f| !matches!(f, Fact::LivenessWrite { .. })));
}

#[test]
fn an_expired_runner_is_closed_with_timed_out() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let (mut c, out) = rig.connect(1, "key-1");
    let mut info = rig.h.info(&r).unwrap();
    info.expired = true;
    rig.h.put_info(&r, &info);
    let out = tick(&mut rig, &mut c, &out);
    assert_eq!(closes(&out), vec![CloseReason::TimedOut]);
    assert!(sent(&out).is_empty());
}

#[test]
fn a_store_failure_skips_the_ping_but_keeps_the_loop() {
    let mut rig = Rig::new();
    let (mut c, out) = rig.connect(1, "key-1");
    for _ in 0..crate::env::MAX_TXN_ATTEMPTS {
        rig.h.faults.push_commit(TxnLabel::Liveness, CommitFault::Conflict);
    }
    let out = tick(&mut rig, &mut c, &out);
    assert!(sent(&out).is_empty() && closes(&out).is_empty());
    assert!(rig
        .h
        .model_facts()
        .contains(&Fact::Probe { name: "liveness-write-store-failure".into() }));
    let out = tick(&mut rig, &mut c, &out);
    assert_eq!(kinds(&out), vec!["ToEnvoyPing"]);
}

#[test]
fn a_stale_ping_timer_is_ignored() {
    let mut rig = Rig::new();
    let (mut c, out) = rig.connect(1, "key-1");
    let (_, timer) = ping_timer(&out);
    let next = tick(&mut rig, &mut c, &out);
    assert!(!next.is_empty());
    assert!(rig.timer(&mut c, timer).is_empty(), "the same tick fired twice");
}
