//! Bulwark patch: the weight gradient of f32 stride-1 convolutions on the
//! direct kernel's register tile.
//!
//! `dW[co, c, ky, kx] = Σ_{s, oh, ow} dy[s, co, oh, ow] ·
//! x[s, c, oh + ky·dh - ph, ow + kx·dw - pw]`: for each tap a product of the
//! output gradient (`cout × pixels`) with the shifted input (`pixels × cin`),
//! reduced over the pixels of every sample. im2col + gemm materializes the
//! `[cin·kh·kw, pixels]` columns (2.4 MB per sample for a 64-channel 3×3 layer
//! at 32×32) and gemm packs them again, which held PreAct-ResNet-18's
//! 64-channel weight gradients at 17–20 % of the FMA peak. Here the input is
//! laid out once per chunk of samples channels-last and zero-padded, so that
//! for every tap and pixel the 8 channels a kernel call needs are contiguous;
//! the output gradient, transposed per channel block to `[pixel][32
//! channels]`, takes the place of the kernel's packed weights. One call
//! accumulates 8 input channels by 32 output channels of one tap over a block
//! of pixels whose gradient rows (16 KB) stay in the L1 cache across every tap
//! and channel group.

use alloc::vec;
use alloc::vec::Vec;

use super::Geom;
use super::direct::{self, Tile, run_tile};

/// Output channels per kernel call (the kernel's channel block).
const BLOCK: usize = 32;
/// Input channels per kernel call (the kernel's "pixels", broadcast).
const GROUP: usize = 8;
/// Bytes of transposed output gradient one sweep over the taps and channel
/// groups uses (as the direct kernel's reduction blocks: the L1 cache).
const L1_ROWS: usize = 16 << 10;
/// Pixels a chunk of samples holds at least (when the batch allows), so that
/// small maps (8×8: 64 pixels per sample) still give the kernel long
/// reductions.
const CHUNK_PIXELS: usize = 256;

/// Fewest output pixels per sample for this path. On smaller maps the sums
/// (`cin·cout·kh·kw` floats, 9.4 MB for a 512-channel 3×3 layer) outweigh the
/// pixels they are reduced over: PreAct-ResNet-18's 512-channel weight
/// gradient at 4×4 took 20–23 ms here against 15.6–16.5 ms through im2col +
/// gemm (`bulwark bench layers`, batch 64).
const MIN_PIXELS: usize = 64;

/// Whether the weight gradient of `g` takes this path: the direct kernels are
/// active, one group, stride 1, at least 8 input and 16 output channels (the
/// kernel's broadcast and vector widths), maps of at least [`MIN_PIXELS`],
/// offsets that fit 32 bits. An empty batch or empty input maps stay on the
/// gemm path, which returns a zero gradient for them.
pub(super) fn suits(g: &Geom) -> bool {
    direct::active()
        && g.b > 0
        && g.h > 0
        && g.w > 0
        && g.groups == 1
        && g.stride == [1, 1]
        && g.cin >= GROUP
        && g.cout >= 16
        && g.ho > 0
        && g.wo > 0
        && g.p() >= MIN_PIXELS
        && (chunk_samples(g) * padded_side(g).0 * padded_side(g).1)
            .checked_mul(g.cin)
            .is_some_and(|n| n < u32::MAX as usize)
}

/// Rows and columns of the zero-padded input that the output reads.
fn padded_side(g: &Geom) -> (usize, usize) {
    (
        g.ho + (g.kh - 1) * g.dilation[0],
        g.wo + (g.kw - 1) * g.dilation[1],
    )
}

/// Samples per chunk: at least [`CHUNK_PIXELS`] output pixels when the batch
/// has them.
fn chunk_samples(g: &Geom) -> usize {
    CHUNK_PIXELS.div_ceil(g.p().max(1)).clamp(1, g.b.max(1))
}

/// The width of the channel block starting at `first` (as the direct kernel's).
fn block_width(cout: usize, first: usize) -> usize {
    if cout - first <= 16 { 16 } else { BLOCK }
}

/// `dW` (`[cout, cin, kh, kw]`) of a convolution [`suits`] accepts, from its
/// input `x` (`[b, cin, h, w]`) and output gradient `dy` (`[b, cout, ho, wo]`).
/// The chunks' sums are added in a fixed order (the same result for the same
/// thread count, like the gemm path).
pub(super) fn weight_grad(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(
        direct::cpu_supported(),
        "direct weight gradient without AVX-512F"
    );
    assert_eq!(x.len(), g.b * g.cin * g.h * g.w, "weight gradient input");
    assert_eq!(
        dy.len(),
        g.b * g.cout * g.p(),
        "weight gradient output gradient"
    );
    let nb = chunk_samples(g);
    let chunks = g.b.div_ceil(nb);
    let taps = g.kh * g.kw;
    let (groups, blocks) = (g.cin.div_ceil(GROUP), g.cout.div_ceil(BLOCK));
    // Sums per (tap, channel group, channel block): 8 × 32 floats each, in the
    // kernel's `[input channel][output channel]` order.
    let slots = taps * groups * blocks;
    // Contiguous runs of chunks, one partial sum each, added in run order.
    let runs = chunks.min(super::threads().max(1));
    let per_run = chunks.div_ceil(runs);
    let run = |r: usize| -> Vec<f32> {
        let mut acc = vec![0f32; slots * GROUP * BLOCK];
        for chunk in r * per_run..((r + 1) * per_run).min(chunks) {
            let first = chunk * nb;
            accumulate(g, x, dy, first, nb.min(g.b - first), &mut acc);
        }
        acc
    };
    #[cfg(feature = "rayon")]
    let parts: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        (0..runs).into_par_iter().map(run).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let parts: Vec<Vec<f32>> = (0..runs).map(run).collect();

    let mut dw = vec![0f32; g.cout * g.cin * taps];
    for part in &parts {
        for tap in 0..taps {
            for cg in 0..groups {
                for cb in 0..blocks {
                    let co0 = cb * BLOCK;
                    let width = block_width(g.cout, co0);
                    let slot = &part[((tap * groups + cg) * blocks + cb) * GROUP * BLOCK..];
                    for i in 0..GROUP.min(g.cin - cg * GROUP) {
                        let c = cg * GROUP + i;
                        for l in 0..width.min(g.cout - co0) {
                            dw[((co0 + l) * g.cin + c) * taps + tap] += slot[i * width + l];
                        }
                    }
                }
            }
        }
    }
    dw
}

/// Adds the weight gradient of samples `first..first + nb` to `acc`.
fn accumulate(g: &Geom, x: &[f32], dy: &[f32], first: usize, nb: usize, acc: &mut [f32]) {
    let (hp, wp) = padded_side(g);
    let (p, cin) = (g.p(), g.cin);
    let sample = hp * wp * cin;
    // The input, channels-last and zero-padded: `xs[s][py][px][c]`.
    let mut xs = vec![0f32; nb * sample];
    for s in 0..nb {
        let planes = &x[(first + s) * cin * g.h * g.w..][..cin * g.h * g.w];
        for (c, plane) in planes.chunks_exact(g.h * g.w).enumerate() {
            for (iy, row) in plane.chunks_exact(g.w).enumerate() {
                let py = iy + g.pad[0];
                if py >= hp {
                    break;
                }
                for (ix, &v) in row.iter().enumerate() {
                    let px = ix + g.pad[1];
                    if px >= wp {
                        break;
                    }
                    xs[s * sample + (py * wp + px) * cin + c] = v;
                }
            }
        }
    }
    // Reduction index k = (sample, oh, ow): where its pixel's channels start.
    let offsets: Vec<u32> = (0..nb)
        .flat_map(|s| (0..g.ho).flat_map(move |oh| (0..g.wo).map(move |ow| (s, oh, ow))))
        .map(|(s, oh, ow)| (s * sample + (oh * wp + ow) * cin) as u32)
        .collect();
    let k = nb * p;
    let tap_at: Vec<usize> = (0..g.kh * g.kw)
        .map(|t| ((t / g.kw) * g.dilation[0] * wp + (t % g.kw) * g.dilation[1]) * cin)
        .collect();
    let (groups, blocks) = (cin.div_ceil(GROUP), g.cout.div_ceil(BLOCK));
    let mut rows = vec![0f32; k * BLOCK];
    for cb in 0..blocks {
        let co0 = cb * BLOCK;
        let width = block_width(g.cout, co0);
        // The output gradient of this block, `[k][width]`, zeros past `cout`.
        let rows = &mut rows[..k * width];
        if width > g.cout - co0 {
            rows.fill(0.0);
        }
        for s in 0..nb {
            for l in 0..width.min(g.cout - co0) {
                let src = &dy[((first + s) * g.cout + co0 + l) * p..][..p];
                for (i, &v) in src.iter().enumerate() {
                    rows[(s * p + i) * width + l] = v;
                }
            }
        }
        let kb = k.div_ceil(k.div_ceil(L1_ROWS / (width * 4)).max(1));
        for k0 in (0..k).step_by(kb) {
            let k1 = (k0 + kb).min(k);
            let w = &rows[k0 * width..k1 * width];
            for (tap, &at) in tap_at.iter().enumerate() {
                for cg in 0..groups {
                    let c0 = cg * GROUP;
                    let tile = Tile {
                        oh: 0,
                        ow: 0,
                        rows: 1,
                        cols: GROUP.min(cin - c0),
                    };
                    let slot = ((tap * groups + cg) * blocks + cb) * GROUP * BLOCK;
                    // SAFETY: the CPU has AVX-512F (asserted by
                    // `weight_grad`). The kernel reads `xs[at + c0 +
                    // offsets[k] + i]` for `i < cols`: the padded pixel
                    // `(oh + ky·dh, ow + kx·dw)` of sample `s`, inside
                    // `hp × wp`, channel `c0 + i < cin`, so inside `xs`;
                    // `w` holds `(k1 - k0)·width` floats; the slot has
                    // `8 · 32` floats, of which the kernel uses `cols · width`.
                    unsafe {
                        run_tile(
                            &tile,
                            width,
                            &xs[at + c0..],
                            0,
                            &offsets[k0..k1],
                            w,
                            &mut acc[slot..slot + GROUP * BLOCK],
                            false,
                        )
                    };
                }
            }
        }
    }
}
