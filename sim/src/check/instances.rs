//! Actor instances and runner processes: S1 INV-SINGLE (instance intervals of an actor never
//! overlap), the instance half of S2 INV-GEN-SEQ (`end_generation` only after the instance
//! terminated; no instance after it), the start rules of S7 INV-CMD-IDEM (a process starts
//! `(A, g)` at most once, never after it terminated, never older than a generation it knows), and
//! S12's "a runner process never reuses an `envoy_key`".
//!
//! Owns `ActorTrack.open_instances`, `ProcTrack` creation and removal, node incarnations and
//! `envoy_key` owners.
//!
//! Choices where the spec is silent:
//! - An instance is open from its `InstanceStart` until its `InstanceTerminate`, the `RunnerExit`
//!   of its process, or a `crash` node entry of the node that recorded its start.
//! - A process incarnation changes at every `crash` node entry and every `RunnerExit` of that
//!   node; an `envoy_key` seen connecting from two incarnations (or two nodes) is reused.
//! - An instance that starts after its generation ended and terminates at the same simulated
//!   instant (a `Start` processed while fenced) is not reported; one that lives on is (S2).

use pegsim_model::fact::ConnId;
use pegsim_model::keys::RunnerId;

use super::names;
use super::state::At;
use super::Checker;

impl Checker {
    pub(super) fn on_runner_connecting(
        &mut self,
        at: At,
        node: &str,
        runner: &RunnerId,
        conn: ConnId,
    ) {
        let incarnation = self.node_incarnation.get(node).copied().unwrap_or(0);
        let owner = (node.to_string(), incarnation);
        match self.key_owner.get(runner) {
            Some(first) if *first != owner => {
                let detail = format!(
                    "envoy_key of {runner} used by {node} (incarnation {incarnation}) after {} (incarnation {})",
                    first.0, first.1
                );
                self.flag(names::S12, at, None, Some(runner), detail);
            }
            Some(_) => {}
            None => {
                self.key_owner.insert(runner.clone(), owner);
            }
        }
        let ended: Vec<(String, u32)> = {
            let actors = &self.actors;
            let destroyed = &self.destroyed;
            self.procs
                .get(runner)
                .map(|p| {
                    p.gens
                        .keys()
                        .filter(|(a, g)| {
                            destroyed.contains(a) || actors.get(a).is_some_and(|t| t.ended(*g))
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        let proc = self.proc(runner);
        proc.node = node.to_string();
        proc.current_conn = Some(conn);
        if proc.tombstones.as_ref().is_some_and(|(c, _)| *c != conn) {
            proc.tombstones = None;
        }
        if proc.ready.is_some_and(|(c, _)| c != conn) {
            proc.ready = None;
            proc.unready_since = at.ms;
        }
        if proc.ready.is_none() && proc.unready_since == 0 {
            proc.unready_since = at.ms;
        }
        // Processed counters of generations that ended and left no record on the runner.
        for key in ended {
            let keep = proc.tombstone_due.contains_key(&key) || proc.events.contains_key(&key);
            if !keep {
                proc.gens.remove(&key);
            }
        }
        self.conn(conn).runner.get_or_insert_with(|| runner.clone());
    }

    pub(super) fn on_instance_start(
        &mut self,
        at: At,
        node: &str,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
    ) {
        self.progress += 1;
        let known = self.proc(runner).max_started.get(actor).copied();
        if let Some(m) = known.filter(|m| generation <= *m) {
            let detail = if generation == m {
                format!("runner {runner} started ({actor}, {generation}) a second time")
            } else {
                format!("runner {runner} started ({actor}, {generation}) after generation {m}")
            };
            self.flag(names::S7, at, Some(actor), Some(runner), detail);
        }
        let proc = self.proc(runner);
        proc.max_started.insert(actor.to_string(), known.map_or(generation, |m| m.max(generation)));
        let overlapping: Vec<(RunnerId, u32)> = self
            .actors
            .get(actor)
            .map(|t| {
                t.open_instances
                    .keys()
                    .filter(|(r, g)| r != runner || *g != generation)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !overlapping.is_empty() {
            self.flag(
                names::S1,
                at,
                Some(actor),
                Some(runner),
                format!("instance ({actor}, {generation}) started on {runner} while {overlapping:?} still run"),
            );
        }
        let ended = self.ended(actor, generation);
        self.actor(actor)
            .open_instances
            .insert((runner.clone(), generation), (node.to_string(), at.ms));
        if ended {
            self.late_starts.push((at, actor.to_string(), generation, runner.clone()));
        }
    }

    pub(super) fn on_instance_terminate(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
    ) {
        self.progress += 1;
        let was_open = self
            .actors
            .get_mut(actor)
            .is_some_and(|t| t.open_instances.remove(&(runner.clone(), generation)).is_some());
        let key = (actor.to_string(), generation);
        let proc = self.proc(runner);
        let known = proc.max_started.get(actor).copied();
        proc.max_started.insert(actor.to_string(), known.map_or(generation, |m| m.max(generation)));
        proc.startups.remove(&key);
        proc.tombstone_due.entry(key.clone()).or_insert(at.ms);
        if was_open && !self.ended(actor, generation) {
            self.ident(runner).terminated.entry(key).or_insert(at.ms);
        }
    }

    pub(super) fn on_runner_exit(&mut self, at: At, node: &str, runner: &RunnerId) {
        self.progress += 1;
        *self.node_incarnation.entry(node.to_string()).or_default() += 1;
        self.kill_process(at, runner);
    }

    pub(super) fn on_node(&mut self, at: At, node: &str, event: &str) {
        self.envelope.on_node(at.ms, node, event);
        if event != "crash" {
            return;
        }
        *self.node_incarnation.entry(node.to_string()).or_default() += 1;
        self.forget_demux_node(node);
        let runners: Vec<RunnerId> =
            self.procs.iter().filter(|(_, p)| p.node == node).map(|(r, _)| r.clone()).collect();
        for runner in runners {
            self.kill_process(at, &runner);
        }
        // Instances recorded by the crashed node end with it, whoever their runner is.
        self.kill_instances(at, |_, instance_node| instance_node == node);
        // Connections whose edge lived on that node end without teardown.
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.edge_node.as_deref() == Some(node))
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            self.on_edge_conn_closed(at, conn);
        }
    }

    /// A runner process is gone: its instances end now, and what only it could do is forgotten.
    fn kill_process(&mut self, at: At, runner: &RunnerId) {
        self.kill_instances(at, |r, _| r == runner);
        if let Some(proc) = self.procs.remove(runner) {
            if let Some(conn) = proc.current_conn {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.runner_closed = true;
                }
                self.maybe_drop_conn(conn);
            }
        }
        if !self.shadow.infos.contains_key(runner) {
            self.idents.remove(runner);
        }
    }

    fn kill_instances(&mut self, at: At, dies: impl Fn(&RunnerId, &str) -> bool) {
        let mut ended: Vec<(RunnerId, String, u32)> = Vec::new();
        for (actor, track) in self.actors.iter_mut() {
            track.open_instances.retain(|(r, g), (node, _)| {
                let dead = dies(r, node);
                if dead {
                    ended.push((r.clone(), actor.clone(), *g));
                }
                !dead
            });
        }
        for (runner, actor, generation) in ended {
            if !self.ended(&actor, generation) {
                self.ident(&runner).terminated.entry((actor, generation)).or_insert(at.ms);
            }
        }
    }
}
