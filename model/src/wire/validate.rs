//! Stateless field rules of decoded frames (`spec/protocol.md` §2.1, §2.4, §3.5). A frame that
//! decodes but breaks one of them is a **protocol violation**: the receiver applies nothing from
//! it and closes (`ws.invalid_packet#…` / `envoy.invalid_packet#…`, detail
//! [`ProtocolViolation::close_detail`]).
//!
//! Rules checked, on the frames the model uses:
//! - every `ActorCheckpoint` (events, command acks, commands, event acks) has an actor id that
//!   parses ([`crate::wire::ids`]) and an index `>= 0`; `ToRivetKvRequest.actorId` parses;
//! - `ToRivetMetadata`: `metadata` and every `prepopulateActorNames[*].metadata` is a JSON object;
//! - `ToRivetEvents` holds `1..=EVENTS_FRAME_MAX` events, and the events of one `(A, g)` appear in
//!   strictly ascending index order;
//! - `ToEnvoyCommands` holds `1..=FRAME_MAX_COMMANDS` commands; a `CommandStopActor` is never at
//!   index 0 and a `CommandStartActor` only at index 0.
//!
//! Choices where the spec is silent: `ToRivetAckCommands` and `ToEnvoyAckEvents` may be empty;
//! `ToEnvoyInit`'s thresholds, pings, pongs, KV payloads and the names in `prepopulateActorNames`
//! are not checked here; a command list need not be ordered (the runner holds out-of-order
//! commands, §3.5). Out-of-scope variants (tunnel, SQLite) are always valid. The first violation
//! in frame order is reported. Its location is a path of wire (camelCase) names, e.g.
//! `ToRivetEvents[2].checkpoint.index`.
//!
//! Must not touch: rules that need state (handshake order, duplicates, gaps, epochs).

use std::collections::BTreeMap;
use std::fmt;

use crate::constants::{EVENTS_FRAME_MAX, FRAME_MAX_COMMANDS};
use crate::protocol as p;
use crate::wire::ids::{parse_actor_id, IdentifierError};

/// Why a metadata value is not a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataProblem {
    /// The text does not parse as JSON.
    #[error("is not JSON ({0})")]
    NotJson(String),
    /// Valid JSON of another kind.
    #[error("is a JSON {0}, not an object")]
    NotAnObject(&'static str),
}

/// A decoded frame that breaks a stateless field rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// A checkpoint index below 0.
    #[error("{at}: negative index {index} for actor {actor_id:?}")]
    NegativeIndex { at: String, actor_id: String, index: i64 },
    /// An actor id that does not parse.
    #[error("{at}: invalid actor id {actor_id:?}: {problem}")]
    InvalidActorId { at: String, actor_id: String, problem: IdentifierError },
    /// A metadata JSON value that is not a JSON object.
    #[error("{at}: metadata {problem}")]
    MetadataNotObject { at: String, problem: MetadataProblem },
    /// A `ToRivetEvents` with no events.
    #[error("ToRivetEvents holds no events")]
    NoEvents,
    /// A `ToRivetEvents` with more than `EVENTS_FRAME_MAX` events.
    #[error("ToRivetEvents holds {count} events, more than the maximum of {max}")]
    TooManyEvents { count: usize, max: usize },
    /// Two events of one `(A, g)` not in strictly ascending index order.
    #[error("{at}: event index {index} of ({actor_id}, {generation}) follows index {previous} in the same frame")]
    EventsOutOfOrder { at: String, actor_id: String, generation: u32, previous: i64, index: i64 },
    /// A `ToEnvoyCommands` with no commands.
    #[error("ToEnvoyCommands holds no commands")]
    NoCommands,
    /// A `ToEnvoyCommands` with more than `FRAME_MAX_COMMANDS` commands.
    #[error("ToEnvoyCommands holds {count} commands, more than the maximum of {max}")]
    TooManyCommands { count: usize, max: usize },
    /// A `CommandStopActor` at index 0.
    #[error("{at}: stop command at index 0 for ({actor_id}, {generation})")]
    StopAtIndexZero { at: String, actor_id: String, generation: u32 },
    /// A `CommandStartActor` at an index other than 0.
    #[error(
        "{at}: start command at index {index} for ({actor_id}, {generation}), expected index 0"
    )]
    StartNotAtIndexZero { at: String, actor_id: String, generation: u32, index: i64 },
}

impl ProtocolViolation {
    /// The `<detail>` of the close reason: this violation in one line.
    pub fn close_detail(&self) -> String {
        self.to_string()
    }
}

/// Checks the stateless rules of a runner-to-engine frame.
pub fn validate_to_rivet(message: &p::ToRivet) -> Result<(), ProtocolViolation> {
    match message {
        p::ToRivet::ToRivetMetadata(metadata) => validate_metadata(metadata),
        p::ToRivet::ToRivetEvents(events) => validate_events(events),
        p::ToRivet::ToRivetAckCommands(ack) => {
            for (i, checkpoint) in ack.last_command_checkpoints.iter().enumerate() {
                validate_checkpoint(
                    checkpoint,
                    &Path::indexed("ToRivetAckCommands.lastCommandCheckpoints", i),
                )?;
            }
            Ok(())
        }
        p::ToRivet::ToRivetKvRequest(request) => {
            validate_actor_id(&request.actor_id, || "ToRivetKvRequest.actorId".to_owned())
        }
        p::ToRivet::ToRivetStopping
        | p::ToRivet::ToRivetPong(_)
        | p::ToRivet::ToRivetTunnelMessage(_)
        | p::ToRivet::ToRivetSqliteGetPagesRequest(_)
        | p::ToRivet::ToRivetSqliteCommitRequest(_)
        | p::ToRivet::ToRivetSqliteCommitStageBeginRequest(_)
        | p::ToRivet::ToRivetSqliteCommitStageSegmentRequest(_)
        | p::ToRivet::ToRivetSqliteCommitFinalizeRequest(_)
        | p::ToRivet::ToRivetSqliteExecRequest(_)
        | p::ToRivet::ToRivetSqliteExecuteRequest(_)
        | p::ToRivet::ToRivetSqliteExecuteBatchRequest(_) => Ok(()),
    }
}

/// Checks the stateless rules of an engine-to-runner frame.
pub fn validate_to_envoy(message: &p::ToEnvoy) -> Result<(), ProtocolViolation> {
    match message {
        p::ToEnvoy::ToEnvoyCommands(commands) => validate_commands(commands),
        p::ToEnvoy::ToEnvoyAckEvents(ack) => {
            for (i, checkpoint) in ack.last_event_checkpoints.iter().enumerate() {
                validate_checkpoint(
                    checkpoint,
                    &Path::indexed("ToEnvoyAckEvents.lastEventCheckpoints", i),
                )?;
            }
            Ok(())
        }
        p::ToEnvoy::ToEnvoyInit(_)
        | p::ToEnvoy::ToEnvoyKvResponse(_)
        | p::ToEnvoy::ToEnvoyTunnelMessage(_)
        | p::ToEnvoy::ToEnvoyPing(_)
        | p::ToEnvoy::ToEnvoySqliteGetPagesResponse(_)
        | p::ToEnvoy::ToEnvoySqliteCommitResponse(_)
        | p::ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(_)
        | p::ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(_)
        | p::ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(_)
        | p::ToEnvoy::ToEnvoySqliteExecResponse(_)
        | p::ToEnvoy::ToEnvoySqliteExecuteResponse(_)
        | p::ToEnvoy::ToEnvoySqliteExecuteBatchResponse(_) => Ok(()),
    }
}

/// A location in a frame, rendered only when a violation is reported.
struct Path {
    list: &'static str,
    index: usize,
}

impl Path {
    fn indexed(list: &'static str, index: usize) -> Path {
        Path { list, index }
    }

    fn field(&self, field: &str) -> String {
        format!("{self}.{field}")
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)
    }
}

fn validate_actor_id(actor_id: &str, at: impl FnOnce() -> String) -> Result<(), ProtocolViolation> {
    parse_actor_id(actor_id).map(|_| ()).map_err(|problem| ProtocolViolation::InvalidActorId {
        at: at(),
        actor_id: actor_id.to_owned(),
        problem,
    })
}

/// `path` locates the struct holding the checkpoint fields (`actorId`, `index`).
fn validate_checkpoint(
    checkpoint: &p::ActorCheckpoint,
    path: &Path,
) -> Result<(), ProtocolViolation> {
    check_checkpoint(checkpoint, || path.to_string())
}

fn check_checkpoint(
    checkpoint: &p::ActorCheckpoint,
    at: impl Fn() -> String,
) -> Result<(), ProtocolViolation> {
    validate_actor_id(&checkpoint.actor_id, || format!("{}.actorId", at()))?;
    if checkpoint.index < 0 {
        return Err(ProtocolViolation::NegativeIndex {
            at: format!("{}.index", at()),
            actor_id: checkpoint.actor_id.to_string(),
            index: checkpoint.index,
        });
    }
    Ok(())
}

fn validate_metadata(metadata: &p::ToRivetMetadata) -> Result<(), ProtocolViolation> {
    if let Some(names) = &metadata.prepopulate_actor_names {
        for (name, actor_name) in names {
            check_json_object(&actor_name.metadata).map_err(|problem| {
                ProtocolViolation::MetadataNotObject {
                    at: format!(
                        "ToRivetMetadata.prepopulateActorNames[{:?}].metadata",
                        name.as_str()
                    ),
                    problem,
                }
            })?;
        }
    }
    if let Some(json) = &metadata.metadata {
        check_json_object(json).map_err(|problem| ProtocolViolation::MetadataNotObject {
            at: "ToRivetMetadata.metadata".to_owned(),
            problem,
        })?;
    }
    Ok(())
}

fn check_json_object(json: &str) -> Result<(), MetadataProblem> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Err(error) => Err(MetadataProblem::NotJson(error.to_string())),
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(serde_json::Value::Null) => Err(MetadataProblem::NotAnObject("null")),
        Ok(serde_json::Value::Bool(_)) => Err(MetadataProblem::NotAnObject("boolean")),
        Ok(serde_json::Value::Number(_)) => Err(MetadataProblem::NotAnObject("number")),
        Ok(serde_json::Value::String(_)) => Err(MetadataProblem::NotAnObject("string")),
        Ok(serde_json::Value::Array(_)) => Err(MetadataProblem::NotAnObject("array")),
    }
}

fn validate_events(events: &p::ToRivetEvents) -> Result<(), ProtocolViolation> {
    if events.is_empty() {
        return Err(ProtocolViolation::NoEvents);
    }
    if events.len() > EVENTS_FRAME_MAX {
        return Err(ProtocolViolation::TooManyEvents {
            count: events.len(),
            max: EVENTS_FRAME_MAX,
        });
    }
    let mut last_index: BTreeMap<(&str, u32), i64> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        let path = Path::indexed("ToRivetEvents", i);
        let checkpoint = &event.checkpoint;
        check_checkpoint(checkpoint, || path.field("checkpoint"))?;
        let key = (checkpoint.actor_id.as_str(), checkpoint.generation);
        if let Some(&previous) = last_index.get(&key) {
            if checkpoint.index <= previous {
                return Err(ProtocolViolation::EventsOutOfOrder {
                    at: path.field("checkpoint.index"),
                    actor_id: checkpoint.actor_id.to_string(),
                    generation: checkpoint.generation,
                    previous,
                    index: checkpoint.index,
                });
            }
        }
        last_index.insert(key, checkpoint.index);
    }
    Ok(())
}

fn validate_commands(commands: &p::ToEnvoyCommands) -> Result<(), ProtocolViolation> {
    if commands.is_empty() {
        return Err(ProtocolViolation::NoCommands);
    }
    if commands.len() > FRAME_MAX_COMMANDS {
        return Err(ProtocolViolation::TooManyCommands {
            count: commands.len(),
            max: FRAME_MAX_COMMANDS,
        });
    }
    for (i, command) in commands.iter().enumerate() {
        let path = Path::indexed("ToEnvoyCommands", i);
        let checkpoint = &command.checkpoint;
        check_checkpoint(checkpoint, || path.field("checkpoint"))?;
        match &command.inner {
            p::Command::CommandStopActor(_) if checkpoint.index == 0 => {
                return Err(ProtocolViolation::StopAtIndexZero {
                    at: path.field("inner"),
                    actor_id: checkpoint.actor_id.to_string(),
                    generation: checkpoint.generation,
                });
            }
            p::Command::CommandStartActor(_) if checkpoint.index != 0 => {
                return Err(ProtocolViolation::StartNotAtIndexZero {
                    at: path.field("inner"),
                    actor_id: checkpoint.actor_id.to_string(),
                    generation: checkpoint.generation,
                    index: checkpoint.index,
                });
            }
            p::Command::CommandStartActor(_) | p::Command::CommandStopActor(_) => {}
        }
    }
    Ok(())
}
