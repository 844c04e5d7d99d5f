//! `pegsim`: the deterministic simulation of Rivet's actor orchestration protocol.
//!
//! The model of the system under test lives in `pegsim-model` (sans-IO state machines). This crate
//! runs it inside a seeded madsim world, injects faults, records the history and checks it.
//!
//! Modules:
//! - `seed`: the root seed and its named random sub-streams.
//! - `scenario`: the TOML scenario format and the per-seed swarm draw.
//! - `history`: the append-only history, its trace hash and trace files.
//! - `net`: the simulated runner-edge transport (a controllable link and WebSocket over it).
//! - `coverage`: coverage probes derived from the history (rare paths a sweep must reach).
//! - `check`: invariant checkers over the history (safety online, liveness after heal, oracles).
//! - `failure`: failure files (a failure is a coordinate) and replay.
//! - `report`: run and sweep reports.
//! - `world`: the madsim world that runs one seed (nodes, buses, faults, workload).
//! - `run`: the shared vocabulary (run spec and outcome, history entries, violations).

pub mod check;
pub mod coverage;
pub mod failure;
pub mod history;
pub mod net;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod world;
