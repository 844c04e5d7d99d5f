//! Tests of the edge connection, driven with a real store and `Env` and frames encoded with the
//! wire codec. Shared helpers here; the tests by theme in the submodules.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::engine::cmdlog::CommandKey;
use crate::engine::conn::testkit::{checkpoint, start_command, stop_command, Harness};
use crate::preload::reference_manifest;

mod canaries;
mod control;
mod handshake;
mod live;
mod ping;
mod replay;

pub(super) const NS: &str = "ns";
pub(super) const POOL: &str = "pool";

/// An engine configuration with namespace `ns` holding pool `pool`.
pub(super) fn config() -> EngineConfig {
    let mut namespaces = BTreeMap::new();
    namespaces.insert(NS.to_string(), BTreeSet::from([POOL.to_string()]));
    EngineConfig { namespaces, ..EngineConfig::default() }
}

pub(super) fn runner(key: &str) -> RunnerId {
    RunnerId::new(NS, key)
}

pub(super) fn path(key: &str) -> String {
    ConnectRequest::new(NS, POOL, key, 1).with_slots(8).to_path_and_query()
}

pub(super) fn rivet() -> Vec<String> {
    vec![SUB_PROTOCOL.to_string()]
}

/// Encode a runner frame.
pub(super) fn frame(message: &p::ToRivet) -> Vec<u8> {
    Codec::new(usize::MAX).encode_to_rivet(message).unwrap()
}

/// The first frame of every connection: metadata declaring the reference manifest for actor
/// name `counter`.
pub(super) fn metadata_frame() -> Vec<u8> {
    let mut names = BTreeMap::new();
    names.insert(
        "counter".to_string().into(),
        p::ActorName { metadata: reference_manifest().to_metadata_json().into() },
    );
    frame(&p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
        prepopulate_actor_names: Some(names),
        metadata: Some("{\"runner\":true}".to_string().into()),
    }))
}

/// The decoded frames among `out`.
pub(super) fn sent(out: &[EdgeOutput]) -> Vec<p::ToEnvoy> {
    out.iter()
        .filter_map(|o| match o {
            EdgeOutput::Send(bytes) => Some(Codec::new(usize::MAX).decode_to_envoy(bytes).unwrap()),
            _ => None,
        })
        .collect()
}

/// The close reasons among `out`.
pub(super) fn closes(out: &[EdgeOutput]) -> Vec<CloseReason> {
    out.iter()
        .filter_map(|o| match o {
            EdgeOutput::Close(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The timers among `out`.
pub(super) fn timers(out: &[EdgeOutput]) -> Vec<(u64, EdgeTimer)> {
    out.iter()
        .filter_map(|o| match o {
            EdgeOutput::Timer { at_ms, timer } => Some((*at_ms, timer.clone())),
            _ => None,
        })
        .collect()
}

/// The kinds of the frames among `out`, in order.
pub(super) fn kinds(out: &[EdgeOutput]) -> Vec<&'static str> {
    sent(out).iter().map(wire::to_envoy_kind).collect()
}

/// The commands of the `ToEnvoyCommands` frames among `out`, one list per frame.
pub(super) fn command_frames(out: &[EdgeOutput]) -> Vec<Vec<p::CommandWrapper>> {
    sent(out)
        .into_iter()
        .filter_map(|m| match m {
            p::ToEnvoy::ToEnvoyCommands(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The `(actor, generation, index)` of a command list.
pub(super) fn cps(commands: &[p::CommandWrapper]) -> Vec<(String, u32, i64)> {
    commands
        .iter()
        .map(|c| (c.checkpoint.actor_id.to_string(), c.checkpoint.generation, c.checkpoint.index))
        .collect()
}

/// A runner-topic bus message carrying `payload`.
pub(super) fn bus(payload: &p::ToEnvoyConn) -> BusMessage {
    BusMessage::Runner(wire::encode_bus(payload))
}

/// A runner-topic bus message publishing the stored commands of `keys` (as the workflow does).
pub(super) fn publish(h: &mut Harness, keys: &[CommandKey]) -> BusMessage {
    let commands = keys
        .iter()
        .map(|k| {
            let stored = wire::decode_stored_command(&h.get(&k.key()).unwrap()).unwrap();
            wire::command_from_stored(checkpoint(&k.actor, k.generation, k.index), stored)
        })
        .collect();
    bus(&p::ToEnvoyConn::ToEnvoyCommands(commands))
}

pub(super) fn key(r: &RunnerId, actor: &str, generation: u32, index: i64) -> CommandKey {
    CommandKey { runner: r.clone(), actor: actor.to_string(), generation, index }
}

/// A test rig: a harness, a configuration, and helpers that drive one or more connections.
pub(super) struct Rig {
    pub h: Harness,
    pub config: EngineConfig,
}

impl Rig {
    pub fn new() -> Self {
        Rig { h: Harness::default(), config: config() }
    }

    pub fn with(h: Harness, config: EngineConfig) -> Self {
        Rig { h, config }
    }

    /// `accept` with the standard request of `key`.
    pub fn accept(&mut self, id: u64, key: &str) -> (EdgeConn, Vec<EdgeOutput>) {
        let config = self.config.clone();
        EdgeConn::accept(&mut self.h.env(), &config, ConnId(id), &path(key), &rivet())
    }

    pub fn subscribed(&mut self, c: &mut EdgeConn) -> Vec<EdgeOutput> {
        c.on_subscribed(&mut self.h.env())
    }

    pub fn recv(&mut self, c: &mut EdgeConn, bytes: &[u8]) -> Vec<EdgeOutput> {
        c.on_frame(&mut self.h.env(), DataFrame::Binary(bytes))
    }

    pub fn recv_msg(&mut self, c: &mut EdgeConn, message: &p::ToRivet) -> Vec<EdgeOutput> {
        self.recv(c, &frame(message))
    }

    pub fn bus(&mut self, c: &mut EdgeConn, message: &BusMessage) -> Vec<EdgeOutput> {
        let topic = match message {
            BusMessage::Eviction { .. } => Topic::Eviction(c.runner().unwrap().clone()),
            BusMessage::Runner(_) => Topic::Runner(c.runner().unwrap().clone()),
        };
        c.on_bus(&mut self.h.env(), &topic, message)
    }

    pub fn timer(&mut self, c: &mut EdgeConn, timer: EdgeTimer) -> Vec<EdgeOutput> {
        c.on_timer(&mut self.h.env(), timer)
    }

    /// Fire every replay timer in `out` (and those they arm) until the replay is over; return
    /// all outputs in order, `out` included.
    pub fn finish_replay(&mut self, c: &mut EdgeConn, mut out: Vec<EdgeOutput>) -> Vec<EdgeOutput> {
        let mut i = 0;
        while i < out.len() {
            if let EdgeOutput::Timer { timer: t @ EdgeTimer::ReplayPage { .. }, .. } = &out[i] {
                let more = self.timer(c, t.clone());
                out.extend(more);
            }
            i += 1;
        }
        out
    }

    /// A connection of `key` through the whole handshake, live; returns every output.
    pub fn connect(&mut self, id: u64, key: &str) -> (EdgeConn, Vec<EdgeOutput>) {
        let (mut c, mut out) = self.accept(id, key);
        out.extend(self.subscribed(&mut c));
        out.extend(self.recv(&mut c, &metadata_frame()));
        let out = self.finish_replay(&mut c, out);
        assert!(c.is_live(), "handshake did not finish: {out:?}");
        (c, out)
    }
}
