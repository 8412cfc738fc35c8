//! Interval bound propagation: the bounds contain every input's margins (random points in the
//! box, the box's corners, PGD's strongest points), are exact at eps 0, exact for one linear
//! layer, and hold through BatchNorm with negative scales; a verified point is never broken.

use bulwark_attack_core::rng::SplitMix64;
use bulwark_attack_core::{
    Attack, AttackOptions, Bounds, Interval, Network, PgdConfig, ThreatModel, verified,
};
use bulwark_models::Model;
use burn::module::Module;
use burn::nn::{BatchNormConfig, LinearConfig};
use burn::prelude::*;

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

/// `z_y − z_j` per sample and class.
fn margins(logits: Tensor<2>, y: &Tensor<1, Int>) -> Tensor<2> {
    let zy = logits.clone().gather(1, y.clone().unsqueeze_dim::<2>(1));
    zy - logits
}

/// MNIST-like inputs: mostly dark with bright strokes, from a seed.
fn images(n: usize, device: &Device) -> Tensor<4> {
    let mut rng = SplitMix64::new(5);
    let v: Vec<f32> = (0..n * 784)
        .map(|_| {
            if rng.uniform() < 0.2 {
                rng.uniform() as f32
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [n, 1, 28, 28]), device)
}

/// Every lower bound is at most the margin of `x_adv` (a point in the box), up to float slack.
fn assert_below(bound: &[f32], at: &[f32], what: &str) {
    for (i, (&b, &m)) in bound.iter().zip(at).enumerate() {
        assert!(
            b <= m + 1e-4 * (1.0 + m.abs()),
            "{what}: entry {i}: bound {b} > margin {m}"
        );
    }
}

#[test]
fn the_bounds_contain_every_point_of_the_box_for_every_supported_model() {
    let device = Device::flex();
    let n = 6;
    let x = images(n, &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new((0..n as i64).collect(), [n]), &device);
    for name in ["mlp", "small-cnn", "madry-cnn"] {
        let model = Model::init_seeded(name, &device, 3).unwrap();
        let eps = 0.02;
        let bound = host(
            model
                .margin_bounds(Interval::around(x.clone(), eps, Bounds::new()), y.clone())
                .unwrap(),
        );
        // At eps 0 the bounds are the margins themselves.
        let exact = host(
            model
                .margin_bounds(Interval::around(x.clone(), 0.0, Bounds::new()), y.clone())
                .unwrap(),
        );
        let clean = host(margins(model.forward(x.clone()), &y));
        for (a, b) in exact.iter().zip(&clean) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{name}: {a} vs {b}");
        }
        // Random points of the box, its corners (signs) and PGD on every wrong class's margin.
        let mut rng = SplitMix64::new(9);
        for trial in 0..20 {
            let corner = trial % 2 == 0;
            let d: Vec<f32> = (0..n * 784)
                .map(|_| {
                    let u = 2.0 * rng.uniform() - 1.0;
                    (if corner { u.signum() } else { u } * eps) as f32
                })
                .collect();
            let d = Tensor::<4>::from_data(TensorData::new(d, [n, 1, 28, 28]), &device);
            let p = (x.clone() + d).clamp(0.0, 1.0);
            assert_below(&bound, &host(margins(model.forward(p), &y)), name);
        }
        let pgd = PgdConfig::new(ThreatModel::linf(eps))
            .with_steps(20)
            .with_options(AttackOptions::new().with_early_stop(false))
            .init()
            .unwrap();
        let adv = pgd
            .perturb(&model.classifier(), x.clone(), y.clone())
            .unwrap();
        assert_below(&bound, &host(margins(model.forward(adv), &y)), name);
        // The bounds are not vacuous at a small radius and grow with it.
        let wider = host(
            model
                .margin_bounds(Interval::around(x.clone(), 0.1, Bounds::new()), y.clone())
                .unwrap(),
        );
        assert!(
            wider.iter().zip(&bound).all(|(w, b)| w <= &(b + 1e-5)),
            "{name}"
        );
        assert!(wider.iter().zip(&bound).any(|(w, b)| w < b), "{name}");
    }
    let seed = Model::init_seeded("seed-net", &device, 0).unwrap();
    let x = Tensor::<4>::zeros([1, 1, 28, 28], &device);
    let y = Tensor::<1, Int>::zeros([1], &device);
    assert!(
        seed.margin_bounds(Interval::around(x, 0.1, Bounds::new()), y)
            .is_none()
    );
}

/// The residual networks (BatchNorm in inference mode, input normalization, residual sums,
/// average pooling): exact at eps 0, containing random points of the box and PGD's points.
#[test]
fn the_bounds_of_residual_networks_contain_their_box() {
    let device = Device::flex();
    let wrn = bulwark_models::WideResNetConfig::new()
        .with_depth(10)
        .with_widen_factor(1)
        .init(&device);
    let models = [
        Model::init_seeded("preact-resnet18", &device, 2).unwrap(),
        Model::WideResNet(wrn),
    ];
    let mut rng = SplitMix64::new(3);
    let n = 2;
    let v: Vec<f32> = (0..n * 3 * 32 * 32).map(|_| rng.uniform() as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(v, [n, 3, 32, 32]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 7], [n]), &device);
    let eps = 1e-3;
    for model in models {
        let name = model.architecture();
        let at = |e: f64| {
            host(
                model
                    .margin_bounds(Interval::around(x.clone(), e, Bounds::new()), y.clone())
                    .unwrap(),
            )
        };
        let clean = host(margins(model.valid().forward(x.clone()), &y));
        for (a, b) in at(0.0).iter().zip(&clean) {
            assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{name}: {a} vs {b}");
        }
        let bound = at(eps);
        for _ in 0..4 {
            let d: Vec<f32> = (0..n * 3 * 32 * 32)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * eps) as f32)
                .collect();
            let d = Tensor::<4>::from_data(TensorData::new(d, [n, 3, 32, 32]), &device);
            let p = (x.clone() + d).clamp(0.0, 1.0);
            assert_below(&bound, &host(margins(model.valid().forward(p), &y)), &name);
        }
        let adv = PgdConfig::new(ThreatModel::linf(eps))
            .with_steps(5)
            .init()
            .unwrap()
            .perturb(&model.classifier(), x.clone(), y.clone())
            .unwrap();
        assert_below(
            &bound,
            &host(margins(model.valid().forward(adv), &y)),
            &name,
        );
    }
}

#[test]
fn one_linear_layer_is_bounded_exactly_and_batch_norm_keeps_its_signs() {
    let device = Device::flex();
    // A 2-input layer: the bound of each output is reached at a corner of the box.
    let layer = LinearConfig::new(2, 3).init(&device);
    let x = Tensor::<2>::from_data(TensorData::new(vec![0.3f32, 0.6], [1, 2]), &device);
    let eps = 0.1;
    let h = Interval::around(x.clone(), eps, Bounds::new()).linear(&layer);
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for (a, b) in [(-1.0f32, -1.0f32), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)] {
        let p = Tensor::<2>::from_data(
            TensorData::new(vec![0.3 + a * eps as f32, 0.6 + b * eps as f32], [1, 2]),
            &device,
        );
        for (j, v) in host(layer.forward(p)).into_iter().enumerate() {
            lo[j] = lo[j].min(v);
            hi[j] = hi[j].max(v);
        }
    }
    for (j, (l, u)) in host(h.lo).into_iter().zip(host(h.hi)).enumerate() {
        assert!(
            (l - lo[j]).abs() < 1e-6 && (u - hi[j]).abs() < 1e-6,
            "output {j}"
        );
    }

    // BatchNorm with a negative scale on one channel: the bounds swap sides, not the order.
    let mut bn = BatchNormConfig::new(2).init(&device);
    bn.gamma = bn
        .gamma
        .map(|_| Tensor::from_data(TensorData::new(vec![-2.0f32, 0.5], [2]), &device));
    let x = Tensor::<4>::full([1, 2, 2, 2], 0.5, &device);
    let b = Interval::around(x.clone(), 0.1, Bounds::new()).batch_norm(&bn);
    let at = |v: f32| bn.forward(Tensor::<4>::full([1, 2, 2, 2], v, &device));
    let (low_in, high_in) = (at(0.4), at(0.6));
    let expect_lo = low_in.clone().min_pair(high_in.clone());
    let expect_hi = low_in.max_pair(high_in);
    b.lo.to_data().assert_approx_eq::<f32>(
        &expect_lo.to_data(),
        burn::tensor::Tolerance::absolute(1e-5),
    );
    b.hi.to_data().assert_approx_eq::<f32>(
        &expect_hi.to_data(),
        burn::tensor::Tolerance::absolute(1e-5),
    );
}

#[test]
fn no_attack_breaks_a_verified_point() {
    let device = Device::flex();
    let n = 32;
    let x = images(n, &device);
    let model = Model::init_seeded("small-cnn", &device, 1).unwrap();
    // The labels the model gives: at a small radius an untrained network verifies many of them.
    let y = model.forward(x.clone()).argmax(1).reshape([n]);
    // The largest of these radii at which part, but not all, of the batch is verified.
    let verified_at = |eps: f64| -> Vec<bool> {
        verified(
            model
                .margin_bounds(Interval::around(x.clone(), eps, Bounds::new()), y.clone())
                .unwrap(),
            y.clone(),
        )
        .into_data()
        .convert::<bool>()
        .try_into_vec()
        .unwrap()
    };
    let (eps, ok) = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5]
        .into_iter()
        .map(|eps| (eps, verified_at(eps)))
        .find(|(_, ok)| {
            let count = ok.iter().filter(|&&v| v).count();
            // Some but not all (a count near a quarter of the batch sits where the last bits of
            // the convolution kernels in use can move it).
            (4..n).contains(&count)
        })
        .expect("some radius verifies part of the batch");
    let pgd = PgdConfig::new(ThreatModel::linf(eps))
        .with_steps(50)
        .with_options(
            AttackOptions::new()
                .with_random_start(true)
                .with_restarts(3),
        )
        .init()
        .unwrap();
    let adv = pgd.perturb(&model.classifier(), x, y.clone()).unwrap();
    let held = host(model.forward(adv).argmax(1).float())
        .into_iter()
        .zip(host(y.float().unsqueeze_dim::<2>(1)))
        .map(|(p, l)| p == l)
        .collect::<Vec<_>>();
    for i in 0..n {
        assert!(!ok[i] || held[i], "verified point {i} broken");
    }
    // Far too large a radius verifies nothing.
    let none = verified(
        model
            .margin_bounds(
                Interval::around(images(n, &device), 0.5, Bounds::new()),
                Tensor::zeros([n], &device),
            )
            .unwrap(),
        Tensor::zeros([n], &device),
    );
    assert_eq!(none.int().sum().into_scalar::<i64>(), 0);
}
