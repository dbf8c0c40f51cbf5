//! Server side: parse and validate an upgrade request, then accept or reject it.

use super::{HandshakeLimits, accept_key, has_token, is_safe_value, is_token, list_items, status_text};
use crate::ConnInfo;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::net::IpAddr;

/// Why an upgrade request was refused; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not parseable as an HTTP/1.x request head (400).
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// More header lines than allowed (431).
    #[error("too many header lines (max {0})")]
    TooManyHeaders(usize),
    /// A request head larger than allowed (431).
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// Not a GET (405, with `Allow: GET`).
    #[error("method {0} not allowed for a WebSocket upgrade; use GET")]
    MethodNotAllowed(String),
    /// HTTP/1.0 (400).
    #[error("a WebSocket upgrade needs HTTP/1.1")]
    HttpVersion,
    /// No `Host` header (400).
    #[error("missing Host header")]
    MissingHost,
    /// A header that must appear once appeared again (400).
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// A header value that is not UTF-8 (400).
    #[error("header {0} is not valid UTF-8")]
    InvalidHeaderValue(String),
    /// No `Upgrade: websocket` (400).
    #[error("missing Upgrade: websocket header")]
    NotWebSocketUpgrade,
    /// `Connection` lacks the `upgrade` token (400).
    #[error("Connection header lacks the upgrade token")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` (400).
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// A key that is not 16 bytes in base64 (400).
    #[error("Sec-WebSocket-Key is not 16 base64-encoded bytes")]
    InvalidKey,
    /// A version other than 13 or 8, or none (426, with `Sec-WebSocket-Version: 13, 8`).
    #[error("unsupported WebSocket version {}; supported: 13, 8", .0.as_deref().unwrap_or("(none)"))]
    UnsupportedVersion(Option<String>),
    /// A requested subprotocol that is not a token (400).
    #[error("invalid subprotocol {0:?}")]
    InvalidProtocol(String),
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyHeaders(_) | Self::HeadTooLarge(_) => 431,
            Self::MethodNotAllowed(_) => 405,
            Self::UnsupportedVersion(_) => 426,
            _ => 400,
        }
    }

    /// The whole HTTP response: status, `Connection: close`, the reason in
    /// `X-WebSocket-Reject-Reason`, and `Sec-WebSocket-Version: 13, 8` (426) or
    /// `Allow: GET` (405).
    pub fn response(&self) -> Vec<u8> {
        reject_response(self.status(), Some(&self.to_string()), self.extra_headers())
    }

    /// The headers the refusal's status calls for: `Sec-WebSocket-Version: 13, 8` (426),
    /// `Allow: GET` (405), none otherwise.
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::UnsupportedVersion(_) => &[("Sec-WebSocket-Version", "13, 8")],
            Self::MethodNotAllowed(_) => &[("Allow", "GET")],
            _ => &[],
        }
    }
}

/// One extension offered in `Sec-WebSocket-Extensions` (names lower-cased, as
/// WebSocket-Node does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// Extension name, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters: name and optional value.
    pub params: Vec<(String, Option<String>)>,
}

/// A valid upgrade request (WebSocket-Node's `WebSocketRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// Always `GET`.
    pub method: String,
    /// The raw request target (Node `resource`).
    pub resource: String,
    /// The target's path.
    pub path: String,
    /// The target's query, without `?`.
    pub query: Option<String>,
    /// `Host`.
    pub host: String,
    /// `Origin` (v13) or `Sec-WebSocket-Origin` (v8).
    pub origin: Option<String>,
    /// `Sec-WebSocket-Key`, as sent.
    pub key: String,
    /// 13 or 8.
    pub version: u8,
    /// Requested subprotocols in the client's order, as sent (matched case-insensitively).
    pub protocols: Vec<String>,
    /// Offered extensions.
    pub extensions: Vec<ExtensionOffer>,
    /// Cookies, values percent-decoded when they decode to UTF-8.
    pub cookies: Vec<(String, String)>,
    /// `X-Forwarded-For` entries, left-most first.
    pub x_forwarded_for: Vec<String>,
    /// Every header line, as sent.
    pub headers: Vec<(String, String)>,
}

/// How to accept a request; see [`Request::accept`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// The chosen subprotocol: must be one the client requested.
    pub protocol: Option<String>,
    /// Echoed as `Origin` (v13) or `Sec-WebSocket-Origin` (v8).
    pub origin: Option<String>,
    /// `Set-Cookie` headers.
    pub cookies: Vec<SetCookie>,
    /// Further headers for the 101.
    pub extra_headers: Vec<(String, String)>,
    /// permessage-deflate as agreed with [`Request::negotiate_deflate`]: stated in the
    /// 101 (`Sec-WebSocket-Extensions`); give the same to the connection's
    /// [`ConnInfo::deflate`](crate::ConnInfo::deflate).
    pub deflate: Option<(crate::deflate::DeflateParams, String)>,
}

/// A cookie to set in the 101 response (the third argument of Node's `accept`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetCookie {
    /// Name (a token).
    pub name: String,
    /// Value (RFC 6265 cookie-octets).
    pub value: String,
    /// `Path`.
    pub path: Option<String>,
    /// `Domain`.
    pub domain: Option<String>,
    /// `Expires`, an HTTP date.
    pub expires: Option<String>,
    /// `Max-Age` in seconds.
    pub max_age: Option<u64>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
}

/// Why [`Request::accept`] refused to build a response (Node answers these with 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The protocol was not among those the client requested.
    #[error("subprotocol {0:?} was not requested by the client")]
    ProtocolNotRequested(String),
    /// The origin contains CR, LF or NUL.
    #[error("origin contains a line break")]
    InvalidOrigin,
    /// A cookie breaks RFC 6265.
    #[error("invalid cookie {name:?}: {why}")]
    InvalidCookie {
        /// The cookie's name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An extra header with a non-token name or a value with a line break.
    #[error("invalid extra header {0:?}")]
    InvalidHeader(String),
}

/// Parses an upgrade request from the start of `buf`. `Ok(None)`: the head is not
/// complete yet (read more and call again with the whole buffer). `Ok(Some((request,
/// n)))`: the head took `n` bytes; anything after it already belongs to the
/// WebSocket stream.
pub fn parse_request(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head_bytes => n,
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_head_bytes => return Ok(None),
        Ok(_) => return Err(HandshakeError::HeadTooLarge(limits.max_head_bytes)),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders(limits.max_headers)),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let request = Request::from_parts(
        req.method.unwrap_or_default(),
        req.version.unwrap_or(0),
        req.path.unwrap_or("/"),
        req.headers.iter().map(|h| (h.name, h.value)),
    )?;
    Ok(Some((request, n)))
}

impl Request {
    /// Checks an upgrade request whose head something else parsed (hyper, axum: any HTTP/1.1
    /// server that hands over the connection after its response) by the same rules as
    /// [`parse_request`]: `method`, the HTTP/1.`minor_version`, the request `target` and
    /// every header as received.
    ///
    /// ```
    /// use ringwire_conn::handshake::Request;
    /// let headers = [
    ///     ("host", &b"example.com"[..]),
    ///     ("upgrade", b"websocket"),
    ///     ("connection", b"keep-alive, Upgrade"),
    ///     ("sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    ///     ("sec-websocket-version", b"13"),
    /// ];
    /// let req = Request::from_parts("GET", 1, "/chat?room=1", headers)?;
    /// assert_eq!((req.path.as_str(), req.query.as_deref()), ("/chat", Some("room=1")));
    /// // Without the key it is no upgrade: 400.
    /// let no_key = headers.into_iter().filter(|(name, _)| *name != "sec-websocket-key");
    /// assert_eq!(Request::from_parts("GET", 1, "/", no_key).unwrap_err().status(), 400);
    /// // Without the version: 426, with the versions this server speaks.
    /// let no_version = headers.into_iter().take(4);
    /// assert_eq!(Request::from_parts("GET", 1, "/", no_version).unwrap_err().status(), 426);
    /// # Ok::<(), ringwire_conn::handshake::HandshakeError>(())
    /// ```
    pub fn from_parts<'a>(
        method: &str,
        minor_version: u8,
        target: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Request, HandshakeError> {
        let method = method.to_owned();
        if method != "GET" {
            return Err(HandshakeError::MethodNotAllowed(method));
        }
        if minor_version != 1 {
            return Err(HandshakeError::HttpVersion);
        }
        let mut hs = Vec::new();
        for (name, value) in headers {
            let v = std::str::from_utf8(value).map_err(|_| HandshakeError::InvalidHeaderValue(name.to_owned()))?;
            hs.push((name.to_owned(), v.trim().to_owned()));
        }
        Self::from_headers(method, target, hs)
    }

    fn from_headers(method: String, target: &str, hs: Vec<(String, String)>) -> Result<Request, HandshakeError> {
        let all =
            |name: &'static str| hs.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let one = |name: &'static str| -> Result<Option<&str>, HandshakeError> {
            let mut it = all(name);
            let first = it.next();
            if it.next().is_some() { Err(HandshakeError::DuplicateHeader(name)) } else { Ok(first) }
        };
        let host = one("Host")?.filter(|h| !h.is_empty()).ok_or(HandshakeError::MissingHost)?.to_owned();
        if !has_token(all("Upgrade"), "websocket") {
            return Err(HandshakeError::NotWebSocketUpgrade);
        }
        if !has_token(all("Connection"), "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        let version = match one("Sec-WebSocket-Version")? {
            Some("13") => 13,
            Some("8") => 8,
            other => return Err(HandshakeError::UnsupportedVersion(other.map(str::to_owned))),
        };
        let key = one("Sec-WebSocket-Key")?.ok_or(HandshakeError::MissingKey)?.to_owned();
        match STANDARD.decode(&key) {
            Ok(k) if k.len() == 16 => {}
            _ => return Err(HandshakeError::InvalidKey),
        }
        let origin = if version == 8 {
            one("Sec-WebSocket-Origin")?.or(one("Origin")?)
        } else {
            one("Origin")?.or(one("Sec-WebSocket-Origin")?)
        }
        .map(str::to_owned);
        let mut protocols = Vec::new();
        for p in list_items(all("Sec-WebSocket-Protocol")) {
            if !is_token(p) {
                return Err(HandshakeError::InvalidProtocol(p.to_owned()));
            }
            protocols.push(p.to_owned());
        }
        let extensions = list_items(all("Sec-WebSocket-Extensions")).filter_map(parse_extension).collect();
        let cookies = all("Cookie").flat_map(|v| v.split(';')).filter_map(parse_cookie).collect();
        let x_forwarded_for = list_items(all("X-Forwarded-For")).map(str::to_owned).collect();
        let resource = target.to_owned();
        let (path, query) = match resource.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (resource.clone(), None),
        };
        let request = Request {
            method,
            resource,
            path,
            query,
            host,
            origin,
            key,
            version,
            protocols,
            extensions,
            cookies,
            x_forwarded_for,
            headers: hs,
        };
        Ok(request)
    }
}

/// One `name; k=v; k` item of `Sec-WebSocket-Extensions` (name and keys lower-cased,
/// quoted values unquoted); `None` if the name is not a token. The client reads the
/// server's answer with it too.
pub(crate) fn parse_extension(item: &str) -> Option<ExtensionOffer> {
    let mut parts = item.split(';').map(str::trim);
    let name = parts.next().filter(|n| is_token(n))?.to_ascii_lowercase();
    let params = parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_owned())),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect();
    Some(ExtensionOffer { name, params })
}

fn parse_cookie(pair: &str) -> Option<(String, String)> {
    let (k, v) = pair.trim().split_once('=')?;
    let (k, v) = (k.trim(), v.trim().trim_matches('"'));
    if k.is_empty() {
        return None;
    }
    Some((k.to_owned(), percent_decode(v).unwrap_or_else(|| v.to_owned())))
}

/// `decodeURIComponent`: `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first of `supported` that the client requested, in the client's order.
    pub fn select_protocol<'a>(&self, supported: &[&'a str]) -> Option<&'a str> {
        self.protocols.iter().find_map(|p| supported.iter().find(|s| s.eq_ignore_ascii_case(p)).copied())
    }

    /// The 101 response accepting this request, with `Sec-WebSocket-Accept`, the
    /// chosen protocol (echoed in the client's spelling), the origin, cookies and
    /// extra headers; `Sec-WebSocket-Extensions` when `a.deflate` is set.
    pub fn accept(&self, a: &Accept) -> Result<Vec<u8>, AcceptError> {
        let mut r = String::with_capacity(256);
        r.push_str("HTTP/1.1 101 Switching Protocols\r\n");
        for (k, v) in self.accept_headers(a)? {
            r.push_str(&k);
            r.push_str(": ");
            r.push_str(&v);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        Ok(r.into_bytes())
    }

    /// The headers of [`accept`](Self::accept)'s 101, in order (`Upgrade` and
    /// `Connection` first), checked the same way: for a server that writes the status
    /// line and headers itself (hyper, axum).
    pub fn accept_headers(&self, a: &Accept) -> Result<Vec<(String, String)>, AcceptError> {
        let mut h: Vec<(String, String)> = vec![
            ("Upgrade".into(), "websocket".into()),
            ("Connection".into(), "Upgrade".into()),
            ("Sec-WebSocket-Accept".into(), accept_key(&self.key)),
        ];
        if let Some(p) = &a.protocol {
            let Some(sent) = self.protocols.iter().find(|q| q.eq_ignore_ascii_case(p)) else {
                return Err(AcceptError::ProtocolNotRequested(p.clone()));
            };
            h.push(("Sec-WebSocket-Protocol".into(), sent.clone()));
        }
        if let Some(o) = &a.origin {
            if !is_safe_value(o) {
                return Err(AcceptError::InvalidOrigin);
            }
            let name = if self.version == 8 { "Sec-WebSocket-Origin" } else { "Origin" };
            h.push((name.into(), o.clone()));
        }
        for c in &a.cookies {
            h.push(("Set-Cookie".into(), c.to_header()?));
        }
        if let Some((_, value)) = &a.deflate {
            h.push(("Sec-WebSocket-Extensions".into(), value.clone()));
        }
        for (k, v) in &a.extra_headers {
            if !is_token(k) || !is_safe_value(v) {
                return Err(AcceptError::InvalidHeader(k.clone()));
            }
            h.push((k.clone(), v.clone()));
        }
        Ok(h)
    }

    /// permessage-deflate for this request under `cfg`: the parameters of the first offer
    /// that is acceptable, and the response value that states them (for
    /// [`Accept::deflate`]); `None` if the client offered none that is.
    pub fn negotiate_deflate(
        &self,
        cfg: &crate::deflate::DeflateConfig,
    ) -> Option<(crate::deflate::DeflateParams, String)> {
        crate::deflate::negotiate_response(&self.extensions, cfg)
    }

    /// The [`ConnInfo`] for a connection made from this request, from the TCP `peer`:
    /// its addresses follow the one rule of [`forwarded_addresses`] (`X-Forwarded-For`
    /// is believed only from `trusted_proxies`, and the remote address is the right-most
    /// entry that is not one of them). With no peer there are no addresses.
    ///
    /// ```
    /// use ringwire_conn::handshake::{HandshakeLimits, parse_request};
    /// use std::net::IpAddr;
    ///
    /// let head = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    ///     X-Forwarded-For: 6.6.6.6, 198.51.100.3\r\n\r\n";
    /// let (req, _) = parse_request(head.as_bytes(), &HandshakeLimits::default())?.unwrap();
    /// let proxy: IpAddr = "10.0.0.1".parse()?;
    /// let info = req.conn_info(None, Some(proxy), &[proxy]);
    /// // 6.6.6.6 is what 198.51.100.3 claims; only 198.51.100.3 is vouched for.
    /// assert_eq!(info.remote_address.as_deref(), Some("198.51.100.3"));
    /// assert_eq!(info.remote_addresses, ["6.6.6.6", "198.51.100.3", "10.0.0.1"]);
    /// // From a peer that is not a trusted proxy the header is ignored.
    /// let info = req.conn_info(None, Some("192.0.2.1".parse()?), &[proxy]);
    /// assert_eq!(info.remote_addresses, ["192.0.2.1"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conn_info(&self, protocol: Option<&str>, peer: Option<IpAddr>, trusted_proxies: &[IpAddr]) -> ConnInfo {
        let mut info = ConnInfo::new();
        if let Some(peer) = peer {
            info = match forwarded_addresses(peer, &self.x_forwarded_for, trusted_proxies) {
                Some((remote_address, remote_addresses)) => {
                    ConnInfo { remote_address: Some(remote_address), remote_addresses, ..info }
                }
                None => info.with_remote_address(peer.to_string()),
            };
        }
        info.protocol = protocol.map(str::to_owned);
        info.version = self.version;
        info
    }
}

/// The client's addresses when the TCP `peer` forwarded `X-Forwarded-For` entries and is
/// one of `trusted_proxies`: `(remote_address, remote_addresses)`. `None` when the peer
/// alone is both (no entries, or a peer that is not a trusted proxy, whose header anyone
/// could have written).
///
/// `remote_addresses` is WebSocket-Node's list: the entries, left-most first, then the
/// peer. `remote_address` is the right-most of them that is not a trusted proxy: the
/// first address that no trusted hop vouches for (each proxy appends the address it
/// got the request from, so everything left of that one is only what a client claimed).
/// WebSocket-Node takes the left-most entry from any peer, which lets every client
/// choose its address; with no trusted proxies (the server's default) this is always
/// the peer. This is the one rule: [`Request::conn_info`] and the server use it.
pub fn forwarded_addresses(
    peer: IpAddr,
    x_forwarded_for: &[String],
    trusted_proxies: &[IpAddr],
) -> Option<(String, Vec<String>)> {
    if x_forwarded_for.is_empty() || !trusted_proxies.contains(&peer) {
        return None;
    }
    let mut all: Vec<String> = x_forwarded_for.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    all.push(peer.to_string());
    let trusted = |s: &str| s.parse::<IpAddr>().is_ok_and(|ip| trusted_proxies.contains(&ip));
    let client = all.iter().rev().find(|s| !trusted(s)).unwrap_or(&all[0]).clone();
    Some((client, all))
}

impl SetCookie {
    /// A cookie with a name and value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into(), ..Self::default() }
    }

    fn to_header(&self) -> Result<String, AcceptError> {
        let bad = |why| AcceptError::InvalidCookie { name: self.name.clone(), why };
        if !is_token(&self.name) {
            return Err(bad("name is not a token"));
        }
        let octet = |b: u8| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        if !self.value.bytes().all(octet) {
            return Err(bad("value has a character outside RFC 6265 cookie-octets"));
        }
        let attr_ok = |s: &str| s.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b';');
        let mut h = format!("{}={}", self.name, self.value);
        if let Some(p) = &self.path {
            if !attr_ok(p) {
                return Err(bad("path has a control character or ';'"));
            }
            h.push_str(&format!("; Path={p}"));
        }
        if let Some(d) = &self.domain {
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                return Err(bad("domain is not a host name"));
            }
            h.push_str(&format!("; Domain={d}"));
        }
        if let Some(e) = &self.expires {
            if !attr_ok(e) {
                return Err(bad("expires has a control character or ';'"));
            }
            h.push_str(&format!("; Expires={e}"));
        }
        if let Some(m) = self.max_age {
            h.push_str(&format!("; Max-Age={m}"));
        }
        if self.secure {
            h.push_str("; Secure");
        }
        if self.http_only {
            h.push_str("; HttpOnly");
        }
        Ok(h)
    }
}

/// A request head that is not a WebSocket upgrade (a plain `GET /metrics`, say): its
/// method, request target and headers, for a server that answers such requests on its
/// WebSocket port ([`parse_plain_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// The method (`GET`, ...).
    pub method: String,
    /// The request target as sent (`/metrics`, `/healthz?x=1`).
    pub path: String,
    /// Every header, in order, values trimmed; a value that is not UTF-8 is left out.
    pub headers: Vec<(String, String)>,
}

impl PlainRequest {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses a complete HTTP/1.1 request head in `buf` within `limits`, whatever it asks for;
/// `None` if it is incomplete, too large or malformed. For the requests
/// [`parse_request`] refuses as [`HandshakeError::NotWebSocketUpgrade`].
pub fn parse_plain_request(buf: &[u8], limits: &HandshakeLimits) -> Option<PlainRequest> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head_bytes && req.version == Some(1) => {}
        _ => return None,
    }
    let headers = req
        .headers
        .iter()
        .filter_map(|h| Some((h.name.to_owned(), std::str::from_utf8(h.value).ok()?.trim().to_owned())))
        .collect();
    Some(PlainRequest { method: req.method?.to_owned(), path: req.path?.to_owned(), headers })
}

/// A whole HTTP/1.1 response with a body: the status line, `Content-Type`,
/// `Content-Length`, `Cache-Control: no-store`, `Connection: close`, then `body`. For a
/// server that answers plain requests on its WebSocket port and closes.
pub fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let clean = |s: &str| s.replace(['\r', '\n', '\0'], "");
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        status_text(status),
        clean(content_type),
        body.len()
    );
    let mut r = Vec::with_capacity(head.len() + body.len());
    r.extend_from_slice(head.as_bytes());
    r.extend_from_slice(body);
    r
}

/// A refusal (Node's `reject(status, reason, extraHeaders)`): the status line,
/// `Connection: close`, `X-WebSocket-Reject-Reason` when a reason is given, and the
/// extra headers. Like WebSocket-Node, CR and LF are stripped from the reason and
/// header values; header lines whose name is not a token are left out.
pub fn reject_response(status: u16, reason: Option<&str>, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let clean = |s: &str| s.replace(['\r', '\n', '\0'], "");
    let mut r = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", status_text(status));
    if let Some(reason) = reason {
        r.push_str(&format!("X-WebSocket-Reject-Reason: {}\r\n", clean(reason)));
    }
    for (k, v) in extra_headers {
        if is_token(k) {
            r.push_str(&format!("{k}: {}\r\n", clean(v)));
        }
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r.into_bytes()
}
