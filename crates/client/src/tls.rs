//! [`TlsConfig`]: the TLS settings of `wss://` connections (roots, client certificate, or a
//! whole rustls config), the rustls `ClientConfig` built from them once, and the mapping of
//! TLS failures to [`ConnectError`].

use crate::ConnectError;
use ringwire_conn::url::{Host, WsUrl};
use ringwire_tls::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// The ALPN protocol offered (RFC 6455 runs over HTTP/1.1).
const ALPN: &[u8] = b"http/1.1";

/// Where the trusted root certificates of a [`TlsConfig`] come from (before the roots
/// added with [`TlsConfig::with_root_der`] / [`TlsConfig::with_roots_pem`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Roots {
    /// The system's store, read by `rustls-native-certs` (on Linux the distribution's
    /// bundle, e.g. `/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), once per process.
    #[default]
    System,
    /// Mozilla's roots compiled in (`webpki-roots`): the same everywhere, no file read.
    /// Needs the `webpki-roots` feature (on by default).
    #[cfg(feature = "webpki-roots")]
    WebPki,
    /// None: only the roots added to the [`TlsConfig`] are trusted.
    Empty,
}

/// The TLS settings of a `wss://` connection ([`ConnectOptions::tls`](crate::ConnectOptions::tls)).
///
/// The default trusts the system's roots, sends no client certificate and offers ALPN
/// `http/1.1`; the server is verified (and SNI sent) as the URL's host, an IP literal as an
/// IP address. The rustls `ClientConfig` is built on first use and shared by every clone of
/// this value (and every connection made with them: one session cache, so later handshakes
/// resume); the default settings share one config per process.
///
/// ```
/// use ringwire_client::{ConnectOptions, Roots, TlsConfig};
/// # let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?.cert;
/// # let (ca_pem, ca_der) = (ca.pem(), ca.der().clone());
/// // a private CA on top of the system's roots
/// let tls = TlsConfig::new().with_roots_pem(ca_pem.as_bytes())?;
/// let opts = ConnectOptions::new().with_tls(tls);
/// // only that CA
/// let only = TlsConfig::new().with_roots(Roots::Empty).with_root_der(ca_der);
/// assert_eq!(only.client_config()?.alpn_protocols, vec![b"http/1.1".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    roots: Roots,
    extra_roots: Vec<CertificateDer<'static>>,
    /// Client certificate chain and key (mTLS).
    client_auth: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
    /// A whole config given by the caller, used as it is.
    custom: Option<Arc<ClientConfig>>,
    /// The config built from the above, shared by clones; a setter starts a new one.
    built: Arc<Mutex<Option<Arc<ClientConfig>>>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// The defaults: the system's roots, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy with its own (not yet built) config: every setter goes through this, so a
    /// clone changed later never uses the config of the value it was cloned from.
    fn changed(mut self) -> Self {
        self.built = Arc::default();
        self
    }

    /// Where the roots come from (default [`Roots::System`]).
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self.changed()
    }

    /// Also trusts `cert` (DER) as a root.
    pub fn with_root_der(mut self, cert: impl Into<CertificateDer<'static>>) -> Self {
        self.extra_roots.push(cert.into());
        self.changed()
    }

    /// Also trusts every `CERTIFICATE` in `pem` as a root. An error if there is none or one
    /// does not parse.
    pub fn with_roots_pem(mut self, pem: &[u8]) -> Result<Self, ConnectError> {
        let certs = certs_from_pem(pem, "root certificates")?;
        self.extra_roots.extend(certs);
        Ok(self.changed())
    }

    /// Presents `chain` (leaf first) with `key` when the server asks for a client
    /// certificate (mutual TLS).
    pub fn with_client_auth(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        self.client_auth = Some(Arc::new((chain, key)));
        self.changed()
    }

    /// [`with_client_auth`](Self::with_client_auth) from PEM: the certificate chain (leaf
    /// first) and the private key (PKCS#8, PKCS#1 or SEC1).
    pub fn with_client_auth_pem(self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, ConnectError> {
        let chain = certs_from_pem(chain_pem, "client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| ConnectError::TlsConfig(format!("client key: no usable private key in the PEM: {e}")))?;
        Ok(self.with_client_auth(chain, key))
    }

    /// Uses `config` as it is for the connection, in place of everything above (its roots,
    /// verifier, client certificate, ALPN: set `alpn_protocols` to `[b"http/1.1"]` for ALPN).
    /// SNI and the name verified are still the URL's host.
    pub fn with_rustls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.custom = Some(config);
        self.changed()
    }

    /// The rustls config connections with these settings use: built on the first call and
    /// then shared (by clones of this value too). An error for settings that cannot make
    /// one: no root at all (an empty system store and none added), a key that does not fit
    /// the certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ConnectError> {
        if let Some(c) = &self.custom {
            return Ok(c.clone());
        }
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*built {
            return Ok(c.clone());
        }
        let config = if self.extra_roots.is_empty() && self.client_auth.is_none() {
            shared_default(self.roots)?
        } else {
            Arc::new(build(self.roots, &self.extra_roots, self.client_auth.as_deref())?)
        };
        *built = Some(config.clone());
        Ok(config)
    }
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConnectError::TlsConfig(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConnectError::TlsConfig(format!("{what}: no CERTIFICATE in the PEM")));
    }
    Ok(certs)
}

/// The system's roots, read and parsed once per process (a config built from them then
/// costs a copy of the store, not a parse of every certificate: ~70 µs each otherwise).
fn system_roots() -> &'static Result<RootCertStore, String> {
    static SYSTEM: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "reading the system's root certificates");
        }
        let mut store = RootCertStore::empty();
        let (_added, ignored) = store.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "system root certificates that do not parse");
        }
        if store.is_empty() {
            let why = found.errors.first().map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(format!("no root certificates in the system store ({why})"));
        }
        Ok(store)
    })
}

/// The config of the default settings for `roots`, one per process.
fn shared_default(roots: Roots) -> Result<Arc<ClientConfig>, ConnectError> {
    static CONFIGS: Mutex<Vec<(Roots, Arc<ClientConfig>)>> = Mutex::new(Vec::new());
    let mut configs = CONFIGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = configs.iter().find(|(r, _)| *r == roots) {
        return Ok(c.clone());
    }
    let c = Arc::new(build(roots, &[], None)?);
    configs.push((roots, c.clone()));
    Ok(c)
}

fn build(
    roots: Roots,
    extra: &[CertificateDer<'static>],
    client_auth: Option<&(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, ConnectError> {
    let mut store = match roots {
        Roots::System => match system_roots() {
            Ok(store) => store.clone(),
            // without roots of its own a config may still trust the ones added to it
            Err(e) if !extra.is_empty() => {
                tracing::debug!(error = %e, "no system roots; using the added ones");
                RootCertStore::empty()
            }
            Err(e) => return Err(ConnectError::TlsConfig(e.clone())),
        },
        #[cfg(feature = "webpki-roots")]
        Roots::WebPki => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        Roots::Empty => RootCertStore::empty(),
    };
    for cert in extra {
        store.add(cert.clone()).map_err(|e| ConnectError::TlsConfig(format!("root certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(ConnectError::TlsConfig("no root certificate to trust (Roots::Empty and none added)".into()));
    }
    let builder = ClientConfig::builder().with_root_certificates(store);
    let mut config = match client_auth {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| ConnectError::TlsConfig(format!("client certificate: {e}")))?,
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The name a `wss://` connection verifies and sends as SNI: the URL's host.
pub(crate) fn server_name(url: &WsUrl) -> Result<ServerName<'static>, ConnectError> {
    match &url.host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(n) => ServerName::try_from(n.clone())
            .map_err(|e| ConnectError::TlsConfig(format!("host {n:?} is not a valid TLS server name: {e}"))),
    }
}

/// The [`ConnectError`] for a failure that carries a [`TlsError`] (`None`: not a TLS one).
pub(crate) fn tls_failure(host: &str, e: &std::io::Error) -> Option<ConnectError> {
    let error = e.get_ref()?.downcast_ref::<TlsError>()?.clone();
    let host = host.to_owned();
    Some(match &error {
        TlsError::Protocol(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => ConnectError::TlsUnknownIssuer { host, error },
            CertificateError::NotValidForName => ConnectError::TlsNameMismatch { host, presented: Vec::new(), error },
            CertificateError::NotValidForNameContext { presented, .. } => {
                ConnectError::TlsNameMismatch { host, presented: presented.clone(), error }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                ConnectError::TlsExpired { host, error }
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                ConnectError::TlsNotYetValid { host, error }
            }
            _ => ConnectError::TlsCertificate { host, error },
        },
        _ => ConnectError::TlsHandshake { host, error },
    })
}

/// A [`TlsError`]'s text without its `tls: ` prefix (the variants' Display says TLS already).
pub(crate) fn cause(e: &TlsError) -> String {
    let s = e.to_string();
    s.strip_prefix("tls: ").map(str::to_owned).unwrap_or(s)
}
