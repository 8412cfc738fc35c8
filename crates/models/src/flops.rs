//! Analytic floating-point operation counts of the zoo's models, for throughput reports.
//!
//! The count is 2 × the multiply-adds of the convolution and linear layers for one image (one
//! multiply-add = 2 FLOP, the convention of the performance literature and of PyTorch's profilers);
//! activations, pooling, normalization, biases and residual additions are left out (each is a few
//! operations per activation, well under 1 % of the zoo's convolutional models). A backward pass
//! that computes the input gradient costs about one forward pass more, and the weight gradient
//! another: the benchmark multiplies [`forward_flops`] accordingly.

use crate::{ModelError, model_info};

/// One layer with weights: its weight shape in burn's layout and the output positions it is
/// applied at (output height × width for a convolution, 1 for a linear layer).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layer {
    pub weight: Vec<usize>,
    pub positions: usize,
}

impl Layer {
    fn flops(&self) -> u64 {
        2 * self.weight.iter().product::<usize>() as u64 * self.positions as u64
    }
}

/// `k`×`k` convolution from `cin` to `cout` channels with an `out`×`out` output.
fn conv(cin: usize, cout: usize, k: usize, out: usize) -> Layer {
    Layer {
        weight: vec![cout, cin, k, k],
        positions: out * out,
    }
}

/// Linear layer (burn stores its weight as `[inputs, outputs]`).
fn linear(inputs: usize, outputs: usize) -> Layer {
    Layer {
        weight: vec![inputs, outputs],
        positions: 1,
    }
}

/// The layers with weights of the zoo model `name`, as its code builds them (a test checks the
/// shapes against the models).
pub(crate) fn layers(name: &str) -> Result<Vec<Layer>, ModelError> {
    let classes = model_info(name)?.num_classes;
    Ok(match name {
        "seed-mlp" => vec![linear(10, 50), linear(50, classes)],
        // 32 -> conv5 28 -> pool 14 -> conv5 10 -> pool 5.
        "seed-net" => vec![
            conv(3, 6, 5, 28),
            conv(6, 16, 5, 10),
            linear(400, 120),
            linear(120, 84),
            linear(84, classes),
        ],
        "mlp" => vec![linear(784, 256), linear(256, 256), linear(256, classes)],
        // Stride-2 convolutions: 28 -> 14 -> 7.
        "small-cnn" => vec![
            conv(1, 16, 4, 14),
            conv(16, 32, 4, 7),
            linear(32 * 7 * 7, 100),
            linear(100, classes),
        ],
        // Same-padded convolutions at 28 and (after a 2x2 pool) 14.
        "madry-cnn" => vec![
            conv(1, 32, 5, 28),
            conv(32, 64, 5, 14),
            linear(64 * 7 * 7, 1024),
            linear(1024, classes),
        ],
        // 3x3 stem at 32; four stages of two blocks at 32, 16, 8, 4 with 64..512 planes; the
        // first block of stages 2-4 downsamples and has a 1x1 shortcut convolution.
        "preact-resnet18" => {
            let mut v = vec![conv(3, 64, 3, 32)];
            let mut cin = 64;
            for (planes, out) in [(64, 32), (128, 16), (256, 8), (512, 4)] {
                for block in 0..2 {
                    v.push(conv(cin, planes, 3, out));
                    v.push(conv(planes, planes, 3, out));
                    if block == 0 && cin != planes {
                        v.push(conv(cin, planes, 1, out));
                    }
                    cin = planes;
                }
            }
            v.push(linear(512, classes));
            v
        }
        // 3x3 stem to 16 channels at 32; three stages of (depth - 4) / 6 blocks with 16k, 32k,
        // 64k channels at 32, 16, 8; each stage's first block changes the width and has a 1x1
        // shortcut convolution.
        "wrn-28-10" | "wrn-34-10" => {
            let depth: usize = if name == "wrn-28-10" { 28 } else { 34 };
            let (n, k) = ((depth - 4) / 6, 10);
            let mut v = vec![conv(3, 16, 3, 32)];
            let mut cin = 16;
            for (planes, out) in [(16 * k, 32), (32 * k, 16), (64 * k, 8)] {
                for _ in 0..n {
                    v.push(conv(cin, planes, 3, out));
                    v.push(conv(planes, planes, 3, out));
                    if cin != planes {
                        v.push(conv(cin, planes, 1, out));
                    }
                    cin = planes;
                }
            }
            v.push(linear(64 * k, classes));
            v
        }
        other => unreachable!("model_info knows `{other}` but no layer list does"),
    })
}

/// FLOPs of one forward pass of zoo model `name` for one image (see the module docs).
pub fn forward_flops(name: &str) -> Result<u64, ModelError> {
    Ok(layers(name)?.iter().map(Layer::flops).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Model, models};
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{Device, Tensor};

    /// Shapes of every parameter with two or more dimensions (the weights).
    fn weight_shapes(model: &Model) -> Vec<Vec<usize>> {
        struct Shapes(Vec<Vec<usize>>);
        impl ModuleVisitor for Shapes {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if D >= 2 {
                    self.0.push(p.val().dims().to_vec());
                }
            }
        }
        let mut s = Shapes(Vec::new());
        model.visit(&mut s);
        s.0.sort();
        s.0
    }

    #[test]
    fn the_layer_lists_match_the_models_weights() {
        let device = Device::flex();
        for info in models() {
            let model = Model::init_seeded(info.name, &device, 0).unwrap();
            let mut listed: Vec<Vec<usize>> = layers(info.name)
                .unwrap()
                .into_iter()
                .map(|l| l.weight)
                .collect();
            listed.sort();
            assert_eq!(listed, weight_shapes(&model), "{}", info.name);
        }
    }

    #[test]
    fn counts_match_hand_computed_values() {
        // small-cnn: 16·14²·16 + 32·7²·256 + 1568·100 + 100·10 multiply-adds = 609,384.
        assert_eq!(forward_flops("small-cnn").unwrap(), 2 * 609_384);
        // madry-cnn: 32·28²·25 + 64·14²·800 + 3136·1024 + 1024·10 = 13,883,904.
        assert_eq!(forward_flops("madry-cnn").unwrap(), 2 * 13_883_904);
        // mlp: 784·256 + 256·256 + 256·10 = 268,800.
        assert_eq!(forward_flops("mlp").unwrap(), 2 * 268_800);
        // PreAct-ResNet-18 on 32x32: about 0.56 G multiply-adds, as commonly quoted.
        let r = forward_flops("preact-resnet18").unwrap() as f64 / 2.0;
        assert!((r - 0.557e9).abs() < 0.01e9, "{r}");
        // WRN-28-10: about 5.25 G multiply-adds (Zagoruyko & Komodakis' 36.5 M parameters).
        let w = forward_flops("wrn-28-10").unwrap() as f64 / 2.0;
        assert!((w - 5.25e9).abs() < 0.03e9, "{w}");
        assert!(forward_flops("wrn-34-10").unwrap() > forward_flops("wrn-28-10").unwrap());
        assert!(forward_flops("resnet").is_err());
    }
}
