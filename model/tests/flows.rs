//! One scripted test per protocol flow (`harness::flows`), each asserting exact frames, facts
//! and states with no canary switched on, plus the determinism of the harness: the same script
//! gives byte-identical fact and frame logs.

mod harness;

use harness::flows::*;
use pegsim_model::canary::Canaries;

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
