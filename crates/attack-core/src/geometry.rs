//! Exact geometry of the threat models, computed per sample on flat `f32` rows on the host: the
//! random starts, and the final pass that makes the device searches' results exact (their device
//! forms are in `ball` and `l1_ball`).
//!
//! Projections are computed in f64 and rounded **toward the clean input**: every coordinate of the
//! f32 result is at most as far from the clean value as the exact f64 projection, so the f32
//! adversarial example is provably inside the eps-ball and the box (no "eps + 1 ulp" results).
//!
//! - **L-inf**: the ball ∩ box is a product of intervals; the projection clamps each coordinate to
//!   `[max(lo, x0 − eps), min(hi, x0 + eps)]`.
//! - **L2**: the exact Euclidean projection onto the L2 ball ∩ box. With `l_i ≤ 0 ≤ u_i` the room
//!   the box leaves around the clean input, the KKT conditions give `d_i = clamp(s·v_i, l_i, u_i)`
//!   for the largest `s ∈ (0, 1]` with `‖d‖₂ ≤ eps` (found by bisection in f64). This is the
//!   usual "shrink radially, then clamp" when the box is not active, and stays optimal when it is
//!   (the two-stage version then lands strictly inside the ball, short of the optimum).
//! - **L1**: the exact Euclidean projection onto the L1 ball ∩ box, as in Croce & Hein's L1-APGD
//!   (2021). With `a_i = |t_i − x0_i|`, `s_i = sign(t_i − x0_i)` and `c_i` the room the box leaves in
//!   direction `s_i`, the projection is `d_i = s_i · clamp(a_i − λ, 0, c_i)` with the smallest
//!   `λ ≥ 0` such that `Σ_i clamp(a_i − λ, 0, c_i) ≤ eps`. The sum is continuous and
//!   non-increasing in `λ`, so `λ` is found by bisection in f64 (64 halvings of `[0, max a_i]`,
//!   keeping the feasible end).

use crate::options::Norm;
use crate::rng::SplitMix64;

/// Rounds `v` to f32 toward `x0`: `|result − x0| ≤ |v − x0|`.
pub(crate) fn toward(v: f64, x0: f32) -> f32 {
    let f = v as f32;
    let x0d = f64::from(x0);
    if (f64::from(f) - x0d).abs() <= (v - x0d).abs() {
        f
    } else if f64::from(f) > x0d {
        f.next_down()
    } else {
        f.next_up()
    }
}

/// The per-coordinate interval of the L-inf ball ∩ box, rounded inward.
pub(crate) fn linf_bounds(x0: &[f32], eps: f64, lo: f64, hi: f64) -> (Vec<f32>, Vec<f32>) {
    let lower = x0
        .iter()
        .map(|&v| toward((f64::from(v) - eps).max(lo), v))
        .collect();
    let upper = x0
        .iter()
        .map(|&v| toward((f64::from(v) + eps).min(hi), v))
        .collect();
    (lower, upper)
}

/// Projects the target point `t` (one sample, f64) onto the `norm` ball of radius `eps` around
/// `x0`, intersected with the box `[lo, hi]`, and writes the f32 result to `out`.
pub(crate) fn project(
    norm: Norm,
    x0: &[f32],
    t: &[f64],
    eps: f64,
    lo: f64,
    hi: f64,
    out: &mut [f32],
) {
    let mut d: Vec<f64> = t.iter().zip(x0).map(|(&v, &c)| v - f64::from(c)).collect();
    match norm {
        Norm::Linf => d.iter_mut().for_each(|v| *v = v.clamp(-eps, eps)),
        Norm::L2 => project_l2_box(&mut d, x0, eps, lo, hi),
        Norm::L1 => project_l1_box(&mut d, x0, eps, lo, hi),
    }
    for ((o, &c), dv) in out.iter_mut().zip(x0).zip(d) {
        *o = toward((f64::from(c) + dv).clamp(lo, hi), c);
    }
}

/// In-place exact projection of the perturbation `d` onto `{‖d‖₂ ≤ eps, lo ≤ x0 + d ≤ hi}`.
pub(crate) fn project_l2_box(d: &mut [f64], x0: &[f32], eps: f64, lo: f64, hi: f64) {
    let clamped = |s: f64, dv: f64, c: f32| (s * dv).clamp(lo - f64::from(c), hi - f64::from(c));
    let norm = |s: f64| -> f64 {
        d.iter()
            .zip(x0)
            .map(|(&dv, &c)| clamped(s, dv, c).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let scale = if norm(1.0) <= eps {
        1.0
    } else {
        let (mut low, mut high) = (0.0, 1.0);
        for _ in 0..64 {
            let mid = 0.5 * (low + high);
            if norm(mid) > eps {
                high = mid
            } else {
                low = mid
            }
        }
        low
    };
    for (dv, &c) in d.iter_mut().zip(x0) {
        *dv = clamped(scale, *dv, c);
    }
}

/// In-place exact projection of the perturbation `d` onto `{‖d‖₁ ≤ eps, lo ≤ x0 + d ≤ hi}`.
pub(crate) fn project_l1_box(d: &mut [f64], x0: &[f32], eps: f64, lo: f64, hi: f64) {
    let room = |dv: f64, c: f32| {
        let c = f64::from(c);
        if dv >= 0.0 {
            (hi - c).max(0.0)
        } else {
            (c - lo).max(0.0)
        }
    };
    let caps: Vec<f64> = d.iter().zip(x0).map(|(&dv, &c)| room(dv, c)).collect();
    let mass = |lambda: f64| -> f64 {
        d.iter()
            .zip(&caps)
            .map(|(&dv, &cap)| (dv.abs() - lambda).clamp(0.0, cap))
            .sum()
    };
    let lambda = if mass(0.0) <= eps {
        0.0
    } else {
        let (mut low, mut high) = (0.0, d.iter().fold(0.0f64, |m, v| m.max(v.abs())));
        for _ in 0..64 {
            let mid = 0.5 * (low + high);
            if mass(mid) > eps {
                low = mid
            } else {
                high = mid
            }
        }
        high
    };
    for (dv, &cap) in d.iter_mut().zip(&caps) {
        *dv = dv.signum() * (dv.abs() - lambda).clamp(0.0, cap);
    }
}

/// A point drawn uniformly from the `norm` ball of radius `eps` in `n` dimensions (not a uniform
/// radius: the L2 radius is `eps · u^(1/n)`; the L1 point uses the exponential-spacings
/// construction of a uniform point in the cross-polytope).
pub(crate) fn uniform_in_ball(norm: Norm, n: usize, eps: f64, rng: &mut SplitMix64) -> Vec<f64> {
    match norm {
        Norm::Linf => (0..n).map(|_| eps * (2.0 * rng.uniform() - 1.0)).collect(),
        Norm::L2 => {
            let mut v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let len = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let radius = eps * rng.uniform().powf(1.0 / n as f64);
            let s = if len > 0.0 { radius / len } else { 0.0 };
            v.iter_mut().for_each(|x| *x *= s);
            v
        }
        Norm::L1 => {
            let e: Vec<f64> = (0..=n).map(|_| rng.exponential()).collect();
            let total: f64 = e.iter().sum();
            e[..n]
                .iter()
                .map(|&ei| {
                    let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                    sign * eps * ei / total
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toward_never_moves_away_from_the_centre() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..10_000 {
            let x0 = rng.uniform() as f32;
            let v = f64::from(x0) + (rng.uniform() - 0.5) * 1e-3;
            let f = toward(v, x0);
            assert!((f64::from(f) - f64::from(x0)).abs() <= (v - f64::from(x0)).abs());
            assert!((f64::from(f) - v).abs() <= 2.0 * f64::from(f32::EPSILON));
        }
    }

    #[test]
    fn l1_projection_is_feasible_and_optimal() {
        // Independent check of optimality: no small feasible move brings the point closer to the
        // target than the projection does.
        let mut rng = SplitMix64::new(11);
        for trial in 0..200 {
            let n = 1 + trial % 12;
            let x0: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
            let t: Vec<f64> = x0
                .iter()
                .map(|&c| f64::from(c) + 1.5 * (rng.uniform() - 0.5))
                .collect();
            let eps = 0.05 + rng.uniform();
            let mut d: Vec<f64> = t.iter().zip(&x0).map(|(v, &c)| v - f64::from(c)).collect();
            project_l1_box(&mut d, &x0, eps, 0.0, 1.0);
            let l1: f64 = d.iter().map(|v| v.abs()).sum();
            assert!(l1 <= eps * (1.0 + 1e-12), "l1 {l1} > {eps}");
            let p: Vec<f64> = d
                .iter()
                .zip(&x0)
                .map(|(dv, &c)| f64::from(c) + dv)
                .collect();
            assert!(p.iter().all(|&v| (-1e-12..=1.0 + 1e-12).contains(&v)));
            let dist = |q: &[f64]| q.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            let best = dist(&p);
            for _ in 0..200 {
                let q: Vec<f64> = p
                    .iter()
                    .map(|&v| v + 0.02 * (rng.uniform() - 0.5))
                    .collect();
                let feasible = q.iter().all(|&v| (0.0..=1.0).contains(&v))
                    && q.iter()
                        .zip(&x0)
                        .map(|(v, &c)| (v - f64::from(c)).abs())
                        .sum::<f64>()
                        <= eps;
                if feasible {
                    assert!(
                        dist(&q) >= best - 1e-12,
                        "a feasible point is closer than the projection"
                    );
                }
            }
        }
    }

    #[test]
    fn l2_projection_is_feasible_and_optimal() {
        let mut rng = SplitMix64::new(13);
        for trial in 0..200 {
            let n = 1 + trial % 12;
            let x0: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
            let t: Vec<f64> = x0
                .iter()
                .map(|&c| f64::from(c) + 1.5 * (rng.uniform() - 0.5))
                .collect();
            let eps = 0.05 + rng.uniform();
            let mut d: Vec<f64> = t.iter().zip(&x0).map(|(v, &c)| v - f64::from(c)).collect();
            project_l2_box(&mut d, &x0, eps, 0.0, 1.0);
            assert!(Norm::L2.of(d.iter().copied()) <= eps * (1.0 + 1e-12));
            let p: Vec<f64> = d
                .iter()
                .zip(&x0)
                .map(|(dv, &c)| f64::from(c) + dv)
                .collect();
            assert!(p.iter().all(|&v| (-1e-12..=1.0 + 1e-12).contains(&v)));
            let dist = |q: &[f64]| q.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            let best = dist(&p);
            for _ in 0..200 {
                let q: Vec<f64> = p
                    .iter()
                    .map(|&v| v + 0.02 * (rng.uniform() - 0.5))
                    .collect();
                let feasible = q.iter().all(|&v| (0.0..=1.0).contains(&v))
                    && Norm::L2.of(q.iter().zip(&x0).map(|(v, &c)| v - f64::from(c))) <= eps;
                if feasible {
                    assert!(
                        dist(&q) >= best - 1e-12,
                        "a feasible point is closer than the projection"
                    );
                }
            }
        }
    }

    #[test]
    fn uniform_l2_ball_radius_follows_the_volume_law() {
        // In n dimensions P(r <= eps/2) = 2^-n: for n = 2 a quarter of the points.
        let mut rng = SplitMix64::new(3);
        let inner = (0..20_000)
            .filter(|_| Norm::L2.of(uniform_in_ball(Norm::L2, 2, 1.0, &mut rng)) <= 0.5)
            .count();
        assert!((inner as f64 / 20_000.0 - 0.25).abs() < 0.015, "{inner}");
    }

    #[test]
    fn uniform_l1_ball_mass_follows_the_volume_law() {
        // The L1 ball of radius 1/2 holds 2^-n of the volume of the unit ball: n = 3 -> 1/8.
        let mut rng = SplitMix64::new(5);
        let inner = (0..40_000)
            .filter(|_| {
                let p = uniform_in_ball(Norm::L1, 3, 1.0, &mut rng);
                assert!(Norm::L1.of(p.iter().copied()) <= 1.0);
                Norm::L1.of(p) <= 0.5
            })
            .count();
        assert!((inner as f64 / 40_000.0 - 0.125).abs() < 0.01, "{inner}");
    }
}
