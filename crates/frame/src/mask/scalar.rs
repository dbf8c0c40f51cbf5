//! Portable kernels: the byte loop (the baseline) and a word-at-a-time loop.

use super::rotate_key;

/// The plain byte loop: the reference every other kernel is tested against.
#[inline]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

/// Eight bytes at a time with a `u64` key, safe code only: the fallback where no
/// SIMD kernel exists (and the tail of the SIMD kernels). The compiler vectorises
/// the middle loop to the target's baseline (SSE2 on x86-64).
#[inline]
pub fn apply_mask_fallback(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotate_key(key, offset);
    let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ k8;
        c.copy_from_slice(&w.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}
