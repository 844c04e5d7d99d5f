//! A controllable TCP link: a wrapper around `madsim::net::TcpStream` implementing tokio's
//! `AsyncRead` + `AsyncWrite`, whose faults the simulator switches per connection and per
//! direction through a shared [`LinkControl`].
//!
//! Owns: the link framing on top of the simulated TCP stream, the pairing of the two ends of one
//! connection (the client's preamble carrying its [`ConnId`]) and the fault semantics below.
//! Must not touch: anything above the byte stream (WebSocket, protocol frames), the history, and
//! any time source other than madsim's simulated clock.
//!
//! # Wire format between the two `Link`s
//! The client first writes a preamble `[0x01][conn id: u64 LE]`; the server reads it and finds the
//! connection's control (so both ends share one [`LinkControl`]). Every later write becomes one
//! data frame `[0x02][extra delay ns: u64 LE][len: u32 LE][len bytes]` and is flushed to the
//! simulated TCP stream at once (a write is a transmission).
//!
//! # Fault semantics (choices where the brief is silent)
//! - **reset(side)**: from then on every read and write of that side's `Link` fails with
//!   `ConnectionReset`, and a read pending on that side is woken to fail; bytes it had received
//!   but not yet read are dropped. The other side notices nothing until it is reset itself (or
//!   gives up on a timeout); in particular, when the reset side's `Link` is later dropped, the
//!   other side keeps seeing silence instead of an EOF, and its writes keep succeeding.
//! - **half-open(dir)**: bytes written in `dir` from now on are accepted and discarded (counted in
//!   [`DirStats::bytes_discarded`]); bytes already in flight still arrive. A close or a dropped
//!   writer is not observed through a half-open direction either: the reader sees silence.
//! - **clog(dir)**: the receiving side delivers nothing written in `dir` (including bytes already
//!   in flight) until unclogged; then everything is delivered in order, nothing lost.
//! - **delay(dir)**: each write carries the direction's extra delay at the time it was written;
//!   the receiving `Link` releases it that long after it arrived from the simulated network, and
//!   never before an earlier write (order is preserved). Arrival is taken when the receiving
//!   `Link` is polled; the world keeps a reader polling on every connection, so that is when the
//!   network delivered it.
//! - **close(side)**: that side's write direction ends; the peer reads everything that side wrote
//!   before the close and then EOF. Later writes of that side fail with `BrokenPipe`.
//!   `AsyncWrite::poll_shutdown` of a `Link` does the same (madsim's own shutdown is a no-op).
//! - **a dropped `Link`** (the process closed its socket, or its node was killed): the peer reads
//!   everything already written and then EOF, as when a kernel closes the socket of a dead
//!   process. To make a crash silent, reset the crashed side first.
//!
//! Everything is deterministic under madsim: no threads, no wall clock, no randomness; the state
//! shared by the two ends is behind an `Arc<Mutex<_>>` that is never held across an await.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use madsim::net::TcpStream;
use madsim::time::{Instant, Sleep};
use pegsim_model::fact::ConnId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::NetError;
use crate::run::Dir;

/// Tag of the client's preamble frame.
const TAG_HELLO: u8 = 0x01;
/// Tag of a data frame.
const TAG_DATA: u8 = 0x02;
/// Length of the preamble: tag and connection id.
const HELLO_LEN: usize = 1 + 8;
/// Length of a data frame header: tag, extra delay, payload length.
const DATA_HEADER_LEN: usize = 1 + 8 + 4;
/// The largest payload of one data frame; a longer write is accepted in part (as a socket does).
const MAX_CHUNK: usize = 1 << 20;
/// Size of the buffer one read from the simulated TCP stream fills.
const SCRATCH_LEN: usize = 64 * 1024;

/// One end of a connection: the client (the runner) or the server (the edge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The end that connected: the runner.
    Client,
    /// The end that accepted: the edge.
    Server,
}

impl Side {
    /// The direction this side writes in.
    pub fn writes(self) -> Dir {
        match self {
            Side::Client => Dir::ToEngine,
            Side::Server => Dir::ToRunner,
        }
    }

    /// The direction this side reads from.
    pub fn reads(self) -> Dir {
        self.peer().writes()
    }

    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// The side that receives what is written in `dir`.
    pub fn receiving(dir: Dir) -> Side {
        match dir {
            Dir::ToEngine => Side::Server,
            Dir::ToRunner => Side::Client,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::ToEngine => 0,
        Dir::ToRunner => 1,
    }
}

/// Counters of one direction of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Data frames (writes) put on the simulated network.
    pub frames_written: u64,
    /// Payload bytes put on the simulated network.
    pub bytes_written: u64,
    /// Payload bytes accepted from the writer and discarded because the direction was half-open.
    pub bytes_discarded: u64,
    /// Data frames the receiving side has fully read.
    pub frames_delivered: u64,
}

/// Counters of both directions of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Runner to edge.
    pub to_engine: DirStats,
    /// Edge to runner.
    pub to_runner: DirStats,
}

#[derive(Debug, Default)]
struct DirState {
    half_open: bool,
    clogged: bool,
    delay: Duration,
    /// The writer closed after this many data frames; the reader sees EOF once it has read them.
    fin_after: Option<u64>,
    stats: DirStats,
}

#[derive(Debug, Default)]
struct SideState {
    reset: bool,
    /// The task reading on this side, woken by faults that change what it may read.
    read_waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct LinkState {
    dirs: [DirState; 2],
    sides: [SideState; 2],
}

impl LinkState {
    fn dir(&mut self, dir: Dir) -> &mut DirState {
        &mut self.dirs[dir_index(dir)]
    }

    fn side(&mut self, side: Side) -> &mut SideState {
        &mut self.sides[side.index()]
    }

    fn wake_reader(&mut self, side: Side) {
        if let Some(waker) = self.side(side).read_waker.take() {
            waker.wake();
        }
    }

    /// Ends `side`'s write direction after everything written so far.
    fn close_writer(&mut self, side: Side) {
        let dir = self.dir(side.writes());
        if dir.fin_after.is_none() && !dir.half_open {
            dir.fin_after = Some(dir.stats.frames_written);
        }
        self.wake_reader(side.peer());
    }
}

/// The simulator's handle on one connection's faults, shared by both ends of the connection and
/// by whoever injects faults. Cloning it gives another handle on the same connection.
#[derive(Clone, Debug)]
pub struct LinkControl {
    conn: ConnId,
    state: Arc<Mutex<LinkState>>,
}

impl LinkControl {
    /// A fresh control for connection `conn`, with every fault off.
    pub fn new(conn: ConnId) -> Self {
        LinkControl { conn, state: Arc::new(Mutex::new(LinkState::default())) }
    }

    /// The connection this control belongs to.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // The state is plain data updated in small steps; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Resets `side`'s view of the connection: its pending and future reads and writes fail with
    /// `ConnectionReset`. The other side is not told.
    pub fn reset(&self, side: Side) {
        let mut state = self.lock();
        state.side(side).reset = true;
        state.wake_reader(side);
    }

    /// Resets both sides at once.
    pub fn reset_both(&self) {
        self.reset(Side::Client);
        self.reset(Side::Server);
    }

    /// Whether `side` has been reset.
    pub fn is_reset(&self, side: Side) -> bool {
        self.lock().side(side).reset
    }

    /// Makes `dir` half-open (`true`: bytes written in it from now on are discarded) or heals it.
    pub fn set_half_open(&self, dir: Dir, half_open: bool) {
        self.lock().dir(dir).half_open = half_open;
    }

    /// Whether `dir` is half-open.
    pub fn is_half_open(&self, dir: Dir) -> bool {
        self.lock().dir(dir).half_open
    }

    /// Stops delivery in `dir`; bytes are buffered until [`unclog`](Self::unclog).
    pub fn clog(&self, dir: Dir) {
        self.lock().dir(dir).clogged = true;
    }

    /// Resumes delivery in `dir`, releasing the buffered bytes in order.
    pub fn unclog(&self, dir: Dir) {
        let mut state = self.lock();
        state.dir(dir).clogged = false;
        state.wake_reader(Side::receiving(dir));
    }

    /// Whether `dir` is clogged.
    pub fn is_clogged(&self, dir: Dir) -> bool {
        self.lock().dir(dir).clogged
    }

    /// Sets the extra delivery delay applied to each write in `dir` from now on.
    pub fn set_delay(&self, dir: Dir, delay: Duration) {
        self.lock().dir(dir).delay = delay;
    }

    /// The extra delivery delay currently applied in `dir`.
    pub fn delay(&self, dir: Dir) -> Duration {
        self.lock().dir(dir).delay
    }

    /// Closes `side`'s write direction: the peer reads what `side` wrote so far, then EOF.
    pub fn close(&self, side: Side) {
        self.lock().close_writer(side);
    }

    /// Whether `side`'s write direction has been closed.
    pub fn is_closed(&self, side: Side) -> bool {
        self.lock().dir(side.writes()).fin_after.is_some()
    }

    /// The counters of both directions.
    pub fn stats(&self) -> LinkStats {
        let mut state = self.lock();
        LinkStats {
            to_engine: state.dir(Dir::ToEngine).stats,
            to_runner: state.dir(Dir::ToRunner).stats,
        }
    }
}

/// The controls of the connections a world has opened, keyed by connection id, so that the
/// accepting side can find the control of the connection the client announced.
#[derive(Clone, Debug, Default)]
pub struct LinkRegistry {
    controls: Arc<Mutex<BTreeMap<ConnId, LinkControl>>>,
}

impl LinkRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ConnId, LinkControl>> {
        self.controls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `control` under its connection id (replacing an earlier one).
    pub fn register(&self, control: LinkControl) {
        self.lock().insert(control.conn(), control);
    }

    /// The control of `conn`, if registered.
    pub fn get(&self, conn: ConnId) -> Option<LinkControl> {
        self.lock().get(&conn).cloned()
    }

    /// Removes and returns the control of `conn`.
    pub fn remove(&self, conn: ConnId) -> Option<LinkControl> {
        self.lock().remove(&conn)
    }

    /// Every registered control, in connection id order.
    pub fn controls(&self) -> Vec<LinkControl> {
        self.lock().values().cloned().collect()
    }
}

/// A frame received from the simulated network, waiting for its release time.
struct ArrivedFrame {
    release_at: Instant,
    data: Vec<u8>,
    /// How much of `data` has been read already.
    offset: usize,
}

/// One end of a controllable connection. Reads and writes go through the simulated TCP stream and
/// obey the faults set on the shared [`LinkControl`].
pub struct Link {
    tcp: TcpStream,
    control: LinkControl,
    side: Side,
    /// Bytes received from the TCP stream and not yet parsed into frames.
    raw: Vec<u8>,
    /// The TCP stream ended (the peer's `Link` was dropped).
    raw_eof: bool,
    /// Parsed frames waiting to be read, in order.
    arrived: VecDeque<ArrivedFrame>,
    /// Release time of the last parsed frame (releases never go backwards).
    last_release: Option<Instant>,
    /// Data frames fully read by this side.
    delivered_frames: u64,
    /// EOF has been returned to the reader once; it is returned again on every later read.
    eof_delivered: bool,
    /// Encoded frames accepted from the writer and not yet handed to the TCP stream.
    out: Vec<u8>,
    /// Wakes the reader when the first waiting frame's release time comes.
    release_timer: Option<Pin<Box<Sleep>>>,
    scratch: Box<[u8]>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("conn", &self.control.conn())
            .field("side", &self.side)
            .field("waiting_frames", &self.arrived.len())
            .field("raw_eof", &self.raw_eof)
            .finish()
    }
}

fn reset_error(conn: ConnId) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, format!("link {conn}: connection reset"))
}

fn read_u64_le(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    let array: [u8; 8] = slice.try_into().ok()?;
    Some(u64::from_le_bytes(array))
}

fn read_u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    let array: [u8; 4] = slice.try_into().ok()?;
    Some(u32::from_le_bytes(array))
}

impl Link {
    /// Connects to `addr` as the client of connection `control.conn()` and sends the preamble
    /// that lets the server find the same control.
    pub async fn connect(addr: SocketAddr, control: LinkControl) -> Result<Link, NetError> {
        let mut tcp = TcpStream::connect(addr).await?;
        let mut hello = Vec::with_capacity(HELLO_LEN);
        hello.push(TAG_HELLO);
        hello.extend_from_slice(&control.conn().0.to_le_bytes());
        tcp.write_all(&hello).await?;
        tcp.flush().await?;
        Ok(Link::new(tcp, control, Side::Client, Vec::new()))
    }

    /// Accepts the server end of an accepted TCP stream: reads the client's preamble and asks
    /// `lookup` for the control of the announced connection.
    ///
    /// This waits until the preamble arrives; a world that must not wait forever wraps it in a
    /// timeout.
    pub async fn accept(
        mut tcp: TcpStream,
        lookup: impl FnOnce(ConnId) -> Option<LinkControl>,
    ) -> Result<Link, NetError> {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 256];
        while raw.len() < HELLO_LEN {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(NetError::Pairing(format!(
                    "the connection ended after {} of the {HELLO_LEN} preamble bytes",
                    raw.len()
                )));
            }
            raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        match raw.first() {
            Some(&TAG_HELLO) => {}
            Some(other) => {
                return Err(NetError::Pairing(format!(
                    "expected the link preamble (tag {TAG_HELLO:#04x}), got tag {other:#04x}"
                )))
            }
            None => return Err(NetError::Pairing("empty preamble".to_owned())),
        }
        let conn = ConnId(
            read_u64_le(&raw, 1)
                .ok_or_else(|| NetError::Pairing("truncated preamble".to_owned()))?,
        );
        let control = lookup(conn)
            .ok_or_else(|| NetError::Pairing(format!("no link control for connection {conn}")))?;
        let rest = raw.split_off(HELLO_LEN);
        Ok(Link::new(tcp, control, Side::Server, rest))
    }

    fn new(tcp: TcpStream, control: LinkControl, side: Side, raw: Vec<u8>) -> Link {
        Link {
            tcp,
            control,
            side,
            raw,
            raw_eof: false,
            arrived: VecDeque::new(),
            last_release: None,
            delivered_frames: 0,
            eof_delivered: false,
            out: Vec::new(),
            release_timer: None,
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
        }
    }

    /// The shared fault control of this connection.
    pub fn control(&self) -> &LinkControl {
        &self.control
    }

    /// Which end of the connection this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.control.conn()
    }

    /// Moves everything the TCP stream has ready into `raw` and parses complete frames, stamping
    /// their release time.
    fn drain_tcp(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.raw_eof {
            let mut read_buf = ReadBuf::new(&mut self.scratch);
            match Pin::new(&mut self.tcp).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) => {
                    let filled = read_buf.filled();
                    if filled.is_empty() {
                        self.raw_eof = true;
                    } else {
                        self.raw.extend_from_slice(filled);
                    }
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => break,
            }
        }
        self.parse_frames()
    }

    fn parse_frames(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut pos = 0;
        while let Some(&tag) = self.raw.get(pos) {
            if tag != TAG_DATA {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("link {}: unknown frame tag {tag:#04x}", self.conn()),
                ));
            }
            let (Some(delay_ns), Some(len)) =
                (read_u64_le(&self.raw, pos + 1), read_u32_le(&self.raw, pos + 9))
            else {
                break;
            };
            let len = len as usize;
            if len > MAX_CHUNK {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("link {}: frame of {len} bytes exceeds {MAX_CHUNK}", self.conn()),
                ));
            }
            let start = pos + DATA_HEADER_LEN;
            let Some(data) = self.raw.get(start..start + len) else {
                break;
            };
            let mut release_at = now + Duration::from_nanos(delay_ns);
            if let Some(last) = self.last_release {
                release_at = release_at.max(last);
            }
            self.last_release = Some(release_at);
            self.arrived.push_back(ArrivedFrame { release_at, data: data.to_vec(), offset: 0 });
            pos = start + len;
        }
        self.raw.drain(..pos);
        Ok(())
    }

    /// Hands the encoded frames in `out` to the TCP stream and flushes it.
    fn push_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match Pin::new(&mut self.tcp).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("link {}: the TCP stream accepted no bytes", self.conn()),
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n.min(self.out.len()));
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut self.tcp).poll_flush(cx) {
            Poll::Ready(Err(err)) => {
                // The peer's end is gone. If the simulator reset the peer, this side must not
                // notice: the bytes are lost in silence.
                if self.control.is_reset(self.side.peer()) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(err))
                }
            }
            other => other,
        }
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let me = this.side;
        let dir = me.reads();
        if this.control.is_reset(me) {
            this.arrived.clear();
            return Poll::Ready(Err(reset_error(this.conn())));
        }
        if this.eof_delivered || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        this.drain_tcp(cx)?;

        let now = Instant::now();
        let control = this.control.clone();
        let mut state = control.lock();
        let clogged = state.dir(dir).clogged;
        let mut delivered_any = false;
        if !clogged {
            while buf.remaining() > 0 {
                let Some(front) = this.arrived.front_mut() else {
                    break;
                };
                if front.release_at > now {
                    break;
                }
                let unread = front.data.get(front.offset..).unwrap_or_default();
                let n = unread.len().min(buf.remaining());
                buf.put_slice(unread.get(..n).unwrap_or_default());
                front.offset += n;
                delivered_any = true;
                if front.offset >= front.data.len() {
                    this.arrived.pop_front();
                    this.delivered_frames += 1;
                    state.dir(dir).stats.frames_delivered += 1;
                }
            }
        }
        if delivered_any {
            return Poll::Ready(Ok(()));
        }
        if !clogged && this.arrived.is_empty() {
            let fin_reached =
                state.dir(dir).fin_after.is_some_and(|frames| this.delivered_frames >= frames);
            let peer_dropped_visibly =
                this.raw_eof && !state.side(me.peer()).reset && !state.dir(dir).half_open;
            if fin_reached || peer_dropped_visibly {
                this.eof_delivered = true;
                return Poll::Ready(Ok(()));
            }
        }
        // Nothing to read now: be woken by the TCP stream (registered by `drain_tcp`), by a fault
        // change (the control), or by the release time of the first waiting frame.
        let waker = &mut state.side(me).read_waker;
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        drop(state);
        if !clogged {
            if let Some(release_at) = this.arrived.front().map(|f| f.release_at) {
                let timer = match &mut this.release_timer {
                    Some(timer) if timer.deadline() == release_at => timer,
                    slot => slot.insert(Box::pin(madsim::time::sleep_until(release_at))),
                };
                if timer.as_mut().poll(cx).is_ready() {
                    this.release_timer = None;
                    cx.waker().wake_by_ref();
                }
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let me = this.side;
        let conn = this.conn();
        let (accepted, delay) = {
            let mut state = this.control.lock();
            if state.side(me).reset {
                return Poll::Ready(Err(reset_error(conn)));
            }
            let dir = state.dir(me.writes());
            if dir.fin_after.is_some() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("link {conn}: closed for writing"),
                )));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let accepted = buf.len().min(MAX_CHUNK);
            if dir.half_open {
                dir.stats.bytes_discarded += accepted as u64;
                return Poll::Ready(Ok(accepted));
            }
            dir.stats.frames_written += 1;
            dir.stats.bytes_written += accepted as u64;
            (accepted, dir.delay)
        };
        let payload = buf.get(..accepted).unwrap_or_default();
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        this.out.reserve(DATA_HEADER_LEN + payload.len());
        this.out.push(TAG_DATA);
        this.out.extend_from_slice(&delay_ns.to_le_bytes());
        // `accepted <= MAX_CHUNK`, which fits in a u32.
        this.out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        this.out.extend_from_slice(payload);
        match this.push_out(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            // The frame is accepted either way; a pending push finishes on the next flush.
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(accepted)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_reset(this.side) {
            return Poll::Ready(Err(reset_error(this.conn())));
        }
        this.push_out(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_reset(this.side) {
            return Poll::Ready(Err(reset_error(this.conn())));
        }
        match this.push_out(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        this.control.close(this.side);
        Poll::Ready(Ok(()))
    }
}
