//! Test helpers: building keyspaces and stores, fetching, reading bundles. Sizes here are
//! computed by hand from §3.5, never with the code under test.

use crate::canary::Canaries;
use crate::constants::{KV_METADATA_VERSION, METADATA_TS_BYTES};
use crate::keys::{actor_kv_key, actor_kv_prefix, actor_name_metadata};
use crate::preload::{fetch, FetchOutcome, Snapshot};
use crate::protocol::PreloadedKv;
use crate::records::KvEntryRecord;
use crate::store::{KeyRange, Store, Version};

pub const ACTOR: &str = "actor-1";
pub const NAMESPACE: &str = "ns";
pub const ACTOR_NAME: &str = "counter";

/// An entry with the default metadata version.
pub fn rec(value: &[u8]) -> KvEntryRecord {
    KvEntryRecord {
        value: value.to_vec(),
        version: KV_METADATA_VERSION.as_bytes().to_vec(),
        update_ts: 1_000,
    }
}

/// §3.5 by hand, for the default version.
pub fn size_default(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len() + KV_METADATA_VERSION.len() + METADATA_TS_BYTES) as u64
}

/// §3.5 by hand, for a record.
pub fn size_of(key: &[u8], record: &KvEntryRecord) -> u64 {
    (key.len() + record.value.len() + record.version.len() + METADATA_TS_BYTES) as u64
}

/// A keyspace of default-metadata entries.
pub fn snapshot(entries: &[(&[u8], &[u8])]) -> Snapshot {
    Snapshot::from_entries(entries.iter().map(|(k, v)| (k.to_vec(), rec(v))))
}

/// One write to a store, as the KV module will make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreWrite {
    Put(Vec<(Vec<u8>, KvEntryRecord)>),
    Delete(Vec<Vec<u8>>),
    DeleteRange(Vec<u8>, Vec<u8>),
    Drop,
    /// Replace the actor name's metadata (`None`: remove it).
    Metadata(Option<String>),
}

/// Commit `writes` in one transaction; returns the commit version.
pub fn commit(store: &mut Store, writes: &[StoreWrite], now_ms: u64) -> Version {
    let mut txn = store.begin(now_ms);
    for w in writes {
        match w {
            StoreWrite::Put(entries) => {
                for (k, r) in entries {
                    txn.set(actor_kv_key(ACTOR, k), r.encode());
                }
            }
            StoreWrite::Delete(keys) => {
                for k in keys {
                    txn.clear(actor_kv_key(ACTOR, k));
                }
            }
            StoreWrite::DeleteRange(start, end) => {
                if start < end {
                    txn.clear_range(KeyRange::new(
                        actor_kv_key(ACTOR, start),
                        actor_kv_key(ACTOR, end),
                    ));
                }
            }
            StoreWrite::Drop => txn.clear_range(KeyRange::prefix(&actor_kv_prefix(ACTOR))),
            StoreWrite::Metadata(Some(json)) => {
                txn.set(actor_name_metadata(NAMESPACE, ACTOR_NAME), json.as_bytes().to_vec())
            }
            StoreWrite::Metadata(None) => txn.clear(actor_name_metadata(NAMESPACE, ACTOR_NAME)),
        }
    }
    match store.commit(txn, now_ms, None) {
        Ok(c) => c.version,
        Err(e) => panic!("test commit failed: {e}"),
    }
}

/// Apply a write to a model keyspace (the test's own mirror of the store).
pub fn apply_to_snapshot(s: &mut Snapshot, w: &StoreWrite) {
    match w {
        StoreWrite::Put(entries) => {
            for (k, r) in entries {
                s.insert(k.clone(), r.clone());
            }
        }
        StoreWrite::Delete(keys) => {
            for k in keys {
                s.remove(k);
            }
        }
        StoreWrite::DeleteRange(start, end) => {
            let doomed: Vec<Vec<u8>> = s
                .iter()
                .filter(|(k, _)| start.as_slice() <= k.as_slice() && k.as_slice() < end.as_slice())
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                s.remove(&k);
            }
        }
        StoreWrite::Drop => s.clear(),
        StoreWrite::Metadata(_) => {}
    }
}

/// A store holding `snapshot` for [`ACTOR`] and, if given, the actor name's metadata text.
pub fn store_with(snapshot: &Snapshot, metadata: Option<&str>) -> Store {
    let mut store = Store::default();
    let entries: Vec<(Vec<u8>, KvEntryRecord)> =
        snapshot.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
    let mut writes = vec![StoreWrite::Put(entries)];
    if let Some(m) = metadata {
        writes.push(StoreWrite::Metadata(Some(m.to_string())));
    }
    commit(&mut store, &writes, 0);
    store
}

/// A fetch without faults and canaries.
pub fn fetch_clean(store: &mut Store, budget: u64) -> FetchOutcome {
    fetch(store, ACTOR, NAMESPACE, ACTOR_NAME, budget, Canaries::NONE, 0, &mut || false)
}

/// The entry keys of a bundle, in bundle order.
pub fn entry_keys(bundle: &PreloadedKv) -> Vec<Vec<u8>> {
    bundle.entries.iter().map(|e| e.key.to_vec()).collect()
}

/// The requested get-keys of a bundle.
pub fn get_keys(bundle: &PreloadedKv) -> Vec<Vec<u8>> {
    bundle.requested_get_keys.iter().map(|k| k.to_vec()).collect()
}

/// The requested prefixes of a bundle.
pub fn prefixes(bundle: &PreloadedKv) -> Vec<Vec<u8>> {
    bundle.requested_prefixes.iter().map(|k| k.to_vec()).collect()
}

/// Owned byte strings from literals.
pub fn bytes_list(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|i| i.to_vec()).collect()
}
