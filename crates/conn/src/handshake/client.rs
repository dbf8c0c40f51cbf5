//! Client side: build the upgrade request, verify the server's answer.

use super::{HandshakeLimits, accept_key, has_token, is_safe_value, is_token, list_items};
use crate::ConnInfo;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Why a client handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// A request argument cannot be sent (bad protocol token, line break, version).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The response is not parseable HTTP (or too large: see the message).
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The server answered with a status other than 101.
    #[error("server answered {status} {reason}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The response headers.
        headers: Vec<(String, String)>,
        /// The body received so far (up to `Content-Length` when given).
        body: Vec<u8>,
    },
    /// No `Upgrade: websocket` in the 101.
    #[error("101 response without Upgrade: websocket")]
    MissingUpgrade,
    /// No `upgrade` token in `Connection`.
    #[error("101 response without Connection: upgrade")]
    MissingConnectionUpgrade,
    /// A missing or wrong `Sec-WebSocket-Accept`.
    #[error("Sec-WebSocket-Accept is {got:?}, expected {expected:?}")]
    BadAccept {
        /// What the key requires.
        expected: String,
        /// What the server sent.
        got: Option<String>,
    },
    /// The server chose a subprotocol we did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    ProtocolNotOffered(String),
    /// The server named an extension we did not request.
    #[error("server enabled extension {0:?}, which was not requested")]
    UnrequestedExtension(String),
    /// The server's permessage-deflate response does not fit our offer.
    #[error("bad permessage-deflate response: {0}")]
    Deflate(#[from] crate::deflate::DeflateError),
}

/// A verified 101 response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// Always 101.
    pub status: u16,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// Every header line.
    pub headers: Vec<(String, String)>,
    /// permessage-deflate, when we offered it and the server accepted.
    pub deflate: Option<crate::deflate::DeflateParams>,
}

/// A client upgrade request, and the key to check the answer against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    bytes: Vec<u8>,
    expected_accept: String,
    protocols: Vec<String>,
    version: u8,
    limits: HandshakeLimits,
    /// What we offered for permessage-deflate, if anything.
    deflate: Option<crate::deflate::DeflateConfig>,
}

impl ClientRequest {
    /// Builds `GET resource HTTP/1.1` for `host:port` (the port is left out of `Host`
    /// when it is 80 or 443), offering `protocols`, with `Origin` (v13) or
    /// `Sec-WebSocket-Origin` (v8), extra headers, version 13 or 8 and the 16 random
    /// bytes of the key (see [`random_key`](crate::random_key)).
    #[allow(clippy::too_many_arguments)] // mirrors WebSocket-Node's connect() arguments
    pub fn new(
        host: &str,
        port: u16,
        resource: &str,
        protocols: &[&str],
        origin: Option<&str>,
        extra_headers: &[(&str, &str)],
        version: u8,
        key: [u8; 16],
    ) -> Result<Self, ClientHandshakeError> {
        let bad = |s: String| Err(ClientHandshakeError::InvalidRequest(s));
        if version != 13 && version != 8 {
            return bad(format!("version {version} (use 13 or 8)"));
        }
        if host.is_empty() || !is_safe_value(host) || host.contains([' ', '/']) {
            return bad(format!("host {host:?}"));
        }
        if !resource.starts_with('/') || resource.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return bad(format!("resource {resource:?} (must start with '/', no spaces)"));
        }
        if let Some(p) = protocols.iter().find(|p| !is_token(p)) {
            return bad(format!("subprotocol {p:?} is not a token"));
        }
        if origin.is_some_and(|o| !is_safe_value(o)) {
            return bad("origin contains a line break".into());
        }
        if let Some((k, _)) = extra_headers.iter().find(|(k, v)| !is_token(k) || !is_safe_value(v)) {
            return bad(format!("extra header {k:?}"));
        }
        let key = STANDARD.encode(key);
        let mut r = format!("GET {resource} HTTP/1.1\r\nHost: {host}");
        if port != 80 && port != 443 {
            r.push_str(&format!(":{port}"));
        }
        r.push_str("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        r.push_str(&format!("Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n"));
        if !protocols.is_empty() {
            r.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", ")));
        }
        if let Some(o) = origin {
            r.push_str(if version == 8 { "Sec-WebSocket-Origin: " } else { "Origin: " });
            r.push_str(o);
            r.push_str("\r\n");
        }
        for (k, v) in extra_headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        Ok(Self {
            bytes: r.into_bytes(),
            expected_accept: accept_key(&key),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            version,
            limits: HandshakeLimits::default(),
            deflate: None,
        })
    }

    /// Offers permessage-deflate with `cfg` (a `Sec-WebSocket-Extensions` header), and
    /// checks the server's answer against it in [`verify_response`](Self::verify_response).
    pub fn with_deflate(mut self, cfg: crate::deflate::DeflateConfig) -> Self {
        let header = format!("Sec-WebSocket-Extensions: {}\r\n\r\n", crate::deflate::client_offer(&cfg));
        // The request ends with the blank line: the header goes before it.
        self.bytes.truncate(self.bytes.len() - 2);
        self.bytes.extend_from_slice(header.as_bytes());
        self.deflate = Some(cfg);
        self
    }

    /// Changes the limits applied to the response head.
    pub fn with_limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The request bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The `Sec-WebSocket-Accept` the server must send.
    pub fn expected_accept(&self) -> &str {
        &self.expected_accept
    }

    /// Verifies the server's answer from the start of `buf`. `Ok(None)`: incomplete
    /// (for a refusal, until its `Content-Length` body is in). `Ok(Some((response,
    /// n)))`: the head took `n` bytes; what follows is WebSocket data.
    pub fn verify_response(&self, buf: &[u8]) -> Result<Option<(Response, usize)>, ClientHandshakeError> {
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut resp = httparse::Response::new(&mut headers);
        let too_large = || ClientHandshakeError::Malformed(format!("head over {} bytes", self.limits.max_head_bytes));
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= self.limits.max_head_bytes => n,
            Ok(httparse::Status::Partial) if buf.len() <= self.limits.max_head_bytes => return Ok(None),
            Ok(_) => return Err(too_large()),
            Err(e) => return Err(ClientHandshakeError::Malformed(e.to_string())),
        };
        let hs: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
            .collect();
        let all =
            |name: &'static str| hs.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let status = resp.code.unwrap_or(0);
        if status != 101 {
            let body = match all("Content-Length").next().and_then(|v| v.parse::<usize>().ok()) {
                Some(len) if buf.len() - n < len => return Ok(None),
                Some(len) => buf[n..n + len].to_vec(),
                None => buf[n..].to_vec(),
            };
            let reason = resp.reason.unwrap_or_default().to_owned();
            return Err(ClientHandshakeError::Status { status, reason, headers: hs, body });
        }
        if !has_token(all("Upgrade"), "websocket") {
            return Err(ClientHandshakeError::MissingUpgrade);
        }
        if !has_token(all("Connection"), "upgrade") {
            return Err(ClientHandshakeError::MissingConnectionUpgrade);
        }
        let got = all("Sec-WebSocket-Accept").next();
        if got != Some(self.expected_accept.as_str()) {
            let expected = self.expected_accept.clone();
            return Err(ClientHandshakeError::BadAccept { expected, got: got.map(str::to_owned) });
        }
        let protocol = all("Sec-WebSocket-Protocol").next().map(str::to_owned);
        if let Some(p) = protocol.as_ref().filter(|p| !self.protocols.iter().any(|o| o.eq_ignore_ascii_case(p))) {
            return Err(ClientHandshakeError::ProtocolNotOffered(p.clone()));
        }
        let extensions: Vec<&str> = list_items(all("Sec-WebSocket-Extensions")).collect();
        let deflate = match (extensions.first(), &self.deflate) {
            (None, _) => None,
            (Some(_), Some(cfg)) => Some(crate::deflate::accept_response(&extensions.join(", "), cfg)?),
            (Some(ext), None) => {
                let name = ext.split(';').next().unwrap_or(ext).trim();
                return Err(ClientHandshakeError::UnrequestedExtension(name.to_owned()));
            }
        };
        Ok(Some((Response { status, protocol, headers: hs, deflate }, n)))
    }

    /// The [`ConnInfo`] for the connection a verified `response` opens.
    pub fn conn_info(&self, response: &Response, remote_address: Option<String>) -> ConnInfo {
        let mut info = ConnInfo::new();
        info.protocol = response.protocol.clone();
        info.deflate = response.deflate;
        info.version = self.version;
        info.remote_addresses = remote_address.iter().cloned().collect();
        info.remote_address = remote_address;
        info
    }
}
