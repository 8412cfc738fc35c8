//! Attacking given rows for the probes, and the worst-case inputs saved to disk and re-classified from there.

use std::path::Path;

use bulwark_attack_core::{Attack, AttackConfig, Classifier, within_threat};
use bulwark_data::ImageDataset;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::atomic::write_atomic;
use crate::error::EvalError;
use crate::robust::RobustEvalConfig;

/// Attacks the rows `rows` of `data` with `attack`; returns each row whose result the model
/// misclassifies and that lies inside the attack's threat model and the box, with that result.
pub(super) fn broken_rows<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    rows: &[usize],
    attack: &AttackConfig,
    config: &RobustEvalConfig,
    device: &Device,
) -> Result<Vec<(usize, Vec<f32>)>, EvalError> {
    let attack = attack.init()?;
    let threat = attack.threat();
    let n_pixels = data.image_size();
    let mut broken = Vec::new();
    for part in rows.chunks(config.batch_size.max(1)) {
        let (x, y) = data.batch(part, device);
        let labels: Vec<i64> = y.clone().try_into_vec_as::<i64>().expect("int labels");
        let clean: Vec<f32> = x.clone().try_into_vec_as::<f32>().expect("f32 images");
        let adv = attack.perturb(model, x, y)?;
        let b = part.len();
        let adv_host: Vec<f32> = adv.clone().try_into_vec_as::<f32>().expect("f32 images");
        let pred: Vec<i64> = model
            .logits(adv)
            .argmax(1)
            .reshape([b])
            .try_into_vec_as::<i64>()
            .expect("argmax reads back as i64");
        for (j, &row) in part.iter().enumerate() {
            let r = j * n_pixels..(j + 1) * n_pixels;
            let inside = threat.is_none_or(|t| {
                within_threat(
                    t.norm,
                    t.eps,
                    (config.bounds.lo, config.bounds.hi),
                    &clean[r.clone()],
                    &adv_host[r.clone()],
                )
            });
            if pred[j] != labels[j] && inside {
                broken.push((row, adv_host[r].to_vec()));
            }
        }
    }
    Ok(broken)
}

/// `adversarial.safetensors`: `x_adv` `[N, C, H, W]` f32 (the worst case per image; the clean
/// image where the model is robust) and `labels` `[N]` i64.
pub(super) fn save_adversarial(
    path: &Path,
    adv: &[f32],
    labels: &[i64],
    data: &ImageDataset,
) -> Result<(), EvalError> {
    let n = labels.len();
    let x_bytes: Vec<u8> = adv.iter().flat_map(|v| v.to_le_bytes()).collect();
    let y_bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let err = |e: safetensors::SafeTensorError| EvalError::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let x = TensorView::new(
        Dtype::F32,
        vec![n, data.channels, data.height, data.width],
        &x_bytes,
    )
    .map_err(err)?;
    let y = TensorView::new(Dtype::I64, vec![n], &y_bytes).map_err(err)?;
    let bytes = safetensors::serialize([("x_adv", x), ("labels", y)], &None).map_err(err)?;
    write_atomic(path, &bytes)
}

/// Reloads `adversarial.safetensors` and counts the inputs the model classifies correctly.
pub(super) fn recompute_correct<C: Classifier<4> + ?Sized>(
    model: &C,
    path: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<usize, EvalError> {
    let bytes = std::fs::read(path).map_err(EvalError::io(path))?;
    let bad = |reason: String| EvalError::State {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let x = st.tensor("x_adv").map_err(|e| bad(e.to_string()))?;
    let y = st.tensor("labels").map_err(|e| bad(e.to_string()))?;
    let shape = x.shape().to_vec();
    if shape.len() != 4 || x.dtype() != Dtype::F32 || y.dtype() != Dtype::I64 {
        return Err(bad("unexpected tensor layout".into()));
    }
    let n = shape[0];
    let per = shape[1] * shape[2] * shape[3];
    let xs: Vec<f32> = x
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let ys: Vec<i64> = y
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let mut correct = 0;
    for start in (0..n).step_by(batch_size.max(1)) {
        let b = batch_size.min(n - start);
        let t: Tensor<4> = Tensor::from_data(
            TensorData::new(
                xs[start * per..(start + b) * per].to_vec(),
                [b, shape[1], shape[2], shape[3]],
            ),
            device,
        );
        let pred: Vec<i64> = model
            .logits(t)
            .argmax(1)
            .reshape([b])
            .try_into_vec_as::<i64>()
            .expect("argmax reads back as i64");
        correct += pred
            .iter()
            .zip(&ys[start..start + b])
            .filter(|(p, y)| p == y)
            .count();
    }
    Ok(correct)
}
