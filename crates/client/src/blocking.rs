//! The blocking one-connection API: [`connect`] returns a [`WebSocket`] whose connection runs
//! on a [`ClientLoop`] in a background thread; calls talk to it through channels.

use crate::{ClientHandler, ClientId, ClientLoop, ClientWs, ConnectError, ConnectOptions, Ctl, LoopHandle, QueueError};
use bytes::Bytes;
use ringwire_conn::handshake::Response;
use ringwire_conn::{CloseCode, ConnError, Message, Payload, SendError};
use ringwire_io::IoChoice;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// Why a [`WebSocket`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The connection is closed (or closing): the final close code and reason. 1006 when it
    /// ended without a close frame.
    #[error("connection closed: {code} {reason:?}")]
    Closed {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// The connection failed: the server broke the protocol, a timeout fired, or the
    /// socket failed (`ConnError::Socket`); a close follows.
    #[error(transparent)]
    Protocol(#[from] ConnError),
    /// The call itself is invalid (a ping over 125 bytes, a close code that may not be sent).
    #[error(transparent)]
    Invalid(#[from] SendError),
    /// The background loop has not taken the sends queued so far: it holds
    /// [`ClientLoop::DEFAULT_INBOX_CAPACITY`] of them. Nothing was queued; wait (e.g.
    /// for a reply) and try again.
    #[error("the client loop's inbox is full; the message was not queued")]
    Full,
}

enum Incoming {
    Started(LoopHandle, ClientId),
    Open(Box<Response>),
    Failed(ConnectError),
    Message(Message),
    Pong(Bytes),
    Error(ConnError),
    Closed(CloseCode, String),
}

struct Forward {
    tx: Sender<Incoming>,
}

// A send to a dropped `WebSocket` fails; the connection then just runs to its end.
impl ClientHandler for Forward {
    fn on_open(&mut self, ws: &mut ClientWs<'_>) {
        let _ = self.tx.send(Incoming::Open(Box::new(ws.response().clone())));
    }
    fn on_connect_failed(&mut self, _ctl: &mut Ctl<'_>, _id: ClientId, error: ConnectError) {
        let _ = self.tx.send(Incoming::Failed(error));
    }
    fn on_message(&mut self, _ws: &mut ClientWs<'_>, message: Message) {
        let _ = self.tx.send(Incoming::Message(message));
    }
    fn on_pong(&mut self, _ws: &mut ClientWs<'_>, payload: &Bytes) {
        let _ = self.tx.send(Incoming::Pong(payload.clone()));
    }
    fn on_error(&mut self, _ws: &mut ClientWs<'_>, error: &ConnError) {
        let _ = self.tx.send(Incoming::Error(error.clone()));
    }
    fn on_close(&mut self, _ws: &mut ClientWs<'_>, code: CloseCode, description: &str) {
        let _ = self.tx.send(Incoming::Closed(code, description.to_owned()));
    }
}

/// Connects to `url` with the default [`ConnectOptions`] on the auto-detected backend and
/// waits for the handshake.
///
/// ```
/// # // A tiny echo server so the example runs on its own.
/// # let server = ringwire_server::Server::bind(ringwire_server::ServerConfig::new("127.0.0.1:0".parse()?).with_threads(1))?;
/// # let addr = server.local_addr();
/// # #[derive(Clone)] struct Echo;
/// # impl ringwire_server::Handler for Echo {
/// #     fn on_message(&mut self, ws: &mut ringwire_server::Ws<'_>, m: ringwire_conn::Message) { ws.send(m); }
/// # }
/// # let running = server.spawn(Echo);
/// use ringwire_client::connect;
/// use ringwire_conn::{CloseCode, Message};
///
/// let mut ws = connect(&format!("ws://{addr}/"))?;
/// ws.send("hello")?;
/// assert_eq!(ws.recv()?, Message::Text("hello".into()));
/// let (code, _reason) = ws.close(CloseCode::NORMAL, "done")?;
/// assert_eq!(code, CloseCode::NORMAL);
/// # running.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn connect(url: &str) -> Result<WebSocket, ConnectError> {
    connect_with(url, ConnectOptions::default(), IoChoice::Auto)
}

/// Connects to `url` with `opts` on the backend `io` picks, and waits for the handshake
/// (bounded by the options' connect and handshake timeouts).
pub fn connect_with(url: &str, opts: ConnectOptions, io: IoChoice) -> Result<WebSocket, ConnectError> {
    let (tx, rx) = mpsc::channel();
    let url = url.to_owned();
    let thread = std::thread::Builder::new()
        .name("ringwire-client".into())
        .spawn(move || {
            let start = || -> Result<ClientLoop, ConnectError> {
                let mut client = ClientLoop::new(io).map_err(|e| ConnectError::Loop(e.to_string()))?;
                let id = client.connect(&url, opts)?;
                let _ = tx.send(Incoming::Started(client.handle(), id));
                Ok(client)
            };
            match start() {
                Ok(mut client) => {
                    let mut forward = Forward { tx: tx.clone() };
                    if let Err(e) = client.run(&mut forward) {
                        let _ = tx.send(Incoming::Failed(ConnectError::Loop(e.to_string())));
                    }
                }
                Err(e) => {
                    let _ = tx.send(Incoming::Failed(e));
                }
            }
        })
        .map_err(|e| ConnectError::Loop(format!("cannot start the client thread: {e}")))?;
    let gone = || ConnectError::Loop("the client thread ended".into());
    let (handle, id) = match rx.recv().map_err(|_| gone())? {
        Incoming::Started(h, id) => (h, id),
        Incoming::Failed(e) => return Err(e),
        _ => return Err(gone()),
    };
    let response = match rx.recv().map_err(|_| gone())? {
        Incoming::Open(r) => r,
        Incoming::Failed(e) => return Err(e),
        _ => return Err(gone()),
    };
    drop(thread); // detached: it ends with the connection
    Ok(WebSocket { handle, id, rx, response, closed: None, closing: false })
}

/// One blocking WebSocket connection. Sends only queue (they never block); `recv` blocks for
/// the next message. Dropping it starts a close with 1000 and lets the background thread
/// finish the close handshake.
pub struct WebSocket {
    handle: LoopHandle,
    id: ClientId,
    rx: Receiver<Incoming>,
    response: Box<Response>,
    closed: Option<(CloseCode, String)>,
    closing: bool,
}

impl WebSocket {
    /// The subprotocol the server chose.
    pub fn protocol(&self) -> Option<&str> {
        self.response.protocol.as_deref()
    }

    /// The server's 101 response.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The close code and reason once the connection is closed.
    pub fn close_status(&self) -> Option<(CloseCode, &str)> {
        self.closed.as_ref().map(|(c, r)| (*c, r.as_str()))
    }

    fn not_open(&self) -> WsError {
        match &self.closed {
            Some((code, reason)) => WsError::Closed { code: *code, reason: reason.clone() },
            None => WsError::Invalid(SendError::NotOpen(ringwire_conn::State::Ending)),
        }
    }

    /// What a refused queue means here: `Full`, or the connection is over (its loop is gone).
    fn queued(&self, result: Result<(), QueueError>) -> Result<(), WsError> {
        match result {
            Ok(()) => Ok(()),
            Err(QueueError::Full) => Err(WsError::Full),
            Err(_) => Err(self.closed.as_ref().map_or_else(
                || WsError::Closed { code: CloseCode::ABNORMAL, reason: "the client thread ended".into() },
                |_| self.not_open(),
            )),
        }
    }

    /// Queues a message: text for strings, binary for bytes.
    pub fn send(&mut self, data: impl Into<Payload>) -> Result<(), WsError> {
        if self.closed.is_some() || self.closing {
            return Err(self.not_open());
        }
        self.queued(self.handle.send(self.id, data))
    }

    /// Sends a ping (at most 125 bytes); the pong is skipped by [`recv`](Self::recv) and
    /// returned by [`recv_event`](Self::recv_event).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        if payload.len() > 125 {
            return Err(SendError::ControlPayloadTooLong(payload.len()).into());
        }
        if self.closed.is_some() || self.closing {
            return Err(self.not_open());
        }
        self.queued(self.handle.ping(self.id, Bytes::copy_from_slice(payload)))
    }

    /// Blocks for the next message. After the close, `Err(WsError::Closed)` with the code.
    pub fn recv(&mut self) -> Result<Message, WsError> {
        loop {
            if let Received::Message(m) = self.recv_event(None)? {
                return Ok(m);
            }
        }
    }

    /// Like [`recv`](Self::recv) but gives up after `timeout` with `Ok(None)`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, WsError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.recv_event(Some(left))? {
                Received::Message(m) => return Ok(Some(m)),
                Received::Pong(_) => {}
                Received::TimedOut => return Ok(None),
            }
        }
    }

    /// The next message or pong, waiting at most `timeout` (`None`: forever).
    pub fn recv_event(&mut self, timeout: Option<Duration>) -> Result<Received, WsError> {
        if self.closed.is_some() {
            return Err(self.not_open());
        }
        let next = match timeout {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(t) => self.rx.recv_timeout(t),
        };
        match next {
            Ok(Incoming::Message(m)) => Ok(Received::Message(m)),
            Ok(Incoming::Pong(p)) => Ok(Received::Pong(p)),
            Ok(Incoming::Error(e)) => Err(WsError::Protocol(e)),
            Ok(Incoming::Closed(code, reason)) => {
                self.closed = Some((code, reason));
                Err(self.not_open())
            }
            Ok(Incoming::Started(..) | Incoming::Open(_) | Incoming::Failed(_)) => self.recv_event(timeout),
            Err(RecvTimeoutError::Timeout) => Ok(Received::TimedOut),
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = Some((CloseCode::ABNORMAL, "the client thread ended".into()));
                Err(self.not_open())
            }
        }
    }

    /// Starts the close handshake and waits for it to finish (messages arriving meanwhile
    /// are discarded). Returns the final code and reason: the server's echo on a clean
    /// close.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(CloseCode, String), WsError> {
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code.as_u16()).into());
        }
        if reason.len() > 123 {
            return Err(SendError::CloseReasonTooLong(reason.len()).into());
        }
        if self.closed.is_none() && !self.closing {
            self.closing = true;
            // Queued even past the inbox's capacity: a lost close would leave the
            // connection open for good. An error means the loop is gone: nothing to close.
            let _ = self.handle.close_always(self.id, code, reason);
        }
        loop {
            match self.recv_event(None) {
                Ok(_) | Err(WsError::Protocol(_) | WsError::Invalid(_) | WsError::Full) => {}
                Err(WsError::Closed { code, reason }) => return Ok((code, reason)),
            }
        }
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        if self.closed.is_none() && !self.closing {
            let _ = self.handle.close_always(self.id, CloseCode::NORMAL, "");
        }
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("id", &self.id).field("closed", &self.closed).finish()
    }
}

/// What [`WebSocket::recv_event`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A message.
    Message(Message),
    /// A pong (the answer to [`WebSocket::ping`]).
    Pong(Bytes),
    /// Nothing within the timeout.
    TimedOut,
}
