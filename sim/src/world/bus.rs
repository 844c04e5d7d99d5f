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

use crate::scenario::Span;

use crate::run::Entry;
use crate::world::mail::{ConnMsg, CoreMsg};
use crate::world::shared::{NodeRng, Shared};

/// Base delivery delay of the pub/sub bus, ms (uniform).
pub const BUS_BASE_DELAY_MS: (u64, u64) = (1, 5);
/// Base delay of the signal bus, ms (uniform).
pub const SIGNAL_BASE_DELAY_MS: (u64, u64) = (1, 3);
/// Delay before a subscription is confirmed, ms (uniform).
pub const SUBSCRIBE_DELAY_MS: (u64, u64) = (1, 4);

/// The buses' fault settings (the seed's per-message faults); all off in the heal phase.
pub struct BusFaults {
    pub rng: ChaCha8Rng,
    /// Probability that a delivery is lost (`bus_loss`).
    pub loss: f64,
    /// Probability that a delivery is duplicated (`bus_duplicate`).
    pub duplicate: f64,
    /// `(probability, delay span)` of an extra publish delay (`bus_delay`).
    pub delay: Option<(f64, Span)>,
    /// Probability that a signal is enqueued twice (`signal_duplicate`).
    pub signal_duplicate: f64,
    /// `(probability, delay span)` of an extra signal delay (`signal_delay`).
    pub signal_delay: Option<(f64, Span)>,
    /// `(probability, window)`: a signal held back so that up to `window` later ones may overtake
    /// it (`signal_reorder`).
    pub signal_reorder: Option<(f64, u64)>,
}

impl BusFaults {
    pub fn new(rng: ChaCha8Rng) -> Self {
        BusFaults {
            rng,
            loss: 0.0,
            duplicate: 0.0,
            delay: None,
            signal_duplicate: 0.0,
            signal_delay: None,
            signal_reorder: None,
        }
    }

    /// Everything off (heal phase).
    pub fn clear(&mut self) {
        self.loss = 0.0;
        self.duplicate = 0.0;
        self.delay = None;
        self.signal_duplicate = 0.0;
        self.signal_delay = None;
        self.signal_reorder = None;
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

/// How far a held-back signal falls behind per unit of reorder window, ms: each later signal of
/// the window gets a chance to overtake it.
const REORDER_STEP_MS: (u64, u64) = (5, 60);

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
            if let Some((p, span)) = f.delay {
                if f.chance(p) {
                    let extra = f.uniform((span.lo, span.hi));
                    delay += extra;
                    faults.push(("bus_delay", format!("{conn} +{extra} ms")));
                }
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
        let mut fired = Vec::new();
        let mut delay = f.uniform(SIGNAL_BASE_DELAY_MS);
        if let Some((p, span)) = f.signal_delay {
            if f.chance(p) {
                let extra = f.uniform((span.lo, span.hi));
                delay += extra;
                fired.push(("signal_delay", format!("{conn} {actor} +{extra} ms")));
            }
        }
        if let Some((p, window)) = f.signal_reorder {
            if f.chance(p) {
                let behind: u64 = (0..window.max(1)).map(|_| f.uniform(REORDER_STEP_MS)).sum();
                delay += behind;
                fired.push(("signal_reorder", format!("{conn} {actor} held back {behind} ms")));
            }
        }
        let duplicate = f.chance(f.signal_duplicate).then(|| delay + f.uniform((1, 200)));
        if duplicate.is_some() {
            fired.push(("signal_duplicate", format!("{conn} {actor}")));
        }
        let now = st.clock.now_ms();
        for (class, detail) in fired {
            st.recorder.record(now, "bus", Entry::Fault { class: class.into(), detail });
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
