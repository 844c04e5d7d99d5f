//! Workflow tests: the core node driven through a real store with scripted inputs (see
//! `testkit`). Expected values come from the spec's tables, written out by hand here.

use crate::canary::{Canaries, Canary};
use crate::config::EngineConfig;
use crate::engine::actor::testkit::*;
use crate::engine::actor::{self, run_step, StepKind, StepResult, WorkflowError};
use crate::engine::cmdlog;
use crate::engine::registry;
use crate::engine::signal::{EnqueueResult, Signal};
use crate::fact::{
    ActorStatus, CommandKind, CrashPolicy, Disposition, EndOutcome, EventClass, Fact, TxnLabel,
};
use crate::keys;
use crate::protocol::{
    ActorCheckpoint, ActorCommandKeyData, ActorConfig, Command, CommandStartActor,
    CommandStopActor, CommandWrapper, StopActorReason, StopCode, ToEnvoyConn,
};
use crate::records::Placement;
use crate::store::{CommitFault, KeyRange};
use crate::wire;

fn start_payload(actor: &str, g: u32, create_ts: i64) -> Vec<u8> {
    let start = CommandStartActor {
        config: ActorConfig {
            name: "counter".into(),
            key: Some("k1".into()),
            create_ts,
            input: Some(vec![1u8, 2, 3].into()),
        },
        hibernating_requests: Vec::new(),
        preloaded_kv: None,
    };
    wire::encode_bus(&ToEnvoyConn::ToEnvoyCommands(vec![CommandWrapper {
        checkpoint: ActorCheckpoint { actor_id: actor.to_string().into(), generation: g, index: 0 },
        inner: Command::CommandStartActor(start),
    }]))
}

fn stop_cmd(reason: StopActorReason) -> Command {
    Command::CommandStopActor(CommandStopActor { reason })
}

fn is_start(c: &Command) -> bool {
    matches!(c, Command::CommandStartActor(_))
}

/// A world with one runner and actor `a1` in `Running` on it (generation 0).
fn running_actor(policy: CrashPolicy) -> (World, crate::keys::RunnerId) {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    w.create("a1", policy);
    w.events("a1", &r, &[(0, 0, running())]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Running));
    (w, r)
}

fn end_facts(w: &World, actor: &str) -> Vec<(u32, EndOutcome, Disposition)> {
    w.facts
        .iter()
        .filter_map(|f| match f {
            Fact::EndGeneration { actor: a, generation, outcome, disposition, .. }
                if a == actor =>
            {
                Some((*generation, *outcome, *disposition))
            }
            _ => None,
        })
        .collect()
}

fn persisted(w: &World, actor: &str) -> Vec<(u32, i64, CommandKind)> {
    w.facts
        .iter()
        .filter_map(|f| match f {
            Fact::CommandPersisted { actor: a, generation, index, kind, .. } if a == actor => {
                Some((*generation, *index, *kind))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn create_allocate_run_sleep_and_wake_into_generation_one() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    let create_ts = w.wall();
    w.create("a1", CrashPolicy::Restart);

    // Start persisted at (r, a1, 0, 0) and published with exactly the stored content.
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert_eq!(w.placement("a1"), Some(Placement { runner: r.clone(), generation: 0 }));
    assert_eq!(w.published.len(), 1);
    assert_eq!(w.published[0].runner, r);
    assert_eq!(w.published[0].bytes, start_payload("a1", 0, create_ts));
    assert_eq!(&w.published[0].bytes[..2], &[8, 0], "embedded version header");
    assert_eq!(persisted(&w, "a1"), vec![(0, 0, CommandKind::Start)]);
    assert!(w
        .facts
        .iter()
        .any(|f| matches!(f, Fact::Allocated { actor, generation: 0, .. } if actor == "a1")));
    assert_eq!(w.info(&r).unwrap().used_slots, 1);

    w.events("a1", &r, &[(0, 0, running())]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Running));
    w.events("a1", &r, &[(0, 1, sleep_intent())]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::SleepIntent)));
    let cmds = w.commands_to(&r);
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[1], ("a1".into(), 0, 1, stop_cmd(StopActorReason::SleepIntent)));
    assert_eq!(
        w.stored_command(&r, "a1", 0, 1),
        Some(ActorCommandKeyData::CommandStopActor(CommandStopActor {
            reason: StopActorReason::SleepIntent
        }))
    );

    w.events("a1", &r, &[(0, 2, stopped(StopCode::Ok))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    assert_eq!(w.placement("a1"), None);
    assert!(w.command_keys(&r).is_empty(), "EndGeneration deletes the generation's commands");
    assert!(w.allocations(&r).is_empty());
    assert_eq!(w.info(&r).unwrap().used_slots, 0);
    assert_eq!(w.acks_to(&r), vec![("a1".into(), 0, 2)], "rule 2 acks the Stopped index");
    assert_eq!(end_facts(&w, "a1"), vec![(0, EndOutcome::StoppedOk, Disposition::Sleep)]);

    let out = w.with_env(|env, _| actor::wake_actor(env, &"a1".to_string())).unwrap();
    w.absorb_engine(out);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert_eq!(w.placement("a1"), Some(Placement { runner: r.clone(), generation: 1 }));
    assert_eq!(w.published.last().unwrap().bytes, start_payload("a1", 1, create_ts));
    assert_eq!(
        persisted(&w, "a1"),
        vec![
            (0, 0, CommandKind::Start),
            (0, 1, CommandKind::Stop(StopActorReason::SleepIntent)),
            (1, 0, CommandKind::Start)
        ]
    );
    assert_eq!(
        w.statuses("a1"),
        vec![
            ActorStatus::Starting,
            ActorStatus::Running,
            ActorStatus::Stopping(StopActorReason::SleepIntent),
            ActorStatus::Sleeping,
            ActorStatus::Starting
        ]
    );
    w.check_invariants(&[r], &["a1"]);
}

#[test]
fn acks_follow_rules_one_to_five_and_the_deadline() {
    let mut config = EngineConfig::default();
    config.timing.event_ack_batch_size = 3;
    let mut w = World::with(Canaries::NONE, config.clone());
    let r = w.add_runner("runner-a", 1, 10);
    let r2 = w.add_runner("runner-b", 0, 10);
    w.create("a1", CrashPolicy::Restart);
    assert_eq!(w.placement("a1").unwrap().runner, r, "highest version wins");

    // Rule 5: Running applied, nothing acked yet, deadline armed.
    w.events("a1", &r, &[(0, 0, running())]);
    assert!(w.acks_to(&r).is_empty());
    let deadline = w.state("a1").ack_deadline.unwrap();
    assert_eq!(deadline, w.wall() + config.timing.event_ack_max_delay_ms as i64);
    // A later event does not push the deadline.
    w.advance(500);
    w.events("a1", &r, &[(0, 1, set_alarm(Some(5)))]);
    assert_eq!(w.state("a1").ack_deadline, Some(deadline));
    w.advance(config.timing.event_ack_max_delay_ms - 501);
    assert!(w.acks_to(&r).is_empty(), "not before the deadline");
    w.advance(1);
    assert_eq!(w.acks_to(&r), vec![("a1".into(), 0, 1)], "the deadline acks last");
    assert_eq!(w.state("a1").last_acked, 1);
    assert_eq!(w.state("a1").ack_deadline, None);

    // Rule 3: a duplicate re-acks last, even though last = last_acked.
    w.events("a1", &r, &[(0, 1, set_alarm(Some(5)))]);
    assert_eq!(w.acks_to(&r).len(), 2);
    assert_eq!(w.acks_to(&r)[1], ("a1".into(), 0, 1));
    assert_eq!(w.classified("a1", 0, EventClass::Dup), vec![1]);

    // Gap: dropped, no ack, no effect.
    w.events("a1", &r, &[(0, 3, set_alarm(Some(9)))]);
    assert_eq!(w.classified("a1", 0, EventClass::Gap), vec![3]);
    assert_eq!(w.acks_to(&r).len(), 2);
    assert_eq!(w.state("a1").alarm_ts, Some(5));
    assert_eq!(w.state("a1").last, 1);

    // Rule 4: stale events (another runner, an old generation) are acked to their sender with
    // the highest index seen, and change nothing.
    w.events("a1", &r2, &[(0, 2, set_alarm(Some(7))), (0, 4, set_alarm(Some(8)))]);
    w.events("a1", &r, &[(7, 0, running()), (7, 3, running())]);
    assert_eq!(w.acks_to(&r2), vec![("a1".into(), 0, 4)]);
    assert_eq!(w.acks_to(&r).last().unwrap(), &("a1".into(), 7, 3));
    assert_eq!(w.classified("a1", 0, EventClass::Stale), vec![2, 4]);
    assert_eq!(w.state("a1").last, 1);

    // Rule 1: last - last_acked >= batch size (3) acks at once.
    w.events(
        "a1",
        &r,
        &[(0, 2, set_alarm(None)), (0, 3, set_alarm(None)), (0, 4, set_alarm(None))],
    );
    assert_eq!(w.acks_to(&r).last().unwrap(), &("a1".into(), 0, 4));
    assert_eq!(w.state("a1").ack_deadline, None);
    assert_eq!(w.classified("a1", 0, EventClass::Applied), vec![0, 1, 2, 3, 4]);

    // EventAckPublished for every ack put in the outbox.
    let ack_facts = w.facts.iter().filter(|f| matches!(f, Fact::EventAckPublished { .. })).count();
    assert_eq!(ack_facts, w.acks_to(&r).len() + w.acks_to(&r2).len());
}

#[test]
fn stopped_ends_the_generation_and_later_events_of_the_batch_are_stale() {
    let (mut w, r) = running_actor(CrashPolicy::Sleep);
    w.events(
        "a1",
        &r,
        &[(0, 1, stopped(StopCode::Error)), (0, 2, set_alarm(Some(1))), (0, 3, running())],
    );
    assert_eq!(w.classified("a1", 0, EventClass::Applied), vec![0, 1]);
    assert_eq!(w.classified("a1", 0, EventClass::Stale), vec![2, 3]);
    assert_eq!(w.acks_to(&r), vec![("a1".into(), 0, 3)], "Stopped ack and stale ack merge");
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    assert_eq!(w.state("a1").alarm_ts, None);
}

#[test]
fn destroy_in_every_status() {
    let key = |a: &str| keys::actor_kv_key(a, b"\x01");
    let destroyed = |w: &mut World, a: &str| {
        assert_eq!(w.status(a), Some(ActorStatus::Destroyed));
        assert_eq!(w.read(&keys::actor_namespace(a)), None);
        assert_eq!(w.read(&keys::workflow_entry(a)), None);
        assert_eq!(w.read(&key(a)), None, "keyspace deleted");
        assert_eq!(w.placement(a), None);
        assert!(w.range(&KeyRange::prefix(&keys::actor_inbox_prefix(a))).is_empty());
        let err = w.with_env(|env, _| actor::destroy_actor(env, &a.to_string()));
        assert_eq!(err, Err(WorkflowError::ActorNotFound(a.to_string())));
        let status = w.with_env(|env, _| actor::actor_status(env, &a.to_string()));
        assert_eq!(status, Ok(Some(ActorStatus::Destroyed)), "the state stays as a tombstone");
    };
    let put_kv = |w: &mut World, a: &str| w.write(|t| t.set(key(a), b"v".to_vec()));
    let destroy = |w: &mut World, a: &str| {
        let out = w.with_env(|env, _| actor::destroy_actor(env, &a.to_string())).unwrap();
        w.absorb_engine(out);
    };

    // Pending: leaves the queue, destroyed at once.
    let mut w = World::new();
    w.create("p1", CrashPolicy::Restart);
    assert_eq!(w.status("p1"), Some(ActorStatus::Pending));
    put_kv(&mut w, "p1");
    destroy(&mut w, "p1");
    destroyed(&mut w, "p1");
    assert!(w.range(&KeyRange::prefix(&keys::pending_prefix(NS, POOL))).is_empty());
    assert_eq!(w.read(&registry::pending_stamp_key("p1")), None);

    // Starting and Running: Stop(DESTROY), then Stopped ends in row 1 whatever the code.
    for (actor, run_first, code) in [("s1", false, StopCode::Error), ("r1", true, StopCode::Ok)] {
        let mut w = World::new();
        let r = w.add_runner("runner-a", 1, 10);
        w.create(actor, CrashPolicy::Restart);
        put_kv(&mut w, actor);
        let mut next = 0;
        if run_first {
            w.events(actor, &r, &[(0, 0, running())]);
            next = 1;
        }
        destroy(&mut w, actor);
        assert_eq!(w.status(actor), Some(ActorStatus::Stopping(StopActorReason::Destroy)));
        assert!(w.state(actor).destroy_requested);
        assert_eq!(w.commands_to(&r).last().unwrap().3, stop_cmd(StopActorReason::Destroy));
        w.events(actor, &r, &[(0, next, stopped(code))]);
        destroyed(&mut w, actor);
        assert_eq!(end_facts(&w, actor)[0].2, Disposition::Destroy);
        w.check_invariants(&[r], &[actor]);
    }

    // Stopping: only the flag, no new command; the sleep stop then destroys (row 1 before 2).
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.events("a1", &r, &[(0, 1, sleep_intent())]);
    let before = w.commands_to(&r).len();
    destroy(&mut w, "a1");
    assert_eq!(w.commands_to(&r).len(), before, "first stop reason wins, no second Stop");
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::SleepIntent)));
    w.events("a1", &r, &[(0, 2, stopped(StopCode::Ok))]);
    destroyed(&mut w, "a1");

    // Sleeping.
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.events("a1", &r, &[(0, 1, sleep_intent()), (0, 2, stopped(StopCode::Ok))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    destroy(&mut w, "a1");
    destroyed(&mut w, "a1");

    // Rescheduling: two crashes within RETRY_RESET_MS.
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.events("a1", &r, &[(0, 1, stopped(StopCode::Error))]);
    w.events("a1", &r, &[(1, 0, stopped(StopCode::Error))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Rescheduling));
    destroy(&mut w, "a1");
    destroyed(&mut w, "a1");
    // The backoff timer that was armed finds nothing to do.
    w.advance(w.config.timing.backoff_base_ms * 2);
    assert_eq!(w.status("a1"), Some(ActorStatus::Destroyed));

    // Unknown actor.
    let err = w.with_env(|env, _| actor::destroy_actor(env, &"nobody".to_string()));
    assert_eq!(err, Err(WorkflowError::ActorNotFound("nobody".into())));
    let err = w.with_env(|env, _| actor::actor_status(env, &"nobody".to_string()));
    assert_eq!(err, Err(WorkflowError::ActorNotFound("nobody".into())));
}

#[test]
fn create_rejects_existing_and_invalid_ids() {
    let mut w = World::new();
    w.create("a1", CrashPolicy::Restart);
    let spec = World::spec(CrashPolicy::Restart);
    let dup = w.with_env(|env, _| actor::create_actor(env, &"a1".to_string(), &spec));
    assert_eq!(dup, Err(WorkflowError::ActorExists("a1".into())));
    let bad = w.with_env(|env, _| actor::create_actor(env, &"a/1".to_string(), &spec));
    assert!(matches!(bad, Err(WorkflowError::InvalidActorId { .. })), "{bad:?}");
    let mut big = spec.clone();
    big.input = Some(vec![0; crate::constants::MAX_ACTOR_INPUT_BYTES + 1]);
    let too_big = w.with_env(|env, _| actor::create_actor(env, &"a2".to_string(), &big));
    assert!(matches!(too_big, Err(WorkflowError::InputTooLarge { .. })));
    let created = w.facts.iter().filter(|f| matches!(f, Fact::ActorCreated { .. })).count();
    assert_eq!(created, 1);
}

#[test]
fn create_survives_an_unknown_commit_that_applied() {
    let mut w = World::new();
    w.faults.script.push_back((TxnLabel::ActorCreate, CommitFault::Unknown { applied: true }));
    w.create("a1", CrashPolicy::Restart);
    assert_eq!(w.status("a1"), Some(ActorStatus::Pending));
    let signals = w.state("a1").signals_consumed;
    assert_eq!(signals, 1, "one Create signal");
}

#[test]
fn crash_policy_rows() {
    // (policy, outcome, expected status after, expected disposition)
    let rows = [
        (
            CrashPolicy::Restart,
            EndOutcome::StoppedError,
            ActorStatus::Starting,
            Disposition::Restart,
        ),
        (CrashPolicy::Sleep, EndOutcome::StoppedError, ActorStatus::Sleeping, Disposition::Sleep),
        (
            CrashPolicy::Destroy,
            EndOutcome::StoppedError,
            ActorStatus::Destroyed,
            Disposition::Destroy,
        ),
        (CrashPolicy::Restart, EndOutcome::Lost, ActorStatus::Starting, Disposition::Restart),
        (CrashPolicy::Sleep, EndOutcome::Lost, ActorStatus::Sleeping, Disposition::Sleep),
        (CrashPolicy::Destroy, EndOutcome::Lost, ActorStatus::Destroyed, Disposition::Destroy),
        // Row 4: a clean exit destroys whatever the policy.
        (CrashPolicy::Restart, EndOutcome::StoppedOk, ActorStatus::Destroyed, Disposition::Destroy),
        (CrashPolicy::Sleep, EndOutcome::StoppedOk, ActorStatus::Destroyed, Disposition::Destroy),
    ];
    for (policy, outcome, status, disposition) in rows {
        let (mut w, r) = running_actor(policy);
        match outcome {
            EndOutcome::StoppedOk => w.events("a1", &r, &[(0, 1, stopped(StopCode::Ok))]),
            EndOutcome::StoppedError => w.events("a1", &r, &[(0, 1, stopped(StopCode::Error))]),
            EndOutcome::Lost => {
                let lost = Signal::RunnerLost { runner: r.clone(), generation: 0 };
                assert_eq!(w.deliver("a1", lost), EnqueueResult::Enqueued);
            }
        }
        assert_eq!(w.status("a1"), Some(status), "{policy:?} {outcome:?}");
        assert_eq!(end_facts(&w, "a1"), vec![(0, outcome, disposition)], "{policy:?} {outcome:?}");
        if status == ActorStatus::Starting {
            assert_eq!(w.placement("a1"), Some(Placement { runner: r.clone(), generation: 1 }));
            assert_eq!(w.state("a1").retry_count, 0);
            // CrashRestart that found capacity: no pending deadline involved.
            assert_eq!(w.state("a1").pending_deadline, None);
        }
        w.check_invariants(&[r], &["a1"]);
    }

    // A stop for STOP_INTENT that ends OK is a clean exit (row 4); LOST that ends OK is a crash
    // (row 5).
    let (mut w, r) = running_actor(CrashPolicy::Sleep);
    w.events("a1", &r, &[(0, 1, stop_intent()), (0, 2, stopped(StopCode::Ok))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Destroyed));
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    w.create("a1", CrashPolicy::Sleep);
    w.advance(w.config.timing.actor_start_threshold_ms);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::Lost)));
    assert_eq!(w.commands_to(&r).last().unwrap().3, stop_cmd(StopActorReason::Lost));
    w.events("a1", &r, &[(0, 0, stopped(StopCode::Ok))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    assert_eq!(end_facts(&w, "a1"), vec![(0, EndOutcome::StoppedOk, Disposition::Sleep)]);
}

#[test]
fn restart_backoff_grows_and_the_retry_count_resets() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    let t = w.config.timing.clone();
    // First crash: retry_count 0, immediate restart.
    w.events("a1", &r, &[(0, 1, stopped(StopCode::Error))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert_eq!(w.state("a1").retry_count, 0);
    // Crashes n = 1, 2, 3 within RETRY_RESET_MS: backoff base × 2^(n-1) + jitter.
    for (n, g) in [(1u32, 1u32), (2, 2), (3, 3)] {
        w.advance(10);
        let now = w.wall();
        w.events("a1", &r, &[(g, 0, stopped(StopCode::Error))]);
        let s = w.state("a1");
        assert_eq!(s.status, Some(ActorStatus::Rescheduling));
        assert_eq!(s.retry_count, n);
        let base = t.backoff_base_ms as i64 * (1 << (n - 1));
        let until = s.backoff_until.unwrap();
        assert!(until >= now + base && until < now + base + t.backoff_jitter_ms as i64, "n={n}");
        assert_eq!(end_facts(&w, "a1").last().unwrap().2, Disposition::Reschedule);
        w.advance((until - now) as u64 - 1);
        assert_eq!(w.status("a1"), Some(ActorStatus::Rescheduling), "not before backoff_until");
        w.advance(1);
        assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
        assert_eq!(w.placement("a1").unwrap().generation, g + 1);
    }
    // Quiet for longer than RETRY_RESET_MS: the count resets and the restart is immediate.
    w.events("a1", &r, &[(4, 0, running())]);
    w.advance(t.retry_reset_ms + 1);
    w.events("a1", &r, &[(4, 1, stopped(StopCode::Error))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert_eq!(w.state("a1").retry_count, 0);
    assert_eq!(end_facts(&w, "a1").last().unwrap().2, Disposition::Restart);
    // A migration that stops OK also resets the count (Stopped OK before the disposition).
    w.events("a1", &r, &[(5, 0, stopped(StopCode::Error))]);
    assert_eq!(w.state("a1").retry_count, 1);
    w.advance(t.backoff_base_ms + t.backoff_jitter_ms);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    w.deliver("a1", Signal::GoingAway { runner: r.clone(), generation: 6 });
    w.events("a1", &r, &[(6, 0, stopped(StopCode::Ok))]);
    assert_eq!(w.state("a1").retry_count, 0);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
}

#[test]
fn backoff_exponent_is_capped() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    w.create("a1", CrashPolicy::Restart);
    let t = w.config.timing.clone();
    // Crash repeatedly without waiting out RETRY_RESET_MS; each restart follows its backoff.
    let mut g = 0;
    w.events("a1", &r, &[(g, 0, stopped(StopCode::Error))]);
    g += 1;
    for n in 1..=(t.backoff_max_exponent + 3) {
        let now = w.wall();
        w.events("a1", &r, &[(g, 0, stopped(StopCode::Error))]);
        let s = w.state("a1");
        assert_eq!(s.retry_count, n);
        let exp = (n - 1).min(t.backoff_max_exponent);
        let base = t.backoff_base_ms as i64 * (1i64 << exp);
        let until = s.backoff_until.unwrap();
        assert!(until >= now + base && until < now + base + t.backoff_jitter_ms as i64);
        w.advance((until - now) as u64);
        assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
        g += 1;
        if n == t.backoff_max_exponent + 3 {
            // 2^8 × 2 s is the cap: the quiet period (512 s) is shorter than RETRY_RESET_MS.
            assert!((base as u64) < t.retry_reset_ms);
        }
    }
}

#[test]
fn pending_queue_waits_for_capacity_in_fifo_order() {
    let mut w = World::new();
    for a in ["q1", "q2", "q3"] {
        w.create(a, CrashPolicy::Restart);
        assert_eq!(w.status(a), Some(ActorStatus::Pending));
        assert_eq!(w.state(a).pending_deadline, None, "Normal allocations have no deadline");
    }
    let enq =
        w.facts.iter().filter(|f| matches!(f, Fact::PendingEnqueue { generation: 0, .. })).count();
    assert_eq!(enq, 3);
    // A runner with two slots appears: the two oldest are allocated, in order.
    let r = w.add_runner("runner-a", 1, 2);
    assert_eq!(w.status("q1"), Some(ActorStatus::Starting));
    assert_eq!(w.status("q2"), Some(ActorStatus::Starting));
    assert_eq!(w.status("q3"), Some(ActorStatus::Pending));
    let order: Vec<String> = w
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::PendingDequeue { actor, .. } => Some(actor.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["q1", "q2"]);
    let starts: Vec<_> = w.commands_to(&r).into_iter().map(|(a, g, i, _)| (a, g, i)).collect();
    assert_eq!(starts, vec![("q1".into(), 0, 0), ("q2".into(), 0, 0)]);
    w.check_invariants(std::slice::from_ref(&r), &["q1", "q2", "q3"]);
    // A slot frees up: the generation's end triggers the drainer.
    w.events("q1", &r, &[(0, 0, stopped(StopCode::Ok))]);
    assert_eq!(w.status("q3"), Some(ActorStatus::Starting));
    w.check_invariants(&[r], &["q1", "q2", "q3"]);
}

#[test]
fn the_recheck_drains_and_an_actor_queues_behind_a_non_empty_queue() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 5);
    // The runner becomes eligible again without a drainer trigger: the periodic recheck drains.
    w.update_runner(&r, |i| i.ready = false);
    w.create("q1", CrashPolicy::Restart);
    assert_eq!(w.status("q1"), Some(ActorStatus::Pending));
    w.update_runner(&r, |i| i.ready = true);
    w.advance(w.config.timing.pending_recheck_interval_ms - 1);
    assert_eq!(w.status("q1"), Some(ActorStatus::Pending));
    w.advance(1);
    assert_eq!(w.status("q1"), Some(ActorStatus::Starting));
    // With q2 queued, q3 does not allocate directly although a slot is free: it queues behind.
    w.update_runner(&r, |i| i.ready = false);
    w.create("q2", CrashPolicy::Restart);
    w.update_runner(&r, |i| i.ready = true);
    w.create("q3", CrashPolicy::Restart);
    let enqueued: Vec<String> = w
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::PendingEnqueue { actor, .. } => Some(actor.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(enqueued, vec!["q1", "q2", "q3"]);
    let allocated: Vec<String> = w
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Allocated { actor, .. } => Some(actor.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(allocated, vec!["q1", "q2", "q3"], "FIFO through the drainer");
    assert_eq!(w.status("q3"), Some(ActorStatus::Starting));
    w.check_invariants(&[r], &["q1", "q2", "q3"]);
}

#[test]
fn crash_restart_without_capacity_sleeps_at_the_pending_deadline() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.update_runner(&r, |i| {
        i.connected = false;
        i.ready = false;
    });
    w.deliver("a1", Signal::RunnerLost { runner: r.clone(), generation: 0 });
    let s = w.state("a1");
    assert_eq!(s.status, Some(ActorStatus::Pending));
    assert_eq!(s.pending_generation, Some(1));
    let timeout = w.config.timing.restart_pending_timeout_ms;
    assert_eq!(s.pending_deadline, Some(w.wall() + timeout as i64));
    w.advance(timeout - 1);
    assert_eq!(w.status("a1"), Some(ActorStatus::Pending));
    w.advance(1);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    assert!(w.range(&KeyRange::prefix(&keys::pending_prefix(NS, POOL))).is_empty());
    assert_eq!(w.read(&registry::pending_stamp_key("a1")), None);
    // The runner comes back: nothing is allocated for the sleeping actor; a wake allocates g1.
    w.update_runner(&r, |i| {
        i.connected = true;
        i.ready = true;
    });
    w.advance(w.config.timing.pending_recheck_interval_ms);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    w.deliver("a1", Signal::Wake);
    assert_eq!(w.placement("a1"), Some(Placement { runner: r.clone(), generation: 1 }));
    w.check_invariants(&[r], &["a1"]);
}

#[test]
fn leaving_pending_after_the_drainer_allocated_undoes_the_allocation() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.update_runner(&r, |i| i.ready = false);
    w.deliver("a1", Signal::RunnerLost { runner: r.clone(), generation: 0 });
    assert_eq!(w.status("a1"), Some(ActorStatus::Pending));
    w.update_runner(&r, |i| i.ready = true);
    // The drainer allocates, but its Allocate signal is not processed before the deadline.
    let timing = w.config.timing.clone();
    let outcome = w.with_env(|env, _| registry::drain(env, &timing, NS, POOL)).unwrap();
    assert_eq!(outcome.allocated, 1);
    assert_eq!(w.placement("a1"), Some(Placement { runner: r.clone(), generation: 1 }));
    w.now_ms += timing.restart_pending_timeout_ms;
    let config = w.config.clone();
    let step = w.with_env(|env, core| {
        let _ = core;
        run_step(env, &config, "a1", u64::MAX, StepKind::Timer)
    });
    assert!(matches!(step, Ok(StepResult::Committed { .. })), "{step:?}");
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    assert_eq!(w.placement("a1"), None);
    assert_eq!(w.info(&r).unwrap().used_slots, 0);
    assert_eq!(w.probes("leave-pending-after-drain"), 1);
    // The late Allocate is ignored; no Start was ever written for generation 1.
    let out = w.with_env(|env, core| core.on_wake(env, &"a1".to_string()));
    w.absorb(out);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    assert_eq!(w.probes("allocate-signal-ignored"), 1);
    assert!(!persisted(&w, "a1").contains(&(1, 0, CommandKind::Start)));
    w.check_invariants(&[r], &["a1"]);
}

#[test]
fn going_away_migrates_to_another_runner() {
    let (mut w, r1) = running_actor(CrashPolicy::Destroy);
    let r2 = w.add_runner("runner-b", 0, 10);
    w.drain_runner(&r1);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::GoingAway)));
    assert_eq!(w.commands_to(&r1).last().unwrap().3, stop_cmd(StopActorReason::GoingAway));
    // A second GoingAway and intents change nothing (first reason wins).
    w.deliver("a1", Signal::GoingAway { runner: r1.clone(), generation: 0 });
    w.events("a1", &r1, &[(0, 1, sleep_intent())]);
    assert_eq!(persisted(&w, "a1").len(), 2);
    // Even an ERROR stop migrates (row 3 before the crash policy).
    w.events("a1", &r1, &[(0, 2, stopped(StopCode::Error))]);
    assert_eq!(end_facts(&w, "a1"), vec![(0, EndOutcome::StoppedError, Disposition::Allocate)]);
    assert_eq!(w.placement("a1"), Some(Placement { runner: r2.clone(), generation: 1 }));
    assert!(is_start(&w.commands_to(&r2)[0].3));
    w.check_invariants(&[r1, r2], &["a1"]);
}

#[test]
fn mismatching_registry_signals_are_ignored() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    let other = crate::keys::RunnerId::new(NS, "someone-else");
    let before = w.state("a1");
    w.deliver("a1", Signal::GoingAway { runner: other.clone(), generation: 0 });
    w.deliver("a1", Signal::RunnerLost { runner: r.clone(), generation: 3 });
    w.deliver("a1", Signal::Allocate { runner: r.clone(), generation: 1 });
    w.deliver("a1", Signal::Wake);
    w.deliver("a1", Signal::Create);
    let after = w.state("a1");
    assert_eq!(after.status, before.status);
    assert_eq!(after.placement, before.placement);
    assert_eq!(after.cmd_next, before.cmd_next);
}

#[test]
fn expiry_hands_allocations_back_and_the_actor_restarts_on_another_runner() {
    let mut w = World::new();
    let r1 = w.add_runner("runner-a", 2, 10);
    let r2 = w.add_runner("runner-b", 1, 10);
    w.silence(&r1);
    w.create("a1", CrashPolicy::Restart);
    assert_eq!(w.placement("a1").unwrap().runner, r1, "highest version first");
    w.events("a1", &r1, &[(0, 0, running())]);
    let t = w.config.timing.clone();
    let silence = t.runner_lost_threshold_ms + t.fence_margin_ms;
    // The core booted at 1 000 and polls every interval; the first poll sees r1's sequence for
    // the first time, so r1 expires at the first poll at least `silence` later.
    let first_poll = 1_000 + t.lost_check_interval_ms;
    w.advance(first_poll + silence - 1 - w.now_ms);
    assert!(!w.info(&r1).unwrap().expired, "not expired before the threshold");
    assert_eq!(w.status("a1"), Some(ActorStatus::Running));
    w.advance(1);
    let info = w.info(&r1).unwrap();
    assert!(info.expired && !info.connected && !info.ready);
    assert_eq!(w.read(&keys::eligible(NS, POOL, 2, &r1)), None);
    let expected = vec![("a1".to_string(), 0)];
    assert!(w.facts.iter().any(
        |f| matches!(f, Fact::Expired { runner, lost } if *runner == r1 && *lost == expected)
    ));
    assert!(!w.info(&r2).unwrap().expired);
    assert_eq!(end_facts(&w, "a1"), vec![(0, EndOutcome::Lost, Disposition::Restart)]);
    assert_eq!(w.placement("a1"), Some(Placement { runner: r2.clone(), generation: 1 }));
    assert_eq!(w.commands_to(&r2)[0].1, 1);
    w.check_invariants(&[r1, r2], &["a1"]);
}

#[test]
fn stop_deadline_republishes_persisted_commands() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    let t = w.config.timing.clone();
    let grace = t.actor_stop_threshold_ms + t.stop_grace_ms;
    w.events("a1", &r, &[(0, 1, sleep_intent())]);
    let deadline = w.state("a1").deadline.unwrap();
    assert_eq!(deadline, w.wall() + grace as i64);
    let n = w.commands_to(&r).len();
    w.advance(grace - 1);
    assert_eq!(w.commands_to(&r).len(), n, "nothing before the deadline");
    w.advance(1);
    let again: Vec<_> =
        w.commands_to(&r)[n..].iter().map(|(a, g, i, _)| (a.clone(), *g, *i)).collect();
    assert_eq!(again, vec![("a1".into(), 0, 0), ("a1".into(), 0, 1)]);
    assert_eq!(w.state("a1").deadline, Some(deadline + grace as i64));
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::SleepIntent)));
    // The runner acknowledged the Start: only the Stop is re-published next time.
    w.with_env(|env, _| {
        let mut txn = env.begin();
        cmdlog::delete_acked(env, &mut txn, &r, "a1", 0, 0);
        env.commit(txn, TxnLabel::CommandAck).unwrap();
    });
    let n = w.commands_to(&r).len();
    w.advance(grace);
    let again: Vec<_> =
        w.commands_to(&r)[n..].iter().map(|(a, g, i, _)| (a.clone(), *g, *i)).collect();
    assert_eq!(again, vec![("a1".into(), 0, 1)]);
    assert_eq!(persisted(&w, "a1").len(), 2, "re-publishing persists nothing");
}

#[test]
fn core_restart_flushes_the_outbox_and_rearms_timers() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    let spec = World::spec(CrashPolicy::Restart);
    let a1 = "a1".to_string();
    // The core commits the allocation step, then crashes before publishing or arming anything.
    w.with_env(|env, core| {
        actor::create_actor(env, &a1, &spec).unwrap();
        core.on_wake(env, &a1);
    });
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert!(w.published.is_empty());
    w.advance(10_000);
    w.boot();
    assert_eq!(w.commands_to(&r).len(), 1, "the outbox is flushed at start");
    assert!(is_start(&w.commands_to(&r)[0].3));
    // The start deadline (absolute, from the durable state) is re-armed on the new core.
    let deadline = w.state("a1").deadline.unwrap();
    let at = w.now_ms + (deadline - w.wall()) as u64;
    assert!(w
        .timers
        .iter()
        .any(|(t, timer)| *t == at
            && matches!(timer, crate::engine::core::CoreTimer::Workflow { .. })));
    w.advance(at - w.now_ms);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::Lost)));
    // A signal left in the inbox by the crash is processed at start too.
    w.with_env(|env, _| {
        crate::engine::signal::deliver(env, &a1, &Signal::Destroy).unwrap();
    });
    w.boot();
    assert!(w.state("a1").destroy_requested);
}

#[test]
fn unknown_commit_of_a_step_applies_nothing_twice() {
    for applied in [true, false] {
        let (mut w, r) = running_actor(CrashPolicy::Restart);
        w.faults.script.push_back((TxnLabel::WorkflowStep, CommitFault::Unknown { applied }));
        w.events("a1", &r, &[(0, 1, sleep_intent())]);
        assert!(w.faults.script.is_empty(), "the fault was used");
        assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::SleepIntent)));
        assert_eq!(w.classified("a1", 0, EventClass::Applied), vec![0, 1], "applied={applied}");
        let stops: Vec<_> = persisted(&w, "a1").into_iter().filter(|(_, i, _)| *i == 1).collect();
        assert_eq!(stops.len(), 1);
        let published: Vec<_> = w.commands_to(&r).into_iter().filter(|c| c.2 == 1).collect();
        assert_eq!(published.len(), 1, "the Stop is published once");
        assert_eq!(w.state("a1").signals_consumed, 3);
        assert!(w
            .facts
            .iter()
            .any(|f| matches!(f, Fact::CommitFailed { label: TxnLabel::WorkflowStep, .. })));
    }
    // A conflict is retried.
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.faults.script.push_back((TxnLabel::WorkflowStep, CommitFault::Conflict));
    w.events("a1", &r, &[(0, 1, stop_intent())]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::StopIntent)));
}

#[test]
fn a_step_that_keeps_failing_is_retried_later() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    for _ in 0..crate::env::MAX_TXN_ATTEMPTS {
        w.faults.script.push_back((TxnLabel::WorkflowStep, CommitFault::Conflict));
    }
    w.events("a1", &r, &[(0, 1, stop_intent())]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Running));
    assert_eq!(w.probes("workflow-step-error"), 1);
    w.advance(crate::engine::core::STEP_RETRY_DELAY_MS);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::StopIntent)));
}

#[test]
fn event_filter_canary_applies_gaps_and_drops_older_events() {
    let run = |canaries: Canaries| {
        let mut w = World::with(canaries, EngineConfig::default());
        let r = w.add_runner("runner-a", 1, 10);
        w.create("a1", CrashPolicy::Restart);
        w.events("a1", &r, &[(0, 0, running())]);
        w.events("a1", &r, &[(0, 2, set_alarm(Some(2)))]);
        w.events("a1", &r, &[(0, 1, set_alarm(Some(1)))]);
        (w.classified("a1", 0, EventClass::Applied), w.classified("a1", 0, EventClass::Dup))
    };
    assert_eq!(run(Canaries::NONE), (vec![0, 1], vec![]));
    assert_eq!(run(Canaries::only(Canary::EventFilterDropsOutOfOrder)), (vec![0, 2], vec![1]));
}

#[test]
fn event_batch_duplicate_canary_applies_a_repeated_checkpoint_twice() {
    let run = |canaries: Canaries| {
        let mut w = World::with(canaries, EngineConfig::default());
        let r = w.add_runner("runner-a", 1, 10);
        w.create("a1", CrashPolicy::Restart);
        w.events(
            "a1",
            &r,
            &[(0, 0, running()), (0, 1, set_alarm(Some(1))), (0, 1, set_alarm(Some(1)))],
        );
        // A duplicate across batches is still a duplicate.
        w.events("a1", &r, &[(0, 0, running())]);
        (w.classified("a1", 0, EventClass::Applied), w.classified("a1", 0, EventClass::Dup))
    };
    assert_eq!(run(Canaries::NONE), (vec![0, 1], vec![1, 0]));
    assert_eq!(run(Canaries::only(Canary::EventBatchDuplicateApplied)), (vec![0, 1, 1], vec![0]));
}

#[test]
fn preload_bundle_persisted_canary_stores_the_bundle_in_the_start() {
    for on in [false, true] {
        let canaries =
            if on { Canaries::only(Canary::PreloadBundlePersisted) } else { Canaries::NONE };
        let mut w = World::with(canaries, EngineConfig::default());
        let r = w.add_runner("runner-a", 1, 10);
        w.create("a1", CrashPolicy::Restart);
        let Some(ActorCommandKeyData::CommandStartActor(start)) = w.stored_command(&r, "a1", 0, 0)
        else {
            panic!("a stored Start");
        };
        // The actor's keyspace is empty, so a fetch yields the empty-keyspace bundle.
        let expected = on.then(crate::protocol::preloaded_kv::empty_keyspace);
        assert_eq!(start.preloaded_kv, expected, "canary {on}");
        // The publish carries the stored content.
        let Command::CommandStartActor(published) = &w.commands_to(&r)[0].3 else { panic!() };
        assert_eq!(published.preloaded_kv, expected);
    }
}

#[test]
fn commands_never_deleted_canary_keeps_ended_generations() {
    for on in [false, true] {
        let canaries =
            if on { Canaries::only(Canary::CommandsNeverDeleted) } else { Canaries::NONE };
        let mut w = World::with(canaries, EngineConfig::default());
        let r = w.add_runner("runner-a", 1, 10);
        w.create("a1", CrashPolicy::Restart);
        w.events("a1", &r, &[(0, 0, running()), (0, 1, sleep_intent())]);
        w.events("a1", &r, &[(0, 2, stopped(StopCode::Ok))]);
        let expected =
            if on { vec![("a1".to_string(), 0, 0), ("a1".to_string(), 0, 1)] } else { vec![] };
        assert_eq!(w.command_keys(&r), expected);
    }
}

#[test]
fn alarm_wakes_a_sleeping_actor_and_is_ignored_while_allocated() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    let alarm = w.wall() + 60_000;
    w.events("a1", &r, &[(0, 1, set_alarm(Some(alarm)))]);
    assert_eq!(w.state("a1").alarm_ts, Some(alarm));
    assert_eq!(
        w.state("a1").next_deadline(),
        w.state("a1").ack_deadline,
        "no alarm timer while allocated"
    );
    w.events("a1", &r, &[(0, 2, sleep_intent()), (0, 3, stopped(StopCode::Ok))]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    w.advance((alarm - w.wall()) as u64 - 1);
    assert_eq!(w.status("a1"), Some(ActorStatus::Sleeping));
    w.advance(1);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert_eq!(w.state("a1").alarm_ts, None);
    assert_eq!(w.placement("a1").unwrap().generation, 1);
}

#[test]
fn wake_during_a_sleep_stop_reallocates_at_the_end() {
    let (mut w, r) = running_actor(CrashPolicy::Restart);
    w.events("a1", &r, &[(0, 1, sleep_intent())]);
    w.deliver("a1", Signal::Wake);
    assert!(w.state("a1").wake_pending);
    w.events("a1", &r, &[(0, 2, stopped(StopCode::Ok))]);
    assert_eq!(end_facts(&w, "a1"), vec![(0, EndOutcome::StoppedOk, Disposition::Allocate)]);
    assert_eq!(w.status("a1"), Some(ActorStatus::Starting));
    assert!(!w.state("a1").wake_pending, "cleared by EndGeneration");
    assert_eq!(w.placement("a1").unwrap().generation, 1);
}

#[test]
fn running_while_stopping_only_marks_ran() {
    let mut w = World::new();
    let r = w.add_runner("runner-a", 1, 10);
    w.create("a1", CrashPolicy::Restart);
    w.deliver("a1", Signal::Destroy);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::Destroy)));
    // Running while Stopping: ran = true, status unchanged.
    w.events("a1", &r, &[(0, 0, running())]);
    assert!(w.state("a1").ran);
    assert_eq!(w.status("a1"), Some(ActorStatus::Stopping(StopActorReason::Destroy)));
}

/// Random scenarios: events emitted by an emulated runner and delivered in random windows
/// (duplicated, reversed, from old generations), wakes, destroys, lost and going-away signals,
/// runner readiness changes and time. After every operation the store and the history must
/// satisfy S2, S4, S5, S15, S16 and S18, checked here from the store and the facts alone.
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::keys::RunnerId;
    use crate::protocol::Event;

    #[derive(Clone, Debug)]
    enum Op {
        Emit { actor: usize, kind: u8 },
        Deliver { actor: usize, back: usize, start: usize, len: usize, dup: bool, reverse: bool },
        Wake { actor: usize },
        Destroy { actor: usize },
        Lost { actor: usize },
        GoingAway { actor: usize },
        Ready { runner: usize, ready: bool },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3usize, 0..6u8).prop_map(|(actor, kind)| Op::Emit { actor, kind }),
            6 => (0..3usize, 0..3usize, 0..8usize, 1..6usize, any::<bool>(), any::<bool>())
                .prop_map(|(actor, back, start, len, dup, reverse)| Op::Deliver {
                    actor, back, start, len, dup, reverse
                }),
            2 => (0..3usize).prop_map(|actor| Op::Wake { actor }),
            1 => (0..3usize).prop_map(|actor| Op::Destroy { actor }),
            1 => (0..3usize).prop_map(|actor| Op::Lost { actor }),
            1 => (0..3usize).prop_map(|actor| Op::GoingAway { actor }),
            1 => (0..2usize, any::<bool>()).prop_map(|(runner, ready)| Op::Ready { runner, ready }),
            2 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    fn event(kind: u8) -> Event {
        match kind {
            0 => running(),
            1 => sleep_intent(),
            2 => stop_intent(),
            3 => set_alarm(Some(1)),
            4 => stopped(StopCode::Ok),
            _ => stopped(StopCode::Error),
        }
    }

    fn is_stopped(e: &Event) -> bool {
        e == &stopped(StopCode::Ok) || e == &stopped(StopCode::Error)
    }

    /// The emulated runner's event history of one `(A, g)`: the host and the events by index.
    type Histories = BTreeMap<(String, u32), (RunnerId, Vec<Event>)>;

    fn check(w: &mut World, runners: &[RunnerId], actors: &[&str], histories: &Histories) {
        w.check_invariants(runners, actors);
        for a in actors {
            // S2: persisted Starts carry 0, 1, 2, … each once.
            let starts: Vec<u32> = persisted(w, a)
                .into_iter()
                .filter(|(_, i, k)| *i == 0 && *k == CommandKind::Start)
                .map(|(g, _, _)| g)
                .collect();
            assert_eq!(starts, (0..starts.len() as u32).collect::<Vec<_>>(), "S2 for {a}");
            for g in 0..starts.len() as u32 {
                // S4: applied indices are exactly 0..=k in order.
                let applied = w.classified(a, g, EventClass::Applied);
                assert_eq!(applied, (0..applied.len() as i64).collect::<Vec<_>>(), "S4 {a} g{g}");
            }
        }
        // S5: every applied event is the one the instance emitted at that index.
        for f in &w.facts {
            if let Fact::EventClassified {
                actor,
                generation,
                index,
                class: EventClass::Applied,
                event,
                runner,
            } = f
            {
                let (host, events) = &histories[&(actor.clone(), *generation)];
                assert_eq!(host, runner);
                assert_eq!(&events[*index as usize], event, "S5");
            }
        }
        // S18: command keys belong to current placements only, at most two per allocation.
        for r in runners {
            let keys = w.command_keys(r);
            assert!(keys.len() <= 2 * w.allocations(r).len(), "S18 bound");
            for (a, g, i) in keys {
                assert_eq!(w.placement(&a), Some(Placement { runner: r.clone(), generation: g }));
                assert!(i == 0 || i == 1, "S6 indices");
            }
        }
    }

    fn run(policies: [CrashPolicy; 3], ops: Vec<Op>) {
        let mut w = World::new();
        let runners = vec![w.add_runner("runner-a", 1, 2), w.add_runner("runner-b", 1, 2)];
        let actors = ["a0", "a1", "a2"];
        for (a, p) in actors.iter().zip(policies) {
            w.create(a, p);
        }
        let mut histories: Histories = BTreeMap::new();
        for op in ops {
            match op {
                Op::Emit { actor, kind } => {
                    let a = actors[actor];
                    if let Some(p) = w.placement(a) {
                        let (_, events) = histories
                            .entry((a.to_string(), p.generation))
                            .or_insert_with(|| (p.runner.clone(), Vec::new()));
                        if !events.last().is_some_and(is_stopped) {
                            events.push(event(kind));
                        }
                    }
                }
                Op::Deliver { actor, back, start, len, dup, reverse } => {
                    let a = actors[actor];
                    let mine: Vec<_> = histories.iter().filter(|((x, _), _)| x == a).collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let ((_, g), (host, events)) = mine[mine.len() - 1 - back % mine.len()];
                    if events.is_empty() {
                        continue;
                    }
                    let from = start % events.len();
                    let to = (from + len).min(events.len());
                    let mut batch: Vec<(u32, i64, Event)> =
                        (from..to).map(|i| (*g, i as i64, events[i].clone())).collect();
                    if reverse {
                        batch.reverse();
                    }
                    if dup {
                        batch.extend(batch.clone());
                    }
                    let host = host.clone();
                    w.events(a, &host, &batch);
                }
                Op::Wake { actor } => {
                    w.deliver(actors[actor], Signal::Wake);
                }
                Op::Destroy { actor } => {
                    w.deliver(actors[actor], Signal::Destroy);
                }
                Op::Lost { actor } | Op::GoingAway { actor } => {
                    let a = actors[actor];
                    if let Some(p) = w.placement(a) {
                        let signal = if matches!(op, Op::Lost { .. }) {
                            Signal::RunnerLost { runner: p.runner, generation: p.generation }
                        } else {
                            Signal::GoingAway { runner: p.runner, generation: p.generation }
                        };
                        w.deliver(a, signal);
                    }
                }
                Op::Ready { runner, ready } => {
                    let r = runners[runner].clone();
                    w.update_runner(&r, |i| i.ready = ready);
                    if ready {
                        let out = w.with_env(|env, core| core.on_trigger_drainer(env, NS, POOL));
                        w.absorb(out);
                    }
                }
                Op::Advance { ms } => w.advance(ms),
            }
            check(&mut w, &runners, &actors, &histories);
        }
    }

    fn policy() -> impl Strategy<Value = CrashPolicy> {
        prop_oneof![
            Just(CrashPolicy::Restart),
            Just(CrashPolicy::Sleep),
            Just(CrashPolicy::Destroy)
        ]
    }

    proptest! {
        #[test]
        fn random_scenarios_keep_the_workflow_invariants(
            policies in [policy(), policy(), policy()],
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            run(policies, ops);
        }
    }
}
