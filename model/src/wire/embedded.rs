//! Values with an embedded version (`spec/protocol.md` §2.1, last point): a 2-byte little-endian
//! version header, then the bare v8 body, byte-identical to
//! `serialize_with_embedded_version(value, 8)`. The engine stores commands this way
//! (`runner/R/cmd/A/g/i` holds `versioned::ActorCommandKeyData`, §3.2) and publishes bus payloads
//! this way (`versioned::ToEnvoyConn`, §1.7).
//!
//! Owns: that encoding, its typed decode error (a stored or published value that does not decode
//! is an internal error, never skipped), and the conversion between a stored command plus its
//! checkpoint and the `CommandWrapper` sent in frames. Must not touch: store keys (`keys`), command
//! hydration (the preload fills `preloadedKv` at send time) or when commands are written.
//!
//! Encoding at the latest version cannot fail, so the encoders return bytes, not a `Result`: they
//! write the header and the body directly, exactly as `Versioned::seal` does at the latest version
//! (the tests compare them with `serialize_with_embedded_version`). A compile-time check ties
//! `PROTOCOL_VERSION` to the crate's latest version.

use std::fmt;

use vbare::{Body, Bytes, Versioned};

use crate::constants::PROTOCOL_VERSION;
use crate::protocol::{self as p, versioned};
use crate::wire::frame::DecodeFailure;

/// Length of the embedded version header.
pub const EMBEDDED_VERSION_HEADER_BYTES: usize = 2;

const _: () = assert!(PROTOCOL_VERSION == <versioned::ActorCommandKeyData as Versioned>::LATEST);
const _: () = assert!(PROTOCOL_VERSION == <versioned::ToEnvoyConn as Versioned>::LATEST);

/// Which kind of embedded-version value failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EmbeddedValue {
    /// A stored command (`versioned::ActorCommandKeyData`).
    StoredCommand,
    /// A runner-topic bus payload (`versioned::ToEnvoyConn`).
    BusPayload,
}

impl fmt::Display for EmbeddedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmbeddedValue::StoredCommand => "stored command",
            EmbeddedValue::BusPayload => "bus payload",
        })
    }
}

/// An embedded-version value the model wrote and cannot read back: an internal error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddedValueError {
    /// Fewer than two bytes: no version header.
    #[error("internal: {what} of {len} bytes has no 2-byte version header")]
    MissingVersionHeader { what: EmbeddedValue, len: usize },
    /// The header names a version other than `PROTOCOL_VERSION`.
    #[error("internal: {what} has embedded version {found}, only version {expected} is supported")]
    UnsupportedVersion { what: EmbeddedValue, found: u16, expected: u16 },
    /// The body does not decode; the failure's offset counts the header.
    #[error("internal: {what} does not decode: {failure}")]
    Malformed { what: EmbeddedValue, failure: DecodeFailure },
}

/// Encodes a command for its store key, with the embedded version header.
pub fn encode_stored_command(command: &p::ActorCommandKeyData) -> Vec<u8> {
    seal(command)
}

/// Decodes a stored command.
pub fn decode_stored_command(stored: &[u8]) -> Result<p::ActorCommandKeyData, EmbeddedValueError> {
    open::<versioned::ActorCommandKeyData>(EmbeddedValue::StoredCommand, stored)
}

/// Encodes a runner-topic bus payload, with the embedded version header.
pub fn encode_bus(payload: &p::ToEnvoyConn) -> Vec<u8> {
    seal(payload)
}

/// Decodes a runner-topic bus payload.
pub fn decode_bus(payload: &[u8]) -> Result<p::ToEnvoyConn, EmbeddedValueError> {
    open::<versioned::ToEnvoyConn>(EmbeddedValue::BusPayload, payload)
}

/// The frame form of a stored command: the same content under its checkpoint. Hydration
/// (`preloadedKv`, `hibernatingRequests`) is the caller's, at send time.
pub fn command_from_stored(
    checkpoint: p::ActorCheckpoint,
    stored: p::ActorCommandKeyData,
) -> p::CommandWrapper {
    let inner = match stored {
        p::ActorCommandKeyData::CommandStartActor(start) => p::Command::CommandStartActor(start),
        p::ActorCommandKeyData::CommandStopActor(stop) => p::Command::CommandStopActor(stop),
    };
    p::CommandWrapper { checkpoint, inner }
}

/// The inverse of [`command_from_stored`]: splits a command into its checkpoint and its stored
/// content, unchanged. Use [`dehydrated`] before storing it (§3.2).
pub fn command_to_stored(
    command: p::CommandWrapper,
) -> (p::ActorCheckpoint, p::ActorCommandKeyData) {
    let stored = match command.inner {
        p::Command::CommandStartActor(start) => p::ActorCommandKeyData::CommandStartActor(start),
        p::Command::CommandStopActor(stop) => p::ActorCommandKeyData::CommandStopActor(stop),
    };
    (command.checkpoint, stored)
}

/// The command as the store must hold it (§3.2): a `CommandStartActor` without `preloadedKv` and
/// with empty `hibernatingRequests`. A stop command is returned unchanged.
pub fn dehydrated(command: p::ActorCommandKeyData) -> p::ActorCommandKeyData {
    match command {
        p::ActorCommandKeyData::CommandStartActor(start) => {
            p::ActorCommandKeyData::CommandStartActor(p::CommandStartActor {
                config: start.config,
                hibernating_requests: Vec::new(),
                preloaded_kv: None,
            })
        }
        stop @ p::ActorCommandKeyData::CommandStopActor(_) => stop,
    }
}

fn seal<B: Body>(value: &B) -> Vec<u8> {
    let mut out = Vec::with_capacity(EMBEDDED_VERSION_HEADER_BYTES + value.body_len());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    value.put_body(&mut out);
    out
}

fn open<V: Versioned>(what: EmbeddedValue, bytes: &[u8]) -> Result<V::Latest, EmbeddedValueError> {
    let Some((header, _body)) = bytes.split_first_chunk::<EMBEDDED_VERSION_HEADER_BYTES>() else {
        return Err(EmbeddedValueError::MissingVersionHeader { what, len: bytes.len() });
    };
    let found = u16::from_le_bytes(*header);
    if found != PROTOCOL_VERSION {
        return Err(EmbeddedValueError::UnsupportedVersion {
            what,
            found,
            expected: PROTOCOL_VERSION,
        });
    }
    V::decode(Bytes::copy_from_slice(bytes)).map_err(|error| EmbeddedValueError::Malformed {
        what,
        failure: DecodeFailure::from_vbare(&error, EMBEDDED_VERSION_HEADER_BYTES),
    })
}
