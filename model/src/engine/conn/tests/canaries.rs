//! The canaries that live in the connection (`spec/canaries.md`): each changes the observable
//! behaviour the way the table says, and only with the canary switched on.

use super::*;

#[test]
fn canary_init_eligible_before_ready_registers_and_is_eligible_before_subscribing() {
    let r = runner("key-1");
    let eligible = crate::keys::eligible(NS, POOL, 1, &r);

    // Correct model: nothing is written before the subscriptions are confirmed.
    let mut rig = Rig::new();
    let (_, out) = rig.accept(1, "key-1");
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0], EdgeOutput::Subscribe(_)));
    assert!(rig.h.dump().is_empty());

    // Canary: registration, eligibility and a drainer trigger come before the subscription.
    let mut rig = Rig::with(Harness::with_canary(Canary::InitEligibleBeforeReady), config());
    let (mut c, out) = rig.accept(1, "key-1");
    assert_eq!(
        out,
        vec![
            EdgeOutput::Engine(EngineOutput::TriggerDrainer {
                namespace: NS.into(),
                pool: POOL.into()
            }),
            EdgeOutput::Subscribe(vec![Topic::Runner(r.clone()), Topic::Eviction(r.clone())]),
        ]
    );
    let info = rig.h.info(&r).unwrap();
    assert!(info.ready && info.eligible());
    assert!(rig.h.get(&eligible).is_some(), "allocatable before metadata and subscription");
    let facts = rig.h.model_facts();
    assert!(matches!(facts[..], [Fact::Registered { .. }]));

    // The confirmation comes late: the registration's authorization has lapsed, so a liveness
    // write precedes Init.
    rig.h.advance(crate::constants::MAX_STEP_DELAY_MS + 1);
    let out = rig.subscribed(&mut c);
    assert_eq!(kinds(&out), vec!["ToEnvoyInit"]);
    let facts = rig.h.model_facts();
    assert!(matches!(facts[..], [Fact::SubscriptionConfirmed { .. }, Fact::LivenessWrite { .. }]));
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
