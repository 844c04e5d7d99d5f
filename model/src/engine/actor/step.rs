//! One workflow step (`spec/protocol.md` §5.7) and the transition table it applies (§5.3–5.5).
//!
//! A step is one `Env::transact(TxnLabel::WorkflowStep, …)`: it reads the state serializably,
//! consumes up to `timing.wf_signal_batch` inbox signals (deleting them) **or** one due timer,
//! applies the transitions, writes the state with the step's outbox and every store effect, and
//! returns the outbox for the executor to publish after the commit.
//!
//! Detecting an earlier commit: the executor passes the highest outbox sequence it has
//! published for the actor. A state whose outbox is newer and not empty was written by a step
//! whose publishes may not have happened (an `unknown` commit that applied, or a crash between
//! commit and publish): the body then writes nothing and returns [`StepResult::Flush`], and the
//! executor publishes that outbox before it runs the next step. A re-run after `unknown` re-reads
//! the state and the inbox, so signals consumed by a commit that applied are not consumed again.
//!
//! Choices where the spec is silent:
//! - Times: every deadline is `env.wall_ms` (the core node's wall clock) plus a duration.
//! - The stop-deadline re-publish re-arms the deadline relative to the time of the re-publish
//!   (equal to `deadline += ACTOR_STOP_THRESHOLD + STOP_GRACE` when it fires on time, and it
//!   cannot fire in a burst after a long outage).
//! - An ack that covers `last` (rules 1 and 3, the deadline) also clears the ack deadline.
//! - A `Destroy` before the first step (status unset) destroys at once; every other signal to
//!   an unset status except `Create` is ignored (it cannot happen: `Create` is enqueued in the
//!   creating transaction, so it is always consumed first).
//! - An event whose checkpoint names another actor, or has a negative index, is skipped with a
//!   probe (`event-malformed-checkpoint`); the edge rejects such frames before they get here.

use crate::canary::Canary;
use crate::config::EngineConfig;
use crate::engine::cmdlog::{self, CommandKey};
use crate::engine::registry::{self, pending};
use crate::engine::signal::{self, Signal};
use crate::env::{Env, TxnFailure};
use crate::fact::{
    ActorStatus, CommandKind, Disposition, DispositionInputs, EndOutcome, EventClass, Fact,
    TxnLabel,
};
use crate::keys::{self, RunnerId};
use crate::kv;
use crate::preload;
use crate::protocol::{
    ActorCommandKeyData, ActorConfig, ActorIntent, ActorState, CommandStartActor, CommandStopActor,
    Event, EventWrapper, StopActorReason, StopCode,
};
use crate::records::Placement;
use crate::store::{KeyRange, ReadMode, Txn};

use super::events::{classify, AckBook};
use super::state::{self, hex, DueTimer, Outbox, OutboxItem, WorkflowState};
use super::WorkflowError;
use crate::fact::CrashPolicy;

/// What a step consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// A prefix of the inbox.
    Signals,
    /// The earliest due durable deadline.
    Timer,
}

/// What running a step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepResult {
    /// Nothing to consume (no state, an empty inbox, or no due deadline); nothing written.
    Idle,
    /// An earlier step's outbox was not published by this executor: publish it first.
    Flush(Outbox),
    /// The step committed with this outbox, having consumed `signals` signals (0 for a timer).
    Committed { outbox: Outbox, signals: usize },
}

/// How `Allocate` was asked for (§5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllocMode {
    Normal,
    CrashRestart,
}

/// Run one step of `actor`'s workflow. `published_seq` is the highest outbox sequence this
/// executor has published for the actor (0 after a restart).
pub fn run_step(
    env: &mut Env<'_>,
    config: &EngineConfig,
    actor: &str,
    published_seq: u64,
    kind: StepKind,
) -> Result<StepResult, WorkflowError> {
    let result = env.transact(TxnLabel::WorkflowStep, |env, txn, facts| {
        step_body(env, txn, facts, config, actor, published_seq, kind)
    });
    match result {
        Ok((r, _)) => Ok(r),
        Err(TxnFailure::Rejected(e)) => Err(e),
        Err(TxnFailure::Store { attempts, last }) => {
            Err(WorkflowError::Txn(format!("step failed after {attempts} attempts: {last}")))
        }
    }
}

fn step_body(
    env: &mut Env<'_>,
    txn: &mut Txn,
    facts: &mut Vec<Fact>,
    config: &EngineConfig,
    actor: &str,
    published_seq: u64,
    kind: StepKind,
) -> Result<StepResult, WorkflowError> {
    let Some(state) = state::load(env, txn, actor, ReadMode::Serializable)? else {
        return Ok(StepResult::Idle);
    };
    if state.outbox.seq > published_seq && !state.outbox.items.is_empty() {
        return Ok(StepResult::Flush(state.outbox));
    }
    let now = env.wall_ms;
    let prior_seq = state.outbox.seq;
    let mut step = Step { config, now, facts, outbox: Vec::new(), acks: AckBook::default(), state };
    let signals = match kind {
        StepKind::Signals => {
            let batch = config.timing.wf_signal_batch.max(1);
            let entries = signal::read_inbox(env, txn, actor, batch)?;
            let Some(last_entry) = entries.last() else { return Ok(StepResult::Idle) };
            step.state.inbox_cursor = Some(hex(last_entry.stamp()));
            step.state.signals_consumed += entries.len() as u64;
            for entry in &entries {
                txn.clear(entry.key.clone());
            }
            step.facts.push(Fact::WorkflowStep {
                actor: actor.to_string(),
                consumed: entries.iter().map(|e| e.signal.summary()).collect(),
            });
            let n = entries.len();
            for entry in entries {
                step.on_signal(env, txn, entry.signal)?;
            }
            step.finish_event_acks();
            n
        }
        StepKind::Timer => {
            let Some(timer) = step.state.due(now) else { return Ok(StepResult::Idle) };
            step.facts.push(Fact::WorkflowStep {
                actor: actor.to_string(),
                consumed: vec![timer.name().to_string()],
            });
            step.on_timer(env, txn, timer)?;
            0
        }
    };
    step.emit_acks();
    let outbox = Outbox { seq: prior_seq + 1, items: step.outbox };
    step.state.outbox = outbox.clone();
    state::store(txn, &step.state);
    Ok(StepResult::Committed { outbox, signals })
}

/// The working memory of one step attempt.
struct Step<'s> {
    config: &'s EngineConfig,
    /// The core node's wall clock, ms.
    now: i64,
    facts: &'s mut Vec<Fact>,
    outbox: Vec<OutboxItem>,
    acks: AckBook,
    state: WorkflowState,
}

/// `now + duration`, saturating.
fn after(now: i64, duration_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX))
}

impl Step<'_> {
    fn actor(&self) -> String {
        self.state.actor.clone()
    }

    fn set_status(&mut self, to: ActorStatus) {
        if self.state.status != Some(to) {
            self.facts.push(Fact::StatusChanged {
                actor: self.actor(),
                from: self.state.status,
                to,
            });
            self.state.status = Some(to);
        }
    }

    fn trigger_drainer(&mut self) {
        let item = OutboxItem::TriggerDrainer {
            namespace: self.state.namespace.clone(),
            pool: self.state.pool.clone(),
        };
        if !self.outbox.contains(&item) {
            self.outbox.push(item);
        }
    }

    fn placement_matches(&self, runner: &RunnerId, generation: u32) -> bool {
        matches!(&self.state.placement, Some(p) if p.runner == *runner && p.generation == generation)
    }

    // ---- signals ---------------------------------------------------------------------------

    fn on_signal(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        signal: Signal,
    ) -> Result<(), WorkflowError> {
        let status = self.state.status;
        if status == Some(ActorStatus::Destroyed) {
            return Ok(());
        }
        match signal {
            Signal::Create => {
                if status.is_none() {
                    self.allocate(env, txn, AllocMode::Normal)?;
                }
            }
            Signal::Events { runner, events, .. } => {
                self.apply_events(env, txn, &runner, &events)?
            }
            Signal::Allocate { runner, generation } => {
                self.on_allocate(env, txn, runner, generation)?
            }
            Signal::GoingAway { runner, generation } => {
                if matches!(status, Some(ActorStatus::Starting | ActorStatus::Running))
                    && self.placement_matches(&runner, generation)
                {
                    self.request_stop(env, txn, StopActorReason::GoingAway)?;
                }
            }
            Signal::RunnerLost { runner, generation } => {
                if self.state.is_allocated() && self.placement_matches(&runner, generation) {
                    self.end_generation(env, txn, EndOutcome::Lost)?;
                }
            }
            Signal::Wake => match status {
                Some(ActorStatus::Sleeping) => {
                    self.state.alarm_ts = None;
                    self.allocate(env, txn, AllocMode::Normal)?;
                }
                Some(ActorStatus::Stopping(StopActorReason::SleepIntent)) => {
                    self.state.wake_pending = true;
                }
                _ => {}
            },
            Signal::Destroy => self.on_destroy(env, txn)?,
        }
        Ok(())
    }

    fn on_allocate(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        runner: RunnerId,
        generation: u32,
    ) -> Result<(), WorkflowError> {
        if self.state.status == Some(ActorStatus::Pending)
            && self.state.pending_generation == Some(generation)
        {
            let actor = self.actor();
            let placement = registry::read_placement(env, txn, &actor, ReadMode::Serializable)?;
            if placement == Some(Placement { runner: runner.clone(), generation }) {
                return self.start_generation(env, txn, runner, generation);
            }
        }
        self.facts.push(Fact::Probe { name: "allocate-signal-ignored".into() });
        Ok(())
    }

    fn on_destroy(&mut self, env: &mut Env<'_>, txn: &mut Txn) -> Result<(), WorkflowError> {
        match self.state.status {
            None | Some(ActorStatus::Sleeping | ActorStatus::Rescheduling) => {
                self.destroy(env, txn)
            }
            Some(ActorStatus::Pending) => {
                self.leave_pending(env, txn)?;
                self.destroy(env, txn);
            }
            Some(ActorStatus::Starting | ActorStatus::Running) => {
                self.state.destroy_requested = true;
                self.request_stop(env, txn, StopActorReason::Destroy)?;
            }
            Some(ActorStatus::Stopping(_)) => self.state.destroy_requested = true,
            Some(ActorStatus::Destroyed) => {}
        }
        Ok(())
    }

    // ---- events ----------------------------------------------------------------------------

    fn apply_events(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        runner: &RunnerId,
        events: &[EventWrapper],
    ) -> Result<(), WorkflowError> {
        self.acks.consumed_events = true;
        let canaries = env.canaries;
        let batch_cursor = self.state.last;
        for event in events {
            let cp = &event.checkpoint;
            if cp.actor_id.as_str() != self.state.actor || cp.index < 0 {
                self.facts.push(Fact::Probe { name: "event-malformed-checkpoint".into() });
                continue;
            }
            let current =
                self.state.is_allocated() && self.placement_matches(runner, cp.generation);
            let class = if current {
                classify(cp.index, self.state.last, batch_cursor, canaries)
            } else {
                EventClass::Stale
            };
            self.facts.push(Fact::EventClassified {
                actor: self.actor(),
                runner: runner.clone(),
                generation: cp.generation,
                index: cp.index,
                class,
                event: event.inner.clone(),
            });
            match class {
                EventClass::Stale => self.acks.ack(runner, cp.generation, cp.index),
                EventClass::Dup => self.acks.dup_generation = Some(cp.generation),
                EventClass::Gap => {}
                EventClass::Applied => {
                    self.state.last = self.state.last.max(cp.index);
                    self.apply_event(env, txn, runner, cp.generation, cp.index, &event.inner)?;
                }
            }
        }
        Ok(())
    }

    fn apply_event(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        runner: &RunnerId,
        generation: u32,
        index: i64,
        event: &Event,
    ) -> Result<(), WorkflowError> {
        match event {
            Event::EventActorStateUpdate(update) => match &update.state {
                ActorState::ActorStateRunning => {
                    self.state.ran = true;
                    if self.state.status == Some(ActorStatus::Starting) {
                        self.state.deadline = None;
                        self.set_status(ActorStatus::Running);
                    }
                }
                ActorState::ActorStateStopped(stopped) => {
                    // Rule 2: the Stopped ack ends the cursor.
                    self.acks.ack(runner, generation, index);
                    let outcome = match stopped.code {
                        StopCode::Ok => EndOutcome::StoppedOk,
                        StopCode::Error => EndOutcome::StoppedError,
                    };
                    self.end_generation(env, txn, outcome)?;
                }
            },
            Event::EventActorIntent(intent) => {
                if matches!(self.state.status, Some(ActorStatus::Starting | ActorStatus::Running)) {
                    let reason = match intent.intent {
                        ActorIntent::ActorIntentSleep => StopActorReason::SleepIntent,
                        ActorIntent::ActorIntentStop => StopActorReason::StopIntent,
                    };
                    self.request_stop(env, txn, reason)?;
                }
            }
            Event::EventActorSetAlarm(alarm) => self.state.alarm_ts = alarm.alarm_ts,
        }
        Ok(())
    }

    /// Rules 1, 3 and 5 of §4.5 at the end of a step that consumed `Events`.
    fn finish_event_acks(&mut self) {
        if !self.acks.consumed_events {
            return;
        }
        let Some(p) = self.state.placement.clone() else { return };
        let batch_full =
            self.state.last - self.state.last_acked >= self.config.timing.event_ack_batch_size;
        let re_ack = self.acks.dup_generation == Some(p.generation);
        if (batch_full || re_ack) && self.state.last >= 0 {
            self.acks.ack(&p.runner, p.generation, self.state.last);
            self.state.last_acked = self.state.last;
            self.state.ack_deadline = None;
        } else if self.state.last > self.state.last_acked && self.state.ack_deadline.is_none() {
            self.state.ack_deadline =
                Some(after(self.now, self.config.timing.event_ack_max_delay_ms));
        }
    }

    /// Put the collected acks in the outbox, one `ToEnvoyAckEvents` per runner.
    fn emit_acks(&mut self) {
        for (runner, checkpoints) in self.acks.per_runner() {
            for (generation, index) in &checkpoints {
                self.facts.push(Fact::EventAckPublished {
                    runner: runner.clone(),
                    actor: self.actor(),
                    generation: *generation,
                    index: *index,
                });
            }
            self.outbox.push(OutboxItem::AckEvents { runner, checkpoints });
        }
        self.acks.acks.clear();
    }

    // ---- timers ----------------------------------------------------------------------------

    fn on_timer(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        timer: DueTimer,
    ) -> Result<(), WorkflowError> {
        match timer {
            DueTimer::AckDeadline => {
                if let Some(p) = self.state.placement.clone() {
                    if self.state.last >= 0 {
                        self.acks.ack(&p.runner, p.generation, self.state.last);
                    }
                    self.state.last_acked = self.state.last_acked.max(self.state.last);
                }
                self.state.ack_deadline = None;
            }
            DueTimer::StartDeadline => self.request_stop(env, txn, StopActorReason::Lost)?,
            DueTimer::StopDeadline => {
                if let Some(p) = self.state.placement.clone() {
                    let actor = self.actor();
                    for index in 0..self.state.cmd_next {
                        if cmdlog::read_one(env, txn, &p.runner, &actor, p.generation, index)?
                            .is_some()
                        {
                            self.outbox.push(OutboxItem::Command {
                                runner: p.runner.clone(),
                                generation: p.generation,
                                index,
                            });
                        }
                    }
                    self.facts.push(Fact::Probe { name: "stop-deadline-republish".into() });
                }
                self.state.deadline = Some(self.stop_deadline());
            }
            DueTimer::PendingDeadline => {
                self.leave_pending(env, txn)?;
                self.set_status(ActorStatus::Sleeping);
            }
            DueTimer::Backoff => {
                self.state.backoff_until = None;
                self.allocate(env, txn, AllocMode::CrashRestart)?;
            }
            DueTimer::Alarm => {
                self.state.alarm_ts = None;
                self.allocate(env, txn, AllocMode::Normal)?;
            }
        }
        Ok(())
    }

    fn stop_deadline(&self) -> i64 {
        let t = &self.config.timing;
        after(self.now, t.actor_stop_threshold_ms.saturating_add(t.stop_grace_ms))
    }

    // ---- allocation and commands -----------------------------------------------------------

    /// `Allocate(mode)` (§5.3) for generation `generation + 1` (0 before the first `Start`).
    fn allocate(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        mode: AllocMode,
    ) -> Result<(), WorkflowError> {
        let h = self.state.generation.map_or(0, |g| g + 1);
        let (actor, ns, pool) =
            (self.actor(), self.state.namespace.clone(), self.state.pool.clone());
        if pending::queue_is_empty(env, txn, &ns, &pool, ReadMode::Serializable)? {
            if let Some(runner) =
                registry::allocate_in(env, txn, self.facts, &actor, &ns, &pool, h)?
            {
                return self.start_generation(env, txn, runner, h);
            }
        }
        pending::enqueue(txn, &ns, &pool, &actor, h);
        self.facts.push(Fact::PendingEnqueue { actor, generation: h });
        self.state.pending_generation = Some(h);
        self.state.pending_deadline = match mode {
            AllocMode::CrashRestart => {
                Some(after(self.now, self.config.timing.restart_pending_timeout_ms))
            }
            AllocMode::Normal => None,
        };
        self.set_status(ActorStatus::Pending);
        self.trigger_drainer();
        Ok(())
    }

    /// Persist `Start(A, h, 0)` on `runner` (whose slot is already held) and enter `Starting`.
    fn start_generation(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        runner: RunnerId,
        h: u32,
    ) -> Result<(), WorkflowError> {
        let actor = self.actor();
        let start = CommandStartActor {
            config: ActorConfig {
                name: self.state.name.clone().into(),
                key: self.state.key.clone().map(Into::into),
                create_ts: self.state.create_ts,
                input: self.state.input.clone().map(vbare::Bytes::from),
            },
            hibernating_requests: Vec::new(),
            preloaded_kv: None,
        };
        let bundle = if env.canaries.on(Canary::PreloadBundlePersisted) {
            let (budget, canaries, now_ms) = (self.config.preload_budget, env.canaries, env.now_ms);
            let faults = &mut *env.faults;
            preload::fetch(
                env.store,
                &actor,
                &self.state.namespace,
                &self.state.name,
                budget,
                canaries,
                now_ms,
                &mut || faults.preload_read_fault(),
            )
            .bundle
        } else {
            None
        };
        let key =
            CommandKey { runner: runner.clone(), actor: actor.clone(), generation: h, index: 0 };
        cmdlog::persist(env, txn, &key, &ActorCommandKeyData::CommandStartActor(start), bundle);
        self.facts.push(Fact::CommandPersisted {
            runner: runner.clone(),
            actor,
            generation: h,
            index: 0,
            kind: CommandKind::Start,
        });
        self.outbox.push(OutboxItem::Command { runner: runner.clone(), generation: h, index: 0 });
        let s = &mut self.state;
        s.generation = Some(h);
        s.placement = Some(Placement { runner, generation: h });
        s.cmd_next = 1;
        s.last = -1;
        s.last_acked = -1;
        s.ack_deadline = None;
        s.ran = false;
        s.stop_reason = None;
        s.pending_generation = None;
        s.pending_deadline = None;
        s.deadline = Some(after(self.now, self.config.timing.actor_start_threshold_ms));
        self.set_status(ActorStatus::Starting);
        Ok(())
    }

    /// Persist `Stop(reason)` at the next index unless a stop exists (first reason wins).
    fn request_stop(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        reason: StopActorReason,
    ) -> Result<(), WorkflowError> {
        if self.state.stop_reason.is_some() {
            return Ok(());
        }
        let Some(p) = self.state.placement.clone() else { return Ok(()) };
        let actor = self.actor();
        let index = self.state.cmd_next;
        let key = CommandKey {
            runner: p.runner.clone(),
            actor: actor.clone(),
            generation: p.generation,
            index,
        };
        let stop = ActorCommandKeyData::CommandStopActor(CommandStopActor { reason });
        cmdlog::persist(env, txn, &key, &stop, None);
        self.facts.push(Fact::CommandPersisted {
            runner: p.runner.clone(),
            actor,
            generation: p.generation,
            index,
            kind: CommandKind::Stop(reason),
        });
        self.outbox.push(OutboxItem::Command { runner: p.runner, generation: p.generation, index });
        self.state.cmd_next = index + 1;
        self.state.stop_reason = Some(reason);
        self.state.deadline = Some(self.stop_deadline());
        self.set_status(ActorStatus::Stopping(reason));
        Ok(())
    }

    /// Leave `Pending` (§5.3): delete the entry if it exists, otherwise undo the drainer's
    /// allocation (no `Start` is ever written for it).
    fn leave_pending(&mut self, env: &mut Env<'_>, txn: &mut Txn) -> Result<(), WorkflowError> {
        let (actor, ns, pool) =
            (self.actor(), self.state.namespace.clone(), self.state.pool.clone());
        let h = self.state.pending_generation;
        if pending::remove(env, txn, &ns, &pool, &actor)? {
            if let Some(generation) = h {
                self.facts.push(Fact::PendingDequeue { actor, generation });
            }
        } else if let Some(p) = registry::read_placement(env, txn, &actor, ReadMode::Serializable)?
        {
            if Some(p.generation) == h {
                registry::release_in(env, txn, &actor, &p)?;
                self.trigger_drainer();
                self.facts.push(Fact::Probe { name: "leave-pending-after-drain".into() });
            }
        }
        self.state.pending_generation = None;
        self.state.pending_deadline = None;
        Ok(())
    }

    // ---- ending a generation ---------------------------------------------------------------

    /// `EndGeneration(outcome)` and the disposition (§5.4), in this step.
    fn end_generation(
        &mut self,
        env: &mut Env<'_>,
        txn: &mut Txn,
        outcome: EndOutcome,
    ) -> Result<(), WorkflowError> {
        let Some(p) = self.state.placement.take() else { return Ok(()) };
        let actor = self.actor();
        registry::release_in(env, txn, &actor, &p)?;
        cmdlog::delete_generation(env, txn, &p.runner, &actor, p.generation);
        self.trigger_drainer();
        if outcome == EndOutcome::StoppedOk {
            self.state.retry_count = 0;
        }
        let inputs = DispositionInputs {
            destroy_requested: self.state.destroy_requested,
            wake_pending: self.state.wake_pending,
            stop_reason: self.state.stop_reason,
            crash_policy: self.state.crash_policy,
        };
        let s = &mut self.state;
        s.cmd_next = 0;
        s.last = -1;
        s.last_acked = -1;
        s.ack_deadline = None;
        s.ran = false;
        s.stop_reason = None;
        s.deadline = None;
        s.wake_pending = false;

        let next = disposition(&inputs, outcome);
        let disposition = match next {
            Next::Restart => {
                if self.count_retry() {
                    Disposition::Restart
                } else {
                    Disposition::Reschedule
                }
            }
            Next::Destroy => Disposition::Destroy,
            Next::Sleep => Disposition::Sleep,
            Next::Allocate => Disposition::Allocate,
        };
        self.facts.push(Fact::EndGeneration {
            actor,
            runner: p.runner,
            generation: p.generation,
            outcome,
            inputs,
            disposition,
        });
        match disposition {
            Disposition::Destroy => self.destroy(env, txn),
            Disposition::Sleep => self.set_status(ActorStatus::Sleeping),
            Disposition::Allocate => self.allocate(env, txn, AllocMode::Normal)?,
            Disposition::Restart => self.allocate(env, txn, AllocMode::CrashRestart)?,
            Disposition::Reschedule => {
                let backoff = backoff_ms(self.config, self.state.retry_count, env.rng);
                self.state.backoff_until = Some(after(self.now, backoff));
                self.set_status(ActorStatus::Rescheduling);
            }
        }
        Ok(())
    }

    /// The retry bookkeeping of **Restart** (§5.4); returns whether to allocate at once
    /// (`retry_count = 0`).
    fn count_retry(&mut self) -> bool {
        let reset_after = i64::try_from(self.config.timing.retry_reset_ms).unwrap_or(i64::MAX);
        let quiet = match self.state.last_retry_ts {
            None => true,
            Some(t) => self.now.saturating_sub(t) > reset_after,
        };
        self.state.retry_count = if quiet { 0 } else { self.state.retry_count.saturating_add(1) };
        self.state.last_retry_ts = Some(self.now);
        self.state.retry_count == 0
    }

    /// **Destroy**: delete the keyspace, the inbox, `actor/A/ns` and the workflow entry; keep the
    /// state as a tombstone with status `Destroyed`.
    fn destroy(&mut self, _env: &mut Env<'_>, txn: &mut Txn) {
        let actor = self.actor();
        kv::delete_keyspace(txn, &actor);
        txn.clear_range(KeyRange::prefix(&keys::actor_inbox_prefix(&actor)));
        txn.clear(keys::actor_namespace(&actor));
        txn.clear(keys::workflow_entry(&actor));
        let s = &mut self.state;
        s.alarm_ts = None;
        s.backoff_until = None;
        s.pending_generation = None;
        s.pending_deadline = None;
        s.deadline = None;
        s.ack_deadline = None;
        s.wake_pending = false;
        self.set_status(ActorStatus::Destroyed);
    }
}

/// What follows the end of a generation, before the retry bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Destroy,
    Sleep,
    Allocate,
    Restart,
}

/// The disposition table of §5.4, top to bottom.
fn disposition(inputs: &DispositionInputs, outcome: EndOutcome) -> Next {
    if inputs.destroy_requested {
        return Next::Destroy;
    }
    match inputs.stop_reason {
        Some(StopActorReason::SleepIntent) => {
            return if inputs.wake_pending { Next::Allocate } else { Next::Sleep };
        }
        Some(StopActorReason::GoingAway) => return Next::Allocate,
        None | Some(StopActorReason::StopIntent) if outcome == EndOutcome::StoppedOk => {
            return Next::Destroy;
        }
        _ => {}
    }
    match inputs.crash_policy {
        CrashPolicy::Restart => Next::Restart,
        CrashPolicy::Sleep => Next::Sleep,
        CrashPolicy::Destroy => Next::Destroy,
    }
}

/// `BACKOFF_BASE × 2^min(n − 1, MAX_EXP) + uniform[0, JITTER)` for `retry_count = n >= 1`.
fn backoff_ms(config: &EngineConfig, retry_count: u32, rng: &mut dyn crate::env::Entropy) -> u64 {
    let t = &config.timing;
    let exponent = retry_count.saturating_sub(1).min(t.backoff_max_exponent);
    let base = t.backoff_base_ms.saturating_mul(1u64.checked_shl(exponent).unwrap_or(u64::MAX));
    base.saturating_add(rng.below(t.backoff_jitter_ms))
}
