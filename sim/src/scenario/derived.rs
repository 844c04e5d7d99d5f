//! The per-seed concrete configuration of a scenario ([`Derived`]) and the swarm draw that makes
//! it. A [`Derived`] is what a run actually used: failure files and reports embed it as TOML.
//!
//! Every value is drawn from its own stream `scenario.<field path>` (per runner process:
//! `scenario.topology.runner-<i>.<field>`), so that equal seeds give equal configurations and
//! adding a knob, a class or a runner leaves every other draw of the same seed unchanged.

use std::collections::{BTreeMap, BTreeSet};

use pegsim_model::config::{EngineConfig, Timing};
use pegsim_model::kv::KvConfig;
use pegsim_model::preload::manifest::Manifest;
use serde::{Deserialize, Serialize};

use super::faults::DerivedFaults;
use super::manifest::ManifestSpec;
use super::range::{Range, Span};
use super::{ActionMix, CrashPolicyMix, KeyMix, Scenario};
use crate::seed::{Draw, SeedStreams};

/// One seed's concrete configuration of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    /// The scenario's name.
    pub scenario: String,
    /// The seed it was drawn for.
    #[serde(with = "crate::seed::toml_u64")]
    pub seed: u64,
    pub phases: DerivedPhases,
    pub topology: DerivedTopology,
    pub workload: DerivedWorkload,
    pub preload: DerivedPreload,
    pub engine: DerivedEngine,
    pub faults: DerivedFaults,
}

/// The run's phases, ms of simulated time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedPhases {
    pub fault_ms: u64,
    pub heal_ms: u64,
    pub watchdog_ms: u64,
}

/// One runner process alive at the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedRunner {
    pub version: u32,
    pub slots: u32,
    pub namespace: String,
    pub pool: String,
}

/// The deployment of one seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedTopology {
    pub edge_nodes: u64,
    /// Every version a runner process may announce (replacement processes draw from these).
    pub version_choices: Vec<u32>,
    /// The slot range replacement processes draw from.
    pub slots_per_runner: [u64; 2],
    pub namespaces: BTreeMap<String, Vec<String>>,
    pub restart_crashed_runners: bool,
    /// The runner processes alive at the start.
    pub runners: Vec<DerivedRunner>,
}

/// The workload numbers of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedWorkload {
    pub actors: u64,
    pub actor_names: Vec<String>,
    pub create_rate_per_min: f64,
    pub budget_overflow_chance: f64,
    pub action_interval_ms: Span,
    pub value_size: Span,
    pub input_size: Span,
    pub mix: ActionMix,
    pub crash_policy: CrashPolicyMix,
    /// Absent in failure files written before the field existed: the default split.
    #[serde(default)]
    pub keys: KeyMix,
}

/// The preload configuration of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedPreload {
    /// Global budget `T`, bytes.
    pub budget: u64,
    pub partial_mismatch_negative: bool,
    pub default_manifest: ManifestSpec,
    pub manifests: BTreeMap<String, ManifestSpec>,
    /// Runner version -> actor name -> manifest (empty unless versions differ).
    pub by_version: BTreeMap<String, BTreeMap<String, ManifestSpec>>,
}

impl DerivedPreload {
    /// The manifest a runner of `version` declares for actor name `name`: its version's, else the
    /// name's, else the default.
    pub fn spec_for(&self, version: u32, name: &str) -> &ManifestSpec {
        self.by_version
            .get(&version.to_string())
            .and_then(|per_name| per_name.get(name))
            .or_else(|| self.manifests.get(name))
            .unwrap_or(&self.default_manifest)
    }

    /// The `ActorName.metadata` JSON a runner of `version` declares for `name`.
    pub fn metadata_json(&self, version: u32, name: &str) -> String {
        self.spec_for(version, name).metadata_json()
    }

    /// The manifest a runner of `version` uses itself for `name` (`None`: absent or invalid).
    pub fn runner_manifest(&self, version: u32, name: &str) -> Option<Manifest> {
        self.spec_for(version, name).manifest()
    }
}

/// The engine parameters of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedEngine {
    pub kv_quota: u64,
    pub metadata_version: String,
    pub preload_max_attempts: u32,
    pub timing: Timing,
}

impl Derived {
    /// The configuration as TOML, for failure files and reports.
    pub fn to_toml(&self) -> String {
        match toml::to_string(self) {
            Ok(text) => text,
            // Every field is representable; keep a readable trace of the impossible case.
            Err(e) => format!("# the derived configuration could not be rendered: {e}\n"),
        }
    }

    /// Read a configuration written by [`Derived::to_toml`].
    pub fn from_toml(text: &str) -> Result<Derived, toml::de::Error> {
        toml::from_str(text)
    }

    /// The engine's deployment for this seed.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            namespaces: self
                .topology
                .namespaces
                .iter()
                .map(|(ns, pools)| (ns.clone(), pools.iter().cloned().collect::<BTreeSet<_>>()))
                .collect(),
            preload_budget: self.preload.budget,
            preload_max_attempts: self.engine.preload_max_attempts,
            kv: KvConfig {
                metadata_version: self.engine.metadata_version.as_bytes().to_vec(),
                max_storage_size: self.engine.kv_quota,
            },
            timing: self.engine.timing.clone(),
        }
    }
}

fn pick_u64(streams: &SeedStreams, path: &str, r: Range<u64>) -> u64 {
    streams.stream(&format!("scenario.{path}")).uniform_u64(r.lo, r.hi)
}

fn pick_f64(streams: &SeedStreams, path: &str, r: Range<f64>) -> f64 {
    streams.stream(&format!("scenario.{path}")).uniform_f64(r.lo, r.hi)
}

fn pick_span(streams: &SeedStreams, path: &str, r: Range<u64>) -> Span {
    Span { lo: r.lo, hi: pick_u64(streams, path, r) }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

pub(super) fn draw(s: &Scenario, streams: &SeedStreams) -> Derived {
    let t = &s.topology;
    let version_choices = t.runner_versions.all();
    let placements: Vec<(&String, &String)> =
        t.namespaces.iter().flat_map(|(ns, pools)| pools.iter().map(move |p| (ns, p))).collect();
    let runner_count = pick_u64(streams, "topology.runner_processes", t.runner_processes);
    let runners = (0..runner_count)
        .map(|i| {
            let base = format!("scenario.topology.runner-{i}");
            let mut versions = streams.stream(&format!("{base}.version"));
            let version = if version_choices.is_empty() {
                1
            } else {
                let at = versions.below(version_choices.len() as u64) as usize;
                version_choices.get(at).copied().unwrap_or(1)
            };
            let slots = clamp_u32(
                streams
                    .stream(&format!("{base}.slots"))
                    .uniform_u64(t.slots_per_runner.lo, t.slots_per_runner.hi),
            );
            let mut places = streams.stream(&format!("{base}.placement"));
            let at = places.below(placements.len() as u64) as usize;
            let (namespace, pool) = placements
                .get(at)
                .map(|(ns, p)| ((*ns).clone(), (*p).clone()))
                .unwrap_or_else(|| ("default".to_string(), "default".to_string()));
            DerivedRunner { version, slots, namespace, pool }
        })
        .collect();
    let topology = DerivedTopology {
        edge_nodes: pick_u64(streams, "topology.edge_nodes", t.edge_nodes),
        version_choices,
        slots_per_runner: [t.slots_per_runner.lo, t.slots_per_runner.hi],
        namespaces: t.namespaces.clone(),
        restart_crashed_runners: t.restart_crashed_runners,
        runners,
    };

    let phases = DerivedPhases {
        fault_ms: pick_u64(streams, "phases.fault_ms", s.phases.fault_ms),
        heal_ms: s.phases.heal_ms,
        watchdog_ms: s.phases.watchdog_ms,
    };

    let w = &s.workload;
    let workload = DerivedWorkload {
        actors: pick_u64(streams, "workload.actors", w.actors),
        actor_names: w.actor_names.clone(),
        create_rate_per_min: pick_f64(
            streams,
            "workload.create_rate_per_min",
            w.create_rate_per_min,
        ),
        budget_overflow_chance: pick_f64(
            streams,
            "workload.budget_overflow_chance",
            w.budget_overflow_chance,
        ),
        action_interval_ms: pick_span(streams, "workload.action_interval_ms", w.action_interval_ms),
        value_size: pick_span(streams, "workload.value_size", w.value_size),
        input_size: pick_span(streams, "workload.input_size", w.input_size),
        mix: w.mix.clone(),
        crash_policy: w.crash_policy.clone(),
        keys: w.keys.clone(),
    };

    let p = &s.preload;
    let preload = DerivedPreload {
        budget: pick_u64(streams, "preload.budget", p.budget),
        partial_mismatch_negative: p.partial_mismatch_negative,
        default_manifest: p.default_manifest.clone(),
        manifests: p.manifests.clone(),
        by_version: if p.differ_by_version { p.by_version.clone() } else { BTreeMap::new() },
    };

    let engine = DerivedEngine {
        kv_quota: s.engine.kv_quota,
        metadata_version: s.engine.metadata_version.clone(),
        preload_max_attempts: s.engine.preload_max_attempts,
        timing: s.engine.resolved_timing().unwrap_or_default(),
    };

    Derived {
        scenario: s.name.clone(),
        seed: streams.seed(),
        phases,
        topology,
        workload,
        preload,
        engine,
        faults: s.faults.draw(streams),
    }
}
