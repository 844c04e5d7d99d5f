//! The runner-side `PreloadMap` (`spec/preload.md` §5): answers an actor's startup lookups from
//! the bundle of its start command, and keeps the instance's own successful writes on top
//! (write-through, §5.5).
//!
//! Owns [`PreloadMap`], [`Lookup`], [`Listing`]. It does not send live reads (the caller does on
//! `NotCovered`), it does not decide which writes succeeded (the caller applies only successful
//! ones), and it never derives absence from a cached prefix or from a missing bundle.
//!
//! Representation: the requested get-keys and the complete / cached prefixes are sorted vectors
//! searched by binary search, as §5.1–§5.3 describe. The entries live in an ordered map (a search
//! tree: the same logarithmic lookups and contiguous prefix scans as a sorted vector, and cheap
//! write-through inserts and removals).
//!
//! Choices where the spec is silent:
//! - A bundle from the wire with a repeated entry key (the engine never sends one) keeps the first
//!   entry, like normalization's first-wins rule.
//! - Without a bundle (`None`) there is no map (§5.1): every lookup is `NotCovered` and writes are
//!   not tracked either; live reads already reflect them.
//! - `is_empty_keyspace` is §5.4 applied to the current state: the empty prefix was recorded and
//!   no entry is known now (bundle entries minus deletes plus puts).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::protocol::PreloadedKv;

use super::manifest::Manifest;

/// The answer to a point lookup (§5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key is present with this value.
    Hit(Vec<u8>),
    /// The key is certainly absent.
    Absent,
    /// The map cannot tell; the caller must do a live `KvGetRequest`.
    NotCovered,
}

/// The answer to a prefix listing (§5.3). Lists are `(key, value)` in ascending key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Exactly the entries whose keys start with the queried prefix.
    Complete(Vec<(Vec<u8>, Vec<u8>)>),
    /// Some of them (a cache): correct values, but a missing key proves nothing.
    Cached(Vec<(Vec<u8>, Vec<u8>)>),
    /// The map cannot tell; the caller must list live (paging, §1.6).
    NotCovered,
}

/// A successful write could not be applied as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapWriteError {
    /// A put with a different number of keys and values (such a put is rejected by the engine,
    /// so it cannot have succeeded); nothing was applied.
    #[error("put has {keys} keys but {values} values; nothing applied")]
    KeysValuesMismatch { keys: usize, values: usize },
}

/// One start's lookup map. See the module comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreloadMap {
    /// Whether a bundle was delivered (`false`: no map, everything `NotCovered`).
    present: bool,
    /// Known present keys: the bundle's entries with the instance's writes applied.
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Sorted, deduplicated `requested_get_keys`.
    requested_get_keys: Vec<Vec<u8>>,
    /// `C`: sorted recorded prefixes that are empty or non-partial in the runner's manifest.
    complete_prefixes: Vec<Vec<u8>>,
    /// Length of the longest complete prefix (bounds the coverage search).
    longest_complete: usize,
    /// Sorted recorded prefixes that are not complete (cached).
    cached_prefixes: Vec<Vec<u8>>,
    /// Keys the instance deleted (and did not put again).
    deleted_keys: BTreeSet<Vec<u8>>,
    /// Ranges `[start, end)` the instance deleted.
    deleted_ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the instance dropped its keyspace.
    dropped: bool,
}

impl PreloadMap {
    /// §5.1: build from the start command's bundle and the runner's own manifest for the actor
    /// name (normalized here; `None` when the runner declares none, so every recorded non-empty
    /// prefix is only a cache).
    pub fn new(bundle: Option<&PreloadedKv>, runner_manifest: Option<&Manifest>) -> Self {
        let Some(bundle) = bundle else {
            return PreloadMap::default();
        };
        let manifest = runner_manifest.map(Manifest::normalize);
        let mut entries = BTreeMap::new();
        for e in &bundle.entries {
            entries.entry(e.key.to_vec()).or_insert_with(|| e.value.to_vec());
        }
        let mut requested_get_keys: Vec<Vec<u8>> =
            bundle.requested_get_keys.iter().map(|k| k.to_vec()).collect();
        requested_get_keys.sort();
        requested_get_keys.dedup();
        let mut recorded: Vec<Vec<u8>> =
            bundle.requested_prefixes.iter().map(|p| p.to_vec()).collect();
        recorded.sort();
        recorded.dedup();
        let declared_complete = |p: &[u8]| {
            p.is_empty()
                || manifest
                    .as_ref()
                    .and_then(|m| m.prefix_item(p))
                    .is_some_and(|item| !item.partial)
        };
        let (complete_prefixes, cached_prefixes): (Vec<_>, Vec<_>) =
            recorded.into_iter().partition(|p| declared_complete(p));
        let longest_complete = complete_prefixes.iter().map(Vec::len).max().unwrap_or(0);
        PreloadMap {
            present: true,
            entries,
            requested_get_keys,
            complete_prefixes,
            longest_complete,
            cached_prefixes,
            ..PreloadMap::default()
        }
    }

    /// Whether a bundle was delivered.
    pub fn has_bundle(&self) -> bool {
        self.present
    }

    /// §5.4 on the current state: the empty prefix is recorded and no entry is known.
    pub fn is_empty_keyspace(&self) -> bool {
        self.present
            && self.complete_prefixes.first().is_some_and(|p| p.is_empty())
            && self.entries.is_empty()
    }

    /// §5.2, with write-through facts first.
    pub fn get(&self, key: &[u8]) -> Lookup {
        if !self.present {
            return Lookup::NotCovered;
        }
        if let Some(value) = self.entries.get(key) {
            return Lookup::Hit(value.clone());
        }
        if self.written_absent(key) {
            return Lookup::Absent;
        }
        if self.requested_get_keys.binary_search_by(|k| k.as_slice().cmp(key)).is_ok() {
            return Lookup::Absent;
        }
        if self.covered_by_complete(key) {
            return Lookup::Absent;
        }
        Lookup::NotCovered
    }

    /// §5.3: `Complete` under a complete prefix, `Cached` for a recorded cached prefix, else
    /// `NotCovered`. Writes show in both kinds of listing; they never make a listing covered.
    pub fn list_prefix(&self, query: &[u8]) -> Listing {
        if !self.present {
            return Listing::NotCovered;
        }
        if self.covered_by_complete(query) {
            return Listing::Complete(self.entries_with_prefix(query));
        }
        if self.cached_prefixes.binary_search_by(|p| p.as_slice().cmp(query)).is_ok() {
            return Listing::Cached(self.entries_with_prefix(query));
        }
        Listing::NotCovered
    }

    /// A successful put (`keys[i] := values[i]`, the last occurrence of a key winning).
    pub fn apply_put<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        keys: &[K],
        values: &[V],
    ) -> Result<(), MapWriteError> {
        if keys.len() != values.len() {
            return Err(MapWriteError::KeysValuesMismatch {
                keys: keys.len(),
                values: values.len(),
            });
        }
        if !self.present {
            return Ok(());
        }
        for (k, v) in keys.iter().zip(values) {
            self.deleted_keys.remove(k.as_ref());
            self.entries.insert(k.as_ref().to_vec(), v.as_ref().to_vec());
        }
        Ok(())
    }

    /// A successful delete of `keys`.
    pub fn apply_delete<K: AsRef<[u8]>>(&mut self, keys: &[K]) {
        if !self.present {
            return;
        }
        for k in keys {
            self.entries.remove(k.as_ref());
            self.deleted_keys.insert(k.as_ref().to_vec());
        }
    }

    /// A successful delete-range of `[start, end)` (nothing when `start >= end`).
    pub fn apply_delete_range(&mut self, start: &[u8], end: &[u8]) {
        if !self.present || start >= end {
            return;
        }
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
        self.deleted_ranges.push((start.to_vec(), end.to_vec()));
    }

    /// A successful drop of the whole keyspace.
    pub fn apply_drop(&mut self) {
        if !self.present {
            return;
        }
        self.entries.clear();
        self.deleted_keys.clear();
        self.deleted_ranges.clear();
        self.dropped = true;
    }

    /// Whether the instance's own writes made `key` absent (and no later put restored it; a put
    /// would have put it in `entries`, which is checked first).
    fn written_absent(&self, key: &[u8]) -> bool {
        self.dropped
            || self.deleted_keys.contains(key)
            || self.deleted_ranges.iter().any(|(s, e)| s.as_slice() <= key && key < e.as_slice())
    }

    /// Whether some complete prefix `P` satisfies `starts_with(key, P)`: a binary search for each
    /// prefix of `key` no longer than the longest complete prefix.
    fn covered_by_complete(&self, key: &[u8]) -> bool {
        (0..=key.len().min(self.longest_complete)).any(|n| {
            self.complete_prefixes.binary_search_by(|p| p.as_slice().cmp(&key[..n])).is_ok()
        })
    }

    /// The entries whose keys start with `prefix`, ascending: from the lower bound of `prefix`,
    /// forward while the prefix holds (such keys are contiguous).
    fn entries_with_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
