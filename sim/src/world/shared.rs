//! The state every node of one world shares: the store (the database survives every node crash),
//! the history with its checker, the store-fault decisions, the node clocks, the transport
//! controls of live connections, and the mailboxes through which nodes reach each other.
//!
//! It lives behind one `Arc<Mutex<…>>` (madsim runs every node on one thread, so the lock is never
//! contended; it exists because node tasks must be `Send`). No lock is ever held across an
//! `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pegsim_model::canary::Canaries;
use pegsim_model::env::{Entropy, Env, Faults, RunnerEnv};
use pegsim_model::fact::{ConnId, Fact, TxnLabel};
use pegsim_model::store::{CommitFault, Store};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::check::{CheckConfig, Checker};
use crate::coverage::Coverage;
use crate::history::History;
use crate::net::{LinkControl, LinkRegistry};
use crate::run::{Entry, Violation};
use crate::world::bus::BusFaults;
use crate::world::clock::{Clocks, SimClock};
use crate::world::mail::Mailboxes;

/// A node's random stream, usable as the model's [`Entropy`].
pub struct NodeRng(pub ChaCha8Rng);

impl Entropy for NodeRng {
    fn next_u64(&mut self) -> u64 {
        self.0.gen()
    }
}

/// Store faults of the run: which classes are on (during the fault phase) and how likely.
pub struct StoreFaults {
    rng: ChaCha8Rng,
    /// Probability of a forced conflict per commit attempt.
    pub conflict: f64,
    /// Probability of an unknown outcome per commit attempt.
    pub unknown: f64,
    /// Probability that an unknown outcome did apply.
    pub unknown_applied: f64,
    /// Probability that a preload read fails.
    pub preload_read: f64,
    /// Whether faults are injected at all (off in the heal phase).
    pub active: bool,
    /// Faults fired since the last drain: `(class, detail)`.
    fired: Vec<(&'static str, String)>,
}

impl StoreFaults {
    pub fn new(rng: ChaCha8Rng) -> Self {
        StoreFaults {
            rng,
            conflict: 0.0,
            unknown: 0.0,
            unknown_applied: 0.5,
            preload_read: 0.0,
            active: false,
            fired: Vec::new(),
        }
    }

    fn drain(&mut self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.fired)
    }
}

impl Faults for StoreFaults {
    fn commit_fault(&mut self, label: TxnLabel) -> Option<CommitFault> {
        if !self.active {
            return None;
        }
        if self.conflict > 0.0 && self.rng.gen_bool(self.conflict.min(1.0)) {
            self.fired.push(("store_conflict", format!("{label:?}")));
            return Some(CommitFault::Conflict);
        }
        if self.unknown > 0.0 && self.rng.gen_bool(self.unknown.min(1.0)) {
            let applied = self.rng.gen_bool(self.unknown_applied.clamp(0.0, 1.0));
            self.fired.push(("store_unknown", format!("{label:?} applied={applied}")));
            return Some(CommitFault::Unknown { applied });
        }
        None
    }

    fn preload_read_fault(&mut self) -> bool {
        if self.active && self.preload_read > 0.0 && self.rng.gen_bool(self.preload_read.min(1.0)) {
            self.fired.push(("preload_read_failure", String::new()));
            return true;
        }
        false
    }
}

/// The history, its checker and the run's counters.
pub struct Recorder {
    pub history: History,
    pub checker: Checker,
    pub fault_counts: BTreeMap<String, u64>,
    pub probe_counts: BTreeMap<String, u64>,
    /// Derives coverage probes from the entries (see `crate::coverage`).
    pub coverage: Coverage,
    /// Latency samples by metric (bounded per metric).
    pub latencies_ms: BTreeMap<String, Vec<u64>>,
    /// Set when the first violation is seen: its history position.
    pub first_violation_seq: Option<u64>,
    /// Set once the outcome was taken: nothing is recorded any more (world teardown).
    pub closed: bool,
}

/// History lines kept before and after the first violation, for the failure timeline.
pub const TIMELINE_BEFORE: u64 = 40;
pub const TIMELINE_AFTER: u64 = 10;

/// Samples kept per latency metric.
const LATENCY_SAMPLES_MAX: usize = 10_000;

impl Recorder {
    /// Free the checker's and the coverage's memory once the outcome has been taken.
    fn release(&mut self) {
        self.closed = true;
        self.checker = Checker::new(CheckConfig::default());
        self.coverage = Coverage::default();
    }

    /// Append an entry, run the safety checks on it, count faults and probes.
    pub fn record(&mut self, at_ms: u64, node: &str, entry: Entry) {
        if self.closed {
            return;
        }
        match &entry {
            Entry::Fault { class, detail } if !detail.starts_with("end") => {
                *self.fault_counts.entry(class.clone()).or_default() += 1;
            }
            Entry::Fact(Fact::Probe { name }) => {
                *self.probe_counts.entry(name.clone()).or_default() += 1;
            }
            _ => {}
        }
        for probe in self.coverage.observe(&entry) {
            *self.probe_counts.entry(probe.to_string()).or_default() += 1;
        }
        let timed = self.history.append(at_ms, node, entry);
        let seq = timed.seq;
        let before = self.checker.violations().len();
        self.checker.observe(timed);
        if self.first_violation_seq.is_none() && self.checker.violations().len() > before {
            self.first_violation_seq = Some(seq);
            self.history.capture_around(seq, TIMELINE_BEFORE, TIMELINE_AFTER);
        }
    }

    /// Add a latency sample.
    pub fn latency(&mut self, metric: &str, ms: u64) {
        let v = self.latencies_ms.entry(metric.to_string()).or_default();
        if v.len() < LATENCY_SAMPLES_MAX {
            v.push(ms);
        }
    }

    pub fn violations(&self) -> &[Violation] {
        self.checker.violations()
    }
}

/// A live connection as the fault injector sees it.
#[derive(Clone)]
pub struct LinkEntry {
    /// The runner slot index whose process opened it.
    pub runner: usize,
    /// The edge node index it went to.
    pub edge: usize,
    pub control: LinkControl,
}

/// The shared state itself.
pub struct State {
    pub clock: SimClock,
    pub canaries: Canaries,
    pub store: Store,
    pub store_faults: StoreFaults,
    pub bus_faults: BusFaults,
    pub recorder: Recorder,
    pub clocks: Clocks,
    /// The node that runs bus deliveries (never crashes).
    pub bus_node: Option<madsim::runtime::NodeHandle>,
    /// Live instances by actor: `(runner slot index, generation)`, as the runner processes last
    /// reported them (the workload driver picks targets from it; checkers never read it).
    pub instances: BTreeMap<String, (usize, u32)>,
    /// How many times each node has started (0 for the first start).
    pub incarnations: BTreeMap<String, u32>,
    /// Transport controls of live connections.
    pub links: BTreeMap<ConnId, LinkEntry>,
    /// The same controls, as the transport looks them up to pair a connection's two ends.
    pub link_registry: LinkRegistry,
    /// The port each edge node listens on in its current incarnation.
    pub edge_ports: BTreeMap<usize, u16>,
    next_conn: u64,
    pub mail: Mailboxes,
    /// Whether the run is still in its fault phase.
    pub fault_phase: bool,
}

/// Cheap handle to the shared state.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<State>>);

impl Shared {
    pub fn new(state: State) -> Self {
        Shared(Arc::new(Mutex::new(state)))
    }

    /// A reference that does not keep the state alive.
    pub fn downgrade(&self) -> std::sync::Weak<Mutex<State>> {
        Arc::downgrade(&self.0)
    }

    /// Lock the state. A poisoned lock means a panic already ended the world; its state is still
    /// the best record of what happened, so it is used as is.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Simulated time now, ms.
    pub fn now_ms(&self) -> u64 {
        self.lock().clock.now_ms()
    }

    /// Record an entry now, from `node`.
    pub fn record(&self, node: &str, entry: Entry) {
        let mut st = self.lock();
        let now = st.clock.now_ms();
        st.recorder.record(now, node, entry);
    }

    /// Run `f` with an engine [`Env`] for `node` (its clocks, the store, the store faults, the
    /// node's rng), then record the facts it produced and the store faults it fired.
    pub fn with_env<R>(
        &self,
        node: &str,
        rng: &mut NodeRng,
        f: impl FnOnce(&mut Env<'_>) -> R,
    ) -> R {
        let mut st = self.lock();
        let now = st.clock.now_ms();
        let mono = st.clocks.mono(node, now);
        let wall = st.clocks.wall(node, now);
        let canaries = st.canaries;
        let mut facts: Vec<Fact> = Vec::new();
        let result = {
            let State { store, store_faults, .. } = &mut *st;
            let mut env = Env {
                now_ms: mono,
                wall_ms: wall,
                store,
                faults: store_faults,
                rng,
                facts: &mut facts,
                canaries,
            };
            f(&mut env)
        };
        let fired = st.store_faults.drain();
        for (class, detail) in fired {
            st.recorder.record(now, node, Entry::Fault { class: class.to_string(), detail });
        }
        for fact in facts {
            st.recorder.record(now, node, Entry::Fact(fact));
        }
        result
    }

    /// Run `f` with a [`RunnerEnv`] for `node`, then record its facts.
    pub fn with_runner_env<R>(
        &self,
        node: &str,
        rng: &mut NodeRng,
        f: impl FnOnce(&mut RunnerEnv<'_>) -> R,
    ) -> R {
        let (mono, wall, now) = {
            let st = self.lock();
            let now = st.clock.now_ms();
            (st.clocks.mono(node, now), st.clocks.wall(node, now), now)
        };
        let mut facts: Vec<Fact> = Vec::new();
        let result = {
            let mut env = RunnerEnv { now_ms: mono, wall_ms: wall, rng, facts: &mut facts };
            f(&mut env)
        };
        let mut st = self.lock();
        for fact in facts {
            st.recorder.record(now, node, Entry::Fact(fact));
        }
        result
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        let mut st = self.lock();
        st.next_conn += 1;
        ConnId(st.next_conn)
    }

    /// Count a (re)start of `node`; returns its incarnation (0 for the first start).
    pub fn next_incarnation(&self, node: &str) -> u32 {
        let mut st = self.lock();
        let n = st.incarnations.entry(node.to_string()).or_insert(0);
        let current = *n;
        *n += 1;
        current
    }

    /// Simulated time at which `node`'s monotonic clock reads `mono_ms`.
    pub fn sim_at(&self, node: &str, mono_ms: u64) -> u64 {
        self.lock().clocks.sim_at(node, mono_ms)
    }
}

impl State {
    /// End of the world (see `world::teardown`): stop recording, and drop everything that can
    /// hold a task's waker or a node handle (the mailboxes' senders, link controls, the bus node)
    /// and the run's big data (store, checker state, coverage). Node tasks hold [`Shared`], so a
    /// sender kept here that wakes one of them closes a reference cycle through the task.
    pub fn release(&mut self) {
        self.bus_node = None;
        self.mail = Mailboxes::default();
        self.links.clear();
        self.link_registry = LinkRegistry::new();
        self.store = Store::default();
        self.instances.clear();
        self.recorder.release();
    }

    pub fn new(
        clock: SimClock,
        canaries: Canaries,
        store_faults: StoreFaults,
        bus_faults: BusFaults,
        recorder: Recorder,
    ) -> Self {
        State {
            clock,
            canaries,
            store: Store::default(),
            store_faults,
            bus_faults,
            recorder,
            clocks: Clocks::default(),
            bus_node: None,
            instances: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            links: BTreeMap::new(),
            link_registry: LinkRegistry::new(),
            edge_ports: BTreeMap::new(),
            next_conn: 0,
            mail: Mailboxes::default(),
            fault_phase: true,
        }
    }
}
