//! The client side of the opening handshake, on top of `ringwire_conn::handshake`: build the
//! request from a URL and options, then turn the server's answer into a [`Step`].

use crate::{ConnectError, ConnectOptions, WsUrl};
use bytes::Bytes;
use ringwire_conn::handshake::{ClientHandshakeError, ClientRequest, Response};

/// Headers the handshake writes itself; giving them in [`ConnectOptions::headers`] is an error.
const RESERVED: [&str; 9] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "content-length",
];

/// An upgrade request ready to write (with a fresh key) and to check the answer against.
pub(crate) struct Prepared {
    request: ClientRequest,
    bytes: Bytes,
}

impl Prepared {
    /// The request bytes (shared, cheap to clone per attempt).
    pub(crate) fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }
}

/// Builds the request for `url` with `opts` and a fresh random key.
pub(crate) fn prepare(url: &WsUrl, opts: &ConnectOptions) -> Result<Prepared, ConnectError> {
    if let Some((name, _)) = opts.headers.iter().find(|(k, _)| {
        RESERVED.iter().any(|r| r.eq_ignore_ascii_case(k.trim()))
            || k.eq_ignore_ascii_case("origin")
            || k.eq_ignore_ascii_case("sec-websocket-origin")
    }) {
        return Err(ConnectError::InvalidOptions(format!(
            "header {name:?} is written by the handshake itself (use ConnectOptions' own fields)"
        )));
    }
    let protocols: Vec<&str> = opts.protocols.iter().map(String::as_str).collect();
    let headers: Vec<(&str, &str)> = opts.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let request = ClientRequest::new(
        &url.host.to_string(),
        url.port,
        &url.resource,
        &protocols,
        opts.origin.as_deref(),
        &headers,
        opts.version,
        ringwire_conn::random_key(),
    )
    .map_err(|e| match e {
        ClientHandshakeError::InvalidRequest(m) => ConnectError::InvalidOptions(m),
        other => ConnectError::InvalidOptions(other.to_string()),
    })?;
    // permessage-deflate, when configured: never without assembly (no message to inflate).
    let request = match opts.config.deflate.clone().filter(|_| opts.config.assemble_fragments) {
        Some(deflate) => {
            deflate.validate().map_err(|e| ConnectError::InvalidOptions(e.to_string()))?;
            request.with_deflate(deflate)
        }
        None => request,
    };
    let bytes = Bytes::copy_from_slice(request.as_bytes());
    Ok(Prepared { request, bytes })
}

/// A non-101 answer, possibly still waiting for its body.
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Whether more body may come: no `Content-Length` but `Connection: close`, so the body
    /// ends when the server closes.
    pub(crate) until_close: bool,
}

/// What the bytes received so far amount to.
pub(crate) enum Step {
    /// The head (or a refusal's `Content-Length` body) is incomplete.
    NeedMore,
    /// Upgraded: the response, and how many bytes of the buffer it took.
    Open(Response, usize),
    /// A non-101 status.
    Refused(Refusal),
    /// Any other failure.
    Fail(ConnectError),
}

/// Checks the response at the start of `buf`.
pub(crate) fn step(prepared: &Prepared, buf: &[u8]) -> Step {
    match prepared.request.verify_response(buf) {
        Ok(None) => Step::NeedMore,
        Ok(Some((response, used))) => Step::Open(response, used),
        Err(ClientHandshakeError::Status { status, reason, headers, body }) => {
            let has = |name: &str, token: Option<&str>| {
                headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case(name)
                        && token.is_none_or(|t| v.split(',').any(|x| x.trim().eq_ignore_ascii_case(t)))
                })
            };
            let until_close = !has("content-length", None) && has("connection", Some("close"));
            Step::Refused(Refusal { status, reason, headers, body, until_close })
        }
        Err(e) => Step::Fail(handshake_error(e)),
    }
}

fn handshake_error(e: ClientHandshakeError) -> ConnectError {
    match e {
        ClientHandshakeError::BadAccept { expected, got } => ConnectError::BadAccept { expected, got },
        ClientHandshakeError::ProtocolNotOffered(protocol) => ConnectError::ProtocolNotOffered { protocol },
        ClientHandshakeError::UnrequestedExtension(extension) => ConnectError::UnrequestedExtension { extension },
        ClientHandshakeError::Deflate(e) => ConnectError::Deflate(e),
        ClientHandshakeError::Status { status, reason, headers, body } => {
            ConnectError::Status { status, reason, headers, body }
        }
        other => ConnectError::InvalidResponse(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(opts: &ConnectOptions) -> Result<Prepared, ConnectError> {
        prepare(&WsUrl::parse("ws://[::1]:9001/chat?x=1").unwrap(), opts)
    }

    #[test]
    fn request_carries_url_and_options() {
        let opts = ConnectOptions::new().with_protocols(["a", "b"]).with_origin("http://o").with_header("X-Y", "z");
        let p = prepared(&opts).unwrap();
        let text = String::from_utf8(p.bytes().to_vec()).unwrap();
        assert!(text.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: [::1]:9001\r\n"), "{text}");
        for line in ["Sec-WebSocket-Protocol: a, b", "Origin: http://o", "X-Y: z", "Sec-WebSocket-Version: 13"] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
        let v8 = prepared(&ConnectOptions::new().with_origin("http://o").with_version(8)).unwrap();
        assert!(String::from_utf8_lossy(&v8.bytes()).contains("Sec-WebSocket-Origin: http://o"));
        // A fresh key per request.
        assert_ne!(prepared(&opts).unwrap().bytes(), p.bytes());
    }

    #[test]
    fn bad_options_are_refused() {
        let invalid = |o: ConnectOptions| match prepared(&o) {
            Err(ConnectError::InvalidOptions(m)) => m,
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(invalid(ConnectOptions::new().with_version(12)).contains("version 12"));
        assert!(invalid(ConnectOptions::new().with_protocols(["a b"])).contains("not a token"));
        assert!(invalid(ConnectOptions::new().with_header("Host", "x")).contains("\"Host\""));
        assert!(invalid(ConnectOptions::new().with_header("sec-websocket-key", "x")).contains("handshake itself"));
        assert!(invalid(ConnectOptions::new().with_header("X-A", "a\r\nb")).contains("X-A"));
        assert!(invalid(ConnectOptions::new().with_origin("a\nb")).contains("origin"));
    }

    #[test]
    fn steps() {
        let p = prepared(&ConnectOptions::new().with_protocols(["chat"])).unwrap();
        let accept = p.request.expected_accept().to_owned();
        assert!(matches!(step(&p, b"HTTP/1.1 101 Switching"), Step::NeedMore));
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x01\x00"
        );
        match step(&p, ok.as_bytes()) {
            Step::Open(r, used) => {
                assert_eq!(r.protocol.as_deref(), Some("chat"));
                assert_eq!(used, ok.len() - 2);
            }
            _ => panic!("not open"),
        }
        let bad = ok.replace(&accept, "AAAA");
        assert!(
            matches!(step(&p, bad.as_bytes()), Step::Fail(ConnectError::BadAccept { got: Some(g), .. }) if g == "AAAA")
        );
        let proto = ok.replace("Protocol: chat", "Protocol: other");
        assert!(
            matches!(step(&p, proto.as_bytes()), Step::Fail(ConnectError::ProtocolNotOffered { protocol }) if protocol == "other")
        );
        let ext = ok.replace("Protocol: chat", "Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate");
        assert!(
            matches!(step(&p, ext.as_bytes()), Step::Fail(ConnectError::UnrequestedExtension { extension }) if extension == "permessage-deflate")
        );
        let noup = ok.replace("Upgrade: websocket\r\n", "");
        assert!(matches!(step(&p, noup.as_bytes()), Step::Fail(ConnectError::InvalidResponse(_))));
        assert!(matches!(step(&p, b"garbage\r\n\r\n"), Step::Fail(ConnectError::InvalidResponse(_))));

        let r404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nno";
        assert!(matches!(step(&p, r404), Step::NeedMore));
        match step(&p, b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!") {
            Step::Refused(r) => assert_eq!((r.status, r.body.as_slice(), r.until_close), (404, &b"nope!"[..], false)),
            _ => panic!("not refused"),
        }
        match step(&p, b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\npart") {
            Step::Refused(r) => assert_eq!((r.status, r.body.as_slice(), r.until_close), (403, &b"part"[..], true)),
            _ => panic!("not refused"),
        }
    }
}
