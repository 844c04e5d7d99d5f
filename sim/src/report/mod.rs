//! Sweep reports: what a sweep (or a shard of one) ran and found, as JSON for machines and
//! Markdown for people, and the merge of shard reports into one.
//!
//! Owns: [`SweepReport`] (built run by run with [`SweepReport::add_outcome`] /
//! [`SweepReport::add_error`], closed with [`SweepReport::finish`]), its JSON and Markdown forms,
//! [`SweepReport::merge`], and latency percentiles ([`latency`]). The format is described in
//! `reports/README.md`. It runs nothing and reads no clock: the caller passes the wall time.
//!
//! Choices: failures are listed in `(scenario, seed)` order whatever order runs finished in, so
//! equal sweeps give equal reports apart from wall time. A merged report's `wall_ms` is the sum
//! of its parts (the machine time spent), and its rates are computed from that sum. Merging the
//! same part twice (equal scenarios, seeds, shard and canaries) is an error.

pub mod latency;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use latency::{LatencyHistogram, LatencySummary};

use crate::run::{RunOutcome, Violation};
use crate::scenario::FaultClass;

/// The format version written in every report.
pub const REPORT_FORMAT: u32 = 1;

/// A report could not be read, written or merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read report {}: {error}", path.display())]
    Read { path: PathBuf, error: String },
    #[error("cannot write report {}: {error}", path.display())]
    Write { path: PathBuf, error: String },
    /// The file is not a valid report.
    #[error("{}", crate::scenario::located(file, *line, field, message))]
    Invalid { file: PathBuf, line: Option<usize>, field: String, message: String },
    #[error("cannot merge reports: {0}")]
    Merge(String),
}

/// One failing run in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSummary {
    pub scenario: String,
    pub seed: u64,
    pub canaries: Vec<String>,
    /// The one command that replays it.
    pub replay: String,
    /// The failure file, when one was written.
    pub failure_file: Option<String>,
    pub trace_hash: String,
    pub violations: Vec<Violation>,
}

/// One run that could not be run (the world returned an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunErrorSummary {
    pub scenario: String,
    pub seed: u64,
    pub error: String,
}

/// The report of one sweep, one shard of a sweep, or several merged. See `reports/README.md`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepReport {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// One entry per part (one for a sweep, one per shard after a merge).
    pub parts: Vec<ReportPart>,
    /// Runs done (scenarios × seeds of the shard).
    pub seeds_run: u64,
    pub passed: u64,
    pub failed: u64,
    /// Runs the world could not run.
    pub errored: u64,
    /// Runs with violations labelled outside the timing envelope (not failures).
    pub outside_envelope_runs: u64,
    pub failures: Vec<FailureSummary>,
    pub errors: Vec<RunErrorSummary>,
    /// Fault class -> times it fired, over every run.
    pub fault_counts: BTreeMap<String, u64>,
    /// Fault class -> runs in which the swarm draw switched it on.
    pub fault_classes_on: BTreeMap<String, u64>,
    /// Fault classes that never fired in any run.
    pub faults_never_fired: Vec<String>,
    /// Coverage probe -> hits, over every run.
    pub probe_counts: BTreeMap<String, u64>,
    /// Metric -> latency distribution (ms).
    pub latencies: BTreeMap<String, LatencyHistogram>,
    /// Simulated time covered, ms.
    pub sim_ms: u64,
    /// Wall time spent, ms.
    pub wall_ms: u64,
    pub seeds_per_sec: f64,
    /// Simulated ms per wall second.
    pub sim_ms_per_wall_sec: f64,
}

/// What one part of a report covered.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportPart {
    pub scenarios: Vec<String>,
    /// The seed ranges, as given (`0..1000`).
    pub seeds: Vec<String>,
    /// `K/N`, when sharded.
    pub shard: Option<String>,
    pub canaries: Vec<String>,
    pub commit: String,
}

fn rate(count: f64, wall_ms: u64) -> f64 {
    if wall_ms == 0 {
        0.0
    } else {
        count * 1000.0 / wall_ms as f64
    }
}

impl SweepReport {
    /// An empty report of one part.
    pub fn new(part: ReportPart) -> Self {
        SweepReport { format: REPORT_FORMAT, parts: vec![part], ..SweepReport::default() }
    }

    /// Count one finished run. `failure_file` is where its failure file was written (if it
    /// failed), `replay` its replay line.
    pub fn add_outcome(
        &mut self,
        scenario: &str,
        canaries: &[String],
        outcome: &RunOutcome,
        replay: &str,
        failure_file: Option<&Path>,
    ) {
        self.seeds_run += 1;
        if outcome.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.push(FailureSummary {
                scenario: scenario.to_string(),
                seed: outcome.seed,
                canaries: canaries.to_vec(),
                replay: replay.to_string(),
                failure_file: failure_file.map(|p| p.display().to_string()),
                trace_hash: format!("{:016x}", outcome.trace_hash),
                violations: outcome.violations.clone(),
            });
        }
        if !outcome.outside_envelope.is_empty() {
            self.outside_envelope_runs += 1;
        }
        for (class, n) in &outcome.fault_counts {
            *self.fault_counts.entry(class.clone()).or_insert(0) += n;
        }
        for class in classes_on(&outcome.derived_config) {
            *self.fault_classes_on.entry(class).or_insert(0) += 1;
        }
        for (probe, n) in &outcome.probe_counts {
            *self.probe_counts.entry(probe.clone()).or_insert(0) += n;
        }
        for (metric, samples) in &outcome.latencies_ms {
            self.latencies.entry(metric.clone()).or_default().add_samples(samples);
        }
        self.sim_ms += outcome.sim_ms;
    }

    /// Count one run the world could not run.
    pub fn add_error(&mut self, scenario: &str, seed: u64, error: &str) {
        self.seeds_run += 1;
        self.errored += 1;
        self.errors.push(RunErrorSummary {
            scenario: scenario.to_string(),
            seed,
            error: error.to_string(),
        });
    }

    /// Close the report: sort failures and errors, list the classes that never fired, compute
    /// the rates from `wall_ms`.
    pub fn finish(&mut self, wall_ms: u64) {
        self.wall_ms = wall_ms;
        self.recompute();
    }

    fn recompute(&mut self) {
        self.failures.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
        self.errors.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
        self.faults_never_fired = FaultClass::ALL
            .iter()
            .map(|c| c.name().to_string())
            .filter(|c| self.fault_counts.get(c).copied().unwrap_or(0) == 0)
            .collect();
        self.seeds_per_sec = rate(self.seeds_run as f64, self.wall_ms);
        self.sim_ms_per_wall_sec = rate(self.sim_ms as f64, self.wall_ms);
    }

    /// Whether every run held (no failure and no error).
    pub fn all_held(&self) -> bool {
        self.failed == 0 && self.errored == 0
    }

    /// Percentiles of every metric.
    pub fn latency_summaries(&self) -> BTreeMap<String, LatencySummary> {
        self.latencies.iter().map(|(k, h)| (k.clone(), h.summary())).collect()
    }

    /// Join reports (shards of one sweep, or sweeps of different scenarios) into one.
    pub fn merge(reports: &[SweepReport]) -> Result<SweepReport, ReportError> {
        let mut out = SweepReport { format: REPORT_FORMAT, ..SweepReport::default() };
        let mut seen = BTreeSet::new();
        for r in reports {
            if r.format != REPORT_FORMAT {
                return Err(ReportError::Merge(format!(
                    "a report has format {}, not {REPORT_FORMAT}",
                    r.format
                )));
            }
            for part in &r.parts {
                if !seen.insert(part.clone()) {
                    return Err(ReportError::Merge(format!(
                        "the part {:?} seeds {:?} shard {} appears twice",
                        part.scenarios,
                        part.seeds,
                        part.shard.as_deref().unwrap_or("-")
                    )));
                }
                out.parts.push(part.clone());
            }
            out.seeds_run += r.seeds_run;
            out.passed += r.passed;
            out.failed += r.failed;
            out.errored += r.errored;
            out.outside_envelope_runs += r.outside_envelope_runs;
            out.failures.extend(r.failures.iter().cloned());
            out.errors.extend(r.errors.iter().cloned());
            for (maps_out, maps_in) in [
                (&mut out.fault_counts, &r.fault_counts),
                (&mut out.fault_classes_on, &r.fault_classes_on),
                (&mut out.probe_counts, &r.probe_counts),
            ] {
                for (k, n) in maps_in {
                    *maps_out.entry(k.clone()).or_insert(0) += n;
                }
            }
            for (metric, h) in &r.latencies {
                out.latencies.entry(metric.clone()).or_default().merge(h);
            }
            out.sim_ms += r.sim_ms;
            out.wall_ms += r.wall_ms;
        }
        out.parts.sort();
        out.recompute();
        Ok(out)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"report not serializable: {e}\"}}"))
    }

    /// Parse a report; `path` names it in errors (line and field from the JSON error).
    pub fn from_json(text: &str, path: &Path) -> Result<SweepReport, ReportError> {
        serde_json::from_str(text).map_err(|e| {
            let line = e.line();
            let field = text
                .lines()
                .nth(line.saturating_sub(1))
                .and_then(|l| l.trim_start().strip_prefix('"'))
                .and_then(|l| l.split_once('"'))
                .map(|(k, _)| k.to_string())
                .unwrap_or_default();
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            ReportError::Invalid {
                file: path.to_path_buf(),
                line: (line > 0).then_some(line),
                field,
                message,
            }
        })
    }

    /// Read a report file.
    pub fn load(path: &Path) -> Result<SweepReport, ReportError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ReportError::Read { path: path.to_path_buf(), error: e.to_string() })?;
        SweepReport::from_json(&text, path)
    }

    /// Write `<stem>.json` and `<stem>.md` into `dir` (created if needed); returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), ReportError> {
        let json = dir.join(format!("{stem}.json"));
        let md = dir.join(format!("{stem}.md"));
        std::fs::create_dir_all(dir)
            .map_err(|e| ReportError::Write { path: dir.to_path_buf(), error: e.to_string() })?;
        self.write_json(&json)?;
        std::fs::write(&md, self.to_markdown())
            .map_err(|e| ReportError::Write { path: md.clone(), error: e.to_string() })?;
        Ok((json, md))
    }

    /// Write the JSON form to `path`, and the Markdown form next to it (`.md`).
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::Write {
                path: dir.to_path_buf(),
                error: e.to_string(),
            })?;
        }
        std::fs::write(path, self.to_json())
            .map_err(|e| ReportError::Write { path: path.to_path_buf(), error: e.to_string() })?;
        let md = path.with_extension("md");
        std::fs::write(&md, self.to_markdown())
            .map_err(|e| ReportError::Write { path: md, error: e.to_string() })
    }

    /// The report for people.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# pegsim sweep report\n");
        for p in &self.parts {
            let shard = p.shard.as_ref().map_or(String::new(), |k| format!(", shard {k}"));
            let canaries =
                if p.canaries.is_empty() { "none".to_string() } else { p.canaries.join(", ") };
            let _ = writeln!(
                s,
                "- {} — seeds {}{shard}; canaries: {canaries}; commit `{}`",
                p.scenarios.join(", "),
                p.seeds.join(", "),
                p.commit
            );
        }
        let verdict = if self.all_held() { "**all held**" } else { "**FAILED**" };
        let _ = writeln!(
            s,
            "\n{verdict}: {} runs, {} passed, {} failed, {} could not run; {} with violations outside the timing envelope.\n",
            self.seeds_run, self.passed, self.failed, self.errored, self.outside_envelope_runs
        );
        let _ = writeln!(
            s,
            "Wall time {:.1} s, {:.2} seeds/s, {:.0} simulated ms per wall second ({:.1} simulated s in all).\n",
            self.wall_ms as f64 / 1000.0,
            self.seeds_per_sec,
            self.sim_ms_per_wall_sec,
            self.sim_ms as f64 / 1000.0
        );
        if !self.failures.is_empty() {
            let _ = writeln!(s, "## Failures\n");
            let _ = writeln!(s, "| scenario | seed | first violation | at ms | replay |");
            let _ = writeln!(s, "|---|---|---|---|---|");
            for f in &self.failures {
                let (first, at) =
                    f.violations.first().map_or(("-".to_string(), "-".to_string()), |v| {
                        (md_cell(&format!("{}: {}", v.invariant, v.detail)), v.at_ms.to_string())
                    });
                let _ = writeln!(
                    s,
                    "| {} | {} | {first} | {at} | `{}` |",
                    md_cell(&f.scenario),
                    f.seed,
                    f.replay
                );
            }
            s.push('\n');
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "## Runs that could not run\n");
            let _ = writeln!(s, "| scenario | seed | error |\n|---|---|---|");
            for e in &self.errors {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    md_cell(&e.scenario),
                    e.seed,
                    md_cell(&e.error)
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Fault classes\n");
        let _ = writeln!(s, "| class | runs with the class on | times fired |\n|---|---|---|");
        let mut classes: BTreeSet<&str> = FaultClass::ALL.iter().map(|c| c.name()).collect();
        classes.extend(self.fault_counts.keys().map(String::as_str));
        for class in FaultClass::ALL
            .iter()
            .map(|c| c.name())
            .chain(classes.iter().copied().filter(|c| FaultClass::from_name(c).is_none()))
        {
            let on = self.fault_classes_on.get(class).copied().unwrap_or(0);
            let fired = self.fault_counts.get(class).copied().unwrap_or(0);
            let _ = writeln!(s, "| {class} | {on} | {fired} |");
        }
        if self.faults_never_fired.is_empty() {
            let _ = writeln!(s, "\nEvery fault class fired.\n");
        } else {
            let _ = writeln!(s, "\nNever fired: {}.\n", self.faults_never_fired.join(", "));
        }
        let _ = writeln!(s, "## Coverage probes\n");
        if self.probe_counts.is_empty() {
            let _ = writeln!(s, "No probe was hit.\n");
        } else {
            let _ = writeln!(s, "| probe | hits |\n|---|---|");
            for (p, n) in &self.probe_counts {
                let _ = writeln!(s, "| {p} | {n} |");
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Latencies (ms of simulated time)\n");
        if self.latencies.is_empty() {
            let _ = writeln!(s, "No latency was recorded.");
        } else {
            let _ = writeln!(
                s,
                "| metric | count | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|"
            );
            for (m, l) in self.latency_summaries() {
                let _ = writeln!(
                    s,
                    "| {m} | {} | {} | {} | {} | {} |",
                    l.count, l.p50, l.p90, l.p99, l.max
                );
            }
        }
        s
    }
}

/// Text safe in one Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The fault classes a derived configuration (TOML) switched on: the keys of its `[faults]`.
fn classes_on(derived_toml: &str) -> Vec<String> {
    toml::from_str::<toml::Table>(derived_toml)
        .ok()
        .and_then(|t| {
            t.get("faults").and_then(|f| f.as_table()).map(|f| f.keys().cloned().collect())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
