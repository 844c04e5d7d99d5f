//! The canaries that live in the connection (`spec/canaries.md`): each changes the observable
//! behaviour the way the table says, and only with the canary switched on.

use super::*;

#[test]
fn canary_init_eligible_before_ready_is_allocatable_before_metadata_and_subscription() {
    let r = runner("key-1");
    let eligible = crate::keys::eligible(NS, POOL, 1, &r);

    // Correct model: nothing is written before the subscriptions are confirmed, and the runner
    // becomes eligible only after them, the metadata and the replay.
    let mut rig = Rig::new();
    let (_, out) = rig.accept(1, "key-1");
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0], EdgeOutput::Subscribe(_)));
    assert!(rig.h.dump().is_empty());

    // Canary: registration, eligibility, a drainer trigger and Init, all without a subscription.
    let mut rig = Rig::with(Harness::with_canary(Canary::InitEligibleBeforeReady), config());
    let (mut c, out) = rig.accept(1, "key-1");
    assert_eq!(
        out[0],
        EdgeOutput::Engine(EngineOutput::TriggerDrainer {
            namespace: NS.into(),
            pool: POOL.into()
        })
    );
    assert!(out.iter().all(|o| !matches!(o, EdgeOutput::Subscribe(_))));
    assert_eq!(kinds(&out), vec!["ToEnvoyInit"]);
    let info = rig.h.info(&r).unwrap();
    assert!(info.ready && info.eligible());
    assert!(rig.h.get(&eligible).is_some(), "allocatable before metadata and subscription");
    // The handshake and the replay run unsubscribed; the subscription is requested last.
    let out = rig.recv(&mut c, &metadata_frame());
    assert!(c.is_live());
    assert!(matches!(out.last(), Some(EdgeOutput::Subscribe(_))));
    // A command the workflow persists and publishes now (after the replay read, before the
    // subscription is confirmed) is published to nobody, and no replay will bring it on this
    // connection.
    let k = key(&r, "actor-a", 0, 0);
    rig.h.persist(&k, &start_command("counter", None));
    let out = rig.subscribed(&mut c);
    assert!(sent(&out).is_empty());
    let facts = rig.h.model_facts();
    let order: Vec<&str> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Registered { .. } => Some("registered"),
            Fact::MetadataCommitted { .. } => Some("metadata"),
            Fact::ReplayDone { .. } => Some("replay_done"),
            Fact::SubscriptionConfirmed { .. } => Some("subscribed"),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["registered", "metadata", "replay_done", "subscribed"]);
    assert!(facts.iter().all(|f| !matches!(f, Fact::CommandsSent { .. })));

    // Correct model: a command persisted once the subscription is confirmed reaches the runner
    // (here through the replay, which reads after the confirmation).
    let mut rig = Rig::new();
    let (mut c, mut out) = rig.accept(1, "key-1");
    out.extend(rig.subscribed(&mut c));
    rig.h.persist(&k, &start_command("counter", None));
    out.extend(rig.recv(&mut c, &metadata_frame()));
    let out = rig.finish_replay(&mut c, out);
    assert_eq!(cps(&command_frames(&out)[0]), vec![("actor-a".to_string(), 0, 0)]);
}

#[test]
fn canary_replay_unbounded_sends_every_command_in_one_oversized_frame() {
    let mut config = config();
    config.timing.replay_page_keys = 4;
    config.timing.frame_max_commands = 3;
    config.timing.max_frame_bytes = 4_000;
    config.preload_budget = 0;
    let seed = |h: &mut Harness| {
        let r = runner("key-1");
        for a in 0..10 {
            let actor = format!("actor-{a}");
            h.persist(&key(&r, &actor, 0, 0), &start_command("counter", Some(vec![1; 600])));
        }
    };
    let runner_codec = Codec::new(4_000);

    // Correct model: pages of 4, frames of at most 3 commands, each within the frame limit.
    let mut rig = Rig::with(Harness::default(), config.clone());
    seed(&mut rig.h);
    let (_, out) = rig.connect(1, "key-1");
    let frames: Vec<&Vec<u8>> = out
        .iter()
        .filter_map(|o| match o {
            EdgeOutput::Send(b) => Some(b),
            _ => None,
        })
        .collect();
    assert!(frames.iter().all(|b| runner_codec.decode_to_envoy(b).is_ok()));
    assert!(command_frames(&out).iter().all(|f| f.len() <= 3));
    assert_eq!(command_frames(&out).iter().map(Vec::len).sum::<usize>(), 10);

    // Canary: one read of the whole subspace and one frame the runner refuses.
    let mut config_canary = config;
    config_canary.timing.frame_max_commands = 3;
    let mut rig = Rig::with(Harness::with_canary(Canary::ReplayUnbounded), config_canary);
    seed(&mut rig.h);
    let (_, out) = rig.connect(1, "key-1");
    let frames = command_frames(&out);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), 10);
    let bytes = out
        .iter()
        .filter_map(|o| match o {
            EdgeOutput::Send(b) => Some(b.clone()),
            _ => None,
        })
        .nth(1)
        .unwrap();
    assert!(bytes.len() > 4_000);
    assert!(matches!(
        runner_codec.decode_to_envoy(&bytes),
        Err(wire::FrameError::Oversized { .. })
    ));
    let pages: Vec<usize> = rig
        .h
        .take_facts()
        .iter()
        .filter_map(|f| match f {
            Fact::ReplayPage { keys, .. } => Some(*keys),
            _ => None,
        })
        .collect();
    assert_eq!(pages, vec![10]);
}

#[test]
fn canary_preload_bundle_persisted_delivers_the_stored_bundle() {
    let stale = p::PreloadedKv {
        entries: vec![p::PreloadedKvEntry {
            key: vec![1u8].into(),
            value: b"stale".to_vec().into(),
            metadata: p::KvMetadata { version: b"2.3.7".to_vec().into(), update_ts: 1 },
        }],
        requested_get_keys: vec![vec![1u8].into()],
        requested_prefixes: Vec::new(),
    };
    for canary in [false, true] {
        let h = if canary {
            Harness::with_canary(Canary::PreloadBundlePersisted)
        } else {
            Harness::default()
        };
        let mut rig = Rig::with(h, config());
        let r = runner("key-1");
        let k = key(&r, "actor-a", 0, 0);
        // The stored form the canary's `cmdlog::persist` writes, written the same way in both
        // runs so that only the connection's branch differs.
        let mut stored = start_command("counter", None);
        if let p::ActorCommandKeyData::CommandStartActor(s) = &mut stored {
            s.preloaded_kv = Some(stale.clone());
        }
        rig.h.write(vec![(k.key(), Some(wire::encode_stored_command(&stored)))]);
        rig.h.kv_put("actor-a", &[1], b"fresh");
        let (_, out) = rig.connect(1, "key-1");
        let frames = command_frames(&out);
        let bundle = match &frames[0][0].inner {
            p::Command::CommandStartActor(s) => s.preloaded_kv.clone().unwrap(),
            other => panic!("{other:?}"),
        };
        let fetched =
            rig.h.take_facts().iter().filter(|f| matches!(f, Fact::PreloadFetched { .. })).count();
        if canary {
            assert_eq!(bundle, stale, "the persisted bundle, not a fresh one");
            assert_eq!(fetched, 0);
        } else {
            assert_eq!(bundle.entries[0].value.as_ref(), b"fresh");
            assert_eq!(fetched, 1);
        }
    }
}
