//! What happens to every `Fact::Commit`: the shadow applies its mutations, a transaction window
//! opens, and the per-commit safety checks run over the list of changes (the invariant modules do
//! the checking; this module only orders them).
//!
//! Owns the commit dispatch. Must not hold state of its own.

use pegsim_model::fact::TxnLabel;
use pegsim_model::store::{Mutation, Version};

use super::names;
use super::shadow::{KeyKind, Value};
use super::state::{At, Window};
use super::Checker;

impl Checker {
    pub(super) fn on_commit(
        &mut self,
        at: At,
        node: &str,
        label: TxnLabel,
        version: Version,
        applied: &[Mutation],
    ) {
        let previous = self.shadow.version;
        if previous != 0 && version != previous + 1 {
            self.shadow_gap = true;
            self.flag(
                names::HISTORY,
                at,
                None,
                None,
                format!(
                    "commit {version} ({label:?}) follows commit {previous}: {} applied commits have no Fact::Commit, so the store shadow is incomplete",
                    version.saturating_sub(previous + 1)
                ),
            );
        }
        let changes = self.shadow.apply(version, applied);
        self.on_inbox_writes(label, applied);
        let mut window = Window::new(at, node);
        for change in &changes {
            match &change.kind {
                KeyKind::Placement(actor) => {
                    let before = match &change.old {
                        Some(Value::Placement(p)) => Some(p.clone()),
                        _ => None,
                    };
                    window.placement_before.entry(actor.clone()).or_insert(before);
                    window.touched_actors.insert(actor.clone());
                }
                KeyKind::Pending { actor, .. } => {
                    window.touched_actors.insert(actor.clone());
                }
                KeyKind::RunnerInfo(runner) => {
                    let before = match &change.old {
                        Some(Value::Info(i)) => Some(i.clone()),
                        _ => None,
                    };
                    window.info_before.entry(runner.clone()).or_insert(before);
                }
                _ => {}
            }
        }
        self.window = Some(window);

        for change in &changes {
            let Some(Value::Bad(why)) = &change.new else { continue };
            let (invariant, actor, runner) = match &change.kind {
                KeyKind::RunnerCmd(r, a, ..) => (names::S6, Some(a.as_str()), Some(r)),
                KeyKind::RunnerInfo(r) | KeyKind::RunnerAlloc(r, _) => (names::S15, None, Some(r)),
                KeyKind::Placement(a) => (names::S15, Some(a.as_str()), None),
                KeyKind::ActorKv(a, _) => (names::K6, Some(a.as_str()), None),
                KeyKind::ActorNs(_) | KeyKind::Pending { .. } | KeyKind::ActorNameMeta { .. } => {
                    continue
                }
            };
            let detail = format!("a stored value does not decode ({:?}): {why}", change.kind);
            let runner = runner.cloned();
            self.flag(invariant, at, actor, runner.as_ref(), detail);
        }

        self.check_command_commit(at, label, version, &changes);
        self.check_registry_commit(at, label, version, &changes);
        self.check_kv_commit(at, label, &changes);
        self.track_pending(at, &changes);
    }
}
