//! MI-FGSM, the momentum iterative method (Dong et al. 2018).
//!
//! Each step accumulates `m ← decay·m + g/‖g‖₁` and moves along `m` in the norm's geometry
//! (L-inf: `sign(m)`; L2: `m/‖m‖₂`; L1: the sparse step), then projects around the clean input
//! and clamps to the box. Defaults: 10 steps of `eps/steps`, decay 1.0, clean start.

use burn::config::Config;
use burn::tensor::{Int, Tensor};

use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid};
use crate::iterative::{self, DEFAULT_L1_SPARSITY, Spec, StepObserver};
use crate::options::{AttackOptions, ThreatModel};
use crate::overrides::set;

/// Configuration of [`MiFgsm`].
#[derive(Config, Debug)]
pub struct MiFgsmConfig {
    /// Norm and radius.
    pub threat: ThreatModel,
    /// Number of steps.
    #[config(default = 10)]
    pub steps: usize,
    /// Step size; `None`: `eps/steps`.
    #[config(default = "None")]
    pub step_size: Option<f64>,
    /// Momentum decay factor μ.
    #[config(default = 1.0)]
    pub decay: f64,
    /// Share of coordinates an L1 step moves.
    #[config(default = "DEFAULT_L1_SPARSITY")]
    pub l1_sparsity: f64,
    /// Shared options.
    #[config(default = "AttackOptions::new()")]
    pub options: AttackOptions,
}

impl MiFgsmConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<MiFgsm, AttackError> {
        let attack = MiFgsm {
            config: self.clone(),
        };
        iterative::validate(
            &self.threat,
            self.steps,
            attack.step_size(),
            self.l1_sparsity,
            &self.options,
        )?;
        if !self.decay.is_finite() || self.decay < 0.0 {
            return Err(invalid("decay", self.decay, "must be finite and >= 0"));
        }
        Ok(attack)
    }
}

/// The momentum iterative attack. Build with [`MiFgsmConfig::init`].
#[derive(Debug, Clone)]
pub struct MiFgsm {
    config: MiFgsmConfig,
}

impl MiFgsm {
    fn step_size(&self) -> f64 {
        let c = &self.config;
        c.step_size.unwrap_or(c.threat.eps / c.steps.max(1) as f64)
    }
}

impl Attack for MiFgsm {
    fn name(&self) -> &'static str {
        "mi-fgsm"
    }

    fn options(&self) -> &AttackOptions {
        &self.config.options
    }

    fn threat(&self) -> Option<ThreatModel> {
        Some(self.config.threat)
    }

    fn run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        observer: &mut StepObserver<'_>,
    ) -> Result<Tensor<D>, AttackError> {
        let c = &self.config;
        let mut spec = Spec::new(c.threat, c.steps, self.step_size(), &c.options);
        spec.l1_sparsity = c.l1_sparsity;
        spec.momentum = Some(c.decay);
        iterative::attack(model, x, labels, targets, &c.options, &spec, observer)
    }
}

crate::attack::settings!(fixed_budget MiFgsmConfig => MiFgsm, "mi-fgsm", |c, o| {
    set(&mut c.steps, o.steps);
    set(&mut c.step_size, o.step_size.map(Some));
    set(&mut c.decay, o.decay);
});
