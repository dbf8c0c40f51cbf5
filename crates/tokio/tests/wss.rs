//! wss:// through the adapter on both ends: a tokio-rustls server (certificates made now by
//! a test CA) running `accept` over TLS, and `connect_tls` / `connect` as its client.

use futures_util::{SinkExt, StreamExt};
use ringwire_testkit::tls::{Ca, Pki};
use ringwire_tokio::{Config, Error, Message, accept, connect, connect_tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

mod common;
use common::rt;

/// An echo server over TLS with `cert` and `key` (PEM).
async fn wss_echo(cert: &str, key: &str) -> SocketAddr {
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut ws) = accept(tls, Config::server()).await else { return };
                while let Some(Ok(m)) = ws.next().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_wss_echo_by_name_and_by_address_and_a_clean_close() {
    rt().block_on(async {
        let pki = Pki::localhost();
        let addr = wss_echo(&pki.leaf_pem, &pki.key_pem).await;
        for url in [format!("wss://localhost:{}/", addr.port()), format!("wss://{addr}/chat")] {
            let (mut ws, response) = connect_tls(&url, Config::client(), Some(pki.client_config())).await.unwrap();
            assert_eq!(response.status, 101);
            ws.send(Message::Text("über".into())).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::Text("über".into()));
            // 60 KB: over one TLS record (16 KiB), under the server's 64 KiB frame limit
            let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
            ws.send(Message::Binary(big.clone().into())).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::Binary(big.into()));
            ws.close().await.unwrap();
            assert!(ws.next().await.is_none());
            assert_eq!(ws.connection().close_reason_code().map(|c| c.0), Some(1000));
            assert!(matches!(ws.get_ref(), ringwire_tokio::MaybeTlsStream::Tls(_)));
        }
    });
}

#[test]
fn an_untrusted_or_misnamed_certificate_fails_the_connect() {
    rt().block_on(async {
        let pki = Pki::localhost();
        let addr = wss_echo(&pki.leaf_pem, &pki.key_pem).await;
        // The system's roots (the default) do not know the test CA.
        let err = connect(&format!("wss://localhost:{}/", addr.port())).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("UnknownIssuer") || text.contains("no root certificates"), "{text}");
        // A leaf for another name, from a trusted CA.
        let ca = Ca::new();
        let other = ca.leaf(&["example.test"]);
        let addr = wss_echo(&other.pem, &other.key_pem).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.clone()).unwrap();
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let err = connect_tls(&format!("wss://{addr}/"), Config::client(), Some(Arc::new(config))).await.unwrap_err();
        assert!(err.to_string().contains("not valid for name \"127.0.0.1\""), "{err}");
    });
}

#[test]
fn a_bad_url_is_refused_before_any_connection() {
    rt().block_on(async {
        let err = connect("http://localhost/").await.unwrap_err();
        assert_eq!(err.to_string(), "url: unsupported scheme \"http\": only ws:// and wss:// URLs are supported");
        let err = connect("ws://[::1/").await.unwrap_err();
        assert!(matches!(err, Error::Url(_)), "{err}");
    });
}
