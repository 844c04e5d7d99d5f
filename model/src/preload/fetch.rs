//! Fetching a bundle for one start-command delivery (`spec/preload.md` §4.1 and §2): one
//! read-only snapshot transaction at `V`, retried from scratch on retryable read failures.
//!
//! Owns [`fetch`], [`fetch_with`], [`FetchRequest`], [`FetchOutcome`] and the store-backed
//! [`KeyspaceRead`] implementation. It reads the store only through snapshot reads (no conflict
//! ranges, no writes, no locks) and never commits. It does not decide when a bundle is fetched
//! (the command log does, at every delivery) and it does not record history (the simulator
//! records the returned [`FetchOutcome`]).
//!
//! Choices where the spec is silent:
//! - Reads happen in the order of §4.1: the emptiness probe (one range read of at most one key),
//!   then the manifest, then the get-keys one by one, then each prefix walk in pages. Every one of
//!   those store reads first asks the caller's fault hook. Pages start at
//!   [`FIRST_PAGE_KEYS`] keys and double up to [`MAX_PAGE_KEYS`], so a walk that overflows early
//!   reads little, and a long walk takes few reads.
//! - The outcome's `manifest` is the normalized manifest `batch_preload` used; it is `None` when
//!   no manifest was needed (`T == 0`, empty keyspace) or none was usable (absent, invalid).
//! - A stored entry that does not decode is an internal error: the fetch fails at once (not
//!   retried, since re-reading the same bytes cannot help) and the command goes out with `None`.
//! - `read_version` is the version the bundle is attributed to: `Some(V)` of the attempt that
//!   produced the outcome, `None` when `T == 0` (nothing read) or when the fetch failed.

use std::ops::ControlFlow;

use crate::canary::Canaries;
use crate::constants::PRELOAD_MAX_ATTEMPTS;
use crate::keys::{actor_kv_key, actor_kv_prefix, actor_name_metadata};
use crate::protocol::{preloaded_kv, PreloadedKv};
use crate::records::{KvEntryRecord, RecordError};
use crate::store::{KeyRange, ReadMode, Store, StoreError, Txn, Version};

use super::batch::batch_preload_from;
use super::keyspace::KeyspaceRead;
use super::manifest::{parse_manifest_bytes, Manifest, ManifestError};

/// Keys read by the first page of a prefix walk.
pub const FIRST_PAGE_KEYS: usize = 4;
/// Largest page of a prefix walk.
pub const MAX_PAGE_KEYS: usize = 1_024;

/// What one fetch is for: the actor, where its manifest lives, the budget and the canaries.
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest<'a> {
    /// The actor whose keyspace is read.
    pub actor: &'a str,
    /// The actor's namespace (where its name's metadata is stored).
    pub namespace: &'a str,
    /// The actor's name (whose metadata carries the manifest).
    pub actor_name: &'a str,
    /// The global budget `T` (`PRELOAD_MAX_TOTAL_BYTES` by default); 0 disables preload.
    pub budget_t: u64,
    /// Canaries switched on for this run.
    pub canaries: Canaries,
    /// The engine's monotonic time, for the store's transaction-age check.
    pub now_ms: u64,
}

/// Why a fetch attempt (or the whole fetch) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The caller's fault hook failed a read (a retryable store error).
    #[error("preload read failed with an injected retryable error (attempt {attempt})")]
    Injected { attempt: u32 },
    /// The store refused a read (retryable).
    #[error("preload read failed: {0}")]
    Store(#[from] StoreError),
    /// A stored entry does not decode (not retryable).
    #[error("preload read found a corrupt entry: {0}")]
    CorruptEntry(#[from] RecordError),
}

impl FetchError {
    /// Whether a new attempt at a fresh read version may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, FetchError::CorruptEntry(_))
    }
}

/// The result of one fetch plus the instrumentation a checker needs (§2): the read version, the
/// normalized manifest used and the budget rebuild `S@V` and the reference bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOutcome {
    /// `CommandStartActor.preloaded_kv` for this delivery.
    pub bundle: Option<PreloadedKv>,
    /// `V`, the version the bundle is attributed to (see the module comment).
    pub read_version: Option<Version>,
    /// The normalized manifest `batch_preload` used, if it ran.
    pub manifest: Option<Manifest>,
    /// Why the stored manifest was unusable, when it was invalid (treated like absent).
    pub manifest_error: Option<ManifestError>,
    /// `T`.
    pub budget: u64,
    /// Attempts begun (0 when `T == 0`).
    pub attempts: u32,
    /// Whether the fetch failed (the bundle is then `None`, §7).
    pub failed: bool,
    /// The error of the last failed attempt, if any attempt failed.
    pub last_error: Option<FetchError>,
}

/// §4.1 for one delivery. `read_fault` is asked before every store read; `true` fails that read
/// with a retryable error, which throws away the attempt and starts again at a fresh read
/// version; after [`PRELOAD_MAX_ATTEMPTS`] failed attempts the fetch fails.
#[allow(clippy::too_many_arguments)] // the signature the simulator's command log calls
pub fn fetch(
    store: &mut Store,
    actor: &str,
    namespace: &str,
    actor_name: &str,
    budget_t: u64,
    canaries: Canaries,
    now_ms: u64,
    read_fault: &mut dyn FnMut() -> bool,
) -> FetchOutcome {
    let request = FetchRequest { actor, namespace, actor_name, budget_t, canaries, now_ms };
    fetch_with(store, &request, &mut |_store: &mut Store| read_fault())
}

/// [`fetch`] with a hook that gets the store before every read: it may commit other
/// transactions (concurrent writers interleaved with the scan; the fetch's own snapshot does not
/// see them) and returns whether that read fails.
pub fn fetch_with(
    store: &mut Store,
    request: &FetchRequest<'_>,
    before_read: &mut dyn FnMut(&mut Store) -> bool,
) -> FetchOutcome {
    let mut outcome = FetchOutcome {
        bundle: None,
        read_version: None,
        manifest: None,
        manifest_error: None,
        budget: request.budget_t,
        attempts: 0,
        failed: false,
        last_error: None,
    };
    // §4.1 step 1.
    if request.budget_t == 0 {
        return outcome;
    }
    for attempt in 1..=PRELOAD_MAX_ATTEMPTS {
        outcome.attempts = attempt;
        // Step 2: a fresh read version for every attempt.
        let mut txn = store.begin(request.now_ms);
        let version = txn.read_version();
        let result = {
            let mut reader = StoreKeyspace {
                store: &mut *store,
                txn: &mut txn,
                request,
                attempt,
                before_read: &mut *before_read,
            };
            read_bundle(&mut reader, request)
        };
        store.abort(txn);
        match result {
            Ok(read) => {
                outcome.bundle = read.bundle;
                outcome.manifest = read.manifest;
                outcome.manifest_error = read.manifest_error;
                outcome.read_version = Some(version);
                return outcome;
            }
            Err(error) => {
                let retryable = error.is_retryable();
                outcome.last_error = Some(error);
                if !retryable {
                    break;
                }
            }
        }
    }
    outcome.failed = true;
    outcome
}

/// What one successful attempt read.
struct AttemptResult {
    bundle: Option<PreloadedKv>,
    manifest: Option<Manifest>,
    manifest_error: Option<ManifestError>,
}

/// §4.1 steps 3–5 inside one attempt.
fn read_bundle(
    reader: &mut StoreKeyspace<'_, '_>,
    request: &FetchRequest<'_>,
) -> Result<AttemptResult, FetchError> {
    // Step 3: the emptiness probe.
    if reader.keyspace_is_empty()? {
        return Ok(AttemptResult {
            bundle: Some(preloaded_kv::empty_keyspace()),
            manifest: None,
            manifest_error: None,
        });
    }
    // Step 4: the manifest at the same version.
    let manifest = match reader.manifest()? {
        Ok(Some(manifest)) => manifest.normalize(),
        Ok(None) => {
            return Ok(AttemptResult { bundle: None, manifest: None, manifest_error: None })
        }
        Err(error) => {
            return Ok(AttemptResult { bundle: None, manifest: None, manifest_error: Some(error) })
        }
    };
    // Step 5.
    let bundle = batch_preload_from(reader, &manifest, request.budget_t, request.canaries)?;
    Ok(AttemptResult { bundle: Some(bundle), manifest: Some(manifest), manifest_error: None })
}

/// One attempt's view of the actor's keyspace: snapshot reads of one transaction.
struct StoreKeyspace<'s, 'r> {
    store: &'s mut Store,
    txn: &'s mut Txn,
    request: &'s FetchRequest<'r>,
    attempt: u32,
    before_read: &'s mut dyn FnMut(&mut Store) -> bool,
}

impl StoreKeyspace<'_, '_> {
    /// Ask the fault hook before a store read.
    fn gate(&mut self) -> Result<(), FetchError> {
        if (self.before_read)(self.store) {
            return Err(FetchError::Injected { attempt: self.attempt });
        }
        Ok(())
    }

    fn keyspace_is_empty(&mut self) -> Result<bool, FetchError> {
        self.gate()?;
        let range = KeyRange::prefix(&actor_kv_prefix(self.request.actor));
        let rows = self.store.get_range(
            self.txn,
            &range,
            Some(1),
            false,
            ReadMode::Snapshot,
            self.request.now_ms,
        )?;
        Ok(rows.is_empty())
    }

    /// The stored manifest: `Ok(Ok(None))` when the actor name has no metadata or no `preload`.
    fn manifest(&mut self) -> Result<Result<Option<Manifest>, ManifestError>, FetchError> {
        self.gate()?;
        let key = actor_name_metadata(self.request.namespace, self.request.actor_name);
        let stored = self.store.get(self.txn, &key, ReadMode::Snapshot, self.request.now_ms)?;
        Ok(match stored {
            None => Ok(None),
            Some(bytes) => parse_manifest_bytes(&bytes),
        })
    }
}

impl KeyspaceRead for StoreKeyspace<'_, '_> {
    type Error = FetchError;

    fn get(&mut self, key: &[u8]) -> Result<Option<KvEntryRecord>, FetchError> {
        self.gate()?;
        let store_key = actor_kv_key(self.request.actor, key);
        match self.store.get(self.txn, &store_key, ReadMode::Snapshot, self.request.now_ms)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(KvEntryRecord::decode(&bytes)?)),
        }
    }

    fn walk_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &KvEntryRecord) -> ControlFlow<()>,
    ) -> Result<(), FetchError> {
        let kv_prefix_len = actor_kv_prefix(self.request.actor).len();
        let mut range = KeyRange::prefix(&actor_kv_key(self.request.actor, prefix));
        let mut page = FIRST_PAGE_KEYS;
        loop {
            self.gate()?;
            let rows = self.store.get_range(
                self.txn,
                &range,
                Some(page),
                false,
                ReadMode::Snapshot,
                self.request.now_ms,
            )?;
            let full_page = rows.len() >= page;
            let mut last_key = None;
            for (store_key, bytes) in rows {
                let record = KvEntryRecord::decode(&bytes)?;
                let user_key = store_key.get(kv_prefix_len..).unwrap_or_default();
                if visit(user_key, &record).is_break() {
                    return Ok(());
                }
                last_key = Some(store_key);
            }
            match last_key {
                Some(mut next_start) if full_page => {
                    next_start.push(0x00);
                    range.start = next_start;
                    page = (page * 2).min(MAX_PAGE_KEYS);
                }
                _ => return Ok(()),
            }
        }
    }
}
