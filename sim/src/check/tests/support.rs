//! A hand-written history builder for the checker tests: a `World` that appends `TimedEntry`s
//! (facts, commits with real store mutations, frames with decoded messages) and knows the
//! protocol's standard flows, so that each test writes a correct history in a few calls and then
//! the one deviation it is about.

use std::collections::BTreeMap;
use std::sync::Arc;

use pegsim_model::fact::{
    ActorStatus, CommandDisposition, CommandKind, ConnId, CrashPolicy, Disposition,
    DispositionInputs, EndOutcome, EventClass, Fact, StartupRecord, TxnLabel,
};
use pegsim_model::keys::{self, RunnerId};
use pegsim_model::preload::reference_manifest;
use pegsim_model::protocol as p;
use pegsim_model::records::{self, KvEntryRecord, Placement, RunnerInfo};
use pegsim_model::store::Mutation;
use pegsim_model::wire::{command_from_stored, encode_stored_command};

use crate::check::{CheckConfig, Checker};
use crate::run::{Decoded, Dir, Entry, TimedEntry, Violation};

pub const NS: &str = "default";
pub const POOL: &str = "default";
pub const NAME: &str = "counter";
pub const CORE: &str = "core";
pub const EDGE: &str = "edge-0";

pub fn rid(key: &str) -> RunnerId {
    RunnerId::new(NS, key)
}

pub fn node_of(r: &RunnerId) -> String {
    format!("runner-{}", r.envoy_key)
}

pub fn cp(actor: &str, generation: u32, index: i64) -> p::ActorCheckpoint {
    p::ActorCheckpoint { actor_id: actor.to_string().into(), generation, index }
}

pub fn start_content(input: Option<&[u8]>) -> p::ActorCommandKeyData {
    p::ActorCommandKeyData::CommandStartActor(p::CommandStartActor {
        config: p::ActorConfig {
            name: NAME.into(),
            key: None,
            create_ts: 0,
            input: input.map(|b| b.to_vec().into()),
        },
        hibernating_requests: Vec::new(),
        preloaded_kv: None,
    })
}

pub fn stop_content(reason: p::StopActorReason) -> p::ActorCommandKeyData {
    p::ActorCommandKeyData::CommandStopActor(p::CommandStopActor { reason })
}

pub fn wrapper(
    actor: &str,
    generation: u32,
    index: i64,
    content: p::ActorCommandKeyData,
) -> p::CommandWrapper {
    command_from_stored(cp(actor, generation, index), content)
}

pub fn running() -> p::Event {
    p::Event::EventActorStateUpdate(p::EventActorStateUpdate {
        state: p::ActorState::ActorStateRunning,
    })
}

pub fn stopped(code: p::StopCode) -> p::Event {
    p::Event::EventActorStateUpdate(p::EventActorStateUpdate {
        state: p::ActorState::ActorStateStopped(p::ActorStateStopped { code, message: None }),
    })
}

pub fn intent_sleep() -> p::Event {
    p::Event::EventActorIntent(p::EventActorIntent { intent: p::ActorIntent::ActorIntentSleep })
}

pub fn alarm(ts: i64) -> p::Event {
    p::Event::EventActorSetAlarm(p::EventActorSetAlarm { alarm_ts: Some(ts) })
}

pub fn set(key: Vec<u8>, value: Vec<u8>) -> Mutation {
    Mutation::Set { key, value }
}

pub fn clear(key: Vec<u8>) -> Mutation {
    Mutation::Clear { key }
}

pub fn kv_record(value: &[u8], ts: i64) -> Vec<u8> {
    KvEntryRecord { value: value.to_vec(), version: b"2.3.7".to_vec(), update_ts: ts }.encode()
}

pub fn state_value(counter: u64) -> Vec<u8> {
    format!(r#"{{"initialized":true,"counter":{counter},"pages":0,"input":null}}"#).into_bytes()
}

/// The history under construction.
pub struct World {
    pub entries: Vec<TimedEntry>,
    pub now: u64,
    pub version: u64,
    pub infos: BTreeMap<RunnerId, RunnerInfo>,
    pub statuses: BTreeMap<String, ActorStatus>,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> Self {
        World {
            entries: Vec::new(),
            now: 1_000,
            version: 0,
            infos: BTreeMap::new(),
            statuses: BTreeMap::new(),
        }
    }

    pub fn tick(&mut self, ms: u64) -> &mut Self {
        self.now += ms;
        self
    }

    pub fn push(&mut self, node: &str, entry: Entry) {
        let seq = self.entries.len() as u64;
        self.entries.push(TimedEntry { seq, at_ms: self.now, node: node.to_string(), entry });
    }

    pub fn fact(&mut self, node: &str, fact: Fact) {
        self.push(node, Entry::Fact(fact));
    }

    pub fn commit(&mut self, node: &str, label: TxnLabel, applied: Vec<Mutation>) -> u64 {
        self.version += 1;
        self.fact(node, Fact::Commit { label, version: self.version, applied });
        self.version
    }

    pub fn frame(
        &mut self,
        conn: ConnId,
        r: &RunnerId,
        dir: Dir,
        received: bool,
        len: usize,
        decoded: Decoded,
    ) {
        let node = match (dir, received) {
            (Dir::ToRunner, false) | (Dir::ToEngine, true) => EDGE.to_string(),
            _ => node_of(r),
        };
        self.push(
            &node,
            Entry::Frame {
                conn,
                runner: Some(r.clone()),
                dir,
                received,
                len,
                bytes_hash: 0,
                decoded: Arc::new(decoded),
            },
        );
    }

    /// A frame from the engine, written and then received.
    pub fn send_to_runner(&mut self, conn: ConnId, r: &RunnerId, message: p::ToEnvoy) {
        self.frame(conn, r, Dir::ToRunner, false, 64, Decoded::ToEnvoy(message.clone()));
        self.frame(conn, r, Dir::ToRunner, true, 64, Decoded::ToEnvoy(message));
    }

    /// A frame from the runner, written and then received.
    pub fn send_to_engine(&mut self, conn: ConnId, r: &RunnerId, message: p::ToRivet) {
        self.frame(conn, r, Dir::ToEngine, false, 64, Decoded::ToRivet(message.clone()));
        self.frame(conn, r, Dir::ToEngine, true, 64, Decoded::ToRivet(message));
    }

    pub fn info(&mut self, r: &RunnerId) -> &mut RunnerInfo {
        self.infos.entry(r.clone()).or_insert_with(|| RunnerInfo {
            pool: POOL.into(),
            version: 1,
            protocol_version: 8,
            total_slots: 10,
            ..Default::default()
        })
    }

    pub fn put_info(&mut self, r: &RunnerId) -> Mutation {
        let info = self.info(r).clone();
        set(keys::runner_info(r), records::encode(&info))
    }

    pub fn status(&mut self, actor: &str, to: ActorStatus) {
        let from = self.statuses.insert(actor.to_string(), to);
        self.fact(CORE, Fact::StatusChanged { actor: actor.into(), from, to });
    }

    // ---- standard flows ------------------------------------------------------------------------

    /// The handshake of §2.3 up to a ready connection; returns the epoch.
    pub fn connect(&mut self, r: &RunnerId, conn: ConnId) -> u64 {
        let node = node_of(r);
        self.fact(&node, Fact::RunnerConnecting { runner: r.clone(), conn });
        self.fact(EDGE, Fact::SubscriptionConfirmed { runner: r.clone(), conn });
        let epoch = self.register(r, conn);
        self.send_to_engine(
            conn,
            r,
            p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
                prepopulate_actor_names: None,
                metadata: None,
            }),
        );
        self.send_to_runner(conn, r, init());
        self.fact(&node, Fact::RunnerInit { runner: r.clone(), conn });
        self.commit(
            EDGE,
            TxnLabel::Metadata,
            vec![set(
                keys::actor_name_metadata(NS, NAME),
                reference_manifest().to_metadata_json().into_bytes(),
            )],
        );
        self.fact(EDGE, Fact::MetadataCommitted { runner: r.clone(), conn, epoch });
        self.fact(EDGE, Fact::ReplayDone { runner: r.clone(), conn });
        self.ready(r, conn, epoch);
        epoch
    }

    /// The registration transaction and its fact; returns the epoch.
    pub fn register(&mut self, r: &RunnerId, conn: ConnId) -> u64 {
        let epoch = self.version + 1;
        let info = self.info(r);
        info.epoch = epoch;
        info.liveness_seq += 1;
        info.connected = true;
        info.ready = false;
        info.expired = false;
        let m = self.put_info(r);
        self.commit(EDGE, TxnLabel::Registration, vec![m, set(keys::registry_entry(r), vec![])]);
        self.fact(EDGE, Fact::Registered { runner: r.clone(), conn, epoch });
        epoch
    }

    pub fn ready(&mut self, r: &RunnerId, conn: ConnId, epoch: u64) {
        self.info(r).ready = true;
        let m = self.put_info(r);
        self.commit(EDGE, TxnLabel::Ready, vec![m, set(keys::eligible(NS, POOL, 1, r), vec![])]);
        self.fact(EDGE, Fact::Ready { runner: r.clone(), conn, epoch, eligible: true });
    }

    pub fn create_actor(&mut self, actor: &str, policy: CrashPolicy) {
        self.commit(
            CORE,
            TxnLabel::ActorCreate,
            vec![
                set(keys::actor_namespace(actor), NS.as_bytes().to_vec()),
                set(keys::actor_state(actor), b"{}".to_vec()),
            ],
        );
        self.fact(
            CORE,
            Fact::ActorCreated {
                actor: actor.into(),
                namespace: NS.into(),
                name: NAME.into(),
                pool: POOL.into(),
                crash_policy: policy,
            },
        );
    }

    /// A workflow step that allocates `(r, g)` directly and persists the `Start`.
    pub fn allocate(&mut self, actor: &str, r: &RunnerId, generation: u32) {
        self.info(r).used_slots += 1;
        let info = self.put_info(r);
        self.commit(
            CORE,
            TxnLabel::WorkflowStep,
            vec![
                set(
                    keys::actor_placement(actor),
                    records::encode(&Placement { runner: r.clone(), generation }),
                ),
                set(keys::runner_alloc(r, actor), records::encode(&generation)),
                info,
                set(
                    keys::runner_cmd(r, actor, generation, 0),
                    encode_stored_command(&start_content(None)),
                ),
                set(keys::actor_state(actor), b"{}".to_vec()),
            ],
        );
        self.fact(CORE, Fact::Allocated { actor: actor.into(), runner: r.clone(), generation });
        self.fact(
            CORE,
            Fact::CommandPersisted {
                runner: r.clone(),
                actor: actor.into(),
                generation,
                index: 0,
                kind: CommandKind::Start,
            },
        );
        self.status(actor, ActorStatus::Starting);
    }

    /// The edge fetches a bundle and writes the `Start`; the runner executes it, starts the
    /// instance and acknowledges; the edge deletes the key.
    pub fn deliver_start(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        bundle: Option<p::PreloadedKv>,
    ) {
        let version = self.version;
        self.deliver_start_at(actor, r, conn, generation, bundle, version);
    }

    /// [`World::deliver_start`] with the bundle read at `read_version`.
    pub fn deliver_start_at(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        bundle: Option<p::PreloadedKv>,
        read_version: u64,
    ) {
        let node = node_of(r);
        self.fact(
            EDGE,
            Fact::PreloadFetched {
                runner: r.clone(),
                conn,
                actor: actor.into(),
                generation,
                read_version: Some(read_version),
                budget: pegsim_model::constants::PRELOAD_MAX_TOTAL_BYTES,
                manifest_json: None,
                bundle: bundle.clone(),
                attempts: 1,
                failed: false,
            },
        );
        self.fact(
            EDGE,
            Fact::CommandsSent {
                runner: r.clone(),
                conn,
                replay: false,
                checkpoints: vec![(actor.into(), generation, 0)],
            },
        );
        let mut start = start_content(None);
        if let p::ActorCommandKeyData::CommandStartActor(s) = &mut start {
            s.preloaded_kv = bundle;
        }
        self.send_to_runner(
            conn,
            r,
            p::ToEnvoy::ToEnvoyCommands(vec![wrapper(actor, generation, 0, start)]),
        );
        self.fact(
            &node,
            Fact::RunnerCommand {
                runner: r.clone(),
                conn,
                actor: actor.into(),
                generation,
                index: 0,
                kind: CommandKind::Start,
                disposition: CommandDisposition::Exec,
            },
        );
        self.fact(
            &node,
            Fact::InstanceStart { runner: r.clone(), actor: actor.into(), generation },
        );
        self.command_ack(actor, r, conn, generation, 0);
    }

    /// The runner acknowledges `(A, g, k)` and the edge deletes the keys.
    pub fn command_ack(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        k: i64,
    ) {
        let node = node_of(r);
        self.fact(
            &node,
            Fact::RunnerAckCommands {
                runner: r.clone(),
                conn,
                actor: actor.into(),
                generation,
                index: k,
            },
        );
        self.send_to_engine(
            conn,
            r,
            p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
                last_command_checkpoints: vec![cp(actor, generation, k)],
            }),
        );
        self.commit(
            EDGE,
            TxnLabel::CommandAck,
            vec![Mutation::ClearRange { range: keys::runner_cmd_upto(r, actor, generation, k) }],
        );
        self.fact(
            EDGE,
            Fact::CommandAckApplied {
                runner: r.clone(),
                conn,
                actor: actor.into(),
                generation,
                index: k,
            },
        );
    }

    /// The runner's instance emits an event and sends it.
    pub fn emit(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        index: i64,
        event: p::Event,
    ) {
        self.fact(
            &node_of(r),
            Fact::EventEmit {
                runner: r.clone(),
                actor: actor.into(),
                generation,
                index,
                event: event.clone(),
            },
        );
        self.send_to_engine(
            conn,
            r,
            p::ToRivet::ToRivetEvents(vec![p::EventWrapper {
                checkpoint: cp(actor, generation, index),
                inner: event,
            }]),
        );
    }

    /// A workflow step commit (the actor's state plus `extra`).
    pub fn step(&mut self, actor: &str, extra: Vec<Mutation>) -> u64 {
        let mut muts = vec![set(keys::actor_state(actor), b"{}".to_vec())];
        muts.extend(extra);
        self.commit(CORE, TxnLabel::WorkflowStep, muts)
    }

    pub fn classify(
        &mut self,
        actor: &str,
        r: &RunnerId,
        generation: u32,
        index: i64,
        class: EventClass,
        event: p::Event,
    ) {
        self.fact(
            CORE,
            Fact::EventClassified {
                actor: actor.into(),
                runner: r.clone(),
                generation,
                index,
                class,
                event,
            },
        );
    }

    /// Emit and apply one event in its own step.
    pub fn emit_apply(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        index: i64,
        event: p::Event,
    ) {
        self.emit(actor, r, conn, generation, index, event.clone());
        self.step(actor, vec![]);
        self.classify(actor, r, generation, index, EventClass::Applied, event);
    }

    /// The step publishes an event ack, the runner receives it and forgets.
    pub fn ack_events(&mut self, actor: &str, r: &RunnerId, conn: ConnId, generation: u32, k: i64) {
        self.fact(
            CORE,
            Fact::EventAckPublished {
                runner: r.clone(),
                actor: actor.into(),
                generation,
                index: k,
            },
        );
        self.send_to_runner(
            conn,
            r,
            p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
                last_event_checkpoints: vec![cp(actor, generation, k)],
            }),
        );
        self.fact(
            &node_of(r),
            Fact::EventForget { runner: r.clone(), actor: actor.into(), generation, index: k },
        );
    }

    /// A step that persists `Stop(reason)` at index 1 and moves the actor to `Stopping`.
    pub fn persist_stop(
        &mut self,
        actor: &str,
        r: &RunnerId,
        generation: u32,
        reason: p::StopActorReason,
    ) {
        self.step(
            actor,
            vec![set(
                keys::runner_cmd(r, actor, generation, 1),
                encode_stored_command(&stop_content(reason)),
            )],
        );
        self.fact(
            CORE,
            Fact::CommandPersisted {
                runner: r.clone(),
                actor: actor.into(),
                generation,
                index: 1,
                kind: CommandKind::Stop(reason),
            },
        );
        self.status(actor, ActorStatus::Stopping(reason));
    }

    /// The edge writes the `Stop`, the runner executes and acknowledges it.
    pub fn deliver_stop(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        reason: p::StopActorReason,
    ) {
        self.fact(
            EDGE,
            Fact::CommandsSent {
                runner: r.clone(),
                conn,
                replay: false,
                checkpoints: vec![(actor.into(), generation, 1)],
            },
        );
        self.send_to_runner(
            conn,
            r,
            p::ToEnvoy::ToEnvoyCommands(vec![wrapper(actor, generation, 1, stop_content(reason))]),
        );
        self.fact(
            &node_of(r),
            Fact::RunnerCommand {
                runner: r.clone(),
                conn,
                actor: actor.into(),
                generation,
                index: 1,
                kind: CommandKind::Stop(reason),
                disposition: CommandDisposition::Exec,
            },
        );
        self.command_ack(actor, r, conn, generation, 1);
    }

    /// The instance terminates and emits `Stopped` with `index`.
    pub fn terminate(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        index: i64,
        code: p::StopCode,
    ) {
        self.fact(
            &node_of(r),
            Fact::InstanceTerminate {
                runner: r.clone(),
                actor: actor.into(),
                generation,
                code,
                reason: "test".into(),
            },
        );
        self.emit(actor, r, conn, generation, index, stopped(code));
    }

    /// The step that applies `Stopped` (index `index`) and ends the generation with `disposition`
    /// leading to `status`; then the ack, the forget and the tombstone drop.
    #[allow(clippy::too_many_arguments)]
    pub fn end_generation(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        index: i64,
        code: p::StopCode,
        inputs: DispositionInputs,
        disposition: Disposition,
        status: ActorStatus,
    ) {
        self.info(r).used_slots -= 1;
        let info = self.put_info(r);
        self.step(
            actor,
            vec![
                clear(keys::actor_placement(actor)),
                clear(keys::runner_alloc(r, actor)),
                info,
                Mutation::ClearRange { range: keys::runner_cmd_generation(r, actor, generation) },
            ],
        );
        self.classify(actor, r, generation, index, EventClass::Applied, stopped(code));
        let outcome =
            if code == p::StopCode::Ok { EndOutcome::StoppedOk } else { EndOutcome::StoppedError };
        self.fact(
            CORE,
            Fact::EndGeneration {
                actor: actor.into(),
                runner: r.clone(),
                generation,
                outcome,
                inputs,
                disposition,
            },
        );
        self.status(actor, status);
        self.ack_events(actor, r, conn, generation, index);
        self.fact(
            &node_of(r),
            Fact::TombstoneDrop { runner: r.clone(), actor: actor.into(), generation },
        );
    }

    /// A whole generation: allocate, start, Running, sleep intent, Stop, Stopped, Sleeping.
    pub fn sleep_cycle(&mut self, actor: &str, r: &RunnerId, conn: ConnId, generation: u32) {
        self.sleep_cycle_with(
            actor,
            r,
            conn,
            generation,
            Some(p::preloaded_kv::empty_keyspace()),
            |_| {},
        );
    }

    /// [`World::sleep_cycle`] delivering `bundle`, running `during` once the actor is Running.
    pub fn sleep_cycle_with(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        bundle: Option<p::PreloadedKv>,
        during: impl FnOnce(&mut World),
    ) {
        self.allocate(actor, r, generation);
        self.deliver_start(actor, r, conn, generation, bundle);
        self.emit_apply(actor, r, conn, generation, 0, running());
        self.status(actor, ActorStatus::Running);
        self.ack_events(actor, r, conn, generation, 0);
        during(self);
        self.emit(actor, r, conn, generation, 1, intent_sleep());
        self.persist_stop(actor, r, generation, p::StopActorReason::SleepIntent);
        self.classify(actor, r, generation, 1, EventClass::Applied, intent_sleep());
        self.ack_events(actor, r, conn, generation, 1);
        self.deliver_stop(actor, r, conn, generation, p::StopActorReason::SleepIntent);
        self.terminate(actor, r, conn, generation, 2, p::StopCode::Ok);
        self.end_generation(
            actor,
            r,
            conn,
            generation,
            2,
            p::StopCode::Ok,
            sleep_inputs(),
            Disposition::Sleep,
            ActorStatus::Sleeping,
        );
    }

    /// The instance `(A, g)` on `r` issues a KV put of `key := value` and the edge commits it.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_put(
        &mut self,
        actor: &str,
        r: &RunnerId,
        conn: ConnId,
        generation: u32,
        request_id: u32,
        key: &[u8],
        value: &[u8],
    ) -> u64 {
        self.fact(
            &node_of(r),
            Fact::KvRequestSent {
                runner: r.clone(),
                conn,
                actor: actor.into(),
                generation,
                request_id,
                kind: "put".into(),
            },
        );
        let ts = self.now as i64;
        let v = self.commit(
            EDGE,
            TxnLabel::KvRequest,
            vec![set(keys::actor_kv_key(actor, key), kv_record(value, ts))],
        );
        let epoch = self.info(r).epoch;
        self.fact(
            EDGE,
            Fact::KvAnswered {
                runner: r.clone(),
                conn,
                epoch,
                actor: actor.into(),
                request_id,
                placement_generation: Some(generation),
                mutation_version: Some(v),
                error: None,
            },
        );
        v
    }

    /// The registry expires `r` and declares `lost` lost.
    pub fn expire(&mut self, r: &RunnerId, lost: Vec<(String, u32)>) {
        let info = self.info(r);
        info.expired = true;
        info.connected = false;
        info.ready = false;
        let m = self.put_info(r);
        self.commit(CORE, TxnLabel::Expiry, vec![m, clear(keys::eligible(NS, POOL, 1, r))]);
        self.fact(CORE, Fact::Expired { runner: r.clone(), lost });
    }

    /// A step accepting `RunnerLost` for `(r, g)`: the generation ends with outcome `Lost` and
    /// the crash policy `Restart`, rescheduled.
    pub fn end_lost(&mut self, actor: &str, r: &RunnerId, generation: u32) {
        self.info(r).used_slots -= 1;
        let info = self.put_info(r);
        self.step(
            actor,
            vec![
                clear(keys::actor_placement(actor)),
                clear(keys::runner_alloc(r, actor)),
                info,
                Mutation::ClearRange { range: keys::runner_cmd_generation(r, actor, generation) },
            ],
        );
        self.fact(
            CORE,
            Fact::EndGeneration {
                actor: actor.into(),
                runner: r.clone(),
                generation,
                outcome: EndOutcome::Lost,
                inputs: DispositionInputs {
                    destroy_requested: false,
                    wake_pending: false,
                    stop_reason: None,
                    crash_policy: CrashPolicy::Restart,
                },
                disposition: Disposition::Reschedule,
            },
        );
        self.status(actor, ActorStatus::Rescheduling);
    }

    /// Feed everything to a fresh checker.
    pub fn check(&self) -> Checker {
        self.check_with(CheckConfig::default())
    }

    pub fn check_with(&self, config: CheckConfig) -> Checker {
        let mut checker = Checker::new(config);
        for e in &self.entries {
            checker.observe(e);
        }
        // The last step's window closes with the next entry; the history ends here.
        checker.close_window();
        checker
    }
}

pub fn init() -> p::ToEnvoy {
    p::ToEnvoy::ToEnvoyInit(p::ToEnvoyInit {
        metadata: p::ProtocolMetadata {
            envoy_lost_threshold: 15_000,
            actor_stop_threshold: 30_000,
            max_response_payload_size: 1 << 20,
        },
    })
}

pub fn sleep_inputs() -> DispositionInputs {
    DispositionInputs {
        destroy_requested: false,
        wake_pending: false,
        stop_reason: Some(p::StopActorReason::SleepIntent),
        crash_policy: CrashPolicy::Restart,
    }
}

/// The ids of the violations, in order.
pub fn ids(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(|v| v.id().to_string()).collect()
}

/// Assert the checker found exactly these invariant ids (no others).
#[track_caller]
pub fn assert_only(checker: &Checker, expected: &[&str]) {
    let found = ids(checker.violations());
    assert_eq!(found, expected, "violations: {:#?}", checker.violations());
}

/// A startup record for fake oracles.
pub fn record(counter: u64, new_actor: bool) -> StartupRecord {
    StartupRecord {
        reads: vec![("get [1]".into(), "x".into())],
        new_actor,
        counter,
        writes: vec![],
    }
}
