//! A scripted environment for one [`RunnerClient`]: a clock, a timer queue, connection ids, the
//! fact list, and helpers that encode engine frames with `wire::Codec` and decode what the
//! runner sends.

use crate::config::Timing;
use crate::env::{RunnerEnv, SplitMix};
use crate::fact::{ConnId, Fact};
use crate::preload::Snapshot;
use crate::protocol::{
    ActorCheckpoint, ActorConfig, Command, CommandStartActor, CommandStopActor, CommandWrapper,
    KvResponseData, PreloadedKv, ProtocolMetadata, StopActorReason, ToEnvoy, ToEnvoyAckEvents,
    ToEnvoyInit, ToEnvoyKvResponse, ToEnvoyPing, ToRivet, ToRivetKvRequest,
};
use crate::runner::{RunnerClient, RunnerConfig, RunnerOutput, RunnerTimer};
use crate::wire::{CloseReason, Codec, DataFrame};

use super::support::LiveKv;

/// One runner under test.
pub struct Harness {
    pub client: RunnerClient,
    pub rng: SplitMix,
    pub facts: Vec<Fact>,
    pub now: u64,
    pub codec: Codec,
    /// The connection the harness considers open (set by [`Harness::open`]).
    pub conn: Option<ConnId>,
    next_conn: u64,
    /// Armed timers `(at, arming order, timer)`.
    timers: Vec<(u64, u64, RunnerTimer)>,
    timer_seq: u64,
    pub timing: Timing,
}

impl Harness {
    /// A runner with `config`; returns the outputs of `new` too.
    pub fn new(config: RunnerConfig) -> (Harness, Vec<RunnerOutput>) {
        let mut rng = SplitMix(42);
        let mut facts = Vec::new();
        let timing = config.timing.clone();
        let codec = Codec::new(config.max_frame_bytes);
        let (client, outputs) = {
            let mut env = RunnerEnv { now_ms: 0, wall_ms: 0, rng: &mut rng, facts: &mut facts };
            RunnerClient::new(&mut env, config)
        };
        let mut h = Harness {
            client,
            rng,
            facts,
            now: 0,
            codec,
            conn: None,
            next_conn: 1,
            timers: Vec::new(),
            timer_seq: 0,
            timing,
        };
        h.absorb(&outputs);
        (h, outputs)
    }

    /// A runner with the default config (namespace `ns`, pool `pool`).
    pub fn default_runner() -> Harness {
        Harness::new(RunnerConfig::new("ns", "pool")).0
    }

    /// Call into the client with the harness's environment.
    pub fn with(
        &mut self,
        f: impl FnOnce(&mut RunnerClient, &mut RunnerEnv<'_>) -> Vec<RunnerOutput>,
    ) -> Vec<RunnerOutput> {
        let outputs = {
            let mut env = RunnerEnv {
                now_ms: self.now,
                wall_ms: 0,
                rng: &mut self.rng,
                facts: &mut self.facts,
            };
            f(&mut self.client, &mut env)
        };
        self.absorb(&outputs);
        outputs
    }

    fn absorb(&mut self, outputs: &[RunnerOutput]) {
        for output in outputs {
            match output {
                RunnerOutput::Timer { at_ms, timer } => {
                    self.timer_seq += 1;
                    self.timers.push((*at_ms, self.timer_seq, timer.clone()));
                }
                RunnerOutput::Close { conn, .. } if Some(*conn) == self.conn => self.conn = None,
                _ => {}
            }
        }
    }

    /// Answer the outstanding connect request with a new open connection.
    pub fn open(&mut self) -> Vec<RunnerOutput> {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conn = Some(conn);
        self.with(|c, env| c.on_open(env, conn))
    }

    /// Answer the outstanding connect request with a failure.
    pub fn fail_connect(&mut self) -> Vec<RunnerOutput> {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.with(|c, env| c.on_connect_failed(env, conn))
    }

    /// Feed one engine frame on the current connection.
    pub fn feed(&mut self, message: &ToEnvoy) -> Vec<RunnerOutput> {
        let conn = self.conn.expect("a connection is open");
        self.feed_on(conn, message)
    }

    /// Feed one engine frame on `conn`.
    pub fn feed_on(&mut self, conn: ConnId, message: &ToEnvoy) -> Vec<RunnerOutput> {
        let bytes = self.codec.encode_to_envoy(message).expect("encodes");
        self.with(|c, env| c.on_frame(env, conn, DataFrame::Binary(&bytes)))
    }

    /// Feed raw bytes on the current connection.
    pub fn feed_raw(&mut self, frame: DataFrame<'_>) -> Vec<RunnerOutput> {
        let conn = self.conn.expect("a connection is open");
        self.with(|c, env| c.on_frame(env, conn, frame))
    }

    /// `ToEnvoyInit` with the spec's thresholds.
    pub fn init(&mut self) -> Vec<RunnerOutput> {
        let init = init_frame(
            self.timing.runner_lost_threshold_ms as i64,
            self.timing.actor_stop_threshold_ms as i64,
        );
        self.feed(&init)
    }

    /// Open a connection and feed `ToEnvoyInit`; returns the outputs of both.
    pub fn connect_ready(&mut self) -> Vec<RunnerOutput> {
        let mut outputs = self.open();
        outputs.extend(self.init());
        outputs
    }

    /// The engine closes the current connection with `reason`.
    pub fn engine_close(&mut self, reason: Option<&str>) -> Vec<RunnerOutput> {
        let conn = self.conn.take().expect("a connection is open");
        self.with(|c, env| c.on_closed(env, conn, reason))
    }

    /// A ping from the engine.
    pub fn ping(&mut self, ts: i64) -> Vec<RunnerOutput> {
        self.feed(&ToEnvoy::ToEnvoyPing(ToEnvoyPing { ts }))
    }

    /// Move the clock to `to`, firing every timer due by then in order; returns their outputs.
    pub fn advance_to(&mut self, to: u64) -> Vec<RunnerOutput> {
        let mut outputs = Vec::new();
        loop {
            self.timers.sort();
            let Some(pos) = self.timers.iter().position(|(at, _, _)| *at <= to) else {
                break;
            };
            let (at, _, timer) = self.timers.remove(pos);
            self.now = self.now.max(at);
            outputs.extend(self.with(|c, env| c.on_timer(env, timer)));
        }
        self.now = self.now.max(to);
        outputs
    }

    /// Advance by `ms`.
    pub fn advance(&mut self, ms: u64) -> Vec<RunnerOutput> {
        self.advance_to(self.now + ms)
    }

    /// Every frame the outputs send, decoded.
    pub fn frames(&self, outputs: &[RunnerOutput]) -> Vec<ToRivet> {
        outputs
            .iter()
            .filter_map(|o| match o {
                RunnerOutput::Send { bytes, .. } => {
                    Some(self.codec.decode_to_rivet(bytes).expect("the runner sends valid frames"))
                }
                _ => None,
            })
            .collect()
    }

    /// The KV requests among the outputs' frames.
    pub fn kv_requests(&self, outputs: &[RunnerOutput]) -> Vec<ToRivetKvRequest> {
        self.frames(outputs)
            .into_iter()
            .filter_map(|f| match f {
                ToRivet::ToRivetKvRequest(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Answer KV request `request_id`.
    pub fn respond(&mut self, request_id: u32, data: KvResponseData) -> Vec<RunnerOutput> {
        self.feed(&ToEnvoy::ToEnvoyKvResponse(ToEnvoyKvResponse { request_id, data }))
    }

    /// Answer every KV request in `outputs` from `live`, and the ones those answers cause, until
    /// none is left; returns every output.
    pub fn serve(&mut self, live: &mut LiveKv, outputs: Vec<RunnerOutput>) -> Vec<RunnerOutput> {
        let mut all = outputs.clone();
        let mut pending = self.kv_requests(&outputs);
        while let Some(request) = pending.first().cloned() {
            pending.remove(0);
            let response = live.answer(&request.data);
            let more = self.respond(request.request_id, response);
            pending.extend(self.kv_requests(&more));
            all.extend(more);
        }
        all
    }

    /// Start `(actor, generation)` with `bundle` and serve its startup from `live`.
    pub fn start_and_serve(
        &mut self,
        live: &mut LiveKv,
        actor: &str,
        generation: u32,
        bundle: Option<PreloadedKv>,
    ) -> Vec<RunnerOutput> {
        let outputs = self.feed(&commands(vec![start(actor, generation, bundle)]));
        self.serve(live, outputs)
    }

    /// Start `(actor, generation)` on an empty keyspace and serve its startup.
    pub fn start_running(&mut self, actor: &str, generation: u32) -> Vec<RunnerOutput> {
        let mut live = LiveKv::new(Snapshot::new());
        self.start_and_serve(&mut live, actor, generation, None)
    }

    /// Facts recorded since index `from`.
    pub fn facts_since(&self, from: usize) -> &[Fact] {
        &self.facts[from..]
    }

    /// The connect requests among outputs.
    pub fn connects(outputs: &[RunnerOutput]) -> usize {
        outputs.iter().filter(|o| matches!(o, RunnerOutput::Connect { .. })).count()
    }

    /// The close reasons among outputs.
    pub fn closes(outputs: &[RunnerOutput]) -> Vec<CloseReason> {
        outputs
            .iter()
            .filter_map(|o| match o {
                RunnerOutput::Close { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// The reconnect timers among outputs: `(at, seq)`.
    pub fn reconnect_timers(outputs: &[RunnerOutput]) -> Vec<u64> {
        outputs
            .iter()
            .filter_map(|o| match o {
                RunnerOutput::Timer { at_ms, timer: RunnerTimer::Reconnect { .. } } => Some(*at_ms),
                _ => None,
            })
            .collect()
    }
}

/// `ToEnvoyInit` with these thresholds.
pub fn init_frame(lost: i64, stop: i64) -> ToEnvoy {
    ToEnvoy::ToEnvoyInit(ToEnvoyInit {
        metadata: ProtocolMetadata {
            envoy_lost_threshold: lost,
            actor_stop_threshold: stop,
            max_response_payload_size: 1 << 20,
        },
    })
}

/// A checkpoint.
pub fn checkpoint(actor: &str, generation: u32, index: i64) -> ActorCheckpoint {
    ActorCheckpoint { actor_id: actor.to_owned().into(), generation, index }
}

/// `Start` of `(actor, generation)` at index 0, actor name `counter`.
pub fn start(actor: &str, generation: u32, bundle: Option<PreloadedKv>) -> CommandWrapper {
    CommandWrapper {
        checkpoint: checkpoint(actor, generation, 0),
        inner: Command::CommandStartActor(CommandStartActor {
            config: ActorConfig { name: "counter".into(), key: None, create_ts: 0, input: None },
            hibernating_requests: Vec::new(),
            preloaded_kv: bundle,
        }),
    }
}

/// `Stop` of `(actor, generation)` at `index`.
pub fn stop(actor: &str, generation: u32, index: i64) -> CommandWrapper {
    CommandWrapper {
        checkpoint: checkpoint(actor, generation, index),
        inner: Command::CommandStopActor(CommandStopActor { reason: StopActorReason::StopIntent }),
    }
}

/// A `ToEnvoyCommands` frame.
pub fn commands(commands: Vec<CommandWrapper>) -> ToEnvoy {
    ToEnvoy::ToEnvoyCommands(commands)
}

/// A `ToEnvoyAckEvents` frame.
pub fn ack_events(checkpoints: Vec<ActorCheckpoint>) -> ToEnvoy {
    ToEnvoy::ToEnvoyAckEvents(ToEnvoyAckEvents { last_event_checkpoints: checkpoints })
}
