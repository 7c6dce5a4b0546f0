//! A small seeded pseudo-random generator.

/// splitmix64: a small, good, seedable pseudo-random generator (no dependency needed), so a
/// benchmark planned from a seed is the same on every run and for every system it is run on,
/// and a randomized test can be replayed from the seed it printed.
///
/// Not for cryptography. The sequence for a seed is fixed: changing it changes every plan
/// generated from it.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose state starts at `seed` (any value, 0 included).
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 pseudo-random bits.
    // Not `Iterator::next`: the sequence never ends, so no `Option`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (with the slight modulo bias of `next() % n`); needs `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi` (with the slight modulo bias of `next() % (hi - lo + 1)`); needs
    /// `lo <= hi` and not the whole `u64` range.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `(0, 1]` (53 random bits), so its logarithm is finite.
    pub fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_sequence() {
        // The reference splitmix64 outputs for seed 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!((3..=15).contains(&r.range(3, 15)));
            assert!(r.below(4) < 4);
            let u = r.unit();
            assert!(u > 0.0 && u <= 1.0);
        }
        assert_eq!(SplitMix64::new(9).range(5, 5), 5);
    }
}
