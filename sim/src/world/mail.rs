//! Mailboxes: how a node reaches another node's task inside one world. Every mailbox is a bounded
//! channel; a node that crashed has dropped its receiver, so whatever is sent to it is lost, which
//! is exactly what the fault model says about in-flight messages to a crashed node.
//!
//! Also the bus's subscription table (`spec/protocol.md` §1.7): which connection subscribed to
//! which topic and since when it is confirmed.

use std::collections::BTreeMap;

use pegsim_model::engine::bus::{BusMessage, Topic};
use pegsim_model::engine::signal::{DeliverError, EnqueueResult};
use pegsim_model::fact::ConnId;
use pegsim_model::keys::ActorId;
use pegsim_model::runner::AppAction;
use tokio::sync::mpsc;

use crate::net::ws::WsConn;

/// Capacity of every mailbox. The model bounds its own queues far below this; reaching it is a
/// simulator defect and is reported as such.
pub const MAILBOX_CAPACITY: usize = 65_536;

/// To the core node.
#[derive(Debug)]
pub enum CoreMsg {
    Wake(ActorId),
    TriggerDrainer { namespace: String, pool: String },
}

/// To one edge connection's task.
#[derive(Debug)]
pub enum ConnMsg {
    /// Both of the connection's subscriptions are confirmed.
    Subscribed,
    Bus(Topic, BusMessage),
    SignalResult {
        token: u64,
        result: Result<EnqueueResult, DeliverError>,
    },
}

/// To one runner process's task.
pub enum RunnerMsg {
    /// A workload action for one of its actors.
    App(ActorId, AppAction),
    /// Start a graceful drain.
    Shutdown,
    /// A connection attempt finished.
    Connected(ConnId, Box<WsConn>),
    ConnectFailed(ConnId, String),
}

/// A bus subscription.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub conn: ConnId,
    pub topic: Topic,
    /// Position in the bus's event order at which the subscription was confirmed (`None` while
    /// pending). A publish reaches only subscriptions confirmed before it started.
    pub confirmed_seq: Option<u64>,
}

/// Every mailbox of the world.
#[derive(Default)]
pub struct Mailboxes {
    pub core: Option<mpsc::Sender<CoreMsg>>,
    pub conns: BTreeMap<ConnId, mpsc::Sender<ConnMsg>>,
    /// By runner slot index.
    pub runners: BTreeMap<usize, mpsc::Sender<RunnerMsg>>,
    pub subscriptions: Vec<Subscription>,
    /// The bus's event order (subscription confirmations and publish starts).
    bus_seq: u64,
}

impl Mailboxes {
    /// Send to the core; false when the core is down (the message is lost).
    pub fn to_core(&self, msg: CoreMsg) -> bool {
        self.core.as_ref().is_some_and(|tx| tx.try_send(msg).is_ok())
    }

    /// Send to a connection's task; false when it is gone.
    pub fn to_conn(&self, conn: ConnId, msg: ConnMsg) -> bool {
        self.conns.get(&conn).is_some_and(|tx| tx.try_send(msg).is_ok())
    }

    /// Send to a runner process; false when it is down.
    pub fn to_runner(&self, index: usize, msg: RunnerMsg) -> bool {
        self.runners.get(&index).is_some_and(|tx| tx.try_send(msg).is_ok())
    }

    /// Drop every subscription of `conn`.
    pub fn unsubscribe_all(&mut self, conn: ConnId) {
        self.subscriptions.retain(|s| s.conn != conn);
    }

    /// Add pending subscriptions of `conn`.
    pub fn subscribe(&mut self, conn: ConnId, topics: Vec<Topic>) {
        for topic in topics {
            self.subscriptions.push(Subscription { conn, topic, confirmed_seq: None });
        }
    }

    /// Confirm every pending subscription of `conn`; false if it has none left (it unsubscribed
    /// or is gone).
    pub fn confirm(&mut self, conn: ConnId) -> bool {
        self.bus_seq += 1;
        let seq = self.bus_seq;
        let mut any = false;
        for s in self.subscriptions.iter_mut().filter(|s| s.conn == conn) {
            s.confirmed_seq.get_or_insert(seq);
            any = true;
        }
        any
    }

    /// Start a publish on `topic`: the connections whose subscription was confirmed before now.
    pub fn start_publish(&mut self, topic: &Topic) -> Vec<ConnId> {
        self.bus_seq += 1;
        let at = self.bus_seq;
        let mut conns: Vec<ConnId> = self
            .subscriptions
            .iter()
            .filter(|s| &s.topic == topic && s.confirmed_seq.is_some_and(|c| c < at))
            .map(|s| s.conn)
            .collect();
        conns.dedup();
        conns
    }
}
