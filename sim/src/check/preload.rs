//! The preload and KV-data invariants: S19 INV-PRELOAD through `spec/preload.md` P0–P10 (the
//! bundle of every successful fetch checked by `preload::oracle::check_bundle` against `S@V`
//! rebuilt from the shadow), P12 (startup observation equivalence, through an oracle run given
//! in the configuration), P13 (no live read when the bundle says the keyspace is empty), P14
//! (new-actor safety), P15 (no stored command carries a bundle, checked in `commands`), P16
//! (freshness), K6 (storage bound), and the data-loss oracle on the actor state key `[1]`.
//!
//! Owns the per-connection fetch queues and first-delivery snapshots, the started instances
//! waiting for their startup record, and `ActorTrack.counter`.
//!
//! Choices where the spec is silent:
//! - `S@V` is the shadow's keyspace when the `PreloadFetched` fact arrives. If the actor's
//!   keyspace or its name's metadata changed at a version after `read_version`, the shadow no
//!   longer holds `S@V`: the bundle missed a mutation committed before its delivery ended, which
//!   is reported as P16. Other P16 checks: `V` not before the version that stored the `Start`,
//!   and non-decreasing per `(A, g)`; every `Start` written to a runner carries exactly the bundle
//!   fetched for that delivery (none fetched and one delivered means a persisted or reused bundle).
//! - The manifest is the stored metadata of `(namespace, name)`: the namespace from
//!   `ActorCreated` (else the runner's), the name from the stored `Start` (else `ActorCreated`),
//!   parsed with the model's manifest parser (an absent or invalid one is `None`).
//! - P12–P14 use the instance's bundle: the first delivery of `Start(A, g)` on the connection
//!   whose `RunnerCommand { Exec, Start }` started it, with the snapshot taken at that delivery's
//!   fetch (or at the frame, when no fetch was recorded). The input is the stored `Start`'s
//!   `config.input`. P13 is decided only where the history alone proves full coverage: a bundle
//!   that is `empty_keyspace()` answers every startup lookup, so such a startup makes no live
//!   read.
//! - Once a commit is missing from the history (`names::HISTORY`), the keyspace shadow is
//!   incomplete and every check here that reads it (P0–P16 on bundles, P12–P14, K6, DATA-LOSS) is
//!   suspended; the HISTORY violation already fails the run.
//! - DATA-LOSS: the state key `[1]` holds a JSON object with an integer `counter` that every start
//!   increments (the model application's rule). The committed counter never decreases, and the
//!   first write of a newer generation never leaves it at or below the last one (that would be a
//!   re-initialisation to a fresh value). Deleting `[1]` (drop, destroy, clear) resets it.

use std::collections::BTreeMap;

use pegsim_model::fact::{ConnId, StartupRecord, TxnLabel};
use pegsim_model::keys::{ActorId, RunnerId};
use pegsim_model::preload::oracle;
use pegsim_model::preload::{parse_manifest_bytes, Manifest};
use pegsim_model::protocol::preloaded_kv::is_empty_keyspace;
use pegsim_model::protocol::{ActorCommandKeyData, PreloadedKv};
use pegsim_model::store::Version;

use super::names;
use super::shadow::{Change, KeyKind, Value};
use super::state::{At, PendingStartup, StartSnapshot};
use super::Checker;

/// The actor state key of the model application (`spec/preload.md` §6.1).
pub(super) const STATE_KEY: &[u8] = &[1];

/// The `counter` field of a state value, if it is a JSON object with an integer counter.
fn parse_counter(value: &[u8]) -> Option<u64> {
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    json.get("counter")?.as_u64()
}

/// The first field in which two startup records differ, for a readable P12 detail.
fn record_difference(found: &StartupRecord, expected: &StartupRecord) -> String {
    if let Some(i) = (0..found.reads.len().max(expected.reads.len()))
        .find(|i| found.reads.get(*i) != expected.reads.get(*i))
    {
        return format!(
            "read {i}: bundle run {:?}, oracle run {:?}",
            found.reads.get(i),
            expected.reads.get(i)
        );
    }
    if found.new_actor != expected.new_actor {
        return format!(
            "new actor: bundle run {}, oracle run {}",
            found.new_actor, expected.new_actor
        );
    }
    if found.counter != expected.counter {
        return format!("counter: bundle run {}, oracle run {}", found.counter, expected.counter);
    }
    format!(
        "writes: bundle run {} puts, oracle run {} puts, first different put {:?}",
        found.writes.len(),
        expected.writes.len(),
        (0..found.writes.len().max(expected.writes.len()))
            .find(|i| found.writes.get(*i) != expected.writes.get(*i))
    )
}

impl Checker {
    /// DATA-LOSS, K6 and S14 (commit level) for one commit's keyspace changes.
    pub(super) fn check_kv_commit(&mut self, at: At, label: TxnLabel, changes: &[Change]) {
        let mut actors: BTreeMap<ActorId, bool> = BTreeMap::new();
        for change in changes {
            let KeyKind::ActorKv(actor, key) = &change.kind else { continue };
            let only_deletes = actors.entry(actor.clone()).or_insert(true);
            *only_deletes &= change.new.is_none();
            if key.as_slice() == STATE_KEY && !self.shadow_gap {
                self.check_counter(at, actor, change.new.as_ref());
            }
        }
        for (actor, only_deletes) in actors {
            self.check_kv_writer(at, label, &actor, only_deletes);
            let usage = self.shadow.kv_usage.get(&actor).copied().unwrap_or(0);
            let quota = self.cfg.kv.max_storage_size;
            if usage > quota && !self.shadow_gap {
                self.flag(
                    names::K6,
                    at,
                    Some(&actor),
                    None,
                    format!("the keyspace of {actor} uses {usage} bytes, quota {quota}"),
                );
            }
        }
    }

    fn check_counter(&mut self, at: At, actor: &str, new: Option<&Value>) {
        let generation = self.shadow.placements.get(actor).map(|p| p.generation);
        let Some(Value::Kv(record)) = new else {
            self.actor(actor).counter = None;
            return;
        };
        let Some(counter) = parse_counter(&record.value) else { return };
        let previous = self.actor(actor).counter;
        self.actor(actor).counter = Some((counter, generation));
        let Some((last, last_generation)) = previous else { return };
        let problem = if counter < last {
            Some(format!("the committed counter of {actor} went from {last} to {counter}"))
        } else if generation.is_some() && generation > last_generation && counter <= last {
            Some(format!(
                "generation {generation:?} of {actor} started over its saved state: counter {counter} after {last} (written by generation {last_generation:?})"
            ))
        } else {
            None
        };
        if let Some(detail) = problem {
            self.flag(names::DATA_LOSS, at, Some(actor), None, detail);
        }
    }

    /// Where the manifest of `actor` lives: `(namespace, name)`.
    fn manifest_location(
        &self,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
    ) -> Option<(String, String)> {
        let track = self.actors.get(actor);
        let namespace =
            track.and_then(|t| t.namespace.clone()).unwrap_or_else(|| runner.namespace.clone());
        let stored_name =
            self.gens.get(&(actor.to_string(), generation)).and_then(|t| t.cmds.get(&0)).and_then(
                |c| match &c.content {
                    ActorCommandKeyData::CommandStartActor(s) => Some(s.config.name.to_string()),
                    ActorCommandKeyData::CommandStopActor(_) => None,
                },
            );
        let name = stored_name.or_else(|| track.and_then(|t| t.name.clone()))?;
        Some((namespace, name))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_preload_fetched(
        &mut self,
        at: At,
        runner: &RunnerId,
        conn: ConnId,
        actor: &str,
        generation: u32,
        read_version: Option<Version>,
        bundle: Option<&PreloadedKv>,
        failed: bool,
    ) {
        let key = (actor.to_string(), generation);
        let delivered = if failed { None } else { bundle.cloned() };
        let snapshot = self.shadow.keyspace(actor);
        {
            let c = self.conn(conn);
            c.fetched.entry(key.clone()).or_default().push_back(delivered.clone());
            c.first_start.entry(key.clone()).or_insert_with(|| StartSnapshot {
                snapshot: snapshot.clone(),
                empty_keyspace_bundle: delivered.as_ref().is_some_and(is_empty_keyspace),
            });
        }
        if failed || self.shadow_gap {
            return;
        }
        let location = self.manifest_location(runner, actor, generation);
        if let Some(v) = read_version {
            let mut problems: Vec<String> = Vec::new();
            let stored_at = self.gens.get(&key).and_then(|t| t.cmds.get(&0)).map(|c| c.version);
            if stored_at.is_some_and(|s| v < s) {
                problems.push(format!("the bundle was read at version {v}, before the Start was stored at {stored_at:?}"));
            }
            let previous = self.gens.get(&key).and_then(|t| t.last_fetch_version);
            if previous.is_some_and(|p| v < p) {
                problems.push(format!(
                    "the bundle was read at version {v}, an earlier delivery read at {previous:?}"
                ));
            }
            if !self.ended(actor, generation) {
                self.gen(actor, generation).last_fetch_version = Some(v);
            }
            let kv_changed = self.shadow.kv_modified.get(actor).copied().filter(|m| *m > v);
            let manifest_changed = location
                .as_ref()
                .and_then(|l| self.shadow.manifest_modified.get(l))
                .copied()
                .filter(|m| *m > v);
            if let Some(m) = kv_changed.or(manifest_changed) {
                problems.push(format!(
                    "the bundle was read at version {v} but a mutation of its keyspace or manifest committed at {m} before the delivery"
                ));
            }
            if let Some(first) = problems.into_iter().next() {
                let detail = format!("delivery of Start({actor}, {generation}) on {conn}: {first}");
                self.flag(names::P16, at, Some(actor), Some(runner), detail);
                return;
            }
        }
        let manifest: Option<Manifest> = location
            .and_then(|l| self.shadow.manifests.get(&l))
            .and_then(|bytes| parse_manifest_bytes(bytes).ok().flatten());
        if let Err(violation) =
            oracle::check_bundle(&snapshot, manifest.as_ref(), self.cfg.preload_budget, bundle)
        {
            let detail = format!("bundle of Start({actor}, {generation}) on {conn}: {violation}");
            self.flag(violation.invariant().name(), at, Some(actor), Some(runner), detail);
        }
    }

    /// P16 for one `Start` written to a runner, and the first-delivery snapshot for P12.
    pub(super) fn check_delivered_bundle(
        &mut self,
        at: At,
        conn: ConnId,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        delivered: Option<&PreloadedKv>,
    ) {
        let key = (actor.to_string(), generation);
        let snapshot = self.shadow.keyspace(actor);
        let queued = {
            let c = self.conn(conn);
            let queued = c.fetched.get_mut(&key).and_then(|q| q.pop_front());
            if c.fetched.get(&key).is_some_and(|q| q.is_empty()) {
                c.fetched.remove(&key);
            }
            c.first_start.entry(key).or_insert_with(|| StartSnapshot {
                snapshot,
                empty_keyspace_bundle: delivered.is_some_and(is_empty_keyspace),
            });
            queued
        };
        let problem = match (queued, delivered) {
            (Some(fetched), d) if fetched.as_ref() != d => {
                Some("the bundle written differs from the one fetched for this delivery")
            }
            (None, Some(_)) => Some("a bundle was written that no fetch produced for this delivery (persisted or reused)"),
            _ => None,
        };
        if let Some(problem) = problem {
            self.flag(
                names::P16,
                at,
                Some(actor),
                Some(runner),
                format!("Start({actor}, {generation}) sent to {runner} on {conn}: {problem}"),
            );
        }
    }

    /// The runner started `(A, g)` from its first delivery on `conn`.
    pub(super) fn bind_startup(
        &mut self,
        runner: &RunnerId,
        conn: ConnId,
        actor: &str,
        generation: u32,
    ) {
        let key = (actor.to_string(), generation);
        let Some(start) = self.conns.get_mut(&conn).and_then(|c| c.first_start.remove(&key)) else {
            return;
        };
        let input =
            self.gens.get(&key).and_then(|t| t.cmds.get(&0)).and_then(|c| match &c.content {
                ActorCommandKeyData::CommandStartActor(s) => {
                    s.config.input.as_ref().map(|b| b.to_vec())
                }
                ActorCommandKeyData::CommandStopActor(_) => None,
            });
        self.proc(runner).startups.insert(key, PendingStartup { start, input });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_startup_observed(
        &mut self,
        at: At,
        runner: &RunnerId,
        actor: &str,
        generation: u32,
        had_bundle: bool,
        live_reads: u32,
        record: &StartupRecord,
    ) {
        self.progress += 1;
        let key = (actor.to_string(), generation);
        let Some(pending) = self.procs.get_mut(runner).and_then(|p| p.startups.remove(&key)) else {
            return;
        };
        if self.shadow_gap {
            return;
        }
        if record.new_actor && pending.start.snapshot.get(STATE_KEY).is_some() {
            self.flag(
                names::P14,
                at,
                Some(actor),
                Some(runner),
                format!("({actor}, {generation}) took the new-actor path but [1] was present at the delivery's version"),
            );
        }
        if pending.start.empty_keyspace_bundle && had_bundle && live_reads > 0 {
            self.flag(
                names::P13,
                at,
                Some(actor),
                Some(runner),
                format!("({actor}, {generation}) had an empty-keyspace bundle and still made {live_reads} live reads"),
            );
        }
        let expected =
            self.cfg.startup_oracle.as_ref().map(|run| {
                run(&pending.start.snapshot, actor, generation, pending.input.as_deref())
            });
        if let Some(expected) = expected {
            if expected != *record {
                let detail = format!(
                    "startup of ({actor}, {generation}) differs from the oracle run: {}",
                    record_difference(record, &expected)
                );
                self.flag(names::P12, at, Some(actor), Some(runner), detail);
            }
        }
    }
}
