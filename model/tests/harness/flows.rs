//! One scripted flow per protocol flow of `spec/protocol.md`, each a function
//! `fn flow_x(canaries: Canaries) -> Result<(), String>` that drives a [`World`] and returns the
//! first broken expectation. With no canary every flow returns `Ok`; each flow is written so that
//! the exposure `spec/canaries.md` gives for its canaries happens in it.
//!
//! Expectations are computed from the script (which actors, which runner, which order), from the
//! spec's rules and from the configured timing, never read back from the component under test.
//! Every flow ends with [`World::check`], the harness's invariants (S4, S7, S11, §4.3, §7.1).
//!
//! Owns only the scripts; the mechanics live in the harness (`super`).

use pegsim_model::canary::Canaries;
use pegsim_model::config::Timing;
use pegsim_model::constants::MAX_RESPONSE_PAYLOAD_BYTES;
use pegsim_model::engine::actor::ActorSpec;
use pegsim_model::fact::{
    ActorStatus, CommandDisposition, CommandKind, ConnId, CrashPolicy, Disposition, EndOutcome,
    EventClass, Fact, TxnLabel,
};
use pegsim_model::keys::{self, RunnerId};
use pegsim_model::preload::reference_manifest;
use pegsim_model::protocol as p;
use pegsim_model::records::Placement;
use pegsim_model::runner::app::ActorState;
use pegsim_model::runner::{AppAction, AppKey, RunnerConfig};
use pegsim_model::store::{CommitFault, Mutation};

use super::{matchers, Action, Setup, World, WALL_EPOCH_MS};

/// The namespace and pool every flow uses (the default deployment's).
pub const NS: &str = "default";
pub const POOL: &str = "default";
/// The actor name every flow's actors have; the runners declare the reference manifest for it.
pub const ACTOR_NAME: &str = "counter";

macro_rules! ensure {
    ($w:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            let message = format!($($arg)+);
            return Err(failure($w, message));
        }
    };
}

/// `expr`, with the log tail added to its error.
macro_rules! ok {
    ($w:expr, $e:expr) => {{
        let result = $e;
        result.map_err(|e| failure($w, e))
    }};
}

/// An error message with the last lines of the log.
fn failure(w: &World, message: String) -> String {
    let violations = w.violations();
    let violations = if violations.is_empty() {
        String::new()
    } else {
        format!("\n--- harness violations ---\n{}", violations.join("\n"))
    };
    format!("{message}{violations}\n--- last log lines ---\n{}", w.tail(30))
}

/// The actor spec the flows create.
pub fn spec(crash_policy: CrashPolicy, input: Option<Vec<u8>>) -> ActorSpec {
    ActorSpec {
        namespace: NS.into(),
        name: ACTOR_NAME.into(),
        key: None,
        pool: POOL.into(),
        crash_policy,
        input,
    }
}

/// A runner of `version` with the reference manifest for [`ACTOR_NAME`] and `timing`.
pub fn runner_config(version: u32, timing: &Timing) -> RunnerConfig {
    let mut config = RunnerConfig::new(NS, POOL);
    config.version = version;
    config.manifests.insert(ACTOR_NAME.into(), reference_manifest());
    config.timing = timing.clone();
    config.max_frame_bytes = timing.max_frame_bytes;
    config
}

/// Start a runner and run until its first connection is ready. Returns its index and that
/// connection.
pub fn connect_runner(w: &mut World, version: u32) -> Result<(usize, ConnId), String> {
    let config = runner_config(version, &w.config.timing.clone());
    let r = w.add_runner(config);
    let id = w.runner_id(r);
    let deadline = w.now + 5_000;
    let at = ok!(
        w,
        w.run_until_fact(deadline, |f| matches!(f, Fact::Ready { runner, .. } if *runner == id))
    )?;
    let Some(Fact::Ready { conn, eligible, .. }) = w.fact_at(at).cloned() else {
        return Err(failure(w, "ready fact vanished".into()));
    };
    ensure!(w, eligible, "runner {r} became ready but not eligible");
    Ok((r, conn))
}

/// Run until `actor` reaches `status` (a `StatusChanged` fact) or `within_ms` pass.
pub fn wait_status(
    w: &mut World,
    actor: &str,
    status: ActorStatus,
    within_ms: u64,
) -> Result<(), String> {
    let deadline = w.now + within_ms;
    let actor = actor.to_string();
    let found = w.run_until_fact(
        deadline,
        |f| matches!(f, Fact::StatusChanged { actor: a, to, .. } if *a == actor && *to == status),
    );
    match found {
        Ok(_) => Ok(()),
        Err(_) => {
            let now = w.actor_status(&actor);
            Err(failure(
                w,
                format!("{actor} did not reach {status:?} within {within_ms} ms (now {now:?})"),
            ))
        }
    }
}

/// The event classifications of `(actor, g, index)`, in order.
fn classes(w: &World, actor: &str, generation: u32, index: i64) -> Vec<EventClass> {
    w.facts()
        .filter_map(|(_, _, f)| match f {
            Fact::EventClassified { actor: a, generation: g, index: i, class, .. }
                if a == actor && *g == generation && *i == index =>
            {
                Some(*class)
            }
            _ => None,
        })
        .collect()
}

/// The applied events of `(actor, g)` in application order: `(index, event)`.
fn applied(w: &World, actor: &str, generation: u32) -> Vec<(i64, p::Event)> {
    w.facts()
        .filter_map(|(_, _, f)| match f {
            Fact::EventClassified {
                actor: a,
                generation: g,
                index,
                class: EventClass::Applied,
                event,
                ..
            } if a == actor && *g == generation => Some((*index, event.clone())),
            _ => None,
        })
        .collect()
}

/// How runner `runner` classified the deliveries of command `(actor, g, i)`, with connections.
fn dispositions(
    w: &World,
    runner: &RunnerId,
    actor: &str,
    generation: u32,
    index: i64,
) -> Vec<(ConnId, CommandDisposition)> {
    w.facts()
        .filter_map(|(_, _, f)| match f {
            Fact::RunnerCommand {
                runner: r,
                conn,
                actor: a,
                generation: g,
                index: i,
                disposition,
                ..
            } if r == runner && a == actor && *g == generation && *i == index => {
                Some((*conn, *disposition))
            }
            _ => None,
        })
        .collect()
}

fn count(w: &World, mut pred: impl FnMut(&Fact) -> bool) -> usize {
    w.facts().filter(|(_, _, f)| pred(f)).count()
}

fn running() -> p::Event {
    p::Event::EventActorStateUpdate(p::EventActorStateUpdate {
        state: p::ActorState::ActorStateRunning,
    })
}

fn is_stopped(event: &p::Event, code: p::StopCode) -> bool {
    matches!(event, p::Event::EventActorStateUpdate(p::EventActorStateUpdate {
        state: p::ActorState::ActorStateStopped(s) }) if s.code == code)
}

/// The checkpoints of every command frame the engine sent on `conn`, in order.
fn command_frames(w: &World, conn: ConnId) -> Vec<Vec<(String, u32, i64)>> {
    w.engine_frames(conn)
        .into_iter()
        .filter_map(|(_, m)| match m {
            p::ToEnvoy::ToEnvoyCommands(c) => Some(
                c.iter()
                    .map(|w| {
                        (
                            w.checkpoint.actor_id.to_string(),
                            w.checkpoint.generation,
                            w.checkpoint.index,
                        )
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The `Start` commands the engine sent on `conn` for `actor`.
fn starts_sent(w: &World, conn: ConnId, actor: &str) -> Vec<p::CommandStartActor> {
    w.engine_frames(conn)
        .into_iter()
        .flat_map(|(_, m)| match m {
            p::ToEnvoy::ToEnvoyCommands(c) => c,
            _ => Vec::new(),
        })
        .filter(|c| c.checkpoint.actor_id.as_str() == actor)
        .filter_map(|c| match c.inner {
            p::Command::CommandStartActor(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Request ids of `actor`'s KV puts sent on `conn`, in order.
fn kv_puts(w: &World, conn: ConnId, actor: &str) -> Vec<u32> {
    w.facts()
        .filter_map(|(_, _, f)| match f {
            Fact::KvRequestSent { conn: c, actor: a, request_id, kind, .. }
                if *c == conn && a == actor && kind == "KvPutRequest" =>
            {
                Some(*request_id)
            }
            _ => None,
        })
        .collect()
}

/// The `KvAnswered` facts of request `id` on `conn`: `(error, mutation committed, epoch)`.
fn kv_answers(w: &World, conn: ConnId, id: u32) -> Vec<(Option<String>, bool, u64, usize)> {
    w.facts()
        .filter_map(|(i, _, f)| match f {
            Fact::KvAnswered { conn: c, request_id, error, mutation_version, epoch, .. }
                if *c == conn && *request_id == id =>
            {
                Some((error.clone(), mutation_version.is_some(), *epoch, i))
            }
            _ => None,
        })
        .collect()
}

/// The epoch a connection registered with.
fn epoch_of(w: &World, conn: ConnId) -> Option<u64> {
    w.facts().find_map(|(_, _, f)| match f {
        Fact::Registered { conn: c, epoch, .. } if *c == conn => Some(*epoch),
        _ => None,
    })
}

fn alarm(w: &mut World, r: usize, actor: &str) {
    let at = WALL_EPOCH_MS + w.now as i64 + 3_600_000;
    w.app(r, actor, AppAction::SetAlarm(Some(at)));
}

/// What a traced run leaves: its result, the rendered log, and every frame's bytes in order.
pub type Trace = (Result<(), String>, String, Vec<Vec<u8>>);

/// Run a flow on a fresh world and also return its log and frames (for determinism checks).
pub fn traced(
    setup: fn(Canaries) -> World,
    run: fn(&mut World) -> Result<(), String>,
    canaries: Canaries,
) -> Trace {
    let mut w = setup(canaries);
    let result = run(&mut w);
    (result, w.render_log(), w.frame_bytes())
}

/// The default deployment with a running core.
pub fn default_world(canaries: Canaries) -> World {
    let mut w = World::new(Setup::new(canaries));
    w.start_core();
    w
}

// ---- 1. handshake -----------------------------------------------------------------------------

/// Flow 1: the handshake of §2.3 and an allocation right at its end.
pub fn flow_1_handshake(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_1(&mut w)
}

pub fn run_flow_1(w: &mut World) -> Result<(), String> {
    let timing = w.config.timing.clone();
    let r = w.add_runner(runner_config(1, &timing));
    let rid = w.runner_id(r);
    // The actor is created the moment the edge finishes the replay: allocation races the end of
    // the handshake (the window `init-eligible-before-ready` opens).
    let at = ok!(
        w,
        w.run_until_fact(5_000, |f| matches!(f, Fact::ReplayDone { runner, .. } if *runner == rid))
    )?;
    let Some(Fact::ReplayDone { conn, .. }) = w.fact_at(at).cloned() else { unreachable!() };
    w.create_actor("a1", &spec(CrashPolicy::Restart, None))?;
    w.run_for(3_000);

    // Frames: metadata first from the runner (before it got Init), Init first from the engine.
    let runner_frames = w.runner_frames(conn);
    let engine_frames = w.engine_frames(conn);
    let Some((meta_pos, p::ToRivet::ToRivetMetadata(meta))) = runner_frames.first().cloned() else {
        return Err(failure(w, format!("first runner frame on {conn} is not ToRivetMetadata")));
    };
    let names = meta.prepopulate_actor_names.clone().unwrap_or_default();
    ensure!(
        w,
        names.get(ACTOR_NAME).map(|n| n.metadata.to_string())
            == Some(reference_manifest().to_metadata_json()),
        "metadata does not declare the reference manifest for {ACTOR_NAME}: {names:?}"
    );
    let expected_init = p::ToEnvoy::ToEnvoyInit(p::ToEnvoyInit {
        metadata: p::ProtocolMetadata {
            envoy_lost_threshold: timing.runner_lost_threshold_ms as i64,
            actor_stop_threshold: timing.actor_stop_threshold_ms as i64,
            max_response_payload_size: MAX_RESPONSE_PAYLOAD_BYTES,
        },
    });
    ensure!(
        w,
        engine_frames.first().map(|(_, m)| m) == Some(&expected_init),
        "first engine frame is not the expected Init: {:?}",
        engine_frames.first()
    );
    let runner_init = w
        .find(|f| matches!(f, Fact::RunnerInit { conn: c, .. } if *c == conn))
        .ok_or_else(|| failure(w, "runner never received Init".into()))?;
    ensure!(w, meta_pos < runner_init, "the runner waited for Init before sending its metadata");

    // Where the handshake facts of this connection are.
    let pos = |name: &str, found: Option<usize>| {
        found.ok_or_else(|| failure(w, format!("no {name} fact for {conn}")))
    };
    let sub = pos(
        "SubscriptionConfirmed",
        w.find(|f| matches!(f, Fact::SubscriptionConfirmed { conn: c, .. } if *c == conn)),
    )?;
    let reg =
        pos("Registered", w.find(|f| matches!(f, Fact::Registered { conn: c, .. } if *c == conn)))?;
    let meta_commit = pos(
        "MetadataCommitted",
        w.find(|f| matches!(f, Fact::MetadataCommitted { conn: c, .. } if *c == conn)),
    )?;
    let page =
        pos("ReplayPage", w.find(|f| matches!(f, Fact::ReplayPage { conn: c, .. } if *c == conn)))?;
    let ready = pos("Ready", w.find(|f| matches!(f, Fact::Ready { conn: c, .. } if *c == conn)))?;
    // Eligibility (§6.4): the index entry is first written by the ready transaction, after the
    // subscription, the registration and the metadata.
    let info = w.runner_info(&rid).ok_or_else(|| failure(w, "no runner record".into()))?;
    let eligible_key = keys::eligible(NS, POOL, 1, &rid);
    let first_eligible = w.facts().find_map(|(i, _, f)| match f {
        Fact::Commit { label, applied, .. }
            if applied
                .iter()
                .any(|m| matches!(m, Mutation::Set { key, .. } if *key == eligible_key)) =>
        {
            Some((i, *label))
        }
        _ => None,
    });
    let Some((elig_pos, elig_label)) = first_eligible else {
        return Err(failure(w, "the runner never became eligible".into()));
    };
    ensure!(
        w,
        elig_label == TxnLabel::Ready && elig_pos > meta_commit && elig_pos > sub,
        "the runner became eligible in a {elig_label:?} commit (log {elig_pos}) before ready (metadata at {meta_commit}, subscription at {sub})"
    );

    // Edge facts in the order of §2.3.
    ensure!(
        w,
        sub < reg && reg < meta_commit && meta_commit < page && page < at && at < ready,
        "handshake facts out of order: subscribed {sub}, registered {reg}, metadata {meta_commit}, replay page {page}, replay done {at}, ready {ready}"
    );
    ensure!(w, reg < runner_init, "the runner got Init before the registration committed");

    // The actor allocated to the runner: Start delivered live on this connection, executed,
    // Running applied.
    let allocated = w.find(|f| matches!(f, Fact::Allocated { actor, runner, generation: 0 } if actor == "a1" && *runner == rid));
    ensure!(
        w,
        allocated.is_some_and(|a| a > ready),
        "a1 was not allocated to the runner after it became ready"
    );
    let live_start = w.find(|f| {
        matches!(f, Fact::CommandsSent { conn: c, replay: false, checkpoints, .. }
        if *c == conn && checkpoints == &vec![("a1".to_string(), 0, 0)])
    });
    ensure!(w, live_start.is_some(), "the Start of a1 was never delivered live on {conn}");
    ensure!(
        w,
        dispositions(w, &rid, "a1", 0, 0) == vec![(conn, CommandDisposition::Exec)],
        "the Start of a1 was not executed exactly once"
    );
    ensure!(
        w,
        applied(w, "a1", 0).first().map(|(i, e)| (*i, e.clone())) == Some((0, running())),
        "Running of a1 was not applied"
    );
    ensure!(
        w,
        w.actor_status("a1") == Some(ActorStatus::Running),
        "a1 is {:?}, not Running",
        w.actor_status("a1")
    );

    // The record (§6.1).
    let epoch = epoch_of(w, conn);
    ensure!(
        w,
        info.connected
            && info.ready
            && !info.draining
            && !info.expired
            && Some(info.epoch) == epoch
            && info.total_slots == pegsim_model::constants::DEFAULT_SLOTS
            && info.used_slots == 1,
        "unexpected runner record {info:?} (epoch {epoch:?})"
    );
    ensure!(
        w,
        w.command_keys(&rid).is_empty(),
        "acked commands remain: {:?}",
        w.command_keys(&rid)
    );
    w.check()
}

// ---- 2. start, sleep, wake elsewhere ----------------------------------------------------------

/// Flow 2: start → running → sleep → wake on another runner.
pub fn flow_2_sleep_wake(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_2(&mut w)
}

pub fn run_flow_2(w: &mut World) -> Result<(), String> {
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);
    w.create_actor("a1", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "a1", ActorStatus::Running, 2_000)?;
    // A runner of a higher version: the wake must go there (§6.5).
    let (r1, c1) = connect_runner(w, 2)?;
    let id1 = w.runner_id(r1);
    w.run_for(3_000);

    w.app(r0, "a1", AppAction::Sleep);
    wait_status(w, "a1", ActorStatus::Sleeping, 5_000)?;
    w.run_for(1_000);
    ensure!(w, w.placement("a1").is_none(), "a sleeping actor has a placement");

    // Generation 0: Running, Intent Sleep, Stopped OK, applied in order; the generation ended
    // with the Sleep disposition; every command of it deleted.
    let g0 = applied(w, "a1", 0);
    let kinds_ok = g0.len() == 3
        && g0[0] == (0, running())
        && g0[1]
            == (
                1,
                p::Event::EventActorIntent(p::EventActorIntent {
                    intent: p::ActorIntent::ActorIntentSleep,
                }),
            )
        && g0[2].0 == 2
        && is_stopped(&g0[2].1, p::StopCode::Ok);
    ensure!(w, kinds_ok, "generation 0 applied {g0:?}");
    let end = w.find(|f| matches!(f, Fact::EndGeneration { actor, runner, generation: 0, outcome: EndOutcome::StoppedOk, disposition: Disposition::Sleep, .. }
        if actor == "a1" && *runner == id0));
    let Some(end) = end else {
        return Err(failure(w, "generation 0 did not end StoppedOk / Sleep".into()));
    };
    let stop_persisted = w.find(|f| matches!(f, Fact::CommandPersisted { actor, generation: 0, index: 1, kind: CommandKind::Stop(p::StopActorReason::SleepIntent), runner }
        if actor == "a1" && *runner == id0));
    ensure!(w, stop_persisted.is_some(), "no Stop(SLEEP_INTENT) persisted at (a1, 0, 1)");
    for i in 0..2 {
        ensure!(
            w,
            dispositions(w, &id0, "a1", 0, i) == vec![(c0, CommandDisposition::Exec)],
            "command (a1, 0, {i}) not executed exactly once on runner 0"
        );
    }

    // The tombstone of (a1, 0) on runner 0 is dropped only after the ack of its Stopped.
    let ack_frame = w.engine_frames(c0).into_iter().find_map(|(i, m)| match m {
        p::ToEnvoy::ToEnvoyAckEvents(a)
            if a.last_event_checkpoints
                .iter()
                .any(|c| c.actor_id.as_str() == "a1" && c.generation == 0 && c.index >= 2) =>
        {
            Some(i)
        }
        _ => None,
    });
    let tomb = w.find(|f| matches!(f, Fact::TombstoneDrop { runner, actor, generation: 0 } if *runner == id0 && actor == "a1"));
    match (ack_frame, tomb) {
        (Some(a), Some(t)) if a < t && end < a => {}
        _ => return Err(failure(w, format!("tombstone drop {tomb:?} does not follow the Stopped ack {ack_frame:?} after the generation end {end}"))),
    }
    ensure!(w, w.runner_records(r0) == 0, "runner 0 still holds {} records", w.runner_records(r0));

    // Wake: generation 1 on the other runner, with a new placement.
    w.wake_actor("a1")?;
    wait_status(w, "a1", ActorStatus::Running, 3_000)?;
    ensure!(
        w,
        w.find(|f| matches!(f, Fact::Allocated { actor, runner, generation: 1 } if actor == "a1" && *runner == id1)).is_some(),
        "generation 1 was not allocated to runner 1"
    );
    ensure!(
        w,
        w.placement("a1") == Some(Placement { runner: id1.clone(), generation: 1 }),
        "placement is {:?}",
        w.placement("a1")
    );
    ensure!(
        w,
        dispositions(w, &id1, "a1", 1, 0) == vec![(c1, CommandDisposition::Exec)],
        "Start (a1, 1, 0) not executed once on runner 1"
    );
    ensure!(
        w,
        w.instances(r1) == vec![("a1".to_string(), 1)],
        "runner 1 instances {:?}",
        w.instances(r1)
    );
    // The state survived the generations: the first start wrote counter 1, the second read it.
    let startups: Vec<(u32, bool, u64)> = w
        .facts()
        .filter_map(|(_, _, f)| match f {
            Fact::StartupObserved { actor, generation, record, .. } if actor == "a1" => {
                Some((*generation, record.new_actor, record.counter))
            }
            _ => None,
        })
        .collect();
    ensure!(w, startups == vec![(0, true, 1), (1, false, 2)], "startups {startups:?}");
    w.run_for(3_000);
    // Bounded storage (§3.3): every command acknowledged or of an ended generation is gone.
    ensure!(
        w,
        w.command_keys(&id0).is_empty(),
        "runner 0 still stores commands {:?}",
        w.command_keys(&id0)
    );
    ensure!(
        w,
        w.command_keys(&id1).is_empty(),
        "runner 1 still stores commands {:?}",
        w.command_keys(&id1)
    );
    w.check()
}

// ---- 3. reconnect with a paged replay ---------------------------------------------------------

/// Small pages and frames, and a frame limit the unbounded replay exceeds.
pub fn replay_timing() -> Timing {
    Timing {
        replay_page_keys: 4,
        frame_max_commands: 3,
        frame_target_bytes: 4_096,
        max_frame_bytes: 4_096,
        ..Timing::default()
    }
}

/// [`replay_timing`] with a running core.
pub fn replay_world(canaries: Canaries) -> World {
    let mut setup = Setup::new(canaries);
    setup.config.timing = replay_timing();
    let mut w = World::new(setup);
    w.start_core();
    w
}

/// Flow 3: reconnect with a replay of more than one page, then live commands.
pub fn flow_3_replay(canaries: Canaries) -> Result<(), String> {
    let mut w = replay_world(canaries);
    run_flow_3(&mut w)
}

pub fn run_flow_3(w: &mut World) -> Result<(), String> {
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);
    let actors: Vec<String> = (0..10).map(|i| format!("x{i:02}")).collect();
    // The connection stalls (nothing reaches the runner) while ten actors are allocated to it.
    let stall = w.intercept(Action::Hold, None, matchers::any_to_runner(c0));
    for a in &actors {
        w.create_actor(a, &spec(CrashPolicy::Restart, Some(vec![7u8; 600])))?;
    }
    w.run_for(100);
    w.remove_rule(stall);
    ensure!(
        w,
        w.command_keys(&id0).len() == 10,
        "expected 10 unacked Starts, store holds {:?}",
        w.command_keys(&id0)
    );
    w.reset(c0, true, true);
    w.release_all();

    // The reconnect: a replay of 10 keys in pages of 4.
    let deadline = w.now + 5_000;
    let at = ok!(
        w,
        w.run_until_fact(deadline, |f| matches!(f, Fact::ReplayPage { conn, .. } if *conn != c0))
    )?;
    let Some(Fact::ReplayPage { conn: c1, .. }) = w.fact_at(at).cloned() else { unreachable!() };
    // During the replay: a Stop for an allocated actor (buffered, then live) and a new actor
    // (pending until the runner is ready, then live).
    w.destroy_actor("x00")?;
    w.create_actor("x10", &spec(CrashPolicy::Restart, None))?;
    w.run_for(3_000);

    let pages: Vec<usize> = w
        .facts()
        .filter_map(|(_, _, f)| match f {
            Fact::ReplayPage { conn, keys, .. } if *conn == c1 => Some(*keys),
            _ => None,
        })
        .collect();
    ensure!(w, pages == vec![4, 4, 2], "replay pages of {c1}: {pages:?}");
    // Expected frames: each page's Starts in key order, at most 3 per frame; then live.
    let mut expected: Vec<Vec<(String, u32, i64)>> = Vec::new();
    for page in actors.chunks(4) {
        for frame in page.chunks(3) {
            expected.push(frame.iter().map(|a| (a.clone(), 0, 0)).collect());
        }
    }
    let replay_frames = expected.len();
    expected.push(vec![("x00".into(), 0, 1)]);
    expected.push(vec![("x10".into(), 0, 0)]);
    let frames = command_frames(w, c1);
    ensure!(w, frames == expected, "command frames on {c1}:\n{frames:?}\nexpected\n{expected:?}");
    let flags: Vec<bool> = w
        .facts()
        .filter_map(|(_, _, f)| match f {
            Fact::CommandsSent { conn, replay, .. } if *conn == c1 => Some(*replay),
            _ => None,
        })
        .collect();
    let expected_flags: Vec<bool> = (0..expected.len()).map(|i| i < replay_frames).collect();
    ensure!(w, flags == expected_flags, "replay flags {flags:?}");
    let done = w.find(|f| matches!(f, Fact::ReplayDone { conn, .. } if *conn == c1));
    let first_live =
        w.find(|f| matches!(f, Fact::CommandsSent { conn, replay: false, .. } if *conn == c1));
    ensure!(
        w,
        done.is_some() && first_live.is_some() && done < first_live,
        "live commands before the end of the replay"
    );

    // Every Start executed once, on the new connection; x00 destroyed by its live Stop.
    for a in actors.iter().chain(std::iter::once(&"x10".to_string())) {
        ensure!(
            w,
            dispositions(w, &id0, a, 0, 0) == vec![(c1, CommandDisposition::Exec)],
            "Start ({a}, 0, 0): {:?}",
            dispositions(w, &id0, a, 0, 0)
        );
    }
    ensure!(
        w,
        w.actor_status("x00") == Some(ActorStatus::Destroyed),
        "x00 is {:?}",
        w.actor_status("x00")
    );
    for a in actors.iter().skip(1).chain(std::iter::once(&"x10".to_string())) {
        ensure!(
            w,
            w.actor_status(a) == Some(ActorStatus::Running),
            "{a} is {:?}",
            w.actor_status(a)
        );
    }
    ensure!(
        w,
        count(w, |f| matches!(f, Fact::RunnerProtocolViolation { .. })) == 0,
        "the runner saw a protocol violation"
    );
    ensure!(w, w.command_keys(&id0).is_empty(), "commands left: {:?}", w.command_keys(&id0));
    w.check()
}

// ---- 4. duplicate start --------------------------------------------------------------------------

/// Flow 4: a duplicated Start (bus duplicate; replay overlapping a live delivery).
pub fn flow_4_duplicate_start(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_4(&mut w)
}

pub fn run_flow_4(w: &mut World) -> Result<(), String> {
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);

    // (a) The bus delivers the publish of Start(d1) twice.
    w.intercept(
        Action::Duplicate { extra_delay_ms: 0 },
        Some(1),
        matchers::bus_commands_of(c0, "d1"),
    );
    w.create_actor("d1", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "d1", ActorStatus::Running, 2_000)?;
    w.run_for(500);
    let sent = count(
        w,
        |f| matches!(f, Fact::CommandsSent { conn, replay: false, checkpoints, .. } if *conn == c0 && checkpoints == &vec![("d1".to_string(), 0, 0)]),
    );
    ensure!(w, sent == 2, "Start(d1) forwarded {sent} times, expected 2");
    ensure!(
        w,
        dispositions(w, &id0, "d1", 0, 0)
            == vec![(c0, CommandDisposition::Exec), (c0, CommandDisposition::Dup)],
        "Start(d1) dispositions {:?}",
        dispositions(w, &id0, "d1", 0, 0)
    );
    ensure!(
        w,
        count(w, |f| matches!(f, Fact::InstanceStart { actor, .. } if actor == "d1")) == 1,
        "d1 started more than once"
    );
    let acks = w.runner_frames(c0).into_iter().filter(|(_, m)| matches!(m, p::ToRivet::ToRivetAckCommands(a)
        if a.last_command_checkpoints.iter().any(|c| c.actor_id.as_str() == "d1" && c.generation == 0 && c.index == 0))).count();
    ensure!(w, acks == 2, "{acks} acks of Start(d1), expected 2");
    ensure!(
        w,
        count(w, |f| matches!(f, Fact::CommandAckApplied { actor, index: 0, .. } if actor == "d1"))
            == 2,
        "the edge did not apply both acks"
    );

    // (b) Start(d2) executed live, its ack lost; the instance writes its state; the connection
    // resets; the replay delivers Start(d2) again, with a bundle read after that write.
    w.intercept(Action::Drop, Some(1), matchers::command_ack_of(c0, "d2"));
    w.create_actor("d2", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "d2", ActorStatus::Running, 2_000)?;
    w.run_for(500);
    ensure!(
        w,
        w.command_keys(&id0) == vec![("d2".to_string(), 0, 0)],
        "store holds {:?}",
        w.command_keys(&id0)
    );
    let state = w.kv_value("d2", &[1]).ok_or_else(|| failure(w, "d2 wrote no state".into()))?;
    ensure!(
        w,
        ActorState::decode(&state).map(|s| s.counter) == Ok(1),
        "d2 state {:?}",
        String::from_utf8_lossy(&state)
    );
    w.reset(c0, true, true);
    let deadline = w.now + 5_000;
    let at = ok!(
        w,
        w.run_until_fact(deadline, |f| matches!(f, Fact::Ready { conn, .. } if *conn != c0))
    )?;
    let Some(Fact::Ready { conn: c1, .. }) = w.fact_at(at).cloned() else { unreachable!() };
    w.run_for(1_000);

    ensure!(
        w,
        dispositions(w, &id0, "d2", 0, 0)
            == vec![(c0, CommandDisposition::Exec), (c1, CommandDisposition::Dup)],
        "Start(d2) dispositions {:?}",
        dispositions(w, &id0, "d2", 0, 0)
    );
    let replayed = w.find(|f| matches!(f, Fact::CommandsSent { conn, replay: true, checkpoints, .. } if *conn == c1 && checkpoints == &vec![("d2".to_string(), 0, 0)]));
    ensure!(w, replayed.is_some(), "Start(d2) was not replayed on {c1}");
    ensure!(
        w,
        count(w, |f| matches!(f, Fact::InstanceStart { actor, .. } if actor == "d2")) == 1,
        "d2 started more than once"
    );
    let acked_on = |w: &World, conn: ConnId| {
        count(
            w,
            |f| matches!(f, Fact::RunnerAckCommands { conn: c, actor, index: 0, .. } if *c == conn && actor == "d2"),
        )
    };
    ensure!(
        w,
        acked_on(w, c0) == 1 && acked_on(w, c1) == 1,
        "Start(d2) acked {} times on {c0}, {} on {c1}",
        acked_on(w, c0),
        acked_on(w, c1)
    );
    ensure!(w, w.command_keys(&id0).is_empty(), "store holds {:?}", w.command_keys(&id0));
    // The two deliveries' bundles: the first read an empty keyspace, the replay the state the
    // instance wrote in between.
    let first = starts_sent(w, c0, "d2");
    let second = starts_sent(w, c1, "d2");
    ensure!(
        w,
        first.len() == 1 && second.len() == 1,
        "Start(d2) sent {} / {} times",
        first.len(),
        second.len()
    );
    ensure!(
        w,
        first[0].preloaded_kv == Some(p::preloaded_kv::empty_keyspace()),
        "first bundle of d2 is {:?}",
        first[0].preloaded_kv
    );
    let replayed_state = second[0]
        .preloaded_kv
        .as_ref()
        .and_then(|b| b.entries.iter().find(|e| e.key.as_ref() == [1u8]).map(|e| e.value.to_vec()));
    ensure!(w, replayed_state.as_ref() == Some(&state), "the replayed Start of d2 carries a stale bundle: state {replayed_state:?}, the store holds {state:?}");
    let mut instances = w.instances(r0);
    instances.sort();
    ensure!(
        w,
        instances == vec![("d1".to_string(), 0), ("d2".to_string(), 0)],
        "instances {instances:?}"
    );
    w.check()
}

// ---- 5. duplicate and out-of-order events -----------------------------------------------------

/// Flow 5: duplicated and out-of-order events, across one and two connections of one runner.
pub fn flow_5_events(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_5(&mut w)
}

pub fn run_flow_5(w: &mut World) -> Result<(), String> {
    let (r0, c0) = connect_runner(w, 1)?;
    let a = "e1";
    w.create_actor(a, &spec(CrashPolicy::Restart, None))?;
    wait_status(w, a, ActorStatus::Running, 2_000)?;
    w.run_for(3_000);

    // (A) A signal delivered twice: applied once, the duplicate re-acknowledged at once.
    w.intercept(Action::Duplicate { extra_delay_ms: 5 }, Some(1), matchers::signal_from(c0, a));
    alarm(w, r0, a); // event 1
    let t = w.now;
    w.run_for(100);
    ensure!(
        w,
        classes(w, a, 0, 1) == vec![EventClass::Applied, EventClass::Dup],
        "event 1: {:?}",
        classes(w, a, 0, 1)
    );
    let re_ack = w.facts().find_map(|(_, e, f)| match f {
        Fact::EventAckPublished { actor, generation: 0, index: 1, .. } if actor == a => Some(e.at),
        _ => None,
    });
    ensure!(
        w,
        re_ack.is_some_and(|at| at < t + w.config.timing.event_ack_max_delay_ms),
        "the duplicate was not re-acknowledged at once: {re_ack:?}"
    );

    // (B) A lost frame leaves a gap: the next event is dropped (no ack) until the periodic
    // re-send fills it.
    w.run_for(3_000);
    w.intercept(Action::Drop, Some(1), matchers::events_of(c0, a));
    alarm(w, r0, a); // event 2, lost
    w.run_for(10);
    alarm(w, r0, a); // event 3, a gap
    w.run_for(100);
    ensure!(
        w,
        classes(w, a, 0, 3) == vec![EventClass::Gap],
        "event 3 before the re-send: {:?}",
        classes(w, a, 0, 3)
    );
    w.run_for(w.config.timing.event_resend_interval_ms + 3_000);
    ensure!(
        w,
        classes(w, a, 0, 2) == vec![EventClass::Applied],
        "event 2: {:?}",
        classes(w, a, 0, 2)
    );
    ensure!(
        w,
        classes(w, a, 0, 3) == vec![EventClass::Gap, EventClass::Applied],
        "event 3: {:?}",
        classes(w, a, 0, 3)
    );

    // (C) A batch in flight while the periodic re-send queues the same events again: one batch
    // then holds a checkpoint twice.
    w.intercept(Action::Hold, Some(1), matchers::signal_from(c0, a));
    alarm(w, r0, a); // event 4, its batch held
    w.run_for(10);
    alarm(w, r0, a); // event 5, queued
    w.run_for(w.config.timing.event_resend_interval_ms + 500);
    let tail: Vec<(u32, i64)> = w.signalled(c0, a);
    ensure!(w, tail.ends_with(&[(0, 4)]), "signalled on {c0}: {tail:?}");
    w.release_all();
    w.run_for(500);
    let tail = w.signalled(c0, a);
    ensure!(w, tail.ends_with(&[(0, 4), (0, 5), (0, 4), (0, 5)]), "signalled on {c0}: {tail:?}");
    ensure!(
        w,
        classes(w, a, 0, 4) == vec![EventClass::Applied, EventClass::Dup],
        "event 4: {:?}",
        classes(w, a, 0, 4)
    );
    ensure!(
        w,
        classes(w, a, 0, 5) == vec![EventClass::Applied, EventClass::Dup],
        "event 5: {:?}",
        classes(w, a, 0, 5)
    );

    // (D) Two connections: the old one still holds a batch in flight and a queued event when it
    // drops; the new one delivers the re-sent events first; the old one drains late.
    w.run_for(3_000);
    w.intercept(Action::Hold, Some(1), matchers::signal_from(c0, a));
    alarm(w, r0, a); // event 6, held on c0
    w.run_for(10);
    alarm(w, r0, a); // event 7, queued on c0
    w.run_for(10);
    w.route_next_connect(1);
    w.reset(c0, true, true);
    let deadline = w.now + 5_000;
    let at = ok!(
        w,
        w.run_until_fact(deadline, |f| matches!(f, Fact::Ready { conn, .. } if *conn != c0))
    )?;
    let Some(Fact::Ready { conn: c1, .. }) = w.fact_at(at).cloned() else { unreachable!() };
    w.run_for(500);
    ensure!(
        w,
        classes(w, a, 0, 7) == vec![EventClass::Applied],
        "event 7 via {c1}: {:?}",
        classes(w, a, 0, 7)
    );
    w.release_all();
    w.run_for(500);
    ensure!(
        w,
        classes(w, a, 0, 6) == vec![EventClass::Applied, EventClass::Dup],
        "event 6: {:?}",
        classes(w, a, 0, 6)
    );
    ensure!(
        w,
        classes(w, a, 0, 7) == vec![EventClass::Applied, EventClass::Dup],
        "event 7: {:?}",
        classes(w, a, 0, 7)
    );
    ensure!(w, w.conns.get(&c0).is_some_and(|c| c.edge_finished), "{c0} did not drain");

    // (E) The new connection's queue stays busy across a collection interval.
    let created = w.facts().find_map(|(_, e, f)| match f {
        Fact::DemuxEnqueue { conn, actor, .. } if *conn == c1 && actor == a => Some(e.at),
        _ => None,
    });
    let Some(created) = created else { return Err(failure(w, format!("no queue of {a} on {c1}"))) };
    let collect_at = created + w.config.timing.demux_idle_timeout_ms;
    while w.now + 2_000 < collect_at - 500 {
        w.run_for(2_000);
        alarm(w, r0, a);
    }
    w.run_until(collect_at - 500);
    w.intercept(Action::Hold, Some(1), matchers::signal_from(c1, a));
    alarm(w, r0, a);
    w.run_for(10);
    alarm(w, r0, a);
    w.run_until(collect_at + 1_000);
    w.check()?;
    w.release_all();
    w.run_for(3_000);

    // The end: every event applied exactly once in order (S4 is checked throughout), all
    // acknowledged and forgotten by the runner.
    let emitted = count(w, |f| matches!(f, Fact::EventEmit { actor, .. } if actor == a)) as i64;
    let indices: Vec<i64> = applied(w, a, 0).into_iter().map(|(i, _)| i).collect();
    ensure!(
        w,
        indices == (0..emitted).collect::<Vec<_>>(),
        "applied {indices:?}, emitted {emitted}"
    );
    ensure!(w, w.runner_unacked(r0) == 0, "runner holds {} unacked events", w.runner_unacked(r0));
    w.check()
}

// ---- 6. runner lost ---------------------------------------------------------------------------

/// Flow 6: a silent runner is fenced, expired, and its actor restarted elsewhere.
pub fn flow_6_runner_lost(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_6(&mut w)
}

pub fn run_flow_6(w: &mut World) -> Result<(), String> {
    let timing = w.config.timing.clone();
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);
    w.create_actor("l1", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "l1", ActorStatus::Running, 2_000)?;
    let (r1, _) = connect_runner(w, 1)?;
    let id1 = w.runner_id(r1);
    w.run_for(2_000);

    w.partition_runner(r0);
    let silence = timing.runner_lost_threshold_ms + timing.fence_margin_ms;
    w.run_for(timing.ping_timeout_ms + silence + 5_000);

    let at = |w: &World, i: Option<usize>| i.map(|i| w.log[i].at);
    let fence = w.find(|f| matches!(f, Fact::Fence { runner } if *runner == id0));
    let killed = w.find(|f| matches!(f, Fact::InstanceTerminate { runner, actor, generation: 0, code: p::StopCode::Error, reason } if *runner == id0 && actor == "l1" && reason == "runner lost"));
    let expired = w.find(|f| matches!(f, Fact::Expired { runner, lost } if *runner == id0 && lost == &vec![("l1".to_string(), 0)]));
    let last_liveness = w
        .facts()
        .filter_map(|(i, _, f)| match f {
            Fact::LivenessWrite { runner, .. } if *runner == id0 => Some(i),
            _ => None,
        })
        .last();
    let edge_closed = w.find(|f| matches!(f, Fact::EdgeConnClosed { conn, reason, .. } if *conn == c0 && reason == "ws.timed_out"));
    ensure!(
        w,
        fence.is_some() && killed.is_some(),
        "runner 0 was not fenced: {fence:?} {killed:?}"
    );
    ensure!(w, edge_closed.is_some(), "the edge did not close {c0} on the ping timeout");
    ensure!(w, expired.is_some(), "runner 0 was not expired with its allocation");
    ensure!(
        w,
        fence < expired && killed < expired,
        "the fence ({fence:?}) does not precede the expiry ({expired:?})"
    );
    let gap = at(w, expired).unwrap_or(0).saturating_sub(at(w, last_liveness).unwrap_or(u64::MAX));
    ensure!(
        w,
        gap >= silence,
        "expired {gap} ms after the last liveness write, less than {silence}"
    );
    let end = w.find(|f| matches!(f, Fact::EndGeneration { actor, runner, generation: 0, outcome: EndOutcome::Lost, disposition: Disposition::Restart, .. } if actor == "l1" && *runner == id0));
    ensure!(
        w,
        end.is_some_and(|e| Some(e) > expired),
        "generation 0 did not end Lost / Restart after the expiry"
    );
    let realloc = w.find(|f| matches!(f, Fact::Allocated { actor, runner, generation: 1 } if actor == "l1" && *runner == id1));
    let started = w.find(|f| matches!(f, Fact::InstanceStart { runner, actor, generation: 1 } if *runner == id1 && actor == "l1"));
    ensure!(
        w,
        realloc.is_some() && started.is_some() && killed < started,
        "generation 1 did not start on runner 1 after the fence"
    );
    ensure!(
        w,
        w.placement("l1") == Some(Placement { runner: id1.clone(), generation: 1 }),
        "placement {:?}",
        w.placement("l1")
    );
    ensure!(
        w,
        w.actor_status("l1") == Some(ActorStatus::Running),
        "l1 is {:?}",
        w.actor_status("l1")
    );
    let info = w.runner_info(&id0);
    ensure!(
        w,
        info.as_ref().is_some_and(|i| i.expired && !i.connected && i.used_slots == 0),
        "runner 0 record {info:?}"
    );

    // The runner comes back with the same identity: its Stopped of (l1, 0) is stale, acked, and
    // the tombstone goes.
    w.heal_runner(r0);
    w.run_for(timing.reconnect_max_ms + 10_000);
    let stopped_index = w
        .facts()
        .filter_map(|(_, _, f)| match f {
            Fact::EventEmit { runner, actor, generation: 0, index, event }
                if *runner == id0 && actor == "l1" && is_stopped(event, p::StopCode::Error) =>
            {
                Some(*index)
            }
            _ => None,
        })
        .last();
    let Some(stopped_index) = stopped_index else {
        return Err(failure(w, "no Stopped emitted for (l1, 0)".into()));
    };
    ensure!(
        w,
        classes(w, "l1", 0, stopped_index) == vec![EventClass::Stale],
        "Stopped of (l1, 0): {:?}",
        classes(w, "l1", 0, stopped_index)
    );
    ensure!(w, w.find(|f| matches!(f, Fact::TombstoneDrop { runner, actor, generation: 0 } if *runner == id0 && actor == "l1")).is_some(), "tombstone of (l1, 0) not dropped");
    ensure!(
        w,
        w.runner_records(r0) == 0 && w.runner_unacked(r0) == 0,
        "runner 0 keeps {} records, {} events",
        w.runner_records(r0),
        w.runner_unacked(r0)
    );
    let info = w.runner_info(&id0);
    ensure!(
        w,
        info.as_ref().is_some_and(|i| !i.expired && i.connected),
        "runner 0 did not re-register: {info:?}"
    );
    w.check()
}

// ---- 7. drain ---------------------------------------------------------------------------------

/// Flow 7: a graceful drain migrates the actor, the runner exits, and is retired later.
pub fn flow_7_drain(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_7(&mut w)
}

pub fn run_flow_7(w: &mut World) -> Result<(), String> {
    let timing = w.config.timing.clone();
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);
    w.create_actor("m1", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "m1", ActorStatus::Running, 2_000)?;
    let (r1, _) = connect_runner(w, 1)?;
    let id1 = w.runner_id(r1);
    w.run_for(2_000);

    w.shutdown(r0);
    w.run_for(5_000);
    let stopping = w
        .runner_frames(c0)
        .into_iter()
        .find(|(_, m)| matches!(m, p::ToRivet::ToRivetStopping))
        .map(|(i, _)| i);
    let drain = w.find(|f| matches!(f, Fact::Drain { runner, allocations } if *runner == id0 && allocations == &vec![("m1".to_string(), 0)]));
    ensure!(
        w,
        stopping.is_some() && drain.is_some() && stopping < drain,
        "no drain after ToRivetStopping: {stopping:?} {drain:?}"
    );
    let going_away = w.find(|f| {
        matches!(f, Fact::WorkflowStep { actor, consumed }
            if actor == "m1" && consumed.iter().any(|c| c.starts_with("going_away(")))
    });
    ensure!(w, going_away.is_some_and(|g| Some(g) > drain), "m1 never consumed GoingAway");
    let stop = w.find(|f| matches!(f, Fact::CommandPersisted { runner, actor, generation: 0, index: 1, kind: CommandKind::Stop(p::StopActorReason::GoingAway) } if *runner == id0 && actor == "m1"));
    ensure!(w, stop.is_some_and(|s| Some(s) > drain), "no Stop(GOING_AWAY) after the drain");
    ensure!(
        w,
        dispositions(w, &id0, "m1", 0, 1) == vec![(c0, CommandDisposition::Exec)],
        "Stop(m1) {:?}",
        dispositions(w, &id0, "m1", 0, 1)
    );
    let terminated = w.find(|f| matches!(f, Fact::InstanceTerminate { runner, actor, generation: 0, code: p::StopCode::Ok, .. } if *runner == id0 && actor == "m1"));
    let end = w.find(|f| matches!(f, Fact::EndGeneration { actor, generation: 0, outcome: EndOutcome::StoppedOk, disposition: Disposition::Allocate, .. } if actor == "m1"));
    let moved = w.find(|f| matches!(f, Fact::InstanceStart { runner, actor, generation: 1 } if *runner == id1 && actor == "m1"));
    ensure!(
        w,
        terminated < end && end < moved && terminated.is_some(),
        "migration out of order: {terminated:?} {end:?} {moved:?}"
    );
    ensure!(
        w,
        w.actor_status("m1") == Some(ActorStatus::Running),
        "m1 is {:?}",
        w.actor_status("m1")
    );
    let exit = w.find(|f| matches!(f, Fact::RunnerExit { runner, reason } if *runner == id0 && reason == "shutdown"));
    let tomb = w.find(|f| matches!(f, Fact::TombstoneDrop { runner, actor, generation: 0 } if *runner == id0 && actor == "m1"));
    ensure!(
        w,
        tomb.is_some() && tomb < exit,
        "the runner exited before its Stopped was acked: {tomb:?} {exit:?}"
    );
    let teardown = w.find(|f| matches!(f, Fact::Teardown { runner, conn, current: true, .. } if *runner == id0 && *conn == c0));
    ensure!(w, teardown.is_some_and(|t| Some(t) > exit), "no teardown of {c0} after the exit");
    let info = w.runner_info(&id0);
    ensure!(
        w,
        info.as_ref().is_some_and(|i| i.draining && !i.connected && i.used_slots == 0),
        "runner 0 record {info:?}"
    );
    ensure!(w, !w.is_eligible(&id0), "a draining runner is eligible");

    // Retirement, `retire_grace` after it qualified.
    w.run_for(timing.retire_grace_ms + 5_000);
    let retired = w.find(|f| matches!(f, Fact::Retired { runner } if *runner == id0));
    let Some(retired) = retired else { return Err(failure(w, "runner 0 was not retired".into())) };
    let after = w.log[retired].at - teardown.map_or(0, |t| w.log[t].at);
    ensure!(w, after >= timing.retire_grace_ms, "retired {after} ms after the teardown");
    ensure!(w, w.runner_info(&id0).is_none(), "the record of a retired runner remains");
    ensure!(w, w.command_keys(&id0).is_empty(), "a retired runner's commands remain");
    w.check()
}

// ---- 8. core restart --------------------------------------------------------------------------

/// Flow 8: the core node restarts from the store mid-flow.
pub fn flow_8_core_restart(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_8(&mut w)
}

pub fn run_flow_8(w: &mut World) -> Result<(), String> {
    let timing = w.config.timing.clone();
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);

    // (a) The core crashes between persisting Start(k1) and publishing it.
    w.create_actor("k1", &spec(CrashPolicy::Restart, None))?;
    let deadline = w.now + 1_000;
    ok!(w, w.run_until_fact(deadline, |f| matches!(f, Fact::CommandPersisted { actor, kind: CommandKind::Start, .. } if actor == "k1")))?;
    w.crash_core();
    w.run_for(1_000);
    ensure!(
        w,
        count(
            w,
            |f| matches!(f, Fact::CommandsSent { checkpoints, .. } if checkpoints.iter().any(|c| c.0 == "k1"))
        ) == 0,
        "Start(k1) was delivered although its publish was lost"
    );
    ensure!(
        w,
        w.actor_status("k1") == Some(ActorStatus::Starting),
        "k1 is {:?}",
        w.actor_status("k1")
    );
    w.start_core();
    let restarted = w.log.len();
    let deadline = w.now + 1_000;
    let at = ok!(w, w.run_until_fact(deadline, |f| matches!(f, Fact::EventClassified { actor, class: EventClass::Applied, index: 0, .. } if actor == "k1")))?;
    let t_running = w.log[at].at;
    let sent = w.find_all(|f| matches!(f, Fact::CommandsSent { conn, replay: false, checkpoints, .. } if *conn == c0 && checkpoints == &vec![("k1".to_string(), 0, 0)]));
    ensure!(
        w,
        sent.len() == 1 && sent[0] > restarted,
        "Start(k1) deliveries {sent:?} (restart at {restarted})"
    );
    ensure!(
        w,
        dispositions(w, &id0, "k1", 0, 0) == vec![(c0, CommandDisposition::Exec)],
        "Start(k1) {:?}",
        dispositions(w, &id0, "k1", 0, 0)
    );

    // (b) An ack deadline is pending when the core crashes; the restarted core, whose wall clock
    // runs 300 ms ahead, re-derives the timer from the durable deadline.
    let deadline_wall = WALL_EPOCH_MS + t_running as i64 + timing.event_ack_max_delay_ms as i64;
    let state = w.workflow_state("k1").ok_or_else(|| failure(w, "no state".into()))?;
    ensure!(
        w,
        state.ack_deadline == Some(deadline_wall),
        "ack deadline {:?}, expected {deadline_wall}",
        state.ack_deadline
    );
    w.run_until(t_running + 500);
    w.crash_core();
    w.run_until(t_running + 1_000);
    let skew = 300;
    w.skew_wall(super::Node::Core, skew);
    w.start_core();
    w.run_for(3_000);
    let acks: Vec<u64> = w
        .facts()
        .filter_map(|(_, e, f)| match f {
            Fact::EventAckPublished { actor, generation: 0, index: 0, .. } if actor == "k1" => {
                Some(e.at)
            }
            _ => None,
        })
        .collect();
    let expected_at = t_running + timing.event_ack_max_delay_ms - skew as u64;
    ensure!(
        w,
        acks == vec![expected_at],
        "ack of (k1, 0, 0) published at {acks:?}, expected once at {expected_at}"
    );
    ensure!(w, w.find(|f| matches!(f, Fact::EventForget { actor, generation: 0, index: 0, .. } if actor == "k1")).is_some(), "the runner did not forget Running");

    // (c) A workflow step commits with an unknown outcome: the executor detects its own commit
    // and publishes its outbox once; the Stop is persisted and delivered once.
    w.faults.inject(TxnLabel::WorkflowStep, CommitFault::Unknown { applied: true });
    w.destroy_actor("k1")?;
    wait_status(w, "k1", ActorStatus::Destroyed, 3_000)?;
    let unknown = w.find(|f| {
        matches!(
            f,
            Fact::CommitFailed { label: TxnLabel::WorkflowStep, applied_version: Some(_), .. }
        )
    });
    ensure!(w, unknown.is_some(), "the injected unknown outcome did not happen");
    let persisted =
        count(w, |f| matches!(f, Fact::CommandPersisted { actor, index: 1, .. } if actor == "k1"));
    let delivered = count(
        w,
        |f| matches!(f, Fact::CommandsSent { checkpoints, .. } if checkpoints == &vec![("k1".to_string(), 0, 1)]),
    );
    ensure!(
        w,
        persisted == 1 && delivered == 1,
        "Stop(k1) persisted {persisted} times, delivered {delivered} times"
    );
    ensure!(w, w.command_keys(&id0).is_empty(), "commands left {:?}", w.command_keys(&id0));
    w.check()
}

// ---- 9. KV from a stale holder ----------------------------------------------------------------

/// Flow 9: KV requests from a stale holder are rejected, the current one's succeed.
pub fn flow_9_kv_fence(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_9(&mut w)
}

pub fn run_flow_9(w: &mut World) -> Result<(), String> {
    let (r0, c0) = connect_runner(w, 1)?;
    let a = "v1";
    w.create_actor(a, &spec(CrashPolicy::Restart, None))?;
    wait_status(w, a, ActorStatus::Running, 2_000)?;
    w.run_for(1_000);
    // Right after a liveness write of c0, so its next one is a ping interval away.
    let deadline = w.now + 5_000;
    ok!(
        w,
        w.run_until_fact(
            deadline,
            |f| matches!(f, Fact::LivenessWrite { conn, .. } if *conn == c0)
        )
    )?;

    // The first write's request is held on the wire; the runner loses the connection (the edge
    // does not notice) and reconnects elsewhere; the eviction notice to c0 is lost.
    let key = AppKey::User(vec![7]);
    let raw = key.to_raw();
    w.intercept(Action::Hold, Some(1), matchers::to_edge(c0, "ToRivetKvRequest"));
    w.intercept(Action::Drop, None, matchers::eviction_to(c0));
    w.app(r0, a, AppAction::Write { key: key.clone(), value_len: 16 });
    w.run_for(5);
    let k1 = *kv_puts(w, c0, a).last().ok_or_else(|| failure(w, "no KV put on c0".into()))?;
    w.route_next_connect(1);
    w.reset(c0, false, true);
    let deadline = w.now + 5_000;
    let at = ok!(
        w,
        w.run_until_fact(deadline, |f| matches!(f, Fact::Ready { conn, .. } if *conn != c0))
    )?;
    let Some(Fact::Ready { conn: c1, .. }) = w.fact_at(at).cloned() else { unreachable!() };
    // The new connection's write succeeds.
    w.app(r0, a, AppAction::Write { key: key.clone(), value_len: 16 });
    w.run_for(20);
    let k2 = *kv_puts(w, c1, a).last().ok_or_else(|| failure(w, "no KV put on c1".into()))?;
    let answers2 = kv_answers(w, c1, k2);
    ensure!(
        w,
        answers2.len() == 1 && answers2[0].0.is_none() && answers2[0].1,
        "request {k2} on {c1}: {answers2:?}"
    );
    // The stale holder's request arrives now.
    w.release_all();
    w.run_for(20);
    let answers1 = kv_answers(w, c0, k1);
    ensure!(
        w,
        answers1.len() == 1
            && answers1[0].0.as_deref() == Some("kv.not_holder")
            && !answers1[0].1
            && Some(answers1[0].2) == epoch_of(w, c0),
        "request {k1} on the stale {c0}: {answers1:?}"
    );
    ensure!(
        w,
        epoch_of(w, c0) < epoch_of(w, c1),
        "epochs {:?} / {:?}",
        epoch_of(w, c0),
        epoch_of(w, c1)
    );
    let response = w.engine_frames(c0).into_iter().find_map(|(_, m)| match m {
        p::ToEnvoy::ToEnvoyKvResponse(r) if r.request_id == k1 => Some(r.data),
        _ => None,
    });
    ensure!(
        w,
        matches!(&response, Some(p::KvResponseData::KvErrorResponse(e)) if e.message.starts_with("kv.not_holder")),
        "response to {k1} on {c0}: {response:?}"
    );
    // What each request put, read from the frames the runner sent: the store holds the second.
    let put_value = |w: &World, conn: ConnId, id: u32| {
        w.runner_frames(conn).into_iter().find_map(|(_, m)| match m {
            p::ToRivet::ToRivetKvRequest(r) if r.request_id == id => match r.data {
                p::KvRequestData::KvPutRequest(put) => put.values.first().map(|v| v.to_vec()),
                _ => None,
            },
            _ => None,
        })
    };
    let (first, second) = (put_value(w, c0, k1), put_value(w, c1, k2));
    ensure!(
        w,
        first.is_some() && second.is_some() && first != second,
        "puts {first:?} / {second:?}"
    );
    let stored = w.kv_value(a, &raw);
    ensure!(w, stored == second, "stored {stored:?}, the current holder put {second:?}");
    // The stale connection then closes on its epoch check; the runner ignores it.
    w.run_for(w.config.timing.ping_interval_ms + 500);
    ensure!(w, w.find(|f| matches!(f, Fact::EdgeConnClosed { conn, reason, .. } if *conn == c0 && reason == "ws.eviction")).is_some(), "{c0} did not close on its epoch check");
    ensure!(
        w,
        !w.runners[r0].exited && w.find(|f| matches!(f, Fact::FatalEviction { .. })).is_none(),
        "the runner took the stale close as fatal"
    );

    // After Stopped: a duplicate of a request arrives once the generation has ended.
    let key3 = AppKey::User(vec![8]);
    w.intercept(
        Action::Duplicate { extra_delay_ms: 5_000 },
        Some(1),
        matchers::to_edge(c1, "ToRivetKvRequest"),
    );
    w.app(r0, a, AppAction::Write { key: key3, value_len: 16 });
    w.run_for(20);
    let k3 = *kv_puts(w, c1, a).last().ok_or_else(|| failure(w, "no third KV put".into()))?;
    w.app(r0, a, AppAction::Sleep);
    wait_status(w, a, ActorStatus::Sleeping, 4_000)?;
    let end =
        w.find(|f| matches!(f, Fact::EndGeneration { actor, generation: 0, .. } if actor == a));
    w.run_for(6_000);
    let answers3 = kv_answers(w, c1, k3);
    ensure!(
        w,
        answers3.len() == 2
            && answers3[0].0.is_none()
            && answers3[0].1
            && answers3[1].0.as_deref() == Some("kv.not_holder")
            && !answers3[1].1
            && end.is_some_and(|e| e < answers3[1].3),
        "request {k3} and its duplicate after the generation ended ({end:?}): {answers3:?}"
    );
    w.check()
}

// ---- beyond the nine: crashes of a runner process and of an edge node ---------------------------

/// A runner process crashes (the edge notices the reset): teardown, expiry, `RunnerLost`, and
/// the restart policy starts generation 1 on another runner.
pub fn flow_runner_crash(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_runner_crash(&mut w)
}

pub fn run_flow_runner_crash(w: &mut World) -> Result<(), String> {
    let timing = w.config.timing.clone();
    let (r0, c0) = connect_runner(w, 1)?;
    let id0 = w.runner_id(r0);
    w.create_actor("c1", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "c1", ActorStatus::Running, 2_000)?;
    let (r1, _) = connect_runner(w, 1)?;
    let id1 = w.runner_id(r1);
    w.run_for(1_000);
    w.crash_runner(r0, true);
    w.run_until_idle();
    let closed = w.find(|f| {
        matches!(f, Fact::EdgeConnClosed { conn, reason, .. } if *conn == c0 && reason == "peer closed")
    });
    let teardown =
        w.find(|f| matches!(f, Fact::Teardown { conn, current: true, .. } if *conn == c0));
    ensure!(w, closed.is_some() && teardown > closed, "{c0} was not torn down after the reset");
    ensure!(w, !w.is_eligible(&id0), "a disconnected runner is eligible");
    let crashed_at = w.now;
    w.run_for(timing.runner_lost_threshold_ms + timing.fence_margin_ms + 5_000);
    let expired = w.find(|f| {
        matches!(f, Fact::Expired { runner, lost } if *runner == id0 && lost == &vec![("c1".to_string(), 0)])
    });
    let Some(expired) = expired else { return Err(failure(w, "runner 0 was not expired".into())) };
    let silent = w.log[expired].at - crashed_at;
    ensure!(
        w,
        silent
            >= timing.runner_lost_threshold_ms + timing.fence_margin_ms
                - timing.ping_interval_ms
                - timing.ping_jitter_ms,
        "expired {silent} ms after the crash"
    );
    ensure!(
        w,
        w.find(|f| matches!(f, Fact::Fence { .. })).is_none(),
        "a crashed process cannot fence"
    );
    let end = w.find(|f| {
        matches!(f, Fact::EndGeneration { actor, generation: 0, outcome: EndOutcome::Lost, disposition: Disposition::Restart, .. } if actor == "c1")
    });
    ensure!(w, end > Some(expired), "generation 0 did not end Lost / Restart after the expiry");
    ensure!(
        w,
        w.placement("c1") == Some(Placement { runner: id1, generation: 1 }),
        "placement {:?}",
        w.placement("c1")
    );
    ensure!(
        w,
        w.actor_status("c1") == Some(ActorStatus::Running),
        "c1 is {:?}",
        w.actor_status("c1")
    );
    ensure!(
        w,
        w.instances(r1) == vec![("c1".to_string(), 1)],
        "runner 1 instances {:?}",
        w.instances(r1)
    );
    w.check()
}

/// An edge node crashes with a batch in flight on the signal bus and an event queued in its
/// demuxer: the runner reconnects through the other node and re-sends, every event is applied
/// exactly once, in order.
pub fn flow_edge_crash(canaries: Canaries) -> Result<(), String> {
    let mut w = default_world(canaries);
    run_flow_edge_crash(&mut w)
}

pub fn run_flow_edge_crash(w: &mut World) -> Result<(), String> {
    let (r0, c0) = connect_runner(w, 1)?;
    w.create_actor("n1", &spec(CrashPolicy::Restart, None))?;
    wait_status(w, "n1", ActorStatus::Running, 2_000)?;
    w.run_for(3_000);
    // The signal bus is slow for this connection: its next batch lands 200 ms late.
    w.intercept(Action::Delay(200), Some(1), matchers::signal_from(c0, "n1"));
    alarm(w, r0, "n1"); // event 1, in flight
    w.run_for(10);
    alarm(w, r0, "n1"); // event 2, queued at edge 0
    w.run_for(10);
    w.crash_edge(0);
    w.run_until_idle();
    let closed = w.find(|f| matches!(f, Fact::RunnerConnClosed { conn, .. } if *conn == c0));
    ensure!(w, closed.is_some(), "the runner did not notice the crash of edge 0");
    let deadline = w.now + 5_000;
    let at = ok!(
        w,
        w.run_until_fact(deadline, |f| matches!(f, Fact::Ready { conn, .. } if *conn != c0))
    )?;
    let Some(Fact::Ready { conn: c1, .. }) = w.fact_at(at).cloned() else { unreachable!() };
    ensure!(w, w.conns.get(&c1).is_some_and(|c| c.edge_node == 1), "{c1} is not on edge 1");
    w.restart_edge(0);
    w.run_for(3_000);
    // Event 1 was applied from the in-flight batch or from the re-send, whichever came first;
    // event 2 only from the re-send.
    let indices: Vec<i64> = applied(w, "n1", 0).into_iter().map(|(i, _)| i).collect();
    ensure!(w, indices == vec![0, 1, 2], "applied {indices:?}");
    ensure!(
        w,
        classes(w, "n1", 0, 2) == vec![EventClass::Applied],
        "event 2: {:?}",
        classes(w, "n1", 0, 2)
    );
    ensure!(w, w.runner_unacked(r0) == 0, "runner holds {} unacked events", w.runner_unacked(r0));
    ensure!(
        w,
        w.actor_status("n1") == Some(ActorStatus::Running),
        "n1 is {:?}",
        w.actor_status("n1")
    );
    w.check()
}
