//! Per-node clocks. Every node has a monotonic clock (simulated time plus a node-specific offset,
//! so no code can compare monotonic times across nodes by accident) and a wall clock (simulated
//! time plus a skew that the `clock_skew` fault changes). Clock rates are equal, as the spec
//! assumes (`spec/protocol.md` §0).

use std::collections::BTreeMap;

/// The simulated time origin of one world.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    start: madsim::time::Instant,
}

impl SimClock {
    /// Mark now (inside the world's runtime) as simulated time 0.
    pub fn start() -> Self {
        SimClock { start: madsim::time::Instant::now() }
    }

    /// Milliseconds of simulated time since the world started.
    pub fn now_ms(&self) -> u64 {
        madsim::time::Instant::now().duration_since(self.start).as_millis() as u64
    }

    /// The madsim instant of simulated time `ms`.
    pub fn instant(&self, ms: u64) -> madsim::time::Instant {
        self.start + std::time::Duration::from_millis(ms)
    }
}

/// Base of wall-clock values: 2026-01-01T00:00:00Z in ms, so wall times look like real ones.
const WALL_BASE_MS: i64 = 1_767_225_600_000;

/// The offsets of every node's clocks.
#[derive(Clone, Debug, Default)]
pub struct Clocks {
    mono_offset: BTreeMap<String, u64>,
    wall_skew: BTreeMap<String, i64>,
}

impl Clocks {
    /// Register a node with its monotonic offset (arbitrary, fixed for the node's life).
    pub fn add_node(&mut self, node: &str, mono_offset: u64) {
        self.mono_offset.insert(node.to_string(), mono_offset);
        self.wall_skew.entry(node.to_string()).or_insert(0);
    }

    /// Set a node's wall-clock skew.
    pub fn set_skew(&mut self, node: &str, skew_ms: i64) {
        self.wall_skew.insert(node.to_string(), skew_ms);
    }

    /// The node's monotonic time at simulated time `sim_ms`.
    pub fn mono(&self, node: &str, sim_ms: u64) -> u64 {
        sim_ms + self.mono_offset.get(node).copied().unwrap_or(0)
    }

    /// The node's wall time at simulated time `sim_ms`.
    pub fn wall(&self, node: &str, sim_ms: u64) -> i64 {
        WALL_BASE_MS + sim_ms as i64 + self.wall_skew.get(node).copied().unwrap_or(0)
    }

    /// The simulated time at which the node's monotonic clock reads `mono_ms`.
    pub fn sim_at(&self, node: &str, mono_ms: u64) -> u64 {
        mono_ms.saturating_sub(self.mono_offset.get(node).copied().unwrap_or(0))
    }

    /// The nodes with a skew.
    pub fn skews(&self) -> impl Iterator<Item = (&String, &i64)> {
        self.wall_skew.iter()
    }
}
