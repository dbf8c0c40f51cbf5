//! Bad handshakes get the exact status; subprotocols, origins and limits.

mod common;
use common::*;
use ringwire_server::{Handler, IoChoice, Ws};

fn upgrade(addr: std::net::SocketAddr, extra: &str, version: &str) -> String {
    http(
        addr,
        &format!(
            "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
        ),
    )
}

fn status(resp: &str) -> &str {
    resp.split_whitespace().nth(1).unwrap_or("none")
}

#[test]
fn refusals_carry_the_exact_status() {
    for io in [IoChoice::Auto, IoChoice::Epoll] {
        let mut cfg = config(io);
        cfg.allowed_origins = vec!["https://good.example".into()];
        let server = start(cfg, Echo);
        let addr = server.local_addr();

        let r = upgrade(addr, "Origin: https://good.example\r\n", "7");
        assert_eq!(status(&r), "426", "{r}");
        assert!(r.contains("Sec-WebSocket-Version: 13, 8"), "{r}");

        let r = upgrade(addr, "Origin: https://evil.example\r\n", "13");
        assert_eq!(status(&r), "403", "{r}");

        let r = upgrade(addr, "", "13");
        assert_eq!(status(&r), "403", "no origin when origins are restricted: {r}");

        let r = http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&r), "400", "not an upgrade: {r}");

        let r = http(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\nOrigin: https://good.example\r\n\r\n",
        );
        assert_eq!(status(&r), "400", "bad key: {r}");

        let r = http(addr, "POST / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(status(&r), "405" | "400"), "{r}");

        let huge = format!("X-Big: {}\r\n", "a".repeat(9000));
        let r = upgrade(addr, &huge, "13");
        assert!(matches!(status(&r), "431" | "400"), "oversized request: {}", &r[..r.len().min(80)]);

        let r = upgrade(addr, "Origin: https://GOOD.example\r\n", "13");
        assert_eq!(status(&r), "101", "origins compare case-insensitively: {r}");

        let r = upgrade(addr, "Sec-WebSocket-Origin: https://good.example\r\n", "8");
        assert_eq!(status(&r), "101", "version 8 uses Sec-WebSocket-Origin: {r}");
        server.shutdown().unwrap();
    }
}

#[test]
fn subprotocol_is_chosen_from_the_supported_list() {
    let mut cfg = config(IoChoice::Auto);
    cfg.subprotocols = vec!["superchat".into(), "chat".into()];
    let server = start(cfg, Echo);
    let r = upgrade(server.local_addr(), "Sec-WebSocket-Protocol: chat, superchat\r\n", "13");
    assert_eq!(status(&r), "101", "{r}");
    assert!(r.contains("Sec-WebSocket-Protocol: chat\r\n"), "first offered that we support: {r}");
    let r = upgrade(server.local_addr(), "Sec-WebSocket-Protocol: mqtt\r\n", "13");
    assert!(!r.to_ascii_lowercase().contains("sec-websocket-protocol"), "none chosen: {r}");
    server.shutdown().unwrap();
}

#[test]
fn connection_limit_gives_503_and_handshake_timeout_gives_408() {
    let mut cfg = config(IoChoice::Auto);
    cfg.max_connections = 1;
    cfg.handshake_timeout = std::time::Duration::from_millis(300);
    let server = start(cfg, Echo);
    let addr = server.local_addr();
    let held = Raw::connect(addr);
    let r = upgrade(addr, "", "13");
    assert_eq!(status(&r), "503", "{r}");
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let silent = std::time::Instant::now();
    let r = http(addr, "GET / HTTP/1.1\r\n");
    assert_eq!(status(&r), "408", "{r}");
    assert!(silent.elapsed() >= std::time::Duration::from_millis(250));
    server.shutdown().unwrap();
}

/// Sends the addresses the connection reports as its first message.
#[derive(Clone)]
struct Addresses;

impl Handler for Addresses {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let text = format!("{}|{}", ws.remote_address().unwrap_or("-"), ws.remote_addresses().join(","));
        ws.send(text);
    }
}

/// The upgrade with `extra` headers, then the first message's text.
fn first_message(addr: std::net::SocketAddr, extra: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.write_all(upgrade_request(addr, extra).as_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut raw = Raw { stream };
    String::from_utf8(raw.read_frame().2).unwrap()
}

#[test]
fn remote_addresses_are_the_peer_unless_it_is_a_trusted_proxy() {
    for io in backends() {
        let server = start(config(io), Addresses);
        let addr = server.local_addr();
        assert_eq!(first_message(addr, ""), "127.0.0.1|127.0.0.1");
        let xff = "X-Forwarded-For: 203.0.113.9\r\n";
        assert_eq!(first_message(addr, xff), "127.0.0.1|127.0.0.1", "an untrusted peer's XFF is ignored");
        server.shutdown().unwrap();

        let cfg = config(io).with_trusted_proxies(vec!["127.0.0.1".parse().unwrap()]);
        let server = start(cfg, Addresses);
        assert_eq!(first_message(server.local_addr(), xff), "203.0.113.9|203.0.113.9,127.0.0.1");
        server.shutdown().unwrap();
    }
}
