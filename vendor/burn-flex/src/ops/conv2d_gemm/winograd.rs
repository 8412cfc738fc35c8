//! Bulwark patch: Winograd F(2×2, 3×3) for f32 3×3 convolutions of stride 1
//! and dilation 1 (Lavin & Gray 2016), on the direct kernel's register tile.
//!
//! Each 2×2 block of output pixels ("tile") of every output channel is
//! `Aᵀ [Σ_c U_c ⊙ V_c] A`, where `V_c = Bᵀ d_c B` is the transform of the
//! tile's 4×4 input patch of channel `c` and `U_c = G g_c Gᵀ` that of the
//! channel's 3×3 kernel. For each of the 16 positions `ξ` of the 4×4
//! transforms the sum over channels is a matrix product
//! `M_ξ[co, t] = Σ_c U_ξ[co, c] · V_ξ[c, t]`: 16 products of `cin` multiply-adds
//! per tile and output channel instead of the direct convolution's
//! `4 · 9 = 36`, 2.25x fewer. The products run on [`super::direct`]'s kernel
//! (8 tiles by 32 output channels per call, the transformed weights packed
//! like its weights, reduction blocks that fit the L1 cache).
//!
//! The transforms' coefficients are 0, ±1 and ±½, so the rounding error stays
//! within a small multiple of the direct sum's (the tests hold both to an f64
//! reference). Used for the forward pass and for the input gradient of such
//! convolutions (itself a stride-1 3×3 convolution of the output gradient),
//! where [`suits`] says it wins; [`set_enabled`] and the environment variable
//! `BURN_FLEX_CONV_WINOGRAD=0` switch it off.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use super::Geom;
use super::direct::{self, Tile, run_tile};

/// Output channels per kernel call (the direct kernel's channel block).
const BLOCK: usize = 32;
/// Positions of the 4×4 transforms.
const XI: usize = 16;
/// Tiles one chunk of samples holds at least (when the batch allows), so that
/// each block of transformed weights serves many tiles (PreAct-ResNet-18's
/// 4×4 stage has 4 tiles per sample).
const CHUNK_TILES: usize = 256;
/// Upper bound on a chunk's transformed input (`16 · cin · tiles` floats).
const MAX_CHUNK_BYTES: usize = 8 << 20;
/// Tiles per pass of the products before their output transform: the pass's
/// 16 partial products (`16 · PASS · 32` floats, 256 KB) stay in the L2 cache.
const PASS: usize = 128;
/// Bytes of transformed weights one sweep over a pass's tiles uses (as the
/// direct kernel's reduction blocks: they stay in the L1 cache).
const L1_WEIGHTS: usize = 16 << 10;
/// Fewest input and output channels for which the transforms pay: below, the
/// products are too short to amortize reading and writing 4x the input and
/// output (measured per layer with `bulwark bench layers`; docs/performance.md).
const MIN_CHANNELS: usize = 32;

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static SWITCH: AtomicU8 = AtomicU8::new(UNSET);

/// Turns the Winograd path on or off for the whole process (on by default
/// where the direct kernels are active, unless the environment variable
/// `BURN_FLEX_CONV_WINOGRAD` is `0`). Both paths compute the same convolution
/// up to rounding; the switch exists to compare them.
pub fn set_enabled(on: bool) {
    SWITCH.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether stride-1 3×3 f32 convolutions that [`suits`] accepts take the
/// Winograd path: the switch is on and the direct kernels are active.
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
    on && direct::active()
}

#[cfg(feature = "std")]
fn env_allows() -> bool {
    std::env::var_os("BURN_FLEX_CONV_WINOGRAD").is_none_or(|v| v != "0")
}

#[cfg(not(feature = "std"))]
fn env_allows() -> bool {
    true
}

/// Whether the Winograd path computes a convolution of geometry `g`: one
/// group, a 3×3 kernel, stride and dilation 1, at least [`MIN_CHANNELS`]
/// channels in and out, offsets that fit 32 bits.
pub(super) fn suits(g: &Geom) -> bool {
    g.groups == 1
        && (g.kh, g.kw) == (3, 3)
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.cin >= MIN_CHANNELS
        && g.cout >= MIN_CHANNELS
        && g.ho > 0
        && g.wo > 0
        && (XI * g.cin)
            .checked_mul(chunk_samples(g) * tiles(g).0 * tiles(g).1)
            .is_some_and(|n| n < u32::MAX as usize)
}

/// Tile rows and columns per sample (2×2 output pixels each).
fn tiles(g: &Geom) -> (usize, usize) {
    (g.ho.div_ceil(2), g.wo.div_ceil(2))
}

/// Samples per chunk: at least [`CHUNK_TILES`] tiles when the batch has them,
/// at most [`MAX_CHUNK_BYTES`] of transformed input.
fn chunk_samples(g: &Geom) -> usize {
    let (th, tw) = tiles(g);
    let per_sample = (th * tw).max(1);
    let by_bytes = MAX_CHUNK_BYTES / (XI * g.cin.max(1) * per_sample * 4);
    CHUNK_TILES
        .div_ceil(per_sample)
        .min(by_bytes)
        .clamp(1, g.b.max(1))
}

/// The width of the channel block starting at `first` (as the direct kernel's).
fn block_width(cout: usize, first: usize) -> usize {
    if cout - first <= 16 { 16 } else { BLOCK }
}

/// Transforms and packs the weights: `weight(co, c, tap)` (tap `ky·3 + kx`)
/// becomes `U = G g Gᵀ` with
/// `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]`, stored per channel
/// block (32 or 16 wide, as [`direct::pack_rows`]) as `[ξ][c][width]`, zeros
/// past the last channel.
pub(super) fn pack(
    cout: usize,
    cin: usize,
    weight: impl Fn(usize, usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    let mut packed = vec![0f32; cout.div_ceil(16) * 16 * XI * cin];
    let fill = |b: usize, dst: &mut [f32]| {
        let first = b * BLOCK;
        let width = block_width(cout, first);
        let channels = width.min(cout - first);
        let mut g = [[0f32; BLOCK]; 9];
        for c in 0..cin {
            for (l, co) in (first..first + channels).enumerate() {
                for (tap, g) in g.iter_mut().enumerate() {
                    g[l] = weight(co, c, tap);
                }
            }
            // q = G g (rows), then U = q Gᵀ (columns), lane by lane.
            let mut u = [[0f32; BLOCK]; XI];
            for l in 0..width {
                let col = |kx: usize| {
                    let (a, b, c) = (g[kx][l], g[3 + kx][l], g[6 + kx][l]);
                    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
                };
                let q = [col(0), col(1), col(2)];
                for i in 0..4 {
                    let (a, b, c) = (q[0][i], q[1][i], q[2][i]);
                    let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                    for j in 0..4 {
                        u[i * 4 + j][l] = row[j];
                    }
                }
            }
            for (xi, u) in u.iter().enumerate() {
                let at = (xi * cin + c) * width;
                dst[at..at + width].copy_from_slice(&u[..width]);
            }
        }
    };
    let per_block = BLOCK * XI * cin;
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        packed
            .par_chunks_mut(per_block)
            .enumerate()
            .for_each(|(b, dst)| fill(b, dst));
    }
    #[cfg(not(feature = "rayon"))]
    for (b, dst) in packed.chunks_mut(per_block).enumerate() {
        fill(b, dst);
    }
    packed
}

/// A pointer that parallel workers write through, each to its own elements.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the workers write disjoint elements (see each use).
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the `Sync` wrapper,
    /// not its field).
    fn ptr(self) -> *mut T {
        self.0
    }
}

/// Runs `f(i)` for `i` in `0..n`, in parallel when rayon is on.
fn for_each_index(n: usize, f: impl Fn(usize) + Send + Sync) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    }
    #[cfg(not(feature = "rayon"))]
    (0..n).for_each(f);
}

/// `out[s, co, oh, ow] = bias[co] + Σ_{c, ky, kx} w[co, c, ky, kx] ·
/// x[s, c, oh + ky - ph, ow + kx - pw]` (zero outside the input) for a
/// geometry [`suits`] accepts, with the weights from [`pack`]; every element
/// of `out` (`[b, cout, ho, wo]`) is written.
pub(super) fn conv(
    g: &Geom,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    assert!(
        direct::cpu_supported(),
        "Winograd convolution without AVX-512F"
    );
    let (th, tw) = tiles(g);
    let (plane_in, plane_out) = (g.h * g.w, g.p());
    assert_eq!(x.len(), g.b * g.cin * plane_in, "Winograd input");
    assert_eq!(out.len(), g.b * g.cout * plane_out, "Winograd output");
    assert_eq!(
        packed.len(),
        g.cout.div_ceil(16) * 16 * XI * g.cin,
        "packed weights"
    );
    let nb = chunk_samples(g);
    let blocks = g.cout.div_ceil(BLOCK);
    let out = Shared(out.as_mut_ptr());
    // Chunks and, inside each, channel blocks run in parallel (rayon nests
    // them): many chunks on the large maps, many blocks on the small ones.
    for_each_index(g.b.div_ceil(nb), |chunk| {
        let first = chunk * nb;
        let nb = nb.min(g.b - first);
        let t = nb * th * tw;
        let v = transform_input(g, &x[first * g.cin * plane_in..], nb);
        let offsets: Vec<u32> = (0..g.cin).map(|c| (c * t) as u32).collect();
        for_each_index(blocks, |b| {
            let co0 = b * BLOCK;
            let width = block_width(g.cout, co0);
            let w = &packed[co0 * XI * g.cin..(co0 + width) * XI * g.cin];
            let kb = g
                .cin
                .div_ceil(g.cin.div_ceil(L1_WEIGHTS / (width * 4)).max(1));
            // Products of one pass, `[ξ][tile][width]`, with room for the
            // kernel's full `8 × 32` store at the last tile.
            let mut m = vec![0f32; XI * PASS * width + 8 * BLOCK];
            for p0 in (0..t).step_by(PASS) {
                let n = PASS.min(t - p0);
                for xi in 0..XI {
                    let (vx, wx) = (&v[xi * g.cin * t..], &w[xi * g.cin * width..]);
                    for k0 in (0..g.cin).step_by(kb) {
                        let k1 = (k0 + kb).min(g.cin);
                        for t0 in (p0..p0 + n).step_by(8) {
                            let tile = Tile {
                                oh: 0,
                                ow: t0,
                                rows: 1,
                                cols: 8.min(p0 + n - t0),
                            };
                            let sums = &mut m[(xi * PASS + t0 - p0) * width..];
                            // SAFETY: `direct::cpu_supported()` (asserted above):
                            // AVX-512F; the kernel reads `vx[t0 + offsets[c] +
                            // i]` for `c < cin`, `i < cols`, at most `(cin - 1)·t
                            // + t - 1`, inside `vx` (`(16 - xi)·cin·t` floats);
                            // `wx[k0·width..k1·width]` holds `(k1 - k0)·width`
                            // weights; `sums` has at least `8 · 32` floats.
                            unsafe {
                                run_tile(
                                    &tile,
                                    width,
                                    vx,
                                    0,
                                    &offsets[k0..k1],
                                    &wx[k0 * width..k1 * width],
                                    sums,
                                    k0 == 0,
                                )
                            };
                        }
                    }
                }
                // SAFETY: block `b` of this chunk writes only channels
                // `co0..co0 + width` of the chunk's samples, which no other
                // (chunk, block) pair writes.
                unsafe { transform_output(g, &m, width, co0, first, p0, n, bias, out) };
            }
        });
    });
}

/// `V[ξ][c][t] = (Bᵀ d B)[ξ]` for every tile `t` of `nb` samples from `x`
/// (their first sample first), with
/// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]` and `d`
/// the tile's 4×4 input patch (rows `2·ty - ph ..`, columns `2·tx - pw ..`,
/// zero outside the input).
fn transform_input(g: &Geom, x: &[f32], nb: usize) -> Vec<f32> {
    let (th, tw) = tiles(g);
    let t = nb * th * tw;
    let mut v = Box::new_uninit_slice(XI * g.cin * t);
    let dst = Shared(v.as_mut_ptr().cast::<f32>());
    // The zero-padded plane split into its even and odd columns (`halves`,
    // `[2][ph][pw]`), so that column `j` of every tile of a row is one
    // contiguous run: `half[j % 2][row][tx + j / 2]`. These are the stride
    // phases of a column stride of 2 whose phases are `ph × pw` (3×3 taps
    // over `2·th` rows and `tw` columns of output), which `split_phases`
    // builds with the padding zeroed.
    let (ph, pw) = (2 * th + 2, tw + 1);
    let split = Geom {
        stride: [1, 2],
        ho: 2 * th,
        wo: tw,
        ..*g
    };
    debug_assert_eq!(super::phase_side(&split), (ph, pw));
    for_each_index(g.cin, |c| {
        let mut halves = vec![0f32; 2 * ph * pw];
        for s in 0..nb {
            let plane = &x[(s * g.cin + c) * g.h * g.w..][..g.h * g.w];
            super::split_phases(&split, plane, &mut halves);
            let (even, odd) = halves.split_at(ph * pw);
            for ty in 0..th {
                let src: [[*const f32; 4]; 4] = core::array::from_fn(|i| {
                    core::array::from_fn(|j| {
                        let half = if j % 2 == 0 { even } else { odd };
                        half[(2 * ty + i) * pw + j / 2..].as_ptr()
                    })
                });
                let t0 = (s * th + ty) * tw;
                // SAFETY: `(ξ, c, t0 + tx)` for `tx < tw` is inside `v`, and
                // only channel `c`'s worker writes it.
                let out: [*mut f32; XI] =
                    core::array::from_fn(|xi| unsafe { dst.ptr().add((xi * g.cin + c) * t + t0) });
                // SAFETY: AVX-512F (`direct::cpu_supported()`, asserted by
                // `conv`); each `src` run has `tw` floats (row `2·ty + i < ph`,
                // start `j / 2 + tw <= pw`), each `out` run `tw`.
                unsafe { input_row(src, tw, out) };
            }
        }
    });
    // SAFETY: every tile `t < nb·th·tw` of every channel and position was
    // written above.
    unsafe { v.assume_init() }.into_vec()
}

/// One row of tiles' input transforms: `out[ξ][tx]` for `tx < n`, where
/// `src[i][j][tx]` is the element `(i, j)` of tile `tx`'s patch.
///
/// # Safety
/// AVX-512F; `src[i][j]` readable and `out[ξ]` writable for `n` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_row(src: [[*const f32; 4]; 4], n: usize, out: [*mut f32; XI]) {
    use core::arch::x86_64::{__m512, _mm512_mask_storeu_ps};
    use core::arch::x86_64::{_mm512_add_ps, _mm512_maskz_loadu_ps, _mm512_sub_ps};
    for base in (0..n).step_by(16) {
        let mask = if n - base >= 16 {
            u16::MAX
        } else {
            (1u16 << (n - base)) - 1
        };
        // SAFETY: `base + lane < n` for the lanes the mask lets through.
        let d: [[__m512; 4]; 4] = core::array::from_fn(|i| {
            core::array::from_fn(|j| unsafe { _mm512_maskz_loadu_ps(mask, src[i][j].add(base)) })
        });
        // a = Bᵀ d (combining rows), then V = a B (combining columns).
        let combine = |d: [__m512; 4]| {
            [
                _mm512_sub_ps(d[0], d[2]),
                _mm512_add_ps(d[1], d[2]),
                _mm512_sub_ps(d[2], d[1]),
                _mm512_sub_ps(d[1], d[3]),
            ]
        };
        let a: [[__m512; 4]; 4] = {
            let cols: [[__m512; 4]; 4] =
                core::array::from_fn(|j| combine([d[0][j], d[1][j], d[2][j], d[3][j]]));
            core::array::from_fn(|i| core::array::from_fn(|j| cols[j][i]))
        };
        for (i, a) in a.iter().enumerate() {
            for (j, val) in combine(*a).into_iter().enumerate() {
                // SAFETY: as the loads.
                unsafe { _mm512_mask_storeu_ps(out[i * 4 + j].add(base), mask, val) };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn input_row(_src: [[*const f32; 4]; 4], _n: usize, _out: [*mut f32; XI]) {
    unreachable!("the Winograd path runs only where the direct kernels are active (x86-64)");
}

/// Writes output pixels of channels `co0..co0 + width` (those below `cout`)
/// for tiles `p0..p0 + n` of the chunk starting at sample `first`:
/// `Y = Aᵀ M A` with `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`, `M` from `m`
/// (`[ξ][tile - p0][width]`), plus the bias; pixels past `ho × wo` (odd sizes)
/// are dropped.
///
/// # Safety
/// AVX-512F; `out` points to the whole `[b, cout, ho, wo]` output; no other
/// thread writes these channels of these samples meanwhile; `m` holds
/// `(15 · PASS + n) · width` floats.
#[allow(clippy::too_many_arguments)]
unsafe fn transform_output(
    g: &Geom,
    m: &[f32],
    width: usize,
    co0: usize,
    first: usize,
    p0: usize,
    n: usize,
    bias: Option<&[f32]>,
    out: Shared<MaybeUninit<f32>>,
) {
    let (th, tw) = tiles(g);
    let channels = width.min(g.cout - co0);
    let p = g.p();
    let mut bias_block = [0f32; BLOCK];
    if let Some(b) = bias {
        bias_block[..channels].copy_from_slice(&b[co0..co0 + channels]);
    }
    assert!(m.len() >= (15 * PASS + n) * width, "Winograd products");
    // The two output rows of a run of tiles in one tile row, `[channel][2][2·tw]`:
    // filled tile by tile in the L1 cache, then copied to the output row by
    // row (storing each tile's pixels straight into the output planes touched
    // 64 cache lines per tile).
    let cap = 2 * tw;
    let mut rows = vec![0f32; BLOCK * 2 * cap];
    let mut y = [[0f32; BLOCK]; 4];
    let mut tt = 0;
    while tt < n {
        let t = p0 + tt;
        let (s, ty, tx0) = (t / (th * tw), t / tw % th, t % tw);
        let run = (tw - tx0).min(n - tt);
        for k in 0..run {
            for half in 0..width / 16 {
                let ms: [*const f32; XI] = core::array::from_fn(|xi| {
                    m[(xi * PASS + tt + k) * width + half * 16..].as_ptr()
                });
                // SAFETY: AVX-512F (the caller); 16 floats at each `ms[ξ]` (the
                // length asserted above) and in `bias_block` and `y` from `half · 16`.
                unsafe { output_vector(ms, bias_block[half * 16..].as_ptr(), &mut y, half * 16) };
            }
            for (q, y) in y.iter().enumerate() {
                let at = (q / 2) * cap + 2 * k + q % 2;
                for (l, &val) in y[..channels].iter().enumerate() {
                    rows[l * 2 * cap + at] = val;
                }
            }
        }
        // Columns past `wo` (odd widths) and rows past `ho` are dropped.
        let cols = (2 * run).min(g.wo - 2 * tx0);
        for r in 0..2.min(g.ho - 2 * ty) {
            let base = (first + s) * g.cout * p + (2 * ty + r) * g.wo + 2 * tx0;
            for l in 0..channels {
                let src = &rows[(l * 2 + r) * cap..][..cols];
                // SAFETY: `cols` pixels of row `2·ty + r < ho` from column `2·tx0`
                // (`2·tx0 + cols <= wo`) of channel `co0 + l < cout` of sample
                // `first + s < b`: inside the output, written by this block only
                // (the caller).
                unsafe {
                    copy_run(
                        src.as_ptr(),
                        out.ptr().add(base + (co0 + l) * p).cast(),
                        cols,
                    )
                };
            }
        }
        tt += run;
    }
}

/// Copies `n` floats from `src` to `dst` with masked vector moves (runs are
/// 2 to 32 floats long here, where a `memcpy` call costs more than the copy).
///
/// # Safety
/// AVX-512F; `src` readable and `dst` writable for `n` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_run(src: *const f32, dst: *mut f32, n: usize) {
    use core::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};
    for base in (0..n).step_by(16) {
        let mask = if n - base >= 16 {
            u16::MAX
        } else {
            (1u16 << (n - base)) - 1
        };
        // SAFETY: the lanes the mask lets through are below `n`.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.add(base));
            _mm512_mask_storeu_ps(dst.add(base), mask, v);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_run(_src: *const f32, _dst: *mut f32, _n: usize) {
    unreachable!("the Winograd path runs only where the direct kernels are active (x86-64)");
}

/// `y[q][at..at + 16]` = the 2×2 outputs `q` of 16 channels of one tile from
/// their products `ms[ξ][..16]`, plus `bias[..16]`.
///
/// # Safety
/// AVX-512F; 16 floats readable at every `ms[ξ]` and at `bias`; `at + 16 <= 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_vector(
    ms: [*const f32; XI],
    bias: *const f32,
    y: &mut [[f32; BLOCK]; 4],
    at: usize,
) {
    use core::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_sub_ps,
    };
    // SAFETY: the reads and writes the contract allows.
    unsafe {
        let m: [__m512; XI] = core::array::from_fn(|xi| _mm512_loadu_ps(ms[xi]));
        let bias = _mm512_loadu_ps(bias);
        // b = Aᵀ M (combining rows), then Y = b A (combining columns).
        let b: [[__m512; 4]; 2] = [
            core::array::from_fn(|j| _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j])),
            core::array::from_fn(|j| _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j])),
        ];
        for (i, b) in b.iter().enumerate() {
            let y0 = _mm512_add_ps(_mm512_add_ps(b[0], b[1]), b[2]);
            let y1 = _mm512_sub_ps(_mm512_sub_ps(b[1], b[2]), b[3]);
            _mm512_storeu_ps(y[i * 2][at..].as_mut_ptr(), _mm512_add_ps(y0, bias));
            _mm512_storeu_ps(y[i * 2 + 1][at..].as_mut_ptr(), _mm512_add_ps(y1, bias));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn output_vector(
    _ms: [*const f32; XI],
    _bias: *const f32,
    _y: &mut [[f32; BLOCK]; 4],
    _at: usize,
) {
    unreachable!("the Winograd path runs only where the direct kernels are active (x86-64)");
}
