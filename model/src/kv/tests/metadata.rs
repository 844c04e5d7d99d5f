//! Metadata (`spec/preload.md` §1.1, K5): every put writes fresh metadata (the configured version,
//! the put's time) on every key it writes, even for an identical value; nothing else changes
//! metadata; reads return it unchanged.

use rivet_envoy_protocol::{KvMetadata, KvRequestData, KvResponseData};

use super::{b, delete, delete_range, get, list_all, list_prefix, put, World, ACTOR};
use crate::constants::KV_METADATA_VERSION;

/// `(key, version, update_ts)` of every stored entry, read raw.
fn stored_meta(w: &mut World) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    w.entries(ACTOR).into_iter().map(|(k, e)| (k, e.version, e.update_ts)).collect()
}

fn response_meta(response: &KvResponseData) -> Vec<KvMetadata> {
    match response {
        KvResponseData::KvGetResponse(r) => r.metadata.clone(),
        KvResponseData::KvListResponse(r) => r.metadata.clone(),
        other => panic!("not a read response: {other:?}"),
    }
}

#[test]
fn every_key_of_a_put_gets_the_version_and_the_put_time() {
    let mut w = World::new();
    w.wall_ms = 499;
    let out = w.ok(ACTOR, &put(&[(b"a", b"1"), (b"b", b""), (b"c", b"3"), (b"a", b"4")]));
    assert!(out.mutated && out.commit_version.is_some());
    let v = KV_METADATA_VERSION.as_bytes().to_vec();
    assert_eq!(
        stored_meta(&mut w),
        vec![
            (b"a".to_vec(), v.clone(), 500),
            (b"b".to_vec(), v.clone(), 500),
            (b"c".to_vec(), v.clone(), 500)
        ]
    );
    let expected = KvMetadata { version: b(&v), update_ts: 500 };
    let got = w.ok(ACTOR, &get(&[b"c", b"a", b"b"]));
    assert_eq!(response_meta(&got.response), vec![expected.clone(); 3]);
    let listed = w.ok(ACTOR, &list_all());
    assert_eq!(response_meta(&listed.response), vec![expected; 3]);
}

#[test]
fn rewriting_an_identical_value_refreshes_metadata() {
    let mut w = World::new();
    w.wall_ms = 99;
    w.ok(ACTOR, &put(&[(b"a", b"same")]));
    w.wall_ms = 899;
    w.cfg.metadata_version = b"3.0.0-new".to_vec();
    let before_version = w.store.version();
    let out = w.ok(ACTOR, &put(&[(b"a", b"same")]));
    assert!(out.mutated);
    assert!(w.store.version() > before_version, "an identical rewrite is still a commit");
    assert_eq!(stored_meta(&mut w), vec![(b"a".to_vec(), b"3.0.0-new".to_vec(), 900)]);
}

#[test]
fn reads_deletes_and_other_puts_leave_other_keys_metadata_alone() {
    let mut w = World::new();
    w.wall_ms = 99;
    w.ok(ACTOR, &put(&[(b"a", b"1"), (b"m", b"2")]));
    w.wall_ms = 199;
    w.cfg.metadata_version = b"9".to_vec();
    w.ok(ACTOR, &put(&[(b"b", b"3"), (b"z", b"4")]));
    let v = KV_METADATA_VERSION.as_bytes().to_vec();
    let snapshot = vec![
        (b"a".to_vec(), v.clone(), 100),
        (b"b".to_vec(), b"9".to_vec(), 200),
        (b"m".to_vec(), v.clone(), 100),
        (b"z".to_vec(), b"9".to_vec(), 200),
    ];
    assert_eq!(stored_meta(&mut w), snapshot);
    for read in [get(&[b"a", b"b"]), list_all(), list_prefix(b"m", Some(true), Some(1))] {
        w.ok(ACTOR, &read);
        assert_eq!(stored_meta(&mut w), snapshot);
    }
    w.ok(ACTOR, &delete(&[b"z", b"absent"]));
    w.ok(ACTOR, &delete_range(b"c", b"n"));
    assert_eq!(stored_meta(&mut w), vec![snapshot[0].clone(), snapshot[1].clone()]);
    w.ok(ACTOR, &put(&[(b"b", b"5")]));
    assert_eq!(stored_meta(&mut w)[0], snapshot[0]);
    w.ok(ACTOR, &KvRequestData::KvDropRequest);
    assert!(stored_meta(&mut w).is_empty());
}
