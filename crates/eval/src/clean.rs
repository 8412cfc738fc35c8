//! Clean evaluation of a classifier on a dataset.

use bulwark_attack_core::Classifier;
use bulwark_data::{ImageDataset, epoch_batches};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// Accuracy and loss of a model on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Number of samples evaluated.
    pub n: usize,
    /// Correctly classified samples.
    pub correct: usize,
    /// Fraction correct.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Per class: (correct, total).
    pub per_class: Vec<(usize, usize)>,
    /// Predicted class of every sample, in order (not written to reports).
    #[serde(skip)]
    pub predictions: Vec<usize>,
}

/// Evaluates `model` in inference mode ([`Classifier::logits`]: BatchNorm running statistics,
/// no dropout) on every sample of `data`, in order, with plain (untracked) inputs.
///
/// Any classifier: a zoo `Model`, a user's network through
/// [`Network::classifier`](bulwark_attack_core::Network::classifier), or a closure.
pub fn evaluate<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    batch_size: usize,
    device: &Device,
) -> EvalResult {
    let device = device.clone().inner();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut per_class = vec![(0usize, 0usize); data.num_classes];
    let mut predictions = Vec::with_capacity(data.len());
    let (mut correct, mut loss_sum) = (0usize, 0f64);
    for indices in epoch_batches(data.len(), batch_size, false, 0, 0) {
        let (x, y) = data.batch(&indices, &device);
        let logits = model.logits(x);
        let loss = ce.forward(logits.clone(), y.clone()).into_scalar::<f32>();
        loss_sum += f64::from(loss) * indices.len() as f64;
        let pred = logits.argmax(1).flatten::<1>(0, 1);
        let pred: Vec<i64> = pred
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("i64 after convert");
        for (&i, p) in indices.iter().zip(pred) {
            let p = p as usize;
            predictions.push(p);
            let label = usize::from(data.labels[i]);
            per_class[label].1 += 1;
            if p == label {
                per_class[label].0 += 1;
                correct += 1;
            }
        }
    }
    let n = data.len();
    EvalResult {
        n,
        correct,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        loss: if n == 0 { 0.0 } else { loss_sum / n as f64 },
        per_class,
        predictions,
    }
}
