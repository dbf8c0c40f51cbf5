//! The default `wss://` client configuration: the system's trusted roots, ALPN `http/1.1`.

use crate::Error;
use rustls::{ClientConfig, RootCertStore};
use std::io;
use std::sync::{Arc, OnceLock};

/// Built on first use (the system's roots are read and parsed once per process) and
/// shared by every `wss://` [`connect`](crate::connect) without a config of its own.
pub(crate) fn default_client_config() -> Result<Arc<ClientConfig>, Error> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let built = DEFAULT.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            let why = found.errors.first().map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(format!(
                "no root certificates in the system store ({why}): pass a rustls config to connect_tls"
            ));
        }
        let mut config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    built.clone().map_err(|e| Error::Tls(io::Error::other(e)))
}
