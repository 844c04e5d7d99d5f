//! The vocabulary of the history (`spec/protocol.md` §8.1): every observable fact the model
//! reports. The simulator stamps each fact with the simulated time and the node that produced it
//! and appends it to the history; checkers read only these facts (and frames the simulator saw on
//! the wire), never the model's private state.
//!
//! Facts are reported where they happen: the runner reports what its instances did, the edge what
//! it read, sent and committed, the workflow what it applied and persisted, the registry its
//! transitions. Every store commit is reported once by `Env::commit` as [`Fact::Commit`] with its
//! applied mutations, from which checkers keep their own shadow of the store.

use serde::{Deserialize, Serialize};

use crate::keys::{ActorId, RunnerId};
use crate::protocol::{Event, KvMetadata, PreloadedKv, StopActorReason, StopCode};
use crate::store::{Mutation, Version};

/// Identifies one connection (one WebSocket) for its whole life; assigned by the simulator and
/// known to both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// What a transaction was for; stamped on its commit facts and used to target faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnLabel {
    Registration,
    Metadata,
    Ready,
    Liveness,
    Teardown,
    Drain,
    Expiry,
    Retire,
    CommandAck,
    ReplayPage,
    LiveCommandCheck,
    KvRequest,
    SignalEnqueue,
    WorkflowStep,
    ActorCreate,
    Drainer,
}

/// Kind of a command, for facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Start,
    Stop(StopActorReason),
}

/// How a runner classified one received command (`spec/protocol.md` §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandDisposition {
    /// Executed (`cmd_exec`).
    Exec,
    /// Duplicate of a processed index (`cmd_dup`).
    Dup,
    /// Its generation had terminated (`cmd_moot`).
    Moot,
    /// Held until its predecessor arrives (`cmd_hold`).
    Hold,
    /// A start for a generation older than one the runner knows.
    Stale,
}

/// How the workflow classified one event (`spec/protocol.md` §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    Applied,
    Stale,
    Dup,
    Gap,
}

/// Why a generation ended (`spec/protocol.md` §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOutcome {
    StoppedOk,
    StoppedError,
    Lost,
}

/// What followed the end of a generation (the row of §5.4's table that applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Destroy,
    Sleep,
    Allocate,
    Restart,
    Reschedule,
}

/// The inputs of the disposition decision, so a checker can recompute it from the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispositionInputs {
    pub destroy_requested: bool,
    pub wake_pending: bool,
    pub stop_reason: Option<StopActorReason>,
    pub crash_policy: CrashPolicy,
}

/// What the workflow does after a crash (`spec/protocol.md` §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashPolicy {
    Restart,
    Sleep,
    Destroy,
}

/// The externally visible status of an actor (`spec/protocol.md` §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorStatus {
    Pending,
    Starting,
    Running,
    Stopping(StopActorReason),
    Rescheduling,
    Sleeping,
    Destroyed,
}

/// One KV put as a startup record holds it: `(keys, values)`.
pub type KvPut = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The observation record of one actor startup (`spec/preload.md` §6.3): the ordered logical
/// reads with their results, the decision, what was restored, and the writes. Two runs of the same
/// startup (bundle run and oracle run) must produce equal records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupRecord {
    /// `(what, result)` per logical read, in order, e.g. `("get [1]", "hit 12 bytes")`.
    pub reads: Vec<(String, String)>,
    /// Whether the actor took the new-actor path.
    pub new_actor: bool,
    /// The persisted counter after this start's increment.
    pub counter: u64,
    /// The ordered KV write requests, one per put.
    pub writes: Vec<KvPut>,
}

/// One observable fact. See the module comment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    // ---- store -----------------------------------------------------------------------------
    /// A transaction committed (or an unknown-outcome commit applied) with these mutations.
    Commit {
        label: TxnLabel,
        version: Version,
        applied: Vec<Mutation>,
    },
    /// A commit attempt failed; `applied_version` is set when it applied despite `unknown`.
    CommitFailed {
        label: TxnLabel,
        error: String,
        applied_version: Option<Version>,
    },

    // ---- runner ----------------------------------------------------------------------------
    /// The runner opened a connection attempt.
    RunnerConnecting {
        runner: RunnerId,
        conn: ConnId,
    },
    /// The runner saw a connection end (or closed it) with this reason.
    RunnerConnClosed {
        runner: RunnerId,
        conn: ConnId,
        reason: String,
    },
    /// The runner received `ToEnvoyInit` on this connection.
    RunnerInit {
        runner: RunnerId,
        conn: ConnId,
    },
    InstanceStart {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
    },
    InstanceTerminate {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
        code: StopCode,
        reason: String,
    },
    /// A command of a received frame, as classified by §3.5.
    RunnerCommand {
        runner: RunnerId,
        conn: ConnId,
        actor: ActorId,
        generation: u32,
        index: i64,
        kind: CommandKind,
        disposition: CommandDisposition,
    },
    /// The runner sent `ToRivetAckCommands` for `(A, g, k)`.
    RunnerAckCommands {
        runner: RunnerId,
        conn: ConnId,
        actor: ActorId,
        generation: u32,
        index: i64,
    },
    EventEmit {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
        index: i64,
        event: Event,
    },
    /// The runner forgot history entries `<= index` of `(A, g)` on an ack.
    EventForget {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
        index: i64,
    },
    TombstoneDrop {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
    },
    Fence {
        runner: RunnerId,
    },
    FatalEviction {
        runner: RunnerId,
    },
    /// The runner saw the engine break the protocol (e.g. a start while an older one runs).
    RunnerProtocolViolation {
        runner: RunnerId,
        detail: String,
    },
    /// A KV request issued by instance `(A, g)`.
    KvRequestSent {
        runner: RunnerId,
        conn: ConnId,
        actor: ActorId,
        generation: u32,
        request_id: u32,
        kind: String,
    },
    /// An instance finished its startup with this record; `had_bundle` says whether its start
    /// carried a bundle, `live_reads` how many live KV reads the startup needed.
    StartupObserved {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
        had_bundle: bool,
        live_reads: u32,
        record: StartupRecord,
    },
    /// The runner process is draining (sent `ToRivetStopping`).
    RunnerStopping {
        runner: RunnerId,
    },
    /// The runner process exited (shutdown, fatal eviction).
    RunnerExit {
        runner: RunnerId,
        reason: String,
    },

    // ---- edge ------------------------------------------------------------------------------
    SubscriptionConfirmed {
        runner: RunnerId,
        conn: ConnId,
    },
    Registered {
        runner: RunnerId,
        conn: ConnId,
        epoch: u64,
    },
    MetadataCommitted {
        runner: RunnerId,
        conn: ConnId,
        epoch: u64,
    },
    ReplayPage {
        runner: RunnerId,
        conn: ConnId,
        keys: usize,
    },
    ReplayDone {
        runner: RunnerId,
        conn: ConnId,
    },
    /// A live command was dropped because its key no longer exists.
    LiveCommandDropped {
        runner: RunnerId,
        conn: ConnId,
        actor: ActorId,
        generation: u32,
        index: i64,
    },
    /// A command frame was written to the runner (replay or live).
    CommandsSent {
        runner: RunnerId,
        conn: ConnId,
        replay: bool,
        checkpoints: Vec<(ActorId, u32, i64)>,
    },
    /// A start command's bundle was fetched for a delivery.
    PreloadFetched {
        runner: RunnerId,
        conn: ConnId,
        actor: ActorId,
        generation: u32,
        read_version: Option<Version>,
        budget: u64,
        manifest_json: Option<String>,
        bundle: Option<PreloadedKv>,
        attempts: u32,
        failed: bool,
    },
    DemuxEnqueue {
        conn: ConnId,
        actor: ActorId,
        events: usize,
    },
    DemuxRemove {
        conn: ConnId,
        actor: ActorId,
    },
    /// Events discarded when a demuxer flush ran out of time (safe: the runner re-sends).
    DemuxDiscard {
        conn: ConnId,
        actor: ActorId,
        events: usize,
    },
    /// A KV request was answered; `mutation_version` is set when a mutation committed.
    KvAnswered {
        runner: RunnerId,
        conn: ConnId,
        epoch: u64,
        actor: ActorId,
        request_id: u32,
        placement_generation: Option<u32>,
        mutation_version: Option<Version>,
        error: Option<String>,
    },
    /// The edge deleted acknowledged command keys of the sending runner.
    CommandAckApplied {
        runner: RunnerId,
        conn: ConnId,
        actor: ActorId,
        generation: u32,
        index: i64,
    },
    EdgeConnClosed {
        runner: Option<RunnerId>,
        conn: ConnId,
        reason: String,
    },
    Ready {
        runner: RunnerId,
        conn: ConnId,
        epoch: u64,
        eligible: bool,
    },
    Teardown {
        runner: RunnerId,
        conn: ConnId,
        epoch: u64,
        current: bool,
    },
    Drain {
        runner: RunnerId,
        allocations: Vec<(ActorId, u32)>,
    },
    LivenessWrite {
        runner: RunnerId,
        conn: ConnId,
        epoch: u64,
        seq: u64,
    },

    // ---- workflow --------------------------------------------------------------------------
    ActorCreated {
        actor: ActorId,
        namespace: String,
        name: String,
        pool: String,
        crash_policy: CrashPolicy,
    },
    /// One workflow step: the signals it consumed (summaries) or the timer it ran.
    WorkflowStep {
        actor: ActorId,
        consumed: Vec<String>,
    },
    EventClassified {
        actor: ActorId,
        runner: RunnerId,
        generation: u32,
        index: i64,
        class: EventClass,
        event: Event,
    },
    CommandPersisted {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
        index: i64,
        kind: CommandKind,
    },
    /// An ack of events `<= index` of `(A, g)` was published to `R`'s runner topic.
    EventAckPublished {
        runner: RunnerId,
        actor: ActorId,
        generation: u32,
        index: i64,
    },
    EndGeneration {
        actor: ActorId,
        runner: RunnerId,
        generation: u32,
        outcome: EndOutcome,
        inputs: DispositionInputs,
        disposition: Disposition,
    },
    StatusChanged {
        actor: ActorId,
        from: Option<ActorStatus>,
        to: ActorStatus,
    },

    // ---- registry --------------------------------------------------------------------------
    Allocated {
        actor: ActorId,
        runner: RunnerId,
        generation: u32,
    },
    PendingEnqueue {
        actor: ActorId,
        generation: u32,
    },
    PendingDequeue {
        actor: ActorId,
        generation: u32,
    },
    Expired {
        runner: RunnerId,
        lost: Vec<(ActorId, u32)>,
    },
    Retired {
        runner: RunnerId,
    },

    // ---- probes ----------------------------------------------------------------------------
    /// A rare path was reached (coverage probe). Names are stable, kebab-case.
    Probe {
        name: String,
    },
}

/// Metadata of a preloaded entry as facts carry it (re-exported for checkers).
pub type EntryMetadata = KvMetadata;
