//! `Server::from_listeners`: listeners made elsewhere (systemd socket activation, the
//! application), served by every worker, on both backends.

mod common;
use common::*;
use ringwire_server::{Server, ServerError};

#[test]
fn every_worker_serves_every_listener_handed_in() {
    for io in backends() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (addr_a, addr_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut cfg = config(io);
        cfg.threads = 2;
        let server = Server::from_listeners(cfg, vec![a, b]).unwrap();
        assert_eq!(server.local_addr(), addr_a);
        assert_eq!(server.workers(), 2);
        let running = server.spawn(Echo);
        // Several clients on each address, all open at once, each echoed.
        let mut clients: Vec<Raw> = (0..8).map(|i| Raw::connect(if i % 2 == 0 { addr_a } else { addr_b })).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(0x1, format!("hello {i}").as_bytes());
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.recv(), (0x1, format!("hello {i}").into_bytes()), "{io:?}");
        }
        wait_for_connections(&running.handle(), 8);
        drop(clients);
        running.shutdown().unwrap();
        // The listeners were the server's: closed with it.
        assert!(!ringwire_testkit::accepts(addr_a), "{io:?}: {addr_a} still accepts");
    }
}

#[test]
fn no_listener_is_an_error_that_says_so() {
    let Err(e) = Server::from_listeners(config(ringwire_server::IoChoice::Epoll), Vec::new()) else {
        panic!("a server without listeners");
    };
    assert!(matches!(e, ServerError::Bind { .. }), "{e:?}");
    assert!(e.to_string().contains("no listener given"), "{e}");
}
