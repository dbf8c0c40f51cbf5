//! aarch64 kernel: NEON, 16 bytes per vector. NEON is part of the aarch64 baseline
//! (this module is compiled only when `target_feature = "neon"` is on), so no run-time
//! detection is needed.

use super::{apply_mask_fallback, rotate_key};
use core::arch::aarch64::*;

/// NEON, four 16-byte vectors per iteration, then one vector at a time, then the
/// word loop for the last 0..16 bytes.
pub(super) fn apply_mask_neon(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let len = buf.len();
    let k = rotate_key(key, offset);
    let k16: [u8; 16] = core::array::from_fn(|j| k[j & 3]);
    // SAFETY: `k16` is 16 readable bytes; NEON is enabled for this target (the module's cfg).
    let kv = unsafe { vld1q_u8(k16.as_ptr()) };
    let p = buf.as_mut_ptr();
    let mut i = 0;
    while i + 64 <= len {
        // SAFETY: i + 64 <= len, so the four 16-byte loads and stores at p+i .. p+i+64
        // stay inside `buf`; vld1q_u8/vst1q_u8 need only byte alignment; NEON is enabled.
        unsafe {
            let a = vld1q_u8(p.add(i));
            let b = vld1q_u8(p.add(i + 16));
            let c = vld1q_u8(p.add(i + 32));
            let d = vld1q_u8(p.add(i + 48));
            vst1q_u8(p.add(i), veorq_u8(a, kv));
            vst1q_u8(p.add(i + 16), veorq_u8(b, kv));
            vst1q_u8(p.add(i + 32), veorq_u8(c, kv));
            vst1q_u8(p.add(i + 48), veorq_u8(d, kv));
        }
        i += 64;
    }
    while i + 16 <= len {
        // SAFETY: i + 16 <= len, so the 16 bytes at p+i are inside `buf`; NEON is enabled.
        unsafe {
            let a = vld1q_u8(p.add(i));
            vst1q_u8(p.add(i), veorq_u8(a, kv));
        }
        i += 16;
    }
    apply_mask_fallback(&mut buf[i..], key, offset + i);
}
