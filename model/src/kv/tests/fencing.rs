//! Fencing (`spec/preload.md` §1.5, K4): only the holder connection of the actor's current
//! generation is accepted; every other request is rejected with no change.

use super::{get, put, World, ACTOR, EPOCH, GENERATION, NS};
use crate::keys::{self, RunnerId};
use crate::kv::fence::read_fence;
use crate::kv::{KvError, KvErrorCode};
use crate::records::{self, Placement};
use crate::store::{CommitError, ReadMode};

/// A put and a get are both rejected with `err`, and nothing changes.
fn assert_fenced(w: &mut World, actor: &str, err: KvError) {
    w.assert_rejected(actor, &put(&[(b"k", b"v")]), err.clone());
    w.assert_rejected(actor, &get(&[b"k"]), err);
}

#[test]
fn the_holder_is_accepted_and_the_fence_is_recorded() {
    let mut w = World::new();
    let out = w.ok(ACTOR, &put(&[(b"k", b"v")]));
    let fence = out.fence.expect("the fence was read");
    assert_eq!(fence.actor_namespace.as_deref(), Some(NS));
    assert_eq!(
        fence.placement,
        Some(Placement { runner: w.ctx.runner.clone(), generation: GENERATION })
    );
    assert_eq!((fence.runner_epoch, fence.runner_expired), (Some(EPOCH), Some(false)));
    assert_eq!(super::response_keys(&w.ok(ACTOR, &get(&[b"k"]))), vec![b"k".to_vec()]);
}

#[test]
fn an_actor_that_does_not_exist_is_not_found() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(b"k", b"v")]));
    assert_fenced(&mut w, "never-created", KvError::ActorNotFound);
    // A destroyed actor: its namespace record is gone, even though a placement is left over.
    w.write(|t| t.clear(keys::actor_namespace(ACTOR)));
    assert_fenced(&mut w, ACTOR, KvError::ActorNotFound);
}

#[test]
fn an_actor_of_another_namespace_is_not_found() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(b"k", b"v")]));
    w.ctx.namespace = "ns-other".into();
    assert_fenced(&mut w, ACTOR, KvError::ActorNotFound);
    w.ctx.namespace = NS.into();
    w.write(|t| t.set(keys::actor_namespace(ACTOR), b"ns-other".to_vec()));
    assert_fenced(&mut w, ACTOR, KvError::ActorNotFound);
}

#[test]
fn a_placement_on_another_runner_or_none_is_not_the_holder() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(b"k", b"v")]));
    let elsewhere =
        Placement { runner: RunnerId::new(NS, "runner-key-2"), generation: GENERATION + 1 };
    w.write(|t| t.set(keys::actor_placement(ACTOR), records::encode(&elsewhere)));
    assert_fenced(&mut w, ACTOR, KvError::NotHolder);
    // Stopped or lost: no placement, no holder.
    w.write(|t| t.clear(keys::actor_placement(ACTOR)));
    assert_fenced(&mut w, ACTOR, KvError::NotHolder);
}

#[test]
fn a_stale_epoch_is_not_the_holder() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(b"k", b"v")]));
    // A newer connection of the same runner registered.
    w.register_runner(EPOCH + 1, false);
    assert_fenced(&mut w, ACTOR, KvError::NotHolder);
    // The new connection is the holder.
    w.ctx.epoch = EPOCH + 1;
    w.ok(ACTOR, &put(&[(b"k", b"v2")]));
}

#[test]
fn an_expired_or_unregistered_runner_is_not_the_holder() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(b"k", b"v")]));
    w.register_runner(EPOCH, true);
    assert_fenced(&mut w, ACTOR, KvError::NotHolder);
    let runner = w.ctx.runner.clone();
    w.write(|t| t.clear(keys::runner_info(&runner)));
    assert_fenced(&mut w, ACTOR, KvError::NotHolder);
}

#[test]
fn an_undecodable_fence_record_is_internal() {
    let cases: [fn(&mut World); 3] = [
        |w| w.write(|t| t.set(keys::actor_namespace(ACTOR), vec![0xC3, 0x28])),
        |w| w.write(|t| t.set(keys::actor_placement(ACTOR), b"{not json".to_vec())),
        |w| {
            let key = keys::runner_info(&w.ctx.runner);
            w.write(|t| t.set(key, b"[]".to_vec()))
        },
    ];
    for corrupt in cases {
        let mut w = World::new();
        w.ok(ACTOR, &put(&[(b"k", b"v")]));
        corrupt(&mut w);
        let before = w.dump();
        let out = w.run(ACTOR, &put(&[(b"k", b"v2")]));
        assert_eq!(out.error, Some(KvError::Internal));
        let rivet_envoy_protocol::KvResponseData::KvErrorResponse(e) = &out.response else {
            panic!("not an error response: {:?}", out.response)
        };
        assert_eq!(KvError::classify(&e.message), Some(KvErrorCode::Internal), "{}", e.message);
        assert!(e.message.len() > "kv.internal".len(), "the cause is reported: {}", e.message);
        assert!(w.dump() == before);
    }
}

#[test]
fn a_fence_change_after_the_fence_read_makes_the_request_conflict() {
    // The fence is read serializably: a destroy, a deallocation, a newer registration or an
    // expiry committed between the fence read and the commit of a KV write aborts the write.
    let changes: [fn(&mut World); 4] = [
        |w| w.write(|t| t.clear(keys::actor_namespace(ACTOR))),
        |w| w.write(|t| t.clear(keys::actor_placement(ACTOR))),
        |w| w.register_runner(EPOCH + 1, false),
        |w| w.register_runner(EPOCH, true),
    ];
    for change in changes {
        let mut w = World::new();
        let now = w.now_ms;
        let mut txn = w.store.begin(now);
        let (_, verdict) = read_fence(&mut w.store, &mut txn, &w.ctx, ACTOR, now).expect("reads");
        assert!(verdict.is_ok());
        let key = keys::actor_kv_key(ACTOR, b"k");
        txn.set(key.clone(), b"anything".to_vec());
        change(&mut w);
        assert_eq!(w.store.commit(txn, now, None).map(|_| ()), Err(CommitError::Conflict));
        let mut check = w.store.begin(now);
        assert_eq!(w.store.get(&mut check, &key, ReadMode::Snapshot, now), Ok(None));
        w.store.abort(check);
    }
}
