//! The live path (`spec/protocol.md` §3.4, §6.2, §7.1): existence check, fresh bundles, arrival
//! order, eviction, close requests, demuxer batches and self-acks.

use super::*;
use crate::engine::signal::SignalError;
use crate::store::StoreError;

fn bundle_value(command: &p::CommandWrapper, key: &[u8]) -> Option<Vec<u8>> {
    match &command.inner {
        p::Command::CommandStartActor(s) => s.preloaded_kv.as_ref().and_then(|b| {
            b.entries.iter().find(|e| e.key.as_ref() == key).map(|e| e.value.to_vec())
        }),
        _ => None,
    }
}

fn fetched_versions(facts: &[Fact]) -> Vec<Option<u64>> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::PreloadFetched { read_version, .. } => Some(*read_version),
            _ => None,
        })
        .collect()
}

#[test]
fn live_commands_are_sent_in_arrival_order_and_dropped_when_their_key_is_gone() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let (mut c, _) = rig.connect(1, "key-1");
    rig.h.take_facts();
    let k_stop = key(&r, "actor-a", 3, 1);
    let k_start = key(&r, "actor-b", 0, 0);
    rig.h.persist(&k_stop, &stop_command(p::StopActorReason::SleepIntent));
    rig.h.persist(&k_start, &start_command("counter", None));
    let m1 = publish(&mut rig.h, std::slice::from_ref(&k_stop));
    let m2 = publish(&mut rig.h, std::slice::from_ref(&k_start));
    let mut out = rig.bus(&mut c, &m1);
    out.extend(rig.bus(&mut c, &m2));
    let frames = command_frames(&out);
    assert_eq!(
        frames.iter().map(|f| cps(f)).collect::<Vec<_>>(),
        vec![vec![("actor-a".to_string(), 3, 1)], vec![("actor-b".to_string(), 0, 0)],]
    );
    assert!(rig.h.take_facts().contains(&Fact::CommandsSent {
        runner: r.clone(),
        conn: ConnId(1),
        replay: false,
        checkpoints: vec![("actor-a".into(), 3, 1)],
    }));

    // The runner acknowledges the stop; a later copy of its publish is dropped.
    let ack = p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
        last_command_checkpoints: vec![checkpoint("actor-a", 3, 1)],
    });
    rig.recv_msg(&mut c, &ack);
    assert_eq!(rig.h.get(&k_stop.key()), None);
    let out = rig.bus(&mut c, &m1);
    assert!(sent(&out).is_empty());
    let facts = rig.h.take_facts();
    assert!(facts.contains(&Fact::LiveCommandDropped {
        runner: r,
        conn: ConnId(1),
        actor: "actor-a".into(),
        generation: 3,
        index: 1,
    }));
    assert!(facts.iter().all(|f| !matches!(f, Fact::CommandsSent { .. })));
}

#[test]
fn every_delivery_fetches_a_fresh_bundle() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let k = key(&r, "actor-a", 0, 0);
    rig.h.persist(&k, &start_command("counter", None));
    rig.h.kv_put("actor-a", &[1], b"old");
    let (mut c, out) = rig.connect(1, "key-1");
    let replayed = command_frames(&out);
    assert_eq!(bundle_value(&replayed[0][0], &[1]), Some(b"old".to_vec()));
    // A KV write between the two deliveries shows in the second bundle.
    rig.h.kv_put("actor-a", &[1], b"new");
    let m = publish(&mut rig.h, std::slice::from_ref(&k));
    let live = command_frames(&rig.bus(&mut c, &m));
    assert_eq!(bundle_value(&live[0][0], &[1]), Some(b"new".to_vec()));
    let versions = fetched_versions(&rig.h.take_facts());
    assert_eq!(versions.len(), 2);
    assert!(versions[0] < versions[1], "{versions:?}");
    // The stored command is untouched.
    let stored = wire::decode_stored_command(&rig.h.get(&k.key()).unwrap()).unwrap();
    assert_eq!(stored, start_command("counter", None));
}

#[test]
fn a_failed_fetch_delivers_the_start_without_a_bundle() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let k = key(&r, "actor-a", 0, 0);
    rig.h.persist(&k, &start_command("counter", None));
    rig.h.kv_put("actor-a", &[1], b"v");
    rig.h.faults.preload = std::iter::repeat_n(true, 64).collect();
    let (_, out) = rig.connect(1, "key-1");
    let frames = command_frames(&out);
    match &frames[0][0].inner {
        p::Command::CommandStartActor(s) => assert_eq!(s.preloaded_kv, None),
        other => panic!("{other:?}"),
    }
    let failed = rig.h.take_facts().into_iter().find_map(|f| match f {
        Fact::PreloadFetched { failed, attempts, .. } => Some((failed, attempts)),
        _ => None,
    });
    assert_eq!(failed, Some((true, crate::constants::PRELOAD_MAX_ATTEMPTS)));
}

#[test]
fn event_acks_are_forwarded_and_close_requests_close() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.connect(1, "key-1");
    let ack = p::ToEnvoyAckEvents { last_event_checkpoints: vec![checkpoint("actor-a", 0, 9)] };
    let out = rig.bus(&mut c, &bus(&p::ToEnvoyConn::ToEnvoyAckEvents(ack.clone())));
    assert_eq!(sent(&out), vec![p::ToEnvoy::ToEnvoyAckEvents(ack)]);
    let out = rig.bus(&mut c, &bus(&p::ToEnvoyConn::ToEnvoyConnClose));
    assert_eq!(closes(&out), vec![CloseReason::Closed]);
    assert!(c.is_finished());
}

#[test]
fn a_newer_registration_evicts_by_message_and_the_own_message_is_ignored() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let (mut c1, out1) = rig.connect(1, "key-1");
    let own = out1
        .iter()
        .find_map(|o| match o {
            EdgeOutput::Engine(EngineOutput::Publish { message, .. }) => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(rig.bus(&mut c1, &own).is_empty(), "its own epoch");
    assert!(rig.bus(&mut c1, &BusMessage::Eviction { epoch: 1 }).is_empty(), "an older epoch");
    let (_, out2) = rig.connect(2, "key-1");
    let newer = out2
        .iter()
        .find_map(|o| match o {
            EdgeOutput::Engine(EngineOutput::Publish { message, .. }) => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    let out = rig.bus(&mut c1, &newer);
    assert_eq!(closes(&out), vec![CloseReason::Eviction]);
    // Its teardown leaves the newer connection's record alone.
    let info = rig.h.info(&r).unwrap();
    assert!(info.connected && info.ready && info.eligible());
}

fn event(actor: &str, generation: u32, index: i64) -> p::EventWrapper {
    p::EventWrapper {
        checkpoint: checkpoint(actor, generation, index),
        inner: p::Event::EventActorStateUpdate(p::EventActorStateUpdate {
            state: p::ActorState::ActorStateRunning,
        }),
    }
}

#[test]
fn events_become_signals_and_a_gone_workflow_is_acked_through_the_live_path() {
    let mut rig = Rig::with(Harness::default(), {
        let mut config = config();
        config.timing.replay_page_keys = 1;
        config
    });
    let r = runner("key-1");
    rig.h.persist(&key(&r, "actor-z", 0, 0), &start_command("counter", None));
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    let first = rig.recv(&mut c, &metadata_frame());
    assert!(!c.is_live(), "replay still running");
    let events = p::ToRivet::ToRivetEvents(vec![event("actor-a", 2, 0), event("actor-a", 2, 1)]);
    let out = rig.recv_msg(&mut c, &events);
    let (token, signal) = out
        .iter()
        .find_map(|o| match o {
            EdgeOutput::Signal { actor, signal, token } if actor == "actor-a" => {
                Some((*token, signal.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        signal,
        Signal::Events {
            runner: r.clone(),
            epoch: c.epoch().unwrap(),
            events: vec![event("actor-a", 2, 0), event("actor-a", 2, 1)],
        }
    );
    assert!(rig.h.take_facts().contains(&Fact::DemuxEnqueue {
        conn: ConnId(1),
        actor: "actor-a".into(),
        events: 2
    }));
    // The workflow is gone: the self-ack waits for the end of the replay.
    let out = c.on_signal_result(&mut rig.h.env(), token, Ok(EnqueueResult::WorkflowGone));
    assert!(sent(&out).is_empty());
    let all = rig.finish_replay(&mut c, first);
    let k = kinds(&all);
    assert_eq!(k.last(), Some(&"ToEnvoyAckEvents"));
    assert_eq!(
        sent(&all).last(),
        Some(&p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
            last_event_checkpoints: vec![checkpoint("actor-a", 2, 1)]
        }))
    );
    // Live now: a self-ack goes out at once.
    let out = rig.recv_msg(&mut c, &p::ToRivet::ToRivetEvents(vec![event("actor-a", 2, 2)]));
    let token = out
        .iter()
        .find_map(|o| match o {
            EdgeOutput::Signal { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    let err =
        DeliverError::Signal(SignalError::Store(StoreError::TooOld { age_ms: 1, limit_ms: 0 }));
    let out = c.on_signal_result(&mut rig.h.env(), token, Err(err));
    let (at, retry) = timers(&out).pop().unwrap();
    assert!(matches!(retry, EdgeTimer::Demux(DemuxTimer::Retry { .. })));
    rig.h.now_ms = at;
    let out = rig.timer(&mut c, retry);
    let token = out
        .iter()
        .find_map(|o| match o {
            EdgeOutput::Signal { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    let out = c.on_signal_result(&mut rig.h.env(), token, Ok(EnqueueResult::WorkflowGone));
    assert_eq!(kinds(&out), vec!["ToEnvoyAckEvents"]);
}

#[test]
fn connection_end_drains_the_demuxer_before_it_is_finished() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.connect(1, "key-1");
    let out = rig.recv_msg(&mut c, &p::ToRivet::ToRivetEvents(vec![event("actor-a", 0, 0)]));
    let token = out
        .iter()
        .find_map(|o| match o {
            EdgeOutput::Signal { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    let out = c.on_socket_closed(&mut rig.h.env());
    assert!(closes(&out).is_empty(), "the peer closed: nothing to send");
    assert!(timers(&out).iter().any(|(_, t)| *t == EdgeTimer::Demux(DemuxTimer::FlushDeadline)));
    assert!(!c.is_finished(), "a batch is in flight");
    assert!(!rig.h.info(&runner("key-1")).unwrap().connected, "teardown ran at once");
    // Frames after the end are not read.
    assert!(rig
        .recv_msg(&mut c, &p::ToRivet::ToRivetEvents(vec![event("actor-a", 0, 1)]))
        .is_empty());
    c.on_signal_result(&mut rig.h.env(), token, Ok(EnqueueResult::Enqueued));
    assert!(c.is_finished());
    assert!(rig.h.take_facts().contains(&Fact::EdgeConnClosed {
        runner: Some(runner("key-1")),
        conn: ConnId(1),
        reason: PEER_CLOSED_REASON.into()
    }));
}
