//! Tests of the connection's registry transactions, through a real store and `Env`.

use super::*;
use crate::engine::cmdlog::CommandKey;
use crate::engine::conn::testkit::{checkpoint, start_command, stop_command, Harness};
use crate::engine::signal::read_inbox;
use crate::store::CommitFault;

fn request(key: &str) -> ConnectRequest {
    ConnectRequest::new("ns", "pool", key, 3).with_slots(4)
}

fn runner(key: &str) -> RunnerId {
    RunnerId::new("ns", key)
}

/// The commit versions of the commits labelled `label`, in order.
fn commit_versions(facts: &[Fact], label: TxnLabel) -> Vec<u64> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::Commit { label: l, version, .. } if *l == label => Some(*version),
            _ => None,
        })
        .collect()
}

fn eligible_key(r: &RunnerId, pool: &str, version: u32) -> Vec<u8> {
    keys::eligible(&r.namespace, pool, version, r)
}

#[test]
fn registration_creates_the_record_with_its_commit_version_as_epoch() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    let facts = h.take_facts();
    assert_eq!(commit_versions(&facts, TxnLabel::Registration), vec![reg.epoch]);
    assert!(facts.contains(&Fact::Registered {
        runner: r.clone(),
        conn: ConnId(1),
        epoch: reg.epoch
    }));
    let info = h.info(&r).unwrap();
    assert_eq!(
        info,
        RunnerInfo {
            pool: "pool".into(),
            version: 3,
            protocol_version: 8,
            total_slots: 4,
            used_slots: 0,
            epoch: reg.epoch,
            liveness_seq: 1,
            last_rtt_ms: 0,
            connected: true,
            ready: false,
            draining: false,
            expired: false,
        }
    );
    assert_eq!(h.get(&keys::registry_entry(&r)), Some(Vec::new()));
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), None);
}

#[test]
fn re_registration_raises_the_epoch_keeps_draining_and_slots_and_leaves_the_index() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let first = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    let mut info = h.info(&r).unwrap();
    info.ready = true;
    info.draining = true;
    info.expired = true;
    info.used_slots = 2;
    h.put_info(&r, &info);
    h.write(vec![(eligible_key(&r, "pool", 3), Some(Vec::new()))]);
    let second =
        register(&mut h.env(), ConnId(2), &ConnectRequest::new("ns", "other", "key-1", 9)).unwrap();
    assert!(second.epoch > first.epoch);
    let info = h.info(&r).unwrap();
    assert_eq!(info.epoch, second.epoch);
    assert_eq!((info.pool.as_str(), info.version, info.total_slots), ("other", 9, 100));
    assert_eq!(info.used_slots, 2);
    assert_eq!(info.liveness_seq, 2);
    assert!(info.draining && info.connected && !info.ready && !info.expired);
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), None, "old index entry removed");
    assert_eq!(h.get(&eligible_key(&r, "other", 9)), None);
}

#[test]
fn registration_after_unknown_outcome_adopts_the_re_run_epoch() {
    for applied in [false, true] {
        let mut h = Harness::default();
        let r = runner("key-1");
        h.faults.push_commit(TxnLabel::Registration, CommitFault::Unknown { applied });
        let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
        let facts = h.take_facts();
        let versions = commit_versions(&facts, TxnLabel::Registration);
        // The commit that is known to have committed is the last one.
        assert_eq!(versions.last(), Some(&reg.epoch));
        assert_eq!(versions.len(), if applied { 2 } else { 1 });
        let info = h.info(&r).unwrap();
        assert_eq!(info.epoch, reg.epoch);
        assert_eq!(info.liveness_seq, versions.len() as u64);
        let registered: Vec<u64> = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Registered { epoch, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        assert_eq!(registered, versions, "one fact per applied registration");
    }
}

#[test]
fn canary_init_eligible_before_ready_makes_registration_eligible() {
    let r = runner("key-1");
    let mut h = Harness::with_canary(Canary::InitEligibleBeforeReady);
    register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    let info = h.info(&r).unwrap();
    assert!(info.ready && info.eligible());
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), Some(Vec::new()));

    let mut h = Harness::default();
    register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    assert!(!h.info(&r).unwrap().ready);
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), None);
}

fn metadata(json: Option<&str>, names: &[(&str, &str)]) -> p::ToRivetMetadata {
    p::ToRivetMetadata {
        prepopulate_actor_names: if names.is_empty() {
            None
        } else {
            Some(
                names
                    .iter()
                    .map(|(n, m)| {
                        (n.to_string().into(), p::ActorName { metadata: m.to_string().into() })
                    })
                    .collect(),
            )
        },
        metadata: json.map(|j| j.to_string().into()),
    }
}

#[test]
fn metadata_writes_actor_names_and_chunked_runner_metadata() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    // A runner metadata JSON of 2.5 chunks.
    let filler = "x".repeat(METADATA_CHUNK_BYTES * 5 / 2);
    let json = format!("{{\"f\":\"{filler}\"}}");
    let m = metadata(Some(&json), &[("counter", "{\"preload\":{}}"), ("chat", "{}")]);
    write_metadata(&mut h.env(), ConnId(1), &r, reg.epoch, &m).unwrap();
    assert_eq!(
        h.get(&keys::actor_name_metadata("ns", "counter")),
        Some(b"{\"preload\":{}}".to_vec())
    );
    assert_eq!(h.get(&keys::actor_name_metadata("ns", "chat")), Some(b"{}".to_vec()));
    let chunks = h.range(&keys::runner_metadata_range(&r));
    assert_eq!(chunks.len(), json.len().div_ceil(METADATA_CHUNK_BYTES));
    assert!(chunks.iter().all(|(_, c)| c.len() <= METADATA_CHUNK_BYTES));
    assert_eq!(read_runner_metadata(&mut h.env(), &r).unwrap(), Some(json.into_bytes()));
    assert!(h.take_facts().contains(&Fact::MetadataCommitted {
        runner: r.clone(),
        conn: ConnId(1),
        epoch: reg.epoch
    }));

    // A shorter replacement leaves no stale chunk; an absent field keeps what is stored.
    write_metadata(&mut h.env(), ConnId(1), &r, reg.epoch, &metadata(Some("{}"), &[])).unwrap();
    assert_eq!(read_runner_metadata(&mut h.env(), &r).unwrap(), Some(b"{}".to_vec()));
    write_metadata(&mut h.env(), ConnId(1), &r, reg.epoch, &metadata(None, &[])).unwrap();
    assert_eq!(read_runner_metadata(&mut h.env(), &r).unwrap(), Some(b"{}".to_vec()));
}

#[test]
fn metadata_of_a_non_current_connection_writes_nothing() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let old = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    let new = register(&mut h.env(), ConnId(2), &request("key-1")).unwrap();
    let before = h.dump();
    h.take_facts();
    let m = metadata(Some("{}"), &[("counter", "{}")]);
    let err = write_metadata(&mut h.env(), ConnId(1), &r, old.epoch, &m).unwrap_err();
    assert_eq!(err, EdgeTxnError::NotCurrent { ours: old.epoch, current: new.epoch });
    assert_eq!(h.dump(), before);
    assert!(h.take_facts().iter().all(|f| !matches!(f, Fact::MetadataCommitted { .. })));
}

#[test]
fn liveness_write_increments_the_seq_and_clamps_the_rtt() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    for (rtt, stored, seq) in [(12, 12, 2), (-5, 0, 3), (i64::MAX, u32::MAX, 4), (0, 0, 5)] {
        assert_eq!(liveness_write(&mut h.env(), ConnId(1), &r, reg.epoch, rtt), Ok(seq));
        let info = h.info(&r).unwrap();
        assert_eq!((info.liveness_seq, info.last_rtt_ms), (seq, stored));
    }
    let seqs: Vec<u64> = h
        .take_facts()
        .iter()
        .filter_map(|f| match f {
            Fact::LivenessWrite { seq, epoch, .. } if *epoch == reg.epoch => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![2, 3, 4, 5]);
}

#[test]
fn liveness_write_refuses_stale_epochs_expired_runners_and_absent_records() {
    let mut h = Harness::default();
    let r = runner("key-1");
    assert_eq!(
        liveness_write(&mut h.env(), ConnId(1), &r, 5, 0),
        Err(EdgeTxnError::NoRecord { runner: r.clone() })
    );
    let old = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    let new = register(&mut h.env(), ConnId(2), &request("key-1")).unwrap();
    assert_eq!(
        liveness_write(&mut h.env(), ConnId(1), &r, old.epoch, 0),
        Err(EdgeTxnError::NotCurrent { ours: old.epoch, current: new.epoch })
    );
    let mut info = h.info(&r).unwrap();
    info.expired = true;
    h.put_info(&r, &info);
    let before = h.dump();
    assert_eq!(
        liveness_write(&mut h.env(), ConnId(2), &r, new.epoch, 0),
        Err(EdgeTxnError::Expired { runner: r.clone() })
    );
    assert_eq!(h.dump(), before);
}

#[test]
fn liveness_write_retries_conflicts_and_reports_exhausted_attempts() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    h.faults.push_commit(TxnLabel::Liveness, CommitFault::Conflict);
    assert_eq!(liveness_write(&mut h.env(), ConnId(1), &r, reg.epoch, 0), Ok(2));
    for _ in 0..crate::env::MAX_TXN_ATTEMPTS {
        h.faults.push_commit(TxnLabel::Liveness, CommitFault::Conflict);
    }
    let err = liveness_write(&mut h.env(), ConnId(1), &r, reg.epoch, 0).unwrap_err();
    assert!(err.is_store_failure(), "{err}");
    assert_eq!(h.info(&r).unwrap().liveness_seq, 2);
}

#[test]
fn ready_inserts_into_the_index_unless_draining_and_requires_the_epoch() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    assert_eq!(become_ready(&mut h.env(), ConnId(1), &r, reg.epoch), Ok(true));
    assert!(h.info(&r).unwrap().ready);
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), Some(Vec::new()));
    assert!(h.take_facts().contains(&Fact::Ready {
        runner: r.clone(),
        conn: ConnId(1),
        epoch: reg.epoch,
        eligible: true
    }));

    // Draining: ready, but not eligible.
    let reg2 = register(&mut h.env(), ConnId(2), &request("key-1")).unwrap();
    assert_eq!(
        become_ready(&mut h.env(), ConnId(1), &r, reg.epoch),
        Err(EdgeTxnError::NotCurrent { ours: reg.epoch, current: reg2.epoch })
    );
    drain(&mut h.env(), &r).unwrap();
    assert_eq!(become_ready(&mut h.env(), ConnId(2), &r, reg2.epoch), Ok(false));
    let info = h.info(&r).unwrap();
    assert!(info.ready && info.draining && !info.eligible());
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), None);
}

#[test]
fn teardown_of_the_current_connection_clears_flags_and_index() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    become_ready(&mut h.env(), ConnId(1), &r, reg.epoch).unwrap();
    assert_eq!(teardown(&mut h.env(), ConnId(1), &r, reg.epoch), Ok(true));
    let info = h.info(&r).unwrap();
    assert!(!info.connected && !info.ready);
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), None);
    assert!(h.take_facts().contains(&Fact::Teardown {
        runner: r,
        conn: ConnId(1),
        epoch: reg.epoch,
        current: true
    }));
}

#[test]
fn teardown_of_a_non_current_connection_changes_nothing() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let old = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    let new = register(&mut h.env(), ConnId(2), &request("key-1")).unwrap();
    become_ready(&mut h.env(), ConnId(2), &r, new.epoch).unwrap();
    let before = h.dump();
    h.take_facts();
    assert_eq!(teardown(&mut h.env(), ConnId(1), &r, old.epoch), Ok(false));
    assert_eq!(h.dump(), before);
    let facts = h.take_facts();
    assert!(facts.contains(&Fact::Teardown {
        runner: r.clone(),
        conn: ConnId(1),
        epoch: old.epoch,
        current: false
    }));
    assert!(commit_versions(&facts, TxnLabel::Teardown).is_empty(), "nothing written");
}

#[test]
fn drain_sets_draining_and_sends_going_away_to_every_allocation_once() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let other = runner("key-2");
    let reg = register(&mut h.env(), ConnId(1), &request("key-1")).unwrap();
    become_ready(&mut h.env(), ConnId(1), &r, reg.epoch).unwrap();
    h.allocate("actor-b", &r, 2);
    h.allocate("actor-a", &r, 0);
    h.allocate("actor-c", &other, 1);
    // An allocation whose workflow is gone (no `actor/A/ns`): the signal is dropped.
    h.write(vec![(keys::runner_alloc(&r, "actor-gone"), Some(records::encode(&4u32)))]);
    h.take_facts();

    let result = drain(&mut h.env(), &r).unwrap();
    let expected_allocs: Vec<(ActorId, u32)> =
        vec![("actor-a".into(), 0), ("actor-b".into(), 2), ("actor-gone".into(), 4)];
    assert!(result.started);
    assert_eq!(result.allocations, expected_allocs);
    assert_eq!(
        result.outputs,
        vec![
            EngineOutput::WakeWorkflow { actor: "actor-a".into() },
            EngineOutput::WakeWorkflow { actor: "actor-b".into() },
        ]
    );
    let info = h.info(&r).unwrap();
    assert!(info.draining && info.ready && !info.eligible());
    assert_eq!(h.get(&eligible_key(&r, "pool", 3)), None);
    assert!(h
        .take_facts()
        .contains(&Fact::Drain { runner: r.clone(), allocations: expected_allocs }));
    for (actor, generation) in [("actor-a", 0), ("actor-b", 2)] {
        let mut env = h.env();
        let mut txn = env.begin();
        let inbox = read_inbox(&mut env, &mut txn, actor, 10).unwrap();
        env.abort(txn);
        let signals: Vec<Signal> = inbox.into_iter().map(|e| e.signal).collect();
        assert_eq!(signals, vec![Signal::GoingAway { runner: r.clone(), generation }]);
    }
    let mut env = h.env();
    let mut txn = env.begin();
    assert!(read_inbox(&mut env, &mut txn, "actor-c", 10).unwrap().is_empty());
    env.abort(txn);

    // Repeated: nothing happens.
    let before = h.dump();
    let again = drain(&mut h.env(), &r).unwrap();
    assert_eq!(again, DrainResult::default());
    assert_eq!(h.dump(), before);
    // Draining is sticky across registrations.
    register(&mut h.env(), ConnId(3), &request("key-1")).unwrap();
    assert!(h.info(&r).unwrap().draining);
}

#[test]
fn command_ack_deletes_exactly_the_acknowledged_keys_of_the_sender() {
    let mut h = Harness::default();
    let r = runner("key-1");
    let other = runner("key-2");
    let key = |runner: &RunnerId, actor: &str, generation: u32, index: i64| CommandKey {
        runner: runner.clone(),
        actor: actor.to_string(),
        generation,
        index,
    };
    let all = [
        key(&r, "actor-a", 1, 0),
        key(&r, "actor-a", 1, 1),
        key(&r, "actor-a", 2, 0),
        key(&r, "actor-b", 1, 0),
        key(&other, "actor-a", 1, 0),
    ];
    for k in &all {
        let cmd = if k.index == 0 {
            start_command("counter", None)
        } else {
            stop_command(p::StopActorReason::StopIntent)
        };
        h.persist(k, &cmd);
    }
    h.take_facts();
    let acks =
        [checkpoint("actor-a", 1, 0), checkpoint("actor-b", 1, 5), checkpoint("actor-z", 0, 3)];
    ack_commands(&mut h.env(), ConnId(1), &r, &acks).unwrap();
    let remaining: Vec<bool> = all.iter().map(|k| h.get(&k.key()).is_some()).collect();
    assert_eq!(remaining, vec![false, true, true, false, true]);
    let applied: Vec<(String, u32, i64)> = h
        .take_facts()
        .into_iter()
        .filter_map(|f| match f {
            Fact::CommandAckApplied { actor, generation, index, .. } => {
                Some((actor, generation, index))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        applied,
        vec![("actor-a".into(), 1, 0), ("actor-b".into(), 1, 5), ("actor-z".into(), 0, 3)]
    );
    // Idempotent.
    let before = h.dump();
    ack_commands(&mut h.env(), ConnId(1), &r, &acks).unwrap();
    assert_eq!(h.dump(), before);
}
