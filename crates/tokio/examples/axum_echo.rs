//! An axum app with a route that upgrades to a ringwire echo, beside an ordinary route.
//!
//! ```text
//! cargo run --release -p ringwire-tokio --example axum_echo -- 127.0.0.1:9001
//! ```
//!
//! `/healthz` answers `ok`; every other path is the WebSocket echo (a request that is not
//! an upgrade gets 400, 405 or 426, as the native server answers it).

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use ringwire_tokio::Config;
use ringwire_tokio::http::{Upgrade, reject};
use std::net::SocketAddr;

mod common;

async fn ws(State(config): State<Config>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request) -> Response {
    let upgrade = match Upgrade::new(&req, config) {
        Ok(upgrade) => upgrade.with_peer(peer.ip()),
        Err(e) => return reject(&e),
    };
    let response = match upgrade.response() {
        Ok(response) => response,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    // hyper hands the connection over once the 101 is written.
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            common::echo(upgrade.into_stream(hyper_util::rt::TokioIo::new(upgraded))).await;
        }
    });
    response
}

#[tokio::main]
async fn main() {
    let (addr, config) = common::args().unwrap_or_else(|e| {
        eprintln!("axum_echo: {e}");
        std::process::exit(2);
    });
    let app = Router::new().route("/healthz", get(|| async { "ok" })).fallback(ws).with_state(config.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("axum_echo: cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    println!("axum_echo on ws://{}", listener.local_addr().expect("a bound listener"));
    // TCP_NODELAY (and the native keepalive if configured) on each accepted connection:
    // axum leaves Nagle on, and small echoes would wait for the peer's delayed ACK (40 ms).
    let options = config.clone();
    let listener = listener.tap_io(move |tcp| {
        let _ = ringwire_tokio::apply_socket_options(tcp, &options);
    });
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("axum_echo: {e}");
        std::process::exit(1);
    }
}
