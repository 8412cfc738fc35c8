//! FGSM (Goodfellow et al. 2015) and its random-start "fast" variant (Wong, Rice & Kolter 2020).
//!
//! One step of size `step_size` in the norm's steepest-ascent direction (L-inf: the gradient's
//! sign; L2: the normalized gradient; L1: the sparse top-k step), then projection onto the
//! eps-ball around the clean input and the box. With `options.random_start` the step starts from
//! a uniform point in the ball and its default size is `1.25·eps` (Wong et al.); otherwise `eps`.

use burn::config::Config;
use burn::tensor::{Int, Tensor};

use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::iterative::{self, DEFAULT_L1_SPARSITY, Spec, StepObserver};
use crate::options::{AttackOptions, ThreatModel};
use crate::overrides::set;

/// Configuration of [`Fgsm`].
#[derive(Config, Debug)]
pub struct FgsmConfig {
    /// Norm and radius.
    pub threat: ThreatModel,
    /// Step size; `None`: `eps`, or `1.25·eps` with a random start.
    #[config(default = "None")]
    pub step_size: Option<f64>,
    /// Share of coordinates an L1 step moves.
    #[config(default = "DEFAULT_L1_SPARSITY")]
    pub l1_sparsity: f64,
    /// Shared options.
    #[config(default = "AttackOptions::new()")]
    pub options: AttackOptions,
}

impl FgsmConfig {
    /// FGSM from a uniform random start in the ball, step `1.25·eps` ("fast" adversarial training).
    pub fn fast(threat: ThreatModel) -> Self {
        Self::new(threat).with_options(AttackOptions::new().with_random_start(true))
    }

    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Fgsm, AttackError> {
        let attack = Fgsm {
            config: self.clone(),
        };
        iterative::validate(
            &self.threat,
            1,
            attack.step_size(),
            self.l1_sparsity,
            &self.options,
        )?;
        Ok(attack)
    }
}

/// The fast gradient sign method (and its L2/L1 analogues). Build with [`FgsmConfig::init`].
#[derive(Debug, Clone)]
pub struct Fgsm {
    config: FgsmConfig,
}

impl Fgsm {
    fn step_size(&self) -> f64 {
        let eps = self.config.threat.eps;
        self.config
            .step_size
            .unwrap_or(if self.config.options.random_start {
                1.25 * eps
            } else {
                eps
            })
    }
}

impl Attack for Fgsm {
    fn name(&self) -> &'static str {
        if self.config.options.random_start {
            "fgsm-rs"
        } else {
            "fgsm"
        }
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
        let mut spec = Spec::new(c.threat, 1, self.step_size(), &c.options);
        spec.l1_sparsity = c.l1_sparsity;
        iterative::attack(model, x, labels, targets, &c.options, &spec, observer)
    }
}

crate::attack::settings!(fixed_budget FgsmConfig => Fgsm, "fgsm", |c, o| {
    o.refuse("fgsm", &["steps", "decay"])?;
    set(&mut c.step_size, o.step_size.map(Some));
});
