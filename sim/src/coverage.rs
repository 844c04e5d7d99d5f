//! Coverage probes: named rare paths, counted per run, so a sweep can show that its workload and
//! faults still reach them (a scenario's `[coverage] required` list fails a sweep in which no
//! seed hit a required probe).
//!
//! Two sources feed the same counters ([`crate::run::RunOutcome::probe_counts`]):
//! - the model's own `Fact::Probe` facts, placed where a rare branch runs (e.g.
//!   `replay-multi-page`, `stop-deadline-republish`);
//! - [`Coverage`], which derives probes from the history the way a checker would (it reads only
//!   history entries, never model state): the situations that span several components or that
//!   the model cannot name from where it stands.
//!
//! [`PROBES`] lists every probe name with what it means; `scenarios/README.md` points here. A
//! required probe that is not in the list is a scenario error, so a typo never passes silently.
//!
//! Choices where the issue is silent:
//! - "Reconnect while a batch of events is in flight" is a runner connection that closes while
//!   the runner still holds emitted, unacknowledged events (`reconnect-with-unacked-events`).
//! - "A preload that exhausts its budget" is a delivered bundle whose requested get-keys or
//!   prefixes are fewer than its manifest's (P3/P6 say only the budget removes them).
//! - "A partial prefix" is a delivered bundle that lists a prefix its manifest declares partial
//!   and holds at least one entry under it (`preload-partial-prefix`).
//! - "A core restart between persisting a command and publishing it" is a core crash while a
//!   command persisted by a workflow step has not yet been sent to its runner by any edge
//!   (`core-crash-between-persist-and-delivery`): the history does not record the bus publish
//!   itself, so a command published but still on the bus counts too; either way the restarted
//!   core must publish it again from its outbox.
//! - "A duplicate start for a stopped generation" is a `Start` the runner classifies as a
//!   duplicate while its record of that generation is a tombstone (an `InstanceTerminate` not yet
//!   followed by `TombstoneDrop`). §3.5 checks duplicates before termination, so a start is never
//!   `cmd_moot`: a `Start` is index 0 and a record exists only once index 0 was processed.
//! - "A commit-outcome-unknown on a command write" is a workflow step whose commit returned
//!   `unknown` but applied, with a command key among its writes.

use std::collections::{BTreeMap, BTreeSet};

use pegsim_model::fact::{CommandDisposition, CommandKind, EventClass, Fact, TxnLabel};
use pegsim_model::keys::{ActorId, RunnerId, TupleReader};
use pegsim_model::preload::parse_manifest;
use pegsim_model::protocol::PreloadedKv;
use pegsim_model::store::Mutation;

use crate::run::Entry;

/// Every probe name a scenario may require, with its meaning.
pub const PROBES: &[(&str, &str)] = &[
    // Derived from the history by `Coverage`.
    ("reconnect-with-unacked-events", "a runner connection closed while the runner held unacked events"),
    ("duplicate-start", "a runner received a start it had already processed (cmd_dup)"),
    ("start-for-stopped-generation", "a runner received a duplicate start of a generation whose instance had already terminated (cmd_dup against its tombstone)"),
    ("command-held-for-gap", "a runner held a command until its predecessor arrived (cmd_hold)"),
    ("event-behind-cursor", "the workflow classified an event at or behind its cursor (dup)"),
    ("event-ahead-of-cursor", "the workflow saw an event beyond cursor + 1 (gap)"),
    ("event-stale-generation", "the workflow classified an event of an ended generation as stale"),
    ("preload-budget-exhausted", "a delivered bundle left out manifest get-keys or prefixes for budget"),
    ("preload-partial-prefix", "a delivered bundle held entries of a prefix its manifest declares partial"),
    ("command-write-outcome-unknown", "a workflow commit that wrote a command returned unknown but applied"),
    ("core-crash", "the core node crashed and restarted from the store"),
    ("core-crash-between-persist-and-delivery", "the core crashed after persisting a command that no edge had sent yet (its restart must publish it)"),
    ("edge-crash", "an edge node crashed"),
    ("runner-expired", "the registry expired a runner whose liveness writes stopped (lost, or drained and gone)"),
    ("runner-drained", "a runner process drained (sent ToRivetStopping)"),
    // Reported by the model itself (`Fact::Probe`).
    ("replay-multi-page", "a reconnect replayed unacked commands in more than one page"),
    ("stop-deadline-republish", "a stop command was republished after its deadline"),
    ("held-command-dropped", "a runner dropped a held command"),
    ("outbox-command-gone", "an outbox item's command key was already deleted when published"),
    ("demux-workflow-gone-self-ack", "the demuxer acked events of a workflow that no longer exists"),
    ("inbox-sweep-found-signals", "the periodic inbox sweep found signals no wake had delivered"),
    ("live-buffer-overflow", "an edge's live command buffer overflowed during replay"),
    ("edge-frame-too-large", "an edge had to split or refuse a frame over the size limit"),
];

/// Whether `name` is a known probe.
pub fn is_known(name: &str) -> bool {
    PROBES.iter().any(|(n, _)| *n == name)
}

/// Emitted, not yet forgotten events of one `(runner, actor, generation)`: `(highest emitted,
/// highest forgotten)`.
type Outstanding = BTreeMap<(RunnerId, ActorId, u32), (i64, i64)>;

/// Derives probes from history entries. See the module comment.
#[derive(Debug, Default)]
pub struct Coverage {
    outstanding: Outstanding,
    /// Versions of workflow commits that returned unknown but applied, awaiting their commit fact.
    unknown_applied: BTreeSet<u64>,
    /// Commands persisted by a workflow step that no edge has sent yet.
    undelivered: BTreeSet<(RunnerId, ActorId, u32, i64)>,
    /// Generations whose instance terminated on a runner and whose tombstone is still kept.
    tombstones: BTreeSet<(RunnerId, ActorId, u32)>,
}

/// Undelivered commands remembered at most (a runner that never reconnects leaves its commands
/// here; past the cap the oldest-keyed are forgotten, which can only miss a probe hit).
const UNDELIVERED_MAX: usize = 4_096;

impl Coverage {
    /// The probes `entry` hits (usually none).
    pub fn observe(&mut self, entry: &Entry) -> Vec<&'static str> {
        let mut hit = Vec::new();
        match entry {
            Entry::Fact(fact) => self.fact(fact, &mut hit),
            Entry::Node { node, event } if event == "crash" => {
                if node == "core" {
                    hit.push("core-crash");
                    if !self.undelivered.is_empty() {
                        hit.push("core-crash-between-persist-and-delivery");
                    }
                } else if node.starts_with("edge") {
                    hit.push("edge-crash");
                }
            }
            _ => {}
        }
        hit
    }

    fn fact(&mut self, fact: &Fact, hit: &mut Vec<&'static str>) {
        match fact {
            Fact::EventEmit { runner, actor, generation, index, .. } => {
                let e = self.outstanding.entry((runner.clone(), actor.clone(), *generation));
                let slot = e.or_insert((-1, -1));
                slot.0 = slot.0.max(*index);
            }
            Fact::EventForget { runner, actor, generation, index } => {
                let key = (runner.clone(), actor.clone(), *generation);
                if let Some(slot) = self.outstanding.get_mut(&key) {
                    slot.1 = slot.1.max(*index);
                    if slot.1 >= slot.0 {
                        self.outstanding.remove(&key);
                    }
                }
            }
            Fact::InstanceTerminate { runner, actor, generation, .. } => {
                self.tombstones.insert((runner.clone(), actor.clone(), *generation));
            }
            Fact::TombstoneDrop { runner, actor, generation } => {
                let key = (runner.clone(), actor.clone(), *generation);
                self.outstanding.remove(&key);
                self.tombstones.remove(&key);
            }
            Fact::RunnerExit { runner, .. } => self.forget_runner(runner),
            Fact::RunnerConnClosed { runner, .. } if self.holds_unacked(runner) => {
                hit.push("reconnect-with-unacked-events");
            }
            Fact::RunnerCommand { runner, actor, generation, kind, disposition, .. } => {
                match (kind, disposition) {
                    (_, CommandDisposition::Hold) => hit.push("command-held-for-gap"),
                    (CommandKind::Start, CommandDisposition::Dup) => {
                        hit.push("duplicate-start");
                        let key = (runner.clone(), actor.clone(), *generation);
                        if self.tombstones.contains(&key) {
                            hit.push("start-for-stopped-generation");
                        }
                    }
                    _ => {}
                }
            }
            Fact::EventClassified { class, .. } => match class {
                EventClass::Dup => hit.push("event-behind-cursor"),
                EventClass::Gap => hit.push("event-ahead-of-cursor"),
                EventClass::Stale => hit.push("event-stale-generation"),
                EventClass::Applied => {}
            },
            Fact::PreloadFetched { manifest_json: Some(json), bundle: Some(bundle), .. } => {
                preload_probes(json, bundle, hit);
            }
            Fact::CommitFailed {
                label: TxnLabel::WorkflowStep, applied_version: Some(v), ..
            } => {
                self.unknown_applied.insert(*v);
            }
            // The removal runs first, so a commit is matched once whatever it wrote.
            Fact::Commit { version, applied, .. }
                if self.unknown_applied.remove(version) && applied.iter().any(writes_command) =>
            {
                hit.push("command-write-outcome-unknown");
            }
            Fact::CommandPersisted { runner, actor, generation, index, .. } => {
                if self.undelivered.len() >= UNDELIVERED_MAX {
                    self.undelivered.pop_first();
                }
                self.undelivered.insert((runner.clone(), actor.clone(), *generation, *index));
            }
            Fact::CommandsSent { runner, checkpoints, .. } => {
                for (actor, generation, index) in checkpoints {
                    self.undelivered.remove(&(runner.clone(), actor.clone(), *generation, *index));
                }
            }
            Fact::EndGeneration { actor, runner, generation, .. } => {
                self.undelivered
                    .retain(|(r, a, g, _)| !(r == runner && a == actor && g == generation));
            }
            Fact::Expired { .. } => hit.push("runner-expired"),
            Fact::RunnerStopping { .. } => hit.push("runner-drained"),
            _ => {}
        }
    }

    /// Whether `runner` holds emitted events it has not forgotten.
    fn holds_unacked(&self, runner: &RunnerId) -> bool {
        let from = (runner.clone(), String::new(), 0);
        self.outstanding.range(from..).next().is_some_and(|((r, _, _), _)| r == runner)
    }

    /// A runner process that exited holds nothing any more.
    fn forget_runner(&mut self, runner: &RunnerId) {
        self.outstanding.retain(|(r, _, _), _| r != runner);
        self.tombstones.retain(|(r, _, _)| r != runner);
    }
}

/// Whether a mutation writes a runner command key (`runner/R/cmd/…`, tuple-encoded: the string
/// element `runner`, two string elements for `R`, then the string element `cmd`).
fn writes_command(m: &Mutation) -> bool {
    let Mutation::Set { key, .. } = m else { return false };
    let mut reader = TupleReader::new(key);
    let element = |r: &mut TupleReader<'_>| r.s().ok();
    element(&mut reader).as_deref() == Some("runner")
        && element(&mut reader).is_some()
        && element(&mut reader).is_some()
        && element(&mut reader).as_deref() == Some("cmd")
}

fn preload_probes(manifest_json: &str, bundle: &PreloadedKv, hit: &mut Vec<&'static str>) {
    let Ok(Some(manifest)) = parse_manifest(&format!("{{\"preload\":{manifest_json}}}")) else {
        return;
    };
    let manifest = manifest.normalize();
    if bundle.requested_get_keys.len() < manifest.keys.len()
        || bundle.requested_prefixes.len() < manifest.prefixes.len()
    {
        hit.push("preload-budget-exhausted");
    }
    let partial_with_entries = bundle.requested_prefixes.iter().any(|p| {
        manifest.prefix_item(p).is_some_and(|item| item.partial)
            && bundle.entries.iter().any(|e| e.key.starts_with(p))
    });
    if partial_with_entries {
        hit.push("preload-partial-prefix");
    }
}

#[cfg(test)]
mod tests {
    use pegsim_model::fact::ConnId;
    use pegsim_model::keys;
    use pegsim_model::preload::{reference_manifest, Manifest, PrefixItem};
    use pegsim_model::protocol as p;

    use super::*;

    fn runner() -> RunnerId {
        RunnerId::new("default", "r1")
    }

    fn fact(c: &mut Coverage, f: Fact) -> Vec<&'static str> {
        c.observe(&Entry::Fact(f))
    }

    fn emit(index: i64) -> Fact {
        Fact::EventEmit {
            runner: runner(),
            actor: "a".into(),
            generation: 0,
            index,
            event: p::Event::EventActorIntent(p::EventActorIntent {
                intent: p::ActorIntent::ActorIntentSleep,
            }),
        }
    }

    fn closed() -> Fact {
        Fact::RunnerConnClosed { runner: runner(), conn: ConnId(1), reason: "reset".into() }
    }

    #[test]
    fn a_close_counts_only_while_events_are_unacked() {
        let mut c = Coverage::default();
        assert!(fact(&mut c, closed()).is_empty(), "nothing emitted yet");
        fact(&mut c, emit(0));
        fact(&mut c, emit(1));
        assert_eq!(fact(&mut c, closed()), vec!["reconnect-with-unacked-events"]);
        let forget =
            |index| Fact::EventForget { runner: runner(), actor: "a".into(), generation: 0, index };
        fact(&mut c, forget(0));
        assert_eq!(fact(&mut c, closed()), vec!["reconnect-with-unacked-events"], "1 still held");
        fact(&mut c, forget(1));
        assert!(fact(&mut c, closed()).is_empty());
    }

    fn start_received(disposition: CommandDisposition) -> Fact {
        Fact::RunnerCommand {
            runner: runner(),
            conn: ConnId(2),
            actor: "a".into(),
            generation: 0,
            index: 0,
            kind: CommandKind::Start,
            disposition,
        }
    }

    #[test]
    fn a_duplicate_start_counts_as_stopped_only_against_a_tombstone() {
        let mut c = Coverage::default();
        assert!(fact(&mut c, start_received(CommandDisposition::Exec)).is_empty());
        assert_eq!(fact(&mut c, start_received(CommandDisposition::Dup)), vec!["duplicate-start"]);
        fact(
            &mut c,
            Fact::InstanceTerminate {
                runner: runner(),
                actor: "a".into(),
                generation: 0,
                code: p::StopCode::Ok,
                reason: "stopped".into(),
            },
        );
        assert_eq!(
            fact(&mut c, start_received(CommandDisposition::Dup)),
            vec!["duplicate-start", "start-for-stopped-generation"]
        );
        fact(&mut c, Fact::TombstoneDrop { runner: runner(), actor: "a".into(), generation: 0 });
        assert_eq!(fact(&mut c, start_received(CommandDisposition::Dup)), vec!["duplicate-start"]);
    }

    fn bundle(keys: &[&[u8]], prefixes: &[&[u8]], entries: &[&[u8]]) -> PreloadedKv {
        PreloadedKv {
            entries: entries
                .iter()
                .map(|k| p::PreloadedKvEntry {
                    key: k.to_vec().into(),
                    value: vec![1].into(),
                    metadata: p::KvMetadata { version: vec![].into(), update_ts: 0 },
                })
                .collect(),
            requested_get_keys: keys.iter().map(|k| k.to_vec().into()).collect(),
            requested_prefixes: prefixes.iter().map(|k| k.to_vec().into()).collect(),
        }
    }

    fn fetched(manifest: &Manifest, bundle: PreloadedKv) -> Fact {
        Fact::PreloadFetched {
            runner: runner(),
            conn: ConnId(1),
            actor: "a".into(),
            generation: 0,
            read_version: Some(1),
            budget: 100,
            manifest_json: Some(manifest.to_json().to_string()),
            bundle: Some(bundle),
            attempts: 1,
            failed: false,
        }
    }

    #[test]
    fn preload_probes_follow_the_manifest() {
        let manifest = Manifest {
            keys: vec![vec![1], vec![3]],
            prefixes: vec![PrefixItem::new(vec![2], 50, false), PrefixItem::new(vec![8], 50, true)],
        };
        let mut c = Coverage::default();
        let all = bundle(&[&[1], &[3]], &[&[2], &[8]], &[&[1]]);
        assert!(
            fact(&mut c, fetched(&manifest, all)).is_empty(),
            "all requested, no partial entry"
        );
        let short = bundle(&[&[1]], &[&[2], &[8]], &[&[1]]);
        assert_eq!(fact(&mut c, fetched(&manifest, short)), vec!["preload-budget-exhausted"]);
        let partial = bundle(&[&[1], &[3]], &[&[2], &[8]], &[&[8, 0]]);
        assert_eq!(fact(&mut c, fetched(&manifest, partial)), vec!["preload-partial-prefix"]);
        // The reference manifest round-trips through the fact's JSON.
        let reference = reference_manifest();
        let none = bundle(&[], &[], &[]);
        assert_eq!(fact(&mut c, fetched(&reference, none)), vec!["preload-budget-exhausted"]);
    }

    #[test]
    fn an_unknown_applied_workflow_commit_counts_only_with_a_command_write() {
        let mut c = Coverage::default();
        let failed = |v| Fact::CommitFailed {
            label: TxnLabel::WorkflowStep,
            error: "unknown".into(),
            applied_version: Some(v),
        };
        let commit = |v, key: Vec<u8>| Fact::Commit {
            label: TxnLabel::WorkflowStep,
            version: v,
            applied: vec![Mutation::Set { key, value: vec![] }],
        };
        fact(&mut c, failed(7));
        assert!(fact(&mut c, commit(7, keys::actor_state("a"))).is_empty());
        let cmd = keys::runner_cmd(&runner(), "a", 0, 0);
        assert!(fact(&mut c, commit(8, cmd.clone())).is_empty(), "a commit that did not fail");
        fact(&mut c, failed(9));
        assert_eq!(fact(&mut c, commit(9, cmd)), vec!["command-write-outcome-unknown"]);
    }

    #[test]
    fn a_core_crash_counts_while_a_persisted_command_is_unsent() {
        let mut c = Coverage::default();
        let crash = || Entry::Node { node: "core".into(), event: "crash".into() };
        assert_eq!(c.observe(&crash()), vec!["core-crash"]);
        fact(
            &mut c,
            Fact::CommandPersisted {
                runner: runner(),
                actor: "a".into(),
                generation: 0,
                index: 0,
                kind: pegsim_model::fact::CommandKind::Start,
            },
        );
        assert_eq!(
            c.observe(&crash()),
            vec!["core-crash", "core-crash-between-persist-and-delivery"]
        );
        fact(
            &mut c,
            Fact::CommandsSent {
                runner: runner(),
                conn: ConnId(1),
                replay: false,
                checkpoints: vec![("a".into(), 0, 0)],
            },
        );
        assert_eq!(c.observe(&crash()), vec!["core-crash"]);
    }
}
