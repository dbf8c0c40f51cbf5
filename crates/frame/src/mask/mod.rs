//! Unmasking (RFC 6455 section 5.3): XOR the payload with a 4-byte key.
//!
//! [`apply_mask`] picks the fastest kernel once, at first use, and caches the choice
//! in an atomic: AVX-512 (F), then AVX2, then SSE2 on x86-64; NEON on aarch64;
//! the word-at-a-time [`apply_mask_fallback`] elsewhere, under Miri, or when built
//! with `RUSTFLAGS="--cfg ringwire_force_scalar"`. Masking and unmasking are the same
//! operation.
//!
//! `offset` is the number of payload bytes already processed with this key, so a
//! payload that arrives across several reads continues the key where it stopped:
//! `apply_mask(&mut p[..n], k, 0); apply_mask(&mut p[n..], k, n)` equals
//! `apply_mask(p, k, 0)`.
//!
//! The SIMD kernels in `x86.rs` and `neon.rs` are the only `unsafe` code in the crate:
//! the crate root denies `unsafe_code` and only those two modules allow it. [`kernels`] lists every kernel this CPU can run, by
//! name, for tests and benchmarks.

mod scalar;

#[cfg(all(target_arch = "x86_64", not(any(miri, ringwire_force_scalar))))]
#[allow(unsafe_code)]
mod x86;

#[cfg(all(target_arch = "aarch64", target_feature = "neon", not(any(miri, ringwire_force_scalar))))]
#[allow(unsafe_code)]
mod neon;

pub use scalar::{apply_mask_bytewise, apply_mask_fallback};

/// The key rotated so that byte 0 of the result applies to payload position `offset`.
#[inline]
pub const fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    // Little-endian on every target: byte i of the key is bits 8i..8i+8, so rotating
    // right by 8 bits moves key[1] into position 0.
    u32::from_le_bytes(key).rotate_right(((offset & 3) * 8) as u32).to_le_bytes()
}

/// XORs `buf` with `key`, starting at key position `offset % 4`, with the fastest
/// kernel this CPU has (chosen once, then cached).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    #[cfg(all(target_arch = "x86_64", not(any(miri, ringwire_force_scalar))))]
    {
        x86::apply_mask(buf, key, offset)
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon", not(any(miri, ringwire_force_scalar))))]
    {
        neon::apply_mask_neon(buf, key, offset)
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", not(any(miri, ringwire_force_scalar))),
        all(target_arch = "aarch64", target_feature = "neon", not(any(miri, ringwire_force_scalar)))
    )))]
    {
        apply_mask_fallback(buf, key, offset)
    }
}

/// The signature every kernel shares: `(buf, key, offset)`.
type KernelFn = fn(&mut [u8], [u8; 4], usize);

/// One unmasking kernel this CPU can run. Obtained only from [`kernels`], which
/// leaves out kernels whose instructions the CPU lacks, so [`Kernel::apply`] is
/// always safe to call.
#[derive(Clone, Copy)]
pub struct Kernel {
    name: &'static str,
    f: KernelFn,
}

impl Kernel {
    /// A short name: `"bytewise"`, `"fallback"`, `"sse2"`, `"avx2"`, `"avx512"`, `"neon"`.
    #[inline]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Runs this kernel: same contract as [`apply_mask`].
    #[inline]
    pub fn apply(&self, buf: &mut [u8], key: [u8; 4], offset: usize) {
        (self.f)(buf, key, offset)
    }
}

impl core::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Kernel").field(&self.name).finish()
    }
}

/// Every kernel this CPU can run, portable ones first, then the SIMD ones from the
/// narrowest to the widest. Under `ringwire_force_scalar` or Miri only the portable
/// kernels are listed.
pub fn kernels() -> Vec<Kernel> {
    #[allow(unused_mut)] // only targets with SIMD kernels push more
    let mut v =
        vec![Kernel { name: "bytewise", f: apply_mask_bytewise }, Kernel { name: "fallback", f: apply_mask_fallback }];
    #[cfg(all(target_arch = "x86_64", not(any(miri, ringwire_force_scalar))))]
    v.extend(x86::available().into_iter().map(|(name, f)| Kernel { name, f }));
    #[cfg(all(target_arch = "aarch64", target_feature = "neon", not(any(miri, ringwire_force_scalar))))]
    v.push(Kernel { name: "neon", f: neon::apply_mask_neon });
    v
}

/// The name of the kernel [`apply_mask`] uses on this CPU (see [`Kernel::name`]).
pub fn selected_kernel() -> &'static str {
    #[cfg(all(target_arch = "x86_64", not(any(miri, ringwire_force_scalar))))]
    {
        x86::selected_name()
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon", not(any(miri, ringwire_force_scalar))))]
    {
        "neon"
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", not(any(miri, ringwire_force_scalar))),
        all(target_arch = "aarch64", target_feature = "neon", not(any(miri, ringwire_force_scalar)))
    )))]
    {
        "fallback"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_key_moves_byte_offset_to_front() {
        let k = [1, 2, 3, 4];
        assert_eq!(rotate_key(k, 0), [1, 2, 3, 4]);
        assert_eq!(rotate_key(k, 1), [2, 3, 4, 1]);
        assert_eq!(rotate_key(k, 2), [3, 4, 1, 2]);
        assert_eq!(rotate_key(k, 7), [4, 1, 2, 3]);
    }

    #[test]
    fn rfc_example_and_split_continuation() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p[..3], key, 0);
        apply_mask(&mut p[3..], key, 3);
        assert_eq!(&p, b"Hello");
    }

    #[test]
    fn kernel_list_names_the_selected_one() {
        let names: Vec<_> = kernels().iter().map(Kernel::name).collect();
        assert_eq!(&names[..2], ["bytewise", "fallback"]);
        assert!(names.contains(&selected_kernel()), "{names:?} lacks {}", selected_kernel());
    }
}
