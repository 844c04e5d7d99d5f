//! The scenario format: a TOML file that gives ranges for everything a run varies, and the
//! per-seed swarm draw that turns it into one concrete configuration ([`Derived`]).
//!
//! Owns: [`Scenario`] and its sections ([`Topology`], [`Phases`], [`Workload`], [`Preload`],
//! [`Engine`], [`FaultsSpec`], [`CoverageSpec`]), parsing ([`Scenario::load`], [`Scenario::parse`]), validation
//! ([`Scenario::validate`]) with errors that name file, line and field ([`ScenarioError`]), and
//! [`Scenario::draw`]. The documented format, with every field's default and range, is
//! `scenarios/README.md`. It does not run anything and does not inject faults.
//!
//! Choices where the brief and specs are silent (documented in `scenarios/README.md` too):
//! - Every section and field has a default; unknown fields are errors everywhere. The defaults
//!   describe a small fault-free deployment: every fault class is off (`enabled = 0`) until a
//!   scenario switches it on.
//! - `name` defaults to the file stem.
//! - Ranges are inclusive, written `n` or `[low, high]`; `[5, 1]` is an error.
//! - A manifest declared for an actor name that the workload never uses is an error (a typo would
//!   otherwise silently fall back to the default manifest).
//! - Per-version manifests (`[preload.by_version.<v>.<name>]`) require
//!   `preload.differ_by_version = true`, and must respect `spec/preload.md` §3.7 (a prefix that
//!   any manifest of a name declares partial is never declared non-partial by another manifest
//!   of that name) unless `preload.partial_mismatch_negative = true` labels the scenario a
//!   negative test.
//! - `[engine.timing]` overrides fields of `pegsim_model::config::Timing` by name; the result must
//!   satisfy `Timing::check` (`spec/protocol.md` §10 relations).
//! - [`Scenario::draw`] assumes a validated scenario: invalid timing overrides are ignored there.

mod derived;
pub mod faults;
pub mod locate;
pub mod manifest;
pub mod range;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use pegsim_model::config::Timing;
use pegsim_model::constants::{
    KV_METADATA_VERSION, MAX_ACTOR_INPUT_BYTES, MAX_STORAGE_SIZE, MAX_VALUE_SIZE,
    PRELOAD_MAX_ATTEMPTS, PRELOAD_MAX_TOTAL_BYTES,
};
use serde::{Deserialize, Serialize};

pub use derived::{
    Derived, DerivedEngine, DerivedPhases, DerivedPreload, DerivedRunner, DerivedTopology,
    DerivedWorkload,
};
pub use faults::{DerivedFaults, FaultClass, FaultsSpec, KnobInfo, KnobKind};
pub use locate::{SourceMap, TomlProblem};
pub use manifest::ManifestSpec;
pub use range::{Range, Span, Versions};

use crate::seed::SeedStreams;

/// Files of the scenario folder that are not scenarios: the regression seed corpus and the canary
/// proofs.
pub const NOT_SCENARIOS: [&str; 2] = ["regressions.toml", "canaries.toml"];

/// A scenario file that cannot be used, located in its file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{}: cannot read the scenario: {error}", file.display())]
    Read { file: PathBuf, error: String },
    /// The file is not a valid scenario.
    #[error("{}", located(file, *line, field, message))]
    Invalid {
        file: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Dotted field path, e.g. `topology.edge_nodes` (empty when no field can be named).
        field: String,
        message: String,
    },
}

/// `file:line: field `a.b`: message`, leaving out what is unknown.
pub(crate) fn located(file: &Path, line: Option<usize>, field: &str, message: &str) -> String {
    let mut out = file.display().to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if !field.is_empty() {
        out.push_str(&format!(": field `{field}`"));
    }
    out.push_str(&format!(": {message}"));
    out
}

/// A problem found by validation, before it is located in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { field: field.into(), message: message.into() }
    }
}

/// Where a scenario came from; not part of its value (two scenarios with equal fields are equal).
#[derive(Clone, Debug, Default)]
struct Source {
    path: PathBuf,
    map: SourceMap,
}

impl PartialEq for Source {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A scenario: ranges for everything a run varies. See `scenarios/README.md`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Short name (defaults to the file stem).
    pub name: String,
    /// What the scenario exercises.
    pub description: String,
    pub topology: Topology,
    pub phases: Phases,
    pub workload: Workload,
    pub preload: Preload,
    pub engine: Engine,
    pub faults: FaultsSpec,
    pub coverage: CoverageSpec,
    #[serde(skip)]
    source: Source,
}

/// `[coverage]`: the probes (`crate::coverage::PROBES`) a sweep of this scenario must hit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoverageSpec {
    /// Probes that at least one seed of every sweep must hit; a sweep where one is never hit
    /// fails (exit 1), even when every invariant held.
    pub required: Vec<String>,
}

/// `[topology]`: the deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Engine edge nodes (at least 2, so a runner can reconnect elsewhere).
    pub edge_nodes: Range<u64>,
    /// Runner processes alive at the start.
    pub runner_processes: Range<u64>,
    /// Slots of each runner process (each drawn separately).
    pub slots_per_runner: Range<u64>,
    /// Versions runner processes announce (each drawn separately).
    pub runner_versions: Versions,
    /// Namespace -> its pools. Each runner process joins one `(namespace, pool)`.
    pub namespaces: BTreeMap<String, Vec<String>>,
    /// Whether a crashed runner is replaced by a fresh process (with a new `envoy_key`).
    pub restart_crashed_runners: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            edge_nodes: Range::one(2),
            runner_processes: Range::new(2, 3),
            slots_per_runner: Range::new(4, 16),
            runner_versions: Versions::Range(Range::one(1)),
            namespaces: BTreeMap::from([("default".to_string(), vec!["default".to_string()])]),
            restart_crashed_runners: true,
        }
    }
}

/// `[phases]`: how long the run lasts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Phases {
    /// Length of the fault phase, ms of simulated time.
    pub fault_ms: Range<u64>,
    /// Length of the heal phase (every fault off; liveness must be reached), ms.
    pub heal_ms: u64,
    /// The run fails when nothing progresses for this long during the heal phase, ms.
    pub watchdog_ms: u64,
}

impl Default for Phases {
    fn default() -> Self {
        Phases { fault_ms: Range::one(60_000), heal_ms: 180_000, watchdog_ms: 90_000 }
    }
}

/// `[workload.mix]`: relative weights of the actions the driver takes on existing actors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionMix {
    pub sleep: u64,
    pub stop: u64,
    pub crash: u64,
    pub destroy: u64,
    pub wake: u64,
    pub set_alarm: u64,
    pub kv_write: u64,
    pub kv_delete: u64,
    /// Drain a whole runner process (it stops gracefully and exits).
    pub drain: u64,
}

impl ActionMix {
    /// `(action name, weight)` pairs, in the order of the format.
    pub fn weights(&self) -> [(&'static str, u64); 9] {
        [
            ("sleep", self.sleep),
            ("stop", self.stop),
            ("crash", self.crash),
            ("destroy", self.destroy),
            ("wake", self.wake),
            ("set_alarm", self.set_alarm),
            ("kv_write", self.kv_write),
            ("kv_delete", self.kv_delete),
            ("drain", self.drain),
        ]
    }
}

impl Default for ActionMix {
    fn default() -> Self {
        ActionMix {
            sleep: 10,
            stop: 4,
            crash: 4,
            destroy: 2,
            wake: 8,
            set_alarm: 6,
            kv_write: 40,
            kv_delete: 10,
            drain: 1,
        }
    }
}

/// `[workload.crash_policy]`: relative weights of the crash policies of created actors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrashPolicyMix {
    pub restart: u64,
    pub sleep: u64,
    pub destroy: u64,
}

impl Default for CrashPolicyMix {
    fn default() -> Self {
        CrashPolicyMix { restart: 6, sleep: 2, destroy: 1 }
    }
}

/// `[workload.keys]`: relative weights of the kinds of key a KV write or delete of the driver
/// addresses (`spec/preload.md` §6.1). The defaults are the driver's historical split, drawn the
/// same way, so a scenario without this table sees the same keys for the same seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyMix {
    /// `[2] ++ u16be(id)`, `id < 64`: one of the actor's connections.
    pub connection: u32,
    /// `[5,1,2] ++ u64be(id)`, `id < 32`: a queue message.
    pub message: u32,
    /// `[6,1] ++ [a, b]`, `a < 8`: a workflow history entry.
    pub history: u32,
    /// `[8,1] ++ u32be(page)`, `page < 48`: a database page (also raises `pages` in `[1]`).
    pub page: u32,
    /// `[4] ++ k`, `k` of 0 to 3 bytes out of `0x00`, `0x01`, `0x07`, `0xFF`: user KV.
    pub user: u32,
}

impl KeyMix {
    /// `(key kind, weight)` pairs, in the order of the format.
    pub fn weights(&self) -> [(&'static str, u32); 5] {
        [
            ("connection", self.connection),
            ("message", self.message),
            ("history", self.history),
            ("page", self.page),
            ("user", self.user),
        ]
    }
}

impl Default for KeyMix {
    fn default() -> Self {
        KeyMix { connection: 3, message: 1, history: 2, page: 2, user: 2 }
    }
}

/// `[workload]`: what the driver does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Actors created over the run.
    pub actors: Range<u64>,
    /// Actor names; each created actor gets one, uniformly.
    pub actor_names: Vec<String>,
    /// Actor creations per minute until `actors` exist.
    pub create_rate_per_min: Range<f64>,
    /// Time between two actions of the driver, ms (a spread: per-seed span, per-action value).
    pub action_interval_ms: Range<u64>,
    pub mix: ActionMix,
    /// Size of a KV value written by an action, bytes (a spread).
    pub value_size: Range<u64>,
    /// Probability that a KV write's value is sized around a preload budget (the global budget or
    /// a prefix's `maxBytes`) instead of `value_size`: the budget-overflow workload.
    pub budget_overflow_chance: Range<f64>,
    pub crash_policy: CrashPolicyMix,
    /// Which keys KV writes and deletes address.
    pub keys: KeyMix,
    /// Size of an actor's input, bytes (a spread).
    pub input_size: Range<u64>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            actors: Range::new(4, 16),
            actor_names: vec!["counter".to_string()],
            create_rate_per_min: Range::new(6.0, 60.0),
            action_interval_ms: Range::new(100, 5_000),
            mix: ActionMix::default(),
            value_size: Range::new(0, 4_096),
            budget_overflow_chance: Range::new(0.0, 0.1),
            crash_policy: CrashPolicyMix::default(),
            keys: KeyMix::default(),
            input_size: Range::new(0, 1_024),
        }
    }
}

/// `[preload]`: the preload budget and the manifests runners declare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preload {
    /// Global budget `T` in bytes (`spec/preload.md` §3.4); 0 disables preload.
    pub budget: Range<u64>,
    /// The manifest of every actor name not listed in `manifests`.
    pub default_manifest: ManifestSpec,
    /// Actor name -> its manifest.
    pub manifests: BTreeMap<String, ManifestSpec>,
    /// Whether runners of different versions may declare different manifests.
    pub differ_by_version: bool,
    /// Runner version -> actor name -> the manifest runners of that version declare (needs
    /// `differ_by_version`).
    pub by_version: BTreeMap<String, BTreeMap<String, ManifestSpec>>,
    /// Labels a scenario whose manifests break the partial-flag agreement of `spec/preload.md`
    /// §3.7 on purpose (a negative test: oracle equivalence is expected to fail).
    pub partial_mismatch_negative: bool,
}

impl Default for Preload {
    fn default() -> Self {
        Preload {
            budget: Range::one(PRELOAD_MAX_TOTAL_BYTES),
            default_manifest: ManifestSpec::Reference,
            manifests: BTreeMap::new(),
            differ_by_version: false,
            by_version: BTreeMap::new(),
            partial_mismatch_negative: false,
        }
    }
}

/// `[engine]`: overrides of the engine's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Engine {
    /// Field of `pegsim_model::config::Timing` -> its value (defaults: `spec/protocol.md` §10).
    pub timing: BTreeMap<String, u64>,
    /// Per-actor KV storage quota, bytes.
    pub kv_quota: u64,
    /// `KvMetadata.version` the engine writes.
    pub metadata_version: String,
    /// Preload read attempts before a fetch gives up.
    pub preload_max_attempts: u32,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            timing: BTreeMap::new(),
            kv_quota: MAX_STORAGE_SIZE,
            metadata_version: KV_METADATA_VERSION.to_string(),
            preload_max_attempts: PRELOAD_MAX_ATTEMPTS,
        }
    }
}

impl Engine {
    /// The timing with the overrides applied, or the first override that does not fit.
    pub(crate) fn resolved_timing(&self) -> Result<Timing, Problem> {
        let mut value = serde_json::to_value(Timing::default())
            .map_err(|e| Problem::new("engine.timing", e.to_string()))?;
        let Some(fields) = value.as_object_mut() else {
            return Err(Problem::new("engine.timing", "Timing is not a struct"));
        };
        for (name, v) in &self.timing {
            let path = format!("engine.timing.{name}");
            if !fields.contains_key(name) {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(Problem::new(
                    path,
                    format!("unknown timing field `{name}` (known: {})", known.join(", ")),
                ));
            }
            fields.insert(name.clone(), serde_json::Value::from(*v));
            // Check this one field's type on its own, so the error names it.
            serde_json::from_value::<Timing>(serde_json::Value::Object(fields.clone()))
                .map_err(|e| Problem::new(path, format!("{v} does not fit: {e}")))?;
        }
        let timing: Timing = serde_json::from_value(value)
            .map_err(|e| Problem::new("engine.timing", e.to_string()))?;
        timing.check().map_err(|relation| {
            Problem::new(
                "engine.timing",
                format!("the timing breaks the relation `{relation}` of spec/protocol.md §10"),
            )
        })?;
        Ok(timing)
    }
}

impl Scenario {
    /// Read and parse the scenario file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::Read { file: path.to_path_buf(), error: e.to_string() })?;
        Scenario::parse(&text, path)
    }

    /// Parse and validate a scenario text; `path` names it in errors and gives the default name.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref().to_path_buf();
        let map = SourceMap::new(text);
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| {
            let p = map.locate(&e);
            ScenarioError::Invalid {
                file: path.clone(),
                line: p.line,
                field: p.field,
                message: p.message,
            }
        })?;
        if scenario.name.is_empty() {
            scenario.name =
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        scenario.source = Source { path, map };
        scenario.validate()?;
        Ok(scenario)
    }

    /// The file the scenario was read from (empty for a scenario built in code).
    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// The scenario as TOML (a scenario file that parses back to an equal scenario).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Check every range and relation; the first problem (in file order) is returned, located.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        match self.all_problems().into_iter().next() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Every problem validation finds, located, in file order.
    pub fn all_problems(&self) -> Vec<ScenarioError> {
        let mut errors: Vec<ScenarioError> = self
            .problems()
            .into_iter()
            .map(|p| ScenarioError::Invalid {
                file: self.source.path.clone(),
                line: self.source.map.line_of_field(&p.field),
                field: p.field,
                message: p.message,
            })
            .collect();
        errors.sort_by_key(|e| match e {
            ScenarioError::Invalid { line, .. } => line.unwrap_or(usize::MAX),
            ScenarioError::Read { .. } => 0,
        });
        errors
    }

    /// The per-seed configuration: which fault classes are on and how strong, the topology
    /// counts, the workload numbers and the budget. Every value is drawn from its own stream
    /// `scenario.<field path>`, so equal seeds give equal draws and adding a knob leaves the other
    /// draws unchanged. Assumes a validated scenario.
    pub fn draw(&self, streams: &SeedStreams) -> Derived {
        derived::draw(self, streams)
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        self.check_topology(&mut out);
        self.check_phases(&mut out);
        self.check_workload(&mut out);
        self.check_preload(&mut out);
        self.check_engine(&mut out);
        self.faults.check(&mut out);
        self.check_coverage(&mut out);
        out
    }

    fn check_coverage(&self, out: &mut Vec<Problem>) {
        for name in &self.coverage.required {
            if !crate::coverage::is_known(name) {
                let known: Vec<&str> = crate::coverage::PROBES.iter().map(|(n, _)| *n).collect();
                out.push(Problem::new(
                    "coverage.required",
                    format!("unknown probe `{name}`; known probes: {}", known.join(", ")),
                ));
            }
        }
    }

    fn check_topology(&self, out: &mut Vec<Problem>) {
        let t = &self.topology;
        if t.edge_nodes.lo < 2 {
            out.push(Problem::new(
                "topology.edge_nodes",
                format!("at least 2 edge nodes are needed, found {}", t.edge_nodes),
            ));
        }
        if t.runner_processes.lo < 1 {
            out.push(Problem::new(
                "topology.runner_processes",
                format!("at least 1 runner process is needed, found {}", t.runner_processes),
            ));
        }
        if t.slots_per_runner.lo < 1 || t.slots_per_runner.hi > u64::from(u32::MAX) {
            out.push(Problem::new(
                "topology.slots_per_runner",
                format!("slots must lie in [1, {}], found {}", u32::MAX, t.slots_per_runner),
            ));
        }
        if t.namespaces.is_empty() {
            out.push(Problem::new("topology.namespaces", "at least one namespace is needed"));
        }
        for (ns, pools) in &t.namespaces {
            let path = format!("topology.namespaces.{ns}");
            if ns.is_empty() {
                out.push(Problem::new(&path, "a namespace name must not be empty"));
            }
            if pools.is_empty() {
                out.push(Problem::new(&path, format!("namespace `{ns}` needs at least one pool")));
            }
            check_names(&path, "pool", pools, out);
        }
    }

    fn check_phases(&self, out: &mut Vec<Problem>) {
        let p = &self.phases;
        if p.heal_ms == 0 {
            out.push(Problem::new("phases.heal_ms", "the heal phase must last at least 1 ms"));
        }
        if p.watchdog_ms == 0 {
            out.push(Problem::new("phases.watchdog_ms", "the watchdog must be at least 1 ms"));
        }
    }

    fn check_workload(&self, out: &mut Vec<Problem>) {
        let w = &self.workload;
        if w.actor_names.is_empty() {
            out.push(Problem::new("workload.actor_names", "at least one actor name is needed"));
        }
        check_names("workload.actor_names", "actor name", &w.actor_names, out);
        if w.create_rate_per_min.lo < 0.0 {
            out.push(Problem::new(
                "workload.create_rate_per_min",
                format!("a rate must be >= 0, found {}", w.create_rate_per_min),
            ));
        }
        if w.mix.weights().iter().all(|(_, weight)| *weight == 0) {
            out.push(Problem::new("workload.mix", "at least one action needs a weight above 0"));
        }
        if w.value_size.hi > MAX_VALUE_SIZE as u64 {
            out.push(Problem::new(
                "workload.value_size",
                format!("a value is at most {MAX_VALUE_SIZE} bytes, found {}", w.value_size),
            ));
        }
        if w.budget_overflow_chance.lo < 0.0 || w.budget_overflow_chance.hi > 1.0 {
            out.push(Problem::new(
                "workload.budget_overflow_chance",
                format!("a chance must lie in [0, 1], found {}", w.budget_overflow_chance),
            ));
        }
        let key_total: u64 = w.keys.weights().iter().map(|(_, weight)| u64::from(*weight)).sum();
        if key_total == 0 {
            out.push(Problem::new("workload.keys", "at least one key kind needs a weight above 0"));
        } else if key_total > u64::from(u32::MAX) {
            out.push(Problem::new(
                "workload.keys",
                format!("the weights add up to {key_total}, at most {} allowed", u32::MAX),
            ));
        }
        let c = &w.crash_policy;
        if c.restart == 0 && c.sleep == 0 && c.destroy == 0 {
            out.push(Problem::new(
                "workload.crash_policy",
                "at least one crash policy needs a weight above 0",
            ));
        }
        if w.input_size.hi > MAX_ACTOR_INPUT_BYTES as u64 {
            out.push(Problem::new(
                "workload.input_size",
                format!(
                    "an input is at most {MAX_ACTOR_INPUT_BYTES} bytes, found {}",
                    w.input_size
                ),
            ));
        }
    }

    fn check_preload(&self, out: &mut Vec<Problem>) {
        let p = &self.preload;
        let names = &self.workload.actor_names;
        for name in p.manifests.keys() {
            if !names.contains(name) {
                out.push(Problem::new(
                    format!("preload.manifests.{name}"),
                    format!("`{name}` is not one of workload.actor_names {names:?}"),
                ));
            }
        }
        if !p.by_version.is_empty() && !p.differ_by_version {
            out.push(Problem::new(
                "preload.by_version",
                "per-version manifests need `preload.differ_by_version = true`",
            ));
        }
        let versions = self.topology.runner_versions.all();
        for (version, per_name) in &p.by_version {
            let path = format!("preload.by_version.{version}");
            match version.parse::<u32>() {
                Ok(v) if versions.contains(&v) => {}
                _ => out.push(Problem::new(
                    &path,
                    format!("`{version}` is not one of topology.runner_versions {versions:?}"),
                )),
            }
            for name in per_name.keys() {
                if !names.contains(name) {
                    out.push(Problem::new(
                        format!("{path}.{name}"),
                        format!("`{name}` is not one of workload.actor_names {names:?}"),
                    ));
                }
            }
        }
        if !p.partial_mismatch_negative {
            for name in names {
                if let Some(problem) = self.partial_disagreement(name) {
                    out.push(problem);
                }
            }
        }
    }

    /// `spec/preload.md` §3.7: a prefix declared partial by one manifest of `name` must not be
    /// declared non-partial by another manifest of `name`.
    fn partial_disagreement(&self, name: &str) -> Option<Problem> {
        let p = &self.preload;
        let base_path = if p.manifests.contains_key(name) {
            format!("preload.manifests.{name}")
        } else {
            "preload.default_manifest".to_string()
        };
        let base = p.manifests.get(name).unwrap_or(&p.default_manifest);
        let mut declared: Vec<(String, &ManifestSpec)> = vec![(base_path, base)];
        for (version, per_name) in &p.by_version {
            if let Some(spec) = per_name.get(name) {
                declared.push((format!("preload.by_version.{version}.{name}"), spec));
            }
        }
        for (partial_path, partial_spec) in &declared {
            for (prefix, _) in partial_spec.prefix_flags().iter().filter(|(_, partial)| *partial) {
                for (other_path, other_spec) in &declared {
                    let contradicts = other_spec
                        .prefix_flags()
                        .iter()
                        .any(|(q, partial)| q == prefix && !*partial && !q.is_empty());
                    if contradicts {
                        return Some(Problem::new(
                            other_path,
                            format!(
                                "prefix {prefix:?} of actor name `{name}` is partial in \
                                 `{partial_path}` but not here (spec/preload.md §3.7); set \
                                 `preload.partial_mismatch_negative = true` if this is a \
                                 negative test"
                            ),
                        ));
                    }
                }
            }
        }
        None
    }

    fn check_engine(&self, out: &mut Vec<Problem>) {
        if let Err(p) = self.engine.resolved_timing() {
            out.push(p);
        }
        if self.engine.kv_quota == 0 {
            out.push(Problem::new("engine.kv_quota", "the KV quota must be at least 1 byte"));
        }
        if self.engine.metadata_version.len() > u8::MAX as usize {
            out.push(Problem::new(
                "engine.metadata_version",
                format!("at most {} bytes, found {}", u8::MAX, self.engine.metadata_version.len()),
            ));
        }
        if self.engine.preload_max_attempts == 0 {
            out.push(Problem::new(
                "engine.preload_max_attempts",
                "a preload needs at least 1 read attempt",
            ));
        }
    }
}

/// Names must be non-empty and distinct.
fn check_names(path: &str, what: &str, names: &[String], out: &mut Vec<Problem>) {
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            out.push(Problem::new(format!("{path}[{i}]"), format!("a {what} must not be empty")));
        } else if names[..i].contains(name) {
            out.push(Problem::new(format!("{path}[{i}]"), format!("{what} `{name}` is repeated")));
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.source.path.display())
    }
}

#[cfg(test)]
mod tests;
