//! The MNIST network of Madry et al. (2018), "Towards deep learning models resistant to
//! adversarial attacks".

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// Configuration of [`MadryCnn`].
#[derive(Config, Debug)]
pub struct MadryCnnConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// `Conv(1,32,5,p2) ReLU MaxPool2 Conv(32,64,5,p2) ReLU MaxPool2 Flatten Linear(3136,1024) ReLU
/// Linear(1024,10)`.
#[derive(Module, Debug)]
pub struct MadryCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    pool: MaxPool2d,
    relu: Relu,
}

impl MadryCnnConfig {
    /// Builds the model with freshly initialized weights on `device`.
    pub fn init(&self, device: &Device) -> MadryCnn {
        let pad = PaddingConfig2d::Explicit(2, 2, 2, 2);
        MadryCnn {
            conv1: Conv2dConfig::new([1, 32], [5, 5])
                .with_padding(pad.clone())
                .init(device),
            conv2: Conv2dConfig::new([32, 64], [5, 5])
                .with_padding(pad)
                .init(device),
            fc1: LinearConfig::new(64 * 7 * 7, 1024).init(device),
            fc2: LinearConfig::new(1024, self.num_classes).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Relu::new(),
        }
    }
}

impl MadryCnn {
    /// Maps `[batch, 1, 28, 28]` images in `[0, 1]` to `[batch, num_classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv2.forward(x)));
        let x = x.flatten::<2>(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        self.fc2.forward(x)
    }
}
