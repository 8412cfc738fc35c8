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
//! (col2im) move whole output rows, contiguous when the stride is 1.
//!
//! All three passes share [`Geom`] and [`im2col`]; the input gradient is the
//! exact adjoint of the forward (same column layout, gemm with the transposed
//! weight, then [`col2im`]). Any stride, dilation, groups and (begin) padding;
//! asymmetric padding works because the backward passes take the sizes from
//! the tensors.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_backend::ops::conv::calculate_conv_output_size;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

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
    /// caches, and at least two chunks per thread when the batch allows.
    fn chunk(&self, elem: usize) -> usize {
        let p = self.p().max(1);
        let by_cols = (TARGET_COLUMNS / p).max(1);
        let by_bytes = (MAX_COLUMN_BYTES / (self.k().max(1) * p * elem)).max(1);
        let by_threads = self.b.div_ceil(2 * threads()).max(1);
        by_cols.min(by_bytes).min(by_threads).min(self.b.max(1))
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

/// Calls `f(row, sample, oh, ih, ow_lo, ow_hi, iw0)` for every row
/// `(c, ky, kx)` of group `g`, sample of the chunk and output row `oh`;
/// `ih` is `None` where the kernel row falls into the padding.
#[inline(always)]
fn for_each_segment(
    g: &Geom,
    nb: usize,
    mut f: impl FnMut(usize, usize, usize, Option<usize>, usize, usize, usize),
) {
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    let [dh, dw] = g.dilation;
    let mut row = 0;
    for c in 0..g.cpg() {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (lo, hi) = valid_range(kx * dw, pw, sw, g.w, g.wo);
                let iw0 = (lo * sw + kx * dw).saturating_sub(pw);
                for s in 0..nb {
                    for oh in 0..g.ho {
                        let ih = (oh * sh + ky * dh).checked_sub(ph).filter(|&ih| ih < g.h);
                        let src = ih.map(|ih| c * g.h * g.w + ih * g.w);
                        f(row, s, oh, src, lo, hi, iw0);
                    }
                }
                row += 1;
            }
        }
    }
}

/// Columns `[K, nb·P]` of group `grp` for the samples `x` (a chunk of whole
/// samples, NCHW).
fn im2col<T: Real>(g: &Geom, grp: usize, x: &[T], nb: usize, col: &mut [T]) {
    if use_rows(g) {
        im2col_rows(g, grp, x, nb, col);
    } else {
        im2col_table(g, grp, x, nb, col, &tap_table(g));
    }
}

/// The adjoint of [`im2col`]: adds the columns of group `grp` into `dx`
/// (a chunk of whole samples, NCHW).
fn col2im<T: Real>(g: &Geom, grp: usize, col: &[T], nb: usize, dx: &mut [T]) {
    if use_rows(g) {
        col2im_rows(g, grp, col, nb, dx);
    } else {
        col2im_table(g, grp, col, nb, dx, &tap_table(g));
    }
}

/// Whole output rows are worth moving as segments when they are contiguous in
/// the input (stride 1) and long; short or strided rows go through a table.
fn use_rows(g: &Geom) -> bool {
    (g.stride[1] == 1 && g.wo >= 16) || g.h * g.w >= PAD as usize
}

/// Marks a tap that falls into the padding.
const PAD: u32 = u32::MAX;

/// For every kernel tap `(ky, kx)` and output pixel `(oh, ow)`: the offset of
/// the input pixel it reads within one channel plane, or [`PAD`].
fn tap_table(g: &Geom) -> Vec<u32> {
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    let [dh, dw] = g.dilation;
    let mut table = Vec::with_capacity(g.kh * g.kw * g.p());
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            for oh in 0..g.ho {
                let ih = (oh * sh + ky * dh).checked_sub(ph).filter(|&i| i < g.h);
                for ow in 0..g.wo {
                    let iw = (ow * sw + kx * dw).checked_sub(pw).filter(|&i| i < g.w);
                    table.push(match (ih, iw) {
                        (Some(ih), Some(iw)) => (ih * g.w + iw) as u32,
                        _ => PAD,
                    });
                }
            }
        }
    }
    table
}

fn im2col_table<T: Real>(g: &Geom, grp: usize, x: &[T], nb: usize, col: &mut [T], table: &[u32]) {
    let (p, plane, taps) = (g.p(), g.h * g.w, g.kh * g.kw);
    let n = nb * p;
    let sample = g.cin * plane;
    for c in 0..g.cpg() {
        let channel = (grp * g.cpg() + c) * plane;
        for tap in 0..taps {
            let row = (c * taps + tap) * n;
            let t = &table[tap * p..(tap + 1) * p];
            for s in 0..nb {
                let src = &x[s * sample + channel..s * sample + channel + plane];
                let dst = &mut col[row + s * p..row + (s + 1) * p];
                for (d, &i) in dst.iter_mut().zip(t) {
                    *d = if i == PAD { T::ZERO } else { src[i as usize] };
                }
            }
        }
    }
}

fn col2im_table<T: Real>(g: &Geom, grp: usize, col: &[T], nb: usize, dx: &mut [T], table: &[u32]) {
    let (p, plane, taps) = (g.p(), g.h * g.w, g.kh * g.kw);
    let n = nb * p;
    let sample = g.cin * plane;
    for s in 0..nb {
        for c in 0..g.cpg() {
            let channel = s * sample + (grp * g.cpg() + c) * plane;
            let dst = &mut dx[channel..channel + plane];
            for tap in 0..taps {
                let row = (c * taps + tap) * n + s * p;
                let t = &table[tap * p..(tap + 1) * p];
                for (&i, &v) in t.iter().zip(&col[row..row + p]) {
                    if i != PAD {
                        dst[i as usize] += v;
                    }
                }
            }
        }
    }
}

fn im2col_rows<T: Real>(g: &Geom, grp: usize, x: &[T], nb: usize, col: &mut [T]) {
    let n = nb * g.p();
    let sample = g.cin * g.h * g.w;
    let group_off = grp * g.cpg() * g.h * g.w;
    let sw = g.stride[1];
    for_each_segment(g, nb, |row, s, oh, src, lo, hi, iw0| {
        let start = row * n + s * g.p() + oh * g.wo;
        let seg = &mut col[start..start + g.wo];
        let Some(src) = src else {
            seg.fill(T::ZERO);
            return;
        };
        let src = &x[s * sample + group_off + src..];
        seg[..lo].fill(T::ZERO);
        seg[hi..].fill(T::ZERO);
        if lo < hi && sw == 1 {
            seg[lo..hi].copy_from_slice(&src[iw0..iw0 + (hi - lo)]);
        } else if lo < hi {
            let taps = src[iw0..].iter().step_by(sw);
            for (o, &v) in seg[lo..hi].iter_mut().zip(taps) {
                *o = v;
            }
        }
    });
}

/// [`col2im`] by output-row segments.
fn col2im_rows<T: Real>(g: &Geom, grp: usize, col: &[T], nb: usize, dx: &mut [T]) {
    let n = nb * g.p();
    let sample = g.cin * g.h * g.w;
    let group_off = grp * g.cpg() * g.h * g.w;
    let sw = g.stride[1];
    for_each_segment(g, nb, |row, s, oh, dst, lo, hi, iw0| {
        let Some(dst) = dst.filter(|_| lo < hi) else {
            return;
        };
        let start = row * n + s * g.p() + oh * g.wo;
        let seg = &col[start + lo..start + hi];
        let dst = &mut dx[s * sample + group_off + dst..];
        if sw == 1 {
            for (d, &v) in dst[iw0..iw0 + seg.len()].iter_mut().zip(seg) {
                *d += v;
            }
        } else {
            for (d, &v) in dst[iw0..].iter_mut().step_by(sw).zip(seg) {
                *d += v;
            }
        }
    });
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
fn for_each_chunk<T: Real>(
    buf: &mut [T],
    per_sample: usize,
    nb: usize,
    f: impl Fn(usize, usize, &mut [T]) + Send + Sync,
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

    let (p, k, cg) = (g.p(), g.k(), g.cout_g());
    let nb = g.chunk(core::mem::size_of::<T>());
    let par = inner_parallelism(g.b.div_ceil(nb));
    let sample_in = g.cin * g.h * g.w;
    let mut out = vec![T::ZERO; g.b * g.cout * p];
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
                            *d = v + b;
                        }
                    }
                }
            }
        });
    });
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

    let (p, k, cg) = (g.p(), g.k(), g.cout_g());
    let nb = g.chunk(core::mem::size_of::<T>());
    let par = inner_parallelism(g.b.div_ceil(nb));
    let sample_in = g.cin * g.h * g.w;
    let mut dx = vec![T::ZERO; g.b * sample_in];
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
    tensor(dx, x_dims.to_vec())
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
