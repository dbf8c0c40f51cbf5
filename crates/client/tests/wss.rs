//! wss:// against a real ringwire TLS server (ringwire-io's `EventLoop` with
//! `ringwire_tls::TlsHandler::server` around a WebSocket echo), certificates made at test
//! time, on every backend: echo, close, each TLS failure told apart, roots, mTLS, a server
//! that stalls mid-handshake, ws:// and wss:// on one loop.

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::*;
use ringwire_client::rustls::{self, ClientConfig, RootCertStore};
use ringwire_client::{ClientLoop, ConnectError, ConnectOptions, IoChoice, Roots, TlsConfig, TlsError, connect_with};
use ringwire_conn::{CloseCode, Message};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls::*;

/// Options trusting `ca` only.
fn trusting(ca: &Ca) -> ConnectOptions {
    ConnectOptions::default().with_tls(TlsConfig::new().with_roots(Roots::Empty).with_root_der(ca.cert.clone()))
}

/// A server with a leaf for localhost and 127.0.0.1.
fn good_server(choice: IoChoice) -> (Ca, TlsServer) {
    let ca = ca();
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    let server = TlsServer::start(choice, server_config(&ca, &leaf));
    (ca, server)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// The error of a wss connect that must fail, on `choice`.
fn fails(choice: IoChoice, url: &str, opts: ConnectOptions) -> ConnectError {
    match connect_with(url, opts, choice) {
        Ok(_) => panic!("{choice:?}: {url} connected"),
        Err(e) => e,
    }
}

#[test]
fn echo_small_fragmented_and_1mib_over_wss_then_a_clean_close() {
    for choice in backends() {
        let (ca, server) = good_server(choice);
        let mut opts = trusting(&ca);
        opts.config.max_received_message_size = 4 << 20;
        opts.config.max_received_frame_size = 4 << 20;
        let mut ws = connect_with(&format!("wss://localhost:{}/echo", server.addr.port()), opts.clone(), choice)
            .unwrap_or_else(|e| panic!("{choice:?}: {e}"));
        ws.send("hello over tls").unwrap();
        assert_eq!(ws.recv().unwrap(), Message::Text("hello over tls".into()), "{choice:?}");
        let big = pattern(1 << 20, 1);
        ws.send(big.clone()).unwrap();
        assert!(ws.recv().unwrap() == Message::Binary(big.into()), "{choice:?}: 1 MiB echo");
        let (code, _) = ws.close(CloseCode::NORMAL, "bye").unwrap();
        assert_eq!(code, CloseCode::NORMAL, "{choice:?}");
        // the server's TLS layer saw our close_notify: a clean end, not a truncation
        assert_eq!(server.closed(1), vec![None], "{choice:?}");

        // fragmented: 64-byte frames out, echoed frame by frame, joined again here
        opts.config.fragmentation_threshold = 64;
        let frames_before = server.seen.lock().unwrap().frames;
        let mut ws = connect_with(&format!("wss://127.0.0.1:{}/", server.addr.port()), opts, choice).unwrap();
        let text: String = (0..1000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        ws.send(text.clone()).unwrap();
        assert_eq!(ws.recv().unwrap(), Message::Text(text.into()), "{choice:?}");
        assert!(server.seen.lock().unwrap().frames - frames_before >= 16, "{choice:?}: sent in fragments");
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(server.closed(2), vec![None, None], "{choice:?}");
    }
}

#[test]
fn an_untrusted_ca_is_an_unknown_issuer() {
    for choice in backends() {
        let (_ca, server) = good_server(choice);
        let other = ca();
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), trusting(&other));
        assert!(matches!(&e, ConnectError::TlsUnknownIssuer { host, .. } if host == "localhost"), "{choice:?}: {e:?}");
        assert_eq!(e.to_string(), "tls: the certificate of localhost is not signed by a trusted root (unknown issuer)");
        // the webpki roots do not know a test CA either
        #[cfg(feature = "webpki-roots")]
        {
            let webpki = ConnectOptions::default().with_tls(TlsConfig::new().with_roots(Roots::WebPki));
            let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), webpki);
            assert!(matches!(e, ConnectError::TlsUnknownIssuer { .. }), "{choice:?}: {e:?}");
        }
    }
}

#[test]
fn a_certificate_for_another_name_is_a_name_mismatch() {
    for choice in backends() {
        let ca = ca();
        let leaf = ca.leaf(&["example.com"]);
        let server = TlsServer::start(choice, server_config(&ca, &leaf));
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), trusting(&ca));
        match &e {
            ConnectError::TlsNameMismatch { host, presented, .. } => {
                assert_eq!(host, "localhost");
                assert_eq!(presented, &["DnsName(\"example.com\")".to_string()], "{choice:?}");
            }
            e => panic!("{choice:?}: {e:?}"),
        }
        assert_eq!(
            e.to_string(),
            "tls: the certificate of localhost is not valid for that name (it is for DnsName(\"example.com\"))"
        );
        // an IP literal is verified as an IP address: a leaf with only the name does not do
        let e = fails(choice, &format!("wss://127.0.0.1:{}/", server.addr.port()), trusting(&ca));
        assert!(matches!(&e, ConnectError::TlsNameMismatch { host, .. } if host == "127.0.0.1"), "{choice:?}: {e:?}");
    }
}

#[test]
fn expired_and_not_yet_valid_certificates_are_told_apart() {
    let ca = ca();
    let expired = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let future = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2090, 1, 1);
        p.not_after = rcgen::date_time_ymd(2091, 1, 1);
    });
    for choice in backends() {
        let server = TlsServer::start(choice, server_config(&ca, &expired));
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), trusting(&ca));
        assert!(matches!(&e, ConnectError::TlsExpired { host, .. } if host == "localhost"), "{choice:?}: {e:?}");
        let text = e.to_string();
        assert!(text.starts_with("tls: the certificate of localhost has expired ("), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");

        let server = TlsServer::start(choice, server_config(&ca, &future));
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), trusting(&ca));
        assert!(matches!(e, ConnectError::TlsNotYetValid { .. }), "{choice:?}: {e:?}");
        assert!(e.to_string().starts_with("tls: the certificate of localhost is not valid yet ("), "{e}");
    }
}

#[test]
fn a_server_that_wants_a_client_certificate_we_lack_fails_the_handshake() {
    let ca = ca();
    let leaf = ca.leaf(&["localhost"]);
    let clients = self::ca();
    for choice in backends() {
        let server = TlsServer::start(choice, server_config_mtls(&ca, &leaf, &clients));
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), trusting(&ca));
        match &e {
            ConnectError::TlsHandshake { host, error: TlsError::Protocol(rustls::Error::AlertReceived(alert)) } => {
                assert_eq!(host, "localhost");
                assert_eq!(*alert, rustls::AlertDescription::CertificateRequired, "{choice:?}");
            }
            e => panic!("{choice:?}: {e:?}"),
        }
        assert_eq!(e.to_string(), "tls handshake with localhost failed: received fatal alert: CertificateRequired");
    }
}

#[test]
fn mtls_with_a_client_certificate_the_server_requires() {
    let ca = ca();
    let leaf = ca.leaf(&["localhost"]);
    let clients = self::ca();
    let me = clients.leaf(&["client.test"]);
    let stranger = self::ca().leaf(&["client.test"]);
    for choice in backends() {
        let server = TlsServer::start(choice, server_config_mtls(&ca, &leaf, &clients));
        let url = format!("wss://localhost:{}/", server.addr.port());
        // from PEM, with the server's CA added to the system's roots as PEM too
        let tls = TlsConfig::new()
            .with_roots_pem(ca.pem.as_bytes())
            .unwrap()
            .with_client_auth_pem(me.pem.as_bytes(), me.key_pem.as_bytes())
            .unwrap();
        let mut ws = connect_with(&url, ConnectOptions::default().with_tls(tls), choice)
            .unwrap_or_else(|e| panic!("{choice:?}: {e}"));
        ws.send("mutual").unwrap();
        assert_eq!(ws.recv().unwrap(), Message::Text("mutual".into()));
        ws.close(CloseCode::NORMAL, "").unwrap();
        // a certificate from a CA the server does not trust is refused
        let tls = TlsConfig::new()
            .with_roots(Roots::Empty)
            .with_root_der(ca.cert.clone())
            .with_client_auth(vec![stranger.cert.clone()], stranger.key_der());
        let e = fails(choice, &url, ConnectOptions::default().with_tls(tls));
        assert!(matches!(e, ConnectError::TlsHandshake { .. }), "{choice:?}: {e:?}");
        assert!(e.to_string().starts_with("tls handshake with localhost failed: received fatal alert"), "{e}");
    }
}

#[test]
fn no_shared_protocol_version_or_alpn_fails_the_handshake() {
    let ca = ca();
    let leaf = ca.leaf(&["localhost"]);
    // a server of TLS 1.2 only, and a client config of TLS 1.3 only handed in whole
    let mut tls12 = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert.clone()], leaf.key_der())
        .unwrap();
    tls12.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let tls13_only = Arc::new(
        ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    // a server that speaks only h2 over ALPN
    let mut h2 = (*server_config(&ca, &leaf)).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    for choice in backends() {
        let server = TlsServer::start(choice, Arc::new(tls12.clone()));
        let opts = ConnectOptions::default().with_tls(TlsConfig::new().with_rustls_config(tls13_only.clone()));
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), opts);
        assert!(matches!(e, ConnectError::TlsHandshake { .. }), "{choice:?}: {e:?}");
        assert!(e.to_string().starts_with("tls handshake with localhost failed: "), "{e}");

        // ... while the same server is fine with the default (1.2 and 1.3)
        let mut ws = connect_with(&format!("wss://localhost:{}/", server.addr.port()), trusting(&ca), choice).unwrap();
        ws.send("tls 1.2").unwrap();
        assert_eq!(ws.recv().unwrap(), Message::Text("tls 1.2".into()));
        ws.close(CloseCode::NORMAL, "").unwrap();

        let server = TlsServer::start(choice, Arc::new(h2.clone()));
        let e = fails(choice, &format!("wss://localhost:{}/", server.addr.port()), trusting(&ca));
        match &e {
            ConnectError::TlsHandshake { error: TlsError::Protocol(rustls::Error::AlertReceived(a)), .. } => {
                assert_eq!(*a, rustls::AlertDescription::NoApplicationProtocol, "{choice:?}")
            }
            e => panic!("{choice:?}: {e:?}"),
        }
    }
}

#[test]
fn a_server_that_stalls_mid_handshake_times_out_within_the_handshake_timeout() {
    // accepts, reads the client hello, never answers
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    for choice in backends() {
        let opts = ConnectOptions::default().with_handshake_timeout(Some(Duration::from_millis(300)));
        let started = Instant::now();
        let e = fails(choice, &format!("wss://localhost:{}/", addr.port()), opts);
        let took = started.elapsed();
        match e {
            ConnectError::HandshakeTimeout { after, .. } => assert_eq!(after, Duration::from_millis(300)),
            e => panic!("{choice:?}: {e:?}"),
        }
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{choice:?}: {took:?}");
    }
}

#[test]
fn a_server_that_closes_mid_handshake_closed_before_the_upgrade() {
    // reads the client hello, then closes (a FIN, no alert)
    let addr = raw_server(|mut s| {
        let mut head = [0u8; 5];
        std::io::Read::read_exact(&mut s, &mut head).unwrap();
        assert_eq!(head[0], 0x16, "a TLS handshake record");
        // all of it, so that the close is a FIN and not a reset for unread data
        let mut hello = vec![0u8; u16::from_be_bytes([head[3], head[4]]) as usize];
        std::io::Read::read_exact(&mut s, &mut hello).unwrap();
    });
    for choice in backends() {
        match fails(choice, &format!("wss://localhost:{}/", addr.port()), ConnectOptions::default()) {
            ConnectError::ClosedBeforeUpgrade { received: 0, .. } => {}
            e => panic!("{choice:?}: {e:?}"),
        }
    }
}

#[test]
fn a_refused_wss_connect_is_refused() {
    let dead = dead_port();
    for choice in backends() {
        match fails(choice, &format!("wss://127.0.0.1:{}/", dead.port()), ConnectOptions::default()) {
            ConnectError::Refused { addr } => assert_eq!(addr, dead),
            e => panic!("{choice:?}: {e:?}"),
        }
    }
}

#[test]
fn ws_and_wss_connections_on_one_loop() {
    for choice in backends() {
        let (ca, tls_server) = good_server(choice);
        let plain = tungstenite_server();
        let mut client = ClientLoop::new(choice).unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(client.connect(&format!("wss://localhost:{}/", tls_server.addr.port()), trusting(&ca)).unwrap());
            ids.push(client.connect(&format!("ws://{plain}/"), ConnectOptions::default()).unwrap());
        }
        let mut rec = Recorder::new()
            .on_open(|ws| {
                let id = ws.id();
                ws.send(format!("hi {id}"));
            })
            .on_message(|ws, _m, _n| {
                let _ = ws.close(CloseCode::NORMAL, "done");
            });
        run(&mut client, &mut rec);
        assert!(rec.failures.is_empty(), "{choice:?}: {:?}", rec.failures);
        assert!(rec.errors.is_empty(), "{choice:?}: {:?}", rec.errors);
        for id in ids {
            assert_eq!(rec.messages(id), vec![Message::Text(format!("hi {id}").into())], "{choice:?}");
            assert_eq!(rec.close_of(id).0, 1000, "{choice:?}");
        }
        assert_eq!(tls_server.closed(3), vec![None; 3], "{choice:?}: close_notify on each");
    }
}

#[test]
fn settings_build_one_rustls_config_shared_by_clones() {
    let ca = ca();
    let tls = TlsConfig::new().with_roots(Roots::Empty).with_root_der(ca.cert.clone());
    let a = tls.client_config().unwrap();
    let b = tls.clone().client_config().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "clones share the built config");
    assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
    // a clone changed afterwards gets its own
    let c = tls.clone().with_root_der(self::ca().cert.clone()).client_config().unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    // the default settings: one config per process
    #[cfg(feature = "webpki-roots")]
    {
        let w1 = TlsConfig::new().with_roots(Roots::WebPki).client_config().unwrap();
        let w2 = TlsConfig::new().with_roots(Roots::WebPki).client_config().unwrap();
        assert!(Arc::ptr_eq(&w1, &w2));
    }
    // a whole config handed in is used as it is
    let custom = Arc::new((*a).clone());
    assert!(Arc::ptr_eq(&TlsConfig::new().with_rustls_config(custom.clone()).client_config().unwrap(), &custom));
    // a key that does not fit the certificate
    let leaf = ca.leaf(&["x"]);
    let other = ca.leaf(&["y"]);
    let e = TlsConfig::new()
        .with_roots(Roots::Empty)
        .with_root_der(ca.cert.clone())
        .with_client_auth(vec![leaf.cert.clone()], other.key_der())
        .client_config()
        .unwrap_err();
    assert!(matches!(e, ConnectError::TlsConfig(_)), "{e:?}");
}
