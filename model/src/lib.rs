//! `pegsim-model`: the system under test, as sans-IO state machines.
//!
//! Every component takes inputs and the current time and returns outputs; none owns a clock, an
//! RNG, a thread, a task or a socket. The simulator (crate `pegsim`) moves bytes and time, and its
//! checkers read the history it records, never this crate's private state.
//!
//! Modules, bottom-up:
//! - [`constants`]: every constant of the specs, named once.
//! - [`canary`]: the known defects that can be switched on.
//! - [`store`]: the transactional, multi-version byte-key store.
//! - [`keys`], [`records`]: the store's key layout and the records under it.
//! - [`wire`]: frame encoding with the published `rivet-envoy-protocol` crate, connect requests.
//! - [`kv`]: the actor KV API of `spec/preload.md` §1.
//! - [`preload`]: manifests, `batch_preload`, and the runner-side `PreloadMap`.
//! - [`config`]: timing and deployment parameters (spec defaults, varied by scenarios).
//! - [`env`]: what a node hands to every call (clocks, randomness, store, faults, history sink).
//! - [`fact`]: the history vocabulary the checkers read.
//! - [`engine`]: the server side (signals, bus, command log, registry, workflow, demuxer, edge).
//! - [`runner`]: the runner client and the simulated actor application.

pub mod canary;
pub mod config;
pub mod constants;
pub mod engine;
pub mod env;
pub mod fact;
pub mod keys;
pub mod kv;
pub mod preload;
pub mod records;
pub mod runner;
pub mod store;
pub mod wire;

pub use rivet_envoy_protocol as protocol;
