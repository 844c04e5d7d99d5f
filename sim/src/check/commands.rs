//! Command checkpoints: S6 INV-CMD-KEY (keys written once with the right kind at the right index,
//! delivered content equal to stored content), S7 INV-CMD-IDEM (execution order on the runner),
//! S9 INV-ACK (commands) on both sides, S10 INV-TOMB, and the L2 bookkeeping of command keys.
//!
//! Owns `GenTrack.cmds`, `RunnerGen.last_processed` / `processed_max`, `IdentTrack.edge_acks`
//! and the runner's tombstone sets.
//!
//! Choices where the spec is silent:
//! - A stored `Start` with non-empty `hibernatingRequests` breaks §3.2 and is reported as S6; one
//!   that carries `preloadedKv` is P15.
//! - A command key deleted by a commit that is neither a command acknowledgement covering it (an
//!   ack the edge received from that same runner) nor the end of its generation (its placement
//!   removed in the same commit) is reported as S9.
//! - "Processed" for S9 means executed, made moot, or discarded as a stale `Start`; a command the
//!   runner called a duplicate does not raise what it may acknowledge.

use pegsim_model::fact::{CommandDisposition, CommandKind, ConnId, TxnLabel};
use pegsim_model::keys::RunnerId;
use pegsim_model::protocol::{ActorCommandKeyData, CommandWrapper};
use pegsim_model::store::Version;
use pegsim_model::wire::{command_to_stored, dehydrated};

use super::names;
use super::shadow::{Change, KeyKind, Value};
use super::state::{At, WrittenCommand};
use super::Checker;

impl Checker {
    /// S6, S2/S3 (through `check_persisted_command`), P15 and S9 for one commit's command keys.
    pub(super) fn check_command_commit(
        &mut self,
        at: At,
        label: TxnLabel,
        version: Version,
        changes: &[Change],
    ) {
        for change in changes {
            let KeyKind::RunnerCmd(runner, actor, generation, index) = &change.kind else {
                continue;
            };
            match &change.new {
                Some(Value::Cmd(cmd)) => self.on_command_written(
                    at,
                    version,
                    runner,
                    actor,
                    *generation,
                    *index,
                    cmd,
                    change.old.is_some(),
                ),
                Some(_) => {}
                None => self.on_command_deleted(at, label, runner, actor, *generation, *index),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_command_written(
        &mut self,
        at: At,
        version: Version,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
        cmd: &ActorCommandKeyData,
        overwrote: bool,
    ) {
        let key = (actor.to_string(), generation);
        let written_before =
            overwrote || self.gens.get(&key).is_some_and(|t| t.cmds.contains_key(&index));
        if written_before {
            self.flag(
                names::S6,
                at,
                Some(actor),
                Some(runner),
                format!(
                    "command key ({runner}, {actor}, {generation}, {index}) written a second time"
                ),
            );
        }
        let is_start = matches!(cmd, ActorCommandKeyData::CommandStartActor(_));
        let misplaced = match index {
            0 if !is_start => Some("index 0 holds a Stop; it must be the Start"),
            1 if is_start => Some("index 1 holds a Start; it can only be the Stop"),
            0 | 1 => None,
            _ => Some("only indices 0 (Start) and 1 (Stop) exist"),
        };
        if let Some(why) = misplaced {
            self.flag(
                names::S6,
                at,
                Some(actor),
                Some(runner),
                format!("command key ({runner}, {actor}, {generation}, {index}): {why}"),
            );
        }
        if let ActorCommandKeyData::CommandStartActor(start) = cmd {
            if !start.hibernating_requests.is_empty() {
                self.flag(
                    names::S6,
                    at,
                    Some(actor),
                    Some(runner),
                    format!("stored Start ({actor}, {generation}) has hibernating requests"),
                );
            }
            if let Some(bundle) = &start.preloaded_kv {
                self.flag(
                    names::P15,
                    at,
                    Some(actor),
                    Some(runner),
                    format!(
                        "stored Start ({actor}, {generation}) carries a preload bundle of {} entries",
                        bundle.entries.len()
                    ),
                );
            }
        }
        self.check_persisted_command(at, runner, actor, generation, index, is_start);
        if !self.ended(actor, generation) {
            self.gen(actor, generation).cmds.entry(index).or_insert_with(|| WrittenCommand {
                runner: runner.clone(),
                content: cmd.clone(),
                version,
                persisted_ms: at.ms,
                received_on: None,
                ack_received_ms: None,
            });
        }
    }

    fn on_command_deleted(
        &mut self,
        at: At,
        label: TxnLabel,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
    ) {
        let problem = if label == TxnLabel::CommandAck {
            let acked = self
                .idents
                .get(runner)
                .and_then(|i| i.edge_acks.get(&(actor.to_string(), generation)))
                .copied();
            acked.is_none_or(|k| index > k).then(|| {
                format!(
                    "a command-ack transaction deleted ({runner}, {actor}, {generation}, {index}); {runner} acknowledged {acked:?}"
                )
            })
        } else {
            let before = self.window.as_ref().and_then(|w| w.placement_before.get(actor));
            let was_placed = before
                .and_then(|p| p.as_ref())
                .is_some_and(|p| p.runner == *runner && p.generation == generation);
            let still_placed = self
                .shadow
                .placements
                .get(actor)
                .is_some_and(|p| p.runner == *runner && p.generation == generation);
            (!was_placed || still_placed).then(|| {
                format!(
                    "a {label:?} commit deleted ({runner}, {actor}, {generation}, {index}) without an acknowledgement and without ending the generation"
                )
            })
        };
        if let Some(detail) = problem {
            self.flag(names::S9, at, Some(actor), Some(runner), detail);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_runner_command(
        &mut self,
        at: At,
        runner: &RunnerId,
        conn: ConnId,
        actor: &str,
        generation: u32,
        index: i64,
        kind: CommandKind,
        disposition: CommandDisposition,
    ) {
        let key = (actor.to_string(), generation);
        if let Some(c) = self.gens.get_mut(&key).and_then(|t| t.cmds.get_mut(&index)) {
            if c.runner == *runner {
                c.received_on = Some(conn);
            }
        }
        let last = {
            let rg = self.proc(runner).gens.entry(key).or_default();
            let last = rg.last_processed;
            match disposition {
                CommandDisposition::Exec | CommandDisposition::Moot => {
                    rg.last_processed = last.max(index);
                    rg.processed_max = rg.processed_max.max(index);
                }
                CommandDisposition::Stale => rg.processed_max = rg.processed_max.max(index),
                CommandDisposition::Dup | CommandDisposition::Hold => {}
            }
            last
        };
        match disposition {
            CommandDisposition::Exec => {
                self.progress += 1;
                if index != last + 1 {
                    self.flag(
                        names::S7,
                        at,
                        Some(actor),
                        Some(runner),
                        format!("runner {runner} executed ({actor}, {generation}, {index}) after processing up to {last}"),
                    );
                }
                if index == 0 && kind == CommandKind::Start {
                    self.bind_startup(runner, conn, actor, generation);
                }
            }
            CommandDisposition::Moot => self.progress += 1,
            CommandDisposition::Stale | CommandDisposition::Dup | CommandDisposition::Hold => {}
        }
    }

    /// S9, runner side: `ToRivetAckCommands (A, g, k)` only after processing every index `<= k`.
    pub(super) fn check_runner_command_ack(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
    ) {
        let processed = self
            .procs
            .get(runner)
            .and_then(|p| p.gens.get(&(actor.to_string(), generation)))
            .map_or(-1, |g| g.processed_max);
        if index > processed {
            self.flag(
                names::S9,
                at,
                Some(actor),
                Some(runner),
                format!("runner {runner} acknowledged ({actor}, {generation}, {index}) having processed up to {processed}"),
            );
        }
    }

    /// The edge received `ToRivetAckCommands (A, g, k)` from `runner`.
    pub(super) fn on_edge_command_ack(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        index: i64,
    ) {
        if self.ended(actor, generation) {
            return;
        }
        let key = (actor.to_string(), generation);
        let acked = self.ident(runner).edge_acks.entry(key.clone()).or_insert(index);
        *acked = (*acked).max(index);
        if let Some(track) = self.gens.get_mut(&key) {
            for (_, c) in track.cmds.range_mut(..=index) {
                if c.runner == *runner {
                    c.ack_received_ms = Some(at.ms);
                }
            }
        }
    }

    pub(super) fn on_tombstone_drop(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
    ) {
        self.progress += 1;
        if !self.ended(actor, generation) {
            self.flag(
                names::S10,
                at,
                Some(actor),
                Some(runner),
                format!("runner {runner} dropped the tombstone of ({actor}, {generation}) before end_generation committed"),
            );
        }
        let key = (actor.to_string(), generation);
        let proc = self.proc(runner);
        proc.gens.remove(&key);
        proc.tombstone_due.remove(&key);
        proc.startups.remove(&key);
        let Some(conn) = proc.current_conn else { return };
        match &mut proc.tombstones {
            Some((c, set)) if *c == conn => {
                set.insert(key);
            }
            other => *other = Some((conn, [key].into_iter().collect())),
        }
    }

    /// S10: a command of a dropped tombstone received on the runner's current connection.
    pub(super) fn check_received_command(
        &mut self,
        at: At,
        conn: ConnId,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
    ) {
        let hit = self.procs.get(runner).is_some_and(|p| {
            p.current_conn == Some(conn)
                && p.tombstones.as_ref().is_some_and(|(c, set)| {
                    *c == conn && set.contains(&(actor.to_string(), generation))
                })
        });
        if hit {
            self.flag(
                names::S10,
                at,
                Some(actor),
                Some(runner),
                format!("runner {runner} received a command of ({actor}, {generation}) on {conn} after dropping its tombstone"),
            );
        }
    }

    /// S6: a command written to `runner` carries the content of its key (ignoring the hydrated
    /// fields) and was persisted for that runner.
    pub(super) fn check_sent_command(
        &mut self,
        at: At,
        runner: &RunnerId,
        command: &CommandWrapper,
    ) {
        let (checkpoint, content) = command_to_stored(command.clone());
        let actor = checkpoint.actor_id.to_string();
        let (generation, index) = (checkpoint.generation, checkpoint.index);
        let stored = self
            .gens
            .get(&(actor.clone(), generation))
            .and_then(|t| t.cmds.get(&index))
            .map(|c| (c.runner.clone(), dehydrated(c.content.clone())));
        let problem = match stored {
            Some((r, _)) if r != *runner => Some(format!(
                "command ({actor}, {generation}, {index}) sent to {runner} was persisted for {r}"
            )),
            Some((_, s)) if s != dehydrated(content) => Some(format!(
                "command ({actor}, {generation}, {index}) sent to {runner} differs from its stored content"
            )),
            Some(_) => None,
            None if self.ended(&actor, generation) => None,
            None => Some(format!(
                "command ({actor}, {generation}, {index}) sent to {runner} was never persisted"
            )),
        };
        if let Some(detail) = problem {
            self.flag(names::S6, at, Some(&actor), Some(runner), detail);
        }
    }
}
