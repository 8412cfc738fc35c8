//! APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks") in L-inf and L2, and L1-APGD (Croce & Hein 2021, "Mind the
//! box"), with the cross-entropy, CW-margin or DLR loss, untargeted or targeted.
//!
//! The L-inf/L2 schedule, as published:
//! - step size `η` starts at `2·eps` for every sample;
//! - the first step is a plain projected gradient step; every later step takes
//!   `z = P(x_k + η·s(∇f(x_k)))` (`s` = sign for L-inf, `g/‖g‖₂` for L2) and then the momentum
//!   step `x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))` with `α = 0.75`;
//! - checkpoints at the fractions `p_0 = 0`, `p_1 = 0.22`,
//!   `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)` of the `N` iterations (for `N = 100`:
//!   22, 41, 57, 70, 80, 87, 93, 99);
//! - at each checkpoint a sample's step is halved, and its search restarts from its best point so
//!   far, when (1) the objective increased in at most `ρ = 0.75` of the steps since the last
//!   checkpoint, or (2) its step was not halved at the last checkpoint and its best objective did
//!   not improve since (the reference code's reading: never at the first checkpoint).
//!
//! L1 (as in the authors' reference code):
//! - step size starts at `eps` (α = 1); no momentum;
//! - a step moves the `topk` share of coordinates with the largest `|g|` by `η / k` each (on an
//!   exact tie at the threshold, every tied coordinate, sharing `η`, as the reference does); `topk`
//!   starts at 20 % (with `large_reps`, every stage starts from the share of non-zero coordinates
//!   of its start point divided by 1.5, as the reference passes each stage its start). One
//!   deliberate difference: the top-k are chosen among the coordinates the box lets move in the
//!   gradient's direction (the reference code ranks all coordinates, so part of its step can be
//!   lost to the box);
//! - every `max(⌊0.04·N⌋, 1)` iterations: `topk` becomes the best point's share of non-zero
//!   coordinates divided by 1.5; if the best point got sparser (its count fell below 95 % of the
//!   last checkpoint's) the step resets to `eps` and the search restarts from the best point,
//!   otherwise the step shrinks by 1.5, never below `eps/10`;
//! - `large_reps` (AutoAttack's L1 setting): 30 % of the iterations at `3·eps`, 30 % at `2·eps`
//!   and the rest at `eps`, each stage starting from the previous stage's highest-objective point
//!   projected into the smaller ball. Only the last stage's iterates are in the threat model: only
//!   they count as successes and reach the step observer.
//!
//! `P` is the exact projection onto the eps-ball around the clean input ∩ the box (see
//! `geometry`, `ball` and `l1_ball`). Every norm's search runs on the device with its whole state
//! as tensors: L-inf and L2 in `apgd_device`, L1 in `apgd_l1`; an L2 or L1 result is projected
//! once more on the host, exactly. The result per sample is the first iterate that fooled the model, else the
//! iterate with the highest objective. Restarts (with `random_start`) work as for PGD.

use burn::config::Config;
use burn::tensor::{Int, Tensor};

use crate::apgd_schedule::Found;
use crate::attack::Attack;
use crate::ball::{Ball, exact_rows};
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::geometry::{project, uniform_in_ball};
use crate::host::upload;
use crate::iterative::{StepObserver, best_over_restarts};
use crate::options::{AttackOptions, Norm, ThreatModel, check_steps};
use crate::overrides::set;
use crate::rng::{SplitMix64, sample_seed};

/// Configuration of [`Apgd`]. Defaults are the paper's: 100 iterations, momentum 0.75, ρ = 0.75,
/// random start.
///
/// The random start is uniform in the ball (the reference code draws Gaussian noise, projected for
/// L1; the schedule after the start is the same).
#[derive(Config, Debug)]
pub struct ApgdConfig {
    /// Norm (`linf`, `l2` or `l1`) and radius.
    pub threat: ThreatModel,
    /// Number of iterations.
    #[config(default = 100)]
    pub steps: usize,
    /// Momentum weight α of the new step.
    #[config(default = 0.75)]
    pub momentum: f64,
    /// Share of improving steps below which a checkpoint halves the step.
    #[config(default = 0.75)]
    pub rho: f64,
    /// L1 only: warm-start at 3·eps and 2·eps before the last stage at eps (AutoAttack's
    /// `use_largereps`).
    #[config(default = false)]
    pub large_reps: bool,
    /// Shared options (random start on by default).
    #[config(default = "AttackOptions::new().with_random_start(true)")]
    pub options: AttackOptions,
}

impl ApgdConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Apgd, AttackError> {
        self.threat.validate()?;
        self.options.validate()?;
        check_steps(self.steps)?;
        if self.large_reps && self.threat.norm != Norm::L1 {
            return Err(AttackError::Unsupported {
                attack: "apgd",
                reason: "large_reps is defined for the l1 norm only".into(),
            });
        }
        if self.large_reps && self.steps < 3 {
            return Err(crate::error::invalid(
                "steps",
                self.steps,
                "large_reps needs at least 3 (one per stage)",
            ));
        }
        for (name, v) in [("momentum", self.momentum), ("rho", self.rho)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(crate::error::invalid(name, v, "must be in [0, 1]"));
            }
        }
        if self.options.restarts > 1 && !self.options.random_start {
            return Err(crate::error::invalid(
                "restarts",
                self.options.restarts,
                "more than one run needs random_start",
            ));
        }
        Ok(Apgd {
            config: self.clone(),
        })
    }
}

/// Auto-PGD. Build with [`ApgdConfig::init`].
#[derive(Debug, Clone)]
pub struct Apgd {
    config: ApgdConfig,
}

impl Apgd {
    /// One independent run (a restart): a random or clean start, then either the plain schedule or,
    /// with `large_reps`, the three stages at 3·eps, 2·eps and eps.
    fn single_run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        batch: &Batch<'_, D, C>,
        restart: u64,
        observer: &mut StepObserver<'_>,
    ) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let c = &self.config;
        let (b, n, norm, eps) = (batch.b, batch.n, c.threat.norm, c.threat.eps);
        let (lo, hi) = batch.bounds();
        let x0 = &batch.x0_host;
        let row = |i: usize| i * n..(i + 1) * n;
        // Stages: (radius, iterations). The large-radius stages only warm-start the last one.
        let stages: Vec<(f64, usize)> = if c.large_reps {
            let first = (0.3 * c.steps as f64).ceil() as usize;
            let last = c.steps.saturating_sub(2 * first).max(1);
            vec![
                (3.0 * eps, first.max(1)),
                (2.0 * eps, first.max(1)),
                (eps, last),
            ]
        } else {
            vec![(eps, c.steps)]
        };
        let start_eps = stages[0].0;
        let mut x = x0.clone();
        if c.options.random_start {
            for i in 0..b {
                let mut rng = SplitMix64::new(sample_seed(c.options.seed, restart, &x0[row(i)]));
                let delta = uniform_in_ball(norm, n, start_eps, &mut rng);
                let t: Vec<f64> = x0[row(i)]
                    .iter()
                    .zip(&delta)
                    .map(|(&v, d)| f64::from(v) + d)
                    .collect();
                project(norm, &x0[row(i)], &t, start_eps, lo, hi, &mut x[row(i)]);
            }
        }
        let found = match Ball::new(batch, norm, eps) {
            // L-inf and L2 have one stage, and run on the device (see `apgd_device`).
            Some(ball) => {
                let settings = crate::apgd_device::Settings {
                    eps,
                    steps: c.steps,
                    momentum: c.momentum,
                    rho: c.rho,
                    loss: c.options.loss,
                    early_stop: c.options.early_stop,
                };
                let start = upload(x, b, n, &batch.device);
                crate::apgd_device::search(batch, &ball, start, &settings, observer)
            }
            // L1 runs its own schedule, also on the device (see `apgd_l1`).
            None => {
                let settings = crate::apgd_l1::Settings {
                    stages,
                    large_reps: c.large_reps,
                    loss: c.options.loss,
                    early_stop: c.options.early_stop,
                };
                let start = upload(x, b, n, &batch.device);
                crate::apgd_l1::search(batch, start, &settings, observer)
            }
        };
        let Found {
            best_x,
            best_f,
            found,
            found_x,
        } = found;
        let mut out = best_x;
        let mut objective_out = best_f;
        for i in (0..b).filter(|&i| found[i]) {
            out[row(i)].copy_from_slice(&found_x[row(i)]);
            objective_out[i] = f32::INFINITY;
        }
        let mut found = found;
        if norm != Norm::Linf {
            // The device's L2 and L1 iterates aim inside the ball; the result is in it exactly. A
            // row the exact projection moved is judged again, so that its flag and objective
            // describe the point returned.
            let moved = exact_rows(norm, x0, &mut out, eps, (lo, hi), n);
            if !moved.is_empty() {
                let (obj, ok) =
                    batch.judge(upload(out.clone(), b, n, &batch.device), c.options.loss);
                for i in moved {
                    found[i] = ok[i];
                    objective_out[i] = if ok[i] { f32::INFINITY } else { obj[i] };
                }
            }
        }
        (out, objective_out, found)
    }
}

impl Attack for Apgd {
    fn name(&self) -> &'static str {
        if self.config.options.targeting.is_targeted() {
            "apgd-t"
        } else {
            "apgd"
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
        let batch = Batch::new(model, x, labels, targets, &c.options)?;
        batch.check_loss(c.options.loss)?;
        if batch.b == 0 || c.threat.eps == 0.0 {
            observer(&batch.x0, &batch.x0);
            return Ok(batch.unflatten(batch.x0.clone()));
        }
        let best = best_over_restarts(&batch, c.options.restarts, |view, restart| {
            self.single_run(view, restart, observer)
        });
        Ok(batch.unflatten(upload(best, batch.b, batch.n, &batch.device)))
    }
}

crate::attack::settings!(fixed_budget ApgdConfig => Apgd, "apgd", |c, o| {
    o.refuse("apgd", &["step_size", "decay"])?;
    set(&mut c.steps, o.steps);
});
