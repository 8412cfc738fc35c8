//! Host-side helpers: reading tensors back, uploading rows, and row-wise logic on flat logits.
//!
//! A leaf module: it uses burn and the [`Classifier`] trait and nothing else of the crate, so the
//! batch, the attacks, the evaluator and the sanity checks can all share it without depending on
//! one another.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::classifier::Classifier;

/// Reads a float tensor back as f32.
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>()
        .expect("float tensors read back as f32")
}

pub(crate) fn host_i64(t: Tensor<1, Int>) -> Vec<i64> {
    t.try_into_vec_as::<i64>()
        .expect("int tensors read back as i64")
}

pub(crate) fn host_bool(t: Tensor<1, burn::tensor::Bool>) -> Vec<bool> {
    t.try_into_vec_as::<bool>()
        .expect("bool tensors read back as bool")
}

pub(crate) fn upload(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

pub(crate) fn upload_int(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Flat logits of a batch, inference behaviour.
pub(crate) fn logits_host<const D: usize, C: Classifier<D> + ?Sized>(
    model: &C,
    x: Tensor<D>,
) -> Vec<f32> {
    model
        .logits(x)
        .inner()
        .try_into_vec_as::<f32>()
        .expect("float tensors read back as f32")
}

/// Index of the largest value of each row (the first on ties, like `argmax`).
pub(crate) fn argmax_rows(flat: &[f32], k: usize) -> Vec<usize> {
    flat.chunks(k.max(1))
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Rows of `out` (`k` per row) that look like probabilities (in [0, 1], summing to 1 ± 1e-3) and
/// like log-probabilities (all ≤ 0, log-sum-exp 0 ± 1e-3).
pub(crate) fn probability_rows(out: &[f32], k: usize) -> (usize, usize) {
    let (mut probs, mut log_probs) = (0usize, 0usize);
    for row in out.chunks(k.max(1)) {
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        if row.iter().all(|&v| (0.0..=1.0).contains(&v)) && (sum - 1.0).abs() < 1e-3 {
            probs += 1;
        }
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let lse = max
            + row
                .iter()
                .map(|&v| (f64::from(v) - max).exp())
                .sum::<f64>()
                .ln();
        if row.iter().all(|&v| v <= 0.0) && lse.abs() < 1e-3 {
            log_probs += 1;
        }
    }
    (probs, log_probs)
}
