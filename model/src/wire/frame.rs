//! WebSocket data frames (`spec/protocol.md` §2.1): every binary message holds exactly one
//! `ToRivet` (runner to engine) or `ToEnvoy` (engine to runner), encoded as the bare v8 body with
//! no version header, exactly as `versioned::ToRivet::serialize(&msg, 8)` writes it and
//! `deserialize(&bytes, 8)` reads it.
//!
//! Owns the frame size limit (checked before encoding and before decoding) and the translation of
//! `vbare::DecodeError` into a typed, cloneable [`FrameError`] whose one-line rendering is the
//! `<detail>` of a close reason. Must not touch: what a decoded frame means (see `validate` for
//! field rules; connection state belongs to the engine and runner).

use std::fmt;

use vbare::{Body, Bytes, DecodeError, DecodeErrorKind, Versioned};

use crate::constants::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use crate::protocol::{self as p, versioned};

/// What went wrong while decoding a BARE body, named after `vbare::DecodeErrorKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecodeFailureKind {
    /// The input ended inside a value.
    Truncated,
    /// Bytes remain after the top-level value.
    TrailingBytes,
    /// A `str` is not valid UTF-8.
    InvalidUtf8,
    /// An enum value, union tag or optional tag the schema does not define.
    UnknownTag,
    /// A `bool` byte is neither 0 nor 1.
    InvalidBool,
    /// A varint uses more bytes than its value needs.
    NonCanonicalVarint,
    /// A varint is longer than 10 bytes or does not fit in 64 bits.
    VarintOverflow,
    /// A length or element count claims more data than the input holds.
    LengthExceedsInput,
    /// A map holds the same key twice.
    DuplicateMapKey,
    /// A version header names a version the reader does not support.
    UnsupportedVersion,
    /// The input is larger than vbare can address (4 GiB).
    MessageTooLarge,
    /// A version converter rejected the value.
    Conversion,
    /// A kind added to vbare after this model was written.
    Other,
}

impl DecodeFailureKind {
    fn from_vbare(kind: DecodeErrorKind) -> Self {
        match kind {
            DecodeErrorKind::Truncated => DecodeFailureKind::Truncated,
            DecodeErrorKind::TrailingBytes => DecodeFailureKind::TrailingBytes,
            DecodeErrorKind::InvalidUtf8 => DecodeFailureKind::InvalidUtf8,
            DecodeErrorKind::InvalidTag => DecodeFailureKind::UnknownTag,
            DecodeErrorKind::InvalidBool => DecodeFailureKind::InvalidBool,
            DecodeErrorKind::NonCanonicalVarint => DecodeFailureKind::NonCanonicalVarint,
            DecodeErrorKind::VarintOverflow => DecodeFailureKind::VarintOverflow,
            DecodeErrorKind::LengthExceedsInput => DecodeFailureKind::LengthExceedsInput,
            DecodeErrorKind::DuplicateMapKey => DecodeFailureKind::DuplicateMapKey,
            DecodeErrorKind::UnsupportedVersion => DecodeFailureKind::UnsupportedVersion,
            DecodeErrorKind::MessageTooLarge => DecodeFailureKind::MessageTooLarge,
            DecodeErrorKind::Conversion => DecodeFailureKind::Conversion,
            _ => DecodeFailureKind::Other,
        }
    }

    /// A short lowercase name, used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeFailureKind::Truncated => "truncated",
            DecodeFailureKind::TrailingBytes => "trailing bytes",
            DecodeFailureKind::InvalidUtf8 => "invalid UTF-8",
            DecodeFailureKind::UnknownTag => "unknown tag",
            DecodeFailureKind::InvalidBool => "invalid bool",
            DecodeFailureKind::NonCanonicalVarint => "non-canonical varint",
            DecodeFailureKind::VarintOverflow => "varint overflow",
            DecodeFailureKind::LengthExceedsInput => "length exceeds input",
            DecodeFailureKind::DuplicateMapKey => "duplicate map key",
            DecodeFailureKind::UnsupportedVersion => "unsupported version",
            DecodeFailureKind::MessageTooLarge => "message too large",
            DecodeFailureKind::Conversion => "version conversion failed",
            DecodeFailureKind::Other => "malformed",
        }
    }
}

impl fmt::Display for DecodeFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A BARE decode failure: its kind, the byte offset where it was found and the field path from
/// the root (wire field names, e.g. `ToRivetEvents[2].checkpoint.actorId`; empty at the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeFailure {
    pub kind: DecodeFailureKind,
    /// Byte offset in the decoded input.
    pub offset: usize,
    /// Path to the failing value; empty when the failure is at the root.
    pub path: String,
}

impl DecodeFailure {
    /// Captures a `vbare` error, shifting its offset by `offset_base` (the length of a header the
    /// decoder did not see).
    pub(crate) fn from_vbare(error: &DecodeError, offset_base: usize) -> Self {
        DecodeFailure {
            kind: DecodeFailureKind::from_vbare(error.kind()),
            offset: error.offset().saturating_add(offset_base),
            path: error.path(),
        }
    }
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} at the root (byte {})", self.kind, self.offset)
        } else {
            write!(f, "{} at {} (byte {})", self.kind, self.path, self.offset)
        }
    }
}

/// Which top-level type a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameMessage {
    /// Runner to engine.
    ToRivet,
    /// Engine to runner.
    ToEnvoy,
}

impl fmt::Display for FrameMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameMessage::ToRivet => "ToRivet",
            FrameMessage::ToEnvoy => "ToEnvoy",
        })
    }
}

/// A frame that cannot be sent or cannot be decoded (`spec/protocol.md` §2.1, "undecodable").
/// Its `Display` is one line and is the `<detail>` of the close reason ([`FrameError::close_detail`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A text WebSocket frame: protocol frames are binary.
    #[error("text frame of {len} bytes (protocol frames are binary)")]
    TextFrame { len: usize },
    /// The frame is larger than the codec's `max_frame_bytes`.
    #[error("{message} frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { message: FrameMessage, len: usize, max: usize },
    /// The body is not a valid v8 value.
    #[error("undecodable {message} frame: {failure}")]
    Malformed { message: FrameMessage, failure: DecodeFailure },
    /// The value could not be encoded (only possible if the pinned crate refuses version 8).
    #[error("{message} could not be encoded: {detail}")]
    Encode { message: FrameMessage, detail: String },
}

impl FrameError {
    /// The `<detail>` part of `ws.invalid_packet#<detail>` and its siblings: this error in one line.
    pub fn close_detail(&self) -> String {
        self.to_string()
    }

    /// The BARE decode failure, if that is what this error is.
    pub fn decode_failure(&self) -> Option<&DecodeFailure> {
        match self {
            FrameError::Malformed { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// The payload of one WebSocket data frame, as the transport delivered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFrame<'a> {
    Binary(&'a [u8]),
    Text(&'a str),
}

/// Encoder and decoder of protocol frames with a size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// Frames longer than this many bytes are refused on encode and on decode. A frame of exactly
    /// this size is accepted.
    pub max_frame_bytes: usize,
}

impl Default for Codec {
    /// The spec's limit, `MAX_FRAME_BYTES`.
    fn default() -> Self {
        Codec { max_frame_bytes: MAX_FRAME_BYTES }
    }
}

impl Codec {
    /// A codec with a custom limit (scenarios lower it).
    pub fn new(max_frame_bytes: usize) -> Self {
        Codec { max_frame_bytes }
    }

    /// Encodes a runner-to-engine frame.
    pub fn encode_to_rivet(&self, message: &p::ToRivet) -> Result<Vec<u8>, FrameError> {
        self.encode::<versioned::ToRivet>(FrameMessage::ToRivet, message)
    }

    /// Decodes a runner-to-engine binary frame.
    pub fn decode_to_rivet(&self, frame: &[u8]) -> Result<p::ToRivet, FrameError> {
        self.decode::<versioned::ToRivet>(FrameMessage::ToRivet, frame)
    }

    /// Decodes a runner-to-engine data frame of either kind; a text frame is an error.
    pub fn decode_to_rivet_frame(&self, frame: DataFrame<'_>) -> Result<p::ToRivet, FrameError> {
        match frame {
            DataFrame::Binary(bytes) => self.decode_to_rivet(bytes),
            DataFrame::Text(text) => Err(FrameError::TextFrame { len: text.len() }),
        }
    }

    /// Encodes an engine-to-runner frame.
    pub fn encode_to_envoy(&self, message: &p::ToEnvoy) -> Result<Vec<u8>, FrameError> {
        self.encode::<versioned::ToEnvoy>(FrameMessage::ToEnvoy, message)
    }

    /// Decodes an engine-to-runner binary frame.
    pub fn decode_to_envoy(&self, frame: &[u8]) -> Result<p::ToEnvoy, FrameError> {
        self.decode::<versioned::ToEnvoy>(FrameMessage::ToEnvoy, frame)
    }

    /// Decodes an engine-to-runner data frame of either kind; a text frame is an error.
    pub fn decode_to_envoy_frame(&self, frame: DataFrame<'_>) -> Result<p::ToEnvoy, FrameError> {
        match frame {
            DataFrame::Binary(bytes) => self.decode_to_envoy(bytes),
            DataFrame::Text(text) => Err(FrameError::TextFrame { len: text.len() }),
        }
    }

    fn encode<V: Versioned>(
        &self,
        message: FrameMessage,
        value: &V::Latest,
    ) -> Result<Vec<u8>, FrameError> {
        // The exact encoded length is known without encoding, so an oversized frame costs nothing.
        let len = value.body_len();
        if len > self.max_frame_bytes {
            return Err(FrameError::Oversized { message, len, max: self.max_frame_bytes });
        }
        let mut out = Vec::with_capacity(len);
        V::encode_body(value, PROTOCOL_VERSION, &mut out)
            .map_err(|error| FrameError::Encode { message, detail: error.to_string() })?;
        Ok(out)
    }

    fn decode<V: Versioned>(
        &self,
        message: FrameMessage,
        frame: &[u8],
    ) -> Result<V::Latest, FrameError> {
        if frame.len() > self.max_frame_bytes {
            return Err(FrameError::Oversized {
                message,
                len: frame.len(),
                max: self.max_frame_bytes,
            });
        }
        V::decode_body(Bytes::copy_from_slice(frame), PROTOCOL_VERSION).map_err(|error| {
            FrameError::Malformed { message, failure: DecodeFailure::from_vbare(&error, 0) }
        })
    }
}

/// The schema name of a `ToRivet` variant (e.g. `"ToRivetEvents"`), for traces and errors.
pub fn to_rivet_kind(message: &p::ToRivet) -> &'static str {
    match message {
        p::ToRivet::ToRivetMetadata(_) => "ToRivetMetadata",
        p::ToRivet::ToRivetEvents(_) => "ToRivetEvents",
        p::ToRivet::ToRivetAckCommands(_) => "ToRivetAckCommands",
        p::ToRivet::ToRivetStopping => "ToRivetStopping",
        p::ToRivet::ToRivetPong(_) => "ToRivetPong",
        p::ToRivet::ToRivetKvRequest(_) => "ToRivetKvRequest",
        p::ToRivet::ToRivetTunnelMessage(_) => "ToRivetTunnelMessage",
        p::ToRivet::ToRivetSqliteGetPagesRequest(_) => "ToRivetSqliteGetPagesRequest",
        p::ToRivet::ToRivetSqliteCommitRequest(_) => "ToRivetSqliteCommitRequest",
        p::ToRivet::ToRivetSqliteCommitStageBeginRequest(_) => {
            "ToRivetSqliteCommitStageBeginRequest"
        }
        p::ToRivet::ToRivetSqliteCommitStageSegmentRequest(_) => {
            "ToRivetSqliteCommitStageSegmentRequest"
        }
        p::ToRivet::ToRivetSqliteCommitFinalizeRequest(_) => "ToRivetSqliteCommitFinalizeRequest",
        p::ToRivet::ToRivetSqliteExecRequest(_) => "ToRivetSqliteExecRequest",
        p::ToRivet::ToRivetSqliteExecuteRequest(_) => "ToRivetSqliteExecuteRequest",
        p::ToRivet::ToRivetSqliteExecuteBatchRequest(_) => "ToRivetSqliteExecuteBatchRequest",
    }
}

/// The schema name of a `ToEnvoy` variant (e.g. `"ToEnvoyCommands"`), for traces and errors.
pub fn to_envoy_kind(message: &p::ToEnvoy) -> &'static str {
    match message {
        p::ToEnvoy::ToEnvoyInit(_) => "ToEnvoyInit",
        p::ToEnvoy::ToEnvoyCommands(_) => "ToEnvoyCommands",
        p::ToEnvoy::ToEnvoyAckEvents(_) => "ToEnvoyAckEvents",
        p::ToEnvoy::ToEnvoyKvResponse(_) => "ToEnvoyKvResponse",
        p::ToEnvoy::ToEnvoyTunnelMessage(_) => "ToEnvoyTunnelMessage",
        p::ToEnvoy::ToEnvoyPing(_) => "ToEnvoyPing",
        p::ToEnvoy::ToEnvoySqliteGetPagesResponse(_) => "ToEnvoySqliteGetPagesResponse",
        p::ToEnvoy::ToEnvoySqliteCommitResponse(_) => "ToEnvoySqliteCommitResponse",
        p::ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(_) => {
            "ToEnvoySqliteCommitStageBeginResponse"
        }
        p::ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(_) => {
            "ToEnvoySqliteCommitStageSegmentResponse"
        }
        p::ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(_) => "ToEnvoySqliteCommitFinalizeResponse",
        p::ToEnvoy::ToEnvoySqliteExecResponse(_) => "ToEnvoySqliteExecResponse",
        p::ToEnvoy::ToEnvoySqliteExecuteResponse(_) => "ToEnvoySqliteExecuteResponse",
        p::ToEnvoy::ToEnvoySqliteExecuteBatchResponse(_) => "ToEnvoySqliteExecuteBatchResponse",
    }
}

/// The schema name of a `ToEnvoyConn` (bus payload) variant.
pub fn to_envoy_conn_kind(message: &p::ToEnvoyConn) -> &'static str {
    match message {
        p::ToEnvoyConn::ToEnvoyConnPing(_) => "ToEnvoyConnPing",
        p::ToEnvoyConn::ToEnvoyConnClose => "ToEnvoyConnClose",
        p::ToEnvoyConn::ToEnvoyCommands(_) => "ToEnvoyCommands",
        p::ToEnvoyConn::ToEnvoyAckEvents(_) => "ToEnvoyAckEvents",
        p::ToEnvoyConn::ToEnvoyTunnelMessage(_) => "ToEnvoyTunnelMessage",
    }
}
