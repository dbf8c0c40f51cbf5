//! # ringwire-tokio
//!
//! ringwire's sans-IO WebSocket connection ([`ringwire_conn::Connection`]) driven on
//! tokio, over any `AsyncRead + AsyncWrite`: a [`WebSocketStream`] is a
//! `Stream<Item = Result<Message, Error>>` and a `Sink<Message>`, with the native server's
//! semantics (every [`Config`] option, the close handshake and its timeout, automatic
//! pongs, keepalive pings, `max_buffered`, reading stopped while the output is backed up).
//!
//! - Server side: [`accept`] reads and answers the upgrade request on a stream (a
//!   `TcpStream` from a tokio listener); inside hyper or axum, [`http::Upgrade`] checks
//!   the request the framework parsed, gives the 101 to return, and drives the upgraded
//!   stream (examples `axum_echo` and `hyper_echo`).
//! - Client side: [`connect`] (`ws://`, and `wss://` with tokio-rustls), or
//!   [`client_async`] on a stream of your own.
//! - TLS on the server side is the app's: `accept` (or `Upgrade::into_stream`) takes the
//!   stream a `tokio_rustls::TlsAcceptor` returns like any other.
//!
//! Split halves (`futures_util::StreamExt::split`) keep the automatic pong working: every
//! poll of either half writes what the connection has queued, pongs included. Where the
//! stream yields messages, [`WebSocketStream::next_event`] yields every event (frames
//! with `assemble_fragments` off, pings, pongs, drain, the close).
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (socket, _) = listener.accept().await?;
//!     ringwire_tokio::apply_socket_options(&socket, &ringwire_tokio::Config::server())?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = ringwire_tokio::accept(socket, ringwire_tokio::Config::server()).await else { return };
//!         // Polled to its end: after an error or the peer's close the stream finishes
//!         // the closing handshake itself, then ends.
//!         while let Some(message) = ws.next().await {
//!             let Ok(message) = message else { continue };
//!             let _ = ws.send(message).await; // refused once a close has begun
//!         }
//!     });
//! }
//! # }
//! ```

#![forbid(unsafe_code)]

use bytes::Bytes;
use futures_util::{Sink, Stream};
use ringwire_conn::handshake::{Accept, AcceptError, ClientHandshakeError, HandshakeError, Request};
use ringwire_conn::{ConnInfo, SendError, State};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

mod handshake;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "tls")]
pub use handshake::connect_tls;
pub use handshake::{MaybeTlsStream, accept, accept_with, apply_socket_options, client_async, connect, connect_with};
pub use ringwire_conn::deflate::DeflateConfig;
pub use ringwire_conn::handshake::{Response, accept_key};
pub use ringwire_conn::url::{UrlError, WsUrl};
pub use ringwire_conn::{
    CloseCode, Config, ConnError, Connection, Event, Frame, Keepalive, Message, OpCode, Payload, Role, Utf8Bytes,
};
#[cfg(feature = "tls")]
pub use rustls;

/// How long [`accept`] and [`connect`] wait for the other side's handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from the socket at a time, into a buffer on the stack: the connection copies
/// what it keeps, so an idle connection holds no read buffer. 64 KiB: a 16 KiB message
/// and its header come in one read, and a burst of small ones too.
const READ_SIZE: usize = 64 * 1024;

/// Chunks written by one `writev` at most.
const MAX_IOV: usize = 16;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol, stopped answering pings, or a send went over
    /// `max_buffered`: the connection closes (the stream ends after this).
    #[error("{0}")]
    Connection(ConnError),
    /// A send was refused: the connection is not open, or over `max_buffered`.
    #[error("send: {0}")]
    Send(#[from] SendError),
    /// The upgrade request was invalid (it was answered with the error's status).
    #[error("upgrade refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// `accept_with`'s decision refused the upgrade (answered with this status and reason).
    #[error("upgrade refused with {0}: {1}")]
    Refused(u16, String),
    /// `accept_with`'s answer was invalid (a subprotocol the client did not ask for, a
    /// bad cookie or header): answered with 500.
    #[error("cannot accept: {0}")]
    Accept(#[from] AcceptError),
    /// The server's answer to our upgrade request was not a valid 101.
    #[error("handshake: {0}")]
    ClientHandshake(#[from] ClientHandshakeError),
    /// The other side took longer than [`HANDSHAKE_TIMEOUT`].
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// A URL [`connect`] cannot use.
    #[error("url: {0}")]
    Url(#[from] UrlError),
    /// The TLS handshake failed (the certificate, the name, no shared version), or no
    /// trusted roots could be loaded.
    #[error("tls: {0}")]
    Tls(io::Error),
    /// The config cannot be used (a permessage-deflate setting out of range).
    #[error("config: {0}")]
    InvalidConfig(String),
    /// A `wss://` URL, and the crate was built without its `tls` feature.
    #[error("wss:// needs ringwire-tokio's `tls` feature")]
    TlsUnavailable,
}

/// The [`ConnInfo`] of a server connection accepted from `request` with `accept`.
pub(crate) fn server_info(request: &Request, accept: &Accept, peer: Option<std::net::IpAddr>) -> ConnInfo {
    let mut info = request.conn_info(accept.protocol.as_deref(), peer, &[]);
    info.deflate = accept.deflate.as_ref().map(|(params, _)| *params);
    info
}

/// A WebSocket connection over `S` (see the [crate docs](crate)).
pub struct WebSocketStream<S> {
    io: S,
    conn: Connection,
    /// Chunks taken from the connection and not yet written (at most [`MAX_IOV`]), and
    /// how much of the first is written: written together, one `writev` for a frame's
    /// header and payload and for every frame queued since the last write.
    writing: VecDeque<Bytes>,
    written: usize,
    /// The timer for the connection's next deadline, and the deadline it is set to.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    /// The socket gave EOF or an error: nothing more is read.
    eof: bool,
    /// Our side of the socket was shut down (once the connection finished).
    shut: bool,
    /// A socket error to report before anything else.
    failed: Option<io::Error>,
    /// The tasks that last polled the stream side and the sink side. The socket keeps one
    /// write waker, and with split halves both sides write: whichever side writes wakes
    /// the other, so neither waits on a readiness the other consumed.
    stream_waker: Option<Waker>,
    sink_waker: Option<Waker>,
}

impl<S> std::fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketStream").field("conn", &self.conn).finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// A connection over `io`, whose handshake is done already (by a framework's upgrade:
    /// axum, hyper), as `role` with `config` and what the handshake settled in `info`.
    pub fn from_raw_socket(io: S, role: Role, config: impl Into<std::sync::Arc<Config>>, info: ConnInfo) -> Self {
        Self::from_partially_read(io, role, config, info, &[])
    }

    /// [`from_raw_socket`](Self::from_raw_socket) with bytes already read past the
    /// handshake (the start of the WebSocket stream).
    pub fn from_partially_read(
        io: S,
        role: Role,
        config: impl Into<std::sync::Arc<Config>>,
        info: ConnInfo,
        read: &[u8],
    ) -> Self {
        let now = now();
        let mut conn = Connection::new(role, config, info, now);
        if !read.is_empty() {
            conn.handle_read(read, now);
        }
        Self {
            io,
            conn,
            writing: VecDeque::new(),
            written: 0,
            timer: None,
            eof: false,
            shut: false,
            failed: None,
            stream_waker: None,
            sink_waker: None,
        }
    }

    /// The connection: its state, subprotocol, buffered amount, close code and reason.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The socket under the connection.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The next event of any kind, where the `Stream` gives only messages and errors: the
    /// spec's whole event surface (frames when `assemble_fragments` is off, pings, pongs,
    /// drain, the close with its code and reason, errors, send tokens).
    /// Writes what is queued and reads on the way, as the stream does; `None` once the
    /// connection is finished and the socket shut down. A socket error shows as the close
    /// (1006) that follows it.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.stream_waker = Some(cx.waker().clone());
        self.poll_progress(cx)
    }

    /// [`poll_event`](Self::poll_event) as a future.
    pub async fn next_event(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Queues a ping (at most 125 bytes), written at the next poll or flush.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        Ok(self.conn.ping(payload)?)
    }

    /// Queues our close frame with `code` and `reason`; the stream ends once the peer
    /// answered (or `close_timeout` passed) and everything was written. Poll the stream,
    /// or `SinkExt::close` (which sends 1000 if no close was started), to carry it out.
    pub fn start_close(&mut self, code: CloseCode, reason: Option<&str>) -> Result<(), Error> {
        Ok(self.conn.close(code, reason)?)
    }

    /// Writes what the connection has queued. `Ready(Ok)` once all of it is with the socket
    /// (or the connection gave it up). Whatever it writes wakes the other side's task.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wrote = false;
        let result = loop {
            if self.conn.is_finished() {
                // Everything handed out was written, or given up by the connection (the
                // close timeout with a peer that stopped reading): nothing more goes out.
                self.writing.clear();
                self.written = 0;
                break Poll::Ready(Ok(()));
            }
            while self.writing.len() < MAX_IOV {
                let Some(chunk) = self.conn.poll_transmit() else { break };
                self.writing.push_back(chunk);
            }
            if self.writing.is_empty() {
                break Pin::new(&mut self.io).poll_flush(cx);
            }
            let first = &self.writing[0][self.written..];
            let written = if self.writing.len() == 1 {
                // one chunk (a small frame is one): no slices to build
                Pin::new(&mut self.io).poll_write(cx, first)
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                for (slice, chunk) in slices.iter_mut().zip(&self.writing).skip(1) {
                    *slice = IoSlice::new(chunk);
                }
                slices[0] = IoSlice::new(first);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..self.writing.len()])
            };
            let n = match written {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            };
            wrote = true;
            let mut left = n;
            while left > 0 {
                let rest = self.writing[0].len() - self.written;
                if left < rest {
                    self.written += left;
                    break;
                }
                left -= rest;
                self.written = 0;
                self.writing.pop_front();
            }
            self.conn.handle_written(n, now());
        };
        if wrote {
            for waker in [&self.stream_waker, &self.sink_waker].into_iter().flatten() {
                if !waker.will_wake(cx.waker()) {
                    waker.wake_by_ref();
                }
            }
        }
        result
    }

    /// Fires the connection's deadline if it passed; otherwise arms a timer for it.
    /// `true`: it fired (there may be events).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.conn.poll_timeout() else {
            // The Sleep stays for the next deadline; unpolled, it wakes no one.
            return false;
        };
        // One Sleep per connection, moved when the deadline moves (every read moves the
        // keepalive's): no allocation per message.
        let (armed, sleep) = self.timer.get_or_insert_with(|| (at, Box::pin(tokio::time::sleep_until(at.into()))));
        if *armed != at {
            *armed = at;
            sleep.as_mut().reset(at.into());
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.conn.handle_timeout(now());
        true
    }

    /// The socket failed (or gave EOF): the connection closes (1006 unless a close frame
    /// came), and a failure of a connection not yet finished is reported once.
    fn socket_gone(&mut self, error: Option<io::Error>) {
        self.eof = true;
        // Nothing more can be written: what was taken for writing goes with the socket.
        self.writing.clear();
        self.written = 0;
        if self.failed.is_none() && !self.conn.is_finished() {
            self.failed = error;
        }
        self.conn.handle_eof(now());
    }

    /// Moves the connection on until it has an event for the caller (`Some`), or it is
    /// finished and the socket shut down (`None`). Every call writes what is queued.
    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.conn.poll_event() {
                // What the event's handling queued (a pong) goes out with the next poll.
                return Poll::Ready(Some(event));
            }
            if self.conn.is_finished() {
                self.writing.clear();
                self.written = 0;
                if !self.shut && !self.eof {
                    // Our FIN (or TLS close_notify) if it goes out now; errors, or a peer
                    // whose window is closed, change nothing: the connection is over.
                    let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                }
                self.shut = true;
                return Poll::Ready(None);
            }
            if !self.eof {
                let buffered = self.conn.buffered_amount();
                match self.poll_write_out(cx) {
                    Poll::Ready(Err(e)) => {
                        self.socket_gone(Some(e));
                        continue;
                    }
                    // A write can unblock parsing held back by backpressure, and queue
                    // events (drain, send tokens): look again before waiting.
                    _ if self.conn.buffered_amount() != buffered => continue,
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                }
            }
            if self.poll_deadline(cx) {
                continue;
            }
            if !self.eof && self.conn.wants_read() {
                let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); READ_SIZE];
                let mut buf = ReadBuf::uninit(&mut storage);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => self.socket_gone(None),
                    Poll::Ready(Ok(())) => self.conn.handle_read(buf.filled(), now()),
                    Poll::Ready(Err(e)) => self.socket_gone(Some(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            // Waiting on the write (backed up), the deadline, or both: each registered.
            return Poll::Pending;
        }
    }

    /// For the sink side: while its write waits, the connection's deadline still runs (a
    /// peer that stopped reading is dropped at the keepalive's grace or the close
    /// timeout, as by the stream). `Ready(Err)` once the connection is over.
    fn poll_sink_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.poll_deadline(cx) {
            if self.conn.is_finished() || self.conn.state() != State::Open {
                return Poll::Ready(Err(Error::Send(SendError::NotOpen(self.conn.state()))));
            }
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message, Error>;

    /// The next message; `Err` for a failure (the stream goes on to finish the close that
    /// follows, then ends), `None` once the connection is closed and the socket shut
    /// down. Pings are answered and pongs taken on the way.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.stream_waker = Some(cx.waker().clone());
        loop {
            if let Some(e) = this.failed.take() {
                return Poll::Ready(Some(Err(Error::Io(e))));
            }
            match ready!(this.poll_progress(cx)) {
                None => return Poll::Ready(None),
                Some(Event::Message(m)) => return Poll::Ready(Some(Ok(m))),
                // Socket errors are reported from `failed`, with their io::Error.
                Some(Event::Error(ConnError::Socket { .. })) => {}
                Some(Event::Error(e)) => {
                    // The close frame the failure queued goes out now, before a caller
                    // that stops at the error drops the stream (and its socket).
                    if !this.eof {
                        let _ = this.poll_write_out(cx);
                    }
                    return Poll::Ready(Some(Err(Error::Connection(e))));
                }
                Some(_) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// The sink side's writes: `Ready(Ok)` once everything queued is with the socket;
    /// while it waits, the connection's deadline runs too.
    fn poll_sink_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.sink_waker = Some(cx.waker().clone());
        if self.eof {
            return Poll::Ready(Err(Error::Send(SendError::NotOpen(self.conn.state()))));
        }
        match self.poll_write_out(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.socket_gone(None);
                Poll::Ready(Err(Error::Io(e)))
            }
            Poll::Pending => self.poll_sink_deadline(cx),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    /// Ready while the buffered amount is at or below the high-water mark; above it,
    /// writes until it is not (backpressure).
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        loop {
            if this.conn.state() != State::Open {
                return Poll::Ready(Err(Error::Send(SendError::NotOpen(this.conn.state()))));
            }
            if this.conn.buffered_amount() <= this.conn.config().high_water_mark {
                return Poll::Ready(Ok(()));
            }
            // Above the mark with everything written cannot last: look again.
            ready!(this.poll_sink_write(cx))?;
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        // BufferFull is what poll_ready waits on before the next send.
        let _status = self.get_mut().conn.send(item, None)?;
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_sink_write(cx)
    }

    /// Sends a close with 1000 (unless a close is under way) and writes everything queued,
    /// as tokio-tungstenite's does. The peer's answer and the end of the connection come
    /// through the stream: poll it to its end (`None`), or drop it.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.conn.state() == State::Open {
            this.conn.close(CloseCode::NORMAL, None)?;
        }
        match ready!(this.poll_sink_write(cx)) {
            // A connection already over has nothing left to close.
            Err(Error::Send(SendError::NotOpen(_))) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

/// The time the connection's clocks run on: tokio's (which tests may pause), as a std
/// `Instant`, so the timers and the connection agree.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
