//! The finite-difference input-gradient penalty against the exact value and the exact parameter
//! gradient on a linear least-squares model, where `∇ₓ ℓ = Wᵀ(Wx − t)` in closed form.

use bulwark_reg_core::input_gradient_penalty;
use burn::tensor::{Device, Tensor, TensorData};

const K: usize = 3;
const N: usize = 4;
const B: usize = 5;

fn rng(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// The exact penalty `mean_b ‖Wᵀ(W x_b − t_b)‖²` in f64.
fn exact(w: &[f64], x: &[f64], t: &[f64]) -> f64 {
    let mut total = 0.0;
    for b in 0..B {
        let r: Vec<f64> = (0..K)
            .map(|k| (0..N).map(|j| w[k * N + j] * x[b * N + j]).sum::<f64>() - t[b * K + k])
            .collect();
        let g: Vec<f64> = (0..N)
            .map(|j| (0..K).map(|k| w[k * N + j] * r[k]).sum())
            .collect();
        total += g.iter().map(|v| v * v).sum::<f64>();
    }
    total / B as f64
}

#[test]
fn the_finite_difference_penalty_matches_the_exact_one() {
    let dev = Device::flex();
    let mut s = 42u64;
    let w: Vec<f64> = (0..K * N).map(|_| rng(&mut s)).collect();
    let x: Vec<f64> = (0..B * N).map(|_| rng(&mut s) * 0.5 + 0.5).collect();
    let t: Vec<f64> = (0..B * K).map(|_| rng(&mut s)).collect();
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let wt = Tensor::<2>::from_data(TensorData::new(f32s(&w), [K, N]), &dev)
        .autodiff()
        .require_grad();
    let xt = Tensor::<2>::from_data(TensorData::new(f32s(&x), [B, N]), &dev);
    let tt = Tensor::<2>::from_data(TensorData::new(f32s(&t), [B, K]), &dev);
    let loss = |x: Tensor<2>| -> Tensor<1> {
        let r = x.matmul(wt.clone().transpose()) - tt.clone().autodiff();
        (r.square().sum_dim(1) * 0.5).reshape([B])
    };
    let penalty = input_gradient_penalty(loss, xt, 1e-2).unwrap();
    let value = f64::from(penalty.clone().inner().into_scalar::<f32>());
    let want = exact(&w, &x, &t);
    assert!(
        (value - want).abs() <= 0.02 * want,
        "penalty {value} vs exact {want}"
    );

    // Its gradient in W against central differences of the exact penalty.
    let grads = penalty.backward();
    let got: Vec<f32> = wt.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
    let step = 1e-6;
    let scale = got.iter().map(|g| f64::from(g.abs())).fold(0.0, f64::max);
    for i in 0..K * N {
        let (mut up, mut down) = (w.clone(), w.clone());
        up[i] += step;
        down[i] -= step;
        let numeric = (exact(&up, &x, &t) - exact(&down, &x, &t)) / (2.0 * step);
        assert!(
            (f64::from(got[i]) - numeric).abs() <= 0.05 * scale,
            "dP/dW[{i}]: {} vs {numeric}",
            got[i]
        );
    }
}

#[test]
fn zero_gradients_and_bad_steps() {
    let dev = Device::flex();
    let x = Tensor::<2>::ones([2, 3], &dev);
    // A loss that does not depend on the input has a zero penalty (and no NaN).
    let p = input_gradient_penalty(
        |x: Tensor<2>| x.sum_dim(1).reshape([2]) * 0.0,
        x.clone(),
        0.1,
    )
    .unwrap();
    assert_eq!(p.inner().into_scalar::<f32>(), 0.0);
    assert!(input_gradient_penalty(|x: Tensor<2>| x.sum_dim(1).reshape([2]), x, 0.0).is_err());
}
