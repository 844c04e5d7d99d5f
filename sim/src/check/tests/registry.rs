//! S12 (epochs), S13, S14, S15, S16, S17.

use pegsim_model::fact::{
    ActorStatus, ConnId, CrashPolicy, Disposition, DispositionInputs, EndOutcome, Fact, TxnLabel,
};
use pegsim_model::keys;
use pegsim_model::protocol as p;
use pegsim_model::protocol::StopActorReason as Reason;

use super::support::*;
use crate::check::generations::allowed_dispositions;

#[test]
fn s12_metadata_of_a_superseded_connection_commits() {
    let mut w = World::new();
    let r1 = rid("r1");
    let old = w.connect(&r1, ConnId(1));
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(2) });
    w.fact(EDGE, Fact::SubscriptionConfirmed { runner: r1.clone(), conn: ConnId(2) });
    w.register(&r1, ConnId(2));
    w.commit(
        EDGE,
        TxnLabel::Metadata,
        vec![set(keys::actor_name_metadata(NS, NAME), b"{}".to_vec())],
    );
    w.fact(EDGE, Fact::MetadataCommitted { runner: r1.clone(), conn: ConnId(1), epoch: old });
    assert_only(&w.check(), &["S12"]);
}

#[test]
fn s12_an_epoch_that_goes_backwards() {
    let mut w = World::new();
    let r1 = rid("r1");
    let first = w.connect(&r1, ConnId(1));
    w.connect(&r1, ConnId(2));
    w.info(&r1).epoch = first;
    let m = w.put_info(&r1);
    w.commit(EDGE, TxnLabel::Registration, vec![m]);
    assert!(ids(w.check().violations()).starts_with(&["S12".to_string()]));
}

#[test]
fn s12_liveness_of_the_current_connection_passes() {
    let mut w = World::new();
    let r1 = rid("r1");
    let epoch = w.connect(&r1, ConnId(1));
    w.info(&r1).liveness_seq += 1;
    let m = w.put_info(&r1);
    w.commit(EDGE, TxnLabel::Liveness, vec![m]);
    w.fact(EDGE, Fact::LivenessWrite { runner: r1.clone(), conn: ConnId(1), epoch, seq: 2 });
    assert_only(&w.check(), &[]);
}

/// The canary `init-eligible-before-ready`: eligible at registration, allocated to before the
/// subscription and the metadata.
#[test]
fn s13_an_allocation_before_subscription_and_metadata() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(1) });
    w.info(&r1).ready = true;
    let epoch = w.version + 1;
    let info = w.info(&r1);
    info.epoch = epoch;
    info.connected = true;
    info.liveness_seq = 1;
    let m = w.put_info(&r1);
    w.commit(EDGE, TxnLabel::Registration, vec![m, set(keys::eligible(NS, POOL, 1, &r1), vec![])]);
    w.fact(EDGE, Fact::Registered { runner: r1.clone(), conn: ConnId(1), epoch });
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    assert_only(&w.check(), &["S13"]);
}

#[test]
fn s13_an_allocation_to_a_draining_runner() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.info(&r1).draining = true;
    let m = w.put_info(&r1);
    w.commit(EDGE, TxnLabel::Drain, vec![m]);
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    assert_only(&w.check(), &["S13"]);
}

#[test]
fn s14_a_kv_mutation_without_a_placement() {
    let mut w = World::new();
    w.create_actor("a1", CrashPolicy::Restart);
    w.commit(
        EDGE,
        TxnLabel::KvRequest,
        vec![set(keys::actor_kv_key("a1", &[4]), kv_record(b"v", 1))],
    );
    assert_only(&w.check(), &["S14"]);
}

#[test]
fn s14_a_kv_mutation_answered_for_a_request_no_instance_sent() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.kv_put("a1", &r1, ConnId(1), 0, 1, &[4], b"ok");
    let v = w.commit(
        EDGE,
        TxnLabel::KvRequest,
        vec![set(keys::actor_kv_key("a1", &[4]), kv_record(b"v", 1))],
    );
    let epoch = w.info(&r1).epoch;
    w.fact(
        EDGE,
        Fact::KvAnswered {
            runner: r1.clone(),
            conn: ConnId(1),
            epoch,
            actor: "a1".into(),
            request_id: 99,
            placement_generation: Some(0),
            mutation_version: Some(v),
            error: None,
        },
    );
    assert_only(&w.check(), &["S14"]);
}

#[test]
fn s14_a_keyspace_changed_by_a_workflow_step_of_a_live_actor() {
    let mut w = World::new();
    w.create_actor("a1", CrashPolicy::Restart);
    w.step("a1", vec![set(keys::actor_kv_key("a1", &[1]), kv_record(b"{}", 1))]);
    assert_only(&w.check(), &["S14"]);
}

#[test]
fn s14_holds_when_a_destroy_deletes_the_keyspace() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.kv_put("a1", &r1, ConnId(1), 0, 1, &[1], &state_value(1));
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Ok);
    w.info(&r1).used_slots -= 1;
    let info = w.put_info(&r1);
    w.step(
        "a1",
        vec![
            pegsim_model::store::Mutation::ClearRange {
                range: pegsim_model::store::KeyRange::prefix(&keys::actor_kv_prefix("a1")),
            },
            clear(keys::actor_namespace("a1")),
            clear(keys::actor_placement("a1")),
            clear(keys::runner_alloc(&r1, "a1")),
            info,
        ],
    );
    w.classify("a1", &r1, 0, 0, pegsim_model::fact::EventClass::Applied, stopped(p::StopCode::Ok));
    w.fact(
        CORE,
        Fact::EndGeneration {
            actor: "a1".into(),
            runner: r1.clone(),
            generation: 0,
            outcome: EndOutcome::StoppedOk,
            inputs: DispositionInputs {
                destroy_requested: false,
                wake_pending: false,
                stop_reason: None,
                crash_policy: CrashPolicy::Restart,
            },
            disposition: Disposition::Destroy,
        },
    );
    w.status("a1", ActorStatus::Destroyed);
    assert_only(&w.check(), &[]);
}

#[test]
fn s15_used_slots_disagree_with_the_allocations() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.info(&r1).used_slots = 4;
    w.allocate("a1", &r1, 0);
    assert_only(&w.check(), &["S15"]);
}

#[test]
fn s15_a_placement_without_its_allocation() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.step("a1", vec![clear(keys::runner_alloc(&r1, "a1"))]);
    let found = ids(w.check().violations());
    assert_eq!(found.first().map(String::as_str), Some("S15"), "{found:?}");
}

#[test]
fn s16_running_without_a_placement() {
    let mut w = World::new();
    w.create_actor("a1", CrashPolicy::Restart);
    w.status("a1", ActorStatus::Running);
    assert_only(&w.check(), &["S16"]);
}

#[test]
fn s16_pending_after_the_drainer_placed_it_passes() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    let mut pending_key = keys::pending_prefix(NS, POOL);
    pending_key.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0]);
    pending_key.extend_from_slice(&keys::pending_suffix("a1"));
    w.step("a1", vec![set(pending_key.clone(), b"0".to_vec())]);
    w.status("a1", ActorStatus::Pending);
    // The drainer allocates: placement, alloc, slot, entry gone; the status is still Pending.
    w.info(&r1).used_slots += 1;
    let info = w.put_info(&r1);
    w.commit(
        CORE,
        TxnLabel::Drainer,
        vec![
            set(
                keys::actor_placement("a1"),
                pegsim_model::records::encode(&pegsim_model::records::Placement {
                    runner: r1.clone(),
                    generation: 0,
                }),
            ),
            set(keys::runner_alloc(&r1, "a1"), pegsim_model::records::encode(&0u32)),
            info,
            clear(pending_key),
        ],
    );
    w.fact(CORE, Fact::Allocated { actor: "a1".into(), runner: r1.clone(), generation: 0 });
    // The workflow's Allocate step persists the Start.
    w.step(
        "a1",
        vec![set(
            keys::runner_cmd(&r1, "a1", 0, 0),
            pegsim_model::wire::encode_stored_command(&start_content(None)),
        )],
    );
    w.status("a1", ActorStatus::Starting);
    assert_only(&w.check(), &[]);
}

#[test]
fn s17_a_sleep_intent_stop_that_destroys_the_actor() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.sleep_cycle_with("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()), |_| {});
    // Rebuild the same cycle with the wrong disposition in a second world.
    let mut bad = World::new();
    bad.connect(&r1, ConnId(1));
    bad.create_actor("a1", CrashPolicy::Restart);
    bad.allocate("a1", &r1, 0);
    bad.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    bad.emit_apply("a1", &r1, ConnId(1), 0, 0, running());
    bad.status("a1", ActorStatus::Running);
    bad.emit("a1", &r1, ConnId(1), 0, 1, intent_sleep());
    bad.persist_stop("a1", &r1, 0, Reason::SleepIntent);
    bad.classify("a1", &r1, 0, 1, pegsim_model::fact::EventClass::Applied, intent_sleep());
    bad.deliver_stop("a1", &r1, ConnId(1), 0, Reason::SleepIntent);
    bad.terminate("a1", &r1, ConnId(1), 0, 2, p::StopCode::Ok);
    bad.end_generation(
        "a1",
        &r1,
        ConnId(1),
        0,
        2,
        p::StopCode::Ok,
        sleep_inputs(),
        Disposition::Destroy,
        ActorStatus::Destroyed,
    );
    assert_only(&w.check(), &[]);
    assert_only(&bad.check(), &["S17"]);
}

#[test]
fn s17_inputs_that_disagree_with_the_stored_stop() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.persist_stop("a1", &r1, 0, Reason::SleepIntent);
    w.deliver_stop("a1", &r1, ConnId(1), 0, Reason::SleepIntent);
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Ok);
    // The decision claims a stop intent (a clean exit: destroy); the stored Stop says sleep.
    let inputs = DispositionInputs { stop_reason: Some(Reason::StopIntent), ..sleep_inputs() };
    w.end_generation(
        "a1",
        &r1,
        ConnId(1),
        0,
        0,
        p::StopCode::Ok,
        inputs,
        Disposition::Destroy,
        ActorStatus::Destroyed,
    );
    assert_only(&w.check(), &["S17"]);
}

#[test]
fn s17_the_disposition_table_row_by_row() {
    use Disposition::*;
    use EndOutcome::*;
    let inputs = |destroy: bool, wake: bool, reason: Option<Reason>, policy: CrashPolicy| {
        DispositionInputs {
            destroy_requested: destroy,
            wake_pending: wake,
            stop_reason: reason,
            crash_policy: policy,
        }
    };
    // Row 1: destroy requested wins over everything.
    for outcome in [StoppedOk, StoppedError, Lost] {
        assert_eq!(
            allowed_dispositions(
                &inputs(true, true, Some(Reason::SleepIntent), CrashPolicy::Restart),
                outcome
            ),
            [Destroy]
        );
    }
    // Row 2: sleep intent.
    assert_eq!(
        allowed_dispositions(
            &inputs(false, false, Some(Reason::SleepIntent), CrashPolicy::Destroy),
            StoppedError
        ),
        [Sleep]
    );
    assert_eq!(
        allowed_dispositions(
            &inputs(false, true, Some(Reason::SleepIntent), CrashPolicy::Destroy),
            Lost
        ),
        [Allocate]
    );
    // Row 3: going away migrates, whatever the outcome.
    assert_eq!(
        allowed_dispositions(
            &inputs(false, false, Some(Reason::GoingAway), CrashPolicy::Destroy),
            Lost
        ),
        [Allocate]
    );
    // Row 4: a clean exit destroys.
    assert_eq!(
        allowed_dispositions(&inputs(false, false, None, CrashPolicy::Restart), StoppedOk),
        [Destroy]
    );
    assert_eq!(
        allowed_dispositions(
            &inputs(false, false, Some(Reason::StopIntent), CrashPolicy::Sleep),
            StoppedOk
        ),
        [Destroy]
    );
    // Row 5: a crash follows the policy.
    assert_eq!(
        allowed_dispositions(
            &inputs(false, false, Some(Reason::StopIntent), CrashPolicy::Sleep),
            StoppedError
        ),
        [Sleep]
    );
    assert_eq!(
        allowed_dispositions(
            &inputs(false, false, Some(Reason::Lost), CrashPolicy::Destroy),
            StoppedOk
        ),
        [Destroy]
    );
    assert_eq!(
        allowed_dispositions(&inputs(false, false, None, CrashPolicy::Restart), Lost),
        [Restart, Reschedule]
    );
}

#[test]
fn a_destroy_and_the_stopped_event_in_one_step_pass() {
    // One batch: Destroy persists Stop(DESTROY), then the instance's Stopped ends the generation
    // and the actor is destroyed; the Stop key is written and deleted by the same commit.
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Error);
    w.info(&r1).used_slots -= 1;
    let info = w.put_info(&r1);
    w.step(
        "a1",
        vec![
            set(
                keys::runner_cmd(&r1, "a1", 0, 1),
                pegsim_model::wire::encode_stored_command(&stop_content(Reason::Destroy)),
            ),
            clear(keys::actor_placement("a1")),
            clear(keys::runner_alloc(&r1, "a1")),
            info,
            pegsim_model::store::Mutation::ClearRange {
                range: keys::runner_cmd_generation(&r1, "a1", 0),
            },
            clear(keys::actor_namespace("a1")),
        ],
    );
    w.fact(
        CORE,
        Fact::CommandPersisted {
            runner: r1.clone(),
            actor: "a1".into(),
            generation: 0,
            index: 1,
            kind: pegsim_model::fact::CommandKind::Stop(Reason::Destroy),
        },
    );
    w.status("a1", ActorStatus::Stopping(Reason::Destroy));
    w.classify(
        "a1",
        &r1,
        0,
        0,
        pegsim_model::fact::EventClass::Applied,
        stopped(p::StopCode::Error),
    );
    w.fact(
        CORE,
        Fact::EndGeneration {
            actor: "a1".into(),
            runner: r1.clone(),
            generation: 0,
            outcome: EndOutcome::StoppedError,
            inputs: DispositionInputs {
                destroy_requested: true,
                wake_pending: false,
                stop_reason: Some(Reason::Destroy),
                crash_policy: CrashPolicy::Restart,
            },
            disposition: Disposition::Destroy,
        },
    );
    w.status("a1", ActorStatus::Destroyed);
    w.ack_events("a1", &r1, ConnId(1), 0, 0);
    w.fact(
        &node_of(&r1),
        Fact::TombstoneDrop { runner: r1.clone(), actor: "a1".into(), generation: 0 },
    );
    assert_only(&w.check(), &[]);
}

#[test]
fn s13_a_full_runner_may_take_the_next_generation_of_an_actor_it_frees() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.info(&r1).total_slots = 1;
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Error);
    // One step: Stopped ends generation 0 (freeing the only slot) and a crash restart places
    // generation 1 on the same runner.
    w.step(
        "a1",
        vec![
            set(
                keys::actor_placement("a1"),
                pegsim_model::records::encode(&pegsim_model::records::Placement {
                    runner: r1.clone(),
                    generation: 1,
                }),
            ),
            set(keys::runner_alloc(&r1, "a1"), pegsim_model::records::encode(&1u32)),
            pegsim_model::store::Mutation::ClearRange {
                range: keys::runner_cmd_generation(&r1, "a1", 0),
            },
            set(
                keys::runner_cmd(&r1, "a1", 1, 0),
                pegsim_model::wire::encode_stored_command(&start_content(None)),
            ),
        ],
    );
    w.classify(
        "a1",
        &r1,
        0,
        0,
        pegsim_model::fact::EventClass::Applied,
        stopped(p::StopCode::Error),
    );
    w.fact(
        CORE,
        Fact::EndGeneration {
            actor: "a1".into(),
            runner: r1.clone(),
            generation: 0,
            outcome: EndOutcome::StoppedError,
            inputs: DispositionInputs {
                destroy_requested: false,
                wake_pending: false,
                stop_reason: None,
                crash_policy: CrashPolicy::Restart,
            },
            disposition: Disposition::Restart,
        },
    );
    w.status("a1", ActorStatus::Starting);
    assert_only(&w.check(), &[]);
}
