//! What a node hands to the model on every call: its clocks, its randomness stream, the store
//! (for engine nodes), the fault choices of this run, the canaries, and the sink for history
//! facts. The model owns none of these; the simulator (or a test harness) does.
//!
//! - `now_ms` is the node's monotonic clock (timeouts are durations on it, `spec/protocol.md` §0);
//!   `wall_ms` is the node's wall clock (it may be skewed; it is data, never a safety decision).
//! - [`Entropy`] is the node's own random stream (jitter, tie breaks, tokens); the model never
//!   creates randomness of its own.
//! - [`Faults`] decides injected store faults per transaction (the simulator draws them from its
//!   fault stream; tests script them).
//! - Every committed transaction goes through [`Env::commit`], which asks for a fault, commits,
//!   and records a [`Fact::Commit`] with the applied mutations, so checkers can keep shadows of
//!   the store without reading it.

use crate::canary::Canaries;
use crate::fact::{Fact, TxnLabel};
use crate::store::{CommitError, CommitFault, Committed, Store, Txn};

/// A node's random stream.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;

    /// Uniform in `0..n` (`0` when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// A deterministic [`Entropy`] for tests and harnesses (SplitMix64).
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl Entropy for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Injected store faults, chosen per attempt.
pub trait Faults {
    /// A fault for this commit attempt, if any.
    fn commit_fault(&mut self, label: TxnLabel) -> Option<CommitFault>;
    /// Whether the next preload read fails with a retryable error.
    fn preload_read_fault(&mut self) -> bool;
}

/// No faults at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl Faults for NoFaults {
    fn commit_fault(&mut self, _: TxnLabel) -> Option<CommitFault> {
        None
    }
    fn preload_read_fault(&mut self) -> bool {
        false
    }
}

/// A history sink.
pub trait FactSink {
    fn record(&mut self, fact: Fact);
}

impl FactSink for Vec<Fact> {
    fn record(&mut self, fact: Fact) {
        self.push(fact);
    }
}

/// The environment of one call into an engine-side component.
pub struct Env<'a> {
    /// The node's monotonic clock, ms.
    pub now_ms: u64,
    /// The node's wall clock, ms (possibly skewed).
    pub wall_ms: i64,
    pub store: &'a mut Store,
    pub faults: &'a mut dyn Faults,
    pub rng: &'a mut dyn Entropy,
    pub facts: &'a mut dyn FactSink,
    pub canaries: Canaries,
}

impl Env<'_> {
    /// Begin a transaction at the store's latest version.
    pub fn begin(&mut self) -> Txn {
        self.store.begin(self.now_ms)
    }

    /// Commit with an injected fault if the run's fault plan says so, and record the outcome.
    /// A successful commit is recorded with its applied mutations ([`Fact::Commit`]); an
    /// `Unknown` outcome that did apply is recorded too (the checkers must see every write), and
    /// so is every failed attempt ([`Fact::CommitFailed`]). Prefer [`Env::transact`].
    pub fn commit(&mut self, txn: Txn, label: TxnLabel) -> Result<Committed, CommitError> {
        self.commit_observed(txn, label).0
    }

    /// [`Env::commit`], also telling the history recorder whether a failed commit applied anyway
    /// (which the model itself must not act on).
    fn commit_observed(
        &mut self,
        txn: Txn,
        label: TxnLabel,
    ) -> (Result<Committed, CommitError>, bool) {
        let fault = if txn.is_read_only() { None } else { self.faults.commit_fault(label) };
        let result = self.store.commit(txn, self.now_ms, fault);
        let mut applied_anyway = false;
        match &result {
            Ok(c) => {
                if !c.applied.is_empty() {
                    self.facts.record(Fact::Commit {
                        label,
                        version: c.version,
                        applied: c.applied.clone(),
                    });
                }
            }
            Err(e) => {
                let applied = self.store.take_unknown_applied();
                applied_anyway = !applied.is_empty();
                self.facts.record(Fact::CommitFailed {
                    label,
                    error: e.to_string(),
                    applied_version: applied.last().map(|c| c.version),
                });
                for c in applied {
                    self.facts.record(Fact::Commit {
                        label,
                        version: c.version,
                        applied: c.applied,
                    });
                }
            }
        }
        (result, applied_anyway)
    }

    /// Abandon a transaction.
    pub fn abort(&mut self, txn: Txn) {
        self.store.abort(txn);
    }

    /// Record a fact.
    pub fn record(&mut self, fact: Fact) {
        self.facts.record(fact);
    }
}

/// Attempts of one logical transaction before it gives up (conflicts, unknown outcomes and
/// too-old reads are retried at once; the model has no store latency to back off from). A model
/// parameter, not a spec constant.
pub const MAX_TXN_ATTEMPTS: u32 = 8;

/// Why a logical transaction did not commit.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TxnFailure<E> {
    /// The body decided not to commit (a failed requirement such as an epoch mismatch); nothing
    /// was written.
    #[error("{0}")]
    Rejected(E),
    /// Every attempt failed in the store; the last error is given.
    #[error("store failed after {attempts} attempts: {last}")]
    Store { attempts: u32, last: CommitError },
}

impl Env<'_> {
    /// Run `body` in a transaction and commit it, re-running the whole body after a conflict, a
    /// too-old read or an unknown outcome (every transaction in the model is idempotent or
    /// detects its own earlier commit, `spec/protocol.md` §1.6), up to [`MAX_TXN_ATTEMPTS`].
    ///
    /// `body` gets the transaction and a buffer for facts; the facts of an attempt that applied
    /// are recorded after its commit, the others are dropped. A body that returns `Err` aborts
    /// the transaction and ends the run with [`TxnFailure::Rejected`].
    pub fn transact<T, E>(
        &mut self,
        label: TxnLabel,
        mut body: impl FnMut(&mut Env<'_>, &mut Txn, &mut Vec<Fact>) -> Result<T, E>,
    ) -> Result<(T, Committed), TxnFailure<E>> {
        let mut last = CommitError::Conflict;
        for _ in 0..MAX_TXN_ATTEMPTS {
            let mut txn = self.begin();
            let mut facts = Vec::new();
            let value = match body(self, &mut txn, &mut facts) {
                Ok(v) => v,
                Err(e) => {
                    self.abort(txn);
                    return Err(TxnFailure::Rejected(e));
                }
            };
            let (result, applied_anyway) = self.commit_observed(txn, label);
            match result {
                Ok(c) => {
                    for f in facts {
                        self.facts.record(f);
                    }
                    return Ok((value, c));
                }
                Err(e) if e.is_retryable() => {
                    // An unknown outcome that applied made this attempt's facts true; the history
                    // keeps them even though the model cannot know and re-runs the body.
                    if applied_anyway {
                        for f in facts {
                            self.facts.record(f);
                        }
                    }
                    last = e;
                }
                Err(e) => return Err(TxnFailure::Store { attempts: 1, last: e }),
            }
        }
        Err(TxnFailure::Store { attempts: MAX_TXN_ATTEMPTS, last })
    }
}

/// The environment of one call into a runner process: its clocks, its random stream and the
/// history sink. A runner has no store; it reaches the engine only through frames.
pub struct RunnerEnv<'a> {
    /// The runner node's monotonic clock, ms.
    pub now_ms: u64,
    /// The runner node's wall clock, ms (possibly skewed).
    pub wall_ms: i64,
    pub rng: &'a mut dyn Entropy,
    pub facts: &'a mut dyn FactSink,
}
