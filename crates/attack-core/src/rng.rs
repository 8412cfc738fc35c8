//! Seeded randomness that does not depend on the batch a sample is in.
//!
//! A sample's random start and random target are drawn from a generator seeded by the attack's
//! seed, the restart index and a hash of the sample's own values. Attacking a batch therefore gives
//! the same result as attacking each sample alone, in any order, and a fixed seed reproduces it.

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, statistically sound for this use.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    pub(crate) fn uniform_open0(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Standard normal (Box-Muller; one of the pair is discarded for simplicity).
    pub(crate) fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.uniform_open0().ln()).sqrt();
        r * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Exponential with rate 1.
    pub(crate) fn exponential(&mut self) -> f64 {
        -self.uniform_open0().ln()
    }

    /// Uniform integer in `0..n` (n > 0), without modulo bias worth mentioning for n ≪ 2^64.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Seed for one sample: FNV-1a over the sample's f32 bit patterns, mixed with the attack seed and a
/// stream tag (restart index, or a constant for target draws).
pub(crate) fn sample_seed(seed: u64, stream: u64, sample: &[f32]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for v in sample {
        for byte in v.to_bits().to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    let mut mix =
        SplitMix64::new(seed ^ h.rotate_left(17) ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
    mix.next_u64()
}
