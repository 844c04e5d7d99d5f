//! The fault injector: during the fault phase, every fault class the seed's swarm draw switched on
//! fires at its drawn rate (exponential gaps), each event drawn from the `faults` stream; at the
//! start of the heal phase everything is undone (crashed nodes restart, pauses resume, clogs
//! release, delays and bus/store faults stop, half-open links are reset so both ends notice).
//!
//! Every injected event is recorded as `Entry::Fault { class, detail }`; events with a duration get
//! a second entry whose detail starts with `end` when they stop. Classes whose events break the
//! spec's timing envelope (`spec/protocol.md` §6.3) say so in their detail (`envelope`), which the
//! checkers read.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use pegsim_model::constants::MAX_LINK_DELAY_MS;
use pegsim_model::fact::ConnId;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::net::{LinkControl, Side};
use crate::run::{Dir, Entry};
use crate::seed::SeedStreams;
use crate::world::config::{FaultClass, WorldConfig};
use crate::world::core_node::CORE;
use crate::world::edge_node::edge_name;
use crate::world::runner_node::runner_name;
use crate::world::shared::Shared;

/// The node that records injected faults.
const SIM: &str = "sim";

/// madsim ids of the world's nodes.
#[derive(Clone, Debug)]
pub struct NodeIds {
    pub core: NodeId,
    pub edges: Vec<NodeId>,
    pub runners: Vec<NodeId>,
}

impl NodeIds {
    fn by_name(&self, name: &str) -> Option<NodeId> {
        if name == CORE {
            return Some(self.core);
        }
        (0..self.edges.len())
            .find(|i| edge_name(*i) == name)
            .map(|i| self.edges[i])
            .or_else(|| (0..self.runners.len()).find(|i| runner_name(*i) == name).map(|i| self.runners[i]))
    }

    fn all_names(&self) -> Vec<String> {
        let mut v = vec![CORE.to_string()];
        v.extend((0..self.edges.len()).map(edge_name));
        v.extend((0..self.runners.len()).map(runner_name));
        v
    }
}

/// Faults in effect that the heal phase must undo.
#[derive(Default)]
struct Active {
    killed: BTreeSet<String>,
    paused: BTreeSet<String>,
    clogged: BTreeSet<(ConnId, u8)>,
    half_open: BTreeSet<ConnId>,
    delayed: BTreeSet<ConnId>,
    net_clogs: BTreeSet<(NodeId, NodeId)>,
}

/// The injector of one world.
#[derive(Clone)]
pub struct Injector {
    shared: Shared,
    config: Arc<WorldConfig>,
    nodes: NodeIds,
    active: Arc<Mutex<Active>>,
}

impl Injector {
    pub fn new(shared: Shared, config: Arc<WorldConfig>, nodes: NodeIds) -> Self {
        Injector { shared, config, nodes, active: Arc::new(Mutex::new(Active::default())) }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Active> {
        match self.active.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Start one task per fault class that is on; each stops at the end of the fault phase.
    pub fn start(&self) {
        let streams = SeedStreams::new(self.config.seed);
        for (name, class) in &self.config.faults {
            if !class.on || class.rate_per_min <= 0.0 {
                continue;
            }
            let injector = self.clone();
            let (name, class) = (name.clone(), class.clone());
            let rng = streams.stream(&format!("faults:{name}"));
            madsim::task::spawn(async move { injector.class_loop(name, class, rng).await });
        }
    }

    async fn class_loop(self, name: String, class: FaultClass, mut rng: ChaCha8Rng) {
        let end = self.config.phases.fault_ms;
        let mean_gap_ms = 60_000.0 / class.rate_per_min;
        loop {
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let gap = (-u.ln() * mean_gap_ms).max(1.0) as u64;
            madsim::time::sleep(Duration::from_millis(gap)).await;
            if self.shared.now_ms() >= end {
                return;
            }
            self.fire(&name, &class, &mut rng).await;
        }
    }

    fn record(&self, class: &str, detail: String) {
        self.shared.record(SIM, Entry::Fault { class: class.to_string(), detail });
    }

    /// Time left in the fault phase, capping a duration.
    fn cap(&self, ms: u64) -> u64 {
        let left = self.config.phases.fault_ms.saturating_sub(self.shared.now_ms());
        ms.min(left).max(1)
    }

    async fn fire(&self, name: &str, class: &FaultClass, rng: &mut ChaCha8Rng) {
        let duration = self.cap(uniform(rng, class.duration_ms));
        let magnitude = if class.magnitude.1 > class.magnitude.0 {
            rng.gen_range(class.magnitude.0..=class.magnitude.1)
        } else {
            class.magnitude.0
        };
        match name {
            "connection_reset" => {
                let Some((conn, control)) = self.pick_link(rng) else { return };
                match rng.gen_range(0..3) {
                    0 => {
                        self.record(name, format!("{conn} seen by the runner"));
                        control.reset(Side::Client);
                    }
                    1 => {
                        self.record(name, format!("{conn} seen by the edge"));
                        control.reset(Side::Server);
                    }
                    _ => {
                        self.record(name, format!("{conn} seen by both"));
                        control.reset_both();
                    }
                }
            }
            "half_open" => {
                let Some((conn, control)) = self.pick_link(rng) else { return };
                let dir = pick_dir(rng);
                self.record(name, format!("{conn} {dir:?} envelope"));
                control.set_half_open(dir, true);
                self.active().half_open.insert(conn);
            }
            "reconnect_storm" => {
                let runners = self.config.topology.runners.max(1);
                let runner = rng.gen_range(0..runners);
                self.record(name, format!("begin runner-{runner} for {duration} ms"));
                let until = self.shared.now_ms() + duration;
                while self.shared.now_ms() < until {
                    let links: Vec<_> = self
                        .shared
                        .lock()
                        .links
                        .iter()
                        .filter(|(_, l)| l.runner == runner)
                        .map(|(c, l)| (*c, l.control.clone()))
                        .collect();
                    for (_, control) in links {
                        control.reset_both();
                    }
                    madsim::time::sleep(Duration::from_millis(rng.gen_range(100..1_500))).await;
                }
                self.record(name, format!("end runner-{runner}"));
            }
            "link_delay" => {
                let delay = magnitude.max(0.0) as u64;
                let links = self.links();
                let envelope = if delay > MAX_LINK_DELAY_MS { " envelope" } else { "" };
                self.record(name, format!("begin {delay} ms on {} links for {duration} ms{envelope}", links.len()));
                for (conn, control) in &links {
                    control.set_delay(Dir::ToEngine, Duration::from_millis(delay));
                    control.set_delay(Dir::ToRunner, Duration::from_millis(delay));
                    self.active().delayed.insert(*conn);
                }
                madsim::time::sleep(Duration::from_millis(duration)).await;
                for (conn, control) in &links {
                    control.set_delay(Dir::ToEngine, Duration::ZERO);
                    control.set_delay(Dir::ToRunner, Duration::ZERO);
                    self.active().delayed.remove(conn);
                }
                self.record(name, "end".into());
            }
            "one_way_clog" => {
                let Some((conn, control)) = self.pick_link(rng) else { return };
                let dir = pick_dir(rng);
                self.record(name, format!("begin {conn} {dir:?} for {duration} ms envelope"));
                control.clog(dir);
                self.active().clogged.insert((conn, dir_code(dir)));
                madsim::time::sleep(Duration::from_millis(duration)).await;
                control.unclog(dir);
                self.active().clogged.remove(&(conn, dir_code(dir)));
                self.record(name, format!("end {conn}"));
            }
            "partition" => {
                let Some(&runner) = self.nodes.runners.choose(rng) else { return };
                let edges: Vec<NodeId> =
                    self.nodes.edges.iter().copied().filter(|_| rng.gen_bool(0.7)).collect();
                self.record(name, format!("begin runner node {runner} from {} edges for {duration} ms envelope", edges.len()));
                let net = NetSim::current();
                for e in &edges {
                    net.clog_link(runner, *e);
                    net.clog_link(*e, runner);
                    let mut a = self.active();
                    a.net_clogs.insert((runner, *e));
                    a.net_clogs.insert((*e, runner));
                }
                madsim::time::sleep(Duration::from_millis(duration)).await;
                for e in &edges {
                    net.unclog_link(runner, *e);
                    net.unclog_link(*e, runner);
                    let mut a = self.active();
                    a.net_clogs.remove(&(runner, *e));
                    a.net_clogs.remove(&(*e, runner));
                }
                self.record(name, "end".into());
            }
            "swizzle_clog" => {
                let mut links = self.links();
                links.retain(|_| rng.gen_bool(0.5));
                if links.is_empty() {
                    return;
                }
                self.record(name, format!("begin {} links for {duration} ms envelope", links.len()));
                for (conn, control) in &links {
                    control.clog(Dir::ToEngine);
                    control.clog(Dir::ToRunner);
                    let mut a = self.active();
                    a.clogged.insert((*conn, 0));
                    a.clogged.insert((*conn, 1));
                }
                links.shuffle(rng);
                let step = (duration / links.len() as u64).max(1);
                for (conn, control) in &links {
                    madsim::time::sleep(Duration::from_millis(rng.gen_range(1..=step))).await;
                    control.unclog(Dir::ToEngine);
                    control.unclog(Dir::ToRunner);
                    let mut a = self.active();
                    a.clogged.remove(&(*conn, 0));
                    a.clogged.remove(&(*conn, 1));
                }
                self.record(name, "end".into());
            }
            "signal_reorder" | "signal_duplicate" | "signal_delay" | "bus_loss" | "bus_duplicate"
            | "bus_delay" | "store_conflict" | "store_unknown" | "preload_read_failure" => {
                self.record(name, format!("begin {magnitude:.3} for {duration} ms"));
                self.set_window(name, Some(magnitude));
                madsim::time::sleep(Duration::from_millis(duration)).await;
                self.set_window(name, None);
                self.record(name, "end".into());
            }
            "edge_crash" | "core_crash" | "runner_crash" => {
                let node = match name {
                    "edge_crash" => edge_name(rng.gen_range(0..self.nodes.edges.len().max(1))),
                    "core_crash" => CORE.to_string(),
                    _ => runner_name(rng.gen_range(0..self.nodes.runners.len().max(1))),
                };
                if self.active().killed.contains(&node) {
                    return;
                }
                let Some(id) = self.nodes.by_name(&node) else { return };
                self.record(name, format!("begin {node} down for {duration} ms"));
                self.kill(&node, id);
                madsim::time::sleep(Duration::from_millis(duration)).await;
                if name != "runner_crash" || self.config.topology.restart_runners {
                    self.restart(&node, id);
                }
                self.record(name, format!("end {node}"));
            }
            "clock_skew" => {
                let names = self.nodes.all_names();
                let Some(node) = names.choose(rng) else { return };
                let skew = rng.gen_range(-magnitude.abs()..=magnitude.abs()) as i64;
                self.record(name, format!("{node} wall clock skew {skew} ms"));
                self.shared.lock().clocks.set_skew(node, skew);
            }
            "process_pause" => {
                let names = self.nodes.all_names();
                let Some(node) = names.choose(rng).cloned() else { return };
                let Some(id) = self.nodes.by_name(&node) else { return };
                if !self.active().paused.insert(node.clone()) {
                    return;
                }
                self.record(name, format!("begin {node} paused for {duration} ms envelope"));
                Handle::current().pause(id);
                madsim::time::sleep(Duration::from_millis(duration)).await;
                Handle::current().resume(id);
                self.active().paused.remove(&node);
                self.record(name, format!("end {node}"));
            }
            other => self.record(other, "unknown fault class ignored".into()),
        }
    }

    fn kill(&self, node: &str, id: NodeId) {
        Handle::current().kill(id);
        self.active().killed.insert(node.to_string());
        self.shared.record(SIM, Entry::Node { node: node.to_string(), event: "crash".into() });
        let mut st = self.shared.lock();
        if node == CORE {
            st.mail.core = None;
        } else if let Some(index) = (0..self.nodes.runners.len()).find(|i| runner_name(*i) == node) {
            st.instances.retain(|_, (i, _)| *i != index);
            st.mail.runners.remove(&index);
        } else if let Some(index) = (0..self.nodes.edges.len()).find(|i| edge_name(*i) == node) {
            let conns: Vec<ConnId> =
                st.links.iter().filter(|(_, l)| l.edge == index).map(|(c, _)| *c).collect();
            for c in conns {
                st.mail.conns.remove(&c);
                st.mail.unsubscribe_all(c);
            }
        }
    }

    fn restart(&self, node: &str, id: NodeId) {
        self.active().killed.remove(node);
        self.shared.record(SIM, Entry::Node { node: node.to_string(), event: "restart".into() });
        Handle::current().restart(id);
    }

    fn set_window(&self, class: &str, value: Option<f64>) {
        let mut st = self.shared.lock();
        let p = value.unwrap_or(0.0);
        let range = value.map(|v| (0, v.max(0.0) as u64));
        match class {
            "store_conflict" => st.store_faults.conflict = p,
            "store_unknown" => st.store_faults.unknown = p,
            "preload_read_failure" => st.store_faults.preload_read = p,
            "bus_loss" => st.bus_faults.loss = p,
            "bus_duplicate" => st.bus_faults.duplicate = p,
            "bus_delay" => st.bus_faults.extra_delay_ms = range,
            "signal_reorder" => st.bus_faults.signal_reorder_ms = range,
            "signal_duplicate" => st.bus_faults.signal_duplicate = p,
            "signal_delay" => st.bus_faults.signal_extra_delay_ms = range,
            _ => {}
        }
    }

    fn links(&self) -> Vec<(ConnId, LinkControl)> {
        self.shared.lock().links.iter().map(|(c, l)| (*c, l.control.clone())).collect()
    }

    fn pick_link(&self, rng: &mut ChaCha8Rng) -> Option<(ConnId, LinkControl)> {
        self.links().choose(rng).cloned()
    }

    /// Undo every fault in effect: the heal phase starts with all faults off.
    pub fn heal(&self) {
        {
            let mut st = self.shared.lock();
            st.fault_phase = false;
            st.store_faults.active = false;
            st.bus_faults.clear();
        }
        let active = std::mem::take(&mut *self.active());
        for node in &active.killed {
            if let Some(id) = self.nodes.by_name(node) {
                let is_runner = node.starts_with("runner-");
                if !is_runner || self.config.topology.restart_runners {
                    self.shared.record(SIM, Entry::Node { node: node.clone(), event: "restart".into() });
                    Handle::current().restart(id);
                }
            }
        }
        for node in &active.paused {
            if let Some(id) = self.nodes.by_name(node) {
                Handle::current().resume(id);
            }
        }
        let net = NetSim::current();
        for (a, b) in &active.net_clogs {
            net.unclog_link(*a, *b);
        }
        let links: Vec<(ConnId, LinkControl)> = self.links();
        for (conn, control) in links {
            if active.clogged.iter().any(|(c, _)| *c == conn) {
                control.unclog(Dir::ToEngine);
                control.unclog(Dir::ToRunner);
            }
            if active.delayed.contains(&conn) {
                control.set_delay(Dir::ToEngine, Duration::ZERO);
                control.set_delay(Dir::ToRunner, Duration::ZERO);
            }
            if active.half_open.contains(&conn) {
                control.reset_both();
            }
        }
    }
}

fn uniform(rng: &mut ChaCha8Rng, r: (u64, u64)) -> u64 {
    if r.1 <= r.0 {
        r.0
    } else {
        rng.gen_range(r.0..=r.1)
    }
}

fn pick_dir(rng: &mut ChaCha8Rng) -> Dir {
    if rng.gen_bool(0.5) {
        Dir::ToEngine
    } else {
        Dir::ToRunner
    }
}

fn dir_code(d: Dir) -> u8 {
    match d {
        Dir::ToEngine => 0,
        Dir::ToRunner => 1,
    }
}

/// How long an exited runner process stays down before a fresh one starts on its node, ms.
pub const RUNNER_RESPAWN_DELAY_MS: u64 = 2_000;

impl Injector {
    /// Bring back runner processes that exited on their own (drain completed, fatal eviction) as
    /// fresh processes, when the topology says runners come back. Crashed nodes are the injector's
    /// to restart. Runs for the whole world.
    pub async fn supervise_runners(self) {
        if !self.config.topology.restart_runners {
            return;
        }
        loop {
            madsim::time::sleep(Duration::from_millis(500)).await;
            for (i, id) in self.nodes.runners.iter().enumerate() {
                let node = runner_name(i);
                if self.active().killed.contains(&node) || !Handle::current().is_exit(*id) {
                    continue;
                }
                madsim::time::sleep(Duration::from_millis(RUNNER_RESPAWN_DELAY_MS)).await;
                if !self.active().killed.contains(&node) && Handle::current().is_exit(*id) {
                    self.shared.record(SIM, Entry::Node { node: node.clone(), event: "respawn".into() });
                    Handle::current().restart(*id);
                }
            }
        }
    }
}
