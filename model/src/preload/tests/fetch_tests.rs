//! Fetch under faults (§2 retry, §9 "transaction retry" and "concurrent writes"): injected read
//! failures at any point up to the attempt limit give the result of one clean run at the final
//! version; beyond the limit the fetch fails with `None`; writes committed while the fetch runs
//! are either fully in (committed before the final attempt's `V`) or fully out.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::canary::Canaries;
use crate::constants::PRELOAD_MAX_ATTEMPTS;
use crate::preload::oracle::{bundle_bytes, check_bundle};
use crate::preload::{fetch, fetch_with, FetchRequest, Manifest, PrefixItem, Snapshot};
use crate::records::KvEntryRecord;
use crate::store::{Store, Version};

use super::gen::{case, pick_key, record, KeyChoice, INVALID_PRELOADS};
use super::properties::reference_for;
use super::support::{
    apply_to_snapshot, commit, store_with, StoreWrite, ACTOR, ACTOR_NAME, NAMESPACE,
};

/// Count the store reads of a clean fetch.
fn clean_reads(store: &mut Store, budget: u64) -> usize {
    let mut reads = 0;
    fetch(store, ACTOR, NAMESPACE, ACTOR_NAME, budget, Canaries::NONE, 0, &mut || {
        reads += 1;
        false
    });
    reads
}

/// A fault script: attempt `i` fails at its read number `fail_at[i]`; later attempts are clean.
fn scripted_faults(fail_at: Vec<usize>) -> impl FnMut() -> bool {
    let mut attempt = 0;
    let mut read = 0;
    move || {
        let Some(target) = fail_at.get(attempt) else { return false };
        if read == *target {
            attempt += 1;
            read = 0;
            true
        } else {
            read += 1;
            false
        }
    }
}

proptest! {
    /// Up to `PRELOAD_MAX_ATTEMPTS - 1` failed attempts, each failing at any read: the outcome
    /// equals a clean run (and the reference), with one more attempt per failure.
    #[test]
    fn retried_fetch_equals_clean_run(
        case in case(),
        failures in vec(any::<Index>(), 0..PRELOAD_MAX_ATTEMPTS as usize),
    ) {
        let metadata = case.metadata_json();
        let mut store = store_with(&case.snapshot, Some(&metadata));
        let reads = clean_reads(&mut store, case.budget);
        let clean = fetch(&mut store, ACTOR, NAMESPACE, ACTOR_NAME, case.budget, Canaries::NONE, 0, &mut || false);
        let fail_at: Vec<usize> = if reads == 0 { vec![] } else { failures.iter().map(|i| i.index(reads)).collect() };
        let expected_attempts = if case.budget == 0 { 0 } else { fail_at.len() as u32 + 1 };
        let mut faults = scripted_faults(fail_at);
        let out = fetch(&mut store, ACTOR, NAMESPACE, ACTOR_NAME, case.budget, Canaries::NONE, 0, &mut faults);
        prop_assert!(!out.failed);
        prop_assert_eq!(out.attempts, expected_attempts);
        prop_assert_eq!(out.bundle.as_ref().map(bundle_bytes), clean.bundle.as_ref().map(bundle_bytes));
        prop_assert_eq!(out.bundle.as_ref().map(bundle_bytes), reference_for(&case.snapshot, case.manifest_at_v(), case.budget));
        prop_assert_eq!(&out.manifest, &clean.manifest);
        prop_assert_eq!(out.read_version, clean.read_version);
    }

    /// `PRELOAD_MAX_ATTEMPTS` failed attempts: the fetch fails and delivers `None`.
    #[test]
    fn fetch_fails_beyond_attempt_limit(
        case in case(),
        failures in vec(any::<Index>(), PRELOAD_MAX_ATTEMPTS as usize),
    ) {
        prop_assume!(case.budget > 0);
        let mut store = store_with(&case.snapshot, Some(&case.metadata_json()));
        let reads = clean_reads(&mut store, case.budget);
        let mut faults = scripted_faults(failures.iter().map(|i| i.index(reads)).collect());
        let out = fetch(&mut store, ACTOR, NAMESPACE, ACTOR_NAME, case.budget, Canaries::NONE, 0, &mut faults);
        prop_assert!(out.failed);
        prop_assert_eq!(out.bundle, None);
        prop_assert_eq!(out.read_version, None);
        prop_assert_eq!(out.attempts, PRELOAD_MAX_ATTEMPTS);
        prop_assert!(out.last_error.is_some());
    }

    /// Writers commit between the fetch's reads (and between attempts): the bundle equals the
    /// reference at the final attempt's `V`, and that `V` includes every write committed before
    /// the final attempt began.
    #[test]
    fn concurrent_writes_are_all_in_or_all_out(
        case in case(),
        actions in vec(hook_action(), 0..=24),
    ) {
        run_concurrent(&case.snapshot, &case.manifest, case.budget, &actions)?;
    }
}

/// A concurrent write, chosen against the initial keyspace.
#[derive(Clone, Debug)]
pub enum ConcurrentWrite {
    Put(Vec<(KeyChoice, KvEntryRecord)>),
    Delete(Vec<KeyChoice>),
    DeleteRange(KeyChoice, KeyChoice),
    Drop,
    /// Replace the manifest: a new valid one (the declared one with `maxBytes` scaled), an
    /// invalid one, or none.
    Manifest(ManifestChange),
}

#[derive(Clone, Debug)]
pub enum ManifestChange {
    Rescaled(u64),
    Invalid(Index),
    Removed,
}

/// What the hook does before one read: commit some writes, then fail the read or not.
#[derive(Clone, Debug)]
pub struct HookAction {
    pub writes: Vec<ConcurrentWrite>,
    pub fail: bool,
}

fn key_choice() -> impl Strategy<Value = KeyChoice> {
    prop_oneof![
        any::<Index>().prop_map(KeyChoice::Stored),
        super::gen::key().prop_map(KeyChoice::Raw),
    ]
}

fn concurrent_write() -> impl Strategy<Value = ConcurrentWrite> {
    prop_oneof![
        4 => vec((key_choice(), record()), 1..=4).prop_map(ConcurrentWrite::Put),
        2 => vec(key_choice(), 1..=3).prop_map(ConcurrentWrite::Delete),
        2 => (key_choice(), key_choice()).prop_map(|(a, b)| ConcurrentWrite::DeleteRange(a, b)),
        1 => Just(ConcurrentWrite::Drop),
        1 => prop_oneof![
            (0u64..=3).prop_map(ManifestChange::Rescaled),
            any::<Index>().prop_map(ManifestChange::Invalid),
            Just(ManifestChange::Removed),
        ]
        .prop_map(ConcurrentWrite::Manifest),
    ]
}

fn hook_action() -> impl Strategy<Value = HookAction> {
    (vec(concurrent_write(), 0..=2), prop::bool::weighted(0.15))
        .prop_map(|(writes, fail)| HookAction { writes, fail })
}

/// The test's own record of the store: keyspace and manifest (as the checker sees it) at every
/// committed version.
struct Mirror {
    states: BTreeMap<Version, (Snapshot, Option<Manifest>)>,
}

impl Mirror {
    fn at(&self, v: Version) -> (Snapshot, Option<Manifest>) {
        self.states.range(..=v).next_back().map(|(_, s)| s.clone()).unwrap_or_default()
    }
}

/// Run a fetch whose hook performs `actions` (one per read, then nothing) and check it.
pub fn run_concurrent(
    initial: &Snapshot,
    manifest: &Manifest,
    budget: u64,
    actions: &[HookAction],
) -> Result<(), TestCaseError> {
    let mut store = store_with(initial, Some(&manifest.to_metadata_json()));
    let mut mirror = Mirror { states: BTreeMap::new() };
    mirror.states.insert(store.version(), (initial.clone(), Some(manifest.clone())));

    let mut step = 0;
    let mut last_commit_before_failure: Version = 0;
    let mut failures = 0u32;
    let mut hook = |store: &mut Store| -> bool {
        let Some(action) = actions.get(step) else { return false };
        step += 1;
        let (mut snap, mut man) = mirror.at(store.version());
        let mut writes = Vec::new();
        for w in &action.writes {
            let sw = match w {
                ConcurrentWrite::Put(items) => StoreWrite::Put(
                    items.iter().map(|(c, r)| (pick_key(c, initial), r.clone())).collect(),
                ),
                ConcurrentWrite::Delete(cs) => {
                    StoreWrite::Delete(cs.iter().map(|c| pick_key(c, initial)).collect())
                }
                ConcurrentWrite::DeleteRange(a, b) => {
                    StoreWrite::DeleteRange(pick_key(a, initial), pick_key(b, initial))
                }
                ConcurrentWrite::Drop => StoreWrite::Drop,
                ConcurrentWrite::Manifest(ManifestChange::Rescaled(f)) => {
                    let m = Manifest {
                        keys: manifest.keys.clone(),
                        prefixes: manifest
                            .prefixes
                            .iter()
                            .map(|i| PrefixItem {
                                max_bytes: i.max_bytes.saturating_mul(*f),
                                ..i.clone()
                            })
                            .collect(),
                    };
                    let json = m.to_metadata_json();
                    man = Some(m);
                    StoreWrite::Metadata(Some(json))
                }
                ConcurrentWrite::Manifest(ManifestChange::Invalid(i)) => {
                    man = None;
                    StoreWrite::Metadata(Some(format!(
                        r#"{{"preload":{}}}"#,
                        INVALID_PRELOADS[i.index(INVALID_PRELOADS.len())]
                    )))
                }
                ConcurrentWrite::Manifest(ManifestChange::Removed) => {
                    man = None;
                    StoreWrite::Metadata(None)
                }
            };
            apply_to_snapshot(&mut snap, &sw);
            writes.push(sw);
        }
        if !writes.is_empty() {
            let v = commit(store, &writes, 0);
            mirror.states.insert(v, (snap, man));
            if action.fail {
                last_commit_before_failure = v;
            }
        }
        if action.fail {
            failures += 1;
        }
        action.fail
    };
    let request = FetchRequest {
        actor: ACTOR,
        namespace: NAMESPACE,
        actor_name: ACTOR_NAME,
        budget_t: budget,
        canaries: Canaries::NONE,
        now_ms: 0,
    };
    let out = fetch_with(&mut store, &request, &mut hook);
    if out.failed {
        prop_assert_eq!(failures, PRELOAD_MAX_ATTEMPTS);
        prop_assert_eq!(out.bundle, None);
        return Ok(());
    }
    let Some(v) = out.read_version else {
        prop_assert_eq!(budget, 0);
        prop_assert_eq!(out.bundle, None);
        return Ok(());
    };
    prop_assert!(
        v >= last_commit_before_failure,
        "a write committed before the final attempt is missing"
    );
    let (snap, man) = mirror.at(v);
    check_bundle(&snap, man.as_ref(), budget, out.bundle.as_ref())
        .map_err(|e| TestCaseError::fail(format!("at V = {v}: {e}")))?;
    prop_assert_eq!(
        out.bundle.as_ref().map(bundle_bytes),
        reference_for(&snap, man.as_ref(), budget)
    );
    Ok(())
}
