//! Bulwark patch: the stride phases of f32 planes with AVX-512 (where the
//! direct kernels run): splitting a plane into the phases of its zero-padded
//! copy for a column stride of 2, merging the phases back (the input
//! gradient's adjoint), and adding the short column rows of col2im.
//!
//! The generic routines in the parent module walk every phase row through a
//! closure with two fills and a four-element gather: for small-cnn's second
//! layer (16 planes of 14×14 into phase rows of 8) that made the split cost
//! almost as much as the convolution's arithmetic (17 % of a Square attack's
//! time against 31 % for the kernel), and the merge and the row adds of the
//! input gradient another 16 % of a PGD step, all scalar. Here one input row
//! is two masked loads (the zero padding is the mask, the loads never touch
//! memory outside the row), two lane permutations across the two vectors (the
//! even and the odd lanes), and two masked stores of the phase rows; the merge
//! is the same in reverse. col2im sums each phase row in one register over the taps that land in it
//! (one masked load of a column row per tap, shifted by the tap's column
//! offset) and stores it once, where the generic code zeroes the phases and
//! adds every tap's rows into memory. Same values, bit for bit: copies, and
//! the same single additions from zero in the same tap order (lanes a tap does
//! not cover add +0.0 to a sum that starts at +0.0 and so is never -0.0).
//!
//! (A first version added each tap's rows into memory with masked loads and
//! stores; its stores and the next tap's overlapping loads stalled on
//! store forwarding and made PGD slower than the scalar adds.)

use alloc::vec::Vec;

use super::{Geom, phase_side};

/// The phase sides `(hq, wq)` of geometry `g` where [`split`] and [`merge`]
/// take it: a column stride of 2, phase rows of at most 16 (the part of a
/// padded row the phases read, `2·wq` lanes, fits two vectors), input rows
/// that end within those two vectors (`pw + w ≤ 32`, so the merge writes every
/// input pixel), and AVX-512F on (the direct kernels' switch and CPU check).
/// One check decides and licenses the AVX-512 code, so another thread
/// flipping the switch cannot come between the two.
fn sides(g: &Geom) -> Option<(usize, usize)> {
    let (hq, wq) = phase_side(g);
    let fits = g.stride[1] == 2 && (1..=16).contains(&wq) && g.w >= 1 && g.pad[1] + g.w <= 32;
    (fits && super::direct::active()).then_some((hq, wq))
}

/// Lanes `k` of a padded row (`[0, 32)`, two masks of 16) whose input column
/// `k - pw` lies in `[0, w)`.
fn row_masks(pw: usize, w: usize) -> (u16, u16) {
    let bits = |from: usize, to: usize| -> u32 {
        let (from, to) = (from.min(32), to.min(32));
        if from >= to {
            return 0;
        }
        let upto = |n: usize| if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        upto(to) & !upto(from)
    };
    let m = bits(pw, pw + w);
    (m as u16, (m >> 16) as u16)
}

/// [`super::split_phases`] where [`sides`] takes geometry `g` (every phase
/// element written, padding zero); `false`, with nothing written, elsewhere.
pub(super) fn split(g: &Geom, plane: &[f32], phases: &mut [f32]) -> bool {
    let Some((hq, wq)) = sides(g) else {
        return false;
    };
    assert_eq!(plane.len(), g.h * g.w, "phase split input");
    assert!(
        phases.len() >= g.stride[0] * 2 * hq * wq,
        "phase split output"
    );
    // SAFETY: AVX-512F and the geometry (`sides`); the sizes are asserted
    // above (see `split_avx512`).
    unsafe { split_avx512(g, hq, wq, plane, phases) };
    true
}

/// # Safety
/// AVX-512F; `plane` holds `h·w` and `phases` at least `sh·2·hq·wq` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_avx512(g: &Geom, hq: usize, wq: usize, plane: &[f32], phases: &mut [f32]) {
    let (sh, ph, pw, h, w) = (g.stride[0], g.pad[0], g.pad[1], g.h, g.w);
    let masks = row_masks(pw, w);
    let (src, out) = (plane.as_ptr(), phases.as_mut_ptr());
    for py in 0..sh {
        for i in 0..hq {
            let even = (py * 2 * hq + i) * wq;
            let odd = even + hq * wq;
            let padded = i * sh + py;
            // A padding row (above or below the input) is all zeros. (Plain
            // branches: closures here were called out of line, each call
            // behind a `vzeroupper`.)
            let row = if padded >= ph && padded - ph < h {
                // SAFETY: row `padded - ph` of the `h·w` plane.
                Some(unsafe { src.add((padded - ph) * w) })
            } else {
                None
            };
            // SAFETY: `even + wq` and `odd + wq` are within `phases` (phase
            // `(py, 1)` starts `hq·wq` after `(py, 0)`); the loads read lanes
            // `k` with `pw ≤ k < pw + w` at `row + k - pw`, inside the row.
            unsafe { split_row(row, pw, masks, wq, out.add(even), out.add(odd)) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn split_avx512(_g: &Geom, _hq: usize, _wq: usize, _plane: &[f32], _phases: &mut [f32]) {
    unreachable!("the AVX-512 phase routines run only where `direct::active()` is true (x86-64)");
}

/// [`super::merge_phases`] where [`sides`] takes geometry `g` (every input
/// pixel of `plane` written, zero where no phase element holds it); `false`,
/// with nothing written, elsewhere.
pub(super) fn merge(g: &Geom, phases: &[f32], plane: &mut [core::mem::MaybeUninit<f32>]) -> bool {
    let Some((hq, wq)) = sides(g) else {
        return false;
    };
    assert_eq!(plane.len(), g.h * g.w, "phase merge output");
    assert!(
        phases.len() >= g.stride[0] * 2 * hq * wq,
        "phase merge input"
    );
    // SAFETY: AVX-512F and the geometry (`sides`); the sizes are asserted
    // above (see `merge_avx512`).
    unsafe { merge_avx512(g, hq, wq, phases, plane) };
    true
}

/// # Safety
/// AVX-512F; `plane` holds `h·w` and `phases` at least `sh·2·hq·wq` elements;
/// `pw + w ≤ 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn merge_avx512(
    g: &Geom,
    hq: usize,
    wq: usize,
    phases: &[f32],
    plane: &mut [core::mem::MaybeUninit<f32>],
) {
    let (sh, ph, pw, w) = (g.stride[0], g.pad[0], g.pad[1], g.w);
    let masks = row_masks(pw, w);
    let (src, out) = (phases.as_ptr(), plane.as_mut_ptr().cast::<f32>());
    for ih in 0..g.h {
        let padded = ih + ph;
        let (py, i) = (padded % sh, padded / sh);
        let rows = if i < hq {
            let even = (py * 2 * hq + i) * wq;
            // SAFETY: both phase rows lie inside `phases` (asserted size).
            Some(unsafe { (src.add(even), src.add(even + hq * wq)) })
        } else {
            None
        };
        // SAFETY: the phase rows hold `wq` elements each; the stores write
        // lanes `k` with `pw ≤ k < pw + w ≤ 32` at `row + k - pw`, which
        // covers input row `ih` of the plane exactly.
        unsafe { merge_row(rows, pw, masks, wq, out.add(ih * w)) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn merge_avx512(
    _g: &Geom,
    _hq: usize,
    _wq: usize,
    _phases: &[f32],
    _plane: &mut [core::mem::MaybeUninit<f32>],
) {
    unreachable!("the AVX-512 phase routines run only where `direct::active()` is true (x86-64)");
}

/// [`super::col2im`]'s phase planes with AVX-512, for geometries with phase
/// rows of at most 16 (any strides): each phase row is summed in a register
/// over the taps of its phase, in tap order, from their column rows
/// `oh = i - row shift` shifted right by the tap's column shift, and stored
/// once.
///
/// The generic path adds each tap's rows into the phase planes one after the
/// other; with masked vector adds that made every row's load wait for the
/// previous row's store (the masked vectors overlap), a third slower than the
/// scalar adds. Here the sums read only the columns: the same additions in
/// the same order, bit for bit.
pub(super) struct Col2im {
    hq: usize,
    wq: usize,
    nphase: usize,
    /// Per tap, sorted by phase (tap order within a phase): (phase, first
    /// column row `tap·n`, row shift, column shift).
    taps: Vec<(usize, usize, usize, usize)>,
    /// Columns per row of the column matrix.
    n: usize,
}

impl Col2im {
    /// The plan for geometry `g` (tap offsets from [`super::tap_offsets`],
    /// `n` columns per column row), or `None` where the direct kernels are
    /// off, the phase rows are longer than 16 or the output is empty.
    pub(super) fn new(g: &Geom, offsets: &[usize], n: usize) -> Option<Self> {
        let (hq, wq) = phase_side(g);
        if !(1..=16).contains(&wq) || g.wo == 0 || g.ho == 0 || !super::direct::active() {
            return None;
        }
        let plen = hq * wq;
        let mut taps: Vec<(usize, usize, usize, usize)> = offsets
            .iter()
            .enumerate()
            .map(|(tap, &o)| (o / plen, tap * n, o % plen / wq, o % wq))
            .collect();
        taps.sort_by_key(|t| t.0); // stable: tap order within each phase
        for t in &taps {
            assert!(t.3 + g.wo <= wq, "a tap's columns run past its phase row");
            assert!(t.2 + g.ho <= hq, "a tap's rows run past its phase");
        }
        Some(Col2im {
            hq,
            wq,
            nphase: g.stride[0] * g.stride[1],
            taps,
            n,
        })
    }

    /// Writes every element of the phase planes of one channel of one sample:
    /// `col` holds the channel's column rows (`taps` rows of `n`), the
    /// sample's columns starting at `first`.
    pub(super) fn run(&self, g: &Geom, col: &[f32], first: usize, phases: &mut [f32]) {
        assert!(
            phases.len() >= self.nphase * self.hq * self.wq,
            "col2im phases"
        );
        assert!(col.len() >= self.taps.len() * self.n, "col2im columns");
        assert!(first + g.p() <= self.n, "col2im sample columns");
        // SAFETY: AVX-512F (checked in `new`); the phase planes lie inside
        // `phases` and every column row read, `tap·n + first + oh·wo + [0, wo)`
        // with `oh < ho`, inside `col` (asserted above).
        unsafe { self.run_avx512(g, col.as_ptr().add(first), phases.as_mut_ptr()) };
    }

    /// # Safety
    /// AVX-512F; see [`Col2im::run`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(&self, g: &Geom, col: *const f32, phases: *mut f32) {
        use core::arch::x86_64::{_mm512_add_ps, _mm512_mask_storeu_ps};
        use core::arch::x86_64::{_mm512_maskz_loadu_ps, _mm512_setzero_ps};
        let (hq, wq, taps) = (self.hq, self.wq, &self.taps[..]);
        let (ho, wo) = (g.ho, g.wo);
        let row = ((1u32 << wq) - 1) as u16;
        let mut at = 0;
        for phase in 0..self.nphase {
            let mut end = at;
            while end < taps.len() && taps[end].0 == phase {
                end += 1;
            }
            let mine = &taps[at..end];
            at = end;
            for i in 0..hq {
                let mut acc = _mm512_setzero_ps();
                for &(_, start, rs, cs) in mine {
                    if i < rs || i - rs >= ho {
                        continue;
                    }
                    // Lanes [cs, cs + wo) of the phase row take column row
                    // `oh = i - rs`; the base is only dereferenced in them.
                    let m = (((1u32 << wo) - 1) << cs) as u16;
                    let src = col.wrapping_add(start + (i - rs) * wo).wrapping_sub(cs);
                    // SAFETY: the enabled lanes read the column row (caller).
                    let v = unsafe { _mm512_maskz_loadu_ps(m, src) };
                    acc = _mm512_add_ps(acc, v);
                }
                // SAFETY: the phase row lies inside `phases` (caller).
                unsafe { _mm512_mask_storeu_ps(phases.add((phase * hq + i) * wq), row, acc) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_avx512(&self, _g: &Geom, _col: *const f32, _phases: *mut f32) {
        unreachable!(
            "the AVX-512 phase routines run only where `direct::active()` is true (x86-64)"
        );
    }
}

/// The index vectors of the even and odd lanes of two concatenated vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn deinterleave_indices() -> (core::arch::x86_64::__m512i, core::arch::x86_64::__m512i) {
    use core::arch::x86_64::_mm512_setr_epi32;
    (
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
    )
}

/// One padded input row (`None`: a padding row) into its even and odd phase
/// rows of `wq` elements.
///
/// # Safety
/// AVX-512F; `even` and `odd` are writable for `wq ≤ 16` elements; the lanes
/// of `masks` (see [`row_masks`]) read at `src + k - pw` lie inside the row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn split_row(
    src: Option<*const f32>,
    pw: usize,
    (lo, hi): (u16, u16),
    wq: usize,
    even: *mut f32,
    odd: *mut f32,
) {
    use core::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};
    use core::arch::x86_64::{_mm512_permutex2var_ps, _mm512_setzero_ps};
    let out = ((1u32 << wq) - 1) as u16;
    // SAFETY: forwarded from the caller; masked-off lanes are not accessed, so
    // the wrapped base pointer is only dereferenced inside the row.
    unsafe {
        let (e, o) = match src {
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            Some(row) => {
                let base = row.wrapping_sub(pw);
                let a = _mm512_maskz_loadu_ps(lo, base);
                let b = _mm512_maskz_loadu_ps(hi, base.wrapping_add(16));
                let (ie, io) = deinterleave_indices();
                (
                    _mm512_permutex2var_ps(a, ie, b),
                    _mm512_permutex2var_ps(a, io, b),
                )
            }
        };
        _mm512_mask_storeu_ps(even, out, e);
        _mm512_mask_storeu_ps(odd, out, o);
    }
}

/// The even and odd phase rows (`None`: no phase row holds this input row)
/// interleaved back into one input row, zero where no phase element holds a
/// pixel.
///
/// # Safety
/// AVX-512F; the phase rows hold `wq ≤ 16` elements; the lanes of `masks`
/// written at `dst + k - pw` lie inside the row, and cover it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn merge_row(
    src: Option<(*const f32, *const f32)>,
    pw: usize,
    (lo, hi): (u16, u16),
    wq: usize,
    dst: *mut f32,
) {
    use core::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};
    use core::arch::x86_64::{_mm512_permutex2var_ps, _mm512_setr_epi32, _mm512_setzero_ps};
    let row = ((1u32 << wq) - 1) as u16;
    // SAFETY: forwarded from the caller; masked-off lanes are not accessed.
    unsafe {
        let (a, b) = match src {
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            Some((even, odd)) => {
                let e = _mm512_maskz_loadu_ps(row, even);
                let o = _mm512_maskz_loadu_ps(row, odd);
                // Padded lane k: even[k/2] for even k, odd[k/2] for odd k
                // (indices 16.. pick from the second operand).
                let first =
                    _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let second =
                    _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                (
                    _mm512_permutex2var_ps(e, first, o),
                    _mm512_permutex2var_ps(e, second, o),
                )
            }
        };
        let base = dst.wrapping_sub(pw);
        _mm512_mask_storeu_ps(base, lo, a);
        _mm512_mask_storeu_ps(base.wrapping_add(16), hi, b);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn split_row(
    _src: Option<*const f32>,
    _pw: usize,
    _masks: (u16, u16),
    _wq: usize,
    _even: *mut f32,
    _odd: *mut f32,
) {
    unreachable!("the AVX-512 phase routines run only where `direct::active()` is true (x86-64)");
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn merge_row(
    _src: Option<(*const f32, *const f32)>,
    _pw: usize,
    _masks: (u16, u16),
    _wq: usize,
    _dst: *mut f32,
) {
    unreachable!("the AVX-512 phase routines run only where `direct::active()` is true (x86-64)");
}

#[cfg(test)]
mod tests {
    use super::row_masks;

    #[test]
    fn row_masks_select_the_input_columns() {
        for pw in 0..34 {
            for w in 0..34 {
                let (lo, hi) = row_masks(pw, w);
                let m = u32::from(lo) | (u32::from(hi) << 16);
                for k in 0..32 {
                    let inside = k >= pw && k < pw + w;
                    assert_eq!(m >> k & 1 == 1, inside, "pw {pw} w {w} lane {k}");
                }
            }
        }
    }
}
