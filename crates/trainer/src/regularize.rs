//! The regularizers of a training run, built from the configuration: penalties added to every
//! objective, constraints and a spectral bound applied after every optimizer step, label
//! smoothing and mixup/cutmix on the targets.

use std::collections::HashMap;

use bulwark_attack_core::rng::SplitMix64;
use bulwark_reg_core::{
    Constraint, MixSampler, Penalty, SpectralBound, cutmix, mix, smooth_labels, soft_cross_entropy,
};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};

use crate::specs::Mixing;
use crate::{TrainConfig, TrainError};

/// Training targets of a batch: the hard labels, and soft targets when smoothing or mixing.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    pub hard: Tensor<1, Int>,
    pub soft: Option<Tensor<2>>,
}

impl Targets {
    /// Cross-entropy of `logits` against these targets (mean over the batch).
    pub fn cross_entropy(&self, logits: Tensor<2>) -> Tensor<1> {
        match &self.soft {
            Some(soft) => {
                let soft = if logits.is_autodiff() {
                    soft.clone().autodiff()
                } else {
                    soft.clone()
                };
                soft_cross_entropy(logits, soft)
            }
            None => {
                let hard = if logits.is_autodiff() {
                    self.hard.clone().autodiff()
                } else {
                    self.hard.clone()
                };
                CrossEntropyLossConfig::new()
                    .init(&logits.device())
                    .forward(logits, hard)
            }
        }
    }
}

/// The regularizers of one run, with the state that persists across steps (the spectral bound's
/// power-iteration vectors).
pub(crate) struct Regularizers {
    penalties: Vec<Penalty>,
    constraints: Vec<Constraint>,
    spectral: Option<SpectralBound>,
    label_smoothing: f64,
    mixing: Mixing,
    classes: usize,
}

impl Regularizers {
    pub fn new(cfg: &TrainConfig, classes: usize) -> Self {
        let spectral = cfg.spectral_bound.as_ref().map(|s| {
            let mut b = SpectralBound::new(s.max);
            b.iterations = s.iterations;
            b.selection = s.select.clone();
            b
        });
        Self {
            penalties: cfg.penalties.clone(),
            constraints: cfg.constraints.clone(),
            spectral,
            label_smoothing: cfg.label_smoothing,
            mixing: cfg.mixing.clone(),
            classes,
        }
    }

    /// Checks every selection against the model (an empty one is an error) and the settings.
    pub fn check<M: Module>(&self, model: &M) -> Result<(), TrainError> {
        for p in &self.penalties {
            p.loss(&model.valid())?;
        }
        for c in &self.constraints {
            c.selection.resolve(model)?;
        }
        if let Some(s) = &self.spectral {
            s.selection.resolve(model)?;
        }
        Ok(())
    }

    /// Sum of the penalties on the model's graph (`None` without penalties).
    pub fn penalty<M: Module>(&self, model: &M) -> Result<Option<Tensor<1>>, TrainError> {
        let mut total: Option<Tensor<1>> = None;
        for p in &self.penalties {
            let term = p.loss(model)?;
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        Ok(total)
    }

    /// Constraints and the spectral bound, after an optimizer step taken with rate `lr`.
    pub fn after_step<M: Module>(&mut self, mut model: M, lr: f64) -> Result<M, TrainError> {
        for c in &self.constraints {
            model = c.apply(model, lr)?;
        }
        if let Some(s) = &mut self.spectral {
            model = s.apply(model)?;
        }
        Ok(model)
    }

    /// The spectral bound's power-iteration vectors, for the checkpoint.
    pub fn spectral_state(&self) -> HashMap<String, Vec<f64>> {
        self.spectral
            .as_ref()
            .map(|s| s.vectors().clone())
            .unwrap_or_default()
    }

    /// Restores the vectors saved by [`Regularizers::spectral_state`].
    pub fn restore_spectral(&mut self, vectors: HashMap<String, Vec<f64>>) {
        if let Some(s) = &mut self.spectral {
            s.set_vectors(vectors);
        }
    }

    /// Whether the batch's targets are soft.
    pub fn mixes(&self) -> bool {
        self.mixing != Mixing::None
    }

    /// The targets of labels `y` (smoothed when configured).
    pub fn targets(&self, y: Tensor<1, Int>) -> Result<Targets, TrainError> {
        let soft = if self.label_smoothing > 0.0 || self.mixes() {
            Some(smooth_labels(
                y.clone(),
                self.classes,
                self.label_smoothing,
            )?)
        } else {
            None
        };
        Ok(Targets { hard: y, soft })
    }

    /// A per-batch mixing draw; `None` without mixing. Seeded by the run seed, epoch and batch so
    /// that a resumed run draws the same.
    pub fn draw(&self, batch: usize, h: usize, w: usize, seed: u64) -> Option<MixDraw> {
        let alpha = match self.mixing {
            Mixing::None => return None,
            Mixing::Mixup { alpha } | Mixing::Cutmix { alpha } => alpha,
        };
        let mut s = MixSampler::new(alpha, SplitMix64::new(seed).next_u64())
            .expect("alpha validated with the config");
        let lambda = s.lambda();
        let perm = s.permutation(batch);
        let cut = matches!(self.mixing, Mixing::Cutmix { .. }).then(|| s.cut_box(lambda, h, w));
        Some(MixDraw { lambda, perm, cut })
    }
}

/// One batch's mixing: `λ`, the permutation and (cutmix) the box.
#[derive(Debug, Clone)]
pub(crate) struct MixDraw {
    lambda: f64,
    perm: Vec<usize>,
    cut: Option<bulwark_reg_core::CutBox>,
}

impl MixDraw {
    /// Mixup of inputs of any rank (text embeddings `[B, L, E]`) and their soft targets; `None`
    /// for a CutMix draw, which cuts a box out of images.
    pub fn mixup<const D: usize>(
        &self,
        x: Tensor<D>,
        targets: &Targets,
    ) -> Result<Option<(Tensor<D>, Targets)>, TrainError> {
        if self.cut.is_some() {
            return Ok(None);
        }
        let soft = targets
            .soft
            .clone()
            .expect("mixing always makes soft targets");
        Ok(Some((
            mix(x, self.lambda, &self.perm)?,
            Targets {
                hard: targets.hard.clone(),
                soft: Some(mix(soft, self.lambda, &self.perm)?),
            },
        )))
    }

    /// Mixes inputs and soft targets with this draw.
    pub fn apply(
        &self,
        x: Tensor<4>,
        targets: &Targets,
    ) -> Result<(Tensor<4>, Targets), TrainError> {
        let soft = targets
            .soft
            .clone()
            .expect("mixing always makes soft targets");
        let (x, soft) = match self.cut {
            Some(cut) => {
                let (x, t, _) = cutmix(x, soft, &self.perm, cut)?;
                (x, t)
            }
            None => (
                mix(x, self.lambda, &self.perm)?,
                mix(soft, self.lambda, &self.perm)?,
            ),
        };
        Ok((
            x,
            Targets {
                hard: targets.hard.clone(),
                soft: Some(soft),
            },
        ))
    }
}
