//! The actor workflow (`spec/protocol.md` §5): one durable state machine per actor, run as steps
//! (one store transaction each) by the core node's executor (`engine::core`), and the driver API
//! a client of the engine uses to create, wake, destroy and inspect actors.
//!
//! Owns, in the store: `actor/A/state` (the workflow state with its outbox, [`WorkflowState`]),
//! `actor/A/ns` and the workflow entry `keys::workflow_entry(A)` (written at creation, deleted at
//! destruction), the consumption of `actor/A/inbox/*`, the command keys of the actor's
//! generations (through `engine::cmdlog`), and the deletion of a destroyed actor's keyspace.
//! Allocation writes (placement, alloc key, slots, pending entries) go through
//! `engine::registry`.
//!
//! Must not touch: the connection's records (`runner/R/info` flags, eligibility, metadata), the
//! delivery of commands to runners (the edge's), or anything in memory of another component.
//!
//! Submodules:
//! - [`state`]: the durable state, the outbox, the durable deadlines;
//! - [`events`]: event classification and the acks of a step (and the two event canaries);
//! - [`step`]: one step and the transition table;
//! - [`outbox`]: rendering an outbox into engine outputs.
//!
//! Choices where the spec is silent:
//! - `create_actor` rejects an id that is not a valid actor id (`wire::is_valid_actor_id`), an
//!   input over `MAX_ACTOR_INPUT_BYTES`, and an id that already has a state record, destroyed
//!   ones included (the tombstone keeps the id taken). It does not check the namespace or pool
//!   against the deployment: the driver is the simulator's workload, which only names configured
//!   ones. `create_ts` is the creating node's wall clock.
//! - `wake_actor` and `destroy_actor` return [`WorkflowError::ActorNotFound`] for an actor that
//!   does not exist or is destroyed (the signal was dropped).
//! - `actor_status` returns `Ok(None)` for an actor created but not yet stepped, and
//!   [`WorkflowError::ActorNotFound`] for an id that was never created.
//! - A destroyed actor's last outbox (its `Stopped` ack, a drainer trigger) is published after the
//!   commit like any other; if the core crashes before, it is not re-published (the workflow
//!   entry is gone). Both are repaired elsewhere: the demuxer acks events of a gone workflow
//!   itself, and the periodic drainer recheck frees the queue.

pub mod events;
pub mod outbox;
pub mod state;
pub mod step;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use state::{DueTimer, Outbox, OutboxItem, WorkflowState};
pub use step::{run_step, StepKind, StepResult};

use serde::{Deserialize, Serialize};

use crate::constants::MAX_ACTOR_INPUT_BYTES;
use crate::engine::cmdlog::CommandLogError;
use crate::engine::registry::RegistryError;
use crate::engine::signal::{self, DeliverError, EnqueueResult, Signal, SignalError};
use crate::engine::EngineOutput;
use crate::env::{Env, TxnFailure};
use crate::fact::{ActorStatus, CrashPolicy, Fact, TxnLabel};
use crate::keys::{self, ActorId};
use crate::records::RecordError;
use crate::store::{ReadMode, StoreError};
use crate::wire;

/// What a client asks for when it creates an actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorSpec {
    pub namespace: String,
    pub name: String,
    pub key: Option<String>,
    pub pool: String,
    pub crash_policy: CrashPolicy,
    pub input: Option<Vec<u8>>,
}

/// A workflow operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("invalid actor id {actor:?}: {detail}")]
    InvalidActorId { actor: String, detail: String },
    #[error("actor input of {len} bytes exceeds MAX_ACTOR_INPUT_BYTES ({max})")]
    InputTooLarge { len: usize, max: usize },
    #[error("actor {0} already exists")]
    ActorExists(ActorId),
    #[error("actor {0} does not exist or is destroyed")]
    ActorNotFound(ActorId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    CommandLog(#[from] CommandLogError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A transaction failed in the store on every attempt.
    #[error("workflow transaction failed: {0}")]
    Txn(String),
}

/// Create `actor` (one transaction): `actor/A/ns`, the workflow entry, the initial state and the
/// `Create` signal; fact `ActorCreated`. Returns `WakeWorkflow` so the core runs its first step.
pub fn create_actor(
    env: &mut Env<'_>,
    actor: &ActorId,
    spec: &ActorSpec,
) -> Result<Vec<EngineOutput>, WorkflowError> {
    wire::parse_actor_id(actor).map_err(|e| WorkflowError::InvalidActorId {
        actor: actor.clone(),
        detail: e.to_string(),
    })?;
    if let Some(input) = &spec.input {
        if input.len() > MAX_ACTOR_INPUT_BYTES {
            return Err(WorkflowError::InputTooLarge {
                len: input.len(),
                max: MAX_ACTOR_INPUT_BYTES,
            });
        }
    }
    let initial = WorkflowState::created(actor, spec, env.wall_ms);
    let result = env.transact(TxnLabel::ActorCreate, |env, txn, facts| {
        if let Some(existing) = state::load(env, txn, actor, ReadMode::Serializable)? {
            // A re-run after an `unknown` commit that applied finds its own record.
            return if existing == initial {
                Ok(())
            } else {
                Err(WorkflowError::ActorExists(actor.clone()))
            };
        }
        txn.set(keys::actor_namespace(actor), spec.namespace.as_bytes().to_vec());
        txn.set(keys::workflow_entry(actor), Vec::new());
        state::store(txn, &initial);
        signal::enqueue(env, txn, actor, &Signal::Create)?;
        facts.push(Fact::ActorCreated {
            actor: actor.clone(),
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            pool: spec.pool.clone(),
            crash_policy: spec.crash_policy,
        });
        Ok(())
    });
    match result {
        Ok(_) => Ok(vec![EngineOutput::WakeWorkflow { actor: actor.clone() }]),
        Err(TxnFailure::Rejected(e)) => Err(e),
        Err(TxnFailure::Store { last, .. }) => Err(WorkflowError::Txn(last.to_string())),
    }
}

fn deliver(
    env: &mut Env<'_>,
    actor: &ActorId,
    signal: Signal,
) -> Result<Vec<EngineOutput>, WorkflowError> {
    match signal::deliver(env, actor, &signal) {
        Ok(EnqueueResult::Enqueued) => {
            Ok(vec![EngineOutput::WakeWorkflow { actor: actor.clone() }])
        }
        Ok(EnqueueResult::WorkflowGone) => Err(WorkflowError::ActorNotFound(actor.clone())),
        Err(DeliverError::Signal(e)) => Err(e.into()),
        Err(DeliverError::Store(detail)) => Err(WorkflowError::Txn(detail)),
    }
}

/// Deliver `Wake` to `actor` (§5.5: a sleeping actor allocates; a sleep stop in progress
/// remembers it).
pub fn wake_actor(env: &mut Env<'_>, actor: &ActorId) -> Result<Vec<EngineOutput>, WorkflowError> {
    deliver(env, actor, Signal::Wake)
}

/// Deliver `Destroy` to `actor`.
pub fn destroy_actor(
    env: &mut Env<'_>,
    actor: &ActorId,
) -> Result<Vec<EngineOutput>, WorkflowError> {
    deliver(env, actor, Signal::Destroy)
}

/// The externally visible status of `actor` (§5.2): `None` before its first step.
pub fn actor_status(
    env: &mut Env<'_>,
    actor: &ActorId,
) -> Result<Option<ActorStatus>, WorkflowError> {
    match state::load_snapshot(env, actor)? {
        Some(state) => Ok(state.status),
        None => Err(WorkflowError::ActorNotFound(actor.clone())),
    }
}
