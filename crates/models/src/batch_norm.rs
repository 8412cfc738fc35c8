//! BatchNorm in inference mode folded into one per-channel scale and shift.
//!
//! burn's `BatchNorm` in inference mode computes `(x - mean) / sqrt(var + eps) * gamma + beta`
//! as four passes over the activation (subtract, divide, multiply, add), and on an autodiff
//! device each of them is recorded with its own backward step. The same map is `x * scale +
//! shift` with `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`, two
//! per-channel vectors computed once per call: two passes forward and one (the product's)
//! backward. Attacks and robust evaluation run every BatchNorm of the CIFAR models in inference
//! mode, so this is where their element-wise work goes.

use burn::nn::BatchNorm;
use burn::prelude::*;

/// `bn.forward(x)`, with inference mode computed as one per-channel scale and shift.
///
/// The mode is chosen exactly as [`BatchNorm::forward`] chooses it: training behaviour (batch
/// statistics, running statistics updated) when `x` is on an autodiff device and the layer's
/// training flag is on, and then this calls `bn.forward(x)` itself; inference behaviour
/// (running statistics) otherwise, folded. The folded result equals burn's up to float
/// rounding, and so do the gradients that flow through it, to the input and to `gamma` and
/// `beta` alike; the rounding error is relative to `|x · scale|` rather than to the output, so
/// it grows where a channel's running mean is large against its standard deviation.
///
/// # Panics
///
/// Where `bn.forward` panics: when `x`'s second dimension is not the layer's channel count.
///
/// # Example
///
/// ```
/// use burn::nn::BatchNormConfig;
/// use burn::prelude::*;
/// use bulwark_models::batch_norm_folded;
///
/// let device = Device::flex();
/// let bn = BatchNormConfig::new(3).init(&device);
/// let x = Tensor::<4>::ones([2, 3, 4, 4], &device);
/// // Fresh running statistics (mean 0, variance 1) and gamma 1, beta 0: y = x / sqrt(1 + eps).
/// let y = batch_norm_folded(&bn, x.clone());
/// y.into_data()
///     .assert_approx_eq::<f32>(&bn.forward(x).into_data(), burn::tensor::Tolerance::default());
/// ```
pub fn batch_norm_folded<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if device.is_autodiff() && bn.training.is_enabled() {
        return bn.forward(x);
    }
    let [channels] = bn.gamma.shape().dims();
    if D < 2 || x.dims()[1] != channels {
        // burn's own shape check and message.
        return bn.forward(x);
    }
    let mean = bn.running_mean.value().to_device(&device);
    let var = bn.running_var.value().to_device(&device);
    let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
    let shift = bn.beta.val() - mean * scale.clone();
    let mut per_channel = [1; D];
    per_channel[1] = channels;
    x * scale.reshape(per_channel) + shift.reshape(per_channel)
}
