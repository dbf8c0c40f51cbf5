//! [`ConnectError`]: every way opening a connection can fail, each told apart.

use ringwire_conn::url::UrlError;
use ringwire_tls::TlsError;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL was refused (bad syntax, a scheme other than `ws` / `wss`).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The [`ConnectOptions`](crate::ConnectOptions) cannot make a valid request
    /// (a bad version, subprotocol or header).
    #[error("invalid connect options: {0}")]
    InvalidOptions(String),
    /// The host name did not resolve.
    #[error("cannot resolve host {host:?}: {source}")]
    Dns {
        /// The name looked up.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Nothing listens there: the connection was refused (ECONNREFUSED).
    #[error("connection refused by {addr}")]
    Refused {
        /// The address tried last.
        addr: SocketAddr,
    },
    /// The TCP connect did not finish within `connect_timeout`.
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The address tried.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// TCP connected but no complete upgrade response came within `handshake_timeout`.
    #[error("no upgrade response from {addr} within {after:?}")]
    HandshakeTimeout {
        /// The server's address.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// Any other socket error while connecting or handshaking (unreachable network, reset).
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The server answered with a status other than 101 (e.g. 404, 403, 426).
    #[error("server answered {status} {reason} instead of 101 Switching Protocols{}", body_hint(body))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The response headers.
        headers: Vec<(String, String)>,
        /// The response body (up to `Content-Length`, or what came before the server
        /// closed; at most 64 KiB).
        body: Vec<u8>,
    },
    /// `Sec-WebSocket-Accept` is missing or does not match our key.
    #[error("bad Sec-WebSocket-Accept: expected {expected:?}, got {got:?}")]
    BadAccept {
        /// The value our key requires.
        expected: String,
        /// What the server sent.
        got: Option<String>,
    },
    /// The server chose a subprotocol we did not offer.
    #[error("server chose subprotocol {protocol:?}, which was not offered")]
    ProtocolNotOffered {
        /// The server's choice.
        protocol: String,
    },
    /// The server answered with an extension we did not request (we request only
    /// permessage-deflate, and only with `ConnectOptions::config.deflate` set).
    #[error("server answered with extension {extension:?}, which was not requested")]
    UnrequestedExtension {
        /// The extension header value.
        extension: String,
    },
    /// The server accepted permessage-deflate with parameters our offer does not allow.
    #[error("the server's permessage-deflate response does not fit our offer: {0}")]
    Deflate(ringwire_conn::deflate::DeflateError),
    /// A 101 that is not a valid WebSocket upgrade (missing `Upgrade: websocket` or
    /// `Connection: Upgrade`, malformed HTTP, a head over the size limit).
    #[error("invalid upgrade response: {0}")]
    InvalidResponse(String),
    /// The server closed the connection before a complete upgrade response.
    #[error("{addr} closed the connection before answering the upgrade ({received} bytes received)")]
    ClosedBeforeUpgrade {
        /// The server's address.
        addr: SocketAddr,
        /// Bytes of response received before the close.
        received: usize,
    },
    /// The [`TlsConfig`](crate::TlsConfig) cannot make a TLS config: bad PEM, a key that
    /// does not fit the certificate, no root certificate at all.
    #[error("invalid TLS settings: {0}")]
    TlsConfig(String),
    /// `wss://`: the server's certificate chain does not lead to a trusted root (a
    /// self-signed certificate, a private CA not added with
    /// [`TlsConfig::with_roots_pem`](crate::TlsConfig::with_roots_pem), a missing intermediate).
    #[error("tls: the certificate of {host} is not signed by a trusted root (unknown issuer)")]
    TlsUnknownIssuer {
        /// The host of the URL.
        host: String,
        /// The TLS layer's error.
        #[source]
        error: TlsError,
    },
    /// `wss://`: the server's certificate is not for the URL's host.
    #[error("tls: the certificate of {host} is not valid for that name{}", names_hint(presented))]
    TlsNameMismatch {
        /// The host of the URL (the name verified).
        host: String,
        /// The names the certificate is for (when rustls reports them).
        presented: Vec<String>,
        /// The TLS layer's error.
        #[source]
        error: TlsError,
    },
    /// `wss://`: the server's certificate (or one in its chain) has expired.
    #[error("tls: the certificate of {host} has expired ({})", crate::tls::cause(error))]
    TlsExpired {
        /// The host of the URL.
        host: String,
        /// The TLS layer's error (with the times, when rustls reports them).
        #[source]
        error: TlsError,
    },
    /// `wss://`: the server's certificate (or one in its chain) is not valid yet.
    #[error("tls: the certificate of {host} is not valid yet ({})", crate::tls::cause(error))]
    TlsNotYetValid {
        /// The host of the URL.
        host: String,
        /// The TLS layer's error (with the times, when rustls reports them).
        #[source]
        error: TlsError,
    },
    /// `wss://`: the server's certificate was refused for another reason (bad signature,
    /// revoked, wrong purpose, unsupported algorithm, malformed).
    #[error("tls: the certificate of {host} was refused: {}", crate::tls::cause(error))]
    TlsCertificate {
        /// The host of the URL.
        host: String,
        /// The TLS layer's error.
        #[source]
        error: TlsError,
    },
    /// `wss://`: the TLS handshake failed otherwise: an alert from the server (e.g. it wants
    /// a client certificate that was not given, or refused it), no protocol version,
    /// cipher suite or ALPN protocol in common, a peer breaking the protocol.
    #[error("tls handshake with {host} failed: {}", crate::tls::cause(error))]
    TlsHandshake {
        /// The host of the URL.
        host: String,
        /// The TLS layer's error: `TlsError::Protocol(rustls::Error::AlertReceived(..))`,
        /// `PeerIncompatible(..)`, ...
        #[source]
        error: TlsError,
    },
    /// The client loop stopped (or could not start) before the connection opened.
    #[error("the client event loop stopped: {0}")]
    Loop(String),
    /// [`LoopHandle::connect`](crate::LoopHandle::connect) could not queue the request:
    /// the loop's inbox is full, or the loop is gone.
    #[error("cannot queue the connect: {0}")]
    Queue(QueueError),
}

/// Why a command from another thread was not queued for a
/// [`ClientLoop`](crate::ClientLoop) (returned by [`LoopHandle`](crate::LoopHandle)'s
/// methods). The loop's inbox holds at most
/// [`inbox_capacity`](crate::ClientLoop::set_inbox_capacity) commands it has not taken
/// yet: a caller that outpaces the loop is told so instead of growing it without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The inbox is at capacity (the loop is busy or not running); nothing was queued.
    #[error("the client loop's inbox is full")]
    Full,
    /// The [`ClientLoop`](crate::ClientLoop) was dropped; nothing will run the command.
    #[error("the client loop is gone")]
    Closed,
}

fn names_hint(presented: &[String]) -> String {
    match presented {
        [] => String::new(),
        [one] => format!(" (it is for {one})"),
        many if many.len() <= 4 => format!(" (it is for {})", many.join(", ")),
        many => format!(" (it is for {}, and {} more)", many[..4].join(", "), many.len() - 4),
    }
}

fn body_hint(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() { format!(": {cut}...") } else { format!(": {cut}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_error_shows_status_and_body() {
        let e = ConnectError::Status {
            status: 404,
            reason: "Not Found".into(),
            headers: vec![],
            body: b"no route\n".to_vec(),
        };
        assert_eq!(e.to_string(), "server answered 404 Not Found instead of 101 Switching Protocols: no route");
        let e = ConnectError::Status { status: 500, reason: "Oops".into(), headers: vec![], body: vec![] };
        assert_eq!(e.to_string(), "server answered 500 Oops instead of 101 Switching Protocols");
        let long = vec![b'x'; 300];
        let e = ConnectError::Status { status: 400, reason: "Bad".into(), headers: vec![], body: long };
        assert!(e.to_string().ends_with(&format!("{}...", "x".repeat(200))));
    }
}
