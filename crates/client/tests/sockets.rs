//! The spec's socket-level behaviour through the real client, on both backends:
//! `disableNagleAlgorithm` and `useNativeKeepalive` per connection, and socket errors
//! reaching `on_error` (Node's `error` event) before `on_close`.

mod common;

use common::*;
use ringwire_client::ConnectOptions;
use ringwire_conn::{CloseCode, Config, ConnError, Keepalive};
use ringwire_testkit::{SocketOptions, socket_options};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// A server that upgrades and then waits for the client to go.
fn holding_server() -> SocketAddr {
    raw_server(|mut s| {
        upgrade(&mut s, None);
        read_to_close(&mut s, &mut Vec::new());
    })
}

/// The options of the client's socket to `server`, read in `on_open`.
fn options_of(io: ringwire_client::IoChoice, server: SocketAddr, config: Config) -> SocketOptions {
    let seen = Rc::new(Cell::new(None));
    let s = Rc::clone(&seen);
    let rec = Recorder::new().on_open(move |ws| {
        s.set(socket_options(server, None));
        ws.drop_connection(CloseCode::NORMAL, "", true);
    });
    run_one(io, &format!("ws://{server}/"), ConnectOptions::default().with_config(config), rec);
    seen.get().expect("the client's socket")
}

#[test]
fn disable_nagle_algorithm_is_set_per_connection() {
    let server = holding_server();
    for io in backends() {
        for nodelay in [true, false] {
            let mut config = Config::client();
            config.disable_nagle_algorithm = nodelay;
            let o = options_of(io, server, config);
            assert_eq!(o.nodelay, nodelay, "{io:?}");
            assert!(!o.keepalive, "{io:?}");
        }
    }
}

#[test]
fn use_native_keepalive_sets_so_keepalive_with_the_interval() {
    let server = holding_server();
    for io in backends() {
        let mut config = Config::client();
        config.keepalive = Some(Keepalive::new(Duration::from_secs(7), Duration::from_secs(3)));
        config.use_native_keepalive = true;
        let o = options_of(io, server, config.clone());
        assert!(o.keepalive && o.keepalive_idle == Duration::from_secs(7), "{io:?}: {o:?}");
        config.use_native_keepalive = false;
        assert!(!options_of(io, server, config).keepalive, "{io:?}: ping keepalive, no SO_KEEPALIVE");
    }
}

#[test]
fn a_reset_by_the_server_reaches_on_error_then_on_close_1006() {
    let addr = raw_server(|mut s| {
        upgrade(&mut s, None);
        // An abortive close: the client's read fails with ECONNRESET.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    });
    for io in backends() {
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), Recorder::new());
        let reset = ConnError::Socket { kind: std::io::ErrorKind::ConnectionReset, os_code: Some(104) };
        assert_eq!(rec.errors, std::slice::from_ref(&reset), "{io:?}");
        assert_eq!(
            &rec.of(id)[1..],
            [Ev::Error(reset.to_string()), Ev::Close(1006, "Connection dropped by remote peer.".into())],
            "{io:?}"
        );
    }
}
