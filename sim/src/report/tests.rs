//! Tests of sweep reports: counting, merging, JSON and Markdown.

use std::collections::BTreeMap;

use super::*;

fn outcome(seed: u64, failed: bool, faults: &[(&str, u64)], probes: &[(&str, u64)]) -> RunOutcome {
    let violations = if failed {
        vec![Violation {
            invariant: "S4 INV-EVT (order, prefix)".into(),
            detail: "gap | at 3".into(),
            at_ms: 1_000 + seed,
            seq: 5,
            actor: Some("a".into()),
            runner: None,
            outside_envelope: false,
        }]
    } else {
        vec![]
    };
    let on: String = faults.iter().map(|(c, _)| format!("[faults.{c}]\nx = 1\n")).collect();
    RunOutcome {
        seed,
        trace_hash: seed.wrapping_mul(31),
        history_len: 10,
        violations,
        derived_config: format!("seed = {seed}\n{on}"),
        fault_counts: faults.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        probe_counts: probes.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        sim_ms: 60_000,
        latencies_ms: BTreeMap::from([(
            "start_to_running".to_string(),
            vec![seed * 10, seed * 20],
        )]),
        ..RunOutcome::default()
    }
}

fn part(shard: &str) -> ReportPart {
    ReportPart {
        scenarios: vec!["scenarios/default.toml".into()],
        seeds: vec!["0..4".into()],
        shard: Some(shard.into()),
        canaries: vec![],
        commit: "abc".into(),
    }
}

fn report(shard: &str, outcomes: &[RunOutcome]) -> SweepReport {
    let mut r = SweepReport::new(part(shard));
    // Added in reverse order: the report sorts.
    for o in outcomes.iter().rev() {
        r.add_outcome("default", &[], o, &format!("replay {}", o.seed), None);
    }
    r.finish(2_000);
    r
}

#[test]
fn a_report_counts_runs_faults_probes_and_lists_never_fired_classes() {
    let outcomes = [
        outcome(1, true, &[("partition", 3), ("bus_loss", 0)], &[("replay-paged", 1)]),
        outcome(3, false, &[("partition", 2)], &[("replay-paged", 4), ("gap", 1)]),
        outcome(5, true, &[], &[]),
    ];
    let mut r = report("1/2", &outcomes);
    r.add_error("default", 7, "world not built yet");
    r.finish(4_000);
    assert_eq!((r.seeds_run, r.passed, r.failed, r.errored), (4, 1, 2, 1));
    assert!(!r.all_held());
    assert_eq!(r.fault_counts["partition"], 5);
    assert_eq!(r.fault_classes_on["partition"], 2);
    assert_eq!(r.fault_classes_on["bus_loss"], 1);
    assert_eq!(r.probe_counts["replay-paged"], 5);
    assert!(r.faults_never_fired.contains(&"bus_loss".to_string()));
    assert!(!r.faults_never_fired.contains(&"partition".to_string()));
    assert_eq!(r.faults_never_fired.len(), FaultClass::ALL.len() - 1);
    assert_eq!(r.failures.iter().map(|f| f.seed).collect::<Vec<_>>(), [1, 5]);
    assert_eq!(r.failures[0].replay, "replay 1");
    assert_eq!(r.latencies["start_to_running"].count(), 6);
    assert_eq!(r.seeds_per_sec, 1.0);
    assert_eq!(r.sim_ms, 180_000);
}

#[test]
fn merge_sums_counts() {
    let a = report(
        "1/2",
        &[
            outcome(0, false, &[("partition", 3)], &[("p", 2)]),
            outcome(2, true, &[("bus_loss", 1)], &[]),
        ],
    );
    let b = report(
        "2/2",
        &[
            outcome(1, true, &[("partition", 4)], &[("p", 5), ("q", 1)]),
            outcome(3, false, &[], &[]),
        ],
    );
    let m = SweepReport::merge(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(m.seeds_run, a.seeds_run + b.seeds_run);
    assert_eq!(m.passed, a.passed + b.passed);
    assert_eq!(m.failed, a.failed + b.failed);
    for class in ["partition", "bus_loss"] {
        let sum = a.fault_counts.get(class).unwrap_or(&0) + b.fault_counts.get(class).unwrap_or(&0);
        assert_eq!(m.fault_counts[class], sum, "{class}");
    }
    assert_eq!(m.probe_counts["p"], 7);
    assert_eq!(m.probe_counts["q"], 1);
    assert_eq!(m.failures.iter().map(|f| f.seed).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(m.parts.len(), 2);
    assert_eq!(m.wall_ms, a.wall_ms + b.wall_ms);
    assert_eq!(m.sim_ms, a.sim_ms + b.sim_ms);
    assert_eq!(
        m.latencies["start_to_running"].count(),
        a.latencies["start_to_running"].count() + b.latencies["start_to_running"].count()
    );
    assert!(!m.faults_never_fired.contains(&"partition".to_string()));
    // Merging in the other order gives the same report.
    assert_eq!(SweepReport::merge(&[b, a]).unwrap(), m);
}

#[test]
fn merging_a_part_twice_is_an_error() {
    let a = report("1/2", &[outcome(0, false, &[], &[])]);
    let err = SweepReport::merge(&[a.clone(), a]).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn json_round_trips_and_errors_name_line_and_field() {
    let r = report("1/1", &[outcome(0, true, &[("partition", 3)], &[("p", 1)])]);
    let json = r.to_json();
    let path = Path::new("r.json");
    assert_eq!(SweepReport::from_json(&json, path).unwrap(), r);
    let bad = json.replace("\"passed\": 0", "\"passed\": \"none\"");
    match SweepReport::from_json(&bad, path).unwrap_err() {
        ReportError::Invalid { line, field, message, .. } => {
            let want = bad.lines().position(|l| l.contains("\"passed\"")).map(|i| i + 1);
            assert_eq!(line, want);
            assert_eq!(field, "passed");
            assert!(message.contains("invalid type"), "{message}");
        }
        other => panic!("{other}"),
    }
    let bad = json.replace("\"passed\": 0", "\"passed\": 0,\n  \"bogus\": 1");
    match SweepReport::from_json(&bad, path).unwrap_err() {
        ReportError::Invalid { field, message, .. } => {
            assert_eq!(field, "bogus");
            assert!(message.contains("unknown field `bogus`"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn markdown_lists_failures_with_replay_lines_and_unfired_classes() {
    let r =
        report("1/1", &[outcome(9, true, &[("partition", 3)], &[]), outcome(4, false, &[], &[])]);
    let md = r.to_markdown();
    assert!(md.contains("**FAILED**"), "{md}");
    assert!(
        md.contains(
            "| default | 9 | S4 INV-EVT (order, prefix): gap \\| at 3 | 1009 | `replay 9` |"
        ),
        "{md}"
    );
    assert!(md.contains("Never fired: connection_reset,"), "{md}");
    assert!(md.contains("| partition | 1 | 3 |"), "{md}");
    assert!(md.contains("| start_to_running | 4 |"), "{md}");
}

#[test]
fn written_reports_can_be_loaded_back() {
    let dir = std::env::temp_dir().join(format!("pegsim-report-{}", std::process::id()));
    let r = report("1/1", &[outcome(1, false, &[], &[])]);
    let (json, md) = r.write(&dir, "report").unwrap();
    assert_eq!(SweepReport::load(&json).unwrap(), r);
    assert!(std::fs::read_to_string(md).unwrap().contains("**all held**"));
    assert!(matches!(SweepReport::load(&dir.join("missing.json")), Err(ReportError::Read { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}
