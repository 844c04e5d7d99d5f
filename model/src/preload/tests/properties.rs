//! Property tests of P0–P11 over generated keyspaces, manifests and budgets. The bundle under
//! test is produced by the real `fetch` over a store holding the case; the reference is the
//! independent oracle (never `batch_preload`).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use crate::canary::Canaries;
use crate::preload::oracle::{
    bundle_bytes, check_bundle, check_invariant, check_listing, check_lookup,
    check_lookup_coverage, reference_batch, reference_bundle, reference_normalize, Invariant,
};
use crate::preload::{
    batch_preload, fetch, FetchOutcome, Listing, Lookup, Manifest, PreloadMap, Snapshot,
};
use crate::protocol::PreloadedKv;

use super::gen::{
    case, consumer_variant, key, pick_key, write_ops, Case, ConsumerVariant, WriteOp,
};
use super::support::{
    commit, fetch_clean, rec, store_with, StoreWrite, ACTOR, ACTOR_NAME, NAMESPACE,
};

/// Fetch the case's bundle from a store holding it.
pub fn deliver(case: &Case, canaries: Canaries) -> FetchOutcome {
    let mut store = store_with(&case.snapshot, Some(&case.metadata_json()));
    fetch(&mut store, ACTOR, NAMESPACE, ACTOR_NAME, case.budget, canaries, 0, &mut || false)
}

/// One invariant, checked by the oracle on the delivered bundle.
pub fn invariant_holds(
    inv: Invariant,
    case: &Case,
    canaries: Canaries,
) -> Result<(), TestCaseError> {
    let out = deliver(case, canaries);
    prop_assert!(!out.failed, "a clean fetch failed: {:?}", out.last_error);
    check_invariant(inv, &case.snapshot, case.manifest_at_v(), case.budget, out.bundle.as_ref())
        .map_err(|v| TestCaseError::fail(v.to_string()))
}

proptest! {
    #[test]
    fn p0_reference_equality(case in case()) {
        invariant_holds(Invariant::P0, &case, Canaries::NONE)?;
    }

    #[test]
    fn p0_batch_preload_equals_reference_batch(case in case()) {
        let bundle = batch_preload(&case.snapshot, &case.manifest, case.budget, Canaries::NONE);
        let reference = reference_batch(&case.snapshot, &case.manifest, case.budget);
        prop_assert_eq!(bundle_bytes(&bundle), bundle_bytes(&reference));
    }

    #[test]
    fn p1_snapshot_consistency(case in case()) {
        invariant_holds(Invariant::P1, &case, Canaries::NONE)?;
    }

    #[test]
    fn p2_get_key_soundness(case in case()) {
        invariant_holds(Invariant::P2, &case, Canaries::NONE)?;
    }

    #[test]
    fn p3_get_key_completeness(case in case()) {
        invariant_holds(Invariant::P3, &case, Canaries::NONE)?;
    }

    #[test]
    fn p4_complete_prefix_exactness(case in case()) {
        invariant_holds(Invariant::P4, &case, Canaries::NONE)?;
    }

    #[test]
    fn p5_partial_prefix_soundness_and_maximality(case in case()) {
        invariant_holds(Invariant::P5, &case, Canaries::NONE)?;
    }

    #[test]
    fn p6_prefix_omission(case in case()) {
        invariant_holds(Invariant::P6, &case, Canaries::NONE)?;
    }

    #[test]
    fn p7_budget_bound(case in case()) {
        invariant_holds(Invariant::P7, &case, Canaries::NONE)?;
    }

    #[test]
    fn p8_disable_rules(case in case()) {
        invariant_holds(Invariant::P8, &case, Canaries::NONE)?;
    }

    #[test]
    fn p9_order_and_uniqueness(case in case()) {
        invariant_holds(Invariant::P9, &case, Canaries::NONE)?;
    }

    #[test]
    fn p10_empty_keyspace_soundness(case in case()) {
        invariant_holds(Invariant::P10, &case, Canaries::NONE)?;
    }

    /// Every invariant at once, plus the fetch's instrumentation.
    #[test]
    fn all_bundle_invariants_and_instrumentation(case in case()) {
        let out = deliver(&case, Canaries::NONE);
        check_bundle(&case.snapshot, case.manifest_at_v(), case.budget, out.bundle.as_ref())
            .map_err(|v| TestCaseError::fail(v.to_string()))?;
        prop_assert_eq!(out.budget, case.budget);
        prop_assert!(!out.failed);
        if case.budget == 0 {
            prop_assert_eq!(out.attempts, 0);
            prop_assert_eq!(out.read_version, None);
        } else {
            prop_assert_eq!(out.attempts, 1);
            prop_assert_eq!(out.read_version, Some(1));
        }
        let used_manifest = if case.budget > 0 && !case.snapshot.is_empty() {
            case.manifest_at_v().map(reference_normalize)
        } else {
            None
        };
        prop_assert_eq!(out.manifest, used_manifest);
    }

    /// P9 determinism: the same `(S, M, T)` committed in a different order, in different
    /// batches, over overwritten and deleted noise, gives byte-identical bundles.
    #[test]
    fn p9_bundle_bytes_independent_of_commit_order(
        case in case(),
        shuffle in vec(any::<Index>(), 12),
        batch_sizes in vec(1usize..=4, 12),
        noise in vec((key(), any::<bool>()), 0..=4),
    ) {
        let metadata = case.metadata_json();
        let mut ascending = store_with(&case.snapshot, Some(&metadata));

        let mut entries: Vec<_> = case.snapshot.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
        for i in (1..entries.len()).rev() {
            entries.swap(i, shuffle[i].index(i + 1));
        }
        let mut shuffled = crate::store::Store::default();
        let mut now = 0;
        // Noise first: keys that end up absent are deleted again, stored ones are overwritten.
        for (k, delete_by_range) in &noise {
            commit(&mut shuffled, &[StoreWrite::Put(vec![(k.clone(), rec(b"noise"))])], now);
            if case.snapshot.get(k).is_none() {
                let w = if *delete_by_range {
                    let mut end = k.clone();
                    end.push(0);
                    StoreWrite::DeleteRange(k.clone(), end)
                } else {
                    StoreWrite::Delete(vec![k.clone()])
                };
                commit(&mut shuffled, &[w], now);
            }
            now += 1;
        }
        let mut rest = entries.as_slice();
        let mut b = 0;
        while !rest.is_empty() {
            let n = batch_sizes[b % batch_sizes.len()].min(rest.len());
            commit(&mut shuffled, &[StoreWrite::Put(rest[..n].to_vec())], now);
            rest = &rest[n..];
            b += 1;
            now += 1;
        }
        commit(&mut shuffled, &[StoreWrite::Metadata(Some(metadata))], now);

        let a = fetch_clean(&mut ascending, case.budget);
        let s = fetch(&mut shuffled, ACTOR, NAMESPACE, ACTOR_NAME, case.budget, Canaries::NONE, now, &mut || false);
        prop_assert_eq!(a.bundle.as_ref().map(bundle_bytes), s.bundle.as_ref().map(bundle_bytes));
        // And a second fetch of the same store is identical too.
        let again = fetch_clean(&mut ascending, case.budget);
        prop_assert_eq!(a.bundle.as_ref().map(bundle_bytes), again.bundle.as_ref().map(bundle_bytes));
    }

    /// P11: lookups before writes and after random write-through operations.
    #[test]
    fn p11_lookup_correctness(
        case in case(),
        variant in consumer_variant(),
        ops in write_ops(),
        extra_probes in vec(key(), 0..=6),
    ) {
        let out = deliver(&case, Canaries::NONE);
        check_lookups_through_writes(&case, &variant, &ops, &extra_probes, out.bundle.as_ref())?;
    }
}

/// The probe set: every stored key, manifest item, their prefixes and one-byte extensions.
fn probes(case: &Case, runner: &Manifest, extra: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut add = |k: &[u8]| {
        if k.len() <= 8 || k.iter().all(|b| *b == 0xFF) {
            for n in 0..=k.len().min(4) {
                out.push(k[..n].to_vec());
            }
            out.push(k.to_vec());
            for b in [0x00u8, 0x07, 0xFF] {
                let mut x = k.to_vec();
                x.push(b);
                out.push(x);
            }
        } else {
            out.push(k.to_vec());
        }
    };
    for (k, _) in case.snapshot.iter() {
        add(k);
    }
    for k in &case.manifest.keys {
        add(k);
    }
    for p in case.manifest.prefixes.iter().chain(&runner.prefixes) {
        add(&p.prefix);
    }
    for k in extra {
        add(k);
    }
    out.sort();
    out.dedup();
    out
}

fn violation(v: crate::preload::oracle::PreloadViolation) -> TestCaseError {
    TestCaseError::fail(v.to_string())
}

/// Build the map, check P11 on every probe, then apply each write to the map and to the test's
/// own keyspace and check again (with the §5.5 write-through rules on the written keys).
pub fn check_lookups_through_writes(
    case: &Case,
    variant: &ConsumerVariant,
    ops: &[WriteOp],
    extra_probes: &[Vec<u8>],
    bundle: Option<&PreloadedKv>,
) -> Result<(), TestCaseError> {
    let engine_manifest = reference_normalize(&case.manifest);
    let runner = variant.apply(&engine_manifest);
    let mut map = PreloadMap::new(bundle, Some(&runner));
    let mut truth: Snapshot = case.snapshot.clone();
    let mut probe_keys = probes(case, &runner, extra_probes);

    let mut not_covered_listings = Vec::new();
    for q in &probe_keys {
        let got = map.get(q);
        check_lookup(&truth, q, &got).map_err(violation)?;
        check_lookup_coverage(bundle, Some(&runner), q, &got).map_err(violation)?;
        let listing = map.list_prefix(q);
        check_listing(&truth, q, &listing).map_err(violation)?;
        if listing == Listing::NotCovered {
            not_covered_listings.push(q.clone());
        }
    }
    prop_assert_eq!(
        map.is_empty_keyspace(),
        bundle.is_some_and(crate::protocol::preloaded_kv::is_empty_keyspace)
    );
    if map.is_empty_keyspace() {
        prop_assert!(truth.is_empty(), "P10 through the map");
    }

    let mut written: Vec<Vec<u8>> = Vec::new();
    for op in ops {
        match op {
            WriteOp::Put(items) => {
                let keys: Vec<Vec<u8>> =
                    items.iter().map(|(c, _)| pick_key(c, &case.snapshot)).collect();
                let values: Vec<Vec<u8>> = items.iter().map(|(_, v)| v.clone()).collect();
                prop_assert!(map.apply_put(&keys, &values).is_ok());
                for (k, v) in keys.iter().zip(&values) {
                    truth.insert(k.clone(), rec(v));
                }
                for k in &keys {
                    // §5.5: the last value written wins, and the key needs no coverage.
                    let expected = truth.get(k).map(|r| r.value.clone()).unwrap_or_default();
                    if bundle.is_some() {
                        prop_assert_eq!(map.get(k), Lookup::Hit(expected));
                    }
                    written.push(k.clone());
                }
            }
            WriteOp::Delete(choices) => {
                let keys: Vec<Vec<u8>> =
                    choices.iter().map(|c| pick_key(c, &case.snapshot)).collect();
                map.apply_delete(&keys);
                for k in &keys {
                    truth.remove(k);
                    if bundle.is_some() {
                        prop_assert_eq!(map.get(k), Lookup::Absent);
                    }
                    written.push(k.clone());
                }
            }
            WriteOp::DeleteRange(a, b) => {
                let (start, end) = (pick_key(a, &case.snapshot), pick_key(b, &case.snapshot));
                map.apply_delete_range(&start, &end);
                truth.remove_range(&start, &end);
                if bundle.is_some() && start < end {
                    prop_assert_eq!(map.get(&start), Lookup::Absent);
                }
                written.push(start);
                written.push(end);
            }
            WriteOp::Drop => {
                map.apply_drop();
                truth.clear();
                if bundle.is_some() {
                    for q in &probe_keys {
                        prop_assert_eq!(map.get(q), Lookup::Absent);
                    }
                }
            }
        }
        probe_keys.extend(written.iter().cloned());
        probe_keys.sort();
        probe_keys.dedup();
        for q in &probe_keys {
            check_lookup(&truth, q, &map.get(q)).map_err(violation)?;
            let listing = map.list_prefix(q);
            check_listing(&truth, q, &listing).map_err(violation)?;
            if not_covered_listings.contains(q) {
                prop_assert_eq!(
                    listing,
                    Listing::NotCovered,
                    "a NotCovered listing stays NotCovered"
                );
            }
        }
    }
    Ok(())
}

/// Used by `fetch_tests`: the reference for a case at its own `V`.
pub fn reference_for(
    snapshot: &Snapshot,
    manifest: Option<&Manifest>,
    budget: u64,
) -> Option<Vec<u8>> {
    reference_bundle(snapshot, manifest, budget).as_ref().map(bundle_bytes)
}
