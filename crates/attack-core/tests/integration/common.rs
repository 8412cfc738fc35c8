//! Test models and checks shared by the attack tests. Norms here are computed independently of
//! the crate's own geometry code.
#![allow(dead_code)]

use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

pub fn device() -> Device {
    Device::flex()
}

/// SplitMix64, for test data.
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `b` random inputs of `n` values in [0, 1) and random labels below `k`.
pub fn random_data(seed: u64, b: usize, n: usize, k: usize) -> (Vec<f32>, Vec<i64>) {
    let mut rng = TestRng(seed);
    let x = (0..b * n).map(|_| rng.uniform() as f32).collect();
    let y = (0..b).map(|_| rng.below(k) as i64).collect();
    (x, y)
}

pub fn matrix(values: Vec<f32>, rows: usize, cols: usize, dev: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), dev)
}

pub fn ints(values: Vec<i64>, dev: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), dev)
}

pub fn host(t: Tensor<2>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

/// `z = x Wᵀ + b` with `W` given row-major as `[classes][features]`.
pub fn linear(
    w: Vec<f32>,
    b: Vec<f32>,
    features: usize,
    dev: &Device,
) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
    let k = b.len();
    let wt = matrix(w, k, features, dev).transpose();
    let bias = matrix(b, 1, k, dev);
    move |x: Tensor<2>| x.matmul(wt.clone()) + bias.clone()
}

/// A random linear model.
pub fn random_linear(
    rng: &mut TestRng,
    features: usize,
    classes: usize,
    dev: &Device,
) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
    let w = (0..classes * features)
        .map(|_| rng.range(-1.0, 1.0) as f32)
        .collect();
    let b = (0..classes).map(|_| rng.range(-0.5, 0.5) as f32).collect();
    linear(w, b, features, dev)
}

/// A random two-layer ReLU network.
pub fn random_mlp(
    rng: &mut TestRng,
    features: usize,
    hidden: usize,
    classes: usize,
    dev: &Device,
) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
    let scale = 2.0 / (features as f64).sqrt();
    let w1 = matrix(
        (0..hidden * features)
            .map(|_| rng.range(-scale, scale) as f32)
            .collect(),
        hidden,
        features,
        dev,
    )
    .transpose();
    let b1 = matrix(
        (0..hidden).map(|_| rng.range(-0.1, 0.1) as f32).collect(),
        1,
        hidden,
        dev,
    );
    let w2 = matrix(
        (0..classes * hidden)
            .map(|_| rng.range(-1.0, 1.0) as f32)
            .collect(),
        classes,
        hidden,
        dev,
    )
    .transpose();
    move |x: Tensor<2>| relu(x.matmul(w1.clone()) + b1.clone()).matmul(w2.clone())
}

/// Per-sample distances `‖a_i − b_i‖_p` in f64 (p = 0 means L-inf).
pub fn dists(a: &[f32], b: &[f32], n: usize, p: u32) -> Vec<f64> {
    a.chunks(n)
        .zip(b.chunks(n))
        .map(|(ra, rb)| {
            let d = ra
                .iter()
                .zip(rb)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs());
            match p {
                0 => d.fold(0.0, f64::max),
                1 => d.sum(),
                _ => d.map(|v| v * v).sum::<f64>().sqrt(),
            }
        })
        .collect()
}

/// Argmax per row.
pub fn argmax(logits: &[f32], k: usize) -> Vec<usize> {
    logits
        .chunks(k)
        .map(|r| (0..k).fold(0, |best, j| if r[j] > r[best] { j } else { best }))
        .collect()
}

/// A small convolutional network defined here, as a user would define theirs: convolution,
/// BatchNorm (so inference behaviour matters), ReLU, a linear head. Implements [`Classifier`]
/// the way the trait documents for burn modules: `valid()` for inference behaviour.
#[derive(burn::module::Module, Debug)]
pub struct BnCnn {
    pub conv: burn::nn::conv::Conv2d,
    pub bn: burn::nn::BatchNorm,
    pub head: burn::nn::Linear,
}

impl BnCnn {
    /// `channels`x`side`x`side` images, 10 classes, weights from `seed`.
    pub fn new(channels: usize, side: usize, seed: u64, dev: &Device) -> Self {
        use burn::module::Module;
        use burn::nn::conv::Conv2dConfig;
        use burn::nn::{BatchNormConfig, LinearConfig, PaddingConfig2d};
        // Weights from the test's own generator (burn's initializers draw from a shared one);
        // BatchNorm keeps its initial scale, shift and running statistics.
        let mut rng = TestRng(seed);
        let conv = Conv2dConfig::new([channels, 8], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(dev)
            .map(&mut Reseed(&mut rng));
        let head = LinearConfig::new(8 * side.div_ceil(2) * side.div_ceil(2), 10)
            .init(dev)
            .map(&mut Reseed(&mut rng));
        Self {
            conv,
            bn: BatchNormConfig::new(8).init(dev),
            head,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn.forward(self.conv.forward(x)));
        self.head.forward(x.flatten(1, 3))
    }
}

impl bulwark_attack_core::Classifier<4> for BnCnn {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        use burn::module::Module;
        self.valid().forward(x)
    }

    fn logits_train_mode(&self, x: Tensor<4>) -> Tensor<2> {
        use burn::module::Module;
        self.clone().train().no_grad().forward(x)
    }
}

/// Replaces every float parameter with uniform values in ±0.3 drawn from the test generator.
struct Reseed<'a>(&'a mut TestRng);

impl burn::module::ModuleMapper for Reseed<'_> {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let rng = &mut *self.0;
        param.map(|t| {
            let shape = t.shape();
            let values: Vec<f32> = (0..shape.num_elements())
                .map(|_| rng.range(-0.3, 0.3) as f32)
                .collect();
            Tensor::<D>::from_data(TensorData::new(values, shape), &t.device())
        })
    }
}
