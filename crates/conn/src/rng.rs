//! The masking-key generator for the client role: wyrand, seeded once per connection
//! from the standard library's per-process random hash keys (themselves from the OS).
//! RFC 6455 section 5.3 asks for keys the application cannot predict, not for
//! cryptographic strength; this needs no syscall per frame and no dependency.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// `Default` is an unseeded generator, for a connection that never masks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator with a fresh, unpredictable seed.
    pub(crate) fn from_entropy() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        Self(h.finish())
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    #[inline]
    pub(crate) fn mask_key(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_ne_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// 16 fresh random bytes for a client handshake's `Sec-WebSocket-Key`.
pub fn random_key() -> [u8; 16] {
    let mut k = [0u8; 16];
    Rng::from_entropy().fill(&mut k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_keys_vary() {
        let (mut a, mut b) = (Rng::from_entropy(), Rng::from_entropy());
        assert_ne!(a.next_u64(), b.next_u64());
        let keys: std::collections::HashSet<[u8; 4]> = (0..1000).map(|_| a.mask_key()).collect();
        assert!(keys.len() > 990);
        assert_ne!(random_key(), random_key());
    }
}
