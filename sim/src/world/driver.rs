//! The workload driver: what users of the engine and the actors themselves do during the fault
//! phase — create actors under several names, write KV data of varied sizes (some sized around
//! the preload budgets), ask actors to sleep, stop, crash and set alarms, wake and destroy them,
//! drain runners — and then the heal phase, in which it does nothing and waits for the system to
//! converge, with a no-progress watchdog.
//!
//! It decides everything from its own seeded stream (`workload`); it picks actors to act on from
//! the live instances the runner processes report (that is workload plumbing, not checking).

use std::sync::Arc;
use std::time::Duration;

use pegsim_model::engine::actor::{self, ActorSpec};
use pegsim_model::engine::EngineOutput;
use pegsim_model::fact::CrashPolicy;
use pegsim_model::runner::{AppAction, AppKey};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::run::Entry;
use crate::scenario::KeyMix;
use crate::seed::SeedStreams;
use crate::world::config::{draw_span, WorldConfig};
use crate::world::mail::{CoreMsg, RunnerMsg};
use crate::world::shared::{NodeRng, Shared};

/// The driver's node name in the history.
pub const DRIVER: &str = "driver";

/// How often the heal phase checks for convergence, ms.
const HEAL_POLL_MS: u64 = 500;

/// The workload's state across phases.
pub struct Workload {
    rng: ChaCha8Rng,
    node_rng: NodeRng,
    created: Vec<String>,
}

impl Workload {
    pub fn new(config: &WorldConfig) -> Self {
        let streams = SeedStreams::new(config.seed);
        Workload {
            rng: streams.stream("workload"),
            node_rng: NodeRng(streams.stream("node:driver")),
            created: Vec::new(),
        }
    }

    /// Create actors (up to `max_actors` in all) and act on them until simulated time `end`.
    pub async fn run_until(
        &mut self,
        shared: &Shared,
        config: &Arc<WorldConfig>,
        end: u64,
        max_actors: usize,
    ) {
        let w = &config.derived.workload;
        let create_interval_ms = (60_000.0 / w.create_rate_per_min.max(0.001)) as u64;
        let mut next_create = shared.now_ms();
        let mut next_action = shared.now_ms() + draw_span(&mut self.rng, w.action_interval_ms);
        loop {
            let now = shared.now_ms();
            if now >= end {
                break;
            }
            if self.created.len() < max_actors && now >= next_create {
                let id = format!("actor-{}", self.created.len());
                create(shared, config, &mut self.rng, &mut self.node_rng, &id);
                self.created.push(id);
                next_create = now + jitter(&mut self.rng, create_interval_ms);
            }
            if now >= next_action {
                act(shared, config, &mut self.rng, &mut self.node_rng, &self.created);
                next_action = now + draw_span(&mut self.rng, w.action_interval_ms).max(1);
            }
            let creating = self.created.len() < max_actors;
            let wake_at = next_action.min(if creating { next_create } else { end }).min(end);
            madsim::time::sleep(Duration::from_millis(
                wake_at.saturating_sub(shared.now_ms()).max(1),
            ))
            .await;
        }
    }
}

/// Actors the heal phase's workload may create beyond the fault phase's.
pub const HEAL_EXTRA_ACTORS: usize = 3;
/// How long the workload keeps running, without faults, at the start of the heal phase, ms: the
/// protocol's fault-free paths (first events on fresh connections, new actors, acks) must work
/// and meet their bounds too, not only converge.
pub const HEAL_WORKLOAD_MS: u64 = 30_000;

/// Run the workload's fault phase; returns when it is over.
pub async fn fault_phase(shared: &Shared, config: &Arc<WorldConfig>, workload: &mut Workload) {
    let end = config.derived.phases.fault_ms;
    workload.run_until(shared, config, end, config.derived.workload.actors as usize).await;
}

/// The heal phase: every fault is off; the workload runs lightly for a while, then stops, and the
/// driver waits until no liveness obligation is open, the watchdog fires or the phase ends; then
/// it runs the liveness checks.
pub async fn heal_phase(shared: &Shared, config: &Arc<WorldConfig>, workload: &mut Workload) {
    shared.record(DRIVER, Entry::Phase { phase: "heal".into() });
    let heal_start = shared.now_ms();
    let deadline = heal_start + config.derived.phases.heal_ms;
    let quiet_at =
        (heal_start + HEAL_WORKLOAD_MS.min(config.derived.phases.heal_ms / 3)).min(deadline);
    let max_actors = config.derived.workload.actors as usize + HEAL_EXTRA_ACTORS;
    workload.run_until(shared, config, quiet_at, max_actors).await;
    shared.record(DRIVER, Entry::Phase { phase: "quiet".into() });
    let start = shared.now_ms();
    let mut last_marker = u64::MAX;
    let mut last_progress = start;
    let mut quiet_polls = 0;
    loop {
        madsim::time::sleep(Duration::from_millis(HEAL_POLL_MS)).await;
        let now = shared.now_ms();
        let (open, marker) = {
            let st = shared.lock();
            (st.recorder.checker.obligations(now), st.recorder.checker.progress_marker())
        };
        if marker != last_marker {
            last_marker = marker;
            last_progress = now;
        }
        // Converged: nothing open for a few polls in a row (and at least a little heal time, so
        // acknowledgements and timers in flight settle).
        quiet_polls = if open.is_empty() { quiet_polls + 1 } else { 0 };
        if quiet_polls >= 4 && now >= start + config.engine.timing.event_resend_interval_ms {
            break;
        }
        if now >= deadline {
            break;
        }
        if !open.is_empty() && now - last_progress >= config.derived.phases.watchdog_ms {
            let detail =
                format!("no progress for {} ms; open: {}", now - last_progress, open.join("; "));
            shared.record(DRIVER, Entry::Phase { phase: format!("watchdog: {detail}") });
            break;
        }
    }
    let now = shared.now_ms();
    shared.lock().recorder.checker.finish(now);
    shared.record(DRIVER, Entry::Phase { phase: "end".into() });
}

fn create(
    shared: &Shared,
    config: &WorldConfig,
    rng: &mut ChaCha8Rng,
    node_rng: &mut NodeRng,
    id: &str,
) {
    let w = &config.derived.workload;
    let name = w.actor_names.choose(rng).cloned().unwrap_or_else(|| "actor".into());
    let (r, s, d) = (w.crash_policy.restart, w.crash_policy.sleep, w.crash_policy.destroy);
    let pick = rng.gen_range(0..(r + s + d).max(1));
    let crash_policy = if pick < r {
        CrashPolicy::Restart
    } else if pick < r + s {
        CrashPolicy::Sleep
    } else {
        CrashPolicy::Destroy
    };
    let input_len = draw_span(rng, w.input_size) as usize;
    let input = (input_len > 0).then(|| (0..input_len).map(|i| (i % 251) as u8).collect());
    let (namespace, pool) = config.namespace_and_pool();
    let spec = ActorSpec {
        namespace,
        name: name.clone(),
        key: Some(id.to_string()),
        pool,
        crash_policy,
        input,
    };
    shared.record(
        DRIVER,
        Entry::Workload {
            action: format!("create {id} name={name} policy={crash_policy:?} input={input_len}"),
        },
    );
    let result =
        shared.with_env(DRIVER, node_rng, |env| actor::create_actor(env, &id.to_string(), &spec));
    match result {
        Ok(outputs) => forward(shared, outputs),
        Err(e) => {
            shared.record(DRIVER, Entry::Workload { action: format!("create {id} failed: {e}") })
        }
    }
}

fn forward(shared: &Shared, outputs: Vec<EngineOutput>) {
    let st = shared.lock();
    for out in outputs {
        match out {
            EngineOutput::WakeWorkflow { actor } => {
                st.mail.to_core(CoreMsg::Wake(actor));
            }
            EngineOutput::TriggerDrainer { namespace, pool } => {
                st.mail.to_core(CoreMsg::TriggerDrainer { namespace, pool });
            }
            EngineOutput::Publish { .. } => {}
        }
    }
}

/// One workload action, chosen by the mix.
fn act(
    shared: &Shared,
    config: &WorldConfig,
    rng: &mut ChaCha8Rng,
    node_rng: &mut NodeRng,
    created: &[String],
) {
    let m = &config.derived.workload.mix;
    let weights = [
        m.sleep,
        m.stop,
        m.crash,
        m.destroy,
        m.wake,
        m.set_alarm,
        m.kv_write,
        m.kv_delete,
        m.drain,
    ];
    let total: u64 = weights.iter().sum();
    if total == 0 || created.is_empty() {
        return;
    }
    let mut pick = rng.gen_range(0..total);
    let mut kind = 0;
    for (i, w) in weights.iter().enumerate() {
        if pick < *w {
            kind = i;
            break;
        }
        pick -= w;
    }
    match kind {
        3 | 4 => {
            let Some(actor) = created.choose(rng).cloned() else { return };
            let destroy = kind == 3;
            shared.record(
                DRIVER,
                Entry::Workload {
                    action: format!("{} {actor}", if destroy { "destroy" } else { "wake" }),
                },
            );
            let result = shared.with_env(DRIVER, node_rng, |env| {
                if destroy {
                    actor::destroy_actor(env, &actor)
                } else {
                    actor::wake_actor(env, &actor)
                }
            });
            if let Ok(outputs) = result {
                forward(shared, outputs);
            }
        }
        8 => {
            let runners: Vec<usize> = shared.lock().mail.runners.keys().copied().collect();
            if let Some(index) = runners.choose(rng).copied() {
                shared.record(DRIVER, Entry::Workload { action: format!("drain runner-{index}") });
                shared.lock().mail.to_runner(index, RunnerMsg::Shutdown);
            }
        }
        _ => {
            let instances: Vec<(String, usize)> =
                shared.lock().instances.iter().map(|(a, (i, _))| (a.clone(), *i)).collect();
            let Some((actor, index)) = instances.choose(rng).cloned() else { return };
            let action = match kind {
                0 => AppAction::Sleep,
                1 => AppAction::Stop,
                2 => AppAction::Crash,
                5 => {
                    let now = shared.now_ms();
                    let at = shared.lock().clocks.wall(DRIVER, now) + rng.gen_range(1_000..60_000);
                    AppAction::SetAlarm(rng.gen_bool(0.8).then_some(at))
                }
                6 => {
                    let key = app_key(rng, &config.derived.workload.keys);
                    AppAction::Write { key, value_len: value_len(config, rng) }
                }
                _ => AppAction::Delete(app_key(rng, &config.derived.workload.keys)),
            };
            shared.record(DRIVER, Entry::Workload { action: format!("{action:?} -> {actor}") });
            shared.lock().mail.to_runner(index, RunnerMsg::App(actor, action));
        }
    }
}

/// A key of the kind drawn by `[workload.keys]`. One `u32` draw in `0..total` picks the kind
/// (with the default weights, the same draw and the same kind as before the table existed).
fn app_key(rng: &mut ChaCha8Rng, keys: &KeyMix) -> AppKey {
    let weights = keys.weights();
    let total: u32 = weights.iter().map(|(_, w)| *w).sum::<u32>().max(1);
    let mut pick = rng.gen_range(0..total);
    let mut kind = "user";
    for (name, w) in weights {
        if pick < w {
            kind = name;
            break;
        }
        pick -= w;
    }
    match kind {
        "connection" => AppKey::Connection(rng.gen_range(0..64)),
        "message" => AppKey::Message(rng.gen_range(0..32)),
        "history" => AppKey::History(vec![rng.gen_range(0..8), rng.gen()]),
        "page" => AppKey::Page(rng.gen_range(0..48)),
        _ => {
            // User keys biased to contain 0x00 and 0xFF anywhere.
            let len = rng.gen_range(0..4);
            AppKey::User((0..len).map(|_| *[0u8, 1, 0xFF, 7].choose(rng).unwrap_or(&0)).collect())
        }
    }
}

fn value_len(config: &WorldConfig, rng: &mut ChaCha8Rng) -> usize {
    let w = &config.derived.workload;
    if rng.gen_bool(w.budget_overflow_chance.clamp(0.0, 1.0)) {
        // Around a preload budget boundary: a prefix budget of the reference manifest or what is
        // left of the global budget; capped by the KV value limit.
        let targets = [
            pegsim_model::constants::REFERENCE_CONNECTIONS_MAX_BYTES,
            pegsim_model::constants::REFERENCE_WORKFLOW_HISTORY_MAX_BYTES,
            pegsim_model::constants::REFERENCE_QUEUE_MESSAGES_MAX_BYTES,
            config.engine.preload_budget / 8,
            config.engine.preload_budget / 2,
        ];
        let t = *targets.choose(rng).unwrap_or(&0) as i64;
        let v =
            (t + rng.gen_range(-64..64)).clamp(0, pegsim_model::constants::MAX_VALUE_SIZE as i64);
        v as usize
    } else {
        draw_span(rng, w.value_size) as usize
    }
}

/// Around `mean` (±50 %).
fn jitter(rng: &mut ChaCha8Rng, mean: u64) -> u64 {
    let half = mean / 2;
    mean - half + rng.gen_range(0..=mean.max(1))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// The key kind the driver drew before `[workload.keys]` existed: one `gen_range(0..10)`.
    fn historical_kind(rng: &mut ChaCha8Rng) -> &'static str {
        match rng.gen_range(0..10) {
            0..=2 => "connection",
            3 => "message",
            4..=5 => "history",
            6..=7 => "page",
            _ => "user",
        }
    }

    fn kind(key: &AppKey) -> &'static str {
        match key {
            AppKey::Connection(_) => "connection",
            AppKey::Message(_) => "message",
            AppKey::History(_) => "history",
            AppKey::Page(_) => "page",
            AppKey::User(_) => "user",
        }
    }

    #[test]
    fn default_key_weights_draw_the_historical_kinds() {
        let mut new = ChaCha8Rng::seed_from_u64(7);
        let mut old = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..2_000 {
            let expected = historical_kind(&mut old);
            let key = app_key(&mut new, &KeyMix::default());
            assert_eq!(kind(&key), expected);
            // Keep the two streams aligned: skip what the kind's own draws consumed.
            old = new.clone();
        }
    }

    #[test]
    fn key_weights_select_the_kinds() {
        let only_pages = KeyMix { connection: 0, message: 0, history: 0, page: 1, user: 0 };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..200).all(|_| kind(&app_key(&mut rng, &only_pages)) == "page"));
        let users = KeyMix { connection: 1, message: 0, history: 0, page: 0, user: 3 };
        let n = (0..4_000).filter(|_| kind(&app_key(&mut rng, &users)) == "user").count();
        assert!((2_800..3_200).contains(&n), "{n} user keys out of 4000 at weight 3 of 4");
    }
}
