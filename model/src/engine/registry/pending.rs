//! The pending queue of each `(namespace, pool)` and its drainer (`spec/protocol.md` §6.6).
//!
//! An entry is `keys::pending_prefix(ns, pool) ++ versionstamp ++ keys::pending_suffix(A)` with
//! the generation the allocation will use (JSON number) as its value, so the queue is FIFO by
//! commit order. Next to it the enqueueing transaction writes the entry's versionstamp into
//! [`pending_stamp_key`] (a versionstamped value), so the workflow can find and delete its own
//! entry when it leaves `Pending` (§5.3) without scanning the queue.
//!
//! The drainer repeats one transaction per batch of `timing.drain_batch` oldest entries (read
//! serializably): it allocates them in order, stops at the first that finds no runner, deletes
//! each allocated entry with its locator, and enqueues `Allocate{R, h}` into the actor's inbox.

use crate::config::Timing;
use crate::engine::signal::{self, EnqueueResult, Signal};
use crate::engine::EngineOutput;
use crate::env::Env;
use crate::fact::{Fact, TxnLabel};
use crate::keys::{self, ActorId, MalformedKey, Tuple, TupleReader};
use crate::records;
use crate::store::{KeyRange, ReadMode, Txn, VERSIONSTAMP_LEN};

use super::alloc::{choose_runner, write_allocation};
use super::RegistryError;

/// Drainer transactions one call runs at most before it returns (the periodic recheck and the
/// next trigger continue). A model parameter, not a spec constant.
pub const MAX_DRAIN_TXNS_PER_CALL: usize = 64;

/// `actor/A/pending`: the versionstamp of `A`'s pending entry, present iff the entry is.
pub fn pending_stamp_key(actor: &str) -> Vec<u8> {
    Tuple::new().s("actor").s(actor).s("pending").into_bytes()
}

/// Whether the queue of `(namespace, pool)` is empty (serializable read of its first key).
pub fn queue_is_empty(
    env: &mut Env<'_>,
    txn: &mut Txn,
    namespace: &str,
    pool: &str,
    mode: ReadMode,
) -> Result<bool, RegistryError> {
    let now = env.now_ms;
    let range = KeyRange::prefix(&keys::pending_prefix(namespace, pool));
    Ok(env.store.get_range(txn, &range, Some(1), false, mode, now)?.is_empty())
}

/// Append `actor`'s `generation` to the queue of `(namespace, pool)`, with its locator.
pub fn enqueue(txn: &mut Txn, namespace: &str, pool: &str, actor: &str, generation: u32) {
    let order = txn.set_versionstamped_key(
        keys::pending_prefix(namespace, pool),
        keys::pending_suffix(actor),
        records::encode(&generation),
    );
    let mut stamp = vec![0u8; VERSIONSTAMP_LEN];
    stamp[8..].copy_from_slice(&order.to_be_bytes());
    txn.set_versionstamped_value(pending_stamp_key(actor), stamp, 0);
}

/// Delete `actor`'s pending entry of `(namespace, pool)` if it still exists (its locator is read
/// serializably, so this conflicts with a concurrent drainer). Returns whether it existed.
pub fn remove(
    env: &mut Env<'_>,
    txn: &mut Txn,
    namespace: &str,
    pool: &str,
    actor: &str,
) -> Result<bool, RegistryError> {
    let now = env.now_ms;
    let locator = pending_stamp_key(actor);
    let Some(stamp) = env.store.get(txn, &locator, ReadMode::Serializable, now)? else {
        return Ok(false);
    };
    let mut key = keys::pending_prefix(namespace, pool);
    key.extend_from_slice(&stamp);
    key.extend_from_slice(&keys::pending_suffix(actor));
    txn.clear(key);
    txn.clear(locator);
    Ok(true)
}

/// One queue entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub key: Vec<u8>,
    pub actor: ActorId,
    pub generation: u32,
}

/// Read up to `limit` oldest entries of `(namespace, pool)`.
pub fn read_entries(
    env: &mut Env<'_>,
    txn: &mut Txn,
    namespace: &str,
    pool: &str,
    limit: usize,
    mode: ReadMode,
) -> Result<Vec<PendingEntry>, RegistryError> {
    let prefix = keys::pending_prefix(namespace, pool);
    let now = env.now_ms;
    let rows =
        env.store.get_range(txn, &KeyRange::prefix(&prefix), Some(limit), false, mode, now)?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let rest = key
            .strip_prefix(prefix.as_slice())
            .and_then(|r| r.get(VERSIONSTAMP_LEN..))
            .ok_or(MalformedKey("pending entry shorter than its versionstamp"))?;
        let actor = TupleReader::new(rest).s()?;
        let generation: u32 = records::decode("pending entry", &value)?;
        out.push(PendingEntry { key, actor, generation });
    }
    Ok(out)
}

/// What one drainer run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainOutcome {
    /// `WakeWorkflow` for every actor that got an `Allocate` signal.
    pub outputs: Vec<EngineOutput>,
    /// Entries allocated.
    pub allocated: usize,
    /// Whether entries remain in the queue (no capacity, or the call's bound was reached).
    pub remaining: bool,
}

/// Run the drainer of `(namespace, pool)` until the queue is empty or no capacity remains.
pub fn drain(
    env: &mut Env<'_>,
    timing: &Timing,
    namespace: &str,
    pool: &str,
) -> Result<DrainOutcome, RegistryError> {
    let mut outcome = DrainOutcome::default();
    let batch = timing.drain_batch.max(1);
    for _ in 0..MAX_DRAIN_TXNS_PER_CALL {
        let result = env.transact(TxnLabel::Drainer, |env, txn, facts| {
            drain_batch(env, txn, facts, namespace, pool, batch)
        });
        let step = match result {
            Ok((step, _)) => step,
            Err(crate::env::TxnFailure::Rejected(e)) => return Err(e),
            Err(crate::env::TxnFailure::Store { last, .. }) => {
                return Err(RegistryError::Txn { what: "drainer", detail: last.to_string() })
            }
        };
        outcome.allocated += step.woken.len();
        outcome
            .outputs
            .extend(step.woken.into_iter().map(|actor| EngineOutput::WakeWorkflow { actor }));
        outcome.remaining = step.remaining;
        if !step.continue_draining {
            return Ok(outcome);
        }
    }
    Ok(outcome)
}

struct BatchResult {
    woken: Vec<ActorId>,
    /// The batch was full and every entry was handled: run another transaction.
    continue_draining: bool,
    remaining: bool,
}

fn drain_batch(
    env: &mut Env<'_>,
    txn: &mut Txn,
    facts: &mut Vec<Fact>,
    namespace: &str,
    pool: &str,
    batch: usize,
) -> Result<BatchResult, RegistryError> {
    let entries = read_entries(env, txn, namespace, pool, batch, ReadMode::Serializable)?;
    let full = entries.len() >= batch;
    let mut woken = Vec::new();
    for entry in entries {
        let Some((runner, info)) = choose_runner(env, txn, namespace, pool)? else {
            return Ok(BatchResult { woken, continue_draining: false, remaining: true });
        };
        let allocate = Signal::Allocate { runner: runner.clone(), generation: entry.generation };
        txn.clear(entry.key.clone());
        txn.clear(pending_stamp_key(&entry.actor));
        facts.push(Fact::PendingDequeue {
            actor: entry.actor.clone(),
            generation: entry.generation,
        });
        match signal::enqueue(env, txn, &entry.actor, &allocate)? {
            EnqueueResult::Enqueued => {
                write_allocation(txn, facts, &entry.actor, &runner, info, entry.generation);
                woken.push(entry.actor);
            }
            EnqueueResult::WorkflowGone => {
                // Cannot happen while destroy removes the entry in its own step; dropping the
                // entry of a gone actor keeps the queue moving.
                facts.push(Fact::Probe { name: "pending-entry-of-gone-actor".into() });
            }
        }
    }
    Ok(BatchResult { woken, continue_draining: full, remaining: full })
}
