//! The runner (`spec/protocol.md` §1.1): the runner client and the simulated actor application.
//!
//! - [`app`]: the model actor runtime's key layout, state format and workload actions.
//! - [`startup`]: the startup program, its bundle-run driver and its oracle run.

pub mod app;
pub mod startup;

#[cfg(test)]
mod tests;
