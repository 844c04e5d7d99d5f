//! The actor workflow's generation rules: S2 INV-GEN-SEQ (the sequence of `Start`s and their
//! order against `end_generation`), S3 INV-GEN (commands and state changes only for the current
//! placement, nothing after a generation ended), S16 INV-STATUS and S17 INV-DISPOSITION (the
//! §5.4 table, recomputed here from the decision's inputs and cross-checked against what the
//! history shows independently: the stored `Stop`'s reason, the applied `Stopped`'s code, the
//! registry's lost set, the actor's crash policy, and the status the step ended in).
//!
//! Owns `ActorTrack`'s generation, status and end fields and the forgetting of ended generations.
//!
//! Choices where the spec is silent:
//! - "Pending iff a pending entry exists" (S16) also allows the moment between the drainer's
//!   allocation (pending entry gone, placement written) and the workflow's `Allocate` step: the
//!   status `Pending` is consistent with either a pending entry and no placement, or a placement
//!   whose generation has no persisted `Start` yet. `Starting`/`Running`/`Stopping` need a
//!   placement whose `Start` was persisted. The sleep marker is not a store key the model writes,
//!   so it is not checked.
//! - S17 accepts `Restart` or `Reschedule` for the crash row with policy `Restart` (which one
//!   depends on the retry count, a wall-clock decision); the status the step ends in must be the
//!   one the disposition leads to (`Destroyed`, `Sleeping`, `Starting`/`Pending`,
//!   `Rescheduling`) among the statuses the actor took in that step.
//! - An `EndGeneration` whose `(R, g)` is not the placement before the step is reported as S3.

use pegsim_model::fact::CrashPolicy;
use pegsim_model::fact::{ActorStatus, Disposition, DispositionInputs, EndOutcome};
use pegsim_model::keys::RunnerId;
use pegsim_model::protocol::{ActorCommandKeyData, StopActorReason, StopCode};
use pegsim_model::records::Placement;

use super::names;
use super::state::{At, EndRecord, Window};
use super::Checker;

/// The dispositions §5.4 allows for these inputs and outcome (top to bottom, first match).
pub(super) fn allowed_dispositions(
    inputs: &DispositionInputs,
    outcome: EndOutcome,
) -> &'static [Disposition] {
    if inputs.destroy_requested {
        return &[Disposition::Destroy];
    }
    match inputs.stop_reason {
        Some(StopActorReason::SleepIntent) => {
            return if inputs.wake_pending {
                &[Disposition::Allocate]
            } else {
                &[Disposition::Sleep]
            };
        }
        Some(StopActorReason::GoingAway) => return &[Disposition::Allocate],
        _ => {}
    }
    let clean_reason = matches!(inputs.stop_reason, None | Some(StopActorReason::StopIntent));
    if outcome == EndOutcome::StoppedOk && clean_reason {
        return &[Disposition::Destroy];
    }
    match inputs.crash_policy {
        CrashPolicy::Restart => &[Disposition::Restart, Disposition::Reschedule],
        CrashPolicy::Sleep => &[Disposition::Sleep],
        CrashPolicy::Destroy => &[Disposition::Destroy],
    }
}

/// The statuses a disposition leads to.
fn statuses_after(disposition: Disposition) -> &'static [ActorStatus] {
    match disposition {
        Disposition::Destroy => &[ActorStatus::Destroyed],
        Disposition::Sleep => &[ActorStatus::Sleeping],
        Disposition::Allocate | Disposition::Restart => {
            &[ActorStatus::Starting, ActorStatus::Pending]
        }
        Disposition::Reschedule => &[ActorStatus::Rescheduling],
    }
}

/// S16: whether `status` agrees with the placement and pending entries.
fn status_problem(
    status: Option<ActorStatus>,
    placement: Option<&Placement>,
    pending: bool,
    start_persisted: bool,
) -> Option<&'static str> {
    match status {
        Some(ActorStatus::Pending) => {
            let waiting = pending && placement.is_none();
            let drained = !pending && placement.is_some() && !start_persisted;
            (!waiting && !drained).then_some("Pending needs a pending entry (or a drainer placement without a Start) and nothing else")
        }
        Some(ActorStatus::Starting | ActorStatus::Running | ActorStatus::Stopping(_)) => {
            (placement.is_none() || pending || !start_persisted)
                .then_some("an allocated status needs a placement whose Start was persisted, and no pending entry")
        }
        Some(ActorStatus::Sleeping | ActorStatus::Rescheduling | ActorStatus::Destroyed) | None => {
            (placement.is_some() || pending).then_some("this status implies neither a placement nor a pending entry")
        }
    }
}

impl Checker {
    /// S2 and S3 for one persisted command key `(R, A, g, i)`.
    pub(super) fn check_persisted_command(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
        is_start: bool,
    ) {
        if self.ended(actor, generation) {
            self.flag(
                names::S3,
                at,
                Some(actor),
                Some(runner),
                format!("command ({runner}, {actor}, {generation}, {index}) persisted after end_generation({actor}, {generation})"),
            );
        }
        // The step may place the generation in this commit (a `Start`) or end it after writing
        // (a `Stop` followed by its `Stopped` in one batch): either side of the commit counts.
        let targets = |p: &Option<Placement>| {
            p.as_ref().is_some_and(|p| p.runner == *runner && p.generation == generation)
        };
        let after = self.shadow.placements.get(actor).cloned();
        let before = self.placement_before_step(actor);
        if !targets(&after) && !targets(&before) {
            self.flag(
                names::S3,
                at,
                Some(actor),
                Some(runner),
                format!("command ({runner}, {actor}, {generation}, {index}) persisted while the placement is {after:?} (before the step {before:?})"),
            );
        }
        if is_start && index == 0 {
            let track = self.actor(actor);
            let expected = track.next_start_gen;
            track.next_start_gen = expected.max(generation.saturating_add(1));
            if generation != expected {
                self.flag(
                    names::S2,
                    at,
                    Some(actor),
                    Some(runner),
                    format!("Start({actor}, {generation}) persisted; the next generation was {expected}"),
                );
            }
            if let Some(w) = self.window.as_mut() {
                w.starts.push((actor.to_string(), generation));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_end_generation(
        &mut self,
        at: At,
        node: &str,
        actor: &str,
        runner: &RunnerId,
        generation: u32,
        outcome: EndOutcome,
        inputs: &DispositionInputs,
        disposition: Disposition,
    ) {
        self.progress += 1;
        let running = self.actors.get(actor).and_then(|t| {
            t.open_instances.keys().find(|(_, g)| *g == generation).map(|(r, _)| r.clone())
        });
        if let Some(host) = running {
            self.flag(
                names::S2,
                at,
                Some(actor),
                Some(&host),
                format!("end_generation({actor}, {generation}) while its instance on {host} was still running"),
            );
        }
        let before = self.placement_before_step(actor);
        if before.as_ref().is_none_or(|p| p.runner != *runner || p.generation != generation) {
            self.flag(
                names::S3,
                at,
                Some(actor),
                Some(runner),
                format!("end_generation({actor}, {generation}) on {runner} while the placement was {before:?}"),
            );
        }
        let track = self.actor(actor);
        track.ended_upto = Some(track.ended_upto.map_or(generation, |e| e.max(generation)));
        self.ident(runner).terminated.remove(&(actor.to_string(), generation));
        let record = EndRecord {
            at,
            actor: actor.to_string(),
            runner: runner.clone(),
            generation,
            outcome,
            inputs: inputs.clone(),
            disposition,
        };
        self.window_for(at, node).ends.push(record);
    }

    pub(super) fn on_status_changed(&mut self, at: At, node: &str, actor: &str, to: ActorStatus) {
        self.progress += 1;
        let track = self.actor(actor);
        if track.status != Some(to) {
            track.status_since = at.ms;
        }
        track.status = Some(to);
        if to == ActorStatus::Destroyed {
            self.destroyed.insert(actor.to_string());
        }
        self.window_for(at, node).statuses.entry(actor.to_string()).or_default().push(to);
    }

    /// S2 (a `Start` needs the previous generation's end) and S17, at the end of a step.
    pub(super) fn check_window_generations(&mut self, w: &Window) {
        for (actor, generation) in &w.starts {
            let Some(previous) = generation.checked_sub(1) else { continue };
            let ended = self.actors.get(actor).is_some_and(|t| t.ended(previous));
            if !ended {
                self.flag(
                    names::S2,
                    w.at,
                    Some(actor),
                    None,
                    format!("Start({actor}, {generation}) persisted before end_generation({actor}, {previous})"),
                );
            }
        }
        for end in &w.ends {
            self.check_disposition(w, end);
        }
    }

    /// S17 for one `EndGeneration`.
    fn check_disposition(&mut self, w: &Window, e: &EndRecord) {
        let mut problems: Vec<String> = Vec::new();
        let allowed = allowed_dispositions(&e.inputs, e.outcome);
        if !allowed.contains(&e.disposition) {
            problems.push(format!(
                "disposition {:?} for outcome {:?} and inputs {:?}; §5.4 gives {allowed:?}",
                e.disposition, e.outcome, e.inputs
            ));
        }
        if e.inputs.stop_reason == Some(StopActorReason::Destroy) && !e.inputs.destroy_requested {
            problems.push("stop reason DESTROY without destroy_requested".to_string());
        }
        let key = (e.actor.clone(), e.generation);
        if let Some(track) = self.gens.get(&key) {
            let stored = track.cmds.get(&1).and_then(|c| match &c.content {
                ActorCommandKeyData::CommandStopActor(stop) => Some(stop.reason),
                ActorCommandKeyData::CommandStartActor(_) => None,
            });
            if stored != e.inputs.stop_reason {
                problems.push(format!(
                    "the decision used stop reason {:?}, the persisted Stop says {stored:?}",
                    e.inputs.stop_reason
                ));
            }
        }
        let actor = self.actors.get(&e.actor);
        if let Some(policy) = actor.and_then(|a| a.crash_policy) {
            if policy != e.inputs.crash_policy {
                problems.push(format!(
                    "the decision used crash policy {:?}, the actor was created with {policy:?}",
                    e.inputs.crash_policy
                ));
            }
        }
        match (w.applied_stops.get(&key), e.outcome) {
            (Some(StopCode::Ok), EndOutcome::StoppedOk)
            | (Some(StopCode::Error), EndOutcome::StoppedError) => {}
            (None, EndOutcome::Lost) => {
                let lost =
                    actor.is_some_and(|a| a.lost.contains(&(e.runner.clone(), e.generation)));
                if !lost {
                    problems.push(format!(
                        "outcome Lost but {} never declared ({}, {}) lost",
                        e.runner, e.actor, e.generation
                    ));
                }
            }
            (stop, outcome) => {
                problems.push(format!("outcome {outcome:?} but the step applied Stopped {stop:?}"))
            }
        }
        let mut seen: Vec<ActorStatus> = w.statuses.get(&e.actor).cloned().unwrap_or_default();
        if let Some(s) = actor.and_then(|a| a.status) {
            seen.push(s);
        }
        if self.destroyed.contains(&e.actor) {
            seen.push(ActorStatus::Destroyed);
        }
        let wanted = statuses_after(e.disposition);
        if !seen.iter().any(|s| wanted.contains(s)) {
            problems.push(format!(
                "disposition {:?} but the step left the actor in {seen:?}",
                e.disposition
            ));
        }
        if let Some(first) = problems.into_iter().next() {
            let detail = format!("end_generation({}, {}): {first}", e.actor, e.generation);
            self.flag(names::S17, e.at, Some(&e.actor), Some(&e.runner), detail);
        }
    }

    /// S16 for every actor the step touched, then drop destroyed actors' tracks.
    pub(super) fn check_window_status(&mut self, w: &Window) {
        let mut actors: Vec<String> = w.touched_actors.iter().cloned().collect();
        actors.extend(w.statuses.keys().cloned());
        actors.sort();
        actors.dedup();
        for actor in &actors {
            let status = if self.destroyed.contains(actor) {
                Some(ActorStatus::Destroyed)
            } else {
                self.actors.get(actor).and_then(|a| a.status)
            };
            let placement = self.shadow.placements.get(actor);
            let pending = self.shadow.pending.get(actor).is_some_and(|p| !p.is_empty());
            let start_persisted = placement.is_some_and(|p| {
                self.actors.get(actor).is_some_and(|a| a.next_start_gen > p.generation)
            });
            if let Some(problem) = status_problem(status, placement, pending, start_persisted) {
                let detail = format!(
                    "{actor} is {status:?} with placement {placement:?} and pending entry {pending}: {problem}"
                );
                let runner = placement.map(|p| p.runner.clone());
                self.flag(names::S16, w.at, Some(actor), runner.as_ref(), detail);
            }
            if self.destroyed.contains(actor)
                && self.actors.get(actor).is_some_and(|a| a.open_instances.is_empty())
            {
                self.actors.remove(actor);
                self.shadow.forget_actor(actor);
                self.gens.retain(|(a, _), _| a != actor);
            }
        }
    }

    /// Forget what only mattered while `(A, g)` was live.
    pub(super) fn forget_generation(&mut self, actor: &str, runner: &RunnerId, generation: u32) {
        let key = (actor.to_string(), generation);
        self.gens.remove(&key);
        if let Some(ident) = self.idents.get_mut(runner) {
            ident.edge_acks.remove(&key);
        }
        if let Some(track) = self.actors.get_mut(actor) {
            track.lost.remove(&(runner.clone(), generation));
        }
        for conn in self.conns.values_mut() {
            conn.fetched.remove(&key);
            conn.first_start.remove(&key);
        }
    }
}
