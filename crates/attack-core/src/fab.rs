//! FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive
//! boundary attack"), the targeted version AutoAttack runs, in L-inf and L2.
//!
//! FAB looks for the smallest perturbation that changes the prediction, by repeated linearization
//! of the boundary between the label `y` and the target `t`. Per iteration and sample, as in
//! AutoAttack's reference code:
//! - at the current point `x` take `f = z_t − z_y` and its input gradient `w`; the linearized
//!   boundary is `{z : f + w·(z − x) = 0}`;
//! - `d1` is the smallest step (in the norm) from `x` onto it inside the box, `d2` the smallest
//!   step from the clean input `x0` onto it (see `hyperplane`);
//! - with `α = min(‖d1‖ / (‖d1‖ + ‖d2‖), α_max)` the next point is
//!   `clamp((1 − α)(x + η·d1) + α(x0 + η·d2), lo, hi)`: mostly a step onto the boundary, biased
//!   toward the clean input, overshooting by `η`;
//! - when the new point is misclassified, it becomes the sample's best point if it is closer to
//!   `x0` than the best so far, and the search moves back toward the clean input:
//!   `x ← x0 + β(x − x0)`.
//!
//! The result per sample is the closest misclassified point found if it lies within `eps` (inside
//! the ball around the clean input and the box, checked exactly), else the clean input. Success is
//! any misclassification, as in the reference. With `early_stop` a sample stops searching once it
//! has a result within `eps` (the evaluator's verdict is the same, only cheaper). Defaults are
//! AutoAttack's: 100 iterations, `α_max = 0.1`, `η = 1.05`, `β = 0.9`, the first run from the
//! clean input; later restarts (with `random_start`) start from a uniform point in the ball of
//! radius `eps/2` (the reference draws its random start differently, with the same scale).
//!
//! Everything runs on the device. Device-to-host reads per batch and run: with early stopping one
//! scalar per iteration (how many samples have a result, to stop when all do); one boolean per
//! Newton iteration of the projection (whether any row still moves; at most 10, typically 4–6 per
//! iteration); the result once at the end.

use burn::config::Config;
use burn::tensor::{Bool, Int, Tensor};

use crate::attack::Attack;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid};
use crate::geometry::{linf_bounds, project, uniform_in_ball};
use crate::host::{host_bool, host_f32, host_i64, upload};
use crate::hyperplane::step_onto;
use crate::iterative::{StepObserver, best_over_restarts};
use crate::loss::pick;
use crate::options::{AttackOptions, LossKind, Norm, Targeting, ThreatModel, check_steps};
use crate::overrides::set;
use crate::rng::{SplitMix64, sample_seed};

/// Configuration of [`Fab`]. Defaults are AutoAttack's FAB-T: 100 iterations, `alpha_max` 0.1,
/// `eta` 1.05, `beta` 0.9, one run from the clean input; a random target class unless targets are
/// given (the evaluator gives the most likely classes in turn).
#[derive(Config, Debug)]
pub struct FabConfig {
    /// Norm (`linf` or `l2`) and the radius within which a result counts.
    pub threat: ThreatModel,
    /// Iterations.
    #[config(default = 100)]
    pub steps: usize,
    /// Largest weight of the step from the clean input.
    #[config(default = 0.1)]
    pub alpha_max: f64,
    /// Overshoot of the steps onto the linearized boundary.
    #[config(default = 1.05)]
    pub eta: f64,
    /// Factor by which a misclassified point is pulled back toward the clean input.
    #[config(default = 0.9)]
    pub beta: f64,
    /// Shared options (targeted: a random target by default; no random start).
    #[config(default = "AttackOptions::new().with_targeting(Targeting::Random)")]
    pub options: AttackOptions,
}

impl FabConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Fab, AttackError> {
        self.threat.validate()?;
        self.options.validate()?;
        check_steps(self.steps)?;
        let unsupported = |reason: &str| AttackError::Unsupported {
            attack: "fab-t",
            reason: reason.into(),
        };
        if self.threat.norm == Norm::L1 {
            return Err(unsupported("supports the linf and l2 norms"));
        }
        if !self.options.targeting.is_targeted() {
            return Err(unsupported(
                "is the targeted FAB (FAB-T); set targeting to random, least-likely or given",
            ));
        }
        if self.options.loss != LossKind::CrossEntropy {
            return Err(unsupported(
                "linearizes the logit difference of label and target: `loss` does not apply",
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha_max) {
            return Err(invalid("alpha_max", self.alpha_max, "must be in [0, 1]"));
        }
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(invalid("eta", self.eta, "must be finite and > 0"));
        }
        if !(self.beta > 0.0 && self.beta < 1.0) {
            return Err(invalid("beta", self.beta, "must be in (0, 1)"));
        }
        if self.options.restarts > 1 && !self.options.random_start {
            return Err(invalid(
                "restarts",
                self.options.restarts,
                "more than one run needs random_start",
            ));
        }
        Ok(Fab {
            config: self.clone(),
        })
    }
}

/// FAB-T. Build with [`FabConfig::init`].
#[derive(Debug, Clone)]
pub struct Fab {
    config: FabConfig,
}

/// A `[B]` mask widened to the rows of a `[B, N]` tensor.
fn rows(mask: Tensor<1, Bool>, n: usize) -> Tensor<2, Bool> {
    let b = mask.dims()[0];
    mask.reshape([b, 1]).expand([b, n])
}

/// Per-row norm `[B, 1]` of `d`.
fn norm_of(norm: Norm, d: Tensor<2>) -> Tensor<2> {
    match norm {
        Norm::L2 => d.square().sum_dim(1).sqrt(),
        _ => d.abs().max_dim(1),
    }
}

impl Fab {
    /// One run from `start`: returns the flat results, their objective (minus the distance of a
    /// result within eps, −∞ without one) and whether each sample has a result within eps.
    fn single_run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        batch: &Batch<'_, D, C>,
        restart: u64,
        observer: &mut StepObserver<'_>,
    ) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let c = &self.config;
        let (b, n, dev) = (batch.b, batch.n, &batch.device);
        let (norm, eps) = (c.threat.norm, c.threat.eps);
        let (lo, hi) = batch.bounds();
        let x0 = batch.x0.clone();
        let targets = batch
            .targets
            .clone()
            .expect("FAB-T is targeted: Batch::new resolved the targets");
        // Inside the ball ∩ box, checked exactly: L-inf by the bounds rounded inward, L2 with a
        // margin for the f32 norm here and in f64 on the host at the end.
        let linf = (norm == Norm::Linf).then(|| {
            let (l, u) = linf_bounds(&batch.x0_host, eps, lo, hi);
            (upload(l, b, n, dev), upload(u, b, n, dev))
        });
        let within = |p: &Tensor<2>| -> Tensor<1, Bool> {
            match &linf {
                Some((l, u)) => p
                    .clone()
                    .lower(l.clone())
                    .bool_or(p.clone().greater(u.clone()))
                    .any_dim(1)
                    .bool_not()
                    .reshape([b]),
                None => norm_of(norm, p.clone() - x0.clone())
                    .lower_equal_elem(eps * (1.0 - 1e-5))
                    .reshape([b]),
            }
        };
        let mut x = if c.options.random_start {
            let mut start = batch.x0_host.clone();
            for i in 0..b {
                let row = i * n..(i + 1) * n;
                let clean = &batch.x0_host[row.clone()];
                let mut rng = SplitMix64::new(sample_seed(c.options.seed, restart, clean));
                let t: Vec<f64> = uniform_in_ball(norm, n, 0.5 * eps, &mut rng)
                    .iter()
                    .zip(clean)
                    .map(|(d, &v)| f64::from(v) + d)
                    .collect();
                project(norm, clean, &t, eps, lo, hi, &mut start[row]);
            }
            upload(start, b, n, dev)
        } else {
            x0.clone()
        };
        let mut best = x0.clone();
        let mut best_dist: Tensor<2> = Tensor::full([b, 1], f32::INFINITY, dev);
        let misclassified = |logits: Tensor<2>| -> Tensor<1, Bool> {
            logits
                .argmax(1)
                .reshape([b])
                .not_equal(batch.labels.clone())
        };
        observer(&x0, &x0);
        for _ in 0..c.steps {
            let (_, f, w) = batch.gradient_of(x.clone(), |logits| {
                pick(logits.clone(), &targets) - pick(logits, &batch.labels)
            });
            // Both projections in one batched call, as the reference does.
            let f0 = f.clone()
                + (w.clone() * (x0.clone() - x.clone()))
                    .sum_dim(1)
                    .reshape([b]);
            let both = step_onto(
                norm,
                &Tensor::cat(vec![x.clone(), x0.clone()], 0),
                &Tensor::cat(vec![w.clone(), w], 0),
                &Tensor::cat(vec![f, f0], 0),
                (lo, hi),
            );
            let (d1, d2) = (both.clone().narrow(0, 0, b), both.narrow(0, b, b));
            let a1 = norm_of(norm, d1.clone()).clamp_min(1e-8);
            let a2 = norm_of(norm, d2.clone()).clamp_min(1e-8);
            let alpha = (a1.clone() / (a1 + a2)).clamp(0.0, c.alpha_max);
            // (1 − α)(x + η·d1) + α(x0 + η·d2), written as a move from x so that no gradient
            // gives no move at all (not a rounding of x·(1 − α) + x·α).
            let near = x.clone() + d1 * c.eta;
            let far = x0.clone() + d2 * c.eta;
            let moved = (near.clone() + (far - near) * alpha).clamp(lo, hi);
            let adv = misclassified(batch.logits(moved.clone()));
            let dist = norm_of(norm, moved.clone() - x0.clone());
            let closer = adv
                .clone()
                .bool_and(dist.clone().lower(best_dist.clone()).reshape([b]));
            best_dist = best_dist.mask_where(closer.clone().reshape([b, 1]), dist);
            best = best.mask_where(rows(closer, n), moved.clone());
            let back = x0.clone() + (moved.clone() - x0.clone()) * c.beta;
            let mut next = moved.mask_where(rows(adv, n), back);
            let inside =
                within(&best).bool_and(best_dist.clone().lower_elem(f32::MAX).reshape([b]));
            observer(
                &x0,
                &x0.clone().mask_where(rows(inside.clone(), n), best.clone()),
            );
            if c.options.early_stop {
                // A sample with a result within eps stops where it is.
                next = next.mask_where(rows(inside.clone(), n), x.clone());
                if host_i64(inside.int().sum())[0] as usize == b {
                    break;
                }
            }
            x = next;
        }
        let inside = within(&best).bool_and(best_dist.clone().lower_elem(f32::MAX).reshape([b]));
        let mut out = host_f32(x0.clone().mask_where(rows(inside.clone(), n), best));
        let mut found = host_bool(inside);
        let dist = host_f32(best_dist);
        // The exact check in f64 (the device's f32 L2 norm has a margin; L-inf is exact already).
        let mut objective = vec![f32::NEG_INFINITY; b];
        for i in 0..b {
            let row = i * n..(i + 1) * n;
            let d = norm.of(out[row.clone()]
                .iter()
                .zip(&batch.x0_host[row.clone()])
                .map(|(&p, &q)| f64::from(p) - f64::from(q)));
            if found[i] && d > eps {
                found[i] = false;
                out[row.clone()].copy_from_slice(&batch.x0_host[row]);
            }
            if found[i] {
                objective[i] = -dist[i];
            }
        }
        (out, objective, found)
    }
}

impl Attack for Fab {
    fn name(&self) -> &'static str {
        "fab-t"
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

crate::attack::settings!(fixed_budget FabConfig => Fab, "fab-t", |c, o| {
    o.refuse("fab-t", &["step_size", "decay"])?;
    set(&mut c.steps, o.steps);
});
