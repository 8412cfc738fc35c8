//! Training methods for text: standard training and embedding-space adversarial training.
//!
//! | method | perturbation of the embeddings `e` (L2, over the whole `[L, E]` sequence) | objective |
//! |---|---|---|
//! | `standard` | none | `CE(f(e), y)` |
//! | `fgm` (Miyato, Dai & Goodfellow 2017) | `r = eps · g / ‖g‖₂`, `g = ∇ₑ CE(f(e), y)` | `(1 − w)·CE(f(e), y) + w·CE(f(e + r), y)` |
//! | `pgd` (Madry et al. 2018 on embeddings) | `steps` L2 PGD steps in the eps-ball from a random start | as `fgm` |
//! | `freelb` (Zhu et al. 2020) | `δ₀ ~ U(−σ, σ)^{L·E} / √(L·E)`, then `δₜ = Π_eps(δₜ₋₁ + α·g/‖g‖₂)` | `(1/K) Σₜ CE(f(e + δₜ₋₁), y)`, parameter gradients accumulated over the `K` ascent steps, one optimizer step |
//!
//! FGM and PGD craft their perturbation with attack-core's FGSM and PGD in the L2 geometry on the
//! model of embeddings (`Classifier<3>`, inference behaviour, untracked parameters), so that
//! every perturbation is exactly inside the ball; the gradient of the objective then reaches the
//! embedding table through `e` (the perturbation is a constant). FreeLB ascends in training
//! behaviour, as its reference code does, and keeps each `δₜ` in the ball (`eps` > 0).
//! Label smoothing replaces every target; penalties are added once per optimizer step.

use serde::{Deserialize, Serialize};

fn three() -> usize {
    3
}

/// How a text model is trained; radii are L2 norms in embedding space over the whole sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TextMethod {
    /// Cross-entropy of the clean texts.
    Standard,
    /// Fast gradient method (Miyato et al. 2017): one L2-normalized gradient step of length eps.
    Fgm {
        /// L2 radius.
        eps: f64,
    },
    /// PGD on the embeddings.
    Pgd {
        /// L2 radius.
        eps: f64,
        /// Steps.
        #[serde(default = "three")]
        steps: usize,
        /// Step size; `None`: `2.5·eps/steps`.
        #[serde(default)]
        step_size: Option<f64>,
    },
    /// FreeLB (Zhu et al. 2020).
    Freelb {
        /// L2 radius of `δ` (projection after every ascent step).
        eps: f64,
        /// Ascent steps `K` per batch.
        #[serde(default = "three")]
        steps: usize,
        /// Ascent step size `α`.
        step_size: f64,
        /// Magnitude `σ` of the uniform start (0 starts at `δ = 0`).
        #[serde(default)]
        init_mag: f64,
    },
}

impl TextMethod {
    /// The method's name in configurations.
    pub fn name(&self) -> &'static str {
        match self {
            TextMethod::Standard => "standard",
            TextMethod::Fgm { .. } => "fgm",
            TextMethod::Pgd { .. } => "pgd",
            TextMethod::Freelb { .. } => "freelb",
        }
    }

    /// The training radius, for adversarial methods.
    pub fn eps(&self) -> Option<f64> {
        match *self {
            TextMethod::Standard => None,
            TextMethod::Fgm { eps }
            | TextMethod::Pgd { eps, .. }
            | TextMethod::Freelb { eps, .. } => Some(eps),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{} {name} must be > 0, got {v}", self.name()))
            }
        };
        match *self {
            TextMethod::Standard => Ok(()),
            TextMethod::Fgm { eps } => positive("eps", eps),
            TextMethod::Pgd {
                eps,
                steps,
                step_size,
            } => {
                positive("eps", eps)?;
                if steps == 0 {
                    return Err("pgd steps must be at least 1".into());
                }
                step_size.map_or(Ok(()), |a| positive("step_size", a))
            }
            TextMethod::Freelb {
                eps,
                steps,
                step_size,
                init_mag,
            } => {
                positive("eps", eps)?;
                positive("step_size", step_size)?;
                if steps == 0 {
                    return Err("freelb steps must be at least 1".into());
                }
                if !(init_mag.is_finite() && init_mag >= 0.0) {
                    return Err(format!("freelb init_mag must be >= 0, got {init_mag}"));
                }
                Ok(())
            }
        }
    }
}
