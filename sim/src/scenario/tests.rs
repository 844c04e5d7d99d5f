//! Tests of the scenario format, its errors and the swarm draw.

use std::path::{Path, PathBuf};

use super::*;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Parse `text` as `t.toml` and return the error's `(line, field, message)`.
fn error_of(text: &str) -> (Option<usize>, String, String) {
    match Scenario::parse(text, "t.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(ScenarioError::Invalid { file, line, field, message }) => {
            assert_eq!(file, PathBuf::from("t.toml"));
            (line, field, message)
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// The 1-based line of the first line of `text` containing `needle` (computed by the test, not
/// by the code under test).
fn line_containing(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).expect("needle in text")
}

#[test]
fn an_empty_file_takes_every_default() {
    let s = Scenario::parse("", "scenarios/empty-one.toml").unwrap();
    let expected = Scenario { name: "empty-one".to_string(), ..Scenario::default() };
    assert_eq!(s, expected);
    assert_eq!(s.topology.edge_nodes, Range::one(2));
    assert_eq!(s.preload.budget, Range::one(PRELOAD_MAX_TOTAL_BYTES));
    assert_eq!(s.preload.default_manifest, ManifestSpec::Reference);
    assert!(FaultClass::ALL.iter().all(|c| s.faults.enabled(*c) == 0.0));
    assert_eq!(s.engine.resolved_timing(), Ok(Timing::default()));
    // With every class off, no seed turns one on.
    for seed in 0..50 {
        assert!(s.draw(&SeedStreams::new(seed)).faults.on().is_empty());
    }
}

#[test]
fn the_default_scenario_parses_and_switches_classes_on() {
    let path = repo_file("scenarios/default.toml");
    let s = Scenario::load(&path).unwrap();
    assert_eq!(s.name, "default");
    assert!(FaultClass::ALL.iter().all(|c| s.faults.enabled(*c) > 0.0), "every class may fire");
    let on_somewhere: std::collections::BTreeSet<FaultClass> =
        (0..200).flat_map(|seed| s.draw(&SeedStreams::new(seed)).faults.on()).collect();
    assert_eq!(on_somewhere.len(), FaultClass::ALL.len());
}

#[test]
fn every_scenario_file_in_the_repository_is_valid() {
    let dir = repo_file("scenarios");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let is_scenario = path.extension().is_some_and(|e| e == "toml")
            && path.file_name().is_some_and(|n| !NOT_SCENARIOS.iter().any(|x| n == *x));
        if is_scenario {
            if let Err(e) = Scenario::load(&path) {
                panic!("{e}");
            }
        }
    }
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let text = "name = \"x\"\n[topology]\nedge_nodes = 2\nedge_node = 3\n";
    let (line, field, message) = error_of(text);
    assert_eq!(line, Some(line_containing(text, "edge_node =")));
    assert_eq!(field, "topology.edge_node");
    assert!(message.contains("unknown field `edge_node`"), "{message}");

    let text = "[faults.partition]\nenabled = 0.5\nrate = 3\n";
    let (line, field, _) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(3), "faults.partition.rate"));

    let text = "description = \"d\"\nbogus = 1\n";
    let (line, field, _) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(2), "bogus"));

    let text = "[faults.no_such_class]\nenabled = 1\n";
    let (line, field, message) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(1), "faults.no_such_class"));
    assert!(message.contains("connection_reset"), "lists the known classes: {message}");
}

#[test]
fn wrong_types_are_named_with_their_line() {
    let text = "[phases]\nheal_ms = 10\nwatchdog_ms = \"soon\"\n";
    let (line, field, message) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(3), "phases.watchdog_ms"));
    assert!(message.contains("invalid type"), "{message}");

    let text = "[workload]\nactor_names = \"counter\"\n";
    let (line, field, _) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(2), "workload.actor_names"));

    let text = "[topology]\nrestart_crashed_runners = 1\n";
    let (line, field, _) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(2), "topology.restart_crashed_runners"));
}

#[test]
fn bad_ranges_are_named_with_their_line() {
    let text = "[workload]\nactors = [4, 8]\n\nvalue_size = [5, 1]\n";
    let (line, field, message) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(4), "workload.value_size"));
    assert!(message.contains("bad range [5, 1]"), "{message}");

    let text = "[faults.link_delay]\nenabled = 1\ndelay_ms = [900, 10]\n";
    let (line, field, _) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(3), "faults.link_delay.delay_ms"));
}

#[test]
fn out_of_range_values_found_after_parsing_are_named_with_their_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("[topology]\nedge_nodes = 1\n", "edge_nodes", "topology.edge_nodes", "at least 2"),
        ("[topology]\n\nedge_nodes = [1, 3]\n", "edge_nodes", "topology.edge_nodes", "at least 2"),
        (
            "[faults.bus_loss]\nenabled = 0.5\nchance = [0.0, 1.5]\n",
            "chance",
            "faults.bus_loss.chance",
            "[0, 1]",
        ),
        ("[faults.bus_loss]\nenabled = 2\n", "enabled", "faults.bus_loss.enabled", "[0, 1]"),
        (
            "[workload]\nvalue_size = [0, 200000]\n",
            "value_size",
            "workload.value_size",
            "131072",
        ),
        (
            "[workload]\nactor_names = [\"a\", \"b\", \"a\"]\n",
            "actor_names",
            "workload.actor_names[2]",
            "repeated",
        ),
        (
            "[workload.mix]\nsleep = 0\nstop = 0\ncrash = 0\ndestroy = 0\nwake = 0\nset_alarm = 0\nkv_write = 0\nkv_delete = 0\ndrain = 0\n",
            "[workload.mix]",
            "workload.mix",
            "weight above 0",
        ),
        (
            "[workload.keys]\nconnection = 0\nmessage = 0\nhistory = 0\npage = 0\nuser = 0\n",
            "[workload.keys]",
            "workload.keys",
            "weight above 0",
        ),
        (
            "[workload.keys]\nconnection = 4294967295\nuser = 1\n",
            "[workload.keys]",
            "workload.keys",
            "at most 4294967295",
        ),
        (
            "[engine.timing]\nping_interval_ms = 3000\nping_intervall_ms = 5\n",
            "ping_intervall_ms",
            "engine.timing.ping_intervall_ms",
            "unknown timing field",
        ),
        (
            "[engine]\nkv_quota = 5\n[engine.timing]\nfence_margin_ms = 1500\n",
            "[engine.timing]",
            "engine.timing",
            "MAX_LINK_DELAY + MAX_STEP_DELAY < FENCE_MARGIN",
        ),
        (
            "[engine.timing]\nmax_frame_bytes = 5308415\n",
            "[engine.timing]",
            "engine.timing",
            "MAX_ACTOR_INPUT_BYTES + PRELOAD_MAX_TOTAL_BYTES + 64 KiB <= MAX_FRAME_BYTES",
        ),
        (
            "[engine.timing]\nbackoff_max_exponent = 5000000000\n",
            "backoff_max_exponent",
            "engine.timing.backoff_max_exponent",
            "does not fit",
        ),
        (
            "[preload.manifests.chatt]\nkeys = [[1]]\n",
            "[preload.manifests.chatt]",
            "preload.manifests.chatt",
            "not one of workload.actor_names",
        ),
        (
            "[topology]\nrunner_versions = [1, 2]\n[preload.by_version.2.counter]\nkeys = [[1]]\n",
            "[preload.by_version.2.counter]",
            "preload.by_version",
            "differ_by_version",
        ),
    ];
    for (text, needle, want_field, want_message) in cases {
        let (line, field, message) = error_of(text);
        assert_eq!(line, Some(line_containing(text, needle)), "{text}");
        assert_eq!(&field, want_field, "{text}");
        assert!(message.contains(want_message), "{text}: {message}");
    }
}

#[test]
fn partial_flag_disagreement_is_an_error_unless_labelled_negative() {
    let text = "\
[topology]
runner_versions = [1, 2]
[preload]
differ_by_version = true
[preload.by_version.2.counter]
prefixes = [{ prefix = [8, 1], max_bytes = 100, partial = false }]
";
    let (line, field, message) = error_of(text);
    assert_eq!(line, Some(line_containing(text, "[preload.by_version.2.counter]")));
    assert_eq!(field, "preload.by_version.2.counter");
    assert!(message.contains("§3.7"), "{message}");
    let labelled = text.replace(
        "differ_by_version = true",
        "differ_by_version = true\npartial_mismatch_negative = true",
    );
    let s = Scenario::parse(&labelled, "t.toml").unwrap();
    let d = s.draw(&SeedStreams::new(1));
    assert_eq!(d.preload.spec_for(1, "counter"), &ManifestSpec::Reference);
    assert!(matches!(d.preload.spec_for(2, "counter"), ManifestSpec::Custom(_)));
}

#[test]
fn syntax_errors_name_file_and_line() {
    let text = "[phases]\nheal_ms = 10\nfault_ms = = 3\n";
    let (line, field, _) = error_of(text);
    assert_eq!((line, field.as_str()), (Some(3), "phases.fault_ms"));
    let err = Scenario::parse(text, "dir/t.toml").unwrap_err().to_string();
    assert!(err.starts_with("dir/t.toml:3: field `phases.fault_ms`: "), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let err = Scenario::load("/nonexistent/x.toml").unwrap_err();
    assert!(matches!(err, ScenarioError::Read { .. }));
    assert!(err.to_string().starts_with("/nonexistent/x.toml: cannot read"), "{err}");
}

#[test]
fn draws_are_a_function_of_the_seed() {
    let s = Scenario::load(repo_file("scenarios/default.toml")).unwrap();
    for seed in [0, 1, 42, u64::MAX] {
        assert_eq!(s.draw(&SeedStreams::new(seed)), s.draw(&SeedStreams::new(seed)));
    }
    let draws: Vec<String> =
        (0..64).map(|seed| s.draw(&SeedStreams::new(seed)).to_toml()).collect();
    let mut distinct = draws.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), draws.len(), "different seeds give different draws");
}

#[test]
fn draws_respect_the_ranges() {
    let s = Scenario::load(repo_file("scenarios/default.toml")).unwrap();
    for seed in 0..300 {
        let d = s.draw(&SeedStreams::new(seed));
        assert!(s.topology.edge_nodes.contains(d.topology.edge_nodes));
        assert!(s.topology.runner_processes.contains(d.topology.runners.len() as u64));
        for r in &d.topology.runners {
            assert!(s.topology.slots_per_runner.contains(u64::from(r.slots)));
            assert!(s.topology.runner_versions.all().contains(&r.version));
            assert!(s.topology.namespaces[&r.namespace].contains(&r.pool));
        }
        assert!(s.phases.fault_ms.contains(d.phases.fault_ms));
        assert!(s.workload.actors.contains(d.workload.actors));
        assert!(s.workload.create_rate_per_min.contains(d.workload.create_rate_per_min));
        let v = d.workload.value_size;
        assert!(v.lo == s.workload.value_size.lo && s.workload.value_size.contains(v.hi));
        assert!(s.preload.budget.contains(d.preload.budget));
        if let Some(link) = &d.faults.link_delay {
            assert!(s.faults.link_delay.rate_per_min.contains(link.rate_per_min));
            assert!(link.delay_ms.lo <= link.delay_ms.hi);
            assert!(s.faults.link_delay.delay_ms.contains(link.delay_ms.hi));
        }
        if let Some(storm) = &d.faults.reconnect_storm {
            assert!(s.faults.reconnect_storm.resets.contains(storm.resets));
        }
    }
}

#[test]
fn swarm_draws_follow_the_enabled_probability() {
    let mut s = Scenario::default();
    let probabilities = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 0.0];
    for (i, class) in FaultClass::ALL.iter().enumerate() {
        s.faults.set_enabled(*class, probabilities[i % probabilities.len()]);
    }
    s.validate().unwrap();
    let seeds = 2_000u64;
    let mut on = vec![0u64; FaultClass::ALL.len()];
    let mut sizes = std::collections::BTreeSet::new();
    for seed in 0..seeds {
        let d = s.draw(&SeedStreams::new(seed));
        sizes.insert(d.faults.on().len());
        for (i, class) in FaultClass::ALL.iter().enumerate() {
            if d.faults.is_on(*class) {
                on[i] += 1;
            }
        }
    }
    for (i, class) in FaultClass::ALL.iter().enumerate() {
        let p = probabilities[i % probabilities.len()];
        let got = on[i] as f64 / seeds as f64;
        // 4.5 standard deviations of a binomial proportion at n = 2000 is at most 0.05.
        assert!((got - p).abs() <= 0.05, "{class}: configured {p}, drawn {got}");
    }
    assert!(sizes.len() > 3, "seeds differ in how many classes are on: {sizes:?}");
}

#[test]
fn changing_one_class_leaves_every_other_draw_unchanged() {
    let base = Scenario::load(repo_file("scenarios/default.toml")).unwrap();
    let mut changed = base.clone();
    changed.faults.partition.enabled = 1.0;
    changed.faults.partition.runners = Range::new(2, 3);
    changed.workload.actors = Range::new(1, 100);
    for seed in 0..100 {
        let a = base.draw(&SeedStreams::new(seed));
        let b = changed.draw(&SeedStreams::new(seed));
        let mut a_faults = a.faults.clone();
        let mut b_faults = b.faults.clone();
        a_faults.partition = None;
        b_faults.partition = None;
        assert_eq!(a_faults, b_faults, "seed {seed}");
        assert_eq!(a.topology, b.topology);
        assert_eq!(a.preload, b.preload);
        assert_eq!(a.workload.value_size, b.workload.value_size);
    }
}

#[test]
fn scenarios_and_derived_configurations_round_trip_through_toml() {
    let s = Scenario::load(repo_file("scenarios/default.toml")).unwrap();
    let text = s.to_toml().unwrap();
    let back = Scenario::parse(&text, "default.toml").unwrap();
    assert_eq!(back, s);
    for seed in [0, 7, u64::MAX] {
        let d = s.draw(&SeedStreams::new(seed));
        let back = Derived::from_toml(&d.to_toml()).unwrap();
        assert_eq!(back, d);
        assert!(!d.to_toml().starts_with('#'), "renders without error");
    }
}

#[test]
fn derived_engine_config_carries_the_draw() {
    let text = "[engine]\nkv_quota = 4096\nmetadata_version = \"9.9\"\n[engine.timing]\nping_interval_ms = 2000\n[preload]\nbudget = 77\n";
    let s = Scenario::parse(text, "t.toml").unwrap();
    let d = s.draw(&SeedStreams::new(3));
    let c = d.engine_config();
    assert_eq!(c.preload_budget, 77);
    assert_eq!(c.kv.max_storage_size, 4096);
    assert_eq!(c.kv.metadata_version, b"9.9".to_vec());
    assert_eq!(c.timing.ping_interval_ms, 2000);
    assert_eq!(c.timing.ping_timeout_ms, Timing::default().ping_timeout_ms);
    assert!(c.namespaces["default"].contains("default"));
}

/// Every field path of the format, from the serialized default scenario plus the fault knobs.
fn every_field_path() -> Vec<String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                // Map-valued sections hold user-chosen keys; document the section itself.
                let is_user_map = [
                    "topology.namespaces",
                    "preload.manifests",
                    "preload.by_version",
                    "engine.timing",
                ]
                .contains(&path.as_str());
                if matches!(v, toml::Value::Table(_)) && !is_user_map {
                    walk(&path, v, out);
                } else {
                    out.push(path);
                }
            }
        }
    }
    let value = toml::Value::try_from(Scenario::default()).unwrap();
    let mut out = Vec::new();
    walk("", &value, &mut out);
    for path in ["preload.manifests", "preload.by_version", "engine.timing"] {
        if !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    out
}

#[test]
fn the_readme_documents_every_field() {
    let readme = std::fs::read_to_string(repo_file("scenarios/README.md")).unwrap();
    let missing: Vec<String> = every_field_path()
        .into_iter()
        .filter(|path| !readme.contains(&format!("`{path}`")))
        .collect();
    assert!(missing.is_empty(), "scenarios/README.md does not document: {missing:?}");
    let timing = serde_json::to_value(Timing::default()).unwrap();
    for name in timing.as_object().unwrap().keys() {
        assert!(readme.contains(&format!("`{name}`")), "README lacks timing field {name}");
    }
    for class in FaultClass::ALL {
        for knob in class.knobs() {
            let row = format!("`faults.{}.{}`", class.name(), knob.name);
            assert!(readme.contains(&row), "README lacks {row}");
            assert!(readme.contains(knob.default), "README lacks the default of {row}");
        }
    }
}

mod properties {
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest, Strategy};

    use super::*;

    fn range_u64(lo_min: u64, max: u64) -> impl Strategy<Value = Range<u64>> {
        (lo_min..=max, lo_min..=max).prop_map(|(a, b)| Range::new(a.min(b), a.max(b)))
    }

    fn chance() -> impl Strategy<Value = Range<f64>> {
        (0u32..=100, 0u32..=100)
            .prop_map(|(a, b)| Range::new(f64::from(a.min(b)) / 100.0, f64::from(a.max(b)) / 100.0))
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        (
            range_u64(2, 6),
            range_u64(1, 8),
            range_u64(1, 64),
            range_u64(0, 300_000),
            range_u64(0, MAX_VALUE_SIZE as u64),
            proptest::collection::vec(0u32..=100, FaultClass::ALL.len()),
            chance(),
            range_u64(0, 30_000),
            (0u64..=2_000_000, proptest::bool::ANY),
            proptest::sample::select(vec![
                Versions::Range(Range::new(1, 3)),
                Versions::OneOf(vec![2, 7]),
                Versions::Range(Range::one(4)),
            ]),
        )
            .prop_map(
                |(
                    edges,
                    runners,
                    slots,
                    fault_ms,
                    value,
                    enabled,
                    bus_loss,
                    delay,
                    (budget, restart),
                    versions,
                )| {
                    let mut s = Scenario { name: "prop".to_string(), ..Scenario::default() };
                    s.topology.edge_nodes = edges;
                    s.topology.runner_processes = runners;
                    s.topology.slots_per_runner = slots;
                    s.topology.runner_versions = versions;
                    s.topology.restart_crashed_runners = restart;
                    s.phases.fault_ms = fault_ms;
                    s.workload.value_size = value;
                    s.preload.budget = Range::one(budget);
                    for (class, p) in FaultClass::ALL.iter().zip(enabled) {
                        s.faults.set_enabled(*class, f64::from(p) / 100.0);
                    }
                    s.faults.bus_loss.chance = bus_loss;
                    s.faults.link_delay.delay_ms = delay;
                    s
                },
            )
    }

    proptest! {
        #[test]
        fn generated_scenarios_round_trip_and_draw_inside_their_ranges(s in scenario(), seed in 0u64..u64::MAX) {
            prop_assert!(s.validate().is_ok(), "{:?}", s.validate());
            let text = s.to_toml().expect("renders");
            let back = Scenario::parse(&text, "prop.toml").expect("parses back");
            prop_assert_eq!(&back, &s);
            let d = back.draw(&SeedStreams::new(seed));
            prop_assert_eq!(&d, &s.draw(&SeedStreams::new(seed)));
            prop_assert!(s.topology.edge_nodes.contains(d.topology.edge_nodes));
            prop_assert!(s.topology.runner_processes.contains(d.topology.runners.len() as u64));
            prop_assert!(s.phases.fault_ms.contains(d.phases.fault_ms));
            prop_assert_eq!(d.preload.budget, s.preload.budget.lo);
            for class in d.faults.on() {
                prop_assert!(s.faults.enabled(class) > 0.0);
            }
            if let Some(b) = &d.faults.bus_loss {
                prop_assert!(s.faults.bus_loss.chance.contains(b.chance));
            }
            if let Some(l) = &d.faults.link_delay {
                prop_assert!(l.delay_ms.lo == s.faults.link_delay.delay_ms.lo);
                prop_assert!(s.faults.link_delay.delay_ms.contains(l.delay_ms.hi));
            }
            prop_assert_eq!(Derived::from_toml(&d.to_toml()).expect("derived parses"), d);
        }
    }
}

#[test]
fn a_required_probe_must_be_a_known_probe() {
    let ok = Scenario::parse("[coverage]\nrequired = [\"replay-multi-page\"]\n", "c.toml");
    assert!(ok.and_then(|s| s.validate()).is_ok());
    let text = "name = \"c\"\n[coverage]\nrequired = [\"replay-mutli-page\"]\n";
    let bad = Scenario::parse(text, "c.toml").and_then(|s| s.validate()).expect_err("a typo");
    let text = bad.to_string();
    assert!(
        text.starts_with("c.toml:3: field `coverage.required`: unknown probe `replay-mutli-page`"),
        "{text}"
    );
}
