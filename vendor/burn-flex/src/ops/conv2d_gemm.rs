//! Bulwark patch: 2D convolution forward, input gradient and weight gradient as
//! batch-chunked im2col + **one gemm per chunk of samples**.
//!
//! Upstream flex runs one small gemm per sample and tile (for MNIST-sized maps
//! that is m = 32, n = 49: call and packing overhead dominate), gets the input
//! gradient through a generic transposed convolution that zeroes a column
//! buffer per sample and scatters element by element, and gets the weight
//! gradient through a convolution with batch and channels swapped, which runs
//! on one thread when the layer has one input channel. Here every pass builds
//! the columns of several samples at once (`[K, nb·P]`, rows `(c, ky, kx)`,
//! columns `(sample, oh, ow)`), so the gemm sees n in the hundreds or
//! thousands; chunks run in parallel on rayon's pool; im2col and its adjoint
//! (col2im) go through the stride phases of each zero-padded input plane,
//! where every kernel tap reads contiguous output rows (see [`phase_side`]).
//!
//! All three passes share [`Geom`] and [`im2col`]; the input gradient is the
//! exact adjoint of the forward (same column layout, gemm with the transposed
//! weight, then [`col2im`]). Any stride, dilation, groups and (begin) padding;
//! asymmetric padding works because the backward passes take the sizes from
//! the tensors.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_backend::ops::conv::calculate_conv_output_size;
use burn_std::{Bytes, Shape};
use core::mem::MaybeUninit;

use crate::{FlexTensor, Layout};

mod avx512_phases;
pub(crate) mod direct;
mod weight_grad;
pub(crate) mod winograd;

/// The element types with a gemm path here (half types go through f32).
pub(crate) trait Real:
    burn_std::Element
    + bytemuck::Pod
    + Copy
    + Send
    + Sync
    + 'static
    + core::ops::AddAssign
    + core::ops::Add<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const DTYPE: DType;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F32;
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F64;
}

/// Columns per chunk the gemm should see (enough to amortize packing).
const TARGET_COLUMNS: usize = 1024;
/// Upper bound on one chunk's column buffer, so chunks stay near the caches.
const MAX_COLUMN_BYTES: usize = 4 << 20;

/// Geometry of one 2D convolution: input `[b, cin, h, w]`, weight
/// `[cout, cin / groups, kh, kw]`, output `[b, cout, ho, wo]`.
#[derive(Clone, Copy, Debug)]
struct Geom {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(x: &[usize], weight: &[usize], out_hw: [usize; 2], options: &ConvOptions<2>) -> Self {
        Geom {
            b: x[0],
            cin: x[1],
            h: x[2],
            w: x[3],
            cout: weight[0],
            groups: options.groups,
            kh: weight[2],
            kw: weight[3],
            stride: options.stride,
            pad: options.padding_begin(),
            dilation: options.dilation,
            ho: out_hw[0],
            wo: out_hw[1],
        }
    }

    /// Input channels per group.
    fn cpg(&self) -> usize {
        self.cin / self.groups
    }

    /// Output channels per group.
    fn cout_g(&self) -> usize {
        self.cout / self.groups
    }

    /// Rows of the column matrix per group (`cpg · kh · kw`).
    fn k(&self) -> usize {
        self.cpg() * self.kh * self.kw
    }

    /// Output pixels per sample.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Samples per chunk: enough columns for the gemm, buffers near the
    /// caches, and the same number of chunks (at least two) for every thread
    /// when the batch allows. (Capping the size alone made 7 chunks of 20 for
    /// small-cnn's second layer at batch 128: 4 on one thread, 3 on the other.)
    fn chunk(&self, elem: usize) -> usize {
        let p = self.p().max(1);
        let by_cols = (TARGET_COLUMNS / p).max(1);
        let by_bytes = (MAX_COLUMN_BYTES / (self.k().max(1) * p * elem)).max(1);
        let most = by_cols.min(by_bytes).min(self.b.max(1));
        let t = threads().max(1);
        let rounds = self.b.div_ceil(most * t).max(2);
        self.b.div_ceil(rounds * t).max(1)
    }
}

fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

/// Scratch buffers returned by finished chunks, for the next ones. Their
/// contents are stale: callers overwrite every element they read. Reusing them
/// saves allocating and zeroing megabytes per convolution. (A process-wide
/// pool, not a `thread_local!`: a build with a thread-local here ran every gemm
/// call in the process 2.4x slower, plain matmul included, reproduced with
/// alternating builds; the cause was not pinned down (gemm keeps its packing
/// buffers in thread-locals of its own).)
#[cfg(feature = "std")]
static SCRATCH: std::sync::Mutex<Vec<Vec<f64>>> = std::sync::Mutex::new(Vec::new());
/// Buffers kept in the pool, and the largest one kept (in f64 words).
#[cfg(feature = "std")]
const POOL_BUFFERS: usize = 16;
#[cfg(feature = "std")]
const POOL_MAX_WORDS: usize = 4 << 20;

/// Runs `f` with two scratch buffers of `a` and `b` elements (stale contents).
fn with_scratch<T: Real, R>(a: usize, b: usize, f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
    // f64 storage is aligned for both element types.
    let words = |n: usize| (n * core::mem::size_of::<T>()).div_ceil(8);
    #[cfg(feature = "std")]
    let take = || {
        SCRATCH
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_default()
    };
    #[cfg(not(feature = "std"))]
    let take = Vec::<f64>::new;
    let (mut va, mut vb) = (take(), take());
    if va.len() < words(a) {
        va.resize(words(a), 0.0);
    }
    if vb.len() < words(b) {
        vb.resize(words(b), 0.0);
    }
    let r = {
        let sa: &mut [T] = &mut bytemuck::cast_slice_mut(&mut va[..])[..a];
        let sb: &mut [T] = &mut bytemuck::cast_slice_mut(&mut vb[..])[..b];
        f(sa, sb)
    };
    #[cfg(feature = "std")]
    if let Ok(mut pool) = SCRATCH.lock() {
        for v in [va, vb] {
            if pool.len() < POOL_BUFFERS && v.len() <= POOL_MAX_WORDS {
                pool.push(v);
            }
        }
    }
    r
}

/// gemm's own threads only when the chunks alone cannot keep the pool busy.
fn inner_parallelism(chunks: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    {
        if chunks < threads() {
            return gemm::Parallelism::Rayon(0);
        }
    }
    let _ = chunks;
    gemm::Parallelism::None
}

/// Output positions `[lo, hi)` along one axis whose input coordinate
/// `o·stride + offset - pad` falls inside `[0, size)`.
fn valid_range(
    offset: usize,
    pad: usize,
    stride: usize,
    size: usize,
    out: usize,
) -> (usize, usize) {
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = if size + pad > offset {
        (size + pad - offset).div_ceil(stride)
    } else {
        0
    };
    let lo = lo.min(out);
    (lo, hi.clamp(lo, out))
}

/// Side of the stride phases of one zero-padded input plane: `(hq, wq)`.
///
/// Phase `(py, px)` holds the padded plane's pixels `(i·sh + py, j·sw + px)`
/// for `i < hq`, `j < wq`. Output pixel `(oh, ow)` under kernel tap
/// `(ky, kx)` reads padded pixel `(oh·sh + ky·dh, ow·sw + kx·dw)`, which is
/// element `(oh + ky·dh / sh, ow + kx·dw / sw)` of phase
/// `(ky·dh % sh, kx·dw % sw)`: for every tap and output row, the `wo` pixels
/// read are **contiguous** in one phase, whatever the stride, dilation and
/// padding. So im2col is a run of short copies with no bounds arithmetic,
/// and col2im a run of short vector adds.
fn phase_side(g: &Geom) -> (usize, usize) {
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    (
        g.ho + (g.kh.max(1) - 1) * dh / sh,
        g.wo + (g.kw.max(1) - 1) * dw / sw,
    )
}

/// Elements of all stride phases of one plane.
fn phase_len(g: &Geom) -> usize {
    let (hq, wq) = phase_side(g);
    g.stride[0] * g.stride[1] * hq * wq
}

/// For every tap `(ky, kx)`, row by row: the offset of its first read in the
/// phase buffer.
fn tap_offsets(g: &Geom) -> Vec<usize> {
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let (hq, wq) = phase_side(g);
    let mut offsets = Vec::with_capacity(g.kh * g.kw);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let (oy, ox) = (ky * dh, kx * dw);
            offsets.push(((oy % sh) * sw + ox % sw) * hq * wq + (oy / sh) * wq + ox / sw);
        }
    }
    offsets
}

/// Calls `f(phase_row, plane_row, lo, hi, iw0)` for every row of every
/// phase: `phase_row` is the row's offset in the phase buffer, `plane_row`
/// the offset of input row `ih` in the plane (`None` in the padding), and
/// phase columns `[lo, hi)` read input columns `iw0, iw0 + sw, ...`; the
/// other columns are padding.
fn for_each_phase_row(g: &Geom, mut f: impl FnMut(usize, Option<usize>, usize, usize, usize)) {
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    let (hq, wq) = phase_side(g);
    for py in 0..sh {
        for px in 0..sw {
            let base = (py * sw + px) * hq * wq;
            let (lo, hi) = valid_range(px, pw, sw, g.w, wq);
            // First input column read (only meaningful when lo < hi).
            let iw0 = (lo * sw + px).saturating_sub(pw);
            for i in 0..hq {
                let ih = (i * sh + py).checked_sub(ph).filter(|&ih| ih < g.h);
                f(base + i * wq, ih.map(|ih| ih * g.w), lo, hi, iw0);
            }
        }
    }
}

/// `Some(s)` as f32 when `T` is f32 (for the f32-only AVX-512 routines).
fn as_f32<T: Real>(s: &[T]) -> Option<&[f32]> {
    (core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>())
        .then(|| bytemuck::cast_slice(s))
}

/// [`as_f32`] for a mutable slice.
fn as_f32_mut<T: Real>(s: &mut [T]) -> Option<&mut [f32]> {
    (core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>())
        .then(|| bytemuck::cast_slice_mut(s))
}

/// Splits one input plane (`h·w`) into its zero-padded stride phases.
fn split_phases<T: Real>(g: &Geom, plane: &[T], phases: &mut [T]) {
    if let (Some(plane), Some(phases)) = (as_f32(plane), as_f32_mut(phases))
        && avx512_phases::split(g, plane, phases)
    {
        return;
    }
    let wq = phase_side(g).1;
    let sw = g.stride[1];
    for_each_phase_row(g, |at, src, lo, hi, iw0| {
        let row = &mut phases[at..at + wq];
        let Some(src) = src.filter(|_| lo < hi) else {
            row.fill(T::ZERO);
            return;
        };
        row[..lo].fill(T::ZERO);
        row[hi..].fill(T::ZERO);
        let src = &plane[src + iw0..];
        if sw == 1 {
            copy_short(&mut row[lo..hi], src);
        } else {
            gather_strided(&mut row[lo..hi], src, sw);
        }
    });
}

/// Zeroes a buffer of uninitialized elements and returns it initialized. The
/// convolution outputs are allocated uninitialized and written by the parallel
/// chunks: a `vec![0; n]` would zero megabytes on the calling thread first,
/// while the pool waits.
fn init_zero<T: Real>(buf: &mut [MaybeUninit<T>]) -> &mut [T] {
    for v in buf.iter_mut() {
        v.write(T::ZERO);
    }
    // SAFETY: every element was just written; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &mut *(buf as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// The adjoint of [`split_phases`]: writes the phases' input pixels back into
/// the plane (every input pixel is in exactly one phase position or in none,
/// when no window reads it; those are set to zero).
fn merge_phases<T: Real>(g: &Geom, phases: &[T], plane: &mut [MaybeUninit<T>]) {
    if let Some(phases) = as_f32(phases) {
        // SAFETY: `T` is f32 (`as_f32` checked its type id), so the slice's
        // elements are `MaybeUninit<f32>`.
        let plane32 = unsafe {
            core::slice::from_raw_parts_mut(
                plane.as_mut_ptr().cast::<MaybeUninit<f32>>(),
                plane.len(),
            )
        };
        if avx512_phases::merge(g, phases, plane32) {
            return;
        }
    }
    let sw = g.stride[1];
    let plane = init_zero(plane);
    for_each_phase_row(g, |at, dst, lo, hi, iw0| {
        let Some(dst) = dst.filter(|_| lo < hi) else {
            return;
        };
        let row = &phases[at + lo..at + hi];
        let dst = &mut plane[dst + iw0..];
        if sw == 1 {
            copy_short(&mut dst[..row.len()], row);
        } else {
            scatter_strided(dst, row, sw);
        }
    });
}

/// `dst[j] = src[j·s]`. Stride 2 (the common strided convolution) moves four
/// elements per 8-element block, which compiles to shuffles; a `step_by`
/// loop was scalar with a division per row and a third of small-cnn's im2col.
#[inline(always)]
fn gather_strided<T: Copy>(dst: &mut [T], src: &[T], s: usize) {
    let n = dst.len();
    let mut j = 0;
    if s == 2 {
        while j + 4 <= n && 2 * j + 8 <= src.len() {
            let b: &[T; 8] = src[2 * j..2 * j + 8].try_into().expect("8");
            let d: &mut [T; 4] = (&mut dst[j..j + 4]).try_into().expect("4");
            *d = [b[0], b[2], b[4], b[6]];
            j += 4;
        }
    }
    while j < n {
        dst[j] = src[j * s];
        j += 1;
    }
}

/// `dst[j·s] = src[j]`, the adjoint of [`gather_strided`]'s reads.
#[inline(always)]
fn scatter_strided<T: Copy>(dst: &mut [T], src: &[T], s: usize) {
    let n = src.len();
    let mut j = 0;
    if s == 2 {
        while j + 4 <= n && 2 * j + 8 <= dst.len() {
            let b: &mut [T; 8] = (&mut dst[2 * j..2 * j + 8]).try_into().expect("8");
            let v: &[T; 4] = src[j..j + 4].try_into().expect("4");
            (b[0], b[2], b[4], b[6]) = (v[0], v[1], v[2], v[3]);
            j += 4;
        }
    }
    while j < n {
        dst[j * s] = src[j];
        j += 1;
    }
}

/// Columns `[K, nb·P]` of group `grp` for the samples `x` (a chunk of whole
/// samples, NCHW): rows `(c, ky, kx)`, columns `(sample, oh, ow)`.
fn im2col<T: Real>(g: &Geom, grp: usize, x: &[T], nb: usize, col: &mut [T]) {
    let (p, plane, taps) = (g.p(), g.h * g.w, g.kh * g.kw);
    let n = nb * p;
    let wq = phase_side(g).1;
    let mut phases = vec![T::ZERO; phase_len(g)];
    let offsets = tap_offsets(g);
    for c in 0..g.cpg() {
        let channel = (grp * g.cpg() + c) * plane;
        for s in 0..nb {
            let at = s * g.cin * plane + channel;
            split_phases(g, &x[at..at + plane], &mut phases);
            for (tap, &src) in offsets.iter().enumerate() {
                let dst = (c * taps + tap) * n + s * p;
                if wq == g.wo {
                    col[dst..dst + p].copy_from_slice(&phases[src..src + p]);
                    continue;
                }
                copy_rows(&mut col[dst..dst + p], g.wo, &phases[src..], wq);
            }
        }
    }
}

/// The adjoint of [`im2col`]: writes the input gradient of group `grp`'s
/// channels into `dx` (a chunk of whole samples, NCHW) from the columns.
fn col2im<T: Real>(g: &Geom, grp: usize, col: &[T], nb: usize, dx: &mut [MaybeUninit<T>]) {
    let (p, plane, taps) = (g.p(), g.h * g.w, g.kh * g.kw);
    let n = nb * p;
    let wq = phase_side(g).1;
    let mut phases = vec![T::ZERO; phase_len(g)];
    let offsets = tap_offsets(g);
    let fast = avx512_phases::Col2im::new(g, &offsets, n);
    for c in 0..g.cpg() {
        let channel = (grp * g.cpg() + c) * plane;
        let rows = &col[c * taps * n..(c + 1) * taps * n];
        for s in 0..nb {
            let done = match (&fast, as_f32(rows), as_f32_mut(&mut phases)) {
                (Some(plan), Some(rows), Some(ph)) => {
                    plan.run(g, rows, s * p, ph);
                    true
                }
                _ => false,
            };
            if !done {
                phases.fill(T::ZERO);
                for (tap, &dst) in offsets.iter().enumerate() {
                    let src = (c * taps + tap) * n + s * p;
                    for oh in 0..g.ho {
                        let (d, s) = (dst + oh * wq, src + oh * g.wo);
                        add_short(&mut phases[d..d + g.wo], &col[s..s + g.wo]);
                    }
                }
            }
            let at = s * g.cin * plane + channel;
            merge_phases(g, &phases, &mut dx[at..at + plane]);
        }
    }
}

/// `dst = src` (equal lengths) for the short rows of small feature maps,
/// inline: `copy_from_slice` calls `memcpy` once per row, and madry-cnn's
/// second layer makes millions of 14-element rows per PGD step.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    let src = &src[..n];
    let mut i = 0;
    while i + 8 <= n {
        let d: &mut [T; 8] = (&mut dst[i..i + 8]).try_into().expect("8 elements");
        *d = src[i..i + 8].try_into().expect("8 elements");
        i += 8;
    }
    if i + 4 <= n {
        let d: &mut [T; 4] = (&mut dst[i..i + 4]).try_into().expect("4 elements");
        *d = src[i..i + 4].try_into().expect("4 elements");
        i += 4;
    }
    if i + 2 <= n {
        let d: &mut [T; 2] = (&mut dst[i..i + 2]).try_into().expect("2 elements");
        *d = src[i..i + 2].try_into().expect("2 elements");
        i += 2;
    }
    if i < n {
        dst[i] = src[i];
    }
}

/// Copies rows of `w` elements, `stride` apart in `src`, to consecutive rows
/// of `dst` (`dst.len()` rows of `w`). Rows of 4 to 16 elements move as one
/// fixed 8- or 16-element block each, in order: a block's tail spills into the
/// next row, which overwrites it (a block is at most two rows wide, so a spill
/// never reaches past the next row), and the last row is copied exactly. One
/// block move instead of a 4 + 2 + 1 ladder per row: small-cnn's 7-wide rows.
/// The reads stay inside `src`: row `r < last` reads up to
/// `r·stride + block ≤ last·stride + w` (block ≤ 2w ≤ stride + w).
#[inline(always)]
fn copy_rows<T: Copy>(dst: &mut [T], w: usize, src: &[T], stride: usize) {
    let rows = dst.len() / w.max(1);
    if rows == 0 {
        return;
    }
    let last = rows - 1;
    match w {
        4..=8 => {
            for r in 0..last {
                let d: &mut [T; 8] = (&mut dst[r * w..r * w + 8]).try_into().expect("8");
                *d = src[r * stride..r * stride + 8].try_into().expect("8");
            }
        }
        9..=16 => {
            for r in 0..last {
                let d: &mut [T; 16] = (&mut dst[r * w..r * w + 16]).try_into().expect("16");
                *d = src[r * stride..r * stride + 16].try_into().expect("16");
            }
        }
        _ => {
            for r in 0..last {
                copy_short(&mut dst[r * w..(r + 1) * w], &src[r * stride..]);
            }
        }
    }
    copy_short(&mut dst[last * w..rows * w], &src[last * stride..]);
}

/// `dst += src` (equal lengths) in fixed 8/4/2/1-element blocks: a plain
/// loop leaves short rows (7, 14 elements) to a scalar tail.
#[inline(always)]
fn add_short<T: Real>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn block<T: Real, const B: usize>(dst: &mut [T], src: &[T]) {
        let d: &mut [T; B] = dst.try_into().expect("block");
        let s: &[T; B] = src.try_into().expect("block");
        for (d, &v) in d.iter_mut().zip(s) {
            *d += v;
        }
    }
    let n = dst.len();
    let src = &src[..n];
    let mut i = 0;
    while i + 8 <= n {
        block::<T, 8>(&mut dst[i..i + 8], &src[i..i + 8]);
        i += 8;
    }
    if i + 4 <= n {
        block::<T, 4>(&mut dst[i..i + 4], &src[i..i + 4]);
        i += 4;
    }
    if i + 2 <= n {
        block::<T, 2>(&mut dst[i..i + 2], &src[i..i + 2]);
        i += 2;
    }
    if i < n {
        dst[i] += src[i];
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` with explicit (column, row) strides.
#[allow(clippy::too_many_arguments)]
fn gemm_into<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(T::ZERO);
            }
        }
        return;
    }
    // Bounds of the furthest element each operand is read or written at.
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1));
    assert!(lhs.len() > (m - 1) * lhs_strides.1 + (k - 1) * lhs_strides.0);
    assert!(rhs.len() > (k - 1) * rhs_strides.1 + (n - 1) * rhs_strides.0);
    // SAFETY: the asserts above keep every access in bounds; dst does not
    // alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.0 as isize,
            lhs_strides.1 as isize,
            rhs.as_ptr(),
            rhs_strides.0 as isize,
            rhs_strides.1 as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Copies the output gradient of group `grp` for a chunk of samples into
/// `[cout_g, nb·P]` (the column layout).
fn gather_grad<T: Real>(g: &Geom, grp: usize, dy: &[T], nb: usize, out: &mut [T]) {
    let (p, cg) = (g.p(), g.cout_g());
    let n = nb * p;
    for co in 0..cg {
        for s in 0..nb {
            let src = s * g.cout * p + (grp * cg + co) * p;
            out[co * n + s * p..co * n + (s + 1) * p].copy_from_slice(&dy[src..src + p]);
        }
    }
}

/// Runs `f(first_sample, samples)` for every chunk, in parallel when rayon is
/// on; `f` gets the chunk's slice of a per-sample buffer of `per_sample`
/// elements.
fn for_each_chunk<E: Send>(
    buf: &mut [E],
    per_sample: usize,
    nb: usize,
    f: impl Fn(usize, usize, &mut [E]) + Send + Sync,
) {
    if per_sample == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        buf.par_chunks_mut(nb * per_sample)
            .enumerate()
            .for_each(|(i, out)| f(i * nb, out.len() / per_sample, out));
    }
    #[cfg(not(feature = "rayon"))]
    {
        for (i, out) in buf.chunks_mut(nb * per_sample).enumerate() {
            f(i * nb, out.len() / per_sample, out);
        }
    }
}

fn contiguous(t: FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = t.to_contiguous();
    let dims = t.layout().shape().to_vec();
    (t, dims)
}

fn tensor<T: Real>(data: Vec<T>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(dims)),
        T::DTYPE,
    )
}

/// Forward 2D convolution (symmetric padding: the caller pads asymmetric input).
pub(crate) fn conv2d<T: Real>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, xd) = contiguous(x);
    let (weight, wd) = contiguous(weight);
    let pad = options.padding_begin();
    let out_hw = [
        calculate_conv_output_size(wd[2], options.stride[0], pad[0], options.dilation[0], xd[2]),
        calculate_conv_output_size(wd[3], options.stride[1], pad[1], options.dilation[1], xd[3]),
    ];
    let g = Geom::new(&xd, &wd, out_hw, options);
    let bias = bias.map(|b| b.to_contiguous());
    let bias: Option<&[T]> = bias.as_ref().map(|b| b.storage());
    let x: &[T] = x.storage();
    let w: &[T] = weight.storage();
    if T::DTYPE == DType::F32 && direct::active() && direct::suits(&g) {
        let (x, w): (&[f32], &[f32]) = (bytemuck::cast_slice(x), bytemuck::cast_slice(w));
        let bias: Option<&[f32]> = bias.map(bytemuck::cast_slice);
        let mut out = Box::new_uninit_slice(g.b * g.cout * g.p());
        if winograd::active() && winograd::suits(&g) {
            let cin = g.cin;
            let packed = winograd::pack(g.cout, cin, |co, c, tap| w[(co * cin + c) * 9 + tap]);
            winograd::conv(&g, x, &packed, bias, &mut out);
            // SAFETY: `winograd::conv` writes every element of `out`.
            let out = unsafe { out.assume_init() }.into_vec();
            return tensor(out, vec![g.b, g.cout, g.ho, g.wo]);
        }
        let packed = direct::pack_rows(g.cout, g.k(), w);
        direct::conv(&g, x, &packed, bias, &mut out);
        // SAFETY: `direct::conv` writes every element of `out`.
        let out = unsafe { out.assume_init() }.into_vec();
        return tensor(out, vec![g.b, g.cout, g.ho, g.wo]);
    }

    let (p, k, cg) = (g.p(), g.k(), g.cout_g());
    let nb = g.chunk(core::mem::size_of::<T>());
    let par = inner_parallelism(g.b.div_ceil(nb));
    let sample_in = g.cin * g.h * g.w;
    let mut out = Box::new_uninit_slice(g.b * g.cout * p);
    for_each_chunk(&mut out, g.cout * p, nb, |first, nb, out| {
        let n = nb * p;
        let xs = &x[first * sample_in..(first + nb) * sample_in];
        with_scratch::<T, _>(k * n, cg * n, |col, res| {
            for grp in 0..g.groups {
                im2col(&g, grp, xs, nb, col);
                let wg = &w[grp * cg * k..(grp + 1) * cg * k];
                gemm_into(cg, n, k, res, n, false, wg, (1, k), col, (1, n), par);
                for co in 0..cg {
                    let c = grp * cg + co;
                    let b = bias.map_or(T::ZERO, |b| b[c]);
                    for s in 0..nb {
                        let dst = &mut out[s * g.cout * p + c * p..s * g.cout * p + (c + 1) * p];
                        let src = &res[co * n + s * p..co * n + (s + 1) * p];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            d.write(v + b);
                        }
                    }
                }
            }
        });
    });
    // SAFETY: the chunks wrote every (sample, channel, pixel) of `out`.
    let out = unsafe { out.assume_init() }.into_vec();
    tensor(out, vec![g.b, g.cout, g.ho, g.wo])
}

/// Gradient of a 2D convolution with respect to its input `[b, cin, h, w]`.
pub(crate) fn conv2d_x_backward<T: Real>(
    x_dims: &[usize],
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (weight, wd) = contiguous(weight);
    let (dy, dyd) = contiguous(output_grad);
    let g = Geom::new(x_dims, &wd, [dyd[2], dyd[3]], options);
    let w: &[T] = weight.storage();
    let dy: &[T] = dy.storage();
    if T::DTYPE == DType::F32 {
        if let Some(dx) = x_backward_direct(&g, bytemuck::cast_slice(w), bytemuck::cast_slice(dy)) {
            return tensor(dx, x_dims.to_vec());
        }
    }

    let (p, k, cg) = (g.p(), g.k(), g.cout_g());
    let nb = g.chunk(core::mem::size_of::<T>());
    let par = inner_parallelism(g.b.div_ceil(nb));
    let sample_in = g.cin * g.h * g.w;
    let mut dx = Box::new_uninit_slice(g.b * sample_in);
    for_each_chunk(&mut dx, sample_in, nb, |first, nb, dx| {
        let n = nb * p;
        let dys = &dy[first * g.cout * p..(first + nb) * g.cout * p];
        with_scratch::<T, _>(k * n, cg * n, |col, grad| {
            for grp in 0..g.groups {
                gather_grad(&g, grp, dys, nb, grad);
                let wg = &w[grp * cg * k..(grp + 1) * cg * k];
                // col[K, n] = W_gᵀ[K, cout_g] · grad[cout_g, n]
                gemm_into(k, n, cg, col, n, false, wg, (k, 1), grad, (1, n), par);
                col2im(&g, grp, col, nb, dx);
            }
        });
    });
    // SAFETY: `col2im` initialized every plane of every sample (`merge_phases`).
    let dx = unsafe { dx.assume_init() }.into_vec();
    tensor(dx, x_dims.to_vec())
}

/// The input gradient of a stride-1 convolution as a direct convolution:
/// `dx[c, ih, iw] = Σ dy[co, ih - p' + fy·dh, iw - p' + fx·dw] · w[co, c, kh-1-fy, kw-1-fx]`
/// over `(co, fy, fx)`, with `p' = (k - 1)·d - pad` and `dy` zero outside
/// its `ho × wo`: a convolution of `dy` (`cout` channels in, `cin` out) with
/// the kernel flipped and its channel axes swapped. `None` where the direct
/// kernel is off or does not suit (strides, groups, fewer than 16 input
/// channels, padding beyond the kernel's reach). (A strided input gradient
/// as one direct convolution per stride phase of the input was measured on
/// small-cnn's second layer and gave nothing: splitting the output gradient
/// into padded planes once per phase cost what the kernel saved.)
fn x_backward_direct(g: &Geom, w: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    if g.stride != [1, 1] || !direct::active() {
        return None;
    }
    let reach = |i: usize, k: usize| (k.max(1) - 1) * g.dilation[i];
    let pad = [
        reach(0, g.kh).checked_sub(g.pad[0])?,
        reach(1, g.kw).checked_sub(g.pad[1])?,
    ];
    let t = Geom {
        cin: g.cout,
        h: g.ho,
        w: g.wo,
        cout: g.cin,
        pad,
        ho: g.h,
        wo: g.w,
        ..*g
    };
    if !direct::suits(&t) {
        return None;
    }
    let mut dx = Box::new_uninit_slice(g.b * g.cin * g.h * g.w);
    if winograd::active() && winograd::suits(&t) {
        // The transposed problem's weight `(c, co, tap)` is `w[co, c, 8 - tap]`.
        let cin = g.cin;
        let packed = winograd::pack(g.cin, g.cout, |c, co, tap| w[(co * cin + c) * 9 + 8 - tap]);
        winograd::conv(&t, dy, &packed, None, &mut dx);
        // SAFETY: `winograd::conv` writes every element of `dx`.
        return Some(unsafe { dx.assume_init() }.into_vec());
    }
    // Reduction index of the transposed problem: (co, fy, fx), the kernel flipped.
    let packed = direct::pack_flipped(g.cout, g.cin, g.kh * g.kw, w);
    direct::conv(&t, dy, &packed, None, &mut dx);
    // SAFETY: `direct::conv` writes every element of `dx`.
    Some(unsafe { dx.assume_init() }.into_vec())
}

/// Gradient of a 2D convolution with respect to its weight `[cout, cin / groups, kh, kw]`.
pub(crate) fn conv2d_weight_backward<T: Real>(
    x: FlexTensor,
    weight_dims: &[usize],
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, xd) = contiguous(x);
    let (dy, dyd) = contiguous(output_grad);
    let g = Geom::new(&xd, weight_dims, [dyd[2], dyd[3]], options);
    let x: &[T] = x.storage();
    let dy: &[T] = dy.storage();
    if T::DTYPE == DType::F32 && weight_grad::suits(&g) {
        let dw = weight_grad::weight_grad(&g, bytemuck::cast_slice(x), bytemuck::cast_slice(dy));
        return tensor(dw, weight_dims.to_vec());
    }

    let (p, k, cg) = (g.p(), g.k(), g.cout_g());
    let nb = g.chunk(core::mem::size_of::<T>());
    let chunks = g.b.div_ceil(nb);
    let par = inner_parallelism(chunks);
    let sample_in = g.cin * g.h * g.w;
    let size = g.cout * k;
    // Partial sums per chunk, added in chunk order (deterministic).
    let partial = |i: usize| -> Vec<T> {
        let first = i * nb;
        let nb = nb.min(g.b - first);
        let n = nb * p;
        let xs = &x[first * sample_in..(first + nb) * sample_in];
        let dys = &dy[first * g.cout * p..(first + nb) * g.cout * p];
        let mut dw = vec![T::ZERO; size];
        with_scratch::<T, _>(k * n, cg * n, |col, grad| {
            for grp in 0..g.groups {
                im2col(&g, grp, xs, nb, col);
                gather_grad(&g, grp, dys, nb, grad);
                // dW_g[cout_g, K] = grad[cout_g, n] · colᵀ[n, K]
                let dst = &mut dw[grp * cg * k..(grp + 1) * cg * k];
                gemm_into(cg, k, n, dst, k, false, grad, (1, n), col, (n, 1), par);
            }
        });
        dw
    };
    #[cfg(feature = "rayon")]
    let parts: Vec<Vec<T>> = {
        use rayon::prelude::*;
        (0..chunks).into_par_iter().map(partial).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let parts: Vec<Vec<T>> = (0..chunks).map(partial).collect();
    let mut dw = vec![T::ZERO; size];
    for part in parts {
        for (d, v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    tensor(dw, weight_dims.to_vec())
}

#[cfg(test)]
mod tests {
    use super::valid_range;

    #[test]
    fn valid_range_matches_a_scan() {
        for size in 1..7 {
            for pad in 0..3 {
                for stride in 1..4 {
                    for offset in 0..5 {
                        for out in 0..8 {
                            let ok: Vec<usize> = (0..out)
                                .filter(|&o| {
                                    let i = (o * stride + offset) as isize - pad as isize;
                                    i >= 0 && (i as usize) < size
                                })
                                .collect();
                            let (lo, hi) = valid_range(offset, pad, stride, size, out);
                            let expect = (lo..hi).collect::<Vec<_>>();
                            assert_eq!(ok, expect, "{size} {pad} {stride} {offset} {out}");
                        }
                    }
                }
            }
        }
    }
}
