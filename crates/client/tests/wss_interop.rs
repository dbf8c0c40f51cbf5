//! wss:// against a real peer of another TLS stack: Node's `ws` on Node's `https` server
//! (OpenSSL), certificates made at test time. Node and `ws` are found and installed as for
//! the ringwire crate's interop tests (`target/peers`, npm); a missing `node`/`npm` skips
//! with a line `SKIPPED <test>: <why>`, or fails with `RINGWIRE_REQUIRE_INTEROP=1`.

mod common;
#[allow(dead_code)] // the Python and Chromium peers are not used here
#[path = "../../ringwire/tests/interop/peers.rs"]
mod peers;
#[path = "common/tls.rs"]
mod tls;

use common::backends;
use peers::{Node, Proc, or_skip};
use ringwire_client::{ConnectOptions, Roots, TlsConfig, connect_with};
use ringwire_conn::{CloseCode, Message};
use std::time::Duration;

#[test]
fn echo_over_wss_with_node_ws_on_openssl() {
    let Some(node) = or_skip(Node::find()) else { return };
    let ca = tls::ca();
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    let dir = std::env::temp_dir().join(format!("ringwire-wss-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, format!("{}{}", leaf.pem, ca.pem)).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let server = Proc::spawn(node.command(&["server", cert.to_str().unwrap(), key.to_str().unwrap()]));
    let port = server.wait_line("listening ", Duration::from_secs(30));
    let mut opts = ConnectOptions::default()
        .with_tls(TlsConfig::new().with_roots(Roots::Empty).with_roots_pem(ca.pem.as_bytes()).unwrap());
    opts.config.max_received_message_size = 4 << 20;
    opts.config.max_received_frame_size = 4 << 20;
    for choice in backends() {
        for host in ["localhost", "127.0.0.1"] {
            let mut ws = connect_with(&format!("wss://{host}:{port}/"), opts.clone(), choice)
                .unwrap_or_else(|e| panic!("{choice:?} {host}: {e}"));
            ws.send("hello, openssl").unwrap();
            assert_eq!(ws.recv().unwrap(), Message::Text("hello, openssl".into()), "{choice:?}");
            let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            ws.send(big.clone()).unwrap();
            assert!(ws.recv().unwrap() == Message::Binary(big.into()), "{choice:?}: 1 MiB echo");
            assert_eq!(ws.close(CloseCode::NORMAL, "bye").unwrap().0, CloseCode::NORMAL, "{choice:?}");
            // ws saw our close frame, over a connection that agreed on ALPN http/1.1
            assert_eq!(server.wait_line("closed ", Duration::from_secs(10)), "1000 http/1.1", "{choice:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
