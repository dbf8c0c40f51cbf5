//! What the adapter's test files share (each uses a part of it).
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;

/// A current-thread runtime, as the load harness's peers use.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Against an echo server at `addr` (path `/echo`), through a tungstenite client: a text,
/// a 60 KB binary (under the server's 64 KiB frame limit), a ping answered with its pong,
/// and a close with 1001 answered with 1001, after which the server closes the TCP
/// connection.
pub(crate) async fn echo_round(addr: SocketAddr) {
    let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await.unwrap();
    c.send(TMessage::Text("hello".into())).await.unwrap();
    assert_eq!(c.next().await.unwrap().unwrap(), TMessage::Text("hello".into()));
    let big: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
    c.send(TMessage::Binary(big.clone().into())).await.unwrap();
    assert_eq!(c.next().await.unwrap().unwrap(), TMessage::Binary(big.into()));
    c.send(TMessage::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(c.next().await.unwrap().unwrap(), TMessage::Pong(b"p".to_vec().into()));
    c.send(TMessage::Close(Some(CloseFrame { code: TCloseCode::Away, reason: "bye".into() }))).await.unwrap();
    match c.next().await.unwrap().unwrap() {
        TMessage::Close(Some(f)) => assert_eq!(f.code, TCloseCode::Away),
        other => panic!("{other:?}"),
    }
    assert!(c.next().await.is_none(), "the server closes the TCP connection after the handshake");
}
