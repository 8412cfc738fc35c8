//! What text training and evaluation need from a model: [`TextNetwork`], a burn module that
//! classifies word-id sequences through their embeddings.

use burn::module::Module;
use burn::tensor::{Int, Tensor};

use crate::Classifier;

/// A burn [`Module`] that classifies word-id sequences `[B, L]` in two stages, split where
/// embedding-space adversarial training perturbs a text: [`TextNetwork::embed`] maps the ids to
/// embeddings `[B, L, E]`, and [`TextNetwork::forward_embedded`] maps (perturbed) embeddings to
/// logits `[B, classes]`.
///
/// Both methods run with the module's own behaviour (dropout on after `train()` on an autodiff
/// device, off after `valid()`); the trainer and the evaluator switch modes themselves. What the
/// embeddings are is the module's choice (a table lookup, plus positions, a frozen pretrained
/// table): attacks perturb whatever `embed` returns, in the L2 ball around it.
///
/// `forward_embedded` must treat each text on its own (no batch statistics in inference), so
/// that an attack may run it on any subset of a batch.
///
/// A text network is an attack target on its embeddings through [`TextNetwork::embedded`].
/// `bulwark_models::TextCnn` implements it; so does any module written like this:
///
/// ```
/// use bulwark_attack_core::{Attack, PgdConfig, TextNetwork, ThreatModel};
/// use burn::module::Module;
/// use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
/// use burn::tensor::{Device, Int, Tensor};
///
/// /// Mean of the word embeddings, then a linear layer (fastText's classifier).
/// #[derive(Module, Debug)]
/// struct MeanBag {
///     embedding: Embedding,
///     fc: Linear,
/// }
///
/// impl TextNetwork for MeanBag {
///     fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
///         self.embedding.forward(ids)
///     }
///     fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
///         self.fc.forward(embedded.mean_dim(1).squeeze_dim::<2>(1))
///     }
/// }
///
/// let device = Device::flex();
/// let net = MeanBag {
///     embedding: EmbeddingConfig::new(50, 8).init(&device),
///     fc: LinearConfig::new(8, 2).init(&device),
/// };
/// let ids = Tensor::<2, Int>::from_data([[3, 4, 5, 0], [7, 7, 1, 0]], &device);
/// let y = Tensor::<1, Int>::from_data([0, 1], &device);
/// assert_eq!(net.forward(ids.clone()).dims(), [2, 2]);
///
/// // PGD in the L2 ball of radius 0.5 around the texts' embeddings; the box must contain the
/// // ball (here it is wide enough never to bind).
/// let e0 = net.embed(ids);
/// let pgd = PgdConfig::new(ThreatModel::l2(0.5))
///     .with_options(bulwark_attack_core::AttackOptions::new().with_bounds(
///         bulwark_attack_core::Bounds::new().with_lo(-10.0).with_hi(10.0),
///     ))
///     .init()?;
/// let adv = pgd.perturb(&net.embedded(), e0.clone(), y)?;
/// let moved = (adv - e0).powf_scalar(2.0).sum_dim(2).sum_dim(1).sqrt().max();
/// assert!(moved.into_scalar::<f32>() <= 0.5 + 1e-6);
/// # Ok::<(), bulwark_attack_core::AttackError>(())
/// ```
pub trait TextNetwork: Module + 'static {
    /// The embeddings `[B, L, E]` of word ids `[B, L]`, with the module's current behaviour and
    /// parameter tracking (training reaches the embedding table through them).
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3>;

    /// Logits `[B, classes]` of embeddings `[B, L, E]`, with the module's current behaviour and
    /// parameter tracking.
    fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2>;

    /// Logits of word ids: `forward_embedded(embed(ids))`.
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.forward_embedded(self.embed(ids))
    }

    /// A short name of the architecture, for checkpoints and reports. The default is the type's
    /// name without its module path.
    fn architecture(&self) -> String {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base).to_string()
    }

    /// The classifier of embeddings as an attack target: inference behaviour, untracked
    /// parameters.
    fn embedded(&self) -> EmbeddedClassifier<'_, Self>
    where
        Self: Sized,
    {
        EmbeddedClassifier(self)
    }
}

/// A [`TextNetwork`]'s classifier of embeddings `[B, L, E]` seen as a [`Classifier`] (see
/// [`TextNetwork::embedded`]).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedClassifier<'a, N>(&'a N);

impl<N: TextNetwork> Classifier<3> for EmbeddedClassifier<'_, N> {
    /// `valid()` maps the parameters to plain tensors without copying their data and switches
    /// dropout to inference.
    fn logits(&self, embedded: Tensor<3>) -> Tensor<2> {
        self.0.valid().forward_embedded(embedded)
    }

    /// Training behaviour (dropout on) with untracked parameters.
    fn logits_train_mode(&self, embedded: Tensor<3>) -> Tensor<2> {
        self.0.clone().train().no_grad().forward_embedded(embedded)
    }
}
