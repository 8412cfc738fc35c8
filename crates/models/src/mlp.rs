//! A plain multi-layer perceptron for 28x28 images.

use bulwark_attack_core::Interval;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

/// Configuration of [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Flattened input size.
    #[config(default = 784)]
    pub inputs: usize,
    /// Width of the two hidden layers.
    #[config(default = 256)]
    pub hidden: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// `784-256-256-10` with ReLU: `Flatten, Linear, ReLU, Linear, ReLU, Linear`.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    relu: Relu,
}

impl MlpConfig {
    /// Builds the model with freshly initialized weights on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        Mlp {
            fc1: LinearConfig::new(self.inputs, self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.hidden).init(device),
            fc3: LinearConfig::new(self.hidden, self.num_classes).init(device),
            relu: Relu::new(),
        }
    }
}

impl Mlp {
    /// Maps `[batch, 1, 28, 28]` images to `[batch, num_classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = x.flatten::<2>(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        let x = self.relu.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    /// Interval bound propagation of [`Mlp::forward`] (see [`Interval::margins`]).
    pub fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Tensor<2> {
        let h = x.flatten::<2>(1, 3).linear(&self.fc1).relu();
        let h = h.linear(&self.fc2).relu();
        h.margins(&self.fc3, y)
    }
}
