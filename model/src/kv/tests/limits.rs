//! One test per limit of `spec/preload.md` §1.3, at the boundary and one over: the request at the
//! limit succeeds, the one over is rejected with its typed error and leaves the store unchanged.
//! Plus the check order of §1.4.

use rivet_envoy_protocol::{KvPutRequest, KvRequestData};

use super::{
    b, delete, delete_range, get, list, list_prefix, list_range, put, put_owned, World, ACTOR,
};
use crate::kv::KvError;
use rivet_envoy_protocol::{KvListQuery, KvListRangeQuery};

/// `n` distinct two-byte keys.
fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![(i >> 8) as u8, i as u8]).collect()
}

fn refs(keys: &[Vec<u8>]) -> Vec<&[u8]> {
    keys.iter().map(Vec::as_slice).collect()
}

#[test]
fn max_keys_128_accepted_129_rejected_for_get_put_and_delete() {
    let mut w = World::new();
    let ok = keys(128);
    let over = keys(129);
    let pairs = |ks: &[Vec<u8>]| ks.iter().map(|k| (k.clone(), vec![1u8])).collect::<Vec<_>>();

    w.ok(ACTOR, &put_owned(&pairs(&ok)));
    assert_eq!(w.entries(ACTOR).len(), 128);
    w.assert_rejected(ACTOR, &put_owned(&pairs(&over)), KvError::TooManyKeys);

    let out = w.ok(ACTOR, &get(&refs(&ok)));
    assert_eq!(super::response_keys(&out), ok);
    w.assert_rejected(ACTOR, &get(&refs(&over)), KvError::TooManyKeys);

    w.assert_rejected(ACTOR, &delete(&refs(&over)), KvError::TooManyKeys);
    w.ok(ACTOR, &delete(&refs(&ok)));
    assert!(w.entries(ACTOR).is_empty());
}

#[test]
fn raw_key_2046_accepted_2047_rejected_everywhere_a_key_is_checked() {
    let mut w = World::new();
    let max = vec![0xAB; 2046];
    let long = vec![0xAB; 2047];
    let low = [0x01u8];
    let high = vec![0xFF; 2046];

    // At the limit: every place a key is checked accepts it.
    w.ok(ACTOR, &put(&[(&low, b"v"), (&max, b"w")]));
    assert_eq!(
        super::response_keys(&w.ok(ACTOR, &get(&[&low, &max]))),
        vec![low.to_vec(), max.clone()]
    );
    w.ok(ACTOR, &list_range(&max, &high, true));
    w.ok(ACTOR, &list_range(&low, &max, false));
    w.ok(ACTOR, &list_prefix(&max, None, None));
    w.ok(ACTOR, &delete_range(&max, &high));
    w.ok(ACTOR, &delete_range(&low, &max));
    w.ok(ACTOR, &delete(&[&low, &max]));

    // One over: rejected with the index of the first offending key.
    w.ok(ACTOR, &put(&[(&low, b"v")]));
    w.assert_rejected(
        ACTOR,
        &put(&[(&low, b"v"), (&long, b"w")]),
        KvError::KeyTooLarge { index: 1 },
    );
    w.assert_rejected(ACTOR, &get(&[&low, &long]), KvError::KeyTooLarge { index: 1 });
    w.assert_rejected(ACTOR, &delete(&[&long, &low]), KvError::KeyTooLarge { index: 0 });
    w.assert_rejected(ACTOR, &list_range(&long, &high, true), KvError::KeyTooLarge { index: 0 });
    w.assert_rejected(ACTOR, &list_range(&low, &long, false), KvError::KeyTooLarge { index: 1 });
    w.assert_rejected(ACTOR, &list_prefix(&long, None, None), KvError::KeyTooLarge { index: 0 });
    w.assert_rejected(ACTOR, &delete_range(&long, &high), KvError::KeyTooLarge { index: 0 });
    w.assert_rejected(ACTOR, &delete_range(&low, &long), KvError::KeyTooLarge { index: 1 });
    // The range start is checked before its end.
    let both = list(
        KvListQuery::KvListRangeQuery(KvListRangeQuery {
            start: b(&long),
            end: b(&long),
            exclusive: false,
        }),
        None,
        None,
    );
    w.assert_rejected(ACTOR, &both, KvError::KeyTooLarge { index: 0 });
}

#[test]
fn value_131072_accepted_131073_rejected() {
    let mut w = World::new();
    let max = vec![7u8; 131_072];
    let over = vec![7u8; 131_073];
    w.ok(ACTOR, &put(&[(b"a", &max)]));
    let out = w.ok(ACTOR, &get(&[b"a"]));
    assert_eq!(super::response_pairs(&out), vec![(b"a".to_vec(), max.clone())]);
    w.assert_rejected(
        ACTOR,
        &put(&[(b"b", b""), (b"c", &over)]),
        KvError::ValueTooLarge { index: 1 },
    );
}

#[test]
fn put_payload_999424_accepted_999425_rejected() {
    // 8 keys of 10 bytes: 8 * (10 + 2) = 96; 7 values of 131,072: 917,504; the last value makes
    // the total 999,424 (spec: sum(len(k) + 2) + sum(len(v))).
    let last_len = 999_424 - 8 * (10 + 2) - 7 * 131_072;
    assert_eq!(last_len, 81_824);
    let build = |last: usize, same_key: bool| {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..8u8)
            .map(|i| {
                let key = vec![if same_key { 0 } else { i }; 10];
                let len = if i == 7 { last } else { 131_072 };
                (key, vec![i; len])
            })
            .collect();
        put_owned(&pairs)
    };
    for same_key in [false, true] {
        let mut w = World::new();
        w.assert_rejected(
            ACTOR,
            &build(last_len + 1, same_key),
            KvError::PayloadTooLarge { size: 999_425 },
        );
        w.ok(ACTOR, &build(last_len, same_key));
        // A duplicated key is charged once per occurrence in the payload, but stored once.
        assert_eq!(w.entries(ACTOR).len(), if same_key { 1 } else { 8 });
    }
}

#[test]
fn usage_exactly_at_a_lowered_quota_accepted_one_byte_over_rejected() {
    const QUOTA: u64 = 1_000;
    let setup = || {
        let mut w = World::new();
        w.cfg.max_storage_size = QUOTA;
        // usage = (1 + 2) + 500 = 503.
        w.ok(ACTOR, &put(&[(b"a", &[1u8; 500])]));
        assert_eq!(w.usage_record(ACTOR), Some(503));
        w
    };
    // A put of key "b" (1 + 2) with a value of 494 bytes reaches 1,000 exactly.
    let mut w = setup();
    w.ok(ACTOR, &put(&[(b"b", &[2u8; 494])]));
    assert_eq!(w.usage_record(ACTOR), Some(QUOTA));
    // At the quota, even an empty value on a new key is over.
    w.assert_rejected(
        ACTOR,
        &put(&[(b"c", b"")]),
        KvError::StorageQuotaExceeded { remaining: 0, payload: 3 },
    );

    // One byte more is rejected, reporting what remained before the put and its payload.
    let mut w = setup();
    w.assert_rejected(
        ACTOR,
        &put(&[(b"b", &[2u8; 495])]),
        KvError::StorageQuotaExceeded { remaining: 497, payload: 498 },
    );
}

#[test]
fn quota_accounts_for_overwrites_and_duplicates_last_wins() {
    const QUOTA: u64 = 1_000;
    let mut w = World::new();
    w.cfg.max_storage_size = QUOTA;
    w.ok(ACTOR, &put(&[(b"a", &[1u8; 500]), (b"b", &[2u8; 494])]));
    assert_eq!(w.usage_record(ACTOR), Some(QUOTA));
    // Overwriting "a" with a value one byte shorter frees a byte, although the payload (502) is
    // larger than what remains (0).
    w.ok(ACTOR, &put(&[(b"a", &[3u8; 499])]));
    assert_eq!(w.usage_record(ACTOR), Some(999));
    // "c" twice: only its last occurrence (empty, 3 bytes) counts. Shrinking "a" by 2 bytes in
    // the same put makes room: 999 - 502 + 500 + 3 = 1,000. Counting the first "c" (303) would
    // have been over.
    w.ok(ACTOR, &put(&[(b"c", &[9u8; 300]), (b"a", &[3u8; 497]), (b"c", b"")]));
    assert_eq!(w.usage_record(ACTOR), Some(1_000));
    let stored: Vec<(Vec<u8>, usize)> =
        w.entries(ACTOR).into_iter().map(|(k, e)| (k, e.value.len())).collect();
    assert_eq!(stored, vec![(b"a".to_vec(), 497), (b"b".to_vec(), 494), (b"c".to_vec(), 0)]);
    // The same put with the big value last is over: 1,000 - 3 + 300 + ... counted independently.
    let before_usage = 1_000u64;
    let after = before_usage - (1 + 2 + 497) - (1 + 2) + (1 + 2 + 497) + (1 + 2 + 300);
    assert!(after > QUOTA);
    w.assert_rejected(
        ACTOR,
        &put(&[(b"c", b""), (b"a", &[3u8; 497]), (b"c", &[9u8; 300])]),
        KvError::StorageQuotaExceeded { remaining: 0, payload: 3 + 500 + 303 },
    );
}

#[test]
fn deletes_never_fail_for_quota() {
    let mut w = World::new();
    w.ok(
        ACTOR,
        &put(&[(b"a", &[1u8; 100]), (b"b", &[1u8; 100]), (b"c", &[1u8; 100]), (b"d", b"")]),
    );
    // The quota is lowered below the usage (an engine restart with another configuration).
    w.cfg.max_storage_size = 5;
    w.ok(ACTOR, &delete(&[b"a"]));
    w.ok(ACTOR, &delete_range(b"b", b"c"));
    assert_eq!(w.usage_record(ACTOR), Some(103 + 3));
    // A put is judged on the usage after it (106 - 103 + 3 = 6 > 5), so even a shrinking put
    // is rejected while the keyspace stays over the quota.
    w.assert_rejected(
        ACTOR,
        &put(&[(b"c", b"")]),
        KvError::StorageQuotaExceeded { remaining: 0, payload: 3 },
    );
    w.ok(ACTOR, &KvRequestData::KvDropRequest);
    assert_eq!(w.usage_record(ACTOR), None);
    w.ok(ACTOR, &put(&[(b"x", b"12")]));
    assert_eq!(w.usage_record(ACTOR), Some(5));
}

#[test]
fn keys_values_mismatch_rejected() {
    let mut w = World::new();
    let req = |k: usize, v: usize| {
        KvRequestData::KvPutRequest(KvPutRequest {
            keys: (0..k).map(|i| b(&[i as u8])).collect(),
            values: (0..v).map(|_| b(b"v")).collect(),
        })
    };
    w.assert_rejected(ACTOR, &req(2, 1), KvError::KeysValuesMismatch);
    w.assert_rejected(ACTOR, &req(0, 1), KvError::KeysValuesMismatch);
    w.assert_rejected(ACTOR, &req(1, 0), KvError::KeysValuesMismatch);
    w.ok(ACTOR, &req(0, 0));
    w.ok(ACTOR, &req(2, 2));
}

#[test]
fn a_request_breaking_several_rules_reports_the_first_in_table_order() {
    let big_key = vec![1u8; 2047];
    let big_value = vec![1u8; 131_073];
    let mut w = World::new();
    w.cfg.max_storage_size = 100;
    let many: Vec<Vec<u8>> = keys(129);

    // Fence before everything, actor_not_found before not_holder.
    let mut other = World::new();
    other.ctx.namespace = "elsewhere".into();
    other.ctx.epoch += 1;
    other.assert_rejected(ACTOR, &put(&[(&big_key, b"")]), KvError::ActorNotFound);
    let mut stale = World::new();
    stale.ctx.epoch += 1;
    let mismatch =
        KvRequestData::KvPutRequest(KvPutRequest { keys: vec![b(&big_key)], values: vec![] });
    stale.assert_rejected(ACTOR, &mismatch, KvError::NotHolder);

    // keys_values_mismatch before too_many_keys and key_too_large.
    let mut ks: Vec<_> = many.iter().map(|k| b(k)).collect();
    ks.push(b(&big_key));
    let req = KvRequestData::KvPutRequest(KvPutRequest { keys: ks.clone(), values: vec![b(b"")] });
    w.assert_rejected(ACTOR, &req, KvError::KeysValuesMismatch);
    // too_many_keys before key_too_large and value_too_large.
    let values: Vec<_> = ks.iter().map(|_| b(&big_value)).collect();
    let req = KvRequestData::KvPutRequest(KvPutRequest { keys: ks, values });
    w.assert_rejected(ACTOR, &req, KvError::TooManyKeys);
    // key_too_large (index 2) before value_too_large (index 0).
    w.assert_rejected(
        ACTOR,
        &put(&[(b"a", &big_value), (b"b", b""), (&big_key, b"")]),
        KvError::KeyTooLarge { index: 2 },
    );
    // value_too_large before payload_too_large.
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
        (0..8u8).map(|i| (vec![i], vec![0; 131_072])).collect();
    pairs.push((vec![9], big_value.clone()));
    w.assert_rejected(ACTOR, &put_owned(&pairs), KvError::ValueTooLarge { index: 8 });
    // payload_too_large before storage_quota_exceeded (the quota is 100).
    pairs.pop();
    let size = 8 * (1 + 2) + 8 * 131_072;
    w.assert_rejected(ACTOR, &put_owned(&pairs), KvError::PayloadTooLarge { size });
    // Only the quota left.
    w.assert_rejected(
        ACTOR,
        &put(&[(b"k", &[0u8; 98])]),
        KvError::StorageQuotaExceeded { remaining: 100, payload: 101 },
    );
}
