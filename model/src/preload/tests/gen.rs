//! Generators: keyspaces biased to shared prefixes and `0x00`/`0xFF` bytes, with empty, small,
//! medium and huge values and metadata versions of different lengths; manifests with
//! duplicates, overlaps, the empty prefix, partial flags and `maxBytes` of 0 or near a boundary;
//! budgets of 0, tiny, at exact boundaries (and one off), and large.
//!
//! Boundaries are resolved against the generated keyspace with sizes computed by hand
//! (`support::size_of`), never with the code under test.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::constants::{MAX_RAW_KEY_SIZE, MAX_VALUE_SIZE, PRELOAD_MAX_TOTAL_BYTES};
use crate::preload::{Manifest, PrefixItem, Snapshot};
use crate::records::KvEntryRecord;

use super::support::size_of;

fn key_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(0x00u8),
        3 => Just(0x02u8),
        3 => Just(0x06u8),
        3 => Just(0xFFu8),
        1 => any::<u8>(),
    ]
}

/// A key: mostly 0–3 bytes from a small alphabet (so keys share prefixes), sometimes longer,
/// sometimes the largest legal key `0xFF×2046`.
pub fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => vec(key_byte(), 0..=3),
        2 => vec(key_byte(), 4..=8),
        1 => Just(vec![0xFFu8; MAX_RAW_KEY_SIZE]),
    ]
}

/// A value: small, empty, medium, or the largest legal value.
pub fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..=6),
        3 => Just(Vec::new()),
        2 => (20usize..=120).prop_map(|n| vec![0x5Au8; n]),
        1 => Just(vec![0xEEu8; MAX_VALUE_SIZE]),
    ]
}

/// A metadata version string: the default, empty, long or short.
pub fn version() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(b"2.3.7".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"10.20.30-rc.1".to_vec()),
        1 => Just(b"2".to_vec()),
    ]
}

/// A stored entry.
pub fn record() -> impl Strategy<Value = KvEntryRecord> {
    (value(), version(), any::<i64>()).prop_map(|(value, version, update_ts)| KvEntryRecord {
        value,
        version,
        update_ts,
    })
}

/// A keyspace of 0–11 entries.
pub fn snapshot() -> impl Strategy<Value = Snapshot> {
    btree_map(key(), record(), 0..12).prop_map(Snapshot::from_entries)
}

/// A key chosen against the keyspace: one of its keys, or any key.
#[derive(Clone, Debug)]
pub enum KeyChoice {
    Stored(Index),
    Raw(Vec<u8>),
}

fn key_choice() -> impl Strategy<Value = KeyChoice> {
    prop_oneof![
        3 => any::<Index>().prop_map(KeyChoice::Stored),
        2 => key().prop_map(KeyChoice::Raw),
    ]
}

/// A prefix chosen against the keyspace: the first bytes of one of its keys, or any short one.
#[derive(Clone, Debug)]
pub enum PrefixChoice {
    OfStored(Index, usize),
    Raw(Vec<u8>),
}

fn prefix_choice() -> impl Strategy<Value = PrefixChoice> {
    prop_oneof![
        3 => (any::<Index>(), 0usize..=3).prop_map(|(i, n)| PrefixChoice::OfStored(i, n)),
        2 => vec(key_byte(), 0..=2).prop_map(PrefixChoice::Raw),
    ]
}

/// An amount of bytes (a `maxBytes` or a budget), chosen against a sequence of entry sizes.
#[derive(Clone, Debug)]
pub enum Amount {
    Zero,
    Tiny(u64),
    /// The sum of the first `count` sizes of the sequence, plus `delta` (in -1..=1).
    Boundary {
        count: usize,
        delta: i8,
    },
    /// The spec's default `T`.
    Default,
    Max,
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        2 => Just(Amount::Zero),
        2 => (1u64..=40).prop_map(Amount::Tiny),
        6 => (1usize..=6, -1i8..=1).prop_map(|(count, delta)| Amount::Boundary { count, delta }),
        1 => Just(Amount::Default),
        1 => Just(Amount::Max),
    ]
}

fn resolve_amount(amount: &Amount, sizes: &[u64]) -> u64 {
    match amount {
        Amount::Zero => 0,
        Amount::Tiny(n) => *n,
        Amount::Boundary { count, delta } => {
            let sum: u64 = sizes.iter().take(*count).sum();
            sum.saturating_add_signed(*delta as i64)
        }
        Amount::Default => PRELOAD_MAX_TOTAL_BYTES,
        Amount::Max => u64::MAX,
    }
}

fn resolve_key(choice: &KeyChoice, s: &Snapshot) -> Vec<u8> {
    match choice {
        KeyChoice::Stored(i) if !s.is_empty() => {
            s.iter().nth(i.index(s.len())).map(|(k, _)| k.clone()).unwrap_or_default()
        }
        KeyChoice::Stored(_) => Vec::new(),
        KeyChoice::Raw(k) => k.clone(),
    }
}

fn resolve_prefix(choice: &PrefixChoice, s: &Snapshot) -> Vec<u8> {
    match choice {
        PrefixChoice::OfStored(i, n) if !s.is_empty() => s
            .iter()
            .nth(i.index(s.len()))
            .map(|(k, _)| k[..(*n).min(k.len())].to_vec())
            .unwrap_or_default(),
        PrefixChoice::OfStored(..) => Vec::new(),
        PrefixChoice::Raw(p) => p.clone(),
    }
}

/// How the manifest is stored.
#[derive(Clone, Debug)]
pub enum ManifestForm {
    /// The metadata has a valid `preload` field.
    Valid,
    /// The metadata has no `preload` field.
    Absent,
    /// The `preload` field has an invalid shape (the index picks one of [`INVALID_PRELOADS`]).
    Invalid(Index),
}

/// Invalid `preload` values (§3.2 and §9 "invalid or absent manifest").
pub const INVALID_PRELOADS: &[&str] = &[
    r#"{"prefixes":[{"prefix":[2],"maxBytes":-1}]}"#,
    r#"{"prefixes":[{"prefix":[2],"maxBytes":1.5}]}"#,
    r#"{"keys":[[256]]}"#,
    r#"{"prefixes":[{"maxBytes":10}]}"#,
    r#"{"prefixes":[{"prefix":[2]}]}"#,
    r#"{"keys":[1]}"#,
    r#"{"keys":"[1]"}"#,
    r#"{"prefixes":[{"prefix":[2],"maxBytes":10,"partial":"yes"}]}"#,
    r#"[1,2]"#,
    r#"null"#,
    r#"{"keys":[[-1]]}"#,
    r#"{"prefixes":[{"prefix":[2],"maxBytes":18446744073709551616}]}"#,
];

fn manifest_form() -> impl Strategy<Value = ManifestForm> {
    prop_oneof![
        16 => Just(ManifestForm::Valid),
        1 => Just(ManifestForm::Absent),
        2 => any::<Index>().prop_map(ManifestForm::Invalid),
    ]
}

/// One generated preload input.
#[derive(Clone, Debug)]
pub struct Case {
    /// `S@V`.
    pub snapshot: Snapshot,
    /// The declared manifest (not normalized).
    pub manifest: Manifest,
    /// How it is stored; the checker's manifest is `Some` only for [`ManifestForm::Valid`].
    pub form: ManifestForm,
    /// `T`.
    pub budget: u64,
}

impl Case {
    /// The manifest at `V` as the checker sees it: `None` when absent or invalid.
    pub fn manifest_at_v(&self) -> Option<&Manifest> {
        match self.form {
            ManifestForm::Valid => Some(&self.manifest),
            _ => None,
        }
    }

    /// The stored `ActorName.metadata` text.
    pub fn metadata_json(&self) -> String {
        match &self.form {
            ManifestForm::Valid => self.manifest.to_metadata_json(),
            ManifestForm::Absent => r#"{"icon":"x"}"#.to_string(),
            ManifestForm::Invalid(i) => {
                format!(r#"{{"preload":{}}}"#, INVALID_PRELOADS[i.index(INVALID_PRELOADS.len())])
            }
        }
    }
}

/// Sizes in the order the budget is spent: the present get-keys in manifest order (first
/// occurrences), then every other entry ascending.
fn spending_order(s: &Snapshot, keys: &[Vec<u8>]) -> Vec<u64> {
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut sizes = Vec::new();
    for k in keys {
        if seen.contains(&k.as_slice()) {
            continue;
        }
        seen.push(k);
        if let Some(r) = s.get(k) {
            sizes.push(size_of(k, r));
        }
    }
    for (k, r) in s.iter() {
        if !seen.contains(&k.as_slice()) {
            sizes.push(size_of(k, r));
        }
    }
    sizes
}

/// A full case: keyspace, manifest (valid most of the time), budget.
pub fn case() -> impl Strategy<Value = Case> {
    (
        snapshot(),
        vec(key_choice(), 0..=6),
        vec((prefix_choice(), amount(), any::<bool>()), 0..=5),
        amount(),
        manifest_form(),
    )
        .prop_map(|(snapshot, key_choices, prefix_choices, budget, form)| {
            let keys: Vec<Vec<u8>> =
                key_choices.iter().map(|c| resolve_key(c, &snapshot)).collect();
            let prefixes = prefix_choices
                .iter()
                .map(|(p, amount, partial)| {
                    let prefix = resolve_prefix(p, &snapshot);
                    let sizes: Vec<u64> = snapshot
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, r)| size_of(k, r))
                        .collect();
                    PrefixItem {
                        prefix,
                        max_bytes: resolve_amount(amount, &sizes),
                        partial: *partial,
                    }
                })
                .collect();
            let budget = resolve_amount(&budget, &spending_order(&snapshot, &keys));
            Case { snapshot, manifest: Manifest { keys, prefixes }, form, budget }
        })
}

/// A write the instance makes during startup (P11 after writes).
#[derive(Clone, Debug)]
pub enum WriteOp {
    Put(Vec<(KeyChoice, Vec<u8>)>),
    Delete(Vec<KeyChoice>),
    DeleteRange(KeyChoice, KeyChoice),
    Drop,
}

/// A short sequence of startup writes.
pub fn write_ops() -> impl Strategy<Value = Vec<WriteOp>> {
    let op = prop_oneof![
        4 => vec((key_choice(), vec(any::<u8>(), 0..=4)), 1..=3).prop_map(WriteOp::Put),
        3 => vec(key_choice(), 1..=3).prop_map(WriteOp::Delete),
        2 => (key_choice(), key_choice()).prop_map(|(a, b)| WriteOp::DeleteRange(a, b)),
        1 => Just(WriteOp::Drop),
    ];
    vec(op, 0..=5)
}

/// Resolve a key choice against a keyspace (for write ops).
pub fn pick_key(choice: &KeyChoice, s: &Snapshot) -> Vec<u8> {
    resolve_key(choice, s)
}

/// How a consumer's manifest differs from the engine's while respecting §3.7: an item may be
/// dropped or declared partial instead of non-partial; extra items may be added.
#[derive(Clone, Debug)]
pub struct ConsumerVariant {
    pub drop_item: Vec<bool>,
    pub make_partial: Vec<bool>,
    pub extra: Vec<(Vec<u8>, bool)>,
}

pub fn consumer_variant() -> impl Strategy<Value = ConsumerVariant> {
    prop_oneof![
        3 => Just(ConsumerVariant { drop_item: vec![], make_partial: vec![], extra: vec![] }),
        2 => (
            vec(prop::bool::weighted(0.2), 0..=5),
            vec(prop::bool::weighted(0.3), 0..=5),
            vec((vec(key_byte(), 0..=2), any::<bool>()), 0..=2),
        )
            .prop_map(|(drop_item, make_partial, extra)| ConsumerVariant { drop_item, make_partial, extra }),
    ]
}

impl ConsumerVariant {
    /// The consumer's manifest derived from the engine's normalized manifest.
    pub fn apply(&self, engine: &Manifest) -> Manifest {
        let mut prefixes: Vec<PrefixItem> = engine
            .prefixes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.drop_item.get(*i).copied().unwrap_or(false))
            .map(|(i, item)| PrefixItem {
                partial: item.partial || self.make_partial.get(i).copied().unwrap_or(false),
                ..item.clone()
            })
            .collect();
        for (p, partial) in &self.extra {
            if !engine.prefixes.iter().any(|i| &i.prefix == p) {
                prefixes.push(PrefixItem { prefix: p.clone(), max_bytes: 1, partial: *partial });
            }
        }
        Manifest { keys: engine.keys.clone(), prefixes }
    }
}
