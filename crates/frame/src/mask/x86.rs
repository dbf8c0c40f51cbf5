//! x86-64 kernels: SSE2 (the x86-64 baseline), AVX2 and AVX-512 F, chosen once at run
//! time and cached in an atomic (the shape of httparse's `simd/runtime.rs`). Only
//! `avx512f` is detected and enabled: the AVX-512 kernel uses 512-bit loads, stores and
//! XOR, none of the byte-granular AVX-512 BW instructions.
//!
//! Every kernel XORs whole vectors with unaligned loads and stores, four vectors per
//! iteration, and finishes the tail with narrower vectors (32, 16 bytes) and then the
//! word loop, never touching a byte outside the slice. On long buffers the AVX2 and
//! AVX-512 kernels first unmask the few bytes up to a vector boundary the same way, so
//! no load or store in the main loop splits a cache line; the key for the main loop is
//! rotated by that head length.
//!
//! Payloads under 64 bytes never reach a SIMD kernel: [`apply_mask`] handles them
//! inline with straight-line code ([`small`]), which is what the heads and tails of
//! the kernels use too.

use super::{KernelFn, rotate_key};
use core::arch::x86_64::*;
use core::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const SSE2: u8 = 1;
const AVX2: u8 = 2;
const AVX512: u8 = 3;

/// The kernel level [`apply_mask`] uses; `UNKNOWN` until the first call detects it.
static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// From this length on, the AVX2 / AVX-512 kernels align their main loop.
const ALIGN_FROM: usize = 256;

#[inline]
fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        UNKNOWN => detect(),
        l => l,
    }
}

#[cold]
#[inline(never)]
fn detect() -> u8 {
    let l = if has_avx512() {
        AVX512
    } else if std::is_x86_feature_detected!("avx2") {
        AVX2
    } else {
        SSE2
    };
    // Racing first calls all store the same value.
    LEVEL.store(l, Ordering::Relaxed);
    l
}

#[inline]
fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// The dispatching entry point behind [`super::apply_mask`].
#[inline]
pub(super) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < 64 {
        // Short payloads (most messages): no dispatch, no call, no wide registers.
        return small(buf, key, offset);
    }
    if buf.len() < ALIGN_FROM {
        // Up to four 64-byte blocks: the 16-byte kernel measured as fast here, without
        // the wider kernels' set-up.
        return mask_sse2(buf, key, offset);
    }
    match level() {
        // SAFETY: LEVEL holds AVX512 only after `detect` saw avx512f.
        AVX512 => unsafe { mask_avx512(buf, key, offset) },
        // SAFETY: LEVEL holds AVX2 only after `detect` saw avx2.
        AVX2 => unsafe { mask_avx2(buf, key, offset) },
        _ => mask_sse2(buf, key, offset),
    }
}

/// The name of the kernel [`apply_mask`] dispatches to.
pub(super) fn selected_name() -> &'static str {
    match level() {
        AVX512 => "avx512",
        AVX2 => "avx2",
        _ => "sse2",
    }
}

/// The SIMD kernels this CPU can run, narrowest first, as safe function pointers.
pub(super) fn available() -> Vec<(&'static str, KernelFn)> {
    let mut v: Vec<(&'static str, KernelFn)> = vec![("sse2", mask_sse2)];
    if std::is_x86_feature_detected!("avx2") {
        v.push(("avx2", checked_avx2));
    }
    if has_avx512() {
        v.push(("avx512", checked_avx512));
    }
    v
}

/// [`mask_avx2`] behind a (cached) feature check, so it can be a safe `fn` pointer.
fn checked_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    assert!(std::is_x86_feature_detected!("avx2"), "this CPU has no AVX2");
    // SAFETY: the assertion above proved the CPU supports AVX2.
    unsafe { mask_avx2(buf, key, offset) }
}

/// [`mask_avx512`] behind a (cached) feature check, so it can be a safe `fn` pointer.
fn checked_avx512(buf: &mut [u8], key: [u8; 4], offset: usize) {
    assert!(has_avx512(), "this CPU has no AVX-512 F");
    // SAFETY: the assertion above proved the CPU supports avx512f.
    unsafe { mask_avx512(buf, key, offset) }
}

/// SSE2, 16 bytes per vector. SSE2 is part of the x86-64 baseline, so this is safe.
/// Inlined: [`apply_mask`] uses it for 64..256-byte payloads, where a call is ~1 ns of ~5.
#[inline]
fn mask_sse2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let len = buf.len();
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it.
    let kv = unsafe { _mm_set1_epi32(i32::from_le_bytes(rotate_key(key, offset))) };
    let p = buf.as_mut_ptr();
    let mut i = 0;
    while i + 64 <= len {
        // SAFETY: i + 64 <= len, so the four 16-byte loads and stores at p+i .. p+i+64
        // stay inside `buf`; loadu/storeu accept any alignment; SSE2 is baseline.
        unsafe {
            let a = _mm_loadu_si128(p.add(i).cast());
            let b = _mm_loadu_si128(p.add(i + 16).cast());
            let c = _mm_loadu_si128(p.add(i + 32).cast());
            let d = _mm_loadu_si128(p.add(i + 48).cast());
            _mm_storeu_si128(p.add(i).cast(), _mm_xor_si128(a, kv));
            _mm_storeu_si128(p.add(i + 16).cast(), _mm_xor_si128(b, kv));
            _mm_storeu_si128(p.add(i + 32).cast(), _mm_xor_si128(c, kv));
            _mm_storeu_si128(p.add(i + 48).cast(), _mm_xor_si128(d, kv));
        }
        i += 64;
    }
    while i + 16 <= len {
        // SAFETY: i + 16 <= len, so the 16 bytes at p+i are inside `buf`; SSE2 is baseline.
        unsafe {
            let a = _mm_loadu_si128(p.add(i).cast());
            _mm_storeu_si128(p.add(i).cast(), _mm_xor_si128(a, kv));
        }
        i += 16;
    }
    small(&mut buf[i..], key, offset + i);
}

/// Fewer than 64 bytes, straight-line: up to three SSE2 vectors, then one `u64`, one
/// `u32` and up to three single bytes. No loop the compiler would vectorise again, no
/// 256/512-bit register, and only plain stores: a load right after (the UTF-8 check
/// reads the payload at once) is forwarded from the store buffer. (AVX-512 byte-masked
/// stores would make this one instruction, but are not forwarded: ~10 ns per call.)
#[inline(always)]
fn small(buf: &mut [u8], key: [u8; 4], offset: usize) {
    debug_assert!(buf.len() < 64);
    let k = rotate_key(key, offset);
    let len = buf.len();
    let mut i = 0;
    if len >= 16 {
        let p = buf.as_mut_ptr();
        // SAFETY: SSE2 is part of the x86-64 baseline.
        let kv = unsafe { _mm_set1_epi32(i32::from_le_bytes(k)) };
        while i + 16 <= len {
            // SAFETY: i + 16 <= len, so the 16 bytes at p+i are inside `buf`; SSE2 is baseline.
            unsafe { _mm_storeu_si128(p.add(i).cast(), _mm_xor_si128(_mm_loadu_si128(p.add(i).cast()), kv)) };
            i += 16;
        }
    }
    // From here i is a multiple of 4, so the key starts at k[0] again.
    let k4 = u32::from_le_bytes(k);
    if len - i >= 8 {
        let w: &mut [u8; 8] = (&mut buf[i..i + 8]).try_into().expect("8 bytes");
        *w = (u64::from_le_bytes(*w) ^ (u64::from(k4) * 0x1_0000_0001)).to_le_bytes();
        i += 8;
    }
    if len - i >= 4 {
        let w: &mut [u8; 4] = (&mut buf[i..i + 4]).try_into().expect("4 bytes");
        *w = (u32::from_le_bytes(*w) ^ k4).to_le_bytes();
        i += 4;
    }
    for (b, k) in buf[i..].iter_mut().zip(k) {
        *b ^= k;
    }
}

/// AVX2, 32 bytes per vector.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn mask_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let len = buf.len();
    let mut i = 0;
    if len >= ALIGN_FROM {
        // Unmask up to the next 32-byte boundary, so the main loop never splits a line.
        i = (buf.as_ptr() as usize).wrapping_neg() & 31;
        small(&mut buf[..i], key, offset);
    }
    let kv = _mm256_set1_epi32(i32::from_le_bytes(rotate_key(key, offset + i)));
    let p = buf.as_mut_ptr();
    while i + 128 <= len {
        // SAFETY: i + 128 <= len, so the four 32-byte loads and stores at p+i .. p+i+128
        // stay inside `buf`; loadu/storeu accept any alignment.
        unsafe {
            let a = _mm256_loadu_si256(p.add(i).cast());
            let b = _mm256_loadu_si256(p.add(i + 32).cast());
            let c = _mm256_loadu_si256(p.add(i + 64).cast());
            let d = _mm256_loadu_si256(p.add(i + 96).cast());
            _mm256_storeu_si256(p.add(i).cast(), _mm256_xor_si256(a, kv));
            _mm256_storeu_si256(p.add(i + 32).cast(), _mm256_xor_si256(b, kv));
            _mm256_storeu_si256(p.add(i + 64).cast(), _mm256_xor_si256(c, kv));
            _mm256_storeu_si256(p.add(i + 96).cast(), _mm256_xor_si256(d, kv));
        }
        i += 128;
    }
    while i + 32 <= len {
        // SAFETY: i + 32 <= len, so the 32 bytes at p+i are inside `buf`.
        unsafe {
            let a = _mm256_loadu_si256(p.add(i).cast());
            _mm256_storeu_si256(p.add(i).cast(), _mm256_xor_si256(a, kv));
        }
        i += 32;
    }
    small(&mut buf[i..], key, offset + i);
}

/// AVX-512, 64 bytes per vector, four per iteration; the head (up to a 64-byte
/// boundary) and the tail go through [`small`].
///
/// # Safety
/// The CPU must support AVX-512 F (which implies AVX2).
#[target_feature(enable = "avx512f")]
unsafe fn mask_avx512(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let len = buf.len();
    let mut i = 0;
    if len >= ALIGN_FROM {
        // Unmask up to the next 64-byte boundary, so the main loop never splits a line.
        i = (buf.as_ptr() as usize).wrapping_neg() & 63;
        small(&mut buf[..i], key, offset);
    }
    let kv = _mm512_set1_epi32(i32::from_le_bytes(rotate_key(key, offset + i)));
    let p = buf.as_mut_ptr();
    while i + 256 <= len {
        // SAFETY: i + 256 <= len, so the four 64-byte loads and stores at p+i .. p+i+256
        // stay inside `buf`; loadu/storeu accept any alignment.
        unsafe {
            let a = _mm512_loadu_si512(p.add(i).cast());
            let b = _mm512_loadu_si512(p.add(i + 64).cast());
            let c = _mm512_loadu_si512(p.add(i + 128).cast());
            let d = _mm512_loadu_si512(p.add(i + 192).cast());
            _mm512_storeu_si512(p.add(i).cast(), _mm512_xor_si512(a, kv));
            _mm512_storeu_si512(p.add(i + 64).cast(), _mm512_xor_si512(b, kv));
            _mm512_storeu_si512(p.add(i + 128).cast(), _mm512_xor_si512(c, kv));
            _mm512_storeu_si512(p.add(i + 192).cast(), _mm512_xor_si512(d, kv));
        }
        i += 256;
    }
    while i + 64 <= len {
        // SAFETY: i + 64 <= len, so the 64 bytes at p+i are inside `buf`.
        unsafe {
            let a = _mm512_loadu_si512(p.add(i).cast());
            _mm512_storeu_si512(p.add(i).cast(), _mm512_xor_si512(a, kv));
        }
        i += 64;
    }
    small(&mut buf[i..], key, offset + i);
}
