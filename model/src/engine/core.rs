//! The core node (`spec/protocol.md` §5.7, §6.3, §6.6): the workflow executor and the registry's
//! periodic processes, as one sans-IO state machine driven by the simulator.
//!
//! Owns only memory, all of it re-derivable and lost on a crash: the highest outbox sequence
//! published per actor, the earliest workflow timer armed per actor, and the registry's
//! observation windows ([`RegistryMonitor`]). Everything durable is the workflow's
//! (`engine::actor`) and the registry's (`engine::registry`); this module decides when their
//! steps and transactions run.
//!
//! Execution model:
//! - [`Core::on_wake`] and a fired [`CoreTimer::Workflow`] both run the actor's executor loop:
//!   publish a left-over outbox, then run signal steps until the inbox is empty, then the steps
//!   of due deadlines, at most [`MAX_STEPS_PER_CALL`] steps per call (if more remain it emits
//!   `WakeWorkflow` for the actor to continue later). It then arms a timer for the actor's next
//!   durable deadline, converted to local monotonic time (`now_ms + (deadline − wall_ms)`, never
//!   in the past). Timers cannot be cancelled: a timer that finds nothing due does nothing.
//! - [`CoreTimer::LostCheck`] polls the registry every `timing.lost_check_interval_ms` (lost
//!   detection, expiry, retirement); [`CoreTimer::PendingRecheck`] runs the drainer of every
//!   configured pool whose queue is non-empty every `timing.pending_recheck_interval_ms`;
//!   [`CoreTimer::InboxSweep`] runs every live workflow whose inbox holds signals, every
//!   [`INBOX_SWEEP_INTERVAL_MS`] (a lost wake-up only delays a signal). All three re-arm
//!   themselves for the life of the node.
//! - [`Core::start`] (boot or restart) forgets all memory, scans `keys::workflow_range()`, runs
//!   each live workflow's executor loop (which flushes its outbox first, since nothing is
//!   published in this incarnation), drains the non-empty pools, and arms both periodic timers.
//! - A step that fails in the store on every attempt (or hits an internal error, reported as a
//!   probe `workflow-step-error`) is retried by a workflow timer [`STEP_RETRY_DELAY_MS`] later.

use std::collections::BTreeMap;

use crate::config::EngineConfig;
use crate::engine::actor::{self, outbox, state, StepKind, StepResult};
use crate::engine::registry::{self, RegistryMonitor};
use crate::engine::signal;
use crate::engine::EngineOutput;
use crate::env::Env;
use crate::fact::{ActorStatus, Fact};
use crate::keys::{self, ActorId};
use crate::store::ReadMode;

/// Steps one executor call runs at most before yielding (a model parameter).
pub const MAX_STEPS_PER_CALL: usize = 64;

/// Delay before a failed step is retried, ms (a model parameter).
pub const STEP_RETRY_DELAY_MS: u64 = 100;

/// How often the executor looks for inboxes holding signals nobody woke it for, ms (a model
/// parameter). A wake-up is a notification, not a durable fact: a sender whose enqueue commit
/// ended `unknown` cannot tell whether to wake, a wake sent while the core restarts is lost. The
/// signal itself is durable, and this sweep makes sure it is consumed.
pub const INBOX_SWEEP_INTERVAL_MS: u64 = 5_000;

/// A one-shot timer of the core node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CoreTimer {
    /// A durable deadline of `actor` may be due at `at_ms` (local time the timer was armed for).
    Workflow { actor: ActorId, at_ms: u64 },
    /// The registry's lost-detection and retirement poll.
    LostCheck,
    /// The periodic pending-queue recheck.
    PendingRecheck,
    /// The periodic sweep for inboxes with unconsumed signals.
    InboxSweep,
}

/// An output of the core node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreOutput {
    Engine(EngineOutput),
    Timer { at_ms: u64, timer: CoreTimer },
}

/// The core node's memory: workflow executor plus registry monitor.
#[derive(Clone, Debug)]
pub struct Core {
    config: EngineConfig,
    /// Highest outbox sequence published per actor (this incarnation).
    published: BTreeMap<ActorId, u64>,
    /// Earliest workflow timer armed and not yet fired, per actor (local ms).
    armed: BTreeMap<ActorId, u64>,
    monitor: RegistryMonitor,
}

impl Core {
    /// A core node with empty memory; call [`Core::start`] before anything else.
    pub fn new(config: EngineConfig) -> Core {
        Core {
            config,
            published: BTreeMap::new(),
            armed: BTreeMap::new(),
            monitor: RegistryMonitor::new(),
        }
    }

    /// The deployment this core runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Boot or restart from the store (see the module comment).
    pub fn start(&mut self, env: &mut Env<'_>) -> Vec<CoreOutput> {
        self.published.clear();
        self.armed.clear();
        self.monitor = RegistryMonitor::new();
        let mut out = Vec::new();
        match live_workflows(env) {
            Ok(actors) => {
                for actor in actors {
                    out.extend(self.run_actor(env, &actor));
                }
            }
            Err(_) => env.record(Fact::Probe { name: "workflow-scan-failed".into() }),
        }
        out.extend(self.recheck_pending(env));
        let timing = &self.config.timing;
        out.push(CoreOutput::Timer {
            at_ms: env.now_ms + timing.lost_check_interval_ms,
            timer: CoreTimer::LostCheck,
        });
        out.push(CoreOutput::Timer {
            at_ms: env.now_ms + timing.pending_recheck_interval_ms,
            timer: CoreTimer::PendingRecheck,
        });
        out.push(CoreOutput::Timer {
            at_ms: env.now_ms + INBOX_SWEEP_INTERVAL_MS,
            timer: CoreTimer::InboxSweep,
        });
        out
    }

    /// The actor's inbox has new signals: run its executor loop.
    pub fn on_wake(&mut self, env: &mut Env<'_>, actor: &ActorId) -> Vec<CoreOutput> {
        self.run_actor(env, actor)
    }

    /// Run the drainer of `(namespace, pool)`.
    pub fn on_trigger_drainer(
        &mut self,
        env: &mut Env<'_>,
        namespace: &str,
        pool: &str,
    ) -> Vec<CoreOutput> {
        self.drain(env, namespace, pool)
    }

    /// A timer fired.
    pub fn on_timer(&mut self, env: &mut Env<'_>, timer: CoreTimer) -> Vec<CoreOutput> {
        match timer {
            CoreTimer::Workflow { actor, at_ms } => {
                if self.armed.get(&actor) == Some(&at_ms) {
                    self.armed.remove(&actor);
                }
                self.run_actor(env, &actor)
            }
            CoreTimer::LostCheck => {
                let timing = self.config.timing.clone();
                let mut out: Vec<CoreOutput> =
                    self.monitor.check(env, &timing).into_iter().map(CoreOutput::Engine).collect();
                out.push(CoreOutput::Timer {
                    at_ms: env.now_ms + timing.lost_check_interval_ms,
                    timer: CoreTimer::LostCheck,
                });
                out
            }
            CoreTimer::InboxSweep => {
                let mut out = Vec::new();
                match live_workflows(env) {
                    Ok(actors) => {
                        for actor in actors {
                            let mut txn = env.begin();
                            let empty = signal::inbox_is_empty(env, &mut txn, &actor);
                            env.abort(txn);
                            if matches!(empty, Ok(false)) {
                                env.record(Fact::Probe {
                                    name: "inbox-sweep-found-signals".into(),
                                });
                                out.extend(self.run_actor(env, &actor));
                            }
                        }
                    }
                    Err(_) => env.record(Fact::Probe { name: "workflow-scan-failed".into() }),
                }
                out.push(CoreOutput::Timer {
                    at_ms: env.now_ms + INBOX_SWEEP_INTERVAL_MS,
                    timer: CoreTimer::InboxSweep,
                });
                out
            }
            CoreTimer::PendingRecheck => {
                let mut out = self.recheck_pending(env);
                out.push(CoreOutput::Timer {
                    at_ms: env.now_ms + self.config.timing.pending_recheck_interval_ms,
                    timer: CoreTimer::PendingRecheck,
                });
                out
            }
        }
    }

    fn drain(&mut self, env: &mut Env<'_>, namespace: &str, pool: &str) -> Vec<CoreOutput> {
        match registry::drain(env, &self.config.timing, namespace, pool) {
            Ok(outcome) => outcome.outputs.into_iter().map(CoreOutput::Engine).collect(),
            Err(_) => {
                // The periodic recheck runs it again.
                env.record(Fact::Probe { name: "drainer-failed".into() });
                Vec::new()
            }
        }
    }

    /// Drain every configured pool whose queue is non-empty.
    fn recheck_pending(&mut self, env: &mut Env<'_>) -> Vec<CoreOutput> {
        let pools: Vec<(String, String)> = self
            .config
            .namespaces
            .iter()
            .flat_map(|(ns, pools)| pools.iter().map(move |p| (ns.clone(), p.clone())))
            .collect();
        let mut out = Vec::new();
        for (ns, pool) in pools {
            let mut txn = env.begin();
            let empty = registry::queue_is_empty(env, &mut txn, &ns, &pool, ReadMode::Snapshot);
            env.abort(txn);
            if !matches!(empty, Ok(true)) {
                out.extend(self.drain(env, &ns, &pool));
            }
        }
        out
    }

    /// The executor loop of one actor (see the module comment).
    fn run_actor(&mut self, env: &mut Env<'_>, actor: &ActorId) -> Vec<CoreOutput> {
        let mut out = Vec::new();
        let mut kind = StepKind::Signals;
        let mut steps = 0;
        loop {
            if steps >= MAX_STEPS_PER_CALL {
                out.push(CoreOutput::Engine(EngineOutput::WakeWorkflow { actor: actor.clone() }));
                break;
            }
            let published = self.published.get(actor).copied().unwrap_or(0);
            match actor::run_step(env, &self.config, actor, published, kind) {
                Ok(StepResult::Flush(outbox)) => {
                    out.extend(self.publish(env, actor, &outbox));
                }
                Ok(StepResult::Committed { outbox, .. }) => {
                    steps += 1;
                    out.extend(self.publish(env, actor, &outbox));
                    kind = StepKind::Signals;
                }
                Ok(StepResult::Idle) => match kind {
                    StepKind::Signals => kind = StepKind::Timer,
                    StepKind::Timer => break,
                },
                Err(_) => {
                    env.record(Fact::Probe { name: "workflow-step-error".into() });
                    let at_ms = env.now_ms + STEP_RETRY_DELAY_MS;
                    if self.armed.get(actor).is_none_or(|&a| a > at_ms) {
                        self.armed.insert(actor.clone(), at_ms);
                        out.push(CoreOutput::Timer {
                            at_ms,
                            timer: CoreTimer::Workflow { actor: actor.clone(), at_ms },
                        });
                    }
                    return out;
                }
            }
        }
        out.extend(self.arm_next_deadline(env, actor));
        out
    }

    fn publish(
        &mut self,
        env: &mut Env<'_>,
        actor: &ActorId,
        outbox: &actor::Outbox,
    ) -> Vec<CoreOutput> {
        let rendered = outbox::render(env, actor, &outbox.items);
        let seq = self.published.entry(actor.clone()).or_insert(0);
        *seq = (*seq).max(outbox.seq);
        rendered.into_iter().map(CoreOutput::Engine).collect()
    }

    /// Arm a timer for the actor's next durable deadline, unless an earlier one is armed; forget
    /// a destroyed actor.
    fn arm_next_deadline(&mut self, env: &mut Env<'_>, actor: &ActorId) -> Option<CoreOutput> {
        let state = match state::load_snapshot(env, actor) {
            Ok(Some(state)) => state,
            Ok(None) => return None,
            Err(_) => {
                env.record(Fact::Probe { name: "workflow-step-error".into() });
                return None;
            }
        };
        if state.status == Some(ActorStatus::Destroyed) {
            self.published.remove(actor);
            self.armed.remove(actor);
            return None;
        }
        let deadline = state.next_deadline()?;
        let delay = u64::try_from(deadline.saturating_sub(env.wall_ms)).unwrap_or(0);
        let at_ms = env.now_ms.saturating_add(delay);
        if self.armed.get(actor).is_some_and(|&a| a <= at_ms) {
            return None;
        }
        self.armed.insert(actor.clone(), at_ms);
        Some(CoreOutput::Timer {
            at_ms,
            timer: CoreTimer::Workflow { actor: actor.clone(), at_ms },
        })
    }
}

/// Every actor with a workflow entry (one snapshot read).
fn live_workflows(env: &mut Env<'_>) -> Result<Vec<ActorId>, actor::WorkflowError> {
    let mut txn = env.begin();
    let now = env.now_ms;
    let rows = env.store.get_range(
        &mut txn,
        &keys::workflow_range(),
        None,
        false,
        ReadMode::Snapshot,
        now,
    );
    env.abort(txn);
    let mut out = Vec::new();
    for (key, _) in rows? {
        out.push(
            keys::parse_workflow_entry(&key)
                .map_err(|e| actor::WorkflowError::Txn(format!("workflow entry: {e}")))?,
        );
    }
    Ok(out)
}
