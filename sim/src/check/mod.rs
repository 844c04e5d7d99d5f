//! The invariant checkers: every safety invariant of `spec/protocol.md` §8.2 (S1–S19) and of
//! `spec/preload.md` §8 that the history lets us decide, the data-loss oracle, and the liveness
//! obligations of §8.3 (L1–L10), all computed online from the history (DESIGN.md principle 4).
//!
//! Owns: [`Checker`] and everything it remembers. It reads only [`TimedEntry`] values: facts,
//! frames as seen on the wire, link events, faults, node events and phases. It never reads the
//! model's memory or its store: where it needs store state it keeps its own shadow, rebuilt from
//! the mutations every `Fact::Commit` carries (`shadow`). Expectations are derived from the specs,
//! independently of the model (the §4.4 event classification, the §5.4 disposition table, the
//! reference preload of `preload::oracle`). It must not touch the model, the world or the history.
//!
//! Modules (one concept each, all `impl Checker` blocks over the shared state of `state`):
//! - `names`: the invariant names; `envelope`: the timing envelope (§6.3);
//! - `shadow`: the store shadow; `state`: what is remembered; `commit`: what every commit runs;
//! - `instances`: S1, S2 (instances vs generations), S7 (instance starts), runner processes;
//! - `generations`: S2 (start sequence), S3, S16, S17;
//! - `events`: S4, S5, S8;
//! - `commands`: S6, S7 (command execution), S9, S10;
//! - `frames`: S11 and the connection bookkeeping;
//! - `demux`: the edge demuxer's accounting of accepted events (§4.3, reported as L3);
//! - `registry`: S12, S13, S14, S15, S18;
//! - `preload`: S19 (P0–P16), K6 and the data-loss oracle;
//! - `liveness`: L1–L10.
//!
//! **Transaction windows.** The model records a commit's `Fact::Commit` before the facts of the
//! step that made it. A window is a commit plus the facts that follow it from the same node, until
//! the next commit or any other entry. Checks that relate a commit to its step's facts (a `Start`
//! needs the previous generation's end, a disposition needs its outcome and resulting status, the
//! status needs the placement) run when the window closes, independently of the facts' order
//! inside the step. "Before the step" means the shadow before the window's commit.
//!
//! What the checker assumes of the history (the world's side of the contract):
//! - it starts from an empty store and carries a `Fact::Commit` for every applied commit (store
//!   versions are consecutive); a gap is reported as `HISTORY every commit recorded`;
//! - `Entry::Frame` entries are data frames only (WebSocket control frames are not protocol
//!   frames), each recorded when written and again when read;
//! - a runner node's facts carry that node's name, and its crash is an `Entry::Node` `crash`.
//!
//! Not decidable from the history, so not checked: P11 (the runner's individual map lookups are
//! not recorded), P13 beyond the empty-keyspace case, L11 (alarm due times are the core node's
//! skewed wall clock), S16's sleep marker (not a store key). P17 and P18 are covered by P12,
//! which compares every startup (with or without a bundle) with the oracle run.
//!
//! Choices where the specs are silent (more in each module's top comment):
//! - Each distinct invariant is reported once, at its first occurrence; S1, S2 and S14 found
//!   while the envelope is broken go to `outside_envelope` instead (once per invariant there too).
//! - Preload violations are reported under their own id (`P2 get-key soundness`, ...), not as S19.
//! - `Δ` of §8.3 is [`LIVENESS_DELTA_MS`] (configurable in [`CheckConfig`]).

mod commands;
mod commit;
mod demux;
mod envelope;
mod events;
mod frames;
mod generations;
mod instances;
mod liveness;
pub mod names;
mod preload;
mod registry;
mod shadow;
mod state;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use pegsim_model::config::Timing;
use pegsim_model::fact::{ConnId, Fact, StartupRecord};
use pegsim_model::keys::{ActorId, RunnerId};
use pegsim_model::kv::KvConfig;
use pegsim_model::preload::Snapshot;
use pegsim_model::records::Placement;

use crate::run::{Entry, TimedEntry, Violation};

use envelope::Envelope;
use shadow::{PendingEntry, Shadow};
use state::{ActorTrack, At, ConnTrack, GenTrack, IdentTrack, ProcTrack, Window};

/// `Δ` of `spec/protocol.md` §8.3: a small multiple of the link, bus and step latencies, added
/// to every liveness bound.
pub const LIVENESS_DELTA_MS: u64 = 5_000;

/// How many closed connections are remembered (to ignore frames still in flight on them).
const CLOSED_CONNS_KEPT: usize = 4_096;

/// The oracle run of `spec/preload.md` §6.3: the startup program run over `S@V` with every read
/// live and its own writes applied, for actor `A`, generation `g` and the actor's input. Provided
/// by whoever owns the startup program; the checker only compares its record (P12).
pub type StartupOracle =
    Box<dyn Fn(&Snapshot, &str, u32, Option<&[u8]>) -> StartupRecord + Send + 'static>;

/// What the checkers need to know about the run's configuration (never the canaries).
pub struct CheckConfig {
    /// Timing and size parameters the engine and runners run with.
    pub timing: Timing,
    /// The global preload budget `T`.
    pub preload_budget: u64,
    /// KV settings (the storage quota of K6).
    pub kv: KvConfig,
    /// `MAX_FRAME_BYTES` of S11.
    pub max_frame_bytes: usize,
    /// The P12 oracle run; `None` = P12 is not checked.
    pub startup_oracle: Option<StartupOracle>,
    /// `Δ` of §8.3.
    pub liveness_delta_ms: u64,
}

impl CheckConfig {
    /// A configuration without a startup oracle and with `Δ = LIVENESS_DELTA_MS`.
    pub fn new(timing: Timing, preload_budget: u64, kv: KvConfig, max_frame_bytes: usize) -> Self {
        CheckConfig {
            timing,
            preload_budget,
            kv,
            max_frame_bytes,
            startup_oracle: None,
            liveness_delta_ms: LIVENESS_DELTA_MS,
        }
    }

    /// Check P12 with this oracle run.
    pub fn with_startup_oracle(mut self, oracle: StartupOracle) -> Self {
        self.startup_oracle = Some(oracle);
        self
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        let timing = Timing::default();
        let max_frame_bytes = timing.max_frame_bytes;
        CheckConfig::new(
            timing,
            pegsim_model::constants::PRELOAD_MAX_TOTAL_BYTES,
            KvConfig::default(),
            max_frame_bytes,
        )
    }
}

impl fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckConfig")
            .field("timing", &self.timing)
            .field("preload_budget", &self.preload_budget)
            .field("kv", &self.kv)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("startup_oracle", &self.startup_oracle.is_some())
            .field("liveness_delta_ms", &self.liveness_delta_ms)
            .finish()
    }
}

/// The online checker of one run. Feed it every history entry in order with
/// [`Checker::observe`]; call [`Checker::finish`] at the end of the heal phase.
pub struct Checker {
    cfg: CheckConfig,
    violations: Vec<Violation>,
    outside: Vec<Violation>,
    reported: BTreeSet<&'static str>,
    reported_outside: BTreeSet<&'static str>,
    envelope: Envelope,
    shadow: Shadow,
    window: Option<Window>,
    heal_at: Option<u64>,
    progress: u64,
    last: At,
    actors: BTreeMap<ActorId, ActorTrack>,
    /// Actors that were destroyed (their tracks are dropped).
    destroyed: BTreeSet<ActorId>,
    gens: BTreeMap<(ActorId, u32), GenTrack>,
    procs: BTreeMap<RunnerId, ProcTrack>,
    idents: BTreeMap<RunnerId, IdentTrack>,
    conns: BTreeMap<ConnId, ConnTrack>,
    /// Connections both ends closed (frames still in flight on them are not checked again); the
    /// most recent `CLOSED_CONNS_KEPT`, oldest first in `closed_order`.
    closed_conns: BTreeSet<ConnId>,
    closed_order: VecDeque<ConnId>,
    /// Where updates addressed to a closed connection go (and are dropped).
    scratch_conn: ConnTrack,
    /// Process incarnation per node (S12: a key is never reused by another incarnation).
    node_incarnation: BTreeMap<String, u64>,
    /// S12: the (node, incarnation) that first connected with each runner identity.
    key_owner: BTreeMap<RunnerId, (String, u64)>,
    /// S2: instances started after their generation ended, reported unless they terminate at
    /// the same instant (a `Start` processed while fenced creates and ends its record at once).
    late_starts: Vec<(At, ActorId, u32, RunnerId)>,
    /// L8: since when each `(namespace, pool)` has an eligible runner with a free slot.
    pool_capacity: BTreeMap<(String, String), u64>,
    /// L8: when each pending entry appeared.
    pending_since: BTreeMap<(ActorId, PendingEntry), u64>,
    /// §4.3: every demuxer queue's accepted events not yet in the workflow's inbox.
    demux_queues: BTreeMap<(ConnId, ActorId), demux::DemuxAccount>,
    /// The connection of each registration `(runner, epoch)` that has demuxer queues.
    demux_conn_of: BTreeMap<(RunnerId, u64), ConnId>,
    /// Some applied commit was never recorded (see `names::HISTORY`): the keyspace shadow is
    /// incomplete, so the checks that read actor keyspaces are suspended.
    shadow_gap: bool,
}

impl Checker {
    /// A checker with nothing observed yet.
    pub fn new(config: CheckConfig) -> Checker {
        let grace = config.timing.runner_lost_threshold_ms + config.timing.fence_margin_ms;
        Checker {
            cfg: config,
            violations: Vec::new(),
            outside: Vec::new(),
            reported: BTreeSet::new(),
            reported_outside: BTreeSet::new(),
            envelope: Envelope::new(grace),
            shadow: Shadow::default(),
            window: None,
            heal_at: None,
            progress: 0,
            last: At { seq: 0, ms: 0 },
            actors: BTreeMap::new(),
            destroyed: BTreeSet::new(),
            gens: BTreeMap::new(),
            procs: BTreeMap::new(),
            idents: BTreeMap::new(),
            conns: BTreeMap::new(),
            closed_conns: BTreeSet::new(),
            closed_order: VecDeque::new(),
            scratch_conn: ConnTrack::default(),
            node_incarnation: BTreeMap::new(),
            key_owner: BTreeMap::new(),
            late_starts: Vec::new(),
            pool_capacity: BTreeMap::new(),
            demux_queues: BTreeMap::new(),
            demux_conn_of: BTreeMap::new(),
            pending_since: BTreeMap::new(),
            shadow_gap: false,
        }
    }

    /// Check one history entry (safety checks, online). Entries must come in history order.
    pub fn observe(&mut self, entry: &TimedEntry) {
        let at = At { seq: entry.seq, ms: entry.at_ms };
        self.last = at;
        self.flush_late_starts(at);
        match &entry.entry {
            Entry::Fact(Fact::Commit { label, version, applied }) => {
                self.close_window();
                self.on_commit(at, &entry.node, *label, *version, applied);
            }
            Entry::Fact(fact) => {
                let same_step = matches!(&self.window, Some(w) if w.node == entry.node)
                    && !matches!(fact, Fact::CommitFailed { .. });
                if !same_step {
                    self.close_window();
                }
                self.on_fact(at, &entry.node, fact);
            }
            other => {
                self.close_window();
                match other {
                    Entry::Frame { conn, runner, dir, received, len, decoded, .. } => {
                        self.on_frame(at, *conn, runner.as_ref(), *dir, *received, *len, decoded)
                    }
                    Entry::Fault { class, detail } => self.envelope.on_fault(at.ms, class, detail),
                    Entry::Node { node, event } => self.on_node(at, node, event),
                    Entry::Phase { phase } => {
                        if phase == "heal" && self.heal_at.is_none() {
                            self.heal_at = Some(at.ms);
                        }
                    }
                    Entry::Link { .. } | Entry::Workload { .. } | Entry::Fact(_) => {}
                }
            }
        }
    }

    fn on_fact(&mut self, at: At, node: &str, fact: &Fact) {
        match fact {
            Fact::Commit { .. } | Fact::CommitFailed { .. } => {}
            // runner
            Fact::RunnerConnecting { runner, conn } => {
                self.on_runner_connecting(at, node, runner, *conn)
            }
            Fact::RunnerConnClosed { runner, conn, .. } => {
                self.on_runner_conn_closed(at, runner, *conn)
            }
            Fact::RunnerInit { conn, .. } => self.conn(*conn).runner_init_received = true,
            Fact::InstanceStart { runner, actor, generation } => {
                self.on_instance_start(at, node, runner, actor, *generation)
            }
            Fact::InstanceTerminate { runner, actor, generation, .. } => {
                self.on_instance_terminate(at, runner, actor, *generation)
            }
            Fact::RunnerCommand { runner, conn, actor, generation, index, kind, disposition } => {
                self.on_runner_command(
                    at,
                    runner,
                    *conn,
                    actor,
                    *generation,
                    *index,
                    *kind,
                    *disposition,
                )
            }
            Fact::RunnerAckCommands { runner, actor, generation, index, .. } => {
                self.check_runner_command_ack(at, runner, actor, *generation, *index)
            }
            Fact::EventEmit { runner, actor, generation, index, event } => {
                self.on_event_emit(at, runner, actor, *generation, *index, event)
            }
            Fact::EventForget { runner, actor, generation, index } => {
                self.on_event_forget(at, runner, actor, *generation, *index)
            }
            Fact::TombstoneDrop { runner, actor, generation } => {
                self.on_tombstone_drop(at, runner, actor, *generation)
            }
            Fact::Fence { .. }
            | Fact::FatalEviction { .. }
            | Fact::RunnerProtocolViolation { .. } => {}
            Fact::KvRequestSent { runner, conn, actor, generation, request_id, .. } => {
                self.on_kv_request_sent(at, runner, *conn, actor, *generation, *request_id)
            }
            Fact::StartupObserved { runner, actor, generation, had_bundle, live_reads, record } => {
                self.on_startup_observed(
                    at,
                    runner,
                    actor,
                    *generation,
                    *had_bundle,
                    *live_reads,
                    record,
                )
            }
            Fact::RunnerStopping { .. } => {}
            Fact::RunnerExit { runner, .. } => self.on_runner_exit(at, node, runner),
            // edge
            Fact::SubscriptionConfirmed { runner, conn } => {
                self.on_subscription_confirmed(node, runner, *conn)
            }
            Fact::Registered { runner, conn, epoch } => {
                self.on_registered(at, node, runner, *conn, *epoch)
            }
            Fact::MetadataCommitted { runner, conn, epoch } => {
                self.check_epoch_current(at, "metadata", runner, *conn, *epoch);
                self.conn(*conn).metadata_committed = true;
            }
            Fact::ReplayPage { .. } | Fact::ReplayDone { .. } | Fact::LiveCommandDropped { .. } => {
            }
            Fact::CommandsSent { conn, replay, .. } => self.on_commands_sent(at, *conn, *replay),
            Fact::PreloadFetched {
                runner,
                conn,
                actor,
                generation,
                read_version,
                bundle,
                failed,
                ..
            } => self.on_preload_fetched(
                at,
                runner,
                *conn,
                actor,
                *generation,
                *read_version,
                bundle.as_ref(),
                *failed,
            ),
            Fact::DemuxEnqueue { conn, actor, .. } => {
                self.conn(*conn).demux.insert(actor.clone(), at.ms);
                self.on_demux_enqueue(node, *conn, actor);
            }
            Fact::DemuxRemove { conn, actor } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.demux.remove(actor);
                }
                self.on_demux_remove(at, *conn, actor);
            }
            Fact::DemuxDiscard { conn, actor, .. } => self.on_demux_discard(at, *conn, actor),
            Fact::KvAnswered {
                runner, conn, epoch, actor, request_id, mutation_version, ..
            } => self.on_kv_answered(
                at,
                runner,
                *conn,
                *epoch,
                actor,
                *request_id,
                *mutation_version,
            ),
            Fact::CommandAckApplied { .. } => self.progress += 1,
            Fact::EdgeConnClosed { conn, .. } => {
                self.on_demux_conn_closed(at, *conn);
                self.on_edge_conn_closed(at, *conn)
            }
            Fact::Ready { runner, conn, epoch, .. } => self.on_ready(at, runner, *conn, *epoch),
            Fact::Teardown { runner, conn, current, .. } => {
                if *current {
                    self.on_connection_lost(at, runner, *conn);
                }
            }
            Fact::Drain { runner, allocations } => {
                self.ident(runner).drain = Some((at.ms, allocations.clone()));
                self.progress += 1;
            }
            Fact::LivenessWrite { runner, conn, epoch, .. } => {
                self.check_epoch_current(at, "liveness", runner, *conn, *epoch)
            }
            // workflow
            Fact::ActorCreated { actor, namespace, name, crash_policy, .. } => {
                let track = self.actor(actor);
                track.namespace = Some(namespace.clone());
                track.name = Some(name.clone());
                track.crash_policy = Some(*crash_policy);
                self.progress += 1;
            }
            Fact::WorkflowStep { .. } => {}
            Fact::EventClassified { actor, runner, generation, index, class, event } => self
                .on_event_classified(at, node, actor, runner, *generation, *index, *class, event),
            Fact::CommandPersisted { .. } => self.progress += 1,
            Fact::EventAckPublished { runner, actor, generation, index } => {
                self.window_for(at, node).acks.push((
                    at,
                    runner.clone(),
                    actor.clone(),
                    *generation,
                    *index,
                ));
            }
            Fact::EndGeneration { actor, runner, generation, outcome, inputs, disposition } => self
                .on_end_generation(
                    at,
                    node,
                    actor,
                    runner,
                    *generation,
                    *outcome,
                    inputs,
                    *disposition,
                ),
            Fact::StatusChanged { actor, to, .. } => self.on_status_changed(at, node, actor, *to),
            // registry
            Fact::Allocated { .. } | Fact::PendingEnqueue { .. } | Fact::PendingDequeue { .. } => {
                self.progress += 1
            }
            Fact::Expired { runner, lost } => self.on_expired(at, runner, lost),
            Fact::Retired { .. } => self.progress += 1,
            Fact::Probe { .. } => {}
        }
    }

    /// A number that changes whenever the system makes progress (an event applied, a generation
    /// ended, a status changed, a command executed, acknowledged or deleted, a connection became
    /// ready, ...). Reconnect loops and retries that achieve nothing do not change it.
    pub fn progress_marker(&self) -> u64 {
        self.progress
    }

    /// The liveness obligations still open at `now_ms`, one line each, deterministic order.
    pub fn obligations(&self, now_ms: u64) -> Vec<String> {
        self.open_obligations(now_ms)
            .into_iter()
            .map(|o| {
                format!(
                    "{}: {} (since {} ms, due {} ms{})",
                    o.invariant,
                    o.detail,
                    o.since_ms,
                    o.due_ms,
                    if o.due_ms < now_ms { ", overdue" } else { "" }
                )
            })
            .collect()
    }

    /// Liveness checks at the end of the heal phase: every obligation still open past its bound
    /// is a violation.
    pub fn finish(&mut self, now_ms: u64) {
        self.close_window();
        self.flush_late_starts(At { seq: self.last.seq, ms: u64::MAX });
        let at = At { seq: self.last.seq, ms: now_ms };
        for o in self.open_obligations(now_ms) {
            if o.due_ms < now_ms {
                let detail =
                    format!("{} (open since {} ms, due {} ms)", o.detail, o.since_ms, o.due_ms);
                self.flag(o.invariant, at, o.actor.as_deref(), o.runner.as_ref(), detail);
            }
        }
    }

    /// Every distinct invariant violated, first occurrence each, in the order found.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Violations of S1, S2 and S14 found while the timing envelope was broken.
    pub fn outside_envelope(&self) -> &[Violation] {
        &self.outside
    }

    // ---- shared helpers ------------------------------------------------------------------------

    /// Report a violation of `invariant` (once per invariant; S1/S2/S14 outside the envelope go
    /// to the outside list).
    fn flag(
        &mut self,
        invariant: &'static str,
        at: At,
        actor: Option<&str>,
        runner: Option<&RunnerId>,
        detail: impl Into<String>,
    ) {
        let outside = names::envelope_sensitive(invariant) && self.envelope.broken(at.ms);
        let (list, seen) = if outside {
            (&mut self.outside, &mut self.reported_outside)
        } else {
            (&mut self.violations, &mut self.reported)
        };
        if !seen.insert(invariant) {
            return;
        }
        list.push(Violation {
            invariant: invariant.to_string(),
            detail: detail.into(),
            at_ms: at.ms,
            seq: at.seq,
            actor: actor.map(str::to_string),
            runner: runner.map(|r| r.to_string()),
            outside_envelope: outside,
        });
    }

    fn actor(&mut self, actor: &str) -> &mut ActorTrack {
        self.actors.entry(actor.to_string()).or_default()
    }

    fn ended(&self, actor: &str, generation: u32) -> bool {
        self.destroyed.contains(actor)
            || self.actors.get(actor).is_some_and(|a| a.ended(generation))
    }

    fn gen(&mut self, actor: &str, generation: u32) -> &mut GenTrack {
        self.gens.entry((actor.to_string(), generation)).or_default()
    }

    fn proc(&mut self, runner: &RunnerId) -> &mut ProcTrack {
        self.procs.entry(runner.clone()).or_default()
    }

    fn ident(&mut self, runner: &RunnerId) -> &mut IdentTrack {
        self.idents.entry(runner.clone()).or_default()
    }

    /// The record of `conn`, created on first use; a connection already closed on both ends gets
    /// a throw-away record, so that late facts and frames cannot resurrect it.
    fn conn(&mut self, conn: ConnId) -> &mut ConnTrack {
        if self.closed_conns.contains(&conn) {
            self.scratch_conn = ConnTrack::default();
            return &mut self.scratch_conn;
        }
        self.conns.entry(conn).or_default()
    }

    /// The actor's placement before the open window's commit (the state its step read).
    fn placement_before_step(&self, actor: &str) -> Option<Placement> {
        if let Some(p) = self.window.as_ref().and_then(|w| w.placement_before.get(actor)) {
            return p.clone();
        }
        self.shadow.placements.get(actor).cloned()
    }

    /// The open window if it belongs to `node`, else a fresh window without a commit (for facts
    /// recorded outside a transaction).
    fn window_for(&mut self, at: At, node: &str) -> &mut Window {
        if !matches!(&self.window, Some(w) if w.node == node) {
            self.close_window();
            self.window = Some(Window::new(at, node));
        }
        self.window.get_or_insert_with(|| Window::new(at, node))
    }

    /// Run the checks that need a whole step, then forget the generations it ended.
    fn close_window(&mut self) {
        let Some(w) = self.window.take() else { return };
        self.check_window_generations(&w);
        self.check_window_acks(&w);
        self.check_window_status(&w);
        for end in &w.ends {
            self.forget_generation(&end.actor, &end.runner, end.generation);
        }
    }

    fn flush_late_starts(&mut self, now: At) {
        if self.late_starts.is_empty() {
            return;
        }
        let (due, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.late_starts).into_iter().partition(|(at, ..)| at.ms < now.ms);
        self.late_starts = keep;
        for (at, actor, generation, runner) in due {
            let still_open = self
                .actors
                .get(&actor)
                .is_some_and(|a| a.open_instances.contains_key(&(runner.clone(), generation)));
            if still_open {
                self.flag(
                    names::S2,
                    at,
                    Some(&actor),
                    Some(&runner),
                    format!("instance ({actor}, {generation}) started on {runner} after end_generation({actor}, {generation})"),
                );
            }
        }
    }
}
