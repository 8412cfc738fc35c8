//! The regularization settings of a training configuration: mixing, a spectral bound and
//! adversarial weight perturbation (the configuration's own types; `regularize.rs` builds them).

use bulwark_reg_core::{ParamSelection, WeightPerturbation};
use serde::{Deserialize, Serialize};

/// Mixup or cutmix of each training batch (after adversarial examples are crafted, except for
/// TRADES, whose KL term needs no labels and is taken around the mixed input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Mixing {
    /// No mixing.
    None,
    /// Mixup (Zhang et al. 2018) with `λ ~ Beta(alpha, alpha)`.
    Mixup {
        /// Beta parameter (> 0).
        alpha: f64,
    },
    /// CutMix (Yun et al. 2019) with `λ ~ Beta(alpha, alpha)`.
    Cutmix {
        /// Beta parameter (> 0).
        alpha: f64,
    },
}

/// A spectral-norm bound on the selected weights (see `bulwark_reg_core::SpectralBound`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpectralSpec {
    /// Bound on each weight's largest singular value.
    pub max: f64,
    /// Power-iteration steps per optimizer step (default 1).
    #[serde(default = "one")]
    pub iterations: usize,
    /// The weights it covers (default: every weight).
    #[serde(default)]
    pub select: ParamSelection,
}

fn one() -> usize {
    1
}

/// Adversarial weight perturbation (AWP, Wu et al. 2020; see
/// `bulwark_reg_core::WeightPerturbation`), an add-on to the adversarial methods: each step's
/// loss gradient is taken at weights moved by `gamma`·‖w‖ along the loss gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwpSpec {
    /// Relative size γ in (0, 1] (Wu et al.: 0.01 with PGD-AT, 0.005 with TRADES).
    pub gamma: f64,
    /// Epochs trained without it first (default 0).
    #[serde(default)]
    pub warmup_epochs: usize,
    /// The perturbed weights (default: every weight).
    #[serde(default)]
    pub select: ParamSelection,
}

impl AwpSpec {
    /// The reg-core settings.
    pub fn perturbation(&self) -> WeightPerturbation {
        WeightPerturbation::new(self.gamma).with_selection(self.select.clone())
    }

    /// Whether AWP is on in `epoch` (0-based).
    pub fn active(&self, epoch: usize) -> bool {
        epoch >= self.warmup_epochs
    }
}

/// The input-gradient penalty `λ · mean_b ‖∇ₓ ℓ(x_b)‖²` on each training batch's clean inputs
/// (Drucker & LeCun 1992; Ross & Doshi-Velez 2018; see
/// `bulwark_reg_core::input_gradient_penalty`, a finite difference of step `h` along the
/// normalized input gradient). The loss it differentiates is the cross-entropy against the hard
/// labels, with the network in inference behaviour (BatchNorm on running statistics, no dropout)
/// so that its three evaluations compute one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputGradientSpec {
    /// Strength λ (> 0).
    pub lambda: f64,
    /// Finite-difference step `h` in input units (default 0.01, for inputs in [0, 1]).
    #[serde(default = "default_h")]
    pub h: f64,
}

fn default_h() -> f64 {
    InputGradientSpec::DEFAULT_H
}

impl InputGradientSpec {
    /// The default finite-difference step, for inputs in [0, 1].
    pub const DEFAULT_H: f64 = 0.01;

    /// Strength `lambda` with the default step.
    pub fn new(lambda: f64) -> Self {
        Self {
            lambda,
            h: Self::DEFAULT_H,
        }
    }

    /// Checks λ and `h`.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return Err(format!(
                "input_gradient lambda must be > 0, got {}",
                self.lambda
            ));
        }
        if !(self.h.is_finite() && self.h > 0.0) {
            return Err(format!("input_gradient h must be > 0, got {}", self.h));
        }
        Ok(())
    }
}
