//! The runner registry's safety invariants: S12 INV-ID (one current connection, epoch checks, no
//! reused `envoy_key`), S13 INV-ELIG (allocation only to an eligible runner whose current
//! connection subscribed, registered and committed its metadata first), S14 INV-KV1W (the single
//! writer of an actor's keyspace), S15 INV-SLOTS and S18 INV-BOUND (store); plus the registry-side
//! bookkeeping the liveness obligations L1, L7, L8 and L9 need.
//!
//! Owns the `IdentTrack` updates and the per-pool capacity times. Reads the shadow (records,
//! allocations, placements, command keys) after each commit and the window's "before" values.
//!
//! Choices where the spec is silent:
//! - S12's "at most one connection of R is current" is structural in a record with one `epoch`
//!   field; what is checked is that the epoch a commit writes only ever increases per identity
//!   (even across deletion), and that each metadata, liveness, ready and KV fact names the epoch
//!   the record held at that commit and the epoch its connection registered with.
//! - S13's "used < total" is checked as: after the commit, the runner's allocations fit the total
//!   it had before it (several allocations may share one drainer commit, and a step may free a
//!   slot of the same runner before it allocates).
//! - S14 at commit level: a KV-request commit may touch an actor's keyspace only while a
//!   placement exists and its runner is not expired; any other commit may only delete the keyspace
//!   of an actor it destroys. Per answer (`KvAnswered` with a mutation version): the request was
//!   issued by instance `(A, g)` of that runner, the placement at that version was `(R, g)`, the
//!   runner was not expired. An epoch mismatch is reported as S12 (it is a currency rule that does
//!   not depend on timing).
//! - A KV request sent by a runner is flagged (S14) only when no instance of that generation was
//!   ever started on that process; whether a terminated instance's queued request may still go out
//!   is the runner's business and is judged by the commit-level checks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pegsim_model::fact::{ConnId, TxnLabel};
use pegsim_model::keys::{ActorId, RunnerId};
use pegsim_model::records::{Placement, RunnerInfo};
use pegsim_model::store::Version;

use super::names;
use super::shadow::{Change, KeyKind, Value};
use super::state::{At, EpochConn};
use super::Checker;

/// How many past values of a record or placement are kept for checks at a past version.
const HISTORY_LEN: usize = 8;
/// How many registered epochs are kept per identity.
const EPOCHS_KEPT: usize = 8;

fn info_of(v: &Option<Value>) -> Option<&RunnerInfo> {
    match v {
        Some(Value::Info(i)) => Some(i),
        _ => None,
    }
}

/// The value a short `(version, value)` history had at `version`, if it reaches back that far.
pub(super) fn at_version<T: Clone>(hist: &VecDeque<(Version, T)>, version: Version) -> Option<T> {
    hist.iter().rev().find(|(v, _)| *v <= version).map(|(_, t)| t.clone())
}

fn push_hist<T>(hist: &mut VecDeque<(Version, T)>, version: Version, value: T) {
    hist.push_back((version, value));
    while hist.len() > HISTORY_LEN {
        hist.pop_front();
    }
}

impl Checker {
    /// S12 (epochs), S13, S15, S18 and the liveness bookkeeping, after one commit.
    pub(super) fn check_registry_commit(
        &mut self,
        at: At,
        _label: TxnLabel,
        version: Version,
        changes: &[Change],
    ) {
        let mut runners: BTreeSet<RunnerId> = BTreeSet::new();
        let mut actors: BTreeSet<ActorId> = BTreeSet::new();
        let mut allocations: BTreeMap<RunnerId, Vec<(ActorId, u32)>> = BTreeMap::new();
        for change in changes {
            match &change.kind {
                KeyKind::RunnerInfo(r) => {
                    runners.insert(r.clone());
                    self.on_info_change(at, version, r, info_of(&change.old), info_of(&change.new));
                }
                KeyKind::RunnerAlloc(r, a) => {
                    runners.insert(r.clone());
                    actors.insert(a.clone());
                    if let Some(Value::Alloc(g)) = &change.new {
                        if change.old != Some(Value::Alloc(*g)) {
                            allocations.entry(r.clone()).or_default().push((a.clone(), *g));
                        }
                    }
                }
                KeyKind::RunnerCmd(r, a, ..) => {
                    runners.insert(r.clone());
                    actors.insert(a.clone());
                }
                KeyKind::Placement(a) => {
                    actors.insert(a.clone());
                    let now = self.shadow.placements.get(a).cloned();
                    push_hist(&mut self.actor(a).placement_hist, version, now);
                }
                _ => {}
            }
        }

        for (runner, allocated) in &allocations {
            self.check_allocation(at, runner, allocated);
        }
        for runner in &runners {
            self.check_slots(at, runner);
            let (cmds, allocs) = (self.shadow.cmd_count(runner), self.shadow.alloc_count(runner));
            if cmds > 2 * allocs {
                self.flag(
                    names::S18,
                    at,
                    None,
                    Some(runner),
                    format!("runner {runner} has {cmds} command keys for {allocs} allocations (bound 2 x allocations)"),
                );
            }
        }
        for actor in &actors {
            self.check_placement_matches_alloc(at, actor);
            self.check_no_stale_command_keys(at, actor);
        }
        self.track_capacity(at, &runners);
    }

    fn on_info_change(
        &mut self,
        at: At,
        version: Version,
        runner: &RunnerId,
        old: Option<&RunnerInfo>,
        new: Option<&RunnerInfo>,
    ) {
        let mut epoch_problem = None;
        {
            let ident = self.idents.entry(runner.clone()).or_default();
            if let Some(n) = new {
                if old.map(|o| o.epoch) != Some(n.epoch) {
                    if n.epoch <= ident.max_epoch {
                        epoch_problem = Some(format!(
                            "runner {runner}'s epoch went from {} to {} (highest ever {})",
                            old.map_or(0, |o| o.epoch),
                            n.epoch,
                            ident.max_epoch
                        ));
                    }
                    ident.max_epoch = ident.max_epoch.max(n.epoch);
                }
                if old.map(|o| o.liveness_seq) != Some(n.liveness_seq) {
                    ident.liveness_changed_ms = at.ms;
                }
                if n.expired && !old.is_some_and(|o| o.expired) {
                    ident.expired_ms = Some(at.ms);
                } else if !n.expired {
                    ident.expired_ms = None;
                }
            } else {
                ident.expired_ms = None;
                ident.retire_ready_since = None;
            }
            push_hist(&mut ident.info_hist, version, new.map(|n| (n.epoch, n.expired)));
        }
        // A retired identity whose process is gone can no longer matter (its epochs are kept in
        // `max_epoch` only while it may register again, i.e. while its process lives).
        if new.is_none() && !self.procs.contains_key(runner) {
            self.idents.remove(runner);
        }
        if let Some(detail) = epoch_problem {
            self.flag(names::S12, at, None, Some(runner), detail);
        }
    }

    /// S13 for the allocations one commit made to `runner`.
    fn check_allocation(&mut self, at: At, runner: &RunnerId, allocated: &[(ActorId, u32)]) {
        let before = match self.window.as_ref().and_then(|w| w.info_before.get(runner)) {
            Some(b) => b.clone(),
            None => self.shadow.infos.get(runner).cloned(),
        };
        let first = allocated.first().map(|(a, _)| a.as_str());
        let Some(info) = before else {
            self.flag(
                names::S13,
                at,
                first,
                Some(runner),
                format!("allocation to {runner}, which has no runner record"),
            );
            return;
        };
        if !info.eligible() {
            self.flag(
                names::S13,
                at,
                first,
                Some(runner),
                format!(
                    "allocation of {allocated:?} to {runner}, which was not eligible (connected {}, ready {}, draining {}, expired {})",
                    info.connected, info.ready, info.draining, info.expired
                ),
            );
        }
        // The same step may free a slot of this runner first (a generation ending and the next
        // one placed on the same runner), so the bound is on the allocations after the commit.
        let count = self.shadow.alloc_count(runner);
        if count > info.total_slots as usize {
            self.flag(
                names::S13,
                at,
                first,
                Some(runner),
                format!(
                    "allocation of {allocated:?} to {runner} leaves {count} allocations for {} slots",
                    info.total_slots
                ),
            );
        }
        let epoch_conn = self.idents.get(runner).and_then(|i| i.epochs.get(&info.epoch)).copied();
        let problem = match epoch_conn {
            None => Some(format!("no registration of epoch {} was observed", info.epoch)),
            Some(EpochConn { conn, subscribed: false, .. }) => {
                Some(format!("its current connection {conn} had no confirmed subscription"))
            }
            Some(EpochConn { conn, metadata: false, .. }) => {
                Some(format!("its current connection {conn} had not committed its metadata"))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            self.flag(
                names::S13,
                at,
                first,
                Some(runner),
                format!("allocation of {allocated:?} to {runner}, but {problem}"),
            );
        }
        if let Some(after) = self.shadow.infos.get(runner) {
            if after.used_slots > after.total_slots {
                let detail = format!(
                    "an allocation made runner {runner} use {} of {} slots",
                    after.used_slots, after.total_slots
                );
                self.flag(names::S15, at, first, Some(runner), detail);
            }
        }
    }

    /// S15: `used = count(alloc)`; an allocation never makes `used` exceed `total`.
    fn check_slots(&mut self, at: At, runner: &RunnerId) {
        let count = self.shadow.alloc_count(runner);
        let problem = match self.shadow.infos.get(runner) {
            Some(info) if info.used_slots as usize != count => Some(format!(
                "runner {runner} records {} used slots but has {count} allocations",
                info.used_slots
            )),
            None if count > 0 => {
                Some(format!("runner {runner} has {count} allocations and no record"))
            }
            _ => None,
        };
        if let Some(detail) = problem {
            self.flag(names::S15, at, None, Some(runner), detail);
        }
    }

    /// S15: `actor/A/placement = (R, g)` iff `runner/R/alloc/A = g`.
    fn check_placement_matches_alloc(&mut self, at: At, actor: &str) {
        let placement = self.shadow.placements.get(actor).cloned();
        let allocs: Vec<(RunnerId, u32)> = self
            .shadow
            .actor_allocs
            .get(actor)
            .map(|m| m.iter().map(|(r, g)| (r.clone(), *g)).collect())
            .unwrap_or_default();
        let consistent = match &placement {
            Some(Placement { runner, generation }) => allocs == vec![(runner.clone(), *generation)],
            None => allocs.is_empty(),
        };
        if !consistent {
            self.flag(
                names::S15,
                at,
                Some(actor),
                placement.as_ref().map(|p| &p.runner),
                format!("actor {actor} has placement {placement:?} but allocations {allocs:?}"),
            );
        }
    }

    /// S18: no command key belongs to a generation other than the current placement's.
    fn check_no_stale_command_keys(&mut self, at: At, actor: &str) {
        let placement = self.shadow.placements.get(actor);
        let stale = self.shadow.actor_cmds.get(actor).and_then(|keys| {
            keys.iter()
                .find(|(r, g, _)| placement.is_none_or(|p| p.runner != *r || p.generation != *g))
                .cloned()
        });
        if let Some((r, g, i)) = stale {
            self.flag(
                names::S18,
                at,
                Some(actor),
                Some(&r),
                format!(
                    "command key ({r}, {actor}, {g}, {i}) remains but the placement is {placement:?} (its generation ended)"
                ),
            );
        }
    }

    /// L8: which pools have an eligible runner with a free slot, since when; L9: retire timers.
    fn track_capacity(&mut self, at: At, runners: &BTreeSet<RunnerId>) {
        let mut pools: BTreeSet<(String, String)> = BTreeSet::new();
        for runner in runners {
            if let Some(info) = self.shadow.infos.get(runner) {
                pools.insert((runner.namespace.clone(), info.pool.clone()));
            }
            if let Some(Some(info)) = self.window.as_ref().and_then(|w| w.info_before.get(runner)) {
                pools.insert((runner.namespace.clone(), info.pool.clone()));
            }
            let retire_ready = self.shadow.infos.get(runner).is_some_and(|i| {
                i.draining && !i.connected && self.shadow.alloc_count(runner) == 0
            });
            if let Some(ident) = self.idents.get_mut(runner) {
                if !retire_ready {
                    ident.retire_ready_since = None;
                } else if ident.retire_ready_since.is_none() {
                    ident.retire_ready_since = Some(at.ms);
                }
            }
        }
        for pool in pools {
            let has_capacity = self.shadow.infos.iter().any(|(r, i)| {
                r.namespace == pool.0
                    && i.pool == pool.1
                    && i.eligible()
                    && self.shadow.alloc_count(r) < i.total_slots as usize
            });
            if !has_capacity {
                self.pool_capacity.remove(&pool);
            } else {
                self.pool_capacity.entry(pool).or_insert(at.ms);
            }
        }
    }

    // ---- connection facts -------------------------------------------------------------------

    pub(super) fn on_registered(
        &mut self,
        at: At,
        node: &str,
        runner: &RunnerId,
        conn: ConnId,
        epoch: u64,
    ) {
        let held = self.shadow.infos.get(runner).map(|i| i.epoch);
        if held != Some(epoch) {
            self.flag(
                names::S12,
                at,
                None,
                Some(runner),
                format!("registration of {conn} reports epoch {epoch}, the record holds {held:?}"),
            );
        }
        let subscribed = {
            let c = self.conn(conn);
            c.runner.get_or_insert_with(|| runner.clone());
            c.epoch = Some(epoch);
            c.edge_node = Some(node.to_string());
            c.subscribed
        };
        let ident = self.ident(runner);
        ident.epochs.insert(epoch, EpochConn { conn, subscribed, metadata: false });
        while ident.epochs.len() > EPOCHS_KEPT {
            ident.epochs.pop_first();
        }
        // The previous connection stops being current at this commit.
        if let Some(p) = self.procs.get_mut(runner) {
            if p.ready.is_some_and(|(c, _)| c != conn) {
                p.ready = None;
                p.unready_since = at.ms;
            }
        }
    }

    /// S12: a metadata, liveness or ready transaction committed only for the current epoch, and
    /// with its connection's own epoch.
    pub(super) fn check_epoch_current(
        &mut self,
        at: At,
        what: &str,
        runner: &RunnerId,
        conn: ConnId,
        epoch: u64,
    ) {
        let held = self.shadow.infos.get(runner).map(|i| i.epoch);
        if held != Some(epoch) {
            self.flag(
                names::S12,
                at,
                None,
                Some(runner),
                format!("{what} transaction of {conn} with epoch {epoch} committed while the record holds epoch {held:?}"),
            );
        }
        let registered = self.conns.get(&conn).and_then(|c| c.epoch);
        if registered.is_some_and(|e| e != epoch) {
            self.flag(
                names::S12,
                at,
                None,
                Some(runner),
                format!("{what} transaction of {conn} names epoch {epoch}, the connection registered {registered:?}"),
            );
        }
        if what == "metadata" {
            if let Some(ident) = self.idents.get_mut(runner) {
                for e in ident.epochs.values_mut().filter(|e| e.conn == conn) {
                    e.metadata = true;
                }
            }
        }
    }

    pub(super) fn on_subscription_confirmed(
        &mut self,
        node: &str,
        runner: &RunnerId,
        conn: ConnId,
    ) {
        let c = self.conn(conn);
        c.subscribed = true;
        c.runner.get_or_insert_with(|| runner.clone());
        c.edge_node = Some(node.to_string());
        if let Some(ident) = self.idents.get_mut(runner) {
            for e in ident.epochs.values_mut().filter(|e| e.conn == conn) {
                e.subscribed = true;
            }
        }
    }

    pub(super) fn on_ready(&mut self, at: At, runner: &RunnerId, conn: ConnId, epoch: u64) {
        self.check_epoch_current(at, "ready", runner, conn, epoch);
        self.progress += 1;
        let runner_closed = self.conns.get(&conn).is_some_and(|c| c.runner_closed || c.edge_closed);
        if let Some(p) = self.procs.get_mut(runner) {
            if p.current_conn == Some(conn) && !runner_closed {
                p.ready = Some((conn, at.ms));
            }
        }
    }

    /// The connection `conn` of `runner` stopped being its ready connection.
    pub(super) fn on_connection_lost(&mut self, at: At, runner: &RunnerId, conn: ConnId) {
        if let Some(p) = self.procs.get_mut(runner) {
            if p.ready.is_some_and(|(c, _)| c == conn) {
                p.ready = None;
                p.unready_since = at.ms;
            }
        }
    }

    pub(super) fn on_expired(&mut self, at: At, runner: &RunnerId, lost: &[(ActorId, u32)]) {
        self.progress += 1;
        for (actor, generation) in lost {
            self.actor(actor).lost.insert((runner.clone(), *generation));
        }
        let ident = self.ident(runner);
        ident.terminated.clear();
        ident.expired_ms.get_or_insert(at.ms);
        if let Some(p) = self.procs.get_mut(runner) {
            if p.ready.is_some() {
                p.ready = None;
                p.unready_since = at.ms;
            }
        }
    }

    // ---- KV single writer ----------------------------------------------------------------------

    pub(super) fn on_kv_request_sent(
        &mut self,
        at: At,
        runner: &RunnerId,
        conn: ConnId,
        actor: &str,
        generation: u32,
        request_id: u32,
    ) {
        let proc = self.proc(runner);
        proc.kv_requests.insert(request_id, (actor.to_string(), generation, conn));
        let started = proc.max_started.get(actor).is_some_and(|m| *m >= generation);
        if !started {
            self.flag(
                names::S14,
                at,
                Some(actor),
                Some(runner),
                format!("runner {runner} sent KV request {request_id} for ({actor}, {generation}), which it never started"),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_kv_answered(
        &mut self,
        at: At,
        runner: &RunnerId,
        conn: ConnId,
        epoch: u64,
        actor: &str,
        request_id: u32,
        mutation_version: Option<Version>,
    ) {
        let issuer = self.procs.get_mut(runner).map(|p| p.kv_requests.remove(&request_id));
        let Some(version) = mutation_version else { return };
        self.progress += 1;
        let mut problems: Vec<String> = Vec::new();
        let mut issuing_generation = None;
        match issuer {
            Some(None) => problems
                .push(format!("request {request_id} of {runner} was never sent by an instance")),
            Some(Some((a, _, _))) if a != actor => problems.push(format!(
                "request {request_id} was issued by an instance of {a}, not {actor}"
            )),
            Some(Some((_, g, _))) => issuing_generation = Some(g),
            None => {}
        }
        let placement = self
            .actors
            .get(actor)
            .and_then(|a| at_version(&a.placement_hist, version))
            .unwrap_or_else(|| self.shadow.placements.get(actor).cloned());
        match (&placement, issuing_generation) {
            (Some(p), Some(g)) if p.runner != *runner || p.generation != g => problems.push(format!(
                "at version {version} the placement was ({}, {}), the request came from ({runner}, {g})",
                p.runner, p.generation
            )),
            (Some(p), None) if p.runner != *runner => problems.push(format!(
                "at version {version} the placement was on {}, the request came from {runner}",
                p.runner
            )),
            (None, _) => problems.push(format!("at version {version} {actor} had no placement")),
            _ => {}
        }
        let record = self.idents.get(runner).and_then(|i| at_version(&i.info_hist, version));
        let record =
            record.unwrap_or_else(|| self.shadow.infos.get(runner).map(|i| (i.epoch, i.expired)));
        if record.is_some_and(|(_, expired)| expired) {
            problems.push(format!("at version {version} runner {runner} was expired"));
        }
        if let Some(first) = problems.first() {
            let detail = format!("KV mutation of {actor} committed at version {version}: {first}");
            self.flag(names::S14, at, Some(actor), Some(runner), detail);
        }
        let registered = self.conns.get(&conn).and_then(|c| c.epoch);
        let current = record.map(|(e, _)| e);
        if current != Some(epoch) || registered.is_some_and(|e| e != epoch) {
            self.flag(
                names::S12,
                at,
                Some(actor),
                Some(runner),
                format!(
                    "KV mutation of {actor} on {conn} (epoch {epoch}, connection registered {registered:?}) committed at version {version} while the record held epoch {current:?}"
                ),
            );
        }
    }

    /// S14 for one commit that changed `actor`'s keyspace; `only_deletes` says whether every
    /// change was a deletion.
    pub(super) fn check_kv_writer(
        &mut self,
        at: At,
        label: TxnLabel,
        actor: &str,
        only_deletes: bool,
    ) {
        if label == TxnLabel::KvRequest {
            let placement = self.placement_before_step(actor);
            let problem = match &placement {
                None => Some(format!(
                    "a KV request committed a mutation of {actor}, which had no placement"
                )),
                Some(p) => {
                    let info = match self.window.as_ref().and_then(|w| w.info_before.get(&p.runner))
                    {
                        Some(b) => b.clone(),
                        None => self.shadow.infos.get(&p.runner).cloned(),
                    };
                    info.is_some_and(|i| i.expired).then(|| {
                        format!("a KV request committed a mutation of {actor} while its runner {} was expired", p.runner)
                    })
                }
            };
            if let Some(detail) = problem {
                let runner = placement.map(|p| p.runner);
                self.flag(names::S14, at, Some(actor), runner.as_ref(), detail);
            }
        } else if !only_deletes || self.shadow.actor_ns.contains(actor) {
            self.flag(
                names::S14,
                at,
                Some(actor),
                None,
                format!("a {label:?} commit changed the keyspace of {actor} outside a KV request and not as its destruction"),
            );
        }
    }
}
