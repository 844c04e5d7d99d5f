//! S11: handshake order, metadata before commands, replay before live, size, decoding, count.

use pegsim_model::fact::{ConnId, CrashPolicy, Fact};
use pegsim_model::protocol as p;

use super::support::*;
use crate::check::CheckConfig;
use crate::run::{Decoded, Dir};

fn ping() -> p::ToEnvoy {
    p::ToEnvoy::ToEnvoyPing(p::ToEnvoyPing { ts: 5 })
}

#[test]
fn s11_commands_before_the_metadata_commit() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    // Reconnect: the replay goes out before the new connection's metadata committed.
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(2) });
    w.fact(EDGE, Fact::SubscriptionConfirmed { runner: r1.clone(), conn: ConnId(2) });
    w.register(&r1, ConnId(2));
    w.send_to_engine(
        ConnId(2),
        &r1,
        p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
            prepopulate_actor_names: None,
            metadata: None,
        }),
    );
    w.send_to_runner(ConnId(2), &r1, init());
    w.fact(
        EDGE,
        Fact::CommandsSent {
            runner: r1.clone(),
            conn: ConnId(2),
            replay: true,
            checkpoints: vec![("a1".into(), 0, 0)],
        },
    );
    w.send_to_runner(
        ConnId(2),
        &r1,
        p::ToEnvoy::ToEnvoyCommands(vec![wrapper("a1", 0, 0, start_content(None))]),
    );
    assert_only(&w.check(), &["S11"]);
}

#[test]
fn s11_the_first_engine_frame_is_not_init() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(1) });
    w.send_to_engine(
        ConnId(1),
        &r1,
        p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
            prepopulate_actor_names: None,
            metadata: None,
        }),
    );
    w.send_to_runner(ConnId(1), &r1, ping());
    w.send_to_runner(ConnId(1), &r1, init());
    assert_only(&w.check(), &["S11"]);
}

#[test]
fn s11_a_second_init() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.send_to_runner(ConnId(1), &r1, init());
    assert_only(&w.check(), &["S11"]);
}

#[test]
fn s11_the_runner_sends_before_init() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(1) });
    w.send_to_engine(
        ConnId(1),
        &r1,
        p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
            prepopulate_actor_names: None,
            metadata: None,
        }),
    );
    w.send_to_engine(ConnId(1), &r1, p::ToRivet::ToRivetPong(p::ToRivetPong { ts: 1 }));
    assert_only(&w.check(), &["S11"]);
}

#[test]
fn s11_the_first_runner_frame_is_not_metadata() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.fact(&node_of(&r1), Fact::RunnerConnecting { runner: r1.clone(), conn: ConnId(1) });
    w.send_to_engine(ConnId(1), &r1, p::ToRivet::ToRivetStopping);
    assert_only(&w.check(), &["S11"]);
}

#[test]
fn s11_an_oversized_frame() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    let max = CheckConfig::default().max_frame_bytes;
    w.frame(ConnId(1), &r1, Dir::ToRunner, false, max + 1, Decoded::ToEnvoy(ping()));
    w.frame(ConnId(1), &r1, Dir::ToRunner, false, max, Decoded::ToEnvoy(ping()));
    let checker = w.check();
    assert_only(&checker, &["S11"]);
    assert!(checker.violations()[0].detail.contains(&format!("{}", max + 1)));
}

#[test]
fn s11_an_undecodable_frame() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.frame(ConnId(1), &r1, Dir::ToEngine, false, 3, Decoded::Undecodable("truncated".into()));
    assert_only(&w.check(), &["S11"]);
}

#[test]
fn s11_a_command_frame_over_frame_max_commands() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.persist_stop("a1", &r1, 0, p::StopActorReason::Destroy);
    let two = p::ToEnvoy::ToEnvoyCommands(vec![
        wrapper("a1", 0, 0, start_content(None)),
        wrapper("a1", 0, 1, stop_content(p::StopActorReason::Destroy)),
    ]);
    w.frame(ConnId(1), &r1, Dir::ToRunner, false, 64, Decoded::ToEnvoy(two));
    assert_only(&w.check(), &[]);
    let mut config = CheckConfig::default();
    config.timing.frame_max_commands = 1;
    assert_only(&w.check_with(config), &["S11"]);
}

#[test]
fn s11_a_replay_frame_after_a_live_frame() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.fact(
        EDGE,
        Fact::CommandsSent {
            runner: r1.clone(),
            conn: ConnId(1),
            replay: false,
            checkpoints: vec![],
        },
    );
    w.fact(
        EDGE,
        Fact::CommandsSent {
            runner: r1.clone(),
            conn: ConnId(1),
            replay: true,
            checkpoints: vec![],
        },
    );
    assert_only(&w.check(), &["S11"]);
}
