//! `pegsim regress`: the regression seed corpus (`scenarios/regressions.toml`), replayed on every
//! CI run, and `pegsim regress add <failure file>`, which appends the failure a sweep found.
//!
//! An entry is `(scenario, seed, canaries, expect, found)`:
//! - without canaries, `expect = "pass"`: the seed once exposed a defect of the model or the
//!   testbed (`found` says which and what fixed it); it must hold from now on;
//! - with canaries, `expect` is the invariant id the seed reports (`S4`, `P2`, …): the seed is a
//!   known detection of that canary and must keep reporting that invariant.
//!
//! Choices where the issue is silent:
//! - `add` of a failure without canaries writes `expect = "pass"`, so CI fails until the defect
//!   is fixed: adding a seed is how a bug is put on the to-do list that CI enforces.
//! - `add` refuses a `(scenario, seed, canaries)` already in the corpus, and a failure file
//!   whose scenario is not inside the corpus's folder (entries are relative to it, so the
//!   corpus works from any checkout).
//! - The entry is appended as text, so comments and order of the file are kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use pegsim::failure::{run_command, FailureFile};
use pegsim::run::{RunSpec, TraceMode};
use pegsim_model::canary::{Canaries, Canary};
use serde::Deserialize;

use super::batch::{run_batch, toml_error};
use super::{
    bad_input, load_scenario, one_line, violation_line, Context, EXIT_HELD, EXIT_VIOLATION,
};

/// `expect` of an entry that must hold.
pub const EXPECT_PASS: &str = "pass";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    #[serde(default)]
    regression: Vec<Regression>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Regression {
    /// The scenario file, relative to the corpus's folder.
    scenario: PathBuf,
    seed: u64,
    #[serde(default)]
    canaries: Vec<String>,
    /// `"pass"`, or the invariant id the run must report.
    expect: String,
    /// What the seed found, and what fixed it.
    found: String,
}

fn load(path: &Path) -> Result<Corpus, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Corpus::default()),
        Err(e) => return Err(format!("{}: cannot read the corpus: {e}", path.display())),
    };
    toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))
}

fn canary_set(names: &[String], path: &Path, entry: usize) -> Result<Canaries, String> {
    names
        .iter()
        .map(|n| {
            n.parse::<Canary>().map_err(|e| {
                format!("{}: regression {entry}: field `canaries`: {e}", path.display())
            })
        })
        .collect()
}

/// Replay every entry of the corpus.
pub(super) fn run(ctx: &mut Context<'_>, corpus_path: &Path, jobs: usize) -> u8 {
    let corpus = match load(corpus_path) {
        Ok(c) => c,
        Err(e) => return bad_input(ctx, &e),
    };
    let dir = corpus_path.parent().unwrap_or(Path::new("."));
    let mut specs = Vec::new();
    for (i, r) in corpus.regression.iter().enumerate() {
        let canaries = match canary_set(&r.canaries, corpus_path, i + 1) {
            Ok(c) => c,
            Err(e) => return bad_input(ctx, &e),
        };
        let loaded = match load_scenario(&dir.join(&r.scenario)) {
            Ok(l) => l,
            Err(e) => return bad_input(ctx, &e.to_string()),
        };
        specs.push(RunSpec {
            scenario_path: loaded.path,
            scenario_text: loaded.text,
            seed: r.seed,
            canaries,
            trace: TraceMode::Ring,
        });
    }
    let _ =
        writeln!(ctx.out, "regressions: {} entries from {}", specs.len(), corpus_path.display());
    let results = run_batch(ctx.run, &specs, jobs);
    let mut failed = 0;
    for ((r, spec), result) in corpus.regression.iter().zip(&specs).zip(results) {
        let label = format!(
            "{} seed {}{}",
            r.scenario.display(),
            r.seed,
            if spec.canaries.is_empty() { String::new() } else { format!(" [{}]", spec.canaries) }
        );
        let verdict = match &result {
            Err(e) => Err(format!("could not run: {}", one_line(e))),
            Ok(o) => match (r.expect.as_str(), o.violations.first()) {
                (EXPECT_PASS, None) => Ok("held".to_string()),
                (EXPECT_PASS, Some(v)) => Err(format!("violated: {}", violation_line(v))),
                (want, Some(v)) if v.id() == want => Ok(format!("reported {}", v.invariant)),
                (want, Some(v)) => Err(format!("expected {want}, reported {}", violation_line(v))),
                (want, None) => Err(format!("expected {want}, every invariant held")),
            },
        };
        match verdict {
            Ok(what) => {
                let _ = writeln!(ctx.out, "ok       {label}: {what} ({})", one_line(&r.found));
            }
            Err(what) => {
                failed += 1;
                let _ = writeln!(ctx.out, "FAILED   {label}: {what}");
                let _ = writeln!(ctx.out, "  found:  {}", one_line(&r.found));
                let _ = writeln!(
                    ctx.out,
                    "  replay: {}",
                    run_command(&spec.scenario_path, spec.seed, spec.canaries)
                );
            }
        }
    }
    let _ = writeln!(ctx.out, "regressions: {} held, {failed} failed", specs.len() - failed);
    if failed > 0 {
        EXIT_VIOLATION
    } else {
        EXIT_HELD
    }
}

/// Append the failure of `failure_path` to the corpus.
pub(super) fn add(
    ctx: &mut Context<'_>,
    corpus_path: &Path,
    failure_path: &Path,
    note: Option<&str>,
) -> u8 {
    let failure = match FailureFile::load(failure_path) {
        Ok(f) => f,
        Err(e) => return bad_input(ctx, &e.to_string()),
    };
    let corpus = match load(corpus_path) {
        Ok(c) => c,
        Err(e) => return bad_input(ctx, &e),
    };
    let dir = corpus_path.parent().unwrap_or(Path::new("."));
    let scenario = match relative_to(&failure.scenario_path, dir) {
        Some(p) => p,
        None => {
            return bad_input(
                ctx,
                &format!(
                    "{}: its scenario {} is not inside {}, the corpus's folder",
                    failure_path.display(),
                    failure.scenario_path.display(),
                    dir.display()
                ),
            )
        }
    };
    let mut canaries = failure.canaries.clone();
    canaries.sort();
    let duplicate = corpus.regression.iter().any(|r| {
        let mut theirs = r.canaries.clone();
        theirs.sort();
        r.scenario == scenario && r.seed == failure.seed && theirs == canaries
    });
    if duplicate {
        return bad_input(
            ctx,
            &format!(
                "{} seed {} is already in {}",
                scenario.display(),
                failure.seed,
                corpus_path.display()
            ),
        );
    }
    let first = failure.violations.first();
    let expect = if canaries.is_empty() {
        EXPECT_PASS.to_string()
    } else {
        first.map_or(EXPECT_PASS.to_string(), |v| v.id().to_string())
    };
    let found = match (note, first) {
        (Some(n), _) => n.to_string(),
        (None, Some(v)) => format!(
            "{} at {} ms (commit {}): {}",
            v.invariant,
            v.at_ms,
            failure.commit,
            one_line(&v.detail)
        ),
        (None, None) => format!("added from {}", failure_path.display()),
    };
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let entry = format!(
        "\n[[regression]]\nscenario = {}\nseed = {}\ncanaries = [{}]\nexpect = {}\nfound = {}\n",
        quoted(&scenario.to_string_lossy()),
        failure.seed,
        canaries.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", "),
        quoted(&expect),
        quoted(&found)
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(corpus_path)
        .and_then(|mut f| f.write_all(entry.as_bytes()));
    if let Err(e) = written {
        return bad_input(ctx, &format!("{}: cannot append: {e}", corpus_path.display()));
    }
    let _ = writeln!(
        ctx.out,
        "added {} seed {} (expect {expect}) to {}",
        scenario.display(),
        failure.seed,
        corpus_path.display()
    );
    EXIT_HELD
}

/// `path` relative to `dir`, when it lies inside it (compared after making both absolute).
fn relative_to(path: &Path, dir: &Path) -> Option<PathBuf> {
    let abs = |p: &Path| std::fs::canonicalize(p).ok();
    let (path, dir) = (abs(path)?, abs(dir)?);
    path.strip_prefix(&dir).ok().map(Path::to_path_buf)
}
