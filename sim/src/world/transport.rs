//! The world's use of the simulated transport (`net`): edges listen and accept WebSocket
//! connections, runners open them; every connection gets a `LinkControl` registered under its
//! `ConnId`, both for pairing the two ends and for the fault injector.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use madsim::net::{TcpListener, TcpStream};
use pegsim_model::fact::ConnId;

use crate::net::{accept_registered, connect_with_config, LinkControl, WsConfig};
pub use crate::net::{NetError, WsConn, WsEvent};
use crate::world::shared::{LinkEntry, Shared};

/// How long an edge waits for a new connection's preamble and upgrade request.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// The transport accepts messages up to this many times the protocol's frame limit, so that an
/// oversized frame reaches the receiver's codec, which rejects it as the protocol says
/// (`spec/protocol.md` §2.1) instead of the transport dropping the connection.
pub const TRANSPORT_SLACK: usize = 4;

/// Node addresses: core `10.0.0.1`, bus `10.0.0.2`, edges `10.0.1.x`, runners `10.0.2.x`.
pub mod addr {
    use super::*;

    pub fn core() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
    }

    pub fn bus() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    }

    pub fn edge(index: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, (index + 1) as u8))
    }

    pub fn runner(index: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, (index + 1) as u8))
    }
}

/// A listening edge.
pub struct Listener(TcpListener);

/// Listen on `port` of the current node.
pub async fn listen(port: u16) -> Result<Listener, NetError> {
    let l = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await?;
    Ok(Listener(l))
}

impl Listener {
    /// The next TCP connection (the WebSocket upgrade happens in [`upgrade`]).
    pub async fn accept(&self) -> Result<TcpStream, NetError> {
        Ok(self.0.accept().await?.0)
    }
}

/// An accepted, upgraded connection.
pub struct Accepted {
    pub conn: ConnId,
    pub ws: WsConn,
    pub path_and_query: String,
    pub subprotocols: Vec<String>,
}

/// Complete the server side of a connection: preamble, WebSocket upgrade.
pub async fn upgrade(
    shared: &Shared,
    stream: TcpStream,
    max_frame: usize,
) -> Result<Accepted, NetError> {
    let registry = shared.lock().link_registry.clone();
    let config = WsConfig { max_message_bytes: max_frame.saturating_mul(TRANSPORT_SLACK) };
    let handshake = accept_registered(stream, &registry, config);
    match madsim::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
        Ok(Ok((ws, request))) => Ok(Accepted {
            conn: ws.conn(),
            path_and_query: request.path_and_query.clone(),
            subprotocols: request.subprotocols.clone(),
            ws,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(NetError::Protocol("handshake timed out".into())),
    }
}

/// Open connection `conn` from runner `runner` to edge `edge` and upgrade it.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    shared: &Shared,
    runner: usize,
    edge: usize,
    port: u16,
    conn: ConnId,
    path_and_query: &str,
    subprotocols: &[String],
    max_frame: usize,
) -> Result<WsConn, NetError> {
    let control = LinkControl::new(conn);
    {
        let mut st = shared.lock();
        st.link_registry.register(control.clone());
        st.links.insert(conn, LinkEntry { runner, edge, control: control.clone() });
    }
    let addr = SocketAddr::new(addr::edge(edge), port);
    let offered: Vec<&str> = subprotocols.iter().map(String::as_str).collect();
    let config = WsConfig { max_message_bytes: max_frame.saturating_mul(TRANSPORT_SLACK) };
    let attempt = connect_with_config(addr, path_and_query, &offered, control, config);
    let result =
        match madsim::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), attempt).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Protocol("connect timed out".into())),
        };
    if result.is_err() {
        forget(shared, conn);
    }
    result
}

/// Forget a connection's control (it ended).
pub fn forget(shared: &Shared, conn: ConnId) {
    let mut st = shared.lock();
    st.links.remove(&conn);
    st.link_registry.remove(conn);
}
