//! The command log (`spec/protocol.md` §3.2–3.4): durable commands stored under
//! `runner/R/cmd/A/g/i` as `versioned::ActorCommandKeyData` with the embedded version header.
//!
//! It owns writing a command (once, never changed), deleting acknowledged commands and every
//! command of an ended generation, reading replay pages in key order, and reading one command
//! for the live path's existence check. It does not decide which commands exist (the workflow
//! does) or how they are delivered (the edge does).
//!
//! Canaries living here:
//! - `commands-never-deleted`: both deletions become no-ops.
//! - `replay-unbounded`: a replay page reads the whole subspace in one read, with no page size.
//! - `preload-bundle-persisted`: a `Start` is stored with the bundle the workflow fetched when it
//!   persisted it, and the edge then delivers that stored bundle instead of a fresh one (see
//!   `engine::conn`); the correct model stores `preloadedKv` absent.

use crate::canary::Canary;
use crate::env::Env;
use crate::keys::{self, ActorId, RunnerId};
use crate::protocol::{ActorCommandKeyData, PreloadedKv};
use crate::store::{KeyRange, ReadMode, StoreError, Txn};
use crate::wire;

/// A stored command could not be read back (an internal error that fails the operation).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandLogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: stored command at {key} does not decode: {detail}")]
    Corrupt { key: String, detail: String },
}

/// Decode a stored command, naming its key on failure.
pub fn decode_stored(key: &[u8], bytes: &[u8]) -> Result<ActorCommandKeyData, CommandLogError> {
    wire::decode_stored_command(bytes)
        .map_err(|e| CommandLogError::Corrupt { key: hex(key), detail: e.to_string() })
}

/// The identity of one stored command: `(R, A, g, i)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommandKey {
    pub runner: RunnerId,
    pub actor: ActorId,
    pub generation: u32,
    pub index: i64,
}

impl CommandKey {
    /// The store key.
    pub fn key(&self) -> Vec<u8> {
        keys::runner_cmd(&self.runner, &self.actor, self.generation, self.index)
    }
}

/// Write command `key` inside `txn`. A `Start` is stored with `preloadedKv` absent and no
/// hibernating requests, unless the `preload-bundle-persisted` canary hands in `bundle`.
pub fn persist(
    env: &Env<'_>,
    txn: &mut Txn,
    key: &CommandKey,
    cmd: &ActorCommandKeyData,
    bundle: Option<PreloadedKv>,
) {
    let mut stored = wire::dehydrated(cmd.clone());
    if let (ActorCommandKeyData::CommandStartActor(start), true) =
        (&mut stored, env.canaries.on(Canary::PreloadBundlePersisted))
    {
        start.preloaded_kv = bundle;
    }
    txn.set(key.key(), wire::encode_stored_command(&stored));
}

/// Delete the keys `(R, A, g, i <= k)` (acknowledgement, §3.6).
pub fn delete_acked(
    env: &Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
    actor: &str,
    generation: u32,
    k: i64,
) {
    if env.canaries.on(Canary::CommandsNeverDeleted) || k < 0 {
        return;
    }
    txn.clear_range(keys::runner_cmd_upto(runner, actor, generation, k));
}

/// Delete every key `(R, A, g, *)` (generation end, §3.3).
pub fn delete_generation(
    env: &Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
    actor: &str,
    generation: u32,
) {
    if env.canaries.on(Canary::CommandsNeverDeleted) {
        return;
    }
    txn.clear_range(keys::runner_cmd_generation(runner, actor, generation));
}

/// Read command `(R, A, g, i)` (snapshot), if it still exists.
pub fn read_one(
    env: &mut Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
    actor: &str,
    generation: u32,
    index: i64,
) -> Result<Option<ActorCommandKeyData>, CommandLogError> {
    let key = keys::runner_cmd(runner, actor, generation, index);
    let now = env.now_ms;
    match env.store.get(txn, &key, ReadMode::Snapshot, now)? {
        Some(bytes) => Ok(Some(decode_stored(&key, &bytes)?)),
        None => Ok(None),
    }
}

/// One replay page: up to `page_keys` command keys of `R` after `after` (exclusive), in key order,
/// read with a snapshot read. Returns the commands and the last key read (the resume point). With
/// the `replay-unbounded` canary the whole subspace is read at once.
pub fn read_page(
    env: &mut Env<'_>,
    txn: &mut Txn,
    runner: &RunnerId,
    after: Option<&[u8]>,
    page_keys: usize,
) -> Result<ReplayPage, CommandLogError> {
    let prefix = keys::runner_cmd_prefix(runner);
    let mut range = KeyRange::prefix(&prefix);
    if let Some(after) = after {
        let mut start = after.to_vec();
        start.push(0);
        range.start = start;
    }
    let limit = if env.canaries.on(Canary::ReplayUnbounded) { None } else { Some(page_keys) };
    let now = env.now_ms;
    let rows = env.store.get_range(txn, &range, limit, false, ReadMode::Snapshot, now)?;
    let full = limit.is_some_and(|l| rows.len() >= l);
    let last_key = rows.last().map(|(k, _)| k.clone());
    let mut commands = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let (actor, generation, index) = keys::parse_runner_cmd(runner, &key)
            .map_err(|e| CommandLogError::Corrupt { key: hex(&key), detail: e.to_string() })?;
        commands.push(StoredCommand {
            actor,
            generation,
            index,
            command: decode_stored(&key, &value)?,
        });
    }
    Ok(ReplayPage { commands, last_key, more: full })
}

/// A command as read from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCommand {
    pub actor: ActorId,
    pub generation: u32,
    pub index: i64,
    pub command: ActorCommandKeyData,
}

/// One page of a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayPage {
    pub commands: Vec<StoredCommand>,
    /// The last key read; the next page starts after it.
    pub last_key: Option<Vec<u8>>,
    /// Whether the page was full, so another page may follow (§3.4: the replay ends at the first
    /// page with fewer than `REPLAY_PAGE_KEYS` keys).
    pub more: bool,
}

/// Count the command keys of `R` (for checkers of the store bound and for tests).
pub fn count(env: &mut Env<'_>, txn: &mut Txn, runner: &RunnerId) -> Result<usize, StoreError> {
    let range = KeyRange::prefix(&keys::runner_cmd_prefix(runner));
    let now = env.now_ms;
    Ok(env.store.get_range(txn, &range, None, false, ReadMode::Snapshot, now)?.len())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
