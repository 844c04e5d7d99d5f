//! Runner frames after the handshake (`spec/protocol.md` §2.1, §2.4, §3.6, §6.2, §6.7, §7.2):
//! KV requests and their fence, command acks, drain, out-of-scope messages, invalid frames, and
//! teardown.

use super::*;
use crate::engine::signal::read_inbox;

fn put(actor: &str, request_id: u32, value: &[u8]) -> p::ToRivet {
    p::ToRivet::ToRivetKvRequest(p::ToRivetKvRequest {
        actor_id: actor.to_string().into(),
        request_id,
        data: p::KvRequestData::KvPutRequest(p::KvPutRequest {
            keys: vec![vec![1u8].into()],
            values: vec![value.to_vec().into()],
        }),
    })
}

fn kv_response(out: &[EdgeOutput]) -> p::ToEnvoyKvResponse {
    match &sent(out)[..] {
        [p::ToEnvoy::ToEnvoyKvResponse(r)] => r.clone(),
        other => panic!("expected one KV response, got {other:?}"),
    }
}

fn stored_value(h: &mut Harness, actor: &str) -> Option<Vec<u8>> {
    h.get(&crate::keys::actor_kv_key(actor, &[1]))
        .map(|b| crate::records::KvEntryRecord::decode(&b).unwrap().value)
}

#[test]
fn kv_requests_are_fenced_by_the_connection_epoch() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    rig.h.allocate("actor-a", &r, 4);
    let (mut c1, _) = rig.connect(1, "key-1");
    let e1 = c1.epoch().unwrap();
    rig.h.take_facts();
    let out = rig.recv_msg(&mut c1, &put("actor-a", 1, b"one"));
    assert_eq!(
        kv_response(&out),
        p::ToEnvoyKvResponse { request_id: 1, data: p::KvResponseData::KvPutResponse }
    );
    assert_eq!(stored_value(&mut rig.h, "actor-a"), Some(b"one".to_vec()));
    let answered = rig.h.model_facts();
    let version = answered.iter().find_map(|f| match f {
        Fact::KvAnswered { mutation_version, placement_generation, error, epoch, .. } => {
            assert_eq!((*placement_generation, error.clone(), *epoch), (Some(4), None, e1));
            *mutation_version
        }
        _ => None,
    });
    assert!(version.is_some(), "{answered:?}");

    // A newer connection registers: the old one is no longer the holder.
    let (mut c2, _) = rig.connect(2, "key-1");
    rig.h.take_facts();
    let out = rig.recv_msg(&mut c1, &put("actor-a", 2, b"stale"));
    let response = kv_response(&out);
    assert_eq!(response.request_id, 2);
    match response.data {
        p::KvResponseData::KvErrorResponse(e) => assert_eq!(e.message.as_str(), "kv.not_holder"),
        other => panic!("{other:?}"),
    }
    assert_eq!(stored_value(&mut rig.h, "actor-a"), Some(b"one".to_vec()));
    assert!(rig.h.model_facts().iter().any(|f| matches!(
        f,
        Fact::KvAnswered { error: Some(e), mutation_version: None, .. } if e == "kv.not_holder"
    )));
    let out = rig.recv_msg(&mut c2, &put("actor-a", 3, b"two"));
    assert_eq!(kv_response(&out).data, p::KvResponseData::KvPutResponse);
    assert_eq!(stored_value(&mut rig.h, "actor-a"), Some(b"two".to_vec()));
    // An actor of another runner is not held by this one.
    rig.h.allocate("actor-b", &runner("key-9"), 0);
    let out = rig.recv_msg(&mut c2, &put("actor-b", 4, b"x"));
    assert!(matches!(kv_response(&out).data, p::KvResponseData::KvErrorResponse(_)));
}

#[test]
fn a_command_ack_frame_deletes_the_acknowledged_keys() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let keys = [key(&r, "actor-a", 1, 0), key(&r, "actor-a", 1, 1), key(&r, "actor-b", 0, 0)];
    rig.h.persist(&keys[0], &start_command("counter", None));
    rig.h.persist(&keys[1], &stop_command(p::StopActorReason::Destroy));
    rig.h.persist(&keys[2], &start_command("counter", None));
    let (mut c, _) = rig.connect(1, "key-1");
    rig.h.take_facts();
    let ack = p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
        last_command_checkpoints: vec![checkpoint("actor-a", 1, 0), checkpoint("actor-b", 0, 0)],
    });
    let out = rig.recv_msg(&mut c, &ack);
    assert!(out.is_empty());
    let left: Vec<bool> = keys.iter().map(|k| rig.h.get(&k.key()).is_some()).collect();
    assert_eq!(left, vec![false, true, false]);
    let applied = rig
        .h
        .model_facts()
        .into_iter()
        .filter(|f| matches!(f, Fact::CommandAckApplied { .. }))
        .count();
    assert_eq!(applied, 2);
}

#[test]
fn stopping_drains_the_runner_once() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    rig.h.allocate("actor-a", &r, 2);
    let (mut c, _) = rig.connect(1, "key-1");
    let out = rig.recv_msg(&mut c, &p::ToRivet::ToRivetStopping);
    assert_eq!(
        out,
        vec![EdgeOutput::Engine(EngineOutput::WakeWorkflow { actor: "actor-a".into() })]
    );
    let info = rig.h.info(&r).unwrap();
    assert!(info.draining && !info.eligible());
    let mut env = rig.h.env();
    let mut txn = env.begin();
    let inbox = read_inbox(&mut env, &mut txn, "actor-a", 10).unwrap();
    env.abort(txn);
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].signal, Signal::GoingAway { runner: r.clone(), generation: 2 });
    assert!(rig.recv_msg(&mut c, &p::ToRivet::ToRivetStopping).is_empty(), "idempotent");
    // The connection stays open and keeps pinging.
    assert!(c.is_live());
}

#[test]
fn sqlite_requests_get_an_unsupported_error_and_tunnel_messages_are_dropped() {
    let mut rig = Rig::new();
    let (mut c, _) = rig.connect(1, "key-1");
    let request = p::ToRivet::ToRivetSqliteExecRequest(p::ToRivetSqliteExecRequest {
        request_id: 77,
        data: p::SqliteExecRequest {
            namespace_id: "ns-id".into(),
            actor_id: "actor-a".into(),
            generation: 1,
            sql: "select 1".into(),
        },
    });
    let out = rig.recv_msg(&mut c, &request);
    let expected = p::ToEnvoy::ToEnvoySqliteExecResponse(p::ToEnvoySqliteExecResponse {
        request_id: 77,
        data: p::SqliteExecResponse::SqliteErrorResponse(p::SqliteErrorResponse {
            group: "model".into(),
            code: "unsupported".into(),
            message: "SQLite is not supported by the model".into(),
        }),
    });
    assert_eq!(sent(&out), vec![expected]);
    let tunnel = proptest_tunnel();
    assert!(rig.recv_msg(&mut c, &tunnel).is_empty());
    assert!(c.is_live());
}

/// A tunnel message (any valid one).
fn proptest_tunnel() -> p::ToRivet {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let kind =
        crate::wire::strategies::to_rivet_tunnel_kind().new_tree(&mut runner).unwrap().current();
    p::ToRivet::ToRivetTunnelMessage(p::ToRivetTunnelMessage {
        message_id: p::MessageId { gateway_id: [0; 4], request_id: [0; 4], message_index: 0 },
        message_kind: kind,
    })
}

#[test]
fn undecodable_oversized_and_invalid_frames_apply_nothing() {
    let mut config = config();
    config.timing.max_frame_bytes = 200;
    let mut rig = Rig::with(Harness::default(), config);
    let r = runner("key-1");
    let k = key(&r, "actor-a", 0, 0);
    rig.h.persist(&k, &start_command("counter", None));
    let ack = |cps: Vec<p::ActorCheckpoint>| {
        frame(&p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
            last_command_checkpoints: cps,
        }))
    };
    let small_metadata = frame(&p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
        prepopulate_actor_names: None,
        metadata: None,
    }));

    // Truncated ack.
    let (mut c, mut out) = rig.accept(1, "key-1");
    out.extend(rig.subscribed(&mut c));
    out.extend(rig.recv(&mut c, &small_metadata));
    rig.finish_replay(&mut c, out);
    let mut bytes = ack(vec![checkpoint("actor-a", 0, 0)]);
    bytes.pop();
    let out = rig.recv(&mut c, &bytes);
    assert!(matches!(&closes(&out)[..], [CloseReason::InvalidPacket { detail }]
            if detail.contains("truncated")));
    assert!(rig.h.get(&k.key()).is_some());

    // An ack padded past the frame limit.
    let (mut c, mut out) = rig.accept(2, "key-1");
    out.extend(rig.subscribed(&mut c));
    out.extend(rig.recv(&mut c, &small_metadata));
    rig.finish_replay(&mut c, out);
    let long = "a".repeat(60);
    let bytes = ack(vec![
        checkpoint(&long, 0, 0),
        checkpoint(&long, 1, 0),
        checkpoint(&long, 2, 0),
        checkpoint("actor-a", 0, 0),
    ]);
    assert!(bytes.len() > 200);
    let out = rig.recv(&mut c, &bytes);
    let detail = Codec::new(200).decode_to_rivet(&bytes).unwrap_err().close_detail();
    assert_eq!(closes(&out), vec![CloseReason::InvalidPacket { detail }]);
    assert!(rig.h.get(&k.key()).is_some());

    // A valid checkpoint next to a negative index: the whole frame is refused.
    let (mut c, mut out) = rig.accept(3, "key-1");
    out.extend(rig.subscribed(&mut c));
    out.extend(rig.recv(&mut c, &small_metadata));
    rig.finish_replay(&mut c, out);
    let bytes = ack(vec![checkpoint("actor-a", 0, 0), checkpoint("actor-a", 0, -1)]);
    let out = rig.recv(&mut c, &bytes);
    assert!(matches!(&closes(&out)[..], [CloseReason::InvalidPacket { detail }]
            if detail.contains("negative index")));
    assert!(rig.h.get(&k.key()).is_some());
}

#[test]
fn teardown_of_a_non_current_connection_changes_nothing() {
    let mut rig = Rig::new();
    let (mut c1, _) = rig.connect(1, "key-1");
    let (_c2, _) = rig.connect(2, "key-1");
    let before = rig.h.dump();
    rig.h.take_facts();
    let out = c1.on_socket_closed(&mut rig.h.env());
    assert_eq!(
        out,
        vec![EdgeOutput::Unsubscribe(vec![
            Topic::Runner(runner("key-1")),
            Topic::Eviction(runner("key-1"))
        ])]
    );
    assert_eq!(rig.h.dump(), before);
    assert!(rig.h.model_facts().iter().any(|f| matches!(f, Fact::Teardown { current: false, .. })));
    assert!(c1.is_finished());
}

#[test]
fn teardown_of_the_current_connection_removes_eligibility() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    let (mut c, _) = rig.connect(1, "key-1");
    let eligible = crate::keys::eligible(NS, POOL, 1, &r);
    assert!(rig.h.get(&eligible).is_some());
    let out = rig.bus(&mut c, &bus(&p::ToEnvoyConn::ToEnvoyConnClose));
    assert_eq!(closes(&out), vec![CloseReason::Closed]);
    assert!(rig.h.get(&eligible).is_none());
    let info = rig.h.info(&r).unwrap();
    assert!(!info.connected && !info.ready);
}

#[test]
fn a_kv_attempt_with_an_unknown_outcome_is_re_run_and_its_applied_writes_are_recorded() {
    let mut rig = Rig::new();
    let r = runner("key-1");
    rig.h.allocate("actor-a", &r, 0);
    let (mut c, _) = rig.connect(1, "key-1");
    rig.h.take_facts();
    rig.h
        .faults
        .push_commit(TxnLabel::KvRequest, crate::store::CommitFault::Unknown { applied: true });
    let out = rig.recv_msg(&mut c, &put("actor-a", 5, b"v"));
    assert_eq!(kv_response(&out).data, p::KvResponseData::KvPutResponse);
    assert_eq!(stored_value(&mut rig.h, "actor-a"), Some(b"v".to_vec()));
    let facts = rig.h.take_facts();
    let unknown_applied = facts.iter().find_map(|f| match f {
        Fact::Commit { label: TxnLabel::KvRequest, version, .. } => Some(*version),
        _ => None,
    });
    let answered = facts.iter().find_map(|f| match f {
        Fact::KvAnswered { request_id: 5, error: None, mutation_version, .. } => *mutation_version,
        _ => None,
    });
    // The first attempt applied (unknown to the model) and is in the history; the re-run
    // committed again at a later version, which is the answer's.
    assert!(unknown_applied.is_some() && answered.is_some());
    assert!(unknown_applied < answered, "{unknown_applied:?} {answered:?}");
}
