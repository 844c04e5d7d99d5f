//! `sweep` and `bench`: many independent runs on `std::thread::scope` threads (each run is its
//! own world; the world gives each its own madsim runtime), with progress on the console and a
//! report at the end. Results are gathered in `(scenario, seed)` order, so the report does not
//! depend on `--jobs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pegsim::failure::{git_commit, run_command};
use pegsim::report::{LatencyHistogram, ReportPart, SweepReport};
use pegsim::run::{RunOutcome, RunSpec, TraceMode};
use pegsim::seed::{SeedRange, Shard};
use pegsim_model::canary::Canaries;

use super::single::{write_failure, Written};
use super::{
    bad_input, load_scenario, one_line, run_guarded, violation_line, Context, LoadedScenario,
    RunFn, EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATION,
};

/// What `sweep` was asked to do.
pub(super) struct SweepPlan {
    pub scenarios: Vec<PathBuf>,
    pub seeds: SeedRange,
    pub jobs: usize,
    pub shard: Option<Shard>,
    pub canaries: Canaries,
    pub report: Option<PathBuf>,
}

/// Runs that could not run listed one by one before the rest are only counted.
const MAX_ERROR_LINES: usize = 10;

/// One run to do: a scenario (index into the loaded list) and a seed.
#[derive(Clone, Copy)]
struct Job {
    scenario: usize,
    seed: u64,
}

/// One run done.
struct Done {
    index: usize,
    result: Result<RunOutcome, String>,
    written: Option<Written>,
    wall_ms: u64,
}

/// The jobs of `scenarios × seeds` that belong to `shard`, scenario by scenario.
fn plan_jobs(scenarios: usize, seeds: SeedRange, shard: Shard) -> Vec<Job> {
    (0..scenarios)
        .flat_map(|scenario| seeds.iter_shard(shard).map(move |seed| Job { scenario, seed }))
        .collect()
}

struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
    failed: usize,
    last_decile: usize,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} seeds ({per_sec}) {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { bar, total, done: 0, failed: 0, last_decile: 0 }
    }

    /// Print `line` without breaking the bar.
    fn say(&self, out: &mut dyn Write, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| {
                let _ = writeln!(out, "{line}");
            }),
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }

    fn step(&mut self, out: &mut dyn Write, failed: bool) {
        self.done += 1;
        self.failed += usize::from(failed);
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{} failed", self.failed));
            }
            None => {
                let decile = self.done * 10 / self.total.max(1);
                if decile > self.last_decile {
                    self.last_decile = decile;
                    let _ = writeln!(
                        out,
                        "progress: {}/{} runs ({}%), {} failed",
                        self.done,
                        self.total,
                        self.done * 100 / self.total.max(1),
                        self.failed
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Run `jobs` on `threads` threads; calls `on_done` on this thread as each run ends; returns
/// every result in job order. Failing runs get a failure file when `failure_files` is set.
#[allow(clippy::too_many_arguments)]
fn run_all(
    ctx: &mut Context<'_>,
    loaded: &[LoadedScenario],
    jobs: &[Job],
    threads: usize,
    canaries: Canaries,
    out_dir: &Path,
    commit: &str,
    failure_files: bool,
) -> Vec<Done> {
    let run: RunFn = ctx.run;
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Done>();
    let mut progress = Progress::new(ctx.progress_bar, jobs.len());
    let mut results: Vec<Option<Done>> = Vec::new();
    results.resize_with(jobs.len(), || None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else { break };
                let Some(scenario) = loaded.get(job.scenario) else { break };
                let spec = RunSpec {
                    scenario_path: scenario.path.clone(),
                    scenario_text: scenario.text.clone(),
                    seed: job.seed,
                    canaries,
                    trace: TraceMode::Ring,
                };
                let started = Instant::now();
                let result = run_guarded(run, &spec);
                let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let written = match &result {
                    Ok(o) if !o.passed() && failure_files => {
                        Some(write_failure(run, out_dir, &spec, o, commit))
                    }
                    _ => None,
                };
                if tx.send(Done { index, result, written, wall_ms }).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut errors = 0usize;
        for done in rx {
            let job = jobs.get(done.index).copied();
            let name = job
                .and_then(|j| loaded.get(j.scenario))
                .map_or(String::new(), |s| s.scenario.name.clone());
            let seed = job.map_or(0, |j| j.seed);
            let failed = match &done.result {
                Ok(o) if !o.passed() => {
                    let first = o.violations.first().map(violation_line).unwrap_or_default();
                    progress.say(ctx.out, &format!("FAILED {name} seed {seed}: {first}"));
                    if let Some(w) = &done.written {
                        for note in &w.notes {
                            progress.say(ctx.out, &format!("  note: {note}"));
                        }
                        progress.say(ctx.out, &format!("  replay: {}", w.replay));
                    }
                    true
                }
                Ok(_) => false,
                Err(e) => {
                    errors += 1;
                    if errors <= MAX_ERROR_LINES {
                        progress.say(
                            ctx.out,
                            &format!("ERROR {name} seed {seed}: could not run: {}", one_line(e)),
                        );
                    } else if errors == MAX_ERROR_LINES + 1 {
                        progress.say(ctx.out, "(further runs that could not run are not listed)");
                    }
                    false
                }
            };
            progress.step(ctx.out, failed);
            if let Some(slot) = results.get_mut(done.index) {
                *slot = Some(done);
            }
        }
    });
    progress.finish();
    results.into_iter().flatten().collect()
}

fn load_all(ctx: &mut Context<'_>, paths: &[PathBuf]) -> Result<Vec<LoadedScenario>, u8> {
    let mut loaded = Vec::new();
    for p in paths {
        match load_scenario(p) {
            Ok(l) => loaded.push(l),
            Err(e) => return Err(bad_input(ctx, &e.to_string())),
        }
    }
    Ok(loaded)
}

fn canary_names(canaries: Canaries) -> Vec<String> {
    canaries.iter().map(|c| c.name().to_string()).collect()
}

fn top(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let items: Vec<String> =
        counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

pub(super) fn sweep(ctx: &mut Context<'_>, out_dir: &Path, plan: SweepPlan) -> u8 {
    let loaded = match load_all(ctx, &plan.scenarios) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let shard = plan.shard.unwrap_or(Shard::ALL);
    let jobs = plan_jobs(loaded.len(), plan.seeds, shard);
    let commit = git_commit();
    let shard_text = plan.shard.map(|s| s.to_string());
    let _ = writeln!(
        ctx.out,
        "sweep: {} runs ({} scenario(s), seeds {}{}, canaries {}, {} job(s))",
        jobs.len(),
        loaded.len(),
        plan.seeds,
        shard_text.as_ref().map_or(String::new(), |s| format!(" shard {s}")),
        plan.canaries,
        plan.jobs
    );
    let started = Instant::now();
    let done = run_all(ctx, &loaded, &jobs, plan.jobs, plan.canaries, out_dir, &commit, true);
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let names = canary_names(plan.canaries);
    let mut report = SweepReport::new(ReportPart {
        scenarios: loaded.iter().map(|l| l.path.display().to_string()).collect(),
        seeds: vec![plan.seeds.to_string()],
        shard: shard_text.clone(),
        canaries: names.clone(),
        commit,
    });
    for d in &done {
        let Some(job) = jobs.get(d.index) else { continue };
        let Some(scenario) = loaded.get(job.scenario) else { continue };
        match &d.result {
            Ok(o) => {
                let replay = d.written.as_ref().map_or_else(
                    || run_command(&scenario.path, job.seed, plan.canaries),
                    |w| w.replay.clone(),
                );
                let file = d.written.as_ref().and_then(|w| w.file.as_deref());
                report.add_outcome(&scenario.scenario.name, &names, o, &replay, file);
            }
            Err(e) => report.add_error(&scenario.scenario.name, job.seed, e),
        }
    }
    report.finish(wall_ms);
    print_summary(ctx, &report);
    let missing = missing_required_probes(&loaded, &jobs, &done);
    for (scenario, probe) in &missing {
        let _ = writeln!(
            ctx.out,
            "REQUIRED PROBE NOT HIT: {scenario}: no seed reached `{probe}` (see [coverage] required)"
        );
    }
    if let Some(dir) = &plan.report {
        let stem = plan
            .shard
            .map_or("report".to_string(), |s| format!("report-shard-{}-of-{}", s.index, s.count));
        match report.write(dir, &stem) {
            Ok((json, md)) => {
                let _ = writeln!(ctx.out, "report: {} and {}", json.display(), md.display());
            }
            Err(e) => return bad_input(ctx, &e.to_string()),
        }
    }
    if missing.is_empty() {
        exit_code(ctx, &report)
    } else {
        exit_code(ctx, &report).max(EXIT_VIOLATION)
    }
}

/// `(scenario name, probe)` for every probe a scenario's `[coverage] required` lists that none of
/// its runs hit.
fn missing_required_probes(
    loaded: &[LoadedScenario],
    jobs: &[Job],
    done: &[Done],
) -> Vec<(String, String)> {
    let mut hit: Vec<std::collections::BTreeSet<&str>> = vec![Default::default(); loaded.len()];
    for d in done {
        let (Some(job), Ok(outcome)) = (jobs.get(d.index), &d.result) else { continue };
        if let Some(set) = hit.get_mut(job.scenario) {
            set.extend(
                outcome.probe_counts.iter().filter(|(_, n)| **n > 0).map(|(p, _)| p.as_str()),
            );
        }
    }
    let mut missing = Vec::new();
    for (l, hit) in loaded.iter().zip(&hit) {
        for probe in &l.scenario.coverage.required {
            if !hit.contains(probe.as_str()) {
                missing.push((l.scenario.name.clone(), probe.clone()));
            }
        }
    }
    missing
}

fn exit_code(ctx: &mut Context<'_>, report: &SweepReport) -> u8 {
    if report.failed > 0 {
        EXIT_VIOLATION
    } else if report.errored > 0 {
        let first = report.errors.first().map_or(String::new(), |e| one_line(&e.error));
        let _ = writeln!(
            ctx.err,
            "pegsim: error: {} of {} runs could not run (first: {first})",
            report.errored, report.seeds_run
        );
        EXIT_BAD_INPUT
    } else {
        EXIT_HELD
    }
}

fn print_summary(ctx: &mut Context<'_>, r: &SweepReport) {
    let out = &mut *ctx.out;
    let _ = writeln!(
        out,
        "done: {} runs, {} passed, {} failed, {} could not run, {} outside the timing envelope; {:.1} s wall, {:.2} seeds/s, {:.0} simulated ms per wall second",
        r.seeds_run,
        r.passed,
        r.failed,
        r.errored,
        r.outside_envelope_runs,
        r.wall_ms as f64 / 1000.0,
        r.seeds_per_sec,
        r.sim_ms_per_wall_sec
    );
    let _ = writeln!(out, "fault classes fired: {}", top(&r.fault_counts));
    let never = if r.faults_never_fired.is_empty() {
        "none".to_string()
    } else {
        r.faults_never_fired.join(", ")
    };
    let _ = writeln!(out, "fault classes never fired: {never}");
    let _ = writeln!(out, "probes hit: {}", top(&r.probe_counts));
    for (metric, l) in r.latency_summaries() {
        let _ = writeln!(
            out,
            "latency {metric} (ms): n={} p50={} p90={} p99={} max={}",
            l.count, l.p50, l.p90, l.p99, l.max
        );
    }
    if !r.failures.is_empty() {
        let _ = writeln!(out, "failures:");
        for f in &r.failures {
            let first = f.violations.first().map(violation_line).unwrap_or_default();
            let _ = writeln!(out, "  {} seed {}: {first}", f.scenario, f.seed);
            let _ = writeln!(out, "    replay: {}", f.replay);
        }
    }
}

pub(super) fn bench(
    ctx: &mut Context<'_>,
    out_dir: &Path,
    scenario: &Path,
    seeds: SeedRange,
    jobs: usize,
    canaries: Canaries,
) -> u8 {
    let loaded = match load_all(ctx, &[scenario.to_path_buf()]) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let plan = plan_jobs(1, seeds, Shard::ALL);
    let started = Instant::now();
    let done = run_all(ctx, &loaded, &plan, jobs, canaries, out_dir, "", false);
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
    let mut report = SweepReport::new(ReportPart::default());
    let mut per_run = Vec::new();
    for d in &done {
        per_run.push(d.wall_ms);
        let seed = plan.get(d.index).map_or(0, |j| j.seed);
        match &d.result {
            Ok(o) => report.add_outcome("", &[], o, "", None),
            Err(e) => report.add_error("", seed, e),
        }
    }
    report.finish(wall_ms);
    let l = LatencyHistogram::from_samples(&per_run).summary();
    let _ = writeln!(
        ctx.out,
        "bench: {} runs in {:.2} s with {jobs} job(s): {:.2} seeds/s, {:.0} simulated ms per wall second; wall ms per run p50={} p90={} max={}; {} failed, {} could not run",
        report.seeds_run,
        wall_ms as f64 / 1000.0,
        report.seeds_per_sec,
        report.sim_ms_per_wall_sec,
        l.p50,
        l.p90,
        l.max,
        report.failed,
        report.errored
    );
    exit_code(ctx, &report)
}

/// The `(scenario, seed)` pairs of [`plan_jobs`], for tests.
#[cfg(test)]
pub(super) fn plan_jobs_for_test(
    scenarios: usize,
    seeds: SeedRange,
    shard: Shard,
) -> Vec<(usize, u64)> {
    plan_jobs(scenarios, seeds, shard).into_iter().map(|j| (j.scenario, j.seed)).collect()
}
