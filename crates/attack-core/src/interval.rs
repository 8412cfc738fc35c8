//! Interval bound propagation (Gowal et al. 2018, "On the Effectiveness of Interval Bound
//! Propagation for Training Verifiably Robust Models"): elementwise lower and upper bounds of
//! every activation over all inputs in an L-inf box, pushed through the layers.
//!
//! Affine layers (linear, convolution, BatchNorm in inference mode, input normalization) map the box's center `c` and
//! radius `r` to `W·c + b` and `|W|·r`; monotone layers (ReLU, max and average pooling,
//! flattening) map each bound on its own, and a residual connection adds two intervals. The last linear layer is folded into the margins `z_y − z_j` it produces
//! ([`Interval::margins`]), which is tighter than bounding the logits first. A sample is
//! **verified** at eps when every margin's lower bound is positive: no input in the box, and so
//! no attack, can change its class.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor};

use crate::Bounds;

/// Elementwise bounds `lo ≤ x ≤ hi` of a batch of activations. Two intervals add (`a + b`, a
/// residual connection) bound by bound.
///
/// ```
/// use bulwark_attack_core::{Bounds, Interval};
/// use burn::nn::LinearConfig;
/// use burn::tensor::{Device, Int, Tensor, TensorData};
///
/// let device = Device::flex();
/// let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.5], [1, 2]), &device);
/// let layer = LinearConfig::new(2, 3).init(&device);
/// // Every input within 0.1 of x (and in [0, 1]), through the layer and a ReLU.
/// let h = Interval::around(x.clone(), 0.1, Bounds::new()).linear(&layer).relu();
/// let out = burn::tensor::activation::relu(layer.forward(x));
/// assert!((h.lo.clone() - out.clone()).max().into_scalar::<f32>() <= 1e-6);
/// assert!((out - h.hi).max().into_scalar::<f32>() <= 1e-6);
/// ```
#[derive(Debug, Clone)]
pub struct Interval<const D: usize> {
    /// Lower bounds.
    pub lo: Tensor<D>,
    /// Upper bounds.
    pub hi: Tensor<D>,
}

impl<const D: usize> Interval<D> {
    /// The interval `[lo, hi]` (elementwise `lo ≤ hi` is the caller's to keep).
    pub fn new(lo: Tensor<D>, hi: Tensor<D>) -> Self {
        Self { lo, hi }
    }

    /// The L-inf ball of radius `eps` around `x`, intersected with the valid box.
    pub fn around(x: Tensor<D>, eps: f64, bounds: Bounds) -> Self {
        Self {
            lo: (x.clone() - eps).clamp(bounds.lo, bounds.hi),
            hi: (x + eps).clamp(bounds.lo, bounds.hi),
        }
    }

    /// `(hi + lo) / 2`.
    pub fn center(&self) -> Tensor<D> {
        (self.hi.clone() + self.lo.clone()) / 2.0
    }

    /// `(hi − lo) / 2`.
    pub fn radius(&self) -> Tensor<D> {
        (self.hi.clone() - self.lo.clone()) / 2.0
    }

    /// ReLU, monotone: each bound on its own.
    pub fn relu(self) -> Self {
        self.map_monotone(burn::tensor::activation::relu)
    }

    /// Any non-decreasing elementwise or pooling map `f`, applied to each bound.
    pub fn map_monotone<const E: usize>(self, f: impl Fn(Tensor<D>) -> Tensor<E>) -> Interval<E> {
        Interval {
            lo: f(self.lo),
            hi: f(self.hi),
        }
    }

    /// Flattens dimensions `start..=end`, as [`Tensor::flatten`].
    pub fn flatten<const E: usize>(self, start: usize, end: usize) -> Interval<E> {
        self.map_monotone(|t| t.flatten::<E>(start, end))
    }

    /// The affine map with center map `affine` (weights and bias) and radius map `abs_linear`
    /// (the absolute weights, no bias).
    fn affine<const E: usize>(
        self,
        affine: impl Fn(Tensor<D>) -> Tensor<E>,
        abs_linear: impl Fn(Tensor<D>) -> Tensor<E>,
    ) -> Interval<E> {
        let (c, r) = (self.center(), self.radius());
        let (c, r) = (affine(c), abs_linear(r));
        Interval {
            lo: c.clone() - r.clone(),
            hi: c + r,
        }
    }
}

impl Interval<2> {
    /// Through a linear layer.
    pub fn linear(self, layer: &Linear) -> Self {
        let w = layer.weight.val();
        self.affine(|c| layer.forward(c), |r| r.matmul(w.clone().abs()))
    }

    /// Lower bounds `[B, K]` of the margins `z_y − z_j` of the logits `z = last(h)` for every
    /// class `j` (0 at `j = y`), `h` in this interval: the last layer folded into the
    /// specification (Gowal et al., section 3), per sample `(w_y − w_j)·c + b_y − b_j −
    /// |w_y − w_j|·r`.
    pub fn margins(self, last: &Linear, y: Tensor<1, Int>) -> Tensor<2> {
        let (c, r) = (self.center(), self.radius());
        let wt = last.weight.val().transpose(); // [K, N]
        let k = wt.dims()[0];
        let b = y.dims()[0];
        let wy = wt.clone().select(0, y.clone()); // [B, N]
        let diff = wy.unsqueeze_dim::<3>(1) - wt.unsqueeze_dim::<3>(0); // [B, K, N]
        let center = (diff.clone() * c.unsqueeze_dim::<3>(1))
            .sum_dim(2)
            .reshape([b, k]);
        let spread = (diff.abs() * r.unsqueeze_dim::<3>(1))
            .sum_dim(2)
            .reshape([b, k]);
        let mut m = center - spread;
        if let Some(bias) = &last.bias {
            let bias = bias.val(); // [K]
            let by = bias.clone().select(0, y).unsqueeze_dim::<2>(1); // [B, 1]
            m = m + by - bias.unsqueeze_dim::<2>(0);
        }
        m
    }
}

impl Interval<4> {
    /// Through a 2-D convolution.
    pub fn conv2d(self, layer: &Conv2d) -> Self {
        let [_, _, h, w] = self.lo.dims();
        let options = ConvOptions::new_with_padding(
            layer.stride,
            padding_pairs(&layer.padding, [h, w], layer.kernel_size, layer.stride),
            layer.dilation,
            layer.groups,
        );
        let abs = layer.weight.val().abs();
        self.affine(
            |c| layer.forward(c),
            |r| conv2d(r, abs.clone(), None, options.clone()),
        )
    }

    /// Through BatchNorm in inference mode (running statistics): the per-channel affine map
    /// `γ·(x − μ)/√(σ² + ε) + β`, whose scale may be negative.
    pub fn batch_norm(self, bn: &BatchNorm) -> Self {
        let device = self.lo.device();
        let var = bn.running_var.value().to_device(&device);
        let mean = bn.running_mean.value().to_device(&device);
        let scale = bn.gamma.val() / (var + bn.epsilon).sqrt(); // [C]
        let shift = bn.beta.val() - mean * scale.clone();
        self.per_channel(scale, shift)
    }

    /// Through the per-channel affine map `x·scale + shift` (`[C]` each; an input
    /// normalization, a folded BatchNorm), whose scale may be negative.
    pub fn per_channel(self, scale: Tensor<1>, shift: Tensor<1>) -> Self {
        let channels = scale.dims()[0];
        let shape = |t: Tensor<1>| t.reshape([1, channels, 1, 1]);
        let (s, t) = (shape(scale), shape(shift));
        let s_abs = s.clone().abs();
        self.affine(|c| c * s.clone() + t.clone(), |r| r * s_abs.clone())
    }
}

/// The `((top, bottom), (left, right))` padding of a layer on an `[h, w]` input, as burn's
/// layers compute it.
fn padding_pairs(
    padding: &PaddingConfig2d,
    [h, w]: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [(usize, usize); 2] {
    let same = |k: usize, s: usize, size: usize| {
        let out = size.div_ceil(s);
        let total = if out > 0 {
            ((out - 1) * s + k).saturating_sub(size)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    match *padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same(kernel[0], stride[0], h), same(kernel[1], stride[1], w)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    }
}

/// How far above 0 every other class's margin bound must be for a sample to count as verified:
/// the bounds are computed in f32 without outward rounding, so a bound within rounding error of
/// 0 proves nothing.
pub const VERIFY_TOLERANCE: f64 = 1e-5;

/// Which samples are verified: every other class's margin bound exceeds [`VERIFY_TOLERANCE`]
/// (a NaN bound verifies nothing).
pub fn verified(margins: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1, burn::tensor::Bool> {
    let [b, k] = margins.dims();
    let own = y.one_hot::<2>(k).bool();
    margins
        .greater_elem(VERIFY_TOLERANCE)
        .bool_or(own)
        .all_dim(1)
        .reshape([b])
}

impl<const D: usize> std::ops::Add for Interval<D> {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            lo: self.lo + other.lo,
            hi: self.hi + other.hi,
        }
    }
}
