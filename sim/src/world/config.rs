//! The concrete configuration one world runs with: everything the scenario's swarm draw decided
//! for this seed, in the units the world uses. Built from the scenario's derived configuration
//! (`scenario::Derived`) by [`WorldConfig::from_derived`]; tests build it directly.

use std::collections::BTreeMap;

use pegsim_model::canary::Canaries;
use pegsim_model::config::EngineConfig;
use pegsim_model::preload::Manifest;

/// How many nodes of each kind, and what the runners look like.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Edge nodes (connection handlers); at least 2.
    pub edges: usize,
    /// Runner processes alive at the start (each on its own node).
    pub runners: usize,
    /// Slots of each runner, by runner index (cycled when runners restart).
    pub slots: Vec<u32>,
    /// Deployment version of each runner, by runner index.
    pub versions: Vec<u32>,
    /// The namespace and pool every runner joins.
    pub namespace: String,
    pub pool: String,
    /// Whether a crashed or exited runner comes back as a fresh process (new `envoy_key`).
    pub restart_runners: bool,
}

/// Lengths of the run's phases.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    /// Faults and workload run for this long.
    pub fault_ms: u64,
    /// Then every fault is off and the system must converge within this long.
    pub heal_ms: u64,
    /// The heal phase fails early when no progress is made for this long while obligations are
    /// open.
    pub watchdog_ms: u64,
}

/// Relative weights of the workload's actions.
#[derive(Clone, Debug, Default)]
pub struct ActionMix {
    pub sleep: u32,
    pub stop: u32,
    pub crash: u32,
    pub destroy: u32,
    pub wake: u32,
    pub alarm: u32,
    pub write: u32,
    pub delete: u32,
    pub drain: u32,
}

/// What the workload driver does.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Actors created during the fault phase.
    pub actors: usize,
    /// Actor names, each with its manifest (`None`: the runner declares no manifest for it).
    pub names: Vec<String>,
    /// Mean time between actor creations, ms.
    pub create_interval_ms: u64,
    /// Time between workload actions, ms (uniform in the range).
    pub action_interval_ms: (u64, u64),
    pub mix: ActionMix,
    /// Value sizes of KV writes (uniform in the range).
    pub value_len: (usize, usize),
    /// Chance that a write's value is sized around the preload budgets.
    pub budget_sized_chance: f64,
    /// Crash policy weights: restart, sleep, destroy.
    pub crash_policy: (u32, u32, u32),
    /// Actor input sizes (uniform in the range).
    pub input_len: (usize, usize),
}

/// One fault class as drawn for this seed: on or off, and how strong.
#[derive(Clone, Debug, Default)]
pub struct FaultClass {
    pub on: bool,
    /// Mean events per simulated minute while the fault phase runs.
    pub rate_per_min: f64,
    /// How long one event lasts (uniform in the range), ms, for classes with a duration.
    pub duration_ms: (u64, u64),
    /// A magnitude in the class's own unit (delay ms, probability, skew ms, storm size).
    pub magnitude: (f64, f64),
}

/// The fault classes, by name (`spec/protocol.md` §9 plus the simulator's own).
pub type FaultPlan = BTreeMap<String, FaultClass>;

/// Every fault class the world knows, in the order reports list them.
pub const FAULT_CLASSES: [&str; 21] = [
    "connection_reset",
    "half_open",
    "reconnect_storm",
    "link_delay",
    "one_way_clog",
    "partition",
    "swizzle_clog",
    "signal_reorder",
    "signal_duplicate",
    "signal_delay",
    "bus_loss",
    "bus_duplicate",
    "bus_delay",
    "edge_crash",
    "core_crash",
    "runner_crash",
    "store_conflict",
    "store_unknown",
    "preload_read_failure",
    "clock_skew",
    "process_pause",
];

/// Everything one world needs.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub canaries: Canaries,
    pub topology: Topology,
    pub phases: Phases,
    pub workload: Workload,
    /// Manifests the runners declare, by actor name.
    pub manifests: BTreeMap<String, Manifest>,
    pub engine: EngineConfig,
    pub faults: FaultPlan,
}

impl WorldConfig {
    /// The drawn fault class `name`, or an off one.
    pub fn fault(&self, name: &str) -> FaultClass {
        self.faults.get(name).cloned().unwrap_or_default()
    }
}
