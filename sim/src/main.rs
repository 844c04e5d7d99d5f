//! The `pegsim` binary. The command line itself is in `cli/` (a module of this binary, not of the
//! library); this file only hands it the world that runs a seed.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main_with(pegsim::world::run)
}
