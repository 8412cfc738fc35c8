//! The zoo's models as attack targets and trainable networks: [`Classifier`] and [`Network`] for
//! [`Model`], [`TextNetwork`] for [`TextCnn`].

use bulwark_attack_core::{Classifier, Interval, Network, TextNetwork};
use burn::module::Module;
use burn::tensor::{Int, Tensor};

use crate::text_cnn::TextCnn;
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

impl Network for Model {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        Model::forward(self, x)
    }

    fn sync_running_stats(&self) {
        Model::sync_running_stats(self);
    }

    /// The zoo's PyTorch names: the path below the enum variant, renamed per model.
    fn state_dict_key(&self, path: &[String], container: &str) -> String {
        self.info().torch_key(&path[1.min(path.len())..], container)
    }

    fn architecture(&self) -> String {
        self.name().to_string()
    }

    fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Option<Tensor<2>> {
        Model::margin_bounds(self, x, y)
    }
}

/// A WideResNet of any depth and width, outside the zoo's two named ones, exports with the
/// RobustBench state-dict keys too.
impl Network for crate::WideResNet {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        crate::WideResNet::forward(self, x)
    }

    fn sync_running_stats(&self) {
        crate::WideResNet::sync_running_stats(self);
    }

    fn state_dict_key(&self, path: &[String], container: &str) -> String {
        bulwark_attack_core::default_state_dict_key(path, container)
            .replace("conv_shortcut", "convShortcut")
    }

    fn architecture(&self) -> String {
        format!("wrn-{}-{}", self.depth(), self.widen_factor())
    }
}

/// The text model as an attack target on its embeddings `[B, L, E]`: attacks in embedding space
/// (the ball around the clean embeddings) run on it like on images.
impl Classifier<3> for TextCnn {
    fn logits(&self, embedded: Tensor<3>) -> Tensor<2> {
        self.valid().forward_embedded(embedded)
    }

    fn logits_train_mode(&self, embedded: Tensor<3>) -> Tensor<2> {
        self.clone().train().no_grad().forward_embedded(embedded)
    }
}

/// The text model for the text trainer and its evaluation (`bulwark_trainer::text`).
impl TextNetwork for TextCnn {
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        TextCnn::embed(self, ids)
    }

    fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
        TextCnn::forward_embedded(self, embedded)
    }

    fn architecture(&self) -> String {
        "text-cnn".to_string()
    }
}
