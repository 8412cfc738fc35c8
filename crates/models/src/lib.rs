//! Bulwark's model zoo.
//!
//! The architectures that the adversarial-robustness literature reports numbers for, each as a
//! burn [`Module`](burn::module::Module) with a [`Config`](burn::config::Config), collected in one
//! [`Model`] enum so that the trainer, the CLI and checkpoints can pick a model by name:
//!
//! | name | input | reference |
//! |---|---|---|
//! | `seed-mlp` | 10 | the seed's regularization example (two linear layers, no activation) |
//! | `seed-net` | 3x32x32 | the seed's CNN (the PyTorch CIFAR-10 tutorial net) |
//! | `mlp` | 1x28x28 | 784-256-256-10 with ReLU |
//! | `small-cnn` | 1x28x28 | Wong, Rice & Kolter (2020), MNIST |
//! | `madry-cnn` | 1x28x28 | Madry et al. (2018), MNIST |
//! | `preact-resnet18` | 3x32x32 | He et al. (2016); as used by Wong et al. (2020) and Rice et al. (2020) |
//!
//! Models take images in the valid box `[0, 1]`; any input normalization lives inside the model.
//!
//! The text classifier [`TextCnn`] (Kim 2014: word embeddings, 1-D convolutions of widths 3, 4, 5,
//! max-pooling over time) takes word ids `[B, L]` and is split at its embeddings
//! ([`TextCnn::embed`], [`TextCnn::forward_embedded`]), where embedding-space adversarial training
//! perturbs; as an attack target it is a `Classifier<3>` on embeddings `[B, L, E]`.
//! Weights load from and save to safetensors files in PyTorch's layout ([`torch`]), with the
//! tensor names of the equivalent PyTorch definitions written out in `docs/models.md`.
//! [`forward_flops`] gives each model's analytic FLOP count per image (for throughput reports).

mod batch_norm;
pub mod bpk;
mod classifier;
mod drop_path;
mod error;
mod flops;
mod madry_cnn;
mod mlp;
mod preact_resnet;
mod seed;
mod small_cnn;
mod text_cnn;
pub mod torch;
mod wide_resnet;
mod zoo;

pub use batch_norm::batch_norm_folded;
pub use drop_path::DropPath;
pub use error::ModelError;
pub use flops::{ConvShape, conv_shapes, forward_flops};
pub use madry_cnn::{MadryCnn, MadryCnnConfig};
pub use mlp::{Mlp, MlpConfig};
pub use preact_resnet::{PreActBlock, PreActResNet18, PreActResNet18Config};
pub use seed::{SeedMlp, SeedMlpConfig, SeedNet, SeedNetConfig};
pub use small_cnn::{SmallCnn, SmallCnnConfig};
pub use text_cnn::{TextCnn, TextCnnConfig};
pub use wide_resnet::{WideBlock, WideResNet, WideResNetConfig, WideStage};
pub use zoo::{
    ArchOptions, Model, ModelInfo, init_seeded_with, model_info, models, seed_device,
    with_seeded_device,
};
