//! The text classifier: shapes, the split at the embeddings, a batch equal to its samples, the
//! classifier of embeddings in inference mode.

use bulwark_attack_core::Classifier;
use bulwark_models::{TextCnn, TextCnnConfig};
use burn::prelude::*;
use burn::tensor::Tolerance;

fn model(device: &Device) -> TextCnn {
    TextCnnConfig::new(50)
        .with_embed_dim(8)
        .with_filters(6)
        .init(device)
}

fn ids(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        [
            [2, 7, 9, 4, 0, 0, 0],
            [3, 3, 1, 49, 5, 6, 0],
            [8, 0, 0, 0, 0, 0, 0],
        ],
        device,
    )
}

#[test]
fn the_forward_pass_equals_the_path_through_the_embeddings() {
    let device = Device::flex();
    let m = model(&device).valid();
    let direct = m.forward(ids(&device));
    assert_eq!(direct.dims(), [3, 2]);
    let embedded = m.embed(ids(&device));
    assert_eq!(embedded.dims(), [3, 7, 8]);
    direct
        .to_data()
        .assert_eq(&m.forward_embedded(embedded).to_data(), true);
    assert_eq!((m.min_len(), m.embed_dim(), m.vocab_size()), (5, 8, 50));
    assert_eq!(m.embedding_table().dims(), [50, 8]);
}

#[test]
fn a_batch_gives_each_sample_its_own_logits() {
    let device = Device::flex();
    let m = model(&device).valid();
    let all = m.forward(ids(&device));
    for i in 0..3 {
        let one = m.forward(ids(&device).narrow(0, i, 1));
        all.clone()
            .narrow(0, i, 1)
            .to_data()
            .assert_approx_eq::<f32>(&one.to_data(), Tolerance::absolute(1e-5));
    }
}

#[test]
fn the_classifier_of_embeddings_runs_in_inference_mode() {
    let device = Device::flex();
    // A model being trained (autodiff device, dropout 0.5 on): dropout acts only on autodiff
    // inputs, so a training-mode forward differs from the inference one.
    let m = model(&device.clone().autodiff());
    let embedded = m.valid().embed(ids(&device));
    let logits = Classifier::<3>::logits(&m, embedded.clone().autodiff());
    let inference = m.valid().forward_embedded(embedded.clone());
    logits
        .inner()
        .to_data()
        .assert_eq(&inference.to_data(), true);
    let train_mode = Classifier::<3>::logits_train_mode(&m, embedded.clone().autodiff());
    let differs = (train_mode.inner() - inference)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(differs > 1e-4, "training behaviour differs: {differs}");
    // Its input gradient exists and reaches every position (padding positions included).
    let leaf = embedded.autodiff().require_grad();
    let loss = Classifier::<3>::logits(&m, leaf.clone()).sum();
    let grads = loss.backward();
    let g = leaf.grad(&grads).expect("input gradient");
    assert_eq!(g.dims(), [3, 7, 8]);
    let nonzero_rows = g
        .abs()
        .sum_dim(2)
        .greater_elem(0.0)
        .int()
        .sum()
        .into_scalar::<i64>();
    assert!(nonzero_rows > 3, "{nonzero_rows}");
}

#[test]
#[should_panic(expected = "kernel_sizes")]
fn an_empty_width_list_is_refused() {
    TextCnnConfig::new(10)
        .with_kernel_sizes(vec![])
        .init(&Device::flex());
}
