//! Wide residual networks (Zagoruyko & Komodakis 2016) for 3x32x32 images, in the form of the
//! RobustBench CIFAR-10 leaderboard (from the TRADES code): WRN-28-10 and WRN-34-10, with
//! PyTorch's state-dict layout (`block1.layer.0.bn1.weight`, `...convShortcut.weight`,
//! `fc.weight`). Inputs in `[0, 1]`, no normalization inside (as RobustBench's `WideResNet`).

use bulwark_attack_core::Interval;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;

use crate::ModelError;
use crate::batch_norm_folded;
use crate::drop_path::DropPath;

/// Configuration of a [`WideResNet`]: WRN-`depth`-`widen_factor`.
#[derive(Config, Debug)]
pub struct WideResNetConfig {
    /// Depth: `6n + 4` for `n` blocks per stage (28 and 34 on the leaderboard).
    #[config(default = 28)]
    pub depth: usize,
    /// Width multiplier of the three stages (16·k, 32·k, 64·k channels).
    #[config(default = 10)]
    pub widen_factor: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Dropout between each block's two convolutions during training (the original WRN's
    /// `dropRate`; 0.3 in Zagoruyko & Komodakis, 0 on the leaderboard).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Stochastic depth: each block's residual branch is dropped per sample with this
    /// probability during training.
    #[config(default = 0.0)]
    pub drop_path: f64,
}

/// One block (PyTorch's `BasicBlock`): `BN ReLU Conv3x3 BN ReLU [Dropout] Conv3x3`, plus the input
/// (same shape) or a 1x1 convolution of the pre-activated input (shape change).
#[derive(Module, Debug)]
pub struct WideBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    dropout: Dropout,
    drop_path: DropPath,
    relu: Relu,
}

fn conv3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

impl WideBlock {
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        cfg: &WideResNetConfig,
        device: &Device,
    ) -> Self {
        Self {
            bn1: BatchNormConfig::new(cin).init(device),
            conv1: conv3(cin, cout, stride, device),
            bn2: BatchNormConfig::new(cout).init(device),
            conv2: conv3(cout, cout, 1, device),
            conv_shortcut: (cin != cout).then(|| {
                Conv2dConfig::new([cin, cout], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device)
            }),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            drop_path: DropPath::new(cfg.drop_path),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = self.relu.forward(batch_norm_folded(&self.bn1, x.clone()));
        let out = self.relu.forward(batch_norm_folded(
            &self.bn2,
            self.conv1.forward(pre.clone()),
        ));
        let out = self.conv2.forward(self.dropout.forward(out));
        let out = self.drop_path.forward(out);
        // As in the reference code: with a shape change, the shortcut convolves the
        // pre-activated input; otherwise it is the block's input itself.
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(pre),
            None => x,
        };
        shortcut + out
    }

    /// [`WideBlock::forward`] on intervals with inference behaviour (BatchNorm on running
    /// statistics; dropout and DropPath are the identity).
    fn bounds(&self, x: Interval<4>) -> Interval<4> {
        let pre = x.clone().batch_norm(&self.bn1).relu();
        let out = pre.clone().conv2d(&self.conv1).batch_norm(&self.bn2).relu();
        let out = out.conv2d(&self.conv2);
        let shortcut = match &self.conv_shortcut {
            Some(conv) => pre.conv2d(conv),
            None => x,
        };
        shortcut + out
    }

    fn sync_running_stats(&self) {
        for bn in [&self.bn1, &self.bn2] {
            let _ = bn.running_mean.value_sync();
            let _ = bn.running_var.value_sync();
        }
    }
}

/// One stage of blocks (PyTorch's `NetworkBlock`, whose blocks sit in `layer`).
#[derive(Module, Debug)]
pub struct WideStage {
    layer: Vec<WideBlock>,
}

/// WRN-`depth`-`k`: a 3x3 convolution to 16 channels, three stages of `(depth − 4) / 6` blocks
/// (16k, 32k, 64k channels; strides 1, 2, 2), BN + ReLU, global average pooling, `fc`.
#[derive(Module, Debug)]
pub struct WideResNet {
    conv1: Conv2d,
    block1: WideStage,
    block2: WideStage,
    block3: WideStage,
    bn1: BatchNorm,
    fc: Linear,
    pool: AdaptiveAvgPool2d,
    relu: Relu,
}

impl WideResNetConfig {
    /// Checks the depth, the width and the probabilities.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: String| {
            Err(ModelError::Config {
                model: format!("wrn-{}-{}", self.depth, self.widen_factor),
                reason,
            })
        };
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return bad(format!("depth {} is not 6n + 4 with n >= 1", self.depth));
        }
        if self.widen_factor == 0 || self.num_classes == 0 {
            return bad("widen_factor and num_classes must be at least 1".into());
        }
        for (name, p) in [("dropout", self.dropout), ("drop_path", self.drop_path)] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    /// Builds the network on `device` (weights drawn lazily); call [`WideResNetConfig::validate`]
    /// first for a configuration from outside.
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self, device: &Device) -> WideResNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let n = (self.depth - 4) / 6;
        let k = self.widen_factor;
        let widths = [16, 16 * k, 32 * k, 64 * k];
        let stage = |cin: usize, cout: usize, stride: usize| WideStage {
            layer: (0..n)
                .map(|i| {
                    let (cin, stride) = if i == 0 { (cin, stride) } else { (cout, 1) };
                    WideBlock::new(cin, cout, stride, self, device)
                })
                .collect(),
        };
        WideResNet {
            conv1: conv3(3, widths[0], 1, device),
            block1: stage(widths[0], widths[1], 1),
            block2: stage(widths[1], widths[2], 2),
            block3: stage(widths[2], widths[3], 2),
            bn1: BatchNormConfig::new(widths[3]).init(device),
            fc: LinearConfig::new(widths[3], self.num_classes).init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            relu: Relu::new(),
        }
    }
}

impl WideResNet {
    /// Maps `[batch, 3, 32, 32]` images in `[0, 1]` to `[batch, num_classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut out = self.conv1.forward(x);
        for block in self.blocks() {
            out = block.forward(out);
        }
        let out = self.relu.forward(batch_norm_folded(&self.bn1, out));
        // PyTorch's avg_pool2d(out, 8) on the 8x8 maps of 32x32 inputs.
        self.fc.forward(self.pool.forward(out).flatten::<2>(1, 3))
    }

    /// Interval bound propagation of [`WideResNet::forward`] with inference behaviour: lower
    /// bounds of the margins `z_y − z_j` over the box `x` (see [`Interval::margins`]).
    pub fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Tensor<2> {
        let mut out = x.conv2d(&self.conv1);
        for block in self.blocks() {
            out = block.bounds(out);
        }
        let out = out.batch_norm(&self.bn1).relu();
        let out = out
            .map_monotone(|t| self.pool.forward(t))
            .flatten::<2>(1, 3);
        out.margins(&self.fc, y)
    }

    /// The depth: `6n + 4` for `n` blocks per stage.
    pub fn depth(&self) -> usize {
        6 * self.block1.layer.len() + 4
    }

    /// The width multiplier `k` (the last stage has `64·k` channels), read from the shape of the
    /// classifier's weight without drawing it.
    pub fn widen_factor(&self) -> usize {
        self.fc.weight.lazy_shape().to_vec()[0] / 64
    }

    fn blocks(&self) -> impl Iterator<Item = &WideBlock> {
        self.block1
            .layer
            .iter()
            .chain(&self.block2.layer)
            .chain(&self.block3.layer)
    }

    /// Brings every BatchNorm's running statistics up to date before they are read out.
    pub fn sync_running_stats(&self) {
        self.blocks().for_each(WideBlock::sync_running_stats);
        let _ = self.bn1.running_mean.value_sync();
        let _ = self.bn1.running_var.value_sync();
    }
}
