//! The runner (`spec/protocol.md` §1.1, called *envoy* on the wire): the runner client, a sans-IO
//! state machine that holds at most one connection to the engine, starts and stops actor
//! instances only when commands tell it to, numbers and reports their events, and carries their
//! KV requests; and the simulated actor application those instances run.
//!
//! Submodules:
//! - [`conn`]: the connection state and the reconnect backoff;
//! - [`commands`]: records per `(A, g)`, command classification, held commands;
//! - [`events`]: event numbering, history, re-send and forgetting;
//! - [`kvreq`]: the KV request table;
//! - [`instance`]: one instance's phases;
//! - [`app`]: the actor application (key layout, state, actions);
//! - [`startup`]: the startup program, its bundle driver and its oracle run.
//!
//! This module owns [`RunnerClient`] and its interface ([`RunnerConfig`], [`RunnerOutput`],
//! [`RunnerTimer`]); it ties the submodules together and records the runner's facts (§8.1). It
//! must not touch the store or anything on the engine side: it sees the engine only through
//! frames, and the simulator only through [`crate::env::RunnerEnv`] and its outputs.
//!
//! **Execution model.** Every call takes the runner node's [`RunnerEnv`] (monotonic `now_ms`, its
//! random stream, the fact sink) and returns outputs: connect requests, frames to send, closes,
//! one-shot timers and the process exit. Timers cannot be cancelled: each carries what it needs
//! to be recognized as stale (a sequence number, its own due time, a request id), and a timer that
//! finds nothing due re-arms itself for the current deadline. Events emitted during one call are
//! sent in frames of at most `events_frame_max`, flushed before any other frame of the call, so
//! frames leave in the order things happened.
//!
//! Choices where the spec is silent (each is what a user of the real runner would expect):
//! - **Before `ToEnvoyInit`** the runner accepts only `ToEnvoyInit`; any other frame, or a second
//!   `ToEnvoyInit`, is a protocol violation (§2.3, S11). A `ToEnvoyInit` with a threshold `<= 0`
//!   is one too.
//! - **Ping timeout** is measured from the last `ToEnvoyInit` or `ToEnvoyPing` on the connection,
//!   or from its opening, so a connection that never gets its Init is closed as well. The runner's
//!   own closes use `envoy.timed_out` (ping timeout, KV timeout) and `envoy.invalid_packet#…`.
//! - **Connection ends.** A close reason that does not parse reconnects with backoff. `ws.closed`
//!   while draining ends the process (kills what remains). A connection the runner did not ask
//!   for (or one that opens after it exited) is closed at once with `envoy.shutdown`.
//! - **Termination and KV.** `Stopped` waits for the instance's requests (§4.1): a crash, a failed
//!   start or the stop-threshold kill drop the instance's requests that were never sent and wait
//!   for those in flight, which resolve by a response, the connection's end, or the KV timeout
//!   (which closes the connection). A fence, a fatal eviction and the shutdown timeout kill at
//!   once: in the spec's timing a fence finds the connection already closed by the ping timeout
//!   (requests in flight on a still-open connection, possible only with other timings, are then
//!   waited for the same way); eviction and shutdown end the connection first. A start that
//!   supersedes an older, still-running generation (an engine protocol violation, §3.5 step 4)
//!   stops the old instance at once, abandoning its requests in flight.
//! - **Connection facts.** `RunnerConnecting` is recorded when the connection opens (its id is
//!   known only then); an attempt that fails records `RunnerConnClosed` with `connect failed`.
//! - **A start while fenced** creates the record and terminates it at once: the runner records
//!   `InstanceTerminate` (and emits `Stopped{ERROR}`) without an `InstanceStart`, since no
//!   instance ran.
//! - **Acks.** A `ToEnvoyCommands` frame whose commands were all held sends no (empty)
//!   `ToRivetAckCommands`. A stale start is acknowledged at its own index (0). An `EventForget` is
//!   recorded only when entries were forgotten.
//! - **KV responses** for an unknown request id are ignored (fact `Probe`
//!   `kv-response-unknown-request`). An application request that fails changes nothing in the
//!   instance (the application does not retry).
//! - **`instances()`** lists the instances that are starting, running or stopping (not yet
//!   terminated). Application actions apply to the newest such instance of the actor when it is
//!   running; a `Crash` also applies while it is starting.
//! - **Drain.** `ToRivetStopping` is sent at `shutdown` if ready, and again after every later
//!   `ToEnvoyInit` (it is idempotent). The drain is complete when no record remains: every
//!   instance terminated and every tombstone was dropped by the acknowledgement of its `Stopped`.

pub mod app;
pub mod commands;
pub mod conn;
pub mod events;
pub mod instance;
pub mod kvreq;
pub mod startup;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Timing;
use crate::constants::MAX_FRAME_BYTES;
use crate::env::RunnerEnv;
use crate::fact::{CommandDisposition, CommandKind, ConnId, Fact};
use crate::keys::{ActorId, RunnerId};
use crate::preload::Manifest;
use crate::protocol::{
    ActorCheckpoint, ActorName, ActorState as WireActorState, ActorStateStopped, Command,
    CommandWrapper, Event, EventActorStateUpdate, EventWrapper, KvRequestData, StopCode, ToEnvoy,
    ToEnvoyKvResponse, ToRivet, ToRivetAckCommands, ToRivetKvRequest, ToRivetMetadata, ToRivetPong,
};
use crate::wire::{
    to_envoy_kind, validate_to_envoy, CloseReason, Codec, ConnectRequest, DataFrame, FrameError,
    RunnerReaction, SUB_PROTOCOL,
};

pub use app::{AppAction, AppConfig, AppKey};
use app::{AppEffect, RunningApp};
use commands::{classify, generations_of, Classification, HeldCommands, Record};
use conn::{fresh_envoy_key, reconnect_delay, Link};
use events::EventLog;
use instance::{Instance, Phase};
use kvreq::{request_kind, KvTable, Purpose, RequestState};
use startup::{DriverStep, LiveResult, Startup, StartupDriver};

/// Configuration of one runner process.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub namespace: String,
    pub pool_name: String,
    /// The deployment version (connect request `version`).
    pub version: u32,
    /// Capacity; `None` sends no `slots` (the engine uses `DEFAULT_SLOTS`).
    pub slots: Option<u32>,
    /// Preload manifests declared per actor name (`ToRivetMetadata.prepopulateActorNames`); the
    /// runner also builds each start's `PreloadMap` with the manifest of the actor's name.
    pub manifests: BTreeMap<String, Manifest>,
    /// Raw `ActorName.metadata` JSON declared for an actor name instead of the one built from
    /// `manifests` (scenarios use it to declare absent or invalid manifests, `spec/preload.md`
    /// §9); the runner's own `PreloadMap` still uses `manifests` only.
    pub actor_name_metadata: BTreeMap<String, String>,
    /// The runner metadata (`ToRivetMetadata.metadata`); must be a JSON object.
    pub metadata: Option<serde_json::Value>,
    pub timing: Timing,
    /// Frame size limit, both directions.
    pub max_frame_bytes: usize,
    pub app: AppConfig,
}

impl RunnerConfig {
    /// A runner of version 1 in `namespace` / `pool_name` with the spec's defaults, no slots,
    /// no manifests and no metadata.
    pub fn new(namespace: impl Into<String>, pool_name: impl Into<String>) -> Self {
        RunnerConfig {
            namespace: namespace.into(),
            pool_name: pool_name.into(),
            version: 1,
            slots: None,
            manifests: BTreeMap::new(),
            actor_name_metadata: BTreeMap::new(),
            metadata: None,
            timing: Timing::default(),
            max_frame_bytes: MAX_FRAME_BYTES,
            app: AppConfig::default(),
        }
    }
}

/// A one-shot timer of the runner (see the module comment on staleness).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RunnerTimer {
    /// Reconnect after a backoff; stale unless it is the latest one scheduled.
    Reconnect { seq: u64 },
    /// Check the ping timeout of connection `conn`.
    PingTimeout { conn: ConnId, at_ms: u64 },
    /// Check the fence (`envoyLostThreshold`).
    Fence { at_ms: u64 },
    /// Check the periodic event re-send.
    EventResend { at_ms: u64 },
    /// Check the deadline of KV request `request_id`.
    KvTimeout { request_id: u32 },
    /// The graceful stop of `(actor, generation)` reached `actorStopThreshold`.
    StopThreshold { actor: ActorId, generation: u32 },
    /// The graceful drain reached `runner_shutdown_timeout_ms`.
    ShutdownTimeout,
}

/// What the runner asks the simulator to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunnerOutput {
    /// Open a WebSocket with this request and these offered sub-protocols; answer with
    /// [`RunnerClient::on_open`] or [`RunnerClient::on_connect_failed`].
    Connect { path_and_query: String, subprotocols: Vec<String> },
    /// Send one binary message on `conn`.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Close `conn` (after the sends before this output) with `reason`.
    Close { conn: ConnId, reason: CloseReason },
    /// Call [`RunnerClient::on_timer`] with `timer` at local time `at_ms`.
    Timer { at_ms: u64, timer: RunnerTimer },
    /// The process ends; no further call does anything.
    Exit { reason: String },
}

/// What one call produces: outputs in order, and the events emitted during the call that still
/// have to be framed.
#[derive(Default)]
struct Out {
    outputs: Vec<RunnerOutput>,
    events: Vec<EventWrapper>,
}

/// The graceful drain in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Draining {
    deadline_ms: u64,
}

/// The runner client. See the module comment.
pub struct RunnerClient {
    config: RunnerConfig,
    id: RunnerId,
    codec: Codec,
    link: Link,
    /// Reconnects scheduled since the last `ToEnvoyInit`.
    attempt: u32,
    /// Sequence number of the latest reconnect timer.
    reconnect_seq: u64,
    /// `envoyLostThreshold` and `actorStopThreshold` from the last `ToEnvoyInit` (config
    /// defaults before the first).
    lost_threshold_ms: u64,
    stop_threshold_ms: u64,
    /// Local time of the last `ToEnvoyInit` or `ToEnvoyPing` (the fence's `last_auth`).
    last_auth_ms: Option<u64>,
    fenced: bool,
    /// Local time of the last `ToEnvoyInit` or `ToEnvoyPing` on the open connection, or of its
    /// opening (the ping timeout's reference).
    last_ping_ms: u64,
    ping_timer_at: Option<u64>,
    fence_timer_at: Option<u64>,
    resend_timer_at: Option<u64>,
    records: BTreeMap<(ActorId, u32), Record>,
    held: HeldCommands,
    events: EventLog,
    kv: KvTable,
    draining: Option<Draining>,
    exited: bool,
}

impl RunnerClient {
    /// A new runner process: a fresh `envoy_key` from `env.rng`, and a connect request.
    pub fn new(env: &mut RunnerEnv, config: RunnerConfig) -> (RunnerClient, Vec<RunnerOutput>) {
        let envoy_key = fresh_envoy_key(env.rng);
        let id = RunnerId::new(config.namespace.clone(), envoy_key);
        let mut client = RunnerClient {
            codec: Codec::new(config.max_frame_bytes),
            lost_threshold_ms: config.timing.runner_lost_threshold_ms,
            stop_threshold_ms: config.timing.actor_stop_threshold_ms,
            config,
            id,
            link: Link::Down,
            attempt: 0,
            reconnect_seq: 0,
            last_auth_ms: None,
            fenced: false,
            last_ping_ms: 0,
            ping_timer_at: None,
            fence_timer_at: None,
            resend_timer_at: None,
            records: BTreeMap::new(),
            held: HeldCommands::default(),
            events: EventLog::default(),
            kv: KvTable::default(),
            draining: None,
            exited: false,
        };
        let mut out = Out::default();
        client.connect(&mut out);
        (client, out.outputs)
    }

    /// The runner identity `(namespace, envoy_key)`.
    pub fn id(&self) -> RunnerId {
        self.id.clone()
    }

    /// The connect request this runner sends.
    pub fn connect_request(&self) -> ConnectRequest {
        let request = ConnectRequest::new(
            self.config.namespace.clone(),
            self.config.pool_name.clone(),
            self.id.envoy_key.clone(),
            self.config.version,
        );
        match self.config.slots {
            Some(slots) => request.with_slots(slots),
            None => request,
        }
    }

    /// Live instances `(A, g)`: starting, running or stopping (not yet terminated).
    pub fn instances(&self) -> Vec<(ActorId, u32)> {
        self.records
            .iter()
            .filter(|(_, r)| !r.instance.is_terminated())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether the process exited.
    pub fn has_exited(&self) -> bool {
        self.exited
    }

    /// The connection the runner has open, if any.
    pub fn open_connection(&self) -> Option<ConnId> {
        self.link.open()
    }

    /// Number of unacknowledged events held, over every `(A, g)`.
    pub fn unacked_events(&self) -> usize {
        self.events.unacked_count()
    }

    /// Number of records (live instances and tombstones).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Number of held commands.
    pub fn held_commands(&self) -> usize {
        self.held.len()
    }

    /// Number of unresolved KV requests.
    pub fn pending_kv_requests(&self) -> usize {
        self.kv.len()
    }

    // ---- connection events ---------------------------------------------------------------

    /// The connection asked for opened as `conn`: send `ToRivetMetadata` at once.
    pub fn on_open(&mut self, env: &mut RunnerEnv, conn: ConnId) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        if self.exited || self.link != Link::Connecting {
            out.outputs.push(RunnerOutput::Close { conn, reason: CloseReason::EnvoyShutdown });
            return out.outputs;
        }
        self.link = Link::Open { conn, ready: false };
        env.facts.record(Fact::RunnerConnecting { runner: self.id.clone(), conn });
        self.last_ping_ms = env.now_ms;
        self.ping_timer_at = None;
        self.arm_ping_timer(env, &mut out);
        let metadata = self.metadata_frame();
        self.send(env, &mut out, &ToRivet::ToRivetMetadata(metadata));
        self.finish(env, out)
    }

    /// The connection asked for could not be opened.
    pub fn on_connect_failed(&mut self, env: &mut RunnerEnv, conn: ConnId) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        if self.exited || self.link != Link::Connecting {
            return out.outputs;
        }
        env.facts.record(Fact::RunnerConnClosed {
            runner: self.id.clone(),
            conn,
            reason: "connect failed".to_owned(),
        });
        self.link = Link::Down;
        self.schedule_reconnect(env, &mut out, false);
        self.finish(env, out)
    }

    /// One data frame arrived on `conn`.
    pub fn on_frame(
        &mut self,
        env: &mut RunnerEnv,
        conn: ConnId,
        frame: DataFrame<'_>,
    ) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        let Link::Open { conn: current, ready } = self.link else {
            return out.outputs;
        };
        if self.exited || current != conn {
            return out.outputs;
        }
        let message = match self.codec.decode_to_envoy_frame(frame) {
            Ok(message) => message,
            Err(error) => {
                self.protocol_violation(env, &mut out, error.close_detail());
                return self.finish(env, out);
            }
        };
        if let Err(violation) = validate_to_envoy(&message) {
            self.protocol_violation(env, &mut out, violation.close_detail());
            return self.finish(env, out);
        }
        match (ready, message) {
            (false, ToEnvoy::ToEnvoyInit(init)) => self.on_init(env, &mut out, conn, &init),
            (false, other) => {
                let detail = format!("{} before ToEnvoyInit", to_envoy_kind(&other));
                self.protocol_violation(env, &mut out, detail);
            }
            (true, ToEnvoy::ToEnvoyInit(_)) => {
                self.protocol_violation(env, &mut out, "a second ToEnvoyInit".to_owned());
            }
            (true, ToEnvoy::ToEnvoyCommands(commands)) => {
                self.on_commands(env, &mut out, conn, commands)
            }
            (true, ToEnvoy::ToEnvoyAckEvents(ack)) => {
                self.on_ack_events(env, &mut out, &ack.last_event_checkpoints)
            }
            (true, ToEnvoy::ToEnvoyKvResponse(response)) => {
                self.on_kv_response(env, &mut out, conn, response)
            }
            (true, ToEnvoy::ToEnvoyPing(ping)) => {
                self.send(env, &mut out, &ToRivet::ToRivetPong(ToRivetPong { ts: ping.ts }));
                self.authorized(env, &mut out);
            }
            // Tunnel and SQLite frames are valid but out of the model's scope: ignored.
            (true, _) => {}
        }
        self.finish(env, out)
    }

    /// Connection `conn` ended (peer close or reset), with the peer's reason if any.
    pub fn on_closed(
        &mut self,
        env: &mut RunnerEnv,
        conn: ConnId,
        reason: Option<&str>,
    ) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        if self.exited || self.link.open() != Some(conn) {
            return out.outputs;
        }
        let text = reason.unwrap_or("closed without reason").to_owned();
        self.end_connection(env, &mut out, conn, text);
        let parsed = reason.and_then(|r| CloseReason::parse(r).ok());
        match parsed.as_ref().and_then(CloseReason::runner_reaction) {
            Some(RunnerReaction::Fatal) => self.fatal_eviction(env, &mut out),
            Some(RunnerReaction::ReconnectNow) => self.connect(&mut out),
            Some(RunnerReaction::ReconnectMaxBackoff) => {
                self.schedule_reconnect(env, &mut out, true)
            }
            Some(RunnerReaction::ReconnectBackoff) | None => {
                if parsed == Some(CloseReason::Closed) && self.draining.is_some() {
                    self.kill_all(env, &mut out, "engine closed the connection during the drain");
                    self.exit(env, &mut out, "closed by the engine while draining");
                } else {
                    self.schedule_reconnect(env, &mut out, false);
                }
            }
        }
        self.finish(env, out)
    }

    /// A timer the runner armed fired.
    pub fn on_timer(&mut self, env: &mut RunnerEnv, timer: RunnerTimer) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        if self.exited {
            return out.outputs;
        }
        match timer {
            RunnerTimer::Reconnect { seq } => {
                if self.link == (Link::Backoff { seq }) {
                    self.connect(&mut out);
                }
            }
            RunnerTimer::PingTimeout { conn, at_ms } => {
                if self.link.open() == Some(conn) {
                    if self.ping_timer_at == Some(at_ms) {
                        self.ping_timer_at = None;
                    }
                    if env.now_ms.saturating_sub(self.last_ping_ms)
                        >= self.config.timing.runner_ping_timeout_ms
                    {
                        self.close(env, &mut out, CloseReason::EnvoyTimedOut);
                        self.schedule_reconnect(env, &mut out, false);
                    } else {
                        self.arm_ping_timer(env, &mut out);
                    }
                }
            }
            RunnerTimer::Fence { at_ms } => {
                if self.fence_timer_at == Some(at_ms) {
                    self.fence_timer_at = None;
                }
                self.check_fence(env, &mut out);
            }
            RunnerTimer::EventResend { at_ms } => {
                if self.resend_timer_at == Some(at_ms) {
                    self.resend_timer_at = None;
                }
                if self.link.ready().is_some() {
                    let interval = self.config.timing.event_resend_interval_ms;
                    for event in self.events.due_resends(env.now_ms, interval) {
                        self.queue_event(env, &mut out, event);
                    }
                    self.arm_resend_timer(env, &mut out);
                }
            }
            RunnerTimer::KvTimeout { request_id } => self.on_kv_timeout(env, &mut out, request_id),
            RunnerTimer::StopThreshold { actor, generation } => {
                let key = (actor.clone(), generation);
                if self
                    .records
                    .get(&key)
                    .is_some_and(|r| matches!(r.instance.phase, Phase::Stopping))
                {
                    self.terminate(
                        env,
                        &mut out,
                        &actor,
                        generation,
                        StopCode::Error,
                        "killed after actorStopThreshold".to_owned(),
                    );
                }
            }
            RunnerTimer::ShutdownTimeout => {
                if self.draining.is_some_and(|d| env.now_ms >= d.deadline_ms) {
                    if self.link.open().is_some() {
                        self.close(env, &mut out, CloseReason::EnvoyShutdown);
                    }
                    self.kill_all(env, &mut out, "runner shutdown timeout");
                    self.exit(env, &mut out, "shutdown timeout");
                }
            }
        }
        self.finish(env, out)
    }

    /// An action of the workload driver on the live instance of `actor` (ignored if none).
    pub fn app(
        &mut self,
        env: &mut RunnerEnv,
        actor: &ActorId,
        action: AppAction,
    ) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        if self.exited {
            return out.outputs;
        }
        let live = generations_of(&self.records, actor)
            .filter(|(_, r)| r.instance.is_active())
            .map(|((_, g), _)| *g)
            .next_back();
        let Some(generation) = live else {
            return out.outputs;
        };
        let key = (actor.clone(), generation);
        let effects = match self.records.get_mut(&key).map(|r| &mut r.instance.phase) {
            Some(Phase::Running(app)) => app.apply(&action),
            Some(Phase::Starting(_)) if action == AppAction::Crash => vec![AppEffect::Crash],
            _ => Vec::new(),
        };
        for effect in effects {
            match effect {
                AppEffect::Emit(event) => {
                    self.emit(env, &mut out, actor, generation, event);
                }
                AppEffect::Kv(data) => {
                    self.issue_kv(env, &mut out, actor, generation, Purpose::App, data)
                }
                AppEffect::Crash => self.terminate(
                    env,
                    &mut out,
                    actor,
                    generation,
                    StopCode::Error,
                    "crashed".to_owned(),
                ),
            }
        }
        self.finish(env, out)
    }

    /// Begin the graceful drain (§6.7): send `ToRivetStopping`, keep serving, exit once every
    /// instance terminated and every `Stopped` was acknowledged, or at the shutdown timeout.
    pub fn shutdown(&mut self, env: &mut RunnerEnv) -> Vec<RunnerOutput> {
        let mut out = Out::default();
        if self.exited || self.draining.is_some() {
            return out.outputs;
        }
        let deadline_ms = env.now_ms.saturating_add(self.config.timing.runner_shutdown_timeout_ms);
        self.draining = Some(Draining { deadline_ms });
        env.facts.record(Fact::RunnerStopping { runner: self.id.clone() });
        if self.link.ready().is_some() {
            self.send(env, &mut out, &ToRivet::ToRivetStopping);
        }
        out.outputs
            .push(RunnerOutput::Timer { at_ms: deadline_ms, timer: RunnerTimer::ShutdownTimeout });
        self.check_drain_complete(env, &mut out);
        self.finish(env, out)
    }

    // ---- frames ---------------------------------------------------------------------------

    fn metadata_frame(&self) -> ToRivetMetadata {
        let declared: BTreeMap<String, String> = self
            .config
            .manifests
            .iter()
            .map(|(name, manifest)| (name.clone(), manifest.to_metadata_json()))
            .chain(self.config.actor_name_metadata.clone())
            .collect();
        let names = (!declared.is_empty()).then(|| {
            declared
                .into_iter()
                .map(|(name, metadata)| (name.into(), ActorName { metadata: metadata.into() }))
                .collect()
        });
        ToRivetMetadata {
            prepopulate_actor_names: names,
            metadata: self.config.metadata.as_ref().map(|m| m.to_string().into()),
        }
    }

    fn on_init(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        conn: ConnId,
        init: &crate::protocol::ToEnvoyInit,
    ) {
        let lost = init.metadata.envoy_lost_threshold;
        let stop = init.metadata.actor_stop_threshold;
        if lost <= 0 || stop <= 0 {
            let detail = format!(
                "ToEnvoyInit thresholds must be positive (envoyLostThreshold {lost}, actorStopThreshold {stop})"
            );
            self.protocol_violation(env, out, detail);
            return;
        }
        self.lost_threshold_ms = lost as u64;
        self.stop_threshold_ms = stop as u64;
        self.link = Link::Open { conn, ready: true };
        env.facts.record(Fact::RunnerInit { runner: self.id.clone(), conn });
        self.attempt = 0;
        self.authorized(env, out);
        // Re-send every unacknowledged event, then the queued KV requests.
        for event in self.events.all_unacked(env.now_ms) {
            self.queue_event(env, out, event);
        }
        for id in self.kv.queued() {
            self.send_kv(env, out, id);
        }
        if self.draining.is_some() {
            self.send(env, out, &ToRivet::ToRivetStopping);
        }
        self.arm_resend_timer(env, out);
    }

    /// A `ToEnvoyInit` or `ToEnvoyPing`: the fence and ping timeout restart, and a fenced runner
    /// may start instances again.
    fn authorized(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        self.last_auth_ms = Some(env.now_ms);
        self.last_ping_ms = env.now_ms;
        self.fenced = false;
        self.arm_fence_timer(env, out);
    }

    fn protocol_violation(&mut self, env: &mut RunnerEnv, out: &mut Out, detail: String) {
        env.facts.record(Fact::RunnerProtocolViolation {
            runner: self.id.clone(),
            detail: detail.clone(),
        });
        self.close(env, out, CloseReason::EnvoyInvalidPacket { detail });
        self.schedule_reconnect(env, out, false);
    }

    /// Encode and send `message` on the open connection, after the pending events.
    fn send(&mut self, env: &mut RunnerEnv, out: &mut Out, message: &ToRivet) {
        self.flush_events(env, out);
        let Some(conn) = self.link.open() else {
            return;
        };
        match self.codec.encode_to_rivet(message) {
            Ok(bytes) => out.outputs.push(RunnerOutput::Send { conn, bytes }),
            Err(error) => env.facts.record(Fact::Probe {
                name: format!("runner-frame-unencodable: {}", probe_detail(&error)),
            }),
        }
    }

    /// Queue an event for the current call's event frames (only while ready).
    fn queue_event(&mut self, env: &mut RunnerEnv, out: &mut Out, event: EventWrapper) {
        // One frame never holds an (A, g)'s events out of order.
        let disorder = out.events.iter().any(|e| {
            e.checkpoint.actor_id == event.checkpoint.actor_id
                && e.checkpoint.generation == event.checkpoint.generation
                && e.checkpoint.index >= event.checkpoint.index
        });
        if disorder {
            self.flush_events(env, out);
        }
        out.events.push(event);
        if out.events.len() >= self.config.timing.events_frame_max.max(1) {
            self.flush_events(env, out);
        }
    }

    /// Frame the pending events (at most `events_frame_max` each) on the ready connection.
    fn flush_events(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        if out.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut out.events);
        let Some(conn) = self.link.ready() else {
            return;
        };
        for chunk in events.chunks(self.config.timing.events_frame_max.max(1)) {
            self.send_events_frame(env, out, conn, chunk);
        }
    }

    fn send_events_frame(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        conn: ConnId,
        events: &[EventWrapper],
    ) {
        match self.codec.encode_to_rivet(&ToRivet::ToRivetEvents(events.to_vec())) {
            Ok(bytes) => out.outputs.push(RunnerOutput::Send { conn, bytes }),
            // Too large for the frame limit: halve; a single event that cannot be framed stays
            // in the history, unsent.
            Err(_) if events.len() > 1 => {
                let (a, b) = events.split_at(events.len() / 2);
                self.send_events_frame(env, out, conn, a);
                self.send_events_frame(env, out, conn, b);
            }
            Err(error) => env.facts.record(Fact::Probe {
                name: format!("runner-frame-unencodable: {}", probe_detail(&error)),
            }),
        }
    }

    /// Flush and return the call's outputs.
    fn finish(&mut self, env: &mut RunnerEnv, mut out: Out) -> Vec<RunnerOutput> {
        self.flush_events(env, &mut out);
        out.outputs
    }

    // ---- connection management -------------------------------------------------------------

    fn connect(&mut self, out: &mut Out) {
        self.link = Link::Connecting;
        out.outputs.push(RunnerOutput::Connect {
            path_and_query: self.connect_request().to_path_and_query(),
            subprotocols: vec![SUB_PROTOCOL.to_owned()],
        });
    }

    fn schedule_reconnect(&mut self, env: &mut RunnerEnv, out: &mut Out, max: bool) {
        let delay = reconnect_delay(&self.config.timing, self.attempt, max, env.rng);
        self.attempt = self.attempt.saturating_add(1);
        self.reconnect_seq += 1;
        self.link = Link::Backoff { seq: self.reconnect_seq };
        out.outputs.push(RunnerOutput::Timer {
            at_ms: env.now_ms.saturating_add(delay),
            timer: RunnerTimer::Reconnect { seq: self.reconnect_seq },
        });
    }

    /// Close the open connection with `reason` (after the pending frames) and end it.
    fn close(&mut self, env: &mut RunnerEnv, out: &mut Out, reason: CloseReason) {
        self.flush_events(env, out);
        let Some(conn) = self.link.open() else {
            return;
        };
        out.outputs.push(RunnerOutput::Close { conn, reason: reason.clone() });
        self.end_connection(env, out, conn, reason.to_string());
    }

    /// Every connection end (§2.6): held commands dropped, requests in flight failed as unknown
    /// outcome, instances kept.
    fn end_connection(&mut self, env: &mut RunnerEnv, out: &mut Out, conn: ConnId, reason: String) {
        env.facts.record(Fact::RunnerConnClosed { runner: self.id.clone(), conn, reason });
        self.link = Link::Down;
        self.ping_timer_at = None;
        self.held.clear();
        for id in self.kv.in_flight() {
            if let Some(request) = self.kv.remove(id) {
                self.resolve(env, out, id, request, LiveResult::Unknown);
            }
        }
    }

    fn arm_ping_timer(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        let Some(conn) = self.link.open() else {
            return;
        };
        let at = self.last_ping_ms.saturating_add(self.config.timing.runner_ping_timeout_ms);
        if let Some(timer) = arm(&mut self.ping_timer_at, at.max(env.now_ms)) {
            out.outputs.push(RunnerOutput::Timer {
                at_ms: timer,
                timer: RunnerTimer::PingTimeout { conn, at_ms: timer },
            });
        }
    }

    fn arm_fence_timer(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        let Some(last_auth) = self.last_auth_ms else {
            return;
        };
        if self.fenced {
            return;
        }
        let at = last_auth.saturating_add(self.lost_threshold_ms).max(env.now_ms);
        if let Some(at_ms) = arm(&mut self.fence_timer_at, at) {
            out.outputs.push(RunnerOutput::Timer { at_ms, timer: RunnerTimer::Fence { at_ms } });
        }
    }

    fn arm_resend_timer(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        if self.link.ready().is_none() {
            return;
        }
        let Some(due) = self.events.next_resend_at(self.config.timing.event_resend_interval_ms)
        else {
            return;
        };
        if let Some(at_ms) = arm(&mut self.resend_timer_at, due.max(env.now_ms)) {
            out.outputs
                .push(RunnerOutput::Timer { at_ms, timer: RunnerTimer::EventResend { at_ms } });
        }
    }

    fn check_fence(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        let Some(last_auth) = self.last_auth_ms else {
            return;
        };
        if self.fenced {
            return;
        }
        if env.now_ms.saturating_sub(last_auth) < self.lost_threshold_ms {
            self.arm_fence_timer(env, out);
            return;
        }
        self.fenced = true;
        env.facts.record(Fact::Fence { runner: self.id.clone() });
        let live: Vec<(ActorId, u32)> = self.instances();
        for (actor, generation) in live {
            self.terminate(env, out, &actor, generation, StopCode::Error, "runner lost".to_owned());
        }
    }

    fn fatal_eviction(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        self.kill_all(env, out, "evicted by a newer connection");
        env.facts.record(Fact::FatalEviction { runner: self.id.clone() });
        self.exit(env, out, "evicted");
    }

    fn exit(&mut self, env: &mut RunnerEnv, out: &mut Out, reason: &str) {
        self.flush_events(env, out);
        env.facts.record(Fact::RunnerExit { runner: self.id.clone(), reason: reason.to_owned() });
        out.outputs.push(RunnerOutput::Exit { reason: reason.to_owned() });
        self.exited = true;
        self.link = Link::Down;
    }

    fn check_drain_complete(&mut self, env: &mut RunnerEnv, out: &mut Out) {
        if self.draining.is_none() || self.exited || !self.records.is_empty() {
            return;
        }
        if self.link.open().is_some() {
            self.close(env, out, CloseReason::EnvoyShutdown);
        }
        self.exit(env, out, "shutdown");
    }

    // ---- commands --------------------------------------------------------------------------

    fn on_commands(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        conn: ConnId,
        commands: Vec<CommandWrapper>,
    ) {
        // `(A, g)` touched by this frame, in first-touch order, with the index to acknowledge.
        let mut touched: Vec<((ActorId, u32), i64)> = Vec::new();
        for command in commands {
            let actor = command.checkpoint.actor_id.to_string();
            self.process_command(
                env,
                out,
                conn,
                &actor,
                command.checkpoint.generation,
                command.checkpoint.index,
                command.inner,
                &mut touched,
            );
        }
        if touched.is_empty() {
            return;
        }
        let checkpoints: Vec<ActorCheckpoint> = touched
            .iter()
            .map(|((actor, generation), index)| {
                let index =
                    self.records.get(&(actor.clone(), *generation)).map_or(*index, |r| r.last_cmd);
                ActorCheckpoint { actor_id: actor.clone().into(), generation: *generation, index }
            })
            .collect();
        for checkpoint in &checkpoints {
            env.facts.record(Fact::RunnerAckCommands {
                runner: self.id.clone(),
                conn,
                actor: checkpoint.actor_id.to_string(),
                generation: checkpoint.generation,
                index: checkpoint.index,
            });
        }
        let ack = ToRivetAckCommands { last_command_checkpoints: checkpoints };
        self.send(env, out, &ToRivet::ToRivetAckCommands(ack));
    }

    #[allow(clippy::too_many_arguments)]
    fn process_command(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        conn: ConnId,
        actor: &str,
        generation: u32,
        index: i64,
        command: Command,
        touched: &mut Vec<((ActorId, u32), i64)>,
    ) {
        let kind = match &command {
            Command::CommandStartActor(_) => CommandKind::Start,
            Command::CommandStopActor(stop) => CommandKind::Stop(stop.reason),
        };
        let classification =
            classify(&self.records, actor, generation, index, kind == CommandKind::Start);
        let disposition = match classification {
            Classification::Duplicate => CommandDisposition::Dup,
            Classification::Moot => CommandDisposition::Moot,
            Classification::Stale => CommandDisposition::Stale,
            Classification::Start { .. } | Classification::Execute => CommandDisposition::Exec,
            Classification::Hold => CommandDisposition::Hold,
        };
        env.facts.record(Fact::RunnerCommand {
            runner: self.id.clone(),
            conn,
            actor: actor.to_owned(),
            generation,
            index,
            kind,
            disposition,
        });
        let key = (actor.to_owned(), generation);
        match classification {
            Classification::Hold => {
                if !self.held.hold(actor, generation, index, command) {
                    env.facts.record(Fact::Probe { name: "held-command-dropped".to_owned() });
                }
                return;
            }
            Classification::Duplicate | Classification::Stale => {}
            Classification::Moot => {
                if let Some(record) = self.records.get_mut(&key) {
                    record.last_cmd = record.last_cmd.max(index);
                }
            }
            Classification::Start { supersede } => {
                if let Command::CommandStartActor(start) = command {
                    self.start_instance(env, out, actor, generation, &supersede, start);
                }
            }
            Classification::Execute => {
                if let Some(record) = self.records.get_mut(&key) {
                    record.last_cmd = index;
                }
                if let Command::CommandStopActor(_) = command {
                    self.begin_graceful_stop(env, out, actor, generation);
                }
            }
        }
        if !touched.iter().any(|(k, _)| k == &key) {
            touched.push((key.clone(), index));
        }
        // Release a held successor.
        let Some(successor) = self.records.get(&key).and_then(|r| r.last_cmd.checked_add(1)) else {
            return;
        };
        if let Some(next) = self.held.take(actor, generation, successor) {
            self.process_command(env, out, conn, actor, generation, successor, next, touched);
        }
    }

    fn start_instance(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        supersede: &[u32],
        start: crate::protocol::CommandStartActor,
    ) {
        for old in supersede {
            self.kill(env, out, actor, *old, "superseded by a newer generation");
            env.facts.record(Fact::RunnerProtocolViolation {
                runner: self.id.clone(),
                detail: format!(
                    "start of ({actor}, {generation}) while generation {old} still runs"
                ),
            });
        }
        let key = (actor.to_owned(), generation);
        if self.fenced {
            self.records.insert(
                key,
                Record {
                    last_cmd: 0,
                    instance: Instance::new(Phase::Dying {
                        code: StopCode::Error,
                        message: String::new(),
                    }),
                },
            );
            self.finish_instance(
                env,
                out,
                actor,
                generation,
                StopCode::Error,
                "runner fenced".to_owned(),
            );
            return;
        }
        env.facts.record(Fact::InstanceStart {
            runner: self.id.clone(),
            actor: actor.to_owned(),
            generation,
        });
        let program = Startup::new(actor, generation, start.config.input.as_deref());
        let manifest = self.config.manifests.get(start.config.name.as_str());
        let mut driver = StartupDriver::new(
            program,
            start.preloaded_kv.as_ref(),
            manifest,
            self.config.app.list_page_limit,
        );
        let step = driver.start();
        self.records.insert(
            key,
            Record { last_cmd: 0, instance: Instance::new(Phase::Starting(Box::new(driver))) },
        );
        self.on_driver_step(env, out, actor, generation, step);
    }

    fn begin_graceful_stop(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
    ) {
        let key = (actor.to_owned(), generation);
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        if !record.instance.is_active() {
            return;
        }
        record.instance.phase = Phase::Stopping;
        out.outputs.push(RunnerOutput::Timer {
            at_ms: env.now_ms.saturating_add(self.stop_threshold_ms),
            timer: RunnerTimer::StopThreshold { actor: actor.to_owned(), generation },
        });
        self.maybe_finish(env, out, actor, generation);
    }

    // ---- instances ---------------------------------------------------------------------------

    fn on_driver_step(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        step: DriverStep,
    ) {
        match step {
            DriverStep::Live(data) => {
                self.issue_kv(env, out, actor, generation, Purpose::Startup, data)
            }
            DriverStep::Done { record, live_reads, state } => {
                let key = (actor.to_owned(), generation);
                let Some(instance) = self.records.get_mut(&key).map(|r| &mut r.instance) else {
                    return;
                };
                let had_bundle = match &instance.phase {
                    Phase::Starting(driver) => driver.had_bundle(),
                    _ => return,
                };
                instance.phase = Phase::Running(RunningApp::new(generation, state));
                env.facts.record(Fact::StartupObserved {
                    runner: self.id.clone(),
                    actor: actor.to_owned(),
                    generation,
                    had_bundle,
                    live_reads,
                    record,
                });
                let running = Event::EventActorStateUpdate(EventActorStateUpdate {
                    state: WireActorState::ActorStateRunning,
                });
                self.emit(env, out, actor, generation, running);
            }
            DriverStep::Failed(failure) => {
                self.terminate(env, out, actor, generation, StopCode::Error, failure.to_string())
            }
        }
    }

    /// Emit `event` for instance `(actor, generation)`: into its history, then onto the wire if
    /// ready.
    fn emit(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        event: Event,
    ) -> i64 {
        let ready = self.link.ready().is_some();
        let wrapper = self.events.append(actor, generation, event.clone(), env.now_ms, ready);
        env.facts.record(Fact::EventEmit {
            runner: self.id.clone(),
            actor: actor.to_owned(),
            generation,
            index: wrapper.checkpoint.index,
            event,
        });
        let index = wrapper.checkpoint.index;
        if ready {
            self.queue_event(env, out, wrapper);
            self.arm_resend_timer(env, out);
        }
        index
    }

    /// End instance `(actor, generation)` with `code`: requests never sent are dropped, and
    /// `Stopped` follows once the requests in flight resolved.
    fn terminate(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        code: StopCode,
        message: String,
    ) {
        let key = (actor.to_owned(), generation);
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        if record.instance.is_terminated() {
            return;
        }
        record.instance.phase = Phase::Dying { code, message };
        let queued: Vec<u32> = record
            .instance
            .outstanding
            .iter()
            .copied()
            .filter(|id| self.kv.get(*id).is_some_and(|r| r.state == RequestState::Queued))
            .collect();
        for id in queued {
            self.kv.remove(id);
            record.instance.outstanding.remove(&id);
        }
        self.maybe_finish(env, out, actor, generation);
    }

    /// Kill instance `(actor, generation)` at once with `Stopped{ERROR, message}`, abandoning
    /// its outstanding requests.
    fn kill(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        message: &str,
    ) {
        let key = (actor.to_owned(), generation);
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        if record.instance.is_terminated() {
            return;
        }
        let outstanding = std::mem::take(&mut record.instance.outstanding);
        for id in outstanding {
            if self.kv.get(id).is_some_and(|r| r.state == RequestState::Queued) {
                self.kv.remove(id);
            }
        }
        self.finish_instance(env, out, actor, generation, StopCode::Error, message.to_owned());
    }

    fn kill_all(&mut self, env: &mut RunnerEnv, out: &mut Out, message: &str) {
        for (actor, generation) in self.instances() {
            self.kill(env, out, &actor, generation, message);
        }
    }

    /// `Stopped` for a stopping or dying instance whose requests all resolved.
    fn maybe_finish(&mut self, env: &mut RunnerEnv, out: &mut Out, actor: &str, generation: u32) {
        let key = (actor.to_owned(), generation);
        let Some(record) = self.records.get(&key) else {
            return;
        };
        if !record.instance.outstanding.is_empty() {
            return;
        }
        let (code, message) = match &record.instance.phase {
            Phase::Stopping => (StopCode::Ok, String::new()),
            Phase::Dying { code, message } => (*code, message.clone()),
            _ => return,
        };
        self.finish_instance(env, out, actor, generation, code, message);
    }

    /// The instance terminated: record it and emit its `Stopped`; the record is a tombstone.
    fn finish_instance(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        code: StopCode,
        message: String,
    ) {
        env.facts.record(Fact::InstanceTerminate {
            runner: self.id.clone(),
            actor: actor.to_owned(),
            generation,
            code,
            reason: message.clone(),
        });
        let stopped = Event::EventActorStateUpdate(EventActorStateUpdate {
            state: WireActorState::ActorStateStopped(ActorStateStopped {
                code,
                message: (!message.is_empty()).then(|| message.into()),
            }),
        });
        let stopped_index = self.emit(env, out, actor, generation, stopped);
        if let Some(record) = self.records.get_mut(&(actor.to_owned(), generation)) {
            record.instance.phase = Phase::Terminated { stopped_index };
        }
    }

    fn on_ack_events(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        checkpoints: &[ActorCheckpoint],
    ) {
        for checkpoint in checkpoints {
            let actor = checkpoint.actor_id.to_string();
            let (generation, k) = (checkpoint.generation, checkpoint.index);
            if self.events.ack(&actor, generation, k).forgot {
                env.facts.record(Fact::EventForget {
                    runner: self.id.clone(),
                    actor: actor.clone(),
                    generation,
                    index: k,
                });
            }
            let key = (actor.clone(), generation);
            let covered = self.records.get(&key).is_some_and(|r| {
                matches!(r.instance.phase, Phase::Terminated { stopped_index } if stopped_index <= k)
            });
            if covered {
                self.records.remove(&key);
                self.events.remove(&actor, generation);
                env.facts.record(Fact::TombstoneDrop {
                    runner: self.id.clone(),
                    actor,
                    generation,
                });
            }
        }
        self.check_drain_complete(env, out);
    }

    // ---- KV requests ------------------------------------------------------------------------

    fn issue_kv(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        actor: &str,
        generation: u32,
        purpose: Purpose,
        data: KvRequestData,
    ) {
        let key = (actor.to_owned(), generation);
        let deadline = env.now_ms.saturating_add(self.config.timing.kv_request_timeout_ms);
        let id = self.kv.add(actor, generation, purpose, data, deadline);
        if let Some(record) = self.records.get_mut(&key) {
            record.instance.outstanding.insert(id);
        }
        if self.link.ready().is_some() {
            self.send_kv(env, out, id);
        } else {
            out.outputs.push(RunnerOutput::Timer {
                at_ms: deadline,
                timer: RunnerTimer::KvTimeout { request_id: id },
            });
        }
    }

    /// Send queued request `id` on the ready connection.
    fn send_kv(&mut self, env: &mut RunnerEnv, out: &mut Out, id: u32) {
        let Some(conn) = self.link.ready() else {
            return;
        };
        let Some(request) = self.kv.get(id).cloned() else {
            return;
        };
        let frame = ToRivet::ToRivetKvRequest(ToRivetKvRequest {
            actor_id: request.actor.clone().into(),
            request_id: id,
            data: request.data.clone(),
        });
        self.flush_events(env, out);
        match self.codec.encode_to_rivet(&frame) {
            Ok(bytes) => {
                out.outputs.push(RunnerOutput::Send { conn, bytes });
                let deadline = env.now_ms.saturating_add(self.config.timing.kv_request_timeout_ms);
                self.kv.mark_sent(id, conn, deadline);
                out.outputs.push(RunnerOutput::Timer {
                    at_ms: deadline,
                    timer: RunnerTimer::KvTimeout { request_id: id },
                });
                env.facts.record(Fact::KvRequestSent {
                    runner: self.id.clone(),
                    conn,
                    actor: request.actor.clone(),
                    generation: request.generation,
                    request_id: id,
                    kind: request_kind(&request.data).to_owned(),
                });
            }
            Err(error) => {
                if let Some(request) = self.kv.remove(id) {
                    let reason = format!("request not sent: {}", probe_detail(&error));
                    self.resolve(env, out, id, request, LiveResult::Failed(reason));
                }
            }
        }
    }

    fn on_kv_response(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        conn: ConnId,
        response: ToEnvoyKvResponse,
    ) {
        let id = response.request_id;
        let in_flight_here =
            self.kv.get(id).is_some_and(|r| r.state == RequestState::InFlight { conn });
        if !in_flight_here {
            env.facts.record(Fact::Probe { name: "kv-response-unknown-request".to_owned() });
            return;
        }
        if let Some(request) = self.kv.remove(id) {
            self.resolve(env, out, id, request, LiveResult::Response(response.data));
        }
    }

    fn on_kv_timeout(&mut self, env: &mut RunnerEnv, out: &mut Out, id: u32) {
        let Some(request) = self.kv.get(id) else {
            return;
        };
        if env.now_ms < request.deadline_ms {
            return;
        }
        let in_flight = matches!(request.state, RequestState::InFlight { .. });
        let Some(request) = self.kv.remove(id) else {
            return;
        };
        if in_flight {
            // An unanswered request closes the connection (§4.1) and counts as failed.
            self.close(env, out, CloseReason::EnvoyTimedOut);
            self.schedule_reconnect(env, out, false);
            self.resolve(env, out, id, request, LiveResult::Failed("KV request timed out".into()));
        } else {
            let reason = "KV request timed out waiting for a connection".to_owned();
            self.resolve(env, out, id, request, LiveResult::Failed(reason));
        }
    }

    /// Request `id` (already removed from the table) resolved with `result`: hand it to its
    /// instance.
    fn resolve(
        &mut self,
        env: &mut RunnerEnv,
        out: &mut Out,
        id: u32,
        request: kvreq::KvRequest,
        result: LiveResult,
    ) {
        let (actor, generation) = (request.actor, request.generation);
        let key = (actor.clone(), generation);
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        if !record.instance.outstanding.remove(&id) {
            return;
        }
        if request.purpose == Purpose::Startup {
            if let Phase::Starting(driver) = &mut record.instance.phase {
                let step = driver.on_result(result);
                self.on_driver_step(env, out, &actor, generation, step);
                return;
            }
        }
        self.maybe_finish(env, out, &actor, generation);
    }
}

/// Arm a check timer at `at` unless one is already armed no later; returns the time to arm.
fn arm(slot: &mut Option<u64>, at: u64) -> Option<u64> {
    if slot.is_some_and(|armed| armed <= at) {
        return None;
    }
    *slot = Some(at);
    Some(at)
}

fn probe_detail(error: &FrameError) -> String {
    match error {
        FrameError::Oversized { .. } => "oversized".to_owned(),
        other => other.to_string(),
    }
}
