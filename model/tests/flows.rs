//! One scripted test per protocol flow (`harness::flows`), each asserting exact frames, facts
//! and states with no canary switched on, plus the determinism of the harness: the same script
//! gives byte-identical fact and frame logs.

mod harness;

use harness::flows::*;
use pegsim_model::canary::{Canaries, Canary};

#[test]
fn handshake() {
    assert_eq!(flow_1_handshake(Canaries::NONE), Ok(()));
}

#[test]
fn start_running_sleep_wake_on_another_runner() {
    assert_eq!(flow_2_sleep_wake(Canaries::NONE), Ok(()));
}

#[test]
fn reconnect_replays_more_than_one_page_then_goes_live() {
    assert_eq!(flow_3_replay(Canaries::NONE), Ok(()));
}

#[test]
fn duplicate_start_is_executed_once_and_acked_twice() {
    assert_eq!(flow_4_duplicate_start(Canaries::NONE), Ok(()));
}

#[test]
fn duplicate_and_out_of_order_events_apply_a_gap_free_prefix() {
    assert_eq!(flow_5_events(Canaries::NONE), Ok(()));
}

#[test]
fn lost_runner_is_fenced_expired_and_its_actor_restarted_elsewhere() {
    assert_eq!(flow_6_runner_lost(Canaries::NONE), Ok(()));
}

#[test]
fn drain_migrates_exits_and_retires() {
    assert_eq!(flow_7_drain(Canaries::NONE), Ok(()));
}

#[test]
fn core_restart_from_the_store_mid_flow() {
    assert_eq!(flow_8_core_restart(Canaries::NONE), Ok(()));
}

#[test]
fn kv_from_a_stale_holder_is_rejected() {
    assert_eq!(flow_9_kv_fence(Canaries::NONE), Ok(()));
}

#[test]
fn runner_process_crash_hands_its_actor_to_another_runner() {
    assert_eq!(flow_runner_crash(Canaries::NONE), Ok(()));
}

#[test]
fn edge_node_crash_loses_nothing_the_runner_still_holds() {
    assert_eq!(flow_edge_crash(Canaries::NONE), Ok(()));
}

/// The same script gives byte-identical fact and frame logs; and the log does record behaviour
/// (a canary that changes the model changes it).
#[test]
fn the_same_script_gives_byte_identical_logs() {
    type Setup = fn(Canaries) -> harness::World;
    type Script = fn(&mut harness::World) -> Result<(), String>;
    let scripts: [(Setup, Script); 3] =
        [(default_world, run_flow_5), (default_world, run_flow_8), (replay_world, run_flow_3)];
    for (setup, run) in scripts {
        let (first, log_1, frames_1) = traced(setup, run, Canaries::NONE);
        let (second, log_2, frames_2) = traced(setup, run, Canaries::NONE);
        assert_eq!(first, Ok(()));
        assert_eq!(second, Ok(()));
        assert!(
            log_1.lines().count() > 50 && frames_1.len() > 10,
            "a trivial log: {} lines, {} frames",
            log_1.lines().count(),
            frames_1.len()
        );
        assert!(log_1 == log_2, "two runs of one script logged differently");
        assert!(frames_1 == frames_2, "two runs of one script framed differently");
    }
    let (_, plain, _) = traced(default_world, run_flow_5, Canaries::NONE);
    let (_, with_canary, _) =
        traced(default_world, run_flow_5, Canaries::only(Canary::EventFilterDropsOutOfOrder));
    assert_ne!(plain, with_canary);
}
