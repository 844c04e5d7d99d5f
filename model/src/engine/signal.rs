//! Workflow signals and the actor inbox (`spec/protocol.md` §5.7): the durable messages other
//! parts of the engine send to an actor's workflow, stored under
//! `actor/A/inbox/<versionstamp>` so the workflow consumes them in commit order.
//!
//! This module owns the signal vocabulary, its stored encoding, enqueueing (inside the sender's
//! transaction) and reading a prefix of the inbox. It does not decide anything about what a
//! signal means; that is the workflow's (`engine::actor`).
//!
//! A signal to a workflow that does not exist or has completed (destroyed) is dropped without
//! error: enqueueing reads `actor/A/ns` (present iff the actor exists and is not destroyed)
//! serializably, so it also conflicts with a concurrent destroy.

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::keys::{self, ActorId, RunnerId};
use crate::protocol::EventWrapper;
use crate::records::{self, RecordError};
use crate::store::{KeyRange, ReadMode, StoreError, Txn, VERSIONSTAMP_LEN};

/// A durable message to one actor's workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// Written with the actor's creation; its first step allocates.
    Create,
    /// A batch of events from the demuxer of connection `epoch` of `runner`.
    Events { runner: RunnerId, epoch: u64, events: Vec<EventWrapper> },
    /// The drainer allocated the pending generation on `runner`.
    Allocate { runner: RunnerId, generation: u32 },
    /// `runner` is draining; the generation should migrate.
    GoingAway { runner: RunnerId, generation: u32 },
    /// `runner` expired while holding the generation.
    RunnerLost { runner: RunnerId, generation: u32 },
    /// Wake a sleeping actor.
    Wake,
    /// Destroy the actor.
    Destroy,
}

impl Signal {
    /// A short one-line description for step facts and traces.
    pub fn summary(&self) -> String {
        match self {
            Signal::Create => "create".into(),
            Signal::Events { runner, epoch, events } => {
                let span = match (events.first(), events.last()) {
                    (Some(a), Some(b)) => format!(
                        " g{}:{}..=g{}:{}",
                        a.checkpoint.generation,
                        a.checkpoint.index,
                        b.checkpoint.generation,
                        b.checkpoint.index
                    ),
                    _ => String::new(),
                };
                format!("events({} from {runner}@{epoch}{span})", events.len())
            }
            Signal::Allocate { runner, generation } => format!("allocate({runner}, g{generation})"),
            Signal::GoingAway { runner, generation } => {
                format!("going_away({runner}, g{generation})")
            }
            Signal::RunnerLost { runner, generation } => {
                format!("runner_lost({runner}, g{generation})")
            }
            Signal::Wake => "wake".into(),
            Signal::Destroy => "destroy".into(),
        }
    }
}

/// Whether an enqueue reached a live workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueResult {
    Enqueued,
    /// The workflow does not exist or has completed; the signal was dropped.
    WorkflowGone,
}

/// Why reading or enqueueing failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Enqueue `signal` into `actor`'s inbox inside `txn`, unless the workflow is gone.
pub fn enqueue(
    env: &mut Env<'_>,
    txn: &mut Txn,
    actor: &str,
    signal: &Signal,
) -> Result<EnqueueResult, SignalError> {
    let now = env.now_ms;
    if env.store.get(txn, &keys::actor_namespace(actor), ReadMode::Serializable, now)?.is_none() {
        return Ok(EnqueueResult::WorkflowGone);
    }
    txn.set_versionstamped_key(
        keys::actor_inbox_prefix(actor),
        Vec::new(),
        records::encode(signal),
    );
    Ok(EnqueueResult::Enqueued)
}

/// One stored signal with its inbox key (whose versionstamp orders it).
#[derive(Clone, Debug, PartialEq)]
pub struct InboxEntry {
    pub key: Vec<u8>,
    pub signal: Signal,
}

impl InboxEntry {
    /// The versionstamp of this entry.
    pub fn stamp(&self) -> &[u8] {
        let n = self.key.len();
        &self.key[n.saturating_sub(VERSIONSTAMP_LEN)..]
    }
}

/// Read up to `limit` of the oldest signals of `actor`'s inbox (serializably, so a step that
/// consumes them conflicts with nothing but a concurrent consumer).
pub fn read_inbox(
    env: &mut Env<'_>,
    txn: &mut Txn,
    actor: &str,
    limit: usize,
) -> Result<Vec<InboxEntry>, SignalError> {
    let range = KeyRange::prefix(&keys::actor_inbox_prefix(actor));
    let now = env.now_ms;
    let rows = env.store.get_range(txn, &range, Some(limit), false, ReadMode::Serializable, now)?;
    rows.into_iter()
        .map(|(key, value)| {
            Ok(InboxEntry { key, signal: records::decode("inbox signal", &value)? })
        })
        .collect()
}

/// Whether `actor`'s inbox holds any signal (snapshot read; used to decide whether to run a step).
pub fn inbox_is_empty(env: &mut Env<'_>, txn: &mut Txn, actor: &str) -> Result<bool, SignalError> {
    let range = KeyRange::prefix(&keys::actor_inbox_prefix(actor));
    let now = env.now_ms;
    Ok(env.store.get_range(txn, &range, Some(1), false, ReadMode::Snapshot, now)?.is_empty())
}

/// Delivery through the signal bus: one transaction that enqueues `signal` for `actor`. The
/// simulator calls this when the (possibly delayed, duplicated or reordered) delivery of a
/// demuxer batch happens; the result goes back to the sending demuxer.
pub fn deliver(
    env: &mut Env<'_>,
    actor: &ActorId,
    signal: &Signal,
) -> Result<EnqueueResult, DeliverError> {
    let result = env.transact(crate::fact::TxnLabel::SignalEnqueue, |env, txn, _| {
        enqueue(env, txn, actor, signal)
    });
    match result {
        Ok((r, _)) => Ok(r),
        Err(crate::env::TxnFailure::Rejected(e)) => Err(DeliverError::Signal(e)),
        Err(crate::env::TxnFailure::Store { last, .. }) => {
            Err(DeliverError::Store(last.to_string()))
        }
    }
}

/// A delivery that did not (certainly) enqueue; the sender retries the same batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Signal(SignalError),
    #[error("store: {0}")]
    Store(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::Canaries;
    use crate::env::{NoFaults, SplitMix};
    use crate::store::Store;

    #[test]
    fn signals_are_read_in_enqueue_order_and_dropped_for_gone_workflows() {
        let mut store = Store::default();
        let (mut faults, mut rng, mut facts) = (NoFaults, SplitMix(1), Vec::new());
        let mut env = Env {
            now_ms: 0,
            wall_ms: 0,
            store: &mut store,
            faults: &mut faults,
            rng: &mut rng,
            facts: &mut facts,
            canaries: Canaries::NONE,
        };
        let a = "actor-1".to_string();
        assert_eq!(deliver(&mut env, &a, &Signal::Wake), Ok(EnqueueResult::WorkflowGone));
        let mut t = env.begin();
        t.set(keys::actor_namespace(&a), b"ns".to_vec());
        env.commit(t, crate::fact::TxnLabel::ActorCreate).unwrap();
        for s in [Signal::Create, Signal::Wake, Signal::Destroy] {
            assert_eq!(deliver(&mut env, &a, &s), Ok(EnqueueResult::Enqueued));
        }
        let mut t = env.begin();
        let got: Vec<_> =
            read_inbox(&mut env, &mut t, &a, 2).unwrap().into_iter().map(|e| e.signal).collect();
        assert_eq!(got, vec![Signal::Create, Signal::Wake]);
        assert!(!inbox_is_empty(&mut env, &mut t, &a).unwrap());
    }
}
