//! Bulwark patch: direct 2D convolution with an AVX-512 register-tile
//! kernel, for f32 convolutions with one group (the forward pass at any
//! stride and dilation, and the input gradient of stride-1 convolutions, which
//! is itself a stride-1 convolution of the output gradient with the
//! transposed, flipped kernel).
//!
//! im2col + gemm writes a `[cin·kh·kw, pixels]` column matrix, then gemm packs
//! it into panels again before its kernel reads them: for madry-cnn's second
//! layer that is 3 MB written and read twice per chunk of five samples, and
//! the input gradient adds a gemm with a reduction of only 64 and a col2im. Here
//! the kernel reads its operands where they already are. Each call computes a
//! tile of up to [`PANEL`] consecutive output pixels of one row by up to
//! [`BLOCK`] output channels, in 14 vector accumulators: for every
//! `(channel, tap)` of the reduction it loads the tap's weights for the
//! channel block (two vectors, packed once per call) and broadcasts the
//! panel's input pixels, which for every tap are contiguous in one stride
//! phase of the zero-padded input (the layout of [`super::phase_side`]).
//! There is no column matrix and no packing of activations; the FMA units,
//! not the loads, bound the kernel (14 independent FMAs per 9 loads).
//!
//! The kernel needs AVX-512F, detected at run time; elsewhere (other CPUs, no
//! `std`, or [`set_enabled`]`(false)`) the callers keep the im2col + gemm path.

use alloc::vec;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use super::{Geom, for_each_chunk, phase_len, phase_side, split_phases, tap_offsets, threads};

/// Output channels per kernel call: two 16-lane vectors.
const BLOCK: usize = 32;
/// Output pixels per kernel call: 7 × 2 accumulators + 2 weight vectors fit
/// the registers with room to spare, and 7 divides the rows of MNIST-sized
/// maps (28, 14, 7) evenly.
const PANEL: usize = 7;

/// Shortest reduction (`cin·kh·kw`) worth a kernel call: each call ends by
/// writing its `7 × 32` results one by one into the channel planes, which
/// costs as much as a reduction of about 25 (madry-cnn's first layer, `1·5·5`,
/// ran 8 % faster per PGD step through im2col + gemm, measured in pairs).
const MIN_K: usize = 64;

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static SWITCH: AtomicU8 = AtomicU8::new(UNSET);

/// Turns the direct kernels on or off for the whole process (they are on by
/// default where the CPU has AVX-512F, unless the environment variable
/// `BURN_FLEX_CONV_DIRECT` is `0`). Both paths compute the same convolution
/// (the sums may round differently); the switch exists to compare them.
pub fn set_enabled(on: bool) {
    SWITCH.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether f32 convolutions take the direct kernels: the switch is on and
/// the CPU has AVX-512F.
pub fn active() -> bool {
    let on = match SWITCH.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = env_allows();
            SWITCH.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    };
    on && cpu_supported()
}

#[cfg(feature = "std")]
fn env_allows() -> bool {
    std::env::var_os("BURN_FLEX_CONV_DIRECT").is_none_or(|v| v != "0")
}

#[cfg(not(feature = "std"))]
fn env_allows() -> bool {
    true
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn cpu_supported() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
fn cpu_supported() -> bool {
    false
}

/// Whether the direct kernel suits a convolution of geometry `g`: one group,
/// at least 16 output channels (so the vectors are mostly full), a reduction
/// of at least [`MIN_K`], offsets that fit 32 bits.
pub(super) fn suits(g: &Geom) -> bool {
    g.groups == 1
        && g.cout >= 16
        && g.ho > 0
        && g.wo > 0
        && g.k() >= MIN_K
        && g.cin
            .checked_mul(phase_len(g))
            .is_some_and(|n| n < u32::MAX as usize)
}

/// The width of the channel block starting at `first` (16 when at most 16
/// channels are left, so a layer of 48 channels runs a 32- and a 16-block).
fn block_width(cout: usize, first: usize) -> usize {
    if cout - first <= 16 { 16 } else { BLOCK }
}

/// Packs the weights for the kernel: per channel block, `[K][width]` with
/// `weight(co, k)` at `[k][co - first]` and zeros past the last channel.
pub(super) fn pack(cout: usize, k: usize, weight: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let mut packed = Vec::with_capacity(cout.div_ceil(16) * 16 * k);
    let mut first = 0;
    while first < cout {
        let width = block_width(cout, first);
        for kk in 0..k {
            for l in 0..width {
                let co = first + l;
                packed.push(if co < cout { weight(co, kk) } else { 0.0 });
            }
        }
        first += BLOCK;
    }
    packed
}

/// `out[s, co, oh, ow] = bias[co] + Σ_k packed(co, k) · input(k, oh, ow)` for
/// every sample of `x` (`[b, cin, h, w]`), where reduction index `k = (c, ky,
/// kx)` reads input pixel `(oh·sh + ky·dh - ph, ow·sw + kx·dw - pw)` of
/// channel `c`, zero in the padding. `packed` comes from [`pack`]; `out` is
/// `[b, cout, ho, wo]`, every element written.
pub(super) fn conv(
    g: &Geom,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    assert!(cpu_supported(), "direct convolution without AVX-512F");
    let (p, k, plen) = (g.p(), g.k(), phase_len(g));
    let wq = phase_side(g).1;
    let sample_in = g.cin * g.h * g.w;
    assert_eq!(x.len(), g.b * sample_in, "direct conv input");
    assert_eq!(out.len(), g.b * g.cout * p, "direct conv output");
    assert_eq!(packed.len(), g.cout.div_ceil(16) * 16 * k, "packed weights");
    let taps = tap_offsets(g);
    let offsets: Vec<u32> = (0..k)
        .map(|kk| (kk / taps.len() * plen + taps[kk % taps.len()]) as u32)
        .collect();
    // The kernel reads `offsets[k] + oh·wq + ow` for every output pixel: the
    // furthest read must lie inside the phases of all channels.
    let furthest = offsets.iter().max().map_or(0, |&o| o as usize) + (g.ho - 1) * wq + g.wo - 1;
    assert!(furthest < g.cin * plen, "direct conv reads past its input");
    let panels = panels(g.wo);
    let per_chunk = g.b.div_ceil(threads().max(1) * 4).max(1);

    for_each_chunk(out, g.cout * p, per_chunk, |first, nb, out| {
        let mut phases = vec![0f32; g.cin * plen];
        let mut tile = [0f32; PANEL * BLOCK];
        for s in 0..nb {
            let xs = &x[(first + s) * sample_in..(first + s + 1) * sample_in];
            for c in 0..g.cin {
                let plane = &xs[c * g.h * g.w..(c + 1) * g.h * g.w];
                split_phases(g, plane, &mut phases[c * plen..(c + 1) * plen]);
            }
            let out = &mut out[s * g.cout * p..(s + 1) * g.cout * p];
            for oh in 0..g.ho {
                for &(ow0, mr) in &panels {
                    let mut co0 = 0;
                    while co0 < g.cout {
                        let width = block_width(g.cout, co0);
                        let w = &packed[co0 * k..co0 * k + width * k];
                        let at = oh * wq + ow0;
                        // SAFETY: the CPU has AVX-512F (asserted above); the
                        // kernel reads `phases[at + offsets[k] + i]` for
                        // `i < mr`, at most `furthest` (asserted inside the
                        // phases), `w` holds `k · width` weights and `tile`
                        // `PANEL · BLOCK` results.
                        unsafe { run_tile(mr, width, &phases, at, &offsets, w, &mut tile) };
                        let channels = width.min(g.cout - co0);
                        for l in 0..channels {
                            let b = bias.map_or(0.0, |b| b[co0 + l]);
                            let row = (co0 + l) * p + oh * g.wo + ow0;
                            for (i, o) in out[row..row + mr].iter_mut().enumerate() {
                                o.write(tile[i * width + l] + b);
                            }
                        }
                        co0 += width;
                    }
                }
            }
        }
    });
}

/// Splits a row of `wo` pixels into panels of at most [`PANEL`] pixels, as
/// even as possible: `(first pixel, width)`.
fn panels(wo: usize) -> Vec<(usize, usize)> {
    let n = wo.div_ceil(PANEL);
    let (base, extra) = (wo / n, wo % n);
    let mut at = 0;
    (0..n)
        .map(|i| {
            let width = base + usize::from(i < extra);
            at += width;
            (at - width, width)
        })
        .collect()
}

/// Dispatches to the kernel for `mr` pixels by `width` (16 or 32) channels.
///
/// # Safety
/// The CPU has AVX-512F; `phases[at + offsets[k] + i]` is in bounds for every
/// `k` and `i < mr`; `w.len() >= offsets.len() · width`.
#[cfg(target_arch = "x86_64")]
unsafe fn run_tile(
    mr: usize,
    width: usize,
    phases: &[f32],
    at: usize,
    offsets: &[u32],
    w: &[f32],
    tile: &mut [f32; PANEL * BLOCK],
) {
    debug_assert!(w.len() >= offsets.len() * width);
    let a = phases[at..].as_ptr();
    let (w, t) = (w.as_ptr(), tile.as_mut_ptr());
    // SAFETY: forwarded from the caller.
    unsafe {
        match (mr, width) {
            (1, 16) => kernel::<1, 1>(a, offsets, w, t),
            (2, 16) => kernel::<2, 1>(a, offsets, w, t),
            (3, 16) => kernel::<3, 1>(a, offsets, w, t),
            (4, 16) => kernel::<4, 1>(a, offsets, w, t),
            (5, 16) => kernel::<5, 1>(a, offsets, w, t),
            (6, 16) => kernel::<6, 1>(a, offsets, w, t),
            (7, 16) => kernel::<7, 1>(a, offsets, w, t),
            (1, _) => kernel::<1, 2>(a, offsets, w, t),
            (2, _) => kernel::<2, 2>(a, offsets, w, t),
            (3, _) => kernel::<3, 2>(a, offsets, w, t),
            (4, _) => kernel::<4, 2>(a, offsets, w, t),
            (5, _) => kernel::<5, 2>(a, offsets, w, t),
            (6, _) => kernel::<6, 2>(a, offsets, w, t),
            _ => kernel::<7, 2>(a, offsets, w, t),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn run_tile(
    _mr: usize,
    _width: usize,
    _phases: &[f32],
    _at: usize,
    _offsets: &[u32],
    _w: &[f32],
    _tile: &mut [f32; PANEL * BLOCK],
) {
    unreachable!("the direct convolution runs only where `active()` is true (x86-64)");
}

/// The register tile: `tile[i·16·NV + l] = Σ_k a[offsets[k] + i] · w[k·16·NV + l]`
/// for `MR` pixels and `16·NV` channels, in `MR · NV` accumulators.
///
/// # Safety
/// AVX-512F; the reads described by [`run_tile`]'s contract; `tile` holds
/// `MR · 16 · NV` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const MR: usize, const NV: usize>(
    a: *const f32,
    offsets: &[u32],
    w: *const f32,
    tile: *mut f32,
) {
    use core::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
    use core::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    // SAFETY: the pointers stay inside the caller's buffers (contract above).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut wp = w;
        for &off in offsets {
            let mut wv = [_mm512_setzero_ps(); NV];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = _mm512_loadu_ps(wp.add(v * 16));
            }
            let ap = a.add(off as usize);
            for (i, acc) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*ap.add(i));
                for (acc, &wv) in acc.iter_mut().zip(&wv) {
                    *acc = _mm512_fmadd_ps(b, wv, *acc);
                }
            }
            wp = wp.add(NV * 16);
        }
        for (i, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(tile.add((i * NV + v) * 16), acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PANEL, panels};

    #[test]
    fn panels_cover_a_row_evenly() {
        for wo in 1..60 {
            let ps = panels(wo);
            let mut at = 0;
            for &(first, width) in &ps {
                assert_eq!(first, at);
                assert!((1..=PANEL).contains(&width));
                at += width;
            }
            assert_eq!(at, wo);
            let (lo, hi) = (ps.iter().map(|p| p.1).min(), ps.iter().map(|p| p.1).max());
            assert!(hi.unwrap() - lo.unwrap() <= 1, "{wo}: {ps:?}");
        }
    }
}
