//! `check-determinism`: every seed runs twice, once in this process and once in a fresh process,
//! both with trace files; their trace hashes (FNV-1a of the files) must be equal, must equal the
//! hash the in-process run reported, and different seeds must give different hashes (a seed that
//! does not reach the world would give equal ones). On a difference the first differing line of
//! the two trace files is printed. Trace files of seeds that passed the check are removed; the
//! others stay under `<out>/determinism/`.

use std::collections::BTreeMap;
use std::path::Path;

use pegsim::history::{first_difference, trace_file_hash};
use pegsim::run::{RunSpec, TraceMode};
use pegsim::seed::SeedRange;
use pegsim_model::canary::Canaries;

use super::{
    bad_input, load_scenario, run_guarded, run_stem, ChildRun, Context, EXIT_HELD, EXIT_VIOLATION,
};

pub(super) fn check(
    ctx: &mut Context<'_>,
    out_dir: &Path,
    scenario: &Path,
    seeds: SeedRange,
    canaries: Canaries,
) -> u8 {
    let loaded = match load_scenario(scenario) {
        Ok(l) => l,
        Err(e) => return bad_input(ctx, &e.to_string()),
    };
    let dir = out_dir.join("determinism");
    let child_out = dir.join("child-out");
    let mut seed_of_hash: BTreeMap<u64, u64> = BTreeMap::new();
    let mut broken = 0u64;
    let mut list: Vec<u64> = seeds.iter().collect();
    if let [only] = list.as_slice() {
        // One seed alone cannot show that seeds matter; compare it with its successor too.
        list.push(only.wrapping_add(1));
    }
    for seed in list {
        let stem = run_stem(&loaded.path, seed, canaries);
        let here = dir.join(format!("{stem}.here.trace"));
        let fresh = dir.join(format!("{stem}.fresh.trace"));
        let spec = RunSpec {
            scenario_path: loaded.path.clone(),
            scenario_text: loaded.text.clone(),
            seed,
            canaries,
            trace: TraceMode::File(here.clone()),
        };
        let outcome = match run_guarded(ctx.run, &spec) {
            Ok(o) => o,
            Err(e) => return bad_input(ctx, &format!("seed {seed} could not run: {e}")),
        };
        let child =
            ChildRun { scenario: &loaded.path, seed, canaries, trace: &fresh, out_dir: &child_out };
        if let Err(e) = (ctx.child)(&child, ctx.run) {
            return bad_input(ctx, &format!("seed {seed}: {e}"));
        }
        let (hash_here, hash_fresh) = match (trace_file_hash(&here), trace_file_hash(&fresh)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return bad_input(ctx, &e.to_string()),
        };
        let mut ok = true;
        if hash_here != outcome.trace_hash {
            ok = false;
            let _ = writeln!(
                ctx.out,
                "seed {seed}: the run reported trace hash {:016x} but its trace file hashes to {hash_here:016x}",
                outcome.trace_hash
            );
        }
        if hash_here != hash_fresh {
            ok = false;
            let _ = writeln!(
                ctx.out,
                "seed {seed}: NOT DETERMINISTIC: trace hash {hash_here:016x} in this process, {hash_fresh:016x} in a fresh process"
            );
            match first_difference(&here, &fresh) {
                Ok(Some((line, a, b))) => {
                    let show = |l: Option<String>| {
                        l.unwrap_or_else(|| "(no line: the trace ended)".into())
                    };
                    let _ = writeln!(ctx.out, "  first difference at line {line}:");
                    let _ = writeln!(ctx.out, "    this process:  {}", show(a));
                    let _ = writeln!(ctx.out, "    fresh process: {}", show(b));
                    let _ =
                        writeln!(ctx.out, "  traces: {} and {}", here.display(), fresh.display());
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = writeln!(ctx.out, "  cannot compare the traces: {e}");
                }
            }
        }
        if let Some(other) = seed_of_hash.insert(hash_here, seed) {
            ok = false;
            let _ = writeln!(
                ctx.out,
                "seeds {other} and {seed} give the same trace hash {hash_here:016x}: the seed does not reach the world"
            );
        }
        if ok {
            let _ = writeln!(
                ctx.out,
                "seed {seed}: deterministic, trace hash {hash_here:016x}, {} lines",
                outcome.history_len
            );
            let _ = std::fs::remove_file(&here);
            let _ = std::fs::remove_file(&fresh);
        } else {
            broken += 1;
        }
    }
    if broken == 0 {
        let _ = writeln!(
            ctx.out,
            "determinism: every seed gave the same trace twice, and seeds differ"
        );
        EXIT_HELD
    } else {
        let _ = writeln!(ctx.out, "determinism: {broken} seed(s) failed the check");
        EXIT_VIOLATION
    }
}
