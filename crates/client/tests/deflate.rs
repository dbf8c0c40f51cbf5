//! permessage-deflate between the ringwire client and the ringwire server, on both
//! backends: both modes echo every size, each side reports the extension, an offer to a
//! server without it falls back to plain frames, and a response that does not fit the
//! offer fails the connect with a clear error.

mod common;

use common::*;
use ringwire_client::{ClientLoop, ConnectError, ConnectOptions};
use ringwire_conn::deflate::{DeflateConfig, DeflateError};
use ringwire_conn::{CloseCode, Message};
use ringwire_server::{Handler, Server, ServerConfig, Ws};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Echoes, and records the extensions the server side saw.
#[derive(Clone, Default)]
struct Echo(Arc<Mutex<Vec<String>>>);

impl Handler for Echo {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        self.0.lock().unwrap().extend(ws.extensions().iter().cloned());
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        ws.send(message);
    }
}

fn deflate(shared: bool) -> DeflateConfig {
    let mut d = DeflateConfig::default();
    d.server_no_context_takeover = shared;
    d.client_no_context_takeover = shared;
    d
}

/// Sends `messages` one after the other and closes after the last echo.
fn client_run(io: ringwire_client::IoChoice, url: &str, opts: ConnectOptions, n: usize) -> Recorder {
    let rec = Recorder::new()
        .on_open(move |ws| {
            assert!(ws.send(payload(0)).is_queued());
        })
        .on_message(move |ws, _, got| {
            if got == n {
                ws.close(CloseCode::NORMAL, None).unwrap();
            } else {
                assert!(ws.send(payload(got)).is_queued());
            }
        });
    let (_, rec) = run_one(io, url, opts, rec);
    rec
}

/// Message `i`: text that compresses, of growing size (the last ones over 100 KB).
fn payload(i: usize) -> String {
    format!("message {i}: {}", "ringwire compresses this ".repeat(i * i * 300))
}

#[test]
fn both_modes_echo_compressed_messages_and_report_the_extension() {
    for io in backends() {
        for shared in [true, false] {
            let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
            cfg.connection.deflate = Some(deflate(shared));
            cfg.connection.max_received_message_size = 4 << 20;
            let seen = Echo::default();
            let server = Server::bind(cfg).unwrap().spawn(seen.clone());
            let mut opts = big_opts();
            let mut offer = DeflateConfig::default();
            offer.client_no_context_takeover = shared;
            opts.config.deflate = Some(offer);
            let exts = Arc::new(Mutex::new(Vec::new()));
            let e = Arc::clone(&exts);
            let rec = Recorder::new();
            let mut client = ClientLoop::new(io).unwrap();
            let id = client.connect(&format!("ws://{}/", server.local_addr()), opts).unwrap();
            let mut rec = rec
                .on_open(move |ws| {
                    e.lock().unwrap().extend(ws.extensions().iter().cloned());
                    assert!(ws.send(payload(0)).is_queued());
                })
                .on_message(|ws, _, got| {
                    if got == 6 {
                        ws.close(CloseCode::NORMAL, None).unwrap();
                    } else {
                        assert!(ws.send(payload(got)).is_queued());
                    }
                });
            run(&mut client, &mut rec);
            let want: Vec<Message> = (0..6).map(|i| Message::Text(payload(i).into())).collect();
            assert_eq!(rec.messages(id), want, "{io:?} shared {shared}");
            assert_eq!(rec.close_of(id).0, 1000, "{io:?} shared {shared}");
            let exts = exts.lock().unwrap().clone();
            assert_eq!(exts.len(), 1, "{io:?} shared {shared}: {exts:?}");
            assert!(exts[0].starts_with("permessage-deflate"), "{exts:?}");
            assert_eq!(exts[0].contains("server_no_context_takeover"), shared, "{exts:?}");
            assert_eq!(*seen.0.lock().unwrap(), exts, "{io:?}: both sides agree");
            server.shutdown().unwrap();
        }
    }
}

#[test]
fn an_offer_to_a_server_without_deflate_falls_back_to_plain_frames() {
    for io in backends() {
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
        let server = Server::bind(cfg).unwrap().spawn(Echo::default());
        let mut opts = ConnectOptions::default();
        opts.config.deflate = Some(DeflateConfig::default());
        let rec = client_run(io, &format!("ws://{}/", server.local_addr()), opts, 3);
        assert_eq!(rec.events.iter().filter(|(_, e)| matches!(e, Ev::Message(_))).count(), 3, "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_response_that_does_not_fit_the_offer_fails_the_connect() {
    let addr = raw_server(|mut s| {
        let (req, _) = read_request(&mut s);
        let accept = ringwire_conn::handshake::accept_key(&req.key);
        let _ = write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n\r\n"
        );
    });
    for io in backends() {
        let mut opts = ConnectOptions::default();
        opts.config.deflate = Some(DeflateConfig::default());
        let mut client = ClientLoop::new(io).unwrap();
        let id = client.connect(&format!("ws://{addr}/"), opts).unwrap();
        let mut rec = Recorder::new();
        run(&mut client, &mut rec);
        let e = rec.failure(id);
        assert!(matches!(e, ConnectError::Deflate(DeflateError::ClientWindowEight)), "{io:?}: {e}");
        assert!(e.to_string().contains("permessage-deflate"), "{e}");
    }
}
