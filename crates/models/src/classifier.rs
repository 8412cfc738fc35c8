//! The zoo's models as attack targets: [`Classifier`] for [`Model`].

use bulwark_attack_core::Classifier;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::zoo::Model;

impl Classifier<4> for Model {
    /// `valid()` gives plain (untracked) parameters and switches BatchNorm and dropout to
    /// inference; it maps the parameters without copying their data.
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.valid().forward(x)
    }

    /// Training behaviour with untracked parameters: like PyTorch's `model.train()`, BatchNorm
    /// normalizes with the batch statistics and updates its running statistics.
    fn logits_train_mode(&self, x: Tensor<4>) -> Tensor<2> {
        self.clone().train().no_grad().forward(x)
    }
}
