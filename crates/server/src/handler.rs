//! The embedding API: one [`Handler`] per worker thread receives every event of the
//! connections that worker owns.

use crate::ws::Ws;
use bytes::Bytes;
use ringwire_conn::handshake::{Accept, PlainRequest, Request};
use ringwire_conn::{CloseCode, ConnError, Frame, Message, SendToken};
pub use ringwire_drive::SendOutcome;

/// What to do with an upgrade request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Complete the handshake with these choices: WebSocket-Node's
    /// `accept(protocol, origin, cookies)`, plus extra response headers.
    Accept(Accept),
    /// Refuse it with an HTTP status, a reason (sent as `X-WebSocket-Reject-Reason`
    /// and as the body) and extra headers.
    Reject {
        /// HTTP status code (e.g. 403, 404).
        status: u16,
        /// Human-readable reason.
        reason: String,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
}

impl Decision {
    /// Accept with the given subprotocol (it must be one the client offered).
    pub fn accept(protocol: Option<&str>) -> Self {
        Self::Accept(Accept { protocol: protocol.map(str::to_owned), ..Accept::default() })
    }

    /// What the default [`Handler::on_request`] decides: accept with the first
    /// subprotocol in the client's list that is among `supported_protocols`, or none. For
    /// a handler that looks at the request and then decides as the default would.
    pub fn by_default(request: &Request, supported_protocols: &[String]) -> Self {
        let chosen = request
            .protocols
            .iter()
            .find(|offered| supported_protocols.iter().any(|s| s.eq_ignore_ascii_case(offered)));
        Self::accept(chosen.map(String::as_str))
    }

    /// Reject with a status and reason.
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        Self::Reject { status, reason: reason.into(), headers: Vec::new() }
    }
}

/// The answer to a plain HTTP request on the WebSocket port ([`Handler::on_http`]): sent
/// with `Content-Length`, `Cache-Control: no-store` and `Connection: close`, then the
/// connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status (200, 404, 503, ...).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response of `status` with `body` as `content_type`.
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self { status, content_type: content_type.into(), body: body.into() }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }
}

/// Callbacks for one worker's connections. Each worker gets its own clone of the
/// handler, so no locking is needed; per-connection state can live in a map keyed by
/// [`Ws::id`].
///
/// Calls made on the [`Ws`] handle inside a callback only queue work; it is written at
/// the end of the loop turn, coalesced with everything else the turn produced.
#[allow(unused_variables)]
pub trait Handler: Send + 'static {
    /// An upgrade request arrived (after the origin policy passed). The default accepts
    /// with the first subprotocol in the client's list (which RFC 6455 4.1 orders by the
    /// client's preference) that is among `supported_protocols`
    /// ([`ServerConfig::subprotocols`](crate::ServerConfig::subprotocols)), or with none.
    /// Node's `websocket` leaves the choice to the `request` listener, and its
    /// `autoAcceptConnections` takes the client's first protocol; a server that wants
    /// its own order overrides this.
    fn on_request(&mut self, request: &Request, supported_protocols: &[String]) -> Decision {
        Decision::by_default(request, supported_protocols)
    }
    /// A complete HTTP/1.1 `GET` that is not a WebSocket upgrade arrived on the WebSocket
    /// port (a health check, a metrics scrape, a browser opening the URL). Return a
    /// response to answer it, or `None` (the default) to refuse it with 400 as an upgrade
    /// request without `Upgrade: websocket`. Either way the connection closes after the
    /// answer (no keep-alive), and the request counts against the same limits as a
    /// handshake (`max_connections`, `handshake_timeout`, `max_handshake_bytes`). A panic
    /// here is answered with 500.
    fn on_http(&mut self, request: &PlainRequest) -> Option<HttpResponse> {
        None
    }
    /// The handshake completed; the connection is open. For an accepted request this is
    /// the handler's next call after [`on_request`](Self::on_request), on the same thread
    /// with nothing in between, so what `on_request` noted of the request (its path, a
    /// cookie, who the user is) can be kept in the handler and taken up here, e.g. to
    /// [`subscribe`](Ws::subscribe) to a topic named by the path. (A request whose accept
    /// cannot be built, answered 500, gets no `on_open`: keep only the latest request's
    /// notes.)
    fn on_open(&mut self, ws: &mut Ws<'_>) {}
    /// A whole message arrived (when `assemble_fragments` is on, the default).
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {}
    /// A frame arrived (only when `assemble_fragments` is off).
    fn on_frame(&mut self, ws: &mut Ws<'_>, frame: Frame) {}
    /// A ping arrived. Return `false` to cancel the automatic pong (Node's `cancel()`).
    fn on_ping(&mut self, ws: &mut Ws<'_>, payload: &Bytes) -> bool {
        true
    }
    /// A pong arrived.
    fn on_pong(&mut self, ws: &mut Ws<'_>, payload: &Bytes) {}
    /// The buffered amount fell to the low-water mark or below after a send reported
    /// [`Sent::BufferFull`](crate::Sent::BufferFull) (Node's `drain`; with
    /// [`low_water_mark`](ringwire_conn::Config::low_water_mark) 0, once the output is empty,
    /// as in Node).
    fn on_drain(&mut self, ws: &mut Ws<'_>) {}
    /// Reading was paused ([`Connection::pause`](ringwire_conn::Connection::pause)).
    fn on_pause(&mut self, ws: &mut Ws<'_>) {}
    /// Reading was resumed ([`Connection::resume`](ringwire_conn::Connection::resume)).
    fn on_resume(&mut self, ws: &mut Ws<'_>) {}
    /// A send made with a token ended: [`SendOutcome::Written`] once every byte is with
    /// the kernel, [`SendOutcome::Failed`] if the connection closed first. The
    /// counterpart of the Node send callback (called without, or with, an error).
    fn on_send_complete(&mut self, ws: &mut Ws<'_>, token: SendToken, outcome: SendOutcome) {}
    /// The connection failed for a reason [`ConnError`] names (Node's `error` event): a
    /// protocol error by the peer, a send past `max_buffered`, a keepalive or close
    /// timeout, or a socket error (`ConnError::Socket`: `ECONNRESET`, `EPIPE`, ...). A
    /// close follows ([`on_close`](Self::on_close); 1006 after a socket error).
    fn on_error(&mut self, ws: &mut Ws<'_>, error: &ConnError) {}
    /// The connection closed: always the last call for a connection. `code` is 1005
    /// when the peer's close frame had no code and 1006 when no close frame came.
    fn on_close(&mut self, ws: &mut Ws<'_>, code: CloseCode, description: &str) {}
}
