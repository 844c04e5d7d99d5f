//! The checkers' own shadow of the store, rebuilt only from the mutations that `Fact::Commit`
//! entries carry (`spec/protocol.md` §1.8 key layout). The checkers never read the model's store.
//!
//! Owns: the decoded view of the keys the invariants speak about (runner records, allocations,
//! command keys, placements, actor namespaces, actor keyspaces, pending entries, actor-name
//! metadata) and, for every commit, the list of [`Change`]s it made with the old and new decoded
//! values. Keys of other kinds (workflow state, inboxes, registry entries, eligibility index,
//! runner metadata chunks, KV usage) are not tracked. Must not touch: anything but its own maps.
//!
//! A tracked value that does not decode is kept as [`Value::Bad`] in the change list (the checker
//! reports it) and left out of the typed maps.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use pegsim_model::constants::KEY_OVERHEAD;
use pegsim_model::keys::{ActorId, RunnerId, TupleReader};
use pegsim_model::preload::Snapshot;
use pegsim_model::protocol::ActorCommandKeyData;
use pegsim_model::records::{self, KvEntryRecord, Placement, RunnerInfo};
use pegsim_model::store::{KeyRange, Mutation, Version, VERSIONSTAMP_LEN};
use pegsim_model::wire::decode_stored_command;

/// What a tracked store key is, with the identifiers parsed out of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum KeyKind {
    /// `runner/R/info`.
    RunnerInfo(RunnerId),
    /// `runner/R/alloc/A`.
    RunnerAlloc(RunnerId, ActorId),
    /// `runner/R/cmd/A/g/i`.
    RunnerCmd(RunnerId, ActorId, u32, i64),
    /// `actor/A/placement`.
    Placement(ActorId),
    /// `actor/A/ns`.
    ActorNs(ActorId),
    /// `actor/A/kv/k`, with the user key `k`.
    ActorKv(ActorId, Vec<u8>),
    /// `pending/ns/pool/versionstamp/A`.
    Pending { ns: String, pool: String, stamp: Vec<u8>, actor: ActorId },
    /// `ns/ns/actor_name/name`.
    ActorNameMeta { ns: String, name: String },
}

/// Parse a store key into its kind; `None` for keys the checkers do not track.
pub(super) fn classify(key: &[u8]) -> Option<KeyKind> {
    let mut t = TupleReader::new(key);
    match t.s().ok()?.as_str() {
        "runner" => {
            let namespace = t.s().ok()?;
            let envoy_key = t.s().ok()?;
            let runner = RunnerId { namespace, envoy_key };
            match t.s().ok()?.as_str() {
                "info" if t.rest().is_empty() => Some(KeyKind::RunnerInfo(runner)),
                "alloc" => {
                    let actor = t.s().ok()?;
                    t.rest().is_empty().then_some(KeyKind::RunnerAlloc(runner, actor))
                }
                "cmd" => {
                    let actor = t.s().ok()?;
                    let generation = u32::try_from(t.u().ok()?).ok()?;
                    let index = t.i().ok()?;
                    t.rest()
                        .is_empty()
                        .then_some(KeyKind::RunnerCmd(runner, actor, generation, index))
                }
                _ => None,
            }
        }
        "actor" => {
            let actor = t.s().ok()?;
            match t.s().ok()?.as_str() {
                "placement" if t.rest().is_empty() => Some(KeyKind::Placement(actor)),
                "ns" if t.rest().is_empty() => Some(KeyKind::ActorNs(actor)),
                "kv" => Some(KeyKind::ActorKv(actor, t.rest().to_vec())),
                _ => None,
            }
        }
        "pending" => {
            let ns = t.s().ok()?;
            let pool = t.s().ok()?;
            let rest = t.rest();
            let (stamp, suffix) = rest.split_at_checked(VERSIONSTAMP_LEN)?;
            let mut s = TupleReader::new(suffix);
            let actor = s.s().ok()?;
            s.rest().is_empty().then_some(KeyKind::Pending {
                ns,
                pool,
                stamp: stamp.to_vec(),
                actor,
            })
        }
        "ns" => {
            let ns = t.s().ok()?;
            if t.s().ok()? != "actor_name" {
                return None;
            }
            let name = t.s().ok()?;
            t.rest().is_empty().then_some(KeyKind::ActorNameMeta { ns, name })
        }
        _ => None,
    }
}

/// A decoded value of a tracked key.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Info(RunnerInfo),
    Alloc(u32),
    Cmd(Box<ActorCommandKeyData>),
    Placement(Placement),
    Kv(KvEntryRecord),
    Manifest(Vec<u8>),
    /// A key whose value the checkers do not need (actor namespace, pending entry, or the old
    /// value of a command key).
    Present,
    /// The value did not decode; the text says why.
    Bad(String),
}

/// One key a commit changed: its kind, the value before (if present) and after (if present).
#[derive(Clone, Debug)]
pub(super) struct Change {
    pub kind: KeyKind,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// A pending-queue entry: namespace, pool, versionstamp.
pub(super) type PendingEntry = (String, String, Vec<u8>);

/// The shadow. See the module comment.
#[derive(Debug, Default)]
pub(super) struct Shadow {
    /// Every tracked key that is present (for range clears).
    present: BTreeSet<Vec<u8>>,
    pub infos: BTreeMap<RunnerId, RunnerInfo>,
    pub allocs: BTreeMap<RunnerId, BTreeMap<ActorId, u32>>,
    pub actor_allocs: BTreeMap<ActorId, BTreeMap<RunnerId, u32>>,
    pub cmds: BTreeMap<RunnerId, BTreeSet<(ActorId, u32, i64)>>,
    pub actor_cmds: BTreeMap<ActorId, BTreeSet<(RunnerId, u32, i64)>>,
    pub placements: BTreeMap<ActorId, Placement>,
    pub actor_ns: BTreeSet<ActorId>,
    pub kv: BTreeMap<ActorId, Snapshot>,
    /// `usage(S)` of `spec/preload.md` §1.3 per actor.
    pub kv_usage: BTreeMap<ActorId, u64>,
    /// The last commit version that changed the actor's keyspace.
    pub kv_modified: BTreeMap<ActorId, Version>,
    pub pending: BTreeMap<ActorId, BTreeSet<PendingEntry>>,
    pub manifests: BTreeMap<(String, String), Vec<u8>>,
    /// The last commit version that changed the actor-name metadata.
    pub manifest_modified: BTreeMap<(String, String), Version>,
    /// The latest commit version seen.
    pub version: Version,
}

impl Shadow {
    /// Apply one commit's mutations (versionstamps already resolved by the store) and return what
    /// changed, in mutation order.
    pub(super) fn apply(&mut self, version: Version, applied: &[Mutation]) -> Vec<Change> {
        self.version = self.version.max(version);
        let mut changes = Vec::new();
        for mutation in applied {
            match mutation {
                Mutation::Set { key, value } => {
                    let Some(kind) = classify(key) else { continue };
                    let old = self.remove_typed(&kind);
                    let new = self.insert_typed(&kind, value);
                    self.present.insert(key.clone());
                    changes.push(Change { kind, old, new: Some(new) });
                }
                Mutation::Clear { key } => {
                    if !self.present.remove(key.as_slice()) {
                        continue;
                    }
                    let Some(kind) = classify(key) else { continue };
                    let old = self.remove_typed(&kind);
                    changes.push(Change { kind, old, new: None });
                }
                Mutation::ClearRange { range } => {
                    for key in self.keys_in(range) {
                        self.present.remove(&key);
                        let Some(kind) = classify(&key) else { continue };
                        let old = self.remove_typed(&kind);
                        changes.push(Change { kind, old, new: None });
                    }
                }
                // The store records atomic adds and versionstamped writes as the resulting sets.
                Mutation::AtomicAdd { .. }
                | Mutation::SetVersionstampedKey { .. }
                | Mutation::SetVersionstampedValue { .. } => {}
            }
        }
        for change in &changes {
            match &change.kind {
                KeyKind::ActorKv(actor, _) => {
                    self.kv_modified.insert(actor.clone(), version);
                }
                KeyKind::ActorNameMeta { ns, name } => {
                    self.manifest_modified.insert((ns.clone(), name.clone()), version);
                }
                _ => {}
            }
        }
        changes
    }

    fn keys_in(&self, range: &KeyRange) -> Vec<Vec<u8>> {
        let end = match &range.end {
            Some(e) if e.as_slice() <= range.start.as_slice() => return Vec::new(),
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.present
            .range::<[u8], _>((Bound::Included(range.start.as_slice()), end))
            .cloned()
            .collect()
    }

    fn insert_typed(&mut self, kind: &KeyKind, bytes: &[u8]) -> Value {
        match kind {
            KeyKind::RunnerInfo(r) => match records::decode::<RunnerInfo>("runner info", bytes) {
                Ok(info) => {
                    self.infos.insert(r.clone(), info.clone());
                    Value::Info(info)
                }
                Err(e) => Value::Bad(e.to_string()),
            },
            KeyKind::RunnerAlloc(r, a) => match records::decode::<u32>("allocation", bytes) {
                Ok(g) => {
                    self.allocs.entry(r.clone()).or_default().insert(a.clone(), g);
                    self.actor_allocs.entry(a.clone()).or_default().insert(r.clone(), g);
                    Value::Alloc(g)
                }
                Err(e) => Value::Bad(e.to_string()),
            },
            KeyKind::RunnerCmd(r, a, g, i) => {
                self.cmds.entry(r.clone()).or_default().insert((a.clone(), *g, *i));
                self.actor_cmds.entry(a.clone()).or_default().insert((r.clone(), *g, *i));
                match decode_stored_command(bytes) {
                    Ok(cmd) => Value::Cmd(Box::new(cmd)),
                    Err(e) => Value::Bad(e.to_string()),
                }
            }
            KeyKind::Placement(a) => match records::decode::<Placement>("placement", bytes) {
                Ok(p) => {
                    self.placements.insert(a.clone(), p.clone());
                    Value::Placement(p)
                }
                Err(e) => Value::Bad(e.to_string()),
            },
            KeyKind::ActorNs(a) => {
                self.actor_ns.insert(a.clone());
                Value::Present
            }
            KeyKind::ActorKv(a, k) => match KvEntryRecord::decode(bytes) {
                Ok(record) => {
                    *self.kv_usage.entry(a.clone()).or_default() += usage_of(k, &record);
                    self.kv.entry(a.clone()).or_default().insert(k.clone(), record.clone());
                    Value::Kv(record)
                }
                Err(e) => Value::Bad(e.to_string()),
            },
            KeyKind::Pending { ns, pool, stamp, actor } => {
                self.pending.entry(actor.clone()).or_default().insert((
                    ns.clone(),
                    pool.clone(),
                    stamp.clone(),
                ));
                Value::Present
            }
            KeyKind::ActorNameMeta { ns, name } => {
                self.manifests.insert((ns.clone(), name.clone()), bytes.to_vec());
                Value::Manifest(bytes.to_vec())
            }
        }
    }

    fn remove_typed(&mut self, kind: &KeyKind) -> Option<Value> {
        match kind {
            KeyKind::RunnerInfo(r) => self.infos.remove(r).map(Value::Info),
            KeyKind::RunnerAlloc(r, a) => {
                let g = remove_nested(&mut self.allocs, r, a)?;
                remove_nested(&mut self.actor_allocs, a, r);
                Some(Value::Alloc(g))
            }
            KeyKind::RunnerCmd(r, a, g, i) => {
                let key = (a.clone(), *g, *i);
                let was = remove_from_set(&mut self.cmds, r, &key);
                remove_from_set(&mut self.actor_cmds, a, &(r.clone(), *g, *i));
                was.then_some(Value::Present)
            }
            KeyKind::Placement(a) => self.placements.remove(a).map(Value::Placement),
            KeyKind::ActorNs(a) => self.actor_ns.remove(a).then_some(Value::Present),
            KeyKind::ActorKv(a, k) => {
                let snapshot = self.kv.get_mut(a)?;
                let record = snapshot.remove(k)?;
                if snapshot.is_empty() {
                    self.kv.remove(a);
                }
                if let Some(u) = self.kv_usage.get_mut(a) {
                    *u = u.saturating_sub(usage_of(k, &record));
                    if *u == 0 {
                        self.kv_usage.remove(a);
                    }
                }
                Some(Value::Kv(record))
            }
            KeyKind::Pending { ns, pool, stamp, actor } => {
                let entry = (ns.clone(), pool.clone(), stamp.clone());
                remove_from_set(&mut self.pending, actor, &entry).then_some(Value::Present)
            }
            KeyKind::ActorNameMeta { ns, name } => {
                self.manifests.remove(&(ns.clone(), name.clone())).map(Value::Manifest)
            }
        }
    }

    /// `count(runner/R/alloc/*)`.
    pub(super) fn alloc_count(&self, r: &RunnerId) -> usize {
        self.allocs.get(r).map_or(0, |m| m.len())
    }

    /// `count(runner/R/cmd/*)`.
    pub(super) fn cmd_count(&self, r: &RunnerId) -> usize {
        self.cmds.get(r).map_or(0, |s| s.len())
    }

    /// The actor's keyspace now (`S` at the latest version), empty if never written.
    pub(super) fn keyspace(&self, actor: &str) -> Snapshot {
        self.kv.get(actor).cloned().unwrap_or_default()
    }

    /// Forget what is left of a destroyed actor's bookkeeping versions.
    pub(super) fn forget_actor(&mut self, actor: &str) {
        self.kv_modified.remove(actor);
    }
}

/// `len(k) + KEY_OVERHEAD + len(v)` (`spec/preload.md` §1.3).
fn usage_of(key: &[u8], record: &KvEntryRecord) -> u64 {
    (key.len() + KEY_OVERHEAD + record.value.len()) as u64
}

fn remove_nested<K1: Ord + Clone, K2: Ord, V>(
    map: &mut BTreeMap<K1, BTreeMap<K2, V>>,
    outer: &K1,
    inner: &K2,
) -> Option<V> {
    let m = map.get_mut(outer)?;
    let v = m.remove(inner);
    if m.is_empty() {
        map.remove(outer);
    }
    v
}

fn remove_from_set<K: Ord, T: Ord>(
    map: &mut BTreeMap<K, BTreeSet<T>>,
    outer: &K,
    item: &T,
) -> bool {
    let Some(s) = map.get_mut(outer) else { return false };
    let was = s.remove(item);
    if s.is_empty() {
        map.remove(outer);
    }
    was
}
