//! The opening handshake (RFC 6455 section 4), both sides, as pure functions over
//! bytes: nothing here reads or writes a socket.
//!
//! Server: [`parse_request`] -> [`Request`] -> [`Request::accept`] (the 101) or
//! [`reject_response`]; a malformed request is a [`HandshakeError`] with its HTTP
//! status and ready-made [`response`](HandshakeError::response).
//! Client: [`ClientRequest::new`] -> [`ClientRequest::as_bytes`], then
//! [`ClientRequest::verify_response`].

mod client;
mod server;

pub use client::{ClientHandshakeError, ClientRequest, Response};
pub(crate) use server::parse_extension;
pub use server::{
    Accept, AcceptError, ExtensionOffer, HandshakeError, PlainRequest, Request, SetCookie, forwarded_addresses,
    http_response, parse_plain_request, parse_request, reject_response,
};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Limits on a request or response head, so a peer cannot make us buffer or parse
/// without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Most header lines (64). More: 431.
    pub max_headers: usize,
    /// Most bytes in the head, request line included (8 KiB). More: 431.
    pub max_head_bytes: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { max_headers: 64, max_head_bytes: 8 << 10 }
    }
}

impl HandshakeLimits {
    /// Limits with the given header count and head size.
    pub fn new(max_headers: usize, max_head_bytes: usize) -> Self {
        Self { max_headers, max_head_bytes }
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// Whether `s` is a non-empty RFC 7230 token (the grammar of header names,
/// subprotocols and extension names).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether a header value is safe to write: no CR, LF or NUL.
pub(crate) fn is_safe_value(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Comma-separated list items, trimmed, empty ones skipped, over every header line.
pub(crate) fn list_items<'a>(values: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    values.flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty())
}

/// Whether a comma-separated header contains `token`, case-insensitively.
pub(crate) fn has_token<'a>(values: impl Iterator<Item = &'a str>, token: &str) -> bool {
    list_items(values).any(|t| t.eq_ignore_ascii_case(token))
}

/// The reason phrase for a status code.
pub(crate) fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_sample_accept_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_plain_request_is_parsed_and_answered() {
        let limits = HandshakeLimits::default();
        let req = parse_plain_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n", &limits);
        let req = req.unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str(), req.header("accept")),
            ("GET", "/metrics?x=1", Some("text/plain"))
        );
        assert_eq!(parse_plain_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &limits), None, "incomplete");
        assert_eq!(parse_plain_request(b"GET / HTTP/1.0\r\n\r\n", &limits), None, "HTTP/1.0");
        let r = http_response(503, "text/plain\r\nX: y", b"draining\n");
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plainX: y\r\n"), "{r}");
        assert!(
            r.ends_with("Content-Length: 9\r\nCache-Control: no-store\r\nConnection: close\r\n\r\ndraining\n"),
            "{r}"
        );
    }

    #[test]
    fn tokens() {
        assert!(is_token("chat.v2"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
        assert!(!is_token("a,b"));
        assert!(has_token(["keep-alive, Upgrade"].into_iter(), "upgrade"));
        assert!(!has_token(["keep-alive"].into_iter(), "upgrade"));
    }
}
