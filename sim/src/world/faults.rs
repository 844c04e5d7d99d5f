//! The fault injector. The seed's swarm draw (`scenario::DerivedFaults`) says which classes are on
//! and how strong; this module makes them happen:
//! - classes with a rate (connection resets, half-open links, reconnect storms, link delays,
//!   one-way and swizzle clogs, partitions, edge / core / runner crashes, process pauses, clock
//!   jumps) fire as events with exponential gaps during the fault phase, each drawn from the
//!   class's own stream `faults:<class>`. A class's faults never overlap: the next gap starts
//!   when the previous fault has ended (its duration is awaited in `class_loop`), so long faults
//!   lower the class's effective rate (documented in `scenarios/README.md`);
//! - per-message and per-commit classes (signal and bus faults, store conflicts and unknown
//!   outcomes, preload read failures) are probabilities the buses and the store-fault decider
//!   apply to every message or commit during the fault phase (they record each fault they fire);
//! - clock skew gives every node a wall-clock offset at the start.
//!
//! At the start of the heal phase everything is undone: crashed nodes restart, pauses resume,
//! clogs release, delays and per-message faults stop, half-open links are reset so both ends
//! notice.
//!
//! Every injected event is recorded as `Entry::Fault { class, detail }`; events with a duration
//! get a second entry whose detail starts with `end`. Details of events that break the timing
//! envelope of `spec/protocol.md` §6.3 contain `envelope`.

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
use crate::world::config::{draw_span, WorldConfig};
use crate::world::core_node::CORE;
use crate::world::edge_node::edge_name;
use crate::world::runner_node::runner_name;
use crate::world::shared::Shared;

/// The node that records injected faults.
const SIM: &str = "sim";

/// How long an exited runner process stays down before a fresh one starts on its node, ms.
pub const RUNNER_RESPAWN_DELAY_MS: u64 = 2_000;

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
        (0..self.edges.len()).find(|i| edge_name(*i) == name).map(|i| self.edges[i]).or_else(|| {
            (0..self.runners.len()).find(|i| runner_name(*i) == name).map(|i| self.runners[i])
        })
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
    clogged: BTreeSet<ConnId>,
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

/// A rate-driven fault event: which class, and its rate per minute.
type RateClass = (&'static str, f64);

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

    /// Switch on the per-message faults and the clock offsets, and start one task per
    /// rate-driven class that is on; each stops at the end of the fault phase.
    pub fn start(&self) {
        let f = &self.config.derived.faults;
        let streams = SeedStreams::new(self.config.seed);
        {
            let mut st = self.shared.lock();
            st.store_faults.active = true;
            st.store_faults.conflict = f.store_conflict.as_ref().map_or(0.0, |c| c.chance);
            st.store_faults.unknown = f.store_unknown.as_ref().map_or(0.0, |c| c.chance);
            st.store_faults.unknown_applied = f.store_unknown.as_ref().map_or(0.5, |c| c.applied);
            st.store_faults.preload_read =
                f.preload_read_failure.as_ref().map_or(0.0, |c| c.chance);
            let b = &mut st.bus_faults;
            b.loss = f.bus_loss.as_ref().map_or(0.0, |c| c.chance);
            b.duplicate = f.bus_duplicate.as_ref().map_or(0.0, |c| c.chance);
            b.delay = f.bus_delay.as_ref().map(|c| (c.chance, c.delay_ms));
            b.signal_duplicate = f.signal_duplicate.as_ref().map_or(0.0, |c| c.chance);
            b.signal_delay = f.signal_delay.as_ref().map(|c| (c.chance, c.delay_ms));
            b.signal_reorder = f.signal_reorder.as_ref().map(|c| (c.chance, c.window));
        }
        if let Some(skew) = &f.clock_skew {
            let mut rng = streams.stream("faults:clock_skew:offsets");
            for node in self.nodes.all_names() {
                let h = draw_span(&mut rng, skew.offset_ms) as i64;
                let offset = if h == 0 { 0 } else { rng.gen_range(-h..=h) };
                self.shared.lock().clocks.set_skew(&node, offset);
                self.record("clock_skew", format!("{node} wall clock offset {offset} ms"));
            }
        }
        let classes: [Option<RateClass>; 12] = [
            f.connection_reset.as_ref().map(|c| ("connection_reset", c.rate_per_min)),
            f.half_open.as_ref().map(|c| ("half_open", c.rate_per_min)),
            f.reconnect_storm.as_ref().map(|c| ("reconnect_storm", c.rate_per_min)),
            f.link_delay.as_ref().map(|c| ("link_delay", c.rate_per_min)),
            f.one_way_clog.as_ref().map(|c| ("one_way_clog", c.rate_per_min)),
            f.partition.as_ref().map(|c| ("partition", c.rate_per_min)),
            f.swizzle_clog.as_ref().map(|c| ("swizzle_clog", c.rate_per_min)),
            f.edge_crash.as_ref().map(|c| ("edge_crash", c.rate_per_min)),
            f.core_crash.as_ref().map(|c| ("core_crash", c.rate_per_min)),
            f.runner_crash.as_ref().map(|c| ("runner_crash", c.rate_per_min)),
            f.process_pause.as_ref().map(|c| ("process_pause", c.rate_per_min)),
            f.clock_skew.as_ref().map(|c| ("clock_skew", c.jumps_per_min)),
        ];
        for (name, rate) in classes.into_iter().flatten() {
            if rate <= 0.0 {
                continue;
            }
            let injector = self.clone();
            let rng = streams.stream(&format!("faults:{name}"));
            madsim::task::spawn(async move { injector.class_loop(name, rate, rng).await });
        }
    }

    async fn class_loop(self, name: &'static str, rate_per_min: f64, mut rng: ChaCha8Rng) {
        let end = self.config.derived.phases.fault_ms;
        let mean_gap_ms = 60_000.0 / rate_per_min;
        loop {
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let gap = (-u.ln() * mean_gap_ms).max(1.0) as u64;
            madsim::time::sleep(Duration::from_millis(gap)).await;
            if self.shared.now_ms() >= end {
                return;
            }
            self.fire(name, &mut rng).await;
        }
    }

    fn record(&self, class: &str, detail: String) {
        self.shared.record(SIM, Entry::Fault { class: class.to_string(), detail });
    }

    /// Cap a duration to the time left in the fault phase.
    fn cap(&self, ms: u64) -> u64 {
        let left = self.config.derived.phases.fault_ms.saturating_sub(self.shared.now_ms());
        ms.min(left).max(1)
    }

    async fn sleep(&self, ms: u64) {
        madsim::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn fire(&self, name: &'static str, rng: &mut ChaCha8Rng) {
        let f = &self.config.derived.faults;
        match name {
            "connection_reset" => {
                let Some(c) = &f.connection_reset else { return };
                let Some((conn, control)) = self.pick_link(rng) else { return };
                if rng.gen_bool(c.both_sides.clamp(0.0, 1.0)) {
                    self.record(name, format!("{conn} seen by both"));
                    control.reset_both();
                } else if rng.gen_bool(c.runner_side.clamp(0.0, 1.0)) {
                    self.record(name, format!("{conn} seen by the runner"));
                    control.reset(Side::Client);
                } else {
                    self.record(name, format!("{conn} seen by the edge"));
                    control.reset(Side::Server);
                }
            }
            "half_open" => {
                let Some(c) = &f.half_open else { return };
                let Some((conn, control)) = self.pick_link(rng) else { return };
                let dir = if rng.gen_bool(c.to_runner.clamp(0.0, 1.0)) {
                    Dir::ToRunner
                } else {
                    Dir::ToEngine
                };
                let duration = self.cap(draw_span(rng, c.duration_ms));
                self.record(name, format!("begin {conn} {dir:?} dead for {duration} ms envelope"));
                control.set_half_open(dir, true);
                self.active().half_open.insert(conn);
                self.sleep(duration).await;
                control.set_half_open(dir, false);
                self.active().half_open.remove(&conn);
                self.record(name, format!("end {conn}"));
            }
            "reconnect_storm" => {
                let Some(c) = &f.reconnect_storm else { return };
                let runner = rng.gen_range(0..self.nodes.runners.len().max(1));
                self.record(name, format!("begin runner-{runner} {} resets", c.resets));
                for _ in 0..c.resets {
                    if self.shared.now_ms() >= self.config.derived.phases.fault_ms {
                        break;
                    }
                    let links: Vec<LinkControl> = self
                        .shared
                        .lock()
                        .links
                        .values()
                        .filter(|l| l.runner == runner)
                        .map(|l| l.control.clone())
                        .collect();
                    for control in links {
                        control.reset_both();
                    }
                    self.sleep(draw_span(rng, c.spacing_ms).max(1)).await;
                }
                self.record(name, format!("end runner-{runner}"));
            }
            "link_delay" => {
                let Some(c) = &f.link_delay else { return };
                let delay = draw_span(rng, c.delay_ms);
                let duration = self.cap(draw_span(rng, c.duration_ms));
                let links = self.links();
                let envelope = if delay > MAX_LINK_DELAY_MS { " envelope" } else { "" };
                self.record(
                    name,
                    format!(
                        "begin {delay} ms delay on {} links for {duration} ms{envelope}",
                        links.len()
                    ),
                );
                for (conn, control) in &links {
                    control.set_delay(Dir::ToEngine, Duration::from_millis(delay));
                    control.set_delay(Dir::ToRunner, Duration::from_millis(delay));
                    self.active().delayed.insert(*conn);
                }
                self.sleep(duration).await;
                for (conn, control) in &links {
                    control.set_delay(Dir::ToEngine, Duration::ZERO);
                    control.set_delay(Dir::ToRunner, Duration::ZERO);
                    self.active().delayed.remove(conn);
                }
                self.record(name, format!("end {delay} ms delay"));
            }
            "one_way_clog" => {
                let Some(c) = &f.one_way_clog else { return };
                let Some((conn, control)) = self.pick_link(rng) else { return };
                let dir = if rng.gen_bool(c.to_runner.clamp(0.0, 1.0)) {
                    Dir::ToRunner
                } else {
                    Dir::ToEngine
                };
                let duration = self.cap(draw_span(rng, c.duration_ms));
                self.record(name, format!("begin {conn} {dir:?} for {duration} ms envelope"));
                control.clog(dir);
                self.active().clogged.insert(conn);
                self.sleep(duration).await;
                control.unclog(dir);
                self.active().clogged.remove(&conn);
                self.record(name, format!("end {conn}"));
            }
            "partition" => {
                let Some(c) = &f.partition else { return };
                let duration = self.cap(draw_span(rng, c.duration_ms));
                let mut runners = self.nodes.runners.clone();
                runners.shuffle(rng);
                runners.truncate((c.runners as usize).max(1));
                let mut edges = self.nodes.edges.clone();
                edges.shuffle(rng);
                edges.truncate(c.edges as usize);
                // Cut runners from every edge, and the chosen edges from every runner.
                let mut pairs: BTreeSet<(NodeId, NodeId)> = BTreeSet::new();
                for r in &runners {
                    for e in &self.nodes.edges {
                        pairs.insert((*r, *e));
                    }
                }
                for e in &edges {
                    for r in &self.nodes.runners {
                        pairs.insert((*r, *e));
                    }
                }
                self.record(
                    name,
                    format!(
                        "begin {} runners and {} edges cut for {duration} ms envelope",
                        runners.len(),
                        edges.len()
                    ),
                );
                let net = NetSim::current();
                for (r, e) in &pairs {
                    net.clog_link(*r, *e);
                    net.clog_link(*e, *r);
                    let mut a = self.active();
                    a.net_clogs.insert((*r, *e));
                    a.net_clogs.insert((*e, *r));
                }
                self.sleep(duration).await;
                for (r, e) in &pairs {
                    net.unclog_link(*r, *e);
                    net.unclog_link(*e, *r);
                    let mut a = self.active();
                    a.net_clogs.remove(&(*r, *e));
                    a.net_clogs.remove(&(*e, *r));
                }
                self.record(name, "end partition".into());
            }
            "swizzle_clog" => {
                let Some(c) = &f.swizzle_clog else { return };
                let mut links = self.links();
                links.shuffle(rng);
                links.truncate((c.links as usize).max(1));
                if links.is_empty() {
                    return;
                }
                self.record(name, format!("begin {} links envelope", links.len()));
                for (conn, control) in &links {
                    control.clog(Dir::ToEngine);
                    control.clog(Dir::ToRunner);
                    self.active().clogged.insert(*conn);
                    self.sleep(draw_span(rng, c.step_ms).max(1)).await;
                }
                self.sleep(draw_span(rng, c.hold_ms).max(1)).await;
                links.shuffle(rng);
                for (conn, control) in &links {
                    control.unclog(Dir::ToEngine);
                    control.unclog(Dir::ToRunner);
                    self.active().clogged.remove(conn);
                    self.sleep(draw_span(rng, c.step_ms).max(1)).await;
                }
                self.record(name, "end swizzle".into());
            }
            "edge_crash" | "core_crash" | "runner_crash" => {
                let (node, down) = match name {
                    "edge_crash" => {
                        let Some(c) = &f.edge_crash else { return };
                        (
                            edge_name(rng.gen_range(0..self.nodes.edges.len().max(1))),
                            draw_span(rng, c.down_ms),
                        )
                    }
                    "core_crash" => {
                        let Some(c) = &f.core_crash else { return };
                        (CORE.to_string(), draw_span(rng, c.down_ms))
                    }
                    _ => {
                        let Some(c) = &f.runner_crash else { return };
                        (
                            runner_name(rng.gen_range(0..self.nodes.runners.len().max(1))),
                            draw_span(rng, c.restart_after_ms),
                        )
                    }
                };
                if self.active().killed.contains(&node) {
                    return;
                }
                let Some(id) = self.nodes.by_name(&node) else { return };
                let down = self.cap(down);
                self.record(name, format!("begin {node} down for {down} ms"));
                self.kill(&node, id);
                self.sleep(down).await;
                let is_runner = name == "runner_crash";
                if self.active().killed.contains(&node)
                    && (!is_runner || self.config.restart_runners())
                {
                    self.restart(&node, id);
                }
                self.record(name, format!("end {node}"));
            }
            "clock_skew" => {
                let Some(c) = &f.clock_skew else { return };
                let names = self.nodes.all_names();
                let Some(node) = names.choose(rng) else { return };
                let h = draw_span(rng, c.offset_ms) as i64;
                let offset = if h == 0 { 0 } else { rng.gen_range(-h..=h) };
                self.record(name, format!("{node} wall clock jumps to offset {offset} ms"));
                self.shared.lock().clocks.set_skew(node, offset);
            }
            "process_pause" => {
                let Some(c) = &f.process_pause else { return };
                let names = self.nodes.all_names();
                let Some(node) = names.choose(rng).cloned() else { return };
                let Some(id) = self.nodes.by_name(&node) else { return };
                if self.active().killed.contains(&node)
                    || !self.active().paused.insert(node.clone())
                {
                    return;
                }
                let pause = self.cap(draw_span(rng, c.pause_ms));
                self.record(name, format!("begin {node} paused for {pause} ms envelope"));
                Handle::current().pause(id);
                self.sleep(pause).await;
                if self.active().paused.remove(&node) {
                    Handle::current().resume(id);
                }
                self.record(name, format!("end {node}"));
            }
            other => self.record(other, "unknown fault class ignored".into()),
        }
    }

    /// Crash `node`. A runner process crash closes its sockets (the edge reads EOF, as when a
    /// process dies); an edge or core node crash is a machine going away, so its connections go
    /// silent and the runners notice through their ping timeout.
    fn kill(&self, node: &str, id: NodeId) {
        {
            let mut st = self.shared.lock();
            if node == CORE {
                st.mail.core = None;
            } else if let Some(index) =
                (0..self.nodes.runners.len()).find(|i| runner_name(*i) == node)
            {
                st.instances.retain(|_, (i, _)| *i != index);
                st.mail.runners.remove(&index);
            } else if let Some(index) = (0..self.nodes.edges.len()).find(|i| edge_name(*i) == node)
            {
                let conns: Vec<ConnId> =
                    st.links.iter().filter(|(_, l)| l.edge == index).map(|(c, _)| *c).collect();
                for c in conns {
                    if let Some(l) = st.links.get(&c) {
                        l.control.reset(Side::Server);
                    }
                    st.mail.conns.remove(&c);
                    st.mail.unsubscribe_all(c);
                }
            }
        }
        self.active().killed.insert(node.to_string());
        self.shared.record(SIM, Entry::Node { node: node.to_string(), event: "crash".into() });
        Handle::current().kill(id);
    }

    fn restart(&self, node: &str, id: NodeId) {
        self.active().killed.remove(node);
        self.shared.record(SIM, Entry::Node { node: node.to_string(), event: "restart".into() });
        Handle::current().restart(id);
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
            let Some(id) = self.nodes.by_name(node) else { continue };
            if !node.starts_with("runner-") || self.config.restart_runners() {
                self.shared
                    .record(SIM, Entry::Node { node: node.clone(), event: "restart".into() });
                Handle::current().restart(id);
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
        for (conn, control) in self.links() {
            if active.clogged.contains(&conn) {
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

    /// Bring back runner processes that exited on their own (drain completed, fatal eviction) as
    /// fresh processes, when the topology says runners come back. Crashed nodes are restarted by
    /// the crash event itself. Runs for the whole world.
    pub async fn supervise_runners(self) {
        if !self.config.restart_runners() {
            return;
        }
        loop {
            self.sleep(500).await;
            for (i, id) in self.nodes.runners.iter().enumerate() {
                let node = runner_name(i);
                if self.active().killed.contains(&node) || !Handle::current().is_exit(*id) {
                    continue;
                }
                self.sleep(RUNNER_RESPAWN_DELAY_MS).await;
                if !self.active().killed.contains(&node) && Handle::current().is_exit(*id) {
                    self.shared
                        .record(SIM, Entry::Node { node: node.clone(), event: "respawn".into() });
                    Handle::current().restart(*id);
                }
            }
        }
    }
}
