//! A convolutional text classifier after Kim (2014), "Convolutional Neural Networks for Sentence
//! Classification": word embeddings, parallel 1-D convolutions of several widths, max-pooling over
//! time, dropout and a linear layer.
//!
//! The forward pass is split at the embeddings, which is where embedding-space adversarial
//! training (FGM, PGD on embeddings, FreeLB) perturbs a text: [`TextCnn::embed`] maps word ids
//! to `[B, L, E]`, and [`TextCnn::forward_embedded`] maps (perturbed) embeddings to logits. Every
//! position of the fixed-length sequence is embedded, padding included (id 0 has a trained
//! vector like any word), so the classifier of embeddings needs nothing but the embeddings: an
//! attack may run it on any subset of a batch.

use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;

/// Configuration of [`TextCnn`].
#[derive(Config, Debug)]
pub struct TextCnnConfig {
    /// Number of word ids (the vocabulary's size, padding and unknown word included).
    pub vocab_size: usize,
    /// Embedding width.
    #[config(default = 64)]
    pub embed_dim: usize,
    /// Widths of the parallel convolutions (Kim: 3, 4, 5).
    #[config(default = "vec![3, 4, 5]")]
    pub kernel_sizes: Vec<usize>,
    /// Feature maps per convolution width.
    #[config(default = 64)]
    pub filters: usize,
    /// Dropout before the last layer (Kim: 0.5).
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Number of classes.
    #[config(default = 2)]
    pub num_classes: usize,
}

/// `Embedding(V, E)`, then per width `k`: `Conv1d(E, F, k)`, ReLU, max over time; the pooled
/// features concatenated, dropout, `Linear(F · widths, classes)`.
///
/// ```
/// use bulwark_models::{TextCnn, TextCnnConfig};
/// use burn::prelude::*;
///
/// let device = Device::flex();
/// let model: TextCnn = TextCnnConfig::new(100).init(&device);
/// let ids = Tensor::<2, Int>::from_data([[5, 7, 9, 0, 0, 0], [3, 3, 2, 1, 0, 0]], &device);
/// let logits = model.forward(ids.clone());
/// assert_eq!(logits.dims(), [2, 2]);
/// // The same through the embeddings, where adversarial training perturbs.
/// let embedded = model.embed(ids);
/// assert_eq!(embedded.dims(), [2, 6, 64]);
/// let again = model.forward_embedded(embedded);
/// assert_eq!(again.dims(), [2, 2]);
/// ```
#[derive(Module, Debug)]
pub struct TextCnn {
    embedding: Embedding,
    convs: Vec<Conv1d>,
    dropout: Dropout,
    fc: Linear,
    relu: Relu,
}

impl TextCnnConfig {
    /// Builds the model with freshly initialized weights on `device`.
    ///
    /// # Panics
    /// If the vocabulary, the embedding width, the filter count or the class count is zero, no
    /// width is given or a width is zero.
    pub fn init(&self, device: &Device) -> TextCnn {
        assert!(
            self.vocab_size > 0 && self.embed_dim > 0 && self.filters > 0 && self.num_classes > 0,
            "TextCnnConfig: vocab_size, embed_dim, filters and num_classes must be positive"
        );
        assert!(
            !self.kernel_sizes.is_empty() && self.kernel_sizes.iter().all(|&k| k > 0),
            "TextCnnConfig: kernel_sizes must be non-empty and positive"
        );
        TextCnn {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim).init(device),
            convs: self
                .kernel_sizes
                .iter()
                .map(|&k| Conv1dConfig::new(self.embed_dim, self.filters, k).init(device))
                .collect(),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: LinearConfig::new(self.filters * self.kernel_sizes.len(), self.num_classes)
                .init(device),
            relu: Relu::new(),
        }
    }
}

impl TextCnn {
    /// The embeddings `[B, L, E]` of word ids `[B, L]`.
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embedding.forward(ids)
    }

    /// Logits `[B, classes]` of embeddings `[B, L, E]`. `L` must be at least the widest
    /// convolution.
    pub fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
        // [B, L, E] -> [B, E, L]: channels first for the convolutions over time.
        let x = embedded.swap_dims(1, 2);
        let pooled: Vec<Tensor<2>> = self
            .convs
            .iter()
            .map(|conv| {
                let h = self.relu.forward(conv.forward(x.clone()));
                h.max_dim(2).squeeze_dim::<2>(2)
            })
            .collect();
        let features = Tensor::cat(pooled, 1);
        self.fc.forward(self.dropout.forward(features))
    }

    /// Logits `[B, classes]` of word ids `[B, L]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.forward_embedded(self.embed(ids))
    }

    /// The widest convolution: the shortest sequence the model accepts.
    pub fn min_len(&self) -> usize {
        self.convs.iter().map(|c| c.kernel_size).max().unwrap_or(1)
    }

    /// Embedding width.
    pub fn embed_dim(&self) -> usize {
        self.embedding.weight.dims()[1]
    }

    /// Number of word ids.
    pub fn vocab_size(&self) -> usize {
        self.embedding.weight.dims()[0]
    }

    /// The embedding table `[V, E]` (its values, untracked).
    pub fn embedding_table(&self) -> Tensor<2> {
        self.embedding.weight.val().detach()
    }
}
