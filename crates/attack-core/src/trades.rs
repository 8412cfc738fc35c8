//! TRADES' inner maximization (Zhang et al. 2019): signed-gradient steps on
//! `KL(f(x) ‖ f(x'))` from a small Gaussian start, in the L-inf ball around the clean input.
//!
//! It needs no labels: it moves the prediction away from the clean prediction, whatever the
//! label. The trainer's TRADES method crafts its examples with it; as an attack it measures how
//! far the output distribution can be pushed.

use burn::config::Config;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::attack::Attack;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid};
use crate::geometry::{linf_bounds, project};
use crate::host::upload;
use crate::iterative::StepObserver;
use crate::options::{AttackOptions, Norm, ThreatModel, check_positive, check_steps};
use crate::overrides::set;
use crate::rng::{SplitMix64, sample_seed};

/// Configuration of [`TradesKl`]. Defaults: 10 steps of `eps/4`, start noise `0.001·N(0, I)`,
/// as in the TRADES reference code (CIFAR-10: eps 0.031, step 0.007).
#[derive(Config, Debug)]
pub struct TradesKlConfig {
    /// Norm (L-inf only) and radius.
    pub threat: ThreatModel,
    /// Number of steps.
    #[config(default = 10)]
    pub steps: usize,
    /// Step size; `None`: `eps/4`.
    #[config(default = "None")]
    pub step_size: Option<f64>,
    /// Standard deviation of the Gaussian start around the clean input (with `random_start`).
    #[config(default = 0.001)]
    pub start_noise: f64,
    /// Shared options; `random_start` (on by default) is the Gaussian start. The loss, targeting,
    /// restarts and early stop do not apply: the objective is the KL divergence from the clean
    /// prediction.
    #[config(default = "AttackOptions::new().with_random_start(true)")]
    pub options: AttackOptions,
}

impl TradesKlConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<TradesKl, AttackError> {
        if self.threat.norm != Norm::Linf {
            return Err(invalid(
                "threat.norm",
                self.threat.norm,
                "TRADES' inner maximization is L-inf",
            ));
        }
        if !(self.threat.eps.is_finite() && self.threat.eps >= 0.0) {
            return Err(invalid("eps", self.threat.eps, "must be finite and >= 0"));
        }
        check_steps(self.steps)?;
        if let Some(step) = self.step_size {
            check_positive("step_size", step)?;
        }
        if !(self.start_noise.is_finite() && self.start_noise >= 0.0) {
            return Err(invalid(
                "start_noise",
                self.start_noise,
                "must be finite and >= 0",
            ));
        }
        self.options.validate()?;
        Ok(TradesKl {
            config: self.clone(),
        })
    }
}

/// TRADES' KL attack. Build with [`TradesKlConfig::init`].
#[derive(Debug, Clone)]
pub struct TradesKl {
    config: TradesKlConfig,
}

impl TradesKl {
    fn step_size(&self) -> f64 {
        self.config
            .step_size
            .unwrap_or(self.config.threat.eps / 4.0)
    }
}

impl Attack for TradesKl {
    fn name(&self) -> &'static str {
        "trades-kl"
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
        let eps = c.threat.eps;
        let batch = Batch::new(model, x, labels, targets, &c.options)?;
        let (b, n) = (batch.b, batch.n);
        let (lo, hi) = batch.bounds();
        let x0 = &batch.x0_host;
        // The clean output distribution, with the crafting mode's behaviour, untracked.
        let clean_log = log_softmax(batch.crafting_logits(batch.unflatten(batch.x0.clone())), 1);
        let clean = clean_log.clone().exp();
        // The start: per sample, Gaussian noise drawn from the seed and the sample, projected
        // into the ball and the box.
        let noise = if c.options.random_start {
            c.start_noise
        } else {
            0.0
        };
        let mut start = vec![0f32; b * n];
        for i in 0..b {
            let row = &x0[i * n..(i + 1) * n];
            let mut rng = SplitMix64::new(sample_seed(c.options.seed, 0, row));
            let t: Vec<f64> = row
                .iter()
                .map(|&v| f64::from(v) + noise * rng.normal())
                .collect();
            project(
                Norm::Linf,
                row,
                &t,
                eps,
                lo,
                hi,
                &mut start[i * n..(i + 1) * n],
            );
        }
        let mut x = upload(start, b, n, &batch.device);
        observer(&batch.x0, &x);
        let (lower, upper) = linf_bounds(x0, eps, lo, hi);
        let (lower, upper) = (
            upload(lower, b, n, &batch.device),
            upload(upper, b, n, &batch.device),
        );
        for _ in 0..c.steps {
            let leaf = batch.unflatten(x.clone()).autodiff().require_grad();
            let adv_log = log_softmax(batch.crafting_logits(leaf.clone()), 1);
            let kl = (clean.clone() * (clean_log.clone() - adv_log)).sum();
            let g = if kl.is_tracked() {
                leaf.grad(&kl.backward()).map(|g| g.reshape([b, n]))
            } else {
                None
            };
            let g = g.unwrap_or_else(|| x.zeros_like());
            x = (x + g.sign() * self.step_size())
                .max_pair(lower.clone())
                .min_pair(upper.clone());
            observer(&batch.x0, &x);
        }
        Ok(batch.unflatten(x))
    }
}

crate::attack::settings!(fixed_budget TradesKlConfig => TradesKl, "trades-kl", |c, o| {
    o.refuse("trades-kl", &["decay"])?;
    set(&mut c.steps, o.steps);
    set(&mut c.step_size, o.step_size.map(Some));
});
