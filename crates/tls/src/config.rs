//! Server certificates: loading PEM files, choosing a certificate by SNI, and swapping the
//! whole config at run time (certificate rotation) without a lock on the accept path.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where a PEM document comes from: a file (read again at every reload) or bytes in memory.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file, read when the config is built (and at every reload).
    File(PathBuf),
    /// PEM text in memory.
    Memory(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(p) => write!(f, "{}", p.display()),
            Pem::Memory(m) => write!(f, "<{} bytes of PEM>", m.len()),
        }
    }
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, TlsConfigError> {
        match self {
            Pem::File(path) => {
                std::fs::read(path).map_err(|source| TlsConfigError::Read { path: path.clone(), source })
            }
            Pem::Memory(bytes) => Ok(bytes.clone()),
        }
    }
}

/// A certificate chain (leaf first, then intermediates) and its private key, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertKeyPem {
    /// The full chain.
    pub cert: Pem,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Pem,
}

impl CertKeyPem {
    /// A pair of PEM files.
    pub fn files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertKeyPem { cert: Pem::File(cert.into()), key: Pem::File(key.into()) }
    }

    /// A pair of PEM texts.
    pub fn memory(cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        CertKeyPem { cert: Pem::Memory(cert.into()), key: Pem::Memory(key.into()) }
    }

    /// Reads and checks the pair: at least one certificate, one key, and the key belongs to
    /// the first certificate.
    fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsConfigError> {
        let what = || format!("{:?}", self.cert);
        let cert_pem = self.cert.read()?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsConfigError::Pem { what: what(), error: e.to_string() })?;
        if chain.is_empty() {
            return Err(TlsConfigError::NoCertificate(what()));
        }
        let key_pem = self.key.read()?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoKey(format!("{:?}", self.key)),
            e => TlsConfigError::Pem { what: format!("{:?}", self.key), error: e.to_string() },
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsConfigError::Key {
            cert: what(),
            key: format!("{:?}", self.key),
            error: e,
        })
    }
}

/// Why a server TLS config could not be built. `Display` is one line naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM document is malformed.
    #[error("{what}: bad PEM: {error}")]
    Pem {
        /// The file (or `<N bytes of PEM>`).
        what: String,
        /// The parser's complaint.
        error: String,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    /// The key file holds no private key.
    #[error("{0}: no private key found")]
    NoKey(String),
    /// The key cannot be used or does not belong to the certificate.
    #[error("{key} does not fit {cert}: {error}")]
    Key {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls' reason.
        error: rustls::Error,
    },
    /// An SNI name is not a DNS name (`example.com` or `*.example.com`).
    #[error("bad SNI name {0:?}")]
    BadName(String),
    /// No certificate at all (neither a default nor one per name).
    #[error("no certificate configured")]
    Empty,
    /// rustls refused the config.
    #[error("tls config: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What a TLS server serves: a default certificate, certificates chosen by the SNI name
/// the client asks for, and the ALPN protocols (`http/1.1` by default). TLS 1.2 and 1.3.
///
/// ```
/// use ringwire_tls::{CertKeyPem, ServerTlsConfig};
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let pair = CertKeyPem::memory(cert.cert.pem(), cert.signing_key.serialize_pem());
/// let tls = ServerTlsConfig::new(pair.clone()).with_sni("chat.example.com", pair);
/// let built = tls.build()?;
/// assert_eq!(built.alpn_protocols, vec![b"http/1.1".to_vec()]);
///
/// let broken = ServerTlsConfig::new(ringwire_tls::CertKeyPem::files("/nonexistent.pem", "/nonexistent.key"));
/// assert_eq!(broken.build().unwrap_err().to_string(), "cannot read /nonexistent.pem: No such file or directory (os error 2)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerTlsConfig {
    /// Served when the client names no host (or one without its own certificate).
    /// `None`: such handshakes fail (`unrecognized_name`).
    pub default: Option<CertKeyPem>,
    /// Certificates by SNI name: exact names (`chat.example.com`, compared ASCII
    /// case-insensitively) and wildcards (`*.example.com`: one label).
    pub sni: Vec<(String, CertKeyPem)>,
    /// ALPN protocols offered, in order (default `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTlsConfig {
    /// Serves `default` to every client.
    pub fn new(default: CertKeyPem) -> Self {
        ServerTlsConfig { default: Some(default), sni: Vec::new(), alpn: vec![b"http/1.1".to_vec()] }
    }

    /// No default certificate: only the names given with [`with_sni`](Self::with_sni).
    pub fn sni_only() -> Self {
        ServerTlsConfig { default: None, sni: Vec::new(), alpn: vec![b"http/1.1".to_vec()] }
    }

    /// Serves `pair` to clients asking for `name` (`example.com` or `*.example.com`).
    pub fn with_sni(mut self, name: impl Into<String>, pair: CertKeyPem) -> Self {
        self.sni.push((name.into(), pair));
        self
    }

    /// Reads every file and builds the rustls config (session tickets from a fresh ticketer).
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
        self.build_with(None)
    }

    /// Builds with session tickets from `ticketer` (shared across reloads, so tickets
    /// issued before a certificate rotation still resume), or a fresh one.
    fn build_with(
        &self,
        ticketer: Option<Arc<dyn ProducesTickets>>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut resolver = SniResolver { default: None, exact: HashMap::new(), wildcard: HashMap::new() };
        if let Some(pair) = &self.default {
            resolver.default = Some(Arc::new(pair.load(&provider)?));
        }
        for (name, pair) in &self.sni {
            let key = Arc::new(pair.load(&provider)?);
            let lower = name.to_ascii_lowercase();
            let (map, bare) = match lower.strip_prefix("*.") {
                Some(rest) => (&mut resolver.wildcard, rest.to_string()),
                None => (&mut resolver.exact, lower.clone()),
            };
            if rustls::pki_types::DnsName::try_from(bare.as_str()).is_err() {
                return Err(TlsConfigError::BadName(name.clone()));
            }
            map.insert(bare, key);
        }
        if resolver.default.is_none() && resolver.exact.is_empty() && resolver.wildcard.is_empty() {
            return Err(TlsConfigError::Empty);
        }
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        cfg.alpn_protocols = self.alpn.clone();
        cfg.ticketer = match ticketer {
            Some(t) => t,
            None => rustls::crypto::aws_lc_rs::Ticketer::new()?,
        };
        Ok(Arc::new(cfg))
    }
}

/// Picks the certificate for the SNI name: exact, then wildcard (one label), then default.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else { return self.default.clone() };
        // rustls hands the name over lower-cased already.
        let found =
            self.exact.get(name).or_else(|| name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)));
        found.or(self.default.as_ref()).cloned()
    }
}

/// A server config shared by the workers of one server and swapped at run time.
///
/// Each worker keeps its own `Arc` of the current config and compares a generation
/// counter (one atomic load) when it accepts a connection; only after a swap does it take
/// the lock to fetch the new one. Connections keep the config they started with.
/// Session tickets are encrypted with one ticketer across swaps and workers.
pub struct SharedServerConfig {
    generation: AtomicU64,
    /// Held across a rebuild (files read, config built), so that two at once are applied
    /// in order: a reload that started before a `replace` cannot write the old settings back
    /// after it.
    rebuilding: Mutex<()>,
    current: Mutex<(ServerTlsConfig, Arc<rustls::ServerConfig>)>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl fmt::Debug for SharedServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedServerConfig").field("generation", &self.generation()).finish()
    }
}

impl SharedServerConfig {
    /// Builds `config` (reading its files) as the first generation.
    pub fn new(config: ServerTlsConfig) -> Result<Self, TlsConfigError> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let built = config.build_with(Some(Arc::clone(&ticketer)))?;
        Ok(SharedServerConfig {
            generation: AtomicU64::new(1),
            rebuilding: Mutex::new(()),
            current: Mutex::new((config, built)),
            ticketer,
        })
    }

    /// Serves a ready rustls config (for what [`ServerTlsConfig`] does not cover, such as
    /// client certificates); [`reload`](Self::reload) then rebuilds nothing.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        let ticketer = Arc::clone(&config.ticketer);
        let spec = ServerTlsConfig { default: None, sni: Vec::new(), alpn: config.alpn_protocols.clone() };
        SharedServerConfig {
            generation: AtomicU64::new(1),
            rebuilding: Mutex::new(()),
            current: Mutex::new((spec, config)),
            ticketer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (ServerTlsConfig, Arc<rustls::ServerConfig>)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the files of the current [`ServerTlsConfig`] again and swaps the result in.
    /// On any error the config in force stays and the error is returned. A config from
    /// [`from_rustls`](Self::from_rustls) has no files: nothing changes.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let _rebuilding = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let spec = self.lock().0.clone();
        if spec.default.is_none() && spec.sni.is_empty() {
            return Ok(());
        }
        self.rebuild(spec)
    }

    /// Builds `config` and swaps it in for new connections; on error nothing changes.
    pub fn replace(&self, config: ServerTlsConfig) -> Result<(), TlsConfigError> {
        let _rebuilding = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuild(config)
    }

    /// Builds and swaps in; the caller holds `rebuilding`.
    fn rebuild(&self, config: ServerTlsConfig) -> Result<(), TlsConfigError> {
        let built = config.build_with(Some(Arc::clone(&self.ticketer)))?;
        self.replace_rustls(config, built);
        Ok(())
    }

    fn replace_rustls(&self, spec: ServerTlsConfig, built: Arc<rustls::ServerConfig>) {
        *self.lock() = (spec, built);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many configs have been in force (1 at the start, +1 per swap).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The config in force now.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.lock().1)
    }

    /// The files the config was built from, for log lines.
    pub fn describe(&self) -> String {
        let spec = self.lock().0.clone();
        let mut parts: Vec<String> = spec.default.iter().map(|p| format!("{:?}", p.cert)).collect();
        parts.extend(spec.sni.iter().map(|(name, p)| format!("{name}={:?}", p.cert)));
        parts.join(", ")
    }
}

/// A worker's copy of a [`SharedServerConfig`]: refreshed when the generation moved.
pub(crate) struct LocalServerConfig {
    shared: Arc<SharedServerConfig>,
    generation: u64,
    config: Arc<rustls::ServerConfig>,
}

impl LocalServerConfig {
    pub(crate) fn new(shared: Arc<SharedServerConfig>) -> Self {
        let generation = shared.generation();
        let config = shared.current();
        LocalServerConfig { shared, generation, config }
    }

    /// The config for a new connection: one atomic load, the lock only after a swap.
    pub(crate) fn get(&mut self) -> &Arc<rustls::ServerConfig> {
        let now = self.shared.generation();
        if now != self.generation {
            self.config = self.shared.current();
            self.generation = now;
        }
        &self.config
    }
}
