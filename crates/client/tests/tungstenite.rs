//! The client against an independent server (tokio-tungstenite): echo, large messages,
//! fragmentation, close paths, ping/pong, many connections on one loop. Every test runs on
//! both backends.

mod common;

use bytes::Bytes;
use common::*;
use ringwire_client::{ClientLoop, ConnectOptions};
use ringwire_conn::{CloseCode, Message, SendError, SendToken};
use std::cell::RefCell;
use std::rc::Rc;

#[test]
fn echoes_text_binary_and_large_messages() {
    let addr = tungstenite_server();
    for io in backends() {
        let large: Bytes = (0..6u32 << 20).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>().into();
        let large2 = large.clone();
        let rec = Recorder::new()
            .on_open(move |ws| {
                assert!(ws.send("hello").is_queued());
                assert!(ws.send(Bytes::from_static(&[0, 1, 2, 255])).is_queued());
                assert!(ws.send("").is_queued());
                assert!(ws.send(large2.clone()).is_queued());
            })
            .on_message(|ws, _, n| {
                if n == 4 {
                    ws.close(CloseCode::NORMAL, "done").unwrap();
                }
            });
        let (id, rec) = run_one(io, &format!("ws://{addr}/echo"), big_opts(), rec);
        let got = rec.messages(id);
        assert_eq!(got.len(), 4, "{io:?}");
        assert_eq!(got[0], Message::Text("hello".into()));
        assert_eq!(got[1], Message::Binary(Bytes::from_static(&[0, 1, 2, 255])));
        assert_eq!(got[2], Message::Text("".into()));
        assert_eq!(got[3], Message::Binary(large), "{io:?}: large echo differs");
        assert_eq!(rec.close_of(id), (1000, "done".into()), "{io:?}");
        assert!(rec.errors.is_empty(), "{:?}", rec.errors);
    }
}

#[test]
fn outgoing_fragmentation_is_reassembled_by_the_server() {
    let addr = tungstenite_server();
    for io in backends() {
        let mut opts = big_opts();
        opts.config.fragmentation_threshold = 1000;
        let text: String = "αβγ-".repeat(5000); // multi-byte chars split across frames
        let t2 = text.clone();
        let rec = Recorder::new()
            .on_open(move |ws| {
                assert!(ws.send(t2.clone()).is_queued());
            })
            .on_message(|ws, _, _| ws.close(CloseCode::NORMAL, "").unwrap());
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, rec);
        assert_eq!(rec.messages(id), vec![Message::Text(text.into())], "{io:?}");
        assert_eq!(rec.close_of(id).0, 1000);
    }
}

#[test]
fn client_default_limits_refuse_an_oversized_frame_with_1009() {
    let addr = tungstenite_server();
    for io in backends() {
        // Config::client(): frames up to 1 MiB. The server answers 2 MiB in one frame.
        let rec = Recorder::new().on_open(|ws| {
            assert!(ws.send(format!("big:{}", 2 << 20)).is_queued());
        });
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        assert!(rec.messages(id).is_empty());
        assert_eq!(rec.close_of(id).0, 1009, "{io:?}: {:?}", rec.of(id));
        assert_eq!(rec.errors.len(), 1, "{:?}", rec.errors);
        // Just under the limit is fine.
        let rec = Recorder::new()
            .on_open(|ws| {
                assert!(ws.send(format!("big:{}", 1 << 20)).is_queued());
            })
            .on_message(|ws, _, _| ws.close(CloseCode::NORMAL, "").unwrap());
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        assert_eq!(rec.messages(id).len(), 1);
        assert_eq!(rec.messages(id)[0].len(), 1 << 20);
    }
}

#[test]
fn server_initiated_close_reports_its_code_and_reason() {
    let addr = tungstenite_server();
    for io in backends() {
        let rec = Recorder::new().on_open(|ws| {
            assert!(ws.send("close:4001:custom reason").is_queued());
        });
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        assert_eq!(rec.close_of(id), (4001, "custom reason".into()), "{io:?}");
        assert!(rec.errors.is_empty());
    }
}

#[test]
fn client_initiated_close_completes_and_later_sends_are_refused() {
    let addr = tungstenite_server();
    for io in backends() {
        let after: Rc<RefCell<Option<SendError>>> = Rc::default();
        let a2 = Rc::clone(&after);
        let rec = Recorder::new().on_open(move |ws| {
            ws.close(CloseCode(3000), "app close").unwrap();
            *a2.borrow_mut() = ws.send("too late").into_result().err();
            assert_eq!(ws.state(), ringwire_conn::State::Ending);
        });
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        // tungstenite echoes the client's close code and reason.
        assert_eq!(rec.close_of(id), (3000, "app close".into()), "{io:?}");
        assert!(matches!(*after.borrow(), Some(SendError::NotOpen(_))), "{:?}", after.borrow());
    }
}

#[test]
fn invalid_close_code_is_refused_locally() {
    let addr = tungstenite_server();
    let rec = Recorder::new().on_open(|ws| {
        assert_eq!(ws.close(CloseCode(1005), ""), Err(SendError::InvalidCloseCode(1005)));
        assert_eq!(ws.close(CloseCode(999), ""), Err(SendError::InvalidCloseCode(999)));
        ws.close(CloseCode::NORMAL, "").unwrap();
    });
    let (id, rec) = run_one(backends()[0], &format!("ws://{addr}/"), ConnectOptions::default(), rec);
    assert_eq!(rec.close_of(id).0, 1000);
}

#[test]
fn server_dropping_tcp_gives_1006() {
    let addr = tungstenite_server();
    for io in backends() {
        let rec = Recorder::new().on_open(|ws| {
            assert!(ws.send("drop").is_queued());
        });
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        assert_eq!(rec.close_of(id).0, 1006, "{io:?}");
    }
}

#[test]
fn ping_pong_both_ways() {
    let addr = tungstenite_server();
    for io in backends() {
        let rec = Recorder::new()
            .on_open(|ws| {
                ws.ping(b"from client").unwrap();
                assert!(matches!(ws.ping(&[0; 126]), Err(SendError::ControlPayloadTooLong(126))));
                assert!(ws.send("ping:from server").is_queued());
            })
            .on_message(|ws, m, _| {
                // The server reports the pong it got for its ping.
                assert_eq!(m, &Message::Text("pong:from server".into()));
                ws.close(CloseCode::NORMAL, "").unwrap();
            });
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        let evs = rec.of(id);
        assert!(evs.contains(&Ev::Pong(Bytes::from_static(b"from client"))), "{io:?}: {evs:?}");
        assert!(evs.contains(&Ev::Ping(Bytes::from_static(b"from server"))), "{io:?}: {evs:?}");
        assert_eq!(rec.messages(id).len(), 1);
    }
}

#[test]
fn send_tokens_report_completion() {
    let addr = tungstenite_server();
    for io in backends() {
        let rec = Recorder::new()
            .on_open(|ws| {
                assert!(ws.send_tracked("a", SendToken(7)).is_queued());
            })
            .on_message(|ws, _, _| ws.close(CloseCode::NORMAL, "").unwrap());
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), ConnectOptions::default(), rec);
        assert!(rec.of(id).contains(&Ev::SendComplete(SendToken(7), ringwire_client::SendOutcome::Written)));
    }
}

#[test]
fn many_connections_on_one_loop() {
    let addr = tungstenite_server();
    for io in backends() {
        const CONNS: usize = 40;
        const MSGS: usize = 20;
        let mut client = ClientLoop::new(io).unwrap();
        let ids: Vec<_> =
            (0..CONNS).map(|_| client.connect(&format!("ws://{addr}/m"), ConnectOptions::default()).unwrap()).collect();
        let counts: Rc<RefCell<std::collections::HashMap<u64, usize>>> = Rc::default();
        let c2 = Rc::clone(&counts);
        let mut rec = Recorder::new()
            .on_open(|ws| {
                let id = ws.id();
                assert!(ws.send(format!("{id}:0")).is_queued());
            })
            .on_message(move |ws, m, _| {
                let mut counts = c2.borrow_mut();
                let n = counts.entry(ws.id().get()).or_default();
                assert_eq!(m, &Message::Text(format!("{}:{}", ws.id(), *n).into()), "out of order");
                *n += 1;
                if *n == MSGS {
                    ws.close(CloseCode::NORMAL, "").unwrap();
                } else {
                    let id = ws.id();
                    assert!(ws.send(format!("{id}:{}", *n)).is_queued());
                }
            });
        run(&mut client, &mut rec);
        for id in ids {
            assert_eq!(counts.borrow()[&id.get()], MSGS, "{io:?} {id}");
            assert_eq!(rec.close_of(id).0, 1000);
        }
        assert_eq!(client.connections(), 0);
    }
}

#[test]
fn connect_from_a_callback_chains_connections() {
    let addr = tungstenite_server();
    for io in backends() {
        let url = format!("ws://{addr}/chain");
        let mut client = ClientLoop::new(io).unwrap();
        client.connect(&url, ConnectOptions::default()).unwrap();
        let opened = Rc::new(RefCell::new(0));
        let o2 = Rc::clone(&opened);
        let mut rec = Recorder::new().on_open(move |ws| {
            *o2.borrow_mut() += 1;
            if *o2.borrow() < 5 {
                ws.ctl().connect(&url, ConnectOptions::default()).unwrap();
            }
            ws.close(CloseCode::NORMAL, "").unwrap();
        });
        run(&mut client, &mut rec);
        assert_eq!(*opened.borrow(), 5, "{io:?}");
        assert_eq!(rec.events.iter().filter(|(_, e)| matches!(e, Ev::Close(1000, _))).count(), 5);
    }
}

#[test]
fn pause_and_resume_lose_nothing() {
    let addr = tungstenite_server();
    for io in backends() {
        let mut client = ClientLoop::new(io).unwrap();
        let handle = client.handle();
        let id = client.connect(&format!("ws://{addr}/"), ConnectOptions::default()).unwrap();
        let mut rec = Recorder::new()
            .on_open(move |ws| {
                for i in 0..50 {
                    assert!(ws.send(format!("m{i}")).is_queued());
                }
                ws.pause();
                // Another thread resumes us once the echoes have had time to pile up.
                let (handle, id) = (handle.clone(), ws.id());
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    handle.resume(id).unwrap();
                });
            })
            .on_message(|ws, _, n| {
                if n == 50 {
                    ws.close(CloseCode::NORMAL, "").unwrap();
                }
            });
        run(&mut client, &mut rec);
        let evs = rec.of(id);
        let want: Vec<Message> = (0..50).map(|i| Message::Text(format!("m{i}").into())).collect();
        assert_eq!(rec.messages(id), want, "{io:?}");
        let pause = evs.iter().position(|e| *e == Ev::Pause).expect("no pause event");
        let resume = evs.iter().position(|e| *e == Ev::Resume).expect("no resume event");
        let first = evs.iter().position(|e| matches!(e, Ev::Message(_))).unwrap();
        assert!(pause < resume && resume < first, "{io:?}: {evs:?}");
    }
}
