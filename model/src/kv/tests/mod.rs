//! Tests of the KV API against the store: a small world (a store with fenced actors) and request
//! builders shared by the test files. Expected results are computed in the tests from the spec
//! text, never by the code under test.

mod atomicity;
mod edge_cases;
mod fencing;
mod limits;
mod metadata;
mod reference;

use rivet_envoy_protocol::{
    KvDeleteRangeRequest, KvDeleteRequest, KvGetRequest, KvListPrefixQuery, KvListQuery,
    KvListRangeQuery, KvListRequest, KvPutRequest, KvRequestData, KvResponseData,
};
use vbare::Bytes;

use super::{execute, KvAttemptError, KvConfig, KvContext, KvOutcome};
use crate::keys::{self, RunnerId};
use crate::records::{self, KvEntryRecord, Placement, RunnerInfo};
use crate::store::{CommitFault, KeyRange, ReadMode, Store, Txn};

/// The actor most tests use.
pub(super) const ACTOR: &str = "actor-1";
/// The namespace of the test connection.
pub(super) const NS: &str = "ns-main";
/// The test connection's epoch.
pub(super) const EPOCH: u64 = 7;
/// The generation the test actors are placed at.
pub(super) const GENERATION: u32 = 3;

/// A store holding fenced actors, the connection requests arrive on, and the clocks.
pub(super) struct World {
    pub store: Store,
    pub ctx: KvContext,
    pub cfg: KvConfig,
    pub now_ms: u64,
    pub wall_ms: i64,
}

impl World {
    /// A store where [`ACTOR`] exists in [`NS`] and is held by the test connection.
    pub fn new() -> Self {
        let runner = RunnerId::new(NS, "runner-key-1");
        let mut world = World {
            store: Store::default(),
            ctx: KvContext { namespace: NS.to_string(), runner, epoch: EPOCH },
            cfg: KvConfig::default(),
            now_ms: 1_000,
            wall_ms: 1_700_000_000_000,
        };
        world.register_runner(EPOCH, false);
        world.place(ACTOR);
        world
    }

    /// Write `runner/R/info` of the test runner.
    pub fn register_runner(&mut self, epoch: u64, expired: bool) {
        let info = RunnerInfo {
            pool: "default".into(),
            epoch,
            connected: true,
            ready: true,
            expired,
            total_slots: 10,
            ..Default::default()
        };
        let key = keys::runner_info(&self.ctx.runner);
        self.write(|t| t.set(key, records::encode(&info)));
    }

    /// Create `actor` in [`NS`] and place it on the test runner.
    pub fn place(&mut self, actor: &str) {
        let placement = Placement { runner: self.ctx.runner.clone(), generation: GENERATION };
        self.write(|t| {
            t.set(keys::actor_namespace(actor), NS.as_bytes());
            t.set(keys::actor_placement(actor), records::encode(&placement));
        });
    }

    /// Commit one transaction built by `f`.
    pub fn write(&mut self, f: impl FnOnce(&mut Txn)) {
        let mut txn = self.store.begin(self.now_ms);
        f(&mut txn);
        self.store.commit(txn, self.now_ms, None).expect("fixture write commits");
    }

    /// One attempt with an injected fault; the clocks advance by one step first.
    pub fn attempt(
        &mut self,
        actor: &str,
        req: &KvRequestData,
        fault: Option<CommitFault>,
    ) -> Result<KvOutcome, KvAttemptError> {
        self.now_ms += 1;
        self.wall_ms += 1;
        execute(&mut self.store, &self.ctx, actor, req, &self.cfg, self.now_ms, self.wall_ms, fault)
    }

    /// One fault-free attempt, which must not fail retryably.
    pub fn run(&mut self, actor: &str, req: &KvRequestData) -> KvOutcome {
        self.attempt(actor, req, None).expect("a fault-free attempt does not fail retryably")
    }

    /// A request that must succeed.
    pub fn ok(&mut self, actor: &str, req: &KvRequestData) -> KvOutcome {
        let out = self.run(actor, req);
        assert_eq!(out.error, None, "request {req:?} was rejected: {:?}", out.response);
        out
    }

    /// Every `(key, value)` of the store at its latest version.
    pub fn dump(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut txn = self.store.begin(self.now_ms);
        let all = KeyRange { start: Vec::new(), end: None };
        let rows = self
            .store
            .get_range(&mut txn, &all, None, false, ReadMode::Snapshot, self.now_ms)
            .expect("fixture read");
        self.store.abort(txn);
        rows
    }

    /// The stored entries of `actor`, read raw from the store, in key order.
    pub fn entries(&mut self, actor: &str) -> Vec<(Vec<u8>, KvEntryRecord)> {
        let prefix = keys::actor_kv_prefix(actor);
        let mut txn = self.store.begin(self.now_ms);
        let rows = self
            .store
            .get_range(
                &mut txn,
                &KeyRange::prefix(&prefix),
                None,
                false,
                ReadMode::Snapshot,
                self.now_ms,
            )
            .expect("fixture read");
        self.store.abort(txn);
        rows.into_iter()
            .map(|(k, v)| {
                let key = k[prefix.len()..].to_vec();
                (key, KvEntryRecord::decode(&v).expect("stored entry decodes"))
            })
            .collect()
    }

    /// The usage record of `actor`, read raw (8 bytes little-endian), `None` when absent.
    pub fn usage_record(&mut self, actor: &str) -> Option<u64> {
        let mut txn = self.store.begin(self.now_ms);
        let raw = self
            .store
            .get(&mut txn, &keys::actor_kv_usage(actor), ReadMode::Snapshot, self.now_ms)
            .expect("fixture read");
        self.store.abort(txn);
        raw.map(|b| u64::from_le_bytes(b.try_into().expect("usage is 8 bytes")))
    }

    /// Run `req`, expect the typed rejection `err`, and check that nothing changed.
    pub fn assert_rejected(&mut self, actor: &str, req: &KvRequestData, err: super::KvError) {
        let before = self.dump();
        let version = self.store.version();
        let out = self.run(actor, req);
        assert_eq!(out.error, Some(err.clone()), "request {req:?}");
        assert_eq!(out.response, err.to_response());
        assert_eq!((out.mutated, out.commit_version), (false, None));
        assert_eq!(self.store.version(), version, "a rejected request committed");
        assert!(self.dump() == before, "a rejected request changed the store");
    }
}

/// Bytes of a slice.
pub(super) fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

pub(super) fn get(keys: &[&[u8]]) -> KvRequestData {
    KvRequestData::KvGetRequest(KvGetRequest { keys: keys.iter().map(|k| b(k)).collect() })
}

pub(super) fn put(pairs: &[(&[u8], &[u8])]) -> KvRequestData {
    KvRequestData::KvPutRequest(KvPutRequest {
        keys: pairs.iter().map(|(k, _)| b(k)).collect(),
        values: pairs.iter().map(|(_, v)| b(v)).collect(),
    })
}

pub(super) fn put_owned(pairs: &[(Vec<u8>, Vec<u8>)]) -> KvRequestData {
    KvRequestData::KvPutRequest(KvPutRequest {
        keys: pairs.iter().map(|(k, _)| b(k)).collect(),
        values: pairs.iter().map(|(_, v)| b(v)).collect(),
    })
}

pub(super) fn delete(keys: &[&[u8]]) -> KvRequestData {
    KvRequestData::KvDeleteRequest(KvDeleteRequest { keys: keys.iter().map(|k| b(k)).collect() })
}

pub(super) fn delete_range(start: &[u8], end: &[u8]) -> KvRequestData {
    KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest { start: b(start), end: b(end) })
}

pub(super) fn list(query: KvListQuery, reverse: Option<bool>, limit: Option<u64>) -> KvRequestData {
    KvRequestData::KvListRequest(KvListRequest { query, reverse, limit })
}

pub(super) fn list_all() -> KvRequestData {
    list(KvListQuery::KvListAllQuery, None, None)
}

pub(super) fn list_prefix(
    prefix: &[u8],
    reverse: Option<bool>,
    limit: Option<u64>,
) -> KvRequestData {
    list(KvListQuery::KvListPrefixQuery(KvListPrefixQuery { key: b(prefix) }), reverse, limit)
}

pub(super) fn list_range(start: &[u8], end: &[u8], exclusive: bool) -> KvRequestData {
    list(
        KvListQuery::KvListRangeQuery(KvListRangeQuery { start: b(start), end: b(end), exclusive }),
        None,
        None,
    )
}

/// The keys of a list or get response.
pub(super) fn response_keys(out: &KvOutcome) -> Vec<Vec<u8>> {
    match &out.response {
        KvResponseData::KvListResponse(r) => r.keys.iter().map(|k| k.to_vec()).collect(),
        KvResponseData::KvGetResponse(r) => r.keys.iter().map(|k| k.to_vec()).collect(),
        other => panic!("not a list or get response: {other:?}"),
    }
}

/// The `(key, value)` pairs of a list or get response.
pub(super) fn response_pairs(out: &KvOutcome) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (keys, values) = match &out.response {
        KvResponseData::KvListResponse(r) => (&r.keys, &r.values),
        KvResponseData::KvGetResponse(r) => (&r.keys, &r.values),
        other => panic!("not a list or get response: {other:?}"),
    };
    keys.iter().zip(values).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}
