//! The `pegsim` command line: `run`, `sweep`, `replay`, `check-determinism`, `scenarios`,
//! `report merge`, `bench`, `canaries` and `regress`, written against the world's signature
//! `fn(&RunSpec) -> Result<RunOutcome, String>` ([`RunFn`]) so it can be driven by a fake world
//! in tests.
//!
//! Owns: argument parsing (`clap` derive, `--help` on every command), exit codes (0 every run
//! held, 1 an invariant was violated, 2 bad input or a run that could not run, with one clear
//! line on stderr), console output (a progress bar on a terminal, quiet lines otherwise or with
//! `CI=true`) and `RUST_LOG` set-up. It lives in the binary (not in `lib.rs`); the library
//! modules it uses are `scenario`, `seed`, `history`, `failure` and `report`.
//!
//! Choices where the brief is silent:
//! - A run that panics is a failure (exit 1) with the pseudo-invariant `PANIC`, so it gets a
//!   replay line like any violation; a run whose world returns `Err` could not run (exit 2).
//! - After a failing run without `--trace`, the seed is run once more with a trace file, so the
//!   failure file points at a full trace; a different trace hash on that re-run is reported as
//!   non-determinism.
//! - Failure files go to `<out>/failures/`, traces to `<out>/traces/`, with `--out` defaulting to
//!   `reports/out`.
//! - `report merge` exits 1 when the merged report holds a failure, like a sweep would.
//! - `scenarios` skips `regressions.toml` and `canaries.toml` (the seed corpus and the canary
//!   proofs, not scenarios) and exits 2 when the
//!   folder holds no scenario.

mod batch;
mod determinism;
mod proofs;
mod regress;
mod single;
mod sweep;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pegsim::report::SweepReport;
use pegsim::run::{RunOutcome, RunSpec, Violation};
use pegsim::scenario::{Scenario, ScenarioError, NOT_SCENARIOS};
use pegsim::seed::{SeedRange, Shard};
use pegsim_model::canary::{Canaries, Canary};

/// Runs one world: the simulation of one `(scenario, seed, canaries)`.
pub type RunFn = fn(&RunSpec) -> Result<RunOutcome, String>;

/// Exit code: every run held.
pub const EXIT_HELD: u8 = 0;
/// Exit code: an invariant was violated.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit code: bad input, or a run that could not run.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The invariant name given to a run that panicked.
pub const PANIC_INVARIANT: &str = "PANIC the run panicked";

/// One run of the determinism check in a fresh process.
pub struct ChildRun<'a> {
    pub scenario: &'a Path,
    pub seed: u64,
    pub canaries: Canaries,
    /// The trace file the child must write.
    pub trace: &'a Path,
    /// The child's `--out` directory.
    pub out_dir: &'a Path,
}

/// Runs a [`ChildRun`] (in a fresh process, in production) and returns once its trace file is
/// written.
pub type ChildFn = fn(&ChildRun<'_>, RunFn) -> Result<(), String>;

/// What the commands need from the outside world.
pub struct Context<'a> {
    pub run: RunFn,
    pub child: ChildFn,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// Whether a progress bar may be drawn (stderr is a terminal and `CI` is not `true`).
    pub progress_bar: bool,
}

#[derive(Parser, Debug)]
#[command(
    name = "pegsim",
    version,
    about = "Deterministic simulation testbed for Rivet's actor orchestration protocol",
    long_about = "Deterministic simulation testbed for Rivet's actor orchestration protocol.\n\n\
        Exit codes: 0 every run held; 1 an invariant was violated; 2 bad input (scenario, \
        arguments, failure file) or a run that could not run.\n\
        RUST_LOG filters log output (tracing-subscriber EnvFilter syntax)."
)]
struct Cli {
    /// Where failure files (`failures/`) and traces (`traces/`) are written.
    #[arg(long, global = true, value_name = "DIR", default_value = "reports/out")]
    out: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one seed of a scenario; on a violation, write a failure file and print its replay line.
    Run(RunArgs),
    /// Run many seeds of one or more scenarios, in parallel, and summarize.
    Sweep(SweepArgs),
    /// Re-run a failure file and check that it shows the same violation at the same time.
    Replay(ReplayArgs),
    /// Run each seed twice (here, and in a fresh process) and compare the trace hashes.
    CheckDeterminism(DeterminismArgs),
    /// List and validate every scenario file of a folder.
    Scenarios(ScenariosArgs),
    /// Work with sweep reports.
    Report(ReportArgs),
    /// Measure speed: seeds per second and simulated ms per wall second.
    Bench(BenchArgs),
    /// Prove every canary is still caught: run each canary's scenario from the start of a seed
    /// range until a seed fails, and check that it reports an accepted invariant within budget.
    Canaries(CanariesArgs),
    /// Replay the regression seed corpus, or add a failure file to it.
    Regress(RegressArgs),
}

#[derive(Args, Debug)]
struct CanariesArgs {
    /// The proof file: canary, scenario, accepted invariants and seed budget per entry.
    #[arg(long, value_name = "FILE", default_value = "scenarios/canaries.toml")]
    file: PathBuf,
    /// Only this canary (repeatable); default every entry of the file.
    #[arg(long = "canary", value_name = "NAME")]
    only: Vec<Canary>,
    /// Seed ranges to try, starting at 0, 10000, 20000, ... (the README table uses 20).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    ranges: u64,
    /// Runs at once (threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Also print the results as the README's Markdown table.
    #[arg(long)]
    table: bool,
}

#[derive(Args, Debug)]
struct RegressArgs {
    /// The corpus file.
    #[arg(long, value_name = "FILE", default_value = "scenarios/regressions.toml")]
    file: PathBuf,
    /// Runs at once (threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    #[command(subcommand)]
    command: Option<RegressCommand>,
}

#[derive(Subcommand, Debug)]
enum RegressCommand {
    /// Append the run of a failure file to the corpus (expect `pass` without canaries, the
    /// reported invariant with canaries).
    Add {
        /// The failure file a `run` or `sweep` wrote.
        failure: PathBuf,
        /// What the seed found (default: the first violation line).
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Args, Debug)]
struct CanaryArgs {
    /// Switch on a known defect (repeatable); see spec/canaries.md for the names.
    #[arg(long = "canary", value_name = "NAME")]
    canaries: Vec<Canary>,
}

impl CanaryArgs {
    fn set(&self) -> Canaries {
        self.canaries.iter().copied().collect()
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seed.
    #[arg(long)]
    seed: u64,
    #[command(flatten)]
    canaries: CanaryArgs,
    /// Write every history line to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// The scenario files.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// The seeds: `A..B` (B excluded), `A..=B` or `N`.
    #[arg(long, value_name = "RANGE")]
    seeds: SeedRange,
    /// Runs at once (threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Run only the seeds of shard K of N: those with `seed % N == K - 1`.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    #[command(flatten)]
    canaries: CanaryArgs,
    /// Write the report (`report.json`, `report.md`) into this folder.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The failure file.
    failure: PathBuf,
    /// Write every history line of the re-run to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct DeterminismArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seeds: `A..B` (B excluded), `A..=B` or `N`.
    #[arg(long, value_name = "RANGE")]
    seeds: SeedRange,
    #[command(flatten)]
    canaries: CanaryArgs,
}

#[derive(Args, Debug)]
struct ScenariosArgs {
    /// The folder (default `scenarios`).
    dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// Join shard reports into one (exit 1 when the result holds a failure).
    Merge {
        /// The reports to join (JSON).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// The merged report (JSON; the Markdown form is written next to it).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seeds: `A..B` (B excluded), `A..=B` or `N`.
    #[arg(long, value_name = "RANGE")]
    seeds: SeedRange,
    /// Runs at once (threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    #[command(flatten)]
    canaries: CanaryArgs,
}

/// The binary's entry: parse `std::env::args`, set up `RUST_LOG` logging, run the command.
pub fn main_with(run: RunFn) -> ExitCode {
    // madsim warns when it cannot seed std's hash state (a world run on a thread that already
    // made a `RandomState`): that breaks determinism, so the warning stays visible.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
    let progress_bar = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    // Unlocked handles: runs on other threads log through `tracing` to stderr too, so holding
    // the stderr lock here would deadlock them.
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut ctx = Context { run, child: spawn_child, out: &mut out, err: &mut err, progress_bar };
    ExitCode::from(execute(std::env::args_os().collect(), &mut ctx))
}

/// Parse `args` (program name first) and run the command; returns the exit code.
pub fn execute(args: Vec<std::ffi::OsString>, ctx: &mut Context<'_>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = write!(ctx.out, "{}", e.render());
                return EXIT_HELD;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                return bad_input(ctx, "a command is required (try --help)");
            }
            // clap's first paragraph says what is wrong (it may list missing arguments on
            // further lines); usage and tips follow a blank line.
            let rendered = e.render().to_string();
            let first: Vec<&str> =
                rendered.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
            let first = first.join(" ");
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            return bad_input(ctx, &format!("{first} (try --help)"));
        }
    };
    let out_dir = cli.out.clone();
    match cli.command {
        Command::Run(a) => {
            single::run(ctx, &out_dir, &a.scenario, a.seed, a.canaries.set(), a.trace)
        }
        Command::Sweep(a) => sweep::sweep(
            ctx,
            &out_dir,
            sweep::SweepPlan {
                scenarios: a.scenarios,
                seeds: a.seeds,
                jobs: usize::from(a.jobs),
                shard: a.shard,
                canaries: a.canaries.set(),
                report: a.report,
            },
        ),
        Command::Replay(a) => single::replay(ctx, &a.failure, a.trace),
        Command::CheckDeterminism(a) => {
            determinism::check(ctx, &out_dir, &a.scenario, a.seeds, a.canaries.set())
        }
        Command::Scenarios(a) => scenarios(ctx, a.dir.as_deref().unwrap_or(Path::new("scenarios"))),
        Command::Report(ReportArgs { command: ReportCommand::Merge { reports, output } }) => {
            merge(ctx, &reports, &output)
        }
        Command::Bench(a) => {
            sweep::bench(ctx, &out_dir, &a.scenario, a.seeds, usize::from(a.jobs), a.canaries.set())
        }
        Command::Canaries(a) => proofs::canaries(
            ctx,
            proofs::ProofPlan {
                file: a.file,
                only: a.only,
                ranges: a.ranges,
                jobs: usize::from(a.jobs),
                table: a.table,
            },
        ),
        Command::Regress(a) => match a.command {
            None => regress::run(ctx, &a.file, usize::from(a.jobs)),
            Some(RegressCommand::Add { failure, note }) => {
                regress::add(ctx, &a.file, &failure, note.as_deref())
            }
        },
    }
}

/// Print one line to stderr and return [`EXIT_BAD_INPUT`].
fn bad_input(ctx: &mut Context<'_>, message: &str) -> u8 {
    let _ = writeln!(ctx.err, "pegsim: error: {}", one_line(message));
    EXIT_BAD_INPUT
}

/// `s` on one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A scenario read from disk with its exact text.
struct LoadedScenario {
    path: PathBuf,
    text: String,
    scenario: Scenario,
}

fn load_scenario(path: &Path) -> Result<LoadedScenario, ScenarioError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScenarioError::Read { file: path.to_path_buf(), error: e.to_string() })?;
    let scenario = Scenario::parse(&text, path)?;
    Ok(LoadedScenario { path: path.to_path_buf(), text, scenario })
}

/// Run the world, turning a panic into a failure with the pseudo-invariant [`PANIC_INVARIANT`].
fn run_guarded(run: RunFn, spec: &RunSpec) -> Result<RunOutcome, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(spec))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Ok(RunOutcome {
                seed: spec.seed,
                violations: vec![Violation {
                    invariant: PANIC_INVARIANT.to_string(),
                    detail: message,
                    at_ms: 0,
                    seq: 0,
                    actor: None,
                    runner: None,
                    outside_envelope: false,
                }],
                ..RunOutcome::default()
            })
        }
    }
}

/// The file-name stem of a run: `<scenario stem>-seed-<seed>[-<canary>…]`.
fn run_stem(scenario: &Path, seed: u64, canaries: Canaries) -> String {
    let stem = scenario.file_stem().map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let mut name = format!("{stem}-seed-{seed}");
    for c in canaries.iter() {
        name.push('-');
        name.push_str(c.name());
    }
    name
}

/// One line per violation.
fn violation_line(v: &Violation) -> String {
    let mut who = String::new();
    if let Some(a) = &v.actor {
        who.push_str(&format!(" actor {a}"));
    }
    if let Some(r) = &v.runner {
        who.push_str(&format!(" runner {r}"));
    }
    format!("{} at {} ms (#{}){who}: {}", v.invariant, v.at_ms, v.seq, one_line(&v.detail))
}

/// The fault classes a derived configuration switched on.
fn classes_on(derived_toml: &str) -> Vec<String> {
    toml::from_str::<toml::Table>(derived_toml)
        .ok()
        .and_then(|t| {
            t.get("faults").and_then(|f| f.as_table()).map(|f| f.keys().cloned().collect())
        })
        .unwrap_or_default()
}

fn scenarios(ctx: &mut Context<'_>, dir: &Path) -> u8 {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return bad_input(ctx, &format!("cannot read folder {}: {e}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| !NOT_SCENARIOS.iter().any(|x| n == *x)))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return bad_input(ctx, &format!("no scenario file (*.toml) in {}", dir.display()));
    }
    let mut invalid = 0;
    for path in &paths {
        match load_scenario(path) {
            Ok(s) => {
                let _ = writeln!(
                    ctx.out,
                    "ok       {:<24} {} — {}",
                    s.scenario.name,
                    path.display(),
                    one_line(&s.scenario.description)
                );
            }
            Err(e) => {
                invalid += 1;
                let _ = writeln!(ctx.out, "invalid  {e}");
            }
        }
    }
    let _ = writeln!(ctx.out, "{} scenario files, {invalid} invalid", paths.len());
    if invalid > 0 {
        let _ = writeln!(
            ctx.err,
            "pegsim: error: {invalid} invalid scenario file(s) in {}",
            dir.display()
        );
        EXIT_BAD_INPUT
    } else {
        EXIT_HELD
    }
}

fn merge(ctx: &mut Context<'_>, inputs: &[PathBuf], output: &Path) -> u8 {
    let mut reports = Vec::new();
    for path in inputs {
        match SweepReport::load(path) {
            Ok(r) => reports.push(r),
            Err(e) => return bad_input(ctx, &e.to_string()),
        }
    }
    let merged = match SweepReport::merge(&reports) {
        Ok(m) => m,
        Err(e) => return bad_input(ctx, &e.to_string()),
    };
    if let Err(e) = merged.write_json(output) {
        return bad_input(ctx, &e.to_string());
    }
    let _ = writeln!(
        ctx.out,
        "merged {} reports into {} ({} runs, {} passed, {} failed, {} could not run)",
        reports.len(),
        output.display(),
        merged.seeds_run,
        merged.passed,
        merged.failed,
        merged.errored
    );
    for f in &merged.failures {
        let _ = writeln!(ctx.out, "FAILED {} seed {}: {}", f.scenario, f.seed, f.replay);
    }
    if merged.failed > 0 {
        EXIT_VIOLATION
    } else if merged.errored > 0 {
        EXIT_BAD_INPUT
    } else {
        EXIT_HELD
    }
}

/// The production [`ChildFn`]: `current_exe() run <scenario> --seed N --trace FILE --out DIR
/// [--canary …]` in a fresh process; exit codes 0 and 1 are both a completed run.
fn spawn_child(c: &ChildRun<'_>, _run: RunFn) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find pegsim itself: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--out")
        .arg(c.out_dir)
        .arg("run")
        .arg(c.scenario)
        .arg("--seed")
        .arg(c.seed.to_string())
        .arg("--trace")
        .arg(c.trace);
    for canary in c.canaries.iter() {
        cmd.arg("--canary").arg(canary.name());
    }
    let output = cmd.output().map_err(|e| format!("cannot start a fresh pegsim: {e}"))?;
    match output.status.code() {
        Some(0 | 1) => Ok(()),
        other => Err(format!(
            "the fresh process exited with {}: {}",
            other.map_or("a signal".to_string(), |c| c.to_string()),
            one_line(&String::from_utf8_lossy(&output.stderr))
        )),
    }
}

#[cfg(test)]
mod tests;
