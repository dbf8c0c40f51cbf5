//! Every way opening a connection can fail, each with its own error, on both backends.

mod common;

use common::*;
use ringwire_client::{ClientLoop, ConnectError, ConnectOptions, IoChoice, Roots, TlsConfig, UrlError};
use ringwire_conn::handshake::accept_key;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// Runs one connection that must fail, and returns its error.
fn fails(io: ringwire_client::IoChoice, url: &str, opts: ConnectOptions) -> ConnectError {
    let (id, mut rec) = run_one(io, url, opts, Recorder::new());
    assert!(rec.of(id).is_empty(), "{io:?}: expected no events, got {:?}", rec.of(id));
    rec.failure(id)
}

/// A server that answers the upgrade request with `response(key)`, then holds the connection
/// until the client closes it.
fn answering(response: impl Fn(&str) -> String + Send + 'static) -> std::net::SocketAddr {
    raw_server(move |mut s: TcpStream| {
        let (req, _) = read_request(&mut s);
        s.write_all(response(&req.key).as_bytes()).unwrap();
        read_to_close(&mut s, &mut Vec::new());
    })
}

fn upgrade_101(key: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_key(key)
    )
}

#[test]
fn refused_when_nothing_listens() {
    let addr = dead_port();
    for io in backends() {
        match fails(io, &format!("ws://{addr}/"), ConnectOptions::default()) {
            ConnectError::Refused { addr: a } => assert_eq!(a, addr),
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
    }
}

#[test]
fn url_dns_and_option_errors_come_back_from_connect() {
    let mut client = ClientLoop::new(IoChoice::Epoll).unwrap();
    let no_roots = ConnectOptions::default().with_tls(TlsConfig::new().with_roots(Roots::Empty));
    let err = client.connect("wss://example.com/", no_roots).unwrap_err();
    assert!(matches!(err, ConnectError::TlsConfig(_)), "{err:?}");
    assert_eq!(err.to_string(), "invalid TLS settings: no root certificate to trust (Roots::Empty and none added)");
    let err = TlsConfig::new().with_roots_pem(b"not a certificate").unwrap_err();
    assert_eq!(err.to_string(), "invalid TLS settings: root certificates: no CERTIFICATE in the PEM");
    let err = client.connect("http://example.com/", ConnectOptions::default()).unwrap_err();
    assert!(matches!(err, ConnectError::Url(UrlError::UnsupportedScheme(_))), "{err:?}");
    match client.connect("ws://no-such-host.invalid/", ConnectOptions::default()).unwrap_err() {
        ConnectError::Dns { host, .. } => assert_eq!(host, "no-such-host.invalid"),
        e => panic!("wrong error: {e:?}"),
    }
    let err = client.connect("ws://127.0.0.1/", ConnectOptions::default().with_version(12)).unwrap_err();
    assert!(matches!(err, ConnectError::InvalidOptions(ref m) if m.contains("version 12")), "{err:?}");
    // Nothing was started: the loop is idle and returns at once.
    assert_eq!(client.connections(), 0);
    client.run(&mut Recorder::new()).unwrap();
}

#[test]
fn non_101_status_carries_status_and_body() {
    // A 404 whose body arrives in two writes, with Content-Length.
    let addr = raw_server(|mut s| {
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nX-Why: test\r\n\r\nno ").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"route\n").unwrap();
        read_to_close(&mut s, &mut Vec::new());
    });
    // A 403 with no Content-Length and Connection: close: the body runs until the close.
    let closing = raw_server(|mut s| {
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\nnot ").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"allowed").unwrap();
    });
    for io in backends() {
        match fails(io, &format!("ws://{addr}/missing"), ConnectOptions::default()) {
            ConnectError::Status { status, reason, headers, body } => {
                assert_eq!((status, reason.as_str(), body.as_slice()), (404, "Not Found", &b"no route\n"[..]));
                assert!(headers.iter().any(|(k, v)| k == "X-Why" && v == "test"), "{headers:?}");
            }
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
        let e = fails(io, &format!("ws://{closing}/"), ConnectOptions::default());
        assert_eq!(e.to_string(), "server answered 403 Forbidden instead of 101 Switching Protocols: not allowed");
    }
}

#[test]
fn bad_accept_key() {
    let addr = answering(|_| upgrade_101("not the key", ""));
    for io in backends() {
        match fails(io, &format!("ws://{addr}/"), ConnectOptions::default()) {
            ConnectError::BadAccept { got: Some(got), expected } => {
                assert_eq!(got, accept_key("not the key"));
                assert_ne!(got, expected);
            }
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
    }
    let missing = answering(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_owned()
    });
    let e = fails(backends()[0], &format!("ws://{missing}/"), ConnectOptions::default());
    assert!(matches!(e, ConnectError::BadAccept { got: None, .. }), "{e:?}");
}

#[test]
fn protocol_not_offered() {
    let addr = answering(|key| upgrade_101(key, "Sec-WebSocket-Protocol: other\r\n"));
    for io in backends() {
        let opts = ConnectOptions::default().with_protocols(["chat", "superchat"]);
        match fails(io, &format!("ws://{addr}/"), opts) {
            ConnectError::ProtocolNotOffered { protocol } => assert_eq!(protocol, "other"),
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
        // Offering nothing and getting one is the same error.
        let e = fails(io, &format!("ws://{addr}/"), ConnectOptions::default());
        assert!(matches!(e, ConnectError::ProtocolNotOffered { .. }), "{e:?}");
    }
}

#[test]
fn unrequested_extension() {
    let addr =
        answering(|key| upgrade_101(key, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
    for io in backends() {
        match fails(io, &format!("ws://{addr}/"), ConnectOptions::default()) {
            ConnectError::UnrequestedExtension { extension } => assert_eq!(extension, "permessage-deflate"),
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
    }
}

#[test]
fn a_101_without_upgrade_headers_is_invalid() {
    let addr = answering(|key| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
    });
    let e = fails(backends()[0], &format!("ws://{addr}/"), ConnectOptions::default());
    assert!(matches!(e, ConnectError::InvalidResponse(ref m) if m.contains("Upgrade")), "{e:?}");
}

#[test]
fn closed_before_101() {
    let silent = raw_server(|mut s| {
        read_request(&mut s);
    });
    let partial = raw_server(|mut s| {
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 101 Switch").unwrap();
    });
    for io in backends() {
        match fails(io, &format!("ws://{silent}/"), ConnectOptions::default()) {
            ConnectError::ClosedBeforeUpgrade { addr, received } => assert_eq!((addr, received), (silent, 0)),
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
        match fails(io, &format!("ws://{partial}/"), ConnectOptions::default()) {
            ConnectError::ClosedBeforeUpgrade { received, .. } => assert_eq!(received, 19),
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
    }
}

#[test]
fn handshake_timeout() {
    // Reads the request and never answers; holds the socket until the client gives up.
    let addr = raw_server(|mut s| {
        read_request(&mut s);
        read_to_close(&mut s, &mut Vec::new());
    });
    for io in backends() {
        let mut opts = ConnectOptions::default();
        opts.handshake_timeout = Some(Duration::from_millis(200));
        match fails(io, &format!("ws://{addr}/"), opts) {
            ConnectError::HandshakeTimeout { addr: a, after } => {
                assert_eq!((a, after), (addr, Duration::from_millis(200)));
            }
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
    }
}

#[test]
fn connect_timeout_against_a_full_backlog() {
    // A listener with backlog 0 that never accepts: once one connection waits in its queue,
    // the kernel drops further SYNs, so a connect hangs until our timeout.
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        fillers.push(s);
        assert!(fillers.len() < 16, "the backlog never filled");
    }
    for io in backends() {
        let opts = ConnectOptions::default().with_connect_timeout(Some(Duration::from_millis(200)));
        match fails(io, &format!("ws://{addr}/"), opts) {
            ConnectError::ConnectTimeout { addr: a, after } => {
                assert_eq!((a, after), (addr, Duration::from_millis(200)));
            }
            e => panic!("{io:?}: wrong error: {e:?}"),
        }
    }
}

#[test]
fn a_name_with_several_addresses_falls_back_to_the_next() {
    // "localhost" resolves to ::1 and/or 127.0.0.1; the server listens on IPv4 only, so an
    // IPv6 attempt (if any) is refused and the next address is tried.
    let addr = tungstenite_server();
    for io in backends() {
        let rec = Recorder::new().on_open(|ws| ws.close(ringwire_conn::CloseCode::NORMAL, "").unwrap());
        let (id, rec) = run_one(io, &format!("ws://localhost:{}/", addr.port()), ConnectOptions::default(), rec);
        assert_eq!(rec.of(id).first(), Some(&Ev::Open(None)), "{io:?}: {:?}", rec.failures);
        assert_eq!(rec.close_of(id).0, 1000);
    }
}

#[test]
fn ipv6_literal_urls_connect() {
    let listener = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let (req, _) = read_request(&mut s);
            assert_eq!(req.host, format!("[::1]:{}", addr.port()));
            s.write_all(upgrade_101(&req.key, "").as_bytes()).unwrap();
            s.write_all(&server_close(1000, "v6")).unwrap();
            read_to_close(&mut s, &mut Vec::new());
        }
    });
    for io in backends() {
        let (id, rec) =
            run_one(io, &format!("ws://[::1]:{}/", addr.port()), ConnectOptions::default(), Recorder::new());
        assert_eq!(rec.of(id)[0], Ev::Open(None), "{io:?}");
        assert_eq!(rec.close_of(id), (1000, "v6".into()));
    }
}
