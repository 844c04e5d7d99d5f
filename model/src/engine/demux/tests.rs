//! Tests of the event demuxer, driven with scripted ingests, results and timers.

use proptest::prelude::*;

use super::*;
use crate::engine::signal::SignalError;
use crate::store::StoreError;

const IDLE: u64 = 30_000;
const FLUSH: u64 = 10_000;

fn config(batch_max: usize) -> DemuxConfig {
    DemuxConfig { batch_max, idle_timeout_ms: IDLE, flush_timeout_ms: FLUSH }
}

fn runner() -> RunnerId {
    RunnerId::new("ns", "key-1")
}

fn demux(batch_max: usize, canaries: Canaries) -> EventDemuxer {
    EventDemuxer::new(ConnId(9), runner(), 42, config(batch_max), canaries)
}

/// An event `(actor, generation, index)` (an alarm change carrying the index, so events differ).
fn ev(actor: &str, generation: u32, index: i64) -> p::EventWrapper {
    p::EventWrapper {
        checkpoint: p::ActorCheckpoint { actor_id: actor.to_string().into(), generation, index },
        inner: p::Event::EventActorSetAlarm(p::EventActorSetAlarm { alarm_ts: Some(index) }),
    }
}

fn evs(actor: &str, generation: u32, indices: std::ops::Range<i64>) -> Vec<p::EventWrapper> {
    indices.map(|i| ev(actor, generation, i)).collect()
}

/// The signals among `out`: `(actor, token, events)`.
fn signals(out: &[DemuxOutput]) -> Vec<(ActorId, u64, Vec<p::EventWrapper>)> {
    out.iter()
        .filter_map(|o| match o {
            DemuxOutput::Signal {
                actor,
                signal: Signal::Events { runner: r, epoch, events },
                token,
            } => {
                assert_eq!((r, *epoch), (&runner(), 42), "batches carry the connection's identity");
                Some((actor.clone(), *token, events.clone()))
            }
            _ => None,
        })
        .collect()
}

fn timers(out: &[DemuxOutput]) -> Vec<(u64, DemuxTimer)> {
    out.iter()
        .filter_map(|o| match o {
            DemuxOutput::Timer { at_ms, timer } => Some((*at_ms, timer.clone())),
            _ => None,
        })
        .collect()
}

fn store_error() -> DeliverError {
    DeliverError::Signal(SignalError::Store(StoreError::TooOld { age_ms: 1, limit_ms: 0 }))
}

fn facts_of(facts: &[Fact]) -> Vec<Fact> {
    facts.to_vec()
}

#[test]
fn batches_follow_queue_order_one_in_flight_per_actor() {
    let mut d = demux(4, Canaries::NONE);
    let mut facts = Vec::new();
    let mut frame = evs("a", 0, 0..3);
    frame.extend(evs("b", 1, 0..2));
    frame.extend(evs("a", 0, 3..6));
    let out = d.ingest(0, &mut facts, frame);
    let sent = signals(&out);
    assert_eq!(sent.len(), 2, "one batch per actor");
    assert_eq!(sent[0].0, "a");
    assert_eq!(sent[0].2, evs("a", 0, 0..4), "first batch_max events of a, in frame order");
    assert_eq!(sent[1].0, "b");
    assert_eq!(sent[1].2, evs("b", 1, 0..2));
    assert_eq!(
        facts_of(&facts),
        vec![
            Fact::DemuxEnqueue { conn: ConnId(9), actor: "a".into(), events: 6 },
            Fact::DemuxEnqueue { conn: ConnId(9), actor: "b".into(), events: 2 },
        ]
    );
    // More events while a batch is in flight: nothing is sent.
    let out = d.ingest(5, &mut facts, evs("a", 0, 6..9));
    assert!(signals(&out).is_empty());
    assert_eq!(d.queue_state("a"), Some((5, 4)));
    // The result lets the next batch go.
    let out = d.on_signal_result(6, &mut facts, sent[0].1, Ok(EnqueueResult::Enqueued));
    let next = signals(&out);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].2, evs("a", 0, 4..8));
    let out = d.on_signal_result(7, &mut facts, next[0].1, Ok(EnqueueResult::Enqueued));
    assert_eq!(signals(&out)[0].2, evs("a", 0, 8..9));
}

#[test]
fn failed_delivery_is_retried_with_the_same_batch_after_backoff() {
    let mut d = demux(8, Canaries::NONE);
    let mut facts = Vec::new();
    let first = signals(&d.ingest(100, &mut facts, evs("a", 0, 0..3)));
    let out = d.on_signal_result(110, &mut facts, first[0].1, Err(store_error()));
    assert!(signals(&out).is_empty());
    let t = timers(&out);
    assert_eq!(
        t,
        vec![(110 + RETRY_BACKOFF_BASE_MS, DemuxTimer::Retry { actor: "a".into(), queue: 0 })]
    );
    // More events meanwhile stay queued behind the failed batch.
    assert!(signals(&d.ingest(120, &mut facts, evs("a", 0, 3..5))).is_empty());
    let retry = signals(&d.on_timer(t[0].0, &mut facts, t[0].1.clone()));
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].2, evs("a", 0, 0..3), "the same batch, not a new one");
    assert_ne!(retry[0].1, first[0].1, "a fresh token");
    // A second failure doubles the delay; a late result of the old token changes nothing.
    assert!(d
        .on_signal_result(200, &mut facts, first[0].1, Ok(EnqueueResult::Enqueued))
        .is_empty());
    let out = d.on_signal_result(300, &mut facts, retry[0].1, Err(store_error()));
    assert_eq!(timers(&out)[0].0, 300 + 2 * RETRY_BACKOFF_BASE_MS);
    let retry2 = signals(&d.on_timer(400, &mut facts, timers(&out)[0].1.clone()));
    let out = d.on_signal_result(410, &mut facts, retry2[0].1, Ok(EnqueueResult::Enqueued));
    assert_eq!(signals(&out)[0].2, evs("a", 0, 3..5));
}

#[test]
fn workflow_gone_acks_the_batch_to_the_runner_with_the_highest_index_per_generation() {
    let mut d = demux(8, Canaries::NONE);
    let mut facts = Vec::new();
    let mut frame = evs("a", 1, 0..4);
    frame.extend(evs("a", 2, 0..2));
    let sent = signals(&d.ingest(0, &mut facts, frame));
    let out = d.on_signal_result(1, &mut facts, sent[0].1, Ok(EnqueueResult::WorkflowGone));
    let acks: Vec<Vec<p::ActorCheckpoint>> = out
        .iter()
        .filter_map(|o| match o {
            DemuxOutput::AckEvents(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let cp = |g, i| p::ActorCheckpoint { actor_id: "a".into(), generation: g, index: i };
    assert_eq!(acks, vec![vec![cp(1, 3), cp(2, 1)]]);
    // An enqueued batch is not acknowledged by the demuxer.
    let sent = signals(&d.ingest(2, &mut facts, evs("a", 2, 2..3)));
    let out = d.on_signal_result(3, &mut facts, sent[0].1, Ok(EnqueueResult::Enqueued));
    assert!(out.iter().all(|o| !matches!(o, DemuxOutput::AckEvents(_))));
}

#[test]
fn idle_removal_waits_for_an_empty_quiet_queue_and_never_drops_events() {
    let mut d = demux(2, Canaries::NONE);
    let mut facts = Vec::new();
    let out = d.ingest(0, &mut facts, evs("a", 0, 0..3));
    let collect = timers(&out);
    assert_eq!(collect, vec![(IDLE, DemuxTimer::Collect { actor: "a".into(), queue: 0 })]);
    let first = signals(&out);
    // The collection timer fires while a batch is in flight: the queue stays, re-armed.
    let out = d.on_timer(IDLE, &mut facts, collect[0].1.clone());
    assert_eq!(d.queue_state("a"), Some((1, 2)));
    assert_eq!(timers(&out), vec![(2 * IDLE, collect[0].1.clone())]);
    let next =
        signals(&d.on_signal_result(IDLE + 5, &mut facts, first[0].1, Ok(EnqueueResult::Enqueued)));
    assert_eq!(next[0].2, evs("a", 0, 2..3), "nothing was dropped");
    d.on_signal_result(IDLE + 10, &mut facts, next[0].1, Ok(EnqueueResult::Enqueued));
    // Empty now, but its last activity is recent: re-armed at activity + timeout.
    let out = d.on_timer(2 * IDLE, &mut facts, collect[0].1.clone());
    assert_eq!(timers(&out), vec![(2 * IDLE + 10, collect[0].1.clone())]);
    assert!(d.queue_state("a").is_some());
    let out = d.on_timer(2 * IDLE + 10, &mut facts, collect[0].1.clone());
    assert!(out.is_empty());
    assert_eq!(d.queue_state("a"), None);
    assert_eq!(facts.last(), Some(&Fact::DemuxRemove { conn: ConnId(9), actor: "a".into() }));
    // A new queue for the actor is a new incarnation; the old timer is stale.
    let out = d.ingest(2 * IDLE + 20, &mut facts, evs("a", 0, 3..4));
    assert_eq!(signals(&out)[0].2, evs("a", 0, 3..4), "the creating event is enqueued");
    assert!(d.on_timer(2 * IDLE + 30, &mut facts, collect[0].1.clone()).is_empty());
    assert!(d.queue_state("a").is_some());
}

#[test]
fn connection_end_drains_then_discards_what_is_left_at_the_flush_deadline() {
    let mut d = demux(2, Canaries::NONE);
    let mut facts = Vec::new();
    let a = signals(&d.ingest(0, &mut facts, evs("a", 0, 0..5)));
    let b = signals(&d.ingest(0, &mut facts, evs("b", 0, 0..1)));
    let out = d.close(100, &mut facts);
    assert_eq!(timers(&out), vec![(100 + FLUSH, DemuxTimer::FlushDeadline)]);
    assert!(!d.is_drained());
    // Ingest has stopped.
    assert!(d.ingest(101, &mut facts, evs("c", 0, 0..1)).is_empty());
    assert_eq!(d.actors(), vec!["a".to_string(), "b".to_string()]);
    // b drains and is removed; a keeps sending.
    d.on_signal_result(102, &mut facts, b[0].1, Ok(EnqueueResult::Enqueued));
    assert_eq!(d.actors(), vec!["a".to_string()]);
    let a2 = signals(&d.on_signal_result(103, &mut facts, a[0].1, Ok(EnqueueResult::Enqueued)));
    assert_eq!(a2[0].2, evs("a", 0, 2..4));
    let out = d.on_signal_result(104, &mut facts, a2[0].1, Err(store_error()));
    assert_eq!(timers(&out).len(), 1);
    facts.clear();
    // The deadline: 1 queued + 2 waiting for a retry are discarded.
    d.on_timer(100 + FLUSH, &mut facts, DemuxTimer::FlushDeadline);
    assert!(d.is_drained());
    assert_eq!(
        facts,
        vec![
            Fact::DemuxDiscard { conn: ConnId(9), actor: "a".into(), events: 3 },
            Fact::DemuxRemove { conn: ConnId(9), actor: "a".into() },
        ]
    );
    // Later timers and results change nothing.
    assert!(d.on_timer(200 + FLUSH, &mut facts, timers(&out)[0].1.clone()).is_empty());
}

#[test]
fn connection_end_with_everything_sent_drains_without_discarding() {
    let mut d = demux(8, Canaries::NONE);
    let mut facts = Vec::new();
    let a = signals(&d.ingest(0, &mut facts, evs("a", 0, 0..2)));
    d.close(10, &mut facts);
    d.on_signal_result(20, &mut facts, a[0].1, Ok(EnqueueResult::Enqueued));
    assert!(d.is_drained());
    assert!(facts.iter().all(|f| !matches!(f, Fact::DemuxDiscard { .. })));
    let mut idle = demux(8, Canaries::NONE);
    assert!(idle.close(0, &mut facts).is_empty());
    assert!(idle.is_drained());
}

#[test]
fn canary_first_event_dropped_loses_the_event_that_creates_a_queue() {
    for canary in [false, true] {
        let canaries =
            if canary { Canaries::only(Canary::DemuxFirstEventDropped) } else { Canaries::NONE };
        let mut d = demux(8, canaries);
        let mut facts = Vec::new();
        let sent = signals(&d.ingest(0, &mut facts, evs("a", 0, 0..3)));
        let expected = if canary { evs("a", 0, 1..3) } else { evs("a", 0, 0..3) };
        assert_eq!(sent[0].2, expected, "canary {canary}");
        // A queue that already exists keeps everything.
        d.on_signal_result(1, &mut facts, sent[0].1, Ok(EnqueueResult::Enqueued));
        let sent = signals(&d.ingest(2, &mut facts, evs("a", 0, 3..4)));
        assert_eq!(sent[0].2, evs("a", 0, 3..4));
        // After collection, the next creating event is lost again with the canary.
        d.on_signal_result(3, &mut facts, sent[0].1, Ok(EnqueueResult::Enqueued));
        d.on_timer(3 + IDLE, &mut facts, DemuxTimer::Collect { actor: "a".into(), queue: 0 });
        assert_eq!(d.queue_state("a"), None);
        let out = d.ingest(4 + IDLE, &mut facts, evs("a", 0, 4..5));
        assert_eq!(signals(&out).len(), usize::from(!canary), "canary {canary}");
    }
}

#[test]
fn canary_gc_aborts_busy_queue_collects_a_queue_that_still_holds_events() {
    for canary in [false, true] {
        let canaries =
            if canary { Canaries::only(Canary::DemuxGcAbortsBusyQueue) } else { Canaries::NONE };
        let mut d = demux(2, canaries);
        let mut facts = Vec::new();
        let first = signals(&d.ingest(0, &mut facts, evs("a", 0, 0..2)));
        // Busy all along: events keep arriving and a batch is in flight.
        d.ingest(IDLE - 1, &mut facts, evs("a", 0, 2..4));
        d.on_timer(IDLE, &mut facts, DemuxTimer::Collect { actor: "a".into(), queue: 0 });
        let out = d.on_signal_result(IDLE + 1, &mut facts, first[0].1, Ok(EnqueueResult::Enqueued));
        if canary {
            assert_eq!(d.queue_state("a"), None, "the busy queue was collected");
            assert!(out.is_empty(), "its in-flight result is ignored and events 2..4 are gone");
            assert!(facts.contains(&Fact::DemuxRemove { conn: ConnId(9), actor: "a".into() }));
        } else {
            assert_eq!(signals(&out)[0].2, evs("a", 0, 2..4));
        }
    }
}

#[test]
fn canary_abort_drops_in_flight_cancels_queues_at_connection_end() {
    for canary in [false, true] {
        let canaries =
            if canary { Canaries::only(Canary::DemuxAbortDropsInFlight) } else { Canaries::NONE };
        let mut d = demux(2, canaries);
        let mut facts = Vec::new();
        let first = signals(&d.ingest(0, &mut facts, evs("a", 0, 0..4)));
        d.close(1, &mut facts);
        let out = d.on_signal_result(2, &mut facts, first[0].1, Ok(EnqueueResult::Enqueued));
        if canary {
            assert!(d.is_drained(), "cancelled at once");
            assert!(out.is_empty(), "queued events 2..4 are lost");
            assert!(facts.iter().all(|f| !matches!(f, Fact::DemuxDiscard { .. })));
        } else {
            assert!(!d.is_drained());
            assert_eq!(signals(&out)[0].2, evs("a", 0, 2..4));
        }
    }
}

/// One step of a random demuxer run.
#[derive(Clone, Debug)]
enum Op {
    /// Ingest `count` new events of actor `actor` (0..3).
    Ingest { actor: u8, count: u8 },
    /// Resolve the `pick`-th outstanding delivery (modulo their number) with an outcome.
    Resolve { pick: u8, outcome: u8 },
    /// Advance time by `ms` and fire every due timer.
    Advance { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 1u8..6).prop_map(|(actor, count)| Op::Ingest { actor, count }),
        (any::<u8>(), 0u8..4).prop_map(|(pick, outcome)| Op::Resolve { pick, outcome }),
        (1u16..40_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// A driver that plays the signal bus and the timer wheel around a demuxer.
struct Driver {
    d: EventDemuxer,
    now: u64,
    facts: Vec<Fact>,
    /// Deliveries handed out and not resolved: (token, actor, events).
    outstanding: Vec<(u64, ActorId, Vec<p::EventWrapper>)>,
    timers: Vec<(u64, DemuxTimer)>,
    /// Per actor, the events of every batch whose result was `Enqueued`, in result order.
    enqueued: BTreeMap<ActorId, Vec<p::EventWrapper>>,
}

impl Driver {
    fn absorb(&mut self, out: Vec<DemuxOutput>) {
        for o in out {
            match o {
                DemuxOutput::Signal { actor, signal: Signal::Events { events, .. }, token } => {
                    assert!(
                        self.outstanding.iter().all(|(_, a, _)| *a != actor),
                        "two batches of {actor} in flight"
                    );
                    assert!(!events.is_empty() && events.len() <= 4);
                    self.outstanding.push((token, actor, events));
                }
                DemuxOutput::Signal { .. } => panic!("not an events signal"),
                DemuxOutput::Timer { at_ms, timer } => {
                    assert!(at_ms >= self.now);
                    self.timers.push((at_ms, timer));
                }
                DemuxOutput::AckEvents(_) => {}
            }
        }
    }

    fn resolve(&mut self, index: usize, result: Result<EnqueueResult, DeliverError>) {
        let (token, actor, events) = self.outstanding.remove(index);
        if result == Ok(EnqueueResult::Enqueued) {
            self.enqueued.entry(actor).or_default().extend(events);
        }
        let out = self.d.on_signal_result(self.now, &mut self.facts, token, result);
        self.absorb(out);
    }

    fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        loop {
            self.timers.sort_by_key(|(at, _)| *at);
            match self.timers.first() {
                Some((at, _)) if *at <= until => {
                    let (at, timer) = self.timers.remove(0);
                    self.now = self.now.max(at);
                    let out = self.d.on_timer(self.now, &mut self.facts, timer);
                    self.absorb(out);
                }
                _ => break,
            }
        }
        self.now = until;
    }
}

proptest! {
    /// Without canaries, whatever the interleaving of ingests, failures, duplicates of results
    /// and collections, every actor's enqueued batches are exactly its ingested events, in order,
    /// once each, and a queue is only removed when empty.
    #[test]
    fn batches_are_the_ingested_events_in_order(ops in proptest::collection::vec(op(), 1..60)) {
        let mut drv = Driver {
            d: demux(4, Canaries::NONE),
            now: 0,
            facts: Vec::new(),
            outstanding: Vec::new(),
            timers: Vec::new(),
            enqueued: BTreeMap::new(),
        };
        let mut ingested: BTreeMap<ActorId, Vec<p::EventWrapper>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Ingest { actor, count } => {
                    let actor = format!("actor-{actor}");
                    let have = ingested.entry(actor.clone()).or_default();
                    let start = have.len() as i64;
                    let new = evs(&actor, 0, start..start + i64::from(count));
                    have.extend(new.clone());
                    let out = drv.d.ingest(drv.now, &mut drv.facts, new);
                    drv.absorb(out);
                }
                Op::Resolve { pick, outcome } => {
                    if !drv.outstanding.is_empty() {
                        let i = usize::from(pick) % drv.outstanding.len();
                        let result = match outcome {
                            0 | 1 => Ok(EnqueueResult::Enqueued),
                            _ => Err(store_error()),
                        };
                        drv.resolve(i, result);
                    }
                }
                Op::Advance { ms } => drv.advance(u64::from(ms)),
            }
            for f in &drv.facts {
                if let Fact::DemuxRemove { actor, .. } = f {
                    let delivered = drv.enqueued.get(actor).map_or(0, Vec::len);
                    let total = ingested.get(actor).map_or(0, Vec::len);
                    prop_assert_eq!(delivered, total, "{} removed while holding events", actor);
                }
            }
            drv.facts.clear();
        }
        // Heal: every delivery succeeds until nothing is outstanding.
        for _ in 0..1_000 {
            if drv.outstanding.is_empty() {
                drv.advance(RETRY_BACKOFF_MAX_MS);
                if drv.outstanding.is_empty() {
                    break;
                }
            }
            drv.resolve(0, Ok(EnqueueResult::Enqueued));
        }
        prop_assert_eq!(&drv.enqueued, &ingested);
    }
}
