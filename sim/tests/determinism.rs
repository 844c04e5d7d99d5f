//! Determinism of whole worlds inside one process: the same seed gives the same trace hash
//! whatever ran before it in the process (another seed, the same seed), and different seeds give
//! different traces. (`pegsim check-determinism` checks the same across processes.)

use std::path::{Path, PathBuf};

use pegsim::run::{RunOutcome, RunSpec, TraceMode};
use pegsim_model::canary::Canaries;

fn default_scenario() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/default.toml");
    let text = std::fs::read_to_string(&path).expect("scenarios/default.toml is in the repository");
    (path, text)
}

fn run(seed: u64) -> RunOutcome {
    let (scenario_path, scenario_text) = default_scenario();
    let spec = RunSpec {
        scenario_path,
        scenario_text,
        seed,
        canaries: Canaries::default(),
        trace: TraceMode::Ring,
    };
    pegsim::world::run(&spec).expect("the default scenario runs")
}

#[test]
fn a_seed_gives_the_same_trace_whatever_ran_before_it_in_the_process() {
    let first = run(1);
    let other = run(0);
    let again = run(1);
    assert!(first.history_len > 100, "a real run: {} entries", first.history_len);
    assert_eq!(first.trace_hash, again.trace_hash, "seed 1 after seed 0 differs from seed 1 alone");
    assert_eq!(first.history_len, again.history_len);
    assert_ne!(first.trace_hash, other.trace_hash, "seeds 0 and 1 gave the same trace");
}
