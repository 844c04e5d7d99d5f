//! The core node: the actor workflows' executor and the registry's processes (`engine::core`).
//! Its memory dies with it; on restart `Core::start` rebuilds everything from the store.

use std::collections::VecDeque;
use std::sync::Arc;

use pegsim_model::engine::core::{Core, CoreOutput, CoreTimer};
use pegsim_model::engine::EngineOutput;
use tokio::sync::mpsc;

use crate::run::Entry;
use crate::seed::SeedStreams;
use crate::world::bus;
use crate::world::config::WorldConfig;
use crate::world::mail::{CoreMsg, MAILBOX_CAPACITY};
use crate::world::shared::{NodeRng, Shared};
use crate::world::timers::Timers;

/// The core node's name in the history.
pub const CORE: &str = "core";

/// Work the core does next.
enum Work {
    Wake(String),
    Drainer { namespace: String, pool: String },
    Timer(CoreTimer),
}

/// The core node's task: runs until the node is killed.
pub async fn run(shared: Shared, config: Arc<WorldConfig>) {
    let incarnation = shared.next_incarnation(CORE);
    let (tx, mut rx) = mpsc::channel(MAILBOX_CAPACITY);
    let clock = {
        let mut st = shared.lock();
        st.mail.core = Some(tx);
        st.clock
    };
    shared.record(CORE, Entry::Node { node: CORE.into(), event: format!("start #{incarnation}") });
    let mut rng =
        NodeRng(SeedStreams::new(config.seed).stream(&format!("node:{CORE}#{incarnation}")));
    let mut core = Core::new(config.engine.clone());
    let mut timers: Timers<CoreTimer> = Timers::default();
    let mut work: VecDeque<Work> = VecDeque::new();
    let outputs = shared.with_env(CORE, &mut rng, |env| core.start(env));
    apply(&shared, outputs, &mut timers, &mut work);
    loop {
        while let Some(item) = work.pop_front() {
            let outputs = shared.with_env(CORE, &mut rng, |env| match &item {
                Work::Wake(actor) => core.on_wake(env, actor),
                Work::Drainer { namespace, pool } => core.on_trigger_drainer(env, namespace, pool),
                Work::Timer(t) => core.on_timer(env, t.clone()),
            });
            apply(&shared, outputs, &mut timers, &mut work);
        }
        let now = clock.now_ms();
        if let Some(t) = timers.pop_due(now) {
            work.push_back(Work::Timer(t));
            continue;
        }
        tokio::select! {
            // Branches in the written order: tokio picks a random order otherwise, from a
            // thread RNG seeded with a process-wide counter (different for every world of a process).
            biased;
            msg = rx.recv() => match msg {
                Some(CoreMsg::Wake(actor)) => work.push_back(Work::Wake(actor)),
                Some(CoreMsg::TriggerDrainer { namespace, pool }) => {
                    work.push_back(Work::Drainer { namespace, pool })
                }
                None => return,
            },
            _ = madsim::time::sleep_until(timers.next_instant(&clock)) => {}
        }
    }
}

fn apply(
    shared: &Shared,
    outputs: Vec<CoreOutput>,
    timers: &mut Timers<CoreTimer>,
    work: &mut VecDeque<Work>,
) {
    for out in outputs {
        match out {
            CoreOutput::Engine(EngineOutput::Publish { topic, message }) => {
                bus::publish(shared, CORE, topic, message)
            }
            CoreOutput::Engine(EngineOutput::WakeWorkflow { actor }) => {
                work.push_back(Work::Wake(actor))
            }
            CoreOutput::Engine(EngineOutput::TriggerDrainer { namespace, pool }) => {
                work.push_back(Work::Drainer { namespace, pool })
            }
            CoreOutput::Timer { at_ms, timer } => {
                let at = shared.sim_at(CORE, at_ms);
                timers.insert(at, timer);
            }
        }
    }
}
