//! `run` (one seed) and `replay` (a failure file).

use std::path::{Path, PathBuf};

use pegsim::failure::{git_commit, run_command, FailureFile, Reproduction};
use pegsim::run::{RunOutcome, RunSpec, TraceMode};
use pegsim_model::canary::Canaries;

use super::{
    bad_input, classes_on, load_scenario, run_guarded, run_stem, violation_line, Context, RunFn,
    EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATION,
};

/// A failing run, written down: the failure file's path and its replay line, plus a note when
/// the traced re-run did not match.
pub(super) struct Written {
    pub file: Option<PathBuf>,
    pub replay: String,
    pub notes: Vec<String>,
}

/// Re-run a failing `spec` with a trace file (unless it already had one) and write its failure
/// file under `<out>/failures/`.
pub(super) fn write_failure(
    run: RunFn,
    out_dir: &Path,
    spec: &RunSpec,
    outcome: &RunOutcome,
    commit: &str,
) -> Written {
    let mut notes = Vec::new();
    let trace_path = match &spec.trace {
        TraceMode::File(p) => Some(p.clone()),
        TraceMode::Ring => {
            let path = out_dir
                .join("traces")
                .join(format!("{}.trace", run_stem(&spec.scenario_path, spec.seed, spec.canaries)));
            let traced = RunSpec { trace: TraceMode::File(path.clone()), ..spec.clone() };
            match run_guarded(run, &traced) {
                Ok(again) if again.trace_hash == outcome.trace_hash => Some(path),
                Ok(again) => {
                    notes.push(format!(
                        "NOT DETERMINISTIC: the traced re-run gave trace hash {:016x}, the run {:016x}",
                        again.trace_hash, outcome.trace_hash
                    ));
                    Some(path)
                }
                Err(e) => {
                    notes.push(format!("the traced re-run could not run: {e}"));
                    None
                }
            }
        }
    };
    let mut file = FailureFile::new(spec, outcome, commit, trace_path);
    match file.write(&out_dir.join("failures")) {
        Ok(path) => Written { file: Some(path), replay: file.replay_command(), notes },
        Err(e) => {
            notes.push(e.to_string());
            Written {
                file: None,
                replay: run_command(&spec.scenario_path, spec.seed, spec.canaries),
                notes,
            }
        }
    }
}

fn print_outcome(ctx: &mut Context<'_>, outcome: &RunOutcome) {
    let on = classes_on(&outcome.derived_config);
    let _ = writeln!(
        ctx.out,
        "seed {}: {}; trace hash {:016x}; {} history entries; {} ms simulated; faults on: {}",
        outcome.seed,
        if outcome.passed() { "every invariant held" } else { "FAILED" },
        outcome.trace_hash,
        outcome.history_len,
        outcome.sim_ms,
        if on.is_empty() { "none".to_string() } else { on.join(", ") }
    );
    for v in &outcome.violations {
        let _ = writeln!(ctx.out, "  violation: {}", violation_line(v));
    }
    for v in &outcome.outside_envelope {
        let _ = writeln!(
            ctx.out,
            "  outside the timing envelope (not a failure): {}",
            violation_line(v)
        );
    }
}

pub(super) fn run(
    ctx: &mut Context<'_>,
    out_dir: &Path,
    scenario: &Path,
    seed: u64,
    canaries: Canaries,
    trace: Option<PathBuf>,
) -> u8 {
    let loaded = match load_scenario(scenario) {
        Ok(l) => l,
        Err(e) => return bad_input(ctx, &e.to_string()),
    };
    let spec = RunSpec {
        scenario_path: loaded.path,
        scenario_text: loaded.text,
        seed,
        canaries,
        trace: trace.clone().map_or(TraceMode::Ring, TraceMode::File),
    };
    let outcome = match run_guarded(ctx.run, &spec) {
        Ok(o) => o,
        Err(e) => return bad_input(ctx, &format!("seed {seed} could not run: {e}")),
    };
    print_outcome(ctx, &outcome);
    if let Some(t) = &trace {
        let _ = writeln!(ctx.out, "trace: {}", t.display());
    }
    if outcome.passed() {
        return EXIT_HELD;
    }
    let written = write_failure(ctx.run, out_dir, &spec, &outcome, &git_commit());
    for note in &written.notes {
        let _ = writeln!(ctx.out, "note: {note}");
    }
    if let Some(f) = &written.file {
        let _ = writeln!(ctx.out, "failure file: {}", f.display());
    }
    let _ = writeln!(ctx.out, "replay: {}", written.replay);
    EXIT_VIOLATION
}

pub(super) fn replay(ctx: &mut Context<'_>, path: &Path, trace: Option<PathBuf>) -> u8 {
    let file = match FailureFile::load(path) {
        Ok(f) => f,
        Err(e) => return bad_input(ctx, &e.to_string()),
    };
    let spec = file.run_spec(trace.map_or(TraceMode::Ring, TraceMode::File));
    let outcome = match run_guarded(ctx.run, &spec) {
        Ok(o) => o,
        Err(e) => return bad_input(ctx, &format!("the replay could not run: {e}")),
    };
    print_outcome(ctx, &outcome);
    let commit = git_commit();
    let same_build = commit == file.commit && !commit.ends_with("+dirty") && commit != "unknown";
    if same_build && outcome.trace_hash != file.trace_hash {
        let _ = writeln!(
            ctx.out,
            "note: NOT DETERMINISTIC: trace hash {:016x} differs from the recorded {:016x} on the same commit",
            outcome.trace_hash, file.trace_hash
        );
    }
    match file.reproduction(&outcome) {
        Reproduction::Same => {
            let first = outcome.violations.first().map(|v| v.invariant.as_str()).unwrap_or("");
            let at = outcome.violations.first().map_or(0, |v| v.at_ms);
            let _ = writeln!(ctx.out, "reproduced: {first} at {at} ms, as recorded");
            EXIT_VIOLATION
        }
        Reproduction::Different { expected, got } => {
            let _ = writeln!(
                ctx.out,
                "a different failure: recorded {expected}, now {got} (recorded on {}, now {commit})",
                file.commit
            );
            EXIT_VIOLATION
        }
        Reproduction::Passed => {
            let _ = writeln!(
                ctx.out,
                "did not reproduce: every invariant held (recorded on {}, now {commit})",
                file.commit
            );
            if file.violations.is_empty() {
                let _ = writeln!(ctx.err, "pegsim: error: {} records no violation", path.display());
                return EXIT_BAD_INPUT;
            }
            EXIT_HELD
        }
    }
}
