//! A hyper 1 server (no framework) whose requests upgrade to a ringwire echo.
//!
//! ```text
//! cargo run --release -p ringwire-tokio --example hyper_echo -- 127.0.0.1:9001
//! ```

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ringwire_tokio::Config;
use ringwire_tokio::http::{Upgrade, reject};
use std::convert::Infallible;
use std::net::SocketAddr;

mod common;

async fn ws(mut req: Request<Incoming>, config: Config, peer: SocketAddr) -> Result<Response<Full<Bytes>>, Infallible> {
    let upgrade = match Upgrade::new(&req, config) {
        Ok(upgrade) => upgrade.with_peer(peer.ip()),
        Err(e) => return Ok(reject(&e)),
    };
    let response = match upgrade.response() {
        Ok(response) => response,
        Err(e) => {
            let mut r = Response::new(Full::from(e.to_string()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(r);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            common::echo(upgrade.into_stream(TokioIo::new(upgraded))).await;
        }
    });
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (addr, config) = common::args().unwrap_or_else(|e| {
        eprintln!("hyper_echo: {e}");
        std::process::exit(2);
    });
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("hyper_echo: cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    println!("hyper_echo on ws://{}", listener.local_addr().expect("a bound listener"));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, say: the listener stays; try again shortly.
            Err(e) => {
                eprintln!("hyper_echo: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = ringwire_tokio::apply_socket_options(&tcp, &config);
        let config = config.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| ws(req, config.clone(), peer));
            // with_upgrades: the connection is handed to the upgrade instead of closed.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).with_upgrades().await;
        });
    }
}
