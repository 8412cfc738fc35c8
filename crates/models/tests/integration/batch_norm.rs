//! `batch_norm_folded` against burn's own `BatchNorm::forward`: outputs and gradients in
//! inference mode, and the training path left to burn.

use bulwark_models::batch_norm_folded;
use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};

/// A BatchNorm over `c` channels with statistics and affine parameters far from their fresh
/// values (mean 0, variance 1, gamma 1, beta 0), so that every term of the map matters.
fn layer(c: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).with_epsilon(1e-3).init(device);
    let vec = |lo: f64, hi: f64| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), device);
    bn.gamma = Param::from_tensor(vec(-2.0, 2.0));
    bn.beta = Param::from_tensor(vec(-1.0, 1.0));
    bn.running_mean = RunningState::new(vec(-3.0, 3.0));
    bn.running_var = RunningState::new(vec(0.01, 4.0));
    bn
}

fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>) {
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::relative(1e-5).set_absolute(1e-5));
}

#[test]
fn folded_inference_equals_burns_batch_norm_on_a_plain_device() {
    let device = Device::flex();
    let bn = layer(5, &device);
    let x = Tensor::<4>::random([3, 5, 7, 6], Distribution::Normal(0.5, 2.0), &device);
    let folded = batch_norm_folded(&bn, x.clone());
    let reference = bn.forward(x.clone());
    assert_eq!(folded.dims(), [3, 5, 7, 6]);
    close(folded, reference);

    // Two and three dimensions (after a linear layer; a sequence), as BatchNorm takes them.
    let x2 = Tensor::<2>::random([4, 5], Distribution::Normal(0.0, 1.0), &device);
    close(batch_norm_folded(&bn, x2.clone()), bn.forward(x2));
    let x3 = Tensor::<3>::random([2, 5, 9], Distribution::Normal(0.0, 1.0), &device);
    close(batch_norm_folded(&bn, x3.clone()), bn.forward(x3));
}

/// An attack's case: the model's parameters plain (`valid()`), the input on the autodiff device
/// and requiring its gradient.
#[test]
fn folded_inference_gives_burns_input_gradient() {
    let device = Device::flex();
    // Inference mode, as `valid()` leaves it (a fresh layer's flag is on, and with an autodiff
    // input both functions would take burn's training path).
    let bn = layer(4, &device).valid();
    assert!(!bn.training.is_enabled());
    let x = Tensor::<4>::random([2, 4, 5, 5], Distribution::Normal(0.0, 1.5), &device);
    let weights = Tensor::<4>::random([2, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device);
    let grad_of = |folded: bool| {
        let x = x.clone().autodiff().require_grad();
        let y = if folded {
            batch_norm_folded(&bn, x.clone())
        } else {
            bn.forward(x.clone())
        };
        // A loss whose gradient differs per element, so the backward's per-channel scaling
        // is checked element by element.
        let loss = (burn::tensor::activation::relu(y.clone()) * weights.clone().autodiff()).sum();
        let grads = loss.backward();
        (y.inner(), x.grad(&grads).expect("the input's gradient"))
    };
    let (y_folded, g_folded) = grad_of(true);
    let (y_burn, g_burn) = grad_of(false);
    close(y_folded, y_burn);
    close(g_folded, g_burn);
}

/// Fine-tuning with the layer frozen in inference mode but its affine parameters trained: the
/// gradients to `gamma` and `beta` through the folded scale and shift equal burn's.
#[test]
fn folded_inference_gives_burns_parameter_gradients() {
    let device = Device::flex().autodiff();
    let mut bn = layer(3, &device);
    bn.training = Param::from_bool(false);
    let x = Tensor::<4>::random([4, 3, 3, 2], Distribution::Normal(0.3, 1.0), &device);
    let weights = Tensor::<4>::random([4, 3, 3, 2], Distribution::Normal(0.0, 1.0), &device);
    let grads_of = |folded: bool| {
        let y = if folded {
            batch_norm_folded(&bn, x.clone())
        } else {
            bn.forward(x.clone())
        };
        let grads = (y * weights.clone()).sum().backward();
        (
            bn.gamma.val().grad(&grads).expect("gamma's gradient"),
            bn.beta.val().grad(&grads).expect("beta's gradient"),
        )
    };
    let (gamma_folded, beta_folded) = grads_of(true);
    let (gamma_burn, beta_burn) = grads_of(false);
    close(gamma_folded, gamma_burn);
    close(beta_folded, beta_burn);
}

/// Training mode (autodiff device, training flag on) is burn's own path: batch statistics, and
/// the running statistics move towards them.
#[test]
fn training_mode_is_left_to_burn() {
    let device = Device::flex().autodiff();
    let bn = layer(3, &device);
    let before = bn.running_mean.value_sync().into_data();
    let x = Tensor::<4>::random([8, 3, 4, 4], Distribution::Normal(5.0, 1.0), &device);
    let y = batch_norm_folded(&bn, x);
    // Batch statistics: each channel of the output has mean beta (gamma * 0 + beta).
    let channel_means = y
        .swap_dims(0, 1)
        .flatten::<2>(1, 3)
        .mean_dim(1)
        .flatten::<1>(0, 1);
    close(channel_means.inner(), bn.beta.val().inner());
    let after = bn.running_mean.value_sync().into_data();
    assert_ne!(
        before, after,
        "the running mean was not updated in training mode"
    );
}
