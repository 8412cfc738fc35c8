//! PreAct-ResNet-18 for 3x32x32 images (He et al. 2016, "Identity mappings in deep residual
//! networks"), in the form used by Wong et al. (2020) and Rice et al. (2020) for CIFAR-10.

use bulwark_attack_core::Interval;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

use crate::batch_norm_folded;

/// Per-channel mean of the CIFAR-10 training set, used for the model's built-in normalization.
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// Per-channel standard deviation of the CIFAR-10 training set.
pub const CIFAR10_STD: [f32; 3] = [0.2471, 0.2435, 0.2616];

/// Configuration of [`PreActResNet18`].
#[derive(Config, Debug)]
pub struct PreActResNet18Config {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Per-channel mean subtracted inside the model (inputs stay in `[0, 1]`).
    #[config(default = "CIFAR10_MEAN.to_vec()")]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided inside the model.
    #[config(default = "CIFAR10_STD.to_vec()")]
    pub std: Vec<f32>,
}

/// One pre-activation basic block: `BN ReLU Conv3x3 BN ReLU Conv3x3` plus a shortcut, which is a
/// 1x1 convolution of the pre-activated input when the shape changes and the identity otherwise.
#[derive(Module, Debug)]
pub struct PreActBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    relu: Relu,
}

impl PreActBlock {
    fn new(in_planes: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let conv3 = |cin, cout, s| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        let shortcut = (stride != 1 || in_planes != planes).then(|| {
            Conv2dConfig::new([in_planes, planes], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device)
        });
        Self {
            bn1: BatchNormConfig::new(in_planes).init(device),
            conv1: conv3(in_planes, planes, stride),
            bn2: BatchNormConfig::new(planes).init(device),
            conv2: conv3(planes, planes, 1),
            shortcut,
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.relu.forward(batch_norm_folded(&self.bn1, x.clone()));
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(out.clone()),
            None => x,
        };
        let out = self.conv1.forward(out);
        let out = self
            .conv2
            .forward(self.relu.forward(batch_norm_folded(&self.bn2, out)));
        out + shortcut
    }

    /// [`PreActBlock::forward`] on intervals (BatchNorm in inference mode).
    fn bounds(&self, x: Interval<4>) -> Interval<4> {
        let out = x.clone().batch_norm(&self.bn1).relu();
        let shortcut = match &self.shortcut {
            Some(conv) => out.clone().conv2d(conv),
            None => x,
        };
        let out = out.conv2d(&self.conv1).batch_norm(&self.bn2).relu();
        out.conv2d(&self.conv2) + shortcut
    }

    fn sync_running_stats(&self) {
        for bn in [&self.bn1, &self.bn2] {
            sync_bn(bn);
        }
    }
}

/// Makes a BatchNorm's running statistics current: burn keeps a thread's last update aside until
/// the next read on that thread, so a visitor (export, checkpoint) could see a value one step old.
fn sync_bn(bn: &BatchNorm) {
    let _ = bn.running_mean.value_sync();
    let _ = bn.running_var.value_sync();
}

/// PreAct-ResNet-18: `conv1`, four stages of two [`PreActBlock`]s (64, 128, 256, 512 channels;
/// strides 1, 2, 2, 2), a final `bn` + ReLU, global average pooling and `linear`.
#[derive(Module, Debug)]
pub struct PreActResNet18 {
    conv1: Conv2d,
    layer1: Vec<PreActBlock>,
    layer2: Vec<PreActBlock>,
    layer3: Vec<PreActBlock>,
    layer4: Vec<PreActBlock>,
    bn: BatchNorm,
    linear: Linear,
    pool: AdaptiveAvgPool2d,
    relu: Relu,
    #[module(skip)]
    mean: Vec<f32>,
    #[module(skip)]
    std: Vec<f32>,
}

impl PreActResNet18Config {
    /// Builds the model with freshly initialized weights on `device`.
    pub fn init(&self, device: &Device) -> PreActResNet18 {
        let mut in_planes = 64;
        let mut stage = |planes: usize, stride: usize| {
            let first = PreActBlock::new(in_planes, planes, stride, device);
            let second = PreActBlock::new(planes, planes, 1, device);
            in_planes = planes;
            vec![first, second]
        };
        let (layer1, layer2, layer3, layer4) =
            (stage(64, 1), stage(128, 2), stage(256, 2), stage(512, 2));
        PreActResNet18 {
            conv1: Conv2dConfig::new([self.in_channels, 64], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            layer1,
            layer2,
            layer3,
            layer4,
            bn: BatchNormConfig::new(512).init(device),
            linear: LinearConfig::new(512, self.num_classes).init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            relu: Relu::new(),
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }
}

impl PreActResNet18 {
    /// Maps `[batch, 3, 32, 32]` images in `[0, 1]` to `[batch, num_classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let device = x.device();
        let c = self.mean.len();
        let mean = Tensor::<1>::from_floats(self.mean.as_slice(), &device).reshape([1, c, 1, 1]);
        let std = Tensor::<1>::from_floats(self.std.as_slice(), &device).reshape([1, c, 1, 1]);
        let mut out = self.conv1.forward((x - mean) / std);
        for block in self.blocks() {
            out = block.forward(out);
        }
        let out = self.relu.forward(batch_norm_folded(&self.bn, out));
        let out = self.pool.forward(out).flatten::<2>(1, 3);
        self.linear.forward(out)
    }

    /// Interval bound propagation of [`PreActResNet18::forward`] with inference behaviour: lower
    /// bounds of the margins `z_y − z_j` over the box `x` (see [`Interval::margins`]).
    pub fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Tensor<2> {
        let device = x.lo.device();
        let mean = Tensor::<1>::from_floats(self.mean.as_slice(), &device);
        let std = Tensor::<1>::from_floats(self.std.as_slice(), &device);
        let scale = std.recip();
        let mut out = x
            .per_channel(scale.clone(), mean.neg() * scale)
            .conv2d(&self.conv1);
        for block in self.blocks() {
            out = block.bounds(out);
        }
        let out = out.batch_norm(&self.bn).relu();
        let out = out
            .map_monotone(|t| self.pool.forward(t))
            .flatten::<2>(1, 3);
        out.margins(&self.linear, y)
    }

    fn blocks(&self) -> impl Iterator<Item = &PreActBlock> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// Brings every BatchNorm's running statistics up to date (see [`BatchNorm`]); call before
    /// reading them out, e.g. for export.
    pub fn sync_running_stats(&self) {
        self.blocks().for_each(PreActBlock::sync_running_stats);
        sync_bn(&self.bn);
    }
}
