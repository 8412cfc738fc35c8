//! The threat model's ball ∩ box around the clean rows, on the device: the projection and the
//! steepest-ascent direction of the L-inf and L2 searches (PGD, APGD) as batched tensor
//! operations, so that a step reads nothing back per sample.
//!
//! - **L-inf**: the ball ∩ box is a product of intervals, computed once in f64 and rounded inward
//!   (`geometry::linf_bounds`); clamping to it keeps `geometry`'s exactness guarantee.
//! - **L2**: the exact projection of `geometry` (`d_i = clamp(s·v_i, l_i, u_i)` with `v = t − x0`,
//!   `l, u` the room the box leaves, and the largest `s ∈ (0, 1]` whose `‖d‖₂` is within the
//!   radius), with `s` found by Newton's method on the active set instead of bisection. At a
//!   feasible `s`, with `A` the sum of `v_i²` over the coordinates not clamped and `C` the sum of
//!   the clamped `d_i²`, the next `s' = min(1, √((r² − C)/A))`: for `s' ≥ s` a free coordinate
//!   grows at most to `s'·|v_i|` and a clamped one stays, so `‖d(s')‖² ≤ s'²A + C = r²`. Every
//!   iterate is therefore feasible, `s` only grows, and once the clamped set stops changing
//!   `s'` is the root: the exact projection. It starts at `s = min(1, r/‖v‖)` (the answer when the
//!   box is not active), and stops when no row's `s` changes (one boolean read back per
//!   iteration) or after `NEWTON_STEPS`; a row that has not settled by then stays inside the
//!   ball, short of the optimum. With a small-cnn on MNIST at eps 1 and 2 (PGD and APGD, 2026-12-04)
//!   every projection settled within 4 iterations.
//!
//! In f32 the L2 sums round (relative errors of about 1e-7) and so does `x0 + d` (half an ulp of
//! the box's largest magnitude per coordinate, whatever eps is), so the device aims at
//! `device_radius`: eps shrunk by a millionth and by `√N` such half-ulps, the most that rounding
//! `x0 + d` can add to the distance. The iterates are then inside the ball, and the results the
//! attacks return are projected once more on the host in f64 and rounded toward the clean input
//! (`exact_rows`), which restores `geometry`'s guarantee bit for bit and leaves a row already
//! inside the ball unchanged.

use burn::tensor::Tensor;

use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::geometry::{linf_bounds, project};
use crate::host::{host_bool, host_f32, upload};
use crate::options::Norm;

/// The L2 iterates aim at `eps·(1 − RADIUS_MARGIN)` less the rounding of `x0 + d` (see
/// [`device_radius`]), so that f32 rounding keeps them in the ball.
const RADIUS_MARGIN: f64 = 1e-6;

/// The radius the device's L2 projection aims at for `eps` with rows of `n` values in
/// `[lo, hi]`: `eps·(1 − RADIUS_MARGIN)` less `√n` half-ulps of the box's largest magnitude (what
/// rounding each coordinate of `x0 + d` to f32 can add to the distance), never below 0.
pub(crate) fn device_radius(eps: f64, n: usize, (lo, hi): (f64, f64)) -> f64 {
    let half_ulp = lo.abs().max(hi.abs()) * f64::from(f32::EPSILON) / 2.0;
    (eps * (1.0 - RADIUS_MARGIN) - (n as f64).sqrt() * half_ulp).max(0.0)
}

/// Newton iterations of the L2 projection at most; each crosses at least one clamping point of
/// every row that has not settled, and rows of real models settle in a few.
const NEWTON_STEPS: usize = 24;

/// The ball ∩ box of one batch on its device, for the searches that step along a direction (L1's
/// sparse step and projection are in `l1_ball`).
pub(crate) enum Ball {
    Linf(Box<LinfBall>),
    L2(Box<L2Ball>),
}

/// The L-inf ball ∩ box of one batch: per coordinate an interval, rounded inward.
pub(crate) struct LinfBall {
    lower: Tensor<2>,
    upper: Tensor<2>,
}

/// The L2 ball ∩ box of one batch.
pub(crate) struct L2Ball {
    x0: Tensor<2>,
    /// `lo − x0` and `hi − x0`: the room the box leaves around each clean coordinate.
    room_low: Tensor<2>,
    room_high: Tensor<2>,
    radius: f64,
    lo: f64,
    hi: f64,
}

impl Ball {
    /// The ball of radius `eps` in `norm` around `batch`'s clean rows ∩ its box; `None` for L1.
    pub(crate) fn new<const D: usize, C: Classifier<D> + ?Sized>(
        batch: &Batch<'_, D, C>,
        norm: Norm,
        eps: f64,
    ) -> Option<Self> {
        let (lo, hi) = batch.bounds();
        match norm {
            Norm::Linf => {
                let (lower, upper) = linf_bounds(&batch.x0_host, eps, lo, hi);
                Some(Ball::Linf(Box::new(LinfBall {
                    lower: upload(lower, batch.b, batch.n, &batch.device),
                    upper: upload(upper, batch.b, batch.n, &batch.device),
                })))
            }
            Norm::L2 => Some(Self::l2(batch.x0.clone(), eps, (lo, hi))),
            Norm::L1 => None,
        }
    }

    fn l2(x0: Tensor<2>, eps: f64, (lo, hi): (f64, f64)) -> Self {
        let n = x0.dims()[1];
        Ball::L2(Box::new(L2Ball {
            room_low: x0.clone().neg() + lo,
            room_high: x0.clone().neg() + hi,
            x0,
            radius: device_radius(eps, n, (lo, hi)),
            lo,
            hi,
        }))
    }

    /// The steepest-ascent direction of a unit step: `sign(g)` (L-inf) or `g/‖g‖₂` (L2; a zero
    /// gradient gives no step).
    pub(crate) fn direction(&self, g: Tensor<2>) -> Tensor<2> {
        match self {
            Ball::Linf(_) => g.sign(),
            Ball::L2(_) => {
                // Scale by the largest |g_i| first: squares of tiny gradients would underflow in
                // f32 and turn a real direction into no step.
                let big = g.clone().abs().max_dim(1).clamp_min(f32::MIN_POSITIVE);
                let g = g / big;
                let len = g.clone().square().sum_dim(1).sqrt();
                g / len.clamp_min(f32::MIN_POSITIVE)
            }
        }
    }

    /// Projects the rows of `t` onto the ball ∩ box (see the module's documentation).
    pub(crate) fn project(&self, t: Tensor<2>) -> Tensor<2> {
        self.project_with(t, true)
    }

    /// [`Ball::project`], stopping once settled or (for the test that this changes nothing)
    /// always running `NEWTON_STEPS` iterations.
    fn project_with(&self, t: Tensor<2>, stop_when_settled: bool) -> Tensor<2> {
        match self {
            Ball::Linf(ball) => t.max_pair(ball.lower.clone()).min_pair(ball.upper.clone()),
            Ball::L2(ball) => {
                let L2Ball {
                    x0,
                    room_low,
                    room_high,
                    radius,
                    lo,
                    hi,
                } = ball.as_ref();
                let [rows, n] = t.dims();
                let v = t - x0.clone();
                let r2 = radius * radius;
                let vsq = v.clone().square();
                let len = vsq.clone().sum_dim(1).sqrt();
                let mut s = (len.clamp_min(f32::MIN_POSITIVE).recip() * *radius).clamp_max(1.0);
                for _ in 0..NEWTON_STEPS {
                    let scaled = v.clone() * s.clone().expand([rows, n]);
                    let d = scaled
                        .clone()
                        .max_pair(room_low.clone())
                        .min_pair(room_high.clone());
                    let clamped = d.clone().not_equal(scaled);
                    let free = vsq.clone().mask_fill(clamped.clone(), 0.0).sum_dim(1);
                    let held = d.square().mask_fill(clamped.bool_not(), 0.0).sum_dim(1);
                    // No free coordinate left: every coordinate is at the box, s changes nothing.
                    let none_free = free.clone().lower_equal_elem(0.0);
                    let next = ((held.neg() + r2).clamp_min(0.0)
                        / free.clamp_min(f32::MIN_POSITIVE))
                    .sqrt()
                    .mask_fill(none_free, 1.0)
                    .clamp_max(1.0)
                    .max_pair(s.clone());
                    // The iterate is a function of s alone: once no row moves, every later
                    // iteration returns the same s, so stopping gives the result of all of them.
                    let settled =
                        stop_when_settled && host_bool(next.clone().equal(s.clone()).all())[0];
                    s = next;
                    if settled {
                        break;
                    }
                }
                let d = (v * s.expand([rows, n]))
                    .max_pair(room_low.clone())
                    .min_pair(room_high.clone());
                (x0.clone() + d).clamp(*lo, *hi)
            }
        }
    }
}

/// Projects every row of the flat `x` (`[B·N]`, rows of `n`) onto the `norm` ball of radius `eps`
/// around `x0` ∩ `[lo, hi]` in f64, rounded toward the clean input (`geometry::project`): what the
/// attacks return is then inside the ball exactly, and a row already inside is left bit for bit.
/// Returns the indices of the rows it changed.
pub(crate) fn exact_rows(
    norm: Norm,
    x0: &[f32],
    x: &mut [f32],
    eps: f64,
    (lo, hi): (f64, f64),
    n: usize,
) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut moved = Vec::new();
    for (i, (row, clean)) in x.chunks_mut(n).zip(x0.chunks(n)).enumerate() {
        let t: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        project(norm, clean, &t, eps, lo, hi, row);
        if row.iter().zip(&t).any(|(&p, &q)| f64::from(p) != q) {
            moved.push(i);
        }
    }
    moved
}

/// The rows of the device tensor `x` projected exactly on the host (one read, and an upload only
/// when a row moved), for the L2 or L1 result of a device search; L-inf results are exact already
/// and come back unchanged.
pub(crate) fn exact<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    norm: Norm,
    eps: f64,
    x: Tensor<2>,
) -> Tensor<2> {
    if norm == Norm::Linf {
        return x;
    }
    let mut rows = host_f32(x.clone());
    let moved = exact_rows(
        norm,
        &batch.x0_host,
        &mut rows,
        eps,
        batch.bounds(),
        batch.n,
    );
    if moved.is_empty() {
        return x;
    }
    upload(rows, batch.b, batch.n, &batch.device)
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;
    use crate::rng::SplitMix64;

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    /// Random clean rows in `[0, 1]` (some on its faces, as images are) and targets far outside
    /// the ball, inside it, and pushed against the box (the L1 ball's tests use them too).
    pub(crate) fn case(rng: &mut SplitMix64, rows: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut pick = |scale: f64| -> Vec<f32> {
            (0..rows * n)
                .map(|_| match (rng.uniform() * 8.0) as u32 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => (rng.uniform() * scale) as f32,
                })
                .collect()
        };
        let x0 = pick(1.0);
        let step = pick(1.0);
        let t = x0
            .iter()
            .zip(&step)
            .enumerate()
            .map(|(i, (&c, &s))| {
                // Row i's step length varies over orders of magnitude.
                let size = 10f32.powi((i / n % 5) as i32 - 3);
                c + size * (2.0 * s - 1.0)
            })
            .collect();
        (x0, t)
    }

    fn l2_dist(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn l2_projection_is_in_the_ball_and_box_and_matches_the_exact_host_projection() {
        let device = Device::flex();
        let mut rng = SplitMix64::new(41);
        for trial in 0..40 {
            let (rows, n) = (1 + trial % 6, 2 + (trial * 37) % 300);
            let eps = [0.003, 0.05, 0.5, 2.0, 5.0][trial % 5];
            let (x0, t) = case(&mut rng, rows, n);
            let ball = Ball::l2(
                Tensor::from_data(TensorData::new(x0.clone(), [rows, n]), &device),
                eps,
                (0.0, 1.0),
            );
            let got = host(ball.project(Tensor::from_data(
                TensorData::new(t.clone(), [rows, n]),
                &device,
            )));
            for i in 0..rows {
                let r = i * n..(i + 1) * n;
                let d = l2_dist(&got[r.clone()], &x0[r.clone()]);
                assert!(
                    d <= eps * (1.0 + 1e-6),
                    "trial {trial} row {i}: {d} > {eps}"
                );
                assert!(got[r.clone()].iter().all(|v| (0.0..=1.0).contains(v)));
                let t64: Vec<f64> = t[r.clone()].iter().map(|&v| f64::from(v)).collect();
                // The exact projection onto the ball the device aims at.
                let radius = device_radius(eps, n, (0.0, 1.0));
                let mut want = vec![0f32; n];
                project(Norm::L2, &x0[r.clone()], &t64, radius, 0.0, 1.0, &mut want);
                // Up to f32 rounding: half an ulp of 1 per coordinate at most, and the f32 sums.
                let gap = l2_dist(&got[r.clone()], &want);
                assert!(
                    gap <= 1e-6 * eps + 1.2e-7 * (n as f64).sqrt(),
                    "trial {trial} row {i}: {gap} from the exact projection"
                );
            }
        }
    }

    #[test]
    fn l2_projection_of_a_point_inside_the_ball_moves_it_only_by_rounding() {
        let device = Device::flex();
        let x0 = vec![0.0f32, 0.25, 0.5, 1.0];
        let t = vec![0.0f32, 0.3, 0.45, 1.0];
        let ball = Ball::l2(
            Tensor::from_data(TensorData::new(x0, [1, 4]), &device),
            1.0,
            (0.0, 1.0),
        );
        let got = host(ball.project(Tensor::from_data(
            TensorData::new(t.clone(), [1, 4]),
            &device,
        )));
        for (g, w) in got.iter().zip(&t) {
            assert!((g - w).abs() <= 1e-7, "{got:?} vs {t:?}");
        }
    }

    #[test]
    fn stopping_once_settled_gives_the_projection_of_all_iterations_bit_for_bit() {
        let device = Device::flex();
        let mut rng = SplitMix64::new(7);
        for trial in 0..30 {
            let (rows, n) = (1 + trial % 5, 3 + (trial * 53) % 200);
            let (x0, t) = case(&mut rng, rows, n);
            let ball = Ball::l2(
                Tensor::from_data(TensorData::new(x0, [rows, n]), &device),
                0.5,
                (0.0, 1.0),
            );
            let t = Tensor::from_data(TensorData::new(t, [rows, n]), &device);
            let early = host(ball.project_with(t.clone(), true));
            let all = host(ball.project_with(t, false));
            assert!(
                early
                    .iter()
                    .zip(&all)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "trial {trial}"
            );
        }
    }

    #[test]
    fn l2_direction_is_a_unit_vector_and_a_zero_gradient_gives_none() {
        let device = Device::flex();
        let ball = Ball::l2(Tensor::zeros([3, 2], &device), 1.0, (0.0, 1.0));
        let g = Tensor::from_data(
            TensorData::new(vec![3.0f32, -4.0, 0.0, 0.0, 3e-30, 4e-30], [3, 2]),
            &device,
        );
        let got = host(ball.direction(g));
        let want = [0.6f32, -0.8, 0.0, 0.0, 0.6, 0.8];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6, "{got:?}");
        }
    }

    #[test]
    fn exact_rows_pull_a_row_outside_the_ball_in_and_leave_the_others_bit_for_bit() {
        let x0 = vec![0.5f32, 0.5, 0.2, 0.2];
        // Row 0 is at distance 0.5·√2 > 0.5; row 1 at 0.1.
        let mut x = vec![1.0f32, 1.0, 0.3, 0.2];
        let before = x.clone();
        let moved = exact_rows(Norm::L2, &x0, &mut x, 0.5, (0.0, 1.0), 2);
        assert_eq!(moved, vec![0]);
        assert!(l2_dist(&x[..2], &x0[..2]) <= 0.5);
        assert!((l2_dist(&x[..2], &x0[..2]) - 0.5).abs() < 1e-6);
        assert_eq!(x[2..], before[2..]);
    }
}
