//! The L1 ball ∩ box around the clean rows, on the device: the sparse steepest-ascent step and
//! the projection of the L1 searches (PGD, FGSM, L1-APGD) as batched tensor operations, so that
//! a step reads no row back.
//!
//! - **The sparse step** moves the `k` coordinates with the largest `|g_i|` among those the box
//!   lets move in the direction of `g_i`, each by `η / k` in that direction (`k` per row). The
//!   `k`-th largest score is found without a sort (burn's GPU backends sort on the host) by
//!   bisection on the threshold `τ`: keeping `count(score ≥ lo) ≥ k > count(score ≥ hi)`, the
//!   midpoint is geometric while `hi > 2·lo` (the scores span many orders of magnitude) and
//!   arithmetic after, so that `lo` and `hi` become adjacent floats within about 35 halvings. Every
//!   second halving reads back whether every row has `count(score ≥ lo) = k` (or a bracket of two
//!   adjacent floats) and stops the batch then; a row that is done keeps its selection through
//!   further halvings. The coordinates at or above `lo` are then exactly the top `k`, except on an
//!   exact tie at the threshold, where every tied coordinate moves and the
//!   step is shared among them (as in Croce & Hein's reference code, which thresholds the sorted
//!   scores the same way).
//! - **The projection** is `geometry`'s exact one (`d_i = sign(v_i)·clamp(|v_i| − λ, 0, c_i)` with
//!   the smallest `λ ≥ 0` whose mass `Σ_i clamp(|v_i| − λ, 0, c_i)` is within the radius), with `λ`
//!   found by Newton's method on the piecewise linear mass, safeguarded by a bracket: the mass and
//!   its slope (minus the count of coordinates strictly between 0 and their cap) at `μ` give
//!   `μ' = μ + (mass − r')/count`, in exact arithmetic the root in one step once `μ` is on the
//!   root's linear piece; a proposal outside the bracket is replaced by its midpoint. Newton aims
//!   at `r' = r·(1 − 5e-7)`, just inside the radius, so that rounding leaves its landing point
//!   feasible rather than a few ulps outside. A row stops when its mass is within the radius and
//!   short of it by at most `2e-6·r` (or its bracket can shrink no more),
//!   and then keeps its point; the result uses the bracket's feasible end, so every iterate is
//!   inside the ball. One boolean is read back per iteration; on a small-cnn on MNIST at L1 eps 2
//!   to 30 every projection settled within 10 iterations, most within 4 to 6.
//!
//! As for L2 (`ball`), the device aims at a radius shrunk by what f32 rounding can add: `√N` ulps
//! of eps for the summation of the mass (its typical error; a pairwise or tree sum stays far
//! below it), and `N` half-ulps of the box's largest magnitude for
//! rounding `x0 + d`. The results the attacks return are projected once more on the host in f64
//! (`ball::exact_rows`), which restores the exact guarantee whatever the rounding did.

use burn::tensor::{Bool, Tensor};

use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::host::host_bool;

/// Newton aims this share below the radius, so that rounding leaves its landing point feasible.
const AIM_SHORTFALL: f64 = 5e-7;

/// A projection's row has settled when its mass is within the radius and above
/// `radius·(1 − SETTLED_SHORTFALL)`: on the root up to f32 rounding.
const SETTLED_SHORTFALL: f64 = 2e-6;

/// Newton iterations of the projection at most (each settled row stays put).
const NEWTON_STEPS: usize = 40;

/// Bisection iterations of the top-k threshold at most: geometric halvings of the exponent range
/// (at most 9 from the smallest positive f32 to the largest) and 24 of the mantissa.
const THRESHOLD_STEPS: usize = 48;

/// The radius the device's L1 projection aims at for `eps` with rows of `n` values in `[lo, hi]`.
pub(crate) fn device_radius(eps: f64, n: usize, (lo, hi): (f64, f64)) -> f64 {
    let ulp = f64::from(f32::EPSILON);
    let half_ulp = lo.abs().max(hi.abs()) * ulp / 2.0;
    let summed = 1.0 - (n as f64).sqrt() * ulp;
    (eps * summed - n as f64 * half_ulp).max(0.0)
}

/// The L1 ball ∩ box of one batch on its device.
pub(crate) struct L1Ball {
    x0: Tensor<2>,
    /// `lo − x0` (≤ 0) and `hi − x0` (≥ 0): the room the box leaves around each clean coordinate.
    room_low: Tensor<2>,
    room_high: Tensor<2>,
    radius: f64,
    lo: f64,
    hi: f64,
}

/// `[B, 1]` values widened to the rows of `[B, N]`.
fn wide(t: Tensor<2>, n: usize) -> Tensor<2> {
    let b = t.dims()[0];
    t.expand([b, n])
}

/// A `[B, 1]` mask widened to the rows of `[B, N]`.
fn wide_mask(t: Tensor<2, Bool>, n: usize) -> Tensor<2, Bool> {
    let b = t.dims()[0];
    t.expand([b, n])
}

impl L1Ball {
    /// The L1 ball of radius `eps` around `batch`'s clean rows ∩ its box.
    pub(crate) fn new<const D: usize, C: Classifier<D> + ?Sized>(
        batch: &Batch<'_, D, C>,
        eps: f64,
    ) -> Self {
        Self::around(batch.x0.clone(), eps, batch.bounds())
    }

    fn around(x0: Tensor<2>, eps: f64, (lo, hi): (f64, f64)) -> Self {
        let n = x0.dims()[1];
        Self {
            room_low: x0.clone().neg() + lo,
            room_high: x0.clone().neg() + hi,
            x0,
            radius: device_radius(eps, n, (lo, hi)),
            lo,
            hi,
        }
    }

    /// The sparse step from `x` along the gradient `g`: `eta` (`[B, 1]`) shared over the `k`
    /// (`[B, 1]`, whole numbers ≥ 1) coordinates with the largest `|g_i|` among those the box lets
    /// move in the direction of `g_i` (see the module's documentation for ties). A zero gradient,
    /// or one the box blocks everywhere, gives no step. The result is not projected.
    pub(crate) fn sparse_step(
        &self,
        x: Tensor<2>,
        g: Tensor<2>,
        eta: Tensor<2>,
        k: Tensor<2>,
    ) -> Tensor<2> {
        let n = x.dims()[1];
        let up = g
            .clone()
            .greater_elem(0.0)
            .bool_and(x.clone().lower_elem(self.hi));
        let down = g
            .clone()
            .lower_elem(0.0)
            .bool_and(x.clone().greater_elem(self.lo));
        // Scores are finite (an infinite gradient counts as the largest float), so the
        // threshold's bracket stays finite.
        let score = g
            .clone()
            .abs()
            .clamp_max(f32::MAX)
            .mask_fill(up.bool_or(down).bool_not(), 0.0);
        let selected = top_k(score, k);
        let count = selected.clone().float().sum_dim(1).clamp_min(1.0);
        let step = g.sign().mask_fill(selected.bool_not(), 0.0) * wide(eta / count, n);
        x + step
    }

    /// Projects the rows of `t` onto the ball ∩ box (see the module's documentation).
    pub(crate) fn project(&self, t: Tensor<2>) -> Tensor<2> {
        let [rows, n] = t.dims();
        let device = t.device();
        let r = self.radius;
        let aim = r * (1.0 - AIM_SHORTFALL);
        let v = t - self.x0.clone();
        let negative = v.clone().lower_elem(0.0);
        let a = v.abs();
        // The room in the direction each coordinate moves.
        let cap = self
            .room_high
            .clone()
            .mask_where(negative.clone(), self.room_low.clone().neg())
            .clamp_min(0.0);
        // The bracket: mass(low) > r unless low = 0, mass(high) ≤ r; `mu` the point to evaluate.
        let mut low: Tensor<2> = Tensor::zeros([rows, 1], &device);
        let mut high = a.clone().max_dim(1);
        let mut mu: Tensor<2> = Tensor::zeros([rows, 1], &device);
        let mut settled: Tensor<2, Bool> = Tensor::<2>::zeros([rows, 1], &device).equal_elem(1.0);
        for _ in 0..NEWTON_STEPS {
            let u = a.clone() - wide(mu.clone(), n);
            let kept = u.clone().clamp_min(0.0).min_pair(cap.clone());
            let mass = kept.sum_dim(1);
            let free = u
                .clone()
                .greater_elem(0.0)
                .bool_and(u.lower(cap.clone()))
                .float()
                .sum_dim(1);
            let feasible = mass.clone().lower_equal_elem(r);
            // Settled rows keep their bracket and point.
            let open = settled.clone().bool_not();
            high = high.mask_where(feasible.clone().bool_and(open.clone()), mu.clone());
            low = low.mask_where(feasible.clone().bool_not().bool_and(open), mu.clone());
            let close = mass
                .clone()
                .greater_equal_elem(r * (1.0 - SETTLED_SHORTFALL))
                .bool_or(mu.clone().equal_elem(0.0));
            let half = low.clone() + (high.clone() - low.clone()) * 0.5;
            let collapsed = half
                .clone()
                .equal(low.clone())
                .bool_or(half.clone().equal(high.clone()));
            settled = settled.bool_or(feasible.bool_and(close)).bool_or(collapsed);
            if host_bool(settled.clone().all())[0] {
                break;
            }
            // Newton from mu, aiming just inside the radius; a proposal that is not strictly
            // inside the bracket (no free coordinate, or rounding) takes the bracket's midpoint.
            let newton = mu.clone() + (mass - aim) / free.clone().clamp_min(1.0);
            let inside = free
                .greater_elem(0.0)
                .bool_and(newton.clone().greater(low.clone()))
                .bool_and(newton.clone().lower(high.clone()));
            let next = half.mask_where(inside, newton);
            mu = mu.clone().mask_where(settled.clone().bool_not(), next);
        }
        // The feasible end of the bracket (a settled row's point, when it settled inside).
        let lambda = wide(high, n);
        let d = (a - lambda).clamp_min(0.0).min_pair(cap);
        let d = d.clone().mask_where(negative, d.neg());
        (self.x0.clone() + d).clamp(self.lo, self.hi)
    }
}

/// The coordinates of each row of `score` (`≥ 0`; 0 = may not move) at or above its `k`-th
/// largest positive value (`k` is `[B, 1]`; a row with fewer positive values than `k` selects all
/// of them).
fn top_k(score: Tensor<2>, k: Tensor<2>) -> Tensor<2, Bool> {
    let n = score.dims()[1];
    let positive = score.clone().greater_elem(0.0);
    // Every threshold tried is positive (it starts at a row's smallest positive score and stays
    // finite), so it counts positive scores only.
    let count_at = |tau: &Tensor<2>| {
        score
            .clone()
            .greater_equal(wide(tau.clone(), n))
            .float()
            .sum_dim(1)
    };
    let pos = positive.clone().float().sum_dim(1);
    let want = k.min_pair(pos.clone());
    // lo: the smallest positive score (all positives at or above it); hi: above the largest.
    let mut lo = score
        .clone()
        .mask_fill(positive.clone().bool_not(), f32::MAX)
        .min_dim(1);
    // Above the largest score (capped at the largest float: a row whose largest score is above
    // half of it selects every score at that cap, which only matters for absurd gradients).
    let mut hi = (score.clone().max_dim(1) * 2.0).clamp_max(f32::MAX);
    let mut at_lo = pos;
    for i in 0..THRESHOLD_STEPS {
        let geometric = hi.clone().greater(lo.clone() * 2.0);
        let half = lo.clone() + (hi.clone() - lo.clone()) * 0.5;
        let mid = half.mask_where(geometric, lo.clone().sqrt() * hi.clone().sqrt());
        if i % 2 == 1 {
            // Stop once every row selects exactly k, or its bracket is two adjacent floats (a
            // tie at the threshold).
            let done = at_lo
                .clone()
                .equal(want.clone())
                .bool_or(mid.clone().equal(lo.clone()))
                .bool_or(mid.clone().equal(hi.clone()));
            if host_bool(done.all())[0] {
                break;
            }
        }
        let c = count_at(&mid);
        let take = c.clone().greater_equal(want.clone());
        lo = lo.mask_where(take.clone(), mid.clone());
        at_lo = at_lo.mask_where(take.clone(), c);
        hi = hi.mask_where(take.bool_not(), mid);
    }
    score
        .greater_equal(wide(lo, n))
        .bool_and(positive)
        .bool_and(wide_mask(want.greater_elem(0.0), n))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;
    use crate::ball::tests::case;
    use crate::geometry::project;
    use crate::options::Norm;
    use crate::rng::SplitMix64;

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    fn tensor(values: Vec<f32>, rows: usize, n: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, [rows, n]), &Device::flex())
    }

    fn l1_dist(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| (f64::from(p) - f64::from(q)).abs())
            .sum()
    }

    #[test]
    fn l1_projection_is_in_the_ball_and_box_and_matches_the_exact_host_projection() {
        let mut rng = SplitMix64::new(43);
        for trial in 0..40 {
            let (rows, n) = (1 + trial % 6, 2 + (trial * 37) % 300);
            let eps = [0.003, 0.05, 0.5, 2.0, 10.0][trial % 5];
            let (x0, t) = case(&mut rng, rows, n);
            let ball = L1Ball::around(tensor(x0.clone(), rows, n), eps, (0.0, 1.0));
            let got = host(ball.project(tensor(t.clone(), rows, n)));
            for i in 0..rows {
                let r = i * n..(i + 1) * n;
                let d = l1_dist(&got[r.clone()], &x0[r.clone()]);
                assert!(
                    d <= eps * (1.0 + 1e-6),
                    "trial {trial} row {i}: {d} > {eps}"
                );
                assert!(got[r.clone()].iter().all(|v| (0.0..=1.0).contains(v)));
                // The exact projection onto the ball the device aims at, up to its settling
                // tolerance and f32 rounding.
                let radius = device_radius(eps, n, (0.0, 1.0));
                let t64: Vec<f64> = t[r.clone()].iter().map(|&v| f64::from(v)).collect();
                let mut want = vec![0f32; n];
                project(Norm::L1, &x0[r.clone()], &t64, radius, 0.0, 1.0, &mut want);
                let gap = l1_dist(&got[r.clone()], &want);
                // f32 rounds `t − x0` to half an ulp of the larger of the two.
                let rounding: f64 = t[r.clone()]
                    .iter()
                    .map(|&v| f64::from(f32::EPSILON) * f64::from(v.abs().max(1.0)))
                    .sum();
                assert!(
                    gap <= 2.0 * SETTLED_SHORTFALL * eps + rounding,
                    "trial {trial} row {i}: {gap} from the exact projection"
                );
            }
        }
    }

    #[test]
    fn l1_projection_of_a_point_inside_the_ball_leaves_it() {
        let x0 = vec![0.0f32, 0.25, 0.5, 1.0];
        let t = vec![0.0f32, 0.3, 0.45, 1.0];
        let ball = L1Ball::around(tensor(x0, 1, 4), 1.0, (0.0, 1.0));
        assert_eq!(host(ball.project(tensor(t.clone(), 1, 4))), t);
    }

    #[test]
    fn sparse_step_moves_exactly_the_top_k_movable_coordinates() {
        let mut rng = SplitMix64::new(5);
        for trial in 0..30 {
            let (rows, n) = (1 + trial % 4, 5 + (trial * 29) % 400);
            // Scores over many orders of magnitude, some zero, some coordinates blocked.
            let g: Vec<f32> = (0..rows * n)
                .map(|_| match (rng.uniform() * 10.0) as u32 {
                    0 => 0.0,
                    s => {
                        let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                        sign * (rng.uniform() as f32) * 10f32.powi(s as i32 - 30)
                    }
                })
                .collect();
            let x: Vec<f32> = (0..rows * n)
                .map(|_| match (rng.uniform() * 6.0) as u32 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => 0.5,
                })
                .collect();
            let ks: Vec<f32> = (0..rows)
                .map(|i| (1 + (i * 17 + trial) % n) as f32)
                .collect();
            let ball = L1Ball::around(tensor(vec![0.5; rows * n], rows, n), 1.0, (0.0, 1.0));
            let got = host(ball.sparse_step(
                tensor(x.clone(), rows, n),
                tensor(g.clone(), rows, n),
                tensor(vec![0.25; rows], rows, 1),
                tensor(ks.clone(), rows, 1),
            ));
            for (i, &k) in ks.iter().enumerate() {
                let r = i * n..(i + 1) * n;
                let movable: Vec<usize> = r
                    .clone()
                    .filter(|&j| (g[j] > 0.0 && x[j] < 1.0) || (g[j] < 0.0 && x[j] > 0.0))
                    .collect();
                let mut order = movable.clone();
                order.sort_by(|&p, &q| g[q].abs().total_cmp(&g[p].abs()));
                let k = (k as usize).min(order.len());
                let moved: Vec<usize> = r.clone().filter(|&j| got[j] != x[j]).collect();
                let mut want: Vec<usize> = order[..k].to_vec();
                want.sort_unstable();
                assert_eq!(moved, want, "trial {trial} row {i}");
                for &j in &moved {
                    let share = 0.25 / k as f32;
                    assert!(((got[j] - x[j]) - share * g[j].signum()).abs() <= 1e-6);
                }
            }
        }
    }

    #[test]
    fn sparse_step_handles_a_zero_gradient_and_skips_coordinates_blocked_by_the_box() {
        let ball = L1Ball::around(tensor(vec![0.5; 4], 2, 2), 1.0, (0.0, 1.0));
        let got = host(ball.sparse_step(
            tensor(vec![0.5, 0.2, 1.0, 0.5], 2, 2),
            tensor(vec![0.0, 0.0, 5.0, 1.0], 2, 2),
            tensor(vec![1.0, 0.1], 2, 1),
            tensor(vec![1.0, 1.0], 2, 1),
        ));
        // Row 0: no step. Row 1: coordinate 0 has the largest gradient but sits at the top.
        assert_eq!(got[..3], [0.5, 0.2, 1.0]);
        assert!((got[3] - 0.6).abs() < 1e-7);
    }

    #[test]
    fn sparse_step_with_huge_or_infinite_gradients_moves_the_largest_and_stays_finite() {
        let ball = L1Ball::around(tensor(vec![0.5; 4], 1, 4), 1.0, (0.0, 1.0));
        let got = host(ball.sparse_step(
            tensor(vec![0.5; 4], 1, 4),
            tensor(vec![f32::INFINITY, 3e38, 1.0, -2.0], 1, 4),
            tensor(vec![0.25], 1, 1),
            tensor(vec![1.0], 1, 1),
        ));
        assert_eq!(got, vec![0.75, 0.5, 0.5, 0.5]);
    }

    #[test]
    fn sparse_step_shares_the_step_among_tied_coordinates() {
        let ball = L1Ball::around(tensor(vec![0.5; 3], 1, 3), 1.0, (0.0, 1.0));
        let got = host(ball.sparse_step(
            tensor(vec![0.5; 3], 1, 3),
            tensor(vec![2.0, -2.0, 1.0], 1, 3),
            tensor(vec![0.2], 1, 1),
            tensor(vec![1.0], 1, 1),
        ));
        assert_eq!(got, vec![0.6, 0.4, 0.5]);
    }
}
