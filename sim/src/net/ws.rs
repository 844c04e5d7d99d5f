//! WebSocket over a controllable [`Link`], with `tokio-tungstenite`: the runner's connect with the
//! `rivet` sub-protocol and the edge's accept that selects it (`spec/protocol.md` §2.1–2.2), and
//! the message API the world uses ([`WsConn`], split into [`WsSender`] and [`WsReceiver`]).
//!
//! Owns: the HTTP upgrade (request, sub-protocol selection, refusal), the message size limit of a
//! connection, the mapping of every WebSocket failure to a typed [`NetError`], and the close
//! handshake. Must not touch: the bytes inside messages (protocol frames are opaque here), the
//! link's fault switches (the simulator sets them on the [`LinkControl`]), the history.
//!
//! Choices where the brief and the spec are silent:
//! - Refusal by the edge is an HTTP `400 Bad Request` whose body is the reason
//!   (`ws.invalid_request#sub-protocol \`rivet\` not offered (offered: ...)`); the client reports
//!   it as [`NetError::HandshakeRefused`] with that status and reason.
//! - The client accepts only a response selecting exactly `rivet`, even when it also offered a
//!   `rivet_token.<t>` sub-protocol.
//! - A close reason longer than the 123 bytes a close frame can carry is cut at a character
//!   boundary.
//! - Transport pings are answered inside (tungstenite queues the pong; it is written on the next
//!   receive or send) and never surface; neither end sends pings of its own (liveness is the
//!   protocol's `ToEnvoyPing`).
//! - Determinism. tungstenite's client draws its `Sec-WebSocket-Key` and every frame mask from
//!   `rand`'s thread-local generator, which madsim seeds from the run's generator on first use and
//!   on every reseed (each 64 KiB of output); that state outlives a run in a process, so two runs
//!   with one seed in one thread would see different network latencies. The runner side therefore
//!   does its own upgrade (a key derived from the connection id, then the same request bytes
//!   tungstenite would write) and speaks without masking (tungstenite's server role, which does
//!   not mask); both ends accept unmasked frames, and the edge still accepts masked ones (a real
//!   client). Message bytes are unchanged; only the masking bit and key of runner frames differ
//!   from RFC 6455.
//! - When a receiver sees the peer's close frame (or the echo of its own), it flushes the close
//!   reply and ends its link's write direction, so both sides finish with a clean EOF. Keep
//!   calling `recv` after [`WsEvent::Closed`] only if you want to see [`NetError::Closed`].
//! - A receive error (reset, oversized message, protocol error) ends the receiving half: later
//!   receives return [`NetError::Closed`]. The sending half still works, so the edge can close
//!   with a reason after an oversized frame.

use std::net::SocketAddr;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use madsim::net::TcpStream;
use pegsim_model::constants::MAX_FRAME_BYTES;
use pegsim_model::fact::ConnId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::{generate_request, Request, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as UpgradeRequest, Response as UpgradeResponse,
};
use tokio_tungstenite::tungstenite::http::{header, HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::link::{Link, LinkControl, LinkRegistry, Side};
use super::NetError;

/// The WebSocket sub-protocol the edge selects (`spec/protocol.md` §2.2).
pub const RIVET_SUBPROTOCOL: &str = "rivet";
/// Prefix of the sub-protocol that carries the runner's token: `rivet_token.<token>`.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "rivet_token.";
/// Close code used when the peer's close frame carried no code ("no status received").
pub const NO_STATUS_CLOSE_CODE: u16 = 1005;
/// The longest close reason a close frame can carry (125-byte payload minus the 2-byte code).
const MAX_CLOSE_REASON_BYTES: usize = 123;
/// The longest upgrade response head the client reads before giving up.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Per-connection WebSocket settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsConfig {
    /// The largest message (and frame) this end accepts on receive; a larger one is
    /// [`NetError::Oversized`]. Defaults to `MAX_FRAME_BYTES`.
    pub max_message_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig { max_message_bytes: MAX_FRAME_BYTES }
    }
}

impl WsConfig {
    fn tungstenite(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
            .accept_unmasked_frames(true)
    }
}

/// What the edge saw in the client's upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedRequest {
    /// The request target exactly as sent, e.g. `/envoys/connect?protocol_version=8&...`.
    pub path_and_query: String,
    /// The offered sub-protocols, in the order offered.
    pub subprotocols: Vec<String>,
}

impl AcceptedRequest {
    /// The token from an offered `rivet_token.<token>` sub-protocol, if any.
    pub fn token(&self) -> Option<&str> {
        self.subprotocols.iter().find_map(|p| p.strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
    }
}

/// One thing received on a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A binary message (a protocol frame).
    Binary(Vec<u8>),
    /// A text message (never valid in the protocol, but distinguishable).
    Text(String),
    /// The peer's close frame (or the echo of ours), with its code and reason.
    Closed { code: u16, reason: String },
}

type Stream = WebSocketStream<Link>;

/// The sending half of a WebSocket connection.
pub struct WsSender {
    sink: SplitSink<Stream, Message>,
    control: LinkControl,
}

/// The receiving half of a WebSocket connection.
pub struct WsReceiver {
    stream: SplitStream<Stream>,
    control: LinkControl,
    side: Side,
    /// A receive failed; the stream has ended without a close handshake.
    failed: bool,
}

/// An open WebSocket connection over a controllable link.
pub struct WsConn {
    sender: WsSender,
    receiver: WsReceiver,
}

impl std::fmt::Debug for WsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn")
            .field("conn", &self.conn())
            .field("side", &self.receiver.side)
            .finish()
    }
}

fn map_ws_error(err: WsError) -> NetError {
    match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => NetError::Closed,
        WsError::Io(io) => NetError::from(io),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            NetError::Oversized { size, max: max_size }
        }
        WsError::Capacity(other) => NetError::Protocol(other.to_string()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => NetError::Eof,
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(sub)) => {
            NetError::HandshakeRefused { status: None, reason: sub.to_string() }
        }
        WsError::Protocol(other) => NetError::Protocol(other.to_string()),
        WsError::Http(response) => {
            let status = response.status();
            let reason = response
                .body()
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).trim().to_owned())
                .filter(|body| !body.is_empty())
                .unwrap_or_else(|| status.to_string());
            NetError::HandshakeRefused { status: Some(status.as_u16()), reason }
        }
        WsError::Utf8 => NetError::Protocol("invalid UTF-8 in a text frame".to_owned()),
        WsError::Url(url) => NetError::InvalidRequest(url.to_string()),
        WsError::HttpFormat(http) => NetError::InvalidRequest(http.to_string()),
        other => NetError::Protocol(other.to_string()),
    }
}

/// The sub-protocols offered in `headers`, in order (every `Sec-WebSocket-Protocol` line, split
/// on commas). A header that is not visible ASCII counts as offering nothing.
fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

/// Opens connection `control.conn()` to the edge at `addr` with the default [`WsConfig`]: TCP,
/// link preamble, then the WebSocket upgrade `GET <path_and_query>` offering `subprotocols`.
pub async fn connect(
    addr: SocketAddr,
    path_and_query: &str,
    subprotocols: &[&str],
    control: LinkControl,
) -> Result<WsConn, NetError> {
    connect_with_config(addr, path_and_query, subprotocols, control, WsConfig::default()).await
}

/// The `Sec-WebSocket-Key` of connection `conn`: base64 of 16 bytes derived from the connection
/// id (deterministic, unique per connection; see the module comment for why it is not random).
fn handshake_key(conn: ConnId) -> String {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(b"pegsim-k");
    nonce[8..].copy_from_slice(&conn.0.to_le_bytes());
    base64_encode(&nonce)
}

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let triple = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                let index = ((triple >> shift) & 0x3f) as usize;
                out.push(char::from(ALPHABET[index]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Builds the upgrade request for `path_and_query` on `addr`, offering `subprotocols`.
fn upgrade_request(
    addr: SocketAddr,
    path_and_query: &str,
    subprotocols: &[&str],
    key: &str,
) -> Result<Request, NetError> {
    if !path_and_query.starts_with('/') {
        return Err(NetError::InvalidRequest(format!(
            "path and query {path_and_query:?} does not start with '/'"
        )));
    }
    if let Some(bad) = subprotocols
        .iter()
        .find(|p| p.is_empty() || p.contains(',') || p.contains(char::is_whitespace))
    {
        return Err(NetError::InvalidRequest(format!("invalid sub-protocol {bad:?}")));
    }
    let mut builder = Request::builder()
        .method("GET")
        .uri(format!("ws://{addr}{path_and_query}"))
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key);
    if !subprotocols.is_empty() {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, subprotocols.join(", "));
    }
    let request = builder
        .body(())
        .map_err(|err| NetError::InvalidRequest(format!("{path_and_query:?}: {err}")))?;
    if request.uri().path_and_query().map(|p| p.as_str()) != Some(path_and_query) {
        return Err(NetError::InvalidRequest(format!(
            "path and query {path_and_query:?} is not a valid request target"
        )));
    }
    Ok(request)
}

/// Whether `headers` has `name` with a value equal to `expected`, ignoring ASCII case, or
/// (for `Connection`) listing it as one of its comma-separated tokens.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, expected: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(expected))
}

/// [`connect`] with an explicit [`WsConfig`].
///
/// Fails with [`NetError::HandshakeRefused`] when the edge refuses the upgrade or its response
/// does not select `rivet`.
pub async fn connect_with_config(
    addr: SocketAddr,
    path_and_query: &str,
    subprotocols: &[&str],
    control: LinkControl,
    config: WsConfig,
) -> Result<WsConn, NetError> {
    let key = handshake_key(control.conn());
    let request = upgrade_request(addr, path_and_query, subprotocols, &key)?;
    let (request_bytes, key) = generate_request(request).map_err(map_ws_error)?;
    let mut link = Link::connect(addr, control.clone()).await?;
    link.write_all(&request_bytes).await?;
    link.flush().await?;

    // Read the response head; what follows it is already WebSocket data.
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let (head_len, response) = loop {
        if let Some(parsed) = Response::try_parse(&received).map_err(map_ws_error)? {
            break parsed;
        }
        if received.len() > MAX_RESPONSE_HEAD_BYTES {
            return Err(NetError::Protocol(format!(
                "the upgrade response head exceeds {MAX_RESPONSE_HEAD_BYTES} bytes"
            )));
        }
        let n = link.read(&mut chunk).await?;
        if n == 0 {
            return Err(NetError::Eof);
        }
        received.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let tail = received.split_off(head_len.min(received.len()));

    let refuse = |link: Link, status: Option<u16>, reason: String| {
        link.control().close(Side::Client);
        drop(link);
        Err(NetError::HandshakeRefused { status, reason })
    };
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = String::from_utf8_lossy(&tail).trim().to_owned();
        let reason = if body.is_empty() { status.to_string() } else { body };
        return refuse(link, Some(status.as_u16()), reason);
    }
    let headers = response.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return refuse(link, None, "the response does not upgrade to websocket".to_owned());
    }
    let expected_accept = derive_accept_key(key.as_bytes());
    let accept = headers.get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes());
    if accept != Some(expected_accept.as_bytes()) {
        return refuse(link, None, "Sec-WebSocket-Accept does not match the key".to_owned());
    }
    let selected = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if selected.as_deref() != Some(RIVET_SUBPROTOCOL) {
        let reason = match selected {
            Some(other) => format!("the edge selected sub-protocol {other:?}, not `rivet`"),
            None => "the edge selected no sub-protocol, not `rivet`".to_owned(),
        };
        return refuse(link, None, reason);
    }
    // The runner speaks without masking (see the module comment); the edge accepts that.
    let stream =
        WebSocketStream::from_partially_read(link, tail, Role::Server, Some(config.tungstenite()))
            .await;
    Ok(WsConn::new(stream, control, Side::Client))
}

/// Accepts connection `control.conn()` on an accepted TCP stream with the default [`WsConfig`]:
/// reads the link preamble (it must announce `control.conn()`), then runs the WebSocket upgrade,
/// selecting `rivet` or refusing the upgrade when it is not offered.
pub async fn accept(
    stream: TcpStream,
    control: LinkControl,
) -> Result<(WsConn, AcceptedRequest), NetError> {
    accept_with_config(stream, control, WsConfig::default()).await
}

/// [`accept`] with an explicit [`WsConfig`].
pub async fn accept_with_config(
    stream: TcpStream,
    control: LinkControl,
    config: WsConfig,
) -> Result<(WsConn, AcceptedRequest), NetError> {
    let expected = control.conn();
    let link = Link::accept(stream, |conn| (conn == expected).then_some(control)).await?;
    upgrade_server(link, config).await
}

/// Like [`accept_with_config`], but finds the control of the connection the client announced in
/// `registry`.
pub async fn accept_registered(
    stream: TcpStream,
    registry: &LinkRegistry,
    config: WsConfig,
) -> Result<(WsConn, AcceptedRequest), NetError> {
    let link = Link::accept(stream, |conn| registry.get(conn)).await?;
    upgrade_server(link, config).await
}

async fn upgrade_server(
    link: Link,
    config: WsConfig,
) -> Result<(WsConn, AcceptedRequest), NetError> {
    let control = link.control().clone();
    let mut seen: Option<AcceptedRequest> = None;
    // The callback's signature (and its large error type) is tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let callback = |request: &UpgradeRequest, mut response: UpgradeResponse| {
        let uri = request.uri();
        let accepted = AcceptedRequest {
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| uri.path().to_owned()),
            subprotocols: offered_subprotocols(request.headers()),
        };
        let offered_rivet = accepted.subprotocols.iter().any(|p| p == RIVET_SUBPROTOCOL);
        let offered = accepted.subprotocols.join(", ");
        seen = Some(accepted);
        if offered_rivet {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(RIVET_SUBPROTOCOL),
            );
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some(format!(
                "ws.invalid_request#sub-protocol `{RIVET_SUBPROTOCOL}` not offered (offered: [{offered}])"
            )));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
    };
    let stream =
        tokio_tungstenite::accept_hdr_async_with_config(link, callback, Some(config.tungstenite()))
            .await
            .map_err(map_ws_error)?;
    let accepted = seen
        .ok_or_else(|| NetError::Protocol("the upgrade finished without a request".to_owned()))?;
    Ok((WsConn::new(stream, control, Side::Server), accepted))
}

impl WsConn {
    fn new(stream: Stream, control: LinkControl, side: Side) -> WsConn {
        let (sink, stream) = stream.split();
        WsConn {
            sender: WsSender { sink, control: control.clone() },
            receiver: WsReceiver { stream, control, side, failed: false },
        }
    }

    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.receiver.control.conn()
    }

    /// The shared fault control of this connection.
    pub fn control(&self) -> &LinkControl {
        &self.receiver.control
    }

    /// Which end of the connection this is.
    pub fn side(&self) -> Side {
        self.receiver.side
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), NetError> {
        self.sender.send_binary(bytes).await
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: String) -> Result<(), NetError> {
        self.sender.send_text(text).await
    }

    /// Starts the close handshake with `code` and `reason`.
    pub async fn close(&mut self, reason: &str, code: u16) -> Result<(), NetError> {
        self.sender.close(reason, code).await
    }

    /// Waits for the next message or close frame.
    pub async fn recv(&mut self) -> Result<WsEvent, NetError> {
        self.receiver.recv().await
    }

    /// Splits into a sender and a receiver usable from two tasks.
    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.sender, self.receiver)
    }
}

impl WsSender {
    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.control.conn()
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), NetError> {
        self.sink.send(Message::Binary(bytes.into())).await.map_err(map_ws_error)
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: String) -> Result<(), NetError> {
        self.sink.send(Message::Text(text.into())).await.map_err(map_ws_error)
    }

    /// Starts the close handshake: sends a close frame with `code` and `reason` (cut to 123
    /// bytes). The peer sees [`WsEvent::Closed`] with them; the receiver of this end then sees
    /// the peer's echo.
    pub async fn close(&mut self, reason: &str, code: u16) -> Result<(), NetError> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: truncate_reason(reason).to_owned().into(),
        };
        self.sink.send(Message::Close(Some(frame))).await.map_err(map_ws_error)
    }
}

impl WsReceiver {
    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.control.conn()
    }

    /// Waits for the next binary or text message or close frame. Transport pings and pongs are
    /// handled inside. After the close handshake has finished, returns [`NetError::Closed`].
    pub async fn recv(&mut self) -> Result<WsEvent, NetError> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Binary(bytes))) => return Ok(WsEvent::Binary(bytes.to_vec())),
                Some(Ok(Message::Text(text))) => {
                    return Ok(WsEvent::Text(text.as_str().to_owned()))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    // Write the close reply tungstenite queued (it goes out on the next read),
                    // then end our write direction so the peer sees a clean EOF.
                    let _ = self.stream.next().now_or_never();
                    self.control.close(self.side);
                    return Ok(match frame {
                        Some(frame) => WsEvent::Closed {
                            code: u16::from(frame.code),
                            reason: frame.reason.as_str().to_owned(),
                        },
                        None => {
                            WsEvent::Closed { code: NO_STATUS_CLOSE_CODE, reason: String::new() }
                        }
                    });
                }
                Some(Err(err)) => {
                    self.failed = true;
                    return Err(map_ws_error(err));
                }
                None => {
                    // The close handshake finished: end our write direction too. After a failure
                    // the sending half stays usable (e.g. to close with a reason).
                    if !self.failed {
                        self.control.close(self.side);
                    }
                    return Err(NetError::Closed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            // RFC 6455 §1.3's sample key.
            ("the sample nonce", "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn handshake_keys_are_16_byte_nonces_unique_per_connection() {
        let a = handshake_key(ConnId(1));
        let b = handshake_key(ConnId(2));
        assert_ne!(a, b);
        // 16 bytes encode to 22 characters and two padding characters.
        assert_eq!((a.len(), &a[22..]), (24, "=="));
    }

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_reason("short"), "short");
        let exact = "x".repeat(123);
        assert_eq!(truncate_reason(&exact), exact);
        let long = "y".repeat(122) + "é";
        assert_eq!(truncate_reason(&long), "y".repeat(122));
    }

    #[test]
    fn offered_subprotocols_are_read_from_every_header_line_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("rivet_token.abc , rivet"),
        );
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("other,,"));
        assert_eq!(offered_subprotocols(&headers), vec!["rivet_token.abc", "rivet", "other"]);
        let request = AcceptedRequest {
            path_and_query: "/".to_owned(),
            subprotocols: offered_subprotocols(&headers),
        };
        assert_eq!(request.token(), Some("abc"));
    }

    #[test]
    fn upgrade_requests_carry_the_path_and_sub_protocols() {
        let addr: SocketAddr = ([10, 0, 0, 2], 8080).into();
        let request =
            upgrade_request(addr, "/envoys/connect?a=1&b=x", &["rivet", "rivet_token.t"], "k")
                .expect("valid");
        assert_eq!(
            request.uri().path_and_query().map(|p| p.as_str()),
            Some("/envoys/connect?a=1&b=x")
        );
        assert_eq!(
            request.headers().get(header::SEC_WEBSOCKET_PROTOCOL).map(|v| v.as_bytes()),
            Some(&b"rivet, rivet_token.t"[..])
        );
        for (path, protocols) in [
            ("no-slash", &["rivet"][..]),
            ("/ok", &["bad,comma"][..]),
            ("/ok", &[""][..]),
            ("/with space", &["rivet"][..]),
        ] {
            assert!(
                matches!(
                    upgrade_request(addr, path, protocols, "k"),
                    Err(NetError::InvalidRequest(_))
                ),
                "{path:?} {protocols:?}"
            );
        }
    }

    #[test]
    fn websocket_errors_map_to_typed_net_errors() {
        use std::io;
        assert_eq!(map_ws_error(WsError::ConnectionClosed), NetError::Closed);
        assert_eq!(map_ws_error(WsError::AlreadyClosed), NetError::Closed);
        assert_eq!(
            map_ws_error(WsError::Io(io::Error::new(io::ErrorKind::ConnectionReset, "x"))),
            NetError::Reset
        );
        assert_eq!(
            map_ws_error(WsError::Capacity(CapacityError::MessageTooLong {
                size: 10,
                max_size: 5
            })),
            NetError::Oversized { size: 10, max: 5 }
        );
        assert_eq!(
            map_ws_error(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)),
            NetError::Eof
        );
        assert!(matches!(
            map_ws_error(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            NetError::Protocol(_)
        ));
        assert!(matches!(map_ws_error(WsError::Utf8), NetError::Protocol(_)));
    }
}
