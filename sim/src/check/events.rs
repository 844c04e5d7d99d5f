//! Event checkpoints: S4 INV-EVT (order, prefix), S5 INV-EVT (authenticity) and S8 INV-ACK
//! (events), plus the L3 bookkeeping of emitted events.
//!
//! The §4.4 classification is recomputed here for every `EventClassified`, from the placement
//! before the step, the generation's end and this checker's own applied cursor, and compared with
//! what the workflow recorded. An event the workflow *applied* although the table says stale is
//! S3; although it says duplicate or gap, S4. Dropping an event the table says to apply is not a
//! safety violation by itself (the acknowledgement rule S8 and liveness L3 catch its effects).
//! S5 is checked for events whose application was otherwise valid (a twice-applied event is S4's).
//!
//! Owns `GenTrack.applied_upto` / `emitted`, `RunnerGen.ack_received`, `ProcTrack.events`.
//!
//! S8 on the engine side: an acknowledgement `(A, g, k)` — published by a step, or written as a
//! frame to the runner — needs every index `<= k` applied, or `(A, g)` ended or not the placement
//! (stale), or the actor gone (destroyed). On the runner side: a forget of `<= k` needs a received
//! `ToEnvoyAckEvents` for exactly `(A, g)` covering `k`.

use pegsim_model::fact::EventClass;
use pegsim_model::keys::RunnerId;
use pegsim_model::protocol::{ActorState, Event, EventActorStateUpdate};

use super::names;
use super::state::{At, Window};
use super::Checker;

/// The stop code of a `Stopped` event.
fn stopped_code(event: &Event) -> Option<pegsim_model::protocol::StopCode> {
    match event {
        Event::EventActorStateUpdate(EventActorStateUpdate {
            state: ActorState::ActorStateStopped(stopped),
        }) => Some(stopped.code),
        _ => None,
    }
}

impl Checker {
    pub(super) fn on_event_emit(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
        event: &Event,
    ) {
        if !self.ended(actor, generation) {
            self.gen(actor, generation).emitted.insert(index, (runner.clone(), event.clone()));
        }
        let key = (actor.to_string(), generation);
        let healing = self.heal_at.is_some_and(|t| at.ms >= t);
        let proc = self.proc(runner);
        proc.gens.entry(key.clone()).or_default().has_events = true;
        let ready = proc.ready.is_some_and(|(_, since)| since <= at.ms);
        let obligations = proc.events.entry(key).or_default();
        if healing && ready && obligations.unresolved.is_empty() {
            obligations.prompt.insert(index, at.ms);
        }
        obligations.unresolved.insert(index, at.ms);
        obligations.unforgotten.insert(index, at.ms);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_event_classified(
        &mut self,
        at: At,
        node: &str,
        actor: &str,
        runner: &RunnerId,
        generation: u32,
        index: i64,
        class: EventClass,
        event: &Event,
    ) {
        let key = (actor.to_string(), generation);
        let stopped_in_step = self.window_for(at, node).applied_stops.contains_key(&key);
        let before = self.placement_before_step(actor);
        let current =
            before.as_ref().is_some_and(|p| p.runner == *runner && p.generation == generation);
        let last = self.gens.get(&key).map_or(-1, |t| t.applied_upto);
        let expected = if !current || self.ended(actor, generation) || stopped_in_step {
            EventClass::Stale
        } else if index <= last {
            EventClass::Dup
        } else if index == last + 1 {
            EventClass::Applied
        } else {
            EventClass::Gap
        };
        if class == EventClass::Applied {
            self.progress += 1;
            match expected {
                EventClass::Stale => self.flag(
                    names::S3,
                    at,
                    Some(actor),
                    Some(runner),
                    format!(
                        "event ({actor}, {generation}, {index}) from {runner} applied while the placement was {before:?}{}",
                        if stopped_in_step || self.ended(actor, generation) { " and the generation had ended" } else { "" }
                    ),
                ),
                EventClass::Dup => self.flag(
                    names::S4,
                    at,
                    Some(actor),
                    Some(runner),
                    format!("event ({actor}, {generation}, {index}) applied again: indices 0..={last} were already applied"),
                ),
                EventClass::Gap => self.flag(
                    names::S4,
                    at,
                    Some(actor),
                    Some(runner),
                    format!("event ({actor}, {generation}, {index}) applied after index {last}: indices {}..{index} were skipped", last + 1),
                ),
                EventClass::Applied => {
                    let emitted = self.gens.get_mut(&key).and_then(|t| t.emitted.remove(&index));
                    let problem = match emitted {
                        None => Some(format!("no instance emitted ({actor}, {generation}, {index})")),
                        Some((r, _)) if r != *runner => {
                            Some(format!("({actor}, {generation}, {index}) was emitted by {r}, applied as from {runner}"))
                        }
                        Some((_, e)) if e != *event => Some(format!(
                            "({actor}, {generation}, {index}) was emitted as {e:?} and applied as {event:?}"
                        )),
                        Some(_) => None,
                    };
                    if let Some(detail) = problem {
                        self.flag(names::S5, at, Some(actor), Some(runner), detail);
                    }
                }
            }
            let track = self.gen(actor, generation);
            track.applied_upto = track.applied_upto.max(index);
            if let Some(code) = stopped_code(event) {
                if let Some(w) = self.window.as_mut() {
                    w.applied_stops.insert(key.clone(), code);
                }
            }
        }
        if matches!(class, EventClass::Applied | EventClass::Stale) {
            if class == EventClass::Stale {
                self.progress += 1;
            }
            let emitted = self
                .procs
                .get_mut(runner)
                .and_then(|p| p.events.get_mut(&key))
                .and_then(|o| o.unresolved.remove(&index));
            if let Some(emitted) = emitted {
                self.check_l3_late(at, runner, actor, generation, index, emitted, false);
            }
        }
    }

    /// L3 when an obligation closes (`spec/protocol.md` §8.3 L3: an event "is applied, or
    /// classified stale, within `EVENT_RESEND_INTERVAL + Δ`" and "acknowledged and forgotten by
    /// the runner within a further `EVENT_ACK_MAX_DELAY + Δ`"). `finish` only sees obligations
    /// still open at the end of the run; an event resolved after its bound and before the end is
    /// as much a violation, so it is checked here with the same trigger and bound as
    /// `open_obligations`: from `max(T_q, emitted, current ready connection)`, only in the heal
    /// phase and while the runner holds a ready connection (otherwise no obligation is open).
    #[allow(clippy::too_many_arguments)]
    fn check_l3_late(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
        emitted: u64,
        forgotten: bool,
    ) {
        let Some(t_q) = self.heal_at.filter(|t| at.ms >= *t) else { return };
        let Some((_, ready)) = self.procs.get(runner).and_then(|p| p.ready) else { return };
        let t = &self.cfg.timing;
        let delta = self.cfg.liveness_delta_ms;
        let apply = t.event_resend_interval_ms + delta;
        let bound = if forgotten { apply + t.event_ack_max_delay_ms + delta } else { apply };
        let since = emitted.max(ready).max(t_q);
        let due = since.saturating_add(bound);
        if at.ms > due {
            let what = if forgotten {
                "acknowledged and forgotten"
            } else {
                "applied or classified stale"
            };
            self.flag(
                names::L3,
                at,
                Some(actor),
                Some(runner),
                format!(
                    "event ({actor}, {generation}, {index}) of {runner} {what} at {} ms, after its bound (open since {since} ms, due {due} ms)",
                    at.ms
                ),
            );
        }
    }

    pub(super) fn on_event_forget(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
    ) {
        self.progress += 1;
        let key = (actor.to_string(), generation);
        let acked =
            self.procs.get(runner).and_then(|p| p.gens.get(&key)).map_or(-1, |g| g.ack_received);
        if index > acked {
            self.flag(
                names::S8,
                at,
                Some(actor),
                Some(runner),
                format!("runner {runner} forgot events of ({actor}, {generation}) up to {index}; the highest ack it received was {acked}"),
            );
        }
        let bound = self.cfg.timing.event_ack_max_delay_ms + self.cfg.liveness_delta_ms;
        let mut late: Option<(i64, u64)> = None;
        // The oldest entry each L3 obligation closes here (checked for lateness below).
        let mut resolved: Option<(i64, u64)> = None;
        let mut forgot: Option<(i64, u64)> = None;
        if let Some(p) = self.procs.get_mut(runner) {
            if let Some(o) = p.events.get_mut(&key) {
                resolved = o.unresolved.range(..=index).next().map(|(i, e)| (*i, *e));
                forgot = o.unforgotten.range(..=index).next().map(|(i, e)| (*i, *e));
                o.unresolved.retain(|i, _| *i > index);
                o.unforgotten.retain(|i, _| *i > index);
                late = o
                    .prompt
                    .range(..=index)
                    .find(|(_, e)| at.ms > **e + bound)
                    .map(|(i, e)| (*i, *e));
                o.prompt.retain(|i, _| *i > index);
                if o.unforgotten.is_empty() && o.unresolved.is_empty() {
                    p.events.remove(&key);
                }
            }
        }
        if let Some((i, emitted)) = resolved {
            self.check_l3_late(at, runner, actor, generation, i, emitted, false);
        }
        if let Some((i, emitted)) = forgot {
            self.check_l3_late(at, runner, actor, generation, i, emitted, true);
        }
        if let Some((i, emitted)) = late {
            self.flag(
                names::L10,
                at,
                Some(actor),
                Some(runner),
                format!(
                    "runner {runner} kept event ({actor}, {generation}, {i}) for {} ms after emitting it on a ready connection in the heal phase; its history may only hold events of the last EVENT_ACK_MAX_DELAY + Δ = {bound} ms",
                    at.ms - emitted
                ),
            );
        }
    }

    /// A `ToEnvoyAckEvents` checkpoint the runner received.
    pub(super) fn on_event_ack_received(
        &mut self,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
    ) {
        if let Some(g) = self
            .procs
            .get_mut(runner)
            .and_then(|p| p.gens.get_mut(&(actor.to_string(), generation)))
        {
            g.ack_received = g.ack_received.max(index);
        }
    }

    /// Whether an acknowledgement `(A, g, k)` to `runner` is justified, given the placement the
    /// deciding step saw.
    fn ack_justified(
        &self,
        actor: &str,
        generation: u32,
        index: i64,
        placement_is_target: bool,
    ) -> bool {
        let applied = self
            .gens
            .get(&(actor.to_string(), generation))
            .is_some_and(|t| t.applied_upto >= index);
        let gone = self.destroyed.contains(actor) || !self.shadow.actor_ns.contains(actor);
        applied || gone || !placement_is_target || self.ended(actor, generation)
    }

    /// S8 for the acknowledgements a step published.
    pub(super) fn check_window_acks(&mut self, w: &Window) {
        for (at, runner, actor, generation, index) in &w.acks {
            let before = match w.placement_before.get(actor) {
                Some(p) => p.clone(),
                None => self.shadow.placements.get(actor).cloned(),
            };
            let target =
                before.as_ref().is_some_and(|p| p.runner == *runner && p.generation == *generation);
            let ended_in_step = w.applied_stops.contains_key(&(actor.clone(), *generation))
                || w.ends.iter().any(|e| e.actor == *actor && e.generation == *generation);
            if !ended_in_step && !self.ack_justified(actor, *generation, *index, target) {
                let applied =
                    self.gens.get(&(actor.clone(), *generation)).map_or(-1, |t| t.applied_upto);
                self.flag(
                    names::S8,
                    *at,
                    Some(actor),
                    Some(runner),
                    format!("ack ({actor}, {generation}, {index}) published to {runner} while only indices 0..={applied} were applied"),
                );
            }
        }
    }

    /// S8 for one checkpoint of a `ToEnvoyAckEvents` frame written to `runner`.
    pub(super) fn check_ack_frame(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
    ) {
        let target = self
            .shadow
            .placements
            .get(actor)
            .is_some_and(|p| p.runner == *runner && p.generation == generation);
        if !self.ack_justified(actor, generation, index, target) {
            let applied =
                self.gens.get(&(actor.to_string(), generation)).map_or(-1, |t| t.applied_upto);
            self.flag(
                names::S8,
                at,
                Some(actor),
                Some(runner),
                format!("ToEnvoyAckEvents ({actor}, {generation}, {index}) sent to {runner} while only indices 0..={applied} were applied"),
            );
        }
    }
}
