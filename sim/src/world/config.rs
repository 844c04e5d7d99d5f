//! The concrete configuration one world runs with: the scenario's swarm draw for this seed
//! (`scenario::Derived`), the engine configuration derived from it, and the canaries. Everything
//! the world decides beyond this comes from the seed's named streams.

use pegsim_model::canary::Canaries;
use pegsim_model::config::EngineConfig;

use crate::scenario::range::Span;
use crate::scenario::Derived;

/// Everything one world needs.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub canaries: Canaries,
    /// The per-seed draw of the scenario.
    pub derived: Derived,
    /// The engine's deployment, from `derived`.
    pub engine: EngineConfig,
}

impl WorldConfig {
    /// The configuration of a run of `derived` with `canaries`.
    pub fn new(derived: Derived, canaries: Canaries) -> Self {
        let engine = derived.engine_config();
        WorldConfig { seed: derived.seed, canaries, derived, engine }
    }

    /// Number of edge nodes (at least one).
    pub fn edges(&self) -> usize {
        (self.derived.topology.edge_nodes as usize).max(1)
    }

    /// Number of runner nodes (one process each at a time).
    pub fn runners(&self) -> usize {
        self.derived.topology.runners.len()
    }

    /// Whether a crashed or exited runner comes back as a fresh process.
    pub fn restart_runners(&self) -> bool {
        self.derived.topology.restart_crashed_runners
    }

    /// The namespace and pool the workload creates actors in: those of the first runner, else
    /// the first configured pool.
    pub fn namespace_and_pool(&self) -> (String, String) {
        if let Some(r) = self.derived.topology.runners.first() {
            return (r.namespace.clone(), r.pool.clone());
        }
        self.derived
            .topology
            .namespaces
            .iter()
            .find_map(|(ns, pools)| pools.first().map(|p| (ns.clone(), p.clone())))
            .unwrap_or_else(|| ("default".into(), "default".into()))
    }
}

/// A value drawn uniformly from a span with `rng`.
pub fn draw_span(rng: &mut impl rand::Rng, span: Span) -> u64 {
    if span.hi <= span.lo {
        span.lo
    } else {
        rng.gen_range(span.lo..=span.hi)
    }
}
