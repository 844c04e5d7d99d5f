//! Properties of the runner client over generated scripts of engine frames (duplicated,
//! reordered and stale commands, event acks, KV answers), connection drops, application actions
//! and time, checked on the facts it records (`spec/protocol.md` §8.2):
//! - S7: each `(A, g, i)` is executed at most once, in gap-free increasing order per `(A, g)`; an
//!   instance `(A, g)` starts at most once and never after it terminated;
//! - S9: every acknowledged `(A, g, k)` was processed (executed, duplicate, moot or stale) before
//!   the ack, for every index up to `k`;
//! - events: per `(A, g)` the emitted indices are `0, 1, 2, …`, `Stopped` is the last one, and
//!   the runner forgets only what an ack covered, of exactly that `(A, g)`;
//! - determinism: the same script gives the same facts and outputs.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::vec;
use proptest::prelude::*;

use crate::fact::{CommandDisposition, Fact};
use crate::preload::Snapshot;
use crate::protocol::{ActorState, Event};
use crate::runner::{AppAction, AppKey, RunnerConfig, RunnerOutput};

use super::harness::{ack_events, checkpoint, commands, start, stop, Harness};
use super::support::LiveKv;

const ACTORS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Step {
    /// One command frame: `(actor, generation, is_stop)`.
    Commands(Vec<(usize, u32, bool)>),
    /// The engine acknowledges events of `(actor, generation)` up to `k`.
    AckEvents(usize, u32, i64),
    /// Answer every KV request in flight, and those the answers cause.
    ServeKv,
    /// The engine drops the connection; the runner reconnects and gets Init.
    Reconnect,
    /// A ping.
    Ping,
    /// An application action.
    App(usize, u8),
    /// Time passes.
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => vec((0usize..3, 0u32..3, any::<bool>()), 1..5).prop_map(Step::Commands),
        3 => (0usize..3, 0u32..3, 0i64..5).prop_map(|(a, g, k)| Step::AckEvents(a, g, k)),
        4 => Just(Step::ServeKv),
        1 => Just(Step::Reconnect),
        2 => Just(Step::Ping),
        3 => (0usize..3, 0u8..6).prop_map(|(a, x)| Step::App(a, x)),
        1 => (0u64..8_000).prop_map(Step::Advance),
    ]
}

fn action(x: u8) -> AppAction {
    match x {
        0 => AppAction::Sleep,
        1 => AppAction::Stop,
        2 => AppAction::Crash,
        3 => AppAction::SetAlarm(Some(5)),
        4 => AppAction::Write { key: AppKey::Page(2), value_len: 3 },
        _ => AppAction::Delete(AppKey::Connection(1)),
    }
}

/// Run `script`; returns the facts and every output.
fn run(script: &[Step]) -> (Vec<Fact>, Vec<RunnerOutput>) {
    let (mut h, mut outputs) = Harness::new(RunnerConfig::new("ns", "pool"));
    let mut keyspaces: BTreeMap<String, LiveKv> = BTreeMap::new();
    let mut in_flight: Vec<crate::protocol::ToRivetKvRequest> = Vec::new();
    let record = |h: &Harness, out: &[RunnerOutput], in_flight: &mut Vec<_>| {
        in_flight.extend(h.kv_requests(out));
    };
    // Generations whose tombstone was dropped: the engine never sends their commands again
    // (S10), so the script does not either.
    let mut ended: BTreeSet<(String, u32)> = BTreeSet::new();
    let o = h.connect_ready();
    outputs.extend(o);
    for step in script {
        for fact in &h.facts {
            if let Fact::TombstoneDrop { actor, generation, .. } = fact {
                ended.insert((actor.clone(), *generation));
            }
        }
        let o = match step {
            Step::Commands(list) => {
                let frame: Vec<_> = list
                    .iter()
                    .filter(|(a, g, _)| !ended.contains(&(ACTORS[*a].to_owned(), *g)))
                    .map(|(a, g, is_stop)| {
                        if *is_stop {
                            stop(ACTORS[*a], *g, 1)
                        } else {
                            start(ACTORS[*a], *g, None)
                        }
                    })
                    .collect();
                if frame.is_empty() {
                    continue;
                }
                h.feed(&commands(frame))
            }
            Step::AckEvents(a, g, k) => {
                // The engine acknowledges only events that were emitted (S8, engine side).
                let emitted = h
                    .facts
                    .iter()
                    .filter(|f| {
                        matches!(
                            f,
                            Fact::EventEmit { actor, generation, .. }
                                if actor == ACTORS[*a] && generation == g
                        )
                    })
                    .count() as i64;
                if emitted == 0 {
                    continue;
                }
                h.feed(&ack_events(vec![checkpoint(ACTORS[*a], *g, (*k).min(emitted - 1))]))
            }
            Step::ServeKv => {
                // Answer until nothing is in flight (a startup takes several rounds).
                let mut o = Vec::new();
                for _ in 0..50 {
                    if in_flight.is_empty() {
                        break;
                    }
                    for request in std::mem::take(&mut in_flight) {
                        let live = keyspaces
                            .entry(request.actor_id.to_string())
                            .or_insert_with(|| LiveKv::new(Snapshot::new()));
                        let answer = live.answer(&request.data);
                        let more = h.respond(request.request_id, answer);
                        record(&h, &more, &mut in_flight);
                        o.extend(more);
                    }
                }
                outputs.extend(o);
                continue;
            }
            Step::Reconnect => {
                in_flight.clear();
                let mut o = h.engine_close(Some("ws.going_away"));
                o.extend(h.connect_ready());
                o
            }
            Step::Ping => h.ping(1),
            Step::App(a, x) => {
                let actor = ACTORS[*a].to_owned();
                h.with(|c, env| c.app(env, &actor, action(*x)))
            }
            Step::Advance(ms) => {
                let o = h.advance(*ms);
                if h.conn.is_none() && !h.client.has_exited() {
                    // The runner closed (ping or KV timeout): let it reconnect.
                    in_flight.clear();
                    let mut o = o;
                    o.extend(h.advance(40_000));
                    o.extend(h.connect_ready());
                    o
                } else {
                    o
                }
            }
        };
        record(&h, &o, &mut in_flight);
        outputs.extend(o);
    }
    (h.facts, outputs)
}

fn check(facts: &[Fact]) -> Result<(), TestCaseError> {
    // Processed indices per (A, g) so far, and what was executed.
    let mut processed: BTreeMap<(String, u32), BTreeSet<i64>> = BTreeMap::new();
    let mut executed: BTreeMap<(String, u32), Vec<i64>> = BTreeMap::new();
    let mut started: BTreeSet<(String, u32)> = BTreeSet::new();
    let mut terminated: BTreeSet<(String, u32)> = BTreeSet::new();
    let mut emitted: BTreeMap<(String, u32), Vec<(i64, bool)>> = BTreeMap::new();
    let mut acked_up_to: BTreeMap<(String, u32), i64> = BTreeMap::new();
    for fact in facts {
        match fact {
            Fact::RunnerCommand { actor, generation, index, disposition, .. } => {
                let key = (actor.clone(), *generation);
                match disposition {
                    CommandDisposition::Exec => {
                        let done = executed.entry(key.clone()).or_default();
                        prop_assert!(!done.contains(index), "S7: {key:?} {index} executed twice");
                        prop_assert_eq!(
                            done.len() as i64,
                            *index,
                            "S7: gap before {:?} {}",
                            key,
                            index
                        );
                        done.push(*index);
                        processed.entry(key).or_default().insert(*index);
                    }
                    CommandDisposition::Dup
                    | CommandDisposition::Moot
                    | CommandDisposition::Stale => {
                        processed.entry(key).or_default().insert(*index);
                    }
                    CommandDisposition::Hold => {}
                }
            }
            Fact::RunnerAckCommands { actor, generation, index, .. } => {
                let key = (actor.clone(), *generation);
                let done = processed.get(&key).cloned().unwrap_or_default();
                for i in 0..=*index {
                    prop_assert!(
                        done.contains(&i),
                        "S9: ack {:?} {} before {} was processed",
                        key,
                        index,
                        i
                    );
                }
            }
            Fact::InstanceStart { actor, generation, .. } => {
                let key = (actor.clone(), *generation);
                prop_assert!(started.insert(key.clone()), "S7: {key:?} started twice");
                prop_assert!(!terminated.contains(&key), "S7: {key:?} started after terminating");
            }
            Fact::InstanceTerminate { actor, generation, .. } => {
                terminated.insert((actor.clone(), *generation));
            }
            Fact::EventEmit { actor, generation, index, event, .. } => {
                let key = (actor.clone(), *generation);
                let list = emitted.entry(key.clone()).or_default();
                prop_assert_eq!(list.len() as i64, *index, "event numbering of {:?}", key);
                prop_assert!(
                    !list.last().is_some_and(|(_, stopped)| *stopped),
                    "event after Stopped"
                );
                let stopped = matches!(
                    event,
                    Event::EventActorStateUpdate(u) if matches!(u.state, ActorState::ActorStateStopped(_))
                );
                list.push((*index, stopped));
            }
            Fact::EventForget { actor, generation, index, .. } => {
                let key = (actor.clone(), *generation);
                // Something emitted and not yet forgotten is covered by this ack.
                let before = acked_up_to.get(&key).copied().unwrap_or(-1);
                let newly = emitted
                    .get(&key)
                    .map(|l| l.iter().filter(|(i, _)| *i > before && *i <= *index).count())
                    .unwrap_or(0);
                prop_assert!(newly > 0, "forget of {:?} up to {} covers nothing new", key, index);
                acked_up_to.insert(key, *index);
            }
            Fact::TombstoneDrop { actor, generation, .. } => {
                let key = (actor.clone(), *generation);
                prop_assert!(terminated.contains(&key), "tombstone of a live instance dropped");
                let stopped_index =
                    emitted.get(&key).and_then(|l| l.iter().find(|(_, s)| *s)).map(|(i, _)| *i);
                prop_assert!(
                    stopped_index.is_some_and(|s| acked_up_to.get(&key).is_some_and(|k| *k >= s)),
                    "tombstone of {key:?} dropped before its Stopped was acknowledged"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn command_processing_acks_and_events_keep_their_invariants(
        script in vec(step(), 1..40)
    ) {
        let (facts, outputs) = run(&script);
        check(&facts)?;
        // Determinism: the same script, the same history.
        let (again, outputs_again) = run(&script);
        prop_assert_eq!(&facts, &again);
        prop_assert_eq!(outputs, outputs_again);
    }
}

/// One frame from the engine: a value of the schema (valid or not), or raw bytes.
#[derive(Clone, Debug)]
enum EngineFrame {
    Message(crate::protocol::ToEnvoy),
    Raw(Vec<u8>),
}

fn engine_frame() -> impl Strategy<Value = EngineFrame> {
    use crate::wire::strategies::{to_envoy, valid_to_envoy};
    prop_oneof![
        3 => valid_to_envoy().prop_map(EngineFrame::Message),
        3 => to_envoy().prop_map(EngineFrame::Message),
        1 => vec(any::<u8>(), 0..48).prop_map(EngineFrame::Raw),
    ]
}

proptest! {
    /// Whatever the engine sends, the runner never panics; a frame that does not decode or breaks
    /// a field rule closes the connection with `envoy.invalid_packet#…`, applies nothing (no fact
    /// but the violation and the close) and schedules a reconnect.
    #[test]
    fn arbitrary_engine_frames_never_panic_and_invalid_ones_apply_nothing(
        frames in vec(engine_frame(), 1..24)
    ) {
        let mut h = Harness::default_runner();
        h.connect_ready();
        h.start_running("a", 0);
        for frame in frames {
            if h.client.has_exited() {
                break;
            }
            if h.conn.is_none() {
                h.advance(40_000);
                if h.client.has_exited() {
                    break;
                }
                h.connect_ready();
            }
            let bytes = match &frame {
                EngineFrame::Message(m) => match h.codec.encode_to_envoy(m) {
                    Ok(bytes) => bytes,
                    Err(_) => continue,
                },
                EngineFrame::Raw(bytes) => bytes.clone(),
            };
            let invalid = match h.codec.decode_to_envoy(&bytes) {
                Err(_) => true,
                Ok(m) => crate::wire::validate_to_envoy(&m).is_err(),
            };
            let mark = h.facts.len();
            let outputs = h.feed_raw(crate::wire::DataFrame::Binary(&bytes));
            if invalid {
                // Closed with the reason, a reconnect scheduled, nothing sent. (Requests in flight
                // fail with the connection; a startup read is queued again, with its timer.)
                let closes = Harness::closes(&outputs);
                prop_assert!(
                    matches!(closes.as_slice(), [crate::wire::CloseReason::EnvoyInvalidPacket { .. }]),
                    "{:?}",
                    outputs
                );
                prop_assert_eq!(Harness::reconnect_timers(&outputs).len(), 1);
                prop_assert!(h.frames(&outputs).is_empty());
                // Nothing of the frame took effect.
                for fact in h.facts_since(mark) {
                    prop_assert!(!matches!(
                        fact,
                        Fact::RunnerCommand { .. }
                            | Fact::RunnerAckCommands { .. }
                            | Fact::EventForget { .. }
                            | Fact::TombstoneDrop { .. }
                            | Fact::StartupObserved { .. }
                            | Fact::KvRequestSent { .. }
                            | Fact::RunnerInit { .. }
                    ), "{:?}", fact);
                }
            }
        }
    }
}
