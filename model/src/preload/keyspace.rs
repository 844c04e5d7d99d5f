//! The view of one actor's keyspace at one version (`S@V`, `spec/preload.md` §0 and §2) that the
//! preload reads, and the entry size of §3.5.
//!
//! Owns: [`Snapshot`] (an in-memory, ordered `S@V`), the [`KeyspaceRead`] trait through which
//! `batch_preload` reads either a [`Snapshot`] or the live store (see `fetch`), [`entry_size`]
//! and the conversion to the wire entry. It does not know manifests, budgets or canaries.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::ControlFlow;

use crate::constants::METADATA_TS_BYTES;
use crate::keys::actor_kv_prefix;
use crate::protocol::{KvMetadata, PreloadedKvEntry};
use crate::records::{KvEntryRecord, RecordError};
use crate::store::{KeyRange, ReadMode, Store, StoreError, Version};

/// `size(e) = len(key) + len(value) + len(metadata.version) + 8` (§3.5), from the entry's own
/// stored version string, so entries written under different engine versions cost differently.
pub fn entry_size(key: &[u8], record: &KvEntryRecord) -> u64 {
    (key.len() + record.value.len() + record.version.len() + METADATA_TS_BYTES) as u64
}

/// The wire form of one stored entry.
pub fn wire_entry(key: &[u8], record: &KvEntryRecord) -> PreloadedKvEntry {
    PreloadedKvEntry {
        key: key.to_vec().into(),
        value: record.value.clone().into(),
        metadata: KvMetadata {
            version: record.version.clone().into(),
            update_ts: record.update_ts,
        },
    }
}

/// Read access to one actor's keyspace at one version, as the preload needs it: point reads and
/// ascending prefix walks that can stop early. Implemented by `&Snapshot` (never fails) and by
/// the fetch's store reader (fails with injected or store errors).
pub trait KeyspaceRead {
    /// Why a read failed.
    type Error;

    /// The entry stored under user key `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<KvEntryRecord>, Self::Error>;

    /// Visit, in ascending key order, the entries whose keys start with `prefix`, until `visit`
    /// returns `ControlFlow::Break`. Entries after the break are not read.
    fn walk_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &KvEntryRecord) -> ControlFlow<()>,
    ) -> Result<(), Self::Error>;
}

/// One actor's keyspace at one version, in memory, ordered by key (§0 order = `Ord` of `[u8]`).
/// Its iteration order never depends on the order entries were inserted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<Vec<u8>, KvEntryRecord>,
}

/// Reading a [`Snapshot`] out of the store failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotReadError {
    /// The store refused the read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored entry does not decode.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl Snapshot {
    /// The empty keyspace.
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// A keyspace holding `entries`; a repeated key keeps its last entry.
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, KvEntryRecord)>) -> Self {
        Snapshot { entries: entries.into_iter().collect() }
    }

    /// Read actor `actor`'s whole keyspace at the store's latest version, in one read-only
    /// snapshot transaction. Returns the version read and the keyspace.
    pub fn read_latest(
        store: &mut Store,
        actor: &str,
        now_ms: u64,
    ) -> Result<(Version, Snapshot), SnapshotReadError> {
        let mut txn = store.begin(now_ms);
        let version = txn.read_version();
        let prefix = actor_kv_prefix(actor);
        let rows = store.get_range(
            &mut txn,
            &KeyRange::prefix(&prefix),
            None,
            false,
            ReadMode::Snapshot,
            now_ms,
        );
        store.abort(txn);
        let mut entries = BTreeMap::new();
        for (key, value) in rows? {
            let user_key = key.get(prefix.len()..).unwrap_or_default().to_vec();
            entries.insert(user_key, KvEntryRecord::decode(&value)?);
        }
        Ok((version, Snapshot { entries }))
    }

    /// Set `key` to `record`.
    pub fn insert(&mut self, key: Vec<u8>, record: KvEntryRecord) {
        self.entries.insert(key, record);
    }

    /// Remove `key`.
    pub fn remove(&mut self, key: &[u8]) -> Option<KvEntryRecord> {
        self.entries.remove(key)
    }

    /// Remove every key `K` with `start <= K < end` (nothing when `start >= end`).
    pub fn remove_range(&mut self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    /// Remove every key.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entry of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&KvEntryRecord> {
        self.entries.get(key)
    }

    /// Whether the keyspace has no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &KvEntryRecord)> {
        self.entries.iter()
    }

    /// `L(P)`: the entries whose keys start with `prefix`, ascending.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a KvEntryRecord)> + 'a {
        self.entries
            .range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }
}

impl KeyspaceRead for &Snapshot {
    type Error = Infallible;

    fn get(&mut self, key: &[u8]) -> Result<Option<KvEntryRecord>, Infallible> {
        Ok(self.entries.get(key).cloned())
    }

    fn walk_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &KvEntryRecord) -> ControlFlow<()>,
    ) -> Result<(), Infallible> {
        for (k, e) in self.with_prefix(prefix) {
            if visit(k, e).is_break() {
                break;
            }
        }
        Ok(())
    }
}
