//! The real wire (`spec/protocol.md` §2, DESIGN principle 3): how values of the published
//! `rivet-envoy-protocol` crate (envoy protocol v8) become bytes and back, and the stateless rules
//! a decoded value must follow.
//!
//! Owns:
//! - [`frame`]: WebSocket data frames. Each frame is the bare v8 body of one `ToRivet` or
//!   `ToEnvoy`, with no version header, bounded by a configurable maximum size ([`Codec`]).
//!   Undecodable frames are a typed [`FrameError`].
//! - [`embedded`]: values with the 2-byte little-endian embedded version header: stored commands
//!   (`ActorCommandKeyData`) and bus payloads (`ToEnvoyConn`), and the conversion between a
//!   stored command plus its checkpoint and a `CommandWrapper`.
//! - [`connect`]: the connect request `/envoys/connect?…` (§2.2) and the WebSocket sub-protocols.
//! - [`close`]: the close reasons of §2.1, §2.2, §2.6 and §6.7, their close codes and the runner's
//!   reaction to each.
//! - [`ids`]: the identifier syntax shared by actor ids and envoy keys.
//! - [`validate`]: stateless field rules of decoded frames (§2.1, §2.4, §3.5), as
//!   [`ProtocolViolation`]s.
//! - `strategies` (tests and feature `strategies`): proptest strategies for every wire value.
//!
//! Must not touch: connection state. Handshake order, deduplication, replay and every other rule
//! that needs to remember something belong to the engine and runner state machines, which call
//! into this module. Nothing here reads a clock, a random source or the store.
//!
//! Choices made where the specs are silent are written down in the submodule that makes them:
//! identifier syntax in [`ids`], connect-request parsing details in [`connect`], close codes and
//! the runner-side timeout reason in [`close`], and which fields are checked in [`validate`].

pub mod close;
pub mod connect;
pub mod embedded;
pub mod frame;
pub mod ids;
pub mod validate;

#[cfg(any(test, feature = "strategies"))]
pub mod strategies;

#[cfg(test)]
mod tests;

pub use close::{CloseReason, CloseReasonError, CloseSender, RunnerReaction};
pub use connect::{
    offered_sub_protocols, ConnectError, ConnectRequest, OfferedSubProtocols, ParamProblem,
    CONNECT_PATH, SUB_PROTOCOL, TOKEN_SUB_PROTOCOL_PREFIX,
};
pub use embedded::{
    command_from_stored, command_to_stored, decode_bus, decode_stored_command, dehydrated,
    encode_bus, encode_stored_command, EmbeddedValue, EmbeddedValueError,
};
pub use frame::{
    to_envoy_conn_kind, to_envoy_kind, to_rivet_kind, Codec, DataFrame, DecodeFailure,
    DecodeFailureKind, FrameError, FrameMessage,
};
pub use ids::{is_identifier_char, is_valid_actor_id, parse_actor_id, IdentifierError};
pub use validate::{validate_to_envoy, validate_to_rivet, MetadataProblem, ProtocolViolation};
