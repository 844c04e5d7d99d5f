//! Test harness for the workflow, the registry and the core node: a real `Store`, an `Env` with
//! scripted faults and a seeded `SplitMix`, one `Core`, and a loop that acts on the core's
//! outputs the way the simulator would (wakes and drainer triggers at once, timers when the
//! clock reaches them, publishes recorded and decoded). Runner records are written directly, as
//! the edge's registration and ready transactions would.

use std::collections::VecDeque;

use crate::canary::Canaries;
use crate::config::EngineConfig;
use crate::engine::actor::{self, ActorSpec, WorkflowState};
use crate::engine::bus::{BusMessage, Topic};
use crate::engine::cmdlog;
use crate::engine::core::{Core, CoreOutput, CoreTimer};
use crate::engine::signal::{self, EnqueueResult, Signal};
use crate::engine::EngineOutput;
use crate::env::{Env, Faults, SplitMix};
use crate::fact::{ActorStatus, CrashPolicy, EventClass, Fact, TxnLabel};
use crate::keys::{self, ActorId, RunnerId};
use crate::protocol::{
    ActorCheckpoint, ActorIntent, ActorState, ActorStateStopped, Command, Event, EventActorIntent,
    EventActorSetAlarm, EventActorStateUpdate, EventWrapper, StopCode, ToEnvoyConn,
};
use crate::records::{self, Placement, RunnerInfo};
use crate::store::{CommitFault, KeyRange, ReadMode, Store};
use crate::wire;

pub const NS: &str = "default";
pub const POOL: &str = "default";
/// Wall clock minus monotonic clock on the core node (any offset must work).
pub const WALL_OFFSET: i64 = 1_700_000_000_000;

/// Commit faults injected at the next commit attempts with a given label, in order.
#[derive(Default)]
pub struct ScriptedFaults {
    pub script: VecDeque<(TxnLabel, CommitFault)>,
}

impl Faults for ScriptedFaults {
    fn commit_fault(&mut self, label: TxnLabel) -> Option<CommitFault> {
        let pos = self.script.iter().position(|(l, _)| *l == label)?;
        self.script.remove(pos).map(|(_, f)| f)
    }
    fn preload_read_fault(&mut self) -> bool {
        false
    }
}

/// A decoded publish on a runner topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub runner: RunnerId,
    pub bytes: Vec<u8>,
    pub payload: ToEnvoyConn,
}

pub struct World {
    pub store: Store,
    pub faults: ScriptedFaults,
    pub rng: SplitMix,
    pub facts: Vec<Fact>,
    pub canaries: Canaries,
    pub now_ms: u64,
    pub config: EngineConfig,
    pub core: Core,
    pub timers: Vec<(u64, CoreTimer)>,
    pub published: Vec<Published>,
    /// Drainer triggers seen (they are also acted on).
    pub triggers: usize,
    /// Runners whose edge keeps writing liveness (a heartbeat before every registry poll).
    pub alive: Vec<RunnerId>,
}

impl World {
    pub fn new() -> World {
        World::with(Canaries::NONE, EngineConfig::default())
    }

    pub fn with(canaries: Canaries, config: EngineConfig) -> World {
        let core = Core::new(config.clone());
        let mut w = World {
            store: Store::default(),
            faults: ScriptedFaults::default(),
            rng: SplitMix(7),
            facts: Vec::new(),
            canaries,
            now_ms: 1_000,
            config,
            core,
            timers: Vec::new(),
            published: Vec::new(),
            triggers: 0,
            alive: Vec::new(),
        };
        w.boot();
        w
    }

    /// Run `f` with an `Env` of the core node and the core itself.
    pub fn with_env<T>(&mut self, f: impl FnOnce(&mut Env<'_>, &mut Core) -> T) -> T {
        let mut env = Env {
            now_ms: self.now_ms,
            wall_ms: self.now_ms as i64 + WALL_OFFSET,
            store: &mut self.store,
            faults: &mut self.faults,
            rng: &mut self.rng,
            facts: &mut self.facts,
            canaries: self.canaries,
        };
        f(&mut env, &mut self.core)
    }

    pub fn wall(&self) -> i64 {
        self.now_ms as i64 + WALL_OFFSET
    }

    /// (Re)start the core node with empty memory, forgetting armed timers as a crash would.
    pub fn boot(&mut self) {
        self.timers.clear();
        self.core = Core::new(self.config.clone());
        let out = self.with_env(|env, core| core.start(env));
        self.absorb(out);
    }

    /// Act on outputs until nothing but timers and publishes remain.
    pub fn absorb(&mut self, outputs: Vec<CoreOutput>) {
        let mut queue: VecDeque<CoreOutput> = outputs.into();
        while let Some(o) = queue.pop_front() {
            let more = match o {
                CoreOutput::Timer { at_ms, timer } => {
                    self.timers.push((at_ms, timer));
                    continue;
                }
                CoreOutput::Engine(e) => self.engine_output(e),
            };
            queue.extend(more);
        }
    }

    fn engine_output(&mut self, e: EngineOutput) -> Vec<CoreOutput> {
        match e {
            EngineOutput::Publish {
                topic: Topic::Runner(runner),
                message: BusMessage::Runner(bytes),
            } => {
                let payload = wire::decode_bus(&bytes).expect("workflow publishes decode");
                self.published.push(Published { runner, bytes, payload });
                Vec::new()
            }
            EngineOutput::Publish { .. } => panic!("the core never publishes evictions"),
            EngineOutput::WakeWorkflow { actor } => {
                self.with_env(|env, core| core.on_wake(env, &actor))
            }
            EngineOutput::TriggerDrainer { namespace, pool } => {
                self.triggers += 1;
                self.with_env(|env, core| core.on_trigger_drainer(env, &namespace, &pool))
            }
        }
    }

    /// Handle a list of engine outputs (from the driver API).
    pub fn absorb_engine(&mut self, outputs: Vec<EngineOutput>) {
        self.absorb(outputs.into_iter().map(CoreOutput::Engine).collect());
    }

    /// Move the clock to `now + ms`, firing every timer that falls due on the way, in order.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now_ms + ms;
        loop {
            self.timers.sort();
            let Some(pos) = self.timers.iter().position(|(at, _)| *at <= target) else { break };
            let (at, timer) = self.timers.remove(pos);
            self.now_ms = self.now_ms.max(at);
            if timer == CoreTimer::LostCheck {
                for r in self.alive.clone() {
                    self.heartbeat(&r);
                }
            }
            let out = self.with_env(|env, core| core.on_timer(env, timer));
            self.absorb(out);
        }
        self.now_ms = target;
    }

    // ---- runners ---------------------------------------------------------------------------

    /// Write a registered, connected, ready and eligible runner, as the edge would, and trigger
    /// the pool's drainer (as the ready transaction's edge does). The runner stays alive.
    pub fn add_runner(&mut self, key: &str, version: u32, slots: u32) -> RunnerId {
        let runner = self.register_runner(key, POOL, version, slots);
        let out = self.with_env(|env, core| core.on_trigger_drainer(env, NS, POOL));
        self.absorb(out);
        self.alive.push(runner.clone());
        runner
    }

    /// Write a registered, connected, ready and eligible runner of `pool` (no drainer trigger,
    /// no heartbeats).
    pub fn register_runner(&mut self, key: &str, pool: &str, version: u32, slots: u32) -> RunnerId {
        let runner = RunnerId::new(NS, key);
        let info = RunnerInfo {
            pool: pool.into(),
            version,
            protocol_version: 8,
            total_slots: slots,
            used_slots: 0,
            epoch: 1,
            liveness_seq: 1,
            last_rtt_ms: 0,
            connected: true,
            ready: true,
            draining: false,
            expired: false,
        };
        self.write(|txn| {
            txn.set(keys::runner_info(&runner), records::encode(&info));
            txn.set(keys::eligible(NS, pool, version, &runner), Vec::new());
            txn.set(keys::registry_entry(&runner), Vec::new());
        });
        runner
    }

    /// The runner's edge stops writing liveness (a crashed runner or edge).
    pub fn silence(&mut self, runner: &RunnerId) {
        self.alive.retain(|r| r != runner);
    }

    pub fn info(&mut self, runner: &RunnerId) -> Option<RunnerInfo> {
        self.read(&keys::runner_info(runner)).map(|b| records::decode("runner info", &b).unwrap())
    }

    /// Apply `f` to the runner's record (and keep the eligibility index consistent with it).
    pub fn update_runner(&mut self, runner: &RunnerId, f: impl FnOnce(&mut RunnerInfo)) {
        let mut info = self.info(runner).expect("runner exists");
        f(&mut info);
        let eligible = info.eligible();
        self.write(|txn| {
            txn.set(keys::runner_info(runner), records::encode(&info));
            let key = keys::eligible(NS, &info.pool, info.version, runner);
            if eligible {
                txn.set(key, Vec::new());
            } else {
                txn.clear(key);
            }
        });
    }

    /// A liveness write of the runner's edge.
    pub fn heartbeat(&mut self, runner: &RunnerId) {
        self.update_runner(runner, |i| i.liveness_seq += 1);
    }

    /// The edge's drain transaction (§6.7): draining, out of the index, `GoingAway` per alloc.
    pub fn drain_runner(&mut self, runner: &RunnerId) {
        self.update_runner(runner, |i| i.draining = true);
        let allocs = self.allocations(runner);
        for (actor, g) in allocs {
            self.deliver(&actor, Signal::GoingAway { runner: runner.clone(), generation: g });
        }
    }

    /// `runner/R/alloc/*`, read back from the store.
    pub fn allocations(&mut self, runner: &RunnerId) -> Vec<(ActorId, u32)> {
        let prefix = keys::runner_alloc_prefix(runner);
        self.range(&KeyRange::prefix(&prefix))
            .into_iter()
            .map(|(k, v)| {
                let actor = keys::TupleReader::new(&k).skip(&prefix).unwrap().s().unwrap();
                (actor, records::decode("alloc", &v).unwrap())
            })
            .collect()
    }

    // ---- actors ----------------------------------------------------------------------------

    pub fn spec(policy: CrashPolicy) -> ActorSpec {
        ActorSpec {
            namespace: NS.into(),
            name: "counter".into(),
            key: Some("k1".into()),
            pool: POOL.into(),
            crash_policy: policy,
            input: Some(vec![1, 2, 3]),
        }
    }

    pub fn create(&mut self, actor: &str, policy: CrashPolicy) {
        let actor = actor.to_string();
        let out = self
            .with_env(|env, _| actor::create_actor(env, &actor, &World::spec(policy)))
            .expect("create succeeds");
        self.absorb_engine(out);
    }

    /// Enqueue `signal` (through the signal bus) and wake the workflow.
    pub fn deliver(&mut self, actor: &str, signal: Signal) -> EnqueueResult {
        let actor = actor.to_string();
        let r = self.with_env(|env, _| signal::deliver(env, &actor, &signal)).expect("deliver");
        if r == EnqueueResult::Enqueued {
            let out = self.with_env(|env, core| core.on_wake(env, &actor));
            self.absorb(out);
        }
        r
    }

    /// Deliver one `Events` batch from `runner`.
    pub fn events(&mut self, actor: &str, runner: &RunnerId, events: &[(u32, i64, Event)]) {
        let events = events.iter().map(|(g, i, e)| wrap(actor, *g, *i, e.clone())).collect();
        self.deliver(actor, Signal::Events { runner: runner.clone(), epoch: 1, events });
    }

    pub fn state(&mut self, actor: &str) -> WorkflowState {
        let actor = actor.to_string();
        self.with_env(|env, _| actor::state::load_snapshot(env, &actor)).unwrap().expect("state")
    }

    pub fn status(&mut self, actor: &str) -> Option<ActorStatus> {
        self.state(actor).status
    }

    pub fn placement(&mut self, actor: &str) -> Option<Placement> {
        self.read(&keys::actor_placement(actor)).map(|b| records::decode("placement", &b).unwrap())
    }

    // ---- observations ----------------------------------------------------------------------

    /// `(actor, g, i, command)` of every command published to `runner`, in publish order.
    pub fn commands_to(&self, runner: &RunnerId) -> Vec<(String, u32, i64, Command)> {
        let mut out = Vec::new();
        for p in self.published.iter().filter(|p| p.runner == *runner) {
            if let ToEnvoyConn::ToEnvoyCommands(cmds) = &p.payload {
                for c in cmds {
                    let cp = &c.checkpoint;
                    out.push((cp.actor_id.to_string(), cp.generation, cp.index, c.inner.clone()));
                }
            }
        }
        out
    }

    /// `(actor, g, k)` of every event ack published to `runner`, in publish order.
    pub fn acks_to(&self, runner: &RunnerId) -> Vec<(String, u32, i64)> {
        let mut out = Vec::new();
        for p in self.published.iter().filter(|p| p.runner == *runner) {
            if let ToEnvoyConn::ToEnvoyAckEvents(a) = &p.payload {
                for cp in &a.last_event_checkpoints {
                    out.push((cp.actor_id.to_string(), cp.generation, cp.index));
                }
            }
        }
        out
    }

    /// Indices of `(actor, g)` classified as `class`, in order.
    pub fn classified(&self, actor: &str, g: u32, class: EventClass) -> Vec<i64> {
        self.facts
            .iter()
            .filter_map(|f| match f {
                Fact::EventClassified { actor: a, generation, index, class: c, .. }
                    if a == actor && *generation == g && *c == class =>
                {
                    Some(*index)
                }
                _ => None,
            })
            .collect()
    }

    pub fn statuses(&self, actor: &str) -> Vec<ActorStatus> {
        self.facts
            .iter()
            .filter_map(|f| match f {
                Fact::StatusChanged { actor: a, to, .. } if a == actor => Some(*to),
                _ => None,
            })
            .collect()
    }

    pub fn probes(&self, name: &str) -> usize {
        self.facts.iter().filter(|f| matches!(f, Fact::Probe { name: n } if n == name)).count()
    }

    /// Every command key of `runner` as `(actor, g, i)`.
    pub fn command_keys(&mut self, runner: &RunnerId) -> Vec<(String, u32, i64)> {
        let rows = self.range(&KeyRange::prefix(&keys::runner_cmd_prefix(runner)));
        rows.iter().map(|(k, _)| keys::parse_runner_cmd(runner, k).unwrap()).collect()
    }

    /// The stored command `(R, A, g, i)`.
    pub fn stored_command(
        &mut self,
        runner: &RunnerId,
        actor: &str,
        g: u32,
        i: i64,
    ) -> Option<crate::protocol::ActorCommandKeyData> {
        let actor = actor.to_string();
        self.with_env(|env, _| {
            let mut txn = env.begin();
            let r = cmdlog::read_one(env, &mut txn, runner, &actor, g, i).unwrap();
            env.abort(txn);
            r
        })
    }

    /// Check S15 and S16 on the store as it is now, independently of the model's code paths.
    pub fn check_invariants(&mut self, runners: &[RunnerId], actors: &[&str]) {
        for r in runners {
            let Some(info) = self.info(r) else { continue };
            let allocs = self.allocations(r);
            assert_eq!(info.used_slots as usize, allocs.len(), "S15 used = count(alloc) for {r}");
            assert!(info.used_slots <= info.total_slots, "S15 used <= total for {r}");
            for (a, g) in allocs {
                assert_eq!(
                    self.placement(&a),
                    Some(Placement { runner: r.clone(), generation: g }),
                    "S15 placement iff alloc for {a}"
                );
            }
        }
        for a in actors {
            let state = self.state(a);
            let placement = self.placement(a);
            if let Some(p) = &placement {
                let alloc = self.read(&keys::runner_alloc(&p.runner, a));
                assert_eq!(alloc, Some(records::encode(&p.generation)), "S15 alloc for {a}");
            }
            let pending_entry = self
                .range(&KeyRange::prefix(&keys::pending_prefix(NS, POOL)))
                .iter()
                .any(|(k, _)| k.ends_with(&keys::pending_suffix(a)));
            match state.status {
                Some(ActorStatus::Starting | ActorStatus::Running | ActorStatus::Stopping(_)) => {
                    assert!(placement.is_some(), "S16 {a} allocated has a placement");
                    assert_eq!(placement, state.placement, "state mirrors the placement");
                    assert!(!pending_entry);
                }
                Some(ActorStatus::Pending) => {
                    // Between the drainer's commit and the Allocate step the entry is gone and
                    // the placement exists; the harness runs that step at once.
                    assert!(pending_entry, "S16 {a} pending has an entry");
                    assert!(placement.is_none());
                }
                Some(
                    ActorStatus::Sleeping | ActorStatus::Rescheduling | ActorStatus::Destroyed,
                ) => {
                    assert!(placement.is_none(), "S16 {a} has no placement");
                    assert!(!pending_entry, "S16 {a} has no pending entry");
                }
                None => {}
            }
        }
    }

    // ---- store access ----------------------------------------------------------------------

    pub fn read(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let mut txn = self.store.begin(self.now_ms);
        let v = self.store.get(&mut txn, key, ReadMode::Snapshot, self.now_ms).unwrap();
        self.store.abort(txn);
        v
    }

    pub fn range(&mut self, range: &KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut txn = self.store.begin(self.now_ms);
        let v = self
            .store
            .get_range(&mut txn, range, None, false, ReadMode::Snapshot, self.now_ms)
            .unwrap();
        self.store.abort(txn);
        v
    }

    pub fn write(&mut self, f: impl FnOnce(&mut crate::store::Txn)) {
        let mut txn = self.store.begin(self.now_ms);
        f(&mut txn);
        self.store.commit(txn, self.now_ms, None).expect("test write commits");
    }
}

pub fn wrap(actor: &str, g: u32, i: i64, inner: Event) -> EventWrapper {
    EventWrapper {
        checkpoint: ActorCheckpoint { actor_id: actor.to_string().into(), generation: g, index: i },
        inner,
    }
}

pub fn running() -> Event {
    Event::EventActorStateUpdate(EventActorStateUpdate { state: ActorState::ActorStateRunning })
}

pub fn stopped(code: StopCode) -> Event {
    Event::EventActorStateUpdate(EventActorStateUpdate {
        state: ActorState::ActorStateStopped(ActorStateStopped { code, message: None }),
    })
}

pub fn sleep_intent() -> Event {
    Event::EventActorIntent(EventActorIntent { intent: ActorIntent::ActorIntentSleep })
}

pub fn stop_intent() -> Event {
    Event::EventActorIntent(EventActorIntent { intent: ActorIntent::ActorIntentStop })
}

pub fn set_alarm(ts: Option<i64>) -> Event {
    Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: ts })
}
