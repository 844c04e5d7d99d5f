//! The edge connection handler (`spec/protocol.md` §1.2, §2, §3.4, §6.2–§6.3, §6.7, §7): one
//! [`EdgeConn`] per accepted WebSocket, as a sans-IO state machine.
//!
//! Owns, for its connection only and in memory: the socket's protocol state (what was sent and
//! received), the epoch `E`, the bus subscriptions of `R`, the replay cursor, the live-forwarding
//! buffer, the demuxer (`engine::demux`), the ping loop and the last pong. Every store effect goes
//! through `engine::edge_txn` (registry), `engine::cmdlog` (reading commands), `kv` (KV requests)
//! and `preload` (bundles, in [`delivery`]). It must not touch workflow state, allocations or
//! placements, and it never waits: every input returns the outputs to act on ([`EdgeOutput`]).
//!
//! Lifecycle, in the order of §2.3:
//! 1. [`EdgeConn::accept`] validates the connect request (`ConnectRequest::parse`, namespace and
//!    pool against the [`EngineConfig`], sub-protocol `rivet` offered) and closes before any frame
//!    with `ws.invalid_request#…`, `ws.namespace_not_found` or `ws.no_runner_config`; otherwise it
//!    subscribes to the runner and eviction topics of `R`.
//! 2. [`EdgeConn::on_subscribed`]: registration (the epoch), the eviction publish `{epoch}`,
//!    `ToEnvoyInit` (the first frame, exactly once; if the registration's authorization is older
//!    than `max_step_delay_ms`, a liveness write first), the `INIT_TIMEOUT` timer and the ping
//!    loop. Runner frames that arrived before Init was sent are buffered and handled now, in order.
//! 3. The first runner frame must be `ToRivetMetadata`, else `ws.invalid_initial_packet`. The
//!    first metadata commit starts the **replay**: one page per call (the first in the metadata
//!    call, each next one on an immediate [`EdgeTimer::ReplayPage`] so bus messages can arrive in
//!    between), each page's commands hydrated and sent as frames. Bus messages meanwhile are
//!    buffered; more than `live_buffer_max` closes with `ws.timed_out`.
//! 4. After the last page: the ready transaction, `TriggerDrainer`, the buffered bus messages in
//!    arrival order, then **live**: each runner-topic message is forwarded as it arrives.
//!
//! Runner frames, after Init: metadata, command acks and `ToRivetStopping` run their transactions
//! in arrival order (the control queue; a call is atomic, so the queue never holds more than the
//! frame being handled). Events go to the demuxer. KV requests run one transaction each, in
//! arrival order (so in arrival order per actor, one at a time), through
//! `kv::execute_with_retries`, fenced by `(namespace, R, E)`. Pongs set the last pong. SQLite
//! requests are answered `SqliteErrorResponse{group: "model", code: "unsupported"}`; tunnel
//! messages are dropped. An undecodable frame or a protocol violation (`wire::validate_to_rivet`)
//! closes with `ws.invalid_packet#…` (`ws.invalid_initial_packet#…` for the first frame) and
//! nothing from it is applied.
//!
//! Teardown (on any close, or [`EdgeConn::on_socket_closed`]): stop reading and pinging,
//! unsubscribe, start the demuxer's drain, abandon nothing else (KV requests complete inside the
//! call that received them), then the teardown transaction. [`EdgeConn::is_finished`] turns true
//! when the demuxer is drained.
//!
//! Choices where the spec is silent:
//! - **Close reasons of failures.** A registry transaction refused because a newer connection
//!   registered closes with `ws.eviction`; refused because the runner is expired or its record is
//!   gone, with `ws.timed_out`. A handshake or control transaction that fails in the store after
//!   `MAX_TXN_ATTEMPTS` (registration, metadata, ready), an internal error (a stored value that does
//!   not decode, a frame the codec refuses) and a live-buffer overflow close with `ws.timed_out`
//!   too (the runner reconnects with backoff and the replay covers everything), each with a
//!   [`Fact::Probe`]. A liveness write that fails in the store skips that ping; a command ack or a
//!   drain that fails in the store is dropped with a probe (the ack is repeated after the next
//!   replay; the drain is the runner's to repeat).
//! - **Teardown timing.** The teardown transaction runs at once when the connection ends; the
//!   demuxer's drain continues after it (events carry their epoch, and eligibility must not
//!   outlive the socket).
//! - **Live commands.** One snapshot transaction reads every command key of a bus message, and the
//!   stored content (not the bus copy, which is identical by §3.2) is what is delivered.
//! - **Buffered frames before Init.** At most `live_buffer_max` runner frames are buffered before
//!   `ToEnvoyInit`; one more closes with `ws.invalid_packet` (the runner may send only its metadata
//!   before Init).
//! - **Undecodable bus payloads** (an internal error) are dropped with a probe.
//! - The reason recorded in [`Fact::EdgeConnClosed`] for a peer close or reset is
//!   [`PEER_CLOSED_REASON`].
//! - **Init authorization.** Registration and `ToEnvoyInit` happen in one call, so the renewal
//!   of a lapsed authorization before Init never runs in this model; it is kept so that a change
//!   of that order cannot silently break the timing envelope of §6.3.
//! - **KV history.** `kv::execute_with_retries` commits through the store itself, so no
//!   `Fact::Commit` exists for a successful KV request (its version is `KvAnswered`'s
//!   `mutation_version`); an attempt whose unknown outcome did apply is taken from the store and
//!   recorded as a `Fact::Commit` labelled `kv_request`, so that the store never hands it to an
//!   unrelated failed commit later.
//!
//! Probes ([`Fact::Probe`]) it records: `replay-multi-page`, `live-buffer-overflow`,
//! `liveness-write-store-failure`, `edge-txn-store-failure`, `edge-internal-error`,
//! `edge-frame-too-large`, `replay-read-failure`, `live-command-read-failure`,
//! `command-ack-store-failure`, `drain-store-failure`, `teardown-store-failure`,
//! `bus-payload-undecodable`, `bus-message-on-wrong-topic`.
//!
//! Canaries living here:
//! - `init-eligible-before-ready`: `accept` registers at once (`edge_txn::register` then also sets
//!   `ready` and inserts the runner into the eligibility index), triggers the drainer, and goes on
//!   with the handshake (eviction publish, Init, metadata, replay) without subscribing; it
//!   subscribes only after the replay. So the runner is allocatable before its metadata is stored
//!   and before it is subscribed, and a command persisted after the replay read and published
//!   before the subscription is confirmed reaches nobody until the next reconnect.
//! - `replay-unbounded`: the page `cmdlog` reads whole is sent as one frame, ignoring the frame
//!   limits and bypassing the encoder's size check, so the runner refuses it.
//! - in [`delivery`], `preload-bundle-persisted`.

pub mod delivery;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::canary::Canary;
use crate::config::EngineConfig;
use crate::engine::bus::{BusMessage, Topic};
use crate::engine::cmdlog;
use crate::engine::demux::{DemuxConfig, DemuxOutput, DemuxTimer, EventDemuxer};
use crate::engine::edge_txn::{self, EdgeTxnError};
use crate::engine::signal::{DeliverError, EnqueueResult, Signal};
use crate::engine::EngineOutput;
use crate::env::{Env, MAX_TXN_ATTEMPTS};
use crate::fact::{ConnId, Fact, TxnLabel};
use crate::keys::{ActorId, RunnerId};
use crate::kv::{self, KvContext};
use crate::protocol as p;
use crate::wire::{
    self, CloseReason, Codec, ConnectRequest, DataFrame, OfferedSubProtocols, SUB_PROTOCOL,
};

use delivery::{encode_frames, hydrate, split_frames, PendingCommand};

/// The reason [`Fact::EdgeConnClosed`] records when the peer closed or the socket reset.
pub const PEER_CLOSED_REASON: &str = "peer closed";

/// The `group` of the error the edge answers SQLite requests with.
pub const SQLITE_ERROR_GROUP: &str = "model";
/// The `code` of the error the edge answers SQLite requests with.
pub const SQLITE_ERROR_CODE: &str = "unsupported";

/// The connection's timers. They cannot be cancelled; a stale one is recognised by its sequence
/// number (or the connection's state) and ignored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeTimer {
    /// `INIT_TIMEOUT` after `ToEnvoyInit`: close unless `ToRivetMetadata` was received.
    InitTimeout,
    /// The ping loop's next tick.
    Ping { seq: u64 },
    /// Read the next replay page.
    ReplayPage { seq: u64 },
    /// A demuxer timer.
    Demux(DemuxTimer),
}

/// What the connection asks the simulator to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum EdgeOutput {
    /// One binary WebSocket message to the runner.
    Send(Vec<u8>),
    /// Close the socket after the queued sends.
    Close(CloseReason),
    /// Subscribe; the simulator confirms both, then calls [`EdgeConn::on_subscribed`].
    Subscribe(Vec<Topic>),
    Unsubscribe(Vec<Topic>),
    Engine(EngineOutput),
    /// Hand a demuxer batch to the signal bus; report with [`EdgeConn::on_signal_result`].
    Signal {
        actor: ActorId,
        signal: Signal,
        token: u64,
    },
    /// Arm a one-shot timer on the node's monotonic clock.
    Timer {
        at_ms: u64,
        timer: EdgeTimer,
    },
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The connect request was refused; closed before any frame.
    Rejected,
    /// Waiting for the subscriptions' confirmation.
    Subscribing,
    /// `ToEnvoyInit` sent; waiting for the first metadata commit.
    AwaitingMetadata,
    /// Replaying the command log.
    Replaying,
    /// Forwarding bus messages as they arrive.
    Live,
    /// Torn down (the demuxer may still be draining).
    Closed,
}

/// The state of the connection's bus subscriptions (runner and eviction topics of `R`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subscription {
    NotRequested,
    Requested,
    Confirmed,
}

/// A live message waiting for the end of the replay.
#[derive(Clone, Debug, PartialEq)]
enum LiveItem {
    /// A runner-topic bus payload.
    Bus(Vec<u8>),
    /// The demuxer's acknowledgement of events whose workflow is gone.
    SelfAck(Vec<p::ActorCheckpoint>),
}

/// One edge connection. See the module comment.
#[derive(Debug)]
pub struct EdgeConn {
    id: ConnId,
    config: EngineConfig,
    codec: Codec,
    phase: Phase,
    request: Option<ConnectRequest>,
    runner: Option<RunnerId>,
    epoch: Option<u64>,
    /// The bus subscriptions of `R`.
    subscription: Subscription,
    init_sent: bool,
    /// Whether any runner frame was received (the next one is not the first).
    received_any: bool,
    metadata_received: bool,
    /// Decoded runner frames received before `ToEnvoyInit` was sent.
    early_frames: Vec<p::ToRivet>,
    /// Live messages received before the end of the replay, in arrival order.
    live_buffer: VecDeque<LiveItem>,
    replay_cursor: Option<Vec<u8>>,
    replay_seq: u64,
    ping_seq: u64,
    last_pong_ms: u64,
    /// Last measured round-trip time (wall clock, unclamped).
    last_rtt_ms: i64,
    /// Local time of the last liveness authorization (registration or liveness write).
    authorized_at_ms: Option<u64>,
    demux: Option<EventDemuxer>,
}

impl EdgeConn {
    fn new(id: ConnId, config: &EngineConfig) -> Self {
        EdgeConn {
            id,
            config: config.clone(),
            codec: Codec::new(config.timing.max_frame_bytes),
            phase: Phase::Subscribing,
            request: None,
            runner: None,
            epoch: None,
            subscription: Subscription::NotRequested,
            init_sent: false,
            received_any: false,
            metadata_received: false,
            early_frames: Vec::new(),
            live_buffer: VecDeque::new(),
            replay_cursor: None,
            replay_seq: 0,
            ping_seq: 0,
            last_pong_ms: 0,
            last_rtt_ms: 0,
            authorized_at_ms: None,
            demux: None,
        }
    }

    /// Accept a WebSocket upgrade of `path_and_query` offering `offered_subprotocols` (each entry
    /// a sub-protocol or a comma-separated header value).
    pub fn accept(
        env: &mut Env<'_>,
        config: &EngineConfig,
        conn: ConnId,
        path_and_query: &str,
        offered_subprotocols: &[String],
    ) -> (EdgeConn, Vec<EdgeOutput>) {
        let mut c = EdgeConn::new(conn, config);
        let mut out = Vec::new();
        let request = match c.validate(path_and_query, offered_subprotocols) {
            Ok(request) => request,
            Err(reason) => {
                c.phase = Phase::Rejected;
                env.record(Fact::EdgeConnClosed { runner: None, conn, reason: reason.to_string() });
                out.push(EdgeOutput::Close(reason));
                return (c, out);
            }
        };
        c.runner = Some(request.runner_id());
        c.request = Some(request);
        if env.canaries.on(Canary::InitEligibleBeforeReady) {
            // Canary: register (and become eligible) at once, and subscribe only after the
            // replay (see `finish_replay`).
            if c.register(env, &mut out) {
                out.push(EdgeOutput::Engine(c.trigger_drainer()));
                c.open(env, &mut out);
            }
            return (c, out);
        }
        c.subscription = Subscription::Requested;
        out.push(EdgeOutput::Subscribe(c.topics()));
        (c, out)
    }

    fn validate(
        &self,
        path_and_query: &str,
        offered_subprotocols: &[String],
    ) -> Result<ConnectRequest, CloseReason> {
        let request = ConnectRequest::parse(path_and_query).map_err(|e| e.close_reason())?;
        let pools =
            self.config.namespaces.get(&request.namespace).ok_or(CloseReason::NamespaceNotFound)?;
        if !pools.contains(&request.pool_name) {
            return Err(CloseReason::NoRunnerConfig);
        }
        if !offered_subprotocols.iter().any(|header| OfferedSubProtocols::parse(header).rivet) {
            return Err(CloseReason::InvalidRequest {
                detail: format!("the WebSocket sub-protocol `{SUB_PROTOCOL}` is not offered"),
            });
        }
        Ok(request)
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The runner identity, once the connect request was accepted.
    pub fn runner(&self) -> Option<&RunnerId> {
        self.runner.as_ref()
    }

    /// The epoch, once registered.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Torn down (or refused) and the demuxer drained: the simulator may drop the connection.
    pub fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Rejected => true,
            Phase::Closed => self.demux.as_ref().is_none_or(EventDemuxer::is_drained),
            _ => false,
        }
    }

    /// Whether the replay finished and bus messages are forwarded as they arrive.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// The demuxer, once registered (for inspection).
    pub fn demux(&self) -> Option<&EventDemuxer> {
        self.demux.as_ref()
    }

    fn topics(&self) -> Vec<Topic> {
        match &self.runner {
            Some(r) => vec![Topic::Runner(r.clone()), Topic::Eviction(r.clone())],
            None => Vec::new(),
        }
    }

    fn trigger_drainer(&self) -> EngineOutput {
        let request = self.request.as_ref();
        EngineOutput::TriggerDrainer {
            namespace: request.map(|r| r.namespace.clone()).unwrap_or_default(),
            pool: request.map(|r| r.pool_name.clone()).unwrap_or_default(),
        }
    }

    fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Rejected | Phase::Closed)
    }

    /// Both subscriptions are confirmed (§2.3 step 1).
    pub fn on_subscribed(&mut self, env: &mut Env<'_>) -> Vec<EdgeOutput> {
        let mut out = Vec::new();
        if self.subscription != Subscription::Requested || !self.is_open() {
            return out;
        }
        self.subscription = Subscription::Confirmed;
        let Some(runner) = self.runner.clone() else { return out };
        env.record(Fact::SubscriptionConfirmed { runner, conn: self.id });
        if self.phase == Phase::Subscribing && self.register(env, &mut out) {
            self.open(env, &mut out);
        }
        out
    }

    /// After the registration (§2.3 steps 3–4): the eviction publish, `ToEnvoyInit`, the init
    /// timeout, the ping loop, then the runner frames that arrived before Init.
    fn open(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) {
        let (Some(runner), Some(epoch)) = (self.runner.clone(), self.epoch) else { return };
        out.push(EdgeOutput::Engine(EngineOutput::Publish {
            topic: Topic::Eviction(runner),
            message: BusMessage::Eviction { epoch },
        }));
        if !self.send_init(env, out) {
            return;
        }
        self.phase = Phase::AwaitingMetadata;
        out.push(EdgeOutput::Timer {
            at_ms: env.now_ms + self.config.timing.init_timeout_ms,
            timer: EdgeTimer::InitTimeout,
        });
        self.arm_ping(env, out);
        for message in std::mem::take(&mut self.early_frames) {
            if !self.is_open() {
                break;
            }
            self.handle(env, message, out);
        }
    }

    /// The registration transaction; on failure the connection is closed.
    fn register(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) -> bool {
        let Some(request) = self.request.clone() else { return false };
        match edge_txn::register(env, self.id, &request) {
            Ok(registration) => {
                self.epoch = Some(registration.epoch);
                self.last_pong_ms = env.now_ms;
                self.authorized_at_ms = Some(env.now_ms);
                self.demux = Some(EventDemuxer::new(
                    self.id,
                    request.runner_id(),
                    registration.epoch,
                    DemuxConfig::from_timing(&self.config.timing),
                    env.canaries,
                ));
                true
            }
            Err(e) => {
                self.fail(env, &e, out);
                false
            }
        }
    }

    /// Send `ToEnvoyInit`, first renewing a lapsed authorization with a liveness write (§6.3).
    fn send_init(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) -> bool {
        let lapsed = self
            .authorized_at_ms
            .is_none_or(|at| env.now_ms.saturating_sub(at) > self.config.timing.max_step_delay_ms);
        if lapsed && !self.liveness_write(env, out) {
            if self.is_open() {
                // A store failure: no authorization, so no Init; the runner reconnects.
                self.close(env, CloseReason::TimedOut, out);
            }
            return false;
        }
        let timing = &self.config.timing;
        let init = p::ToEnvoy::ToEnvoyInit(p::ToEnvoyInit {
            metadata: p::ProtocolMetadata {
                envoy_lost_threshold: i64::try_from(timing.runner_lost_threshold_ms)
                    .unwrap_or(i64::MAX),
                actor_stop_threshold: i64::try_from(timing.actor_stop_threshold_ms)
                    .unwrap_or(i64::MAX),
                max_response_payload_size: crate::constants::MAX_RESPONSE_PAYLOAD_BYTES,
            },
        });
        if !self.send(env, &init, out) {
            return false;
        }
        self.init_sent = true;
        true
    }

    /// A liveness write; on success records the authorization time. On a refusal the connection
    /// is closed; on a store failure it stays open. Returns whether the write committed.
    fn liveness_write(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) -> bool {
        let (Some(runner), Some(epoch)) = (self.runner.clone(), self.epoch) else { return false };
        match edge_txn::liveness_write(env, self.id, &runner, epoch, self.last_rtt_ms) {
            Ok(_) => {
                self.authorized_at_ms = Some(env.now_ms);
                true
            }
            Err(e) if e.is_store_failure() => {
                probe(env, "liveness-write-store-failure");
                false
            }
            Err(e) => {
                self.fail(env, &e, out);
                false
            }
        }
    }

    fn arm_ping(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) {
        self.ping_seq += 1;
        let timing = &self.config.timing;
        let jitter = env.rng.below(timing.ping_jitter_ms);
        out.push(EdgeOutput::Timer {
            at_ms: env.now_ms + timing.ping_interval_ms + jitter,
            timer: EdgeTimer::Ping { seq: self.ping_seq },
        });
    }

    /// Encode and send one frame. A frame the codec refuses is an internal error that closes.
    fn send(&mut self, env: &mut Env<'_>, message: &p::ToEnvoy, out: &mut Vec<EdgeOutput>) -> bool {
        match self.codec.encode_to_envoy(message) {
            Ok(bytes) => {
                out.push(EdgeOutput::Send(bytes));
                true
            }
            Err(_) => {
                probe(env, "edge-frame-too-large");
                self.close(env, CloseReason::TimedOut, out);
                false
            }
        }
    }

    /// One WebSocket data frame from the runner.
    pub fn on_frame(&mut self, env: &mut Env<'_>, frame: DataFrame<'_>) -> Vec<EdgeOutput> {
        let mut out = Vec::new();
        if !self.is_open() {
            return out;
        }
        let first = !self.received_any;
        self.received_any = true;
        let invalid = |detail: String| {
            if first {
                CloseReason::InvalidInitialPacket { detail }
            } else {
                CloseReason::InvalidPacket { detail }
            }
        };
        let message = match self.codec.decode_to_rivet_frame(frame) {
            Ok(message) => message,
            Err(e) => {
                self.close(env, invalid(e.close_detail()), &mut out);
                return out;
            }
        };
        if let Err(v) = wire::validate_to_rivet(&message) {
            self.close(env, invalid(v.close_detail()), &mut out);
            return out;
        }
        let is_metadata = matches!(message, p::ToRivet::ToRivetMetadata(_));
        if first && !is_metadata {
            let detail = format!(
                "first frame is {}, expected ToRivetMetadata",
                wire::to_rivet_kind(&message)
            );
            self.close(env, CloseReason::InvalidInitialPacket { detail }, &mut out);
            return out;
        }
        if is_metadata {
            self.metadata_received = true;
        }
        if !self.init_sent {
            if self.early_frames.len() >= self.config.timing.live_buffer_max {
                let detail = format!(
                    "more than {} frames before ToEnvoyInit",
                    self.config.timing.live_buffer_max
                );
                self.close(env, CloseReason::InvalidPacket { detail }, &mut out);
            } else {
                self.early_frames.push(message);
            }
            return out;
        }
        self.handle(env, message, &mut out);
        out
    }

    /// Handle one decoded, valid runner frame (after `ToEnvoyInit`).
    fn handle(&mut self, env: &mut Env<'_>, message: p::ToRivet, out: &mut Vec<EdgeOutput>) {
        let (Some(runner), Some(epoch)) = (self.runner.clone(), self.epoch) else { return };
        match message {
            p::ToRivet::ToRivetMetadata(metadata) => {
                if let Err(e) = edge_txn::write_metadata(env, self.id, &runner, epoch, &metadata) {
                    self.fail(env, &e, out);
                    return;
                }
                if self.phase == Phase::AwaitingMetadata {
                    self.phase = Phase::Replaying;
                    self.replay_page(env, out);
                }
            }
            p::ToRivet::ToRivetEvents(events) => {
                let demux_out = match self.demux.as_mut() {
                    Some(d) => d.ingest(env.now_ms, &mut *env.facts, events),
                    None => Vec::new(),
                };
                self.absorb_demux(env, demux_out, out);
            }
            p::ToRivet::ToRivetAckCommands(ack) => {
                let checkpoints = &ack.last_command_checkpoints;
                if edge_txn::ack_commands(env, self.id, &runner, checkpoints).is_err() {
                    probe(env, "command-ack-store-failure");
                }
            }
            p::ToRivet::ToRivetStopping => match edge_txn::drain(env, &runner) {
                Ok(result) => out.extend(result.outputs.into_iter().map(EdgeOutput::Engine)),
                Err(_) => probe(env, "drain-store-failure"),
            },
            p::ToRivet::ToRivetPong(pong) => {
                self.last_pong_ms = env.now_ms;
                self.last_rtt_ms = env.wall_ms.saturating_sub(pong.ts);
            }
            p::ToRivet::ToRivetKvRequest(request) => {
                let response = self.kv_request(env, &runner, epoch, request);
                self.send(env, &response, out);
            }
            p::ToRivet::ToRivetTunnelMessage(_) => {}
            sqlite => {
                if let Some(response) = sqlite_unsupported(&sqlite) {
                    self.send(env, &response, out);
                }
            }
        }
    }

    /// Run one KV request (§7.2) and build its response.
    fn kv_request(
        &mut self,
        env: &mut Env<'_>,
        runner: &RunnerId,
        epoch: u64,
        request: p::ToRivetKvRequest,
    ) -> p::ToEnvoy {
        let context =
            KvContext { namespace: runner.namespace.clone(), runner: runner.clone(), epoch };
        let actor = request.actor_id.to_string();
        let faults = &mut *env.faults;
        let retried = kv::execute_with_retries(
            env.store,
            &context,
            &actor,
            &request.data,
            &self.config.kv,
            env.now_ms,
            env.wall_ms,
            &mut || faults.commit_fault(TxnLabel::KvRequest),
            MAX_TXN_ATTEMPTS,
        );
        for applied in env.store.take_unknown_applied() {
            // An attempt with an unknown outcome did apply: the history must see its writes.
            env.record(Fact::Commit {
                label: TxnLabel::KvRequest,
                version: applied.version,
                applied: applied.applied,
            });
        }
        let mut outcome = retried.outcome;
        if let Some(version) = outcome.commit_version {
            let applied = std::mem::take(&mut outcome.applied);
            env.record(Fact::Commit { label: TxnLabel::KvRequest, version, applied });
        }
        env.record(Fact::KvAnswered {
            runner: runner.clone(),
            conn: self.id,
            epoch,
            actor,
            request_id: request.request_id,
            placement_generation: outcome
                .fence
                .as_ref()
                .and_then(|f| f.placement.as_ref())
                .map(|p| p.generation),
            mutation_version: outcome.commit_version,
            error: outcome.error.as_ref().map(|e| format!("kv.{}", e.code())),
        });
        p::ToEnvoy::ToEnvoyKvResponse(p::ToEnvoyKvResponse {
            request_id: request.request_id,
            data: outcome.response,
        })
    }

    /// Read and send one replay page (§3.4); schedule the next or finish the replay.
    fn replay_page(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) {
        let Some(runner) = self.runner.clone() else { return };
        let after = self.replay_cursor.clone();
        let page_keys = self.config.timing.replay_page_keys.max(1);
        let read = env.transact(TxnLabel::ReplayPage, |env, txn, _| {
            cmdlog::read_page(env, txn, &runner, after.as_deref(), page_keys)
        });
        let page = match read {
            Ok((page, _)) => page,
            Err(_) => {
                probe(env, "replay-read-failure");
                self.close(env, CloseReason::TimedOut, out);
                return;
            }
        };
        env.record(Fact::ReplayPage {
            runner: runner.clone(),
            conn: self.id,
            keys: page.commands.len(),
        });
        let commands: Vec<PendingCommand> = page
            .commands
            .into_iter()
            .map(|c| PendingCommand {
                checkpoint: p::ActorCheckpoint {
                    actor_id: c.actor.into(),
                    generation: c.generation,
                    index: c.index,
                },
                stored: c.command,
            })
            .collect();
        if !self.deliver(env, commands, true, out) {
            return;
        }
        if page.more {
            if self.replay_seq == 0 {
                probe(env, "replay-multi-page");
            }
            self.replay_cursor = page.last_key;
            self.replay_seq += 1;
            out.push(EdgeOutput::Timer {
                at_ms: env.now_ms,
                timer: EdgeTimer::ReplayPage { seq: self.replay_seq },
            });
        } else {
            self.finish_replay(env, out);
        }
    }

    /// The end of the replay: ready, drainer, buffered live messages, live (§2.3 steps 8–9).
    fn finish_replay(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) {
        let (Some(runner), Some(epoch)) = (self.runner.clone(), self.epoch) else { return };
        env.record(Fact::ReplayDone { runner: runner.clone(), conn: self.id });
        if let Err(e) = edge_txn::become_ready(env, self.id, &runner, epoch) {
            self.fail(env, &e, out);
            return;
        }
        out.push(EdgeOutput::Engine(self.trigger_drainer()));
        self.phase = Phase::Live;
        if self.subscription == Subscription::NotRequested {
            // Only with the canary `init-eligible-before-ready`: the subscriptions come last, so
            // what was published since the replay read reached nobody.
            self.subscription = Subscription::Requested;
            out.push(EdgeOutput::Subscribe(self.topics()));
        }
        while let Some(item) = self.live_buffer.pop_front() {
            if !self.is_open() {
                return;
            }
            self.forward(env, item, out);
        }
    }

    /// Hydrate and send `commands` as frames (replay or live). Returns false if it closed.
    fn deliver(
        &mut self,
        env: &mut Env<'_>,
        commands: Vec<PendingCommand>,
        replay: bool,
        out: &mut Vec<EdgeOutput>,
    ) -> bool {
        if commands.is_empty() {
            return true;
        }
        let Some(runner) = self.runner.clone() else { return false };
        let wrappers: Vec<p::CommandWrapper> =
            commands.into_iter().map(|c| hydrate(env, &self.config, self.id, &runner, c)).collect();
        let unbounded = replay && env.canaries.on(Canary::ReplayUnbounded);
        let encoded = if unbounded {
            // Canary: the whole page in one frame, past every limit.
            encode_frames(&Codec::new(usize::MAX), vec![wrappers])
        } else {
            let timing = &self.config.timing;
            let frames =
                split_frames(wrappers, timing.frame_max_commands, timing.frame_target_bytes);
            encode_frames(&self.codec, frames)
        };
        let frames = match encoded {
            Ok(frames) => frames,
            Err(_) => {
                probe(env, "edge-frame-too-large");
                self.close(env, CloseReason::TimedOut, out);
                return false;
            }
        };
        for frame in frames {
            env.record(Fact::CommandsSent {
                runner: runner.clone(),
                conn: self.id,
                replay,
                checkpoints: frame.checkpoints,
            });
            out.push(EdgeOutput::Send(frame.bytes));
        }
        true
    }

    /// A bus message on one of the connection's topics.
    pub fn on_bus(
        &mut self,
        env: &mut Env<'_>,
        topic: &Topic,
        message: &BusMessage,
    ) -> Vec<EdgeOutput> {
        let mut out = Vec::new();
        if !self.is_open() || Some(topic.runner()) != self.runner.as_ref() {
            return out;
        }
        match (topic, message) {
            (Topic::Eviction(_), BusMessage::Eviction { epoch }) => {
                if self.epoch.is_some_and(|ours| *epoch > ours) {
                    self.close(env, CloseReason::Eviction, &mut out);
                }
            }
            (Topic::Runner(_), BusMessage::Runner(bytes)) => {
                self.live(env, LiveItem::Bus(bytes.clone()), &mut out);
            }
            _ => probe(env, "bus-message-on-wrong-topic"),
        }
        out
    }

    /// A live message: forwarded when live, buffered before.
    fn live(&mut self, env: &mut Env<'_>, item: LiveItem, out: &mut Vec<EdgeOutput>) {
        if !self.is_open() {
            return;
        }
        if self.phase == Phase::Live {
            self.forward(env, item, out);
            return;
        }
        self.live_buffer.push_back(item);
        if self.live_buffer.len() > self.config.timing.live_buffer_max {
            probe(env, "live-buffer-overflow");
            self.close(env, CloseReason::TimedOut, out);
        }
    }

    /// Forward one live message (§3.4 live path).
    fn forward(&mut self, env: &mut Env<'_>, item: LiveItem, out: &mut Vec<EdgeOutput>) {
        let message = match item {
            LiveItem::SelfAck(checkpoints) => {
                let ack = p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
                    last_event_checkpoints: checkpoints,
                });
                self.send(env, &ack, out);
                return;
            }
            LiveItem::Bus(bytes) => match wire::decode_bus(&bytes) {
                Ok(message) => message,
                Err(_) => {
                    probe(env, "bus-payload-undecodable");
                    return;
                }
            },
        };
        match message {
            p::ToEnvoyConn::ToEnvoyCommands(commands) => self.live_commands(env, commands, out),
            p::ToEnvoyConn::ToEnvoyAckEvents(ack) => {
                self.send(env, &p::ToEnvoy::ToEnvoyAckEvents(ack), out);
            }
            p::ToEnvoyConn::ToEnvoyConnClose => self.close(env, CloseReason::Closed, out),
            p::ToEnvoyConn::ToEnvoyConnPing(_) | p::ToEnvoyConn::ToEnvoyTunnelMessage(_) => {}
        }
    }

    /// The live path of one published command list: existence check, hydration, frames.
    fn live_commands(
        &mut self,
        env: &mut Env<'_>,
        commands: Vec<p::CommandWrapper>,
        out: &mut Vec<EdgeOutput>,
    ) {
        let Some(runner) = self.runner.clone() else { return };
        let checkpoints: Vec<p::ActorCheckpoint> =
            commands.into_iter().map(|c| c.checkpoint).collect();
        let read = env.transact(TxnLabel::LiveCommandCheck, |env, txn, _| {
            checkpoints
                .iter()
                .map(|cp| {
                    cmdlog::read_one(env, txn, &runner, &cp.actor_id, cp.generation, cp.index)
                })
                .collect::<Result<Vec<_>, _>>()
        });
        let stored = match read {
            Ok((stored, _)) => stored,
            Err(_) => {
                probe(env, "live-command-read-failure");
                self.close(env, CloseReason::TimedOut, out);
                return;
            }
        };
        let mut surviving = Vec::new();
        for (checkpoint, stored) in checkpoints.into_iter().zip(stored) {
            match stored {
                Some(stored) => surviving.push(PendingCommand { checkpoint, stored }),
                None => env.record(Fact::LiveCommandDropped {
                    runner: runner.clone(),
                    conn: self.id,
                    actor: checkpoint.actor_id.to_string(),
                    generation: checkpoint.generation,
                    index: checkpoint.index,
                }),
            }
        }
        self.deliver(env, surviving, false, out);
    }

    /// The signal bus's result for the demuxer batch `token`.
    pub fn on_signal_result(
        &mut self,
        env: &mut Env<'_>,
        token: u64,
        result: Result<EnqueueResult, DeliverError>,
    ) -> Vec<EdgeOutput> {
        let mut out = Vec::new();
        let demux_out = match self.demux.as_mut() {
            Some(d) => d.on_signal_result(env.now_ms, &mut *env.facts, token, result),
            None => return out,
        };
        self.absorb_demux(env, demux_out, &mut out);
        out
    }

    fn absorb_demux(
        &mut self,
        env: &mut Env<'_>,
        demux_out: Vec<DemuxOutput>,
        out: &mut Vec<EdgeOutput>,
    ) {
        for o in demux_out {
            match o {
                DemuxOutput::Signal { actor, signal, token } => {
                    out.push(EdgeOutput::Signal { actor, signal, token })
                }
                DemuxOutput::Timer { at_ms, timer } => {
                    out.push(EdgeOutput::Timer { at_ms, timer: EdgeTimer::Demux(timer) })
                }
                DemuxOutput::AckEvents(checkpoints) => {
                    self.live(env, LiveItem::SelfAck(checkpoints), out)
                }
            }
        }
    }

    /// A timer this connection armed has fired.
    pub fn on_timer(&mut self, env: &mut Env<'_>, timer: EdgeTimer) -> Vec<EdgeOutput> {
        let mut out = Vec::new();
        match timer {
            EdgeTimer::Demux(timer) => {
                let demux_out = match self.demux.as_mut() {
                    Some(d) => d.on_timer(env.now_ms, &mut *env.facts, timer),
                    None => Vec::new(),
                };
                self.absorb_demux(env, demux_out, &mut out);
            }
            EdgeTimer::InitTimeout => {
                if self.is_open() && !self.metadata_received {
                    self.close(env, CloseReason::TimedOutWaitingForInit, &mut out);
                }
            }
            EdgeTimer::ReplayPage { seq } => {
                if self.phase == Phase::Replaying && seq == self.replay_seq {
                    self.replay_page(env, &mut out);
                }
            }
            EdgeTimer::Ping { seq } => {
                if self.is_open() && seq == self.ping_seq {
                    self.ping_tick(env, &mut out);
                }
            }
        }
        out
    }

    /// One tick of the ping loop (§6.3).
    fn ping_tick(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) {
        let timing = &self.config.timing;
        if env.now_ms.saturating_sub(self.last_pong_ms) > timing.ping_timeout_ms {
            self.close(env, CloseReason::TimedOut, out);
            return;
        }
        if self.liveness_write(env, out) {
            // Sent in the same call as the write, so within `max_step_delay_ms` of it.
            let ping = p::ToEnvoy::ToEnvoyPing(p::ToEnvoyPing { ts: env.wall_ms });
            if !self.send(env, &ping, out) {
                return;
            }
        }
        if self.is_open() {
            self.arm_ping(env, out);
        }
    }

    /// The peer closed the socket, or it reset.
    pub fn on_socket_closed(&mut self, env: &mut Env<'_>) -> Vec<EdgeOutput> {
        let mut out = Vec::new();
        if !self.is_open() {
            return out;
        }
        env.record(Fact::EdgeConnClosed {
            runner: self.runner.clone(),
            conn: self.id,
            reason: PEER_CLOSED_REASON.to_string(),
        });
        self.teardown(env, &mut out);
        out
    }

    /// Close the connection with `reason` and tear it down.
    fn close(&mut self, env: &mut Env<'_>, reason: CloseReason, out: &mut Vec<EdgeOutput>) {
        if !self.is_open() {
            return;
        }
        env.record(Fact::EdgeConnClosed {
            runner: self.runner.clone(),
            conn: self.id,
            reason: reason.to_string(),
        });
        out.push(EdgeOutput::Close(reason));
        self.teardown(env, out);
    }

    /// Teardown (§6.2): stop reading and pinging, unsubscribe, drain the demuxer, then the
    /// teardown transaction.
    fn teardown(&mut self, env: &mut Env<'_>, out: &mut Vec<EdgeOutput>) {
        self.phase = Phase::Closed;
        self.early_frames.clear();
        self.live_buffer.clear();
        if self.subscription != Subscription::NotRequested {
            out.push(EdgeOutput::Unsubscribe(self.topics()));
        }
        let demux_out = match self.demux.as_mut() {
            Some(d) => d.close(env.now_ms, &mut *env.facts),
            None => Vec::new(),
        };
        self.absorb_demux(env, demux_out, out);
        if let (Some(runner), Some(epoch)) = (self.runner.clone(), self.epoch) {
            if edge_txn::teardown(env, self.id, &runner, epoch).is_err() {
                probe(env, "teardown-store-failure");
            }
        }
    }

    /// Close after a failed registry transaction (see the module comment for the reasons).
    fn fail(&mut self, env: &mut Env<'_>, error: &EdgeTxnError, out: &mut Vec<EdgeOutput>) {
        let reason = match error {
            EdgeTxnError::NotCurrent { .. } => CloseReason::Eviction,
            EdgeTxnError::Expired { .. } | EdgeTxnError::NoRecord { .. } => CloseReason::TimedOut,
            e if e.is_store_failure() => {
                probe(env, "edge-txn-store-failure");
                CloseReason::TimedOut
            }
            _ => {
                probe(env, "edge-internal-error");
                CloseReason::TimedOut
            }
        };
        self.close(env, reason, out);
    }
}

fn probe(env: &mut Env<'_>, name: &str) {
    env.record(Fact::Probe { name: name.to_string() });
}

/// The answer to an out-of-scope SQLite request: `SqliteErrorResponse{group: "model", code:
/// "unsupported"}` in the matching response. `None` for any other message.
pub fn sqlite_unsupported(message: &p::ToRivet) -> Option<p::ToEnvoy> {
    let error = || p::SqliteErrorResponse {
        group: SQLITE_ERROR_GROUP.into(),
        code: SQLITE_ERROR_CODE.into(),
        message: "SQLite is not supported by the model".into(),
    };
    Some(match message {
        p::ToRivet::ToRivetSqliteGetPagesRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteGetPagesResponse(p::ToEnvoySqliteGetPagesResponse {
                request_id: r.request_id,
                data: p::SqliteGetPagesResponse::SqliteErrorResponse(error()),
            })
        }
        p::ToRivet::ToRivetSqliteCommitRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteCommitResponse(p::ToEnvoySqliteCommitResponse {
                request_id: r.request_id,
                data: p::SqliteCommitResponse::SqliteErrorResponse(error()),
            })
        }
        p::ToRivet::ToRivetSqliteCommitStageBeginRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(
                p::ToEnvoySqliteCommitStageBeginResponse {
                    request_id: r.request_id,
                    data: p::SqliteCommitStageBeginResponse::SqliteErrorResponse(error()),
                },
            )
        }
        p::ToRivet::ToRivetSqliteCommitStageSegmentRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(
                p::ToEnvoySqliteCommitStageSegmentResponse {
                    request_id: r.request_id,
                    data: p::SqliteCommitStageSegmentResponse::SqliteErrorResponse(error()),
                },
            )
        }
        p::ToRivet::ToRivetSqliteCommitFinalizeRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(
                p::ToEnvoySqliteCommitFinalizeResponse {
                    request_id: r.request_id,
                    data: p::SqliteCommitFinalizeResponse::SqliteErrorResponse(error()),
                },
            )
        }
        p::ToRivet::ToRivetSqliteExecRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteExecResponse(p::ToEnvoySqliteExecResponse {
                request_id: r.request_id,
                data: p::SqliteExecResponse::SqliteErrorResponse(error()),
            })
        }
        p::ToRivet::ToRivetSqliteExecuteRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteExecuteResponse(p::ToEnvoySqliteExecuteResponse {
                request_id: r.request_id,
                data: p::SqliteExecuteResponse::SqliteErrorResponse(error()),
            })
        }
        p::ToRivet::ToRivetSqliteExecuteBatchRequest(r) => {
            p::ToEnvoy::ToEnvoySqliteExecuteBatchResponse(p::ToEnvoySqliteExecuteBatchResponse {
                request_id: r.request_id,
                data: p::SqliteExecuteBatchResponse::SqliteErrorResponse(error()),
            })
        }
        _ => return None,
    })
}
