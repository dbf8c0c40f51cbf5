//! permessage-deflate (RFC 7692): negotiation and the per-message codec, pure and
//! sans-IO like the rest of this crate.
//!
//! - Server: [`negotiate`] (or [`negotiate_response`]) picks the first acceptable offer
//!   of the request's `Sec-WebSocket-Extensions`; [`DeflateParams::response_header`]
//!   states the agreement in the 101.
//! - Client: [`client_offer`] is the request's header value; [`accept_response`] checks
//!   the server's answer against it.
//! - Both: [`DeflateParams::ours`] and [`DeflateParams::theirs`] give the window bits and
//!   context takeover of this endpoint's [`Compressor`] and [`Decompressor`].
//!
//! The codec is zlib-rs (the pure-Rust zlib that flate2's `zlib-rs` backend wraps), used
//! through its safe API so the memory level can be set. Window bits are 9..=15 for
//! both directions: zlib cannot deflate with 8 (it silently uses 9), so this side never
//! agrees to compress with 8 and always inflates with at least 9.
//!
//! # Memory
//!
//! zlib's formula gives a compressor `(1 << (window_bits + 2)) + (1 << (mem_level + 9))`
//! bytes (256 KiB at 15/8) and a decompressor `1 << window_bits` (32 KiB at 15), each
//! plus a few KiB of state. zlib-rs takes more, measured with a counting allocator (the
//! `deflate` bench prints it): a [`Compressor`] 380,032 bytes at 15/8 and 272,512 at
//! 15/4 (the default; its hash table is 128 KiB whatever `mem_level`, its symbol
//! buffers `7 << (mem_level + 6)`), 137,216 at 9/1; a [`Decompressor`] 47,552 bytes
//! whatever the window (its window is always 32 KiB). Both allocate at `new`, nothing
//! more per message. zlib-rs zeroes a compressor's window, chain and hash table at
//! `new` (256 KiB at 15 bits), so they are resident at once; zlib touches its window
//! and chain only as data passes, which is why a zlib-based peer holds less after a
//! few small messages (see `docs/scaling.md`). Without context takeover no state needs
//! to outlive a message, so [`with_shared_compressor`] and [`with_shared_decompressor`]
//! give one per thread instead (uWebSockets' `SHARED_COMPRESSOR`).
//!
//! ```
//! use bytes::BytesMut;
//! use ringwire_conn::Role;
//! use ringwire_conn::deflate::{
//!     Compressor, DeflateConfig, Decompressor, accept_response, client_offer, negotiate,
//! };
//! use ringwire_conn::handshake::ExtensionOffer;
//!
//! let cfg = DeflateConfig::default();
//! // The client's offer, as the server parses it.
//! let offer = client_offer(&cfg);
//! assert_eq!(offer, "permessage-deflate; client_max_window_bits");
//! let parsed = ExtensionOffer {
//!     name: "permessage-deflate".into(),
//!     params: vec![("client_max_window_bits".into(), None)],
//! };
//! let server = negotiate(&[parsed], &cfg).expect("acceptable");
//! let client = accept_response(&server.response_header(), &cfg)?;
//! assert_eq!(client, server);
//!
//! // The client compresses with its side's parameters, the server inflates with them.
//! let (bits, takeover) = client.ours(Role::Client);
//! let mut tx = Compressor::new(bits, cfg.level, cfg.mem_level);
//! let mut rx = Decompressor::new(server.theirs(Role::Server).0);
//! let mut wire = BytesMut::new();
//! tx.compress(b"hello hello hello", &mut wire, !takeover);
//! let mut text = BytesMut::new();
//! rx.decompress(&wire, &mut text, 1 << 20, !takeover)?;
//! assert_eq!(&text[..], b"hello hello hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod negotiate;
#[cfg(test)]
mod tests;

pub use codec::{
    CodecCounts, Compressor, Decompressor, InflateError, thread_counts, with_shared_compressor,
    with_shared_decompressor,
};
pub use negotiate::{accept_response, client_offer, negotiate, negotiate_response};

use ringwire_frame::Role;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// What this endpoint offers (client) or accepts (server).
///
/// Defaults: context takeover on both sides, 15/15 window bits, memory level 4,
/// compression level 6 (zlib's default: the usual ratio/CPU trade; level 1 costs less
/// CPU for a worse ratio), threshold 0 (every message compressed).
///
/// Memory level 4, not zlib's 8: in zlib-rs the level sizes only the symbol buffers
/// (its hash table is 128 KiB at any level), and 4 (1,024 symbols per block) compressed
/// JSON-like text of 1 KiB to 1 MiB within 0.6% of 8's ratio at the same speed, for
/// 105 KiB less per compressor: 272,512 bytes at 15 bits instead of 380,032.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Server: state `server_no_context_takeover` in every response (the server resets
    /// its compressor after each message). Client: request it.
    pub server_no_context_takeover: bool,
    /// Server: ask the client not to keep its context (stated in every response).
    /// Client: request it, and compress without context takeover either way.
    pub client_no_context_takeover: bool,
    /// 9..=15. Server: the most it compresses with. Client: what it asks the server to
    /// compress with (15: does not ask).
    pub server_max_window_bits: u8,
    /// 9..=15. Server: asks the client for at most this, when the client offered the
    /// parameter. Client: the most it compresses with.
    pub client_max_window_bits: u8,
    /// zlib's memory level for compression, 1..=9: in zlib the hash table and the
    /// symbol buffers, `1 << (mem_level + 9)` bytes together; in zlib-rs the symbol
    /// buffers only, `7 << (mem_level + 6)` bytes (see the [module docs](self#memory)).
    pub mem_level: u8,
    /// Compression level, 0..=9 (0: stored, no compression).
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            mem_level: 4,
            level: 6,
            threshold: 0,
        }
    }
}

impl DeflateConfig {
    /// Checks the ranges: window bits 9..=15, memory level 1..=9, level 0..=9.
    ///
    /// ```
    /// use ringwire_conn::deflate::{DeflateConfig, DeflateError};
    /// let mut cfg = DeflateConfig::default();
    /// cfg.server_max_window_bits = 8;
    /// assert_eq!(
    ///     cfg.validate(),
    ///     Err(DeflateError::WindowBitsOutOfRange { param: "server_max_window_bits", value: 8 })
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), DeflateError> {
        for (param, value) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&value) {
                return Err(DeflateError::WindowBitsOutOfRange { param, value });
            }
        }
        if !(1..=9).contains(&self.mem_level) {
            return Err(DeflateError::MemLevelOutOfRange(self.mem_level));
        }
        if self.level > 9 {
            return Err(DeflateError::LevelOutOfRange(self.level));
        }
        Ok(())
    }

    /// Whether a message of `len` bytes is compressed: at least [`threshold`](Self::threshold).
    pub fn compresses(&self, len: usize) -> bool {
        len >= self.threshold
    }
}

/// The smallest window zlib deflates with (it turns 8 into 9).
pub(crate) const MIN_WINDOW_BITS: u8 = 9;
/// The largest window, 32 KiB.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// The parameters agreed for one connection.
///
/// Window bits are as stated in the handshake (8..=15; the peer's may be 8 when it
/// offered 8 itself); [`ours`](Self::ours) and [`theirs`](Self::theirs) give the bits
/// to build the codec with (at least 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses each message without the previous ones' context.
    pub server_no_context_takeover: bool,
    /// The client compresses each message without the previous ones' context.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window.
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window.
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value that states these (the server's response):
    /// window bits only when below 15, flags only when set.
    ///
    /// A client that offered `server_max_window_bits=15` expects the parameter back;
    /// [`negotiate_response`] gives the value with it echoed.
    pub fn response_header(&self) -> String {
        self.header(false)
    }

    pub(crate) fn header(&self, state_server_window: bool) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS || state_server_window {
            s.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        if self.client_max_window_bits < MAX_WINDOW_BITS {
            s.push_str(&format!("; client_max_window_bits={}", self.client_max_window_bits));
        }
        s
    }

    /// For `role`: our compressor's window bits and whether it keeps its context
    /// between messages (`true`: context takeover; `false`: reset after each message).
    ///
    /// The bits are at least 9; [`negotiate`] and [`accept_response`] never agree to
    /// less for our side.
    pub fn ours(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => side(self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => side(self.client_max_window_bits, self.client_no_context_takeover),
        }
    }

    /// For `role`: the peer's side, i.e. our decompressor's window bits (at least 9,
    /// which also inflates what a peer told 8 sends) and whether the peer keeps its
    /// context (`false`: reset our decompressor after each message).
    pub fn theirs(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => self.ours(Role::Client),
            Role::Client => self.ours(Role::Server),
        }
    }
}

fn side(bits: u8, no_context_takeover: bool) -> (u8, bool) {
    (bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS), !no_context_takeover)
}

/// A configuration out of range, or a server response the client cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// A window bits setting outside 9..=15.
    #[error("{param} must be 9..=15 (zlib cannot deflate with 8), got {value}")]
    WindowBitsOutOfRange {
        /// `server_max_window_bits` or `client_max_window_bits`.
        param: &'static str,
        /// The value set.
        value: u8,
    },
    /// A memory level outside 1..=9.
    #[error("deflate mem_level must be 1..=9, got {0}")]
    MemLevelOutOfRange(u8),
    /// A compression level above 9.
    #[error("deflate level must be 0..=9, got {0}")]
    LevelOutOfRange(u32),
    /// The response's `Sec-WebSocket-Extensions` is empty.
    #[error("the server's Sec-WebSocket-Extensions names no extension")]
    NoExtension,
    /// The response names more than one extension; only permessage-deflate was offered.
    #[error("the server's Sec-WebSocket-Extensions names more than one extension: {0:?}")]
    SeveralExtensions(String),
    /// The response names another extension than permessage-deflate.
    #[error("the server accepted extension {0:?}, which was not offered")]
    NotOffered(String),
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParam(String),
    /// A parameter given twice.
    #[error("permessage-deflate parameter {0} given twice")]
    DuplicateParam(String),
    /// A parameter that takes no value was given one.
    #[error("permessage-deflate parameter {param} takes no value, got {value:?}")]
    UnexpectedValue {
        /// The parameter.
        param: &'static str,
        /// The value given.
        value: String,
    },
    /// A parameter that needs a value has none.
    #[error("permessage-deflate parameter {0} needs a value")]
    MissingValue(&'static str),
    /// A window bits value that is not a decimal 8..=15.
    #[error("permessage-deflate parameter {param} must be 8..=15, got {value:?}")]
    InvalidWindowBits {
        /// The parameter.
        param: &'static str,
        /// The value given.
        value: String,
    },
    /// The server asks the client to compress with an 8-bit window, which zlib cannot.
    #[error("the server asks for client_max_window_bits=8; zlib cannot deflate with an 8-bit window")]
    ClientWindowEight,
    /// The server's window is larger than the client asked for.
    #[error("the client asked for server_max_window_bits={asked}, the server answered {got}")]
    ServerWindowTooLarge {
        /// What the client asked for.
        asked: u8,
        /// What the server stated.
        got: u8,
    },
    /// The client asked for a server window and the response does not confirm it.
    #[error("the client asked for server_max_window_bits={asked}, the server's response does not state it")]
    ServerWindowNotConfirmed {
        /// What the client asked for.
        asked: u8,
    },
    /// The client asked for server_no_context_takeover and the response does not confirm it.
    #[error("the client asked for server_no_context_takeover, the server's response does not state it")]
    ServerContextTakeoverNotConfirmed,
    /// The offer asks the server to compress with an 8-bit window (declined: zlib cannot).
    #[error("the offer asks for server_max_window_bits=8; zlib cannot deflate with an 8-bit window")]
    ServerWindowEight,
}
