//! The same forward + backward on every compiled backend: outputs and input gradients agree.

use std::path::Path;

use bulwark_models::{Model, torch};
use bulwark_trainer::BackendKind;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;

/// Fixed weights: small-cnn initialized on flex with seed 1, as PyTorch-layout bytes, so every
/// backend loads bit-identical parameters.
fn fixed_weights() -> Vec<u8> {
    torch::to_safetensors_bytes(&Model::init_seeded("small-cnn", &Device::flex(), 1).unwrap())
}

fn fixed_input() -> Vec<f32> {
    (0..4 * 28 * 28)
        .map(|i| ((i * 37 % 101) as f32) / 100.0)
        .collect()
}

/// Logits and the input gradient of `sum(logits * r)` with `r[b][k] = (k + b) % 3 - 1`, computed
/// through a `valid()` model (the attack configuration).
fn forward_backward(kind: BackendKind, weights: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let device = kind.device().unwrap();
    let model = torch::from_safetensors_bytes(
        Model::init("small-cnn", &device).unwrap(),
        weights,
        Path::new("fixed.safetensors"),
    )
    .unwrap()
    .valid();
    let ad = device.clone().autodiff();
    let x =
        Tensor::<4>::from_data(TensorData::new(fixed_input(), [4, 1, 28, 28]), &ad).require_grad();
    let logits = model.forward(x.clone());
    let r: Vec<f32> = (0..4)
        .flat_map(|b| (0..10).map(move |k| ((k + b) % 3) as f32 - 1.0))
        .collect();
    let r = Tensor::<2>::from_data(TensorData::new(r, [4, 10]), &device);
    let loss = (logits.clone() * r).sum();
    let grads = loss.backward();
    let g = x.grad(&grads).expect("input gradient");
    (
        logits
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap(),
        g.into_data().convert::<f32>().try_into_vec().unwrap(),
    )
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (scale {scale})"
        );
    }
}

#[test]
fn every_compiled_backend_agrees_on_forward_and_input_gradient() {
    let weights = fixed_weights();
    let compiled = BackendKind::compiled();
    assert!(!compiled.is_empty());
    let (ref_logits, ref_grad) = forward_backward(compiled[0], &weights);
    assert!(
        ref_grad.iter().any(|g| *g != 0.0),
        "gradient must not vanish"
    );
    for &kind in &compiled[1..] {
        let (logits, grad) = forward_backward(kind, &weights);
        assert_close(&format!("{kind} logits"), &ref_logits, &logits, 1e-4);
        assert_close(&format!("{kind} input gradient"), &ref_grad, &grad, 1e-4);
    }
    eprintln!(
        "compared backends: {}",
        compiled
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The seed MLP is linear, so its logits and input gradient have closed forms: each backend is
/// also checked against values computed here in f64, not only against another backend.
#[test]
fn every_compiled_backend_matches_the_closed_form_on_a_linear_model() {
    let dev = Device::flex();
    let bytes = torch::to_safetensors_bytes(&Model::init_seeded("seed-mlp", &dev, 3).unwrap());
    let m = torch::from_safetensors_bytes(
        Model::init("seed-mlp", &dev).unwrap(),
        &bytes,
        Path::new("seed-mlp.safetensors"),
    )
    .unwrap();
    let params = torch::state_dict(&m);
    let get = |k: &str| params.iter().find(|t| t.key == k).unwrap().data.clone();
    let (w1, b1, w2, b2) = (
        get("0.weight"),
        get("0.bias"),
        get("1.weight"),
        get("1.bias"),
    );
    let x: Vec<f32> = (0..10).map(|i| (i as f32 - 4.5) / 5.0).collect();
    // logits = W2 (W1 x + b1) + b2 ; d(sum(logits))/dx = W1^T W2^T 1.
    let h: Vec<f64> = (0..50)
        .map(|o| {
            (0..10)
                .map(|i| f64::from(w1[o * 10 + i]) * f64::from(x[i]))
                .sum::<f64>()
                + f64::from(b1[o])
        })
        .collect();
    let want_logits: Vec<f64> = (0..10)
        .map(|o| {
            (0..50)
                .map(|j| f64::from(w2[o * 50 + j]) * h[j])
                .sum::<f64>()
                + f64::from(b2[o])
        })
        .collect();
    let col_sums: Vec<f64> = (0..50)
        .map(|j| (0..10).map(|o| f64::from(w2[o * 50 + j])).sum())
        .collect();
    let want_grad: Vec<f64> = (0..10)
        .map(|i| {
            (0..50)
                .map(|j| f64::from(w1[j * 10 + i]) * col_sums[j])
                .sum()
        })
        .collect();
    for kind in BackendKind::compiled() {
        let device = kind.device().unwrap();
        let model = torch::from_safetensors_bytes(
            Model::init("seed-mlp", &device).unwrap(),
            &bytes,
            Path::new("seed-mlp.safetensors"),
        )
        .unwrap()
        .valid();
        let xa = Tensor::<4>::from_data(
            TensorData::new(x.clone(), [1, 1, 1, 10]),
            &device.clone().autodiff(),
        )
        .require_grad();
        let logits = model.forward(xa.clone());
        let g = xa.grad(&logits.clone().sum().backward()).unwrap();
        let logits: Vec<f32> = logits
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let g: Vec<f32> = g.into_data().convert::<f32>().try_into_vec().unwrap();
        for o in 0..10 {
            assert!(
                (f64::from(logits[o]) - want_logits[o]).abs() < 1e-4,
                "{kind} logit {o}"
            );
            assert!(
                (f64::from(g[o]) - want_grad[o]).abs() < 1e-4,
                "{kind} grad {o}"
            );
        }
    }
}

#[test]
fn a_backend_not_compiled_in_is_a_clear_error() {
    for kind in BackendKind::ALL {
        if !kind.is_compiled() {
            let e = kind.device().unwrap_err().to_string();
            assert!(e.contains(&format!("`{}` feature", kind.name())), "{e}");
        }
    }
    let e = "tpu".parse::<BackendKind>().unwrap_err().to_string();
    assert!(e.contains("unknown backend `tpu`"), "{e}");
}

/// A compiled-in backend either gives a working device or says clearly that it cannot run here:
/// it never panics. (Without a GPU adapter, the GPU runtimes panic at their first operation; in a
/// `--features wgpu` build on a machine without Vulkan this test takes the error branch.)
#[test]
fn a_compiled_backend_works_or_is_a_clear_error() {
    for kind in BackendKind::compiled() {
        match kind.device() {
            Ok(device) => {
                let one = burn::tensor::Tensor::<1>::ones([1], &device).into_scalar::<f32>();
                assert_eq!(one, 1.0, "{kind}");
            }
            Err(e) => {
                let e = e.to_string();
                let want = format!("backend `{}` is compiled in but cannot run", kind.name());
                assert!(e.contains(&want), "{e}");
            }
        }
    }
}
