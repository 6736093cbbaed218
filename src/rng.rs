//! A small deterministic PRNG, splitmix64 (Steele, Lea and Flood, 2014).
//!
//! The writer draws each segment's nonce from one, seeded from the OS
//! entropy pool when the shard opens (`format::log_id::random_u64`); the
//! simulator (`io::sim`) and the tests use it for reproducible decisions.
//! It is not a cryptographic generator: nonces only need to differ between
//! incarnations of a segment, not to be unguessable.
//!
//! This module imports nothing of the crate.

/// splitmix64: 64 bits of state, one add and three xor-shift-multiplies
/// per output. The state is public so that a seed can be written
/// `SplitMix(seed)`.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // splitmix64 seeded with 0 (reference outputs of the published
        // algorithm).
        let mut r = SplitMix(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }
}
