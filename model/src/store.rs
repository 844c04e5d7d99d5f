//! The transactional store: an ordered byte-key store with commit versions, the model's stand-in
//! for the FoundationDB-like database of `spec/protocol.md` §1.6.
//!
//! It owns committed data (a multi-version history per key), the open transactions' read
//! versions, and conflict detection. It does not own time or randomness: every call that needs
//! the time takes `now_ms` (the caller's monotonic clock), and the two injectable commit outcomes
//! (forced conflict, commit outcome unknown) are chosen by the caller through [`CommitFault`].
//!
//! Semantics:
//! - A [`Txn`] reads at one read version (the latest committed version when it began), overlaid
//!   with its own buffered writes (read-your-writes). Reads are [`ReadMode::Snapshot`] (no
//!   conflict) or [`ReadMode::Serializable`] (adds a read-conflict range).
//! - Commit aborts with [`CommitError::Conflict`] when a key in a serializable read range was
//!   written by a transaction that committed after the read version. Atomic adds do not conflict.
//! - A transaction older than `STORE_TXN_MAX_MS` fails with [`StoreError::TooOld`] (retryable);
//!   larger than `STORE_TXN_MAX_BYTES` with [`CommitError::TooLarge`].
//! - `STORE_VALUE_MAX_BYTES` is not enforced: the specs say larger data is chunked by the layers
//!   above, and `spec/preload.md` §1.1 says physical chunking is not modelled, so a value is
//!   stored whole and the store behaves as if the chunking were transparent.
//! - Versionstamps: a mutation may embed the commit's versionstamp (8-byte big-endian commit
//!   version, then a 2-byte big-endian order within the transaction) into a key or a value.
//! - Memory is bounded: history older than the oldest open transaction's read version is pruned,
//!   keeping only each key's newest visible version; deleted keys disappear once no open
//!   transaction can see them. Transactions past `STORE_TXN_MAX_MS` stop pinning history.
//!
//! Every committed mutation is also reported in [`Committed`], so the simulator can record the
//! commit in its history without looking inside the store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use crate::constants::{STORE_TXN_MAX_BYTES, STORE_TXN_MAX_MS};

/// A commit version. Strictly increasing; version 0 is the empty store.
pub type Version = u64;

/// Length of a versionstamp: 8-byte commit version plus 2-byte order within the transaction.
pub const VERSIONSTAMP_LEN: usize = 10;

/// How a read participates in conflict detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Records no conflict.
    Snapshot,
    /// Adds a read-conflict range: commit fails if a later commit wrote inside it.
    Serializable,
}

/// A read failure. Every variant is retryable with a fresh transaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The transaction is older than the store's duration limit.
    #[error("store.transaction_too_old: open for {age_ms} ms, limit {limit_ms} ms")]
    TooOld { age_ms: u64, limit_ms: u64 },
}

/// Why a commit did not (certainly) apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Nothing was written; a serializable read was overwritten. Retry.
    #[error("store.conflict: a serializable read was overwritten by a later commit")]
    Conflict,
    /// The commit may or may not have applied; the caller cannot tell.
    #[error("store.commit_unknown_result")]
    Unknown,
    /// The transaction outlived the duration limit; nothing was written. Retry.
    #[error(transparent)]
    TooOld(#[from] StoreError),
    /// The transaction's writes exceed the size limit; nothing was written. Not retryable as is.
    #[error("store.transaction_too_large: {bytes} bytes, limit {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
}

impl CommitError {
    /// Whether running the same transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, CommitError::TooLarge { .. })
    }
}

/// A fault the caller injects into one commit (the simulator draws it from its fault stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitFault {
    /// Fail with [`CommitError::Conflict`] and write nothing.
    Conflict,
    /// Return [`CommitError::Unknown`]; the writes apply iff `applied`.
    Unknown { applied: bool },
}

/// The store's limits; `Default` gives the spec's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// `STORE_TXN_MAX_MS`.
    pub txn_max_ms: u64,
    /// `STORE_TXN_MAX_BYTES`.
    pub txn_max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits { txn_max_ms: STORE_TXN_MAX_MS, txn_max_bytes: STORE_TXN_MAX_BYTES }
    }
}

/// A half-open key range `[start, end)`; `end = None` means "to the end of the keyspace".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// `[start, end)`.
    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange { start: start.into(), end: Some(end.into()) }
    }

    /// Every key starting with `prefix` (true byte-prefix semantics, `0xFF` included).
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange { start: prefix.to_vec(), end: strinc(prefix) }
    }

    /// Exactly one key.
    pub fn single(key: &[u8]) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        KeyRange { start: key.to_vec(), end: Some(end) }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    fn is_empty(&self) -> bool {
        self.end.as_deref().is_some_and(|e| e <= self.start.as_slice())
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        let end = match &self.end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        (Bound::Included(self.start.as_slice()), end)
    }
}

/// The first key after every key that starts with `prefix`: drop trailing `0xFF` bytes and
/// increment the last remaining one. `None` when `prefix` is empty or all `0xFF`.
pub fn strinc(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|b| *b != 0xFF)?;
    let mut out = prefix[..=keep].to_vec();
    out[keep] += 1;
    Some(out)
}

/// Identifies an open transaction inside the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(u64);

/// One buffered mutation, in the order the transaction made it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mutation {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Clear {
        key: Vec<u8>,
    },
    ClearRange {
        range: KeyRange,
    },
    /// Little-endian i64 add; a missing key counts as 0. Never conflicts.
    AtomicAdd {
        key: Vec<u8>,
        delta: i64,
    },
    /// `key = prefix ++ versionstamp ++ suffix`.
    SetVersionstampedKey {
        prefix: Vec<u8>,
        suffix: Vec<u8>,
        value: Vec<u8>,
    },
    /// The 8-byte big-endian commit version is written over `value[offset..offset + 8]`.
    SetVersionstampedValue {
        key: Vec<u8>,
        value: Vec<u8>,
        offset: usize,
    },
}

impl Mutation {
    fn size(&self) -> usize {
        match self {
            Mutation::Set { key, value } => key.len() + value.len(),
            Mutation::Clear { key } => key.len(),
            Mutation::ClearRange { range } => {
                range.start.len() + range.end.as_ref().map_or(0, Vec::len)
            }
            Mutation::AtomicAdd { key, .. } => key.len() + 8,
            Mutation::SetVersionstampedKey { prefix, suffix, value } => {
                prefix.len() + VERSIONSTAMP_LEN + suffix.len() + value.len()
            }
            Mutation::SetVersionstampedValue { key, value, .. } => key.len() + value.len(),
        }
    }
}

/// A transaction: a read version plus buffered reads' conflict ranges and writes. It is a plain
/// value owned by the caller; every operation goes through the [`Store`]. Finish it with
/// [`Store::commit`] or [`Store::abort`] (a forgotten one stops pinning history after
/// `STORE_TXN_MAX_MS`).
#[derive(Debug)]
pub struct Txn {
    id: TxnId,
    read_version: Version,
    started_ms: u64,
    read_conflicts: Vec<KeyRange>,
    mutations: Vec<Mutation>,
    /// Read-your-writes overlay for plain keys: `Some(v)` set, `None` cleared.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges cleared by this transaction (keys set afterwards live in `overlay`).
    cleared: Vec<KeyRange>,
    bytes: usize,
    stamps: u16,
}

impl Txn {
    /// The version this transaction reads at.
    pub fn read_version(&self) -> Version {
        self.read_version
    }

    /// Whether the transaction buffered no mutation.
    pub fn is_read_only(&self) -> bool {
        self.mutations.is_empty()
    }

    /// The buffered mutations, in order.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// Buffer `key := value`.
    pub fn set(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.overlay.insert(key.clone(), Some(value.clone()));
        self.push(Mutation::Set { key, value });
    }

    /// Buffer the removal of `key`.
    pub fn clear(&mut self, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.overlay.insert(key.clone(), None);
        self.push(Mutation::Clear { key });
    }

    /// Buffer the removal of every key in `range`.
    pub fn clear_range(&mut self, range: KeyRange) {
        if range.is_empty() {
            return;
        }
        let inside: Vec<Vec<u8>> =
            self.overlay.range::<[u8], _>(range.bounds()).map(|(k, _)| k.clone()).collect();
        for k in inside {
            self.overlay.remove(&k);
        }
        self.cleared.push(range.clone());
        self.push(Mutation::ClearRange { range });
    }

    /// Buffer a little-endian i64 add to `key`. It records no conflict, and reads in this
    /// transaction do not see it.
    pub fn atomic_add(&mut self, key: impl Into<Vec<u8>>, delta: i64) {
        self.push(Mutation::AtomicAdd { key: key.into(), delta });
    }

    /// Buffer a write of `prefix ++ versionstamp ++ suffix`. Reads in this transaction do not see
    /// it. Returns the stamp's order within this transaction (the last two stamp bytes).
    pub fn set_versionstamped_key(
        &mut self,
        prefix: impl Into<Vec<u8>>,
        suffix: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> u16 {
        let order = self.stamps;
        self.stamps += 1;
        self.push(Mutation::SetVersionstampedKey {
            prefix: prefix.into(),
            suffix: suffix.into(),
            value: value.into(),
        });
        order
    }

    /// Buffer `key := value` with the 8-byte big-endian commit version written at `offset`.
    /// Reads in this transaction do not see it. Panics never: an offset past the value's end
    /// extends the value with zeroes first.
    pub fn set_versionstamped_value(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        offset: usize,
    ) {
        self.push(Mutation::SetVersionstampedValue {
            key: key.into(),
            value: value.into(),
            offset,
        });
    }

    /// Add a read-conflict range without reading (like FDB's `add_read_conflict_range`).
    pub fn add_read_conflict(&mut self, range: KeyRange) {
        self.read_conflicts.push(range);
    }

    fn push(&mut self, m: Mutation) {
        self.bytes += m.size();
        self.mutations.push(m);
    }

    fn own_view(&self, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Some(v.as_ref());
        }
        if self.cleared.iter().any(|r| r.contains(key)) {
            return Some(None);
        }
        None
    }
}

/// What a successful commit did, for the simulator's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The commit version.
    pub version: Version,
    /// The mutations as applied (versionstamps resolved), in transaction order.
    pub applied: Vec<Mutation>,
}

impl Committed {
    /// The versionstamp of this commit with the given in-transaction order.
    pub fn versionstamp(&self, order: u16) -> [u8; VERSIONSTAMP_LEN] {
        versionstamp(self.version, order)
    }
}

/// The 10-byte versionstamp of `(version, order)`.
pub fn versionstamp(version: Version, order: u16) -> [u8; VERSIONSTAMP_LEN] {
    let mut out = [0u8; VERSIONSTAMP_LEN];
    out[..8].copy_from_slice(&version.to_be_bytes());
    out[8..].copy_from_slice(&order.to_be_bytes());
    out
}

/// A key-value pair as range reads return it.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A key's committed history: `(version, value)` in ascending version order; `None` = deleted.
type History = Vec<(Version, Option<Vec<u8>>)>;

/// Counters the benchmarks and reports read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub commits: u64,
    pub conflicts: u64,
    pub unknown: u64,
    pub too_old: u64,
    pub pruned_versions: u64,
}

/// The store. See the module comment.
#[derive(Debug)]
pub struct Store {
    data: BTreeMap<Vec<u8>, History>,
    version: Version,
    limits: StoreLimits,
    /// Open transactions: id -> (read version, start time).
    open: BTreeMap<TxnId, (Version, u64)>,
    next_txn: u64,
    /// Keys whose history holds more than the newest visible value (pruning candidates), in
    /// the order they are visited, with a membership set so a key is queued once.
    prune_queue: VecDeque<Vec<u8>>,
    prune_queued: BTreeSet<Vec<u8>>,
    written_since_prune: usize,
    /// What `Unknown { applied: true }` commits wrote, in commit order, until taken.
    unknown_applied: Vec<Committed>,
    stats: StoreStats,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StoreLimits::default())
    }
}

impl Store {
    /// An empty store at version 0.
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            data: BTreeMap::new(),
            version: 0,
            limits,
            open: BTreeMap::new(),
            next_txn: 0,
            prune_queue: VecDeque::new(),
            prune_queued: BTreeSet::new(),
            written_since_prune: 0,
            unknown_applied: Vec::new(),
            stats: StoreStats::default(),
        }
    }

    /// The latest committed version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Counters since creation.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Number of open transactions (expired ones included until they are noticed).
    pub fn open_transactions(&self) -> usize {
        self.open.len()
    }

    /// Number of `(key, version)` pairs held, a measure of memory.
    pub fn held_versions(&self) -> usize {
        self.data.values().map(Vec::len).sum()
    }

    /// Begin a transaction reading at the latest committed version.
    pub fn begin(&mut self, now_ms: u64) -> Txn {
        self.expire(now_ms);
        let id = TxnId(self.next_txn);
        self.next_txn += 1;
        self.open.insert(id, (self.version, now_ms));
        Txn {
            id,
            read_version: self.version,
            started_ms: now_ms,
            read_conflicts: Vec::new(),
            mutations: Vec::new(),
            overlay: BTreeMap::new(),
            cleared: Vec::new(),
            bytes: 0,
            stamps: 0,
        }
    }

    /// What the commits that returned [`CommitError::Unknown`] but did apply wrote, in commit
    /// order, since the last call. The caller cannot know this; only the history recorder asks,
    /// so that checkers see every write.
    pub fn take_unknown_applied(&mut self) -> Vec<Committed> {
        std::mem::take(&mut self.unknown_applied)
    }

    /// Abandon a transaction without writing anything.
    pub fn abort(&mut self, txn: Txn) {
        self.open.remove(&txn.id);
        self.prune_some();
    }

    /// Read one key.
    pub fn get(
        &mut self,
        txn: &mut Txn,
        key: &[u8],
        mode: ReadMode,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_age(txn, now_ms)?;
        if mode == ReadMode::Serializable {
            txn.read_conflicts.push(KeyRange::single(key));
        }
        if let Some(own) = txn.own_view(key) {
            return Ok(own.cloned());
        }
        Ok(self.committed_at(key, txn.read_version).cloned())
    }

    /// Read the keys of `range` in ascending (or, with `reverse`, descending) order, at most
    /// `limit` of them (`None`: all). A limited serializable read records only the part of the
    /// range it actually covered.
    pub fn get_range(
        &mut self,
        txn: &mut Txn,
        range: &KeyRange,
        limit: Option<usize>,
        reverse: bool,
        mode: ReadMode,
        now_ms: u64,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.check_age(txn, now_ms)?;
        let limit = limit.unwrap_or(usize::MAX);
        let mut out: Vec<KeyValue> = Vec::new();
        if range.is_empty() || limit == 0 {
            // A zero-limit read observed nothing, so it records no conflict range.
            return Ok(out);
        }
        // Merge committed keys with the transaction's own overlay, in the requested direction.
        let committed = self.data.range::<[u8], _>(range.bounds());
        let own = txn.overlay.range::<[u8], _>(range.bounds());
        let mut committed: Box<dyn Iterator<Item = (&Vec<u8>, &History)>> =
            if reverse { Box::new(committed.rev()) } else { Box::new(committed) };
        type OwnWrites<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;
        let mut own: OwnWrites<'_> = if reverse { Box::new(own.rev()) } else { Box::new(own) };
        let mut next_c = committed.next();
        let mut next_o = own.next();
        let rv = txn.read_version;
        loop {
            if out.len() >= limit {
                break;
            }
            let take_own = match (next_c, next_o) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((ck, _)), Some((ok, _))) => {
                    if ck == ok {
                        next_c = committed.next();
                        true
                    } else if reverse {
                        ok > ck
                    } else {
                        ok < ck
                    }
                }
            };
            if take_own {
                let (k, v) = next_o.take().expect("checked above");
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
                next_o = own.next();
            } else {
                let (k, hist) = next_c.take().expect("checked above");
                let cleared = txn.cleared.iter().any(|r| r.contains(k));
                if !cleared {
                    if let Some(v) = visible(hist, rv) {
                        out.push((k.clone(), v.clone()));
                    }
                }
                next_c = committed.next();
            }
        }
        if mode == ReadMode::Serializable {
            let covered = if out.len() >= limit {
                let last = &out[out.len() - 1].0;
                if reverse {
                    KeyRange { start: last.clone(), end: range.end.clone() }
                } else {
                    let mut end = last.clone();
                    end.push(0);
                    KeyRange { start: range.start.clone(), end: Some(end) }
                }
            } else {
                range.clone()
            };
            txn.read_conflicts.push(covered);
        }
        Ok(out)
    }

    /// Commit `txn`, with an optional injected fault. On success returns what was applied.
    pub fn commit(
        &mut self,
        txn: Txn,
        now_ms: u64,
        fault: Option<CommitFault>,
    ) -> Result<Committed, CommitError> {
        self.open.remove(&txn.id);
        let result = self.try_commit(txn, now_ms, fault);
        match &result {
            Ok(_) => self.stats.commits += 1,
            Err(CommitError::Conflict) => self.stats.conflicts += 1,
            Err(CommitError::Unknown) => self.stats.unknown += 1,
            Err(CommitError::TooOld(_)) => self.stats.too_old += 1,
            Err(CommitError::TooLarge { .. }) => {}
        }
        self.prune_some();
        result
    }

    fn try_commit(
        &mut self,
        txn: Txn,
        now_ms: u64,
        fault: Option<CommitFault>,
    ) -> Result<Committed, CommitError> {
        self.check_age(&txn, now_ms)?;
        if txn.bytes > self.limits.txn_max_bytes {
            return Err(CommitError::TooLarge {
                bytes: txn.bytes,
                limit: self.limits.txn_max_bytes,
            });
        }
        if fault == Some(CommitFault::Conflict) {
            return Err(CommitError::Conflict);
        }
        if self.conflicts(&txn) {
            return Err(CommitError::Conflict);
        }
        if fault == Some(CommitFault::Unknown { applied: false }) {
            return Err(CommitError::Unknown);
        }
        if txn.mutations.is_empty() {
            // A read-only transaction commits at its read version and consumes no version.
            if fault.is_some() {
                return Err(CommitError::Unknown);
            }
            return Ok(Committed { version: txn.read_version, applied: Vec::new() });
        }
        self.version += 1;
        let version = self.version;
        let mut applied = Vec::with_capacity(txn.mutations.len());
        let mut order = 0u16;
        for m in txn.mutations {
            let m = match m {
                Mutation::SetVersionstampedKey { prefix, suffix, value } => {
                    let mut key = prefix;
                    key.extend_from_slice(&versionstamp(version, order));
                    key.extend_from_slice(&suffix);
                    order += 1;
                    Mutation::Set { key, value }
                }
                Mutation::SetVersionstampedValue { key, mut value, offset } => {
                    if value.len() < offset + 8 {
                        value.resize(offset + 8, 0);
                    }
                    value[offset..offset + 8].copy_from_slice(&version.to_be_bytes());
                    Mutation::Set { key, value }
                }
                Mutation::AtomicAdd { key, delta } => {
                    let current = self.committed_at(&key, version).map_or(0, |v| decode_i64(v));
                    let value = current.wrapping_add(delta).to_le_bytes().to_vec();
                    // Recorded as the resulting set, which is what a history needs.
                    self.write(key.clone(), Some(value.clone()), version);
                    applied.push(Mutation::Set { key, value });
                    continue;
                }
                other => other,
            };
            match &m {
                Mutation::Set { key, value } => {
                    self.write(key.clone(), Some(value.clone()), version)
                }
                Mutation::Clear { key } => self.write(key.clone(), None, version),
                Mutation::ClearRange { range } => {
                    let keys: Vec<Vec<u8>> = self
                        .data
                        .range::<[u8], _>(range.bounds())
                        .filter(|(_, h)| h.last().is_some_and(|(_, v)| v.is_some()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        self.write(k, None, version);
                    }
                }
                _ => {}
            }
            applied.push(m);
        }
        let committed = Committed { version, applied };
        if fault == Some(CommitFault::Unknown { applied: true }) {
            self.unknown_applied.push(committed);
            return Err(CommitError::Unknown);
        }
        Ok(committed)
    }

    /// Whether a serializable read of `txn` was overwritten after its read version.
    fn conflicts(&self, txn: &Txn) -> bool {
        txn.read_conflicts.iter().any(|r| {
            self.data
                .range::<[u8], _>(r.bounds())
                .any(|(_, h)| h.last().is_some_and(|(v, _)| *v > txn.read_version))
        })
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, version: Version) {
        let hist = self.data.entry(key.clone()).or_default();
        if value.is_none() && hist.last().is_none_or(|(_, v)| v.is_none()) {
            // Deleting an absent key changes nothing a reader can see.
            if hist.is_empty() {
                self.data.remove(&key);
            }
            return;
        }
        hist.push((version, value));
        self.written_since_prune += 1;
        if hist.len() > 1 || hist.last().is_some_and(|(_, v)| v.is_none()) {
            self.queue_prune(key);
        }
    }

    fn queue_prune(&mut self, key: Vec<u8>) {
        if self.prune_queued.insert(key.clone()) {
            self.prune_queue.push_back(key);
        }
    }

    fn committed_at(&self, key: &[u8], version: Version) -> Option<&Vec<u8>> {
        self.data.get(key).and_then(|h| visible(h, version))
    }

    fn check_age(&mut self, txn: &Txn, now_ms: u64) -> Result<(), StoreError> {
        let age_ms = now_ms.saturating_sub(txn.started_ms);
        if age_ms > self.limits.txn_max_ms {
            self.open.remove(&txn.id);
            return Err(StoreError::TooOld { age_ms, limit_ms: self.limits.txn_max_ms });
        }
        Ok(())
    }

    /// Forget transactions past the duration limit: they can no longer read or commit.
    fn expire(&mut self, now_ms: u64) {
        let limit = self.limits.txn_max_ms;
        self.open.retain(|_, (_, started)| now_ms.saturating_sub(*started) <= limit);
    }

    /// The oldest version some open transaction may still read.
    fn oldest_needed(&self) -> Version {
        self.open.values().map(|(v, _)| *v).min().unwrap_or(self.version)
    }

    /// Prune the history of a bounded number of candidate keys: a fixed amount per call plus
    /// one per key written since the last call, so pruning keeps pace with writes.
    fn prune_some(&mut self) {
        const PRUNE_PER_CALL: usize = 64;
        let horizon = self.oldest_needed();
        let budget = (PRUNE_PER_CALL + self.written_since_prune).min(self.prune_queue.len());
        self.written_since_prune = 0;
        for _ in 0..budget {
            let Some(key) = self.prune_queue.pop_front() else { break };
            self.prune_queued.remove(&key);
            let Some(hist) = self.data.get_mut(&key) else { continue };
            // Keep the newest entry at or below the horizon and everything newer.
            let keep_from = hist.iter().rposition(|(v, _)| *v <= horizon).unwrap_or(0);
            if keep_from > 0 {
                self.stats.pruned_versions += keep_from as u64;
                hist.drain(..keep_from);
            }
            let only_tombstone = hist.len() == 1 && hist[0].1.is_none() && hist[0].0 <= horizon;
            if only_tombstone {
                self.data.remove(&key);
                self.stats.pruned_versions += 1;
            } else if hist.len() > 1 || hist.last().is_some_and(|(_, v)| v.is_none()) {
                // Still holds history some open transaction needs; visit it again later.
                self.queue_prune(key);
            }
        }
    }
}

fn visible(hist: &History, version: Version) -> Option<&Vec<u8>> {
    hist.iter().rev().find(|(v, _)| *v <= version).and_then(|(_, val)| val.as_ref())
}

/// Decode a little-endian i64 as written by [`Txn::atomic_add`]; shorter values are
/// zero-extended, longer ones truncated (the FDB rule).
pub fn decode_i64(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    i64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests;
