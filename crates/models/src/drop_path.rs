//! DropPath (stochastic depth, Huang et al. 2016): drops a residual branch for whole samples.

use burn::module::{Flag, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

/// Zeroes a residual branch's output for each sample with probability `prob` during training,
/// scaling the kept ones by `1 / (1 - prob)`; the identity in inference (after `valid()`), on a
/// plain device, or with `prob = 0`. Decides like burn's `Dropout`: the `training` flag and an
/// autodiff input.
#[derive(Module, Debug)]
pub struct DropPath {
    /// Probability of dropping the branch for a sample, in `[0, 1)`.
    pub prob: f64,
    /// Whether to behave as during training (cleared by `valid()` and `freeze()`).
    pub training: Param<Flag>,
}

impl DropPath {
    /// A DropPath layer with drop probability `prob` (in `[0, 1)`; checked by the configurations
    /// that build it).
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Applies the per-sample mask to a branch output `[B, ...]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if !self.training.is_enabled() || !x.device().is_autodiff() || self.prob == 0.0 {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [b, _, _, _] = x.dims();
        let mask = Tensor::<4>::random([b, 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask / keep
    }
}
