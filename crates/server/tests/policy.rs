//! The Origin and Host policy, through the real server (listening on loopback).

mod common;
use common::*;
use ringwire_server::ServerConfig;
use std::net::SocketAddr;

/// An upgrade request with `host` as its Host header and `extra` header lines.
fn upgrade(addr: SocketAddr, host: &str, extra: &str) -> String {
    http(
        addr,
        &format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ),
    )
}

fn status(resp: &str) -> &str {
    resp.split_whitespace().nth(1).unwrap_or("none")
}

/// Runs `check` against a server started with `cfg` on each backend.
fn with_server(cfg: impl Fn(ServerConfig) -> ServerConfig, check: impl Fn(SocketAddr, &str)) {
    for io in backends() {
        let server = start(cfg(config(io)), Echo);
        check(server.local_addr(), &format!("{io:?}"));
        server.shutdown().unwrap();
    }
}

#[test]
fn by_default_browsers_may_connect_only_from_the_same_origin() {
    with_server(
        |c| c,
        |addr, io| {
            let host = addr.to_string();
            let r = upgrade(addr, &host, &format!("Origin: http://{addr}\r\n"));
            assert_eq!(status(&r), "101", "{io}: same origin: {r}");
            let r = upgrade(
                addr,
                &format!("localhost:{}", addr.port()),
                &format!("Origin: http://localhost:{}\r\n", addr.port()),
            );
            assert_eq!(status(&r), "101", "{io}: same origin by name: {r}");
            let r = upgrade(addr, &host, "");
            assert_eq!(status(&r), "101", "{io}: no Origin (not a browser): {r}");
            let r = upgrade(addr, &host, "Origin: https://evil.example\r\n");
            assert_eq!(status(&r), "403", "{io}: cross-origin: {r}");
            assert!(r.contains("origin https://evil.example does not match host"), "{io}: {r}");
            let r = upgrade(addr, &host, &format!("Origin: http://127.0.0.1:{}\r\n", addr.port() ^ 1));
            assert_eq!(status(&r), "403", "{io}: another port is another origin: {r}");
            let r = upgrade(addr, &host, "Origin: null\r\n");
            assert_eq!(status(&r), "403", "{io}: opaque origin: {r}");
        },
    );
}

#[test]
fn an_origin_list_admits_only_its_origins() {
    with_server(
        |c| c.with_allowed_origins(vec!["https://app.example".into()]),
        |addr, io| {
            let host = addr.to_string();
            assert_eq!(status(&upgrade(addr, &host, "Origin: https://app.example\r\n")), "101", "{io}");
            let r = upgrade(addr, &host, &format!("Origin: http://{addr}\r\n"));
            assert_eq!(status(&r), "403", "{io}: same origin, not listed: {r}");
            let r = upgrade(addr, &host, "");
            assert_eq!(status(&r), "403", "{io}: no Origin: {r}");
            assert!(r.contains("an Origin header is required"), "{io}: {r}");
        },
    );
}

#[test]
fn any_origin_when_asked() {
    with_server(
        |mut c| {
            c.allow_any_origin = true;
            c
        },
        |addr, io| {
            let host = addr.to_string();
            assert_eq!(status(&upgrade(addr, &host, "Origin: https://evil.example\r\n")), "101", "{io}");
            assert_eq!(status(&upgrade(addr, &host, "")), "101", "{io}");
        },
    );
}

#[test]
fn a_loopback_server_refuses_a_rebound_host_name() {
    with_server(
        |c| c,
        |addr, io| {
            let port = addr.port();
            for ok in [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("app.localhost:{port}"),
                "[::1]".into(),
            ] {
                assert_eq!(status(&upgrade(addr, &ok, "")), "101", "{io}: {ok}");
            }
            let rebound = format!("attacker.example:{port}");
            // Same origin as far as the browser knows: the page was loaded from the
            // attacker's name, which now resolves to 127.0.0.1.
            let r = upgrade(addr, &rebound, &format!("Origin: http://{rebound}\r\n"));
            assert_eq!(status(&r), "403", "{io}: {r}");
            assert!(r.contains(&format!("host {rebound} is not allowed")), "{io}: {r}");
        },
    );
}

#[test]
fn allowed_hosts_and_any_host() {
    with_server(
        |c| c.with_allowed_hosts(vec!["dev.example".into()]),
        |addr, io| {
            let port = addr.port();
            let r = upgrade(addr, &format!("dev.example:{port}"), &format!("Origin: http://dev.example:{port}\r\n"));
            assert_eq!(status(&r), "101", "{io}: listed host: {r}");
            let r = upgrade(addr, &format!("localhost:{port}"), "");
            assert_eq!(status(&r), "403", "{io}: an explicit list replaces the loopback default: {r}");
        },
    );
    with_server(
        |mut c| {
            c.allow_any_host = true;
            c
        },
        |addr, io| {
            assert_eq!(status(&upgrade(addr, "attacker.example", "")), "101", "{io}");
        },
    );
}
