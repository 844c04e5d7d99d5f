//! The pub/sub bus vocabulary (`spec/protocol.md` §1.7): topics and payloads. The bus itself
//! (subscriptions, confirmation, delivery, loss, duplication, delay) is the simulator's; the
//! model only says what it publishes and what it subscribes to.
//!
//! Runner-topic payloads are `versioned::ToEnvoyConn` in the embedded-version encoding, as the
//! real engine publishes them; the eviction payload is the model-internal `{epoch}`.

use serde::{Deserialize, Serialize};

use crate::keys::RunnerId;

/// A bus topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Commands, event acks and close requests for the runner identity.
    Runner(RunnerId),
    /// Registration notices for the runner identity.
    Eviction(RunnerId),
}

impl Topic {
    /// The runner identity the topic belongs to.
    pub fn runner(&self) -> &RunnerId {
        match self {
            Topic::Runner(r) | Topic::Eviction(r) => r,
        }
    }
}

/// A published message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusMessage {
    /// A `ToEnvoyConn` value, embedded-version encoded.
    Runner(Vec<u8>),
    /// A connection of the identity registered with this epoch.
    Eviction { epoch: u64 },
}
