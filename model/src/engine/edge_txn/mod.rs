//! The connection's registry transactions (`spec/protocol.md` §2.3, §3.6, §6.2–§6.4, §6.7): every
//! store transaction an edge connection runs on the runner registry, each one atomic through
//! [`Env::transact`] with its [`TxnLabel`], each recording its fact only when it commits.
//!
//! Owns the writes of the connection side of the registry: `runner/R/info` (creation and the
//! fields a connection sets: pool, version, protocol version, total slots, epoch, liveness seq,
//! last RTT, the flags `connected`, `ready`, `draining`, `expired`), `keys::registry_entry(R)`,
//! the eligibility index entry of `R`, the runner metadata chunks, the actor-name metadata of the
//! namespace, and the deletion of acknowledged command keys. It never writes `used_slots`,
//! allocations, placements or pending entries (the registry and the workflow own them), and it
//! decides nothing about connections: the caller (`engine::conn`) acts on the results.
//!
//! Transactions (each re-reads everything it decides on, so a re-run after `unknown` is safe):
//! - [`register`] (§2.3 step 2): the new epoch is the commit version of the transaction that
//!   committed. After an `unknown` outcome the re-run registers again and its epoch is adopted
//!   (an applied first run leaves an epoch no connection holds, which is harmless).
//! - [`write_metadata`] (§2.3 step 6), [`liveness_write`] (§6.3), [`become_ready`] (§2.3 step
//!   8): require the connection's epoch to be current.
//! - [`teardown`] (§6.2): changes something only while the epoch is current.
//! - [`drain`] (§6.7) and [`ack_commands`] (§3.6): no epoch check (facts about the runner,
//!   idempotent).
//!
//! Choices where the spec is silent:
//! - **Epoch value.** The store gives a transaction's commit version only after it commits, but
//!   the epoch must be written inside it (the KV fence reads `RunnerInfo.epoch`). Because a call
//!   into the model is atomic, nothing commits between the body of a transaction and its commit,
//!   so the commit version is the read version plus one; [`register`] writes that and checks it
//!   against the version the store reports, failing with [`EdgeTxnError::EpochPrediction`] if
//!   they ever differ.
//! - **Absent record.** A liveness write, metadata write or ready transaction that finds no
//!   `runner/R/info` (the identity was retired) fails with [`EdgeTxnError::NoRecord`]; the
//!   connection treats it like an expiry (close `ws.timed_out`, reconnect), not like an eviction
//!   (which is fatal for the runner). Teardown and drain of an absent record change nothing.
//! - **Absent metadata fields.** `ToRivetMetadata` with `metadata` absent leaves the stored runner
//!   metadata unchanged; with `prepopulateActorNames` absent no actor-name metadata is written.
//!   A present `metadata` replaces every chunk.
//! - **Liveness seq** counts liveness writes and registrations; a registration also authorizes
//!   `ToEnvoyInit` (§6.3), and its fact is [`Fact::Registered`] (not `LivenessWrite`).
//! - **Eligibility keys** are removed under the pool and version the record held before the
//!   transaction and under the ones it holds after, so a registration that changes either never
//!   leaves a stale index entry.
//!
//! Canary `init-eligible-before-ready`: [`register`] also sets `ready = true` and, unless the
//! runner is draining, inserts it into the eligibility index (the connection then registers before
//! it subscribes; see `engine::conn`).

use crate::canary::Canary;
use crate::constants::METADATA_CHUNK_BYTES;
use crate::engine::cmdlog;
use crate::engine::signal::{self, EnqueueResult, Signal, SignalError};
use crate::engine::EngineOutput;
use crate::env::{Env, TxnFailure};
use crate::fact::{ConnId, Fact, TxnLabel};
use crate::keys::{self, ActorId, RunnerId, TupleReader};
use crate::protocol as p;
use crate::records::{self, RecordError, RunnerInfo};
use crate::store::{CommitError, KeyRange, ReadMode, StoreError, Txn, Version};
use crate::wire::ConnectRequest;

#[cfg(test)]
mod tests;

/// Why a connection transaction did not commit, or refused to.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EdgeTxnError {
    /// `runner/R/info` does not exist (the identity was retired or never registered).
    #[error("runner {runner} has no registry record")]
    NoRecord { runner: RunnerId },
    /// A newer connection registered: the record holds another epoch.
    #[error("connection epoch {ours} is not current (the record holds epoch {current})")]
    NotCurrent { ours: u64, current: u64 },
    /// The registry expired the runner.
    #[error("runner {runner} is expired")]
    Expired { runner: RunnerId },
    /// A read failed in the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode (internal error).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Enqueueing a signal failed.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// Every commit attempt failed in the store.
    #[error("store failed after {attempts} attempts: {last}")]
    Commit { attempts: u32, last: CommitError },
    /// The registration committed at another version than the one it wrote as its epoch.
    #[error("internal: registration wrote epoch {written} but committed at version {committed}")]
    EpochPrediction { written: u64, committed: Version },
    /// A store key under the runner's subspace has an unexpected shape (internal error).
    #[error("internal: {0}")]
    MalformedKey(String),
}

impl EdgeTxnError {
    fn from_failure(failure: TxnFailure<EdgeTxnError>) -> Self {
        match failure {
            TxnFailure::Rejected(e) => e,
            TxnFailure::Store { attempts, last } => EdgeTxnError::Commit { attempts, last },
        }
    }

    /// Whether the failure is the store's (retrying later may succeed), as opposed to a refusal
    /// (`NotCurrent`, `Expired`, `NoRecord`) or an internal error.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, EdgeTxnError::Store(_) | EdgeTxnError::Commit { .. })
    }
}

/// The result of a committed registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The new connection's epoch `E`.
    pub epoch: u64,
    /// The record as written.
    pub info: RunnerInfo,
}

/// Read `runner/R/info` serializably.
fn read_info(
    env: &mut Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
) -> Result<Option<RunnerInfo>, EdgeTxnError> {
    let now = env.now_ms;
    match env.store.get(txn, &keys::runner_info(runner), ReadMode::Serializable, now)? {
        Some(bytes) => Ok(Some(records::decode("runner info", &bytes)?)),
        None => Ok(None),
    }
}

/// Read the record and require that `epoch` is current (and, with `require_live`, not expired).
fn read_current(
    env: &mut Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
    epoch: u64,
    require_live: bool,
) -> Result<RunnerInfo, EdgeTxnError> {
    let info = read_info(env, txn, runner)?
        .ok_or_else(|| EdgeTxnError::NoRecord { runner: runner.clone() })?;
    if info.epoch != epoch {
        return Err(EdgeTxnError::NotCurrent { ours: epoch, current: info.epoch });
    }
    if require_live && info.expired {
        return Err(EdgeTxnError::Expired { runner: runner.clone() });
    }
    Ok(info)
}

fn write_info(txn: &mut Txn, runner: &RunnerId, info: &RunnerInfo) {
    txn.set(keys::runner_info(runner), records::encode(info));
}

fn eligibility_key(runner: &RunnerId, info: &RunnerInfo) -> Vec<u8> {
    keys::eligible(&runner.namespace, &info.pool, info.version, runner)
}

/// Registration (§2.3 step 2). See the module comment for the epoch and the canary.
pub fn register(
    env: &mut Env<'_>,
    conn: ConnId,
    request: &ConnectRequest,
) -> Result<Registration, EdgeTxnError> {
    let runner = request.runner_id();
    let eligible_early = env.canaries.on(Canary::InitEligibleBeforeReady);
    let result = env.transact(TxnLabel::Registration, |env, txn, facts| {
        let previous = read_info(env, txn, &runner)?;
        let mut info = previous.clone().unwrap_or_default();
        if let Some(old) = &previous {
            txn.clear(eligibility_key(&runner, old));
        }
        let epoch = txn.read_version() + 1;
        info.pool = request.pool_name.clone();
        info.version = request.version;
        info.protocol_version = request.protocol_version;
        info.total_slots = request.slots_or_default();
        info.epoch = epoch;
        info.liveness_seq += 1;
        info.connected = true;
        info.ready = false;
        info.expired = false;
        let new_key = eligibility_key(&runner, &info);
        if eligible_early {
            // Canary: eligible at registration, before metadata, subscription and replay.
            info.ready = true;
        }
        if info.eligible() {
            txn.set(new_key, Vec::new());
        } else {
            txn.clear(new_key);
        }
        write_info(txn, &runner, &info);
        txn.set(keys::registry_entry(&runner), Vec::new());
        facts.push(Fact::Registered { runner: runner.clone(), conn, epoch });
        Ok(info)
    });
    let (info, committed) = result.map_err(EdgeTxnError::from_failure)?;
    if committed.version != info.epoch {
        return Err(EdgeTxnError::EpochPrediction {
            written: info.epoch,
            committed: committed.version,
        });
    }
    Ok(Registration { epoch: info.epoch, info })
}

/// The metadata transaction (§2.3 step 6): requires `epoch`; writes each
/// `prepopulateActorNames` entry's metadata text to `keys::actor_name_metadata(ns, name)` and
/// replaces the runner metadata, chunked into `METADATA_CHUNK_BYTES`.
pub fn write_metadata(
    env: &mut Env<'_>,
    conn: ConnId,
    runner: &RunnerId,
    epoch: u64,
    metadata: &p::ToRivetMetadata,
) -> Result<(), EdgeTxnError> {
    env.transact(TxnLabel::Metadata, |env, txn, facts| {
        read_current(env, txn, runner, epoch, false)?;
        if let Some(names) = &metadata.prepopulate_actor_names {
            for (name, actor_name) in names {
                txn.set(
                    keys::actor_name_metadata(&runner.namespace, name),
                    actor_name.metadata.as_bytes().to_vec(),
                );
            }
        }
        if let Some(json) = &metadata.metadata {
            txn.clear_range(keys::runner_metadata_range(runner));
            for (k, chunk) in json.as_bytes().chunks(METADATA_CHUNK_BYTES).enumerate() {
                let k = u32::try_from(k).unwrap_or(u32::MAX);
                txn.set(keys::runner_metadata_chunk(runner, k), chunk.to_vec());
            }
        }
        facts.push(Fact::MetadataCommitted { runner: runner.clone(), conn, epoch });
        Ok(())
    })
    .map(|_| ())
    .map_err(EdgeTxnError::from_failure)
}

/// The stored runner metadata: the chunks joined in order (`None` when there are none).
pub fn read_runner_metadata(
    env: &mut Env<'_>,
    runner: &RunnerId,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut txn = env.begin();
    let now = env.now_ms;
    let rows = env.store.get_range(
        &mut txn,
        &keys::runner_metadata_range(runner),
        None,
        false,
        ReadMode::Snapshot,
        now,
    );
    env.abort(txn);
    let rows = rows?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(rows.into_iter().flat_map(|(_, v)| v).collect()))
}

/// The liveness write (§6.3): requires `epoch` current and the runner not expired, increments
/// `liveness_seq` and stores `rtt_ms`, clamped to `0..=u32::MAX`. Returns the new seq.
pub fn liveness_write(
    env: &mut Env<'_>,
    conn: ConnId,
    runner: &RunnerId,
    epoch: u64,
    rtt_ms: i64,
) -> Result<u64, EdgeTxnError> {
    let rtt = clamp_rtt(rtt_ms);
    env.transact(TxnLabel::Liveness, |env, txn, facts| {
        let mut info = read_current(env, txn, runner, epoch, true)?;
        info.liveness_seq += 1;
        info.last_rtt_ms = rtt;
        write_info(txn, runner, &info);
        facts.push(Fact::LivenessWrite {
            runner: runner.clone(),
            conn,
            epoch,
            seq: info.liveness_seq,
        });
        Ok(info.liveness_seq)
    })
    .map(|(seq, _)| seq)
    .map_err(EdgeTxnError::from_failure)
}

/// An RTT in milliseconds as the record stores it: clamped to `0..=u32::MAX` (§6.3).
pub fn clamp_rtt(rtt_ms: i64) -> u32 {
    u32::try_from(rtt_ms.max(0)).unwrap_or(u32::MAX)
}

/// The ready transaction (§2.3 step 8): requires `epoch`; sets `ready = true` and inserts the
/// runner into the eligibility index unless it is draining or expired. Returns whether it is
/// now eligible.
pub fn become_ready(
    env: &mut Env<'_>,
    conn: ConnId,
    runner: &RunnerId,
    epoch: u64,
) -> Result<bool, EdgeTxnError> {
    env.transact(TxnLabel::Ready, |env, txn, facts| {
        let mut info = read_current(env, txn, runner, epoch, false)?;
        info.ready = true;
        let eligible = info.eligible();
        if eligible {
            txn.set(eligibility_key(runner, &info), Vec::new());
        } else {
            txn.clear(eligibility_key(runner, &info));
        }
        write_info(txn, runner, &info);
        facts.push(Fact::Ready { runner: runner.clone(), conn, epoch, eligible });
        Ok(eligible)
    })
    .map(|(eligible, _)| eligible)
    .map_err(EdgeTxnError::from_failure)
}

/// The teardown transaction (§6.2): if `epoch` is still current, set `connected = false`,
/// `ready = false` and remove the runner from the eligibility index; otherwise change nothing.
/// Returns whether the connection was current.
pub fn teardown(
    env: &mut Env<'_>,
    conn: ConnId,
    runner: &RunnerId,
    epoch: u64,
) -> Result<bool, EdgeTxnError> {
    env.transact(TxnLabel::Teardown, |env, txn, facts| {
        let current = match read_info(env, txn, runner)? {
            Some(mut info) if info.epoch == epoch => {
                info.connected = false;
                info.ready = false;
                txn.clear(eligibility_key(runner, &info));
                write_info(txn, runner, &info);
                true
            }
            _ => false,
        };
        facts.push(Fact::Teardown { runner: runner.clone(), conn, epoch, current });
        Ok(current)
    })
    .map(|(current, _)| current)
    .map_err(EdgeTxnError::from_failure)
}

/// What a committed drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainResult {
    /// Whether this transaction set `draining` (false: it was already set, or no record).
    pub started: bool,
    /// The allocations `(A, g)` that were sent `GoingAway{R, g}`, in key order.
    pub allocations: Vec<(ActorId, u32)>,
    /// `WakeWorkflow` for every actor whose inbox received the signal.
    pub outputs: Vec<EngineOutput>,
}

/// The drain transaction (§6.7): set `draining` (sticky), remove the runner from the index, and
/// enqueue `GoingAway{R, g}` for every `runner/R/alloc/A = g`. A repeated drain finds `draining`
/// set and does nothing. No epoch check.
pub fn drain(env: &mut Env<'_>, runner: &RunnerId) -> Result<DrainResult, EdgeTxnError> {
    env.transact(TxnLabel::Drain, |env, txn, facts| {
        let Some(mut info) = read_info(env, txn, runner)? else {
            return Ok(DrainResult::default());
        };
        if info.draining {
            return Ok(DrainResult::default());
        }
        info.draining = true;
        txn.clear(eligibility_key(runner, &info));
        write_info(txn, runner, &info);
        let allocations = read_allocations(env, txn, runner)?;
        let mut outputs = Vec::new();
        for (actor, generation) in &allocations {
            let signal = Signal::GoingAway { runner: runner.clone(), generation: *generation };
            if signal::enqueue(env, txn, actor, &signal)? == EnqueueResult::Enqueued {
                outputs.push(EngineOutput::WakeWorkflow { actor: actor.clone() });
            }
        }
        facts.push(Fact::Drain { runner: runner.clone(), allocations: allocations.clone() });
        Ok(DrainResult { started: true, allocations, outputs })
    })
    .map(|(result, _)| result)
    .map_err(EdgeTxnError::from_failure)
}

/// Every `runner/R/alloc/A = g`, in key order (serializable).
fn read_allocations(
    env: &mut Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
) -> Result<Vec<(ActorId, u32)>, EdgeTxnError> {
    let prefix = keys::runner_alloc_prefix(runner);
    let now = env.now_ms;
    let rows = env.store.get_range(
        txn,
        &KeyRange::prefix(&prefix),
        None,
        false,
        ReadMode::Serializable,
        now,
    )?;
    rows.into_iter()
        .map(|(key, value)| {
            let actor = TupleReader::new(&key)
                .skip(&prefix)
                .and_then(|mut t| t.s())
                .map_err(|e| EdgeTxnError::MalformedKey(e.to_string()))?;
            let generation: u32 = records::decode("allocation generation", &value)?;
            Ok((actor, generation))
        })
        .collect()
}

/// The command acknowledgement (§3.6): for each checkpoint `(A, g, k)`, delete the keys
/// `(R, A, g, 0..=k)` of the sending runner. No epoch check; idempotent.
pub fn ack_commands(
    env: &mut Env<'_>,
    conn: ConnId,
    runner: &RunnerId,
    checkpoints: &[p::ActorCheckpoint],
) -> Result<(), EdgeTxnError> {
    env.transact(TxnLabel::CommandAck, |env, txn, facts| {
        for checkpoint in checkpoints {
            let actor = checkpoint.actor_id.as_str();
            cmdlog::delete_acked(env, txn, runner, actor, checkpoint.generation, checkpoint.index);
            facts.push(Fact::CommandAckApplied {
                runner: runner.clone(),
                conn,
                actor: actor.to_string(),
                generation: checkpoint.generation,
                index: checkpoint.index,
            });
        }
        Ok::<_, EdgeTxnError>(())
    })
    .map(|_| ())
    .map_err(EdgeTxnError::from_failure)
}

/// Read `runner/R/info` outside any transaction of the caller (snapshot), for tests and harnesses.
pub fn read_runner_info(
    env: &mut Env<'_>,
    runner: &RunnerId,
) -> Result<Option<RunnerInfo>, EdgeTxnError> {
    let mut txn = env.begin();
    let now = env.now_ms;
    let bytes = env.store.get(&mut txn, &keys::runner_info(runner), ReadMode::Snapshot, now);
    env.abort(txn);
    match bytes? {
        Some(bytes) => Ok(Some(records::decode("runner info", &bytes)?)),
        None => Ok(None),
    }
}
