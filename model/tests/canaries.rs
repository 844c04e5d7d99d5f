//! Each engine-side canary of `spec/canaries.md`, switched on, makes the flow that exposes it
//! (`harness::flows`) fail with the broken expectation.

mod harness;

use harness::flows::*;
use pegsim_model::canary::{Canaries, Canary};

/// Run `flow` with `canary` on; it must fail, and the failure must name `expected`.
fn caught(flow: fn(Canaries) -> Result<(), String>, canary: Canary, expected: &str) {
    match flow(Canaries::only(canary)) {
        Ok(()) => panic!("{canary}: the flow passed with the canary on"),
        Err(e) => {
            // The broken expectation and the harness violations, without the log tail.
            let head: Vec<&str> =
                e.lines().take_while(|l| !l.starts_with("--- last log")).collect();
            let head = head.join("\n");
            assert!(head.contains(expected), "{canary}: the flow failed for another reason:\n{e}");
            println!("{canary} caught:\n{head}");
        }
    }
}

#[test]
fn demux_first_event_dropped() {
    caught(flow_2_sleep_wake, Canary::DemuxFirstEventDropped, "Running");
}

#[test]
fn demux_gc_aborts_busy_queue() {
    caught(flow_5_events, Canary::DemuxGcAbortsBusyQueue, "vanished");
}

#[test]
fn demux_abort_drops_in_flight() {
    caught(flow_5_events, Canary::DemuxAbortDropsInFlight, "vanished");
}

#[test]
fn event_filter_drops_out_of_order() {
    caught(flow_5_events, Canary::EventFilterDropsOutOfOrder, "S4");
}

#[test]
fn event_batch_duplicate_applied() {
    caught(flow_5_events, Canary::EventBatchDuplicateApplied, "S4");
}

#[test]
fn init_eligible_before_ready() {
    caught(flow_1_handshake, Canary::InitEligibleBeforeReady, "eligible");
}

#[test]
fn replay_unbounded() {
    caught(flow_3_replay, Canary::ReplayUnbounded, "S11: engine frame of");
}

#[test]
fn commands_never_deleted() {
    caught(flow_2_sleep_wake, Canary::CommandsNeverDeleted, "still stores commands");
}

#[test]
fn preload_bundle_persisted() {
    caught(flow_4_duplicate_start, Canary::PreloadBundlePersisted, "stale bundle");
}
