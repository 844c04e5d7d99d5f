//! What the checkers remember between history entries, per actor, generation, runner process,
//! runner identity and connection, plus the open transaction window. Every map here is keyed by
//! something live and is pruned when that thing can no longer matter (see each field).
//!
//! Owns only these records; the rules that read and update them live in the invariant modules.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pegsim_model::fact::Disposition;
use pegsim_model::fact::{ActorStatus, ConnId, CrashPolicy, DispositionInputs, EndOutcome};
use pegsim_model::keys::{ActorId, RunnerId};
use pegsim_model::preload::Snapshot;
use pegsim_model::protocol::{ActorCommandKeyData, Event, PreloadedKv, StopCode};
use pegsim_model::records::{Placement, RunnerInfo};
use pegsim_model::store::Version;

/// The position and time of the entry being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct At {
    pub seq: u64,
    pub ms: u64,
}

/// Per actor, for its whole life (dropped once destroyed).
#[derive(Debug, Default)]
pub(super) struct ActorTrack {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub crash_policy: Option<CrashPolicy>,
    pub status: Option<ActorStatus>,
    /// When the status last changed (liveness L4/L5).
    pub status_since: u64,
    /// S2: the generation the next persisted `Start` must carry.
    pub next_start_gen: u32,
    /// The highest generation with an `EndGeneration` (generations end in order).
    pub ended_upto: Option<u32>,
    /// S1: open instances of this actor: (runner, generation) -> (node, start ms).
    pub open_instances: BTreeMap<(RunnerId, u32), (String, u64)>,
    /// Generations the registry declared lost: (runner, generation) (S17 `Lost` outcome).
    pub lost: BTreeSet<(RunnerId, u32)>,
    /// S14: short history of (version, placement) for checks at a past version.
    pub placement_hist: VecDeque<(Version, Option<Placement>)>,
    /// DATA-LOSS: the last committed counter of `[1]` and the generation that wrote it.
    pub counter: Option<(u64, Option<u32>)>,
}

impl ActorTrack {
    /// Whether `EndGeneration(A, g)` has happened.
    pub fn ended(&self, generation: u32) -> bool {
        self.ended_upto.is_some_and(|e| generation <= e)
    }
}

/// One stored command as it was written (kept until its generation ends, even once deleted).
#[derive(Debug, Clone)]
pub(super) struct WrittenCommand {
    pub runner: RunnerId,
    pub content: ActorCommandKeyData,
    pub version: Version,
    pub persisted_ms: u64,
    /// L2: the runner connection on which the runner last received it.
    pub received_on: Option<ConnId>,
    /// L2: when the edge last received an acknowledgement covering it.
    pub ack_received_ms: Option<u64>,
}

/// Per live generation `(A, g)`: from its `Start` (or first event) until its `EndGeneration`.
#[derive(Debug)]
pub(super) struct GenTrack {
    /// S6: every command key written, by index.
    pub cmds: BTreeMap<i64, WrittenCommand>,
    /// S4: the highest applied index (-1 before the first).
    pub applied_upto: i64,
    /// S5: events emitted and not yet applied: index -> (runner, event).
    pub emitted: BTreeMap<i64, (RunnerId, Event)>,
    /// P16: the read version of the last delivery's bundle.
    pub last_fetch_version: Option<Version>,
}

impl Default for GenTrack {
    fn default() -> Self {
        GenTrack {
            cmds: BTreeMap::new(),
            applied_upto: -1,
            emitted: BTreeMap::new(),
            last_fetch_version: None,
        }
    }
}

/// What a runner process knows about one `(A, g)` (dropped at its tombstone drop).
#[derive(Debug)]
pub(super) struct RunnerGen {
    /// S7: the last index executed or made moot (-1 before).
    pub last_processed: i64,
    /// S9: the highest index processed in any way (exec, dup, moot, stale).
    pub processed_max: i64,
    /// S8: the highest event ack received for it.
    pub ack_received: i64,
    /// Whether the process emitted an event for it (acks of unknown generations are ignored).
    pub has_events: bool,
}

impl Default for RunnerGen {
    fn default() -> Self {
        RunnerGen { last_processed: -1, processed_max: -1, ack_received: -1, has_events: false }
    }
}

/// Liveness L3 for one `(R, A, g)`: emitted events not yet applied or stale, and not forgotten.
#[derive(Debug, Default)]
pub(super) struct EventObligations {
    /// index -> emitted ms, until applied / stale / forgotten.
    pub unresolved: BTreeMap<i64, u64>,
    /// index -> emitted ms, until forgotten.
    pub unforgotten: BTreeMap<i64, u64>,
    /// L10 (runner history bound): events emitted in the heal phase on a ready connection while
    /// every earlier event of the `(A, g)` was already applied -> emitted ms, until forgotten.
    pub prompt: BTreeMap<i64, u64>,
}

/// The bundle and snapshot of the first `Start` delivery of `(A, g)` on a connection (P12–P14).
#[derive(Debug, Clone)]
pub(super) struct StartSnapshot {
    pub snapshot: Snapshot,
    pub empty_keyspace_bundle: bool,
}

/// A started instance waiting for its `StartupObserved` (P12–P14).
#[derive(Debug, Clone)]
pub(super) struct PendingStartup {
    pub start: StartSnapshot,
    pub input: Option<Vec<u8>>,
}

/// Per runner process (dropped when it exits or its node crashes).
#[derive(Debug, Default)]
pub(super) struct ProcTrack {
    pub node: String,
    /// The connection the runner opened last (its current one).
    pub current_conn: Option<ConnId>,
    /// S7: highest generation per actor started (or terminated) on this process.
    pub max_started: BTreeMap<ActorId, u32>,
    pub gens: BTreeMap<(ActorId, u32), RunnerGen>,
    /// S10: tombstones dropped while `conn` was current.
    pub tombstones: Option<(ConnId, BTreeSet<(ActorId, u32)>)>,
    /// S14: request id -> issuing `(A, g)` and the connection it was sent on.
    pub kv_requests: BTreeMap<u32, (ActorId, u32, ConnId)>,
    /// P12: started instances waiting for their startup record.
    pub startups: BTreeMap<(ActorId, u32), PendingStartup>,
    /// L3.
    pub events: BTreeMap<(ActorId, u32), EventObligations>,
    /// L10: terminated instances whose tombstone is not dropped yet: -> terminated ms.
    pub tombstone_due: BTreeMap<(ActorId, u32), u64>,
    /// L1: (connection, since) while the process holds a current, ready connection.
    pub ready: Option<(ConnId, u64)>,
    /// L1: since when the process has had no ready connection.
    pub unready_since: u64,
}

/// One registered epoch of an identity: its connection and whether that connection's
/// subscription was confirmed and its metadata committed (kept here so that S13 can still
/// decide after the connection's own record is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EpochConn {
    pub conn: ConnId,
    pub subscribed: bool,
    pub metadata: bool,
}

/// Per runner identity on the engine side (dropped when its record is gone and its process too).
#[derive(Debug, Default)]
pub(super) struct IdentTrack {
    /// Registered epochs (the last few) and what their connection did before them (S13).
    pub epochs: BTreeMap<u64, EpochConn>,
    /// The highest epoch ever written for the identity.
    pub max_epoch: u64,
    /// Short history of (version, epoch, expired) of its record, for checks at a past version.
    pub info_hist: VecDeque<(Version, Option<(u64, bool)>)>,
    /// S9: highest command ack the edge received from it per `(A, g)`.
    pub edge_acks: BTreeMap<(ActorId, u32), i64>,
    /// L7: when `liveness_seq` last changed (or the record appeared).
    pub liveness_changed_ms: u64,
    /// L7: when the record became expired.
    pub expired_ms: Option<u64>,
    /// L6: terminated instances of this runner waiting for their generation to end: -> ms.
    pub terminated: BTreeMap<(ActorId, u32), u64>,
    /// L9: the drain time and the allocations it had.
    pub drain: Option<(u64, Vec<(ActorId, u32)>)>,
    /// L9: since when the record is draining, disconnected and without allocations.
    pub retire_ready_since: Option<u64>,
}

/// Per connection (dropped when both ends closed it).
#[derive(Debug, Default)]
pub(super) struct ConnTrack {
    pub runner: Option<RunnerId>,
    pub epoch: Option<u64>,
    pub edge_node: Option<String>,
    pub subscribed: bool,
    pub metadata_committed: bool,
    pub engine_frames: u64,
    pub init_sent: bool,
    pub runner_frames: u64,
    pub runner_init_received: bool,
    /// S11: a live command frame or an event ack frame was sent.
    pub live_sent: bool,
    /// P16: bundles fetched for deliveries not yet written, per `(A, g)`, in order.
    pub fetched: BTreeMap<(ActorId, u32), VecDeque<Option<PreloadedKv>>>,
    /// P12: the first `Start` delivery of each `(A, g)` on this connection.
    pub first_start: BTreeMap<(ActorId, u32), StartSnapshot>,
    /// L10: demuxer queues: actor -> last activity ms.
    pub demux: BTreeMap<ActorId, u64>,
    /// §4.3: the events of the last `ToRivetEvents` frame the edge read: `(A, g, i)`.
    pub last_events: Vec<(ActorId, u32, i64)>,
    pub edge_closed: bool,
    pub runner_closed: bool,
}

/// An `EndGeneration` fact inside a window.
#[derive(Debug, Clone)]
pub(super) struct EndRecord {
    pub at: At,
    pub actor: ActorId,
    pub runner: RunnerId,
    pub generation: u32,
    pub outcome: EndOutcome,
    pub inputs: DispositionInputs,
    pub disposition: Disposition,
}

/// One transaction window: a commit and the facts that follow it from the same node, until the
/// next commit or any other entry. Checks that relate a commit to its step's facts run when the
/// window closes, so they do not depend on the order of the facts inside the step.
#[derive(Debug)]
pub(super) struct Window {
    pub at: At,
    pub node: String,
    /// Placement of each actor whose placement the commit changed, as it was before.
    pub placement_before: BTreeMap<ActorId, Option<Placement>>,
    /// Record of each runner whose record the commit changed, as it was before.
    pub info_before: BTreeMap<RunnerId, Option<RunnerInfo>>,
    /// `Start`s the commit persisted: (actor, generation).
    pub starts: Vec<(ActorId, u32)>,
    /// Actors whose placement or pending entries the commit changed.
    pub touched_actors: BTreeSet<ActorId>,
    pub ends: Vec<EndRecord>,
    /// Applied `Stopped` events: (actor, generation) -> code.
    pub applied_stops: BTreeMap<(ActorId, u32), StopCode>,
    /// Every status an actor took in this window, in order.
    pub statuses: BTreeMap<ActorId, Vec<ActorStatus>>,
    /// `EventAckPublished` facts: (at, runner, actor, generation, index).
    pub acks: Vec<(At, RunnerId, ActorId, u32, i64)>,
}

impl Window {
    pub fn new(at: At, node: &str) -> Self {
        Window {
            at,
            node: node.to_string(),
            placement_before: BTreeMap::new(),
            info_before: BTreeMap::new(),
            starts: Vec::new(),
            touched_actors: BTreeSet::new(),
            ends: Vec::new(),
            applied_stops: BTreeMap::new(),
            statuses: BTreeMap::new(),
            acks: Vec::new(),
        }
    }
}
