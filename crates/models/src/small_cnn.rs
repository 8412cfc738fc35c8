//! The MNIST network of Wong, Rice & Kolter (2020), "Fast is better than free".

use bulwark_attack_core::Interval;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// Configuration of [`SmallCnn`].
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// `Conv(1,16,4,s2,p1) ReLU Conv(16,32,4,s2,p1) ReLU Flatten Linear(1568,100) ReLU Linear(100,10)`.
///
/// 28x28 -> 14x14 -> 7x7 feature maps; 32·7·7 = 1568 features. As `nn.Sequential` its PyTorch
/// keys are `0.*`, `2.*` (convolutions) and `5.*`, `7.*` (linear layers).
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    relu: Relu,
}

impl SmallCnnConfig {
    /// Builds the model with freshly initialized weights on `device`.
    pub fn init(&self, device: &Device) -> SmallCnn {
        let pad = PaddingConfig2d::Explicit(1, 1, 1, 1);
        SmallCnn {
            conv1: Conv2dConfig::new([1, 16], [4, 4])
                .with_stride([2, 2])
                .with_padding(pad.clone())
                .init(device),
            conv2: Conv2dConfig::new([16, 32], [4, 4])
                .with_stride([2, 2])
                .with_padding(pad)
                .init(device),
            fc1: LinearConfig::new(32 * 7 * 7, 100).init(device),
            fc2: LinearConfig::new(100, self.num_classes).init(device),
            relu: Relu::new(),
        }
    }
}

impl SmallCnn {
    /// Maps `[batch, 1, 28, 28]` images in `[0, 1]` to `[batch, num_classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.conv1.forward(x));
        let x = self.relu.forward(self.conv2.forward(x));
        let x = x.flatten::<2>(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        self.fc2.forward(x)
    }

    /// Interval bound propagation of [`SmallCnn::forward`]: lower bounds of the margins
    /// `z_y − z_j` over the box `x` (see [`Interval::margins`]).
    pub fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Tensor<2> {
        let h = x.conv2d(&self.conv1).relu().conv2d(&self.conv2).relu();
        let h = h.flatten::<2>(1, 3).linear(&self.fc1).relu();
        h.margins(&self.fc2, y)
    }
}
