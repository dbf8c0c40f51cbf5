//! # ringwire-tls
//!
//! TLS for ringwire, over rustls' unbuffered API (provider: aws-lc-rs, rustls' default).
//!
//! - [`TlsSession`]: a sans-IO TLS session, server or client. Ciphertext goes in as
//!   `&mut [u8]` (whole records are decrypted in place there), plaintext comes out appended
//!   to a caller buffer; plaintext is encrypted into a caller buffer. A record split across
//!   reads is staged in a buffer that exists only while the record is partial (bounded:
//!   [`STAGING_LIMIT`], [`HANDSHAKE_STAGING_LIMIT`]).
//! - [`TlsHandler`]: a decorator at ringwire-io's seam. It wraps a [`Handler`] and gives it a
//!   [`TlsIo`], so the inner handler sees plaintext connections only: its `on_accept` /
//!   `on_connect` run once the TLS handshake is done (`on_accept` at TCP accept with
//!   [`TlsOptions::accept_early`], data still only after the handshake), `send` takes
//!   plaintext, `on_sent` and `queued` count plaintext bytes.
//!
//! A server and a client session against each other in memory (certificates from rcgen):
//!
//! ```
//! use std::sync::Arc;
//! use ringwire_tls::TlsSession;
//! use ringwire_tls::rustls::{self, pki_types::{PrivateKeyDer, ServerName}};
//!
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())?;
//! let mut sc = rustls::ServerConfig::builder()
//!     .with_no_client_auth()
//!     .with_single_cert(vec![cert.cert.der().clone()], key)?;
//! sc.alpn_protocols = vec![b"http/1.1".to_vec()];
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(cert.cert.der().clone())?;
//! let mut cc = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
//! cc.alpn_protocols = vec![b"http/1.1".to_vec()];
//!
//! let mut server = TlsSession::server(Arc::new(sc))?;
//! let mut client = TlsSession::client(Arc::new(cc), ServerName::try_from("localhost")?)?;
//! let (mut to_server, mut plain) = (Vec::new(), Vec::new());
//! client.read(&mut [], &mut to_server, &mut plain)?; // the client hello
//! while client.is_handshaking() || server.is_handshaking() {
//!     let mut to_client = Vec::new();
//!     server.read(&mut to_server, &mut to_client, &mut plain)?;
//!     to_server.clear();
//!     client.read(&mut to_client, &mut to_server, &mut plain)?;
//! }
//! server.read(&mut to_server, &mut Vec::new(), &mut plain)?; // the client's last flight, if any
//! assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
//!
//! let mut wire = Vec::new();
//! client.encrypt(b"GET /chat HTTP/1.1\r\n", &mut wire)?;
//! let (head, tail) = wire.split_at_mut(7); // a record cut in two
//! server.read(head, &mut Vec::new(), &mut plain)?;
//! assert!(plain.is_empty() && server.staged() == 7);
//! server.read(tail, &mut Vec::new(), &mut plain)?;
//! assert_eq!(plain, b"GET /chat HTTP/1.1\r\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Handler`]: ringwire_io::Handler

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod handler;
mod session;

pub use config::{CertKeyPem, Pem, ServerTlsConfig, SharedServerConfig, TlsConfigError};
pub use handler::{MAX_SEND_CHUNK, TlsHandler, TlsIo, TlsOptions};
pub use session::{HANDSHAKE_STAGING_LIMIT, MAX_RECORD_LEN, STAGING_LIMIT, TlsSession};

/// Re-exported: the configs and names the API takes.
pub use rustls;

use std::io;

/// Why a TLS session failed. `Display` is one line.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the peer or its data: a certificate (`InvalidCertificate`), an alert
    /// from the peer (`AlertReceived`), a malformed record, a failed handshake.
    #[error("tls: {0}")]
    Protocol(rustls::Error),
    /// A record (or, during the handshake, a handshake message) would not fit the staging
    /// bound: the peer sends something no TLS implementation sends.
    #[error("tls: {len} bytes of a partial record exceed the bound of {limit}")]
    RecordTooLarge {
        /// Bytes that would have been staged.
        len: usize,
        /// The bound in force.
        limit: usize,
    },
    /// Application data was offered before the handshake completed.
    #[error("tls: handshake not complete")]
    NotReady,
    /// The session is closed (close_notify sent, or an earlier error).
    #[error("tls: session closed")]
    Closed,
    /// The handshake did not finish within [`TlsOptions::handshake_timeout`].
    #[error("tls: handshake timed out")]
    HandshakeTimeout,
    /// A client connection has no server name to verify (see [`TlsHandler::set_server_name`]).
    #[error("tls: no server name for the client connection")]
    NoServerName,
    /// A connection came in on a side this handler has no config for.
    #[error("tls: no {0} config")]
    NoConfig(&'static str),
    /// The peer closed the TCP connection without close_notify after the handshake.
    #[error("tls: peer closed without close_notify")]
    Truncated,
    /// rustls reached a state this layer does not expect (a bug here or in rustls).
    #[error("tls: unexpected state: {0}")]
    Unexpected(String),
}

impl TlsError {
    /// The `io::ErrorKind` this error maps to in [`From<TlsError> for io::Error`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            TlsError::HandshakeTimeout => io::ErrorKind::TimedOut,
            TlsError::Truncated => io::ErrorKind::UnexpectedEof,
            TlsError::NoServerName | TlsError::NoConfig(_) => io::ErrorKind::InvalidInput,
            TlsError::NotReady | TlsError::Closed => io::ErrorKind::NotConnected,
            _ => io::ErrorKind::InvalidData,
        }
    }
}

impl From<TlsError> for io::Error {
    /// Keeps the `TlsError` inside: `err.get_ref().and_then(|e| e.downcast_ref::<TlsError>())`.
    fn from(e: TlsError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}
