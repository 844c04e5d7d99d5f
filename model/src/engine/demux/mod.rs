//! The actor event demuxer of one connection (`spec/protocol.md` §1.3, §4.3): it turns the events
//! a runner sends into durable `Events` signals to each actor's workflow, in order, one batch in
//! flight per actor.
//!
//! Owns the per-actor FIFO queues, their dispatchers (the batch in flight, its retries), idle
//! removal, and the drain at connection end. It is sans-IO and has no store: a batch leaves as a
//! [`DemuxOutput::Signal`] with a token, the simulator's signal bus enqueues it
//! (`engine::signal::deliver`) and reports the result back through
//! [`EventDemuxer::on_signal_result`]. It must not touch the workflow's decisions (which events
//! apply) or the connection's frames: when a workflow is gone it hands the acknowledgement to the
//! connection ([`DemuxOutput::AckEvents`]), which forwards it on its live path after the replay.
//!
//! Behaviour:
//! - `ingest` creates a queue for an actor that has none, **with the event that caused the
//!   creation**, appends the events in frame order, refreshes the queue's last activity, and lets
//!   the dispatcher send if nothing is in flight. Fact `DemuxEnqueue` per actor and frame.
//! - A dispatcher sends up to `demux_batch_max` queued events as one `Events{runner, epoch,
//!   events}` signal and sends nothing else until that batch's result arrives. `Enqueued`: the
//!   next batch goes. `WorkflowGone`: the connection acknowledges the batch to the runner (the
//!   highest index per `(A, g)`), then the next batch goes. An error: the same batch is re-sent
//!   after a backoff, forever while the connection lives.
//! - Idle removal: each queue has one collection timer chain, armed at creation. A queue is
//!   removed (fact `DemuxRemove`) only when it is empty, has no batch in flight and its last
//!   activity (ingest or a completed batch) is `demux_idle_timeout_ms` old; otherwise the timer is
//!   re-armed.
//! - Connection end ([`EventDemuxer::close`]): ingest stops, every queue keeps dispatching until it
//!   is empty (then it is removed) or until `demux_flush_timeout_ms` has passed; what is left then
//!   is discarded (fact `DemuxDiscard`), which is safe because the runner still holds those
//!   events unacknowledged and re-sends them.
//!
//! Choices where the spec is silent:
//! - The retry backoff is [`RETRY_BACKOFF_BASE_MS`] doubled per failed attempt of the same batch,
//!   capped at [`RETRY_BACKOFF_MAX_MS`], without jitter. Model parameters, not spec constants.
//! - A retried batch gets a fresh token; a result whose token is unknown (its queue was removed,
//!   or the demuxer stopped waiting at the flush deadline) is ignored.
//! - `DemuxDiscard.events` counts the events never handed to the signal bus (queued, or waiting
//!   for a retry). A batch already handed over when the flush deadline passes is abandoned: its
//!   delivery may still enqueue it, and its result is ignored.
//! - A completed batch counts as activity for idle removal, like an ingest.
//!
//! Probes ([`Fact::Probe`]): `demux-batch-retry` (a delivery failed) and
//! `demux-workflow-gone-self-ack`.
//!
//! Canaries living here (each one small branch):
//! - `demux-first-event-dropped`: the event that creates a queue is not enqueued.
//! - `demux-gc-aborts-busy-queue`: the last activity is set at creation only, and the collection
//!   timer removes the queue when that is `demux_idle_timeout_ms` old, busy or not, dropping what
//!   it holds (no fact but `DemuxRemove`).
//! - `demux-abort-drops-in-flight`: at connection end every queue is cancelled at once instead of
//!   drained: queued events are lost and results of batches in flight are ignored. (A batch
//!   already handed to the signal bus cannot be recalled; everything behind it is lost.)

use std::collections::{BTreeMap, VecDeque};

use crate::canary::{Canaries, Canary};
use crate::config::Timing;
use crate::engine::signal::{DeliverError, EnqueueResult, Signal};
use crate::env::FactSink;
use crate::fact::{ConnId, Fact};
use crate::keys::{ActorId, RunnerId};
use crate::protocol as p;

#[cfg(test)]
mod tests;

/// First retry delay of a batch whose delivery failed.
pub const RETRY_BACKOFF_BASE_MS: u64 = 50;
/// Longest retry delay.
pub const RETRY_BACKOFF_MAX_MS: u64 = 2_000;

/// The demuxer's timers. They cannot be cancelled; a stale one is recognised by its queue's
/// incarnation number (or, for the flush deadline, by the demuxer's state) and ignored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DemuxTimer {
    /// Re-send the batch of `actor`'s queue `queue` that failed.
    Retry { actor: ActorId, queue: u64 },
    /// Collection check of `actor`'s queue `queue`.
    Collect { actor: ActorId, queue: u64 },
    /// The end of the drain at connection end.
    FlushDeadline,
}

/// What the demuxer asks its connection to do.
#[derive(Clone, Debug, PartialEq)]
pub enum DemuxOutput {
    /// Hand this signal to the signal bus; report the result with `token`.
    Signal { actor: ActorId, signal: Signal, token: u64 },
    /// Arm a one-shot timer on the node's monotonic clock.
    Timer { at_ms: u64, timer: DemuxTimer },
    /// Acknowledge these events to the runner (its workflow is gone): one `ToEnvoyAckEvents`, on
    /// the connection's live-forwarding path.
    AckEvents(Vec<p::ActorCheckpoint>),
}

/// The demuxer's parameters (from `config.timing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemuxConfig {
    pub batch_max: usize,
    pub idle_timeout_ms: u64,
    pub flush_timeout_ms: u64,
}

impl DemuxConfig {
    /// The demuxer parameters of a timing configuration.
    pub fn from_timing(timing: &Timing) -> Self {
        DemuxConfig {
            batch_max: timing.demux_batch_max.max(1),
            idle_timeout_ms: timing.demux_idle_timeout_ms,
            flush_timeout_ms: timing.demux_flush_timeout_ms,
        }
    }
}

/// A batch taken from a queue and not yet known to be enqueued.
#[derive(Clone, Debug)]
struct Batch {
    events: Vec<p::EventWrapper>,
    /// The token of the delivery in progress; `None` while waiting for the retry timer.
    token: Option<u64>,
    /// Failed deliveries of this batch so far.
    failures: u32,
}

/// One actor's queue and its dispatcher.
#[derive(Clone, Debug)]
struct ActorQueue {
    /// Distinguishes this queue from an earlier one of the same actor (for stale timers).
    incarnation: u64,
    queued: VecDeque<p::EventWrapper>,
    batch: Option<Batch>,
    last_activity_ms: u64,
}

impl ActorQueue {
    fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.batch.is_none()
    }

    /// Events never handed to the signal bus.
    fn unsent(&self) -> usize {
        let waiting =
            self.batch.as_ref().filter(|b| b.token.is_none()).map_or(0, |b| b.events.len());
        self.queued.len() + waiting
    }
}

/// The event demuxer of one connection. See the module comment.
#[derive(Clone, Debug)]
pub struct EventDemuxer {
    conn: ConnId,
    runner: RunnerId,
    epoch: u64,
    config: DemuxConfig,
    canaries: Canaries,
    queues: BTreeMap<ActorId, ActorQueue>,
    /// Deliveries in progress: token -> (actor, queue incarnation).
    tokens: BTreeMap<u64, (ActorId, u64)>,
    next_token: u64,
    next_incarnation: u64,
    /// Set at connection end.
    closing: bool,
    /// Set when the drain is over (everything sent, cancelled or discarded).
    drained: bool,
}

impl EventDemuxer {
    /// The demuxer of connection `conn` of `runner`, registered with `epoch`.
    pub fn new(
        conn: ConnId,
        runner: RunnerId,
        epoch: u64,
        config: DemuxConfig,
        canaries: Canaries,
    ) -> Self {
        EventDemuxer {
            conn,
            runner,
            epoch,
            config,
            canaries,
            queues: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token: 0,
            next_incarnation: 0,
            closing: false,
            drained: false,
        }
    }

    /// Whether the connection has ended and nothing is left to send.
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    /// Whether ingest has stopped (connection end).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The actors that have a queue, in order.
    pub fn actors(&self) -> Vec<ActorId> {
        self.queues.keys().cloned().collect()
    }

    /// `(queued, in flight)` event counts of `actor`'s queue, if it has one.
    pub fn queue_state(&self, actor: &str) -> Option<(usize, usize)> {
        self.queues
            .get(actor)
            .map(|q| (q.queued.len(), q.batch.as_ref().map_or(0, |b| b.events.len())))
    }

    /// Take the events of one `ToRivetEvents` frame (§4.3 `ingest`). Ignored after connection end.
    pub fn ingest(
        &mut self,
        now_ms: u64,
        facts: &mut dyn FactSink,
        events: Vec<p::EventWrapper>,
    ) -> Vec<DemuxOutput> {
        let mut out = Vec::new();
        if self.closing {
            return out;
        }
        // Per actor, in order of first appearance in the frame: how many events were enqueued.
        let mut touched: Vec<(ActorId, usize)> = Vec::new();
        for event in events {
            let actor: ActorId = event.checkpoint.actor_id.to_string();
            let created = !self.queues.contains_key(&actor);
            if created {
                let incarnation = self.next_incarnation;
                self.next_incarnation += 1;
                self.queues.insert(
                    actor.clone(),
                    ActorQueue {
                        incarnation,
                        queued: VecDeque::new(),
                        batch: None,
                        last_activity_ms: now_ms,
                    },
                );
                out.push(DemuxOutput::Timer {
                    at_ms: now_ms + self.config.idle_timeout_ms,
                    timer: DemuxTimer::Collect { actor: actor.clone(), queue: incarnation },
                });
            }
            let index = match touched.iter().position(|(a, _)| *a == actor) {
                Some(i) => i,
                None => {
                    touched.push((actor.clone(), 0));
                    touched.len() - 1
                }
            };
            if created && self.canaries.on(Canary::DemuxFirstEventDropped) {
                // Canary: the event that created the queue is not enqueued.
                continue;
            }
            if let Some(queue) = self.queues.get_mut(&actor) {
                queue.queued.push_back(event);
                touched[index].1 += 1;
            }
        }
        for (actor, count) in touched {
            if count > 0 {
                facts.record(Fact::DemuxEnqueue {
                    conn: self.conn,
                    actor: actor.clone(),
                    events: count,
                });
            }
            if let Some(queue) = self.queues.get_mut(&actor) {
                if !self.canaries.on(Canary::DemuxGcAbortsBusyQueue) {
                    queue.last_activity_ms = now_ms;
                }
            }
            self.dispatch(&actor, &mut out);
        }
        out
    }

    /// Send the next batch of `actor`'s queue if nothing is in flight.
    fn dispatch(&mut self, actor: &str, out: &mut Vec<DemuxOutput>) {
        let Some(queue) = self.queues.get_mut(actor) else { return };
        if queue.batch.is_some() || queue.queued.is_empty() {
            return;
        }
        let n = queue.queued.len().min(self.config.batch_max);
        let events: Vec<p::EventWrapper> = queue.queued.drain(..n).collect();
        queue.batch = Some(Batch { events, token: None, failures: 0 });
        let incarnation = queue.incarnation;
        self.send_batch(actor, incarnation, out);
    }

    /// Hand the current batch of `actor`'s queue to the signal bus under a fresh token.
    fn send_batch(&mut self, actor: &str, incarnation: u64, out: &mut Vec<DemuxOutput>) {
        let token = self.next_token;
        let Some(batch) = self.queues.get_mut(actor).and_then(|q| q.batch.as_mut()) else {
            return;
        };
        self.next_token += 1;
        batch.token = Some(token);
        let signal = Signal::Events {
            runner: self.runner.clone(),
            epoch: self.epoch,
            events: batch.events.clone(),
        };
        self.tokens.insert(token, (actor.to_string(), incarnation));
        out.push(DemuxOutput::Signal { actor: actor.to_string(), signal, token });
    }

    /// The result of the delivery of batch `token`.
    pub fn on_signal_result(
        &mut self,
        now_ms: u64,
        facts: &mut dyn FactSink,
        token: u64,
        result: Result<EnqueueResult, DeliverError>,
    ) -> Vec<DemuxOutput> {
        let mut out = Vec::new();
        let Some((actor, incarnation)) = self.tokens.remove(&token) else { return out };
        let Some(queue) = self.queues.get_mut(&actor).filter(|q| q.incarnation == incarnation)
        else {
            return out;
        };
        let Some(batch) = queue.batch.as_mut().filter(|b| b.token == Some(token)) else {
            return out;
        };
        match result {
            Ok(outcome) => {
                if outcome == EnqueueResult::WorkflowGone {
                    facts.record(Fact::Probe { name: "demux-workflow-gone-self-ack".into() });
                    out.push(DemuxOutput::AckEvents(highest_per_generation(&batch.events)));
                }
                queue.batch = None;
                if !self.canaries.on(Canary::DemuxGcAbortsBusyQueue) {
                    queue.last_activity_ms = now_ms;
                }
                self.dispatch(&actor, &mut out);
                self.remove_if_drained(&actor, facts);
            }
            Err(_) => {
                facts.record(Fact::Probe { name: "demux-batch-retry".into() });
                batch.failures += 1;
                batch.token = None;
                let exponent = batch.failures.saturating_sub(1).min(16);
                let delay = (RETRY_BACKOFF_BASE_MS << exponent).min(RETRY_BACKOFF_MAX_MS);
                out.push(DemuxOutput::Timer {
                    at_ms: now_ms + delay,
                    timer: DemuxTimer::Retry { actor, queue: incarnation },
                });
            }
        }
        out
    }

    /// A timer the demuxer armed has fired.
    pub fn on_timer(
        &mut self,
        now_ms: u64,
        facts: &mut dyn FactSink,
        timer: DemuxTimer,
    ) -> Vec<DemuxOutput> {
        let mut out = Vec::new();
        match timer {
            DemuxTimer::Retry { actor, queue } => {
                if self.drained {
                    return out;
                }
                let waiting = self
                    .queues
                    .get(&actor)
                    .filter(|q| q.incarnation == queue)
                    .and_then(|q| q.batch.as_ref())
                    .is_some_and(|b| b.token.is_none());
                if waiting {
                    self.send_batch(&actor, queue, &mut out);
                }
            }
            DemuxTimer::Collect { actor, queue } => {
                if self.closing {
                    return out;
                }
                let Some(q) = self.queues.get(&actor).filter(|q| q.incarnation == queue) else {
                    return out;
                };
                let due = now_ms >= q.last_activity_ms + self.config.idle_timeout_ms;
                let gc_busy = self.canaries.on(Canary::DemuxGcAbortsBusyQueue);
                if due && (q.is_idle() || gc_busy) {
                    // With the canary a busy queue goes too, with everything it holds.
                    self.remove(&actor, facts);
                } else {
                    let at = if q.is_idle() {
                        q.last_activity_ms + self.config.idle_timeout_ms
                    } else {
                        now_ms + self.config.idle_timeout_ms
                    };
                    out.push(DemuxOutput::Timer {
                        at_ms: at.max(now_ms + 1),
                        timer: DemuxTimer::Collect { actor, queue },
                    });
                }
            }
            DemuxTimer::FlushDeadline => {
                if !self.closing || self.drained {
                    return out;
                }
                let actors: Vec<ActorId> = self.queues.keys().cloned().collect();
                for actor in actors {
                    let unsent = self.queues.get(&actor).map_or(0, ActorQueue::unsent);
                    if unsent > 0 {
                        facts.record(Fact::DemuxDiscard {
                            conn: self.conn,
                            actor: actor.clone(),
                            events: unsent,
                        });
                    }
                    self.remove(&actor, facts);
                }
                self.drained = true;
            }
        }
        out
    }

    /// Connection end: stop ingesting and drain every queue within `demux_flush_timeout_ms`.
    pub fn close(&mut self, now_ms: u64, facts: &mut dyn FactSink) -> Vec<DemuxOutput> {
        let mut out = Vec::new();
        if self.closing {
            return out;
        }
        self.closing = true;
        let actors: Vec<ActorId> = self.queues.keys().cloned().collect();
        if self.canaries.on(Canary::DemuxAbortDropsInFlight) {
            // Canary: cancel every queue instead of draining it.
            for actor in actors {
                self.remove(&actor, facts);
            }
        } else {
            for actor in actors {
                self.remove_if_drained(&actor, facts);
            }
        }
        if self.queues.is_empty() {
            self.drained = true;
        } else {
            out.push(DemuxOutput::Timer {
                at_ms: now_ms + self.config.flush_timeout_ms,
                timer: DemuxTimer::FlushDeadline,
            });
        }
        out
    }

    /// During the drain, remove `actor`'s queue once it is empty with nothing in flight.
    fn remove_if_drained(&mut self, actor: &str, facts: &mut dyn FactSink) {
        if !self.closing || !self.queues.get(actor).is_some_and(ActorQueue::is_idle) {
            return;
        }
        self.remove(actor, facts);
        if self.queues.is_empty() {
            self.drained = true;
        }
    }

    /// Remove `actor`'s queue with whatever it holds; results of its batch are then ignored.
    fn remove(&mut self, actor: &str, facts: &mut dyn FactSink) {
        if let Some(queue) = self.queues.remove(actor) {
            if let Some(token) = queue.batch.and_then(|b| b.token) {
                self.tokens.remove(&token);
            }
            facts.record(Fact::DemuxRemove { conn: self.conn, actor: actor.to_string() });
        }
    }
}

/// The highest index per `(A, g)` among `events`, in order of generation (one actor per batch,
/// but every actor found is covered).
pub fn highest_per_generation(events: &[p::EventWrapper]) -> Vec<p::ActorCheckpoint> {
    let mut highest: BTreeMap<(String, u32), i64> = BTreeMap::new();
    for e in events {
        let key = (e.checkpoint.actor_id.to_string(), e.checkpoint.generation);
        let entry = highest.entry(key).or_insert(e.checkpoint.index);
        *entry = (*entry).max(e.checkpoint.index);
    }
    highest
        .into_iter()
        .map(|((actor, generation), index)| p::ActorCheckpoint {
            actor_id: actor.into(),
            generation,
            index,
        })
        .collect()
}
