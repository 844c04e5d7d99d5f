//! The runner registry, core side (`spec/protocol.md` §6.1, §6.3, §6.5–6.7): the choice of a
//! runner for an allocation, slot accounting, the per-`(namespace, pool)` pending queue and its
//! drainer, lost detection with the expiry transaction, and retirement.
//!
//! Owns, in the store: `actor/A/placement`, `runner/R/alloc/A`, the `used_slots` field of
//! `runner/R/info` (read-modify-write of the whole record, every other field kept), the pending
//! entries `pending/ns/pool/<versionstamp>/A` and the workflow's pending-entry locator
//! ([`pending::pending_stamp_key`]), the `expired` / `connected` / `ready` flags written by the
//! expiry transaction, and the deletion of a retired runner's record, metadata chunks and
//! registry entry. In memory: the lost-detection observation windows ([`RegistryMonitor`]).
//!
//! Must not touch: what the connection writes (registration, metadata, liveness, ready,
//! teardown, drain: `engine::conn` / `engine::edge_txn`), commands (`engine::cmdlog`, written by
//! the workflow), or workflow state (`engine::actor`). It talks to workflows only through
//! signals (`engine::signal::enqueue`): `Allocate` from the drainer, `RunnerLost` from expiry.
//!
//! Submodules:
//! - [`alloc`]: choosing a runner (§6.5) and writing / releasing an allocation;
//! - [`pending`]: the pending queue and its drainer (§6.6);
//! - [`monitor`]: lost detection, expiry (§6.3) and retirement (§6.7).
//!
//! Choices where the spec is silent:
//! - The drainer and the workflow's own `Allocate` share one choice function. Candidates come
//!   from a snapshot read of the pool's eligibility index and snapshot reads of their records;
//!   only the chosen runner's record is read serializably (re-checking eligibility, the pool and
//!   `used < total`). If the re-check fails, the next-best candidate is tried. The seeded RNG is
//!   drawn only when more than one candidate ties on (version, free slots).
//! - The pending entry's versionstamp is not known inside the transaction that writes it, so the
//!   same transaction writes it into `actor/A/pending` (a versionstamped value): leaving `Pending`
//!   finds and deletes the entry without scanning the queue, and the drainer deletes the locator
//!   together with the entry. "The pending entry still exists" (§5.3) is "the locator exists".
//! - Retirement does not publish `ToEnvoyConnClose` (the spec makes it optional; a retired
//!   runner is not connected).
//! - Lost detection watches every runner in the registry that is not expired, connected or not:
//!   a runner that disconnected cleanly also stops refreshing, and expiry is what hands its
//!   allocations back to their workflows.

pub mod alloc;
pub mod monitor;
pub mod pending;

#[cfg(test)]
mod tests;

pub use alloc::{
    allocate_in, choose_runner, read_info, read_placement, release_in, write_allocation, write_info,
};
pub use monitor::{expire, retire, RegistryMonitor};
pub use pending::{drain, pending_stamp_key, queue_is_empty, DrainOutcome};

use crate::engine::signal::SignalError;
use crate::keys::MalformedKey;
use crate::records::RecordError;
use crate::store::StoreError;

/// A registry operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    MalformedKey(#[from] MalformedKey),
    /// A transaction failed in the store on every attempt.
    #[error("registry {what} transaction failed: {detail}")]
    Txn { what: &'static str, detail: String },
}
