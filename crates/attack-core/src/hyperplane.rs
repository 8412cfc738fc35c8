//! The smallest step onto a hyperplane inside the box, batched on the device: FAB's projection.
//!
//! For every row: minimize `‖d‖` (L-inf or L2) subject to `w·d + b = 0` and `lo ≤ x + d ≤ hi`.
//! With `s = −sign(b)` the direction that brings `w·d + b` toward 0, the optimality conditions give
//! `d_i(τ) = clamp(s·τ·u_i, lo − x_i, hi − x_i)` with `u_i = sign(w_i)` (L-inf: every free coordinate
//! moves by the same amount) or `u_i = w_i` (L2: along the normal), for the smallest `τ ≥ 0` whose
//! gain `G(τ) = |Σ_i w_i·d_i(τ)|` reaches `|b|`. When the whole box cannot reach the hyperplane the
//! step goes as far as the box allows (`τ = τ_max`, past which every coordinate is clamped).
//!
//! `G` is piecewise linear, increasing and concave (a coordinate stops contributing slope once
//! clamped), so Newton's method started at `τ = 0` approaches the root from below without
//! overshooting, and is exact once it is on the root's linear piece. It runs a fixed number of
//! iterations (no data-dependent stopping, so no read back to the host): a row that has not
//! converged stops short of the hyperplane, which only makes FAB's step shorter. Every result is
//! inside the box by construction.

use burn::tensor::Tensor;

use crate::options::Norm;

/// Newton iterations: one per linear piece crossed; rows of real models converge in a few.
const NEWTON_STEPS: usize = 10;

/// The step `d` (`[B, N]`) from `x` onto `{z : w·(z − x) + b = 0}` inside `[lo, hi]`, smallest in
/// `norm` (L-inf or L2), for every row; `b` is `[B]`.
pub(crate) fn step_onto(
    norm: Norm,
    x: &Tensor<2>,
    w: &Tensor<2>,
    b: &Tensor<1>,
    (lo, hi): (f64, f64),
) -> Tensor<2> {
    let [rows, n] = x.dims();
    let s = b.clone().sign().neg().reshape([rows, 1]);
    let unit = match norm {
        Norm::L2 => w.clone(),
        _ => w.clone().sign(),
    };
    let dir = unit * s;
    let low = x.clone().neg() + lo;
    let high = x.clone().neg() + hi;
    // Room in the direction of motion, and the τ at which each coordinate reaches it (0 for a
    // coordinate that does not move).
    let room = low
        .clone()
        .neg()
        .mask_where(dir.clone().greater_elem(0.0), high.clone());
    let speed = dir.clone().abs();
    let reach = (room / speed.clone().clamp_min(f32::MIN_POSITIVE))
        .mask_fill(speed.lower_equal_elem(0.0), 0.0);
    let tau_max = reach.clone().max_dim(1);
    // Each coordinate moves `dir_i·min(τ, reach_i)`, so with `weight = |w ⊙ dir|` (|w| for L-inf,
    // w² for L2) the gain is `G(τ) = Σ weight·min(τ, reach)` and its slope `Σ weight·[reach > τ]`.
    let weight = (w.clone() * dir.clone()).abs();
    let target = b.clone().abs().reshape([rows, 1]);
    let mut tau = tau_max.zeros_like();
    for _ in 0..NEWTON_STEPS {
        let wide = tau.clone().expand([rows, n]);
        let gain = (weight.clone() * reach.clone().min_pair(wide.clone())).sum_dim(1);
        let slope = weight
            .clone()
            .mask_fill(reach.clone().lower_equal(wide), 0.0)
            .sum_dim(1);
        let short = (target.clone() - gain).clamp_min(0.0);
        // No slope left: the box is exhausted, go as far as it allows.
        let flat = slope.clone().lower_equal_elem(0.0);
        let next = tau.clone() + short / slope.clamp_min(f32::MIN_POSITIVE);
        tau = next
            .mask_where(flat, tau_max.clone())
            .min_pair(tau_max.clone());
    }
    (dir * tau.expand([rows, n])).max_pair(low).min_pair(high)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    fn row(v: &[f32], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
    }

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    /// Minimal L-inf step onto `w·d + b = 0` in a box, by brute force over the breakpoints: for a
    /// candidate τ every free coordinate moves τ in the helpful direction.
    fn linf_reference(x: &[f32], w: &[f32], b: f32, lo: f64, hi: f64) -> f64 {
        let s = -f64::from(b.signum());
        let gain = |tau: f64| -> f64 {
            x.iter()
                .zip(w)
                .map(|(&xi, &wi)| {
                    let d = (s * f64::from(wi.signum()) * tau)
                        .clamp(lo - f64::from(xi), hi - f64::from(xi));
                    f64::from(wi) * d
                })
                .sum::<f64>()
                .abs()
        };
        let (mut a, mut z) = (0.0, 10.0);
        for _ in 0..200 {
            let m = 0.5 * (a + z);
            if gain(m) >= f64::from(b.abs()) {
                z = m
            } else {
                a = m
            }
        }
        z
    }

    #[test]
    fn linf_step_without_the_box_is_b_over_the_l1_norm_of_w() {
        // Unconstrained, the closest point of the hyperplane in L-inf is d = −b·sign(w)/‖w‖₁.
        let device = Device::flex();
        let (x, w, b) = ([0.5f32, 0.5, 0.5], [2.0f32, -1.0, 0.5], 0.7f32);
        let d = host(step_onto(
            Norm::Linf,
            &row(&x, &device),
            &row(&w, &device),
            &Tensor::from_data(TensorData::new(vec![b], [1]), &device),
            (-10.0, 10.0),
        ));
        let t = 0.7 / 3.5;
        for (di, wi) in d.iter().zip(w) {
            assert!(
                (f64::from(*di) + t * f64::from(wi.signum())).abs() < 1e-6,
                "{d:?}"
            );
        }
    }

    #[test]
    fn l2_step_without_the_box_is_along_the_normal() {
        let device = Device::flex();
        let (x, w, b) = ([0.2f32, 0.4], [3.0f32, 4.0], -2.5f32);
        let d = host(step_onto(
            Norm::L2,
            &row(&x, &device),
            &row(&w, &device),
            &Tensor::from_data(TensorData::new(vec![b], [1]), &device),
            (-10.0, 10.0),
        ));
        // d = −b·w/‖w‖² = 2.5·(3, 4)/25.
        assert!(
            (d[0] - 0.3).abs() < 1e-6 && (d[1] - 0.4).abs() < 1e-6,
            "{d:?}"
        );
    }

    #[test]
    fn linf_step_with_an_active_box_matches_the_reference_and_stays_inside() {
        let device = Device::flex();
        let mut rng = crate::rng::SplitMix64::new(17);
        for trial in 0..200 {
            let n = 2 + trial % 9;
            let x: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
            let w: Vec<f32> = (0..n).map(|_| (rng.uniform() - 0.5) as f32 * 4.0).collect();
            let b = (rng.uniform() - 0.5) as f32;
            let d = host(step_onto(
                Norm::Linf,
                &row(&x, &device),
                &row(&w, &device),
                &Tensor::from_data(TensorData::new(vec![b], [1]), &device),
                (0.0, 1.0),
            ));
            for (xi, di) in x.iter().zip(&d) {
                let v = f64::from(*xi) + f64::from(*di);
                assert!((-1e-6..=1.0 + 1e-6).contains(&v), "trial {trial}: {v}");
            }
            let want = linf_reference(&x, &w, b, 0.0, 1.0);
            let got = d.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            let reachable = want < 9.9;
            if reachable {
                assert!(
                    (got - want).abs() <= 1e-5 + 1e-4 * want,
                    "trial {trial}: {got} vs {want}"
                );
                let residual: f64 = w
                    .iter()
                    .zip(&d)
                    .map(|(wi, di)| f64::from(*wi) * f64::from(*di))
                    .sum::<f64>()
                    + f64::from(b);
                assert!(residual.abs() < 1e-4, "trial {trial}: residual {residual}");
            }
        }
    }
}
