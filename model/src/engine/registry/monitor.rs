//! Lost detection, expiry (`spec/protocol.md` §6.3) and retirement (§6.7): the registry's
//! periodic processes, run by the core node every `timing.lost_check_interval_ms`.
//!
//! [`RegistryMonitor`] is memory only: for each runner it remembers the liveness sequence it saw
//! and the local (monotonic) time it first saw that value, and for each retirement candidate the
//! local time it first qualified. A restarted core starts empty, which can only delay expiry and
//! retirement. Stored timestamps of other nodes are never compared with local time.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Timing;
use crate::engine::signal::{self, Signal};
use crate::engine::EngineOutput;
use crate::env::{Env, TxnFailure};
use crate::fact::{Fact, TxnLabel};
use crate::keys::{self, ActorId, RunnerId, TupleReader};
use crate::records::{self, RunnerInfo};
use crate::store::{KeyRange, ReadMode};

use super::alloc::{read_info, write_info};
use super::RegistryError;

/// A value seen since a local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Observation {
    liveness_seq: u64,
    since_ms: u64,
}

/// The memory of the registry's periodic processes (see the module comment).
#[derive(Clone, Debug, Default)]
pub struct RegistryMonitor {
    liveness: BTreeMap<RunnerId, Observation>,
    retire_candidates: BTreeMap<RunnerId, Observation>,
}

/// Whether `info` qualifies for retirement (§6.7): not connected, no allocation, draining or
/// expired.
fn retirable(info: &RunnerInfo) -> bool {
    !info.connected && info.used_slots == 0 && (info.draining || info.expired)
}

impl RegistryMonitor {
    /// An empty monitor (what a restarted core has).
    pub fn new() -> Self {
        RegistryMonitor::default()
    }

    /// Runners currently watched for expiry.
    pub fn watched(&self) -> usize {
        self.liveness.len()
    }

    /// One poll: read every known runner's record (snapshot), update the observation windows,
    /// expire runners silent for `runner_lost_threshold_ms + fence_margin_ms`, and retire runners
    /// that qualified for `retire_grace_ms`. Returns `WakeWorkflow` for every actor that got a
    /// `RunnerLost` signal. A failed expiry or retirement is retried at the next poll.
    pub fn check(&mut self, env: &mut Env<'_>, timing: &Timing) -> Vec<EngineOutput> {
        let now = env.now_ms;
        let runners = match read_runners(env) {
            Ok(r) => r,
            Err(_) => {
                env.record(Fact::Probe { name: "registry-poll-failed".into() });
                return Vec::new();
            }
        };
        let known: BTreeSet<&RunnerId> = runners.iter().map(|(r, _)| r).collect();
        self.liveness.retain(|r, _| known.contains(r));
        self.retire_candidates.retain(|r, _| known.contains(r));
        let silence = timing.runner_lost_threshold_ms.saturating_add(timing.fence_margin_ms);
        let mut out = Vec::new();
        for (runner, info) in runners {
            if info.expired {
                self.liveness.remove(&runner);
            } else {
                let seen = Observation { liveness_seq: info.liveness_seq, since_ms: now };
                let obs = *self
                    .liveness
                    .entry(runner.clone())
                    .and_modify(|o| {
                        if o.liveness_seq != info.liveness_seq {
                            *o = seen;
                        }
                    })
                    .or_insert(seen);
                if now.saturating_sub(obs.since_ms) >= silence {
                    match expire(env, &runner, obs.liveness_seq) {
                        Ok(Some(lost)) => {
                            self.liveness.remove(&runner);
                            out.extend(
                                lost.into_iter()
                                    .map(|(actor, _)| EngineOutput::WakeWorkflow { actor }),
                            );
                            continue;
                        }
                        Ok(None) => {}
                        Err(_) => env.record(Fact::Probe { name: "expiry-failed".into() }),
                    }
                }
            }
            if retirable(&info) {
                let seen = Observation { liveness_seq: info.liveness_seq, since_ms: now };
                let obs = *self
                    .retire_candidates
                    .entry(runner.clone())
                    .and_modify(|o| {
                        if o.liveness_seq != info.liveness_seq {
                            *o = seen;
                        }
                    })
                    .or_insert(seen);
                if now.saturating_sub(obs.since_ms) >= timing.retire_grace_ms {
                    match retire(env, &runner, obs.liveness_seq) {
                        Ok(true) => {
                            self.retire_candidates.remove(&runner);
                            self.liveness.remove(&runner);
                        }
                        Ok(false) => {}
                        Err(_) => env.record(Fact::Probe { name: "retire-failed".into() }),
                    }
                }
            } else {
                self.retire_candidates.remove(&runner);
            }
        }
        out
    }
}

/// Every runner of the registry with its record (one snapshot transaction). Entries whose record
/// is missing are skipped.
fn read_runners(env: &mut Env<'_>) -> Result<Vec<(RunnerId, RunnerInfo)>, RegistryError> {
    let mut txn = env.begin();
    let result = (|| {
        let now = env.now_ms;
        let rows = env.store.get_range(
            &mut txn,
            &keys::registry_range(),
            None,
            false,
            ReadMode::Snapshot,
            now,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, _) in rows {
            let runner = keys::parse_registry_entry(&key)?;
            if let Some(info) = read_info(env, &mut txn, &runner, ReadMode::Snapshot)? {
                out.push((runner, info));
            }
        }
        Ok(out)
    })();
    env.abort(txn);
    result
}

/// The allocations `runner/R/alloc/*` of `runner`, read serializably.
fn read_allocations(
    env: &mut Env<'_>,
    txn: &mut crate::store::Txn,
    runner: &RunnerId,
    limit: Option<usize>,
) -> Result<Vec<(ActorId, u32)>, RegistryError> {
    let prefix = keys::runner_alloc_prefix(runner);
    let now = env.now_ms;
    let rows = env.store.get_range(
        txn,
        &KeyRange::prefix(&prefix),
        limit,
        false,
        ReadMode::Serializable,
        now,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let actor = TupleReader::new(&key).skip(&prefix)?.s()?;
        let generation: u32 = records::decode("runner allocation", &value)?;
        out.push((actor, generation));
    }
    Ok(out)
}

/// The expiry transaction (§6.3) for `runner`, whose liveness sequence was seen unchanged at
/// `liveness_seq`: serializably re-check it, set `expired`, clear `connected` and `ready`, remove
/// the runner from the eligibility index, and enqueue `RunnerLost{R, g}` for every allocation.
/// Returns the allocations handed back, or `None` when the re-check failed (nothing written).
pub fn expire(
    env: &mut Env<'_>,
    runner: &RunnerId,
    liveness_seq: u64,
) -> Result<Option<Vec<(ActorId, u32)>>, RegistryError> {
    let result = env.transact(TxnLabel::Expiry, |env, txn, facts| {
        let Some(mut info) = read_info(env, txn, runner, ReadMode::Serializable)? else {
            return Ok(None);
        };
        if info.expired {
            // Expired already (possibly by this very transaction, whose commit ended `unknown`):
            // hand back the allocations still waiting for their `RunnerLost` so their workflows
            // are woken; the signals themselves are in their inboxes.
            return Ok(Some(read_allocations(env, txn, runner, None)?));
        }
        if info.liveness_seq != liveness_seq {
            return Ok(None);
        }
        info.expired = true;
        info.connected = false;
        info.ready = false;
        write_info(txn, runner, &info);
        txn.clear(keys::eligible(&runner.namespace, &info.pool, info.version, runner));
        let lost = read_allocations(env, txn, runner, None)?;
        for (actor, generation) in &lost {
            let signal = Signal::RunnerLost { runner: runner.clone(), generation: *generation };
            signal::enqueue(env, txn, actor, &signal)?;
        }
        facts.push(Fact::Expired { runner: runner.clone(), lost: lost.clone() });
        Ok(Some(lost))
    });
    match result {
        Ok((lost, _)) => Ok(lost),
        Err(TxnFailure::Rejected(e)) => Err(e),
        Err(TxnFailure::Store { last, .. }) => {
            Err(RegistryError::Txn { what: "expiry", detail: last.to_string() })
        }
    }
}

/// Retirement (§6.7) of `runner`, a candidate since its liveness sequence was `liveness_seq`:
/// serializably re-check that it still qualifies and has not re-registered, then delete its
/// record, metadata chunks and registry entry. Returns whether it was retired.
pub fn retire(
    env: &mut Env<'_>,
    runner: &RunnerId,
    liveness_seq: u64,
) -> Result<bool, RegistryError> {
    let result = env.transact(TxnLabel::Retire, |env, txn, facts| {
        let Some(info) = read_info(env, txn, runner, ReadMode::Serializable)? else {
            return Ok(false);
        };
        if !retirable(&info) || info.liveness_seq != liveness_seq {
            return Ok(false);
        }
        if !read_allocations(env, txn, runner, Some(1))?.is_empty() {
            return Ok(false);
        }
        txn.clear(keys::runner_info(runner));
        txn.clear_range(keys::runner_metadata_range(runner));
        txn.clear(keys::registry_entry(runner));
        facts.push(Fact::Retired { runner: runner.clone() });
        Ok(true)
    });
    match result {
        Ok((retired, _)) => Ok(retired),
        Err(TxnFailure::Rejected(e)) => Err(e),
        Err(TxnFailure::Store { last, .. }) => {
            Err(RegistryError::Txn { what: "retire", detail: last.to_string() })
        }
    }
}
