//! The engine: everything on the server side of the protocol.
//!
//! - [`signal`]: workflow signals and the actor inbox.
//! - [`bus`]: pub/sub topics and payloads (the bus itself is the simulator's).
//! - [`cmdlog`]: the durable command log.
//! - `edge_txn`: the connection's registry transactions (registration, metadata, liveness, ready,
//!   teardown, drain, command acks).
//! - `core`: the core node (workflow executor plus registry monitor).
//! - `registry`: runner records, eligibility, allocation, the pending queue and its drainer, lost
//!   detection, drain and retirement.
//! - `actor`: the actor workflow (durable state machine) and its executor.
//! - `demux`: the per-connection event demuxer.
//! - `conn`: the edge connection handler (handshake, replay, live forwarding, KV, pings).
//!
//! Engine components are driven through [`crate::env::Env`]; they return outputs the simulator
//! acts on. [`EngineOutput`] are the outputs shared by every engine component.

pub mod actor;
pub mod bus;
pub mod cmdlog;
pub mod conn;
pub mod core;
pub mod demux;
pub mod edge_txn;
pub mod registry;
pub mod signal;

use crate::keys::ActorId;
use bus::{BusMessage, Topic};

/// An output every engine component may produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineOutput {
    /// Publish on the bus; the simulator delivers to the subscriptions confirmed before now.
    Publish { topic: Topic, message: BusMessage },
    /// The actor's inbox has new signals: run its workflow (on the core node).
    WakeWorkflow { actor: ActorId },
    /// Run the pool's pending-queue drainer (on the core node).
    TriggerDrainer { namespace: String, pool: String },
}
