//! Certificates made at test time (rcgen, ECDSA P-256) and rustls configs over them.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A test CA and a leaf for `localhost` it signed.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub leaf: CertificateDer<'static>,
    pub key: Vec<u8>,
}

pub fn pki() -> Pki {
    pki_with_names(vec!["localhost".to_string()])
}

/// A leaf with 1,500 extra names: ~40 KB, more than one TLS record, so its handshake
/// message spans records.
pub fn big_pki() -> Pki {
    pki_with_names((0..1500).map(|i| format!("host-{i:04}.example.com")).chain(["localhost".into()]).collect())
}

/// A leaf for `names` (many names make a certificate larger than one TLS record).
pub fn pki_with_names(names: Vec<String>) -> Pki {
    let ca = ringwire_testkit::tls::Ca::new();
    let leaf = ca.leaf(&names);
    Pki { ca: ca.cert, leaf: leaf.cert, key: leaf.key }
}

pub fn server_config(p: &Pki) -> Arc<ServerConfig> {
    server_config_versions(p, rustls::DEFAULT_VERSIONS)
}

pub fn server_config_versions(p: &Pki, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ServerConfig> {
    let mut c = ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(vec![p.leaf.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key.clone())))
        .unwrap();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// A client that trusts `ca` only.
pub fn client_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut c = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Bytes that are not all the same, so that a misplaced byte shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}
