//! Replay (`spec/protocol.md` §3.4): pages, frame limits, the live buffer, ready after replay.

use super::*;
use crate::engine::conn::delivery::commands_frame_len;
use vbare::Body;

/// Persist `n` actors' start (index 0) and stop (index 1) commands for `r`; returns the keys
/// in key order (computed independently: sorted tuples).
fn persist_pairs(h: &mut Harness, r: &RunnerId, n: usize) -> Vec<(String, u32, i64)> {
    let mut expected = Vec::new();
    for a in 0..n {
        let actor = format!("actor-{a:02}");
        h.persist(&key(r, &actor, 0, 0), &start_command("counter", None));
        h.persist(&key(r, &actor, 0, 1), &stop_command(p::StopActorReason::GoingAway));
        expected.push((actor.clone(), 0, 0));
        expected.push((actor, 0, 1));
    }
    expected.sort();
    expected
}

fn small_pages() -> EngineConfig {
    let mut config = config();
    config.timing.replay_page_keys = 4;
    config.timing.frame_max_commands = 3;
    config
}

#[test]
fn replay_reads_pages_and_splits_frames_by_command_count() {
    let mut rig = Rig::with(Harness::default(), small_pages());
    let r = runner("key-1");
    let expected = persist_pairs(&mut rig.h, &r, 5);
    let (mut c, mut out) = rig.accept(1, "key-1");
    out.extend(rig.subscribed(&mut c));
    let first = rig.recv(&mut c, &metadata_frame());
    // One page per call: the first page's frames and a timer for the next page, not ready yet.
    assert_eq!(command_frames(&first).iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
    let t = timers(&first);
    assert_eq!(t, vec![(rig.h.now_ms, EdgeTimer::ReplayPage { seq: 1 })]);
    assert!(!c.is_live());
    assert!(!rig.h.info(&r).unwrap().ready, "ready only after the replay");
    let all = rig.finish_replay(&mut c, first);
    let frames = command_frames(&all);
    assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1, 3, 1, 2]);
    let sent_cps: Vec<_> = frames.iter().flat_map(|f| cps(f)).collect();
    assert_eq!(sent_cps, expected, "every key once, in key order");
    let pages: Vec<usize> = rig
        .h
        .take_facts()
        .iter()
        .filter_map(|f| match f {
            Fact::ReplayPage { keys, .. } => Some(*keys),
            _ => None,
        })
        .collect();
    assert_eq!(pages, vec![4, 4, 2]);
    assert!(c.is_live());
    assert!(rig.h.info(&r).unwrap().ready);
    // Starts carry a fresh bundle (empty keyspace here), stops none.
    for command in frames.iter().flatten() {
        match &command.inner {
            p::Command::CommandStartActor(s) => {
                assert_eq!(s.preloaded_kv, Some(p::preloaded_kv::empty_keyspace()))
            }
            p::Command::CommandStopActor(_) => assert_eq!(command.checkpoint.index, 1),
        }
    }
}

#[test]
fn a_full_last_page_is_followed_by_an_empty_one() {
    let mut rig = Rig::with(Harness::default(), small_pages());
    let r = runner("key-1");
    persist_pairs(&mut rig.h, &r, 2);
    let (_, _) = rig.connect(1, "key-1");
    let pages: Vec<usize> = rig
        .h
        .take_facts()
        .iter()
        .filter_map(|f| match f {
            Fact::ReplayPage { keys, .. } => Some(*keys),
            _ => None,
        })
        .collect();
    assert_eq!(pages, vec![4, 0]);
}

#[test]
fn frames_respect_the_byte_target_unless_one_command_exceeds_it() {
    let mut config = config();
    config.timing.frame_target_bytes = 2_500;
    config.preload_budget = 0;
    let mut rig = Rig::with(Harness::default(), config);
    let r = runner("key-1");
    let sizes = [1_000usize, 1_000, 1_000, 3_000, 10, 10, 1_000];
    for (i, size) in sizes.iter().enumerate() {
        let actor = format!("actor-{i}");
        rig.h.persist(&key(&r, &actor, 0, 0), &start_command("counter", Some(vec![7; *size])));
    }
    let (_, out) = rig.connect(1, "key-1");
    let lens: Vec<usize> = out
        .iter()
        .filter_map(|o| match o {
            EdgeOutput::Send(b) => Some(b.len()),
            _ => None,
        })
        .skip(1) // Init
        .collect();
    let frames = command_frames(&out);
    assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1, 3]);
    for (frame, len) in frames.iter().zip(&lens) {
        let body: usize = frame.iter().map(|c| c.body_len()).sum();
        assert_eq!(commands_frame_len(frame.len(), body), *len, "length formula");
        assert!(*len <= 2_500 || frame.len() == 1, "frame of {len} bytes");
    }
    assert!(lens[2] > 2_500, "the 3000-byte command travels alone");
    // Greedy: the first frame could not take the third command.
    let one = frames[0][0].body_len();
    assert!(commands_frame_len(3, 3 * one) > 2_500);
}

#[test]
fn bus_messages_during_replay_are_buffered_and_sent_after_it_in_arrival_order() {
    let mut rig = Rig::with(Harness::default(), small_pages());
    let r = runner("key-1");
    persist_pairs(&mut rig.h, &r, 3);
    let (mut c, mut out) = rig.accept(1, "key-1");
    out.extend(rig.subscribed(&mut c));
    let first = rig.recv(&mut c, &metadata_frame());
    // Between pages: an event ack, then a command (already replayed by the first page).
    let ack = bus(&p::ToEnvoyConn::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
        last_event_checkpoints: vec![checkpoint("actor-00", 0, 4)],
    }));
    let live_cmd = publish(&mut rig.h, &[key(&r, "actor-00", 0, 0)]);
    let mut mid = rig.bus(&mut c, &ack);
    mid.extend(rig.bus(&mut c, &live_cmd));
    assert!(mid.is_empty(), "buffered during the replay");
    let mut all = first;
    all.extend(mid);
    let all = rig.finish_replay(&mut c, all);
    let k = kinds(&all);
    assert_eq!(
        k,
        vec![
            "ToEnvoyCommands",
            "ToEnvoyCommands",
            "ToEnvoyCommands",
            "ToEnvoyAckEvents",
            "ToEnvoyCommands"
        ]
    );
    let frames = command_frames(&all);
    assert_eq!(cps(frames.last().unwrap()), vec![("actor-00".to_string(), 0, 0)]);
    // The drainer trigger follows the ready transaction, before the buffered messages.
    let trigger = all
        .iter()
        .position(|o| matches!(o, EdgeOutput::Engine(EngineOutput::TriggerDrainer { .. })))
        .unwrap();
    let is_ack = |o: &EdgeOutput| kinds(std::slice::from_ref(o)) == ["ToEnvoyAckEvents"];
    let ack_pos = all.iter().position(is_ack).unwrap();
    assert!(trigger < ack_pos);
    let sent_live: Vec<bool> = rig
        .h
        .take_facts()
        .iter()
        .filter_map(|f| match f {
            Fact::CommandsSent { replay, .. } => Some(*replay),
            _ => None,
        })
        .collect();
    assert_eq!(sent_live, vec![true, true, true, false]);
}

#[test]
fn live_buffer_overflow_closes_with_timed_out() {
    let mut config = small_pages();
    config.timing.live_buffer_max = 2;
    let mut rig = Rig::with(Harness::default(), config);
    let r = runner("key-1");
    persist_pairs(&mut rig.h, &r, 3);
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    rig.recv(&mut c, &metadata_frame());
    let ack = bus(&p::ToEnvoyConn::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
        last_event_checkpoints: vec![checkpoint("actor-00", 0, 4)],
    }));
    assert!(rig.bus(&mut c, &ack).is_empty());
    assert!(rig.bus(&mut c, &ack).is_empty());
    let out = rig.bus(&mut c, &ack);
    assert_eq!(closes(&out), vec![CloseReason::TimedOut]);
    assert!(rig.h.take_facts().contains(&Fact::Probe { name: "live-buffer-overflow".into() }));
    // The pending replay timer does nothing now.
    assert!(rig.timer(&mut c, EdgeTimer::ReplayPage { seq: 1 }).is_empty());
    assert!(!rig.h.info(&r).unwrap().connected);
}
