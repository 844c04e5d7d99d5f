//! The connect request and the handshake (`spec/protocol.md` §2.2, §2.3).

use super::*;

/// The model facts (no store commits) among `facts`, reduced to their kind names.
fn fact_kinds(facts: &[Fact]) -> Vec<&'static str> {
    facts
        .iter()
        .filter_map(|f| {
            Some(match f {
                Fact::SubscriptionConfirmed { .. } => "subscription_confirmed",
                Fact::Registered { .. } => "registered",
                Fact::MetadataCommitted { .. } => "metadata_committed",
                Fact::ReplayPage { .. } => "replay_page",
                Fact::ReplayDone { .. } => "replay_done",
                Fact::Ready { .. } => "ready",
                Fact::CommandsSent { .. } => "commands_sent",
                Fact::PreloadFetched { .. } => "preload_fetched",
                Fact::KvAnswered { .. } => "kv_answered",
                Fact::LivenessWrite { .. } => "liveness_write",
                _ => return None,
            })
        })
        .collect()
}

#[test]
fn invalid_requests_close_before_any_frame_and_write_nothing() {
    let cases: Vec<(String, Vec<String>, CloseReason)> = vec![
        (
            "/envoys/connect?protocol_version=7&namespace=ns&envoy_key=key-1&version=1&pool_name=pool"
                .into(),
            rivet(),
            CloseReason::InvalidRequest {
                detail: "query parameter `protocol_version` must be 8, got 7".into(),
            },
        ),
        (
            ConnectRequest::new("nope", POOL, "key-1", 1).to_path_and_query(),
            rivet(),
            CloseReason::NamespaceNotFound,
        ),
        (
            ConnectRequest::new(NS, "other", "key-1", 1).to_path_and_query(),
            rivet(),
            CloseReason::NoRunnerConfig,
        ),
        (
            path("key-1"),
            vec!["rivet_token.abc".into()],
            CloseReason::InvalidRequest {
                detail: "the WebSocket sub-protocol `rivet` is not offered".into(),
            },
        ),
    ];
    for (pq, offered, reason) in cases {
        let mut rig = Rig::new();
        let config = rig.config.clone();
        let (c, out) = EdgeConn::accept(&mut rig.h.env(), &config, ConnId(1), &pq, &offered);
        assert_eq!(out, vec![EdgeOutput::Close(reason.clone())], "{pq}");
        assert!(c.is_finished() && c.runner().is_none() && c.epoch().is_none());
        assert!(rig.h.dump().is_empty(), "nothing written for {pq}");
        assert_eq!(
            rig.h.take_facts(),
            vec![Fact::EdgeConnClosed {
                runner: None,
                conn: ConnId(1),
                reason: reason.to_string()
            }]
        );
    }
    // A header value offering several sub-protocols is read as one.
    let mut rig = Rig::new();
    let config = rig.config.clone();
    let offered = vec!["rivet_token.abc, rivet".to_string()];
    let (_, out) = EdgeConn::accept(&mut rig.h.env(), &config, ConnId(1), &path("key-1"), &offered);
    assert!(closes(&out).is_empty());
}

#[test]
fn accept_subscribes_then_registration_eviction_publish_and_init_come_in_order() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let (mut c, out) = rig.accept(1, "key-1");
    assert_eq!(
        out,
        vec![EdgeOutput::Subscribe(vec![Topic::Runner(r.clone()), Topic::Eviction(r.clone())])]
    );
    assert!(rig.h.dump().is_empty(), "no registration before the subscriptions are confirmed");
    let out = rig.subscribed(&mut c);
    let epoch = c.epoch().unwrap();
    assert_eq!(
        out[0],
        EdgeOutput::Engine(EngineOutput::Publish {
            topic: Topic::Eviction(r.clone()),
            message: BusMessage::Eviction { epoch },
        })
    );
    let init = p::ToEnvoy::ToEnvoyInit(p::ToEnvoyInit {
        metadata: p::ProtocolMetadata {
            envoy_lost_threshold: crate::constants::RUNNER_LOST_THRESHOLD_MS as i64,
            actor_stop_threshold: crate::constants::ACTOR_STOP_THRESHOLD_MS as i64,
            max_response_payload_size: crate::constants::MAX_RESPONSE_PAYLOAD_BYTES,
        },
    });
    assert_eq!(sent(&out), vec![init]);
    assert!(matches!(out[1], EdgeOutput::Send(_)), "Init right after the publish");
    let now = rig.h.now_ms;
    let t = timers(&out);
    assert_eq!(t[0], (now + crate::constants::INIT_TIMEOUT_MS, EdgeTimer::InitTimeout));
    let (ping_at, ping) = &t[1];
    assert!(matches!(ping, EdgeTimer::Ping { .. }));
    let interval = crate::constants::PING_INTERVAL_MS;
    assert!((now + interval..now + interval + crate::constants::PING_JITTER_MS).contains(ping_at));
    assert_eq!(fact_kinds(&rig.h.take_facts()), vec!["subscription_confirmed", "registered"]);
    assert!(!c.is_live());
}

#[test]
fn metadata_before_init_is_buffered_then_committed_then_replay_then_ready() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    // A stored start so the replay sends something.
    rig.h.persist(&key(&r, "actor-a", 0, 0), &start_command("counter", None));
    rig.h.kv_put("actor-a", &[1], b"state");
    let stored = rig.h.dump().len();
    let (mut c, mut out) = rig.accept(1, "key-1");
    // The runner's metadata and a KV request arrive before the edge sent Init.
    out.extend(rig.recv(&mut c, &metadata_frame()));
    let kv = p::ToRivet::ToRivetKvRequest(p::ToRivetKvRequest {
        actor_id: "actor-a".into(),
        request_id: 7,
        data: p::KvRequestData::KvDropRequest,
    });
    out.extend(rig.recv_msg(&mut c, &kv));
    assert!(sent(&out).is_empty() && rig.h.dump().len() == stored, "buffered, nothing applied");
    out.extend(rig.subscribed(&mut c));
    let out = rig.finish_replay(&mut c, out);
    assert_eq!(kinds(&out), vec!["ToEnvoyInit", "ToEnvoyCommands", "ToEnvoyKvResponse"]);
    let facts = rig.h.take_facts();
    assert_eq!(
        fact_kinds(&facts),
        vec![
            "subscription_confirmed",
            "registered",
            "metadata_committed",
            "replay_page",
            "preload_fetched",
            "commands_sent",
            "replay_done",
            "ready",
            "kv_answered",
        ]
    );
    // The bundle read the manifest the metadata just registered.
    let manifest = facts.iter().find_map(|f| match f {
        Fact::PreloadFetched { manifest_json, .. } => Some(manifest_json.clone()),
        _ => None,
    });
    let expected = reference_manifest().normalize().to_json().to_string();
    assert_eq!(manifest, Some(Some(expected)));
    assert!(c.is_live());
    assert!(out.contains(&EdgeOutput::Engine(EngineOutput::TriggerDrainer {
        namespace: NS.into(),
        pool: POOL.into()
    })));
    let info = rig.h.info(&r).unwrap();
    assert!(info.ready && info.eligible());
    assert_eq!(
        rig.h.get(&crate::keys::actor_name_metadata(NS, "counter")),
        Some(reference_manifest().to_metadata_json().into_bytes())
    );
}

#[test]
fn first_frame_must_be_metadata() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    let before = rig.h.dump();
    let out = rig.recv_msg(&mut c, &p::ToRivet::ToRivetPong(p::ToRivetPong { ts: 1 }));
    assert_eq!(
        closes(&out),
        vec![CloseReason::InvalidInitialPacket {
            detail: "first frame is ToRivetPong, expected ToRivetMetadata".into()
        }]
    );
    assert!(sent(&out).is_empty());
    // Teardown ran: only the connection flags changed.
    let info = rig.h.info(&runner("key-1")).unwrap();
    assert!(!info.connected);
    assert_eq!(before.len(), rig.h.dump().len());
    assert!(out.contains(&EdgeOutput::Unsubscribe(vec![
        Topic::Runner(runner("key-1")),
        Topic::Eviction(runner("key-1"))
    ])));
    // Later frames are not read.
    assert!(rig.recv(&mut c, &metadata_frame()).is_empty());
    assert!(c.is_finished());
}

#[test]
fn undecodable_first_frame_closes_with_invalid_initial_packet_and_applies_nothing() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    let mut bytes = metadata_frame();
    bytes.truncate(bytes.len() - 3);
    let before = rig.h.dump();
    let out = rig.recv(&mut c, &bytes);
    let detail = Codec::default().decode_to_rivet(&bytes).unwrap_err().close_detail();
    assert_eq!(closes(&out), vec![CloseReason::InvalidInitialPacket { detail }]);
    assert_eq!(rig.h.get(&crate::keys::actor_name_metadata(NS, "counter")), None);
    assert_eq!(before.len(), rig.h.dump().len());
}

#[test]
fn a_text_frame_or_a_metadata_that_is_not_an_object_is_refused() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    let out = c.on_frame(&mut rig.h.env(), DataFrame::Text("hello"));
    assert!(matches!(&closes(&out)[..], [CloseReason::InvalidInitialPacket { .. }]));

    let mut rig = Rig::new();
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    let bad = p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
        prepopulate_actor_names: None,
        metadata: Some("[1]".into()),
    });
    let out = rig.recv_msg(&mut c, &bad);
    let detail = wire::validate_to_rivet(&bad).unwrap_err().close_detail();
    assert_eq!(closes(&out), vec![CloseReason::InvalidInitialPacket { detail }]);
    assert_eq!(edge_txn::read_runner_metadata(&mut rig.h.env(), &runner("key-1")).unwrap(), None);
}

#[test]
fn no_metadata_within_init_timeout_closes() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c);
    rig.h.advance(crate::constants::INIT_TIMEOUT_MS);
    let out = rig.timer(&mut c, EdgeTimer::InitTimeout);
    assert_eq!(closes(&out), vec![CloseReason::TimedOutWaitingForInit]);

    // With metadata received, the timer does nothing.
    let (mut c, _) = rig.connect(2, "key-2");
    assert!(rig.timer(&mut c, EdgeTimer::InitTimeout).is_empty());
}

#[test]
fn handshake_with_metadata_after_init_and_empty_log_becomes_ready() {
    let mut rig = Rig::new();
    let (c, out) = rig.connect(1, "key-1");
    assert_eq!(kinds(&out), vec!["ToEnvoyInit"]);
    let facts = rig.h.take_facts();
    assert_eq!(
        fact_kinds(&facts),
        vec![
            "subscription_confirmed",
            "registered",
            "metadata_committed",
            "replay_page",
            "replay_done",
            "ready"
        ]
    );
    assert!(facts.contains(&Fact::ReplayPage {
        runner: runner("key-1"),
        conn: ConnId(1),
        keys: 0
    }));
    assert_eq!(c.epoch(), rig.h.info(&runner("key-1")).map(|i| i.epoch));
}

#[test]
fn a_registration_that_fails_in_the_store_closes_without_init() {
    let mut rig = Rig::new();
    for _ in 0..crate::env::MAX_TXN_ATTEMPTS {
        rig.h.faults.push_commit(TxnLabel::Registration, crate::store::CommitFault::Conflict);
    }
    let (mut c, _) = rig.accept(1, "key-1");
    let out = rig.subscribed(&mut c);
    assert_eq!(closes(&out), vec![CloseReason::TimedOut]);
    assert!(sent(&out).is_empty());
    assert!(c.epoch().is_none() && c.is_finished());
    assert!(rig.h.model_facts().contains(&Fact::Probe { name: "edge-txn-store-failure".into() }));
    assert!(rig.h.dump().is_empty());
}

#[test]
fn metadata_of_a_connection_that_lost_currency_closes_with_eviction() {
    let mut rig = Rig::new();
    let (mut c1, _) = rig.accept(1, "key-1");
    rig.subscribed(&mut c1);
    let (_c2, _) = rig.connect(2, "key-1");
    let out = rig.recv(&mut c1, &metadata_frame());
    assert_eq!(closes(&out), vec![CloseReason::Eviction]);
    assert!(command_frames(&out).is_empty(), "no replay");
}

#[test]
fn frames_before_init_are_bounded() {
    let mut config = config();
    config.timing.live_buffer_max = 1;
    let mut rig = Rig::with(Harness::default(), config);
    let (mut c, _) = rig.accept(1, "key-1");
    assert!(rig.recv(&mut c, &metadata_frame()).is_empty());
    let out = rig.recv_msg(&mut c, &p::ToRivet::ToRivetPong(p::ToRivetPong { ts: 0 }));
    assert_eq!(
        closes(&out),
        vec![CloseReason::InvalidPacket { detail: "more than 1 frames before ToEnvoyInit".into() }]
    );
}
