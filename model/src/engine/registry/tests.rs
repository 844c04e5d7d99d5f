//! Registry tests: the choice of a runner, the drainer, expiry, retirement and the monitor's
//! observation windows, through a real store (harness in `engine::actor::testkit`).

use crate::canary::Canaries;
use crate::config::EngineConfig;
use crate::engine::actor::testkit::*;
use crate::engine::registry::{self, RegistryMonitor};
use crate::engine::signal::{self, Signal};
use crate::engine::EngineOutput;
use crate::env::SplitMix;
use crate::fact::{ActorStatus, CrashPolicy, Fact, TxnLabel};
use crate::keys::{self, RunnerId};
use crate::store::{CommitError, ReadMode};

fn choose(w: &mut World) -> Option<RunnerId> {
    w.with_env(|env, _| {
        let mut txn = env.begin();
        let r = registry::choose_runner(env, &mut txn, NS, POOL).unwrap();
        env.abort(txn);
        r.map(|(r, _)| r)
    })
}

#[test]
fn choice_prefers_version_then_free_slots_among_eligible_runners_of_the_pool() {
    let mut w = World::new();
    w.register_runner("v1-big", POOL, 1, 50);
    w.register_runner("v2-small", POOL, 2, 2);
    let big = w.register_runner("v2-big", POOL, 2, 5);
    let draining = w.register_runner("v3-draining", POOL, 3, 5);
    w.update_runner(&draining, |i| i.draining = true);
    let full = w.register_runner("v3-full", POOL, 3, 1);
    w.update_runner(&full, |i| i.used_slots = 1);
    let unready = w.register_runner("v4-unready", POOL, 4, 5);
    w.update_runner(&unready, |i| i.ready = false);
    w.register_runner("v9-other", "other-pool", 9, 5);
    // Eligible with a free slot: v1-big, v2-small, v2-big; the highest version is 2, and
    // v2-big has more free slots.
    assert_eq!(choose(&mut w), Some(big.clone()));
    // Once v2-big has fewer free slots than v2-small, v2-small wins.
    w.update_runner(&big, |i| i.used_slots = 4);
    assert_eq!(choose(&mut w).unwrap().envoy_key, "v2-small");
    // Nothing of version 2 left: version 1.
    w.update_runner(&big, |i| i.used_slots = 5);
    let small = RunnerId::new(NS, "v2-small");
    w.update_runner(&small, |i| i.used_slots = 2);
    assert_eq!(choose(&mut w).unwrap().envoy_key, "v1-big");
    w.update_runner(&RunnerId::new(NS, "v1-big"), |i| i.expired = true);
    assert_eq!(choose(&mut w), None);
}

#[test]
fn ties_are_broken_by_the_seeded_rng_deterministically() {
    let pick = |seed: u64| {
        let mut w = World::new();
        w.register_runner("twin-a", POOL, 1, 3);
        w.register_runner("twin-b", POOL, 1, 3);
        w.rng = SplitMix(seed);
        choose(&mut w).unwrap().envoy_key
    };
    let picks: Vec<String> = (0..64).map(pick).collect();
    assert!(picks.iter().any(|p| p == "twin-a") && picks.iter().any(|p| p == "twin-b"));
    assert_eq!(picks, (0..64).map(pick).collect::<Vec<_>>(), "same seed, same choice");
}

#[test]
fn the_chosen_runners_record_is_read_serializably() {
    let mut w = World::new();
    let r = w.register_runner("runner-a", POOL, 1, 3);
    let result = w.with_env(|env, _| {
        let mut txn = env.begin();
        let mut facts = Vec::new();
        let chosen = registry::allocate_in(env, &mut txn, &mut facts, "a1", NS, POOL, 0).unwrap();
        assert_eq!(chosen, Some(r.clone()));
        // A concurrent liveness write to the chosen runner's record commits first.
        let mut other = env.begin();
        let mut info =
            registry::read_info(env, &mut other, &r, ReadMode::Snapshot).unwrap().unwrap();
        info.liveness_seq += 1;
        registry::write_info(&mut other, &r, &info);
        env.commit(other, TxnLabel::Liveness).unwrap();
        env.commit(txn, TxnLabel::WorkflowStep)
    });
    assert_eq!(result.map(|_| ()), Err(CommitError::Conflict));
}

#[test]
fn drainer_allocates_in_fifo_batches_and_stops_at_the_first_entry_without_a_runner() {
    let mut config = EngineConfig::default();
    config.timing.drain_batch = 2;
    let mut w = World::with(Canaries::NONE, config.clone());
    let actors = ["d0", "d1", "d2", "d3", "d4"];
    for a in actors {
        w.create(a, CrashPolicy::Restart);
        assert_eq!(w.status(a), Some(ActorStatus::Pending));
    }
    let r = w.register_runner("runner-a", POOL, 1, 3);
    let commits_before = drainer_commits(&w);
    let outcome = w.with_env(|env, _| registry::drain(env, &config.timing, NS, POOL)).unwrap();
    assert_eq!(outcome.allocated, 3);
    assert!(outcome.remaining);
    let woken: Vec<EngineOutput> = ["d0", "d1", "d2"]
        .iter()
        .map(|a| EngineOutput::WakeWorkflow { actor: a.to_string() })
        .collect();
    assert_eq!(outcome.outputs, woken);
    // Two transactions: a full batch (d0, d1), then d2 and a stop at d3.
    assert_eq!(drainer_commits(&w) - commits_before, 2);
    assert_eq!(w.allocations(&r), vec![("d0".into(), 0), ("d1".into(), 0), ("d2".into(), 0)]);
    assert_eq!(w.info(&r).unwrap().used_slots, 3);
    for a in ["d0", "d1", "d2"] {
        let inbox = w.with_env(|env, _| {
            let mut txn = env.begin();
            let s = signal::read_inbox(env, &mut txn, a, 8).unwrap();
            env.abort(txn);
            s
        });
        let signals: Vec<Signal> = inbox.into_iter().map(|e| e.signal).collect();
        assert_eq!(signals, vec![Signal::Allocate { runner: r.clone(), generation: 0 }]);
        assert_eq!(w.read(&registry::pending_stamp_key(a)), None);
    }
    for a in ["d3", "d4"] {
        assert!(w.read(&registry::pending_stamp_key(a)).is_some(), "{a} still queued");
    }
    // The workflows take the allocations.
    w.absorb_engine(outcome.outputs);
    for a in ["d0", "d1", "d2"] {
        assert_eq!(w.status(a), Some(ActorStatus::Starting));
    }
    w.check_invariants(&[r], &actors);
    // An empty queue: one read, nothing allocated.
    let mut w2 = World::new();
    let outcome = w2.with_env(|env, _| registry::drain(env, &config.timing, NS, POOL)).unwrap();
    assert_eq!((outcome.allocated, outcome.remaining), (0, false));
}

fn drainer_commits(w: &World) -> usize {
    w.facts.iter().filter(|f| matches!(f, Fact::Commit { label: TxnLabel::Drainer, .. })).count()
}

#[test]
fn expiry_rechecks_the_sequence_and_hands_back_every_allocation() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    w.create("a1", CrashPolicy::Sleep);
    w.create("a2", CrashPolicy::Sleep);
    let seq = w.info(&r).unwrap().liveness_seq;
    // A changed sequence: nothing happens.
    let stale = w.with_env(|env, _| registry::expire(env, &r, seq + 1)).unwrap();
    assert_eq!(stale, None);
    assert!(!w.info(&r).unwrap().expired);
    let lost = w.with_env(|env, _| registry::expire(env, &r, seq)).unwrap();
    assert_eq!(lost, Some(vec![("a1".to_string(), 0), ("a2".to_string(), 0)]));
    let info = w.info(&r).unwrap();
    assert!(info.expired && !info.connected && !info.ready && !info.eligible());
    assert_eq!(w.read(&keys::eligible(NS, POOL, 1, &r)), None);
    // A rerun (after an `unknown` commit, say) finds it expired, changes nothing and hands back
    // the allocations still waiting for their `RunnerLost`, so their workflows are woken again.
    let rerun = w.with_env(|env, _| registry::expire(env, &r, seq)).unwrap();
    assert_eq!(rerun, Some(vec![("a1".to_string(), 0), ("a2".to_string(), 0)]));
    assert!(w.info(&r).unwrap().expired);
    for a in ["a1", "a2"] {
        let out = w.with_env(|env, core| core.on_wake(env, &a.to_string()));
        w.absorb(out);
        assert_eq!(w.status(a), Some(ActorStatus::Sleeping), "crash policy Sleep after Lost");
    }
    w.check_invariants(&[r], &["a1", "a2"]);
}

#[test]
fn retirement_requires_no_connection_no_allocation_and_drain_or_expiry() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    w.write(|t| t.set(keys::runner_metadata_chunk(&r, 0), b"{}".to_vec()));
    let seq = w.info(&r).unwrap().liveness_seq;
    assert!(!w.with_env(|env, _| registry::retire(env, &r, seq)).unwrap(), "connected");
    w.update_runner(&r, |i| {
        i.connected = false;
        i.ready = false;
    });
    assert!(
        !w.with_env(|env, _| registry::retire(env, &r, seq)).unwrap(),
        "neither drained nor expired"
    );
    w.update_runner(&r, |i| i.draining = true);
    // An allocation (written by hand) blocks retirement.
    w.write(|t| t.set(keys::runner_alloc(&r, "a9"), b"0".to_vec()));
    assert!(!w.with_env(|env, _| registry::retire(env, &r, seq)).unwrap(), "an allocation");
    w.write(|t| t.clear(keys::runner_alloc(&r, "a9")));
    assert!(!w.with_env(|env, _| registry::retire(env, &r, seq + 1)).unwrap(), "re-registered");
    assert!(w.with_env(|env, _| registry::retire(env, &r, seq)).unwrap());
    assert_eq!(w.info(&r), None);
    assert_eq!(w.read(&keys::registry_entry(&r)), None);
    assert_eq!(w.read(&keys::runner_metadata_chunk(&r, 0)), None);
    assert!(w.facts.iter().any(|f| matches!(f, Fact::Retired { runner } if *runner == r)));
}

#[test]
fn monitor_windows_restart_on_every_liveness_change_and_on_a_restart() {
    let mut w = World::new();
    let r = w.register_runner("runner-a", POOL, 1, 10);
    let t = w.config.timing.clone();
    let silence = t.runner_lost_threshold_ms + t.fence_margin_ms;
    let mut monitor = RegistryMonitor::new();
    let poll = |w: &mut World, monitor: &mut RegistryMonitor| {
        let timing = t.clone();
        w.with_env(|env, _| monitor.check(env, &timing))
    };
    let t0 = w.now_ms;
    poll(&mut w, &mut monitor);
    assert_eq!(monitor.watched(), 1);
    // A liveness write just before the threshold restarts the window.
    w.now_ms = t0 + silence - 1;
    w.heartbeat(&r);
    poll(&mut w, &mut monitor);
    let t1 = w.now_ms;
    w.now_ms = t1 + silence - 1;
    poll(&mut w, &mut monitor);
    assert!(!w.info(&r).unwrap().expired);
    // A restarted registry starts a fresh window: no expiry at t1 + silence.
    let mut restarted = RegistryMonitor::new();
    poll(&mut w, &mut restarted);
    w.now_ms = t1 + silence;
    poll(&mut w, &mut restarted);
    assert!(!w.info(&r).unwrap().expired, "a restart can only delay expiry");
    // The original monitor expires it at t1 + silence.
    poll(&mut w, &mut monitor);
    assert!(w.info(&r).unwrap().expired);
    assert_eq!(monitor.watched(), 0);
    // Expired, not connected, no allocations: retired after RETIRE_GRACE.
    let t3 = w.now_ms;
    poll(&mut w, &mut monitor);
    w.now_ms = t3 + t.retire_grace_ms - 1;
    poll(&mut w, &mut monitor);
    assert!(w.info(&r).is_some());
    w.now_ms = t3 + t.retire_grace_ms;
    poll(&mut w, &mut monitor);
    assert_eq!(w.info(&r), None, "retired");
    poll(&mut w, &mut monitor);
}
