//! The opening handshake, both sides: every refusal with its status, the 101, and
//! the client's checks. Requests are built from a valid one with one line changed.

use ringwire_conn::handshake::{
    Accept, AcceptError, ClientHandshakeError, ClientRequest, HandshakeError, HandshakeLimits, SetCookie, accept_key,
    forwarded_addresses, parse_request, reject_response,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(lines: &[&str]) -> Vec<u8> {
    let mut r = String::new();
    for l in lines {
        r.push_str(l);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn valid() -> Vec<&'static str> {
    vec![
        "GET /chat?room=1 HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Origin: http://example.com",
        "Sec-WebSocket-Protocol: Chat, superchat",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-webkit",
        "Cookie: session=a%20b; theme=dark",
        "X-Forwarded-For: 203.0.113.7, 10.0.0.2",
    ]
}

fn with(change: impl FnOnce(&mut Vec<&'static str>)) -> Vec<u8> {
    let mut l = valid();
    change(&mut l);
    request(&l)
}

fn refuse(bytes: &[u8]) -> HandshakeError {
    parse_request(bytes, &HandshakeLimits::default()).expect_err("refused")
}

fn status_line(resp: &[u8]) -> String {
    String::from_utf8_lossy(resp).lines().next().unwrap().to_owned()
}

#[test]
fn a_valid_request_is_parsed_in_full() {
    let mut bytes = request(&valid());
    let head = bytes.len();
    bytes.extend_from_slice(b"\x81\x85early"); // WebSocket bytes right behind the head
    let (req, n) = parse_request(&bytes, &HandshakeLimits::default()).unwrap().unwrap();
    assert_eq!(n, head);
    assert_eq!((req.method.as_str(), req.resource.as_str()), ("GET", "/chat?room=1"));
    assert_eq!((req.path.as_str(), req.query.as_deref()), ("/chat", Some("room=1")));
    assert_eq!(req.host, "server.example.com");
    assert_eq!(req.origin.as_deref(), Some("http://example.com"));
    assert_eq!((req.key.as_str(), req.version), (KEY, 13));
    assert_eq!(req.protocols, ["Chat", "superchat"]);
    assert_eq!(req.extensions.len(), 2);
    assert_eq!(req.extensions[0].name, "permessage-deflate");
    assert_eq!(req.extensions[0].params, [("client_max_window_bits".to_owned(), None)]);
    assert_eq!(req.cookies, [("session".to_owned(), "a b".to_owned()), ("theme".to_owned(), "dark".to_owned())]);
    assert_eq!(req.x_forwarded_for, ["203.0.113.7", "10.0.0.2"]);
    assert_eq!(req.header("upgrade"), Some("websocket"));
    assert_eq!(req.select_protocol(&["superchat", "chat"]), Some("chat"), "client's order wins");
}

#[test]
fn incomplete_head_needs_more_bytes() {
    let bytes = request(&valid());
    for cut in [0, 1, 10, bytes.len() - 1] {
        assert_eq!(parse_request(&bytes[..cut], &HandshakeLimits::default()), Ok(None), "cut {cut}");
    }
}

#[test]
fn every_refusal_has_its_status() {
    let cases: Vec<(Vec<u8>, u16, HandshakeError)> = vec![
        (with(|l| l[0] = "POST /chat HTTP/1.1"), 405, HandshakeError::MethodNotAllowed("POST".into())),
        (with(|l| l[0] = "GET /chat HTTP/1.0"), 400, HandshakeError::HttpVersion),
        (with(|l| l[0] = "GET /chat FTP/1.1"), 400, HandshakeError::Malformed("invalid HTTP version".into())),
        (
            with(|l| {
                l.remove(1);
            }),
            400,
            HandshakeError::MissingHost,
        ),
        (with(|l| l.push("Host: other")), 400, HandshakeError::DuplicateHeader("Host")),
        (with(|l| l[2] = "Upgrade: h2c"), 400, HandshakeError::NotWebSocketUpgrade),
        (with(|l| l[3] = "Connection: keep-alive"), 400, HandshakeError::MissingConnectionUpgrade),
        (
            with(|l| {
                l.remove(4);
            }),
            400,
            HandshakeError::MissingKey,
        ),
        (with(|l| l[4] = "Sec-WebSocket-Key: c2hvcnQ="), 400, HandshakeError::InvalidKey),
        (with(|l| l[4] = "Sec-WebSocket-Key: not base64!"), 400, HandshakeError::InvalidKey),
        (with(|l| l[5] = "Sec-WebSocket-Version: 12"), 426, HandshakeError::UnsupportedVersion(Some("12".into()))),
        (
            with(|l| {
                l.remove(5);
            }),
            426,
            HandshakeError::UnsupportedVersion(None),
        ),
        (with(|l| l[7] = "Sec-WebSocket-Protocol: a b"), 400, HandshakeError::InvalidProtocol("a b".into())),
    ];
    for (bytes, status, want) in cases {
        let e = refuse(&bytes);
        assert_eq!(e, want);
        assert_eq!(e.status(), status, "{e}");
        let resp = e.response();
        assert!(status_line(&resp).starts_with(&format!("HTTP/1.1 {status} ")), "{e}");
        let text = String::from_utf8(resp).unwrap();
        assert!(text.contains(&format!("X-WebSocket-Reject-Reason: {e}\r\n")), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        if status == 426 {
            assert!(text.contains("Sec-WebSocket-Version: 13, 8\r\n"));
        }
        if status == 405 {
            assert!(text.contains("Allow: GET\r\n"));
        }
    }
}

#[test]
fn header_limits_are_431() {
    let limits = HandshakeLimits::new(8, 8 << 10);
    let e = parse_request(&request(&valid()), &limits).unwrap_err();
    assert_eq!((e.clone(), e.status()), (HandshakeError::TooManyHeaders(8), 431));
    let long = format!("X-Pad: {}", "a".repeat(9000));
    let bytes = with(|l| l.push(Box::leak(long.into_boxed_str())));
    let e = refuse(&bytes);
    assert_eq!((e.clone(), e.status()), (HandshakeError::HeadTooLarge(8 << 10), 431));
    // An endless head is refused before it completes.
    let e = parse_request(&vec![b'G'; 9000], &HandshakeLimits::default());
    assert!(e.is_err());
}

#[test]
fn accept_writes_the_101_with_the_accept_key() {
    let (req, _) = parse_request(&request(&valid()), &HandshakeLimits::default()).unwrap().unwrap();
    let a = Accept {
        protocol: Some("chat".into()),
        origin: Some("http://example.com".into()),
        cookies: vec![SetCookie { path: Some("/".into()), http_only: true, ..SetCookie::new("id", "42") }],
        extra_headers: vec![("X-Served-By".into(), "ringwire".into())],
        deflate: None,
    };
    let resp = String::from_utf8(req.accept(&a).unwrap()).unwrap();
    assert_eq!(
        resp,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: Chat\r\n\
         Origin: http://example.com\r\nSet-Cookie: id=42; Path=/; HttpOnly\r\nX-Served-By: ringwire\r\n\r\n"
    );
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn accept_refuses_bad_arguments() {
    let (req, _) = parse_request(&request(&valid()), &HandshakeLimits::default()).unwrap().unwrap();
    let bad = |a: Accept| req.accept(&a).unwrap_err();
    assert_eq!(
        bad(Accept { protocol: Some("mqtt".into()), ..Accept::default() }),
        AcceptError::ProtocolNotRequested("mqtt".into())
    );
    assert_eq!(bad(Accept { origin: Some("a\r\nX: y".into()), ..Accept::default() }), AcceptError::InvalidOrigin);
    let cookie = |c: SetCookie| bad(Accept { cookies: vec![c], ..Accept::default() });
    assert!(matches!(cookie(SetCookie::new("bad name", "v")), AcceptError::InvalidCookie { .. }));
    assert!(matches!(cookie(SetCookie::new("n", "a;b")), AcceptError::InvalidCookie { .. }));
    assert!(matches!(
        cookie(SetCookie { domain: Some("a b".into()), ..SetCookie::new("n", "v") }),
        AcceptError::InvalidCookie { .. }
    ));
    let hdr = bad(Accept { extra_headers: vec![("X-A".into(), "1\r\n2".into())], ..Accept::default() });
    assert_eq!(hdr, AcceptError::InvalidHeader("X-A".into()));
}

#[test]
fn version_8_uses_sec_websocket_origin() {
    let bytes = with(|l| {
        l[5] = "Sec-WebSocket-Version: 8";
        l[6] = "Sec-WebSocket-Origin: http://old.example";
    });
    let (req, _) = parse_request(&bytes, &HandshakeLimits::default()).unwrap().unwrap();
    assert_eq!((req.version, req.origin.as_deref()), (8, Some("http://old.example")));
    let resp =
        String::from_utf8(req.accept(&Accept { origin: req.origin.clone(), ..Accept::default() }).unwrap()).unwrap();
    assert!(resp.contains("Sec-WebSocket-Origin: http://old.example\r\n"));
}

#[test]
fn conn_info_trusts_x_forwarded_for_only_from_trusted_proxies() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let (req, _) = parse_request(&request(&valid()), &HandshakeLimits::default()).unwrap().unwrap();
    // X-Forwarded-For: 203.0.113.7, 10.0.0.2 from 127.0.0.1, with both proxies trusted.
    let info = req.conn_info(Some("chat"), Some(ip("127.0.0.1")), &[ip("127.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(info.remote_address.as_deref(), Some("203.0.113.7"));
    assert_eq!(info.remote_addresses, ["203.0.113.7", "10.0.0.2", "127.0.0.1"]);
    assert_eq!((info.protocol.as_deref(), info.version), (Some("chat"), 13));
    // Only the peer trusted: 10.0.0.2 is the right-most address nobody trusted vouches
    // for (the left-most, Node's choice, is whatever the client wrote).
    let info = req.conn_info(None, Some(ip("127.0.0.1")), &[ip("127.0.0.1")]);
    assert_eq!(info.remote_address.as_deref(), Some("10.0.0.2"));
    assert_eq!(info.remote_addresses, ["203.0.113.7", "10.0.0.2", "127.0.0.1"]);
    // An untrusted peer: the header is ignored.
    let info = req.conn_info(None, Some(ip("127.0.0.1")), &[]);
    assert_eq!(
        (info.remote_address.as_deref(), &info.remote_addresses[..]),
        (Some("127.0.0.1"), &["127.0.0.1".to_owned()][..])
    );
    assert_eq!(req.conn_info(None, None, &[ip("127.0.0.1")]).remote_addresses, Vec::<String>::new());
}

#[test]
fn forwarded_addresses_takes_the_right_most_untrusted_entry() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let xff = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(forwarded_addresses(ip("10.0.0.9"), &xff(&["1.2.3.4"]), &[]), None, "untrusted peer");
    assert_eq!(forwarded_addresses(ip("10.0.0.1"), &[], &[ip("10.0.0.1")]), None, "nothing forwarded");
    let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
    let (a, all) = forwarded_addresses(ip("10.0.0.1"), &xff(&["6.6.6.6", " 1.2.3.4", "10.0.0.2"]), &trusted).unwrap();
    assert_eq!(a, "1.2.3.4");
    assert_eq!(all, ["6.6.6.6", "1.2.3.4", "10.0.0.2", "10.0.0.1"]);
    // Every hop trusted: the left-most entry is all there is.
    let (a, _) = forwarded_addresses(ip("10.0.0.1"), &xff(&["10.0.0.2"]), &trusted).unwrap();
    assert_eq!(a, "10.0.0.2");
}

#[test]
fn reject_response_is_nodes_reject() {
    let r = String::from_utf8(reject_response(
        403,
        Some("Origin not allowed\r\n"),
        &[("X-Why", "policy"), ("bad name", "x")],
    ))
    .unwrap();
    assert_eq!(
        r,
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nX-WebSocket-Reject-Reason: Origin not allowed\r\n\
         X-Why: policy\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(status_line(&reject_response(404, None, &[])), "HTTP/1.1 404 Not Found");
}

fn client() -> ClientRequest {
    ClientRequest::new(
        "server.example.com",
        8080,
        "/chat",
        &["chat", "superchat"],
        Some("http://example.com"),
        &[("X-Token", "t")],
        13,
        *b"the sample nonce",
    )
    .unwrap()
}

fn response(extra: &[&str]) -> Vec<u8> {
    let mut lines = vec!["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"];
    lines.extend_from_slice(extra);
    request(&lines)
}

#[test]
fn client_request_round_trips_through_the_server_parser() {
    let c = client();
    let (req, n) = parse_request(c.as_bytes(), &HandshakeLimits::default()).unwrap().unwrap();
    assert_eq!(n, c.as_bytes().len());
    assert_eq!((req.host.as_str(), req.resource.as_str(), req.key.as_str()), ("server.example.com:8080", "/chat", KEY));
    assert_eq!(req.protocols, ["chat", "superchat"]);
    assert_eq!(req.origin.as_deref(), Some("http://example.com"));
    assert_eq!(req.header("x-token"), Some("t"));
    // And the server's 101 satisfies the client.
    let resp = req.accept(&Accept { protocol: Some("superchat".into()), ..Accept::default() }).unwrap();
    let (r, used) = c.verify_response(&resp).unwrap().unwrap();
    assert_eq!((r.status, r.protocol.as_deref(), used), (101, Some("superchat"), resp.len()));
    let info = c.conn_info(&r, Some("198.51.100.1:8080".into()));
    assert_eq!((info.protocol.as_deref(), info.version, info.remote_addresses.len()), (Some("superchat"), 13, 1));
}

#[test]
fn client_refuses_bad_arguments() {
    let bad =
        |r: Result<ClientRequest, ClientHandshakeError>| matches!(r, Err(ClientHandshakeError::InvalidRequest(_)));
    assert!(bad(ClientRequest::new("h", 80, "/", &[], None, &[], 12, [0; 16])));
    assert!(bad(ClientRequest::new("h", 80, "/", &["a b"], None, &[], 13, [0; 16])));
    assert!(bad(ClientRequest::new("h", 80, "no-slash", &[], None, &[], 13, [0; 16])));
    assert!(bad(ClientRequest::new("h\r\n", 80, "/", &[], None, &[], 13, [0; 16])));
    assert!(bad(ClientRequest::new("h", 80, "/", &[], Some("o\n"), &[], 13, [0; 16])));
    assert!(bad(ClientRequest::new("h", 80, "/", &[], None, &[("X", "a\r\nb")], 13, [0; 16])));
    let v8 = ClientRequest::new("h", 80, "/", &[], Some("o"), &[], 8, [0; 16]).unwrap();
    let text = String::from_utf8(v8.as_bytes().to_vec()).unwrap();
    assert!(
        text.contains("Host: h\r\n") && text.contains("Sec-WebSocket-Origin: o\r\n") && text.contains("Version: 8\r\n")
    );
}

#[test]
fn client_verifies_the_response() {
    let c = client();
    let accept = format!("Sec-WebSocket-Accept: {}", c.expected_accept());
    let accept: &str = &accept;
    assert!(c.verify_response(&response(&[accept])).unwrap().is_some());
    assert_eq!(c.verify_response(&response(&[accept])[..20]), Ok(None));
    let e = c.verify_response(&response(&["Sec-WebSocket-Accept: AAAA"])).unwrap_err();
    assert!(matches!(e, ClientHandshakeError::BadAccept { got: Some(_), .. }));
    assert!(matches!(
        c.verify_response(&response(&[])).unwrap_err(),
        ClientHandshakeError::BadAccept { got: None, .. }
    ));
    assert_eq!(
        c.verify_response(&response(&[accept, "Sec-WebSocket-Protocol: mqtt"])),
        Err(ClientHandshakeError::ProtocolNotOffered("mqtt".into()))
    );
    assert_eq!(
        c.verify_response(&response(&[
            accept,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"
        ])),
        Err(ClientHandshakeError::UnrequestedExtension("permessage-deflate".into()))
    );
    let no_upgrade = request(&["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", accept]);
    assert_eq!(c.verify_response(&no_upgrade), Err(ClientHandshakeError::MissingUpgrade));
    let no_conn = request(&["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", accept]);
    assert_eq!(c.verify_response(&no_conn), Err(ClientHandshakeError::MissingConnectionUpgrade));
    assert!(matches!(c.verify_response(b"NOT HTTP\r\n\r\n"), Err(ClientHandshakeError::Malformed(_))));
}

#[test]
fn client_reports_a_refusal_with_status_and_body() {
    let c = client();
    let mut resp = request(&["HTTP/1.1 403 Forbidden", "Content-Length: 6", "X-WebSocket-Reject-Reason: nope"]);
    let full = resp.len() + 6;
    resp.extend_from_slice(b"go");
    assert_eq!(c.verify_response(&resp), Ok(None), "body not complete");
    resp.extend_from_slice(b"away");
    assert_eq!(resp.len(), full);
    match c.verify_response(&resp) {
        Err(ClientHandshakeError::Status { status, reason, headers, body }) => {
            assert_eq!((status, reason.as_str(), body.as_slice()), (403, "Forbidden", &b"goaway"[..]));
            assert!(headers.iter().any(|(k, v)| k == "X-WebSocket-Reject-Reason" && v == "nope"));
        }
        other => panic!("{other:?}"),
    }
}
