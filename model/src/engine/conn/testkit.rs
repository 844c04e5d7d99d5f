//! Test support shared by the tests of `engine::edge_txn`, `engine::demux` and `engine::conn`:
//! a store with an [`Env`] around it, scripted faults, and helpers that seed the records other
//! components (the workflow, the registry) would have written.

#![allow(dead_code)] // helpers shared by several test modules; not every one uses each

use std::collections::{BTreeMap, VecDeque};

use crate::canary::{Canaries, Canary};
use crate::engine::cmdlog::{self, CommandKey};
use crate::env::{Env, Faults, SplitMix};
use crate::fact::{Fact, TxnLabel};
use crate::keys::{self, RunnerId};
use crate::protocol as p;
use crate::records::{self, KvEntryRecord, Placement, RunnerInfo};
use crate::store::{CommitFault, KeyRange, ReadMode, Store};

/// Faults scripted per transaction label: the next commits with a label take its queued faults in
/// order; the next preload reads take the queued read failures in order.
#[derive(Debug, Default)]
pub(crate) struct ScriptedFaults {
    pub commit: BTreeMap<TxnLabel, VecDeque<CommitFault>>,
    pub preload: VecDeque<bool>,
}

impl ScriptedFaults {
    /// Queue `fault` for the next commit labelled `label`.
    pub fn push_commit(&mut self, label: TxnLabel, fault: CommitFault) {
        self.commit.entry(label).or_default().push_back(fault);
    }
}

impl Faults for ScriptedFaults {
    fn commit_fault(&mut self, label: TxnLabel) -> Option<CommitFault> {
        self.commit.get_mut(&label).and_then(VecDeque::pop_front)
    }
    fn preload_read_fault(&mut self) -> bool {
        self.preload.pop_front().unwrap_or(false)
    }
}

/// Everything an [`Env`] borrows, owned.
pub(crate) struct Harness {
    pub store: Store,
    pub faults: ScriptedFaults,
    pub rng: SplitMix,
    pub facts: Vec<Fact>,
    pub now_ms: u64,
    pub wall_ms: i64,
    pub canaries: Canaries,
}

impl Default for Harness {
    fn default() -> Self {
        Harness {
            store: Store::default(),
            faults: ScriptedFaults::default(),
            rng: SplitMix(7),
            facts: Vec::new(),
            now_ms: 1_000,
            wall_ms: 1_700_000_000_000,
            canaries: Canaries::NONE,
        }
    }
}

impl Harness {
    pub fn with_canary(canary: Canary) -> Self {
        Harness { canaries: Canaries::only(canary), ..Harness::default() }
    }

    /// The environment of one call.
    pub fn env(&mut self) -> Env<'_> {
        Env {
            now_ms: self.now_ms,
            wall_ms: self.wall_ms,
            store: &mut self.store,
            faults: &mut self.faults,
            rng: &mut self.rng,
            facts: &mut self.facts,
            canaries: self.canaries,
        }
    }

    /// Advance both clocks.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        self.wall_ms += ms as i64;
    }

    /// The facts recorded so far, leaving none.
    pub fn take_facts(&mut self) -> Vec<Fact> {
        std::mem::take(&mut self.facts)
    }

    /// The facts recorded so far other than store commits.
    pub fn model_facts(&mut self) -> Vec<Fact> {
        self.take_facts()
            .into_iter()
            .filter(|f| !matches!(f, Fact::Commit { .. } | Fact::CommitFailed { .. }))
            .collect()
    }

    /// Read one key at the latest version.
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let mut txn = self.store.begin(self.now_ms);
        let v = self.store.get(&mut txn, key, ReadMode::Snapshot, self.now_ms).ok().flatten();
        self.store.abort(txn);
        v
    }

    /// Read every key of a range at the latest version.
    pub fn range(&mut self, range: &KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut txn = self.store.begin(self.now_ms);
        let rows = self
            .store
            .get_range(&mut txn, range, None, false, ReadMode::Snapshot, self.now_ms)
            .unwrap_or_default();
        self.store.abort(txn);
        rows
    }

    /// Every key of the store with its value (for "nothing changed" checks).
    pub fn dump(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.range(&KeyRange { start: Vec::new(), end: None })
    }

    /// The runner record.
    pub fn info(&mut self, runner: &RunnerId) -> Option<RunnerInfo> {
        self.get(&keys::runner_info(runner)).map(|b| records::decode("runner info", &b).unwrap())
    }

    /// Write keys directly (the writes of other components), in one commit without faults.
    pub fn write(&mut self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        let mut txn = self.store.begin(self.now_ms);
        for (k, v) in writes {
            match v {
                Some(v) => txn.set(k, v),
                None => txn.clear(k),
            }
        }
        self.store.commit(txn, self.now_ms, None).unwrap();
    }

    /// Overwrite the runner record.
    pub fn put_info(&mut self, runner: &RunnerId, info: &RunnerInfo) {
        self.write(vec![(keys::runner_info(runner), Some(records::encode(info)))]);
    }

    /// An existing actor in `namespace` allocated to `(runner, generation)` (what the workflow and
    /// the registry write at allocation).
    pub fn allocate(&mut self, actor: &str, runner: &RunnerId, generation: u32) {
        let placement = Placement { runner: runner.clone(), generation };
        self.write(vec![
            (keys::actor_namespace(actor), Some(runner.namespace.as_bytes().to_vec())),
            (keys::actor_placement(actor), Some(records::encode(&placement))),
            (keys::runner_alloc(runner, actor), Some(records::encode(&generation))),
        ]);
    }

    /// Persist a command the way the workflow does.
    pub fn persist(&mut self, key: &CommandKey, cmd: &p::ActorCommandKeyData) {
        self.persist_with_bundle(key, cmd, None);
    }

    /// Persist a command with the bundle the `preload-bundle-persisted` canary would store.
    pub fn persist_with_bundle(
        &mut self,
        key: &CommandKey,
        cmd: &p::ActorCommandKeyData,
        bundle: Option<p::PreloadedKv>,
    ) {
        let mut txn = self.store.begin(self.now_ms);
        {
            let env = self.env();
            cmdlog::persist(&env, &mut txn, key, cmd, bundle);
        }
        self.store.commit(txn, self.now_ms, None).unwrap();
    }

    /// Write a KV entry of `actor` directly, with metadata `(version "2.3.7", wall time)`.
    pub fn kv_put(&mut self, actor: &str, key: &[u8], value: &[u8]) {
        let record = KvEntryRecord {
            value: value.to_vec(),
            version: crate::constants::KV_METADATA_VERSION.as_bytes().to_vec(),
            update_ts: self.wall_ms,
        };
        self.write(vec![(keys::actor_kv_key(actor, key), Some(record.encode()))]);
    }
}

/// A start command with this actor name and input.
pub(crate) fn start_command(name: &str, input: Option<Vec<u8>>) -> p::ActorCommandKeyData {
    p::ActorCommandKeyData::CommandStartActor(p::CommandStartActor {
        config: p::ActorConfig {
            name: name.to_string().into(),
            key: None,
            create_ts: 5,
            input: input.map(Into::into),
        },
        hibernating_requests: Vec::new(),
        preloaded_kv: None,
    })
}

/// A stop command.
pub(crate) fn stop_command(reason: p::StopActorReason) -> p::ActorCommandKeyData {
    p::ActorCommandKeyData::CommandStopActor(p::CommandStopActor { reason })
}

/// A checkpoint.
pub(crate) fn checkpoint(actor: &str, generation: u32, index: i64) -> p::ActorCheckpoint {
    p::ActorCheckpoint { actor_id: actor.to_string().into(), generation, index }
}
