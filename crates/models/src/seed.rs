//! The seed project's two example models, kept so its examples run unchanged.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

/// Configuration of [`SeedMlp`].
#[derive(Config, Debug)]
pub struct SeedMlpConfig {
    /// Input features.
    #[config(default = 10)]
    pub inputs: usize,
    /// Hidden width.
    #[config(default = 50)]
    pub hidden: usize,
    /// Outputs.
    #[config(default = 10)]
    pub outputs: usize,
}

/// The seed's regularization example: `Linear(10, 50) -> Linear(50, 10)`.
///
/// There is deliberately no activation between the layers, exactly as in the seed: the model is
/// linear, which makes penalties and their gradients easy to check by hand.
#[derive(Module, Debug)]
pub struct SeedMlp {
    fc1: Linear,
    fc2: Linear,
}

impl SeedMlpConfig {
    /// Builds the model with freshly initialized weights on `device`.
    pub fn init(&self, device: &Device) -> SeedMlp {
        SeedMlp {
            fc1: LinearConfig::new(self.inputs, self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.outputs).init(device),
        }
    }
}

impl SeedMlp {
    /// Maps `[batch, inputs]` to `[batch, outputs]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(self.fc1.forward(x))
    }
}

/// Configuration of [`SeedNet`].
#[derive(Config, Debug)]
pub struct SeedNetConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// The seed's CNN for 3x32x32 images (the PyTorch CIFAR-10 tutorial network):
/// `Conv(3,6,5) ReLU MaxPool2 Conv(6,16,5) ReLU MaxPool2 Linear(400,120) ReLU Linear(120,84) ReLU
/// Linear(84,10)`.
#[derive(Module, Debug)]
pub struct SeedNet {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    pool: MaxPool2d,
    relu: Relu,
}

impl SeedNetConfig {
    /// Builds the model with freshly initialized weights on `device`.
    pub fn init(&self, device: &Device) -> SeedNet {
        SeedNet {
            conv1: Conv2dConfig::new([3, 6], [5, 5]).init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            fc1: LinearConfig::new(400, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            fc3: LinearConfig::new(84, self.num_classes).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Relu::new(),
        }
    }
}

impl SeedNet {
    /// Maps `[batch, 3, 32, 32]` images to `[batch, num_classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv2.forward(x)));
        let x = x.flatten::<2>(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        let x = self.relu.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
