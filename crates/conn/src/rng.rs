//! Masking keys for the client role and the handshake nonce, from a CSPRNG.
//!
//! RFC 6455 section 5.3: the masking key "MUST be derived from a strong source of
//! entropy", and a server or proxy that sees some keys must not be able to predict the
//! next. Each thread keeps one ChaCha20 generator (`chacha20::ChaCha20Rng`), seeded with
//! 32 bytes from the OS (`getrandom(2)`) the first time the thread needs a key; it
//! computes the keystream a few 64-byte blocks at a time (16 keys a block) and hands it
//! out 4 bytes per key: no syscall per frame, and no generator in each connection (an
//! idle connection's size is budgeted, see `docs/scaling.md`).
//!
//! A process that `fork`s after drawing keys leaves the child with the parent's
//! generator state for that thread: both would then draw the same keys. ringwire does not
//! fork; a program that does should draw its first key in the child.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng as _, SeedableRng as _};
use std::cell::RefCell;

thread_local! {
    /// This thread's generator, seeded on first use.
    static RNG: RefCell<ChaCha20Rng> = RefCell::new(seeded());
}

/// A generator seeded from the OS. Without an OS random source there is no safe key to
/// give: that is a panic, as in `rand`'s thread generator.
fn seeded() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut seed) {
        panic!("ringwire-conn: the OS random source failed ({e}); no masking key can be made");
    }
    ChaCha20Rng::from_seed(seed)
}

/// A fresh masking key for one client frame.
#[inline]
pub(crate) fn mask_key() -> [u8; 4] {
    RNG.with(|r| r.borrow_mut().next_u32().to_ne_bytes())
}

/// 16 fresh random bytes for a client handshake's `Sec-WebSocket-Key`, from the same
/// generator as the masking keys.
pub fn random_key() -> [u8; 16] {
    let mut k = [0u8; 16];
    RNG.with(|r| r.borrow_mut().fill_bytes(&mut k));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_vary_and_cover_every_byte_value() {
        let keys: Vec<[u8; 4]> = (0..4096).map(|_| mask_key()).collect();
        let distinct: HashSet<[u8; 4]> = keys.iter().copied().collect();
        // 4096 draws from 2^32 values collide with probability about 0.2%; a generator
        // stuck on a cycle or a constant fails.
        assert!(distinct.len() >= 4090, "{} distinct keys of 4096", distinct.len());
        // 16 KiB of uniform bytes miss a given value with probability e^-64.
        let mut seen = [false; 256];
        let mut ones = 0u32;
        for b in keys.iter().flatten() {
            seen[usize::from(*b)] = true;
            ones += b.count_ones();
        }
        assert!(seen.iter().all(|s| *s), "some byte value never appears in 16 KiB of keys");
        // 131072 bits: the count of ones is 65536 +- 181 (one sigma); allow ten sigma.
        assert!((63_726..=67_346).contains(&ones), "{ones} one bits of 131072");
        assert_ne!(random_key(), random_key());
    }

    #[test]
    fn each_thread_has_its_own_seed() {
        let here: Vec<[u8; 4]> = (0..4).map(|_| mask_key()).collect();
        let there = std::thread::spawn(|| (0..4).map(|_| mask_key()).collect::<Vec<_>>()).join().unwrap();
        assert_ne!(here, there);
    }
}
