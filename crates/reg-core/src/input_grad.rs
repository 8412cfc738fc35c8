//! The input-gradient penalty `mean_b ‖∇ₓ ℓ(x_b)‖²` (Drucker & LeCun 1992; Ross & Doshi-Velez
//! 2018), without double backpropagation.
//!
//! burn 0.22's autodiff is first-order: the gradient of `‖∇ₓ ℓ‖²` with respect to the parameters
//! would need a second backward through the first. The penalty is therefore approximated by a
//! finite difference along the normalized input gradient `d = ∇ₓ ℓ / ‖∇ₓ ℓ‖` (computed in a first
//! pass and treated as a constant):
//!
//! `‖∇ₓ ℓ(x)‖ = ∂ℓ/∂d (x) ≈ (ℓ(x + h·d) − ℓ(x)) / h`,
//!
//! so the penalty is `mean_b ((ℓ(x_b + h·d_b) − ℓ(x_b)) / h)²`, differentiable in the parameters
//! through two ordinary forward passes. The error is `(h/2)·dᵀ∇²ₓℓ·d` per sample (first order in
//! `h`); too small an `h` loses precision in f32 (the difference of two nearby losses). Cost: one
//! forward and backward for the direction plus two forwards whose graphs join the training loss.
//! A sample with a zero input gradient contributes 0.
//!
//! `loss` is called three times and must compute the same function each time: no dropout and no
//! update of BatchNorm running statistics (inference behaviour with tracked parameters), or the
//! difference measures noise rather than slope.

use burn::tensor::Tensor;

use crate::error::{RegError, invalid};

/// The finite-difference input-gradient penalty. `loss` maps a batch to its per-sample losses
/// `[B]` on the parameters' autodiff graph; `x` is the clean batch; `h` the step (e.g. 1e-2 for
/// inputs in [0, 1]). Returns a one-element tensor to add (times λ) to the training loss.
pub fn input_gradient_penalty<const D: usize>(
    loss: impl Fn(Tensor<D>) -> Tensor<1>,
    x: Tensor<D>,
    h: f64,
) -> Result<Tensor<1>, RegError> {
    if !(h.is_finite() && h > 0.0) {
        return Err(invalid("h", h, "must be finite and > 0"));
    }
    let x0 = x.inner();
    let dims = x0.dims();
    let b = dims[0];
    let n: usize = dims[1..].iter().product();
    let device = x0.device();
    // 1. The direction: the normalized input gradient, as a constant.
    let xa = x0.clone().autodiff().require_grad();
    let first = loss(xa.clone()).sum();
    let g = if first.is_tracked() {
        xa.grad(&first.backward())
    } else {
        None
    };
    let Some(g) = g else {
        return Ok(Tensor::zeros([1], &device));
    };
    let g = g.reshape([b, n]);
    let norm = g.clone().square().sum_dim(1).sqrt();
    let zero = norm.clone().equal_elem(0.0);
    let d = (g / norm.mask_fill(zero, 1.0)).reshape(dims);
    // 2. Two fresh forwards on the parameters' graph.
    let base = loss(x0.clone().autodiff());
    let moved = loss((x0 + d * h).autodiff());
    let slope = (moved - base) / h;
    Ok(slope.square().mean())
}
