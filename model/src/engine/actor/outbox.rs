//! Turning a committed outbox into engine outputs (`spec/protocol.md` §5.7, §3.2): publishes on
//! the runner topic and drainer triggers.
//!
//! A command is read back from the command log (one snapshot read) and published as
//! `ToEnvoyConn::ToEnvoyCommands(vec![wrapper])` with exactly the stored content, so every copy
//! of a publish carries the content of its key. A command whose key is gone (acknowledged, or its
//! generation ended since) is not published (probe `outbox-command-gone`): the edge would drop it
//! anyway (§3.4 step 1). A stored command that does not decode is an internal error, reported
//! with a probe (`outbox-command-unreadable`) and not published.

use crate::engine::bus::{BusMessage, Topic};
use crate::engine::cmdlog;
use crate::engine::EngineOutput;
use crate::env::Env;
use crate::fact::Fact;
use crate::keys::RunnerId;
use crate::protocol::{ActorCheckpoint, ToEnvoyAckEvents, ToEnvoyConn};
use crate::wire;

use super::state::OutboxItem;

/// The bus publish of `payload` on `runner`'s topic.
pub fn runner_publish(runner: &RunnerId, payload: &ToEnvoyConn) -> EngineOutput {
    EngineOutput::Publish {
        topic: Topic::Runner(runner.clone()),
        message: BusMessage::Runner(wire::encode_bus(payload)),
    }
}

/// The outputs of `actor`'s outbox `items`, in order.
pub fn render(env: &mut Env<'_>, actor: &str, items: &[OutboxItem]) -> Vec<EngineOutput> {
    let mut out = Vec::with_capacity(items.len());
    let mut txn = env.begin();
    for item in items {
        match item {
            OutboxItem::Command { runner, generation, index } => {
                match cmdlog::read_one(env, &mut txn, runner, actor, *generation, *index) {
                    Ok(Some(stored)) => {
                        let checkpoint = ActorCheckpoint {
                            actor_id: actor.to_string().into(),
                            generation: *generation,
                            index: *index,
                        };
                        let wrapper = wire::command_from_stored(checkpoint, stored);
                        out.push(runner_publish(
                            runner,
                            &ToEnvoyConn::ToEnvoyCommands(vec![wrapper]),
                        ));
                    }
                    Ok(None) => env.record(Fact::Probe { name: "outbox-command-gone".into() }),
                    Err(_) => env.record(Fact::Probe { name: "outbox-command-unreadable".into() }),
                }
            }
            OutboxItem::AckEvents { runner, checkpoints } => {
                let last_event_checkpoints = checkpoints
                    .iter()
                    .map(|(generation, index)| ActorCheckpoint {
                        actor_id: actor.to_string().into(),
                        generation: *generation,
                        index: *index,
                    })
                    .collect();
                let ack =
                    ToEnvoyConn::ToEnvoyAckEvents(ToEnvoyAckEvents { last_event_checkpoints });
                out.push(runner_publish(runner, &ack));
            }
            OutboxItem::TriggerDrainer { namespace, pool } => {
                out.push(EngineOutput::TriggerDrainer {
                    namespace: namespace.clone(),
                    pool: pool.clone(),
                })
            }
        }
    }
    env.abort(txn);
    out
}
