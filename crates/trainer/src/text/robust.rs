//! Clean and embedding-space robust accuracy of a text model: attack-core's L2 attacks on the
//! model of embeddings, in the ball around each text's clean embeddings.

use bulwark_attack_core::{
    ApgdConfig, Attack, AttackOptions, Bounds, FgsmConfig, PgdConfig, TextNetwork, ThreatModel,
};
use bulwark_data::text::TextDataset;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::config::TextEval;
use crate::TrainError;

/// The box handed to attacks on the embeddings `e0` (`[B, L, E]`): their range widened by
/// `eps + 1`. An L2 perturbation of norm at most `eps` moves no coordinate by more than `eps`,
/// so the box contains the ball around every text and never binds: the threat model is the
/// ball alone, whatever the embeddings are (a table lookup, plus positions, ...).
pub fn embedding_bounds(e0: &Tensor<3>, eps: f64) -> Bounds {
    let lo = f64::from(e0.clone().min().into_scalar::<f32>());
    let hi = f64::from(e0.clone().max().into_scalar::<f32>());
    Bounds::new()
        .with_lo(lo - eps - 1.0)
        .with_hi(hi + eps + 1.0)
}

/// Robust accuracies at one radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TextRobustRow {
    /// L2 radius in embedding space.
    pub eps: f64,
    /// Share of texts correct clean and under PGD-L2 (steps, restarts, early stop).
    pub pgd_acc: f64,
    /// Share of texts correct clean and under APGD-CE in L2.
    pub apgd_acc: f64,
    /// Per-text worst case: correct on the clean text and under both attacks. The headline.
    pub worst_acc: f64,
}

/// Clean and robust accuracy of a text model on a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextRobustness {
    /// Texts evaluated.
    pub texts: usize,
    /// Clean accuracy.
    pub clean_acc: f64,
    /// Mean L2 norm of the texts' clean embeddings (the whole `[L, E]` sequence): the scale a
    /// radius is measured against. Radii compare across models only at similar norms; a penalty
    /// on the embedding table shrinks it and so makes every radius relatively larger.
    pub embedding_norm: f64,
    /// One row per radius.
    pub rows: Vec<TextRobustRow>,
}

/// Predicted classes of logits.
fn predictions(logits: Tensor<2>) -> Vec<i64> {
    logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("argmax gives integers")
}

/// Labels as a host vector.
fn host_labels(y: &Tensor<1, Int>) -> Vec<i64> {
    y.to_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("labels are integers")
}

/// Clean accuracy and mean cross-entropy, in inference behaviour.
pub fn text_accuracy<M: TextNetwork>(
    model: &M,
    data: &TextDataset,
    batch_size: usize,
    device: &Device,
) -> (f64, f64) {
    let model = model.valid();
    let (mut correct, mut loss) = (0usize, 0f64);
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        let (ids, y) = data.batch(chunk, device);
        let logits = model.forward(ids);
        let ce = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits.clone(), y.clone());
        loss += f64::from(ce.into_scalar::<f32>()) * chunk.len() as f64;
        correct += crate::fit::hits(logits, y);
    }
    let n = data.len().max(1) as f64;
    (correct as f64 / n, loss / n)
}

/// Which attack an evaluation runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EmbeddingAttack {
    /// One L2-normalized gradient step of length eps.
    Fgm,
    /// PGD-L2 with a random start, `steps`, `restarts` and a step size (`None`: `2.5·eps/steps`).
    Pgd {
        steps: usize,
        restarts: usize,
        step_size: Option<f64>,
    },
    /// APGD-CE in L2, `steps`.
    Apgd { steps: usize },
}

/// Adversarial embeddings of `e0` (plain `[B, L, E]`) under `attack` at radius `eps`.
pub(crate) fn attack_embeddings<M: TextNetwork>(
    model: &M,
    e0: Tensor<3>,
    y: Tensor<1, Int>,
    eps: f64,
    attack: EmbeddingAttack,
    seed: u64,
    early_stop: bool,
) -> Result<Tensor<3>, TrainError> {
    let options = AttackOptions::new()
        .with_bounds(embedding_bounds(&e0, eps))
        .with_seed(seed)
        .with_early_stop(early_stop);
    let threat = ThreatModel::l2(eps);
    let target = model.embedded();
    let adv = match attack {
        EmbeddingAttack::Fgm => FgsmConfig::new(threat)
            .with_options(options)
            .init()?
            .perturb(&target, e0, y)?,
        EmbeddingAttack::Pgd {
            steps,
            restarts,
            step_size,
        } => PgdConfig::new(threat)
            .with_steps(steps)
            .with_step_size(step_size)
            .with_options(options.with_random_start(true).with_restarts(restarts))
            .init()?
            .perturb(&target, e0, y)?,
        EmbeddingAttack::Apgd { steps } => ApgdConfig::new(threat)
            .with_steps(steps)
            .with_options(options.with_random_start(true))
            .init()?
            .perturb(&target, e0, y)?,
    };
    Ok(adv)
}

/// Which texts held under one attack at one radius (inference behaviour): correctly classified
/// both clean and attacked.
pub(crate) fn attacked_accuracy<M: TextNetwork>(
    model: &M,
    data: &TextDataset,
    eps: f64,
    attack: EmbeddingAttack,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<bool>, TrainError> {
    let model = model.valid();
    let mut held = Vec::with_capacity(data.len());
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        let (ids, y) = data.batch(chunk, device);
        let e0 = model.embed(ids);
        let clean = predictions(model.forward_embedded(e0.clone()));
        let adv = attack_embeddings(&model, e0, y.clone(), eps, attack, seed, true)?;
        let labels = host_labels(&y);
        let attacked = predictions(model.forward_embedded(adv));
        held.extend((0..labels.len()).map(|i| clean[i] == labels[i] && attacked[i] == labels[i]));
    }
    Ok(held)
}

/// Clean accuracy and, per radius of `eval.eps`, PGD-L2 (`eval.steps`, `eval.restarts`),
/// APGD-CE-L2 (`eval.steps`) and the per-text worst case over both and the clean prediction.
pub fn text_robustness<M: TextNetwork>(
    model: &M,
    data: &TextDataset,
    eval: &TextEval,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<TextRobustness, TrainError> {
    let (eps, steps, restarts) = (&eval.eps, eval.steps, eval.restarts);
    let model = model.valid();
    let n = data.len();
    let mut clean = Vec::with_capacity(n);
    let mut norm_sum = 0f64;
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        let (ids, y) = data.batch(chunk, device);
        let labels = host_labels(&y);
        let e0 = model.embed(ids);
        let norms = e0.clone().powf_scalar(2.0).sum_dim(2).sum_dim(1).sqrt();
        norm_sum += f64::from(norms.sum().into_scalar::<f32>());
        clean.extend(
            predictions(model.forward_embedded(e0))
                .iter()
                .zip(&labels)
                .map(|(p, l)| p == l),
        );
    }
    let share = |held: &[bool]| held.iter().filter(|&&h| h).count() as f64 / n.max(1) as f64;
    let mut rows = Vec::with_capacity(eps.len());
    for &r in eps {
        let pgd = attacked_accuracy(
            &model,
            data,
            r,
            EmbeddingAttack::Pgd {
                steps,
                restarts,
                step_size: None,
            },
            batch_size,
            seed,
            device,
        )?;
        let apgd = attacked_accuracy(
            &model,
            data,
            r,
            EmbeddingAttack::Apgd { steps },
            batch_size,
            seed,
            device,
        )?;
        let worst: Vec<bool> = (0..n).map(|i| pgd[i] && apgd[i]).collect();
        rows.push(TextRobustRow {
            eps: r,
            pgd_acc: share(&pgd),
            apgd_acc: share(&apgd),
            worst_acc: share(&worst),
        });
    }
    Ok(TextRobustness {
        texts: n,
        clean_acc: share(&clean),
        embedding_norm: norm_sum / n.max(1) as f64,
        rows,
    })
}
