//! Command delivery of one connection (`spec/protocol.md` §3.4, §7.1, `spec/preload.md` §7): how
//! stored commands become `ToEnvoyCommands` frames, on the replay path and on the live path.
//!
//! Owns hydration (a fresh preload fetch for every `Start` at every delivery, recorded as
//! [`Fact::PreloadFetched`]; `hibernatingRequests` empty, since the model has no gateway state)
//! and the split of a command list into frames of at most `frame_max_commands` commands and
//! `frame_target_bytes` encoded bytes (a single command may exceed the target). It does not read
//! the command log or decide which commands exist (the connection does), and it sends nothing: it
//! returns the encoded frames.
//!
//! Canary `preload-bundle-persisted`: a stored `Start` that already carries a bundle (the canary
//! in `cmdlog::persist` put it there) is delivered with that bundle, without a fetch and without a
//! `PreloadFetched` fact.

use vbare::{varint::uint_len, Body};

use crate::canary::Canary;
use crate::config::EngineConfig;
use crate::env::Env;
use crate::fact::{ConnId, Fact};
use crate::keys::RunnerId;
use crate::preload;
use crate::protocol as p;
use crate::wire::{self, Codec, FrameError};

/// A command read from the log, not yet hydrated: its checkpoint and stored content.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingCommand {
    pub checkpoint: p::ActorCheckpoint,
    pub stored: p::ActorCommandKeyData,
}

/// One frame ready to be sent, with the checkpoints it carries (for [`Fact::CommandsSent`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandFrame {
    pub bytes: Vec<u8>,
    pub checkpoints: Vec<(String, u32, i64)>,
}

/// Turn a stored command into the frame form, hydrating a `Start` for this delivery.
pub fn hydrate(
    env: &mut Env<'_>,
    config: &EngineConfig,
    conn: ConnId,
    runner: &RunnerId,
    command: PendingCommand,
) -> p::CommandWrapper {
    let PendingCommand { checkpoint, stored } = command;
    let stored = match stored {
        p::ActorCommandKeyData::CommandStartActor(mut start) => {
            let persisted =
                start.preloaded_kv.is_some() && env.canaries.on(Canary::PreloadBundlePersisted);
            if !persisted {
                start.preloaded_kv = fetch_bundle(env, config, conn, runner, &checkpoint, &start);
            }
            start.hibernating_requests = Vec::new();
            p::ActorCommandKeyData::CommandStartActor(start)
        }
        stop => stop,
    };
    wire::command_from_stored(checkpoint, stored)
}

/// A fresh preload fetch for the `Start` of `checkpoint` (§7.1), recorded for the checkers.
fn fetch_bundle(
    env: &mut Env<'_>,
    config: &EngineConfig,
    conn: ConnId,
    runner: &RunnerId,
    checkpoint: &p::ActorCheckpoint,
    start: &p::CommandStartActor,
) -> Option<p::PreloadedKv> {
    let actor = checkpoint.actor_id.as_str();
    let faults = &mut *env.faults;
    let outcome = preload::fetch(
        env.store,
        actor,
        &runner.namespace,
        start.config.name.as_str(),
        config.preload_budget,
        env.canaries,
        env.now_ms,
        &mut || faults.preload_read_fault(),
    );
    env.facts.record(Fact::PreloadFetched {
        runner: runner.clone(),
        conn,
        actor: actor.to_string(),
        generation: checkpoint.generation,
        read_version: outcome.read_version,
        budget: outcome.budget,
        manifest_json: outcome.manifest.as_ref().map(|m| m.to_json().to_string()),
        bundle: outcome.bundle.clone(),
        attempts: outcome.attempts,
        failed: outcome.failed,
    });
    outcome.bundle
}

/// The encoded length of `ToEnvoyCommands` holding `count` commands whose bodies total
/// `commands_len` bytes: the union tag, the list length, the commands.
pub fn commands_frame_len(count: usize, commands_len: usize) -> usize {
    let empty = p::ToEnvoy::ToEnvoyCommands(Vec::new()).body_len();
    empty - uint_len(0) + uint_len(count as u64) + commands_len
}

/// Split `commands` into frames of at most `max_commands` commands and `target_bytes` encoded
/// bytes each, keeping their order. A command that alone exceeds `target_bytes` gets a frame of
/// its own.
pub fn split_frames(
    commands: Vec<p::CommandWrapper>,
    max_commands: usize,
    target_bytes: usize,
) -> Vec<Vec<p::CommandWrapper>> {
    let max_commands = max_commands.max(1);
    let mut frames: Vec<Vec<p::CommandWrapper>> = Vec::new();
    let mut current: Vec<p::CommandWrapper> = Vec::new();
    let mut current_len = 0usize;
    for command in commands {
        let len = command.body_len();
        let fits = current.len() < max_commands
            && commands_frame_len(current.len() + 1, current_len + len) <= target_bytes;
        if !current.is_empty() && !fits {
            frames.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current_len += len;
        current.push(command);
    }
    if !current.is_empty() {
        frames.push(current);
    }
    frames
}

/// Encode each frame with `codec`. A frame the codec refuses (larger than its limit) is an error.
pub fn encode_frames(
    codec: &Codec,
    frames: Vec<Vec<p::CommandWrapper>>,
) -> Result<Vec<CommandFrame>, FrameError> {
    frames
        .into_iter()
        .map(|commands| {
            let checkpoints = commands
                .iter()
                .map(|c| {
                    let cp = &c.checkpoint;
                    (cp.actor_id.to_string(), cp.generation, cp.index)
                })
                .collect();
            let bytes = codec.encode_to_envoy(&p::ToEnvoy::ToEnvoyCommands(commands))?;
            Ok(CommandFrame { bytes, checkpoints })
        })
        .collect()
}
