//! Constraints hold after they are applied, touch only their selection, and leave the model
//! trainable.

use bulwark_models::Model;
use bulwark_reg_core::*;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

/// (path, shape, values) of every float parameter.
struct Read(Vec<String>, Vec<bool>, Vec<(String, Vec<usize>, Vec<f64>)>);

impl ModuleVisitor for Read {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.0.push(name.into());
        self.1.push(container.starts_with("Enum"));
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.0.pop();
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let path = self
            .0
            .iter()
            .zip(&self.1)
            .filter(|(_, e)| !**e)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let t = p.val().inner();
        let dims = t.dims().to_vec();
        let v = t
            .try_into_vec_as::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        self.2.push((path, dims, v));
    }
}

fn read<M: Module>(m: &M) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let mut r = Read(Vec::new(), Vec::new(), Vec::new());
    m.visit(&mut r);
    r.2
}

/// Output-unit L2 norms of a weight (Linear `[in, out]`: columns; conv: filters).
fn unit_norms(shape: &[usize], w: &[f64], linear: bool) -> Vec<f64> {
    if linear {
        let (i, o) = (shape[0], shape[1]);
        (0..o)
            .map(|c| (0..i).map(|r| w[r * o + c].powi(2)).sum::<f64>().sqrt())
            .collect()
    } else {
        w.chunks(w.len() / shape[0])
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect()
    }
}

#[test]
fn each_constraint_holds_after_it_is_applied() {
    let dev = Device::flex().autodiff();
    for name in ["seed-mlp", "small-cnn"] {
        let model = Model::init_seeded(name, &dev, 11).unwrap();
        let before = read(&model);
        let linear = |p: &str| p.starts_with("fc");

        let max = 0.5;
        let mut binding = 0;
        let after = read(
            &Constraint::new(ConstraintKind::MaxNorm { max })
                .apply(model.clone(), 0.1)
                .unwrap(),
        );
        for ((path, shape, w), (_, _, w0)) in after.iter().zip(&before) {
            if path.ends_with("bias") {
                assert_eq!(w, w0, "{name}: {path} changed");
                continue;
            }
            let (n, n0) = (
                unit_norms(shape, w, linear(path)),
                unit_norms(shape, w0, linear(path)),
            );
            for (a, b) in n.iter().zip(&n0) {
                binding += usize::from(*b > max);
                assert!(*a <= max * (1.0 + 1e-5), "{name} {path}: norm {a} > {max}");
                if *b <= max {
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b),
                        "{name} {path}: a unit within the bound changed"
                    );
                }
            }
        }

        assert!(binding > 0, "{name}: no unit was above the bound");

        let after = read(
            &Constraint::new(ConstraintKind::UnitNorm)
                .apply(model.clone(), 0.1)
                .unwrap(),
        );
        for (path, shape, w) in after.iter().filter(|(p, _, _)| p.ends_with("weight")) {
            for a in unit_norms(shape, w, linear(path)) {
                assert!((a - 1.0).abs() < 1e-5, "{name} {path}: unit norm {a}");
            }
        }

        let after = read(
            &Constraint::new(ConstraintKind::NonNeg)
                .apply(model.clone(), 0.1)
                .unwrap(),
        );
        for ((path, _, w), (_, _, w0)) in after.iter().zip(&before) {
            for (a, b) in w.iter().zip(w0) {
                let want = if path.ends_with("weight") {
                    b.max(0.0)
                } else {
                    *b
                };
                assert_eq!(*a, want, "{name} {path}");
            }
        }

        // Decoupled weight decay scales the selection by (1 − lr·wd), here the conv/linear
        // weights but not the biases.
        let after = read(
            &Constraint::new(ConstraintKind::DecoupledDecay { weight_decay: 0.2 })
                .apply(model.clone(), 0.5)
                .unwrap(),
        );
        for ((path, _, w), (_, _, w0)) in after.iter().zip(&before) {
            let f = if path.ends_with("weight") { 0.9 } else { 1.0 };
            for (a, b) in w.iter().zip(w0) {
                assert!(
                    (a - f * b).abs() <= 1e-7 * (1.0 + b.abs()),
                    "{name} {path}: {b} -> {a}"
                );
            }
        }

        // Proximal L1: threshold lr·λ; exact zeros below it, a shift toward 0 above it.
        let (lr, lambda) = (0.5, 0.1);
        let t = lr * lambda;
        let prox = Constraint::new(ConstraintKind::ProxL1 { lambda })
            .on(ParamSelection::paths(["fc1.weight"]));
        let sparse_model = prox.apply(model.clone(), lr).unwrap();
        let after = read(&sparse_model);
        let mut expected_zeros = 0;
        for ((path, _, w), (_, _, w0)) in after.iter().zip(&before) {
            for (a, b) in w.iter().zip(w0) {
                if path == "fc1.weight" {
                    if b.abs() <= t {
                        assert_eq!(*a, 0.0, "{name}: {b} not thresholded to 0");
                        expected_zeros += 1;
                    } else {
                        assert!(
                            (a - (b - b.signum() * t)).abs() < 1e-6,
                            "{name}: {b} -> {a}"
                        );
                    }
                } else {
                    assert_eq!(a, b, "{name}: {path} outside the selection changed");
                }
            }
        }
        assert!(
            expected_zeros > 0,
            "{name}: nothing fell below the threshold"
        );
        let report = sparsity(&sparse_model, &ParamSelection::weights()).unwrap();
        let fc1 = report.iter().find(|r| r.0 == "fc1.weight").unwrap();
        assert_eq!(fc1.1, expected_zeros);

        // The constrained model still trains: its weights are tracked leaves with gradients.
        let loss = Penalty::new(PenaltyKind::L2, 1.0)
            .loss(&sparse_model)
            .unwrap();
        let grads = loss.backward();
        struct HasGrad<'g>(&'g burn::tensor::Gradients, usize);
        impl ModuleVisitor for HasGrad<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.1 += usize::from(p.val().grad(self.0).is_some());
            }
        }
        let mut h = HasGrad(&grads, 0);
        sparse_model.visit(&mut h);
        let weights = ParamSelection::weights()
            .resolve(&sparse_model)
            .unwrap()
            .len();
        assert_eq!(
            h.1, weights,
            "{name}: constrained weights lost their gradient tracking"
        );
        // Parameter ids (which optimizer state and gradients are keyed by) are kept.
        struct Ids(Vec<burn::module::ParamId>);
        impl ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0.push(p.id);
            }
        }
        let (mut a, mut b) = (Ids(Vec::new()), Ids(Vec::new()));
        model.visit(&mut a);
        sparse_model.visit(&mut b);
        assert_eq!(a.0, b.0, "{name}: parameter ids changed");
    }
}

#[test]
fn bad_constraint_settings_are_refused() {
    let m = Model::init("seed-mlp", &Device::flex()).unwrap();
    assert!(
        Constraint::new(ConstraintKind::MaxNorm { max: 0.0 })
            .apply(m.clone(), 0.1)
            .is_err()
    );
    assert!(
        Constraint::new(ConstraintKind::ProxL1 { lambda: f64::NAN })
            .apply(m.clone(), 0.1)
            .is_err()
    );
    assert!(
        Constraint::new(ConstraintKind::NonNeg)
            .apply(m.clone(), -1.0)
            .is_err()
    );
    let err = Constraint::new(ConstraintKind::NonNeg)
        .on(ParamSelection::paths(["conv1.weight"]))
        .apply(m, 0.1)
        .unwrap_err();
    assert!(err.to_string().contains("fc1.weight"), "{err}");
}

/// σ_max of a row-major matrix by many power steps from a fixed start (the test's own estimate).
fn sigma_max(a: &[f64], rows: usize, cols: usize) -> f64 {
    let mut u = vec![1.0; rows];
    let mut s = 0.0;
    for _ in 0..2000 {
        let mut v: Vec<f64> = (0..cols)
            .map(|j| (0..rows).map(|i| a[i * cols + j] * u[i]).sum())
            .collect();
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= nv);
        u = (0..rows)
            .map(|i| (0..cols).map(|j| a[i * cols + j] * v[j]).sum())
            .collect();
        s = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        u.iter_mut().for_each(|x| *x /= s);
    }
    s
}

#[test]
fn the_spectral_bound_holds_after_repeated_steps() {
    let dev = Device::flex().autodiff();
    let mut model = Model::init_seeded("seed-mlp", &dev, 5).unwrap();
    let before = read(&model);
    let mut bound = SpectralBound::new(0.5);
    for _ in 0..30 {
        model = bound.apply(model).unwrap();
    }
    let after = read(&model);
    for ((path, shape, w), (_, _, w0)) in after.iter().zip(&before) {
        if path.ends_with("bias") {
            assert_eq!(w, w0);
            continue;
        }
        // seed-mlp's weights are Linear: [in, out]; σ is the same for a matrix and its transpose.
        let (s, s0) = (
            sigma_max(w, shape[0], shape[1]),
            sigma_max(w0, shape[0], shape[1]),
        );
        assert!(s0 > 0.5, "{path}: σ {s0} was already within the bound");
        assert!(s <= 0.5 * (1.0 + 1e-3), "{path}: σ {s} > 0.5");
        assert!(s >= 0.5 * (1.0 - 1e-2), "{path}: σ {s}, rescaled too far");
        let estimate = bound.sigmas()[path.as_str()];
        assert!(
            (estimate - s).abs() < 1e-2,
            "{path}: estimate {estimate} vs {s}"
        );
    }
    assert!(SpectralBound::new(-1.0).apply(model.clone()).is_err());

    // A zero weight must not switch the bound off for later steps, and a vector kept for a path
    // of another shape (another model) must not be reused.
    let zero = Constraint::new(ConstraintKind::ProxL1 { lambda: 1e6 })
        .apply(model.clone(), 1.0)
        .unwrap();
    let zeros = sparsity(&zero, &ParamSelection::weights()).unwrap();
    assert!(zeros.iter().all(|(_, z, n)| z == n), "{zeros:?}");
    let mut fresh = SpectralBound::new(0.5);
    let _ = fresh.apply(zero).unwrap();
    assert!(fresh.sigmas().values().all(|&s| s == 0.0));
    let mut again = Model::init_seeded("seed-mlp", &dev, 5).unwrap();
    for _ in 0..30 {
        again = fresh.apply(again).unwrap();
    }
    for (path, shape, w) in read(&again)
        .iter()
        .filter(|(p, _, _)| p.ends_with("weight"))
    {
        let s = sigma_max(w, shape[0], shape[1]);
        assert!(s <= 0.5 * (1.0 + 1e-3), "{path}: σ {s} after a zero weight");
    }
    let cnn = Model::init_seeded("small-cnn", &dev, 5).unwrap();
    let _ = fresh.apply(cnn).unwrap();
}
