//! The KV rows of `spec/preload.md` §9 and the paging of §1.6: `0x00` / `0xFF` keys, keys that
//! are prefixes of other keys, empty keys and values, paging when `succ(P)` does not exist, and
//! many tiny keys listed completely by paging.

use rivet_envoy_protocol::{KvRequestData, KvResponseData};

use super::{
    get, list_all, list_prefix, list_range, put, put_owned, response_keys, response_pairs, World,
    ACTOR,
};
use crate::constants::LIST_DEFAULT_LIMIT;
use crate::kv::{delete_keyspace, first_page, next_page, page_is_last, KvError};

/// Every key of `keys` that starts with `p`, ascending: computed with a plain filter and sort.
fn expected_under(keys: &[Vec<u8>], p: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        keys.iter().filter(|k| k.len() >= p.len() && k[..p.len()] == *p).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// List all of `prefix` the way a runner must (§1.6), checking every page is accepted.
fn page_all(w: &mut World, prefix: &[u8], n: u64) -> Vec<Vec<u8>> {
    let mut req = first_page(prefix, n);
    let mut all = Vec::new();
    loop {
        let out = w.ok(ACTOR, &KvRequestData::KvListRequest(req));
        let keys = response_keys(&out);
        let done = page_is_last(keys.len(), n);
        let last = keys.last().cloned();
        all.extend(keys);
        match (done, last) {
            (false, Some(last)) => req = next_page(prefix, &last, n),
            _ => return all,
        }
    }
}

fn store_keys(w: &mut World, keys: &[Vec<u8>]) {
    for chunk in keys.chunks(128) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().map(|k| (k.clone(), vec![])).collect();
        w.ok(ACTOR, &put_owned(&pairs));
    }
}

#[test]
fn key_order_is_the_spec_example() {
    // §0: [] < [6] < [6,0] < [6,0,0] < [6,1] < [6,0xFF] < [6,0xFF,0] < [7].
    let ordered: Vec<Vec<u8>> = vec![
        vec![],
        vec![6],
        vec![6, 0],
        vec![6, 0, 0],
        vec![6, 1],
        vec![6, 0xFF],
        vec![6, 0xFF, 0],
        vec![7],
    ];
    let mut w = World::new();
    let scrambled: Vec<Vec<u8>> =
        [3, 7, 0, 5, 1, 6, 2, 4].iter().map(|&i| ordered[i].clone()).collect();
    store_keys(&mut w, &scrambled);
    assert_eq!(response_keys(&w.ok(ACTOR, &list_all())), ordered);
    let mut reversed = ordered.clone();
    reversed.reverse();
    let rev = w.ok(
        ACTOR,
        &super::list(rivet_envoy_protocol::KvListQuery::KvListAllQuery, Some(true), None),
    );
    assert_eq!(response_keys(&rev), reversed);
    // `[]` as a prefix is the whole keyspace, like list-all.
    assert_eq!(response_keys(&w.ok(ACTOR, &list_prefix(&[], None, None))), ordered);
    // reverse with limit n: the n greatest keys, descending.
    assert_eq!(
        response_keys(&w.ok(ACTOR, &list_prefix(&[6], Some(true), Some(2)))),
        vec![vec![6, 0xFF, 0], vec![6, 0xFF]]
    );
    assert!(response_keys(&w.ok(ACTOR, &list_prefix(&[6], None, Some(0)))).is_empty());
}

#[test]
fn ff_only_keys_up_to_2046_bytes_and_2047_rejected() {
    let mut w = World::new();
    let keys: Vec<Vec<u8>> = vec![vec![0xFF], vec![0xFF, 0xFF], vec![0xFF; 3], vec![0xFF; 2046]];
    store_keys(&mut w, &keys);
    let got = w.ok(ACTOR, &get(&[&[0xFF; 2046], &[0xFF], &[0xFF; 4]]));
    assert_eq!(response_keys(&got), vec![vec![0xFF; 2046], vec![0xFF]]);
    assert_eq!(response_keys(&w.ok(ACTOR, &list_prefix(&[0xFF], None, None))), keys);
    assert_eq!(
        response_keys(&w.ok(ACTOR, &list_prefix(&[0xFF, 0xFF], None, None))),
        keys[1..].to_vec()
    );
    assert_eq!(
        response_keys(&w.ok(ACTOR, &list_range(&[0xFF, 0xFF], &[0xFF; 2046], false))),
        keys[1..].to_vec()
    );
    assert_eq!(
        response_keys(&w.ok(ACTOR, &list_range(&[0xFF, 0xFF], &[0xFF; 2046], true))),
        keys[1..3].to_vec()
    );
    w.assert_rejected(ACTOR, &put(&[(&[0xFF; 2047], b"")]), KvError::KeyTooLarge { index: 0 });
}

#[test]
fn zero_and_ff_bytes_right_after_a_prefix_are_listed_in_order() {
    for p in [vec![0xFF], vec![0xFF, 0xFF]] {
        let mut w = World::new();
        let with = |tail: &[u8]| [p.as_slice(), tail].concat();
        let mut keys =
            vec![with(&[]), with(&[0]), with(&[0, 0]), with(&[0xFF]), with(&[0xFF, 0xFF, 7])];
        // Neighbours outside the prefix.
        keys.extend([vec![0xFE], vec![0xFE, 0xFF, 0xFF], vec![], vec![0xFF, 0xFE]]);
        store_keys(&mut w, &keys);
        let expected = expected_under(&keys, &p);
        assert_eq!(expected.len(), if p.len() == 1 { 6 } else { 5 }, "{p:?}");
        assert_eq!(response_keys(&w.ok(ACTOR, &list_prefix(&p, None, None))), expected);
        let mut desc = expected.clone();
        desc.reverse();
        assert_eq!(response_keys(&w.ok(ACTOR, &list_prefix(&p, Some(true), None))), desc);
        assert_eq!(
            response_keys(&w.ok(ACTOR, &list_prefix(&p, Some(true), Some(2)))),
            desc[..2].to_vec()
        );
        for n in 1..=6 {
            assert_eq!(page_all(&mut w, &p, n), expected, "prefix {p:?}, pages of {n}");
        }
    }
}

#[test]
fn keys_that_are_prefixes_of_other_keys() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(&[6], b"a"), (&[6, 1], b"b"), (&[6, 1, 0], b"c")]));
    assert_eq!(response_pairs(&w.ok(ACTOR, &get(&[&[6]]))), vec![(vec![6], b"a".to_vec())]);
    assert_eq!(
        response_keys(&w.ok(ACTOR, &list_prefix(&[6, 1], None, None))),
        vec![vec![6, 1], vec![6, 1, 0]]
    );
    assert_eq!(
        response_keys(&w.ok(ACTOR, &list_prefix(&[6], None, None))),
        vec![vec![6], vec![6, 1], vec![6, 1, 0]]
    );
    assert!(response_keys(&w.ok(ACTOR, &get(&[&[6, 1, 9]]))).is_empty());
}

#[test]
fn empty_values_and_the_empty_key_are_present() {
    let mut w = World::new();
    w.ok(ACTOR, &put(&[(&[], b""), (b"k", b"")]));
    assert_eq!(w.usage_record(ACTOR), Some(2 + 3));
    let got = w.ok(ACTOR, &get(&[b"k", &[], b"absent"]));
    assert_eq!(response_pairs(&got), vec![(b"k".to_vec(), vec![]), (vec![], vec![])]);
    assert_eq!(
        response_pairs(&w.ok(ACTOR, &list_all())),
        vec![(vec![], vec![]), (b"k".to_vec(), vec![])]
    );
    // A get with zero keys returns three empty lists.
    let empty = w.ok(ACTOR, &get(&[]));
    let KvResponseData::KvGetResponse(r) = &empty.response else { panic!("not a get response") };
    assert!(r.keys.is_empty() && r.values.is_empty() && r.metadata.is_empty());
    // Zero-key put and delete change nothing.
    let version = w.store.version();
    assert!(!w.ok(ACTOR, &put(&[])).mutated);
    assert!(!w.ok(ACTOR, &super::delete(&[])).mutated);
    assert_eq!(w.store.version(), version);
}

#[test]
fn empty_and_inverted_ranges_select_nothing() {
    let mut w = World::new();
    store_keys(&mut w, &[vec![1], vec![2], vec![3]]);
    assert!(response_keys(&w.ok(ACTOR, &list_range(&[2], &[2], true))).is_empty());
    assert_eq!(response_keys(&w.ok(ACTOR, &list_range(&[2], &[2], false))), vec![vec![2]]);
    assert!(response_keys(&w.ok(ACTOR, &list_range(&[3], &[1], false))).is_empty());
    let version = w.store.version();
    assert!(!w.ok(ACTOR, &super::delete_range(&[3], &[1])).mutated);
    assert!(!w.ok(ACTOR, &super::delete_range(&[2], &[2])).mutated);
    assert_eq!(w.store.version(), version);
    assert!(w.ok(ACTOR, &super::delete_range(&[2], &[2, 0])).mutated);
    assert_eq!(response_keys(&w.ok(ACTOR, &list_all())), vec![vec![1], vec![3]]);
}

#[test]
fn paging_when_succ_does_not_exist_returns_every_key_once() {
    let mut w = World::new();
    let mut long_01 = vec![0xFF; 2046];
    long_01[1] = 0x01;
    let mut keys = vec![
        vec![0xFF],
        vec![0xFF, 0x00],
        vec![0xFF, 0x01],
        long_01,
        vec![0xFF, 0x02],
        vec![0xFF; 2045],
        vec![0xFF; 2046],
        vec![0xFF, 0xFF, 7],
    ];
    keys.extend([vec![], vec![0x00], vec![0xFE, 0xFF]]);
    store_keys(&mut w, &keys);
    for p in [vec![], vec![0xFF], vec![0xFF, 0xFF]] {
        let expected = expected_under(&keys, &p);
        for n in 1..=(keys.len() as u64 + 1) {
            assert_eq!(page_all(&mut w, &p, n), expected, "prefix {p:?}, pages of {n}");
        }
    }
}

#[test]
fn twenty_thousand_tiny_keys_listed_completely_by_paging() {
    let mut w = World::new();
    let keys: Vec<Vec<u8>> = (0..20_000u32).map(|i| vec![2, (i >> 8) as u8, i as u8]).collect();
    store_keys(&mut w, &keys);
    // A decoy outside the prefix on either side.
    w.ok(ACTOR, &put(&[(&[1, 0xFF], b""), (&[3], b"")]));
    // One default-limited list is silently truncated.
    let one = w.ok(ACTOR, &list_prefix(&[2], None, None));
    assert_eq!(response_keys(&one).len() as u64, LIST_DEFAULT_LIMIT);
    // Paging returns all of them, once, in order (keys were generated ascending).
    assert_eq!(page_all(&mut w, &[2], LIST_DEFAULT_LIMIT), keys);
    assert_eq!(page_all(&mut w, &[2], 7_000), keys);
    // An explicit limit has no upper cap.
    let all = w.ok(ACTOR, &list_prefix(&[2], None, Some(u64::MAX)));
    assert_eq!(response_keys(&all).len(), 20_000);
}

#[test]
fn delete_keyspace_removes_one_actor_entirely() {
    let mut w = World::new();
    w.place("actor-10");
    w.ok(ACTOR, &put(&[(b"a", b"1"), (&[0xFF; 5], b"2")]));
    w.ok("actor-10", &put(&[(b"a", b"1")]));
    w.write(|t| delete_keyspace(t, ACTOR));
    assert!(w.entries(ACTOR).is_empty());
    assert_eq!(w.usage_record(ACTOR), None);
    assert_eq!(w.entries("actor-10").len(), 1);
    assert_eq!(w.usage_record("actor-10"), Some(4));
}
