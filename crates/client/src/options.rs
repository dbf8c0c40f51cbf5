//! [`ConnectOptions`]: what to offer in the handshake and how long to wait.

use crate::TlsConfig;
use ringwire_conn::Config;
use std::time::Duration;

/// Options for one connection: WebSocket-Node's `connect(url, protocols, origin, headers)`
/// plus the protocol version, timeouts and the connection's [`Config`].
///
/// ```
/// use ringwire_client::ConnectOptions;
/// use std::time::Duration;
/// let mut opts = ConnectOptions::new().with_protocols(["chat"]).with_origin("http://example.com");
/// opts.connect_timeout = Some(Duration::from_secs(2));
/// opts.config.max_received_message_size = 16 << 20;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Subprotocols to offer (`Sec-WebSocket-Protocol`), in order of preference. The server
    /// must pick one of these or none; anything else fails the connect.
    pub protocols: Vec<String>,
    /// `Origin` (version 13) or `Sec-WebSocket-Origin` (version 8), if any.
    pub origin: Option<String>,
    /// Extra request headers (e.g. `Authorization`, `Cookie`). Headers the handshake itself
    /// writes (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-*`) may not be given here.
    pub headers: Vec<(String, String)>,
    /// Protocol version to speak: 13 (RFC 6455, the default) or 8 (hybi-08).
    pub version: u8,
    /// How long the TCP connect may take, per address tried (default 10 s; `None`: the
    /// kernel's own limit, about two minutes).
    pub connect_timeout: Option<Duration>,
    /// How long the server has to answer the upgrade request once TCP is up, the TLS
    /// handshake of `wss://` included (default 10 s; `None`: wait forever, but for `wss://`
    /// the TLS layer's own bound of a day on its handshake).
    pub handshake_timeout: Option<Duration>,
    /// TLS settings for `wss://` URLs (ignored for `ws://`): roots, client certificate, or a
    /// whole rustls config. Default: the system's roots, no client certificate.
    pub tls: TlsConfig,
    /// The connection's behaviour after the handshake. Default [`Config::client`]:
    /// 1 MiB frames, 8 MiB messages, no keepalive pings (as WebSocket-Node's client).
    pub config: Config,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            protocols: Vec::new(),
            origin: None,
            headers: Vec::new(),
            version: 13,
            connect_timeout: Some(Duration::from_secs(10)),
            handshake_timeout: Some(Duration::from_secs(10)),
            tls: TlsConfig::default(),
            config: Config::client(),
        }
    }
}

impl ConnectOptions {
    /// The defaults: version 13, no subprotocol, no origin, 10 s timeouts, [`Config::client`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the subprotocols to offer.
    pub fn with_protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the origin.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Adds a request header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the protocol version (13 or 8).
    pub fn with_version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }

    /// Sets the TCP connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the handshake timeout (the TLS handshake and the upgrade).
    pub fn with_handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the TLS settings of `wss://` connections.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the connection configuration.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
}
