//! The runner client driven alone: engine frames encoded with `wire::Codec`, exact frames out and
//! facts. Handshake order, event re-send, command deduplication and holding, acks, forgetting,
//! tombstones, the fence, ping timeout and backoff, eviction, invalid frames, KV timeouts, startup
//! through the client, graceful stop, the stop threshold, crashes and the drain.

use crate::canary::Canaries;
use crate::constants::PRELOAD_MAX_TOTAL_BYTES;
use crate::fact::{CommandDisposition, Fact};
use crate::preload::{batch_preload, reference_manifest, Snapshot};
use crate::protocol::{ActorIntent, ActorState, Event, KvResponseData, StopCode, ToEnvoy, ToRivet};
use crate::runner::{AppAction, AppKey, RunnerConfig, RunnerOutput, RunnerTimer};
use crate::wire::{CloseReason, DataFrame};

use super::harness::{ack_events, checkpoint, commands, init_frame, start, stop, Harness};
use super::support::{record, LiveKv};

/// `(actor, generation, index, kind)` of every event in `frames`, in order.
fn events(frames: &[ToRivet]) -> Vec<(String, u32, i64, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ToRivet::ToRivetEvents(events) => Some(events.clone()),
            _ => None,
        })
        .flatten()
        .map(|e| {
            let kind = match &e.inner {
                Event::EventActorStateUpdate(u) => match &u.state {
                    ActorState::ActorStateRunning => "running".to_owned(),
                    ActorState::ActorStateStopped(s) => format!(
                        "stopped-{}{}",
                        if s.code == StopCode::Ok { "ok" } else { "error" },
                        s.message.as_ref().map(|m| format!(" {m}")).unwrap_or_default()
                    ),
                },
                Event::EventActorIntent(i) => match i.intent {
                    ActorIntent::ActorIntentSleep => "sleep".to_owned(),
                    ActorIntent::ActorIntentStop => "stop".to_owned(),
                },
                Event::EventActorSetAlarm(a) => format!("alarm {:?}", a.alarm_ts),
            };
            (e.checkpoint.actor_id.to_string(), e.checkpoint.generation, e.checkpoint.index, kind)
        })
        .collect()
}

fn ev(actor: &str, generation: u32, index: i64, kind: &str) -> (String, u32, i64, String) {
    (actor.to_owned(), generation, index, kind.to_owned())
}

/// The schema name of each frame.
fn kinds(frames: &[ToRivet]) -> Vec<&'static str> {
    frames.iter().map(crate::wire::to_rivet_kind).collect()
}

fn acks(frames: &[ToRivet]) -> Vec<Vec<(String, u32, i64)>> {
    frames
        .iter()
        .filter_map(|f| match f {
            ToRivet::ToRivetAckCommands(a) => Some(
                a.last_command_checkpoints
                    .iter()
                    .map(|c| (c.actor_id.to_string(), c.generation, c.index))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn ck(actor: &str, generation: u32, index: i64) -> (String, u32, i64) {
    (actor.to_owned(), generation, index)
}

fn dispositions(facts: &[Fact]) -> Vec<(String, u32, i64, CommandDisposition)> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::RunnerCommand { actor, generation, index, disposition, .. } => {
                Some((actor.clone(), *generation, *index, *disposition))
            }
            _ => None,
        })
        .collect()
}

fn count(facts: &[Fact], pred: impl Fn(&Fact) -> bool) -> usize {
    facts.iter().filter(|f| pred(f)).count()
}

fn terminations(facts: &[Fact]) -> Vec<(String, u32, StopCode, String)> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::InstanceTerminate { actor, generation, code, reason, .. } => {
                Some((actor.clone(), *generation, *code, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

// ---- handshake -----------------------------------------------------------------------------

#[test]
fn metadata_is_first_and_nothing_else_precedes_init() {
    let mut config = RunnerConfig::new("ns", "pool");
    config.manifests.insert("counter".to_owned(), reference_manifest());
    config.metadata = Some(serde_json::json!({ "region": "eu" }));
    let (mut h, outputs) = Harness::new(config);
    let key = h.client.id().envoy_key;
    assert_eq!(
        outputs,
        vec![RunnerOutput::Connect {
            path_and_query: format!(
                "/envoys/connect?protocol_version=8&namespace=ns&envoy_key={key}&version=1&pool_name=pool"
            ),
            subprotocols: vec!["rivet".to_owned()],
        }]
    );
    let outputs = h.open();
    let frames = h.frames(&outputs);
    assert_eq!(kinds(&frames), vec!["ToRivetMetadata"]);
    let ToRivet::ToRivetMetadata(metadata) = &frames[0] else { unreachable!() };
    assert_eq!(metadata.metadata.as_deref(), Some(r#"{"region":"eu"}"#));
    let names = metadata.prepopulate_actor_names.as_ref().expect("manifests declared");
    let declared: serde_json::Value =
        serde_json::from_str(&names.get("counter").expect("counter").metadata).unwrap();
    assert_eq!(declared["preload"]["keys"], serde_json::json!([[1], [3], [5, 1, 1], [6]]));
    assert_eq!(
        declared["preload"]["prefixes"][3],
        serde_json::json!({"prefix": [8, 1], "maxBytes": 786_432, "partial": true})
    );
    // Before Init, application actions do nothing; Init itself asks for nothing more.
    assert!(h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::Sleep)).is_empty());
    let outputs = h.init();
    assert!(h.frames(&outputs).is_empty());
}

#[test]
fn stopping_is_sent_at_shutdown_when_ready_and_after_every_later_init() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    h.feed(&ack_events(vec![checkpoint("a", 0, 0)]));
    h.engine_close(Some("ws.going_away"));
    let outputs = h.with(|c, env| c.shutdown(env));
    assert!(h.frames(&outputs).is_empty());
    h.open();
    let frames = {
        let o = h.init();
        h.frames(&o)
    };
    assert_eq!(kinds(&frames), vec!["ToRivetStopping"]);
    // A drain with nothing to wait for ends at once.
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.with(|c, env| c.shutdown(env));
    assert_eq!(kinds(&h.frames(&outputs)), vec!["ToRivetStopping"]);
    assert_eq!(Harness::closes(&outputs), vec![CloseReason::EnvoyShutdown]);
    assert!(matches!(outputs.last(), Some(RunnerOutput::Exit { .. })));
}

#[test]
fn a_frame_before_init_or_a_second_init_is_a_protocol_violation() {
    let mut h = Harness::default_runner();
    h.open();
    let outputs = h.ping(5);
    assert!(h.frames(&outputs).is_empty(), "no pong before Init");
    let closes = Harness::closes(&outputs);
    assert!(matches!(
        &closes[..],
        [CloseReason::EnvoyInvalidPacket { detail }] if detail == "ToEnvoyPing before ToEnvoyInit"
    ));
    assert_eq!(Harness::reconnect_timers(&outputs).len(), 1);

    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.init();
    assert!(matches!(&Harness::closes(&outputs)[..], [CloseReason::EnvoyInvalidPacket { .. }]));

    let mut h = Harness::default_runner();
    h.open();
    let outputs = h.feed(&init_frame(0, 30_000));
    assert!(matches!(&Harness::closes(&outputs)[..], [CloseReason::EnvoyInvalidPacket { .. }]));
}

// ---- events --------------------------------------------------------------------------------

#[test]
fn init_resends_unacknowledged_events_in_order_in_frames_of_the_maximum_then_queued_kv() {
    let mut config = RunnerConfig::new("ns", "pool");
    config.timing.events_frame_max = 2;
    let (mut h, _) = Harness::new(config);
    h.connect_ready();
    h.start_running("a", 0);
    h.start_running("b", 0);
    let outputs = h.engine_close(Some("ws.closed"));
    assert_eq!(Harness::reconnect_timers(&outputs).len(), 1);
    // Disconnected: events only accumulate, the KV put waits.
    let outputs = h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::SetAlarm(Some(9))));
    assert!(h.frames(&outputs).is_empty());
    h.with(|c, env| c.app(env, &"b".to_owned(), AppAction::Sleep));
    h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::Stop));
    let outputs = h.advance(1_300);
    assert_eq!(Harness::connects(&outputs), 1);
    let frames = {
        let o = h.open();
        h.frames(&o)
    };
    assert_eq!(kinds(&frames), vec!["ToRivetMetadata"]);
    let frames = {
        let o = h.init();
        h.frames(&o)
    };
    assert_eq!(
        kinds(&frames),
        vec!["ToRivetEvents", "ToRivetEvents", "ToRivetEvents", "ToRivetKvRequest"]
    );
    assert_eq!(
        events(&frames),
        vec![
            ev("a", 0, 0, "running"),
            ev("a", 0, 1, "alarm Some(9)"),
            ev("a", 0, 2, "stop"),
            ev("b", 0, 0, "running"),
            ev("b", 0, 1, "sleep"),
        ]
    );
    let ToRivet::ToRivetEvents(first) = &frames[0] else { unreachable!() };
    assert_eq!(first.len(), 2);
}

#[test]
fn events_go_out_at_once_while_ready_and_are_resent_periodically_until_acknowledged() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.start_running("a", 0);
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 0, "running")]);
    // Pings keep the connection; nothing is acknowledged.
    let mut resent = Vec::new();
    for _ in 0..4 {
        let outputs = h.advance(2_600);
        resent.extend(events(&h.frames(&outputs)));
        h.ping(1);
    }
    assert_eq!(resent, vec![ev("a", 0, 0, "running")], "one re-send after the interval");
    h.feed(&ack_events(vec![checkpoint("a", 0, 0)]));
    let mut later = Vec::new();
    for _ in 0..6 {
        let outputs = h.advance(2_600);
        later.extend(events(&h.frames(&outputs)));
        h.ping(1);
    }
    assert!(later.is_empty());
}

#[test]
fn an_ack_forgets_only_its_exact_generation_and_a_covering_ack_drops_the_tombstone() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::Sleep));
    h.feed(&commands(vec![stop("a", 0, 1)]));
    h.start_running("a", 1);
    // (a,0): running 0, sleep 1, stopped 2. (a,1): running 0.
    assert_eq!(h.client.unacked_events(), 4);
    let mark = h.facts.len();
    h.feed(&ack_events(vec![checkpoint("a", 0, 1)]));
    assert_eq!(h.client.unacked_events(), 2);
    assert_eq!(
        count(h.facts_since(mark), |f| matches!(
            f,
            Fact::EventForget { actor, generation: 0, index: 1, .. } if actor == "a"
        )),
        1
    );
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::TombstoneDrop { .. })), 0);
    // What is left is exactly (a,0,2) and (a,1,0): a reconnect re-sends just those.
    h.engine_close(Some("ws.going_away"));
    h.open();
    let frames = {
        let o = h.init();
        h.frames(&o)
    };
    assert_eq!(events(&frames), vec![ev("a", 0, 2, "stopped-ok"), ev("a", 1, 0, "running")]);
    // An ack of an unknown (A, g) and one below the Stopped index change nothing more.
    let mark = h.facts.len();
    h.feed(&ack_events(vec![checkpoint("zzz", 0, 5), checkpoint("a", 0, 1)]));
    assert!(h.facts_since(mark).is_empty());
    assert_eq!(h.client.records(), 2);
    h.feed(&ack_events(vec![checkpoint("a", 0, 2)]));
    assert_eq!(
        count(h.facts_since(mark), |f| matches!(
            f,
            Fact::TombstoneDrop { actor, generation: 0, .. } if actor == "a"
        )),
        1
    );
    assert_eq!(h.client.records(), 1);
    assert_eq!(h.client.unacked_events(), 1);
}

// ---- commands ------------------------------------------------------------------------------

#[test]
fn a_duplicate_start_is_acknowledged_and_never_starts_twice() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.feed(&commands(vec![start("a", 0, None), start("a", 0, None)]));
    let frames = h.frames(&outputs);
    assert_eq!(kinds(&frames), vec!["ToRivetKvRequest", "ToRivetAckCommands"]);
    assert_eq!(acks(&frames), vec![vec![ck("a", 0, 0)]]);
    let outputs = h.feed(&commands(vec![start("a", 0, None)]));
    assert_eq!(acks(&h.frames(&outputs)), vec![vec![ck("a", 0, 0)]]);
    assert_eq!(kinds(&h.frames(&outputs)), vec!["ToRivetAckCommands"]);
    assert_eq!(
        dispositions(&h.facts),
        vec![
            ("a".into(), 0, 0, CommandDisposition::Exec),
            ("a".into(), 0, 0, CommandDisposition::Dup),
            ("a".into(), 0, 0, CommandDisposition::Dup),
        ]
    );
    assert_eq!(count(&h.facts, |f| matches!(f, Fact::InstanceStart { .. })), 1);
    assert_eq!(count(&h.facts, |f| matches!(f, Fact::RunnerAckCommands { .. })), 2);
}

#[test]
fn commands_of_a_terminated_generation_are_moot_and_never_restart_it() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let outputs = h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::Crash));
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 1, "stopped-error crashed")]);
    let mark = h.facts.len();
    let outputs = h.feed(&commands(vec![start("a", 0, None), stop("a", 0, 1)]));
    let frames = h.frames(&outputs);
    assert_eq!(kinds(&frames), vec!["ToRivetAckCommands"]);
    assert_eq!(acks(&frames), vec![vec![ck("a", 0, 1)]]);
    assert_eq!(
        dispositions(h.facts_since(mark)),
        vec![
            ("a".into(), 0, 0, CommandDisposition::Dup),
            ("a".into(), 0, 1, CommandDisposition::Moot)
        ]
    );
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::InstanceStart { .. })), 0);
    assert!(h.client.instances().is_empty());
    // An absurd index is moot too, and the next one is a duplicate (no overflow).
    let outputs = h.feed(&commands(vec![stop("a", 0, i64::MAX), stop("a", 0, i64::MAX)]));
    assert_eq!(acks(&h.frames(&outputs)), vec![vec![ck("a", 0, i64::MAX)]]);
}

#[test]
fn a_held_command_is_released_in_order_and_dropped_at_connection_end() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.feed(&commands(vec![stop("a", 0, 1)]));
    assert!(h.frames(&outputs).is_empty(), "a held command is not acknowledged");
    assert_eq!(h.client.held_commands(), 1);
    let outputs = h.feed(&commands(vec![start("a", 0, None)]));
    let frames = h.frames(&outputs);
    assert_eq!(acks(&frames), vec![vec![ck("a", 0, 1)]]);
    assert_eq!(
        dispositions(&h.facts),
        vec![
            ("a".into(), 0, 1, CommandDisposition::Hold),
            ("a".into(), 0, 0, CommandDisposition::Exec),
            ("a".into(), 0, 1, CommandDisposition::Exec),
        ]
    );
    // The stop aborted the start; `Stopped` waits for the startup's outstanding read.
    assert!(events(&frames).is_empty());
    let read = h.kv_requests(&outputs)[0].clone();
    let answer = LiveKv::new(Snapshot::new()).answer(&read.data);
    let outputs = h.respond(read.request_id, answer);
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 0, "stopped-ok")]);

    // Held, then the connection ends: the held stop is gone.
    h.feed(&commands(vec![stop("b", 0, 1)]));
    h.engine_close(Some("ws.going_away"));
    assert_eq!(h.client.held_commands(), 0);
    h.connect_ready();
    let outputs = h.feed(&commands(vec![start("b", 0, None)]));
    assert_eq!(acks(&h.frames(&outputs)), vec![vec![ck("b", 0, 0)]]);
}

#[test]
fn one_ack_lists_every_generation_the_frame_touched_in_first_touch_order() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("c", 0);
    let outputs = h.feed(&commands(vec![
        start("b", 0, None),
        start("a", 2, None),
        start("b", 0, None),
        stop("c", 0, 1),
        stop("d", 0, 1),
    ]));
    let frames = h.frames(&outputs);
    assert_eq!(acks(&frames), vec![vec![ck("b", 0, 0), ck("a", 2, 0), ck("c", 0, 1)]]);
    assert_eq!(events(&frames), vec![ev("c", 0, 1, "stopped-ok")]);
}

#[test]
fn a_stale_start_is_acknowledged_and_a_superseding_start_stops_the_old_instance_first() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 1);
    let mark = h.facts.len();
    let outputs = h.feed(&commands(vec![start("a", 0, None)]));
    assert_eq!(acks(&h.frames(&outputs)), vec![vec![ck("a", 0, 0)]]);
    assert_eq!(
        dispositions(h.facts_since(mark)),
        vec![("a".into(), 0, 0, CommandDisposition::Stale)]
    );
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::InstanceStart { .. })), 0);

    let mark = h.facts.len();
    let outputs = h.feed(&commands(vec![start("a", 2, None)]));
    assert_eq!(
        events(&h.frames(&outputs)),
        vec![ev("a", 1, 1, "stopped-error superseded by a newer generation")]
    );
    let order: Vec<&str> = h
        .facts_since(mark)
        .iter()
        .filter_map(|f| match f {
            Fact::RunnerProtocolViolation { .. } => Some("violation"),
            Fact::InstanceTerminate { generation: 1, .. } => Some("terminate-1"),
            Fact::InstanceStart { generation: 2, .. } => Some("start-2"),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["terminate-1", "violation", "start-2"]);
}

// ---- fence, pings, backoff, eviction ---------------------------------------------------------

#[test]
fn the_fence_kills_every_instance_and_blocks_starts_until_the_next_ping() {
    let mut config = RunnerConfig::new("ns", "pool");
    // A ping timeout beyond the fence keeps the connection open while fenced.
    config.timing.runner_ping_timeout_ms = 60_000;
    let (mut h, _) = Harness::new(config);
    h.connect_ready();
    h.start_running("a", 0);
    h.feed(&ack_events(vec![checkpoint("a", 0, 0)]));
    let outputs = h.advance_to(14_999);
    assert!(h.frames(&outputs).is_empty());
    let mark = h.facts.len();
    let outputs = h.advance_to(15_000);
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 1, "stopped-error runner lost")]);
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::Fence { .. })), 1);
    // A start while fenced: record created, terminated at once, no instance ran.
    let mark = h.facts.len();
    let outputs = h.feed(&commands(vec![start("b", 0, None)]));
    let frames = h.frames(&outputs);
    assert_eq!(events(&frames), vec![ev("b", 0, 0, "stopped-error runner fenced")]);
    assert_eq!(acks(&frames), vec![vec![ck("b", 0, 0)]]);
    assert!(h.kv_requests(&outputs).is_empty());
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::InstanceStart { .. })), 0);
    assert_eq!(terminations(h.facts_since(mark)).len(), 1);
    // A ping lifts the fence.
    h.ping(3);
    let outputs = h.feed(&commands(vec![start("c", 0, None)]));
    assert_eq!(h.kv_requests(&outputs).len(), 1);
    assert!(h.client.instances().contains(&("c".to_owned(), 0)));
}

#[test]
fn with_the_spec_timing_the_ping_timeout_closes_first_and_the_fence_kills_offline() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let outputs = h.advance_to(10_000);
    assert_eq!(Harness::closes(&outputs), vec![CloseReason::EnvoyTimedOut]);
    let outputs = h.advance_to(14_000);
    assert_eq!(Harness::connects(&outputs), 1);
    h.fail_connect();
    let outputs = h.advance_to(15_000);
    assert!(h.frames(&outputs).is_empty());
    assert_eq!(
        terminations(&h.facts),
        vec![("a".into(), 0, StopCode::Error, "runner lost".into())]
    );
    h.advance_to(20_000);
    h.open();
    let frames = {
        let o = h.init();
        h.frames(&o)
    };
    assert_eq!(
        events(&frames),
        vec![ev("a", 0, 0, "running"), ev("a", 0, 1, "stopped-error runner lost")]
    );
}

#[test]
fn ping_timeout_reconnects_with_growing_jittered_backoff_reset_by_init() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    // Pings keep the connection alive.
    h.advance_to(9_000);
    h.ping(1);
    assert!(Harness::closes(&h.advance_to(18_999)).is_empty());
    let outputs = h.advance_to(19_000);
    assert_eq!(Harness::closes(&outputs), vec![CloseReason::EnvoyTimedOut]);
    let mut at = Harness::reconnect_timers(&outputs)[0];
    let mut now = 19_000;
    for attempt in 0..6u32 {
        let base = (1_000u64 << attempt).min(30_000);
        assert!(at >= now + base && at <= now + base + base / 4, "attempt {attempt}: {at}");
        let outputs = h.advance_to(at);
        assert_eq!(Harness::connects(&outputs), 1);
        now = at;
        at = Harness::reconnect_timers(&h.fail_connect())[0];
    }
    // A connection that gets Init resets the attempt count.
    h.advance_to(at);
    h.connect_ready();
    let outputs = h.advance(10_000);
    let next = Harness::reconnect_timers(&outputs)[0];
    assert!(next >= h.now + 1_000 && next <= h.now + 1_250, "{next} at {}", h.now);
    // A connection that never gets Init is closed by the ping timeout too.
    h.advance_to(next);
    h.open();
    assert_eq!(Harness::closes(&h.advance(10_000)), vec![CloseReason::EnvoyTimedOut]);
}

#[test]
fn eviction_on_the_current_connection_is_fatal_and_ignored_on_an_abandoned_one() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let old = h.conn.unwrap();
    // The runner abandons `old` (ping timeout) and opens another.
    h.advance_to(10_000);
    let reconnect = h.advance_to(12_000);
    assert_eq!(Harness::connects(&reconnect), 1);
    h.open();
    h.init();
    let outputs = h.with(|c, env| c.on_closed(env, old, Some("ws.eviction")));
    assert!(outputs.is_empty());
    let outputs = h.feed_on(old, &ToEnvoy::ToEnvoyPing(crate::protocol::ToEnvoyPing { ts: 1 }));
    assert!(outputs.is_empty(), "frames on an abandoned connection are ignored");
    assert_eq!(h.client.instances(), vec![("a".to_owned(), 0)]);

    let mark = h.facts.len();
    let outputs = h.engine_close(Some("ws.eviction"));
    assert!(matches!(outputs.last(), Some(RunnerOutput::Exit { .. })));
    assert_eq!(Harness::connects(&outputs), 0);
    assert_eq!(
        terminations(h.facts_since(mark)),
        vec![("a".into(), 0, StopCode::Error, "evicted by a newer connection".into())]
    );
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::FatalEviction { .. })), 1);
    assert_eq!(count(h.facts_since(mark), |f| matches!(f, Fact::RunnerExit { .. })), 1);
    assert!(h.client.has_exited());
    assert!(h.advance(100_000).is_empty());
}

#[test]
fn close_reasons_choose_the_reconnect() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.engine_close(Some("ws.going_away"));
    assert_eq!(Harness::connects(&outputs), 1, "at once");
    h.connect_ready();
    let outputs = h.engine_close(Some("ws.no_runner_config"));
    let at = Harness::reconnect_timers(&outputs)[0];
    assert!((h.now + 30_000..=h.now + 37_500).contains(&at));
    h.advance_to(at);
    h.connect_ready();
    let outputs = h.engine_close(Some("not a reason"));
    assert_eq!(Harness::reconnect_timers(&outputs).len(), 1);
}

// ---- invalid frames ----------------------------------------------------------------------------

#[test]
fn an_invalid_frame_closes_applies_nothing_and_reconnects_with_backoff() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let conn = h.conn.unwrap();
    let mark = h.facts.len();
    let outputs = h.feed_raw(DataFrame::Binary(&[0xFF, 0xFF, 0xFF]));
    let closes = Harness::closes(&outputs);
    assert!(
        matches!(&closes[..], [CloseReason::EnvoyInvalidPacket { detail }] if !detail.is_empty())
    );
    assert_eq!(Harness::reconnect_timers(&outputs).len(), 1);
    assert_eq!(
        count(h.facts_since(mark), |f| matches!(f, Fact::RunnerProtocolViolation { .. })),
        1
    );
    // Nothing more is read on that connection.
    assert!(h.feed_on(conn, &commands(vec![start("a", 0, None)])).is_empty());

    // A command frame breaking a field rule applies none of its commands.
    let mut h = Harness::default_runner();
    h.connect_ready();
    let mut bad = stop("b", 0, 1);
    bad.checkpoint.index = 0;
    let outputs = h.feed(&commands(vec![start("a", 0, None), bad]));
    assert!(h.frames(&outputs).is_empty());
    assert!(matches!(&Harness::closes(&outputs)[..], [CloseReason::EnvoyInvalidPacket { .. }]));
    assert!(h.client.instances().is_empty());
    assert_eq!(count(&h.facts, |f| matches!(f, Fact::RunnerCommand { .. })), 0);

    // A text frame is undecodable.
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.feed_raw(DataFrame::Text("hello"));
    assert!(matches!(&Harness::closes(&outputs)[..], [CloseReason::EnvoyInvalidPacket { .. }]));
}

// ---- KV requests ---------------------------------------------------------------------------------

#[test]
fn an_unanswered_request_closes_the_connection_and_fails() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.feed(&commands(vec![start("a", 0, None)]));
    assert_eq!(h.kv_requests(&outputs).len(), 1);
    // Pings keep the connection; the request stays unanswered.
    for _ in 0..5 {
        h.advance(5_000);
        h.ping(1);
    }
    let outputs = h.advance_to(30_000);
    assert_eq!(Harness::closes(&outputs), vec![CloseReason::EnvoyTimedOut]);
    assert_eq!(Harness::reconnect_timers(&outputs).len(), 1);
    let terminated = terminations(&h.facts);
    assert_eq!(terminated.len(), 1);
    assert_eq!(terminated[0].2, StopCode::Error);
    assert_eq!(h.client.pending_kv_requests(), 0);
}

#[test]
fn a_request_queued_while_disconnected_fails_after_the_timeout_without_a_close() {
    let mut config = RunnerConfig::new("ns", "pool");
    config.timing.kv_request_timeout_ms = 5_000;
    let (mut h, _) = Harness::new(config);
    h.connect_ready();
    h.start_running("a", 0);
    h.engine_close(Some("ws.going_away"));
    let outputs = h.with(|c, env| {
        c.app(env, &"a".to_owned(), AppAction::Write { key: AppKey::User(vec![1]), value_len: 3 })
    });
    assert!(h.frames(&outputs).is_empty());
    assert_eq!(h.client.pending_kv_requests(), 1);
    let outputs = h.advance(5_000);
    assert!(Harness::closes(&outputs).is_empty());
    assert_eq!(h.client.pending_kv_requests(), 0);
    assert_eq!(h.client.instances(), vec![("a".to_owned(), 0)], "the instance lives on");
    h.open();
    let frames = {
        let o = h.init();
        h.frames(&o)
    };
    assert!(!kinds(&frames).contains(&"ToRivetKvRequest"));
}

#[test]
fn a_request_in_flight_fails_as_unknown_when_its_connection_ends_and_a_read_is_resent() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let outputs = h.feed(&commands(vec![start("a", 0, None)]));
    let first = h.kv_requests(&outputs)[0].clone();
    h.engine_close(Some("ws.going_away"));
    h.open();
    let outputs = h.init();
    let again = h.kv_requests(&outputs);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, first.data);
    assert_ne!(again[0].request_id, first.request_id, "ids are unique; a request is sent once");
    assert_eq!(count(&h.facts, |f| matches!(f, Fact::KvRequestSent { .. })), 2);
}

// ---- startup through the client --------------------------------------------------------------

fn existing_actor() -> Snapshot {
    Snapshot::from_entries(
        [
            (vec![1u8], br#"{"initialized":true,"counter":2,"pages":1,"input":null}"#.to_vec()),
            (vec![2, 0, 1], b"c".to_vec()),
            (vec![3], b"tok".to_vec()),
            (vec![5, 1, 1], b"{}".to_vec()),
            (vec![6, 1, 0], b"h".to_vec()),
            (vec![8, 1, 0, 0, 0, 0], b"p".to_vec()),
        ]
        .into_iter()
        .map(|(k, v)| (k, record(&v))),
    )
}

fn observed(facts: &[Fact]) -> Vec<(bool, u32, crate::fact::StartupRecord)> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::StartupObserved { had_bundle, live_reads, record, .. } => {
                Some((*had_bundle, *live_reads, record.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_start_with_a_full_bundle_sends_only_its_put_and_observes_what_a_live_start_observes() {
    let s = existing_actor();
    let manifest = reference_manifest();
    let bundle = batch_preload(&s, &manifest, PRELOAD_MAX_TOTAL_BYTES, Canaries::NONE);
    let mut config = RunnerConfig::new("ns", "pool");
    config.manifests.insert("counter".to_owned(), manifest.clone());
    let (mut h, _) = Harness::new(config.clone());
    h.connect_ready();
    let outputs = h.feed(&commands(vec![start("a", 0, Some(bundle))]));
    let frames = h.frames(&outputs);
    assert_eq!(kinds(&frames), vec!["ToRivetKvRequest", "ToRivetAckCommands"]);
    let put = h.kv_requests(&outputs)[0].clone();
    assert!(matches!(put.data, crate::protocol::KvRequestData::KvPutRequest(_)));
    let outputs = h.respond(put.request_id, KvResponseData::KvPutResponse);
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 0, "running")]);
    let with_bundle = observed(&h.facts);
    assert_eq!(with_bundle.len(), 1);
    assert_eq!((with_bundle[0].0, with_bundle[0].1), (true, 0));

    let (mut h, _) = Harness::new(config);
    h.connect_ready();
    let mut live = LiveKv::new(s);
    h.start_and_serve(&mut live, "a", 0, None);
    let without = observed(&h.facts);
    assert_eq!((without[0].0, without[0].1), (false, 9));
    assert_eq!(without[0].2, with_bundle[0].2);
    assert_eq!(without[0].2.counter, 3);
}

#[test]
fn a_rejected_startup_put_fails_the_start() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    let mut live = LiveKv::new(Snapshot::new());
    live.reject_puts =
        Some("kv.storage_quota_exceeded: payload of 9 bytes, 0 bytes remaining".into());
    let outputs = h.start_and_serve(&mut live, "a", 0, None);
    assert_eq!(
        events(&h.frames(&outputs)),
        vec![ev(
            "a",
            0,
            0,
            "stopped-error startup: the put failed: kv.storage_quota_exceeded: payload of 9 bytes, 0 bytes remaining"
        )]
    );
    assert!(observed(&h.facts).is_empty());
}

// ---- stopping ------------------------------------------------------------------------------------

fn write(h: &mut Harness, actor: &str) -> u32 {
    let outputs = h.with(|c, env| {
        c.app(env, &actor.to_owned(), AppAction::Write { key: AppKey::User(vec![7]), value_len: 4 })
    });
    h.kv_requests(&outputs)[0].request_id
}

#[test]
fn a_graceful_stop_waits_for_outstanding_kv_responses() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let id = write(&mut h, "a");
    let outputs = h.feed(&commands(vec![stop("a", 0, 1)]));
    let frames = h.frames(&outputs);
    assert_eq!(kinds(&frames), vec!["ToRivetAckCommands"]);
    // Application actions no longer apply while stopping.
    assert!(h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::Sleep)).is_empty());
    let outputs = h.respond(id, KvResponseData::KvPutResponse);
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 1, "stopped-ok")]);
    assert_eq!(terminations(&h.facts), vec![("a".into(), 0, StopCode::Ok, String::new())]);
}

#[test]
fn a_stop_past_the_stop_threshold_ends_in_error() {
    let mut config = RunnerConfig::new("ns", "pool");
    config.timing.kv_request_timeout_ms = 60_000;
    let (mut h, _) = Harness::new(config);
    h.connect_ready();
    h.start_running("a", 0);
    let id = write(&mut h, "a");
    h.feed(&commands(vec![stop("a", 0, 1)]));
    for _ in 0..6 {
        let outputs = h.advance(5_000);
        assert!(events(&h.frames(&outputs)).iter().all(|e| !e.3.starts_with("stopped")));
        h.ping(1);
    }
    // The kill came at 30 s; `Stopped` still waits for the request in flight.
    let outputs = h.respond(id, KvResponseData::KvPutResponse);
    assert_eq!(
        events(&h.frames(&outputs)),
        vec![ev("a", 0, 1, "stopped-error killed after actorStopThreshold")]
    );
}

#[test]
fn a_crash_waits_for_outstanding_kv_responses() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let id = write(&mut h, "a");
    let outputs = h.with(|c, env| c.app(env, &"a".to_owned(), AppAction::Crash));
    assert!(h.frames(&outputs).is_empty());
    let outputs = h.respond(id, KvResponseData::KvPutResponse);
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 1, "stopped-error crashed")]);
}

// ---- drain -------------------------------------------------------------------------------------------

#[test]
fn a_drain_waits_for_stop_commands_and_acks_then_exits() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let outputs = h.with(|c, env| c.shutdown(env));
    assert_eq!(kinds(&h.frames(&outputs)), vec!["ToRivetStopping"]);
    assert_eq!(count(&h.facts, |f| matches!(f, Fact::RunnerStopping { .. })), 1);
    // Still answering pings, still running.
    assert_eq!(
        {
            let o = h.ping(4);
            kinds(&h.frames(&o))
        },
        vec!["ToRivetPong"]
    );
    let outputs = h.feed(&commands(vec![stop("a", 0, 1)]));
    assert_eq!(events(&h.frames(&outputs)), vec![ev("a", 0, 1, "stopped-ok")]);
    assert!(!outputs.iter().any(|o| matches!(o, RunnerOutput::Exit { .. })));
    let outputs = h.feed(&ack_events(vec![checkpoint("a", 0, 1)]));
    assert_eq!(Harness::closes(&outputs), vec![CloseReason::EnvoyShutdown]);
    assert!(matches!(outputs.last(), Some(RunnerOutput::Exit { reason }) if reason == "shutdown"));
    assert_eq!(count(&h.facts, |f| matches!(f, Fact::RunnerExit { .. })), 1);
}

#[test]
fn a_drain_kills_what_remains_at_the_shutdown_timeout() {
    let mut h = Harness::default_runner();
    h.connect_ready();
    h.start_running("a", 0);
    let outputs = h.with(|c, env| c.shutdown(env));
    assert!(outputs.iter().any(|o| matches!(
        o,
        RunnerOutput::Timer { at_ms: 120_000, timer: RunnerTimer::ShutdownTimeout }
    )));
    let mut all = Vec::new();
    while h.now < 115_000 {
        all.extend(h.advance(5_000));
        h.ping(1);
    }
    assert!(!all.iter().any(|o| matches!(o, RunnerOutput::Exit { .. })));
    let outputs = h.advance_to(120_000);
    assert_eq!(Harness::closes(&outputs), vec![CloseReason::EnvoyShutdown]);
    assert!(
        matches!(outputs.last(), Some(RunnerOutput::Exit { reason }) if reason == "shutdown timeout")
    );
    assert_eq!(
        terminations(&h.facts),
        vec![("a".into(), 0, StopCode::Error, "runner shutdown timeout".into())]
    );
}
