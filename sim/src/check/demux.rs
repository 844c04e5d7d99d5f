//! The edge demuxer's accounting (`spec/protocol.md` §4.3): every event a connection's demuxer
//! accepted from the runner reaches the actor's workflow inbox, unless the workflow is gone or the
//! connection's drain ran out of `DEMUX_FLUSH_TIMEOUT`. "A queue is never cancelled while it holds
//! events."
//!
//! Owns the per-queue accounts (`DemuxAccount`, one per `(connection, actor)` queue) and the map
//! from a registration `(runner, epoch)` to its connection (an `Events` signal names the runner and
//! epoch of the connection that sent it). Must not touch the other checkers' state.
//!
//! How it is decided from the history alone:
//! - *accepted*: when the edge records `DemuxEnqueue{conn, A}`, the events of `A` in the last
//!   `ToRivetEvents` frame the edge read on `conn` are added to the queue's pending set (the spec's
//!   expectation: every event of the frame is enqueued, the queue's first one included). This
//!   relies on the edge ingesting a frame in the step that reads it: frames read before
//!   `ToEnvoyInit` wait in the edge's early buffer, but a runner sends events only once its
//!   connection is ready, so no events frame waits there;
//! - *handed over*: a commit that writes an `Events{runner, epoch, events}` signal into `A`'s
//!   inbox (the shadow's view of the mutations) removes those events from the pending set of the
//!   queue of the connection registered as `(runner, epoch)`;
//! - at `DemuxRemove{conn, A}` the pending set must be empty, except when `A`'s namespace key is
//!   gone (the dispatcher acknowledges batches of a gone workflow itself, §4.3) or the removal is
//!   at least `DEMUX_FLUSH_TIMEOUT` after the edge closed the connection (what is left then is
//!   discarded, safely); `DemuxDiscard` before that deadline is a violation too.
//!
//! Choices where the spec is silent:
//! - A violation is reported as `L3 event delivery`, the invariant `spec/canaries.md` names for
//!   demuxer defects, at the moment the edge drops the accepted events. Waiting for L3's bound
//!   would miss it: the runner re-sends unacknowledged events on its next connection (§4.2), so a
//!   drop at connection end never shows as a late event.
//! - Pending events are a set of `(generation, index)`: a duplicate of an event already handed
//!   over is forgotten with it (never a false alarm; a lost duplicate is harmless anyway).
//! - A commit of a batch after its queue was removed (a batch still on the bus) is ignored.
//! - An edge crash loses its queues without a `DemuxRemove` (§4.3, "recovered the same way"):
//!   their accounts are dropped.

use std::collections::BTreeSet;

use pegsim_model::engine::signal::Signal;
use pegsim_model::fact::{ConnId, TxnLabel};
use pegsim_model::keys::{ActorId, RunnerId, TupleReader};
use pegsim_model::records;
use pegsim_model::store::Mutation;

use super::names;
use super::state::At;
use super::Checker;

/// One demuxer queue's account: the accepted events not yet seen in the actor's inbox.
#[derive(Debug)]
pub(super) struct DemuxAccount {
    /// The edge node that runs the queue.
    pub node: String,
    pub runner: RunnerId,
    pub epoch: u64,
    /// Accepted events not yet handed over: `(generation, index)`.
    pub pending: BTreeSet<(u32, i64)>,
    /// When the edge closed the connection.
    pub closed_at: Option<u64>,
}

impl Checker {
    /// `DemuxEnqueue{conn, actor}`: the events of `actor` in the frame just read are accepted.
    pub(super) fn on_demux_enqueue(&mut self, node: &str, conn: ConnId, actor: &ActorId) {
        let Some(c) = self.conns.get(&conn) else { return };
        let (Some(runner), Some(epoch)) = (c.runner.clone(), c.epoch) else { return };
        let accepted: Vec<(u32, i64)> =
            c.last_events.iter().filter(|(a, ..)| a == actor).map(|(_, g, i)| (*g, *i)).collect();
        self.demux_conn_of.insert((runner.clone(), epoch), conn);
        let account =
            self.demux_queues.entry((conn, actor.clone())).or_insert_with(|| DemuxAccount {
                node: node.to_string(),
                runner,
                epoch,
                pending: BTreeSet::new(),
                closed_at: None,
            });
        account.pending.extend(accepted);
    }

    /// A signal-bus commit's inbox writes: `Events` signals hand their events over (only the
    /// bus's `SignalEnqueue` transactions write them; other commits are skipped unread).
    pub(super) fn on_inbox_writes(&mut self, label: TxnLabel, applied: &[Mutation]) {
        if label != TxnLabel::SignalEnqueue || self.demux_queues.is_empty() {
            return;
        }
        for mutation in applied {
            let Mutation::Set { key, value } = mutation else { continue };
            let Some(actor) = inbox_actor(key) else { continue };
            let Ok(Signal::Events { runner, epoch, events }) =
                records::decode::<Signal>("inbox signal", value)
            else {
                continue;
            };
            let Some(conn) = self.demux_conn_of.get(&(runner, epoch)).copied() else { continue };
            let Some(account) = self.demux_queues.get_mut(&(conn, actor.clone())) else {
                continue;
            };
            for e in events.iter().filter(|e| e.checkpoint.actor_id == actor) {
                account.pending.remove(&(e.checkpoint.generation, e.checkpoint.index));
            }
        }
    }

    /// The edge closed `conn`: its queues drain from now on.
    pub(super) fn on_demux_conn_closed(&mut self, at: At, conn: ConnId) {
        for ((c, _), account) in self.demux_queues.range_mut((conn, String::new())..) {
            if *c != conn {
                break;
            }
            account.closed_at.get_or_insert(at.ms);
        }
    }

    /// `DemuxDiscard{conn, actor}`: only allowed once the drain ran out of time.
    pub(super) fn on_demux_discard(&mut self, at: At, conn: ConnId, actor: &ActorId) {
        if let Some(why) = self.early_drop(at, conn, actor) {
            let detail = format!("events of {actor} on {conn} discarded {why}");
            let runner = self.demux_queues.get(&(conn, actor.clone())).map(|a| a.runner.clone());
            self.flag(names::L3, at, Some(actor), runner.as_ref(), detail);
        }
    }

    /// `DemuxRemove{conn, actor}`: the queue must hold nothing the workflow has not received.
    pub(super) fn on_demux_remove(&mut self, at: At, conn: ConnId, actor: &ActorId) {
        let held = self.demux_queues.get(&(conn, actor.clone())).and_then(|a| {
            let &(g, i) = a.pending.first()?;
            Some((a.pending.len(), g, i, a.runner.clone()))
        });
        // A gone workflow's batches are acknowledged by the dispatcher itself, never enqueued.
        let workflow_exists = self.shadow.actor_ns.contains(actor);
        if let (Some((count, g, i, runner)), true) = (held, workflow_exists) {
            if let Some(why) = self.early_drop(at, conn, actor) {
                let detail = format!(
                    "the demuxer queue of {actor} on {conn} was removed {why}, holding {count} \
                     accepted event(s) never handed to the workflow (first: g{g} #{i}); \
                     §4.3: a queue is never cancelled while it holds events"
                );
                self.flag(names::L3, at, Some(actor), Some(&runner), detail);
            }
        }
        self.forget_demux_queue(conn, actor);
    }

    /// Why dropping events of `conn` now breaks §4.3, or `None` if the flush timeout has passed
    /// (or the queue has no account: nothing is known about it, so nothing is claimed).
    fn early_drop(&self, at: At, conn: ConnId, actor: &ActorId) -> Option<String> {
        let flush = self.cfg.timing.demux_flush_timeout_ms;
        let account = self.demux_queues.get(&(conn, actor.clone()))?;
        match account.closed_at {
            None => Some("while its connection was open".to_string()),
            Some(closed) if at.ms < closed + flush => Some(format!(
                "{} ms after the connection closed, before DEMUX_FLUSH_TIMEOUT ({flush} ms)",
                at.ms - closed
            )),
            Some(_) => None,
        }
    }

    /// An edge node crashed: its queues are gone without removal.
    pub(super) fn forget_demux_node(&mut self, node: &str) {
        let lost: Vec<(ConnId, ActorId)> = self
            .demux_queues
            .iter()
            .filter(|(_, a)| a.node == node)
            .map(|(k, _)| k.clone())
            .collect();
        for (conn, actor) in lost {
            self.forget_demux_queue(conn, &actor);
        }
    }

    fn forget_demux_queue(&mut self, conn: ConnId, actor: &ActorId) {
        let Some(account) = self.demux_queues.remove(&(conn, actor.clone())) else { return };
        let conn_has_queues = self
            .demux_queues
            .range((conn, String::new())..)
            .next()
            .is_some_and(|((c, _), _)| *c == conn);
        if !conn_has_queues {
            self.demux_conn_of.remove(&(account.runner, account.epoch));
        }
    }
}

/// The actor whose inbox `key` is in (`actor/A/inbox/<versionstamp>`).
fn inbox_actor(key: &[u8]) -> Option<ActorId> {
    let mut t = TupleReader::new(key);
    if t.s().ok()? != "actor" {
        return None;
    }
    let actor = t.s().ok()?;
    (t.s().ok()? == "inbox").then_some(actor)
}
