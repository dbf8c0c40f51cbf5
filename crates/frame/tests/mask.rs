//! Differential tests: every unmasking kernel this CPU can run against the byte loop,
//! for every length 0..=300 at every buffer offset 0..=7 and every key rotation 0..=3,
//! with guard bytes around the slice to catch out-of-bounds writes.

use ringwire_frame::mask::{Kernel, apply_mask, apply_mask_bytewise, kernels, selected_kernel};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const GUARD: u8 = 0xA5;

/// A kernel under test: `(buf, key, offset)`.
type MaskFn = dyn Fn(&mut [u8], [u8; 4], usize);

/// A 64-byte aligned working area, so "buffer offset" means the same thing on every run.
struct Area {
    storage: Vec<u8>,
    base: usize,
}

impl Area {
    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + 128];
        let base = storage.as_ptr().align_offset(64);
        Self { storage, base }
    }

    /// Fills the area with guards, puts `data` at `at` (relative to the aligned base),
    /// and returns the whole aligned area.
    fn load(&mut self, at: usize, data: &[u8]) -> &mut [u8] {
        let area = &mut self.storage[self.base..];
        area.fill(GUARD);
        area[at..at + data.len()].copy_from_slice(data);
        area
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Runs `k` on `len` bytes placed at `at`, with key rotation `rot`, and compares with
/// the byte loop; the guard bytes on both sides must be untouched.
fn check(k: &MaskFn, name: &str, area: &mut Area, len: usize, at: usize, rot: usize) {
    let data = pattern(len, (at * 4 + rot) as u8);
    let mut want = data.clone();
    apply_mask_bytewise(&mut want, KEY, rot);
    let buf = area.load(at, &data);
    k(&mut buf[at..at + len], KEY, rot);
    assert_eq!(&buf[at..at + len], &want[..], "{name}: len {len} at {at} rotation {rot}");
    assert!(buf[..at].iter().all(|&b| b == GUARD), "{name}: wrote before the slice (len {len} at {at})");
    assert!(
        buf[at + len..].iter().all(|&b| b == GUARD),
        "{name}: wrote after the slice (len {len} at {at} rotation {rot})"
    );
}

fn all_kernels() -> Vec<(String, Box<MaskFn>)> {
    let mut v: Vec<(String, Box<MaskFn>)> = kernels()
        .into_iter()
        .map(|k: Kernel| (k.name().to_string(), Box::new(move |b: &mut [u8], key, off| k.apply(b, key, off)) as _))
        .collect();
    v.push((format!("apply_mask ({})", selected_kernel()), Box::new(apply_mask)));
    v
}

#[test]
fn every_kernel_matches_bytewise_for_small_lengths_offsets_and_rotations() {
    let mut area = Area::new(300 + 8);
    for (name, k) in all_kernels() {
        for len in 0..=300 {
            for at in 0..=7 {
                for rot in 0..=3 {
                    check(&*k, &name, &mut area, len, at, rot);
                }
            }
        }
    }
}

#[test]
fn every_kernel_matches_bytewise_at_every_cache_line_offset() {
    // Long enough for the aligned main loops; every head length 0..64 is exercised.
    let mut area = Area::new(1100 + 64);
    for (name, k) in all_kernels() {
        for len in [255, 256, 257, 319, 320, 511, 512, 513, 1000, 1024, 1100] {
            for at in 0..64 {
                for rot in 0..=3 {
                    check(&*k, &name, &mut area, len, at, rot);
                }
            }
        }
    }
}

#[test]
fn split_payload_continues_the_key() {
    // A payload arriving in pieces: masking piece by piece with the running offset
    // equals masking it whole, for every kernel and every split point.
    let data = pattern(700, 7);
    let mut want = data.clone();
    apply_mask_bytewise(&mut want, KEY, 0);
    for (name, k) in all_kernels() {
        for split in (0..=700).step_by(3) {
            for split2 in [split, (split + 1).min(700), (split + 130).min(700)] {
                let mut got = data.clone();
                k(&mut got[..split], KEY, 0);
                k(&mut got[split..split2], KEY, split);
                k(&mut got[split2..], KEY, split2);
                assert_eq!(got, want, "{name}: splits at {split}, {split2}");
            }
        }
    }
}

#[test]
fn masking_twice_is_identity_on_a_large_buffer() {
    let data = pattern((1 << 20) + 13, 1);
    for (name, k) in all_kernels() {
        let mut buf = data.clone();
        k(&mut buf[3..], KEY, 5);
        assert_ne!(buf, data, "{name}: masking changed nothing");
        let mut want = data.clone();
        apply_mask_bytewise(&mut want[3..], KEY, 5);
        assert_eq!(buf, want, "{name}: 1 MiB + 13 at offset 3");
        k(&mut buf[3..], KEY, 5);
        assert_eq!(buf, data, "{name}: unmask after mask");
    }
}

#[test]
fn the_fastest_kernel_is_listed_and_selected() {
    let names: Vec<&str> = kernels().iter().map(Kernel::name).collect();
    assert!(names.contains(&selected_kernel()));
    #[cfg(all(target_arch = "x86_64", not(ringwire_force_scalar)))]
    {
        assert!(names.contains(&"sse2"));
        if std::is_x86_feature_detected!("avx2") {
            assert!(names.contains(&"avx2"));
        }
        let want = if std::is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if std::is_x86_feature_detected!("avx2") {
            "avx2"
        } else {
            "sse2"
        };
        assert_eq!(selected_kernel(), want);
    }
    #[cfg(ringwire_force_scalar)]
    assert_eq!(selected_kernel(), "fallback");
}
