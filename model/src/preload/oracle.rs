//! CHECKER CODE. The checker-side reference for the preload and the invariant checks P0–P11 of
//! `spec/preload.md` §8, for the simulator's checkers (which run them on recorded history: the
//! fetch's `V`, normalized manifest and budget, and `S@V` rebuilt from the recorded commits) and
//! for this module's tests.
//!
//! It lives in the model crate only so that both can call it; the model itself never calls it.
//! It must not call `batch_preload`, `Manifest::normalize`, `entry_size` or `PreloadMap`: the
//! reference is written again, directly from the text of §3.3, §3.5 and §4, in a different style
//! (each item is decided from an explicit running total; a prefix's new entries are collected
//! first and the longest fitting run is found from prefix sums, instead of a walk that breaks).
//! It reads the keyspace only through [`Snapshot`]'s plain iteration.
//!
//! How the checks attribute entries to prefixes: the wire does not say which prefix placed an
//! entry, and two consecutive recorded prefixes can be ambiguous. P5 and the per-prefix part of
//! P7 therefore use the reference's run lengths to cut the bundle into runs, and only when the
//! bundle recorded the same get-keys and prefixes as the reference (otherwise P3 or P6 report
//! the difference, and those two parts are not evaluated). P7 also charges each recorded prefix
//! with the entries that only it can have placed (under it and no other recorded prefix, and not
//! a recorded get-key), a lower bound that needs no cuts and so holds for every bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use vbare::Encode;

use crate::constants::METADATA_TS_BYTES;
use crate::protocol::{KvMetadata, PreloadedKv, PreloadedKvEntry};
use crate::records::KvEntryRecord;

use super::keyspace::Snapshot;
use super::manifest::{Manifest, PrefixItem};
use super::map::{Listing, Lookup};

/// The preload invariants of §8 that this module checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    P0,
    P1,
    P2,
    P3,
    P4,
    P5,
    P6,
    P7,
    P8,
    P9,
    P10,
    P11,
}

impl Invariant {
    /// The order in which [`check_bundle`] evaluates the bundle invariants: disable rules and
    /// soundness first, then exactness and the budget bound, then the "exactly when" statements
    /// that need the replay, and byte equality last, so that a failure names the most specific
    /// invariant.
    pub const BUNDLE_ORDER: [Invariant; 11] = [
        Invariant::P8,
        Invariant::P10,
        Invariant::P1,
        Invariant::P2,
        Invariant::P7,
        Invariant::P4,
        Invariant::P9,
        Invariant::P3,
        Invariant::P6,
        Invariant::P5,
        Invariant::P0,
    ];

    /// The invariant's id and name as §8 spells them.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::P0 => "P0 reference equality",
            Invariant::P1 => "P1 snapshot consistency",
            Invariant::P2 => "P2 get-key soundness",
            Invariant::P3 => "P3 get-key completeness",
            Invariant::P4 => "P4 complete-prefix exactness",
            Invariant::P5 => "P5 partial-prefix soundness and maximality",
            Invariant::P6 => "P6 prefix omission",
            Invariant::P7 => "P7 budget bound",
            Invariant::P8 => "P8 disable rules",
            Invariant::P9 => "P9 order, uniqueness, determinism",
            Invariant::P10 => "P10 empty-keyspace soundness",
            Invariant::P11 => "P11 lookup correctness",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken preload invariant, with what the checker saw. Keys and prefixes are raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreloadViolation {
    /// P0: the bundle differs from the reference.
    #[error("P0 reference equality: {detail}")]
    ReferenceMismatch { detail: String },
    /// P1: an entry does not equal the stored entry at `V`.
    #[error("P1 snapshot consistency: entry {key:?}: {detail}")]
    EntryNotInSnapshot { key: Vec<u8>, detail: String },
    /// P2: a recorded get-key's entry disagrees with its presence in `S`.
    #[error(
        "P2 get-key soundness: get-key {key:?} is recorded, in store: {in_store}, has entry: {has_entry}"
    )]
    GetKeyUnsound { key: Vec<u8>, in_store: bool, has_entry: bool },
    /// P3: a get-key is recorded when it should not be, or the reverse.
    #[error(
        "P3 get-key completeness: get-key {key:?} recorded: {recorded}, expected: {expected_recorded} \
         (total before it {total_at}, its size {size:?}, budget {budget})"
    )]
    GetKeyRecording {
        key: Vec<u8>,
        recorded: bool,
        expected_recorded: bool,
        total_at: u64,
        size: Option<u64>,
        budget: u64,
    },
    /// P4: a recorded complete prefix does not hold exactly `L(P)`.
    #[error(
        "P4 complete-prefix exactness: prefix {prefix:?}: missing {missing:?}, unexpected \
         {unexpected:?}, different value or metadata {differing:?}"
    )]
    CompletePrefixInexact {
        prefix: Vec<u8>,
        missing: Vec<Vec<u8>>,
        unexpected: Vec<Vec<u8>>,
        differing: Vec<Vec<u8>>,
    },
    /// P5: a recorded partial prefix's run is not the longest fitting initial run of `new(P)`.
    #[error(
        "P5 partial-prefix soundness and maximality: prefix {prefix:?} added {found:?}, expected \
         {expected:?} (bound {bound})"
    )]
    PartialPrefixRun { prefix: Vec<u8>, expected: Vec<Vec<u8>>, found: Vec<Vec<u8>>, bound: u64 },
    /// P6: a prefix is recorded when it should be omitted, or the reverse.
    #[error(
        "P6 prefix omission: prefix {prefix:?} (partial: {partial}) recorded: {recorded}, expected: \
         {expected_recorded} (bound {bound}, size of its new entries {new_size})"
    )]
    PrefixRecording {
        prefix: Vec<u8>,
        partial: bool,
        recorded: bool,
        expected_recorded: bool,
        bound: u64,
        new_size: u64,
    },
    /// P7: the bundle's entries exceed `T`.
    #[error("P7 budget bound: the entries total {total} bytes, budget {budget}")]
    OverBudget { total: u64, budget: u64 },
    /// P7: a prefix's run exceeds its bound.
    #[error("P7 budget bound: prefix {prefix:?} added {charged} bytes, bound {bound}")]
    PrefixOverBound { prefix: Vec<u8>, charged: u64, bound: u64 },
    /// P8: a disable rule is broken.
    #[error("P8 disable rules: {rule}: {detail}")]
    DisableRule { rule: &'static str, detail: String },
    /// P9: order, subsequence or uniqueness is broken.
    #[error("P9 order, uniqueness, determinism: {detail}")]
    Structure { detail: String },
    /// P10: the bundle claims an empty keyspace that is not empty.
    #[error("P10 empty-keyspace soundness: the bundle says the keyspace is empty, it holds {keys_in_store} keys")]
    FalseEmptyKeyspace { keys_in_store: usize },
    /// P11: a lookup answered something that is not true of the keyspace.
    #[error("P11 lookup correctness: {query:?}: {detail}")]
    WrongLookup { query: Vec<u8>, detail: String },
}

impl PreloadViolation {
    /// The invariant this violation breaks.
    pub fn invariant(&self) -> Invariant {
        match self {
            PreloadViolation::ReferenceMismatch { .. } => Invariant::P0,
            PreloadViolation::EntryNotInSnapshot { .. } => Invariant::P1,
            PreloadViolation::GetKeyUnsound { .. } => Invariant::P2,
            PreloadViolation::GetKeyRecording { .. } => Invariant::P3,
            PreloadViolation::CompletePrefixInexact { .. } => Invariant::P4,
            PreloadViolation::PartialPrefixRun { .. } => Invariant::P5,
            PreloadViolation::PrefixRecording { .. } => Invariant::P6,
            PreloadViolation::OverBudget { .. } | PreloadViolation::PrefixOverBound { .. } => {
                Invariant::P7
            }
            PreloadViolation::DisableRule { .. } => Invariant::P8,
            PreloadViolation::Structure { .. } => Invariant::P9,
            PreloadViolation::FalseEmptyKeyspace { .. } => Invariant::P10,
            PreloadViolation::WrongLookup { .. } => Invariant::P11,
        }
    }
}

// ---- the reference (§3.3, §3.5, §4) ------------------------------------------------------------

/// §3.5, written again: `len(key) + len(value) + len(version) + 8`.
fn spec_size(key: &[u8], value: &[u8], version: &[u8]) -> u64 {
    key.len() as u64 + value.len() as u64 + version.len() as u64 + METADATA_TS_BYTES as u64
}

fn record_size(key: &[u8], record: &KvEntryRecord) -> u64 {
    spec_size(key, &record.value, &record.version)
}

fn wire_size(entry: &PreloadedKvEntry) -> u64 {
    spec_size(&entry.key, &entry.value, &entry.metadata.version)
}

/// §3.3, written again: item `i` survives when no earlier item has the same key (or prefix);
/// the empty prefix is made non-partial.
pub fn reference_normalize(manifest: &Manifest) -> Manifest {
    let keys = manifest
        .keys
        .iter()
        .enumerate()
        .filter(|(i, k)| !manifest.keys[..*i].contains(k))
        .map(|(_, k)| k.clone())
        .collect();
    let prefixes = manifest
        .prefixes
        .iter()
        .enumerate()
        .filter(|(i, item)| !manifest.prefixes[..*i].iter().any(|e| e.prefix == item.prefix))
        .map(|(_, item)| PrefixItem {
            prefix: item.prefix.clone(),
            max_bytes: item.max_bytes,
            partial: if item.prefix.is_empty() { false } else { item.partial },
        })
        .collect();
    Manifest { keys, prefixes }
}

/// What §4.2 does with one get-key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetKeyFate {
    /// A2: absent, recorded.
    RecordedAbsent,
    /// A3: present and fits: entry and recording.
    Included,
    /// A4: present, does not fit: nothing.
    DoesNotFit,
    /// A1: the budget was used up before it: nothing.
    BudgetUsedUp,
}

/// One get-key of the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetKeyStep {
    pub key: Vec<u8>,
    /// `total_at(K)`.
    pub total_at: u64,
    /// The size of its entry in `S`, if present.
    pub size: Option<u64>,
    pub fate: GetKeyFate,
}

/// What §4.2 does with one prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixFate {
    /// B1: `limit == 0`: not read, not recorded.
    Skipped,
    /// B4: every new entry fits: recorded, all charged.
    Whole,
    /// B4: partial and overflowing: recorded with the longest fitting run.
    Truncated,
    /// B3: non-partial and overflowing: not recorded, nothing charged.
    Discarded,
}

/// One prefix of the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixStep {
    pub item: PrefixItem,
    /// `total_at(P)`.
    pub total_at: u64,
    /// `min(maxBytes, T - total_at(P))`.
    pub bound: u64,
    /// `new(P)`: keys of `L(P)` not placed before `P`, ascending, with their sizes.
    pub new_entries: Vec<(Vec<u8>, u64)>,
    /// `sum(size(new(P)))`.
    pub new_size: u64,
    /// How many of `new_entries` the prefix adds.
    pub taken: usize,
    pub fate: PrefixFate,
}

impl PrefixStep {
    /// Whether the prefix ends up in `R`.
    pub fn recorded(&self) -> bool {
        matches!(self.fate, PrefixFate::Whole | PrefixFate::Truncated)
    }
}

/// The replay of §4.2 with every intermediate total, and its bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceRun {
    pub get_keys: Vec<GetKeyStep>,
    pub prefixes: Vec<PrefixStep>,
    pub bundle: PreloadedKv,
}

/// §4.2 replayed from its text over `S`, the manifest (normalized here) and `T`.
pub fn reference_run(snapshot: &Snapshot, manifest: &Manifest, budget: u64) -> ReferenceRun {
    let manifest = reference_normalize(manifest);
    let mut total: u64 = 0;
    let mut placed: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut hits: Vec<PreloadedKvEntry> = Vec::new();
    let mut get_keys = Vec::new();
    for key in &manifest.keys {
        let total_at = total;
        let stored = snapshot.get(key);
        let size = stored.map(|r| record_size(key, r));
        let fate = match (total_at >= budget, size) {
            (true, _) => GetKeyFate::BudgetUsedUp,
            (false, None) => GetKeyFate::RecordedAbsent,
            (false, Some(s)) if s <= budget - total_at => GetKeyFate::Included,
            (false, Some(_)) => GetKeyFate::DoesNotFit,
        };
        if let (GetKeyFate::Included, Some(record), Some(s)) = (fate, stored, size) {
            total += s;
            placed.insert(key.clone());
            hits.push(to_wire(key, record));
        }
        get_keys.push(GetKeyStep { key: key.clone(), total_at, size, fate });
    }

    let mut runs: Vec<PreloadedKvEntry> = Vec::new();
    let mut prefixes = Vec::new();
    for item in &manifest.prefixes {
        let total_at = total;
        let bound = item.max_bytes.min(budget - total_at);
        let new_entries: Vec<(Vec<u8>, u64)> = snapshot
            .iter()
            .filter(|(k, _)| k.starts_with(&item.prefix) && !placed.contains(*k))
            .map(|(k, r)| (k.clone(), record_size(k, r)))
            .collect();
        let new_size_wide: u128 = new_entries.iter().map(|(_, s)| *s as u128).sum();
        let new_size = u64::try_from(new_size_wide).unwrap_or(u64::MAX);
        let cumulative: Vec<u128> = new_entries
            .iter()
            .scan(0u128, |acc, (_, s)| {
                *acc += *s as u128;
                Some(*acc)
            })
            .collect();
        let fitting = cumulative.iter().take_while(|c| **c <= bound as u128).count();
        let fate = if bound == 0 {
            PrefixFate::Skipped
        } else if fitting == new_entries.len() {
            PrefixFate::Whole
        } else if item.partial {
            PrefixFate::Truncated
        } else {
            PrefixFate::Discarded
        };
        let taken = match fate {
            PrefixFate::Skipped | PrefixFate::Discarded => 0,
            PrefixFate::Whole | PrefixFate::Truncated => fitting,
        };
        let charged: u64 = new_entries[..taken].iter().map(|(_, s)| *s).sum();
        total += charged;
        for (k, _) in &new_entries[..taken] {
            placed.insert(k.clone());
            if let Some(record) = snapshot.get(k) {
                runs.push(to_wire(k, record));
            }
        }
        prefixes.push(PrefixStep {
            item: item.clone(),
            total_at,
            bound,
            new_entries,
            new_size,
            taken,
            fate,
        });
    }

    let bundle = PreloadedKv {
        entries: hits.into_iter().chain(runs).collect(),
        requested_get_keys: get_keys
            .iter()
            .filter(|s| matches!(s.fate, GetKeyFate::RecordedAbsent | GetKeyFate::Included))
            .map(|s| s.key.clone().into())
            .collect(),
        requested_prefixes: prefixes
            .iter()
            .filter(|s| s.recorded())
            .map(|s| s.item.prefix.clone().into())
            .collect(),
    };
    ReferenceRun { get_keys, prefixes, bundle }
}

fn to_wire(key: &[u8], record: &KvEntryRecord) -> PreloadedKvEntry {
    PreloadedKvEntry {
        key: key.to_vec().into(),
        value: record.value.clone().into(),
        metadata: KvMetadata {
            version: record.version.clone().into(),
            update_ts: record.update_ts,
        },
    }
}

/// The §4.2 bundle of the reference.
pub fn reference_batch(snapshot: &Snapshot, manifest: &Manifest, budget: u64) -> PreloadedKv {
    reference_run(snapshot, manifest, budget).bundle
}

/// `ref` of §8: §4.1 recomputed from `S`, the manifest at `V` (`None`: absent or invalid) and
/// `T`.
pub fn reference_bundle(
    snapshot: &Snapshot,
    manifest: Option<&Manifest>,
    budget: u64,
) -> Option<PreloadedKv> {
    if budget == 0 {
        return None;
    }
    if snapshot.is_empty() {
        return Some(PreloadedKv {
            entries: vec![],
            requested_get_keys: vec![],
            requested_prefixes: vec![Vec::<u8>::new().into()],
        });
    }
    manifest.map(|m| reference_batch(snapshot, m, budget))
}

/// The BARE bytes of a bundle (what P0 and P9's determinism compare).
pub fn bundle_bytes(bundle: &PreloadedKv) -> Vec<u8> {
    bundle.encode_to_vec()
}

// ---- the bundle checks (P0–P10) ----------------------------------------------------------------

/// Check a delivered bundle against every invariant P0–P10, in [`Invariant::BUNDLE_ORDER`].
///
/// Inputs are the fetch's instrumentation: `S@V`, the manifest at `V` (`None` when absent or
/// invalid), `T` and the delivered `preloaded_kv`. Call it only for fetches that succeeded: a
/// failed fetch legitimately delivers `None` (§7), which P0 would report.
pub fn check_bundle(
    snapshot: &Snapshot,
    manifest: Option<&Manifest>,
    budget: u64,
    bundle: Option<&PreloadedKv>,
) -> Result<(), PreloadViolation> {
    let check = BundleCheck::new(snapshot, manifest, budget, bundle);
    Invariant::BUNDLE_ORDER.iter().try_for_each(|inv| check.check(*inv))
}

/// Check one invariant only (P0–P10; P11 concerns lookups, see [`check_lookup`]).
pub fn check_invariant(
    invariant: Invariant,
    snapshot: &Snapshot,
    manifest: Option<&Manifest>,
    budget: u64,
    bundle: Option<&PreloadedKv>,
) -> Result<(), PreloadViolation> {
    BundleCheck::new(snapshot, manifest, budget, bundle).check(invariant)
}

struct BundleCheck<'a> {
    snapshot: &'a Snapshot,
    manifest: Option<Manifest>,
    budget: u64,
    bundle: Option<&'a PreloadedKv>,
    reference: Option<ReferenceRun>,
}

impl<'a> BundleCheck<'a> {
    fn new(
        snapshot: &'a Snapshot,
        manifest: Option<&Manifest>,
        budget: u64,
        bundle: Option<&'a PreloadedKv>,
    ) -> Self {
        let manifest = manifest.map(reference_normalize);
        let batch_regime = budget > 0 && !snapshot.is_empty();
        let reference = match (&manifest, batch_regime) {
            (Some(m), true) => Some(reference_run(snapshot, m, budget)),
            _ => None,
        };
        BundleCheck { snapshot, manifest, budget, bundle, reference }
    }

    fn check(&self, invariant: Invariant) -> Result<(), PreloadViolation> {
        match invariant {
            Invariant::P0 => self.p0(),
            Invariant::P8 => self.p8(),
            Invariant::P10 => self.p10(),
            Invariant::P11 => Ok(()),
            other => {
                // P1–P7 and P9 speak about a bundle computed by §4.2.
                let (Some(bundle), Some(run), Some(m)) =
                    (self.bundle, &self.reference, &self.manifest)
                else {
                    return Ok(());
                };
                match other {
                    Invariant::P1 => self.p1(bundle),
                    Invariant::P2 => self.p2(bundle),
                    Invariant::P3 => p3(bundle, run, self.budget),
                    Invariant::P4 => self.p4(bundle, m),
                    Invariant::P5 => p5(bundle, run),
                    Invariant::P6 => p6(bundle, run),
                    Invariant::P7 => p7(bundle, run, self.budget),
                    Invariant::P9 => p9(bundle, m),
                    _ => Ok(()),
                }
            }
        }
    }

    fn p0(&self) -> Result<(), PreloadViolation> {
        let expected = reference_bundle(self.snapshot, self.manifest.as_ref(), self.budget);
        match (self.bundle, expected.as_ref()) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(PreloadViolation::ReferenceMismatch {
                detail: "a bundle was delivered where the reference is None".into(),
            }),
            (None, Some(_)) => Err(PreloadViolation::ReferenceMismatch {
                detail: "no bundle was delivered where the reference is Some".into(),
            }),
            (Some(found), Some(expected)) => {
                let (f, e) = (bundle_bytes(found), bundle_bytes(expected));
                if f == e {
                    return Ok(());
                }
                let at = f.iter().zip(&e).position(|(a, b)| a != b).unwrap_or(f.len().min(e.len()));
                Err(PreloadViolation::ReferenceMismatch {
                    detail: format!(
                        "encodings differ at byte {at} (delivered {} bytes, reference {} bytes): \
                         delivered {found:?}, reference {expected:?}",
                        f.len(),
                        e.len()
                    ),
                })
            }
        }
    }

    fn p8(&self) -> Result<(), PreloadViolation> {
        let rule = |rule: &'static str, detail: String| {
            Err(PreloadViolation::DisableRule { rule, detail })
        };
        if self.budget == 0 {
            if self.bundle.is_some() {
                return rule("T == 0 implies None", "a bundle was delivered".into());
            }
            return Ok(());
        }
        if self.snapshot.is_empty() {
            let empty = match self.bundle {
                Some(b) => {
                    b.entries.is_empty()
                        && b.requested_get_keys.is_empty()
                        && b.requested_prefixes.len() == 1
                        && b.requested_prefixes[0].is_empty()
                }
                None => false,
            };
            if !empty {
                return rule(
                    "T > 0 and an empty keyspace imply Some(empty_keyspace())",
                    format!("delivered {:?}", self.bundle),
                );
            }
            return Ok(());
        }
        let Some(m) = &self.manifest else {
            if self.bundle.is_some() {
                return rule(
                    "an absent or invalid manifest implies None",
                    "a bundle was delivered".into(),
                );
            }
            return Ok(());
        };
        if let Some(bundle) = self.bundle {
            for item in m.prefixes.iter().filter(|i| i.max_bytes == 0) {
                if bundle.requested_prefixes.iter().any(|p| p.as_ref() == item.prefix.as_slice()) {
                    return rule(
                        "a prefix with maxBytes == 0 is never recorded",
                        format!("prefix {:?} is recorded", item.prefix),
                    );
                }
            }
        }
        Ok(())
    }

    fn p10(&self) -> Result<(), PreloadViolation> {
        let Some(bundle) = self.bundle else { return Ok(()) };
        let claims_empty =
            bundle.entries.is_empty() && bundle.requested_prefixes.iter().any(|p| p.is_empty());
        if claims_empty && !self.snapshot.is_empty() {
            return Err(PreloadViolation::FalseEmptyKeyspace {
                keys_in_store: self.snapshot.len(),
            });
        }
        Ok(())
    }

    fn p1(&self, bundle: &PreloadedKv) -> Result<(), PreloadViolation> {
        for e in &bundle.entries {
            let key = e.key.to_vec();
            let detail = match self.snapshot.get(&key) {
                None => Some("the key is not in S@V".to_string()),
                Some(r) if r.value.as_slice() != e.value.as_ref() => Some(format!(
                    "value of {} bytes differs from the stored {} bytes",
                    e.value.len(),
                    r.value.len()
                )),
                Some(r) if r.version.as_slice() != e.metadata.version.as_ref() => Some(format!(
                    "metadata version {:?} differs from the stored {:?}",
                    e.metadata.version, r.version
                )),
                Some(r) if r.update_ts != e.metadata.update_ts => Some(format!(
                    "update_ts {} differs from the stored {}",
                    e.metadata.update_ts, r.update_ts
                )),
                Some(_) => None,
            };
            if let Some(detail) = detail {
                return Err(PreloadViolation::EntryNotInSnapshot { key, detail });
            }
        }
        Ok(())
    }

    fn p2(&self, bundle: &PreloadedKv) -> Result<(), PreloadViolation> {
        for k in &bundle.requested_get_keys {
            let has_entry = bundle.entries.iter().any(|e| e.key == *k);
            let in_store = self.snapshot.get(k).is_some();
            if has_entry != in_store {
                return Err(PreloadViolation::GetKeyUnsound {
                    key: k.to_vec(),
                    in_store,
                    has_entry,
                });
            }
        }
        Ok(())
    }

    fn p4(&self, bundle: &PreloadedKv, m: &Manifest) -> Result<(), PreloadViolation> {
        for p in &bundle.requested_prefixes {
            let non_partial = p.is_empty()
                || m.prefixes.iter().any(|i| i.prefix.as_slice() == p.as_ref() && !i.partial);
            if !non_partial {
                continue;
            }
            let expected: Vec<(&Vec<u8>, &KvEntryRecord)> =
                self.snapshot.iter().filter(|(k, _)| k.starts_with(p)).collect();
            let found: BTreeMap<&[u8], &PreloadedKvEntry> = bundle
                .entries
                .iter()
                .filter(|e| e.key.starts_with(p))
                .map(|e| (e.key.as_ref(), e))
                .collect();
            let missing: Vec<Vec<u8>> = expected
                .iter()
                .filter(|(k, _)| !found.contains_key(k.as_slice()))
                .map(|(k, _)| (*k).clone())
                .collect();
            let unexpected: Vec<Vec<u8>> = found
                .keys()
                .filter(|k| self.snapshot.get(k).is_none())
                .map(|k| k.to_vec())
                .collect();
            let differing: Vec<Vec<u8>> = found
                .values()
                .filter(|e| {
                    self.snapshot.get(&e.key).is_some_and(|r| {
                        r.value.as_slice() != e.value.as_ref()
                            || r.version.as_slice() != e.metadata.version.as_ref()
                            || r.update_ts != e.metadata.update_ts
                    })
                })
                .map(|e| e.key.to_vec())
                .collect();
            if !(missing.is_empty() && unexpected.is_empty() && differing.is_empty()) {
                return Err(PreloadViolation::CompletePrefixInexact {
                    prefix: p.to_vec(),
                    missing,
                    unexpected,
                    differing,
                });
            }
        }
        Ok(())
    }
}

fn p3(bundle: &PreloadedKv, run: &ReferenceRun, budget: u64) -> Result<(), PreloadViolation> {
    for step in &run.get_keys {
        let recorded = bundle.requested_get_keys.iter().any(|k| k.as_ref() == step.key.as_slice());
        let expected_recorded =
            matches!(step.fate, GetKeyFate::RecordedAbsent | GetKeyFate::Included);
        if recorded != expected_recorded {
            return Err(PreloadViolation::GetKeyRecording {
                key: step.key.clone(),
                recorded,
                expected_recorded,
                total_at: step.total_at,
                size: step.size,
                budget,
            });
        }
    }
    Ok(())
}

fn p6(bundle: &PreloadedKv, run: &ReferenceRun) -> Result<(), PreloadViolation> {
    for step in &run.prefixes {
        let recorded =
            bundle.requested_prefixes.iter().any(|p| p.as_ref() == step.item.prefix.as_slice());
        if recorded != step.recorded() {
            return Err(PreloadViolation::PrefixRecording {
                prefix: step.item.prefix.clone(),
                partial: step.item.partial,
                recorded,
                expected_recorded: step.recorded(),
                bound: step.bound,
                new_size: step.new_size,
            });
        }
    }
    Ok(())
}

/// The bundle's runs, cut with the reference's run lengths, when the bundle recorded the same
/// get-keys and prefixes as the reference (see the module comment). Pairs each recorded prefix
/// step with the bundle's entries attributed to it (possibly fewer at the end of a short bundle).
fn attributed_runs<'r, 'b>(
    bundle: &'b PreloadedKv,
    run: &'r ReferenceRun,
) -> Option<Vec<(&'r PrefixStep, &'b [PreloadedKvEntry])>> {
    let same_g = bundle.requested_get_keys == run.bundle.requested_get_keys;
    let same_r = bundle.requested_prefixes == run.bundle.requested_prefixes;
    if !(same_g && same_r) {
        return None;
    }
    let mut offset = run.get_keys.iter().filter(|s| s.fate == GetKeyFate::Included).count();
    let mut out = Vec::new();
    for step in run.prefixes.iter().filter(|s| s.recorded()) {
        let start = offset.min(bundle.entries.len());
        let end = (offset + step.taken).min(bundle.entries.len());
        out.push((step, &bundle.entries[start..end]));
        offset += step.taken;
    }
    Some(out)
}

fn p5(bundle: &PreloadedKv, run: &ReferenceRun) -> Result<(), PreloadViolation> {
    let Some(runs) = attributed_runs(bundle, run) else { return Ok(()) };
    for (step, entries) in runs {
        let found: Vec<Vec<u8>> = entries.iter().map(|e| e.key.to_vec()).collect();
        let expected: Vec<Vec<u8>> =
            step.new_entries[..step.taken].iter().map(|(k, _)| k.clone()).collect();
        if found != expected {
            if !step.item.partial {
                // A complete prefix's deviation is P4's to report; later runs cannot be cut.
                return Ok(());
            }
            return Err(PreloadViolation::PartialPrefixRun {
                prefix: step.item.prefix.clone(),
                expected,
                found,
                bound: step.bound,
            });
        }
    }
    Ok(())
}

fn p7(bundle: &PreloadedKv, run: &ReferenceRun, budget: u64) -> Result<(), PreloadViolation> {
    let total: u128 = bundle.entries.iter().map(|e| wire_size(e) as u128).sum();
    if total > budget as u128 {
        return Err(PreloadViolation::OverBudget {
            total: u64::try_from(total).unwrap_or(u64::MAX),
            budget,
        });
    }
    if let Some(runs) = attributed_runs(bundle, run) {
        for (step, entries) in runs {
            let charged: u64 = entries.iter().map(wire_size).sum();
            if charged > step.bound {
                return Err(PreloadViolation::PrefixOverBound {
                    prefix: step.item.prefix.clone(),
                    charged,
                    bound: step.bound,
                });
            }
        }
    }
    // What a recorded prefix certainly added, whatever the cuts: the entries under it and under
    // no other recorded prefix, whose key is not a recorded get-key (a get-key hit is placed and
    // recorded in phase A, §4.2 A3, and a discarded or skipped prefix places nothing, B1/B3). A
    // lower bound of the prefix's run, so it holds for the bundle the reference cuts cannot
    // attribute: other recorded get-keys or prefixes than the reference's, or shifted runs.
    let recorded = |p: &[u8]| bundle.requested_prefixes.iter().any(|r| r.as_ref() == p);
    for step in run.prefixes.iter().filter(|s| recorded(&s.item.prefix)) {
        let prefix = step.item.prefix.as_slice();
        let charged: u64 = bundle
            .entries
            .iter()
            .filter(|e| {
                let key: &[u8] = e.key.as_ref();
                key.starts_with(prefix)
                    && !bundle.requested_get_keys.iter().any(|g| g.as_ref() == key)
                    && bundle
                        .requested_prefixes
                        .iter()
                        .filter(|r| key.starts_with(r.as_ref()))
                        .count()
                        == 1
            })
            .map(wire_size)
            .sum();
        if charged > step.bound {
            return Err(PreloadViolation::PrefixOverBound {
                prefix: prefix.to_vec(),
                charged,
                bound: step.bound,
            });
        }
    }
    Ok(())
}

fn p9(bundle: &PreloadedKv, m: &Manifest) -> Result<(), PreloadViolation> {
    let structure = |detail: String| Err(PreloadViolation::Structure { detail });
    if !is_subsequence(
        bundle.requested_get_keys.iter().map(|k| k.as_ref()),
        m.keys.iter().map(|k| k.as_slice()),
    ) {
        return structure(format!(
            "requested get-keys {:?} are not an order-preserving subsequence of the manifest's {:?}",
            bundle.requested_get_keys, m.keys
        ));
    }
    if !is_subsequence(
        bundle.requested_prefixes.iter().map(|p| p.as_ref()),
        m.prefixes.iter().map(|i| i.prefix.as_slice()),
    ) {
        return structure(format!(
            "requested prefixes {:?} are not an order-preserving subsequence of the manifest's",
            bundle.requested_prefixes
        ));
    }
    let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
    for e in &bundle.entries {
        if !seen.insert(e.key.as_ref()) {
            return structure(format!("key {:?} occurs twice in the entries", e.key));
        }
    }
    // The get-key hits, in manifest order, come first.
    let hits: Vec<&[u8]> =
        bundle.requested_get_keys.iter().map(|k| k.as_ref()).filter(|k| seen.contains(k)).collect();
    let head: Vec<&[u8]> = bundle.entries.iter().take(hits.len()).map(|e| e.key.as_ref()).collect();
    if head != hits {
        return structure(format!(
            "the entries do not start with the get-key hits {hits:?} in manifest order"
        ));
    }
    // Then one ascending run per recorded prefix, in priority order. Assigning each entry to
    // the earliest run that can take it finds such a split whenever one exists.
    let mut current: Option<usize> = None;
    let mut last: Option<&[u8]> = None;
    for e in &bundle.entries[hits.len()..] {
        let key = e.key.as_ref();
        let extends = current.is_some_and(|i| {
            key.starts_with(&bundle.requested_prefixes[i]) && last.is_some_and(|l| l < key)
        });
        if extends {
            last = Some(key);
            continue;
        }
        let from = current.map_or(0, |i| i + 1);
        match (from..bundle.requested_prefixes.len())
            .find(|i| key.starts_with(&bundle.requested_prefixes[*i]))
        {
            Some(i) => {
                current = Some(i);
                last = Some(key);
            }
            None => {
                return structure(format!(
                    "entry {key:?} does not belong to an ascending run of a later recorded prefix"
                ))
            }
        }
    }
    Ok(())
}

fn is_subsequence<'x>(
    sub: impl IntoIterator<Item = &'x [u8]>,
    full: impl IntoIterator<Item = &'x [u8]>,
) -> bool {
    let mut full = full.into_iter();
    sub.into_iter().all(|s| full.by_ref().any(|f| f == s))
}

// ---- lookups (P11) -----------------------------------------------------------------------------

/// P11 for one `get`: `Hit(v)` implies `S[K] = v`; `Absent` implies `K` is not in `S`. `S` is
/// the keyspace at `V` with the instance's own committed writes applied.
pub fn check_lookup(
    keyspace: &Snapshot,
    key: &[u8],
    lookup: &Lookup,
) -> Result<(), PreloadViolation> {
    let wrong = |detail: String| Err(PreloadViolation::WrongLookup { query: key.to_vec(), detail });
    match (lookup, keyspace.get(key)) {
        (Lookup::Hit(v), Some(r)) if *v != r.value => wrong(format!(
            "get returned {} bytes, the store holds {} bytes",
            v.len(),
            r.value.len()
        )),
        (Lookup::Hit(_), None) => wrong("get returned Hit for a key that is absent".into()),
        (Lookup::Absent, Some(_)) => wrong("get returned Absent for a key that is present".into()),
        _ => Ok(()),
    }
}

/// P11 for one `list_prefix`: `Complete(l)` implies `l = L(Q)` (keys and values, ascending);
/// `Cached(l)` implies `l` is an ascending subset of `L(Q)` with matching values.
pub fn check_listing(
    keyspace: &Snapshot,
    query: &[u8],
    listing: &Listing,
) -> Result<(), PreloadViolation> {
    let wrong =
        |detail: String| Err(PreloadViolation::WrongLookup { query: query.to_vec(), detail });
    let truth: Vec<(Vec<u8>, Vec<u8>)> = keyspace
        .iter()
        .filter(|(k, _)| k.starts_with(query))
        .map(|(k, r)| (k.clone(), r.value.clone()))
        .collect();
    match listing {
        Listing::Complete(l) if *l != truth => wrong(format!(
            "Complete listing has keys {:?}, the store has {:?}",
            l.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            truth.iter().map(|(k, _)| k).collect::<Vec<_>>()
        )),
        Listing::Cached(l) => {
            let ascending = l.windows(2).all(|w| w[0].0 < w[1].0);
            if !ascending {
                return wrong("Cached listing is not in ascending key order".into());
            }
            match l.iter().find(|entry| !truth.contains(entry)) {
                Some((k, _)) => wrong(format!(
                    "Cached listing holds {k:?}, which is not in L(Q) with that value"
                )),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// P11's coverage rule, before any write: `get(K)` is `NotCovered` only when none of §5.2's
/// rules applies (`K` has an entry, `K` is a requested get-key, or `K` starts with a recorded
/// prefix that is empty or non-partial in the runner's manifest).
pub fn check_lookup_coverage(
    bundle: Option<&PreloadedKv>,
    runner_manifest: Option<&Manifest>,
    key: &[u8],
    lookup: &Lookup,
) -> Result<(), PreloadViolation> {
    let Some(bundle) = bundle else { return Ok(()) };
    if *lookup != Lookup::NotCovered {
        return Ok(());
    }
    let runner_manifest = runner_manifest.map(reference_normalize);
    let complete = |p: &[u8]| {
        p.is_empty()
            || runner_manifest
                .as_ref()
                .is_some_and(|m| m.prefixes.iter().any(|i| i.prefix == p && !i.partial))
    };
    let rule = if bundle.entries.iter().any(|e| e.key.as_ref() == key) {
        Some("the key has an entry")
    } else if bundle.requested_get_keys.iter().any(|k| k.as_ref() == key) {
        Some("the key is a requested get-key")
    } else if bundle.requested_prefixes.iter().any(|p| key.starts_with(p) && complete(p)) {
        Some("the key is under a complete prefix")
    } else {
        None
    };
    match rule {
        Some(rule) => Err(PreloadViolation::WrongLookup {
            query: key.to_vec(),
            detail: format!("get returned NotCovered but {rule}"),
        }),
        None => Ok(()),
    }
}
