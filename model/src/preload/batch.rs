//! `batch_preload` (`spec/preload.md` §4.2): the engine-side algorithm that turns one actor's
//! keyspace at `V`, a normalized manifest and the global budget `T` into a `PreloadedKv`.
//!
//! Owns the algorithm and the three preload canaries that live inside it
//! (`PreloadGetkeyBeforeBudget`, `PreloadRequestedIncludesSkipped`,
//! `PreloadSizeWithoutMetadata`), each one branch at the place the defect lived. It reads only
//! through [`KeyspaceRead`], so the same code runs over an in-memory [`Snapshot`] and over the
//! store (the fetch), where a prefix walk stops at the first entry that overflows without reading
//! further. It must not decide *whether* to preload (`T == 0`, empty keyspace, missing manifest:
//! that is §4.1, in `fetch`) and it must not be used by the checkers (`oracle` is their
//! independent reference).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use crate::canary::{Canaries, Canary};
use crate::protocol::PreloadedKv;
use crate::records::KvEntryRecord;

use super::keyspace::{entry_size, wire_entry, KeyspaceRead, Snapshot};
use super::manifest::Manifest;

/// §4.2 over an in-memory `S@V`. `manifest` is normalized first (§3.3; a normalized manifest is
/// unchanged), so duplicates can never produce duplicate entries.
pub fn batch_preload(
    snapshot: &Snapshot,
    manifest: &Manifest,
    budget_t: u64,
    canaries: Canaries,
) -> PreloadedKv {
    let mut reader = snapshot;
    match batch_preload_from(&mut reader, manifest, budget_t, canaries) {
        Ok(bundle) => bundle,
        Err(never) => match never {},
    }
}

/// §4.2 over any keyspace reader (the fetch passes its store reader). Stops at the reader's first
/// error; the caller throws the partial result away (§2, retry).
pub fn batch_preload_from<R: KeyspaceRead + ?Sized>(
    reader: &mut R,
    manifest: &Manifest,
    budget_t: u64,
    canaries: Canaries,
) -> Result<PreloadedKv, R::Error> {
    let manifest = manifest.normalize();
    let charged_size = |key: &[u8], record: &KvEntryRecord| -> u64 {
        if canaries.on(Canary::PreloadSizeWithoutMetadata) {
            // Canary: the entry's metadata (version string and update_ts) is not counted.
            (key.len() + record.value.len()) as u64
        } else {
            entry_size(key, record)
        }
    };

    let mut total: u64 = 0;
    let mut entries = Vec::new();
    let mut requested_get_keys = Vec::new();
    let mut requested_prefixes = Vec::new();
    let mut placed: BTreeSet<Vec<u8>> = BTreeSet::new();

    // Phase A: get-keys, in manifest order.
    for key in &manifest.keys {
        // A1: once the budget is used up, this and every later get-key stay unrecorded.
        if total >= budget_t {
            break;
        }
        let Some(record) = reader.get(key)? else {
            // A2: absent, recorded, charges nothing.
            requested_get_keys.push(key.clone().into());
            continue;
        };
        if canaries.on(Canary::PreloadGetkeyBeforeBudget) {
            // Canary: recorded as requested before the fit check.
            requested_get_keys.push(key.clone().into());
        }
        let size = charged_size(key, &record);
        match total.checked_add(size) {
            Some(after) if after <= budget_t => {
                // A3: fits (inclusive).
                entries.push(wire_entry(key, &record));
                if !canaries.on(Canary::PreloadGetkeyBeforeBudget) {
                    requested_get_keys.push(key.clone().into());
                }
                placed.insert(key.clone());
                total = after;
            }
            // A4: does not fit: no entry, not recorded, nothing charged; a later key may fit.
            _ => {}
        }
    }

    // Phase B: prefixes, in priority order.
    for item in &manifest.prefixes {
        // B1.
        let limit = item.max_bytes.min(budget_t.saturating_sub(total));
        if limit == 0 {
            if canaries.on(Canary::PreloadRequestedIncludesSkipped) {
                // Canary: a skipped prefix is still listed.
                requested_prefixes.push(item.prefix.clone().into());
            }
            continue;
        }
        // B2: walk L(P) ascending; stop at the first new entry that does not fit.
        let mut used: u64 = 0;
        let mut run = Vec::new();
        let mut overflow = false;
        reader.walk_prefix(&item.prefix, &mut |key, record| {
            if placed.contains(key) {
                return ControlFlow::Continue(());
            }
            match used.checked_add(charged_size(key, record)) {
                Some(after) if after <= limit => {
                    run.push(wire_entry(key, record));
                    used = after;
                    ControlFlow::Continue(())
                }
                _ => {
                    overflow = true;
                    ControlFlow::Break(())
                }
            }
        })?;
        if overflow && !item.partial {
            // B3: discard; nothing recorded, nothing charged.
            if canaries.on(Canary::PreloadRequestedIncludesSkipped) {
                // Canary: a discarded prefix is still listed.
                requested_prefixes.push(item.prefix.clone().into());
            }
            continue;
        }
        // B4: record the run (complete, or the truncated run of a partial prefix).
        for entry in run {
            placed.insert(entry.key.to_vec());
            entries.push(entry);
        }
        requested_prefixes.push(item.prefix.clone().into());
        total += used;
    }

    Ok(PreloadedKv { entries, requested_get_keys, requested_prefixes })
}
