//! The workspace's seeded randomness: one generator with a fixed, documented algorithm.
//!
//! Every random draw in Bulwark comes from here: attacks' random starts, targets and Square's
//! proposals, data splits and epoch orders, adversarial training's random starts and noise,
//! mixup's coefficients, power-iteration starts. Results must be reproducible across machines and
//! crate versions, so this does not use the `rand` crate (whose algorithms may change between
//! releases). SplitMix64 (Steele, Lea & Flood 2014) is tiny, passes BigCrush, and is fully
//! specified here. It lives in this crate, the workspace's base (it depends on burn alone), so
//! that every other crate can use it.
//!
//! A sample's draws in an attack come from a generator seeded by the attack's seed, a stream
//! (the restart index, or a constant for target draws) and a hash of the sample's own values
//! ([`sample_seed`]): attacking a batch gives the same result as attacking each sample alone, in
//! any order, and a fixed seed reproduces it.
//!
//! ```
//! use bulwark_attack_core::rng::SplitMix64;
//!
//! let mut rng = SplitMix64::new(0);
//! assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF); // Vigna's reference output
//! let u = rng.uniform();
//! assert!((0.0..1.0).contains(&u));
//! assert_eq!(SplitMix64::new(42).permutation(4).len(), 4);
//! ```

/// The SplitMix64 increment (2^64 divided by the golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a strong 64-bit mixer).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 pseudo-random generator. Same seed, same sequence, forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is the reference SplitMix64 output for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for sub-stream `stream` of `seed`, e.g. one per epoch.
    ///
    /// Mixing both values keeps nearby (seed, stream) pairs far apart, so epoch 1 of seed 0 is
    /// unrelated to epoch 0 of seed 1.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        Self::new(mix64(seed) ^ mix64(stream.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    pub fn uniform_open0(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Standard normal (Box-Muller; one of the pair is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.uniform_open0().ln()).sqrt();
        r * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Exponential with rate 1.
    pub fn exponential(&mut self) -> f64 {
        -self.uniform_open0().ln()
    }

    /// A uniform integer in `0..bound`, without modulo bias (rejection). `bound` must be
    /// positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SplitMix64::below needs a positive bound");
        // Reject the lowest (2^64 mod bound) values so every residue is equally likely.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let r = self.next_u64();
            if r >= threshold {
                return r % bound;
            }
        }
    }

    /// A uniform index in `0..n` (`n > 0`) from one draw, by multiply-shift: the bias is at most
    /// `n / 2^64`, nothing for the sizes attacks draw from.
    pub fn index(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates, from the last element down).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

/// FNV-1a (64-bit) over `bytes`: a fast, fixed mixer for deriving seeds from names and values
/// (not an identity hash; content identities use SHA-256).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in bytes {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Seed for one sample: FNV-1a over the sample's f32 bit patterns, mixed with the attack seed and
/// a stream tag (restart index, or a constant for target draws).
pub fn sample_seed(seed: u64, stream: u64, sample: &[f32]) -> u64 {
    let h = fnv1a(sample.iter().flat_map(|v| v.to_bits().to_le_bytes()));
    let mut mix =
        SplitMix64::new(seed ^ h.rotate_left(17) ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
    mix.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_splitmix64() {
        // Reference values of SplitMix64 seeded with 0 (as in Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn shuffle_is_a_stable_permutation() {
        let p = SplitMix64::new(42).permutation(10);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        // Pinned: changing the algorithm would silently change every experiment's data order.
        assert_eq!(p, PINNED_42_10);
        assert_eq!(SplitMix64::new(42).permutation(10), p);
        assert_ne!(SplitMix64::new(43).permutation(10), p);
    }

    /// Computed by an independent Python transcription of the same algorithm.
    const PINNED_42_10: [usize; 10] = [0, 9, 5, 8, 6, 4, 7, 2, 1, 3];

    #[test]
    fn below_and_index_stay_in_range_and_hit_every_value() {
        let mut r = SplitMix64::new(7);
        let (mut a, mut b) = ([0usize; 5], [0usize; 5]);
        for _ in 0..1000 {
            a[r.below(5) as usize] += 1;
            b[r.index(5)] += 1;
        }
        assert!(a.iter().chain(&b).all(|&c| c > 150), "{a:?} {b:?}");
    }

    #[test]
    fn streams_differ() {
        let a = SplitMix64::with_stream(1, 0).next_u64();
        let b = SplitMix64::with_stream(1, 1).next_u64();
        let c = SplitMix64::with_stream(2, 0).next_u64();
        assert!(a != b && a != c && b != c);
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        // The published FNV-1a 64-bit test vectors.
        assert_eq!(fnv1a(*b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_F739_67E8);
    }
}
