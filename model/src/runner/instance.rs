//! One actor instance `(A, g)` on the runner (`spec/protocol.md` §4.1): its phase from start to
//! termination and the KV requests it has outstanding.
//!
//! Owns: [`Instance`], [`Phase`]. Must not touch: events, frames or request ids beyond the set of
//! this instance's outstanding ones (the runner client moves an instance between phases and emits
//! its events).
//!
//! Phases: `Starting` (the startup program runs) → `Running` (it reported `Running`) →
//! `Stopping` (a `Stop` command: graceful, ends `OK` once every KV request resolved) or `Dying`
//! (a crash, a failed start or a kill: ends with the given code once every request that was
//! already sent resolved) → `Terminated` (it emitted `Stopped`; the record is a tombstone).

use std::collections::BTreeSet;

use crate::protocol::StopCode;

use super::app::RunningApp;
use super::startup::StartupDriver;

/// Where an instance is in its life.
#[derive(Debug)]
pub enum Phase {
    /// The startup program runs.
    Starting(Box<StartupDriver>),
    /// Startup finished; the application runs.
    Running(RunningApp),
    /// A `Stop` command arrived: no new requests; `Stopped{OK}` once none is outstanding.
    Stopping,
    /// Terminating with `code`: `Stopped` once no request is outstanding.
    Dying { code: StopCode, message: String },
    /// `Stopped` was emitted with this index.
    Terminated { stopped_index: i64 },
}

/// One instance.
#[derive(Debug)]
pub struct Instance {
    pub phase: Phase,
    /// Its KV requests that have not resolved (queued or in flight), by request id.
    pub outstanding: BTreeSet<u32>,
}

impl Instance {
    /// An instance in `phase` with nothing outstanding.
    pub fn new(phase: Phase) -> Self {
        Instance { phase, outstanding: BTreeSet::new() }
    }

    /// Whether it emitted `Stopped` (its record is a tombstone).
    pub fn is_terminated(&self) -> bool {
        matches!(self.phase, Phase::Terminated { .. })
    }

    /// Whether user code still runs and may issue requests: starting or running.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Starting(_) | Phase::Running(_))
    }
}
