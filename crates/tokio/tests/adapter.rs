//! The adapter against tokio-tungstenite on both sides, and a raw client for what
//! tungstenite will not send (an unmasked frame).

use futures_util::{SinkExt, StreamExt};
use ringwire_tokio::{Config, Error, Message, accept, connect};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as TMessage;

mod common;
use common::rt;

/// A listener whose connections are served by `serve` (one task each).
async fn server<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// A listener whose first connection is served by `serve`; what `serve` returns comes on
/// the receiver.
async fn serve_one<T, F, Fut>(serve: F) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok((s, _)) = l.accept().await {
            let _ = tx.send(serve(s).await);
        }
    });
    (addr, rx)
}

async fn echo(s: TcpStream) {
    let mut ws = accept(s, Config::server()).await.unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if ws.send(m).await.is_err() {
            break;
        }
    }
}

#[test]
fn a_tungstenite_client_gets_echoes_pongs_and_a_clean_close() {
    rt().block_on(async {
        let addr = server(echo).await;
        common::echo_round(addr).await;

        // A frame over max_received_frame_size (64 KiB): the echo loop stops at the error,
        // and the client still gets the 1009 close frame before the socket goes.
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
        c.send(TMessage::Binary(vec![0u8; 100_000].into())).await.unwrap();
        match c.next().await.unwrap().unwrap() {
            TMessage::Close(Some(f)) => assert_eq!(u16::from(f.code), 1009),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn the_client_talks_to_a_tungstenite_server_and_closes_with_1000() {
    rt().block_on(async {
        let (addr, closed_rx) = serve_one(|s| async move {
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            let mut closed_with = None;
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    TMessage::Close(f) => closed_with = f.map(|f| u16::from(f.code)),
                    m @ (TMessage::Text(_) | TMessage::Binary(_)) => ws.send(m).await.unwrap(),
                    _ => {}
                }
            }
            closed_with
        })
        .await;
        let (mut ws, response) = connect(&format!("ws://{addr}/chat")).await.unwrap();
        assert_eq!(response.status, 101);
        ws.send(Message::Text("über".into())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::Text("über".into()));
        ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::Binary(vec![1, 2, 3].into()));
        ws.close().await.unwrap();
        // the stream finishes the handshake: the server's answer, then the end
        assert!(ws.next().await.is_none());
        assert_eq!(closed_rx.await.unwrap(), Some(1000));
        assert_eq!(ws.connection().close_reason_code().map(|c| c.0), Some(1000));
    });
}

#[test]
fn split_halves_still_answer_pings() {
    rt().block_on(async {
        let addr = server(|s| async move {
            let ws = accept(s, Config::server()).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            // Only the read half is polled; the pong goes out from there.
            while let Some(Ok(m)) = rx.next().await {
                if m == Message::Text("stop".into()) {
                    break;
                }
            }
            let _ = tx.close().await;
        })
        .await;
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
        for i in 0..3u8 {
            c.send(TMessage::Ping(vec![i].into())).await.unwrap();
            assert_eq!(c.next().await.unwrap().unwrap(), TMessage::Pong(vec![i].into()));
        }
        c.send(TMessage::Text("stop".into())).await.unwrap();
        match c.next().await.unwrap().unwrap() {
            TMessage::Close(Some(f)) => assert_eq!(u16::from(f.code), 1000),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn an_unmasked_frame_ends_the_stream_with_a_protocol_error_and_1002() {
    rt().block_on(async {
        let (addr, rx) =
            serve_one(|s| async move { drain(&mut accept(s, Config::server()).await.unwrap()).await }).await;
        let raw = tokio::task::spawn_blocking(move || {
            let mut c = ringwire_testkit::RawClient::connect(addr);
            c.frame(true, 0, 0x1, b"bare", false);
            c.read_close().0
        });
        assert_eq!(raw.await.unwrap(), 1002);
        let (seen, _) = rx.await.unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("mask"), "{seen:?}");
    });
}

#[test]
fn a_peer_that_does_not_read_makes_send_wait_within_the_high_water_mark() {
    rt().block_on(async {
        let (addr, rx) = serve_one(|s| async move {
            let mut ws = accept(s, Config::server()).await.unwrap();
            let chunk = Message::Binary(vec![7u8; 64 * 1024].into());
            let mut sent = 0;
            // Until a send waits for the peer for half a second.
            while let Ok(r) = tokio::time::timeout(Duration::from_millis(500), ws.send(chunk.clone())).await {
                r.unwrap();
                sent += 1;
                assert!(sent < 10_000, "sends never wait");
            }
            let high = ws.connection().config().high_water_mark;
            let buffered = ws.connection().buffered_amount();
            (sent, buffered, high)
        })
        .await;
        // Connected, upgraded, and never read from again.
        let (_c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
        let (sent, buffered, high) = rx.await.unwrap();
        assert!(sent > 0);
        assert!(buffered <= high + 64 * 1024 + 16, "{buffered} queued above the mark {high}");
    });
}

#[test]
fn a_bad_request_is_answered_and_is_an_error() {
    rt().block_on(async {
        let (addr, rx) = serve_one(|s| async move { accept(s, Config::server()).await.map(drop) }).await;
        let head =
            tokio::task::spawn_blocking(move || ringwire_testkit::http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head.await.unwrap().starts_with("HTTP/1.1 400"));
        assert!(matches!(rx.await.unwrap(), Err(Error::Handshake(_))));
    });
}

/// Everything a stream yielded (errors as text), and how long it lasted.
async fn drain(ws: &mut ringwire_tokio::WebSocketStream<TcpStream>) -> (Vec<String>, Duration) {
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while let Some(item) = ws.next().await {
        seen.push(item.map_or_else(|e| e.to_string(), |m| format!("{m:?}")));
    }
    (seen, start.elapsed())
}

#[test]
fn a_silent_peer_gets_a_keepalive_ping_and_is_dropped_after_the_grace_period() {
    rt().block_on(async {
        let mut config = Config::server();
        config.keepalive = Some(ringwire_tokio::Keepalive::new(Duration::from_millis(150), Duration::from_millis(150)));
        let (addr, report) = serve_one(|s| async move { drain(&mut accept(s, config).await.unwrap()).await }).await;
        let raw = tokio::task::spawn_blocking(move || {
            let mut c = ringwire_testkit::RawClient::connect(addr);
            let ping = c.recv();
            // no pong: after the grace period the socket goes, without a close frame (1006)
            (ping, c.at_eof())
        });
        let ((opcode, _), eof) = raw.await.unwrap();
        assert_eq!(opcode, 0x9, "a ping");
        assert!(eof);
        let (seen, took) = report.await.unwrap();
        assert_eq!(seen, ["peer not responding to keepalive ping"]);
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    });
}

#[test]
fn a_close_the_peer_never_answers_ends_the_stream_at_close_timeout() {
    rt().block_on(async {
        let (addr, rx) = serve_one(|s| async move {
            let mut config = Config::server();
            config.close_timeout = Duration::from_millis(200);
            let mut ws = accept(s, config).await.unwrap();
            let first = ws.next().await.unwrap().unwrap();
            ws.start_close(ringwire_tokio::CloseCode(4000), Some("done")).unwrap();
            let (rest, took) = drain(&mut ws).await;
            (first, rest, ws.connection().close_reason_code().map(|c| c.0), took)
        })
        .await;
        let raw = tokio::task::spawn_blocking(move || {
            let mut c = ringwire_testkit::RawClient::connect(addr);
            c.send(0x1, b"go");
            // read the 4000 close and never answer it
            let close = c.read_close();
            (close, c.at_eof())
        });
        let (close, eof) = raw.await.unwrap();
        assert_eq!(close, (4000, "done".into()));
        assert!(eof);
        let (first, rest, code, took) = rx.await.unwrap();
        assert_eq!(first, Message::Text("go".into()));
        // As in Node: no error, the stream ends, and the close code is the one we sent.
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(code, Some(4000));
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(3), "{took:?}");
    });
}

#[test]
fn next_event_gives_frames_without_assembly_and_the_pings_and_the_close() {
    rt().block_on(async {
        let (addr, rx) = serve_one(|s| async move {
            let mut config = Config::server();
            config.assemble_fragments = false;
            let mut ws = accept(s, config).await.unwrap();
            let mut seen = Vec::new();
            while let Some(event) = ws.next_event().await {
                seen.push(match event {
                    ringwire_tokio::Event::Frame(f) => {
                        format!("frame {:?} fin={} {:?}", f.opcode, f.fin, f.payload)
                    }
                    ringwire_tokio::Event::Ping(p) => format!("ping {p:?}"),
                    ringwire_tokio::Event::Close { code, description } => format!("close {} {description}", code.0),
                    other => format!("{other:?}"),
                });
            }
            seen
        })
        .await;
        let raw = tokio::task::spawn_blocking(move || {
            let mut c = ringwire_testkit::RawClient::connect(addr);
            c.frame(false, 0, 0x1, b"hel", true);
            c.frame(true, 0, 0x0, b"lo", true);
            c.send(0x9, b"p");
            let pong = c.recv();
            c.send(0x8, &ringwire_testkit::close_frame(1000, "bye"));
            (pong, c.read_close())
        });
        let (pong, close) = raw.await.unwrap();
        assert_eq!(pong, (0xA, b"p".to_vec()));
        assert_eq!(close.0, 1000);
        let seen = rx.await.unwrap();
        assert_eq!(
            seen,
            [
                "frame Text fin=false b\"hel\"",
                "frame Continuation fin=true b\"lo\"",
                "frame Ping fin=true b\"p\"",
                "ping b\"p\"",
                "frame Close fin=true b\"\\x03\\xe8bye\"",
                "close 1000 bye",
            ]
        );
    });
}

#[test]
fn connect_applies_nodelay_and_the_native_keepalive() {
    rt().block_on(async {
        let addr = server(echo).await;
        let mut config = Config::client();
        config.keepalive = Some(ringwire_tokio::Keepalive::new(Duration::from_millis(2500), Duration::from_secs(5)));
        config.use_native_keepalive = true;
        let (ws, _) = ringwire_tokio::connect_with(&format!("ws://{addr}/"), config).await.unwrap();
        let local = ws.get_ref().tcp().local_addr().ok();
        let options = ringwire_testkit::socket_options(addr, local).expect("the client's socket");
        assert!(options.nodelay && options.keepalive, "{options:?}");
        // 2.5 s rounds up to whole seconds
        assert_eq!(options.keepalive_idle, Duration::from_secs(3));
        // and the connection runs no ping timer of its own
        assert_eq!(ws.connection().poll_timeout(), None);
    });
}

/// A client that upgrades and then reads nothing for `stall`, then everything until EOF;
/// it sends a ping every 20 ms meanwhile if `pings`. Returns the bytes it read.
fn stalling_client(addr: std::net::SocketAddr, stall: Duration, pings: bool) -> usize {
    use std::io::Read;
    let mut c = ringwire_testkit::RawClient::connect_with_rcvbuf(addr, 4096);
    let until = std::time::Instant::now() + stall;
    while std::time::Instant::now() < until {
        if pings {
            c.send(0x9, b"p");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut total = 0;
    let mut buf = [0u8; 65536];
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while let Ok(n) = c.stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

#[test]
fn a_send_to_a_peer_that_stopped_reading_fails_at_the_keepalive_grace() {
    rt().block_on(async {
        let (addr, rx) = serve_one(|s| async move {
            let mut config = Config::server();
            config.keepalive =
                Some(ringwire_tokio::Keepalive::new(Duration::from_millis(200), Duration::from_millis(200)));
            config.max_buffered = None;
            let mut ws = accept(s, config).await.unwrap();
            let start = std::time::Instant::now();
            // Only the sink is polled: its wait still runs the connection's timers.
            let chunk = Message::Binary(vec![1u8; 1 << 20].into());
            let result = loop {
                if let Err(e) = ws.send(chunk.clone()).await {
                    break e.to_string();
                }
            };
            (result, start.elapsed())
        })
        .await;
        let client = tokio::task::spawn_blocking(move || stalling_client(addr, Duration::from_millis(1500), false));
        let (result, took) = rx.await.unwrap();
        assert!(result.contains("not open"), "{result}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        client.await.unwrap();
    });
}

#[test]
fn closing_with_a_backlog_the_peer_never_reads_ends_at_close_timeout() {
    rt().block_on(async {
        let (addr, rx) = serve_one(|s| async move {
            let mut config = Config::server();
            config.close_timeout = Duration::from_millis(200);
            config.high_water_mark = 64 << 20;
            let mut ws = accept(s, config).await.unwrap();
            for _ in 0..8 {
                // fed, not flushed: the backlog stays queued
                ws.feed(Message::Binary(vec![2u8; 1 << 20].into())).await.unwrap();
            }
            let start = std::time::Instant::now();
            let _ = tokio::time::timeout(Duration::from_millis(50), ws.close()).await;
            drain(&mut ws).await;
            start.elapsed()
        })
        .await;
        let client = tokio::task::spawn_blocking(move || stalling_client(addr, Duration::from_millis(1500), false));
        let took = tokio::time::timeout(Duration::from_secs(3), rx).await.expect("the stream ended").unwrap();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        client.await.unwrap();
    });
}

#[test]
fn split_halves_each_wake_when_the_other_half_wrote() {
    rt().block_on(async {
        let total = 4 << 20;
        let (addr, rx) = serve_one(move |s| async move {
            let mut config = Config::server();
            config.max_buffered = None;
            let ws = accept(s, config).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            // The reader answers pings (its writes take the socket's one write waker)
            // while the writer waits on a peer that reads nothing for a while.
            let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
            let chunk = Message::Binary(vec![3u8; 64 << 10].into());
            for _ in 0..total / (64 << 10) {
                tx.send(chunk.clone()).await.unwrap();
            }
            let _ = tx.close().await;
            reader.abort();
        })
        .await;
        let client = tokio::task::spawn_blocking(move || stalling_client(addr, Duration::from_millis(600), true));
        tokio::time::timeout(Duration::from_secs(10), rx).await.expect("the writer finished").unwrap();
        assert!(client.await.unwrap() >= total);
    });
}
