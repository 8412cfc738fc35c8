//! The Square attack's black-box contract and the evaluator's cascade.

use std::cell::Cell;

use crate::common::*;
use bulwark_attack_core::*;
use burn::tensor::Tensor;

const N: usize = 12;
const K: usize = 5;

fn data(seed: u64, b: usize) -> (Vec<f32>, Vec<i64>) {
    random_data(seed, b, N, K)
}

/// Labels the model's own clean predictions, so that every point starts correctly classified.
fn own_labels(model: &impl Fn(Tensor<2>) -> Tensor<2>, x: &[f32], b: usize) -> Vec<i64> {
    let z = host(model(matrix(x.to_vec(), b, N, &device())));
    argmax(&z, K).into_iter().map(|c| c as i64).collect()
}

#[test]
fn square_only_calls_the_forward_pass_and_fools_a_non_robust_model() {
    let dev = device();
    let linear = random_linear(&mut TestRng(21), N, K, &dev);
    let gradient_calls = Cell::new(0usize);
    let forward_calls = Cell::new(0usize);
    let model = |x: Tensor<2>| {
        if x.is_require_grad() || x.is_autodiff() {
            gradient_calls.set(gradient_calls.get() + 1);
        }
        forward_calls.set(forward_calls.get() + 1);
        linear(x)
    };
    let b = 16;
    let (x, _) = data(22, b);
    let y = own_labels(&linear, &x, b);
    for norm in [Norm::Linf, Norm::L2] {
        let eps = if norm == Norm::Linf { 0.3 } else { 1.0 };
        let attack = SquareConfig::new(ThreatModel::new(norm, eps))
            .with_queries(300)
            .init()
            .unwrap();
        let adv = attack
            .perturb(&model, matrix(x.clone(), b, N, &dev), ints(y.clone(), &dev))
            .unwrap();
        let pred = argmax(&host(linear(adv.clone())), K);
        let fooled = pred
            .iter()
            .zip(&y)
            .filter(|(p, l)| **p as i64 != **l)
            .count();
        // Same radius, white-box: PGD's success rate bounds what random search can reach here.
        let pgd = PgdConfig::new(ThreatModel::new(norm, eps))
            .with_steps(50)
            .with_options(AttackOptions::new().with_loss(LossKind::CwMargin))
            .init()
            .unwrap();
        let pgd_adv = pgd
            .perturb(
                &linear,
                matrix(x.clone(), b, N, &dev),
                ints(y.clone(), &dev),
            )
            .unwrap();
        let pgd_pred = argmax(&host(linear(pgd_adv)), K);
        let pgd_fooled = pgd_pred
            .iter()
            .zip(&y)
            .filter(|(p, l)| **p as i64 != **l)
            .count();
        assert!(
            pgd_fooled >= b / 2,
            "{norm}: the model should not be robust ({pgd_fooled})"
        );
        assert!(
            fooled * 10 >= pgd_fooled * 8,
            "{norm}: Square fooled {fooled} of {b}, PGD {pgd_fooled}"
        );
        let d = dists(&host(adv), &x, N, if norm == Norm::Linf { 0 } else { 2 });
        assert!(d.iter().all(|&d| d <= eps * (1.0 + 1e-6)));
    }
    assert!(
        forward_calls.get() > 2,
        "{} forward calls",
        forward_calls.get()
    );
    assert_eq!(gradient_calls.get(), 0, "Square asked for a gradient");
}

fn quick_stages(norm: Norm, steps: usize) -> Vec<Stage> {
    let mut stages = Preset::Standard.stages(norm, 1);
    for s in &mut stages {
        match &mut s.attack {
            AttackConfig::Apgd(a) => a.steps = steps,
            AttackConfig::Fab(a) => a.steps = steps,
            AttackConfig::Square(a) => a.queries = 20 * steps,
            _ => {}
        }
    }
    stages
}

#[test]
fn the_cascade_is_at_least_as_strong_as_each_stage_and_monotone_in_eps() {
    let dev = device();
    let mut rng = TestRng(30);
    let mlp = random_mlp(&mut rng, N, 16, K, &dev);
    let b = 24;
    let (x, _) = data(31, b);
    let y = own_labels(&mlp, &x, b);
    for norm in [Norm::Linf, Norm::L2, Norm::L1] {
        let scale = match norm {
            Norm::Linf => 1.0,
            Norm::L2 => 3.0,
            Norm::L1 => 8.0,
        };
        let eps: Vec<f64> = [0.0, 0.02, 0.05, 0.1].iter().map(|e| e * scale).collect();
        let stages = quick_stages(norm, 10);
        let eval = Evaluator::new(norm, &eps, stages.clone(), Bounds::new()).unwrap();
        let mut seen = Vec::new();
        let out = eval
            .run(
                &mlp,
                matrix(x.clone(), b, N, &dev),
                ints(y.clone(), &dev),
                &mut |p| seen.push(p.stage.to_string()),
            )
            .unwrap();
        assert!(out.clean_correct.iter().all(|&c| c));
        let robust: Vec<usize> = (0..eps.len())
            .map(|e| out.robust(e).iter().filter(|&&r| r).count())
            .collect();
        assert_eq!(
            robust[0], b,
            "{norm}: eps 0 must leave every correct point robust"
        );
        assert!(
            robust.windows(2).all(|w| w[1] <= w[0]),
            "{norm}: robust counts {robust:?} grow with eps"
        );
        assert!(robust[3] < b, "{norm}: nothing broken at the largest eps");
        // Every break is a real, in-ball misclassification.
        let p = match norm {
            Norm::Linf => 0,
            Norm::L2 => 2,
            Norm::L1 => 1,
        };
        for (e, &r) in eps.iter().enumerate() {
            let adv = &out.adversarial[e];
            let d = dists(adv, &x, N, p);
            let pred = argmax(&host(mlp(matrix(adv.clone(), b, N, &dev))), K);
            for i in 0..b {
                assert!(
                    d[i] <= r * (1.0 + 1e-6),
                    "{norm}: sample {i} outside eps {r}"
                );
                assert_eq!(out.broken[e][i].is_some(), pred[i] as i64 != y[i]);
                assert_eq!(pred[i], out.adversarial_predictions[e][i]);
            }
        }
        // The cascade is at least as strong as each of its stages run alone at the largest eps.
        for stage in &stages {
            let alone = Evaluator::new(norm, &eps[3..], vec![stage.clone()], Bounds::new())
                .unwrap()
                .run(
                    &mlp,
                    matrix(x.clone(), b, N, &dev),
                    ints(y.clone(), &dev),
                    &mut |_| {},
                )
                .unwrap();
            let r = alone.robust(0).iter().filter(|&&v| v).count();
            assert!(
                robust[3] <= r,
                "{norm}: cascade {} robust, {} alone {r}",
                robust[3],
                stage.name
            );
        }
        assert!(seen.iter().any(|s| s == "apgd-t"), "{norm}: {seen:?}");
    }
}

#[test]
fn evaluator_settings_are_checked() {
    let stages = Preset::Quick.stages(Norm::Linf, 0);
    assert!(Evaluator::new(Norm::Linf, &[], stages.clone(), Bounds::new()).is_err());
    assert!(Evaluator::new(Norm::Linf, &[-0.1], stages.clone(), Bounds::new()).is_err());
    assert!(Evaluator::new(Norm::Linf, &[f64::NAN], stages.clone(), Bounds::new()).is_err());
    assert!(Evaluator::new(Norm::Linf, &[0.1], vec![], Bounds::new()).is_err());
    // A stage in another norm is refused, naming it.
    let err = Evaluator::new(Norm::L2, &[0.1], stages.clone(), Bounds::new()).unwrap_err();
    assert!(err.to_string().contains("apgd-ce"), "{err}");
    // Square has no L1 version.
    let square = Preset::Standard.stages(Norm::Linf, 0).pop().unwrap();
    assert!(Evaluator::new(Norm::L1, &[1.0], vec![square], Bounds::new()).is_err());
    // Radii are sorted and deduplicated.
    let e = Evaluator::new(Norm::Linf, &[0.3, 0.1, 0.3], stages, Bounds::new()).unwrap();
    assert_eq!(e.eps(), &[0.1, 0.3]);
    let names = |norm| -> Vec<String> {
        Preset::Standard
            .stages(norm, 0)
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    // AutoAttack's composition in L-inf and L2; L1 has multi-targeted APGD in FAB-T's place.
    for norm in [Norm::Linf, Norm::L2] {
        assert_eq!(names(norm), ["apgd-ce", "apgd-t", "fab-t", "square"]);
    }
    assert_eq!(names(Norm::L1), ["apgd-ce", "apgd-t", "apgd-mt"]);
}

#[test]
fn dlr_needs_enough_classes() {
    let dev = device();
    let three = random_linear(&mut TestRng(40), N, 3, &dev);
    let (x, _) = data(41, 2);
    let y = vec![0i64, 1];
    // Untargeted DLR works with 3 classes; targeted DLR needs 4.
    let untargeted = ApgdConfig::new(ThreatModel::linf(0.1))
        .with_steps(2)
        .with_options(AttackOptions::new().with_loss(LossKind::Dlr))
        .init()
        .unwrap();
    assert!(
        untargeted
            .perturb(&three, matrix(x.clone(), 2, N, &dev), ints(y.clone(), &dev))
            .is_ok()
    );
    let targeted = ApgdConfig::new(ThreatModel::linf(0.1))
        .with_steps(2)
        .with_options(
            AttackOptions::new()
                .with_loss(LossKind::Dlr)
                .with_targeting(Targeting::Random),
        )
        .init()
        .unwrap();
    let err = targeted
        .perturb(&three, matrix(x, 2, N, &dev), ints(y, &dev))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttackError::TooFewClasses {
                needed: 4,
                num_classes: 3,
                ..
            }
        ),
        "{err}"
    );
}

/// L-inf Square sends only its window to the device, which writes it into the best points it
/// keeps there. On images of 3 channels (windows of several rows in every channel, samples
/// stopping at their first success during the run, so that the device's copy is rebuilt for the
/// samples left), every point the model is asked about must be a corner of one clean sample's
/// ball ∩ box (each pixel at `x0 ± eps` or at the box's edge), and every returned point (the
/// host's best point) must be one the model was asked about: a device candidate that differs
/// from the host's (a window written at the wrong place, a best point on the device left stale
/// after a taken proposal) breaks it. Both of those faults were checked to fail this test.
#[test]
fn linf_square_queries_corners_of_the_ball_and_returns_points_it_queried() {
    use std::cell::RefCell;
    let dev = device();
    let (b, c, side) = (8, 3, 10);
    let n = c * side * side;
    let cnn = BnCnn::new(c, side, 31, &dev);
    let mut rng = TestRng(32);
    let x: Vec<f32> = (0..b * n).map(|_| rng.uniform() as f32).collect();
    let clean_row = |row: &[f32]| (0..b).any(|i| row == &x[i * n..(i + 1) * n]);
    // Every row the model is asked about, and the batch size of every call that is not the
    // clean batch (read when the attack checks its inputs).
    let queried: RefCell<Vec<Vec<f32>>> = RefCell::new(Vec::new());
    let sizes: RefCell<Vec<usize>> = RefCell::new(Vec::new());
    let model = |t: Tensor<4>| {
        let rows = t.dims()[0];
        let flat = host(t.clone().reshape([rows, n]));
        let call: Vec<Vec<f32>> = flat.chunks(n).map(<[f32]>::to_vec).collect();
        if !call.iter().all(|r| clean_row(r)) {
            sizes.borrow_mut().push(rows);
            queried.borrow_mut().extend(call);
        }
        bulwark_attack_core::Classifier::logits(&cnn, t)
    };
    let image = |v: Vec<f32>| matrix(v, b, n, &dev).reshape([b, c, side, side]);
    let clean = host(bulwark_attack_core::Classifier::logits(
        &cnn,
        image(x.clone()),
    ));
    let y: Vec<i64> = argmax(&clean, 10).into_iter().map(|k| k as i64).collect();
    let eps = 0.06f32;
    let attack = SquareConfig::new(ThreatModel::new(Norm::Linf, f64::from(eps)))
        .with_queries(300)
        .init()
        .unwrap();
    let adv = attack
        .perturb(&model, image(x.clone()), ints(y.clone(), &dev))
        .unwrap();
    let adv = host(adv.reshape([b, n]));
    let corner_of = |row: &[f32], i: usize| {
        row.iter().zip(&x[i * n..(i + 1) * n]).all(|(&v, &x0)| {
            let at_radius = ((v - x0).abs() - eps).abs() <= 1e-6;
            let at_edge = (v == 0.0 && x0 - eps <= 0.0) || (v == 1.0 && x0 + eps >= 1.0);
            at_radius || at_edge
        })
    };
    let queried = queried.into_inner();
    for row in &queried {
        assert!(
            (0..b).any(|i| corner_of(row, i)),
            "a queried point is not a corner of any sample's ball"
        );
    }
    // The first call judges the starting points; a later call with fewer rows than the one
    // before it means a sample stopped after a proposal, during the run.
    let sizes = sizes.into_inner();
    assert!(
        sizes[1..].windows(2).any(|w| w[1] < w[0]),
        "no sample stopped during the run: {sizes:?}"
    );
    let fooled = argmax(&host(cnn.forward(image(adv.clone()))), 10)
        .iter()
        .zip(&y)
        .filter(|(p, l)| **p as i64 != **l)
        .count();
    assert!(
        fooled < b,
        "every sample was fooled: the test needs some that go on"
    );
    for (i, point) in adv.chunks(n).enumerate() {
        assert!(
            queried.iter().any(|q| q == point),
            "sample {i}: the returned point was never queried"
        );
    }
}
