//! The two message buses the simulator controls:
//!
//! - the **pub/sub bus** (`spec/protocol.md` §1.7): a publish reaches the connections whose
//!   subscription was confirmed before it started, each after a delay, at most once unless the
//!   `bus_duplicate` fault duplicates it, and not at all under `bus_loss`; different publishes may
//!   arrive in any order (independent delays);
//! - the **signal bus** between a connection's demuxer and the workflows: a batch is enqueued
//!   into the actor's inbox (`engine::signal::deliver`) after a delay that the `signal_delay` and
//!   `signal_reorder` faults stretch, possibly twice (`signal_duplicate`); the result goes back to
//!   the sending connection and the core is woken.
//!
//! Deliveries run as tasks on the `bus` node, which never crashes: a message already handed to the
//! bus is not lost when its sender's node crashes, and is lost when its receiver's node has.

use std::time::Duration;

use pegsim_model::engine::bus::{BusMessage, Topic};
use pegsim_model::engine::signal::{self, EnqueueResult, Signal};
use pegsim_model::fact::ConnId;
use pegsim_model::keys::ActorId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::run::Entry;
use crate::world::mail::{ConnMsg, CoreMsg};
use crate::world::shared::{NodeRng, Shared};

/// Base delivery delay of the pub/sub bus, ms (uniform).
pub const BUS_BASE_DELAY_MS: (u64, u64) = (1, 5);
/// Base delay of the signal bus, ms (uniform).
pub const SIGNAL_BASE_DELAY_MS: (u64, u64) = (1, 3);
/// Delay before a subscription is confirmed, ms (uniform).
pub const SUBSCRIBE_DELAY_MS: (u64, u64) = (1, 4);

/// The buses' fault settings; changed by the fault injector, all off in the heal phase.
pub struct BusFaults {
    pub rng: ChaCha8Rng,
    /// Extra publish delay range while `bus_delay` is active.
    pub extra_delay_ms: Option<(u64, u64)>,
    /// Probability that a delivery is lost (`bus_loss`).
    pub loss: f64,
    /// Probability that a delivery is duplicated (`bus_duplicate`).
    pub duplicate: f64,
    /// Extra signal delay while `signal_delay` is active.
    pub signal_extra_delay_ms: Option<(u64, u64)>,
    /// Random extra signal delay per batch while `signal_reorder` is active.
    pub signal_reorder_ms: Option<(u64, u64)>,
    /// Probability that a signal is enqueued twice (`signal_duplicate`).
    pub signal_duplicate: f64,
}

impl BusFaults {
    pub fn new(rng: ChaCha8Rng) -> Self {
        BusFaults {
            rng,
            extra_delay_ms: None,
            loss: 0.0,
            duplicate: 0.0,
            signal_extra_delay_ms: None,
            signal_reorder_ms: None,
            signal_duplicate: 0.0,
        }
    }

    /// Everything off (heal phase).
    pub fn clear(&mut self) {
        self.extra_delay_ms = None;
        self.loss = 0.0;
        self.duplicate = 0.0;
        self.signal_extra_delay_ms = None;
        self.signal_reorder_ms = None;
        self.signal_duplicate = 0.0;
    }

    fn uniform(&mut self, range: (u64, u64)) -> u64 {
        if range.1 <= range.0 {
            range.0
        } else {
            self.rng.gen_range(range.0..=range.1)
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }
}

/// Subscribe `conn` to `topics`; the confirmation reaches the connection after a short delay.
pub fn subscribe(shared: &Shared, conn: ConnId, topics: Vec<Topic>) {
    let delay = {
        let mut st = shared.lock();
        st.mail.subscribe(conn, topics);
        st.bus_faults.uniform(SUBSCRIBE_DELAY_MS)
    };
    let shared2 = shared.clone();
    spawn_on_bus(shared, async move {
        madsim::time::sleep(Duration::from_millis(delay)).await;
        let mut st = shared2.lock();
        if st.mail.confirm(conn) {
            st.mail.to_conn(conn, ConnMsg::Subscribed);
        }
    });
}

/// Publish `message` on `topic` from `node`.
pub fn publish(shared: &Shared, node: &str, topic: Topic, message: BusMessage) {
    let deliveries = {
        let mut st = shared.lock();
        let targets = st.mail.start_publish(&topic);
        let mut deliveries = Vec::new();
        let mut faults = Vec::new();
        for conn in targets {
            let f = &mut st.bus_faults;
            if f.chance(f.loss) {
                faults.push(("bus_loss", format!("{conn} {}", topic_name(&topic))));
                continue;
            }
            let mut delay = f.uniform(BUS_BASE_DELAY_MS);
            if let Some(extra) = f.extra_delay_ms {
                delay += f.uniform(extra);
            }
            deliveries.push((conn, delay));
            if f.chance(f.duplicate) {
                let again = delay + f.uniform(BUS_BASE_DELAY_MS) + f.uniform((0, 50));
                deliveries.push((conn, again));
                faults.push(("bus_duplicate", format!("{conn} {}", topic_name(&topic))));
            }
        }
        let now = st.clock.now_ms();
        for (class, detail) in faults {
            st.recorder.record(now, node, Entry::Fault { class: class.into(), detail });
        }
        deliveries
    };
    for (conn, delay) in deliveries {
        let shared2 = shared.clone();
        let (topic, message) = (topic.clone(), message.clone());
        spawn_on_bus(shared, async move {
            madsim::time::sleep(Duration::from_millis(delay)).await;
            shared2.lock().mail.to_conn(conn, ConnMsg::Bus(topic, message));
        });
    }
}

/// Send a demuxer batch from `conn` through the signal bus.
pub fn send_signal(shared: &Shared, conn: ConnId, actor: ActorId, signal: Signal, token: u64) {
    let plan = {
        let mut st = shared.lock();
        let f = &mut st.bus_faults;
        let mut delay = f.uniform(SIGNAL_BASE_DELAY_MS);
        if let Some(extra) = f.signal_extra_delay_ms {
            delay += f.uniform(extra);
        }
        if let Some(reorder) = f.signal_reorder_ms {
            delay += f.uniform(reorder);
        }
        let duplicate = f.chance(f.signal_duplicate).then(|| delay + f.uniform((1, 200)));
        if duplicate.is_some() {
            let now = st.clock.now_ms();
            let detail = format!("{conn} {actor}");
            st.recorder.record(now, "bus", Entry::Fault { class: "signal_duplicate".into(), detail });
        }
        (delay, duplicate)
    };
    let (delay, duplicate) = plan;
    spawn_delivery(shared, conn, actor.clone(), signal.clone(), token, delay, true);
    if let Some(again) = duplicate {
        spawn_delivery(shared, conn, actor, signal, token, again, false);
    }
}

fn spawn_delivery(
    shared: &Shared,
    conn: ConnId,
    actor: ActorId,
    signal: Signal,
    token: u64,
    delay: u64,
    answer: bool,
) {
    let shared2 = shared.clone();
    spawn_on_bus(shared, async move {
        madsim::time::sleep(Duration::from_millis(delay)).await;
        let mut rng = NodeRng(rand::SeedableRng::seed_from_u64(token));
        let result = shared2.with_env("bus", &mut rng, |env| signal::deliver(env, &actor, &signal));
        let st = shared2.lock();
        if matches!(result, Ok(EnqueueResult::Enqueued)) {
            st.mail.to_core(CoreMsg::Wake(actor));
        }
        if answer {
            st.mail.to_conn(conn, ConnMsg::SignalResult { token, result });
        }
    });
}

fn spawn_on_bus(shared: &Shared, fut: impl std::future::Future<Output = ()> + Send + 'static) {
    let handle = shared.lock().bus_node.clone();
    if let Some(h) = handle {
        h.spawn(fut);
    }
}

fn topic_name(t: &Topic) -> String {
    match t {
        Topic::Runner(r) => format!("runner:{r}"),
        Topic::Eviction(r) => format!("eviction:{r}"),
    }
}
