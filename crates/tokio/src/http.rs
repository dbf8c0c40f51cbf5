//! Upgrades that hyper or axum parsed: check the request by the same rules as [`accept`],
//! answer 101 through the framework, then drive the upgraded connection.
//!
//! ```no_run
//! use axum::{Router, extract::Request, http::StatusCode, response::{IntoResponse, Response}, routing::get};
//! use futures_util::{SinkExt, StreamExt};
//! use ringwire_tokio::{Config, http::{Upgrade, reject}};
//!
//! async fn ws(mut req: Request) -> Response {
//!     let upgrade = match Upgrade::new(&req, Config::server()) {
//!         Ok(upgrade) => upgrade,
//!         Err(e) => return reject(&e),
//!     };
//!     let response = match upgrade.response() {
//!         Ok(response) => response,
//!         Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
//!     };
//!     let on_upgrade = hyper::upgrade::on(&mut req);
//!     tokio::spawn(async move {
//!         let Ok(upgraded) = on_upgrade.await else { return };
//!         let mut ws = upgrade.into_stream(hyper_util::rt::TokioIo::new(upgraded));
//!         // Polled to its end: after an error or the peer's close the stream finishes
//!         // the closing handshake itself, then ends.
//!         while let Some(message) = ws.next().await {
//!             let Ok(message) = message else { continue };
//!             let _ = ws.send(message).await; // refused once a close has begun
//!         }
//!     });
//!     response
//! }
//!
//! let app: Router = Router::new().route("/ws", get(ws));
//! ```
//!
//! [`accept`]: crate::accept

use crate::WebSocketStream;
use crate::handshake::negotiate;
use ringwire_conn::handshake::{Accept, AcceptError, HandshakeError, Request};
use ringwire_conn::{Config, Role};
use std::net::IpAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// A checked upgrade request, the answer chosen for it, and the connection's config.
#[derive(Debug, Clone)]
pub struct Upgrade {
    request: Request,
    accept: Accept,
    config: Config,
    peer: Option<IpAddr>,
}

impl Upgrade {
    /// Checks `req` as an upgrade (GET, HTTP/1.1, `Upgrade: websocket`, `Connection:
    /// upgrade`, a 16-byte key, version 13 or 8, one `Host`) and agrees permessage-deflate
    /// when `config` has it and the client offers it. The error says which status to
    /// answer with: [`reject`] builds that response.
    pub fn new<B>(req: &http::Request<B>, config: Config) -> Result<Self, HandshakeError> {
        let minor_version = match req.version() {
            http::Version::HTTP_11 => 1,
            // HTTP/1.0, and HTTP/2 or 3 (whose extended CONNECT, RFC 8441, is not supported)
            _ => 0,
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let headers = req.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes()));
        let request = Request::from_parts(req.method().as_str(), minor_version, target, headers)?;
        let accept = Accept { deflate: negotiate(&request, &config), ..Accept::default() };
        Ok(Self { request, accept, config, peer: None })
    }

    /// The request: path, query, origin, subprotocols, cookies, headers.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The answer to give: set the subprotocol (one the client asked for), cookies,
    /// extra headers. permessage-deflate is already agreed (or not).
    pub fn accept_mut(&mut self) -> &mut Accept {
        &mut self.accept
    }

    /// The TCP peer's address, for the connection's `remote_address`.
    pub fn with_peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The 101 response to return from the handler (any body type with a `Default`:
    /// axum's `Body`, `http_body_util::Empty`); an error if the answer chosen is invalid
    /// (a subprotocol the client did not ask for, a bad cookie or header): answer 500.
    pub fn response<B: Default>(&self) -> Result<http::Response<B>, AcceptError> {
        let mut response = http::Response::new(B::default());
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        for (name, value) in self.request.accept_headers(&self.accept)? {
            // accept_headers checked both (a token, no line break)
            let name =
                http::HeaderName::try_from(name.as_str()).map_err(|_| AcceptError::InvalidHeader(name.clone()))?;
            let value = http::HeaderValue::try_from(value).map_err(|_| AcceptError::InvalidHeader(name.to_string()))?;
            response.headers_mut().append(name, value);
        }
        Ok(response)
    }

    /// The connection over the upgraded stream (`hyper::upgrade::on(req).await`, wrapped
    /// in `hyper_util::rt::TokioIo`), with the choices made here.
    pub fn into_stream<S: AsyncRead + AsyncWrite + Unpin>(self, io: S) -> WebSocketStream<S> {
        let info = crate::server_info(&self.request, &self.accept, self.peer);
        WebSocketStream::from_raw_socket(io, Role::Server, self.config, info)
    }
}

/// The refusal for `error`: its status, `X-WebSocket-Reject-Reason`, the headers the
/// status calls for (426: `Sec-WebSocket-Version: 13, 8`; 405: `Allow: GET`), and the
/// reason as the body.
pub fn reject<B: From<String>>(error: &HandshakeError) -> http::Response<B> {
    let reason = error.to_string();
    let mut response = http::Response::new(B::from(reason.clone()));
    *response.status_mut() = http::StatusCode::from_u16(error.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    if let Ok(v) = http::HeaderValue::try_from(reason) {
        headers.insert("x-websocket-reject-reason", v);
    }
    for (name, value) in error.extra_headers() {
        headers.insert(*name, http::HeaderValue::from_static(value));
    }
    response
}
