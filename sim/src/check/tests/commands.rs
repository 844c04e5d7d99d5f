//! S6, S9, S10, S18 and S3 for commands.

use pegsim_model::fact::{
    ActorStatus, ConnId, CrashPolicy, Disposition, DispositionInputs, EndOutcome, Fact, TxnLabel,
};
use pegsim_model::keys;
use pegsim_model::protocol as p;
use pegsim_model::store::Mutation;
use pegsim_model::wire::encode_stored_command;

use super::support::*;

fn started() -> World {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w
}

#[test]
fn s6_a_command_key_written_twice() {
    let mut w = started();
    let r1 = rid("r1");
    w.persist_stop("a1", &r1, 0, p::StopActorReason::SleepIntent);
    w.step(
        "a1",
        vec![set(
            keys::runner_cmd(&r1, "a1", 0, 1),
            encode_stored_command(&stop_content(p::StopActorReason::SleepIntent)),
        )],
    );
    assert_only(&w.check(), &["S6"]);
}

#[test]
fn s6_a_stop_at_index_two() {
    let mut w = started();
    let r1 = rid("r1");
    w.step(
        "a1",
        vec![set(
            keys::runner_cmd(&r1, "a1", 0, 2),
            encode_stored_command(&stop_content(p::StopActorReason::Destroy)),
        )],
    );
    assert_only(&w.check(), &["S6"]);
}

#[test]
fn s6_delivered_content_differs_from_the_stored_command() {
    let mut w = started();
    let r1 = rid("r1");
    w.persist_stop("a1", &r1, 0, p::StopActorReason::SleepIntent);
    w.deliver_stop("a1", &r1, ConnId(1), 0, p::StopActorReason::GoingAway);
    assert_only(&w.check(), &["S6"]);
}

#[test]
fn s6_a_command_that_was_never_persisted_is_delivered() {
    let mut w = started();
    let r1 = rid("r1");
    w.send_to_runner(
        ConnId(1),
        &r1,
        p::ToEnvoy::ToEnvoyCommands(vec![wrapper(
            "a1",
            0,
            1,
            stop_content(p::StopActorReason::StopIntent),
        )]),
    );
    assert_only(&w.check(), &["S6"]);
}

#[test]
fn s3_a_command_persisted_for_another_generation() {
    let mut w = started();
    let r1 = rid("r1");
    w.step(
        "a1",
        vec![set(
            keys::runner_cmd(&r1, "a1", 1, 1),
            encode_stored_command(&stop_content(p::StopActorReason::StopIntent)),
        )],
    );
    // The stray key also breaks the store bound's "no key of another generation".
    assert_only(&w.check(), &["S3", "S18"]);
}

#[test]
fn s9_the_runner_acknowledges_an_index_it_did_not_process() {
    let mut w = started();
    let r1 = rid("r1");
    w.persist_stop("a1", &r1, 0, p::StopActorReason::SleepIntent);
    w.fact(
        &node_of(&r1),
        Fact::RunnerAckCommands {
            runner: r1.clone(),
            conn: ConnId(1),
            actor: "a1".into(),
            generation: 0,
            index: 1,
        },
    );
    assert_only(&w.check(), &["S9"]);
}

#[test]
fn s9_the_ack_transaction_deletes_past_the_ack() {
    let mut w = started();
    let r1 = rid("r1");
    w.persist_stop("a1", &r1, 0, p::StopActorReason::SleepIntent);
    // The runner acknowledged only index 0 (in `started`); the edge deletes index 1 as well.
    w.commit(
        EDGE,
        TxnLabel::CommandAck,
        vec![Mutation::ClearRange { range: keys::runner_cmd_upto(&r1, "a1", 0, 1) }],
    );
    assert_only(&w.check(), &["S9"]);
}

#[test]
fn s9_a_step_deletes_a_command_without_ending_its_generation() {
    let mut w = started();
    let r1 = rid("r1");
    w.persist_stop("a1", &r1, 0, p::StopActorReason::SleepIntent);
    w.step("a1", vec![clear(keys::runner_cmd(&r1, "a1", 0, 1))]);
    assert_only(&w.check(), &["S9"]);
}

#[test]
fn s10_a_tombstone_dropped_before_the_generation_ended() {
    let mut w = started();
    let r1 = rid("r1");
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Error);
    w.fact(
        &node_of(&r1),
        Fact::TombstoneDrop { runner: r1.clone(), actor: "a1".into(), generation: 0 },
    );
    assert_only(&w.check(), &["S10"]);
}

#[test]
fn s10_a_command_received_after_the_tombstone_drop() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.sleep_cycle("a1", &r1, ConnId(1), 0);
    w.send_to_runner(
        ConnId(1),
        &r1,
        p::ToEnvoy::ToEnvoyCommands(vec![wrapper(
            "a1",
            0,
            1,
            stop_content(p::StopActorReason::SleepIntent),
        )]),
    );
    assert_only(&w.check(), &["S10"]);
}

#[test]
fn s10_holds_on_a_new_connection() {
    // The rule speaks of the connection on which the tombstone was dropped.
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.sleep_cycle("a1", &r1, ConnId(1), 0);
    w.connect(&r1, ConnId(2));
    w.frame(
        ConnId(1),
        &r1,
        crate::run::Dir::ToRunner,
        true,
        64,
        crate::run::Decoded::ToEnvoy(p::ToEnvoy::ToEnvoyCommands(vec![wrapper(
            "a1",
            0,
            1,
            stop_content(p::StopActorReason::SleepIntent),
        )])),
    );
    assert_only(&w.check(), &[]);
}

/// The canary `commands-never-deleted`: a generation ends while its command key remains.
#[test]
fn s18_command_keys_of_an_ended_generation_remain() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.expire(&r1, vec![("a1".into(), 0)]);
    w.info(&r1).used_slots -= 1;
    let info = w.put_info(&r1);
    w.step(
        "a1",
        vec![clear(keys::actor_placement("a1")), clear(keys::runner_alloc(&r1, "a1")), info],
    );
    w.fact(
        CORE,
        Fact::EndGeneration {
            actor: "a1".into(),
            runner: r1.clone(),
            generation: 0,
            outcome: EndOutcome::Lost,
            inputs: DispositionInputs {
                destroy_requested: false,
                wake_pending: false,
                stop_reason: None,
                crash_policy: CrashPolicy::Restart,
            },
            disposition: Disposition::Reschedule,
        },
    );
    w.status("a1", ActorStatus::Rescheduling);
    assert_only(&w.check(), &["S18"]);
}
