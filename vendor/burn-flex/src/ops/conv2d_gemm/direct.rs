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
//! tile of up to [`PANEL`] consecutive output pixels of one row (or two rows
//! of at most half as many) by up to [`BLOCK`] output channels, in up to 16
//! vector accumulators: for every
//! `(channel, tap)` of the reduction it loads the tap's weights for the
//! channel block (two vectors, packed once per call) and broadcasts the
//! panel's input pixels, which for every tap are contiguous in one stride
//! phase of the zero-padded input (the layout of [`super::phase_side`]).
//! There is no column matrix and no packing of activations; the FMA units,
//! not the loads, bound the kernel (16 independent FMAs per 10 loads).
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
/// Most output pixels of one row per kernel call: 8 × 2 accumulators + 2
/// weight vectors fit the 32 registers with room to spare; rows split evenly
/// into panels of at most 8 (MNIST's 28, 14 and 7 into 7s, CIFAR's 32, 16 and
/// 8 into 8s).
const PANEL: usize = 8;
/// Most output pixels per kernel call (two rows of at most `PANEL / 2`).
const TILE: usize = PANEL;
/// Bytes of weights one pass over the tiles uses: the reduction is cut into
/// blocks whose weights (`block × 32` floats) stay in the L1 data cache (32 or
/// 48 KB on current x86 cores) while every tile of a group of samples runs
/// through them; the tiles' partial sums go to memory between blocks.
const L1_WEIGHTS: usize = 16 << 10;
/// Tiles a pass over one reduction block covers at least (samples are
/// grouped until they have this many), so that small maps (PreAct-ResNet-18's
/// 4×4 stage: 2 tiles per sample) reuse the block's weights across samples.
const SAMPLE_GROUP_TILES: usize = 32;

/// Shortest reduction (`cin·kh·kw`) worth a kernel call: each call ends by
/// writing its `8 × 32` results one by one into the channel planes, which
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

/// Whether the CPU has AVX-512F. The kernels assert this rather than
/// [`active`]: the switch may be turned off by another thread between a
/// caller's check and the kernel, which is harmless, while the CPU's features
/// cannot change.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(super) fn cpu_supported() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
pub(super) fn cpu_supported() -> bool {
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
/// `weight(co, k)` at `[k][co - first]` and zeros past the last channel. The
/// definition of the layout, which the tests hold [`pack_rows`] and
/// [`pack_flipped`] (the ones the passes use) to.
#[cfg(test)]
fn pack(cout: usize, k: usize, weight: impl Fn(usize, usize) -> f32) -> Vec<f32> {
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

/// `pack` for weights stored as `[cout][k]` rows (the forward pass):
/// the same layout, filled row by row so that the reads are sequential (the
/// column order of `pack` reads with a stride of `k` floats, 18 KB for a
/// 512-channel 3×3 layer, and took several milliseconds per call there).
pub(super) fn pack_rows(cout: usize, k: usize, w: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), cout * k, "weights to pack");
    let mut packed = vec![0f32; cout.div_ceil(16) * 16 * k];
    let mut first = 0;
    while first < cout {
        let width = block_width(cout, first);
        let block = &mut packed[first * k..first * k + width * k];
        for l in 0..width.min(cout - first) {
            let row = &w[(first + l) * k..(first + l + 1) * k];
            for (kk, &v) in row.iter().enumerate() {
                block[kk * width + l] = v;
            }
        }
        first += BLOCK;
    }
    packed
}

/// `pack` for the input gradient: the transposed problem's weight
/// `(c, (co, tap))` is `w[co, c, flipped tap]` of the forward weights `w`
/// (`[cout][cin][taps]`, taps row-major, so flipping both kernel axes turns
/// tap `t` into `taps - 1 - t`). Filled in the order `w` is stored, so that
/// the reads are sequential, like [`pack_rows`].
pub(super) fn pack_flipped(cout: usize, cin: usize, taps: usize, w: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), cout * cin * taps, "weights to pack");
    let k = cout * taps;
    let mut packed = vec![0f32; cin.div_ceil(16) * 16 * k];
    for co in 0..cout {
        for c in 0..cin {
            let first = c / BLOCK * BLOCK;
            let width = block_width(cin, first);
            let base = first * k + c - first;
            let src = &w[(co * cin + c) * taps..(co * cin + c + 1) * taps];
            for (t, &v) in src.iter().enumerate() {
                packed[base + (co * taps + taps - 1 - t) * width] = v;
            }
        }
    }
    packed
}

/// `out[s, co, oh, ow] = bias[co] + Σ_k packed(co, k) · input(k, oh, ow)` for
/// every sample of `x` (`[b, cin, h, w]`), where reduction index `k = (c, ky,
/// kx)` reads input pixel `(oh·sh + ky·dh - ph, ow·sw + kx·dw - pw)` of
/// channel `c`, zero in the padding. `packed` comes from [`pack_rows`] or
/// [`pack_flipped`]; `out` is
/// `[b, cout, ho, wo]`, every element written.
///
/// Loop order: per chunk of samples, the stride phases of every sample are
/// split once; then each channel block's weights (`K × 32` floats: 74 KB for
/// a 64-channel 3×3 layer, 590 KB for a 512-channel one) are reused across
/// every tile of every sample in the chunk, so they stay in the core's L2
/// cache. (The first version cycled through all channel blocks for every
/// tile: PreAct-ResNet-18's 512-channel layer streamed its 9.4 MB of weights
/// from L3 once per four output pixels.)
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
    let tiles = tiles(g.ho, g.wo);
    let per_chunk = g.b.div_ceil(threads().max(1) * 4).max(1);
    let sample_phases = g.cin * plen;

    for_each_chunk(out, g.cout * p, per_chunk, |first, nb, out| {
        let mut phases = vec![0f32; nb * sample_phases];
        for s in 0..nb {
            let xs = &x[(first + s) * sample_in..(first + s + 1) * sample_in];
            let ps = &mut phases[s * sample_phases..(s + 1) * sample_phases];
            for c in 0..g.cin {
                let plane = &xs[c * g.h * g.w..(c + 1) * g.h * g.w];
                split_phases(g, plane, &mut ps[c * plen..(c + 1) * plen]);
            }
        }
        // Partial sums of every tile of a group of samples, carried across the
        // reduction's blocks.
        let group = SAMPLE_GROUP_TILES.div_ceil(tiles.len()).clamp(1, nb);
        let mut sums = vec![0f32; group * tiles.len() * TILE * BLOCK];
        let mut co0 = 0;
        while co0 < g.cout {
            let width = block_width(g.cout, co0);
            let w = &packed[co0 * k..co0 * k + width * k];
            let channels = width.min(g.cout - co0);
            let kb = k.div_ceil(k.div_ceil(L1_WEIGHTS / (width * 4)).max(1));
            for s0 in (0..nb).step_by(group) {
                let samples = group.min(nb - s0);
                for k0 in (0..k).step_by(kb) {
                    let k1 = (k0 + kb).min(k);
                    let (offsets, w) = (&offsets[k0..k1], &w[k0 * width..k1 * width]);
                    for s in 0..samples {
                        let ps = &phases[(s0 + s) * sample_phases..(s0 + s + 1) * sample_phases];
                        for (ti, t) in tiles.iter().enumerate() {
                            let at = (s * tiles.len() + ti) * TILE * BLOCK;
                            let sums = &mut sums[at..at + TILE * BLOCK];
                            // SAFETY: the CPU has AVX-512F (asserted above);
                            // the kernel reads `ps[offsets[k] + (t.oh + r)·wq
                            // + t.ow + i]` for rows `r < t.rows` and `i <
                            // t.cols`, at most `furthest` (asserted inside
                            // one sample's phases); `w` holds `offsets.len() ·
                            // width` weights and `sums` `TILE · BLOCK` floats.
                            unsafe { run_tile(t, width, ps, wq, offsets, w, sums, k0 == 0) };
                        }
                    }
                }
                for s in 0..samples {
                    let out = &mut out[(s0 + s) * g.cout * p..(s0 + s + 1) * g.cout * p];
                    for (ti, t) in tiles.iter().enumerate() {
                        let tile = &sums[(s * tiles.len() + ti) * TILE * BLOCK..];
                        for l in 0..channels {
                            let b = bias.map_or(0.0, |b| b[co0 + l]);
                            let plane = (co0 + l) * p;
                            for r in 0..t.rows {
                                let row = plane + (t.oh + r) * g.wo + t.ow;
                                let at = r * t.cols;
                                for (i, o) in out[row..row + t.cols].iter_mut().enumerate() {
                                    o.write(tile[(at + i) * width + l] + b);
                                }
                            }
                        }
                    }
                }
            }
            co0 += width;
        }
    });
}

/// A kernel call's output pixels: `rows` consecutive rows from `oh`, `cols`
/// consecutive columns from `ow` in each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Tile {
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
}

/// Covers an `ho × wo` output with tiles of at most [`TILE`] pixels: each
/// row splits into panels of at most [`PANEL`] columns, as even as possible
/// (rows of 28, 14 and 7 into panels of 7; 32, 16 and 8 into panels of 8),
/// and rows of at most [`PANEL`] / 2 pixels are taken two at a time, so a
/// 4×4 map (PreAct-ResNet-18's last stage) runs two tiles of 8 pixels
/// instead of four of 4.
fn tiles(ho: usize, wo: usize) -> Vec<Tile> {
    let panels = panels(wo);
    let stack = if wo <= PANEL / 2 { 2 } else { 1 };
    let mut tiles = Vec::new();
    let mut oh = 0;
    while oh < ho {
        let rows = stack.min(ho - oh);
        for &(ow, cols) in &panels {
            tiles.push(Tile { oh, ow, rows, cols });
        }
        oh += rows;
    }
    tiles
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

/// Dispatches to the kernel for tile `t` by `width` (16 or 32) channels.
///
/// # Safety
/// The CPU has AVX-512F; `phases[t.oh·wq + t.ow + offsets[k] + r·wq + i]` is
/// in bounds for every `k`, `r < t.rows` and `i < t.cols`;
/// `w.len() >= offsets.len() · width`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_tile(
    t: &Tile,
    width: usize,
    phases: &[f32],
    wq: usize,
    offsets: &[u32],
    w: &[f32],
    sums: &mut [f32],
    first: bool,
) {
    debug_assert!(w.len() >= offsets.len() * width && sums.len() >= TILE * BLOCK);
    debug_assert!(t.rows * t.cols <= TILE && (t.rows == 1 || t.cols <= PANEL / 2));
    let a = phases[t.oh * wq + t.ow..].as_ptr();
    let (w, out) = (w.as_ptr(), sums.as_mut_ptr());
    macro_rules! dispatch {
        ($($r:literal, $c:literal);*) => {
            match (t.rows, t.cols, width) {
                $(
                    ($r, $c, 16) => kernel::<$c, $r, 1>(a, wq, offsets, w, out, first),
                    ($r, $c, _) => kernel::<$c, $r, 2>(a, wq, offsets, w, out, first),
                )*
                _ => unreachable!("tile {t:?} outside the kernels' shapes"),
            }
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe { dispatch!(1, 1; 1, 2; 1, 3; 1, 4; 1, 5; 1, 6; 1, 7; 1, 8; 2, 1; 2, 2; 2, 3; 2, 4) }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_tile(
    _t: &Tile,
    _width: usize,
    _phases: &[f32],
    _wq: usize,
    _offsets: &[u32],
    _w: &[f32],
    _sums: &mut [f32],
    _first: bool,
) {
    unreachable!("the direct convolution runs only where `active()` is true (x86-64)");
}

/// The register tile: `sums[(r·C + i)·16·NV + l] (+)= Σ_k a[offsets[k] + r·wq + i] · w[k·16·NV + l]`
/// for `R` rows of `C` pixels and `16·NV` channels, in `R · C · NV`
/// accumulators, which start from zero on the reduction's `first` block and
/// from `sums` on the others.
///
/// # Safety
/// AVX-512F; the reads described by [`run_tile`]'s contract; `sums` holds
/// `R · C · 16 · NV` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const C: usize, const R: usize, const NV: usize>(
    a: *const f32,
    wq: usize,
    offsets: &[u32],
    w: *const f32,
    sums: *mut f32,
    first: bool,
) {
    use core::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
    use core::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    // SAFETY: the pointers stay inside the caller's buffers (contract above).
    unsafe {
        let mut acc = [[[_mm512_setzero_ps(); NV]; C]; R];
        if !first {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, acc) in acc.iter_mut().enumerate() {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_loadu_ps(sums.add(((r * C + i) * NV + v) * 16));
                    }
                }
            }
        }
        let mut wp = w;
        for &off in offsets {
            let mut wv = [_mm512_setzero_ps(); NV];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = _mm512_loadu_ps(wp.add(v * 16));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let ap = a.add(off as usize + r * wq);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*ap.add(i));
                    for (acc, &wv) in acc.iter_mut().zip(&wv) {
                        *acc = _mm512_fmadd_ps(b, wv, *acc);
                    }
                }
            }
            wp = wp.add(NV * 16);
        }
        for (r, acc) in acc.iter().enumerate() {
            for (i, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(sums.add(((r * C + i) * NV + v) * 16), acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PANEL, TILE, Tile, pack, pack_flipped, pack_rows, panels, tiles};

    #[test]
    fn packing_flipped_equals_packing_by_element() {
        // (forward cout, cin, kh, kw): the transposed problem has cin output channels.
        for (cout, cin, kh, kw) in [(2, 16, 3, 3), (5, 17, 2, 3), (3, 40, 1, 1), (4, 70, 5, 5)] {
            let taps = kh * kw;
            let w: Vec<f32> = (0..cout * cin * taps).map(|i| i as f32).collect();
            let by_element = pack(cin, cout * taps, |c, kk| {
                let (co, tap) = (kk / taps, kk % taps);
                let (ky, kx) = (kh - 1 - tap / kw, kw - 1 - tap % kw);
                w[((co * cin + c) * kh + ky) * kw + kx]
            });
            assert_eq!(
                pack_flipped(cout, cin, taps, &w),
                by_element,
                "{cout} {cin} {kh}x{kw}"
            );
        }
    }

    #[test]
    fn packing_rows_equals_packing_by_element() {
        for (cout, k) in [(1, 3), (16, 5), (17, 4), (40, 7), (64, 9), (70, 2)] {
            let w: Vec<f32> = (0..cout * k).map(|i| i as f32).collect();
            assert_eq!(
                pack_rows(cout, k, &w),
                pack(cout, k, |co, kk| w[co * k + kk]),
                "{cout}x{k}"
            );
        }
    }

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

    #[test]
    fn tiles_cover_a_map_once_with_narrow_rows_in_pairs() {
        for ho in 1..12 {
            for wo in 1..40 {
                let ts = tiles(ho, wo);
                let mut seen = vec![0u8; ho * wo];
                for &Tile { oh, ow, rows, cols } in &ts {
                    assert!(rows >= 1 && cols >= 1 && rows * cols <= TILE, "{ts:?}");
                    assert!(rows == 1 || cols <= PANEL / 2, "{ts:?}");
                    for r in oh..oh + rows {
                        for c in ow..ow + cols {
                            seen[r * wo + c] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{ho}x{wo}: {ts:?}");
                // Rows of at most PANEL / 2 pixels go two at a time (the
                // last one alone when the count is odd).
                let pairs = if wo <= PANEL / 2 { ho / 2 } else { 0 };
                assert_eq!(
                    ts.iter().filter(|t| t.rows == 2).count(),
                    pairs,
                    "{ho}x{wo}"
                );
            }
        }
    }
}
