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
//!   `on_connect` run once the TLS handshake is done, `send` takes plaintext, `on_sent` and
//!   `queued` count plaintext bytes.
//!
//! [`Handler`]: ringwire_io::Handler

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod handler;
mod session;

pub use handler::{MAX_SEND_CHUNK, TlsHandler, TlsIo, TlsOptions};
pub use session::{HANDSHAKE_STAGING_LIMIT, MAX_RECORD_LEN, STAGING_LIMIT, TlsSession};

/// Re-exported: the configs and names the API takes.
pub use rustls;

use std::io;

/// Why a TLS session failed. `Display` is one line.
#[derive(Debug, thiserror::Error)]
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
