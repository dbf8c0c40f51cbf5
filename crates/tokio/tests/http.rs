//! Upgrades through hyper and axum: the example servers as built (`axum_echo`,
//! `hyper_echo`, started as processes) and an in-process hyper server that chooses a
//! subprotocol with `Upgrade::accept_mut`.

use futures_util::{SinkExt, StreamExt};
use ringwire_testkit::{http, upgrade_request};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use tokio_tungstenite::tungstenite::Message as TMessage;

mod common;
use common::rt;

/// An example server, killed on drop.
struct Example(Child, SocketAddr);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `target/<profile>/examples/<name>` on a free port with `args`, and reads the
/// address from its first line (`<name> on ws://ADDR`).
fn example(name: &str, args: &[&str]) -> Example {
    // target/<profile>/deps/http-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is not built: `cargo test -p ringwire-tokio` builds the examples", path.display());
    let mut child =
        Command::new(&path).arg("127.0.0.1:0").args(args).stdout(Stdio::piped()).spawn().expect("start the example");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("ws://").next().unwrap().parse().unwrap_or_else(|_| panic!("{name} said {line:?}"));
    Example(child, addr)
}

/// The shared echo round, on a runtime of its own.
fn echo_round(addr: SocketAddr) {
    rt().block_on(common::echo_round(addr));
}

/// What is not an upgrade gets the native server's answers.
fn refusals(addr: SocketAddr) {
    let plain = http(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n")).to_ascii_lowercase();
    assert!(plain.starts_with("http/1.1 400"), "{plain}");
    assert!(plain.contains("x-websocket-reject-reason: missing upgrade: websocket header"), "{plain}");
    let version = upgrade_request(addr, "").replace("Version: 13", "Version: 99");
    let version = http(addr, &version).to_ascii_lowercase();
    assert!(version.starts_with("http/1.1 426") && version.contains("sec-websocket-version: 13, 8"), "{version}");
    let post = upgrade_request(addr, "").replacen("GET", "POST", 1);
    let post = http(addr, &post).to_ascii_lowercase();
    assert!(post.starts_with("http/1.1 405") && post.contains("allow: get"), "{post}");
}

#[test]
fn axum_echo_echoes_answers_refusals_and_keeps_its_other_routes() {
    let server = example("axum_echo", &["--deflate"]);
    echo_round(server.1);
    refusals(server.1);
    let health = http(server.1, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // permessage-deflate agreed when offered (--deflate), in the framework's 101
    let offer = upgrade_request(server.1, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    let head = http(server.1, &offer).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 101") && head.contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
}

#[test]
fn hyper_echo_echoes_and_answers_refusals_without_deflate() {
    let server = example("hyper_echo", &[]);
    echo_round(server.1);
    refusals(server.1);
    let offer = upgrade_request(server.1, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let head = http(server.1, &offer).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101") && !head.contains("sec-websocket-extensions"), "{head}");
}

#[test]
fn examples_refuse_a_bad_flag_with_one_line() {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("axum_echo");
    let out = Command::new(path).args(["127.0.0.1:0", "--max-message-size", "lots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "axum_echo: --max-message-size: expected a number of bytes\n");
}

/// An in-process hyper server whose upgrade picks `superchat` if offered, or (for
/// `/wrong`) a subprotocol the client did not ask for.
async fn chooser() -> SocketAddr {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| async move {
                    let mut upgrade = ringwire_tokio::http::Upgrade::new(&req, ringwire_tokio::Config::server())
                        .unwrap()
                        .with_peer(peer.ip());
                    let protocol = if req.uri().path() == "/wrong" {
                        Some("other".into())
                    } else {
                        upgrade.request().select_protocol(&["superchat"]).map(str::to_owned)
                    };
                    upgrade.accept_mut().protocol = protocol;
                    let response = match upgrade.response::<Full<Bytes>>() {
                        Ok(r) => r,
                        Err(e) => {
                            let mut r = hyper::Response::new(Full::from(e.to_string()));
                            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                    };
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let mut ws = upgrade.into_stream(hyper_util::rt::TokioIo::new(on_upgrade.await.unwrap()));
                        let conn = ws.connection();
                        let said = format!("{:?} from {:?}", conn.protocol(), conn.remote_address());
                        ws.send(ringwire_tokio::Message::Text(said.into())).await.unwrap();
                        let _ = ws.close().await;
                    });
                    Ok(response)
                });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
            });
        }
    });
    addr
}

#[test]
fn an_upgrade_through_hyper_chooses_a_subprotocol_and_knows_its_peer() {
    rt().block_on(async {
        let addr = chooser().await;
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
                .unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "chat, SuperChat".parse().unwrap());
        let (mut c, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        // echoed in the client's spelling
        assert_eq!(response.headers()["sec-websocket-protocol"], "SuperChat");
        // the server's side reports the protocol as it chose it (WebSocket-Node does the same)
        let said = c.next().await.unwrap().unwrap();
        assert_eq!(said, TMessage::Text("Some(\"superchat\") from Some(\"127.0.0.1\")".into()));

        let wrong = tokio::task::spawn_blocking(move || {
            http(addr, &upgrade_request(addr, "Sec-WebSocket-Protocol: chat\r\n").replacen("GET /", "GET /wrong", 1))
        });
        let wrong = wrong.await.unwrap();
        assert!(wrong.starts_with("HTTP/1.1 500"), "{wrong}");
    });
}
