//! Projected gradient descent (Madry et al. 2018) and the basic iterative method (Kurakin et al.
//! 2017) in L-inf, L2 and L1.
//!
//! Every step moves `step_size` along the norm's steepest-ascent direction (L-inf: sign of the
//! gradient; L2: gradient over its L2 norm, no step for a zero gradient; L1: the sparse step over
//! the top `l1_sparsity` share of coordinates by |gradient|), then projects onto the eps-ball
//! around the **clean** input and clamps to the box (see `geometry` for the exact projections).
//! PGD starts from a uniform point in the ball; BIM starts from the clean input.

use burn::config::Config;
use burn::tensor::{Int, Tensor};

use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::iterative::{self, DEFAULT_L1_SPARSITY, Spec, StepObserver};
use crate::options::{AttackOptions, Norm, ThreatModel};
use crate::overrides::set;

/// Configuration of [`Pgd`]. Defaults: 40 steps of `2.5·eps/steps` (the rule of Madry et al.'s
/// appendix) from a random start.
#[derive(Config, Debug)]
pub struct PgdConfig {
    /// Norm and radius.
    pub threat: ThreatModel,
    /// Number of gradient steps.
    #[config(default = 40)]
    pub steps: usize,
    /// Step size; `None`: `2.5·eps/steps`.
    #[config(default = "None")]
    pub step_size: Option<f64>,
    /// Share of coordinates an L1 step moves.
    #[config(default = "DEFAULT_L1_SPARSITY")]
    pub l1_sparsity: f64,
    /// Shared options (random start on by default).
    #[config(default = "AttackOptions::new().with_random_start(true)")]
    pub options: AttackOptions,
}

impl PgdConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Pgd, AttackError> {
        let attack = Pgd {
            config: self.clone(),
        };
        iterative::validate(
            &self.threat,
            self.steps,
            attack.step_size(),
            self.l1_sparsity,
            &self.options,
        )?;
        Ok(attack)
    }
}

/// Projected gradient descent. Build with [`PgdConfig::init`].
#[derive(Debug, Clone)]
pub struct Pgd {
    config: PgdConfig,
}

impl Pgd {
    fn step_size(&self) -> f64 {
        let c = &self.config;
        c.step_size
            .unwrap_or(2.5 * c.threat.eps / c.steps.max(1) as f64)
    }
}

impl Attack for Pgd {
    fn name(&self) -> &'static str {
        "pgd"
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
        iterative::attack(model, x, labels, targets, &c.options, &spec, observer)
    }
}

/// Configuration of [`Bim`]. Defaults follow Kurakin et al. for L-inf: steps
/// `min(eps' + 4, 1.25·eps')` with `eps' = 255·eps/(hi − lo)` (eps in grey levels), step one grey
/// level `(hi − lo)/255`. For L2 and L1: 10 steps of `2.5·eps/steps`.
#[derive(Config, Debug)]
pub struct BimConfig {
    /// Norm and radius.
    pub threat: ThreatModel,
    /// Number of steps; `None`: Kurakin's rule (L-inf) or 10.
    #[config(default = "None")]
    pub steps: Option<usize>,
    /// Step size; `None`: one grey level (L-inf) or `2.5·eps/steps`.
    #[config(default = "None")]
    pub step_size: Option<f64>,
    /// Share of coordinates an L1 step moves.
    #[config(default = "DEFAULT_L1_SPARSITY")]
    pub l1_sparsity: f64,
    /// Shared options (no random start: BIM starts at the clean input).
    #[config(default = "AttackOptions::new()")]
    pub options: AttackOptions,
}

impl BimConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Bim, AttackError> {
        let attack = Bim {
            config: self.clone(),
        };
        let (steps, step) = attack.resolved();
        iterative::validate(&self.threat, steps, step, self.l1_sparsity, &self.options)?;
        Ok(attack)
    }
}

/// The basic iterative method (iterative FGSM). Build with [`BimConfig::init`].
#[derive(Debug, Clone)]
pub struct Bim {
    config: BimConfig,
}

impl Bim {
    fn resolved(&self) -> (usize, f64) {
        let c = &self.config;
        let width = c.options.bounds.hi - c.options.bounds.lo;
        let eps = c.threat.eps;
        let steps = c.steps.unwrap_or_else(|| match c.threat.norm {
            Norm::Linf => {
                let levels = 255.0 * eps / width;
                ((levels + 4.0).min(1.25 * levels).ceil() as usize).max(1)
            }
            _ => 10,
        });
        let step = c.step_size.unwrap_or(match c.threat.norm {
            Norm::Linf => width / 255.0,
            _ => 2.5 * eps / steps as f64,
        });
        (steps, step)
    }
}

impl Attack for Bim {
    fn name(&self) -> &'static str {
        "bim"
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
        let (steps, step) = self.resolved();
        let mut spec = Spec::new(c.threat, steps, step, &c.options);
        spec.l1_sparsity = c.l1_sparsity;
        iterative::attack(model, x, labels, targets, &c.options, &spec, observer)
    }
}

crate::attack::settings!(fixed_budget PgdConfig => Pgd, "pgd", |c, o| {
    o.refuse("pgd", &["decay"])?;
    set(&mut c.steps, o.steps);
    set(&mut c.step_size, o.step_size.map(Some));
});

crate::attack::settings!(fixed_budget BimConfig => Bim, "bim", |c, o| {
    o.refuse("bim", &["decay"])?;
    set(&mut c.steps, o.steps.map(Some));
    set(&mut c.step_size, o.step_size.map(Some));
});
