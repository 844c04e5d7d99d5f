//! Atomicity (`spec/preload.md` §1.4, K1) under injected commit faults, and the retry loop.

use rivet_envoy_protocol::KvRequestData;

use super::{delete_range, put, put_owned, World, ACTOR};
use crate::keys;
use crate::kv::{execute_with_retries, AttemptFailure, KvError};
use crate::store::{CommitFault, KeyRange, ReadMode};

/// A multi-key put over three keys, with a pre-existing entry overwritten.
fn seeded() -> World {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(b"a", b"old"), (b"q", b"keep")]));
    w
}

fn mutations() -> Vec<KvRequestData> {
    vec![
        put(&[(b"a", b"new"), (b"b", b"2"), (b"c", b"")]),
        super::delete(&[b"a", b"q"]),
        delete_range(b"a", b"z"),
        KvRequestData::KvDropRequest,
    ]
}

#[test]
fn conflict_and_unapplied_unknown_leave_the_store_unchanged() {
    for req in mutations() {
        for fault in [CommitFault::Conflict, CommitFault::Unknown { applied: false }] {
            let mut w = seeded();
            let before = w.dump();
            let version = w.store.version();
            let err = w.attempt(ACTOR, &req, Some(fault)).expect_err("the fault fails the attempt");
            let expected = match fault {
                CommitFault::Conflict => AttemptFailure::Conflict,
                CommitFault::Unknown { .. } => AttemptFailure::Unknown,
            };
            assert_eq!(err.failure, expected);
            assert!(err.wrote);
            assert_eq!(err.fence.map(|f| f.placement.is_some()), Some(true));
            assert_eq!(w.store.version(), version);
            assert!(w.dump() == before, "{req:?} with {fault:?} changed the store");
        }
    }
}

#[test]
fn applied_unknown_applies_the_whole_mutation() {
    for req in mutations() {
        let mut clean = seeded();
        let mut faulty = seeded();
        clean.ok(ACTOR, &req);
        let err = faulty
            .attempt(ACTOR, &req, Some(CommitFault::Unknown { applied: true }))
            .expect_err("unknown is reported");
        assert!(err.may_have_applied());
        assert_eq!(faulty.entries(ACTOR), clean.entries(ACTOR), "{req:?}");
        assert_eq!(faulty.usage_record(ACTOR), clean.usage_record(ACTOR));
    }
}

#[test]
fn a_reader_at_an_earlier_version_sees_none_of_a_multi_key_put() {
    let mut w = World::new();
    let now = w.now_ms;
    let range = KeyRange::prefix(&keys::actor_kv_prefix(ACTOR));
    let mut early = w.store.begin(now);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..50u8).map(|i| (vec![i], vec![i; 3])).collect();
    let out = w.ok(ACTOR, &put_owned(&pairs));
    let seen =
        w.store.get_range(&mut early, &range, None, false, ReadMode::Snapshot, now).expect("reads");
    assert!(seen.is_empty(), "an earlier reader saw part of a later put");
    w.store.abort(early);
    let mut late = w.store.begin(now);
    assert_eq!(late.read_version(), out.commit_version.expect("committed"));
    let seen =
        w.store.get_range(&mut late, &range, None, false, ReadMode::Snapshot, now).expect("reads");
    assert_eq!(seen.len(), 50);
    w.store.abort(late);
}

#[test]
fn a_rejected_request_commits_nothing_whatever_the_fault() {
    for fault in [None, Some(CommitFault::Conflict), Some(CommitFault::Unknown { applied: true })] {
        let mut w = seeded();
        w.cfg.max_storage_size = 10;
        let version = w.store.version();
        let out = w
            .attempt(ACTOR, &put(&[(b"big", &[0u8; 100])]), fault)
            .expect("a rejection is an answer");
        assert!(matches!(out.error, Some(KvError::StorageQuotaExceeded { .. })));
        assert_eq!(w.store.version(), version);
    }
}

#[test]
fn retries_after_conflict_and_unknown_equal_one_clean_run() {
    for req in mutations() {
        let mut clean = seeded();
        let mut retried = seeded();
        // Same clocks for both runs.
        clean.now_ms += 1;
        clean.wall_ms += 1;
        retried.now_ms += 1;
        retried.wall_ms += 1;
        let clean_out = execute_with_retries(
            &mut clean.store,
            &clean.ctx,
            ACTOR,
            &req,
            &clean.cfg,
            clean.now_ms,
            clean.wall_ms,
            &mut || None,
            5,
        );
        assert!(clean_out.failed_attempts.is_empty());
        let mut plan = vec![
            Some(CommitFault::Conflict),
            Some(CommitFault::Unknown { applied: true }),
            Some(CommitFault::Unknown { applied: false }),
            None,
        ]
        .into_iter();
        let out = execute_with_retries(
            &mut retried.store,
            &retried.ctx,
            ACTOR,
            &req,
            &retried.cfg,
            retried.now_ms,
            retried.wall_ms,
            &mut || plan.next().flatten(),
            5,
        );
        assert_eq!(out.outcome.error, None);
        assert_eq!(out.outcome.response, clean_out.outcome.response);
        assert_eq!(out.failed_attempts.len(), 3);
        assert!(out.failed_attempts[1].may_have_applied());
        assert_eq!(retried.entries(ACTOR), clean.entries(ACTOR), "{req:?}");
        assert_eq!(retried.usage_record(ACTOR), clean.usage_record(ACTOR));
    }
}

#[test]
fn running_out_of_attempts_answers_internal_and_changes_nothing() {
    let mut w = seeded();
    let before = w.dump();
    let version = w.store.version();
    let out = execute_with_retries(
        &mut w.store,
        &w.ctx,
        ACTOR,
        &put(&[(b"a", b"x")]),
        &w.cfg,
        w.now_ms,
        w.wall_ms,
        &mut || Some(CommitFault::Conflict),
        3,
    );
    assert_eq!(out.failed_attempts.len(), 3);
    assert_eq!(out.outcome.error, Some(KvError::Internal));
    let rivet_envoy_protocol::KvResponseData::KvErrorResponse(e) = &out.outcome.response else {
        panic!("not an error")
    };
    assert!(e.message.starts_with("kv.internal: "), "{}", e.message);
    assert!(!out.outcome.mutated);
    assert!(out.outcome.fence.is_some());
    assert_eq!(w.store.version(), version);
    assert!(w.dump() == before);

    // Zero attempts still makes one.
    let out = execute_with_retries(
        &mut w.store,
        &w.ctx,
        ACTOR,
        &put(&[(b"a", b"x")]),
        &w.cfg,
        w.now_ms,
        w.wall_ms,
        &mut || None,
        0,
    );
    assert_eq!(out.outcome.error, None);
}
