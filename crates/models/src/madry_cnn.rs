//! The MNIST network of Madry et al. (2018), "Towards deep learning models resistant to
//! adversarial attacks".

use bulwark_attack_core::Interval;
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
        // Pooling before the ReLU: max pooling commutes with the (monotone) ReLU, values and
        // gradients alike (the window's first maximum is the same index either way, and a
        // window with no positive value passes no gradient in both orders), and the ReLU
        // and its backward pass then touch a quarter of the elements.
        let x = self.relu.forward(self.pool.forward(self.conv1.forward(x)));
        let x = self.relu.forward(self.pool.forward(self.conv2.forward(x)));
        let x = x.flatten::<2>(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        self.fc2.forward(x)
    }

    /// Interval bound propagation of [`MadryCnn::forward`] (see [`Interval::margins`]).
    pub fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Tensor<2> {
        let pool = |t: Tensor<4>| self.pool.forward(t);
        let h = x.conv2d(&self.conv1).map_monotone(pool).relu();
        let h = h.conv2d(&self.conv2).map_monotone(pool).relu();
        let h = h.flatten::<2>(1, 3).linear(&self.fc1).relu();
        h.margins(&self.fc2, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// The ReLU-then-pool order of the paper, for comparison.
    fn paper_order(m: &MadryCnn, x: Tensor<4>) -> Tensor<2> {
        let x = m.pool.forward(m.relu.forward(m.conv1.forward(x)));
        let x = m.pool.forward(m.relu.forward(m.conv2.forward(x)));
        let x = x.flatten::<2>(1, 3);
        m.fc2.forward(m.relu.forward(m.fc1.forward(x)))
    }

    /// Logits and input gradient of `sum(logits · r)`.
    fn run(x: &[f32], r: &[f32], f: impl Fn(Tensor<4>) -> Tensor<2>) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex();
        let xa = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [4, 1, 28, 28]), &device)
            .autodiff()
            .require_grad();
        let logits = f(xa.clone());
        let ra = Tensor::<2>::from_data(TensorData::new(r.to_vec(), [4, 10]), &device).autodiff();
        let grads = (logits.clone() * ra).sum().backward();
        let dx = xa.grad(&grads).expect("input gradient");
        let host = |d: TensorData| d.try_to_vec::<f32>().expect("f32");
        (host(logits.inner().into_data()), host(dx.into_data()))
    }

    /// Pooling before the ReLU gives the paper order's logits and input gradient bit for bit
    /// (random weights leave many windows with no positive value, whose gradient is zero).
    #[test]
    fn pool_then_relu_matches_the_paper_order_exactly() {
        let device = Device::flex();
        let m = MadryCnnConfig::new().init(&device);
        let x: Vec<f32> = (0..4 * 784)
            .map(|i| ((i * 7919) % 1000) as f32 / 999.0)
            .collect();
        let r: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let (logits, dx) = run(&x, &r, |x| m.forward(x));
        let (want_logits, want_dx) = run(&x, &r, |x| paper_order(&m, x));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&logits), bits(&want_logits), "logits");
        assert!(
            dx.iter().any(|&g| g != 0.0),
            "the gradient reaches the input"
        );
        assert_eq!(bits(&dx), bits(&want_dx), "input gradient");
    }
}
