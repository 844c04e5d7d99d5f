//! The actor KV API of `spec/preload.md` §1: one request, one store transaction.
//!
//! This module owns the per-actor keyspace stored under `keys::actor_kv_prefix(A)`, the storage
//! usage record `keys::actor_kv_usage(A)`, the KV limits (§1.3), the typed KV errors (§1.4), the
//! fence check of KV requests (§1.5, `spec/protocol.md` §7.2) and the runner-side paging helpers
//! (§1.6). It reads, but never writes, the fencing records (`actor/A/ns`, `actor/A/placement`,
//! `runner/R/info`): those belong to the actor workflow and the runner registry. It does not know
//! about connections, queues, the preload or the simulator's history; it returns what a request
//! observed and did ([`KvOutcome`]) and leaves recording to the caller.
//!
//! Submodules:
//! - [`error`]: [`KvError`], its codes and the receiver-side classification;
//! - [`limits`]: the stateless checks of §1.3 ([`validate`]) and the put payload size;
//! - [`fence`]: the fencing reads and what they observed ([`FenceObservation`]);
//! - [`ops`]: [`execute`] (one attempt = one transaction), [`execute_with_retries`], and the
//!   engine's unfenced [`delete_keyspace`];
//! - [`paging`]: [`succ`], [`first_page`], [`next_page`] for complete live listings.
//!
//! Storage layout (other modules rely on it):
//! - user key `k` of actor `A` is stored at `keys::actor_kv_key(A, k)` (the raw key appended to
//!   the actor prefix, so store order, ranges and byte prefixes are exactly KV order) with value
//!   `records::KvEntryRecord { value, version, update_ts }.encode()`;
//! - `usage(S)` of §1.3 (`sum of len(k) + KEY_OVERHEAD + len(v)` over stored entries) is kept at
//!   `keys::actor_kv_usage(A)` as a `u64`, 8 bytes little-endian (so `store::decode_i64` also
//!   reads it); an absent record means 0. Every mutation updates it in the same transaction, after
//!   a serializable read, so two concurrent mutations of one keyspace conflict on it. Anything
//!   else that writes entries must keep it exact: a usage record smaller than the entries it
//!   counts is reported as `kv.internal`.
//!
//! Choices where the spec is silent (each one is what a user of the real system would expect):
//! - Every request, reads included, runs its fence reads serializably and commits its
//!   transaction, so a read is fenced at its commit like a write, and an injected commit fault
//!   makes a read attempt fail retryably too. Data reads of get and list are snapshot reads.
//! - A mutation that changes nothing (a put with zero keys, a delete of absent keys, an empty
//!   delete-range, a drop of an empty keyspace) writes nothing and consumes no commit version:
//!   its [`KvOutcome::commit_version`] is `None` and `mutated` is `false`.
//! - Quota: a put is accepted iff `usage` after applying it (overwritten keys replaced, duplicated
//!   keys counted once with their last value) is at most `max_storage_size`; this holds even for
//!   a put that shrinks usage, or has zero keys, while usage is over a lowered quota. `remaining`
//!   saturates at 0 when usage already exceeds the quota.
//! - `KeyTooLarge { index }`: for get, put and delete the index in `keys`; for a range (list
//!   range or delete-range) 0 is `start` and 1 is `end`; for a list prefix it is 0.
//! - `KvError::Internal` carries no data (as in §1.4); the wire message of an internal failure
//!   adds the cause as its detail (`kv.internal: <cause>`).
//! - Paging (§1.6) after a last key of the maximal raw length 2,046: `last_key ++ [0x00]` would be
//!   an over-long key, rejected with `key_too_large`. No stored key can extend such a key, so the
//!   next page starts at `succ(last_key)` instead, which selects the same keys; when that does
//!   not exist either (the key is `0xFF×2046`), the next page is a range that is empty by
//!   construction and the listing ends.

pub mod error;
pub mod fence;
pub mod limits;
pub mod ops;
pub mod paging;

#[cfg(test)]
mod tests;

pub use error::{KvError, KvErrorCode};
pub use fence::FenceObservation;
pub use limits::{put_payload_size, validate};
pub use ops::{
    decode_usage, delete_keyspace, encode_usage, execute, execute_with_retries, keyspace_range,
    usage_term, AttemptFailure, KvAttemptError, KvOutcome, KvRetriedOutcome,
};
pub use paging::{first_page, next_page, page_is_last, succ};

use crate::constants::{KV_METADATA_VERSION, MAX_STORAGE_SIZE};
use crate::keys::RunnerId;

/// Configuration of the KV engine; `Default` gives the spec's values. Scenarios lower the quota
/// and may change the version string at an engine restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvConfig {
    /// `KvMetadata.version` written by every put (`KV_METADATA_VERSION`).
    pub metadata_version: Vec<u8>,
    /// Per-actor storage quota in bytes of `usage` (`MAX_STORAGE_SIZE`).
    pub max_storage_size: u64,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            metadata_version: KV_METADATA_VERSION.as_bytes().to_vec(),
            max_storage_size: MAX_STORAGE_SIZE,
        }
    }
}

/// The connection a KV request arrived on: what the fence compares against.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KvContext {
    /// The connection's namespace (from its connect request).
    pub namespace: String,
    /// The connection's runner identity.
    pub runner: RunnerId,
    /// The connection's epoch `E` (commit version of its registration).
    pub epoch: u64,
}
