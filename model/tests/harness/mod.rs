//! The deterministic in-test harness: one [`World`] that owns a [`Store`], one core node
//! ([`Core`]), any number of edge nodes with their [`EdgeConn`]s, any number of
//! [`RunnerClient`]s, the pub/sub bus, the signal bus and a virtual clock, and shuttles every
//! output of every component to where it goes. No simulator and no madsim: a single-threaded
//! discrete-event loop over one priority queue.
//!
//! Owns: the event queue (virtual time, ties in insertion order), the nodes' memory (random
//! streams, wall-clock skews, incarnations), the connections' transport state, the confirmed bus
//! subscriptions, the scripted interceptors (hold / drop / duplicate / delay of frames, bus
//! deliveries and signals), the scripted store faults, the log of every fact and frame, and the
//! invariant checks it can make from what it shuttles. It must not reach into a component's
//! private state: it calls the public interface and reads the store, as a simulator would.
//!
//! Execution model (the choices this harness makes where the components leave them open):
//! - **Time.** Every node's monotonic clock is the global virtual time (clock rates are equal,
//!   `spec/protocol.md` §0); a node's wall clock is `WALL_EPOCH_MS + now + skew`. Timers of every
//!   component sit in the one queue at their `at_ms`.
//! - **Latencies** ([`Latencies`]): a frame takes `link_ms` in each direction (FIFO per
//!   direction, since every frame of a direction has the same delay), a bus delivery `bus_ms`, a
//!   signal delivery `signal_ms`, a subscription confirmation `subscribe_ms`, and an engine
//!   output addressed to the core (`WakeWorkflow`, `TriggerDrainer`) `engine_ms`.
//! - **Connect.** A runner `Connect` gets a fresh [`ConnId`] and an edge node (round robin over
//!   the live edge nodes, or the one [`World::route_next_connect`] names); the edge accepts it
//!   `link_ms` later and the runner's `on_open` follows `link_ms` after that, before any frame of
//!   the edge. A connect to a partitioned runner fails (`on_connect_failed`) after `link_ms`.
//! - **Publish** happens as an event on the publishing node at the time of the output; it reaches
//!   the subscriptions confirmed by then (`spec/protocol.md` §1.7). A node that crashes before
//!   that event loses the publish ("publishes in progress" are memory, §1.8).
//! - **Signals** from a demuxer are delivered with `engine::signal::deliver` (one enqueue
//!   transaction on the sending edge node); the result goes back to the sending connection (if it
//!   still exists) and an `Enqueued` signal wakes the workflow (`Core::on_wake`).
//! - **Closes.** A close by one side reaches the other side `link_ms` later, after the frames sent
//!   before it. [`World::reset`] severs a connection: frames in flight are lost and the chosen
//!   sides notice at once.
//! - **Crashes.** An edge-node crash drops its connections without teardown (the runners notice a
//!   reset); a core crash drops the core's memory, its timers and its publishes in progress; a
//!   runner crash drops the process (its instances end with it) and the edges notice the reset.
//!
//! - **Partitions.** A partitioned runner's frames in either direction, its closes and its
//!   connects are lost; everything else goes on (so a silent runner is fenced, and its edge times
//!   out and stops writing liveness).
//!
//! Checks made while shuttling (collected as violations, reported by [`World::check`] and added
//! to every flow failure):
//! - S11: every frame decodes and fits the frame limit; the first frame of each side
//!   (`ToEnvoyInit` once, `ToRivetMetadata`); no other runner frame before Init; no command frame
//!   before the metadata commit; at most `frame_max_commands` per command frame; every replay
//!   frame before every live command or event-ack frame (§2.5);
//! - §6.3: `ToEnvoyInit` and every `ToEnvoyPing` within `max_step_delay_ms` of a registration
//!   or liveness write of their connection;
//! - §7.1: every delivered `Start` carries the bundle fetched for that delivery, equal to a
//!   fresh read of the store (unless the fetch failed), and no hibernating requests;
//! - S2: the `Start`s of an actor are persisted for generations 0, 1, 2, …; S6: each command
//!   key is persisted once; S4: the applied indices of every `(A, g)` are `0, 1, …` in order;
//!   S7: each command is executed at most once per runner; S10: no command of `(A, g)` reaches a
//!   runner on its current connection after it dropped that tombstone;
//! - §4.3 demuxer accounting: every event accepted on a connection is handed to the signal bus
//!   (in order), still queued, or recorded as discarded at the flush deadline.
//!
//! Must not touch: `model/src/` (this is a test of it) and nothing global: every world is a value.
#![allow(dead_code)]

pub mod flows;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use pegsim_model::canary::Canaries;
use pegsim_model::config::EngineConfig;
use pegsim_model::engine::actor::{self, state, ActorSpec, WorkflowState};
use pegsim_model::engine::bus::{BusMessage, Topic};
use pegsim_model::engine::cmdlog;
use pegsim_model::engine::conn::{EdgeConn, EdgeOutput, EdgeTimer};
use pegsim_model::engine::core::{Core, CoreOutput, CoreTimer};
use pegsim_model::engine::edge_txn;
use pegsim_model::engine::signal::{self, DeliverError, EnqueueResult, Signal};
use pegsim_model::engine::EngineOutput;
use pegsim_model::env::{Env, Faults, RunnerEnv, SplitMix};
use pegsim_model::fact::{ActorStatus, CommandDisposition, ConnId, EventClass, Fact, TxnLabel};
use pegsim_model::keys::{self, ActorId, RunnerId};
use pegsim_model::preload;
use pegsim_model::protocol as p;
use pegsim_model::records::{KvEntryRecord, Placement, RunnerInfo};
use pegsim_model::runner::{AppAction, RunnerClient, RunnerConfig, RunnerOutput, RunnerTimer};
use pegsim_model::store::{CommitFault, KeyRange, ReadMode, Store};
use pegsim_model::wire::{self, Codec, DataFrame};

/// Wall-clock value of virtual time 0 on an unskewed node.
pub const WALL_EPOCH_MS: i64 = 1_700_000_000_000;

/// Steps one `run_*` call may take before it gives up (a runaway loop is a harness failure).
pub const MAX_STEPS_PER_RUN: usize = 2_000_000;

// ---- nodes -------------------------------------------------------------------------------------

/// A node of the world, as the log names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Core,
    Edge(usize),
    Runner(usize),
    /// The client of the engine that creates, wakes and destroys actors.
    Api,
    /// The harness itself (notes about what it did).
    Harness,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Core => f.write_str("core"),
            Node::Edge(n) => write!(f, "edge{n}"),
            Node::Runner(n) => write!(f, "runner{n}"),
            Node::Api => f.write_str("api"),
            Node::Harness => f.write_str("harness"),
        }
    }
}

/// The memory every node has, whatever runs on it.
#[derive(Clone, Debug)]
struct NodeState {
    rng: SplitMix,
    wall_skew_ms: i64,
    /// Bumped at every crash: events addressed to an older incarnation are dropped.
    incarnation: u64,
    up: bool,
}

impl NodeState {
    fn new(seed: u64) -> Self {
        NodeState { rng: SplitMix(seed), wall_skew_ms: 0, incarnation: 0, up: true }
    }

    fn wall(&self, now: u64) -> i64 {
        WALL_EPOCH_MS + now as i64 + self.wall_skew_ms
    }
}

// ---- faults ------------------------------------------------------------------------------------

/// Store faults scripted per transaction label: each commit attempt of a label takes the next
/// queued fault of that label, if any.
#[derive(Clone, Debug, Default)]
pub struct ScriptedFaults {
    pub commit: BTreeMap<TxnLabel, VecDeque<CommitFault>>,
    /// Number of upcoming preload reads that fail with a retryable error.
    pub preload_failures: u32,
    /// Every fault handed out, in order.
    pub injected: Vec<(TxnLabel, CommitFault)>,
}

impl ScriptedFaults {
    /// Queue `fault` for the next commit attempt labelled `label`.
    pub fn inject(&mut self, label: TxnLabel, fault: CommitFault) {
        self.commit.entry(label).or_default().push_back(fault);
    }
}

impl Faults for ScriptedFaults {
    fn commit_fault(&mut self, label: TxnLabel) -> Option<CommitFault> {
        let fault = self.commit.get_mut(&label)?.pop_front()?;
        self.injected.push((label, fault));
        Some(fault)
    }

    fn preload_read_fault(&mut self) -> bool {
        if self.preload_failures > 0 {
            self.preload_failures -= 1;
            true
        } else {
            false
        }
    }
}

// ---- messages, interceptors --------------------------------------------------------------------

/// Something in flight that an interceptor may hold, drop, duplicate or delay.
#[derive(Clone, Debug)]
pub enum Msg {
    /// A frame from the runner to the edge.
    ToEdge { conn: ConnId, bytes: Vec<u8> },
    /// A frame from the edge to the runner.
    ToRunner { conn: ConnId, bytes: Vec<u8> },
    /// A bus delivery to one subscribed connection.
    Bus { conn: ConnId, topic: Topic, message: BusMessage },
    /// A demuxer batch on the signal bus.
    Signal { conn: ConnId, actor: ActorId, signal: Signal, token: u64 },
}

impl Msg {
    /// The connection the message belongs to.
    pub fn conn(&self) -> ConnId {
        match self {
            Msg::ToEdge { conn, .. }
            | Msg::ToRunner { conn, .. }
            | Msg::Bus { conn, .. }
            | Msg::Signal { conn, .. } => *conn,
        }
    }

    /// The decoded runner frame, for `ToEdge`.
    pub fn to_rivet(&self) -> Option<p::ToRivet> {
        match self {
            Msg::ToEdge { bytes, .. } => Codec::new(usize::MAX).decode_to_rivet(bytes).ok(),
            _ => None,
        }
    }

    /// The decoded engine frame, for `ToRunner`.
    pub fn to_envoy(&self) -> Option<p::ToEnvoy> {
        match self {
            Msg::ToRunner { bytes, .. } => Codec::new(usize::MAX).decode_to_envoy(bytes).ok(),
            _ => None,
        }
    }

    /// The decoded runner-topic payload, for `Bus`.
    pub fn bus_payload(&self) -> Option<p::ToEnvoyConn> {
        match self {
            Msg::Bus { message: BusMessage::Runner(bytes), .. } => wire::decode_bus(bytes).ok(),
            _ => None,
        }
    }

    /// Whether this is an eviction-topic delivery.
    pub fn is_eviction(&self) -> bool {
        matches!(self, Msg::Bus { message: BusMessage::Eviction { .. }, .. })
    }

    /// A one-line description for the log.
    pub fn describe(&self) -> String {
        match self {
            Msg::ToEdge { conn, bytes } => {
                format!("frame {conn} runner->edge {}", frame_kind_rivet(bytes))
            }
            Msg::ToRunner { conn, bytes } => {
                format!("frame {conn} edge->runner {}", frame_kind_envoy(bytes))
            }
            Msg::Bus { conn, topic, message } => {
                let kind = match message {
                    BusMessage::Eviction { epoch } => format!("eviction {{epoch: {epoch}}}"),
                    BusMessage::Runner(bytes) => match wire::decode_bus(bytes) {
                        Ok(m) => wire::to_envoy_conn_kind(&m).to_string(),
                        Err(_) => "undecodable".to_string(),
                    },
                };
                let topic = match topic {
                    Topic::Runner(_) => "runner",
                    Topic::Eviction(_) => "eviction",
                };
                format!("bus {conn} {topic} {kind}")
            }
            Msg::Signal { conn, actor, signal, token } => {
                format!("signal {conn} token {token} to {actor}: {}", signal.summary())
            }
        }
    }
}

fn frame_kind_rivet(bytes: &[u8]) -> String {
    match Codec::new(usize::MAX).decode_to_rivet(bytes) {
        Ok(m) => wire::to_rivet_kind(&m).to_string(),
        Err(_) => "undecodable".to_string(),
    }
}

fn frame_kind_envoy(bytes: &[u8]) -> String {
    match Codec::new(usize::MAX).decode_to_envoy(bytes) {
        Ok(m) => wire::to_envoy_kind(&m).to_string(),
        Err(_) => "undecodable".to_string(),
    }
}

/// What an interceptor does to a matching message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The message is lost.
    Drop,
    /// The message waits until [`World::release`] (or is lost if its connection ends first).
    Hold,
    /// The message is delivered twice, the copy `extra_delay_ms` after the original.
    Duplicate { extra_delay_ms: u64 },
    /// The message is delivered this much later than usual.
    Delay(u64),
}

/// A message matcher.
pub type Matcher = Box<dyn FnMut(&Msg) -> bool>;

struct Rule {
    id: u64,
    matcher: Matcher,
    action: Action,
    /// How many more messages it applies to (`None`: every one).
    remaining: Option<u32>,
}

/// Matchers for the usual cases.
pub mod matchers {
    use super::*;

    /// A runner frame of kind `kind` (e.g. `"ToRivetEvents"`) on `conn`.
    pub fn to_edge(conn: ConnId, kind: &'static str) -> Matcher {
        Box::new(move |m| {
            m.conn() == conn && m.to_rivet().is_some_and(|f| wire::to_rivet_kind(&f) == kind)
        })
    }

    /// Any engine frame on `conn`.
    pub fn any_to_runner(conn: ConnId) -> Matcher {
        Box::new(move |m| matches!(m, Msg::ToRunner { conn: c, .. } if *c == conn))
    }

    /// An engine frame of kind `kind` on `conn`.
    pub fn to_runner(conn: ConnId, kind: &'static str) -> Matcher {
        Box::new(move |m| {
            m.conn() == conn && m.to_envoy().is_some_and(|f| wire::to_envoy_kind(&f) == kind)
        })
    }

    /// A runner frame on `conn` that is `ToRivetAckCommands` naming `actor`.
    pub fn command_ack_of(conn: ConnId, actor: &str) -> Matcher {
        let actor = actor.to_string();
        Box::new(move |m| {
            m.conn() == conn
                && matches!(m.to_rivet(), Some(p::ToRivet::ToRivetAckCommands(a))
                    if a.last_command_checkpoints.iter().any(|c| c.actor_id.as_str() == actor))
        })
    }

    /// A runner frame on `conn` that is `ToRivetEvents` holding an event of `actor`.
    pub fn events_of(conn: ConnId, actor: &str) -> Matcher {
        let actor = actor.to_string();
        Box::new(move |m| {
            m.conn() == conn
                && matches!(m.to_rivet(), Some(p::ToRivet::ToRivetEvents(e))
                    if e.iter().any(|w| w.checkpoint.actor_id.as_str() == actor))
        })
    }

    /// A runner-topic bus delivery to `conn` holding commands of `actor`.
    pub fn bus_commands_of(conn: ConnId, actor: &str) -> Matcher {
        let actor = actor.to_string();
        Box::new(move |m| {
            m.conn() == conn
                && matches!(m.bus_payload(), Some(p::ToEnvoyConn::ToEnvoyCommands(c))
                    if c.iter().any(|w| w.checkpoint.actor_id.as_str() == actor))
        })
    }

    /// An eviction-topic delivery to `conn`.
    pub fn eviction_to(conn: ConnId) -> Matcher {
        Box::new(move |m| m.conn() == conn && m.is_eviction())
    }

    /// A demuxer signal from `conn` to `actor`.
    pub fn signal_from(conn: ConnId, actor: &str) -> Matcher {
        let actor = actor.to_string();
        Box::new(
            move |m| matches!(m, Msg::Signal { conn: c, actor: a, .. } if *c == conn && *a == actor),
        )
    }
}

// ---- log ---------------------------------------------------------------------------------------

/// Direction of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Runner to engine (`ToRivet`).
    ToEngine,
    /// Engine to runner (`ToEnvoy`).
    ToRunner,
}

/// A frame as it was handed to the transport.
#[derive(Clone, Debug)]
pub struct FrameRec {
    pub conn: ConnId,
    pub dir: Dir,
    pub bytes: Vec<u8>,
    pub rivet: Option<p::ToRivet>,
    pub envoy: Option<p::ToEnvoy>,
}

/// One item of the log.
#[derive(Clone, Debug)]
pub enum Item {
    Fact(Fact),
    Frame(FrameRec),
    /// What the harness did or decided (deliveries dropped, crashes, holds).
    Note(String),
}

/// One log entry, stamped with the virtual time and the node.
#[derive(Clone, Debug)]
pub struct Entry {
    pub at: u64,
    pub node: Node,
    pub item: Item,
}

impl Entry {
    /// The entry as one line (the canonical form compared for determinism).
    pub fn render(&self) -> String {
        let body = match &self.item {
            Item::Fact(f) => format!(
                "fact {}",
                serde_json::to_string(f).unwrap_or_else(|e| format!("<unserializable: {e}>"))
            ),
            Item::Frame(fr) => {
                let dir = match fr.dir {
                    Dir::ToEngine => "runner->edge",
                    Dir::ToRunner => "edge->runner",
                };
                let decoded = match (&fr.rivet, &fr.envoy) {
                    (Some(m), _) => serde_json::to_string(m).unwrap_or_default(),
                    (_, Some(m)) => serde_json::to_string(m).unwrap_or_default(),
                    _ => "undecodable".to_string(),
                };
                format!(
                    "frame {} {dir} {} bytes fnv {:016x} {decoded}",
                    fr.conn,
                    fr.bytes.len(),
                    fnv1a64(&fr.bytes)
                )
            }
            Item::Note(n) => format!("note {n}"),
        };
        format!("{:>9} {:<8} {body}", self.at, self.node.to_string())
    }
}

/// FNV-1a 64 (stable across runs and builds).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

// ---- connections and runners -------------------------------------------------------------------

/// A bundle fetched for one delivery: the bundle and whether the fetch failed.
type Fetched = (Option<p::PreloadedKv>, bool);

/// The transport and bookkeeping of one connection.
pub struct ConnState {
    pub runner: usize,
    pub edge_node: usize,
    edge_incarnation: u64,
    edge: Option<EdgeConn>,
    /// The edge side has not closed, noticed a close, or crashed.
    pub edge_open: bool,
    /// The runner side has not closed or noticed a close.
    pub runner_open: bool,
    /// Reset: frames in flight are lost.
    pub severed: bool,
    /// The edge node crashed under it (no accounting possible).
    pub edge_crashed: bool,
    /// The edge connection finished (torn down and drained) and was dropped.
    pub edge_finished: bool,
    engine_frames: usize,
    runner_frames: usize,
    runner_got_init: bool,
    /// The metadata transaction of this connection committed.
    metadata_committed: bool,
    /// Virtual time of the last registration or liveness write of this connection.
    last_authorization: Option<u64>,
    /// Replay flags of the `CommandsSent` facts not yet matched with their frame.
    pending_sent: VecDeque<bool>,
    /// A live command frame or an event ack was sent.
    saw_live: bool,
    /// Bundles fetched for deliveries, not yet matched with their frame: `(actor, g) -> fetches`.
    pending_fetches: BTreeMap<(ActorId, u32), VecDeque<Fetched>>,
    /// Event checkpoints `(g, i)` accepted on this connection (frames delivered while open).
    ingested: BTreeMap<ActorId, Vec<(u32, i64)>>,
    /// Event checkpoints handed to the signal bus (first attempt of each batch).
    signalled: BTreeMap<ActorId, Vec<(u32, i64)>>,
    /// Actors whose last batch failed: their next signal is a retry.
    retrying: BTreeSet<ActorId>,
    /// Events discarded at the flush deadline (`DemuxDiscard`).
    discarded: BTreeMap<ActorId, usize>,
}

/// One runner process slot.
pub struct RunnerSlot {
    client: Option<RunnerClient>,
    node: NodeState,
    pub id: RunnerId,
    pub config: RunnerConfig,
    pub exited: bool,
    pub crashed: bool,
}

/// Latencies of the world's transports (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latencies {
    pub link_ms: u64,
    pub bus_ms: u64,
    pub signal_ms: u64,
    pub subscribe_ms: u64,
    pub engine_ms: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies { link_ms: 1, bus_ms: 1, signal_ms: 1, subscribe_ms: 1, engine_ms: 0 }
    }
}

/// How a world is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub config: EngineConfig,
    pub canaries: Canaries,
    pub edge_nodes: usize,
    pub latencies: Latencies,
}

impl Setup {
    /// The default deployment, two edge nodes, default latencies.
    pub fn new(canaries: Canaries) -> Self {
        Setup {
            config: EngineConfig::default(),
            canaries,
            edge_nodes: 2,
            latencies: Latencies::default(),
        }
    }
}

// ---- events ------------------------------------------------------------------------------------

enum Ev {
    Deliver(Msg),
    Accept { conn: ConnId, path: String, subprotocols: Vec<String> },
    RunnerOpen { conn: ConnId },
    ConnectFailed { runner: usize, conn: ConnId },
    EdgePeerClosed { conn: ConnId },
    RunnerPeerClosed { conn: ConnId, reason: Option<String> },
    SubscribeConfirm { conn: ConnId, topics: Vec<Topic> },
    Publish { node: Node, incarnation: u64, topic: Topic, message: BusMessage },
    CoreWake { incarnation: u64, actor: ActorId },
    CoreDrain { incarnation: u64, namespace: String, pool: String },
    CoreTimer { incarnation: u64, timer: CoreTimer },
    EdgeTimer { conn: ConnId, incarnation: u64, timer: EdgeTimer },
    RunnerTimer { runner: usize, timer: RunnerTimer },
}

impl Ev {
    fn is_timer(&self) -> bool {
        matches!(self, Ev::CoreTimer { .. } | Ev::EdgeTimer { .. } | Ev::RunnerTimer { .. })
    }
}

// ---- the world ---------------------------------------------------------------------------------

/// The whole deterministic world. See the module comment.
pub struct World {
    pub now: u64,
    pub store: Store,
    pub config: EngineConfig,
    pub canaries: Canaries,
    pub faults: ScriptedFaults,
    pub lat: Latencies,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    core: Option<Core>,
    core_node: NodeState,
    edge_nodes: Vec<NodeState>,
    api_node: NodeState,
    pub conns: BTreeMap<ConnId, ConnState>,
    pub runners: Vec<RunnerSlot>,
    subs: BTreeMap<Topic, BTreeSet<ConnId>>,
    rules: Vec<Rule>,
    next_rule: u64,
    held: BTreeMap<u64, Msg>,
    next_hold: u64,
    next_conn: u64,
    next_route: usize,
    route_override: Option<usize>,
    partitioned: BTreeSet<usize>,
    pub log: Vec<Entry>,
    violations: Vec<String>,
    /// Next expected applied index per `(A, g)` (S4).
    applied_next: BTreeMap<(ActorId, u32), i64>,
    /// Commands executed per runner (S7).
    executed: BTreeSet<(RunnerId, ActorId, u32, i64)>,
    /// Command keys persisted (S6).
    persisted: BTreeSet<(RunnerId, ActorId, u32, i64)>,
    /// Next generation whose `Start` may be persisted, per actor (S2).
    next_generation: BTreeMap<ActorId, u32>,
    /// Tombstones dropped per runner (S10).
    tombstones: BTreeSet<(RunnerId, ActorId, u32)>,
}

impl World {
    /// A world with no core running yet (call [`World::start_core`]) and no runner.
    pub fn new(setup: Setup) -> World {
        World {
            now: 0,
            store: Store::default(),
            config: setup.config,
            canaries: setup.canaries,
            faults: ScriptedFaults::default(),
            lat: setup.latencies,
            queue: BTreeMap::new(),
            seq: 0,
            core: None,
            core_node: NodeState { up: false, ..NodeState::new(1) },
            edge_nodes: (0..setup.edge_nodes).map(|n| NodeState::new(100 + n as u64)).collect(),
            api_node: NodeState::new(7),
            conns: BTreeMap::new(),
            runners: Vec::new(),
            subs: BTreeMap::new(),
            rules: Vec::new(),
            next_rule: 0,
            held: BTreeMap::new(),
            next_hold: 0,
            next_conn: 1,
            next_route: 0,
            route_override: None,
            partitioned: BTreeSet::new(),
            log: Vec::new(),
            violations: Vec::new(),
            applied_next: BTreeMap::new(),
            executed: BTreeSet::new(),
            persisted: BTreeSet::new(),
            next_generation: BTreeMap::new(),
            tombstones: BTreeSet::new(),
        }
    }

    // ---- scheduling ----------------------------------------------------------------------------

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    fn note(&mut self, node: Node, text: impl Into<String>) {
        self.log.push(Entry { at: self.now, node, item: Item::Note(text.into()) });
    }

    fn violation(&mut self, text: String) {
        self.note(Node::Harness, format!("VIOLATION {text}"));
        self.violations.push(format!("t={} {text}", self.now));
    }

    /// Process the next event. Returns false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.iter().next() else { return false };
        let Some(ev) = self.queue.remove(&(at, seq)) else { return false };
        self.now = self.now.max(at);
        self.dispatch(ev);
        true
    }

    /// Process every event due at or before `t`, then set the clock to `t`.
    pub fn run_until(&mut self, t: u64) {
        let mut steps = 0;
        while self.queue.keys().next().is_some_and(|&(at, _)| at <= t) {
            self.step();
            steps += 1;
            assert!(steps < MAX_STEPS_PER_RUN, "run_until({t}): runaway event loop");
        }
        self.now = self.now.max(t);
    }

    /// Run for `ms` of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        let t = self.now + ms;
        self.run_until(t);
    }

    /// Process events until only timers remain in the queue (nothing is in flight).
    pub fn run_until_idle(&mut self) {
        let mut steps = 0;
        while self.queue.values().any(|e| !e.is_timer()) {
            self.step();
            steps += 1;
            assert!(steps < MAX_STEPS_PER_RUN, "run_until_idle: runaway event loop");
        }
    }

    /// Step until `pred` holds for a log entry appended after the call began, or until
    /// `deadline` (virtual time) passes. Returns the index of the matching entry.
    pub fn run_until_log(
        &mut self,
        deadline: u64,
        mut pred: impl FnMut(&Entry) -> bool,
    ) -> Result<usize, String> {
        let mut seen = self.log.len();
        loop {
            if let Some(i) = self.log[seen..].iter().position(&mut pred) {
                return Ok(seen + i);
            }
            seen = self.log.len();
            let next = self.queue.keys().next().map(|&(at, _)| at);
            match next {
                Some(at) if at <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return Err(format!("no matching log entry until t={deadline}"));
                }
            }
        }
    }

    /// [`World::run_until_log`] for a fact.
    pub fn run_until_fact(
        &mut self,
        deadline: u64,
        mut pred: impl FnMut(&Fact) -> bool,
    ) -> Result<usize, String> {
        self.run_until_log(deadline, |e| matches!(&e.item, Item::Fact(f) if pred(f)))
    }

    // ---- interceptors --------------------------------------------------------------------------

    /// Apply `action` to the next `times` messages matching `matcher` (every one with `None`).
    /// Returns the rule id.
    pub fn intercept(&mut self, action: Action, times: Option<u32>, matcher: Matcher) -> u64 {
        self.next_rule += 1;
        let id = self.next_rule;
        self.rules.push(Rule { id, matcher, action, remaining: times });
        id
    }

    /// Remove an interceptor.
    pub fn remove_rule(&mut self, id: u64) {
        self.rules.retain(|r| r.id != id);
    }

    /// Ids of the held messages, oldest first.
    pub fn held(&self) -> Vec<u64> {
        self.held.keys().copied().collect()
    }

    /// A held message.
    pub fn held_message(&self, id: u64) -> Option<&Msg> {
        self.held.get(&id)
    }

    /// Deliver held message `id` now.
    pub fn release(&mut self, id: u64) {
        if let Some(msg) = self.held.remove(&id) {
            self.note(Node::Harness, format!("release #{id}: {}", msg.describe()));
            self.schedule(self.now, Ev::Deliver(msg));
        }
    }

    /// Deliver every held message now, oldest first.
    pub fn release_all(&mut self) {
        for id in self.held() {
            self.release(id);
        }
    }

    /// Send `msg` through the interceptors and schedule it `delay` from now.
    fn dispatch_msg(&mut self, msg: Msg, delay: u64) {
        let mut action = None;
        for rule in &mut self.rules {
            if rule.remaining == Some(0) {
                continue;
            }
            if (rule.matcher)(&msg) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                action = Some(rule.action);
                break;
            }
        }
        self.rules.retain(|r| r.remaining != Some(0));
        match action {
            None => self.schedule(self.now + delay, Ev::Deliver(msg)),
            Some(Action::Drop) => self.note(Node::Harness, format!("drop {}", msg.describe())),
            Some(Action::Hold) => {
                self.next_hold += 1;
                let id = self.next_hold;
                self.note(Node::Harness, format!("hold #{id}: {}", msg.describe()));
                self.held.insert(id, msg);
            }
            Some(Action::Duplicate { extra_delay_ms }) => {
                self.note(Node::Harness, format!("duplicate {}", msg.describe()));
                self.schedule(self.now + delay, Ev::Deliver(msg.clone()));
                self.schedule(self.now + delay + extra_delay_ms, Ev::Deliver(msg));
            }
            Some(Action::Delay(extra)) => {
                self.note(Node::Harness, format!("delay {extra} ms {}", msg.describe()));
                self.schedule(self.now + delay + extra, Ev::Deliver(msg));
            }
        }
    }

    // ---- topology control ----------------------------------------------------------------------

    /// Boot the core node (a new `Core` and `start` on the store).
    pub fn start_core(&mut self) {
        self.core_node.up = true;
        self.core = Some(Core::new(self.config.clone()));
        self.note(Node::Core, format!("core start (incarnation {})", self.core_node.incarnation));
        self.with_core(|core, env| core.start(env));
    }

    /// Crash the core node: its memory, timers and publishes in progress are lost.
    pub fn crash_core(&mut self) {
        self.core = None;
        self.core_node.up = false;
        self.core_node.incarnation += 1;
        self.note(Node::Core, "core crash");
    }

    /// Crash and restart the core node.
    pub fn restart_core(&mut self) {
        if self.core_node.up {
            self.crash_core();
        }
        self.start_core();
    }

    /// Skew the wall clock of a node by `skew_ms` (relative to virtual time).
    pub fn skew_wall(&mut self, node: Node, skew_ms: i64) {
        match node {
            Node::Core => self.core_node.wall_skew_ms = skew_ms,
            Node::Edge(n) => self.edge_nodes[n].wall_skew_ms = skew_ms,
            Node::Runner(i) => self.runners[i].node.wall_skew_ms = skew_ms,
            Node::Api => self.api_node.wall_skew_ms = skew_ms,
            Node::Harness => {}
        }
        self.note(Node::Harness, format!("wall clock of {node} skewed by {skew_ms} ms"));
    }

    /// Route the next runner connect to edge node `node`.
    pub fn route_next_connect(&mut self, node: usize) {
        self.route_override = Some(node);
    }

    /// Crash edge node `node`: its connections end without teardown; their runners notice.
    pub fn crash_edge(&mut self, node: usize) {
        self.edge_nodes[node].up = false;
        self.edge_nodes[node].incarnation += 1;
        self.note(Node::Edge(node), "edge node crash");
        let conns: Vec<ConnId> =
            self.conns.iter().filter(|(_, c)| c.edge_node == node).map(|(id, _)| *id).collect();
        for conn in conns {
            self.drop_subscriptions(conn);
            let link = self.lat.link_ms;
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            let had_edge = c.edge.take().is_some();
            c.edge_open = false;
            if had_edge {
                c.edge_crashed = true;
            }
            let notify = c.runner_open && !c.severed;
            c.severed = true;
            if notify {
                self.schedule(self.now + link, Ev::RunnerPeerClosed { conn, reason: None });
            }
        }
    }

    /// Bring a crashed edge node back (empty).
    pub fn restart_edge(&mut self, node: usize) {
        self.edge_nodes[node].up = true;
        self.note(Node::Edge(node), "edge node restart");
    }

    /// Reset connection `conn`: frames in flight are lost; the edge notices if `edge`, the runner
    /// if `runner` (a side that does not notice keeps the connection half-open).
    pub fn reset(&mut self, conn: ConnId, edge: bool, runner: bool) {
        self.note(
            Node::Harness,
            format!("reset {conn} (edge notices: {edge}, runner notices: {runner})"),
        );
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if edge && runner {
            c.severed = true;
        }
        if edge && c.edge_open {
            self.schedule(self.now, Ev::EdgePeerClosed { conn });
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if runner && c.runner_open {
            c.runner_open = false;
            self.schedule(self.now, Ev::RunnerPeerClosed { conn, reason: None });
        }
    }

    /// Partition runner `i` from the engine: its frames in either direction and its closes are
    /// lost, and its connects fail.
    pub fn partition_runner(&mut self, i: usize) {
        self.partitioned.insert(i);
        self.note(Node::Harness, format!("partition runner{i}"));
    }

    /// Heal the partition of runner `i`.
    pub fn heal_runner(&mut self, i: usize) {
        self.partitioned.remove(&i);
        self.note(Node::Harness, format!("heal runner{i}"));
    }

    /// Crash runner process `i`: its instances end with it; the edges notice the reset if
    /// `edges_notice`.
    pub fn crash_runner(&mut self, i: usize, edges_notice: bool) {
        self.runners[i].client = None;
        self.runners[i].crashed = true;
        self.note(Node::Runner(i), "runner process crash");
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.runner == i && c.runner_open)
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.runner_open = false;
                c.severed = true;
            }
            if edges_notice {
                self.schedule(self.now + self.lat.link_ms, Ev::EdgePeerClosed { conn });
            }
        }
    }

    // ---- the engine's client -------------------------------------------------------------------

    fn api_call<T>(&mut self, f: impl FnOnce(&mut Env<'_>) -> T) -> T {
        let mut facts = Vec::new();
        let value = {
            let mut env = Env {
                now_ms: self.now,
                wall_ms: self.api_node.wall(self.now),
                store: &mut self.store,
                faults: &mut self.faults,
                rng: &mut self.api_node.rng,
                facts: &mut facts,
                canaries: self.canaries,
            };
            f(&mut env)
        };
        self.record_facts(Node::Api, facts);
        value
    }

    /// Create `actor` (the driver API); its first step runs on the core.
    pub fn create_actor(&mut self, actor: &str, spec: &ActorSpec) -> Result<(), String> {
        let id = actor.to_string();
        let out = self.api_call(|env| actor::create_actor(env, &id, spec));
        let out = out.map_err(|e| e.to_string())?;
        self.engine_outputs(Node::Api, 0, out);
        Ok(())
    }

    /// Deliver `Wake` to `actor`.
    pub fn wake_actor(&mut self, actor: &str) -> Result<(), String> {
        let id = actor.to_string();
        let out = self.api_call(|env| actor::wake_actor(env, &id)).map_err(|e| e.to_string())?;
        self.engine_outputs(Node::Api, 0, out);
        Ok(())
    }

    /// Deliver `Destroy` to `actor`.
    pub fn destroy_actor(&mut self, actor: &str) -> Result<(), String> {
        let id = actor.to_string();
        let out = self.api_call(|env| actor::destroy_actor(env, &id)).map_err(|e| e.to_string())?;
        self.engine_outputs(Node::Api, 0, out);
        Ok(())
    }

    /// The externally visible status of `actor`.
    pub fn actor_status(&mut self, actor: &str) -> Option<ActorStatus> {
        let id = actor.to_string();
        self.api_call(|env| actor::actor_status(env, &id)).ok().flatten()
    }

    // ---- store reads ---------------------------------------------------------------------------

    fn read<T>(&mut self, f: impl FnOnce(&mut Env<'_>) -> T) -> T {
        let mut facts = Vec::new();
        let mut rng = SplitMix(0);
        let mut faults = pegsim_model::env::NoFaults;
        let mut env = Env {
            now_ms: self.now,
            wall_ms: WALL_EPOCH_MS + self.now as i64,
            store: &mut self.store,
            faults: &mut faults,
            rng: &mut rng,
            facts: &mut facts,
            canaries: self.canaries,
        };
        f(&mut env)
    }

    /// The value of a key (snapshot).
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let key = key.to_vec();
        self.read(|env| {
            let mut txn = env.begin();
            let now = env.now_ms;
            let value = env.store.get(&mut txn, &key, ReadMode::Snapshot, now).ok().flatten();
            env.abort(txn);
            value
        })
    }

    /// Every key of a range (snapshot).
    pub fn keys_in(&mut self, range: KeyRange) -> Vec<Vec<u8>> {
        self.read(|env| {
            let mut txn = env.begin();
            let now = env.now_ms;
            let rows = env.store.get_range(&mut txn, &range, None, false, ReadMode::Snapshot, now);
            env.abort(txn);
            rows.map(|r| r.into_iter().map(|(k, _)| k).collect()).unwrap_or_default()
        })
    }

    /// `runner/R/info`.
    pub fn runner_info(&mut self, runner: &RunnerId) -> Option<RunnerInfo> {
        self.read(|env| edge_txn::read_runner_info(env, runner).ok().flatten())
    }

    /// The command keys of `runner`, as `(A, g, i)`.
    pub fn command_keys(&mut self, runner: &RunnerId) -> Vec<(ActorId, u32, i64)> {
        let keys = self.keys_in(KeyRange::prefix(&keys::runner_cmd_prefix(runner)));
        keys.iter().filter_map(|k| keys::parse_runner_cmd(runner, k).ok()).collect()
    }

    /// `actor/A/placement`.
    pub fn placement(&mut self, actor: &str) -> Option<Placement> {
        let bytes = self.get(&keys::actor_placement(actor))?;
        serde_json::from_slice(&bytes).ok()
    }

    /// `actor/A/state`.
    pub fn workflow_state(&mut self, actor: &str) -> Option<WorkflowState> {
        let actor = actor.to_string();
        self.read(|env| state::load_snapshot(env, &actor).ok().flatten())
    }

    /// The stored value of the actor's KV key `key`.
    pub fn kv_value(&mut self, actor: &str, key: &[u8]) -> Option<Vec<u8>> {
        let bytes = self.get(&keys::actor_kv_key(actor, key))?;
        KvEntryRecord::decode(&bytes).ok().map(|r| r.value)
    }

    /// Whether the eligibility index holds `runner` (any pool / version of its namespace).
    pub fn is_eligible(&mut self, runner: &RunnerId) -> bool {
        let Some(info) = self.runner_info(runner) else { return false };
        self.get(&keys::eligible(&runner.namespace, &info.pool, info.version, runner)).is_some()
    }

    /// Count of a runner's command keys (through the command log's own counter).
    pub fn command_count(&mut self, runner: &RunnerId) -> usize {
        let runner = runner.clone();
        self.read(|env| {
            let mut txn = env.begin();
            let n = cmdlog::count(env, &mut txn, &runner).unwrap_or(usize::MAX);
            env.abort(txn);
            n
        })
    }

    // ---- runners -------------------------------------------------------------------------------

    /// Start a runner process with `config`; returns its index.
    pub fn add_runner(&mut self, config: RunnerConfig) -> usize {
        let i = self.runners.len();
        let mut node = NodeState::new(1_000 + i as u64);
        let mut facts = Vec::new();
        let (client, out) = {
            let mut env = RunnerEnv {
                now_ms: self.now,
                wall_ms: node.wall(self.now),
                rng: &mut node.rng,
                facts: &mut facts,
            };
            RunnerClient::new(&mut env, config.clone())
        };
        let id = client.id();
        self.runners.push(RunnerSlot {
            client: Some(client),
            node,
            id: id.clone(),
            config,
            exited: false,
            crashed: false,
        });
        self.note(Node::Runner(i), format!("runner process start as {id}"));
        self.record_facts(Node::Runner(i), facts);
        self.runner_outputs(i, out);
        i
    }

    /// The identity of runner `i`.
    pub fn runner_id(&self, i: usize) -> RunnerId {
        self.runners[i].id.clone()
    }

    /// Call into runner `i`'s client (nothing if it crashed).
    fn with_runner(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut RunnerClient, &mut RunnerEnv<'_>) -> Vec<RunnerOutput>,
    ) {
        let Some(mut client) = self.runners[i].client.take() else { return };
        let mut facts = Vec::new();
        let out = {
            let node = &mut self.runners[i].node;
            let wall = node.wall(self.now);
            let mut env = RunnerEnv {
                now_ms: self.now,
                wall_ms: wall,
                rng: &mut node.rng,
                facts: &mut facts,
            };
            f(&mut client, &mut env)
        };
        self.runners[i].client = Some(client);
        self.record_facts(Node::Runner(i), facts);
        self.runner_outputs(i, out);
    }

    /// An application action on runner `i`'s live instance of `actor`.
    pub fn app(&mut self, i: usize, actor: &str, action: AppAction) {
        let actor = actor.to_string();
        self.note(Node::Runner(i), format!("app {actor}: {action:?}"));
        self.with_runner(i, |c, env| c.app(env, &actor, action));
    }

    /// Begin runner `i`'s graceful drain.
    pub fn shutdown(&mut self, i: usize) {
        self.note(Node::Runner(i), "shutdown");
        self.with_runner(i, |c, env| c.shutdown(env));
    }

    /// Runner `i`'s live instances.
    pub fn instances(&self, i: usize) -> Vec<(ActorId, u32)> {
        self.runners[i].client.as_ref().map(|c| c.instances()).unwrap_or_default()
    }

    /// Runner `i`'s number of records (instances and tombstones).
    pub fn runner_records(&self, i: usize) -> usize {
        self.runners[i].client.as_ref().map_or(0, |c| c.records())
    }

    /// Runner `i`'s number of unacknowledged events.
    pub fn runner_unacked(&self, i: usize) -> usize {
        self.runners[i].client.as_ref().map_or(0, |c| c.unacked_events())
    }

    /// The connection runner `i` has open.
    pub fn runner_conn(&self, i: usize) -> Option<ConnId> {
        self.runners[i].client.as_ref().and_then(|c| c.open_connection())
    }

    fn runner_outputs(&mut self, i: usize, outputs: Vec<RunnerOutput>) {
        for output in outputs {
            match output {
                RunnerOutput::Connect { path_and_query, subprotocols } => {
                    let conn = ConnId(self.next_conn);
                    self.next_conn += 1;
                    if self.partitioned.contains(&i) {
                        self.note(
                            Node::Harness,
                            format!("connect {conn} of runner{i} fails (partitioned)"),
                        );
                        self.schedule(
                            self.now + self.lat.link_ms,
                            Ev::ConnectFailed { runner: i, conn },
                        );
                        continue;
                    }
                    let node = self.pick_edge_node();
                    let Some(node) = node else {
                        self.schedule(
                            self.now + self.lat.link_ms,
                            Ev::ConnectFailed { runner: i, conn },
                        );
                        continue;
                    };
                    self.conns.insert(
                        conn,
                        ConnState {
                            runner: i,
                            edge_node: node,
                            edge_incarnation: self.edge_nodes[node].incarnation,
                            edge: None,
                            edge_open: false,
                            runner_open: false,
                            severed: false,
                            edge_crashed: false,
                            edge_finished: false,
                            engine_frames: 0,
                            runner_frames: 0,
                            runner_got_init: false,
                            metadata_committed: false,
                            last_authorization: None,
                            pending_sent: VecDeque::new(),
                            saw_live: false,
                            pending_fetches: BTreeMap::new(),
                            ingested: BTreeMap::new(),
                            signalled: BTreeMap::new(),
                            retrying: BTreeSet::new(),
                            discarded: BTreeMap::new(),
                        },
                    );
                    self.note(
                        Node::Runner(i),
                        format!("connect {conn} to edge{node}: {path_and_query}"),
                    );
                    self.schedule(
                        self.now + self.lat.link_ms,
                        Ev::Accept { conn, path: path_and_query, subprotocols },
                    );
                }
                RunnerOutput::Send { conn, bytes } => {
                    self.check_runner_frame(i, conn, &bytes);
                    self.log_frame(Node::Runner(i), conn, Dir::ToEngine, &bytes);
                    if self.partitioned.contains(&i) {
                        self.note(
                            Node::Harness,
                            format!("lost in partition: frame {conn} runner->edge"),
                        );
                        continue;
                    }
                    let link = self.lat.link_ms;
                    self.dispatch_msg(Msg::ToEdge { conn, bytes }, link);
                }
                RunnerOutput::Close { conn, reason } => {
                    self.note(Node::Runner(i), format!("close {conn}: {reason}"));
                    let partitioned = self.partitioned.contains(&i);
                    let Some(c) = self.conns.get_mut(&conn) else { continue };
                    c.runner_open = false;
                    if !partitioned && !c.severed && c.edge_open {
                        self.schedule(self.now + self.lat.link_ms, Ev::EdgePeerClosed { conn });
                    }
                }
                RunnerOutput::Timer { at_ms, timer } => {
                    self.schedule(at_ms, Ev::RunnerTimer { runner: i, timer });
                }
                RunnerOutput::Exit { reason } => {
                    self.note(Node::Runner(i), format!("exit: {reason}"));
                    self.runners[i].exited = true;
                }
            }
        }
    }

    fn pick_edge_node(&mut self) -> Option<usize> {
        if let Some(n) = self.route_override.take() {
            if self.edge_nodes.get(n).is_some_and(|e| e.up) {
                return Some(n);
            }
        }
        let count = self.edge_nodes.len();
        for k in 0..count {
            let n = (self.next_route + k) % count;
            if self.edge_nodes[n].up {
                self.next_route = n + 1;
                return Some(n);
            }
        }
        None
    }

    // ---- the edge ------------------------------------------------------------------------------

    fn with_edge(
        &mut self,
        conn: ConnId,
        f: impl FnOnce(&mut EdgeConn, &mut Env<'_>) -> Vec<EdgeOutput>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let node = c.edge_node;
        if c.edge_incarnation != self.edge_nodes[node].incarnation {
            return;
        }
        let Some(mut edge) = c.edge.take() else { return };
        let mut facts = Vec::new();
        let out = {
            let state = &mut self.edge_nodes[node];
            let wall = state.wall(self.now);
            let mut env = Env {
                now_ms: self.now,
                wall_ms: wall,
                store: &mut self.store,
                faults: &mut self.faults,
                rng: &mut state.rng,
                facts: &mut facts,
                canaries: self.canaries,
            };
            f(&mut edge, &mut env)
        };
        let finished = edge.is_finished();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.edge = Some(edge);
        }
        self.record_facts(Node::Edge(node), facts);
        self.edge_outputs(conn, out);
        if finished {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.edge.take().is_some() {
                    c.edge_finished = true;
                    c.edge_open = false;
                }
            }
            self.drop_subscriptions(conn);
            self.note(Node::Edge(node), format!("{conn} finished (torn down, demuxer drained)"));
        }
    }

    fn drop_subscriptions(&mut self, conn: ConnId) {
        for subs in self.subs.values_mut() {
            subs.remove(&conn);
        }
    }

    fn edge_outputs(&mut self, conn: ConnId, outputs: Vec<EdgeOutput>) {
        let Some(node) = self.conns.get(&conn).map(|c| c.edge_node) else { return };
        for output in outputs {
            match output {
                EdgeOutput::Send(bytes) => {
                    self.check_engine_frame(conn, &bytes);
                    self.log_frame(Node::Edge(node), conn, Dir::ToRunner, &bytes);
                    let runner = self.conns.get(&conn).map(|c| c.runner);
                    if runner.is_some_and(|r| self.partitioned.contains(&r)) {
                        self.note(
                            Node::Harness,
                            format!("lost in partition: frame {conn} edge->runner"),
                        );
                        continue;
                    }
                    let link = self.lat.link_ms;
                    self.dispatch_msg(Msg::ToRunner { conn, bytes }, link);
                }
                EdgeOutput::Close(reason) => {
                    let text = reason.to_close_frame_reason();
                    self.note(Node::Edge(node), format!("close {conn}: {text}"));
                    let runner = self.conns.get(&conn).map(|c| c.runner);
                    let partitioned = runner.is_some_and(|r| self.partitioned.contains(&r));
                    let Some(c) = self.conns.get_mut(&conn) else { continue };
                    c.edge_open = false;
                    if !partitioned && !c.severed && c.runner_open {
                        c.runner_open = false;
                        self.schedule(
                            self.now + self.lat.link_ms,
                            Ev::RunnerPeerClosed { conn, reason: Some(text) },
                        );
                    }
                }
                EdgeOutput::Subscribe(topics) => {
                    self.schedule(
                        self.now + self.lat.subscribe_ms,
                        Ev::SubscribeConfirm { conn, topics },
                    );
                }
                EdgeOutput::Unsubscribe(topics) => {
                    for topic in topics {
                        if let Some(s) = self.subs.get_mut(&topic) {
                            s.remove(&conn);
                        }
                    }
                }
                EdgeOutput::Engine(out) => {
                    let inc = self.edge_nodes[node].incarnation;
                    self.engine_outputs(Node::Edge(node), inc, vec![out]);
                }
                EdgeOutput::Signal { actor, signal, token } => {
                    if let Signal::Events { events, .. } = &signal {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            if !c.retrying.remove(&actor) {
                                let list = c.signalled.entry(actor.clone()).or_default();
                                list.extend(
                                    events
                                        .iter()
                                        .map(|e| (e.checkpoint.generation, e.checkpoint.index)),
                                );
                            }
                        }
                    }
                    let delay = self.lat.signal_ms;
                    self.dispatch_msg(Msg::Signal { conn, actor, signal, token }, delay);
                }
                EdgeOutput::Timer { at_ms, timer } => {
                    let incarnation = self.edge_nodes[node].incarnation;
                    self.schedule(at_ms, Ev::EdgeTimer { conn, incarnation, timer });
                }
            }
        }
    }

    // ---- engine outputs and the core -----------------------------------------------------------

    fn engine_outputs(&mut self, node: Node, incarnation: u64, outputs: Vec<EngineOutput>) {
        for output in outputs {
            match output {
                EngineOutput::Publish { topic, message } => {
                    self.schedule(self.now, Ev::Publish { node, incarnation, topic, message });
                }
                EngineOutput::WakeWorkflow { actor } => {
                    let incarnation = self.core_node.incarnation;
                    self.schedule(
                        self.now + self.lat.engine_ms,
                        Ev::CoreWake { incarnation, actor },
                    );
                }
                EngineOutput::TriggerDrainer { namespace, pool } => {
                    let incarnation = self.core_node.incarnation;
                    self.schedule(
                        self.now + self.lat.engine_ms,
                        Ev::CoreDrain { incarnation, namespace, pool },
                    );
                }
            }
        }
    }

    fn with_core(&mut self, f: impl FnOnce(&mut Core, &mut Env<'_>) -> Vec<CoreOutput>) {
        let Some(mut core) = self.core.take() else { return };
        let mut facts = Vec::new();
        let out = {
            let state = &mut self.core_node;
            let wall = state.wall(self.now);
            let mut env = Env {
                now_ms: self.now,
                wall_ms: wall,
                store: &mut self.store,
                faults: &mut self.faults,
                rng: &mut state.rng,
                facts: &mut facts,
                canaries: self.canaries,
            };
            f(&mut core, &mut env)
        };
        self.core = Some(core);
        self.record_facts(Node::Core, facts);
        let incarnation = self.core_node.incarnation;
        for output in out {
            match output {
                CoreOutput::Engine(e) => self.engine_outputs(Node::Core, incarnation, vec![e]),
                CoreOutput::Timer { at_ms, timer } => {
                    self.schedule(at_ms, Ev::CoreTimer { incarnation, timer });
                }
            }
        }
    }

    fn node_incarnation(&self, node: Node) -> Option<u64> {
        match node {
            Node::Core => self.core_node.up.then_some(self.core_node.incarnation),
            Node::Edge(n) => self.edge_nodes[n].up.then_some(self.edge_nodes[n].incarnation),
            Node::Api => Some(0),
            _ => None,
        }
    }

    // ---- dispatch ------------------------------------------------------------------------------

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver(msg) => self.deliver(msg),
            Ev::Accept { conn, path, subprotocols } => self.accept(conn, &path, &subprotocols),
            Ev::RunnerOpen { conn } => {
                let Some(c) = self.conns.get(&conn) else { return };
                if c.severed {
                    return;
                }
                let i = c.runner;
                self.with_runner(i, |r, env| r.on_open(env, conn));
            }
            Ev::ConnectFailed { runner, conn } => {
                self.with_runner(runner, |r, env| r.on_connect_failed(env, conn));
            }
            Ev::EdgePeerClosed { conn } => {
                let open = self.conns.get(&conn).is_some_and(|c| c.edge_open);
                if open {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.edge_open = false;
                    }
                    self.with_edge(conn, |e, env| e.on_socket_closed(env));
                }
            }
            Ev::RunnerPeerClosed { conn, reason } => {
                let Some(c) = self.conns.get_mut(&conn) else { return };
                c.runner_open = false;
                let i = c.runner;
                self.with_runner(i, |r, env| r.on_closed(env, conn, reason.as_deref()));
            }
            Ev::SubscribeConfirm { conn, topics } => {
                let open = self.conns.get(&conn).is_some_and(|c| c.edge_open && c.edge.is_some());
                if !open {
                    return;
                }
                for topic in topics {
                    self.subs.entry(topic).or_default().insert(conn);
                }
                self.with_edge(conn, |e, env| e.on_subscribed(env));
            }
            Ev::Publish { node, incarnation, topic, message } => {
                if self.node_incarnation(node) != Some(incarnation) {
                    self.note(
                        node,
                        "publish lost: the node crashed before it happened".to_string(),
                    );
                    return;
                }
                let targets: Vec<ConnId> =
                    self.subs.get(&topic).map(|s| s.iter().copied().collect()).unwrap_or_default();
                let describe =
                    Msg::Bus { conn: ConnId(0), topic: topic.clone(), message: message.clone() }
                        .describe();
                let describe = describe.trim_start_matches("bus c0 ");
                self.note(node, format!("publish to {} subscriber(s): {describe}", targets.len()));
                for conn in targets {
                    let delay = self.lat.bus_ms;
                    self.dispatch_msg(
                        Msg::Bus { conn, topic: topic.clone(), message: message.clone() },
                        delay,
                    );
                }
            }
            Ev::CoreWake { incarnation, actor } => {
                if self.node_incarnation(Node::Core) == Some(incarnation) {
                    self.with_core(|core, env| core.on_wake(env, &actor));
                }
            }
            Ev::CoreDrain { incarnation, namespace, pool } => {
                if self.node_incarnation(Node::Core) == Some(incarnation) {
                    self.with_core(|core, env| core.on_trigger_drainer(env, &namespace, &pool));
                }
            }
            Ev::CoreTimer { incarnation, timer } => {
                if self.node_incarnation(Node::Core) == Some(incarnation) {
                    self.with_core(|core, env| core.on_timer(env, timer));
                }
            }
            Ev::EdgeTimer { conn, incarnation, timer } => {
                let current = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| self.edge_nodes[c.edge_node].incarnation == incarnation);
                if current {
                    self.with_edge(conn, |e, env| e.on_timer(env, timer));
                }
            }
            Ev::RunnerTimer { runner, timer } => {
                self.with_runner(runner, |r, env| r.on_timer(env, timer));
            }
        }
    }

    fn accept(&mut self, conn: ConnId, path: &str, subprotocols: &[String]) {
        let Some(c) = self.conns.get(&conn) else { return };
        let node = c.edge_node;
        let runner = c.runner;
        if !self.edge_nodes[node].up || c.edge_incarnation != self.edge_nodes[node].incarnation {
            self.schedule(self.now + self.lat.link_ms, Ev::ConnectFailed { runner, conn });
            return;
        }
        let mut facts = Vec::new();
        let (edge, out) = {
            let state = &mut self.edge_nodes[node];
            let wall = state.wall(self.now);
            let mut env = Env {
                now_ms: self.now,
                wall_ms: wall,
                store: &mut self.store,
                faults: &mut self.faults,
                rng: &mut state.rng,
                facts: &mut facts,
                canaries: self.canaries,
            };
            EdgeConn::accept(&mut env, &self.config, conn, path, subprotocols)
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.edge = Some(edge);
            c.edge_open = true;
            // The runner is told of the open before anything else the edge sends, a close included.
            c.runner_open = true;
        }
        self.note(Node::Edge(node), format!("accept {conn}"));
        // The runner's `on_open` precedes every frame the edge sends.
        self.schedule(self.now + self.lat.link_ms, Ev::RunnerOpen { conn });
        self.record_facts(Node::Edge(node), facts);
        self.edge_outputs(conn, out);
    }

    fn deliver(&mut self, msg: Msg) {
        let conn = msg.conn();
        let Some(c) = self.conns.get(&conn) else { return };
        let runner = c.runner;
        match msg {
            Msg::ToEdge { bytes, .. } => {
                if c.severed || self.partitioned.contains(&runner) {
                    self.note(
                        Node::Harness,
                        format!("lost: frame {conn} runner->edge (connection gone)"),
                    );
                    return;
                }
                if !c.edge_open || c.edge.is_none() {
                    return;
                }
                if let Ok(p::ToRivet::ToRivetEvents(events)) =
                    Codec::new(usize::MAX).decode_to_rivet(&bytes)
                {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        for e in events {
                            c.ingested
                                .entry(e.checkpoint.actor_id.to_string())
                                .or_default()
                                .push((e.checkpoint.generation, e.checkpoint.index));
                        }
                    }
                }
                self.with_edge(conn, |e, env| e.on_frame(env, DataFrame::Binary(&bytes)));
            }
            Msg::ToRunner { bytes, .. } => {
                if c.severed || self.partitioned.contains(&runner) {
                    self.note(
                        Node::Harness,
                        format!("lost: frame {conn} edge->runner (connection gone)"),
                    );
                    return;
                }
                self.check_tombstones(runner, conn, &bytes);
                self.with_runner(runner, |r, env| r.on_frame(env, conn, DataFrame::Binary(&bytes)));
            }
            Msg::Bus { topic, message, .. } => {
                if c.edge.is_none() {
                    return;
                }
                self.with_edge(conn, |e, env| e.on_bus(env, &topic, &message));
            }
            Msg::Signal { actor, signal, token, .. } => {
                let node = c.edge_node;
                let mut facts = Vec::new();
                let result = {
                    let state = &mut self.edge_nodes[node];
                    let wall = state.wall(self.now);
                    let mut env = Env {
                        now_ms: self.now,
                        wall_ms: wall,
                        store: &mut self.store,
                        faults: &mut self.faults,
                        rng: &mut state.rng,
                        facts: &mut facts,
                        canaries: self.canaries,
                    };
                    signal::deliver(&mut env, &actor, &signal)
                };
                self.record_facts(Node::Edge(node), facts);
                self.note(
                    Node::Harness,
                    format!("signal {conn} token {token} to {actor}: {}", describe_result(&result)),
                );
                if result.is_err() {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.retrying.insert(actor.clone());
                    }
                }
                let enqueued = matches!(result, Ok(EnqueueResult::Enqueued));
                self.with_edge(conn, |e, env| e.on_signal_result(env, token, result));
                if enqueued {
                    let incarnation = self.core_node.incarnation;
                    self.schedule(
                        self.now + self.lat.engine_ms,
                        Ev::CoreWake { incarnation, actor },
                    );
                }
            }
        }
    }

    // ---- facts, frames, checks -----------------------------------------------------------------

    fn log_frame(&mut self, node: Node, conn: ConnId, dir: Dir, bytes: &[u8]) {
        let codec = Codec::new(usize::MAX);
        let (rivet, envoy) = match dir {
            Dir::ToEngine => (codec.decode_to_rivet(bytes).ok(), None),
            Dir::ToRunner => (None, codec.decode_to_envoy(bytes).ok()),
        };
        self.log.push(Entry {
            at: self.now,
            node,
            item: Item::Frame(FrameRec { conn, dir, bytes: bytes.to_vec(), rivet, envoy }),
        });
    }

    fn record_facts(&mut self, node: Node, facts: Vec<Fact>) {
        for fact in facts {
            self.check_fact(&fact);
            self.log.push(Entry { at: self.now, node, item: Item::Fact(fact) });
        }
    }

    fn check_fact(&mut self, fact: &Fact) {
        match fact {
            Fact::CommandsSent { conn, replay, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.pending_sent.push_back(*replay);
                }
            }
            Fact::PreloadFetched { conn, actor, generation, bundle, failed, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.pending_fetches
                        .entry((actor.clone(), *generation))
                        .or_default()
                        .push_back((bundle.clone(), *failed));
                }
            }
            Fact::EventClassified {
                actor, generation, index, class: EventClass::Applied, ..
            } => {
                let next = self.applied_next.entry((actor.clone(), *generation)).or_insert(0);
                let expected = *next;
                *next = (*next).max(index + 1);
                if *index != expected {
                    self.violation(format!(
                        "S4: applied event ({actor}, {generation}, {index}) but the next index in order was {expected}"
                    ));
                }
            }
            Fact::RunnerCommand {
                runner,
                actor,
                generation,
                index,
                disposition: CommandDisposition::Exec,
                ..
            } if !self.executed.insert((runner.clone(), actor.clone(), *generation, *index)) => {
                self.violation(format!(
                    "S7: runner {runner} executed ({actor}, {generation}, {index}) twice"
                ));
            }
            Fact::Registered { conn, .. } | Fact::LivenessWrite { conn, .. } => {
                let now = self.now;
                if let Some(c) = self.conns.get_mut(conn) {
                    c.last_authorization = Some(now);
                }
            }
            Fact::MetadataCommitted { conn, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.metadata_committed = true;
                }
            }
            Fact::CommandPersisted { runner, actor, generation, index, kind } => {
                if !self.persisted.insert((runner.clone(), actor.clone(), *generation, *index)) {
                    self.violation(format!(
                        "S6: command ({runner}, {actor}, {generation}, {index}) persisted twice"
                    ));
                }
                if *kind == pegsim_model::fact::CommandKind::Start {
                    let next = self.next_generation.entry(actor.clone()).or_insert(0);
                    let expected = *next;
                    *next = generation + 1;
                    if *generation != expected {
                        self.violation(format!(
                            "S2: Start ({actor}, {generation}) persisted, expected generation {expected}"
                        ));
                    }
                }
            }
            Fact::TombstoneDrop { runner, actor, generation } => {
                self.tombstones.insert((runner.clone(), actor.clone(), *generation));
            }
            Fact::RunnerInit { conn, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.runner_got_init = true;
                }
            }
            Fact::DemuxDiscard { conn, actor, events } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    *c.discarded.entry(actor.clone()).or_default() += events;
                }
            }
            _ => {}
        }
    }

    fn check_runner_frame(&mut self, i: usize, conn: ConnId, bytes: &[u8]) {
        let limit = self.runners[i].config.max_frame_bytes;
        let decoded = Codec::new(usize::MAX).decode_to_rivet(bytes);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.runner_frames += 1;
        let first = c.runner_frames == 1;
        let got_init = c.runner_got_init;
        if bytes.len() > limit {
            self.violation(format!(
                "S11: runner frame of {} bytes on {conn} exceeds {limit}",
                bytes.len()
            ));
        }
        match decoded {
            Err(e) => self.violation(format!("S11: runner frame on {conn} does not decode: {e}")),
            Ok(m) => {
                let is_metadata = matches!(m, p::ToRivet::ToRivetMetadata(_));
                if first && !is_metadata {
                    self.violation(format!(
                        "S11: first runner frame on {conn} is {}",
                        wire::to_rivet_kind(&m)
                    ));
                }
                if !first && !got_init {
                    self.violation(format!(
                        "S11: runner sent {} on {conn} before receiving ToEnvoyInit",
                        wire::to_rivet_kind(&m)
                    ));
                }
            }
        }
    }

    fn check_engine_frame(&mut self, conn: ConnId, bytes: &[u8]) {
        let limit = self.config.timing.max_frame_bytes;
        let max_commands = self.config.timing.frame_max_commands;
        let decoded = Codec::new(usize::MAX).decode_to_envoy(bytes);
        if bytes.len() > limit {
            self.violation(format!(
                "S11: engine frame of {} bytes on {conn} exceeds {limit}",
                bytes.len()
            ));
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.engine_frames += 1;
        let first = c.engine_frames == 1;
        let runner_ns = self.runners[c.runner].id.namespace.clone();
        let message = match decoded {
            Ok(m) => m,
            Err(e) => {
                self.violation(format!("S11: engine frame on {conn} does not decode: {e}"));
                return;
            }
        };
        if first && !matches!(message, p::ToEnvoy::ToEnvoyInit(_)) {
            self.violation(format!(
                "S11: first engine frame on {conn} is {}",
                wire::to_envoy_kind(&message)
            ));
        }
        if matches!(message, p::ToEnvoy::ToEnvoyInit(_) | p::ToEnvoy::ToEnvoyPing(_)) {
            let step = self.config.timing.max_step_delay_ms;
            let authorized = self.conns.get(&conn).and_then(|c| c.last_authorization);
            if authorized.is_none_or(|at| self.now - at > step) {
                self.violation(format!(
                    "§6.3: {} on {conn} without a liveness write in the last {step} ms (last: {authorized:?})",
                    wire::to_envoy_kind(&message)
                ));
            }
        }
        match message {
            p::ToEnvoy::ToEnvoyInit(_) if !first => {
                self.violation(format!("S11: a second ToEnvoyInit on {conn}"));
            }
            p::ToEnvoy::ToEnvoyAckEvents(_) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.saw_live = true;
                }
            }
            p::ToEnvoy::ToEnvoyCommands(commands) => {
                if commands.len() > max_commands {
                    self.violation(format!(
                        "S11: command frame on {conn} holds {} commands (limit {max_commands})",
                        commands.len()
                    ));
                }
                if !self.conns.get(&conn).is_some_and(|c| c.metadata_committed) {
                    self.violation(format!(
                        "S11: command frame on {conn} before the metadata commit"
                    ));
                }
                let Some(c) = self.conns.get_mut(&conn) else { return };
                let replay = match c.pending_sent.pop_front() {
                    Some(r) => r,
                    None => {
                        self.violation(format!(
                            "command frame on {conn} without a CommandsSent fact"
                        ));
                        false
                    }
                };
                let c = self.conns.get_mut(&conn).expect("connection exists");
                if replay && c.saw_live {
                    self.violation(format!(
                        "S11: replay command frame on {conn} after a live frame"
                    ));
                }
                let c = self.conns.get_mut(&conn).expect("connection exists");
                if !replay {
                    c.saw_live = true;
                }
                for command in &commands {
                    if let p::Command::CommandStartActor(start) = &command.inner {
                        self.check_bundle(conn, &runner_ns, &command.checkpoint, start);
                    }
                }
            }
            _ => {}
        }
    }

    /// S10: once runner `i` dropped the tombstone of `(A, g)`, no command of `(A, g)` reaches it
    /// on its current connection.
    fn check_tombstones(&mut self, i: usize, conn: ConnId, bytes: &[u8]) {
        let current =
            self.runners[i].client.as_ref().and_then(|c| c.open_connection()) == Some(conn);
        let Ok(p::ToEnvoy::ToEnvoyCommands(commands)) =
            Codec::new(usize::MAX).decode_to_envoy(bytes)
        else {
            return;
        };
        if !current {
            return;
        }
        let runner = self.runners[i].id.clone();
        for c in commands {
            let key = (runner.clone(), c.checkpoint.actor_id.to_string(), c.checkpoint.generation);
            if self.tombstones.contains(&key) {
                self.violation(format!(
                    "S10: runner {runner} received command ({}, {}, {}) after dropping its tombstone",
                    key.1, key.2, c.checkpoint.index
                ));
            }
        }
    }

    /// §7.1: every delivered `Start` carries the bundle of a fresh fetch made for this delivery.
    fn check_bundle(
        &mut self,
        conn: ConnId,
        namespace: &str,
        checkpoint: &p::ActorCheckpoint,
        start: &p::CommandStartActor,
    ) {
        let actor = checkpoint.actor_id.to_string();
        let key = (actor.clone(), checkpoint.generation);
        let fetched = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.pending_fetches.get_mut(&key))
            .and_then(VecDeque::pop_front);
        let Some((fetched, failed)) = fetched else {
            self.violation(format!(
                "§7.1: Start ({actor}, {}) sent on {conn} without a fresh preload fetch",
                checkpoint.generation
            ));
            return;
        };
        if start.preloaded_kv != fetched {
            self.violation(format!(
                "§7.1: Start ({actor}, {}) on {conn} does not carry the bundle fetched for it",
                checkpoint.generation
            ));
            return;
        }
        if failed {
            return;
        }
        let budget = self.config.preload_budget;
        let canaries = self.canaries;
        let now = self.now;
        let fresh = preload::fetch(
            &mut self.store,
            &actor,
            namespace,
            start.config.name.as_str(),
            budget,
            canaries,
            now,
            &mut || false,
        );
        if fresh.bundle != start.preloaded_kv {
            self.violation(format!(
                "§7.1: Start ({actor}, {}) on {conn} carries a stale bundle (a fresh read differs)",
                checkpoint.generation
            ));
        }
        if !start.hibernating_requests.is_empty() {
            self.violation(format!("§2.4: Start ({actor}) on {conn} carries hibernating requests"));
        }
    }

    /// The demuxer accounting of §4.3 for every connection (see the module comment): what is
    /// wrong with it now.
    pub fn demux_accounting(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (conn, c) in &self.conns {
            if c.edge_crashed {
                continue;
            }
            for (actor, ingested) in &c.ingested {
                let signalled = c.signalled.get(actor).map(Vec::as_slice).unwrap_or(&[]);
                if signalled.len() > ingested.len() || signalled != &ingested[..signalled.len()] {
                    found.push(format!(
                        "§4.3: demuxer of {conn} signalled {actor}'s events {signalled:?}, not in the order accepted {ingested:?}"
                    ));
                    continue;
                }
                let discarded = c.discarded.get(actor).copied().unwrap_or(0);
                let unsent = ingested.len() as i64 - signalled.len() as i64 - discarded as i64;
                let queued = c
                    .edge
                    .as_ref()
                    .and_then(|e| e.demux())
                    .and_then(|d| d.queue_state(actor))
                    .map_or(0, |(q, _)| q) as i64;
                if unsent != queued {
                    found.push(format!(
                        "§4.3: demuxer of {conn} accepted {} events of {actor}, signalled {}, discarded {discarded}, holds {queued}: {} events vanished",
                        ingested.len(),
                        signalled.len(),
                        unsent - queued
                    ));
                }
            }
        }
        found
    }

    /// Every violation found so far plus the demuxer accounting now.
    pub fn violations(&self) -> Vec<String> {
        let mut v = self.violations.clone();
        v.extend(self.demux_accounting().into_iter().map(|f| format!("t={} {f}", self.now)));
        v.dedup();
        v
    }

    /// Every violation found so far (and the demuxer accounting now), or `Ok`.
    pub fn check(&mut self) -> Result<(), String> {
        let v = self.violations();
        if v.is_empty() {
            Ok(())
        } else {
            Err(v.join("\n"))
        }
    }

    // ---- log queries ---------------------------------------------------------------------------

    /// Every fact with its log position.
    pub fn facts(&self) -> impl Iterator<Item = (usize, &Entry, &Fact)> {
        self.log.iter().enumerate().filter_map(|(i, e)| match &e.item {
            Item::Fact(f) => Some((i, e, f)),
            _ => None,
        })
    }

    /// Position of the first fact matching `pred`.
    pub fn find(&self, mut pred: impl FnMut(&Fact) -> bool) -> Option<usize> {
        self.facts().find(|(_, _, f)| pred(f)).map(|(i, _, _)| i)
    }

    /// Positions of every fact matching `pred`.
    pub fn find_all(&self, mut pred: impl FnMut(&Fact) -> bool) -> Vec<usize> {
        self.facts().filter(|(_, _, f)| pred(f)).map(|(i, _, _)| i).collect()
    }

    /// The fact at log position `i`.
    pub fn fact_at(&self, i: usize) -> Option<&Fact> {
        match &self.log.get(i)?.item {
            Item::Fact(f) => Some(f),
            _ => None,
        }
    }

    /// Every frame the engine sent on `conn`, decoded, with log positions.
    pub fn engine_frames(&self, conn: ConnId) -> Vec<(usize, p::ToEnvoy)> {
        self.log
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.item {
                Item::Frame(f) if f.conn == conn && f.dir == Dir::ToRunner => {
                    f.envoy.clone().map(|m| (i, m))
                }
                _ => None,
            })
            .collect()
    }

    /// Every frame the runner sent on `conn`, decoded, with log positions.
    pub fn runner_frames(&self, conn: ConnId) -> Vec<(usize, p::ToRivet)> {
        self.log
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.item {
                Item::Frame(f) if f.conn == conn && f.dir == Dir::ToEngine => {
                    f.rivet.clone().map(|m| (i, m))
                }
                _ => None,
            })
            .collect()
    }

    /// The event checkpoints `(g, i)` connection `conn` handed to the signal bus for `actor`.
    pub fn signalled(&self, conn: ConnId, actor: &str) -> Vec<(u32, i64)> {
        self.conns.get(&conn).and_then(|c| c.signalled.get(actor)).cloned().unwrap_or_default()
    }

    /// The bytes of every frame handed to the transport, in order.
    pub fn frame_bytes(&self) -> Vec<Vec<u8>> {
        self.log
            .iter()
            .filter_map(|e| match &e.item {
                Item::Frame(f) => Some(f.bytes.clone()),
                _ => None,
            })
            .collect()
    }

    /// The whole log, one line per entry.
    pub fn render_log(&self) -> String {
        let mut out = String::new();
        for e in &self.log {
            out.push_str(&e.render());
            out.push('\n');
        }
        out
    }

    /// The last `n` log lines (for error messages).
    pub fn tail(&self, n: usize) -> String {
        let start = self.log.len().saturating_sub(n);
        self.log[start..].iter().map(|e| e.render() + "\n").collect()
    }
}

fn describe_result(result: &Result<EnqueueResult, DeliverError>) -> String {
    match result {
        Ok(EnqueueResult::Enqueued) => "enqueued".into(),
        Ok(EnqueueResult::WorkflowGone) => "workflow gone".into(),
        Err(e) => format!("failed: {e}"),
    }
}
