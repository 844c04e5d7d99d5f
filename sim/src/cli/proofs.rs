//! `pegsim canaries`: the canary proofs. For every entry of the proof file
//! (`scenarios/canaries.toml`: canary, scenario, accepted invariants, seed budget), run the
//! scenario with the canary on, seed after seed from the start of a range, until a seed fails;
//! the proof holds when that first failing seed's first violation is one of the accepted
//! invariants and it came within the budget. `--ranges N` repeats this over N seed ranges
//! (starting at `0, RANGE_STRIDE, 2·RANGE_STRIDE, …`) and prints the median and worst seeds to
//! detection, which is what the README's canary table shows (`--table` prints its rows).
//!
//! Choices where the issue is silent:
//! - Seeds are run `--jobs` at a time in order; the detection seed is the lowest failing seed,
//!   so the result does not depend on `--jobs`.
//! - A first failing seed that reports an invariant outside the accepted list fails the proof
//!   (spec/canaries.md: "of the invariant listed, not of some unrelated one"), even if a later
//!   seed would report an accepted one.
//! - "Seeds to detection" counts the failing seed itself: caught on the first seed is 1.
//! - Wall time to detection is the wall time of the runs up to and including the detecting
//!   batch, measured here; it depends on the machine and `--jobs` and is printed, never asserted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pegsim::run::{RunSpec, TraceMode};
use pegsim_model::canary::{Canaries, Canary};
use serde::Deserialize;

use super::batch::{run_batch, toml_error};
use super::{bad_input, load_scenario, one_line, Context, EXIT_HELD, EXIT_VIOLATION};

/// Where the `r`-th range of `--ranges` starts: `r × RANGE_STRIDE`.
pub const RANGE_STRIDE: u64 = 10_000;

/// The proof file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofFile {
    #[serde(default)]
    canary: Vec<ProofEntry>,
}

/// One canary proof.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofEntry {
    /// The canary (`spec/canaries.md` name).
    name: String,
    /// `name`, parsed.
    #[serde(skip, default = "placeholder")]
    canary: Canary,
    /// The scenario file, relative to the proof file's folder.
    scenario: PathBuf,
    /// Invariant ids (`S4`, `L10`, `P2`, `DATA-LOSS`, …) that may report the canary.
    expect: Vec<String>,
    /// Seeds a range may spend before the canary counts as not caught.
    budget: u64,
}

/// What `canaries` was asked to do.
pub(super) struct ProofPlan {
    pub file: PathBuf,
    pub only: Vec<Canary>,
    pub ranges: u64,
    pub jobs: usize,
    pub table: bool,
}

/// How one range of one proof ended.
enum RangeResult {
    /// The first failing seed, how many seeds that took, the invariant id, wall ms.
    Caught { seed: u64, seeds: u64, invariant: String, wall_ms: u64 },
    /// The first failing seed reported an invariant not in `expect`.
    Unexpected { seed: u64, line: String },
    /// No seed of the budget failed.
    Missed,
    /// A run could not run.
    Error(String),
}

fn placeholder() -> Canary {
    Canary::ALL[0]
}

fn load(path: &Path) -> Result<ProofFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the proof file: {e}", path.display()))?;
    let mut file: ProofFile = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
    for (i, entry) in file.canary.iter_mut().enumerate() {
        entry.canary = entry.name.parse().map_err(|e| {
            format!("{}: canary entry {}: field `name`: {e}", path.display(), i + 1)
        })?;
        if entry.budget == 0 || entry.expect.is_empty() {
            return Err(format!(
                "{}: canary entry {} ({}): `budget` must be at least 1 and `expect` non-empty",
                path.display(),
                i + 1,
                entry.canary.name()
            ));
        }
    }
    Ok(file)
}

pub(super) fn canaries(ctx: &mut Context<'_>, plan: ProofPlan) -> u8 {
    let file = match load(&plan.file) {
        Ok(f) => f,
        Err(e) => return bad_input(ctx, &e),
    };
    let dir = plan.file.parent().unwrap_or(Path::new("."));
    let entries: Vec<&ProofEntry> = file
        .canary
        .iter()
        .filter(|e| plan.only.is_empty() || plan.only.contains(&e.canary))
        .collect();
    if entries.is_empty() {
        return bad_input(ctx, &format!("{}: no canary proof to run", plan.file.display()));
    }
    for want in &plan.only {
        if !file.canary.iter().any(|e| e.canary == *want) {
            return bad_input(
                ctx,
                &format!("{}: no proof for canary `{}`", plan.file.display(), want.name()),
            );
        }
    }
    let _ = writeln!(
        ctx.out,
        "canary proofs: {} canaries × {} seed range(s), {} job(s)",
        entries.len(),
        plan.ranges,
        plan.jobs
    );
    let mut failed = 0usize;
    let mut rows = Vec::new();
    for entry in entries {
        let path = dir.join(&entry.scenario);
        let loaded = match load_scenario(&path) {
            Ok(l) => l,
            Err(e) => return bad_input(ctx, &e.to_string()),
        };
        let mut caught = Vec::new();
        let mut ok = true;
        for r in 0..plan.ranges {
            let start = r * RANGE_STRIDE;
            let result = prove_range(ctx, entry, &loaded.path, &loaded.text, start, plan.jobs);
            let label =
                format!("{} on {} (seeds {start}..)", entry.canary.name(), loaded.scenario.name);
            match result {
                RangeResult::Caught { seed, seeds, invariant, wall_ms } => {
                    let _ = writeln!(
                        ctx.out,
                        "caught   {label}: seed {seed} ({seeds} seed(s)) as {invariant}, {:.1} s",
                        wall_ms as f64 / 1000.0
                    );
                    caught.push((seeds, wall_ms));
                }
                RangeResult::Unexpected { seed, line } => {
                    ok = false;
                    let _ = writeln!(
                        ctx.out,
                        "WRONG    {label}: seed {seed} reported {line}; expected one of {}",
                        entry.expect.join(", ")
                    );
                    let _ = writeln!(
                        ctx.out,
                        "  replay: {}",
                        pegsim::failure::run_command(&path, seed, Canaries::only(entry.canary))
                    );
                }
                RangeResult::Missed => {
                    ok = false;
                    let _ = writeln!(
                        ctx.out,
                        "MISSED   {label}: no violation within {} seeds",
                        entry.budget
                    );
                }
                RangeResult::Error(e) => {
                    ok = false;
                    let _ = writeln!(ctx.out, "ERROR    {label}: {}", one_line(&e));
                }
            }
        }
        failed += usize::from(!ok);
        let mut seeds: Vec<u64> = caught.iter().map(|c| c.0).collect();
        seeds.sort_unstable();
        let mut walls: Vec<u64> = caught.iter().map(|c| c.1).collect();
        walls.sort_unstable();
        let median = |v: &[u64]| v.get(v.len() / 2).copied();
        let _ = writeln!(
            ctx.out,
            "summary  {}: {}/{} range(s) caught within {} seeds; seeds to detection median {} worst {}; wall to detection median {}",
            entry.canary.name(),
            caught.len(),
            plan.ranges,
            entry.budget,
            median(&seeds).map_or("-".into(), |m| m.to_string()),
            seeds.last().map_or("-".into(), |m| m.to_string()),
            median(&walls).map_or("-".into(), |m| format!("{:.1} s", m as f64 / 1000.0)),
        );
        rows.push(format!(
            "| `{}` | `{}` | {} | {} | {} | {} |",
            entry.canary.name(),
            path.display(),
            entry.expect.join(", "),
            median(&seeds).map_or("not caught".into(), |m| m.to_string()),
            seeds.last().map_or("-".into(), |m| m.to_string()),
            median(&walls).map_or("-".into(), |m| format!("{:.1} s", m as f64 / 1000.0)),
        ));
    }
    if plan.table {
        let _ = writeln!(
            ctx.out,
            "\n| canary | scenario | reported as | seeds to detection (median) | (worst) | wall time to detection (median) |\n|---|---|---|---|---|---|"
        );
        for row in rows {
            let _ = writeln!(ctx.out, "{row}");
        }
    }
    if failed > 0 {
        let _ = writeln!(ctx.out, "canary proofs: {failed} FAILED");
        EXIT_VIOLATION
    } else {
        let _ = writeln!(ctx.out, "canary proofs: every canary caught as expected");
        EXIT_HELD
    }
}

/// Run seeds `start..start + budget`, `jobs` at a time, until one fails.
fn prove_range(
    ctx: &Context<'_>,
    entry: &ProofEntry,
    path: &Path,
    text: &str,
    start: u64,
    jobs: usize,
) -> RangeResult {
    let started = Instant::now();
    let canaries = Canaries::only(entry.canary);
    let end = start.saturating_add(entry.budget);
    let mut seed = start;
    while seed < end {
        let batch_end = seed.saturating_add(jobs.max(1) as u64).min(end);
        let specs: Vec<RunSpec> = (seed..batch_end)
            .map(|s| RunSpec {
                scenario_path: path.to_path_buf(),
                scenario_text: text.to_string(),
                seed: s,
                canaries,
                trace: TraceMode::Ring,
            })
            .collect();
        let results = run_batch(ctx.run, &specs, jobs);
        for (s, result) in (seed..batch_end).zip(results) {
            let outcome = match result {
                Ok(o) => o,
                Err(e) => return RangeResult::Error(format!("seed {s}: {e}")),
            };
            let Some(first) = outcome.violations.first() else { continue };
            if entry.expect.iter().any(|e| e == first.id()) {
                return RangeResult::Caught {
                    seed: s,
                    seeds: s - start + 1,
                    invariant: first.invariant.clone(),
                    wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
            }
            return RangeResult::Unexpected { seed: s, line: super::violation_line(first) };
        }
        seed = batch_end;
    }
    RangeResult::Missed
}
