//! The liveness obligations of `spec/protocol.md` §8.3 (L1–L10), computed on demand from what the
//! other modules track. An obligation has a trigger time and a bound; it is measured from
//! `max(T_q, trigger)` where `T_q` is the start of the heal phase (`Entry::Phase { "heal" }`,
//! 0 if none was seen), and it is violated when it is still open after its bound at `finish`.
//!
//! Owns only the pending-entry times of L8 (everything else is read from the shared state).
//!
//! The bounds, with `Δ` = `CheckConfig::liveness_delta_ms` (`LIVENESS_DELTA_MS` by default).
//! Where the spec's bound would be too tight for a correct system recovering from a fault that
//! struck just before `T_q`, the bound is widened as noted (a false alarm is as bad as a miss):
//! - L1: a live runner process without a current ready connection:
//!   `RECONNECT_MAX + 25 % jitter + INIT_TIMEOUT + Δ` from when it lost the last one.
//! - L2: a command key of a runner with a ready connection, not received on that connection:
//!   `Δ` from `max(persisted, connection ready)`; a key whose acknowledgement the edge received
//!   during the heal phase and that still exists: `Δ` from the receipt. (An acknowledgement whose
//!   transaction failed in the store before `T_q` is only repeated after the next replay, so it
//!   opens no obligation.)
//! - L3: per `(R, A, g)` with `R` ready, the oldest emitted event not applied, stale or forgotten:
//!   `EVENT_RESEND_INTERVAL + Δ`; not forgotten: a further `EVENT_ACK_MAX_DELAY + Δ`. Measured
//!   from `max(emitted, connection ready)` (events only travel on a ready connection).
//! - L4: status `Starting`: `ACTOR_START_THRESHOLD + Δ`.
//! - L5: status `Stopping`: `2 × ACTOR_STOP_THRESHOLD + STOP_GRACE + Δ` (a `Stop` lost on the bus
//!   is only re-published at the stop deadline, and the runner then has its full stop threshold),
//!   and at least the lost-runner bound `RUNNER_LOST_THRESHOLD + FENCE_MARGIN +
//!   LOST_CHECK_INTERVAL + Δ`.
//! - L6: a terminated instance whose generation has not ended and whose runner was not expired:
//!   the lost-runner bound plus the whole L3 bound.
//! - L7: a runner record not expired whose `liveness_seq` did not change while its process holds
//!   no ready connection (a ready connection writes liveness): the lost-runner bound from the last
//!   change; an expired record that still has allocations: `Δ` from the expiry.
//! - L8: a pending entry while its pool has an eligible runner with a free slot:
//!   `PENDING_RECHECK_INTERVAL + Δ` from `max(entry, capacity)`.
//! - L9: an allocation listed by a drain that has not ended: the L5 bound from the drain; a
//!   record draining, disconnected and without allocations: `RETIRE_GRACE + LOST_CHECK_INTERVAL
//!   + Δ`.
//! - L10: an event emitted in the heal phase on a ready connection while every earlier event of
//!   its `(A, g)` was applied, and still in the runner's history: `EVENT_ACK_MAX_DELAY + Δ` from
//!   its emission (also checked when it is forgotten late); a terminated instance whose tombstone
//!   the (ready) runner keeps: the whole L3 bound; a
//!   demuxer queue idle (for more than `DEMUX_IDLE_TIMEOUT`) on a live connection:
//!   `2 × DEMUX_IDLE_TIMEOUT + Δ` from its last activity.
//! - L11 (sleep and alarms) is not checked here: the disposition to `Sleeping` is S17's, and
//!   whether an alarm is due is a comparison with the core node's skewed wall clock, which the
//!   history does not carry.

use pegsim_model::fact::ActorStatus;
use pegsim_model::keys::RunnerId;

use super::names;
use super::shadow::{Change, KeyKind};
use super::state::At;
use super::Checker;

/// One open liveness obligation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Obligation {
    pub invariant: &'static str,
    pub detail: String,
    /// `max(T_q, trigger)`.
    pub since_ms: u64,
    /// `since_ms + bound`.
    pub due_ms: u64,
    pub actor: Option<String>,
    pub runner: Option<RunnerId>,
}

impl Checker {
    /// L8: remember when each pending entry appeared.
    pub(super) fn track_pending(&mut self, at: At, changes: &[Change]) {
        for change in changes {
            let KeyKind::Pending { ns, pool, stamp, actor } = &change.kind else { continue };
            let key = (actor.clone(), (ns.clone(), pool.clone(), stamp.clone()));
            if change.new.is_some() {
                self.pending_since.entry(key).or_insert(at.ms);
            } else {
                self.pending_since.remove(&key);
            }
        }
    }

    /// Every liveness obligation open at `now_ms` (see the module comment for the bounds).
    pub(super) fn open_obligations(&self, now_ms: u64) -> Vec<Obligation> {
        let t = &self.cfg.timing;
        let delta = self.cfg.liveness_delta_ms;
        let t_q = self.heal_at.unwrap_or(0);
        let lost_bound =
            t.runner_lost_threshold_ms + t.fence_margin_ms + t.lost_check_interval_ms + delta;
        let l3_apply = t.event_resend_interval_ms + delta;
        let l3_total = l3_apply + t.event_ack_max_delay_ms + delta;
        let stop_bound = (2 * t.actor_stop_threshold_ms + t.stop_grace_ms + delta).max(lost_bound);
        let mut out: Vec<Obligation> = Vec::new();
        let mut push = |invariant: &'static str,
                        trigger: u64,
                        bound: u64,
                        actor: Option<&str>,
                        runner: Option<&RunnerId>,
                        detail: String| {
            let since_ms = trigger.max(t_q);
            out.push(Obligation {
                invariant,
                detail,
                since_ms,
                due_ms: since_ms.saturating_add(bound),
                actor: actor.map(str::to_string),
                runner: runner.cloned(),
            });
        };

        // L1
        for (runner, p) in &self.procs {
            if p.ready.is_none() {
                push(
                    names::L1,
                    p.unready_since,
                    t.reconnect_max_ms + t.reconnect_max_ms / 4 + t.init_timeout_ms + delta,
                    None,
                    Some(runner),
                    format!("runner {runner} has no current ready connection"),
                );
            }
        }

        // L2
        for ((actor, generation), track) in &self.gens {
            for (index, c) in &track.cmds {
                let present = self
                    .shadow
                    .cmds
                    .get(&c.runner)
                    .is_some_and(|s| s.contains(&(actor.clone(), *generation, *index)));
                if !present {
                    continue;
                }
                if let Some(acked) = c.ack_received_ms.filter(|a| *a >= t_q) {
                    push(
                        names::L2,
                        acked,
                        delta,
                        Some(actor),
                        Some(&c.runner),
                        format!("command ({}, {actor}, {generation}, {index}) acknowledged but not deleted", c.runner),
                    );
                } else if let Some((conn, ready)) = self.procs.get(&c.runner).and_then(|p| p.ready)
                {
                    if c.received_on != Some(conn) {
                        push(
                            names::L2,
                            c.persisted_ms.max(ready),
                            delta,
                            Some(actor),
                            Some(&c.runner),
                            format!(
                                "command ({}, {actor}, {generation}, {index}) not received on the runner's current connection {conn}",
                                c.runner
                            ),
                        );
                    }
                }
            }
        }

        // L3 and L10 (tombstones): only while the runner holds a ready connection.
        for (runner, p) in &self.procs {
            let Some((_, ready)) = p.ready else { continue };
            for ((actor, generation), o) in &p.events {
                if let Some((index, emitted)) = o.unresolved.iter().next() {
                    push(
                        names::L3,
                        (*emitted).max(ready),
                        l3_apply,
                        Some(actor),
                        Some(runner),
                        format!("event ({actor}, {generation}, {index}) of {runner} neither applied nor classified stale"),
                    );
                }
                if let Some((index, emitted)) = o.unforgotten.iter().next() {
                    push(
                        names::L3,
                        (*emitted).max(ready),
                        l3_total,
                        Some(actor),
                        Some(runner),
                        format!("event ({actor}, {generation}, {index}) of {runner} not acknowledged and forgotten"),
                    );
                }
            }
            for ((actor, generation), o) in &p.events {
                if let Some((index, emitted)) = o.prompt.iter().next() {
                    push(
                        names::L10,
                        *emitted,
                        self.cfg.timing.event_ack_max_delay_ms + self.cfg.liveness_delta_ms,
                        Some(actor),
                        Some(runner),
                        format!("runner {runner} still keeps event ({actor}, {generation}, {index}) emitted in the heal phase on a ready connection"),
                    );
                }
            }
            for ((actor, generation), terminated) in &p.tombstone_due {
                push(
                    names::L10,
                    (*terminated).max(ready),
                    l3_total,
                    Some(actor),
                    Some(runner),
                    format!("runner {runner} still keeps the tombstone of ({actor}, {generation})"),
                );
            }
        }

        // L4, L5
        for (actor, track) in &self.actors {
            match track.status {
                Some(ActorStatus::Starting) => push(
                    names::L4,
                    track.status_since,
                    t.actor_start_threshold_ms + delta,
                    Some(actor),
                    None,
                    format!("{actor} is still Starting"),
                ),
                Some(ActorStatus::Stopping(reason)) => push(
                    names::L5,
                    track.status_since,
                    stop_bound,
                    Some(actor),
                    None,
                    format!("{actor} is still Stopping({reason:?})"),
                ),
                _ => {}
            }
        }

        // L6, L9
        for (runner, ident) in &self.idents {
            for ((actor, generation), terminated) in &ident.terminated {
                if self.ended(actor, *generation) {
                    continue;
                }
                push(
                    names::L6,
                    *terminated,
                    lost_bound + l3_total,
                    Some(actor),
                    Some(runner),
                    format!("instance ({actor}, {generation}) terminated on {runner}; its generation has not ended and {runner} was not expired"),
                );
            }
            if let Some((drained, allocations)) = &ident.drain {
                for (actor, generation) in allocations {
                    let still = self
                        .shadow
                        .placements
                        .get(actor)
                        .is_some_and(|p| p.runner == *runner && p.generation == *generation);
                    if still {
                        push(
                            names::L9,
                            *drained,
                            stop_bound,
                            Some(actor),
                            Some(runner),
                            format!("allocation ({actor}, {generation}) of draining runner {runner} has not ended"),
                        );
                    }
                }
            }
            if let Some(since) = ident.retire_ready_since {
                if self.shadow.infos.contains_key(runner) {
                    push(
                        names::L9,
                        since,
                        t.retire_grace_ms + t.lost_check_interval_ms + delta,
                        None,
                        Some(runner),
                        format!("drained runner {runner} is disconnected without allocations and not retired"),
                    );
                }
            }
        }

        // L7
        for (runner, info) in &self.shadow.infos {
            let ident = self.idents.get(runner);
            let writing = self.procs.get(runner).is_some_and(|p| p.ready.is_some());
            if !info.expired && !writing {
                push(
                    names::L7,
                    ident.map_or(0, |i| i.liveness_changed_ms),
                    lost_bound,
                    None,
                    Some(runner),
                    format!("runner {runner} (liveness seq {}) is not expired", info.liveness_seq),
                );
            } else if let Some(expired) = ident.and_then(|i| i.expired_ms) {
                let allocations = self.shadow.alloc_count(runner);
                if allocations > 0 {
                    push(
                        names::L7,
                        expired,
                        delta,
                        None,
                        Some(runner),
                        format!("expired runner {runner} still has {allocations} allocations"),
                    );
                }
            }
        }

        // L8
        for ((actor, (ns, pool, _)), created) in &self.pending_since {
            if let Some(capacity) = self.pool_capacity.get(&(ns.clone(), pool.clone())) {
                push(
                    names::L8,
                    (*created).max(*capacity),
                    t.pending_recheck_interval_ms + delta,
                    Some(actor),
                    None,
                    format!(
                        "{actor} waits in the pending queue of {ns}/{pool}, which has capacity"
                    ),
                );
            }
        }

        // L10 (demuxer queues)
        for (conn, c) in &self.conns {
            if c.edge_closed {
                continue;
            }
            for (actor, last) in &c.demux {
                if now_ms.saturating_sub(*last) <= t.demux_idle_timeout_ms {
                    continue;
                }
                push(
                    names::L10,
                    *last,
                    2 * t.demux_idle_timeout_ms + delta,
                    Some(actor),
                    c.runner.as_ref(),
                    format!("demuxer queue of {actor} on {conn} idle and not removed"),
                );
            }
        }
        out
    }
}
