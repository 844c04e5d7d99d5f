//! Tests of the command line, driven by fake worlds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pegsim::history::{trace_file_hash, History};
use pegsim::report::SweepReport;
use pegsim::run::{Entry, RunOutcome, RunSpec, TraceMode, Violation};
use pegsim::scenario::Scenario;
use pegsim::seed::SeedStreams;

use super::*;

const SCENARIO: &str =
    "name = \"fake\"\n[faults.partition]\nenabled = 0.5\n[faults.bus_loss]\nenabled = 1.0\n";

/// A fresh folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pegsim-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn scenario_file(dir: &Path) -> PathBuf {
    let path = dir.join("fake.toml");
    std::fs::write(&path, SCENARIO).unwrap();
    path
}

/// A fake world: a deterministic history of a few entries that depend on the seed (plus
/// `extra`), violations as `fail` decides.
fn fake_world(
    spec: &RunSpec,
    extra: Option<u64>,
    fail: impl Fn(u64) -> Option<u64>,
) -> Result<RunOutcome, String> {
    let scenario =
        Scenario::parse(&spec.scenario_text, &spec.scenario_path).map_err(|e| e.to_string())?;
    let derived = scenario.draw(&SeedStreams::new(spec.seed));
    let mut history = History::new(spec.trace.clone()).map_err(|e| e.to_string())?;
    history.append(0, "sim", Entry::Phase { phase: "fault".into() });
    for i in 0..5u64 {
        history.append(
            i * 100,
            "driver",
            Entry::Workload { action: format!("seed {} step {i}", spec.seed) },
        );
    }
    if let Some(x) = extra {
        history.append(600, "sim", Entry::Workload { action: format!("wobble {x}") });
    }
    history.append(1_000, "sim", Entry::Phase { phase: "end".into() });
    history.finish().map_err(|e| e.to_string())?;
    let violations = match fail(spec.seed) {
        Some(at_ms) => vec![Violation {
            invariant: "S4 INV-EVT (order, prefix)".into(),
            detail: format!("seed {}", spec.seed),
            at_ms,
            seq: 3,
            actor: Some("a1".into()),
            runner: None,
            outside_envelope: false,
        }],
        None => vec![],
    };
    let fault_counts =
        derived.faults.on().iter().map(|c| (c.name().to_string(), 1 + spec.seed % 3)).collect();
    Ok(RunOutcome {
        seed: spec.seed,
        trace_hash: history.hash(),
        history_len: history.len(),
        violations,
        derived_config: derived.to_toml(),
        fault_counts,
        probe_counts: [("fake-probe".to_string(), 1)].into_iter().collect(),
        sim_ms: 1_000,
        timeline: history.tail(3).iter().map(|l| l.to_string()).collect(),
        latencies_ms: [("start_to_running".to_string(), vec![spec.seed + 1])].into_iter().collect(),
        ..RunOutcome::default()
    })
}

fn holds(spec: &RunSpec) -> Result<RunOutcome, String> {
    fake_world(spec, None, |_| None)
}

fn fails_on_even_seeds(spec: &RunSpec) -> Result<RunOutcome, String> {
    fake_world(spec, None, |seed| (seed % 2 == 0).then_some(100 + seed))
}

fn fails_always(spec: &RunSpec) -> Result<RunOutcome, String> {
    fake_world(spec, None, |seed| Some(100 + seed))
}

fn fails_later(spec: &RunSpec) -> Result<RunOutcome, String> {
    fake_world(spec, None, |seed| Some(999 + seed))
}

fn cannot_run(_: &RunSpec) -> Result<RunOutcome, String> {
    Err("world not built yet".to_string())
}

fn panics(_: &RunSpec) -> Result<RunOutcome, String> {
    panic!("the model fell over");
}

static WOBBLE: AtomicU64 = AtomicU64::new(0);

fn nondeterministic(spec: &RunSpec) -> Result<RunOutcome, String> {
    fake_world(spec, Some(WOBBLE.fetch_add(1, Ordering::Relaxed)), |_| None)
}

fn ignores_the_seed(spec: &RunSpec) -> Result<RunOutcome, String> {
    fake_world(&RunSpec { seed: 0, ..spec.clone() }, None, |_| None)
}

/// The test's stand-in for a fresh process: the same world, in this process, with the trace.
fn in_process_child(c: &ChildRun<'_>, run: RunFn) -> Result<(), String> {
    let text = std::fs::read_to_string(c.scenario).map_err(|e| e.to_string())?;
    let spec = RunSpec {
        scenario_path: c.scenario.to_path_buf(),
        scenario_text: text,
        seed: c.seed,
        canaries: c.canaries,
        trace: TraceMode::File(c.trace.to_path_buf()),
    };
    run(&spec).map(|_| ())
}

struct Ran {
    code: u8,
    out: String,
    err: String,
}

fn exec(run: RunFn, args: &[&str]) -> Ran {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = {
        let mut ctx = Context {
            run,
            child: in_process_child,
            out: &mut out,
            err: &mut err,
            progress_bar: false,
        };
        let argv = std::iter::once("pegsim").chain(args.iter().copied()).map(Into::into).collect();
        execute(argv, &mut ctx)
    };
    Ran {
        code,
        out: String::from_utf8_lossy(&out).into(),
        err: String::from_utf8_lossy(&err).into(),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn assert_one_error_line(r: &Ran) {
    assert_eq!(r.code, EXIT_BAD_INPUT, "out: {} err: {}", r.out, r.err);
    assert_eq!(r.err.lines().count(), 1, "exactly one line: {:?}", r.err);
    assert!(r.err.starts_with("pegsim: error: "), "{:?}", r.err);
}

#[test]
fn argument_errors_exit_2_with_one_line() {
    let dir = temp_dir("args");
    let s = scenario_file(&dir);
    let s = p(&s);
    for args in [
        vec![],
        vec!["bogus"],
        vec!["run"],
        vec!["run", s],
        vec!["run", s, "--seed", "abc"],
        vec!["run", s, "--seed", "1", "--canary", "no-such-canary"],
        vec!["run", s, "--seed", "1", "--frobnicate"],
        vec!["sweep", s, "--seeds", "5..5"],
        vec!["sweep", s, "--seeds", "0..4", "--shard", "3/2"],
        vec!["sweep", s, "--seeds", "0..4", "--jobs", "0"],
        vec!["sweep", "--seeds", "0..4"],
        vec!["report"],
        vec!["report", "merge", "a.json"],
    ] {
        let r = exec(holds, &args);
        assert_one_error_line(&r);
        assert!(r.out.is_empty(), "{args:?}: {}", r.out);
    }
    let r = exec(holds, &["run", s, "--seed", "1", "--canary", "no-such-canary"]);
    assert!(r.err.contains("unknown canary"), "{}", r.err);
    let r = exec(holds, &["run", s]);
    assert!(r.err.contains("--seed"), "names the missing argument: {}", r.err);
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["sweep", "--help"],
        vec!["replay", "--help"],
        vec!["check-determinism", "--help"],
        vec!["scenarios", "--help"],
        vec!["report", "--help"],
        vec!["report", "merge", "--help"],
        vec!["bench", "--help"],
        vec!["canaries", "--help"],
        vec!["regress", "--help"],
        vec!["regress", "add", "--help"],
    ] {
        let r = exec(holds, &args);
        assert_eq!(r.code, EXIT_HELD, "{args:?}");
        assert!(r.out.contains("Usage:"), "{args:?}: {}", r.out);
    }
}

#[test]
fn a_bad_scenario_exits_2_naming_file_and_line() {
    let dir = temp_dir("bad-scenario");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[topology]\nedge_nodes = 1\n").unwrap();
    let r = exec(holds, &["run", p(&path), "--seed", "1"]);
    assert_one_error_line(&r);
    assert!(
        r.err.contains(&format!("{}:2: field `topology.edge_nodes`", path.display())),
        "{}",
        r.err
    );
    let r = exec(holds, &["run", p(&dir.join("missing.toml")), "--seed", "1"]);
    assert_one_error_line(&r);
}

#[test]
fn run_exit_codes_follow_the_world() {
    let dir = temp_dir("run");
    let s = scenario_file(&dir);
    let out = dir.join("out");
    let args = |seed: &'static str| vec!["--out", p(&out), "run", p(&s), "--seed", seed];

    let r = exec(holds, &args("3"));
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert!(r.out.contains("every invariant held"), "{}", r.out);

    let r = exec(fails_on_even_seeds, &args("4"));
    assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
    let failure = out.join("failures").join("fake-seed-4.failure.toml");
    assert!(failure.exists(), "{}", r.out);
    assert!(
        r.out.contains(&format!(
            "replay: cargo run --release -p pegsim -- replay {}",
            failure.display()
        )),
        "{}",
        r.out
    );
    // The failure file points at a full trace whose hash is the run's.
    let file = pegsim::failure::FailureFile::load(&failure).unwrap();
    let trace = file.trace_path.clone().unwrap();
    assert_eq!(trace_file_hash(&trace).unwrap(), file.trace_hash);
    assert_eq!(file.violations[0].at_ms, 104);

    let r = exec(cannot_run, &args("4"));
    assert_one_error_line(&r);
    assert!(r.err.contains("world not built yet"), "{}", r.err);

    let r = exec(panics, &args("4"));
    assert_eq!(r.code, EXIT_VIOLATION);
    assert!(r.out.contains("PANIC") && r.out.contains("the model fell over"), "{}", r.out);
}

#[test]
fn run_with_a_trace_writes_it() {
    let dir = temp_dir("run-trace");
    let s = scenario_file(&dir);
    let trace = dir.join("t.trace");
    let r = exec(
        holds,
        &["--out", p(&dir.join("out")), "run", p(&s), "--seed", "9", "--trace", p(&trace)],
    );
    assert_eq!(r.code, EXIT_HELD);
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(text.contains("seed 9 step 4"), "{text}");
    assert!(r.out.contains(&format!("{:016x}", trace_file_hash(&trace).unwrap())), "{}", r.out);
}

#[test]
fn replay_exit_codes_say_whether_the_failure_reproduced() {
    let dir = temp_dir("replay");
    let s = scenario_file(&dir);
    let out = dir.join("out");
    let r = exec(fails_always, &["--out", p(&out), "run", p(&s), "--seed", "6"]);
    assert_eq!(r.code, EXIT_VIOLATION);
    let failure = out.join("failures").join("fake-seed-6.failure.toml");

    let r = exec(fails_always, &["replay", p(&failure)]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
    assert!(r.out.contains("reproduced: S4 INV-EVT (order, prefix) at 106 ms"), "{}", r.out);

    let r = exec(fails_later, &["replay", p(&failure)]);
    assert_eq!(r.code, EXIT_VIOLATION);
    assert!(r.out.contains("a different failure"), "{}", r.out);

    let r = exec(holds, &["replay", p(&failure)]);
    assert_eq!(r.code, EXIT_HELD);
    assert!(r.out.contains("did not reproduce"), "{}", r.out);

    // The replay uses the embedded scenario text, not the file (which may have changed).
    std::fs::write(&s, "this is not toml = = =").unwrap();
    let r = exec(fails_always, &["replay", p(&failure)]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);

    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "format = 1\nseed = \"x\"\n").unwrap();
    let r = exec(fails_always, &["replay", p(&broken)]);
    assert_one_error_line(&r);
    assert!(r.err.contains(&format!("{}:2", broken.display())), "{}", r.err);
}

#[test]
fn sweep_reports_failures_and_does_not_depend_on_jobs() {
    let dir = temp_dir("sweep");
    let s = scenario_file(&dir);
    let out = dir.join("out");
    let (r1, r3) = (dir.join("r1"), dir.join("r3"));
    let a = exec(
        fails_on_even_seeds,
        &["--out", p(&out), "sweep", p(&s), "--seeds", "0..10", "--report", p(&r1)],
    );
    let b = exec(
        fails_on_even_seeds,
        &["--out", p(&out), "sweep", p(&s), "--seeds", "0..10", "--jobs", "3", "--report", p(&r3)],
    );
    for r in [&a, &b] {
        assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
        assert!(r.out.contains("replay: cargo run --release -p pegsim -- replay"), "{}", r.out);
        assert!(r.out.contains("fault classes never fired:"), "{}", r.out);
        assert!(r.out.contains("probes hit: fake-probe 10"), "{}", r.out);
    }
    let ra = SweepReport::load(&r1.join("report.json")).unwrap();
    let rb = SweepReport::load(&r3.join("report.json")).unwrap();
    assert_eq!(ra.failures.iter().map(|f| f.seed).collect::<Vec<_>>(), [0, 2, 4, 6, 8]);
    assert_eq!(ra.failures, rb.failures);
    assert_eq!(ra.fault_counts, rb.fault_counts);
    assert_eq!(ra.latencies, rb.latencies);
    assert_eq!((ra.seeds_run, ra.passed, ra.failed), (10, 5, 5));
    assert!(r1.join("report.md").exists());

    let r =
        exec(holds, &["--out", p(&out), "sweep", p(&s), p(&s), "--seeds", "0..=3", "--jobs", "2"]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert!(r.out.contains("done: 8 runs, 8 passed"), "{}", r.out);

    let r = exec(cannot_run, &["--out", p(&out), "sweep", p(&s), "--seeds", "0..4", "--jobs", "2"]);
    assert_one_error_line(&r);
    assert!(r.err.contains("4 of 4 runs could not run"), "{}", r.err);

    let r = exec(panics, &["--out", p(&out), "sweep", p(&s), "--seeds", "0..2"]);
    assert_eq!(r.code, EXIT_VIOLATION);
}

#[test]
fn shards_cover_every_seed_exactly_once_and_merge_sums_counts() {
    let dir = temp_dir("shards");
    let s = scenario_file(&dir);
    let out = dir.join("out");
    let reports = dir.join("reports");
    let n = 3;
    let mut paths = Vec::new();
    let mut seeds = Vec::new();
    let mut shard_reports = Vec::new();
    for k in 1..=n {
        let shard = format!("{k}/{n}");
        let r = exec(
            fails_always,
            &[
                "--out",
                p(&out),
                "sweep",
                p(&s),
                "--seeds",
                "0..20",
                "--shard",
                &shard,
                "--report",
                p(&reports),
            ],
        );
        assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
        let path = reports.join(format!("report-shard-{k}-of-{n}.json"));
        let report = SweepReport::load(&path).unwrap();
        seeds.extend(report.failures.iter().map(|f| f.seed));
        assert!(report.failures.iter().all(|f| f.seed % n == k - 1));
        shard_reports.push(report);
        paths.push(path);
    }
    seeds.sort_unstable();
    assert_eq!(seeds, (0..20).collect::<Vec<_>>(), "every seed exactly once");

    let merged = dir.join("merged.json");
    let mut args = vec!["report", "merge"];
    args.extend(paths.iter().map(|x| p(x)));
    args.extend(["-o", p(&merged)]);
    let r = exec(holds, &args);
    assert_eq!(r.code, EXIT_VIOLATION, "the merged report holds failures: {}{}", r.out, r.err);
    let m = SweepReport::load(&merged).unwrap();
    assert_eq!(m.seeds_run, shard_reports.iter().map(|r| r.seeds_run).sum::<u64>());
    assert_eq!(m.failed, 20);
    let classes: BTreeSet<&String> =
        shard_reports.iter().flat_map(|r| r.fault_counts.keys()).collect();
    for class in classes {
        let sum: u64 =
            shard_reports.iter().map(|r| r.fault_counts.get(class).copied().unwrap_or(0)).sum();
        assert_eq!(m.fault_counts[class], sum, "{class}");
    }
    assert_eq!(m.probe_counts["fake-probe"], 20);
    assert!(merged.with_extension("md").exists());

    // Merging a shard twice, or a file that is not a report, is bad input.
    let r = exec(holds, &["report", "merge", p(&paths[0]), p(&paths[0]), "-o", p(&merged)]);
    assert_one_error_line(&r);
    let r = exec(holds, &["report", "merge", p(&s), "-o", p(&merged)]);
    assert_one_error_line(&r);
}

#[test]
fn check_determinism_passes_a_deterministic_world_and_catches_the_others() {
    let dir = temp_dir("determinism");
    let s = scenario_file(&dir);
    let out = dir.join("out");
    let r = exec(holds, &["--out", p(&out), "check-determinism", p(&s), "--seeds", "0..4"]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert_eq!(r.out.matches(": deterministic").count(), 4, "{}", r.out);

    let r =
        exec(nondeterministic, &["--out", p(&out), "check-determinism", p(&s), "--seeds", "0..2"]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
    assert!(r.out.contains("NOT DETERMINISTIC"), "{}", r.out);
    assert!(r.out.contains("first difference at line 7:"), "{}", r.out);
    assert!(r.out.contains("wobble"), "{}", r.out);

    let r = exec(ignores_the_seed, &["--out", p(&out), "check-determinism", p(&s), "--seeds", "5"]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
    assert!(r.out.contains("seeds 5 and 6 give the same trace hash"), "{}", r.out);

    let r = exec(cannot_run, &["--out", p(&out), "check-determinism", p(&s), "--seeds", "0..2"]);
    assert_one_error_line(&r);
}

#[test]
fn scenarios_lists_and_validates_a_folder() {
    let dir = temp_dir("scenarios");
    scenario_file(&dir);
    std::fs::write(dir.join("regressions.toml"), "[[seed]]\nthis = \"is not a scenario\"\n")
        .unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let r = exec(holds, &["scenarios", p(&dir)]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert!(r.out.contains("ok       fake"), "{}", r.out);
    assert!(r.out.contains("1 scenario files, 0 invalid"), "{}", r.out);

    std::fs::write(dir.join("wrong.toml"), "[phases]\nheal_ms = -1\n").unwrap();
    let r = exec(holds, &["scenarios", p(&dir)]);
    assert_eq!(r.code, EXIT_BAD_INPUT);
    assert!(r.out.contains("invalid  ") && r.out.contains("wrong.toml:2"), "{}", r.out);
    assert_eq!(r.err.lines().count(), 1);

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let r = exec(holds, &["scenarios", p(&repo)]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);

    let empty = temp_dir("scenarios-empty");
    assert_one_error_line(&exec(holds, &["scenarios", p(&empty)]));
    assert_one_error_line(&exec(holds, &["scenarios", p(&dir.join("nope"))]));
}

#[test]
fn bench_prints_rates() {
    let dir = temp_dir("bench");
    let s = scenario_file(&dir);
    let r = exec(holds, &["bench", p(&s), "--seeds", "0..6", "--jobs", "2"]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert!(r.out.contains("bench: 6 runs") && r.out.contains("seeds/s"), "{}", r.out);
    assert!(r.out.contains("simulated ms per wall second"), "{}", r.out);
    let r = exec(cannot_run, &["bench", p(&s), "--seeds", "0..2"]);
    assert_one_error_line(&r);
}

#[test]
fn plan_jobs_takes_each_owned_seed_of_each_scenario_once() {
    let seeds: pegsim::seed::SeedRange = "10..30".parse().unwrap();
    let mut all = Vec::new();
    for k in 1..=4 {
        let jobs = sweep_plan_for_test(2, seeds, pegsim::seed::Shard { index: k, count: 4 });
        all.extend(jobs);
    }
    all.sort_unstable();
    let want: Vec<(usize, u64)> =
        (0..2).flat_map(|s| (10..30).map(move |seed| (s, seed))).collect();
    assert_eq!(all, want);
}

fn sweep_plan_for_test(
    scenarios: usize,
    seeds: pegsim::seed::SeedRange,
    shard: pegsim::seed::Shard,
) -> Vec<(usize, u64)> {
    sweep::plan_jobs_for_test(scenarios, seeds, shard)
}

/// Fails (S4) from seed 3 of every range of `canaries --ranges`, never with the canary off.
fn fails_from_seed_3_with_a_canary(spec: &RunSpec) -> Result<RunOutcome, String> {
    let canary = !spec.canaries.is_empty();
    fake_world(spec, None, |seed| (canary && seed % proofs::RANGE_STRIDE >= 3).then_some(50))
}

fn proof_file(dir: &Path, expect: &str, budget: u64) -> PathBuf {
    scenario_file(dir);
    let path = dir.join("canaries.toml");
    let text = format!(
        "[[canary]]\nname = \"event-filter-drops-out-of-order\"\nscenario = \"fake.toml\"\nexpect = [\"{expect}\"]\nbudget = {budget}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn canary_proofs_need_the_listed_invariant_within_budget() {
    let dir = temp_dir("canaries");
    let file = proof_file(&dir, "S4", 10);
    let r = exec(
        fails_from_seed_3_with_a_canary,
        &["canaries", "--file", p(&file), "--ranges", "3", "--jobs", "2", "--table"],
    );
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert!(r.out.contains("caught   event-filter-drops-out-of-order on fake (seeds 20000..): seed 20003 (4 seed(s))"), "{}", r.out);
    assert!(
        r.out.contains("3/3 range(s) caught within 10 seeds; seeds to detection median 4 worst 4"),
        "{}",
        r.out
    );
    assert!(r.out.contains("| `event-filter-drops-out-of-order` |"), "{}", r.out);

    let r = exec(
        fails_from_seed_3_with_a_canary,
        &["canaries", "--file", p(&proof_file(&dir, "S4", 3))],
    );
    assert_eq!(r.code, EXIT_VIOLATION, "{}", r.out);
    assert!(r.out.contains("MISSED   event-filter-drops-out-of-order on fake (seeds 0..): no violation within 3 seeds"), "{}", r.out);

    let r = exec(
        fails_from_seed_3_with_a_canary,
        &["canaries", "--file", p(&proof_file(&dir, "L3", 10))],
    );
    assert_eq!(r.code, EXIT_VIOLATION, "{}", r.out);
    assert!(
        r.out.contains(
            "WRONG    event-filter-drops-out-of-order on fake (seeds 0..): seed 3 reported S4"
        ),
        "{}",
        r.out
    );

    std::fs::write(&file, "[[canary]]\nname = \"no-such-canary\"\nscenario = \"fake.toml\"\nexpect = [\"S4\"]\nbudget = 1\n").unwrap();
    let r = exec(holds, &["canaries", "--file", p(&file)]);
    assert_one_error_line(&r);
    assert!(r.err.contains("field `name`: unknown canary `no-such-canary`"), "{}", r.err);
}

#[test]
fn regress_add_appends_a_failure_and_regress_replays_it() {
    let dir = temp_dir("regress");
    let s = scenario_file(&dir);
    let out = dir.join("out");
    let corpus = dir.join("regressions.toml");
    std::fs::write(&corpus, "# the corpus\n").unwrap();
    let r = exec(fails_always, &["--out", p(&out), "run", p(&s), "--seed", "6"]);
    assert_eq!(r.code, EXIT_VIOLATION);
    let failure = out.join("failures").join("fake-seed-6.failure.toml");

    let r = exec(holds, &["regress", "--file", p(&corpus), "add", p(&failure), "--note", "a bug"]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    let text = std::fs::read_to_string(&corpus).unwrap();
    assert!(text.starts_with("# the corpus\n"), "comments are kept: {text}");
    assert!(text.contains("scenario = \"fake.toml\"\nseed = 6\ncanaries = []\nexpect = \"pass\"\nfound = \"a bug\""), "{text}");

    let r = exec(holds, &["regress", "--file", p(&corpus), "add", p(&failure)]);
    assert_one_error_line(&r);
    assert!(r.err.contains("already in"), "{}", r.err);

    // Without canaries the seed must hold now: it does with the bug fixed, not before.
    let r = exec(holds, &["regress", "--file", p(&corpus)]);
    assert_eq!(r.code, EXIT_HELD, "{}", r.out);
    assert!(r.out.contains("ok       fake.toml seed 6: held (a bug)"), "{}", r.out);
    let r = exec(fails_always, &["regress", "--file", p(&corpus)]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}", r.out);
    assert!(r.out.contains("FAILED   fake.toml seed 6: violated: S4"), "{}", r.out);
    assert!(r.out.contains("replay: "), "{}", r.out);

    // A canary entry must keep reporting its invariant.
    let r = exec(
        fails_always,
        &["--out", p(&out), "run", p(&s), "--seed", "7", "--canary", "commands-never-deleted"],
    );
    assert_eq!(r.code, EXIT_VIOLATION);
    let failure = out.join("failures").join("fake-seed-7-commands-never-deleted.failure.toml");
    let r = exec(holds, &["regress", "--file", p(&corpus), "add", p(&failure)]);
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
    assert!(std::fs::read_to_string(&corpus)
        .unwrap()
        .contains("canaries = [\"commands-never-deleted\"]\nexpect = \"S4\""));
    let r = exec(fails_from_seed_3_with_a_canary, &["regress", "--file", p(&corpus)]);
    assert_eq!(r.code, EXIT_HELD, "{}", r.out);
    assert!(
        r.out.contains("ok       fake.toml seed 7 [commands-never-deleted]: reported S4"),
        "{}",
        r.out
    );
    let r = exec(holds, &["regress", "--file", p(&corpus)]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}", r.out);
    assert!(r.out.contains("ok       fake.toml seed 6: held"), "{}", r.out);
    assert!(
        r.out.contains(
            "FAILED   fake.toml seed 7 [commands-never-deleted]: expected S4, every invariant held"
        ),
        "{}",
        r.out
    );
}

#[test]
fn a_required_probe_no_seed_hits_fails_the_sweep() {
    let dir = temp_dir("required-probe");
    let s = dir.join("probe.toml");
    std::fs::write(&s, "name = \"probe\"\n[coverage]\nrequired = [\"replay-multi-page\"]\n")
        .unwrap();
    let r = exec(holds, &["--out", p(&dir.join("out")), "sweep", p(&s), "--seeds", "0..4"]);
    assert_eq!(r.code, EXIT_VIOLATION, "{}{}", r.out, r.err);
    assert!(
        r.out.contains("REQUIRED PROBE NOT HIT: probe: no seed reached `replay-multi-page`"),
        "{}",
        r.out
    );
    let r = exec(
        holds,
        &["--out", p(&dir.join("out")), "sweep", p(&scenario_file(&dir)), "--seeds", "0..4"],
    );
    assert_eq!(r.code, EXIT_HELD, "{}{}", r.out, r.err);
}
