//! Reference values worked out by hand. For a two-class linear model `z = (0, w·x + c)` and label
//! 0, every objective increases along `w`, so the best adversarial point in a ball maximizes the
//! linear function `w·δ` over `{‖δ‖ ≤ eps} ∩ box`:
//! - L-inf: `δ_i = clamp(eps·sign(w_i))` to the box (a vertex of the box-clipped cube);
//! - L2 (box not active): `δ = eps·w/‖w‖₂`; with an active box, `δ_i = clamp(λ·w_i)` with λ such
//!   that `‖δ‖₂ = eps` (KKT), solved here by bisection on λ;
//! - L1 (box not active): all of eps on the coordinate with the largest `|w_i|`.
//!
//! DeepFool and Carlini-Wagner on the same model must find the distance to the hyperplane
//! `w·x + c = 0`: `|w·x0 + c| / ‖w‖_dual`.

use crate::common::*;
use bulwark_attack_core::*;

const W: [f32; 6] = [0.8, -0.3, 0.05, -1.2, 0.4, 0.0];

fn model(c: f32) -> impl Fn(burn::tensor::Tensor<2>) -> burn::tensor::Tensor<2> {
    let mut w = vec![0f32; 6];
    w.extend_from_slice(&W);
    linear(w, vec![0.0, c], 6, &device())
}

/// Runs `attack` on one sample `x0` with label 0 and returns the adversarial sample.
fn run(attack: impl Attack, x0: &[f32], c: f32) -> Vec<f32> {
    let dev = device();
    let adv = attack
        .perturb(
            &model(c),
            matrix(x0.to_vec(), 1, 6, &dev),
            ints(vec![0], &dev),
        )
        .unwrap();
    host(adv)
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "coordinate {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

const MID: [f32; 6] = [0.5; 6];

/// For the model with bias `c`: the logit gap `|w·MID + c|` at `MID`, `‖w‖₂` and `‖w‖₁`. The
/// distance from `MID` to the boundary is the gap over the dual norm of the threat model.
fn mid_gap(c: f32) -> (f64, f64, f64) {
    let f = (f64::from(c)
        + MID
            .iter()
            .zip(W)
            .map(|(&x, w)| f64::from(x * w))
            .sum::<f64>())
    .abs();
    let l2w = W.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>().sqrt();
    let l1w: f64 = W.iter().map(|&w| f64::from(w).abs()).sum();
    (f, l2w, l1w)
}
const EDGE: [f32; 6] = [0.95, 0.1, 0.5, 0.02, 0.97, 0.5];

fn linf_optimum(x0: &[f32], eps: f64) -> Vec<f64> {
    x0.iter()
        .zip(W)
        .map(|(&x, w)| {
            (f64::from(x) + eps * f64::from(w.signum()) * f64::from(u8::from(w != 0.0)))
                .clamp(0.0, 1.0)
        })
        .collect()
}

fn l2_optimum(x0: &[f32], eps: f64) -> Vec<f64> {
    let delta = |lambda: f64| -> Vec<f64> {
        x0.iter()
            .zip(W)
            .map(|(&x, w)| (lambda * f64::from(w)).clamp(-f64::from(x), 1.0 - f64::from(x)))
            .collect()
    };
    let norm = |d: &[f64]| d.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (mut lo, mut hi) = (0.0, 1e3);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if norm(&delta(mid)) > eps {
            hi = mid
        } else {
            lo = mid
        }
    }
    x0.iter()
        .zip(delta(lo))
        .map(|(&x, d)| f64::from(x) + d)
        .collect()
}

#[test]
fn fgsm_linf_reaches_the_vertex() {
    for x0 in [MID, EDGE] {
        let got = run(
            FgsmConfig::new(ThreatModel::linf(0.1)).init().unwrap(),
            &x0,
            0.0,
        );
        assert_close(&got, &linf_optimum(&x0, 0.1), 1e-6);
    }
}

#[test]
fn pgd_linf_reaches_the_vertex_from_a_random_start() {
    for x0 in [MID, EDGE] {
        let got = run(
            PgdConfig::new(ThreatModel::linf(0.1))
                .with_steps(20)
                .init()
                .unwrap(),
            &x0,
            0.0,
        );
        // w_5 = 0: coordinate 5 has no gradient and keeps its random start, anywhere in the ball.
        assert_close(&got[..5], &linf_optimum(&x0, 0.1)[..5], 1e-6);
        assert!((got[5] - x0[5]).abs() <= 0.1);
    }
}

#[test]
fn fgsm_l2_moves_eps_along_w() {
    let got = run(
        FgsmConfig::new(ThreatModel::l2(0.3)).init().unwrap(),
        &MID,
        0.0,
    );
    assert_close(&got, &l2_optimum(&MID, 0.3), 1e-6);
}

#[test]
fn pgd_l2_reaches_the_kkt_point_with_and_without_an_active_box() {
    for x0 in [MID, EDGE] {
        let attack = PgdConfig::new(ThreatModel::l2(0.3))
            .with_steps(100)
            .with_step_size(Some(5.0))
            .init()
            .unwrap();
        let got = run(attack, &x0, 0.0);
        assert_close(&got, &l2_optimum(&x0, 0.3), 1e-5);
    }
}

#[test]
fn l1_attacks_put_eps_on_the_steepest_coordinate() {
    let mut want: Vec<f64> = MID.iter().map(|&v| f64::from(v)).collect();
    want[3] -= 0.4; // |w_3| = 1.2 is the largest weight and it is negative
    let fgsm = FgsmConfig::new(ThreatModel::l1(0.4))
        .with_l1_sparsity(0.0)
        .init()
        .unwrap();
    assert_close(&run(fgsm, &MID, 0.0), &want, 1e-6);
    let pgd = PgdConfig::new(ThreatModel::l1(0.4))
        .with_l1_sparsity(0.0)
        .with_steps(60)
        .init()
        .unwrap();
    assert_close(&run(pgd, &MID, 0.0), &want, 1e-5);
}

/// `w·(x − EDGE)`: what every objective of the linear model gains by moving from `EDGE` to `x`.
fn edge_gain(x: &[f32]) -> f64 {
    x.iter()
        .zip(&EDGE)
        .zip(W)
        .map(|((&a, &b), w)| (f64::from(a) - f64::from(b)) * f64::from(w))
        .sum()
}

/// The greedy (fractional knapsack) L1 optimum of `edge_gain` at eps 0.3 with the box [0, 1].
const EDGE_L1_OPTIMUM: f64 = 0.02 * 1.2 + 0.05 * 0.8 + 0.03 * 0.4 + 0.1 * 0.3 + 0.1 * 0.05;

#[test]
fn l1_pgd_with_an_active_box_is_near_the_greedy_optimum() {
    // Greedy fill by |w| (a fractional knapsack): coordinate 3 (|w| = 1.2) can move down only
    // 0.02, coordinate 0 (0.8) up 0.05, coordinate 4 (0.4) up 0.03, coordinate 1 (0.3) down 0.1,
    // and coordinate 2 (0.05) takes the remaining 0.1 of the budget.
    let eps = 0.3;
    let (gain, optimum) = (edge_gain, EDGE_L1_OPTIMUM);
    let step = 0.01;
    let pgd = PgdConfig::new(ThreatModel::l1(eps))
        .with_l1_sparsity(0.0)
        .with_steps(200)
        .with_step_size(Some(step))
        .init()
        .unwrap();
    let got = gain(&run(pgd, &EDGE, 0.0));
    assert!(
        got <= optimum + 1e-6,
        "gain {got} above the optimum {optimum}"
    );
    assert!(
        got >= optimum - step * 1.2,
        "gain {got} far below the optimum {optimum}"
    );
}

#[test]
fn deepfool_crosses_the_hyperplane_at_the_predicted_distance() {
    // f(x0) = w·x0 + c < 0 (class 0 predicted); the boundary is |f| / ‖w‖_dual away.
    let c = -0.4f32;
    let (f, l2w, l1w) = mid_gap(c);
    for (norm, dist, p) in [(Norm::L2, f / l2w, 2), (Norm::Linf, f / l1w, 0)] {
        let attack = DeepFoolConfig::new().with_norm(norm).init().unwrap();
        let got = run(attack, &MID, c);
        let d = dists(&got, &MID, 6, p)[0];
        // One linearization step is exact for a linear model: (distance + 1e-4)·(1 + overshoot).
        let expected = (dist + 1e-4) * 1.02;
        assert!(
            (d - expected).abs() < 1e-5,
            "{norm}: distance {d}, expected {expected}"
        );
        assert_eq!(
            got[5], MID[5],
            "{norm}: a coordinate without gradient moved"
        );
        let z = host(model(c)(matrix(got.clone(), 1, 6, &device())));
        assert!(z[1] > z[0], "{norm}: DeepFool did not cross the boundary");
    }
}

#[test]
fn deepfool_picks_each_samples_closest_boundary_among_several_classes() {
    // z = (0, w1·x + c1, w2·x + c2), label 0. Sample 0 is closer to class 1's boundary, sample 1
    // to class 2's; in one batch each must cross its own nearest boundary at its distance.
    let dev = device();
    let w1 = [1.0f32, 0.0, 0.0, 0.0];
    let w2 = [0.0f32, 0.0, 2.0, -1.0];
    let mut w = vec![0f32; 4];
    w.extend_from_slice(&w1);
    w.extend_from_slice(&w2);
    let model = linear(w, vec![0.0, -0.6, -0.9], 4, &dev);
    let x0 = [0.5f32, 0.5, 0.5, 0.5, 0.1, 0.5, 0.5, 0.5];
    let dot = |w: &[f32], x: &[f32]| -> f64 {
        w.iter()
            .zip(x)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    for (norm, p) in [(Norm::L2, 2), (Norm::Linf, 0)] {
        let dual = |w: &[f32]| -> f64 {
            match norm {
                Norm::L2 => w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt(),
                _ => w.iter().map(|&v| f64::from(v).abs()).sum(),
            }
        };
        let attack = DeepFoolConfig::new().with_norm(norm).init().unwrap();
        let got = host(
            attack
                .perturb(
                    &model,
                    matrix(x0.to_vec(), 2, 4, &dev),
                    ints(vec![0, 0], &dev),
                )
                .unwrap(),
        );
        let d = dists(&got, &x0, 4, p);
        let z = host(model(matrix(got.clone(), 2, 4, &dev)));
        for (i, want_class) in [(0usize, 1usize), (1, 2)] {
            let x = &x0[i * 4..(i + 1) * 4];
            let to1 = (dot(&w1, x) - 0.6).abs() / dual(&w1);
            let to2 = (dot(&w2, x) - 0.9).abs() / dual(&w2);
            let (nearest, other) = if want_class == 1 {
                (to1, to2)
            } else {
                (to2, to1)
            };
            assert!(
                nearest < other,
                "the test's sample {i} is not set up as meant"
            );
            let expected = (nearest + 1e-4) * 1.02;
            assert!(
                (d[i] - expected).abs() < 1e-5,
                "{norm} sample {i}: distance {d:?}, expected {expected}"
            );
            let row = &z[i * 3..(i + 1) * 3];
            assert!(
                row[want_class] > row[0],
                "{norm} sample {i}: did not cross into class {want_class}: {row:?}"
            );
        }
    }
}

#[test]
fn deepfool_handles_tiny_gradients_and_a_one_class_model() {
    // The hyperplane of the test above with w and c scaled by 1e-20: the squares of w underflow
    // in f32, but the boundary is just as far, and DeepFool must still cross it there.
    let dev = device();
    let scale = 1e-20f32;
    let c = -0.4f32;
    let mut w = vec![0f32; 6];
    w.extend(W.iter().map(|&v| v * scale));
    let tiny = linear(w, vec![0.0, c * scale], 6, &dev);
    let (f, l2w, _) = mid_gap(c);
    let attack = DeepFoolConfig::new().init().unwrap();
    let got = host(
        attack
            .perturb(&tiny, matrix(MID.to_vec(), 1, 6, &dev), ints(vec![0], &dev))
            .unwrap(),
    );
    let d = dists(&got, &MID, 6, 2)[0];
    let expected = (f / l2w + 1e-4) * 1.02;
    assert!(
        (d - expected).abs() < 1e-4,
        "distance {d}, expected {expected}"
    );
    // One class: no boundary to cross, the clean input comes back.
    let one = linear(vec![1.0; 6], vec![0.0], 6, &dev);
    let got = host(
        attack
            .perturb(&one, matrix(MID.to_vec(), 1, 6, &dev), ints(vec![0], &dev))
            .unwrap(),
    );
    assert_eq!(got, MID.to_vec());
}

#[test]
fn carlini_wagner_finds_the_minimal_l2_distance() {
    let c = -0.4f32;
    let (f, l2w, _) = mid_gap(c);
    let attack = CwL2Config::new()
        .with_steps(300)
        .with_binary_search_steps(8)
        .with_initial_const(0.1)
        .init()
        .unwrap();
    let got = run(attack, &MID, c);
    let d = dists(&got, &MID, 6, 2)[0];
    let z = host(model(c)(matrix(got.clone(), 1, 6, &device())));
    assert!(z[1] > z[0], "CW result is not adversarial");
    assert!(
        d >= f / l2w - 1e-6 && d <= 1.03 * f / l2w,
        "CW distance {d}, minimal {}",
        f / l2w
    );
}

#[test]
fn mi_fgsm_without_momentum_is_bim_and_momentum_changes_the_path() {
    // With decay 0 the accumulated direction is g/‖g‖₁, whose sign is sign(g): BIM exactly.
    let dev = device();
    let mut rng = TestRng(21);
    let mlp = random_mlp(&mut rng, 6, 16, 4, &dev);
    let x: Vec<f32> = (0..4 * 6).map(|_| rng.uniform() as f32).collect();
    let y = ints(vec![0, 1, 2, 3], &dev);
    let threat = ThreatModel::linf(0.2);
    let run = |attack: AnyAttack| {
        host(
            attack
                .perturb(&mlp, matrix(x.clone(), 4, 6, &dev), y.clone())
                .unwrap(),
        )
    };
    let bim = run(AttackConfig::Bim(
        BimConfig::new(threat)
            .with_steps(Some(8))
            .with_step_size(Some(0.04)),
    )
    .init()
    .unwrap());
    let mi0 = run(AttackConfig::MiFgsm(
        MiFgsmConfig::new(threat)
            .with_steps(8)
            .with_step_size(Some(0.04))
            .with_decay(0.0),
    )
    .init()
    .unwrap());
    let mi1 = run(AttackConfig::MiFgsm(
        MiFgsmConfig::new(threat)
            .with_steps(8)
            .with_step_size(Some(0.04))
            .with_decay(1.0),
    )
    .init()
    .unwrap());
    assert_eq!(mi0, bim);
    assert_ne!(mi1, bim, "momentum had no effect on a nonlinear model");
}

#[test]
fn apgd_reaches_the_linf_vertex_and_the_l2_kkt_point() {
    // APGD returns the first iterate that fools the model, else its best point: with c = -3 the
    // model cannot be fooled within these radii, so the best point must be the optimum. The CW
    // margin is used because it is linear here: the cross-entropy of a confidently classified
    // point is too flat in f32 to rank nearby iterates.
    let options = AttackOptions::new()
        .with_random_start(true)
        .with_loss(LossKind::CwMargin);
    for x0 in [MID, EDGE] {
        let linf = ApgdConfig::new(ThreatModel::linf(0.1))
            .with_steps(30)
            .with_options(options);
        let got = run(linf.init().unwrap(), &x0, -3.0);
        assert_close(&got[..5], &linf_optimum(&x0, 0.1)[..5], 1e-6);
        let l2 = ApgdConfig::new(ThreatModel::l2(0.3))
            .with_steps(100)
            .with_options(options);
        let got = run(l2.init().unwrap(), &x0, -3.0);
        // The objective ranks points only through w·δ, flat to second order around the optimum:
        // compare the gain, not the coordinates.
        let gain = |p: &[f64]| -> f64 {
            p.iter()
                .zip(&x0)
                .zip(W)
                .map(|((&a, &b), w)| (a - f64::from(b)) * f64::from(w))
                .sum()
        };
        let best = gain(&l2_optimum(&x0, 0.3));
        let reached = gain(&got.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        assert!(
            reached >= best * (1.0 - 1e-4) && reached <= best * (1.0 + 1e-9),
            "gain {reached} vs optimum {best}"
        );
    }
}

#[test]
fn l1_apgd_with_an_active_box_is_near_the_greedy_optimum() {
    // The same fractional knapsack as for PGD above; L1-APGD adapts its sparsity and step size on
    // its own (no step size to choose), with and without the large-radius warm start.
    let eps = 0.3;
    let (gain, optimum) = (edge_gain, EDGE_L1_OPTIMUM);
    for large_reps in [false, true] {
        let apgd = ApgdConfig::new(ThreatModel::l1(eps))
            .with_large_reps(large_reps)
            .with_options(
                AttackOptions::new()
                    .with_random_start(true)
                    .with_loss(LossKind::CwMargin),
            )
            .init()
            .unwrap();
        let got = gain(&run(apgd, &EDGE, -3.0));
        assert!(
            got <= optimum + 1e-6,
            "large_reps {large_reps}: gain {got} above the optimum {optimum}"
        );
        assert!(
            got >= 0.97 * optimum,
            "large_reps {large_reps}: gain {got} far below the optimum {optimum}"
        );
    }
}

#[test]
fn fab_t_converges_to_the_minimal_distance_to_the_boundary() {
    // The same hyperplane as for DeepFool: FAB's first step lands η = 1.05 times its distance
    // away, and the steps back toward the clean input then close in on the distance itself.
    let c = -0.4f32;
    let (f, l2w, l1w) = mid_gap(c);
    for (norm, dist, p) in [(Norm::L2, f / l2w, 2), (Norm::Linf, f / l1w, 0)] {
        // Two classes: the random target is the other one.
        let fab = |eps: f64| {
            FabConfig::new(ThreatModel::new(norm, eps))
                .with_options(AttackOptions::new().with_targeting(Targeting::Random))
                .init()
                .unwrap()
        };
        let got = run(fab(2.0 * dist), &MID, c);
        let d = dists(&got, &MID, 6, p)[0];
        assert!(
            d >= dist * (1.0 - 1e-5) && d <= 1.01 * dist,
            "{norm}: distance {d}, minimal {dist}"
        );
        let z = host(model(c)(matrix(got.clone(), 1, 6, &device())));
        assert!(z[1] > z[0], "{norm}: FAB's result is not adversarial");
        assert_eq!(
            got[5], MID[5],
            "{norm}: a coordinate without gradient moved"
        );
        // Nothing misclassified lies within a smaller radius: the clean input comes back.
        assert_eq!(run(fab(0.97 * dist), &MID, c), MID.to_vec(), "{norm}");
    }
}

#[test]
fn fab_t_with_an_active_box_finds_the_boxed_minimal_linf_distance() {
    // Near the box's faces the closest boundary point in L-inf moves every free coordinate by the
    // same t, except those the box stops: t solves Σ_i |w_i|·min(t, room_i) = |f| (room in the
    // direction that lowers f), found here by bisection.
    // Two coordinates sit close to the face the gradient pushes toward.
    const NEAR: [f32; 6] = [0.95, 0.5, 0.5, 0.02, 0.5, 0.5];
    let c = -1.1f32;
    let f = (f64::from(c)
        + NEAR
            .iter()
            .zip(W)
            .map(|(&x, w)| f64::from(x * w))
            .sum::<f64>())
    .abs();
    let room = |x: f32, w: f32| {
        if w > 0.0 {
            1.0 - f64::from(x)
        } else {
            f64::from(x)
        }
    };
    let gain = |t: f64| -> f64 {
        NEAR.iter()
            .zip(W)
            .map(|(&x, w)| f64::from(w.abs()) * t.min(room(x, w)))
            .sum()
    };
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gain(mid) >= f { hi = mid } else { lo = mid }
    }
    assert!(gain(1.0) > f, "the test needs a reachable boundary");
    assert!(hi > 0.05, "the test needs the box to stop some coordinates");
    let fab = FabConfig::new(ThreatModel::linf(0.9))
        .with_options(AttackOptions::new().with_targeting(Targeting::Random))
        .init()
        .unwrap();
    let got = run(fab, &NEAR, c);
    let d = dists(&got, &NEAR, 6, 0)[0];
    assert!(
        d >= hi * (1.0 - 1e-5) && d <= 1.01 * hi,
        "distance {d}, minimal {hi}"
    );
    assert!(got.iter().all(|v| (0.0..=1.0).contains(v)));
}
