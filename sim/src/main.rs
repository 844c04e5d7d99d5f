//! The `pegsim` binary. The command line itself is in `cli/` (a module of this binary, not of the
//! library); this file only picks the world that runs a seed.

mod cli;

use pegsim::run::{RunOutcome, RunSpec};

/// Stands in for `pegsim::world::run` until the simulated world is built: every run reports that
/// it could not run (exit code 2).
fn world_not_built(_spec: &RunSpec) -> Result<RunOutcome, String> {
    Err("world not built yet".to_string())
}

fn main() -> std::process::ExitCode {
    cli::main_with(world_not_built)
}
