//! The vocabulary shared by the world, the history, the checkers, the CLI and the reports: what a
//! run is asked to do ([`RunSpec`]), what it produced ([`RunOutcome`]), the history entries it
//! recorded ([`TimedEntry`]) and the violations the checkers found ([`Violation`]).
//!
//! Nothing here runs anything; it only names things so that modules written separately agree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pegsim_model::canary::Canaries;
use pegsim_model::fact::{ConnId, Fact};
use pegsim_model::keys::RunnerId;
use pegsim_model::protocol::{ToEnvoy, ToRivet};
use serde::{Deserialize, Serialize};

/// Which direction a frame travelled on a runner-edge connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Runner to engine (`ToRivet`).
    ToEngine,
    /// Engine to runner (`ToEnvoy`).
    ToRunner,
}

/// A frame as the simulator saw it on the wire, decoded once for the checkers.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    ToRivet(ToRivet),
    ToEnvoy(ToEnvoy),
    /// The bytes did not decode (or were a text frame); the error says why.
    Undecodable(String),
}

/// One history entry.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A fact the model reported.
    Fact(Fact),
    /// A frame that was written on a connection, as the sender handed it to the link. `received`
    /// frames are recorded again when the receiver reads them (a lost frame has no receive).
    Frame {
        conn: ConnId,
        runner: Option<RunnerId>,
        dir: Dir,
        received: bool,
        len: usize,
        /// A hash of the exact bytes (part of the trace hash).
        bytes_hash: u64,
        decoded: Arc<Decoded>,
    },
    /// A connection opened (TCP + WebSocket handshake done) or ended at the transport.
    Link { conn: ConnId, runner: Option<RunnerId>, event: String },
    /// A fault the simulator injected.
    Fault { class: String, detail: String },
    /// A node event: start, crash, restart, pause, resume.
    Node { node: String, event: String },
    /// The run moved to another phase (`fault`, `heal`, `end`).
    Phase { phase: String },
    /// A workload action the driver took (create, sleep, wake, destroy, write, ...).
    Workload { action: String },
}

/// A history entry with its position, simulated time and the node that produced it.
#[derive(Clone, Debug)]
pub struct TimedEntry {
    /// Position in the history, from 0.
    pub seq: u64,
    /// Global simulated time, ms since the start of the run.
    pub at_ms: u64,
    /// The node that produced the entry (`core`, `edge-0`, `runner-3`, `driver`, `sim`).
    pub node: String,
    pub entry: Entry,
}

/// A broken invariant, as a checker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The spec's id and name, e.g. `S4 INV-EVT (order, prefix)`, `P2 get-key soundness`,
    /// `L3 event delivery`, `DATA-LOSS counter`.
    pub invariant: String,
    /// What exactly broke, with the checkpoint / key / sizes involved.
    pub detail: String,
    /// Simulated time of the entry that exposed it.
    pub at_ms: u64,
    /// History position of that entry.
    pub seq: u64,
    pub actor: Option<String>,
    pub runner: Option<String>,
    /// A safety violation of S1, S2 or S14 that happened while injected delays exceeded the timing
    /// envelope (`spec/protocol.md` §6.3); reported, not counted as a failure.
    pub outside_envelope: bool,
}

impl Violation {
    /// The invariant's id alone (`S4`, `P2`, `L3`, ...): the text before the first space.
    pub fn id(&self) -> &str {
        self.invariant.split(' ').next().unwrap_or(&self.invariant)
    }
}

/// How much of the history a run keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceMode {
    /// Only the trace hash and the last entries (for the failure timeline).
    Ring,
    /// Also write every entry, one line each, to this file.
    File(PathBuf),
}

/// One run: `(scenario, seed, canaries)` on this build.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The scenario file the run came from (for messages and failure files).
    pub scenario_path: PathBuf,
    /// The scenario text, exactly as read (failure files embed it).
    pub scenario_text: String,
    pub seed: u64,
    pub canaries: Canaries,
    pub trace: TraceMode,
}

/// What one run produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunOutcome {
    pub seed: u64,
    /// Hash over every rendered history line; equal for equal `(scenario, seed, canaries, build)`.
    pub trace_hash: u64,
    pub history_len: u64,
    /// Every distinct violated invariant, first occurrence each, in the order found.
    pub violations: Vec<Violation>,
    /// Violations labelled outside the timing envelope (not failures).
    pub outside_envelope: Vec<Violation>,
    /// The per-seed derived configuration (swarm draw), rendered as TOML.
    pub derived_config: String,
    /// How often each fault class fired.
    pub fault_counts: BTreeMap<String, u64>,
    /// How often each coverage probe was hit.
    pub probe_counts: BTreeMap<String, u64>,
    /// Simulated time the run covered, ms.
    pub sim_ms: u64,
    /// The rendered history lines around the first violation (empty when none).
    pub timeline: Vec<String>,
    /// Latency samples in ms by metric name (e.g. `start_to_running`), for reports.
    pub latencies_ms: BTreeMap<String, Vec<u64>>,
}

impl RunOutcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}
