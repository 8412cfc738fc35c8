//! Options shared by every attack: the threat model, the valid box, the loss, targeting, random
//! starts, restarts, early stopping, the seed and the crafting mode.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::{AttackError, invalid};

/// The norm that measures the perturbation `x_adv − x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// `max_i |δ_i|`.
    Linf,
    /// `sqrt(Σ δ_i²)`.
    L2,
    /// `Σ |δ_i|`.
    L1,
}

impl Norm {
    /// The names [`Norm::from_str`](std::str::FromStr) accepts, one per norm.
    pub const NAMES: [&'static str; 3] = ["linf", "l2", "l1"];

    /// The norm of one flat perturbation, computed in f64.
    pub fn of(self, delta: impl IntoIterator<Item = f64>) -> f64 {
        let it = delta.into_iter();
        match self {
            Norm::Linf => it.fold(0.0, |m, d| m.max(d.abs())),
            Norm::L2 => it.map(|d| d * d).sum::<f64>().sqrt(),
            Norm::L1 => it.map(f64::abs).sum(),
        }
    }

    /// Per-sample distance between two flat batches of `n` values per sample, in f64.
    pub fn distances(self, a: &[f32], b: &[f32], n: usize) -> Vec<f64> {
        a.chunks(n.max(1))
            .zip(b.chunks(n.max(1)))
            .map(|(ra, rb)| {
                self.of(ra
                    .iter()
                    .zip(rb)
                    .map(|(&p, &q)| f64::from(p) - f64::from(q)))
            })
            .collect()
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
            Norm::L1 => "l1",
        })
    }
}

impl FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "l-inf" | "inf" => Ok(Norm::Linf),
            "l2" | "2" => Ok(Norm::L2),
            "l1" | "1" => Ok(Norm::L1),
            other => Err(format!("unknown norm `{other}` (expected linf, l2 or l1)")),
        }
    }
}

/// The threat model: perturbations with `‖x_adv − x‖_norm ≤ eps` around the clean input `x`.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct ThreatModel {
    /// The norm.
    pub norm: Norm,
    /// The radius, in the units of the input (the box is [0, 1] by default, so eps = 8/255 is
    /// 8 grey levels).
    pub eps: f64,
}

impl ThreatModel {
    /// An L-inf ball of radius `eps`.
    pub fn linf(eps: f64) -> Self {
        Self::new(Norm::Linf, eps)
    }
    /// An L2 ball of radius `eps`.
    pub fn l2(eps: f64) -> Self {
        Self::new(Norm::L2, eps)
    }
    /// An L1 ball of radius `eps`.
    pub fn l1(eps: f64) -> Self {
        Self::new(Norm::L1, eps)
    }

    pub(crate) fn validate(&self) -> Result<(), AttackError> {
        if !self.eps.is_finite() || self.eps < 0.0 {
            return Err(invalid("eps", self.eps, "must be finite and >= 0"));
        }
        Ok(())
    }
}

/// The box every input and adversarial example lives in (pixel range).
#[derive(Config, Debug, Copy, PartialEq)]
pub struct Bounds {
    /// Smallest valid input value.
    #[config(default = 0.0)]
    pub lo: f64,
    /// Largest valid input value.
    #[config(default = 1.0)]
    pub hi: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self::new()
    }
}

/// The objective an attack maximizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Cross-entropy of the logits (targeted: minus the cross-entropy of the target).
    CrossEntropy,
    /// Carlini-Wagner margin: `max_{j≠y} z_j − z_y` (targeted: `z_t − max_{j≠t} z_j`). Positive
    /// exactly when the sample is misclassified (reaches the target).
    CwMargin,
    /// Difference of logits ratio (Croce & Hein 2020): `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)`,
    /// invariant to shifting and scaling the logits. Needs 3 classes (targeted:
    /// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)`, 4 classes).
    Dlr,
}

impl LossKind {
    /// The names [`LossKind::from_str`](std::str::FromStr) accepts, one per loss.
    pub const NAMES: [&'static str; 3] = ["ce", "cw", "dlr"];
}

impl FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ce" | "cross-entropy" => Ok(LossKind::CrossEntropy),
            "cw" | "cw-margin" | "margin" => Ok(LossKind::CwMargin),
            "dlr" => Ok(LossKind::Dlr),
            other => Err(format!("unknown loss `{other}` (expected ce, cw or dlr)")),
        }
    }
}

/// Untargeted, or which class each sample should be pushed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targeting {
    /// Any wrong class counts as success.
    Untargeted,
    /// Targets passed by the caller ([`crate::Attack::perturb_targeted`]).
    Given,
    /// A uniformly random class other than the label, drawn from the seed and the sample.
    Random,
    /// The class with the smallest clean logit.
    LeastLikely,
}

impl Targeting {
    /// The names [`Targeting::from_str`](std::str::FromStr) accepts, one per mode.
    pub const NAMES: [&'static str; 4] = ["untargeted", "given", "random", "least-likely"];

    /// True for every mode except [`Targeting::Untargeted`].
    pub fn is_targeted(self) -> bool {
        self != Targeting::Untargeted
    }
}

impl FromStr for Targeting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "untargeted" => Ok(Targeting::Untargeted),
            "given" => Ok(Targeting::Given),
            "random" => Ok(Targeting::Random),
            "least-likely" | "ll" => Ok(Targeting::LeastLikely),
            other => Err(format!(
                "unknown targeting `{other}` (expected untargeted, random, least-likely or given)"
            )),
        }
    }
}

/// How the model behaves while the attack computes gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Crafting {
    /// Inference behaviour: BatchNorm uses (and never updates) its running statistics, dropout is
    /// off. The default, and what evaluation must use.
    Inference,
    /// Training behaviour (batch statistics, dropout on), as some adversarial-training papers
    /// crafted their examples. Parameters still receive no gradient.
    Train,
}

/// Options every attack shares.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct AttackOptions {
    /// The valid input box; the adversarial example never leaves it.
    #[config(default = "Bounds::new()")]
    pub bounds: Bounds,
    /// The objective.
    #[config(default = "LossKind::CrossEntropy")]
    pub loss: LossKind,
    /// Untargeted or targeted (and how targets are chosen).
    #[config(default = "Targeting::Untargeted")]
    pub targeting: Targeting,
    /// Start from a point drawn uniformly in the eps-ball, then projected into the box.
    #[config(default = false)]
    pub random_start: bool,
    /// Independent runs; per sample the first run that fools the model wins, otherwise the run
    /// with the highest loss. Runs after the first only attack samples not yet fooled.
    #[config(default = 1)]
    pub restarts: usize,
    /// Freeze a sample at the first iterate that fools the model (targeted: reaches the target).
    /// Evaluation wants this; adversarial training usually wants the last iterate.
    #[config(default = false)]
    pub early_stop: bool,
    /// Seed for random starts and random targets. A sample's random draws depend only on the
    /// seed, the restart and the sample's own values, so they do not depend on the batch.
    #[config(default = 0)]
    pub seed: u64,
    /// Inference (default) or training behaviour of the model while crafting.
    #[config(default = "Crafting::Inference")]
    pub crafting: Crafting,
    /// Targeted attacks: count any misclassification as a success (for early stop, restarts and
    /// the result), not only reaching the target, as AutoAttack's APGD-T does. The objective still
    /// pulls toward the target. No effect on untargeted attacks, CW and DeepFool.
    #[config(default = false)]
    pub any_error: bool,
}

impl Default for AttackOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl AttackOptions {
    pub(crate) fn validate(&self) -> Result<(), AttackError> {
        let Bounds { lo, hi } = self.bounds;
        if !lo.is_finite() || !hi.is_finite() || lo >= hi {
            return Err(invalid(
                "bounds",
                format!("[{lo}, {hi}]"),
                "need finite lo < hi",
            ));
        }
        if self.restarts == 0 {
            return Err(invalid("restarts", 0, "must be >= 1"));
        }
        Ok(())
    }
}

pub(crate) fn check_steps(steps: usize) -> Result<(), AttackError> {
    if steps == 0 {
        return Err(invalid("steps", 0, "must be >= 1"));
    }
    Ok(())
}

pub(crate) fn check_positive(name: &'static str, v: f64) -> Result<(), AttackError> {
    if !v.is_finite() || v <= 0.0 {
        return Err(invalid(name, v, "must be finite and > 0"));
    }
    Ok(())
}
