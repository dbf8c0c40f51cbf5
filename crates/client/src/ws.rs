//! Handles: [`ClientWs`] (one open connection inside a callback), [`Ctl`] (the loop inside a
//! callback) and [`LoopHandle`] (the loop from any thread).

use crate::handshake::Prepared;
use crate::{ConnectError, ConnectOptions, QueueError, WsUrl};
use bytes::Bytes;
use ringwire_conn::handshake::Response;
use ringwire_conn::{CloseCode, Payload};
use ringwire_drive::{Command, WebSocketConnection};
use ringwire_io::Waker;
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Identifies one connection of a [`ClientLoop`](crate::ClientLoop) from the moment it is
/// requested: failures before the handshake are reported with it too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ClientId(pub(crate) u64);

impl ClientId {
    /// The number (unique within its loop, increasing).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A connection request, resolved and with its upgrade request built.
pub(crate) struct Target {
    pub(crate) url: WsUrl,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) opts: ConnectOptions,
    pub(crate) request: Prepared,
    /// `wss://`: the TLS config and the name to verify.
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
}

/// Work queued for the loop by callbacks ([`Ctl`]) or other threads ([`LoopHandle`]).
pub(crate) enum Cmd {
    Connect(ClientId, Box<Target>),
    /// For one open connection.
    Conn(ClientId, Command),
    Stop,
}

/// Commands from other threads, not yet taken by the loop. A stop is a flag, not a
/// queued command, so it is never refused for lack of room.
#[derive(Default)]
pub(crate) struct Inbox {
    cmds: Vec<Cmd>,
    stop: bool,
    /// The loop was dropped: pushes fail with `Closed`.
    closed: bool,
}

/// What the loop shares with other threads.
pub(crate) struct Shared {
    pub(crate) next_id: AtomicU64,
    inbox: Mutex<Inbox>,
    /// Most commands `inbox` holds.
    pub(crate) capacity: AtomicUsize,
    pub(crate) waker: Waker,
}

impl Shared {
    pub(crate) fn new(waker: Waker, capacity: usize) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            inbox: Mutex::new(Inbox::default()),
            capacity: AtomicUsize::new(capacity),
            waker,
        }
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `cmd` for the loop unless the inbox is full (or `always`) or the loop is gone.
    fn push(&self, cmd: Cmd, always: bool) -> Result<(), QueueError> {
        {
            let mut q = self.inbox();
            if q.closed {
                return Err(QueueError::Closed);
            }
            if !always && q.cmds.len() >= self.capacity.load(Ordering::Relaxed).max(1) {
                return Err(QueueError::Full);
            }
            q.cmds.push(cmd);
        }
        let _ = self.waker.wake();
        Ok(())
    }

    fn push_stop(&self) {
        self.inbox().stop = true;
        let _ = self.waker.wake();
    }

    /// Moves the queued commands to the end of `out`; true if a stop was asked for (it
    /// comes after them), which is then cleared.
    pub(crate) fn take(&self, out: &mut Vec<Cmd>) -> bool {
        let mut q = self.inbox();
        out.append(&mut q.cmds);
        std::mem::take(&mut q.stop)
    }

    /// Whether anything is waiting for the loop.
    pub(crate) fn pending(&self) -> bool {
        let q = self.inbox();
        !q.cmds.is_empty() || q.stop
    }

    /// The loop is gone: refuse further commands and free what is queued.
    pub(crate) fn close(&self) {
        let mut q = self.inbox();
        q.closed = true;
        q.cmds = Vec::new();
    }

    /// Parses, resolves and builds the request; the id is allocated only on success.
    pub(crate) fn prepare(&self, url: &str, opts: ConnectOptions) -> Result<(ClientId, Box<Target>), ConnectError> {
        let url = WsUrl::parse(url)?;
        let request = crate::handshake::prepare(&url, &opts)?;
        let tls = match url.secure {
            true => Some((opts.tls.client_config()?, crate::tls::server_name(&url)?)),
            false => None,
        };
        let addrs = url.resolve().map_err(|source| ConnectError::Dns { host: url.host_str(), source })?;
        let id = ClientId(self.next_id.fetch_add(1, Ordering::Relaxed));
        Ok((id, Box::new(Target { url, addrs, opts, request, tls })))
    }
}

/// The loop, seen from inside a callback: open more connections, reach other ones, stop.
pub struct Ctl<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) cmds: &'a mut Vec<Cmd>,
}

impl Ctl<'_> {
    /// Starts connecting to `url` (parsed and resolved now, on the loop's thread: a host
    /// name blocks it for the lookup). [`ClientHandler::on_open`](crate::ClientHandler::on_open)
    /// or [`on_connect_failed`](crate::ClientHandler::on_connect_failed) follows with the id.
    /// A bad URL, bad options (TLS settings included) or a failed lookup are returned here
    /// instead.
    pub fn connect(&mut self, url: &str, opts: ConnectOptions) -> Result<ClientId, ConnectError> {
        let (id, target) = self.shared.prepare(url, opts)?;
        self.cmds.push(Cmd::Connect(id, target));
        Ok(id)
    }

    /// Queues a message on another open connection of this loop (ignored if it is not open).
    pub fn send(&mut self, id: ClientId, data: impl Into<Payload>) {
        self.cmds.push(Cmd::Conn(id, Command::Send(data.into())));
    }

    /// Starts the close handshake on another connection of this loop (`None` for the
    /// reason: the code's description).
    pub fn close<'r>(&mut self, id: ClientId, code: CloseCode, reason: impl Into<Option<&'r str>>) {
        self.cmds.push(Cmd::Conn(id, Command::close(code, reason)));
    }

    /// Stops or resumes reading from another connection of this loop (Node `pause`/`resume`).
    pub fn set_paused(&mut self, id: ClientId, paused: bool) {
        self.cmds.push(Cmd::Conn(id, Command::Pause(paused)));
    }

    /// Makes [`ClientLoop::run`](crate::ClientLoop::run) return at the end of this turn.
    /// Open connections stay open (and resume if `run` is called again).
    pub fn stop(&mut self) {
        self.cmds.push(Cmd::Stop);
    }

    /// A handle for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle { shared: Arc::clone(self.shared) }
    }
}

/// Reaches a [`ClientLoop`](crate::ClientLoop) from any thread (`Send + Sync + Clone`):
/// commands are queued and the loop is woken. Each method but [`stop`](Self::stop) says
/// whether the command was queued: [`QueueError::Full`] when the loop's inbox holds its
/// capacity of commands not yet taken, [`QueueError::Closed`] once the loop was dropped.
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LoopHandle {
    /// Like [`Ctl::connect`]; the lookup runs on the calling thread.
    /// [`ConnectError::Queue`] when the loop's inbox is full or the loop is gone.
    pub fn connect(&self, url: &str, opts: ConnectOptions) -> Result<ClientId, ConnectError> {
        let (id, target) = self.shared.prepare(url, opts)?;
        self.shared.push(Cmd::Connect(id, target), false).map_err(ConnectError::Queue)?;
        Ok(id)
    }

    /// Queues a message on an open connection (ignored if it is not open).
    pub fn send(&self, id: ClientId, data: impl Into<Payload>) -> Result<(), QueueError> {
        self.shared.push(Cmd::Conn(id, Command::Send(data.into())), false)
    }

    /// Sends a ping on an open connection (ignored if it is not open or `payload` is over
    /// 125 bytes).
    pub fn ping(&self, id: ClientId, payload: impl Into<Bytes>) -> Result<(), QueueError> {
        self.shared.push(Cmd::Conn(id, Command::Ping(payload.into())), false)
    }

    /// Starts the close handshake on a connection (`None` for the reason: the code's
    /// description).
    pub fn close<'r>(
        &self,
        id: ClientId,
        code: CloseCode,
        reason: impl Into<Option<&'r str>>,
    ) -> Result<(), QueueError> {
        self.shared.push(Cmd::Conn(id, Command::close(code, reason)), false)
    }

    /// Like [`close`](Self::close) but queued even when the inbox is full: for the one
    /// close a blocking [`WebSocket`](crate::WebSocket) sends, which must not be lost.
    pub(crate) fn close_always(&self, id: ClientId, code: CloseCode, reason: &str) -> Result<(), QueueError> {
        self.shared.push(Cmd::Conn(id, Command::close(code, reason)), true)
    }

    /// Stops reading from a connection (Node `pause`).
    pub fn pause(&self, id: ClientId) -> Result<(), QueueError> {
        self.shared.push(Cmd::Conn(id, Command::Pause(true)), false)
    }

    /// Resumes reading from a connection (Node `resume`).
    pub fn resume(&self, id: ClientId) -> Result<(), QueueError> {
        self.shared.push(Cmd::Conn(id, Command::Pause(false)), false)
    }

    /// Makes [`ClientLoop::run`](crate::ClientLoop::run) return soon, after the commands
    /// queued before it. Never refused, however full the inbox is.
    pub fn stop(&self) {
        self.shared.push_stop();
    }
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoopHandle")
    }
}

/// One open connection inside a [`ClientHandler`](crate::ClientHandler) call. It
/// dereferences to [`WebSocketConnection`], the spec's getters and commands (the same as
/// the server's `Ws`); this type adds the handshake response and the loop
/// ([`ClientWs::ctl`]).
/// Everything here only queues; output leaves at the end of the loop turn.
pub struct ClientWs<'a> {
    pub(crate) conn: WebSocketConnection<'a>,
    pub(crate) id: ClientId,
    pub(crate) response: &'a Response,
    pub(crate) ctl: Ctl<'a>,
}

impl<'a> ClientWs<'a> {
    /// This connection's id (the one [`ClientLoop::connect`](crate::ClientLoop::connect) returned).
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The server's 101 response (status, headers).
    pub fn response(&self) -> &Response {
        self.response
    }

    /// The loop: open more connections, reach others, stop.
    pub fn ctl(&mut self) -> &mut Ctl<'a> {
        &mut self.ctl
    }
}

impl<'a> Deref for ClientWs<'a> {
    type Target = WebSocketConnection<'a>;

    fn deref(&self) -> &WebSocketConnection<'a> {
        &self.conn
    }
}

impl DerefMut for ClientWs<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}
