//! # ringwire-tokio
//!
//! ringwire's sans-IO WebSocket connection ([`ringwire_conn::Connection`]) driven on
//! tokio, over any `AsyncRead + AsyncWrite`: a [`WebSocketStream`] is a
//! `Stream<Item = Result<Message, Error>>` and a `Sink<Message>`, with the native server's
//! semantics (every [`Config`] option, the close handshake and its timeout, automatic
//! pongs, keepalive pings, `max_buffered`, reading stopped while the output is backed up).
//!
//! - Server side: [`accept`] reads and answers the upgrade request on a stream (a
//!   `TcpStream` from a tokio listener), or [`WebSocketStream::from_raw_socket`] takes a
//!   stream a framework (axum, hyper) has already upgraded.
//! - Client side: [`connect`] (`ws://` over a `TcpStream`).
//!
//! Split halves (`futures_util::StreamExt::split`) keep the automatic pong working: every
//! poll of either half writes what the connection has queued, pongs included.
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (socket, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = ringwire_tokio::accept(socket, ringwire_tokio::Config::server()).await else { return };
//!         while let Some(Ok(message)) = ws.next().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```

#![forbid(unsafe_code)]

use bytes::Bytes;
use futures_util::{Sink, Stream};
use ringwire_conn::handshake::{self, Accept, ClientRequest, HandshakeError, HandshakeLimits, Request, Response};
use ringwire_conn::{CloseCode, ConnInfo, Event, SendError, State};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

pub use ringwire_conn::handshake::accept_key;
pub use ringwire_conn::{Config, ConnError, Connection, Message, Payload, Role, Utf8Bytes};

/// How long [`accept`] and [`connect`] wait for the other side's handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 16 * 1024;

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
    /// The upgrade request was refused (it was answered with the error's status).
    #[error("upgrade refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server's answer to our upgrade request was not a valid 101.
    #[error("handshake: {0}")]
    ClientHandshake(#[from] handshake::ClientHandshakeError),
    /// The other side took longer than [`HANDSHAKE_TIMEOUT`].
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// A URL [`connect`] cannot use.
    #[error("url {0:?}: {1}")]
    Url(String, &'static str),
}

/// A WebSocket connection over `S` (see the [crate docs](crate)).
pub struct WebSocketStream<S> {
    io: S,
    conn: Connection,
    read_buf: Box<[u8]>,
    /// The chunk being written, and how much of it is written.
    writing: Option<(Bytes, usize)>,
    /// The connection's next deadline, armed.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    /// The socket gave EOF or an error: nothing more is read.
    eof: bool,
    /// Our side of the socket was shut down (once the connection finished).
    shut: bool,
    /// A socket error to report before anything else.
    failed: Option<io::Error>,
    /// Sink::poll_close started our close.
    closing: bool,
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
        let now = Instant::now();
        let mut conn = Connection::new(role, config, info, now);
        if !read.is_empty() {
            conn.handle_read(read, now);
        }
        Self {
            io,
            conn,
            read_buf: vec![0; READ_SIZE].into_boxed_slice(),
            writing: None,
            timer: None,
            eof: false,
            shut: false,
            failed: None,
            closing: false,
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

    /// Writes what the connection has queued. `Ready(Ok)` once all of it is with the socket.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.writing.is_none() {
                match self.conn.poll_transmit() {
                    Some(chunk) => self.writing = Some((chunk, 0)),
                    None => break,
                }
            }
            let Some((chunk, done)) = self.writing.as_mut() else { break };
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &chunk[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done == chunk.len() {
                self.writing = None;
            }
            self.conn.handle_written(n, Instant::now());
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Fires the connection's deadline if it passed; otherwise arms a timer for it.
    /// `true`: it fired (there may be events).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.conn.poll_timeout() else {
            self.timer = None;
            return false;
        };
        if self.timer.as_ref().is_none_or(|(armed, _)| *armed != at) {
            self.timer = Some((at, Box::pin(tokio::time::sleep_until(at.into()))));
        }
        let (_, sleep) = self.timer.as_mut().expect("armed above");
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.timer = None;
        self.conn.handle_timeout(Instant::now());
        true
    }

    /// The socket failed (or gave EOF): the connection closes (1006 unless a close frame
    /// came), and the error is reported once.
    fn socket_gone(&mut self, error: Option<io::Error>) {
        self.eof = true;
        self.conn.handle_eof(Instant::now());
        if self.failed.is_none() && !self.conn.is_finished() {
            self.failed = error;
        }
    }

    /// Moves the connection on until it has an event for the caller (`Some`), or it is
    /// finished and the socket shut down (`None`). Every call writes what is queued.
    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.conn.poll_event() {
                // What the event's handling queued (a pong) goes out with the next poll.
                return Poll::Ready(Some(event));
            }
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.writing = None;
                    self.socket_gone(Some(e));
                    continue;
                }
                Poll::Pending => {}
            }
            if self.conn.is_finished() && (self.writing.is_none() || self.eof) {
                if !self.shut {
                    // Errors here change nothing: the connection is over either way.
                    let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    self.shut = true;
                }
                return Poll::Ready(None);
            }
            if self.poll_deadline(cx) {
                continue;
            }
            if !self.eof && self.conn.wants_read() {
                let mut buf = ReadBuf::new(&mut self.read_buf);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => self.socket_gone(None),
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        self.conn.handle_read(&self.read_buf[..n], Instant::now());
                    }
                    Poll::Ready(Err(e)) => self.socket_gone(Some(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            // Waiting on the write (backed up), the deadline, or both: each registered.
            return Poll::Pending;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message, Error>;

    /// The next message; `Err` for a failure (the stream ends after the close that
    /// follows), `None` once the connection is closed and the socket shut down. Pings are
    /// answered and pongs taken on the way.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
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
                    let _ = this.poll_write_out(cx);
                    return Poll::Ready(Some(Err(Error::Connection(e))));
                }
                Some(_) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    /// Ready while the buffered amount is at or below the high-water mark; above it,
    /// writes until it is not (backpressure).
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.conn.state() != State::Open {
            return Poll::Ready(Err(Error::Send(SendError::NotOpen(this.conn.state()))));
        }
        if this.conn.buffered_amount() <= this.conn.config().high_water_mark {
            return Poll::Ready(Ok(()));
        }
        match this.poll_write_out(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                this.socket_gone(None);
                Poll::Ready(Err(Error::Io(e)))
            }
            Poll::Pending if this.conn.buffered_amount() <= this.conn.config().high_water_mark => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        // BufferFull is what poll_ready waits on before the next send.
        let _status = self.get_mut().conn.send(item, None)?;
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        match ready!(this.poll_write_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                this.socket_gone(None);
                Poll::Ready(Err(Error::Io(e)))
            }
        }
    }

    /// Sends a close with 1000 (unless a close is under way), then runs the closing
    /// handshake to its end: messages that arrive meanwhile are dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            if this.conn.state() == State::Open {
                this.conn.close(CloseCode::NORMAL, None)?;
            }
        }
        while ready!(this.poll_progress(cx)).is_some() {}
        Poll::Ready(Ok(()))
    }
}

/// Reads an HTTP head (up to the blank line) into `buf`, at most `limit` bytes; the bytes
/// read past it stay in `buf` after the head.
async fn read_head<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 2048];
    loop {
        if memchr_head(buf) {
            return Ok(true);
        }
        if buf.len() > limit {
            return Ok(false);
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether `buf` holds a whole head.
fn memchr_head(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Accepts a WebSocket upgrade on `io` (a `TcpStream` from a tokio listener, or any
/// stream): reads the request (at most 8 KiB of head, within [`HANDSHAKE_TIMEOUT`]),
/// answers 101 (with the permessage-deflate the config allows and the client offers) or
/// the error's status, and returns the open connection.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S, config: Config) -> Result<WebSocketStream<S>, Error> {
    accept_with(io, config, |_| Ok(Accept::default())).await
}

/// [`accept`], with `decide` looking at the request first: `Ok(accept)` answers 101 with
/// its choices (subprotocol, headers, cookies), `Err((status, reason))` refuses.
pub async fn accept_with<S, F>(mut io: S, config: Config, decide: F) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<Accept, (u16, String)>,
{
    let limits = HandshakeLimits::default();
    let mut buf = Vec::new();
    let complete = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head(&mut io, &mut buf, limits.max_head_bytes))
        .await
        .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    let parsed = if complete {
        handshake::parse_request(&buf, &limits)
    } else {
        Err(HandshakeError::HeadTooLarge(limits.max_head_bytes))
    };
    let (request, used) = match parsed {
        Ok(Some(r)) => r,
        Ok(None) => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
        Err(e) => {
            let _ = io.write_all(&e.response()).await;
            let _ = io.shutdown().await;
            return Err(e.into());
        }
    };
    let mut accept = match decide(&request) {
        Ok(a) => a,
        Err((status, reason)) => {
            let _ = io.write_all(&handshake::reject_response(status, Some(&reason), &[])).await;
            let _ = io.shutdown().await;
            return Err(Error::Handshake(HandshakeError::Malformed(format!("refused with {status}: {reason}"))));
        }
    };
    if let Some(deflate) = config.deflate.as_ref().filter(|_| config.assemble_fragments) {
        accept.deflate = request.negotiate_deflate(deflate);
    }
    let response = match request.accept(&accept) {
        Ok(r) => r,
        Err(e) => {
            let _ = io.write_all(&handshake::reject_response(500, Some(&e.to_string()), &[])).await;
            return Err(Error::Handshake(HandshakeError::Malformed(e.to_string())));
        }
    };
    io.write_all(&response).await?;
    let mut info = request.conn_info(accept.protocol.as_deref(), None, &[]);
    info.deflate = accept.deflate.map(|(params, _)| params);
    Ok(WebSocketStream::from_partially_read(io, Role::Server, config, info, &buf[used..]))
}

/// Connects to a `ws://host[:port][/path]` URL over TCP with the client defaults.
pub async fn connect(url: &str) -> Result<(WebSocketStream<tokio::net::TcpStream>, Response), Error> {
    connect_with(url, Config::client()).await
}

/// [`connect`] with `config` (its deflate settings are offered).
pub async fn connect_with(
    url: &str,
    config: Config,
) -> Result<(WebSocketStream<tokio::net::TcpStream>, Response), Error> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| Error::Url(url.into(), "only ws:// is supported here"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse().map_err(|_| Error::Url(url.into(), "bad port"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(Error::Url(url.into(), "no host"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let io = tokio::net::TcpStream::connect((host, port)).await?;
    io.set_nodelay(config.disable_nagle_algorithm)?;
    let peer = io.peer_addr().ok().map(|a| a.ip().to_string());
    let mut request = ClientRequest::new(host, port, path, &[], None, &[], 13, ringwire_conn::random_key())?;
    if let Some(deflate) = config.deflate.clone() {
        request = request.with_deflate(deflate);
    }
    client_handshake(io, request, config, peer).await
}

/// Sends `request` on `io` and reads the server's answer.
async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    request: ClientRequest,
    config: Config,
    peer: Option<String>,
) -> Result<(WebSocketStream<S>, Response), Error> {
    io.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let read = async {
        loop {
            if let Some(done) = request.verify_response(&buf)? {
                return Ok::<_, Error>(done);
            }
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (response, used) = tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
        .await
        .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    let info = request.conn_info(&response, peer);
    let ws = WebSocketStream::from_partially_read(io, Role::Client, config, info, &buf[used..]);
    Ok((ws, response))
}
