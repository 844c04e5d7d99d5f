//! Running KV requests against the store (`spec/preload.md` §1.2–§1.4): one attempt is one store
//! transaction that reads the fence, checks the limits and the quota, and then reads or mutates
//! the actor's keyspace and its usage record. It owns the entry and usage records of
//! `keys::actor_kv_*` and nothing else; it never writes fencing records, and it never retries on
//! its own except in [`execute_with_retries`].
//!
//! Check order (only the first failure is reported): fence, then [`super::validate`], then the
//! storage quota. A rejected request aborts its transaction: it commits nothing.

use std::collections::{BTreeMap, BTreeSet};

use rivet_envoy_protocol::{
    KvDeleteRangeRequest, KvGetResponse, KvListQuery, KvListRequest, KvListResponse, KvMetadata,
    KvPutRequest, KvRequestData, KvResponseData,
};
use vbare::Bytes;

use crate::constants::{KEY_OVERHEAD, LIST_DEFAULT_LIMIT};
use crate::keys::{actor_kv_key, actor_kv_prefix, actor_kv_usage};
use crate::records::{KvEntryRecord, RecordError};
use crate::store::{
    CommitError, CommitFault, KeyRange, Mutation, ReadMode, Store, StoreError, Txn, Version,
};

use super::fence::read_fence;
use super::{put_payload_size, validate, FenceObservation, KvConfig, KvContext, KvError};

/// What one KV request observed and did, for the response and the simulator's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvOutcome {
    /// The response to send: the success data, or the rendered error.
    pub response: KvResponseData,
    /// The typed error when the request was rejected (`response` then is its rendering).
    pub error: Option<KvError>,
    /// The store version the request read at (its fence and data reads).
    pub read_version: Version,
    /// The commit version of the mutation, when the request committed writes.
    pub commit_version: Option<Version>,
    /// Whether the request changed the store (a new commit version). A rejected request, a read
    /// and a mutation that changes nothing never do.
    pub mutated: bool,
    /// The mutations the commit applied (empty unless `mutated`), for the history.
    pub applied: Vec<Mutation>,
    /// What the fence read. `None` only for the `kv.internal` answer of
    /// [`execute_with_retries`] when no attempt got as far as the fence.
    pub fence: Option<FenceObservation>,
}

impl KvOutcome {
    fn rejected(
        rejection: Rejection,
        read_version: Version,
        fence: Option<FenceObservation>,
    ) -> Self {
        KvOutcome {
            response: rejection.response(),
            error: Some(rejection.error),
            read_version,
            commit_version: None,
            mutated: false,
            applied: Vec::new(),
            fence,
        }
    }
}

/// The retryable store outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AttemptFailure {
    /// The commit conflicted (a fence or keyspace read was overwritten); nothing was written.
    #[error("store.conflict")]
    Conflict,
    /// The commit outcome is unknown: the attempt's writes may or may not have applied.
    #[error("store.commit_unknown_result")]
    Unknown,
    /// The transaction outlived the store's duration limit; nothing was written.
    #[error("store.transaction_too_old: open for {age_ms} ms, limit {limit_ms} ms")]
    TooOld { age_ms: u64, limit_ms: u64 },
}

/// An attempt that ended in a retryable store outcome. Re-running the request is safe: put,
/// delete, delete-range and drop are idempotent, and the fence is read again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("kv attempt at read version {read_version} failed: {failure}")]
pub struct KvAttemptError {
    /// What the store answered.
    pub failure: AttemptFailure,
    /// The version the attempt read at.
    pub read_version: Version,
    /// What the attempt's fence read, if it got that far (boxed to keep the error small).
    pub fence: Option<Box<FenceObservation>>,
    /// Whether the attempt tried to commit writes.
    pub wrote: bool,
}

impl KvAttemptError {
    /// Whether the attempt's writes may have been applied (an unknown commit with writes).
    pub fn may_have_applied(&self) -> bool {
        self.wrote && self.failure == AttemptFailure::Unknown
    }

    fn new(
        failure: AttemptFailure,
        read_version: Version,
        fence: Option<FenceObservation>,
        wrote: bool,
    ) -> Self {
        KvAttemptError { failure, read_version, fence: fence.map(Box::new), wrote }
    }
}

impl From<StoreError> for AttemptFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooOld { age_ms, limit_ms } => AttemptFailure::TooOld { age_ms, limit_ms },
        }
    }
}

/// The result of [`execute_with_retries`]: the final outcome and every failed attempt before it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvRetriedOutcome {
    /// The answer: the first attempt that did not fail retryably, or `kv.internal` when the
    /// attempts ran out. After an unknown attempt, this describes the last attempt only: an
    /// earlier attempt may have applied the same writes (see
    /// [`KvAttemptError::may_have_applied`]).
    pub outcome: KvOutcome,
    /// The attempts that failed retryably, in order.
    pub failed_attempts: Vec<KvAttemptError>,
}

/// A rejection: the typed error and, for internal failures, the cause rendered as its detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rejection {
    pub(super) error: KvError,
    pub(super) detail: Option<String>,
}

impl Rejection {
    pub(super) fn new(error: KvError) -> Self {
        Rejection { error, detail: None }
    }

    pub(super) fn internal(detail: &str) -> Self {
        Rejection { error: KvError::Internal, detail: Some(detail.to_string()) }
    }

    fn response(&self) -> KvResponseData {
        match &self.detail {
            Some(d) => self.error.to_response_with_detail(d),
            None => self.error.to_response(),
        }
    }
}

/// Why an operation body stopped early.
enum Stop {
    Store(StoreError),
    Reject(Rejection),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Self {
        Stop::Reject(r)
    }
}

impl From<RecordError> for Stop {
    fn from(e: RecordError) -> Self {
        Stop::Reject(Rejection::internal(&e.to_string()))
    }
}

/// Run one attempt of `req` for `actor`, arriving on `ctx`, as one store transaction.
///
/// `now_ms` is the store clock; `wall_ms` becomes the `update_ts` of every entry a put writes;
/// `fault` is injected into the commit. Returns the outcome (a success or a typed rejection,
/// which committed nothing), or a retryable store failure.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    store: &mut Store,
    ctx: &KvContext,
    actor: &str,
    req: &KvRequestData,
    cfg: &KvConfig,
    now_ms: u64,
    wall_ms: i64,
    fault: Option<CommitFault>,
) -> Result<KvOutcome, KvAttemptError> {
    let mut txn = store.begin(now_ms);
    let read_version = txn.read_version();
    let (fence, verdict) = match read_fence(store, &mut txn, ctx, actor, now_ms) {
        Ok(read) => read,
        Err(e) => {
            store.abort(txn);
            return Err(KvAttemptError::new(e.into(), read_version, None, false));
        }
    };
    let body = verdict
        .and_then(|()| validate(req).map_err(Rejection::new))
        .map_err(Stop::Reject)
        .and_then(|()| run_body(store, &mut txn, actor, req, cfg, now_ms, wall_ms));
    let response = match body {
        Ok(response) => response,
        Err(Stop::Reject(rejection)) => {
            store.abort(txn);
            return Ok(KvOutcome::rejected(rejection, read_version, Some(fence)));
        }
        Err(Stop::Store(e)) => {
            let wrote = !txn.is_read_only();
            store.abort(txn);
            return Err(KvAttemptError::new(e.into(), read_version, Some(fence), wrote));
        }
    };
    let wrote = !txn.is_read_only();
    let fail = |failure, fence| Err(KvAttemptError::new(failure, read_version, Some(fence), wrote));
    match store.commit(txn, now_ms, fault) {
        Ok(committed) => Ok(KvOutcome {
            response,
            error: None,
            read_version,
            commit_version: wrote.then_some(committed.version),
            mutated: wrote,
            applied: if wrote { committed.applied } else { Vec::new() },
            fence: Some(fence),
        }),
        Err(CommitError::Conflict) => fail(AttemptFailure::Conflict, fence),
        Err(CommitError::Unknown) => fail(AttemptFailure::Unknown, fence),
        Err(CommitError::TooOld(e)) => fail(e.into(), fence),
        Err(e @ CommitError::TooLarge { .. }) => {
            Ok(KvOutcome::rejected(Rejection::internal(&e.to_string()), read_version, Some(fence)))
        }
    }
}

/// Run `req` until an attempt does not fail retryably, at most `max_attempts` times (at least
/// once), drawing each attempt's commit fault from `faults`. Every attempt re-reads the fence.
/// When the attempts run out, the answer is `kv.internal`, with the last attempt's read version
/// and fence.
#[allow(clippy::too_many_arguments)]
pub fn execute_with_retries(
    store: &mut Store,
    ctx: &KvContext,
    actor: &str,
    req: &KvRequestData,
    cfg: &KvConfig,
    now_ms: u64,
    wall_ms: i64,
    faults: &mut dyn FnMut() -> Option<CommitFault>,
    max_attempts: u32,
) -> KvRetriedOutcome {
    let attempts = max_attempts.max(1);
    let mut failed_attempts: Vec<KvAttemptError> = Vec::new();
    for _ in 0..attempts {
        match execute(store, ctx, actor, req, cfg, now_ms, wall_ms, faults()) {
            Ok(outcome) => return KvRetriedOutcome { outcome, failed_attempts },
            Err(e) => failed_attempts.push(e),
        }
    }
    let (read_version, fence, last) = match failed_attempts.last() {
        Some(e) => (e.read_version, e.fence.as_deref().cloned(), e.failure.to_string()),
        None => (store.version(), None, "no attempt ran".to_string()),
    };
    let detail = format!("{} attempts failed, the last with {last}", failed_attempts.len());
    let outcome = KvOutcome::rejected(Rejection::internal(&detail), read_version, fence);
    KvRetriedOutcome { outcome, failed_attempts }
}

/// The engine's deletion of a destroyed actor's keyspace and usage record, inside the caller's
/// transaction. Not fenced, and not a KV request: no limit applies.
pub fn delete_keyspace(txn: &mut Txn, actor: &str) {
    txn.clear_range(keyspace_range(actor));
    txn.clear(actor_kv_usage(actor));
}

/// The store range holding every entry of `actor`'s keyspace (and nothing else).
pub fn keyspace_range(actor: &str) -> KeyRange {
    KeyRange::prefix(&actor_kv_prefix(actor))
}

/// The usage of one stored entry (§1.3): `len(key) + KEY_OVERHEAD + len(value)`.
pub fn usage_term(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + KEY_OVERHEAD + value.len()) as u64
}

/// Encode a usage record: `u64`, 8 bytes little-endian.
pub fn encode_usage(usage: u64) -> Vec<u8> {
    usage.to_le_bytes().to_vec()
}

/// Decode a usage record written by [`encode_usage`].
pub fn decode_usage(bytes: &[u8]) -> Result<u64, RecordError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| RecordError {
        what: "kv usage",
        detail: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_le_bytes(raw))
}

fn run_body(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    req: &KvRequestData,
    cfg: &KvConfig,
    now_ms: u64,
    wall_ms: i64,
) -> Result<KvResponseData, Stop> {
    match req {
        KvRequestData::KvGetRequest(r) => get(store, txn, actor, &r.keys, now_ms),
        KvRequestData::KvListRequest(r) => list(store, txn, actor, r, now_ms),
        KvRequestData::KvPutRequest(r) => put(store, txn, actor, r, cfg, now_ms, wall_ms),
        KvRequestData::KvDeleteRequest(r) => delete(store, txn, actor, &r.keys, now_ms),
        KvRequestData::KvDeleteRangeRequest(r) => delete_range(store, txn, actor, r, now_ms),
        KvRequestData::KvDropRequest => drop_all(store, txn, actor, now_ms),
    }
}

fn metadata(entry: &KvEntryRecord) -> KvMetadata {
    KvMetadata { version: Bytes::copy_from_slice(&entry.version), update_ts: entry.update_ts }
}

/// Distinct present keys, in order of first occurrence.
fn get(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    keys: &[Bytes],
    now_ms: u64,
) -> Result<KvResponseData, Stop> {
    let mut out = KvGetResponse { keys: Vec::new(), values: Vec::new(), metadata: Vec::new() };
    let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
    for key in keys {
        if !seen.insert(key.as_ref()) {
            continue;
        }
        let Some(raw) = store.get(txn, &actor_kv_key(actor, key), ReadMode::Snapshot, now_ms)?
        else {
            continue;
        };
        let entry = KvEntryRecord::decode(&raw)?;
        out.keys.push(key.clone());
        out.metadata.push(metadata(&entry));
        out.values.push(Bytes::from(entry.value));
    }
    Ok(KvResponseData::KvGetResponse(out))
}

/// The store range a list query selects, `None` when it selects nothing.
fn list_range(prefix: &[u8], query: &KvListQuery) -> Option<KeyRange> {
    match query {
        KvListQuery::KvListAllQuery => Some(KeyRange::prefix(prefix)),
        KvListQuery::KvListRangeQuery(q) => {
            let (start, end) = (q.start.as_ref(), q.end.as_ref());
            if start > end || (q.exclusive && start == end) {
                return None;
            }
            let mut store_end = [prefix, end].concat();
            if !q.exclusive {
                // The first key after `end` is `end ++ [0x00]`.
                store_end.push(0);
            }
            Some(KeyRange::new([prefix, start].concat(), store_end))
        }
        KvListQuery::KvListPrefixQuery(q) => {
            Some(KeyRange::prefix(&[prefix, q.key.as_ref()].concat()))
        }
    }
}

fn list(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    req: &KvListRequest,
    now_ms: u64,
) -> Result<KvResponseData, Stop> {
    let prefix = actor_kv_prefix(actor);
    let limit = usize::try_from(req.limit.unwrap_or(LIST_DEFAULT_LIMIT)).unwrap_or(usize::MAX);
    let reverse = req.reverse == Some(true);
    let rows = match list_range(&prefix, &req.query) {
        Some(range) => {
            store.get_range(txn, &range, Some(limit), reverse, ReadMode::Snapshot, now_ms)?
        }
        None => Vec::new(),
    };
    let mut out = KvListResponse {
        keys: Vec::with_capacity(rows.len()),
        values: Vec::with_capacity(rows.len()),
        metadata: Vec::with_capacity(rows.len()),
    };
    for (store_key, raw) in rows {
        let key = store_key
            .strip_prefix(prefix.as_slice())
            .ok_or_else(|| Rejection::internal("a list read a key outside the actor's keyspace"))?;
        let entry = KvEntryRecord::decode(&raw)?;
        out.keys.push(Bytes::copy_from_slice(key));
        out.metadata.push(metadata(&entry));
        out.values.push(Bytes::from(entry.value));
    }
    Ok(KvResponseData::KvListResponse(out))
}

fn read_usage(store: &mut Store, txn: &mut Txn, actor: &str, now_ms: u64) -> Result<u64, Stop> {
    match store.get(txn, &actor_kv_usage(actor), ReadMode::Serializable, now_ms)? {
        None => Ok(0),
        Some(raw) => Ok(decode_usage(&raw)?),
    }
}

fn usage_underflow(usage: u64, freed: u64) -> Rejection {
    Rejection::internal(&format!(
        "kv usage record ({usage} bytes) is smaller than the entries it counts ({freed} bytes)"
    ))
}

/// Last occurrence wins; fresh metadata on every written key; quota on the usage afterwards.
fn put(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    req: &KvPutRequest,
    cfg: &KvConfig,
    now_ms: u64,
    wall_ms: i64,
) -> Result<KvResponseData, Stop> {
    let usage = read_usage(store, txn, actor, now_ms)?;
    let mut last: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    for (key, value) in req.keys.iter().zip(&req.values) {
        last.insert(key.as_ref(), value.as_ref());
    }
    let mut replaced = 0u64;
    let mut added = 0u64;
    for (key, value) in &last {
        if let Some(raw) =
            store.get(txn, &actor_kv_key(actor, key), ReadMode::Serializable, now_ms)?
        {
            replaced += usage_term(key, &KvEntryRecord::decode(&raw)?.value);
        }
        added += usage_term(key, value);
    }
    let after = usage.checked_sub(replaced).ok_or_else(|| usage_underflow(usage, replaced))?;
    let after = after.saturating_add(added);
    if after > cfg.max_storage_size {
        let payload = put_payload_size(
            req.keys.iter().map(|k| k.as_ref()),
            req.values.iter().map(|v| v.as_ref()),
        );
        let remaining = cfg.max_storage_size.saturating_sub(usage);
        return Err(Rejection::new(KvError::StorageQuotaExceeded { remaining, payload }).into());
    }
    for (key, value) in &last {
        let record = KvEntryRecord {
            value: value.to_vec(),
            version: cfg.metadata_version.clone(),
            update_ts: wall_ms,
        };
        txn.set(actor_kv_key(actor, key), record.encode());
    }
    if !last.is_empty() {
        txn.set(actor_kv_usage(actor), encode_usage(after));
    }
    Ok(KvResponseData::KvPutResponse)
}

/// Remove each present key; absent keys are ignored.
fn delete(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    keys: &[Bytes],
    now_ms: u64,
) -> Result<KvResponseData, Stop> {
    let usage = read_usage(store, txn, actor, now_ms)?;
    let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
    let mut freed = 0u64;
    let mut removed_any = false;
    for key in keys {
        if !seen.insert(key.as_ref()) {
            continue;
        }
        let store_key = actor_kv_key(actor, key);
        if let Some(raw) = store.get(txn, &store_key, ReadMode::Serializable, now_ms)? {
            freed += usage_term(key, &KvEntryRecord::decode(&raw)?.value);
            txn.clear(store_key);
            removed_any = true;
        }
    }
    if removed_any {
        let after = usage.checked_sub(freed).ok_or_else(|| usage_underflow(usage, freed))?;
        txn.set(actor_kv_usage(actor), encode_usage(after));
    }
    Ok(KvResponseData::KvDeleteResponse)
}

/// Remove every key `K` with `start <= K < end`; nothing when `start >= end`.
fn delete_range(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    req: &KvDeleteRangeRequest,
    now_ms: u64,
) -> Result<KvResponseData, Stop> {
    let (start, end) = (req.start.as_ref(), req.end.as_ref());
    if start >= end {
        return Ok(KvResponseData::KvDeleteResponse);
    }
    let prefix = actor_kv_prefix(actor);
    let range =
        KeyRange::new([prefix.as_slice(), start].concat(), [prefix.as_slice(), end].concat());
    let rows = store.get_range(txn, &range, None, false, ReadMode::Serializable, now_ms)?;
    if rows.is_empty() {
        return Ok(KvResponseData::KvDeleteResponse);
    }
    let usage = read_usage(store, txn, actor, now_ms)?;
    let mut freed = 0u64;
    for (store_key, raw) in &rows {
        let key = store_key.strip_prefix(prefix.as_slice()).ok_or_else(|| {
            Rejection::internal("a range read a key outside the actor's keyspace")
        })?;
        freed += usage_term(key, &KvEntryRecord::decode(raw)?.value);
    }
    let after = usage.checked_sub(freed).ok_or_else(|| usage_underflow(usage, freed))?;
    txn.clear_range(range);
    txn.set(actor_kv_usage(actor), encode_usage(after));
    Ok(KvResponseData::KvDeleteResponse)
}

/// Remove every key of the actor (and its usage record).
fn drop_all(
    store: &mut Store,
    txn: &mut Txn,
    actor: &str,
    now_ms: u64,
) -> Result<KvResponseData, Stop> {
    let usage = store.get(txn, &actor_kv_usage(actor), ReadMode::Serializable, now_ms)?;
    let first = store.get_range(
        txn,
        &keyspace_range(actor),
        Some(1),
        false,
        ReadMode::Serializable,
        now_ms,
    )?;
    let usage_is_zero = match usage {
        None => true,
        Some(raw) => decode_usage(&raw).is_ok_and(|u| u == 0),
    };
    if first.is_empty() && usage_is_zero {
        return Ok(KvResponseData::KvDropResponse);
    }
    delete_keyspace(txn, actor);
    Ok(KvResponseData::KvDropResponse)
}
