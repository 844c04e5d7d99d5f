//! Failure files: a failure is a coordinate. A failure file holds everything needed to replay a
//! failing run and to read what happened without replaying it: the scenario (path and full
//! text), the seed, the canaries, the build's git commit, the derived configuration, every
//! violation, the trace hash, the timeline around the first violation and the path of the full
//! trace.
//!
//! Owns: [`FailureFile`] (TOML; [`FailureFile::write`], [`FailureFile::load`],
//! [`FailureFile::replay_command`]), [`Reproduction`] (does a re-run show the same failure) and
//! [`git_commit`]. It runs nothing; the CLI re-runs a loaded file through the world.
//!
//! Choices: the replay line is `cargo run --release -p pegsim -- replay <file>` once the file is
//! written (the file embeds the scenario text, so it still replays after the scenario file
//! changes), and the `run <scenario> --seed N --canary …` coordinate before that. "The same
//! violation" means the same first violated invariant at the same simulated time. The commit is
//! `git rev-parse HEAD`, with `+dirty` when tracked files differ from it, or `unknown`.

use std::path::{Path, PathBuf};

use pegsim_model::canary::{Canaries, Canary};
use serde::{Deserialize, Serialize};

use crate::run::{RunOutcome, RunSpec, TraceMode, Violation};
use crate::scenario::{located, SourceMap};

/// The format version written in every failure file.
pub const FAILURE_FORMAT: u32 = 1;

/// Why a failure file could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureError {
    #[error("cannot write failure file {}: {error}", path.display())]
    Write { path: PathBuf, error: String },
    #[error("cannot read failure file {}: {error}", path.display())]
    Read { path: PathBuf, error: String },
    /// The file is not a valid failure file.
    #[error("{}", located(file, *line, field, message))]
    Invalid { file: PathBuf, line: Option<usize>, field: String, message: String },
}

/// Serde helper: a `u64` hash as 16 hex digits (TOML integers are `i64`).
mod hex_u64 {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        u64::from_str_radix(digits, 16)
            .map_err(|_| D::Error::custom(format!("`{text}` is not a 64-bit hex hash")))
    }
}

/// One failing run, as written to disk. See the module comment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureFile {
    /// [`FAILURE_FORMAT`].
    pub format: u32,
    /// The one command that replays this failure (informational; recomputed on load).
    pub replay: String,
    /// The scenario file the run came from.
    pub scenario_path: PathBuf,
    #[serde(with = "crate::seed::toml_u64")]
    pub seed: u64,
    /// Canary names (`--canary`), in the order of `Canary::ALL`.
    pub canaries: Vec<String>,
    /// The build's git commit.
    pub commit: String,
    #[serde(with = "hex_u64")]
    pub trace_hash: u64,
    pub history_len: u64,
    pub sim_ms: u64,
    /// The full trace of the run, when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_path: Option<PathBuf>,
    /// The history lines around the first violation.
    pub timeline: Vec<String>,
    /// The scenario text, exactly as the run read it.
    pub scenario_text: String,
    pub violations: Vec<Violation>,
    #[serde(default)]
    pub outside_envelope: Vec<Violation>,
    /// The derived (per-seed) configuration.
    pub derived: toml::Table,
    #[serde(skip)]
    location: Option<PathBuf>,
}

/// Whether a re-run shows the failure of a failure file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reproduction {
    /// The same first violation at the same simulated time.
    Same,
    /// A violation, but not the same one (or not at the same time).
    Different { expected: String, got: String },
    /// The re-run held every invariant.
    Passed,
}

fn describe(v: &Violation) -> String {
    format!("{} at {} ms", v.invariant, v.at_ms)
}

/// Quote `s` for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    let plain =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command that runs `(scenario, seed, canaries)` on this build.
pub fn run_command(scenario: &Path, seed: u64, canaries: Canaries) -> String {
    let mut cmd = format!(
        "cargo run --release -p pegsim -- run {} --seed {seed}",
        shell_word(&scenario.display().to_string())
    );
    for c in canaries.iter() {
        cmd.push_str(&format!(" --canary {c}"));
    }
    cmd
}

/// The build's git commit (`git rev-parse HEAD`, `+dirty` when tracked files changed), or
/// `unknown` when git or the repository is not available.
pub fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}+dirty")
            } else {
                head
            }
        }
        _ => "unknown".to_string(),
    }
}

impl FailureFile {
    /// The failure file of a failing run. `trace_path` is the full trace, when one was written.
    pub fn new(
        spec: &RunSpec,
        outcome: &RunOutcome,
        commit: &str,
        trace_path: Option<PathBuf>,
    ) -> FailureFile {
        let derived = match toml::from_str::<toml::Table>(&outcome.derived_config) {
            Ok(t) => t,
            Err(_) => {
                let mut t = toml::Table::new();
                t.insert("text".into(), toml::Value::String(outcome.derived_config.clone()));
                t
            }
        };
        let mut file = FailureFile {
            format: FAILURE_FORMAT,
            replay: String::new(),
            scenario_path: spec.scenario_path.clone(),
            seed: spec.seed,
            canaries: spec.canaries.iter().map(|c| c.name().to_string()).collect(),
            commit: commit.to_string(),
            trace_hash: outcome.trace_hash,
            history_len: outcome.history_len,
            sim_ms: outcome.sim_ms,
            trace_path,
            timeline: outcome.timeline.clone(),
            scenario_text: spec.scenario_text.clone(),
            violations: outcome.violations.clone(),
            outside_envelope: outcome.outside_envelope.clone(),
            derived,
            location: None,
        };
        file.replay = file.replay_command();
        file
    }

    /// The file name this failure is written under:
    /// `<scenario stem>-seed-<seed>[-<canary>…].failure.toml`.
    pub fn file_name(&self) -> String {
        let stem = self
            .scenario_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_string());
        let mut name = format!("{stem}-seed-{}", self.seed);
        for c in &self.canaries {
            name.push('-');
            name.push_str(c);
        }
        name.push_str(".failure.toml");
        name
    }

    /// Write the file into `dir` (created if needed) and return its path.
    pub fn write(&mut self, dir: &Path) -> Result<PathBuf, FailureError> {
        let path = dir.join(self.file_name());
        let write_err = |error: String| FailureError::Write { path: path.clone(), error };
        std::fs::create_dir_all(dir).map_err(|e| write_err(e.to_string()))?;
        self.location = Some(path.clone());
        self.replay = self.replay_command();
        let text = toml::to_string_pretty(self).map_err(|e| write_err(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| write_err(e.to_string()))?;
        Ok(path)
    }

    /// Read a failure file; errors name the file, line and field.
    pub fn load(path: &Path) -> Result<FailureFile, FailureError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FailureError::Read { path: path.to_path_buf(), error: e.to_string() })?;
        FailureFile::parse(&text, path)
    }

    /// Parse a failure file's text; `path` names it in errors and in the replay command.
    pub fn parse(text: &str, path: &Path) -> Result<FailureFile, FailureError> {
        let map = SourceMap::new(text);
        let invalid = |field: &str, message: String| FailureError::Invalid {
            file: path.to_path_buf(),
            line: map.line_of_field(field),
            field: field.to_string(),
            message,
        };
        let mut file: FailureFile = toml::from_str(text).map_err(|e| {
            let p = map.locate(&e);
            FailureError::Invalid {
                file: path.to_path_buf(),
                line: p.line,
                field: p.field,
                message: p.message,
            }
        })?;
        if file.format != FAILURE_FORMAT {
            return Err(invalid(
                "format",
                format!("format {} is not the supported {FAILURE_FORMAT}", file.format),
            ));
        }
        for (i, name) in file.canaries.iter().enumerate() {
            if let Err(e) = name.parse::<Canary>() {
                return Err(invalid(&format!("canaries[{i}]"), e.to_string()));
            }
        }
        file.location = Some(path.to_path_buf());
        file.replay = file.replay_command();
        Ok(file)
    }

    /// Where the file was written or read, if it was.
    pub fn location(&self) -> Option<&Path> {
        self.location.as_deref()
    }

    /// The canaries of the run (names were checked by [`FailureFile::load`]; unknown names are
    /// skipped here).
    pub fn canary_set(&self) -> Canaries {
        self.canaries.iter().filter_map(|n| n.parse::<Canary>().ok()).collect()
    }

    /// The one command that replays this failure: `replay <file>` once the file exists, else the
    /// `run` coordinate.
    pub fn replay_command(&self) -> String {
        match &self.location {
            Some(path) => format!(
                "cargo run --release -p pegsim -- replay {}",
                shell_word(&path.display().to_string())
            ),
            None => self.run_command(),
        }
    }

    /// The `run <scenario> --seed N --canary …` coordinate of this failure.
    pub fn run_command(&self) -> String {
        run_command(&self.scenario_path, self.seed, self.canary_set())
    }

    /// The run to replay: the embedded scenario text, the seed and the canaries.
    pub fn run_spec(&self, trace: TraceMode) -> RunSpec {
        RunSpec {
            scenario_path: self.scenario_path.clone(),
            scenario_text: self.scenario_text.clone(),
            seed: self.seed,
            canaries: self.canary_set(),
            trace,
        }
    }

    /// Whether `outcome` (a re-run) shows the same failure.
    pub fn reproduction(&self, outcome: &RunOutcome) -> Reproduction {
        let Some(got) = outcome.violations.first() else {
            return Reproduction::Passed;
        };
        match self.violations.first() {
            Some(want) if want.invariant == got.invariant && want.at_ms == got.at_ms => {
                Reproduction::Same
            }
            want => Reproduction::Different {
                expected: want.map_or_else(|| "no violation".to_string(), describe),
                got: describe(got),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(invariant: &str, at_ms: u64) -> Violation {
        Violation {
            invariant: invariant.to_string(),
            detail: "applied [0, 2] after 0: gap at 1\n\"quoted\" and 'single'".to_string(),
            at_ms,
            seq: 77,
            actor: Some("a1".to_string()),
            runner: None,
            outside_envelope: false,
        }
    }

    fn sample() -> (RunSpec, RunOutcome) {
        let spec = RunSpec {
            scenario_path: PathBuf::from("scenarios/default.toml"),
            scenario_text: "name = \"d\"\n# a ''' and \"\"\" inside\n[phases]\nheal_ms = 5\n"
                .to_string(),
            seed: u64::MAX - 3,
            canaries: Canaries::only(Canary::ReplayUnbounded).with(Canary::DemuxFirstEventDropped),
            trace: TraceMode::Ring,
        };
        let outcome = RunOutcome {
            seed: spec.seed,
            trace_hash: 0xfedc_ba98_7654_3210,
            history_len: 1234,
            violations: vec![
                violation("S4 INV-EVT (order, prefix)", 5_000),
                violation("L3 event delivery", 9_000),
            ],
            outside_envelope: vec![violation("S1 INV-SINGLE", 100)],
            derived_config: "scenario = \"d\"\nseed = 5\n[phases]\nfault_ms = 1\n".to_string(),
            sim_ms: 240_000,
            timeline: vec![
                "     4999 core      x".to_string(),
                "     5000 core      y".to_string(),
            ],
            ..RunOutcome::default()
        };
        (spec, outcome)
    }

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pegsim-failure-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_failure_file_round_trips() {
        let (spec, outcome) = sample();
        let mut file = FailureFile::new(&spec, &outcome, "abc123", Some(PathBuf::from("t.trace")));
        let dir = temp_dir("round-trip");
        let path = file.write(&dir).unwrap();
        assert_eq!(
            path.file_name().unwrap(),
            "default-seed-18446744073709551612-demux-first-event-dropped-replay-unbounded.failure.toml"
        );
        let back = FailureFile::load(&path).unwrap();
        assert_eq!(back, file);
        assert_eq!(back.seed, u64::MAX - 3);
        assert_eq!(back.trace_hash, 0xfedc_ba98_7654_3210);
        assert_eq!(back.scenario_text, spec.scenario_text);
        assert_eq!(back.canary_set(), spec.canaries);
        assert_eq!(back.violations, outcome.violations);
        assert_eq!(
            back.derived.get("phases").and_then(|p| p.get("fault_ms")),
            Some(&toml::Value::Integer(1))
        );
        let replay = back.run_spec(TraceMode::Ring);
        assert_eq!((replay.seed, replay.canaries), (spec.seed, spec.canaries));
        assert_eq!(
            back.replay_command(),
            format!("cargo run --release -p pegsim -- replay {}", path.display())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn before_it_is_written_the_replay_line_is_the_run_coordinate() {
        let (spec, outcome) = sample();
        let file = FailureFile::new(&spec, &outcome, "abc", None);
        assert_eq!(
            file.replay_command(),
            "cargo run --release -p pegsim -- run scenarios/default.toml --seed 18446744073709551612 --canary demux-first-event-dropped --canary replay-unbounded"
        );
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn reproduction_compares_the_first_violation_and_its_time() {
        let (spec, outcome) = sample();
        let file = FailureFile::new(&spec, &outcome, "abc", None);
        assert_eq!(file.reproduction(&outcome), Reproduction::Same);
        let mut later = outcome.clone();
        later.violations[0].at_ms += 1;
        assert!(matches!(file.reproduction(&later), Reproduction::Different { .. }));
        let mut other = outcome.clone();
        other.violations.remove(0);
        assert!(matches!(file.reproduction(&other), Reproduction::Different { .. }));
        let passed = RunOutcome::default();
        assert_eq!(file.reproduction(&passed), Reproduction::Passed);
    }

    #[test]
    fn load_errors_name_file_line_and_field() {
        let (spec, outcome) = sample();
        let mut file = FailureFile::new(&spec, &outcome, "abc", None);
        let dir = temp_dir("errors");
        let path = file.write(&dir).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        let line_of = |text: &str, needle: &str| {
            text.lines().position(|l| l.starts_with(needle)).map(|i| i + 1)
        };

        let bad = good.replace("canaries = [", "canaries = [\"no-such-canary\", ");
        let err = FailureFile::parse(&bad, &path).unwrap_err();
        match &err {
            FailureError::Invalid { line, field, message, .. } => {
                assert_eq!(*line, line_of(&bad, "canaries"));
                assert_eq!(field, "canaries[0]");
                assert!(message.contains("unknown canary `no-such-canary`"), "{message}");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().starts_with(&format!("{}:", path.display())), "{err}");

        let bad = good.replace("history_len = 1234", "history_len = \"many\"");
        match FailureFile::parse(&bad, &path).unwrap_err() {
            FailureError::Invalid { line, field, .. } => {
                assert_eq!(line, line_of(&bad, "history_len"));
                assert_eq!(field, "history_len");
            }
            other => panic!("{other}"),
        }

        let bad = good.replace("format = 1", "format = 1\nextra = true");
        match FailureFile::parse(&bad, &path).unwrap_err() {
            FailureError::Invalid { line, field, .. } => {
                assert_eq!(line, line_of(&bad, "extra"));
                assert_eq!(field, "extra");
            }
            other => panic!("{other}"),
        }

        let bad = good.replace("format = 1", "format = 2");
        match FailureFile::parse(&bad, &path).unwrap_err() {
            FailureError::Invalid { line, field, .. } => {
                assert_eq!((line, field.as_str()), (line_of(&bad, "format"), "format"));
            }
            other => panic!("{other}"),
        }

        let bad = good.replace("trace_hash = \"fedcba9876543210\"", "trace_hash = \"xyz\"");
        match FailureFile::parse(&bad, &path).unwrap_err() {
            FailureError::Invalid { field, message, .. } => {
                assert_eq!(field, "trace_hash");
                assert!(message.contains("hex"), "{message}");
            }
            other => panic!("{other}"),
        }

        assert!(matches!(
            FailureFile::load(&dir.join("missing.toml")),
            Err(FailureError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn git_commit_is_a_hash_or_unknown() {
        let c = git_commit();
        let head = c.strip_suffix("+dirty").unwrap_or(&c);
        assert!(
            head == "unknown" || (head.len() >= 40 && head.chars().all(|x| x.is_ascii_hexdigit())),
            "{c}"
        );
    }
}
