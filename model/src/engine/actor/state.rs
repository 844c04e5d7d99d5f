//! The durable workflow state `actor/A/state` (`spec/protocol.md` §5.1), its outbox, and the
//! durable deadlines derived from it (§5.6).
//!
//! The record is JSON (`records::encode`), O(1) in size per actor: identity, status, generation,
//! placement, the per-generation cursors and deadlines, flags, alarm and retries, the pending
//! generation, the inbox cursor and the outbox of the last step. Deadlines are absolute engine
//! wall-clock milliseconds (`Env::wall_ms` of the node that ran the step).

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::fact::{ActorStatus, CrashPolicy};
use crate::keys::{self, ActorId, RunnerId};
use crate::protocol::StopActorReason;
use crate::records::{self, Placement};
use crate::store::{ReadMode, Txn};

use super::{ActorSpec, WorkflowError};

/// One publish (or trigger) to perform after a step commits. Commands are named by their key and
/// read back from the command log when published, so the outbox stays small and every copy of a
/// publish carries the stored content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum OutboxItem {
    /// Publish command `(runner, A, generation, index)` as `ToEnvoyCommands` on the runner topic.
    Command { runner: RunnerId, generation: u32, index: i64 },
    /// Publish `ToEnvoyAckEvents` with `(A, g, k)` for each `(g, k)` on the runner topic.
    AckEvents { runner: RunnerId, checkpoints: Vec<(u32, i64)> },
    /// Run the pool's pending-queue drainer.
    TriggerDrainer { namespace: String, pool: String },
}

/// The outbox of the last committed step, with that step's sequence number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    /// Sequence number of the step that wrote it (the count of committed steps).
    pub seq: u64,
    pub items: Vec<OutboxItem>,
}

/// The durable state of one actor's workflow (§5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowState {
    // ---- identity --------------------------------------------------------------------------
    pub actor: ActorId,
    pub namespace: String,
    pub name: String,
    pub key: Option<String>,
    pub pool: String,
    pub crash_policy: CrashPolicy,
    /// The creation input, stored as lowercase hex.
    #[serde(with = "hex_input")]
    pub input: Option<Vec<u8>>,
    pub create_ts: i64,

    // ---- status ----------------------------------------------------------------------------
    /// `None` before the first step.
    pub status: Option<ActorStatus>,
    /// The last generation that received a `Start` (`None` before the first).
    pub generation: Option<u32>,
    /// Mirrors `actor/A/placement`.
    pub placement: Option<Placement>,

    // ---- per current generation ------------------------------------------------------------
    /// Next command index.
    pub cmd_next: i64,
    /// Event cursor: the last applied index (−1 at allocation).
    pub last: i64,
    /// The last acknowledged index (−1 at allocation).
    pub last_acked: i64,
    pub ack_deadline: Option<i64>,
    /// A `Running` was applied.
    pub ran: bool,
    pub stop_reason: Option<StopActorReason>,
    /// Start deadline (`Starting`) or stop deadline (`Stopping`).
    pub deadline: Option<i64>,

    // ---- flags -----------------------------------------------------------------------------
    pub destroy_requested: bool,
    pub wake_pending: bool,

    // ---- alarm and retries -----------------------------------------------------------------
    pub alarm_ts: Option<i64>,
    pub retry_count: u32,
    pub last_retry_ts: Option<i64>,
    pub backoff_until: Option<i64>,

    // ---- allocation ------------------------------------------------------------------------
    /// The generation the pending entry will use.
    pub pending_generation: Option<u32>,
    /// Set for a `CrashRestart` waiting in the queue: then `Sleeping`.
    pub pending_deadline: Option<i64>,

    // ---- inbox and outbox ------------------------------------------------------------------
    /// Versionstamp (hex) of the last consumed signal.
    pub inbox_cursor: Option<String>,
    /// Signals consumed so far.
    pub signals_consumed: u64,
    pub outbox: Outbox,
}

/// A durable deadline of the workflow, as §5.6 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DueTimer {
    /// Event acknowledgement deadline (§4.5).
    AckDeadline,
    /// Start deadline (`Starting`).
    StartDeadline,
    /// Stop deadline (`Stopping`).
    StopDeadline,
    /// Pending deadline of a `CrashRestart` (`Pending`).
    PendingDeadline,
    /// End of the crash backoff (`Rescheduling`).
    Backoff,
    /// The alarm of a sleeping actor.
    Alarm,
}

impl DueTimer {
    /// Name for step facts.
    pub fn name(self) -> &'static str {
        match self {
            DueTimer::AckDeadline => "timer:ack-deadline",
            DueTimer::StartDeadline => "timer:start-deadline",
            DueTimer::StopDeadline => "timer:stop-deadline",
            DueTimer::PendingDeadline => "timer:pending-deadline",
            DueTimer::Backoff => "timer:backoff",
            DueTimer::Alarm => "timer:alarm",
        }
    }
}

impl WorkflowState {
    /// The state `create_actor` writes: identity only, no status yet.
    pub fn created(actor: &str, spec: &ActorSpec, create_ts: i64) -> Self {
        WorkflowState {
            actor: actor.to_string(),
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            key: spec.key.clone(),
            pool: spec.pool.clone(),
            crash_policy: spec.crash_policy,
            input: spec.input.clone(),
            create_ts,
            status: None,
            generation: None,
            placement: None,
            cmd_next: 0,
            last: -1,
            last_acked: -1,
            ack_deadline: None,
            ran: false,
            stop_reason: None,
            deadline: None,
            destroy_requested: false,
            wake_pending: false,
            alarm_ts: None,
            retry_count: 0,
            last_retry_ts: None,
            backoff_until: None,
            pending_generation: None,
            pending_deadline: None,
            inbox_cursor: None,
            signals_consumed: 0,
            outbox: Outbox::default(),
        }
    }

    /// Whether the status is one that holds a placement.
    pub fn is_allocated(&self) -> bool {
        matches!(
            self.status,
            Some(ActorStatus::Starting | ActorStatus::Running | ActorStatus::Stopping(_))
        )
    }

    /// The deadlines that mean something in the current status, with their times.
    pub fn timers(&self) -> Vec<(i64, DueTimer)> {
        let mut out = Vec::new();
        match self.status {
            Some(ActorStatus::Starting) => {
                out.extend(self.deadline.map(|t| (t, DueTimer::StartDeadline)));
                out.extend(self.ack_deadline.map(|t| (t, DueTimer::AckDeadline)));
            }
            Some(ActorStatus::Running) => {
                out.extend(self.ack_deadline.map(|t| (t, DueTimer::AckDeadline)));
            }
            Some(ActorStatus::Stopping(_)) => {
                out.extend(self.deadline.map(|t| (t, DueTimer::StopDeadline)));
                out.extend(self.ack_deadline.map(|t| (t, DueTimer::AckDeadline)));
            }
            Some(ActorStatus::Pending) => {
                out.extend(self.pending_deadline.map(|t| (t, DueTimer::PendingDeadline)));
            }
            Some(ActorStatus::Rescheduling) => {
                out.extend(self.backoff_until.map(|t| (t, DueTimer::Backoff)));
            }
            Some(ActorStatus::Sleeping) => {
                out.extend(self.alarm_ts.map(|t| (t, DueTimer::Alarm)));
            }
            Some(ActorStatus::Destroyed) | None => {}
        }
        out
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<i64> {
        self.timers().into_iter().map(|(t, _)| t).min()
    }

    /// The earliest deadline that is due at `now` (wall ms), if any.
    pub fn due(&self, now: i64) -> Option<DueTimer> {
        self.timers().into_iter().filter(|(t, _)| *t <= now).min().map(|(_, d)| d)
    }
}

/// Read `actor/A/state`.
pub fn load(
    env: &mut Env<'_>,
    txn: &mut Txn,
    actor: &str,
    mode: ReadMode,
) -> Result<Option<WorkflowState>, WorkflowError> {
    let now = env.now_ms;
    match env.store.get(txn, &keys::actor_state(actor), mode, now)? {
        Some(bytes) => Ok(Some(records::decode("workflow state", &bytes)?)),
        None => Ok(None),
    }
}

/// Read `actor/A/state` in a read-only snapshot transaction of its own.
pub fn load_snapshot(
    env: &mut Env<'_>,
    actor: &str,
) -> Result<Option<WorkflowState>, WorkflowError> {
    let mut txn = env.begin();
    let result = load(env, &mut txn, actor, ReadMode::Snapshot);
    env.abort(txn);
    result
}

/// Write `actor/A/state`.
pub fn store(txn: &mut Txn, state: &WorkflowState) {
    txn.set(keys::actor_state(&state.actor), records::encode(state));
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

mod hex_input {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&super::hex(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex input of odd length"));
        }
        let digits = text.as_bytes();
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks_exact(2) {
            out.push(
                nibble(pair[0]).ok_or_else(|| D::Error::custom("bad hex digit"))? << 4
                    | nibble(pair[1]).ok_or_else(|| D::Error::custom("bad hex digit"))?,
            );
        }
        Ok(Some(out))
    }

    /// The value of one hex digit (either case, as `char::to_digit(16)` accepts).
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
}
