//! Certificates made at test time (rcgen, ECDSA P-256), and a blocking TLS client over a
//! std `TcpStream` (rustls' classic API, independent of ringwire's TLS layer).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A test CA (ECDSA P-256) that signs leaves.
pub struct Ca {
    /// The CA certificate (what a client trusts).
    pub cert: CertificateDer<'static>,
    /// The CA as PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate a [`Ca`] signed, and its key.
pub struct Leaf {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// The certificate as PEM.
    pub pem: String,
    /// The private key, PKCS#8 DER.
    pub key: Vec<u8>,
    /// The private key as PKCS#8 PEM.
    pub key_pem: String,
}

impl Ca {
    /// A fresh CA with a name of its own, so one test CA's certificates are never taken for
    /// another's (a client trusting the other would report BadSignature, not UnknownIssuer).
    pub fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.distinguished_name.push(DnType::CommonName, format!("ringwire test CA {} {n}", std::process::id()));
        let cert = params.self_signed(&key).unwrap();
        Ca { cert: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` (DNS names, or IP addresses such as `127.0.0.1`).
    pub fn leaf<S: AsRef<str>>(&self, names: &[S]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A leaf for `names` with `edit` applied to its parameters (validity, ...).
    pub fn leaf_with<S: AsRef<str>>(&self, names: &[S], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.der().clone(), pem: cert.pem(), key: key.serialize_der(), key_pem: key.serialize_pem() }
    }
}

impl Default for Ca {
    fn default() -> Self {
        Self::new()
    }
}

impl Leaf {
    /// The private key, for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// A test CA and one leaf it signed, with the leaf's key.
pub struct Pki {
    /// The CA certificate (what a client trusts).
    pub ca: CertificateDer<'static>,
    /// The CA as PEM.
    pub ca_pem: String,
    /// The leaf certificate.
    pub leaf: CertificateDer<'static>,
    /// The leaf as PEM, followed by nothing (the CA signs it directly).
    pub leaf_pem: String,
    /// The leaf's private key as PKCS#8 PEM.
    pub key_pem: String,
}

impl Pki {
    /// A fresh CA and a leaf for `names` (DNS names, or IP addresses such as `127.0.0.1`).
    pub fn new(names: &[&str]) -> Self {
        let ca = Ca::new();
        let leaf = ca.leaf(names);
        Pki { ca: ca.cert, ca_pem: ca.pem, leaf: leaf.cert, leaf_pem: leaf.pem, key_pem: leaf.key_pem }
    }

    /// A leaf for `localhost` and `127.0.0.1`.
    pub fn localhost() -> Self {
        Self::new(&["localhost", "127.0.0.1"])
    }

    /// Writes the leaf and key to `<dir>/<stem>.crt` and `<dir>/<stem>.key`; returns the paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert, &self.leaf_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// A client config trusting this CA only, ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut c = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }
}

/// A blocking TLS stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr`, asks for `name` by SNI and verifies it with `config`, and finishes the
/// handshake (10 s read timeout).
pub fn tls_connect(addr: SocketAddr, name: &str, config: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The leaf certificate the server presented.
pub fn peer_leaf(s: &TlsStream) -> CertificateDer<'static> {
    s.conn.peer_certificates().expect("a server certificate")[0].clone().into_owned()
}
