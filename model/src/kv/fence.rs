//! The fence of a KV request (`spec/preload.md` §1.5, `spec/protocol.md` §7.2): three
//! serializable reads inside the request's own transaction, so that a deallocation, a newer
//! registration or an expiry committed after the read version makes the request's commit
//! conflict. It owns only the decision and the record of what was read; it never writes the
//! records it reads (they belong to the actor workflow and the runner registry).
//!
//! Checks, in order: `actor/A/ns` absent or another namespace → `actor_not_found`;
//! `actor/A/placement` absent or on another runner → `not_holder`; `runner/R/info` absent, with
//! another epoch, or expired → `not_holder`. A record that does not decode → `internal`.

use crate::keys;
use crate::records::{self, Placement, RunnerInfo};
use crate::store::{ReadMode, Store, StoreError, Txn};

use super::ops::Rejection;
use super::{KvContext, KvError};

/// What the fence read, for the simulator's history. Each field is `None` when the record was
/// absent or did not decode.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FenceObservation {
    /// The actor's namespace (`actor/A/ns`).
    pub actor_namespace: Option<String>,
    /// The actor's placement `(R, g)` (`actor/A/placement`): its generation is the one the
    /// request was accepted for.
    pub placement: Option<Placement>,
    /// The epoch of the requesting connection's runner record (`runner/R/info`).
    pub runner_epoch: Option<u64>,
    /// Whether that runner record was marked expired.
    pub runner_expired: Option<bool>,
}

/// Read the fence of `actor` for a request that arrived on `ctx`, serializably, in `txn`.
/// Returns what was read and the verdict (`Err` = the request is rejected).
pub(super) fn read_fence(
    store: &mut Store,
    txn: &mut Txn,
    ctx: &KvContext,
    actor: &str,
    now_ms: u64,
) -> Result<(FenceObservation, Result<(), Rejection>), StoreError> {
    let ns = store.get(txn, &keys::actor_namespace(actor), ReadMode::Serializable, now_ms)?;
    let placement =
        store.get(txn, &keys::actor_placement(actor), ReadMode::Serializable, now_ms)?;
    let info = store.get(txn, &keys::runner_info(&ctx.runner), ReadMode::Serializable, now_ms)?;

    let ns = ns.map(String::from_utf8);
    let placement = placement.map(|b| records::decode::<Placement>("actor placement", &b));
    let info = info.map(|b| records::decode::<RunnerInfo>("runner info", &b));
    let observation = FenceObservation {
        actor_namespace: ns.as_ref().and_then(|r| r.as_ref().ok()).cloned(),
        placement: placement.as_ref().and_then(|r| r.as_ref().ok()).cloned(),
        runner_epoch: info.as_ref().and_then(|r| r.as_ref().ok()).map(|i| i.epoch),
        runner_expired: info.as_ref().and_then(|r| r.as_ref().ok()).map(|i| i.expired),
    };
    let verdict = decide(ctx, ns, placement, info);
    Ok((observation, verdict))
}

fn decide(
    ctx: &KvContext,
    ns: Option<Result<String, std::string::FromUtf8Error>>,
    placement: Option<Result<Placement, records::RecordError>>,
    info: Option<Result<RunnerInfo, records::RecordError>>,
) -> Result<(), Rejection> {
    match ns {
        None => return Err(Rejection::new(KvError::ActorNotFound)),
        Some(Err(_)) => return Err(Rejection::internal("stored actor namespace is not UTF-8")),
        Some(Ok(ns)) if ns != ctx.namespace => return Err(Rejection::new(KvError::ActorNotFound)),
        Some(Ok(_)) => {}
    }
    match placement {
        None => return Err(Rejection::new(KvError::NotHolder)),
        Some(Err(e)) => return Err(Rejection::internal(&e.to_string())),
        Some(Ok(p)) if p.runner != ctx.runner => return Err(Rejection::new(KvError::NotHolder)),
        Some(Ok(_)) => {}
    }
    match info {
        None => Err(Rejection::new(KvError::NotHolder)),
        Some(Err(e)) => Err(Rejection::internal(&e.to_string())),
        Some(Ok(i)) if i.epoch != ctx.epoch || i.expired => Err(Rejection::new(KvError::NotHolder)),
        Some(Ok(_)) => Ok(()),
    }
}
