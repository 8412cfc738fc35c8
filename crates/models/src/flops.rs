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
/// applied at (output height × width for a convolution, 1 for a linear layer), and for a
/// convolution its whole geometry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layer {
    pub weight: Vec<usize>,
    pub positions: usize,
    pub conv: Option<ConvShape>,
}

/// One convolution of a zoo model as its forward pass applies it to one image: square kernel,
/// stride and symmetric zero padding, one group, on a square input.
///
/// ```
/// use bulwark_models::conv_shapes;
/// // PreAct-ResNet-18's stem, then the first stage's 3x3 convolutions (four of them).
/// let shapes = conv_shapes("preact-resnet18").unwrap();
/// let (stem, _) = shapes[0];
/// assert_eq!((stem.in_channels, stem.out_channels, stem.input, stem.output()), (3, 64, 32, 32));
/// assert_eq!(shapes[1].1, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Input side (height = width).
    pub input: usize,
    /// Whether the layer adds a bias.
    pub bias: bool,
}

impl ConvShape {
    /// Output side: `(input + 2·padding − kernel) / stride + 1`.
    pub fn output(&self) -> usize {
        (self.input + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// FLOPs of the forward pass for one image (2 per multiply-add; the bias left out).
    pub fn forward_flops(&self) -> u64 {
        let out = self.output() as u64;
        2 * (self.out_channels * self.in_channels * self.kernel * self.kernel) as u64 * out * out
    }
}

impl Layer {
    fn flops(&self) -> u64 {
        2 * self.weight.iter().product::<usize>() as u64 * self.positions as u64
    }
}

/// `k`×`k` convolution from `cin` to `cout` channels on an `input`×`input` map, with stride `s`,
/// padding `pad` and a bias or none.
fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    pad: usize,
    input: usize,
    bias: bool,
) -> Layer {
    let shape = ConvShape {
        in_channels: cin,
        out_channels: cout,
        kernel: k,
        stride: s,
        padding: pad,
        input,
        bias,
    };
    let out = shape.output();
    Layer {
        weight: vec![cout, cin, k, k],
        positions: out * out,
        conv: Some(shape),
    }
}

/// Linear layer (burn stores its weight as `[inputs, outputs]`).
fn linear(inputs: usize, outputs: usize) -> Layer {
    Layer {
        weight: vec![inputs, outputs],
        positions: 1,
        conv: None,
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
            conv(3, 6, 5, 1, 0, 32, true),
            conv(6, 16, 5, 1, 0, 14, true),
            linear(400, 120),
            linear(120, 84),
            linear(84, classes),
        ],
        "mlp" => vec![linear(784, 256), linear(256, 256), linear(256, classes)],
        // Stride-2 convolutions: 28 -> 14 -> 7.
        "small-cnn" => vec![
            conv(1, 16, 4, 2, 1, 28, true),
            conv(16, 32, 4, 2, 1, 14, true),
            linear(32 * 7 * 7, 100),
            linear(100, classes),
        ],
        // Same-padded convolutions at 28 and (after a 2x2 pool) 14.
        "madry-cnn" => vec![
            conv(1, 32, 5, 1, 2, 28, true),
            conv(32, 64, 5, 1, 2, 14, true),
            linear(64 * 7 * 7, 1024),
            linear(1024, classes),
        ],
        // 3x3 stem at 32; four stages of two blocks at 32, 16, 8, 4 with 64..512 planes; the
        // first block of stages 2-4 downsamples and has a 1x1 shortcut convolution.
        "preact-resnet18" => {
            let mut v = vec![conv(3, 64, 3, 1, 1, 32, false)];
            let (mut cin, mut side) = (64, 32);
            for (planes, stride) in [(64, 1), (128, 2), (256, 2), (512, 2)] {
                for block in 0..2 {
                    let s = if block == 0 { stride } else { 1 };
                    v.push(conv(cin, planes, 3, s, 1, side, false));
                    let out = (side - 1) / s + 1;
                    v.push(conv(planes, planes, 3, 1, 1, out, false));
                    if block == 0 && cin != planes {
                        v.push(conv(cin, planes, 1, s, 0, side, false));
                    }
                    (cin, side) = (planes, out);
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
            let mut v = vec![conv(3, 16, 3, 1, 1, 32, false)];
            let (mut cin, mut side) = (16, 32);
            for (planes, stride) in [(16 * k, 1), (32 * k, 2), (64 * k, 2)] {
                for block in 0..n {
                    let s = if block == 0 { stride } else { 1 };
                    v.push(conv(cin, planes, 3, s, 1, side, false));
                    let out = (side - 1) / s + 1;
                    v.push(conv(planes, planes, 3, 1, 1, out, false));
                    if cin != planes {
                        v.push(conv(cin, planes, 1, s, 0, side, false));
                    }
                    (cin, side) = (planes, out);
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

/// The distinct convolutions of zoo model `name`, in the order its forward pass first applies
/// them, each with how many of its layers have that shape (for per-layer benchmarks).
pub fn conv_shapes(name: &str) -> Result<Vec<(ConvShape, usize)>, ModelError> {
    let mut shapes: Vec<(ConvShape, usize)> = Vec::new();
    for shape in layers(name)?.into_iter().filter_map(|l| l.conv) {
        match shapes.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, count)) => *count += 1,
            None => shapes.push((shape, 1)),
        }
    }
    Ok(shapes)
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

    #[test]
    fn conv_shapes_follow_the_models_strides_and_sizes() {
        // (in, out, kernel, stride, input, output, count) as the model code builds them.
        let brief = |name: &str| -> Vec<[usize; 7]> {
            conv_shapes(name)
                .unwrap()
                .into_iter()
                .map(|(c, n)| {
                    let k = c.kernel;
                    [
                        c.in_channels,
                        c.out_channels,
                        k,
                        c.stride,
                        c.input,
                        c.output(),
                        n,
                    ]
                })
                .collect()
        };
        assert_eq!(
            brief("small-cnn"),
            [[1, 16, 4, 2, 28, 14, 1], [16, 32, 4, 2, 14, 7, 1]]
        );
        assert_eq!(
            brief("madry-cnn"),
            [[1, 32, 5, 1, 28, 28, 1], [32, 64, 5, 1, 14, 14, 1]]
        );
        assert_eq!(
            brief("preact-resnet18"),
            [
                [3, 64, 3, 1, 32, 32, 1],
                [64, 64, 3, 1, 32, 32, 4],
                [64, 128, 3, 2, 32, 16, 1],
                [128, 128, 3, 1, 16, 16, 3],
                [64, 128, 1, 2, 32, 16, 1],
                [128, 256, 3, 2, 16, 8, 1],
                [256, 256, 3, 1, 8, 8, 3],
                [128, 256, 1, 2, 16, 8, 1],
                [256, 512, 3, 2, 8, 4, 1],
                [512, 512, 3, 1, 4, 4, 3],
                [256, 512, 1, 2, 8, 4, 1],
            ]
        );
        // WRN-28-10: 4 blocks per stage; the first stage keeps 32x32 (stride 1).
        let wrn = brief("wrn-28-10");
        assert_eq!(wrn[1], [16, 160, 3, 1, 32, 32, 1]);
        assert_eq!(wrn[2], [160, 160, 3, 1, 32, 32, 7]);
        assert_eq!(wrn[3], [16, 160, 1, 1, 32, 32, 1]);
        assert_eq!(wrn.last().unwrap(), &[320, 640, 1, 2, 16, 8, 1]);
        // Every model: the convolutions' FLOPs are the model's, less its linear layers'.
        for info in models() {
            let convs: u64 = conv_shapes(info.name)
                .unwrap()
                .iter()
                .map(|(c, n)| c.forward_flops() * *n as u64)
                .sum();
            let linear: u64 = layers(info.name)
                .unwrap()
                .iter()
                .filter(|l| l.conv.is_none())
                .map(Layer::flops)
                .sum();
            assert_eq!(
                convs + linear,
                forward_flops(info.name).unwrap(),
                "{}",
                info.name
            );
        }
    }
}
