//! The client against the ringwire server: echo, fragmentation both ways, subprotocols,
//! origin and headers, version 8, refusals with their status, close paths, pings from the
//! server's keepalive. Client and server run on the same backend, both backends in turn.

mod common;

use common::*;
use ringwire_client::{ConnectError, ConnectOptions, IoChoice};
use ringwire_conn::handshake::Request;
use ringwire_conn::{CloseCode, Keepalive, Message};
use ringwire_server::{Decision, Handler, RunningServer, Server, ServerConfig, Ws};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Echoes; `close:CODE` closes with that code. Records the requests it saw.
#[derive(Clone, Default)]
struct Echo {
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Handler for Echo {
    fn on_request(&mut self, request: &Request, supported: &[String]) -> Decision {
        self.requests.lock().unwrap().push(request.clone());
        if request.path == "/forbidden" {
            return Decision::reject(403, "no entry here");
        }
        let chosen = request.protocols.iter().find(|p| supported.iter().any(|s| s.eq_ignore_ascii_case(p)));
        Decision::accept(chosen.map(String::as_str))
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        if let Message::Text(t) = &message
            && let Some(code) = t.strip_prefix("close:")
        {
            let _ = ws.close(CloseCode(code.parse().unwrap()), "server says bye");
            return;
        }
        ws.send(message);
    }
}

/// The ringwire server puts its refusal reason in `X-WebSocket-Reject-Reason`.
fn reject_reason(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("X-WebSocket-Reject-Reason"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn server(io: IoChoice, tweak: impl FnOnce(&mut ServerConfig)) -> (RunningServer, Echo) {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
    cfg.connection.max_received_frame_size = 16 << 20;
    cfg.connection.max_received_message_size = 16 << 20;
    cfg.connection.keepalive = None;
    tweak(&mut cfg);
    let echo = Echo::default();
    (Server::bind(cfg).expect("bind").spawn(echo.clone()), echo)
}

/// Sends "small" and then `big` on open, and closes once both came back.
fn small_then(big: bytes::Bytes) -> Recorder {
    Recorder::new()
        .on_open(move |ws| {
            assert!(ws.send("small").is_queued());
            assert!(ws.send(big.clone()).is_queued());
        })
        .on_message(|ws, _, n| {
            if n == 2 {
                ws.close(CloseCode::NORMAL, "").unwrap();
            }
        })
}

#[test]
fn echo_large_and_fragmented_both_ways() {
    for io in backends() {
        let (srv, _) = server(io, |_| {});
        let mut opts = big_opts();
        opts.config.fragmentation_threshold = 4096;
        let big: bytes::Bytes = (0..3_000_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>().into();
        let (id, rec) = run_one(io, &format!("ws://{}/echo", srv.local_addr()), opts, small_then(big.clone()));
        let got = rec.messages(id);
        assert_eq!(got, vec![Message::Text("small".into()), Message::Binary(big)], "{io:?}");
        assert_eq!(rec.close_of(id).0, 1000);
        srv.shutdown().unwrap();
    }
}

#[test]
fn subprotocol_origin_and_headers_reach_the_server() {
    for io in backends() {
        let (srv, echo) = server(io, |c| {
            c.subprotocols = vec!["v2.chat".into()];
            c.allowed_origins = vec!["http://allowed.example".into()];
        });
        let url = format!("ws://{}/room?id=7", srv.local_addr());
        let opts = ConnectOptions::default()
            .with_protocols(["v1.chat", "v2.chat"])
            .with_origin("http://allowed.example")
            .with_header("Authorization", "Bearer t0ken");
        let rec = Recorder::new().on_open(|ws| ws.close(CloseCode::NORMAL, "").unwrap());
        let (id, rec) = run_one(io, &url, opts, rec);
        assert_eq!(rec.of(id)[0], Ev::Open(Some("v2.chat".into())), "{io:?}");
        let req = echo.requests.lock().unwrap().pop().unwrap();
        assert_eq!((req.path.as_str(), req.query.as_deref()), ("/room", Some("id=7")));
        assert_eq!(req.host, srv.local_addr().to_string());
        assert_eq!(req.origin.as_deref(), Some("http://allowed.example"));
        assert_eq!(req.protocols, vec!["v1.chat".to_string(), "v2.chat".into()]);
        assert!(req.headers.iter().any(|(k, v)| k == "Authorization" && v == "Bearer t0ken"));

        // A wrong origin is refused by the server's allow-list: 403 with its reason.
        let opts = ConnectOptions::default().with_origin("http://evil.example");
        let (id, mut rec) = run_one(io, &url, opts, Recorder::new());
        match rec.failure(id) {
            ConnectError::Status { status: 403, headers, .. } => {
                assert!(reject_reason(&headers).contains("not allowed"), "{headers:?}")
            }
            e => panic!("{io:?}: wrong error {e:?}"),
        }
        srv.shutdown().unwrap();
    }
}

#[test]
fn a_handler_rejection_comes_back_with_status_and_reason() {
    for io in backends() {
        let (srv, _) = server(io, |_| {});
        let url = format!("ws://{}/forbidden", srv.local_addr());
        let (id, mut rec) = run_one(io, &url, ConnectOptions::default(), Recorder::new());
        match rec.failure(id) {
            ConnectError::Status { status, headers, .. } => {
                assert_eq!(status, 403, "{io:?}");
                assert_eq!(reject_reason(&headers), "no entry here");
            }
            e => panic!("{io:?}: wrong error {e:?}"),
        }
        srv.shutdown().unwrap();
    }
}

#[test]
fn version_8_handshake() {
    for io in backends() {
        // A cross-origin request: the server's default (same origin only) would refuse it.
        let (srv, echo) = server(io, |c| c.allowed_origins = vec!["http://old.example".into()]);
        let opts = ConnectOptions::default().with_version(8).with_origin("http://old.example");
        let rec = Recorder::new()
            .on_open(|ws| {
                assert_eq!(ws.version(), 8);
                assert!(ws.send("v8").is_queued());
            })
            .on_message(|ws, _, _| ws.close(CloseCode::NORMAL, "").unwrap());
        let (id, rec) = run_one(io, &format!("ws://{}/", srv.local_addr()), opts, rec);
        assert_eq!(rec.messages(id), vec![Message::Text("v8".into())], "{io:?}");
        let req = echo.requests.lock().unwrap().pop().unwrap();
        assert_eq!((req.version, req.origin.as_deref()), (8, Some("http://old.example")));
        srv.shutdown().unwrap();
    }
}

#[test]
fn close_initiated_by_either_side_and_by_server_shutdown() {
    for io in backends() {
        let (srv, _) = server(io, |_| {});
        let url = format!("ws://{}/", srv.local_addr());
        // Server-initiated, with a custom code.
        let rec = Recorder::new().on_open(|ws| {
            assert!(ws.send("close:4321").is_queued());
        });
        let (id, rec) = run_one(io, &url, ConnectOptions::default(), rec);
        assert_eq!(rec.close_of(id), (4321, "server says bye".into()), "{io:?}");
        // Client-initiated: the server echoes our code.
        let rec = Recorder::new().on_open(|ws| ws.close(CloseCode::GOING_AWAY, "leaving").unwrap());
        let (id, rec) = run_one(io, &url, ConnectOptions::default(), rec);
        assert_eq!(rec.close_of(id).0, 1001, "{io:?}");
        // Server shutdown while the client is connected: 1001 from the server.
        let handle = srv.handle();
        let rec = Recorder::new().on_open(move |_| handle.shutdown());
        let (id, rec) = run_one(io, &url, ConnectOptions::default(), rec);
        assert_eq!(rec.close_of(id).0, 1001, "{io:?}: {:?}", rec.of(id));
        srv.join().unwrap();
    }
}

/// Counts pings (auto-pong stays on) and closes after the third.
struct PingCounter {
    pings: usize,
    close: Option<u16>,
}

impl ringwire_client::ClientHandler for PingCounter {
    fn on_ping(&mut self, ws: &mut ringwire_client::ClientWs<'_>, _payload: &bytes::Bytes) -> bool {
        self.pings += 1;
        if self.pings == 3 {
            ws.close(CloseCode::NORMAL, "three pings").unwrap();
        }
        true
    }
    fn on_close(&mut self, _ws: &mut ringwire_client::ClientWs<'_>, code: CloseCode, _description: &str) {
        self.close = Some(code.as_u16());
    }
}

#[test]
fn server_keepalive_pings_are_answered() {
    for io in backends() {
        // The server pings after 50 ms of silence and drops a peer silent for 200 ms more:
        // only our automatic pongs keep the connection up through three pings.
        let (srv, _) = server(io, |c| {
            c.connection.keepalive = Some(Keepalive::new(Duration::from_millis(50), Duration::from_millis(200)));
        });
        let mut client = ringwire_client::ClientLoop::new(io).unwrap();
        client.connect(&format!("ws://{}/", srv.local_addr()), ConnectOptions::default()).unwrap();
        let mut h = PingCounter { pings: 0, close: None };
        run(&mut client, &mut h);
        assert_eq!((h.pings, h.close), (3, Some(1000)), "{io:?}");
        srv.shutdown().unwrap();
    }
}

#[test]
fn wss_to_the_ringwire_server_echoes_large_and_fragmented_and_closes_cleanly() {
    use ringwire_client::TlsConfig;
    use ringwire_testkit::tls::Pki;
    use ringwire_tls::{CertKeyPem, ServerTlsConfig};
    let pki = Pki::localhost();
    for io in backends() {
        let pair = CertKeyPem::memory(pki.leaf_pem.clone(), pki.key_pem.clone());
        let (srv, echo) = server(io, |c| c.tls = Some(ServerTlsConfig::new(pair)));
        let mut opts = big_opts().with_tls(TlsConfig::new().with_root_der(pki.ca.clone()));
        opts.config.fragmentation_threshold = 4096;
        let big: bytes::Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        // By name, and by IP literal (the leaf names both).
        for host in ["localhost", "127.0.0.1"] {
            let url = format!("wss://{host}:{}/echo", srv.local_addr().port());
            let (id, rec) = run_one(io, &url, opts.clone(), small_then(big.clone()));
            assert_eq!(
                rec.messages(id),
                vec![Message::Text("small".into()), Message::Binary(big.clone())],
                "{io:?} {host}"
            );
            assert_eq!(rec.close_of(id).0, 1000, "{io:?} {host}: a clean close, no TLS error");
        }
        let req = echo.requests.lock().unwrap().pop().unwrap();
        assert_eq!(req.host, format!("127.0.0.1:{}", srv.local_addr().port()));
        // The same server refuses a client that does not trust its CA, in the handshake.
        let (id, mut rec) =
            run_one(io, &format!("wss://localhost:{}/", srv.local_addr().port()), big_opts(), Recorder::new());
        assert!(matches!(rec.failure(id), ConnectError::TlsUnknownIssuer { .. }), "{io:?}");
        srv.shutdown().unwrap();
    }
}
