//! One named test per row of `spec/preload.md` §9 that concerns the preload or the map. Expected
//! bundles are written out by hand from the spec's rules; every bundle is also run through the
//! oracle's `check_bundle`.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use crate::canary::{Canaries, Canary};
use crate::constants::{
    LIST_DEFAULT_LIMIT, MAX_RAW_KEY_SIZE, MAX_VALUE_SIZE, PRELOAD_MAX_ATTEMPTS,
    PRELOAD_MAX_TOTAL_BYTES,
};
use crate::keys::actor_kv_key;
use crate::preload::oracle::{bundle_bytes, check_bundle, check_listing, Invariant};
use crate::preload::{
    batch_preload, batch_preload_from, fetch, fetch_with, reference_manifest, FetchRequest,
    KeyspaceRead, Listing, Lookup, Manifest, PrefixItem, PreloadMap, Snapshot,
};
use crate::protocol::preloaded_kv::{empty_keyspace, is_empty_keyspace};
use crate::protocol::PreloadedKv;
use crate::records::KvEntryRecord;
use crate::store::{ReadMode, Store};

use super::support::*;

fn manifest(keys: &[&[u8]], prefixes: &[(&[u8], u64, bool)]) -> Manifest {
    Manifest {
        keys: bytes_list(keys),
        prefixes: prefixes
            .iter()
            .map(|(p, m, partial)| PrefixItem::new(p.to_vec(), *m, *partial))
            .collect(),
    }
}

/// Fetch from a fresh store holding `s` and `m`, check the bundle with the oracle, return it.
fn deliver(s: &Snapshot, m: &Manifest, budget: u64) -> Option<PreloadedKv> {
    let mut store = store_with(s, Some(&m.to_metadata_json()));
    let out = fetch_clean(&mut store, budget);
    assert!(!out.failed);
    if let Err(v) = check_bundle(s, Some(m), budget, out.bundle.as_ref()) {
        panic!("{v}");
    }
    out.bundle
}

fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (k.to_vec(), v.to_vec())
}

#[test]
fn empty_prefix_covers_the_whole_keyspace_or_is_discarded() {
    let s = snapshot(&[
        (b"", b"e"),
        (&[0x00], b"a"),
        (&[6, 1], b"h"),
        (&[0xFF], b"f"),
        (&[0xFF, 0xFF], b""),
    ]);
    let all: u64 = s.iter().map(|(k, r)| size_of(k, r)).sum();
    // Declared partial: normalized to non-partial.
    let m = manifest(&[], &[(&[], u64::MAX, true)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(prefixes(&b), vec![Vec::<u8>::new()]);
    assert_eq!(entry_keys(&b), bytes_list(&[b"", &[0x00], &[6, 1], &[0xFF], &[0xFF, 0xFF]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.get(b""), Lookup::Hit(b"e".to_vec()));
    assert_eq!(map.get(&[0xFF, 0xFF]), Lookup::Hit(vec![]));
    assert_eq!(map.get(&[7]), Lookup::Absent);
    assert_eq!(
        map.list_prefix(&[0xFF]),
        Listing::Complete(vec![kv(&[0xFF], b"f"), kv(&[0xFF, 0xFF], b"")])
    );
    assert_eq!(map.list_prefix(&[9, 9]), Listing::Complete(vec![]));
    assert!(!map.is_empty_keyspace());

    // One byte short: discarded, charges nothing; a lower-priority prefix still gets the budget.
    let m = manifest(&[], &[(&[], all - 1, false), (&[6], u64::MAX, false)]);
    let b = deliver(&s, &m, all).expect("bundle");
    assert_eq!(prefixes(&b), bytes_list(&[&[6]]));
    assert_eq!(entry_keys(&b), bytes_list(&[&[6, 1]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.get(&[7]), Lookup::NotCovered);
    assert_eq!(map.list_prefix(&[]), Listing::NotCovered);
}

#[test]
fn empty_keyspace_gives_the_empty_keyspace_bundle_whatever_the_manifest() {
    let metadata = [
        Some(reference_manifest().to_metadata_json()),
        Some(r#"{"icon":"x"}"#.to_string()),
        Some(r#"{"preload":{"keys":[[256]]}}"#.to_string()),
        None,
    ];
    for md in &metadata {
        let mut store = store_with(&Snapshot::new(), md.as_deref());
        let out = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
        assert_eq!(out.bundle, Some(empty_keyspace()), "metadata {md:?}");
        assert!(out.bundle.as_ref().is_some_and(is_empty_keyspace));
        assert_eq!(out.manifest, None);
        let map = PreloadMap::new(out.bundle.as_ref(), Some(&reference_manifest()));
        assert!(map.is_empty_keyspace());
        for k in [&b""[..], &[1], &[0xFF; 3], &[2, 0]] {
            assert_eq!(map.get(k), Lookup::Absent);
            assert_eq!(map.list_prefix(k), Listing::Complete(vec![]));
        }
        // T == 0: None, even for an empty keyspace.
        assert_eq!(fetch_clean(&mut store, 0).bundle, None);
    }
    // A keyspace emptied by deletes, and one emptied by a drop.
    let s = snapshot(&[(&[1], b"x"), (&[2, 0], b"y")]);
    for emptying in [StoreWrite::Delete(bytes_list(&[&[1], &[2, 0]])), StoreWrite::Drop] {
        let mut store = store_with(&s, Some(&reference_manifest().to_metadata_json()));
        commit(&mut store, &[emptying], 1);
        assert_eq!(fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES).bundle, Some(empty_keyspace()));
    }
}

#[test]
fn zero_and_ff_bytes_anywhere_in_keys() {
    let p: &[u8] = &[6];
    let mut keys: Vec<Vec<u8>> = bytes_list(&[
        &[6],
        &[6, 0],
        &[6, 0, 0],
        &[6, 0xFF],
        &[6, 0xFF, 0xFF, 7],
        &[5, 0xFF],
        &[7],
        &[0xFF],
        &[0xFF, 0xFF],
        &[0xFF, 0xFF, 0xFF],
    ]);
    keys.push(vec![0xFF; MAX_RAW_KEY_SIZE]);
    // Enough keys under [0xFF, 0xFF] to need several pages of the store walk.
    for i in 0..40u8 {
        keys.push(vec![0xFF, 0xFF, 0xFF, i]);
    }
    let s = Snapshot::from_entries(keys.iter().map(|k| (k.clone(), rec(&[k.len() as u8]))));
    let m = manifest(
        &[],
        &[(p, u64::MAX, false), (&[0xFF, 0xFF], u64::MAX, false), (&[0xFF], u64::MAX, false)],
    );
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");

    let sorted: BTreeSet<Vec<u8>> = keys.iter().cloned().collect();
    let under = |q: &[u8]| -> Vec<Vec<u8>> {
        sorted.iter().filter(|k| k.starts_with(q)).cloned().collect()
    };
    let mut expected = under(&[6]);
    assert_eq!(expected, bytes_list(&[&[6], &[6, 0], &[6, 0, 0], &[6, 0xFF], &[6, 0xFF, 0xFF, 7]]));
    expected.extend(under(&[0xFF, 0xFF]));
    expected.push(vec![0xFF]);
    assert_eq!(entry_keys(&b), expected);
    assert_eq!(prefixes(&b), bytes_list(&[&[6], &[0xFF, 0xFF], &[0xFF]]));

    let map = PreloadMap::new(Some(&b), Some(&m));
    for q in [&[6][..], &[6, 0], &[6, 0xFF], &[0xFF], &[0xFF, 0xFF], &[0xFF, 0xFF, 0xFF]] {
        let Listing::Complete(l) = map.list_prefix(q) else { panic!("{q:?} not complete") };
        assert_eq!(
            l.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            under(q),
            "list_prefix({q:?})"
        );
    }
    assert_eq!(
        map.get(&vec![0xFF; MAX_RAW_KEY_SIZE]),
        Lookup::Hit(vec![(MAX_RAW_KEY_SIZE % 256) as u8])
    );
    assert_eq!(map.get(&[6, 0xFF, 0xFF]), Lookup::Absent);
    assert_eq!(map.list_prefix(&[5]), Listing::NotCovered);
}

#[test]
fn keys_that_are_prefixes_of_other_keys() {
    let s = snapshot(&[(&[6], b"alarm"), (&[6, 1], b"h1"), (&[6, 1, 0], b"h2")]);
    let b = deliver(&s, &manifest(&[&[6]], &[]), PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[6]]));
    let b = deliver(&s, &manifest(&[], &[(&[6, 1], u64::MAX, false)]), PRELOAD_MAX_TOTAL_BYTES)
        .expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[6, 1], &[6, 1, 0]]));
    let b = deliver(&s, &manifest(&[], &[(&[6], u64::MAX, false)]), PRELOAD_MAX_TOTAL_BYTES)
        .expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[6], &[6, 1], &[6, 1, 0]]));

    // Only [6,1] complete.
    let m = manifest(&[], &[(&[6, 1], u64::MAX, false)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.get(&[6, 1, 9]), Lookup::Absent);
    assert_eq!(map.get(&[6]), Lookup::NotCovered);
    assert_eq!(map.list_prefix(&[6]), Listing::NotCovered);
    assert_eq!(map.list_prefix(&[6, 1, 0]), Listing::Complete(vec![kv(&[6, 1, 0], b"h2")]));
    // With [6] a get-key as well, [6] is answered.
    let m = manifest(&[&[6]], &[(&[6, 1], u64::MAX, false)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(PreloadMap::new(Some(&b), Some(&m)).get(&[6]), Lookup::Hit(b"alarm".to_vec()));
}

#[test]
fn duplicate_and_overlapping_manifest_items() {
    let s = snapshot(&[(&[2, 1], b"a"), (&[2, 5], b"bb"), (&[2, 5, 0], b"c"), (&[3], b"")]);
    let m = manifest(
        &[&[2, 5], &[2, 5]],
        &[(&[2], u64::MAX, false), (&[2], 0, true), (&[2, 5], u64::MAX, false)],
    );
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[2, 5], &[2, 1], &[2, 5, 0]]));
    assert_eq!(get_keys(&b), bytes_list(&[&[2, 5]]));
    assert_eq!(prefixes(&b), bytes_list(&[&[2], &[2, 5]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(
        map.list_prefix(&[2]),
        Listing::Complete(vec![kv(&[2, 1], b"a"), kv(&[2, 5], b"bb"), kv(&[2, 5, 0], b"c")])
    );
    // Charged once: a budget of exactly the three sizes holds them all (and leaves [2,5] a limit
    // of 0, so it is skipped).
    let exact =
        size_default(&[2, 5], b"bb") + size_default(&[2, 1], b"a") + size_default(&[2, 5, 0], b"c");
    let b = deliver(&s, &m, exact).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[2, 5], &[2, 1], &[2, 5, 0]]));
    assert_eq!(prefixes(&b), bytes_list(&[&[2]]));

    // The other order: [2,5] first, then [2].
    let m = manifest(&[&[2, 5]], &[(&[2, 5], u64::MAX, false), (&[2], u64::MAX, false)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[2, 5], &[2, 5, 0], &[2, 1]]));
    assert_eq!(prefixes(&b), bytes_list(&[&[2, 5], &[2]]));

    // The same prefix with different flags: the first (partial, small) wins.
    let m = manifest(&[], &[(&[2], 20, true), (&[2], u64::MAX, false)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[2, 1]]));
    assert_eq!(prefixes(&b), bytes_list(&[&[2]]));
    assert_eq!(
        PreloadMap::new(Some(&b), Some(&m)).list_prefix(&[2]),
        Listing::Cached(vec![kv(&[2, 1], b"a")])
    );
}

#[test]
fn exact_budget_boundary() {
    let s = snapshot(&[(&[1], &[7; 10]), (&[3], b"t"), (&[2, 0], b"")]);
    let m = manifest(&[&[1], &[9], &[3]], &[(&[2], u64::MAX, false), (&[8], u64::MAX, false)]);
    let state = size_default(&[1], &[7; 10]);
    assert_eq!(state, 24);

    // [1] brings the total exactly to T: included; then nothing else is recorded.
    let b = deliver(&s, &m, state).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[1]]));
    assert_eq!(get_keys(&b), bytes_list(&[&[1]]));
    assert_eq!(prefixes(&b), Vec::<Vec<u8>>::new());
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.get(&[9]), Lookup::NotCovered);
    assert_eq!(map.list_prefix(&[8]), Listing::NotCovered);

    // One byte less: [1] skipped and unrecorded, the absent [9] recorded, the smaller [3] fits;
    // [2] overflows its 8 remaining bytes and is discarded; the empty [8] is recorded.
    let b = deliver(&s, &m, state - 1).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[3]]));
    assert_eq!(get_keys(&b), bytes_list(&[&[9], &[3]]));
    assert_eq!(prefixes(&b), bytes_list(&[&[8]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.get(&[1]), Lookup::NotCovered);
    assert_eq!(map.get(&[9]), Lookup::Absent);
    assert_eq!(map.list_prefix(&[8]), Listing::Complete(vec![]));
}

#[test]
fn zero_budget_gives_none_on_every_delivery() {
    for s in [Snapshot::new(), snapshot(&[(&[1], b"state")])] {
        let mut store = store_with(&s, Some(&reference_manifest().to_metadata_json()));
        for _ in 0..3 {
            let out = fetch_clean(&mut store, 0);
            assert_eq!(out.bundle, None);
            assert_eq!((out.attempts, out.read_version, out.failed), (0, None, false));
        }
        let map = PreloadMap::new(None, Some(&reference_manifest()));
        assert_eq!(map.get(&[1]), Lookup::NotCovered);
        assert_eq!(map.list_prefix(&[]), Listing::NotCovered);
        assert!(!map.is_empty_keyspace());
    }
}

/// A reader that records which prefixes were walked.
struct Recording<'a> {
    inner: &'a Snapshot,
    walked: Vec<Vec<u8>>,
}

impl KeyspaceRead for Recording<'_> {
    type Error = std::convert::Infallible;
    fn get(&mut self, key: &[u8]) -> Result<Option<KvEntryRecord>, Self::Error> {
        Ok(self.inner.get(key).cloned())
    }
    fn walk_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &KvEntryRecord) -> ControlFlow<()>,
    ) -> Result<(), Self::Error> {
        self.walked.push(prefix.to_vec());
        let mut inner = self.inner;
        inner.walk_prefix(prefix, visit)
    }
}

#[test]
fn per_prefix_zero_max_bytes_is_not_read_or_recorded() {
    let s = snapshot(&[(&[2, 1], b"x"), (&[6, 1, 0], b"y")]);
    let m = manifest(&[], &[(&[2, 1], 0, false), (&[6, 1], u64::MAX, false)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(prefixes(&b), bytes_list(&[&[6, 1]]));
    assert_eq!(entry_keys(&b), bytes_list(&[&[6, 1, 0]]));
    assert_eq!(PreloadMap::new(Some(&b), Some(&m)).list_prefix(&[2, 1]), Listing::NotCovered);
    let mut reader = Recording { inner: &s, walked: vec![] };
    let again = batch_preload_from(&mut reader, &m, PRELOAD_MAX_TOTAL_BYTES, Canaries::NONE);
    assert_eq!(again, Ok(b));
    assert_eq!(reader.walked, bytes_list(&[&[6, 1]]), "the maxBytes = 0 prefix was read");

    // A shorter complete prefix still covers it.
    let m = manifest(&[], &[(&[2, 1], 0, false), (&[2], u64::MAX, false)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(prefixes(&b), bytes_list(&[&[2]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.list_prefix(&[2, 1]), Listing::Complete(vec![kv(&[2, 1], b"x")]));
}

#[test]
fn one_huge_value() {
    let huge = vec![0xEE; MAX_VALUE_SIZE];
    // As a get-key with too little budget: unrecorded, so a live get returns it.
    let s = snapshot(&[(&[1], &huge), (&[3], b"t")]);
    let m = manifest(&[&[1], &[3]], &[]);
    let mut store = store_with(&s, Some(&m.to_metadata_json()));
    let b = fetch_clean(&mut store, 100_000).bundle.expect("bundle");
    check_bundle(&s, Some(&m), 100_000, Some(&b)).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(entry_keys(&b), bytes_list(&[&[3]]));
    assert_eq!(get_keys(&b), bytes_list(&[&[3]]));
    assert_eq!(PreloadMap::new(Some(&b), Some(&m)).get(&[1]), Lookup::NotCovered);
    let mut txn = store.begin(0);
    let live =
        store.get(&mut txn, &actor_kv_key(ACTOR, &[1]), ReadMode::Snapshot, 0).ok().flatten();
    store.abort(txn);
    assert_eq!(live.map(|v| KvEntryRecord::decode(&v).map(|r| r.value)), Some(Ok(huge.clone())));

    // Inside a non-partial prefix over its limit: discarded, charges nothing.
    let s = snapshot(&[(&[2, 0], b"a"), (&[2, 1], &huge), (&[2, 2], b"b"), (&[3], b"t")]);
    let m = manifest(&[], &[(&[2], 65_536, false), (&[3], 16, false)]);
    let b = deliver(&s, &m, 65_536).expect("bundle");
    assert_eq!(prefixes(&b), bytes_list(&[&[3]]));
    assert_eq!(entry_keys(&b), bytes_list(&[&[3]]));

    // Inside a partial prefix: the run stops before it, even though [2,2] is tiny.
    let m = manifest(&[], &[(&[2], 65_536, true)]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(prefixes(&b), bytes_list(&[&[2]]));
    assert_eq!(entry_keys(&b), bytes_list(&[&[2, 0]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.list_prefix(&[2]), Listing::Cached(vec![kv(&[2, 0], b"a")]));
    assert_eq!(map.get(&[2, 2]), Lookup::NotCovered);
}

#[test]
fn many_tiny_keys_20000_connections() {
    let conns: Vec<Vec<u8>> = (0..20_000u32).map(|i| vec![2, (i >> 8) as u8, i as u8]).collect();
    let s = Snapshot::from_entries(conns.iter().map(|k| (k.clone(), rec(b""))));
    assert_eq!(size_default(&conns[0], b""), 16);
    for (max_bytes, all_in) in [(320_000u64, true), (319_999, false)] {
        let mut m = reference_manifest();
        m.prefixes[1].max_bytes = max_bytes;
        assert_eq!(m.prefixes[1].prefix, vec![2]);
        let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
        let map = PreloadMap::new(Some(&b), Some(&m));
        if all_in {
            assert_eq!(b.entries.len(), 20_000);
            assert!(b.entries.len() as u64 > LIST_DEFAULT_LIMIT);
            assert_eq!(prefixes(&b), bytes_list(&[&[6, 1], &[2], &[5, 1, 2], &[8, 1]]));
            let Listing::Complete(l) = map.list_prefix(&[2]) else { panic!("not complete") };
            assert_eq!(l.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), conns);
        } else {
            assert!(b.entries.is_empty());
            assert_eq!(prefixes(&b), bytes_list(&[&[6, 1], &[5, 1, 2], &[8, 1]]));
            assert_eq!(map.list_prefix(&[2]), Listing::NotCovered);
        }
    }
}

#[test]
fn transaction_retry_up_to_the_limit_then_none() {
    let s = snapshot(&[(&[1], b"state"), (&[2, 0], b"c0"), (&[2, 1], b"c1"), (&[6, 1, 0], b"h")]);
    let m = reference_manifest();
    let mut store = store_with(&s, Some(&m.to_metadata_json()));
    let clean = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
    // Fail at read 0, 3, 5 and 1 of the first four attempts.
    let plan = [0usize, 3, 5, 1];
    let (mut attempt, mut read) = (0, 0);
    let mut faults = || {
        let Some(target) = plan.get(attempt) else { return false };
        if read == *target {
            attempt += 1;
            read = 0;
            true
        } else {
            read += 1;
            false
        }
    };
    let out = fetch(
        &mut store,
        ACTOR,
        NAMESPACE,
        ACTOR_NAME,
        PRELOAD_MAX_TOTAL_BYTES,
        Canaries::NONE,
        0,
        &mut faults,
    );
    assert_eq!(out.attempts, PRELOAD_MAX_ATTEMPTS);
    assert!(!out.failed);
    assert_eq!(out.bundle.as_ref().map(bundle_bytes), clean.bundle.as_ref().map(bundle_bytes));
    check_bundle(&s, Some(&m), PRELOAD_MAX_TOTAL_BYTES, out.bundle.as_ref())
        .unwrap_or_else(|v| panic!("{v}"));

    let mut calls = 0;
    let out = fetch(
        &mut store,
        ACTOR,
        NAMESPACE,
        ACTOR_NAME,
        PRELOAD_MAX_TOTAL_BYTES,
        Canaries::NONE,
        0,
        &mut || {
            calls += 1;
            true
        },
    );
    assert!(out.failed);
    assert_eq!((out.bundle, out.attempts, out.read_version), (None, PRELOAD_MAX_ATTEMPTS, None));
    assert_eq!(calls, PRELOAD_MAX_ATTEMPTS);
}

#[test]
fn empty_values_are_present_entries() {
    let s = snapshot(&[(&[1], b""), (&[2, 0], b"")]);
    let m = manifest(&[&[1]], &[(&[2], u64::MAX, false)]);
    assert_eq!(size_default(&[1], b""), 14);
    assert_eq!(size_default(&[2, 0], b""), 15);
    let b = deliver(&s, &m, 29).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[1], &[2, 0]]));
    let map = PreloadMap::new(Some(&b), Some(&m));
    assert_eq!(map.get(&[1]), Lookup::Hit(vec![]));
    assert_eq!(map.list_prefix(&[2]), Listing::Complete(vec![kv(&[2, 0], b"")]));
    let b = deliver(&s, &m, 28).expect("bundle");
    assert_eq!(entry_keys(&b), bytes_list(&[&[1]]));
    assert_eq!(prefixes(&b), Vec::<Vec<u8>>::new());
}

#[test]
fn state_key_outside_the_budget_is_not_covered_never_absent() {
    // New actor, budget used up before [1].
    let s = snapshot(&[(&[3], b"token")]);
    let m = manifest(&[&[3], &[1]], &[]);
    let b = deliver(&s, &m, size_default(&[3], b"token")).expect("bundle");
    assert_eq!(get_keys(&b), bytes_list(&[&[3]]));
    assert_eq!(PreloadMap::new(Some(&b), Some(&m)).get(&[1]), Lookup::NotCovered);
    // New actor, a manifest without [1].
    let m = manifest(&[&[3]], &[]);
    let b = deliver(&s, &m, PRELOAD_MAX_TOTAL_BYTES).expect("bundle");
    assert_eq!(PreloadMap::new(Some(&b), Some(&m)).get(&[1]), Lookup::NotCovered);

    // Existing actor whose state is larger than what remains of the budget.
    let s = snapshot(&[(&[1], &[1; 200]), (&[3], b"token")]);
    let m = manifest(&[&[1], &[3]], &[]);
    let b = deliver(&s, &m, 100).expect("bundle");
    assert_eq!(get_keys(&b), bytes_list(&[&[3]]));
    assert_eq!(PreloadMap::new(Some(&b), Some(&m)).get(&[1]), Lookup::NotCovered);
    // With the canary, the state would read as absent: the defect the canary models.
    let bad = batch_preload(&s, &m, 100, Canaries::only(Canary::PreloadGetkeyBeforeBudget));
    assert_eq!(PreloadMap::new(Some(&bad), Some(&m)).get(&[1]), Lookup::Absent);
    let v = check_bundle(&s, Some(&m), 100, Some(&bad)).expect_err("canary not caught");
    assert_eq!(v.invariant(), Invariant::P2);
}

#[test]
fn invalid_or_absent_manifest_gives_none() {
    let s = snapshot(&[(&[1], b"state")]);
    let invalid = [
        r#"{"preload":{"prefixes":[{"prefix":[2],"maxBytes":-5}]}}"#,
        r#"{"preload":{"prefixes":[{"prefix":[2],"maxBytes":0.5}]}}"#,
        r#"{"preload":{"keys":[[1,256]]}}"#,
        r#"{"preload":{"prefixes":[{"maxBytes":10}]}}"#,
        r#"{"preload":"yes"}"#,
        r#"not json"#,
    ];
    for md in invalid {
        let mut store = store_with(&s, Some(md));
        let out = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
        assert_eq!((&out.bundle, out.failed), (&None, false), "{md}");
        assert!(out.manifest_error.is_some(), "{md}");
        check_bundle(&s, None, PRELOAD_MAX_TOTAL_BYTES, None).unwrap_or_else(|v| panic!("{v}"));
    }
    for md in [Some(r#"{"icon":"x"}"#), None] {
        let mut store = store_with(&s, md);
        let out = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
        assert_eq!((out.bundle, out.failed, out.manifest_error), (None, false, None));
    }
    // Not UTF-8.
    let mut store = store_with(&s, None);
    let mut txn = store.begin(0);
    txn.set(crate::keys::actor_name_metadata(NAMESPACE, ACTOR_NAME), vec![0xFF, 0xFE]);
    store.commit(txn, 0, None).expect("commit");
    assert_eq!(fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES).bundle, None);
}

#[test]
fn manifest_changed_between_deliveries() {
    let s =
        snapshot(&[(&[2, 0], b"c0"), (&[2, 1], b"c1"), (&[6, 1, 0], b"h0"), (&[6, 1, 1], b"h1")]);
    let runner_a = manifest(&[], &[(&[2], u64::MAX, false)]);
    let mut store = store_with(&s, Some(&runner_a.to_metadata_json()));
    let first = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
    assert_eq!(first.manifest.as_ref(), Some(&runner_a));

    // Another runner version registers another layout.
    let runner_b = manifest(&[], &[(&[6, 1], u64::MAX, false), (&[2], u64::MAX, false)]);
    commit(&mut store, &[StoreWrite::Metadata(Some(runner_b.to_metadata_json()))], 1);
    let second = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
    assert!(second.read_version > first.read_version);
    assert_eq!(second.manifest.as_ref(), Some(&runner_b));
    let b = second.bundle.expect("bundle");
    check_bundle(&s, Some(&runner_b), PRELOAD_MAX_TOTAL_BYTES, Some(&b))
        .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(prefixes(&b), bytes_list(&[&[6, 1], &[2]]));
    // A consumer running manifest A: [6,1] is only a cache.
    let map = PreloadMap::new(Some(&b), Some(&runner_a));
    assert_eq!(
        map.list_prefix(&[6, 1]),
        Listing::Cached(vec![kv(&[6, 1, 0], b"h0"), kv(&[6, 1, 1], b"h1")])
    );
    assert_eq!(map.get(&[6, 1, 9]), Lookup::NotCovered);
    assert_eq!(
        map.list_prefix(&[2]),
        Listing::Complete(vec![kv(&[2, 0], b"c0"), kv(&[2, 1], b"c1")])
    );

    // Labelled negative configuration (breaks §3.7): the engine's manifest declares [2] partial,
    // the consumer declares it complete, so a truncated listing is taken as complete.
    let runner_c = manifest(&[], &[(&[2], size_default(&[2, 0], b"c0"), true)]);
    commit(&mut store, &[StoreWrite::Metadata(Some(runner_c.to_metadata_json()))], 2);
    let b = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES).bundle.expect("bundle");
    let listing = PreloadMap::new(Some(&b), Some(&runner_a)).list_prefix(&[2]);
    assert_eq!(listing, Listing::Complete(vec![kv(&[2, 0], b"c0")]));
    assert!(
        check_listing(&s, &[2], &listing).is_err(),
        "the negative configuration must be detected"
    );
}

#[test]
fn concurrent_writes_during_the_preload_read() {
    let s = snapshot(&[(&[1], b"s0"), (&[2, 0], b"c0"), (&[2, 1], b"c1")]);
    let m = reference_manifest();
    let mut store = store_with(&s, Some(&m.to_metadata_json()));
    let writes = vec![
        StoreWrite::Put(vec![(vec![1], rec(b"s1")), (vec![2, 2], rec(b"c2"))]),
        StoreWrite::DeleteRange(vec![2, 0], vec![2, 1, 0]),
    ];
    let mut after = s.clone();
    for w in &writes {
        apply_to_snapshot(&mut after, w);
    }
    let request = FetchRequest {
        actor: ACTOR,
        namespace: NAMESPACE,
        actor_name: ACTOR_NAME,
        budget_t: PRELOAD_MAX_TOTAL_BYTES,
        canaries: Canaries::NONE,
        now_ms: 0,
    };
    // The writes commit in the middle of the scan (before the 4th read): the bundle is all-old.
    let mut reads = 0;
    let out = fetch_with(&mut store, &request, &mut |st: &mut Store| {
        reads += 1;
        if reads == 4 {
            commit(st, &writes, 0);
        }
        false
    });
    let b = out.bundle.expect("bundle");
    check_bundle(&s, Some(&m), PRELOAD_MAX_TOTAL_BYTES, Some(&b)).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(entry_keys(&b), bytes_list(&[&[1], &[2, 0], &[2, 1]]));
    // The next delivery sees them all.
    let next = fetch_clean(&mut store, PRELOAD_MAX_TOTAL_BYTES);
    assert!(next.read_version > out.read_version);
    let b = next.bundle.expect("bundle");
    check_bundle(&after, Some(&m), PRELOAD_MAX_TOTAL_BYTES, Some(&b))
        .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(entry_keys(&b), bytes_list(&[&[1], &[2, 2]]));
    assert_eq!(
        Snapshot::read_latest(&mut store, ACTOR, 0),
        Ok((next.read_version.unwrap_or(0), after.clone()))
    );

    // Committed and then failing the read: the retry at a fresh version sees them fully.
    let mut store = store_with(&s, Some(&m.to_metadata_json()));
    let mut reads = 0;
    let out = fetch_with(&mut store, &request, &mut |st: &mut Store| {
        reads += 1;
        if reads == 4 {
            commit(st, &writes, 0);
            return true;
        }
        false
    });
    assert_eq!(out.attempts, 2);
    let b = out.bundle.expect("bundle");
    check_bundle(&after, Some(&m), PRELOAD_MAX_TOTAL_BYTES, Some(&b))
        .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(get_keys(&b), bytes_list(&[&[1], &[3], &[5, 1, 1], &[6]]));
    assert_eq!(b.entries[0].value.as_ref(), b"s1");
}
