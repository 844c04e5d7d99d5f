//! The madsim world that runs the model: one core node (workflows, registry; the store is shared
//! and survives every crash), edge nodes (connection handlers), runner nodes (one runner process
//! each), a bus node (pub/sub and signal deliveries), the fault injector and the workload driver.
//!
//! A world is `(WorldConfig, trace mode)`; everything in it is decided by the seed: madsim's
//! runtime gets it, and every choice the simulator makes comes from a named stream of
//! `seed::SeedStreams`. [`run_world`] runs the fault phase, heals, runs the heal phase with its
//! watchdog, and returns the outcome (trace hash, violations, counts, timeline).
//!
//! Layout: `config` (what the world runs with), `shared` (state every node shares), `clock`,
//! `timers`, `mail` (mailboxes and subscriptions), `bus`, `transport`, `frames`, one module per
//! node kind (`core_node`, `edge_node`, `runner_node`), `faults`, `driver`.

pub mod bus;
pub mod clock;
pub mod config;
pub mod core_node;
pub mod driver;
pub mod edge_node;
pub mod faults;
pub mod frames;
pub mod mail;
pub mod runner_node;
pub mod shared;
pub mod timers;
pub mod transport;

use std::sync::Arc;

use pegsim_model::runner::RunnerConfig;
use rand::Rng;

use crate::check::{CheckConfig, Checker};
use crate::history::History;
use crate::run::{RunOutcome, TraceMode};
use crate::seed::SeedStreams;
use bus::BusFaults;
use clock::SimClock;
use config::WorldConfig;
use core_node::CORE;
use edge_node::edge_name;
use faults::{Injector, NodeIds};
use madsim::task::NodeId;
use runner_node::runner_name;
use shared::{Recorder, Shared, State, StoreFaults};
use transport::addr;

/// The configuration of runner process `index` (every incarnation of a runner node runs the same
/// deployment; its `envoy_key` is fresh each time).
pub fn runner_config(config: &WorldConfig, index: usize, _incarnation: u32) -> RunnerConfig {
    let d = &config.derived;
    let runner = d.topology.runners.get(index).cloned();
    let (namespace, pool) = match &runner {
        Some(r) => (r.namespace.clone(), r.pool.clone()),
        None => config.namespace_and_pool(),
    };
    let version = runner.as_ref().map_or(1, |r| r.version);
    let mut rc = RunnerConfig::new(namespace, pool);
    rc.version = version;
    rc.slots = runner.as_ref().map(|r| r.slots);
    for name in &d.workload.actor_names {
        match d.preload.runner_manifest(version, name) {
            Some(manifest) => {
                rc.manifests.insert(name.clone(), manifest);
            }
            None => {
                rc.actor_name_metadata.insert(name.clone(), d.preload.metadata_json(version, name));
            }
        }
    }
    rc.metadata = Some(serde_json::json!({ "node": runner_name(index) }));
    rc.timing = config.engine.timing.clone();
    rc.max_frame_bytes = config.engine.timing.max_frame_bytes;
    rc
}

/// What the checkers need to know about the run (never the canaries).
pub fn check_config(config: &WorldConfig) -> CheckConfig {
    CheckConfig::new(
        config.engine.timing.clone(),
        config.engine.preload_budget,
        config.engine.kv.clone(),
        config.engine.timing.max_frame_bytes,
    )
    .with_startup_oracle(startup_oracle())
}

/// The P12 oracle: the runner's startup program run with every read answered live from `S@V`
/// (`spec/preload.md` §6.3). A startup that fails in the oracle run is rendered as a record that
/// cannot equal a successful one.
fn startup_oracle() -> crate::check::StartupOracle {
    Box::new(|snapshot, actor, generation, input| {
        match pegsim_model::runner::startup::oracle_run(snapshot, actor, generation, input) {
            Ok(record) => record,
            Err(e) => pegsim_model::fact::StartupRecord {
                reads: vec![("oracle run failed".into(), e.to_string())],
                ..Default::default()
            },
        }
    })
}

/// Run `spec`: parse its scenario, draw the seed's configuration, run the world.
pub fn run(spec: &crate::run::RunSpec) -> Result<RunOutcome, String> {
    let scenario = crate::scenario::Scenario::parse(&spec.scenario_text, &spec.scenario_path)
        .map_err(|e| e.to_string())?;
    let derived = scenario.draw(&SeedStreams::new(spec.seed));
    run_world(WorldConfig::new(derived, spec.canaries), spec.trace.clone())
}

/// Stack of the thread a world runs on (the size of a main thread's).
const WORLD_STACK_BYTES: usize = 8 << 20;

/// Run one world to the end and return its outcome.
///
/// The world runs on a fresh OS thread of its own (outside the simulation, which is still one
/// thread): madsim makes std's `HashMap` hash keys (used inside madsim's network and task
/// tables) deterministic by seeding the thread's `RandomState` keys, and std initialises those
/// only at a thread's first `RandomState::new()`. On a thread that already made one (the main
/// thread after argument parsing and logging set-up, or a sweep thread after its first world)
/// the keys are random and the trace of a seed varies between runs and processes. A panic in
/// the world is re-raised here, so callers see it as if the world ran on their thread.
pub fn run_world(config: WorldConfig, trace: TraceMode) -> Result<RunOutcome, String> {
    run_world_watched(config, trace, |_| {})
}

/// [`run_world`], handing `watch` a weak reference to the world's shared state as soon as it
/// exists (tests check that nothing keeps it alive once the world has ended).
fn run_world_watched(
    config: WorldConfig,
    trace: TraceMode,
    watch: impl FnOnce(std::sync::Weak<std::sync::Mutex<State>>) + Send + 'static,
) -> Result<RunOutcome, String> {
    let seed = config.seed;
    let thread = std::thread::Builder::new()
        .name(format!("pegsim-world-{seed}"))
        .stack_size(WORLD_STACK_BYTES)
        .spawn(move || {
            let config_rt = madsim::Config::default();
            let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, config_rt);
            runtime.block_on(world_main(config, trace, watch))
        })
        .map_err(|e| format!("cannot start the world's thread: {e}"))?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn world_main(
    config: WorldConfig,
    trace: TraceMode,
    watch: impl FnOnce(std::sync::Weak<std::sync::Mutex<State>>),
) -> Result<RunOutcome, String> {
    let config = Arc::new(config);
    let streams = SeedStreams::new(config.seed);
    let history = History::new(trace).map_err(|e| e.to_string())?;
    let recorder = Recorder {
        history,
        checker: Checker::new(check_config(&config)),
        fault_counts: Default::default(),
        probe_counts: Default::default(),
        coverage: Default::default(),
        latencies_ms: Default::default(),
        first_violation_seq: None,
        closed: false,
    };
    let mut state = State::new(
        SimClock::start(),
        config.canaries,
        StoreFaults::new(streams.stream("store-faults")),
        BusFaults::new(streams.stream("bus")),
        recorder,
    );
    state.store_faults.active = true;
    let mut clock_rng = streams.stream("clocks");
    let mut names = vec![CORE.to_string(), "bus".to_string(), driver::DRIVER.to_string()];
    names.extend((0..config.edges()).map(edge_name));
    names.extend((0..config.runners()).map(runner_name));
    for name in &names {
        state.clocks.add_node(name, clock_rng.gen_range(1_000_000..1_000_000_000));
    }
    let shared = Shared::new(state);
    watch(shared.downgrade());

    let handle = madsim::runtime::Handle::current();
    let bus_node = handle.create_node().name("bus").ip(addr::bus()).build();
    shared.lock().bus_node = Some(bus_node);
    let core = {
        let (s, c) = (shared.clone(), config.clone());
        handle
            .create_node()
            .name(CORE)
            .ip(addr::core())
            .init(move || core_node::run(s.clone(), c.clone()))
            .build()
    };
    let mut edges = Vec::new();
    for i in 0..config.edges() {
        let (s, c) = (shared.clone(), config.clone());
        let node = handle
            .create_node()
            .name(edge_name(i))
            .ip(addr::edge(i))
            .init(move || edge_node::run(s.clone(), c.clone(), i))
            .build();
        edges.push(node.id());
    }
    // Let the core and the edges come up before the first runner connects.
    madsim::time::sleep(std::time::Duration::from_millis(10)).await;
    let mut runners = Vec::new();
    for i in 0..config.runners() {
        let (s, c) = (shared.clone(), config.clone());
        let node = handle
            .create_node()
            .name(runner_name(i))
            .ip(addr::runner(i))
            .init(move || runner_node::run(s.clone(), c.clone(), i))
            .build();
        runners.push(node.id());
    }

    let mut all_nodes = vec![core.id()];
    all_nodes.extend(edges.iter().chain(&runners).copied());
    let injector =
        Injector::new(shared.clone(), config.clone(), NodeIds { core: core.id(), edges, runners });
    injector.start();
    let supervisor = madsim::task::spawn(injector.clone().supervise_runners());
    let mut workload = driver::Workload::new(&config);
    driver::fault_phase(&shared, &config, &mut workload).await;
    injector.heal();
    driver::heal_phase(&shared, &config, &mut workload).await;
    let result = outcome(&shared, &config);
    supervisor.abort();
    teardown(&shared, &handle, all_nodes).await;
    result
}

/// Simulated time the teardown lets pass so that every pending timer fires (see [`teardown`]).
const TEARDOWN_DRAIN_MS: u64 = 24 * 3_600_000;

/// Free the world's memory once its outcome is taken. madsim's runtime does not drop pending
/// tasks when it is dropped: a task waiting on a timer or a channel is owned by the waker the
/// timer or channel keeps, and the task's future keeps the timer (and, through [`Shared`], the
/// channels) alive, so every world would stay in memory until the process ends (measured: about
/// 70 MB per partition-and-clog seed; a 50-seed canary range on it was killed by the OOM killer at
/// 19.5 GB). So: stop recording and release the shared state's channels and data, kill every
/// node, then let simulated time run far ahead, so that each pending timer fires and the
/// executor drops its killed task (and with it the senders that wake the others).
async fn teardown(shared: &Shared, handle: &madsim::runtime::Handle, nodes: Vec<NodeId>) {
    let bus = shared.lock().bus_node.as_ref().map(|n| n.id());
    shared.lock().release();
    for id in nodes.into_iter().chain(bus) {
        handle.kill(id);
    }
    madsim::time::sleep(std::time::Duration::from_millis(TEARDOWN_DRAIN_MS)).await;
}

fn outcome(shared: &Shared, config: &WorldConfig) -> Result<RunOutcome, String> {
    let mut st = shared.lock();
    let sim_ms = st.clock.now_ms();
    let r = &mut st.recorder;
    r.history.finish().map_err(|e| e.to_string())?;
    let timeline = r.history.captured();
    Ok(RunOutcome {
        seed: config.seed,
        trace_hash: r.history.hash(),
        history_len: r.history.len(),
        violations: r.checker.violations().to_vec(),
        outside_envelope: r.checker.outside_envelope().to_vec(),
        derived_config: config.derived.to_toml(),
        fault_counts: r.fault_counts.clone(),
        probe_counts: r.probe_counts.clone(),
        sim_ms,
        timeline,
        latencies_ms: r.latencies_ms.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A world's memory goes with it: once `run_world` returns, nothing (no task, no node, no
    /// channel) still holds its shared state — the history, the checker, the store. Without the
    /// teardown, madsim keeps every pending task, and the tasks keep the state (each
    /// partition-and-clog seed left ~70 MB behind in a sweep).
    #[test]
    fn nothing_keeps_a_world_alive_after_its_run() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/default.toml");
        let text =
            std::fs::read_to_string(&path).expect("scenarios/default.toml is in the repository");
        let scenario = crate::scenario::Scenario::parse(&text, &path).expect("default parses");
        let derived = scenario.draw(&SeedStreams::new(3));
        let config = WorldConfig::new(derived, pegsim_model::canary::Canaries::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = run_world_watched(config, TraceMode::Ring, move |weak| {
            tx.send(weak).expect("the test waits for the reference");
        })
        .expect("the default scenario runs");
        assert!(outcome.history_len > 100, "a real run: {} entries", outcome.history_len);
        let weak = rx.recv().expect("the world reported its shared state");
        assert!(weak.upgrade().is_none(), "the world's shared state outlived its run");
    }
}
