//! Frames on the wire: S11 INV-FRAME (handshake order on both sides, metadata commit before
//! commands, replay before live, every frame decodes and fits `MAX_FRAME_BYTES`, command frames
//! hold `1..=FRAME_MAX_COMMANDS` commands), and the connection bookkeeping every other module
//! relies on (which runner a connection belongs to, when each end closed it). Frames also feed
//! S6 (sent command content), S8 (event acks sent and received), S9 (command acks), S10
//! (commands received after a tombstone drop) and P16/P12 (bundles delivered).
//!
//! Owns `ConnTrack` lifecycles. A frame is checked for size and decoding when it is written
//! (`received = false`); receipt only feeds what the receiver learned.
//!
//! Choices where the spec is silent:
//! - "Every replay frame precedes every live command or ack frame" is checked with the edge's
//!   `CommandsSent { replay }` facts and the `ToEnvoyAckEvents` frames it writes: once a live
//!   command frame or an ack frame was written on a connection, a later replay frame is S11.
//! - A connection is forgotten once both ends reported it closed (or their nodes crashed);
//!   frames still recorded on it afterwards are in-flight leftovers and are not checked.

use std::sync::Arc;

use pegsim_model::fact::ConnId;
use pegsim_model::keys::RunnerId;
use pegsim_model::protocol::{Command, ToEnvoy, ToRivet};
use pegsim_model::wire::{to_envoy_kind, to_rivet_kind};

use super::names;
use super::state::At;
use super::Checker;
use crate::run::{Decoded, Dir};

impl Checker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_frame(
        &mut self,
        at: At,
        conn: ConnId,
        runner: Option<&RunnerId>,
        dir: Dir,
        received: bool,
        len: usize,
        decoded: &Arc<Decoded>,
    ) {
        if self.closed_conns.contains(&conn) {
            return;
        }
        let runner =
            runner.cloned().or_else(|| self.conns.get(&conn).and_then(|c| c.runner.clone()));
        if !received {
            if len > self.cfg.max_frame_bytes {
                self.flag(
                    names::S11,
                    at,
                    None,
                    runner.as_ref(),
                    format!(
                        "a {dir:?} frame of {len} bytes on {conn} exceeds MAX_FRAME_BYTES ({})",
                        self.cfg.max_frame_bytes
                    ),
                );
            }
            if let Decoded::Undecodable(why) = decoded.as_ref() {
                self.flag(
                    names::S11,
                    at,
                    None,
                    runner.as_ref(),
                    format!("a {dir:?} frame on {conn} does not decode: {why}"),
                );
            }
        }
        match (dir, received, decoded.as_ref()) {
            (Dir::ToRunner, false, d) => self.on_engine_frame_sent(at, conn, runner.as_ref(), d),
            (Dir::ToRunner, true, Decoded::ToEnvoy(m)) => {
                self.on_runner_frame_received(at, conn, runner.as_ref(), m)
            }
            (Dir::ToEngine, false, d) => self.on_runner_frame_sent(at, conn, runner.as_ref(), d),
            (Dir::ToEngine, true, Decoded::ToRivet(ToRivet::ToRivetEvents(events))) => {
                self.conn(conn).last_events = events
                    .iter()
                    .map(|e| {
                        let cp = &e.checkpoint;
                        (cp.actor_id.to_string(), cp.generation, cp.index)
                    })
                    .collect();
            }
            (Dir::ToEngine, true, Decoded::ToRivet(ToRivet::ToRivetAckCommands(acks))) => {
                if let Some(r) = &runner {
                    for cp in &acks.last_command_checkpoints {
                        self.on_edge_command_ack(at, r, &cp.actor_id, cp.generation, cp.index);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_engine_frame_sent(
        &mut self,
        at: At,
        conn: ConnId,
        runner: Option<&RunnerId>,
        decoded: &Decoded,
    ) {
        let Decoded::ToEnvoy(message) = decoded else {
            self.conn(conn).engine_frames += 1;
            return;
        };
        let max_commands = self.cfg.timing.frame_max_commands;
        let (init_before, metadata_committed) = {
            let c = self.conn(conn);
            c.engine_frames += 1;
            let init_before = c.init_sent;
            if matches!(message, ToEnvoy::ToEnvoyInit(_)) {
                c.init_sent = true;
            }
            if matches!(message, ToEnvoy::ToEnvoyAckEvents(_)) {
                c.live_sent = true;
            }
            (init_before, c.metadata_committed)
        };
        let problem = match message {
            ToEnvoy::ToEnvoyInit(_) if init_before => {
                Some(format!("a second ToEnvoyInit on {conn}"))
            }
            ToEnvoy::ToEnvoyInit(_) => None,
            other if !init_before => Some(format!(
                "the first engine frame on {conn} is {}, not ToEnvoyInit",
                to_envoy_kind(other)
            )),
            ToEnvoy::ToEnvoyCommands(_) if !metadata_committed => {
                Some(format!("ToEnvoyCommands on {conn} before its metadata commit"))
            }
            ToEnvoy::ToEnvoyCommands(list) if list.is_empty() || list.len() > max_commands => {
                Some(format!(
                    "a command frame on {conn} holds {} commands (1..={max_commands} allowed)",
                    list.len()
                ))
            }
            _ => None,
        };
        if let Some(detail) = problem {
            self.flag(names::S11, at, None, runner, detail);
        }
        let Some(runner) = runner else { return };
        match message {
            ToEnvoy::ToEnvoyCommands(list) => {
                for command in list {
                    self.check_sent_command(at, runner, command);
                    if let Command::CommandStartActor(start) = &command.inner {
                        let cp = &command.checkpoint;
                        self.check_delivered_bundle(
                            at,
                            conn,
                            runner,
                            &cp.actor_id,
                            cp.generation,
                            start.preloaded_kv.as_ref(),
                        );
                    }
                }
            }
            ToEnvoy::ToEnvoyAckEvents(acks) => {
                for cp in &acks.last_event_checkpoints {
                    self.check_ack_frame(at, runner, &cp.actor_id, cp.generation, cp.index);
                }
            }
            _ => {}
        }
    }

    fn on_runner_frame_received(
        &mut self,
        at: At,
        conn: ConnId,
        runner: Option<&RunnerId>,
        message: &ToEnvoy,
    ) {
        match message {
            ToEnvoy::ToEnvoyInit(_) => self.conn(conn).runner_init_received = true,
            ToEnvoy::ToEnvoyCommands(list) => {
                if let Some(r) = runner {
                    for command in list {
                        let cp = &command.checkpoint;
                        self.check_received_command(at, conn, r, &cp.actor_id, cp.generation);
                    }
                }
            }
            ToEnvoy::ToEnvoyAckEvents(acks) => {
                if let Some(r) = runner {
                    for cp in &acks.last_event_checkpoints {
                        self.on_event_ack_received(r, &cp.actor_id, cp.generation, cp.index);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_runner_frame_sent(
        &mut self,
        at: At,
        conn: ConnId,
        runner: Option<&RunnerId>,
        decoded: &Decoded,
    ) {
        let (first, init_received) = {
            let c = self.conn(conn);
            c.runner_frames += 1;
            (c.runner_frames == 1, c.runner_init_received)
        };
        let Decoded::ToRivet(message) = decoded else { return };
        let problem = match message {
            ToRivet::ToRivetMetadata(_) => None,
            other if first => Some(format!(
                "the first runner frame on {conn} is {}, not ToRivetMetadata",
                to_rivet_kind(other)
            )),
            other if !init_received => Some(format!(
                "the runner sent {} on {conn} before it received ToEnvoyInit",
                to_rivet_kind(other)
            )),
            _ => None,
        };
        if let Some(detail) = problem {
            self.flag(names::S11, at, None, runner, detail);
        }
        if let (ToRivet::ToRivetAckCommands(acks), Some(r)) = (message, runner) {
            for cp in &acks.last_command_checkpoints {
                self.check_runner_command_ack(at, r, &cp.actor_id, cp.generation, cp.index);
            }
        }
    }

    pub(super) fn on_commands_sent(&mut self, at: At, conn: ConnId, replay: bool) {
        let c = self.conn(conn);
        let late_replay = replay && c.live_sent;
        if !replay {
            c.live_sent = true;
        }
        let runner = c.runner.clone();
        if late_replay {
            self.flag(
                names::S11,
                at,
                None,
                runner.as_ref(),
                format!("a replay command frame on {conn} after a live command or ack frame"),
            );
        }
    }

    pub(super) fn on_runner_conn_closed(&mut self, at: At, runner: &RunnerId, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.runner_closed = true;
        }
        self.on_connection_lost(at, runner, conn);
        self.maybe_drop_conn(conn);
    }

    pub(super) fn on_edge_conn_closed(&mut self, at: At, conn: ConnId) {
        let runner = self.conns.get_mut(&conn).and_then(|c| {
            c.edge_closed = true;
            c.demux.clear();
            c.runner.clone()
        });
        if let Some(runner) = runner {
            self.on_connection_lost(at, &runner, conn);
            // No answer can come on this connection any more.
            if let Some(p) = self.procs.get_mut(&runner) {
                p.kv_requests.retain(|_, (_, _, c)| *c != conn);
            }
        }
        self.maybe_drop_conn(conn);
    }

    pub(super) fn maybe_drop_conn(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| c.edge_closed && c.runner_closed) {
            self.conns.remove(&conn);
            if self.closed_conns.insert(conn) {
                self.closed_order.push_back(conn);
            }
            while self.closed_order.len() > super::CLOSED_CONNS_KEPT {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed_conns.remove(&old);
                }
            }
        }
    }
}
