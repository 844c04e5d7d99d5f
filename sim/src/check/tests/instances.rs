//! S1, S2 (instances against generations), S7 (instance starts and command execution), S12
//! (envoy key reuse).

use pegsim_model::fact::{CommandDisposition, CommandKind, ConnId, CrashPolicy, Fact};
use pegsim_model::protocol as p;

use super::support::*;
use crate::run::Entry;

fn two_runners_one_actor() -> World {
    let mut w = World::new();
    w.connect(&rid("r1"), ConnId(1));
    w.connect(&rid("r2"), ConnId(2));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &rid("r1"), 0);
    w.deliver_start("a1", &rid("r1"), ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w
}

#[test]
fn s1_two_runners_hosting_one_actor_at_once() {
    let mut w = two_runners_one_actor();
    let r2 = rid("r2");
    w.fact(
        &node_of(&r2),
        Fact::InstanceStart { runner: r2.clone(), actor: "a1".into(), generation: 1 },
    );
    assert_only(&w.check(), &["S1"]);
}

#[test]
fn s1_holds_once_the_first_instance_ended_with_its_node() {
    let mut w = two_runners_one_actor();
    w.push("sim", Entry::Node { node: node_of(&rid("r1")), event: "crash".into() });
    let r2 = rid("r2");
    w.fact(
        &node_of(&r2),
        Fact::InstanceStart { runner: r2.clone(), actor: "a1".into(), generation: 1 },
    );
    assert_only(&w.check(), &[]);
}

#[test]
fn s1_holds_once_the_first_instance_terminated() {
    let mut w = two_runners_one_actor();
    let r1 = rid("r1");
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Error);
    let r2 = rid("r2");
    w.fact(
        &node_of(&r2),
        Fact::InstanceStart { runner: r2.clone(), actor: "a1".into(), generation: 1 },
    );
    assert_only(&w.check(), &[]);
}

#[test]
fn s2_start_persisted_before_the_previous_generation_ended() {
    let mut w = two_runners_one_actor();
    let r1 = rid("r1");
    // The workflow moves to generation 1 without ending generation 0 (its keys were acked).
    w.step(
        "a1",
        vec![
            set(
                pegsim_model::keys::actor_placement("a1"),
                pegsim_model::records::encode(&pegsim_model::records::Placement {
                    runner: r1.clone(),
                    generation: 1,
                }),
            ),
            set(pegsim_model::keys::runner_alloc(&r1, "a1"), pegsim_model::records::encode(&1u32)),
            set(
                pegsim_model::keys::runner_cmd(&r1, "a1", 1, 0),
                pegsim_model::wire::encode_stored_command(&start_content(None)),
            ),
        ],
    );
    assert_only(&w.check(), &["S2"]);
}

#[test]
fn s2_a_generation_number_skipped() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.sleep_cycle("a1", &r1, ConnId(1), 0);
    w.allocate("a1", &r1, 2);
    assert_only(&w.check(), &["S2"]);
}

#[test]
fn s2_end_generation_while_the_instance_still_runs() {
    let mut w = two_runners_one_actor();
    let r1 = rid("r1");
    w.expire(&r1, vec![("a1".into(), 0)]);
    w.end_lost("a1", &r1, 0);
    assert_only(&w.check(), &["S2"]);
}

#[test]
fn s2_holds_when_the_instance_was_fenced_before_the_expiry() {
    let mut w = two_runners_one_actor();
    let r1 = rid("r1");
    w.fact(&node_of(&r1), Fact::Fence { runner: r1.clone() });
    w.terminate("a1", &r1, ConnId(1), 0, 0, p::StopCode::Error);
    w.expire(&r1, vec![("a1".into(), 0)]);
    w.end_lost("a1", &r1, 0);
    assert_only(&w.check(), &[]);
}

#[test]
fn s7_an_instance_started_twice() {
    let mut w = two_runners_one_actor();
    let r1 = rid("r1");
    w.fact(
        &node_of(&r1),
        Fact::InstanceStart { runner: r1.clone(), actor: "a1".into(), generation: 0 },
    );
    assert_only(&w.check(), &["S7"]);
}

#[test]
fn s7_a_command_executed_before_its_predecessor() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.fact(
        &node_of(&r1),
        Fact::RunnerCommand {
            runner: r1.clone(),
            conn: ConnId(1),
            actor: "a1".into(),
            generation: 0,
            index: 1,
            kind: CommandKind::Stop(p::StopActorReason::Destroy),
            disposition: CommandDisposition::Exec,
        },
    );
    assert_only(&w.check(), &["S7"]);
}

#[test]
fn s12_an_envoy_key_reused_by_a_restarted_process() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.push("sim", Entry::Node { node: node_of(&r1), event: "crash".into() });
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(2) });
    assert_only(&w.check(), &["S12"]);
}

#[test]
fn s12_holds_when_the_same_process_reconnects() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.fact(
        &node_of(&r1),
        Fact::RunnerConnClosed { runner: r1.clone(), conn: ConnId(1), reason: "reset".into() },
    );
    w.connect(&r1, ConnId(2));
    assert_only(&w.check(), &[]);
}
