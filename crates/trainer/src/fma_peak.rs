//! The CPU's measured float32 FMA rate: the ceiling the benchmarks' GFLOP/s are compared with.
//!
//! Every thread the CPU backends use runs a loop of fused multiply-adds on 12 independent vector
//! accumulators held in registers (enough to cover the FMA latency on both FMA pipes of current
//! x86 cores), all threads at once; the rate is the best of five such runs. Nothing is loaded
//! from memory, so this is the arithmetic ceiling, which no real kernel quite reaches. The widest
//! vectors the CPU has are used: AVX-512 (16 lanes), else AVX2 with FMA (8 lanes).

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A measured FMA peak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FmaPeak {
    /// float32 FLOP/s (2 per lane per FMA) over all threads, in GFLOP/s.
    pub gflops_per_second: f64,
    /// Threads run at once (rayon's: `RAYON_NUM_THREADS`, else the available parallelism).
    pub threads: usize,
    /// The instructions: `AVX-512` or `AVX2 FMA`.
    pub instructions: String,
}

/// Loop trips per thread and run: about 50 ms at 250 GFLOP/s per thread with AVX-512.
const TRIPS: u64 = 32_000_000;
/// Independent accumulators.
const ACCUMULATORS: u64 = 12;

/// Measures the FMA peak, or `None` where it cannot be measured (not x86-64, or no FMA).
///
/// ```
/// if let Some(peak) = bulwark_trainer::fma_peak() {
///     assert!(peak.gflops_per_second > 0.0 && peak.threads >= 1);
/// }
/// ```
pub fn fma_peak() -> Option<FmaPeak> {
    let (lanes, instructions, run) = kernel()?;
    let threads = cpu_threads();
    let flops = 2.0 * (lanes * ACCUMULATORS * TRIPS) as f64 * threads as f64;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| std::hint::black_box(run(TRIPS)));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    Some(FmaPeak {
        gflops_per_second: flops / best / 1e9,
        threads,
        instructions: instructions.to_string(),
    })
}

/// The threads the CPU backends compute on: rayon's global pool, sized by `RAYON_NUM_THREADS`
/// when set, else by the machine's available parallelism.
fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether this CPU gets a measured peak: AVX-512F, or AVX2 with FMA (x86-64 only).
#[cfg(test)]
fn measurable() -> bool {
    kernel().is_some()
}

type Run = fn(u64) -> f32;

#[cfg(target_arch = "x86_64")]
fn kernel() -> Option<(u64, &'static str, Run)> {
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F detected just above.
        Some((16, "AVX-512", |n| unsafe { x86::avx512(n) }))
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: AVX2 and FMA detected just above.
        Some((8, "AVX2 FMA", |n| unsafe { x86::avx2(n) }))
    } else {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel() -> Option<(u64, &'static str, Run)> {
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use std::hint::black_box;

    /// `acc = acc · a + b` on 12 accumulators, `n` times; returns a lane of their sum so the loop
    /// is not optimised away. With `a` below 1 the values stay finite (they approach
    /// `b / (1 - a)`). The operands pass through `black_box`: with constants the compiler can fold
    /// the loop away (an earlier `1 · 0.999999 + 1e-6` rounds to 1, a fixed point, and the loop
    /// vanished: the "peak" came out at 375 TFLOP/s).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(n: u64) -> f32 {
        let (a, b) = (
            _mm512_set1_ps(black_box(0.999_9)),
            _mm512_set1_ps(black_box(1e-3)),
        );
        let mut acc = [_mm512_set1_ps(black_box(0.5)); 12];
        for _ in 0..n {
            for acc in &mut acc {
                *acc = _mm512_fmadd_ps(*acc, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(sum)
    }

    /// [`avx512`] with 8-lane vectors.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(n: u64) -> f32 {
        let (a, b) = (
            _mm256_set1_ps(black_box(0.999_9)),
            _mm256_set1_ps(black_box(1e-3)),
        );
        let mut acc = [_mm256_set1_ps(black_box(0.5)); 12];
        for _ in 0..n {
            for acc in &mut acc {
                *acc = _mm256_fmadd_ps(*acc, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds the 8 floats stored.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_measured_on_an_fma_cpu_and_is_plausible() {
        if measurable() {
            let peak = fma_peak().expect("an AVX-512 or AVX2 + FMA CPU gets a measured peak");
            // One core at 1 GHz with one 8-lane FMA pipe does 16 GFLOP/s; no CPU of this decade
            // does 100 TFLOP/s of float32 FMA.
            let per_thread = peak.gflops_per_second / peak.threads as f64;
            assert!(per_thread > 4.0 && peak.gflops_per_second < 1e5, "{peak:?}");
            return;
        }
        assert!(fma_peak().is_none());
    }
}
