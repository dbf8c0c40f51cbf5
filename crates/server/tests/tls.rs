//! The server over TLS (`ServerConfig::tls`), with a client that is not ringwire's (rustls'
//! classic API over a std socket, and raw WebSocket frames): echo, close, SNI, rotation,
//! the handshake timeout and the connection limit covering the TLS handshake, on both backends.

mod common;
use common::*;
use ringwire_server::{ServerConfig, ServerError};
use ringwire_testkit::tls::{Pki, TlsStream, peer_leaf, tls_connect};
use ringwire_tls::{CertKeyPem, ServerTlsConfig, TlsConfigError};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn pair(p: &Pki) -> CertKeyPem {
    CertKeyPem::memory(p.leaf_pem.clone(), p.key_pem.clone())
}

fn tls_config(io: ringwire_server::IoChoice, tls: ServerTlsConfig) -> ServerConfig {
    config(io).with_tls(tls)
}

fn raw(addr: SocketAddr, p: &Pki) -> Raw<TlsStream> {
    Raw::over(tls_connect(addr, "localhost", p.client_config()).expect("tls handshake"), addr)
}

/// Reads until the server's close_notify (Ok(0)); an EOF without it is an error in rustls.
fn clean_eof(s: &mut TlsStream) -> std::io::Result<()> {
    let mut b = [0u8; 256];
    loop {
        if s.read(&mut b)? == 0 {
            return Ok(());
        }
    }
}

/// One whole message (the server fragments what it sends at 16 KiB by default).
fn recv_message(c: &mut Raw<TlsStream>) -> (u8, Vec<u8>) {
    let (mut fin, op, mut all) = c.read_frame();
    while !fin {
        let (f, cont, more) = c.read_frame();
        assert_eq!(cont, 0x0, "a continuation");
        all.extend_from_slice(&more);
        fin = f;
    }
    (op, all)
}

#[test]
fn echo_fragments_large_messages_and_a_clean_close_over_tls() {
    let p = Pki::localhost();
    for io in backends() {
        let server = start(tls_config(io, ServerTlsConfig::new(pair(&p))), Echo);
        let addr = server.local_addr();
        let mut c = raw(addr, &p);
        assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "{io:?}");
        c.send(0x1, b"hello");
        assert_eq!(c.recv(), (0x1, b"hello".to_vec()), "{io:?}");
        // Fragmented, with a ping between the fragments.
        c.frame(false, 0, 0x2, b"ab", true);
        c.frame(true, 0, 0x9, b"p", true);
        c.frame(true, 0, 0x0, b"cd", true);
        assert_eq!(c.recv(), (0xA, b"p".to_vec()), "{io:?}");
        assert_eq!(c.recv(), (0x2, b"abcd".to_vec()), "{io:?}");
        // 1 MiB and 5 MiB: many records and many ciphertext chunks each way.
        for len in [1 << 20, 5 << 20] {
            let big: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            c.send(0x2, &big);
            let (op, back) = recv_message(&mut c);
            assert!(
                op == 0x2 && back == big,
                "{io:?}: {len} bytes echoed: op {op}, {} bytes: {:?}",
                back.len(),
                String::from_utf8_lossy(&back[..back.len().min(64)])
            );
        }
        // A clean close: the close handshake, then the server's close_notify before EOF.
        c.send(0x8, &ringwire_testkit::close_frame(1000, "bye"));
        assert_eq!(c.read_close().0, 1000, "{io:?}");
        clean_eof(&mut c.stream).unwrap_or_else(|e| panic!("{io:?}: no close_notify before EOF: {e}"));
        wait_for_connections(&server.handle(), 0);
        server.shutdown().unwrap();
    }
}

#[test]
fn the_certificate_is_chosen_by_sni_with_a_default_for_other_names() {
    let (a, b, any, default) = (
        Pki::new(&["a.example.com"]),
        Pki::new(&["b.example.com"]),
        Pki::new(&["x.wild.example.com"]),
        Pki::localhost(),
    );
    let tls = ServerTlsConfig::new(pair(&default))
        .with_sni("A.example.com", pair(&a))
        .with_sni("b.example.com", pair(&b))
        .with_sni("*.wild.example.com", pair(&any));
    let server = start(tls_config(backends()[0], tls), Echo);
    let addr = server.local_addr();
    for (name, p) in
        [("a.example.com", &a), ("b.example.com", &b), ("x.wild.example.com", &any), ("localhost", &default)]
    {
        let s = tls_connect(addr, name, p.client_config()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(peer_leaf(&s), p.leaf, "{name}");
    }
    // The wildcard covers one label only: a deeper name gets the default (and fails to verify
    // against the wildcard's CA).
    let s = tls_connect(addr, "localhost", default.client_config()).unwrap();
    assert_eq!(peer_leaf(&s), default.leaf);
    assert!(tls_connect(addr, "y.x.wild.example.com", any.client_config()).is_err());
    server.shutdown().unwrap();

    // Without a default, a name nobody serves is refused in the handshake.
    let server =
        start(tls_config(backends()[0], ServerTlsConfig::sni_only().with_sni("a.example.com", pair(&a))), Echo);
    let addr = server.local_addr();
    assert_eq!(peer_leaf(&tls_connect(addr, "a.example.com", a.client_config()).unwrap()), a.leaf);
    let e = tls_connect(addr, "localhost", default.client_config()).unwrap_err();
    // rustls refuses a hello its resolver has no certificate for with access_denied.
    assert!(e.to_string().contains("received fatal alert: AccessDenied"), "{e}");
    // ... and the worker serves on.
    assert_eq!(peer_leaf(&tls_connect(addr, "a.example.com", a.client_config()).unwrap()), a.leaf);
    server.shutdown().unwrap();
}

#[test]
fn rotation_serves_the_new_pair_to_new_connections_and_keeps_the_old_on_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("ringwire-tls-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (Pki::localhost(), Pki::localhost());
    let (cert, key) = first.write(&dir, "server");
    let tls = ServerTlsConfig::new(CertKeyPem::files(&cert, &key));
    let server = start(tls_config(backends()[0], tls).with_threads(2), Echo);
    let (addr, handle) = (server.local_addr(), server.handle());
    let mut old = raw(addr, &first);
    assert_eq!(peer_leaf(&old.stream), first.leaf);

    // New files, reloaded: every new connection (on either worker) gets the new pair.
    second.write(&dir, "server");
    handle.reload_tls().unwrap();
    for _ in 0..8 {
        assert_eq!(peer_leaf(&tls_connect(addr, "localhost", second.client_config()).unwrap()), second.leaf);
    }
    // The connection made before keeps working.
    old.send(0x1, b"still here");
    assert_eq!(old.recv(), (0x1, b"still here".to_vec()));

    // A broken key file: the reload fails, says why, and the pair in force stays.
    std::fs::write(&key, "not a key").unwrap();
    let e = handle.reload_tls().unwrap_err();
    assert!(matches!(e, TlsConfigError::NoKey(_)), "{e}");
    assert!(e.to_string().contains("server.key: no private key found"), "{e}");
    // A key that is not the certificate's.
    std::fs::write(&key, &first.key_pem).unwrap();
    let e = handle.reload_tls().unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    std::fs::remove_file(&cert).unwrap();
    assert!(matches!(handle.reload_tls().unwrap_err(), TlsConfigError::Read { .. }));
    for _ in 0..4 {
        assert_eq!(peer_leaf(&tls_connect(addr, "localhost", second.client_config()).unwrap()), second.leaf);
    }
    // The API swap, from memory.
    handle.set_tls(ServerTlsConfig::new(pair(&first))).unwrap();
    assert_eq!(peer_leaf(&tls_connect(addr, "localhost", first.client_config()).unwrap()), first.leaf);
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_certificate_fails_bind_with_the_file_named() {
    let e = ringwire_server::Server::bind(
        config(backends()[0])
            .with_tls(ServerTlsConfig::new(CertKeyPem::files("/nonexistent/c.pem", "/nonexistent/k.pem"))),
    )
    .err()
    .expect("bind must fail");
    assert!(matches!(e, ServerError::Tls(TlsConfigError::Read { .. })), "{e}");
    assert_eq!(e.to_string(), "tls: cannot read /nonexistent/c.pem: No such file or directory (os error 2)");
}

#[test]
fn a_client_stalled_mid_handshake_is_closed_at_the_handshake_timeout_and_others_are_served() {
    let p = Pki::localhost();
    for io in backends() {
        let mut cfg = tls_config(io, ServerTlsConfig::new(pair(&p)));
        cfg.handshake_timeout = Duration::from_millis(300);
        let server = start(cfg, Echo);
        let (addr, handle) = (server.local_addr(), server.handle());
        // One that sends nothing, one that stops inside its ClientHello, one that finishes
        // TLS but never sends the upgrade request.
        let silent = TcpStream::connect(addr).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
        let no_upgrade = tls_connect(addr, "localhost", p.client_config()).unwrap();
        wait_for_connections(&handle, 3);
        let t0 = Instant::now();
        // Meanwhile others are served.
        let mut c = raw(addr, &p);
        c.send(0x1, b"x");
        assert_eq!(c.recv(), (0x1, b"x".to_vec()));
        drop(c);
        wait_for_connections(&handle, 0);
        assert!(t0.elapsed() < Duration::from_secs(3), "{io:?}: closed after {:?}", t0.elapsed());
        for mut s in [silent, half] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 64];
            let r = s.read(&mut b);
            assert!(
                matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "{io:?}: closed, not {r:?}"
            );
        }
        // The one past TLS gets the HTTP answer, 408, inside TLS.
        let mut s = no_upgrade;
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 408"), "{io:?}: {text:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn handshaking_tls_connections_count_toward_max_connections_and_those_over_it_are_dropped_at_once() {
    let p = Pki::localhost();
    for io in backends() {
        let mut cfg = tls_config(io, ServerTlsConfig::new(pair(&p)));
        cfg.max_connections = 2;
        let server = start(cfg, Echo);
        let (addr, handle) = (server.local_addr(), server.handle());
        let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        wait_for_connections(&handle, 2);
        // Over the limit: dropped at accept, no TLS handshake spent on it (a 503 could only
        // go out after one), and no descriptor held: 50 silent ones are all closed at once.
        assert!(tls_connect(addr, "localhost", p.client_config()).is_err(), "{io:?}: no handshake");
        let t0 = Instant::now();
        // A reset may already be there when connect() returns to us (a loaded host): that
        // is the drop too.
        let over: Vec<TcpStream> = (0..50)
            .filter_map(|_| match TcpStream::connect(addr) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
                Err(e) => panic!("{io:?}: connect: {e}"),
            })
            .collect();
        for mut s in over {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let r = s.read(&mut [0u8; 16]);
            assert!(
                matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "{io:?}: dropped, not {r:?}"
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{io:?}: dropped after {:?}", t0.elapsed());
        assert_eq!(handle.connections(), 2, "{io:?}");
        drop(held);
        wait_for_connections(&handle, 0);
        let mut c = raw(addr, &p);
        c.send(0x1, b"now");
        assert_eq!(c.recv(), (0x1, b"now".to_vec()), "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn plaintext_and_garbage_on_a_tls_port_are_closed_and_the_worker_serves_on() {
    let p = Pki::localhost();
    for io in backends() {
        let server = start(tls_config(io, ServerTlsConfig::new(pair(&p))), Echo);
        let addr = server.local_addr();
        for junk in [upgrade_request(addr, "").into_bytes(), vec![0x16, 0x03, 0x03, 0xff, 0xff, 0], vec![0u8; 4096]] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&junk).unwrap();
            let mut back = Vec::new();
            let _ = s.read_to_end(&mut back);
            assert!(!back.starts_with(b"HTTP"), "{io:?}: a TLS port answers no plaintext");
        }
        wait_for_connections(&server.handle(), 0);
        let mut c = raw(addr, &p);
        c.send(0x1, b"fine");
        assert_eq!(c.recv(), (0x1, b"fine".to_vec()), "{io:?}");
        server.shutdown().unwrap();
    }
}
