//! Choosing a runner for an allocation and holding / releasing its slot (`spec/protocol.md`
//! §6.5, §5.3, §5.4).
//!
//! Owns the writes of an allocation (`actor/A/placement`, `runner/R/alloc/A`, `used += 1`) and of
//! its release (`used -= 1`). Every function runs inside the caller's transaction; none commits.

use crate::env::Env;
use crate::fact::Fact;
use crate::keys::{self, RunnerId};
use crate::records::{self, Placement, RunnerInfo};
use crate::store::{ReadMode, Txn};

use super::RegistryError;

/// Read `runner/R/info`.
pub fn read_info(
    env: &mut Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
    mode: ReadMode,
) -> Result<Option<RunnerInfo>, RegistryError> {
    let now = env.now_ms;
    match env.store.get(txn, &keys::runner_info(runner), mode, now)? {
        Some(bytes) => Ok(Some(records::decode("runner info", &bytes)?)),
        None => Ok(None),
    }
}

/// Write `runner/R/info`.
pub fn write_info(txn: &mut Txn, runner: &RunnerId, info: &RunnerInfo) {
    txn.set(keys::runner_info(runner), records::encode(info));
}

/// Whether `info` can take one more actor of `pool`: eligible (§6.1), of that pool, not full.
fn has_free_slot(info: &RunnerInfo, pool: &str) -> bool {
    info.eligible() && info.pool == pool && info.used_slots < info.total_slots
}

struct Candidate {
    runner: RunnerId,
    version: u32,
    free: u32,
}

/// Choose a runner of `(namespace, pool)` with a free slot (§6.5): the highest version, then the
/// most free slots, then a draw from `env.rng` among the tied. The chosen runner's record is
/// re-read serializably and re-checked, so a concurrent flag or slot change makes the caller's
/// transaction conflict. Returns the runner and its record as read (reads see the transaction's
/// own earlier allocations).
pub fn choose_runner(
    env: &mut Env<'_>,
    txn: &mut Txn,
    namespace: &str,
    pool: &str,
) -> Result<Option<(RunnerId, RunnerInfo)>, RegistryError> {
    let now = env.now_ms;
    let rows = env.store.get_range(
        txn,
        &keys::eligible_pool(namespace, pool),
        None,
        false,
        ReadMode::Snapshot,
        now,
    )?;
    let mut candidates = Vec::new();
    for (key, _) in rows {
        let (_, envoy_key) = keys::parse_eligible(namespace, pool, &key)?;
        let runner = RunnerId::new(namespace, envoy_key);
        let Some(info) = read_info(env, txn, &runner, ReadMode::Snapshot)? else { continue };
        if has_free_slot(&info, pool) {
            let free = info.total_slots - info.used_slots;
            candidates.push(Candidate { runner, version: info.version, free });
        }
    }
    while let Some(best) = candidates.iter().map(|c| (c.version, c.free)).max() {
        let tied: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| (c.version, c.free) == best)
            .map(|(i, _)| i)
            .collect();
        let pick =
            if tied.len() > 1 { tied[env.rng.below(tied.len() as u64) as usize] } else { tied[0] };
        let chosen = candidates.remove(pick);
        if let Some(info) = read_info(env, txn, &chosen.runner, ReadMode::Serializable)? {
            if has_free_slot(&info, pool) {
                return Ok(Some((chosen.runner, info)));
            }
        }
    }
    Ok(None)
}

/// Write the allocation of `actor`'s generation `generation` on `runner` (whose record `info` was
/// just read in this transaction): placement, alloc key, `used += 1`; fact `Allocated`.
pub fn write_allocation(
    txn: &mut Txn,
    facts: &mut Vec<Fact>,
    actor: &str,
    runner: &RunnerId,
    mut info: RunnerInfo,
    generation: u32,
) {
    let placement = Placement { runner: runner.clone(), generation };
    txn.set(keys::actor_placement(actor), records::encode(&placement));
    txn.set(keys::runner_alloc(runner, actor), records::encode(&generation));
    info.used_slots += 1;
    write_info(txn, runner, &info);
    facts.push(Fact::Allocated { actor: actor.to_string(), runner: runner.clone(), generation });
}

/// Choose a runner and allocate `actor`'s `generation` on it, inside `txn`. `None` when no
/// runner of the pool has a free slot (nothing written).
pub fn allocate_in(
    env: &mut Env<'_>,
    txn: &mut Txn,
    facts: &mut Vec<Fact>,
    actor: &str,
    namespace: &str,
    pool: &str,
    generation: u32,
) -> Result<Option<RunnerId>, RegistryError> {
    let Some((runner, info)) = choose_runner(env, txn, namespace, pool)? else { return Ok(None) };
    write_allocation(txn, facts, actor, &runner, info, generation);
    Ok(Some(runner))
}

/// Release an allocation: delete `actor/A/placement` and `runner/R/alloc/A`, `used(R) -= 1`.
/// A runner record that no longer exists is left absent.
pub fn release_in(
    env: &mut Env<'_>,
    txn: &mut Txn,
    actor: &str,
    placement: &Placement,
) -> Result<(), RegistryError> {
    txn.clear(keys::actor_placement(actor));
    txn.clear(keys::runner_alloc(&placement.runner, actor));
    if let Some(mut info) = read_info(env, txn, &placement.runner, ReadMode::Serializable)? {
        info.used_slots = info.used_slots.saturating_sub(1);
        write_info(txn, &placement.runner, &info);
    }
    Ok(())
}

/// Read `actor/A/placement`.
pub fn read_placement(
    env: &mut Env<'_>,
    txn: &mut Txn,
    actor: &str,
    mode: ReadMode,
) -> Result<Option<Placement>, RegistryError> {
    let now = env.now_ms;
    match env.store.get(txn, &keys::actor_placement(actor), mode, now)? {
        Some(bytes) => Ok(Some(records::decode("actor placement", &bytes)?)),
        None => Ok(None),
    }
}
