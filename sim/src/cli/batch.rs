//! A batch of independent runs on `std::thread::scope` threads, results in input order. Used by
//! the commands that run a handful of specific `(scenario, seed, canaries)` runs (`canaries`,
//! `regress`) rather than a seed range (`sweep`, which has its own progress and report), and
//! the TOML error message both of their input files use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pegsim::run::{RunOutcome, RunSpec};

use super::{run_guarded, RunFn};

/// Run every spec, at most `threads` at once; the result of `specs[i]` is at index `i`.
pub(super) fn run_batch(
    run: RunFn,
    specs: &[RunSpec],
    threads: usize,
) -> Vec<Result<RunOutcome, String>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunOutcome, String>>>> =
        Mutex::new(specs.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, specs.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(index) else { break };
                let result = run_guarded(run, spec);
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = all.get_mut(index) {
                    *slot = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("the run did not report".to_string())))
        .collect()
}

/// `file:line: message` for a TOML file that did not parse into the expected shape.
pub(super) fn toml_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> String {
    let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    let at = line.map_or(String::new(), |l| format!(":{l}"));
    format!("{}{at}: {}", path.display(), super::one_line(e.message()))
}
