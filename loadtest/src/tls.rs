//! TLS for the harness: test certificates made at run time with rcgen (a test CA and a
//! leaf for `localhost` and `127.0.0.1` signed by it, written as PEM files), the rustls
//! server configuration the Rust peers serve them with, and `loadgen`'s client
//! configuration (which key exchange and cipher suite it offers, resumption on or off).
//! Everything on rustls' aws-lc-rs provider, the workspace's choice.
//!
//! ```
//! use ringwire_loadtest::tls::{self, ClientOptions, KeyKind};
//! let dir = std::env::temp_dir().join(format!("certs-doc-{}", std::process::id()));
//! let files = tls::write(&dir, KeyKind::EcdsaP256).unwrap();
//! let server = tls::server_config(&files.chain, &files.key).unwrap();
//! assert_eq!(server.alpn_protocols, [b"http/1.1".to_vec()]);
//! let client = tls::client_config(&files.ca, &ClientOptions::default()).unwrap();
//! assert_eq!(client.alpn_protocols, [b"http/1.1".to_vec()]);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key type of the CA and the leaf. Handshake cost depends on it: an RSA-2048
/// signature costs a server far more than an ECDSA P-256 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// ECDSA over P-256 with SHA-256 (what most public sites serve today).
    EcdsaP256,
    /// RSA 2048 bits, PKCS#1 v1.5 signatures over SHA-256 (PSS in TLS 1.3).
    #[value(name = "rsa-2048")]
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

/// Where [`write`] put the files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The test CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The leaf followed by the CA: the full chain a server presents.
    pub chain: PathBuf,
    /// The leaf's private key (PKCS#8 PEM).
    pub key: PathBuf,
}

fn key_pair(kind: KeyKind) -> Result<KeyPair, String> {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
    }
    .map_err(|e| format!("key generation: {e}"))
}

/// Makes a test CA and a leaf for `localhost` and `127.0.0.1` signed by it, both of key
/// type `kind`, and writes `ca.pem`, `chain.pem` (leaf then CA) and `key.pem` into `dir`
/// (created if missing).
pub fn write(dir: &Path, kind: KeyKind) -> Result<CertFiles, String> {
    let ca_key = key_pair(kind)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(DnType::CommonName, "ringwire loadtest CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| format!("CA certificate: {e}"))?;
    let leaf_key = key_pair(kind)?;
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    leaf_params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf = leaf_params
        .signed_by(&leaf_key, &Issuer::new(ca_params, ca_key))
        .map_err(|e| format!("leaf certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = CertFiles { ca: dir.join("ca.pem"), chain: dir.join("chain.pem"), key: dir.join("key.pem") };
    let put = |p: &Path, text: String| std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()));
    put(&files.ca, ca.pem())?;
    put(&files.chain, format!("{}{}", leaf.pem(), ca.pem()))?;
    put(&files.key, leaf_key.serialize_pem())?;
    Ok(files)
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

/// A rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3, ALPN `http/1.1`, rustls'
/// defaults otherwise: a stateful session cache and TLS 1.3 tickets) serving the full
/// chain in `chain` with the key in `key`.
pub fn server_config(chain: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = load_certs(chain)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The key exchange group `loadgen` offers (the only one, so every server does the same
/// work: no HelloRetryRequest, no choice left to the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kx {
    /// X25519 (classical; what every peer supports).
    #[default]
    X25519,
    /// NIST P-256.
    P256,
    /// The post-quantum hybrid X25519MLKEM768 (rustls' and browsers' first choice today;
    /// a server without it fails the handshake).
    X25519mlkem768,
}

/// The cipher `loadgen` offers (the only one; TLS 1.2 uses the ECDHE suite of that
/// cipher for the certificate's key type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cipher {
    /// AES-128-GCM (TLS13_AES_128_GCM_SHA256).
    #[default]
    Aes128,
    /// AES-256-GCM (TLS13_AES_256_GCM_SHA384).
    Aes256,
    /// ChaCha20-Poly1305.
    Chacha20,
}

/// The protocol version `loadgen` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum Version {
    /// TLS 1.3.
    #[default]
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    Tls13,
    /// TLS 1.2.
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    Tls12,
}

/// What `loadgen`'s TLS client offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Key exchange group.
    pub kx: Kx,
    /// Cipher.
    pub cipher: Cipher,
    /// Protocol version.
    pub version: Version,
    /// Keep sessions (an in-memory store of 1,024) and resume them: TLS 1.3 tickets or
    /// TLS 1.2 session ids/tickets. Off: every handshake is a full one.
    pub resume: bool,
}

/// The client configuration `loadgen` uses: trusts only the certificates in `ca`, offers
/// one key exchange group, one cipher suite and one version (`opts`), ALPN `http/1.1`,
/// and resumes sessions only with `opts.resume`. The server's chain is verified in full
/// once per distinct chain and name ([`ChainCache`]); the handshake signature, which
/// proves the server holds the key, every time.
pub fn client_config(ca: &Path, opts: &ClientOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider, kx_group};
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut provider = default_provider();
    provider.kx_groups = vec![match opts.kx {
        Kx::X25519 => kx_group::X25519,
        Kx::P256 => kx_group::SECP256R1,
        Kx::X25519mlkem768 => kx_group::X25519MLKEM768,
    }];
    provider.cipher_suites = match (opts.version, opts.cipher) {
        (Version::Tls13, Cipher::Aes128) => vec![cs::TLS13_AES_128_GCM_SHA256],
        (Version::Tls13, Cipher::Aes256) => vec![cs::TLS13_AES_256_GCM_SHA384],
        (Version::Tls13, Cipher::Chacha20) => vec![cs::TLS13_CHACHA20_POLY1305_SHA256],
        (Version::Tls12, Cipher::Aes128) => {
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        }
        (Version::Tls12, Cipher::Aes256) => {
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
        }
        (Version::Tls12, Cipher::Chacha20) => {
            vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]
        }
    };
    let version: &[&rustls::SupportedProtocolVersion] = match opts.version {
        Version::Tls13 => &[&rustls::version::TLS13],
        Version::Tls12 => &[&rustls::version::TLS12],
    };
    let provider = Arc::new(provider);
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(version)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainCache { inner: webpki, verified: Default::default() }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if opts.resume {
        rustls::client::Resumption::in_memory_sessions(1024)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// A server certificate verifier that runs webpki's full check (chain to the trusted CA,
/// validity, name) once for each distinct chain and server name and remembers the
/// chains that passed; the handshake signatures (CertificateVerify, ServerKeyExchange)
/// are checked every time. A benchmark's connections all see the same chain, and the
/// chain check (a signature verification and certificate parsing) is a large share of a
/// client's handshake: without it the generator, not the server, limits the handshake
/// rate sooner. A chain that failed is checked again (and fails again) every time; at
/// most 16 chains are remembered (the expiry of a remembered chain is not checked again:
/// the harness's certificates are made for the run).
#[derive(Debug)]
pub struct ChainCache {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    verified: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ChainCache {
    fn key(end_entity: &[u8], intermediates: &[CertificateDer<'_>], name: &ServerName<'_>) -> Vec<u8> {
        let mut k = name.to_str().as_bytes().to_vec();
        for c in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
            k.extend_from_slice(&(c.len() as u32).to_be_bytes());
            k.extend_from_slice(c);
        }
        k
    }
}

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};

impl ServerCertVerifier for ChainCache {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = Self::key(end_entity, intermediates, server_name);
        let mut seen = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&key) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if seen.len() < 16 {
            seen.push(key);
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, ServerConnection};

    /// A server config whose key need not match its certificate (rustls checks the pair
    /// in `with_single_cert`; this one does not).
    fn server_config_unchecked(chain: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let signing = provider.key_provider.load_private_key(key).unwrap();
        let certified = Arc::new(rustls::sign::CertifiedKey::new(load_certs(chain).unwrap(), signing));
        #[derive(Debug)]
        struct Fixed(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for Fixed {
            fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        Arc::new(config)
    }

    /// Runs a handshake in memory.
    fn handshake(
        client: Arc<rustls::ClientConfig>,
        server: Arc<rustls::ServerConfig>,
        name: &'static str,
    ) -> Result<(ClientConnection, ServerConnection), String> {
        let mut c = ClientConnection::new(client, name.try_into().unwrap()).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            let server_err = s.process_new_packets().err();
            buf.clear();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().map_err(|e| e.to_string())?;
            if let Some(e) = server_err {
                return Err(e.to_string());
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok((c, s));
            }
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn both_key_kinds_load_and_chain_to_the_ca() {
        for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let dir = std::env::temp_dir().join(format!("ringwire-certs-{}-{kind:?}", std::process::id()));
            let f = write(&dir, kind).unwrap();
            assert_eq!(load_certs(&f.chain).unwrap().len(), 2);
            let server = server_config(&f.chain, &f.key).unwrap();
            for version in [Version::Tls13, Version::Tls12] {
                let opts = ClientOptions { version, ..ClientOptions::default() };
                let client = client_config(&f.ca, &opts).unwrap();
                let (c, _) = handshake(client, server.clone(), "localhost").unwrap();
                let want = match version {
                    Version::Tls13 => rustls::ProtocolVersion::TLSv1_3,
                    Version::Tls12 => rustls::ProtocolVersion::TLSv1_2,
                };
                assert_eq!(c.protocol_version(), Some(want));
                assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
                assert_eq!(c.negotiated_key_exchange_group().map(|g| g.name()), Some(rustls::NamedGroup::X25519));
            }
            // The leaf names localhost only: another name fails verification, also with
            // the same config (and its chain cache) after a good handshake.
            let client = client_config(&f.ca, &ClientOptions::default()).unwrap();
            handshake(client.clone(), server.clone(), "localhost").unwrap();
            for _ in 0..2 {
                let err = handshake(client.clone(), server.clone(), "example.com").unwrap_err();
                assert!(err.contains("not valid for name"), "{err}");
            }
            // A server whose key does not match its certificate fails the handshake
            // signature even though the chain is a remembered one.
            let other = write(&dir.join("other"), kind).unwrap();
            let chain = std::fs::read_to_string(&f.chain).unwrap();
            let mixed = dir.join("mixed.pem");
            std::fs::write(&mixed, chain).unwrap();
            let bad = server_config_unchecked(&mixed, &other.key);
            let err = handshake(client, bad, "localhost").unwrap_err();
            assert!(err.contains("ecrypt") || err.contains("ignature"), "{err}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
