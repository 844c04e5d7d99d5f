//! The simulated runner-edge transport: a TCP link whose faults the simulator controls
//! ([`link`]) and a WebSocket over it ([`ws`]), as `spec/protocol.md` §2.1–2.2 and §9 describe.
//!
//! Owns: the byte transport between a runner node and an edge node inside a madsim world, the
//! per-connection fault switches (reset, half-open, clog, delay, close), the WebSocket handshake
//! with the `rivet` sub-protocol and the WebSocket message API the world uses.
//!
//! Must not touch: protocol decoding (frames are opaque bytes here; the world decodes them with
//! `pegsim_model::wire`), the history (the world records frames and faults), the model, and any
//! source of time or randomness other than the madsim runtime it runs in.
//!
//! The client side is the runner (it writes [`Dir::ToEngine`](crate::run::Dir::ToEngine)), the
//! server side is the edge (it writes [`Dir::ToRunner`](crate::run::Dir::ToRunner)).

pub mod link;
pub mod ws;

#[cfg(test)]
mod tests;

pub use link::{Link, LinkControl, LinkRegistry, LinkStats, Side};
pub use ws::{
    accept, accept_registered, accept_with_config, connect, connect_with_config, AcceptedRequest,
    WsConfig, WsConn, WsEvent, WsReceiver, WsSender, RIVET_SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX,
};

/// Why a transport operation failed. Every failure of the link or the WebSocket is one of these;
/// nothing in this module panics on bytes from the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The connection was reset (injected by the simulator, or the peer's end is gone).
    #[error("connection reset")]
    Reset,
    /// The WebSocket is closed: the close handshake finished, or the connection was already
    /// closed when it was used.
    #[error("connection closed")]
    Closed,
    /// The peer ended the transport (EOF) without a WebSocket close handshake.
    #[error("peer closed the transport without a WebSocket close handshake")]
    Eof,
    /// The WebSocket upgrade was refused: by the edge (HTTP error response, `status` set) or by
    /// the client because the response did not select the `rivet` sub-protocol.
    #[error("handshake refused{}: {reason}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    HandshakeRefused { status: Option<u16>, reason: String },
    /// The peer broke the WebSocket protocol (bad framing, invalid UTF-8 in a text frame, ...).
    #[error("WebSocket protocol error: {0}")]
    Protocol(String),
    /// A received message or frame was larger than this connection's limit.
    #[error("received message of {size} bytes exceeds the limit of {max} bytes")]
    Oversized { size: usize, max: usize },
    /// The connect request could not be built (bad address, path or sub-protocol).
    #[error("invalid connect request: {0}")]
    InvalidRequest(String),
    /// The two ends of a link could not be paired (bad or unknown connection preamble).
    #[error("link pairing failed: {0}")]
    Pairing(String),
    /// Any other transport failure (e.g. connection refused), with the I/O error kind.
    #[error("transport error ({kind:?}): {detail}")]
    Io { kind: std::io::ErrorKind, detail: String },
}

impl From<std::io::Error> for NetError {
    fn from(err: std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::ConnectionReset => NetError::Reset,
            std::io::ErrorKind::UnexpectedEof => NetError::Eof,
            kind => NetError::Io { kind, detail: err.to_string() },
        }
    }
}
