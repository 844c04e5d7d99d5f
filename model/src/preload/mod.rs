//! The startup KV preload of `spec/preload.md` §2–§5: manifests, the engine-side
//! `batch_preload` and its fetch from the store, and the runner-side `PreloadMap`; plus, for the
//! simulator's checkers, an independent reference and the invariant checks P0–P11 (`oracle`).
//!
//! Owns: everything under `preload/`. Reads the store only through read-only snapshot
//! transactions (`fetch`) and never writes it. Must not touch the KV API (`kv`), the command log
//! (which decides when to fetch, and where the `PreloadBundlePersisted` canary lives), the wire
//! codec, or the history: the simulator records a [`FetchOutcome`] and checks it with `oracle`.
//!
//! Storage layout shared with `kv`: the entry of user key `k` of actor `A` is stored at
//! `keys::actor_kv_key(A, k)` as `records::KvEntryRecord::encode()`; the manifest is the
//! `preload` field of the UTF-8 JSON object stored at `keys::actor_name_metadata(ns, name)`.
//!
//! Modules:
//! - [`manifest`]: the manifest's JSON form, parsing, normalization (§3.1–§3.3, §3.6).
//! - [`keyspace`]: `S@V` as a [`Snapshot`], the [`KeyspaceRead`] trait, entry size (§3.5).
//! - [`batch`]: `batch_preload` (§4.2) and the three preload canaries.
//! - [`fetch`]: one fetch per delivery (§4.1, §2): snapshot transaction, retries, outcome.
//! - [`map`]: the runner's `PreloadMap` (§5) with write-through.
//! - [`oracle`]: checker code: the independent reference and the invariant checks.
//!
//! Choices where the spec is silent are written in each module's top comment.

pub mod batch;
pub mod fetch;
pub mod keyspace;
pub mod manifest;
pub mod map;
pub mod oracle;

pub use batch::{batch_preload, batch_preload_from};
pub use fetch::{fetch, fetch_with, FetchError, FetchOutcome, FetchRequest};
pub use keyspace::{entry_size, wire_entry, KeyspaceRead, Snapshot, SnapshotReadError};
pub use manifest::{
    parse_manifest, parse_manifest_bytes, reference_manifest, Manifest, ManifestError, PrefixItem,
};
pub use map::{Listing, Lookup, MapWriteError, PreloadMap};

#[cfg(test)]
mod tests;
