//! APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks"), L-inf and L2, with the cross-entropy, CW-margin or DLR loss,
//! untargeted or targeted.
//!
//! The schedule, as published:
//! - step size `η` starts at `2·eps` for every sample;
//! - the first step is a plain projected gradient step; every later step takes
//!   `z = P(x_k + η·s(∇f(x_k)))` (`s` = sign for L-inf, `g/‖g‖₂` for L2) and then the momentum
//!   step `x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))` with `α = 0.75`;
//! - checkpoints at the fractions `p_0 = 0`, `p_1 = 0.22`,
//!   `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)` of the `N` iterations (for `N = 100`:
//!   22, 41, 57, 70, 80, 87, 93, 99);
//! - at each checkpoint a sample's step is halved, and its search restarts from its best point so
//!   far, when (1) the objective increased in fewer than `ρ = 0.75` of the steps since the last
//!   checkpoint, or (2) neither its step size nor its best objective changed since the last one.
//!
//! `P` is the exact projection onto the eps-ball around the clean input ∩ the box (see
//! `geometry`). The result per sample is the first iterate that fooled the model, else the iterate
//! with the highest objective. Restarts (with `random_start`) work as for PGD.

use burn::config::Config;
use burn::tensor::{Int, Tensor};

use crate::attack::Attack;
use crate::batch::{Batch, host_f32, upload};
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::geometry::{project, uniform_in_ball};
use crate::iterative::{StepObserver, best_over_restarts};
use crate::loss::objective;
use crate::options::{AttackOptions, Norm, ThreatModel, check_steps};
use crate::rng::{SplitMix64, sample_seed};

/// Configuration of [`Apgd`]. Defaults are the paper's: 100 iterations, momentum 0.75, ρ = 0.75,
/// random start.
#[derive(Config, Debug)]
pub struct ApgdConfig {
    /// Norm (`linf` or `l2`) and radius.
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
        if self.threat.norm == Norm::L1 {
            return Err(AttackError::Unsupported {
                attack: "apgd",
                reason: "supports the linf and l2 norms".into(),
            });
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

/// The published checkpoints, in the integer form of the reference code: the first after
/// `⌊0.22·N⌋` iterations, each interval then shorter by `⌊0.03·N⌋` down to `⌊0.06·N⌋` (all at
/// least 1), i.e. `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`.
pub(crate) fn checkpoints(n: usize) -> Vec<usize> {
    let frac = |p: f64| ((p * n as f64) as usize).max(1);
    let (mut len, shrink, shortest) = (frac(0.22), frac(0.03), frac(0.06));
    let mut w = Vec::new();
    let mut k = len;
    while k < n {
        w.push(k);
        len = len.saturating_sub(shrink).max(shortest);
        k += len;
    }
    w
}

impl Apgd {
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
        let proj =
            |i: usize, t: &[f64], out: &mut [f32]| project(norm, &x0[row(i)], t, eps, lo, hi, out);

        let mut x = x0.clone();
        if c.options.random_start {
            for i in 0..b {
                let mut rng = SplitMix64::new(sample_seed(c.options.seed, restart, &x0[row(i)]));
                let delta = uniform_in_ball(norm, n, eps, &mut rng);
                let t: Vec<f64> = x0[row(i)]
                    .iter()
                    .zip(&delta)
                    .map(|(&v, d)| f64::from(v) + d)
                    .collect();
                proj(i, &t, &mut x[row(i)]);
            }
        }
        let dev = &batch.device;
        observer(&batch.x0, &upload(x.clone(), b, n, dev));
        let eval = |x: &[f32]| -> (Vec<f32>, Vec<bool>, Vec<f32>) {
            let (logits, g) = batch.gradient(upload(x.to_vec(), b, n, dev), c.options.loss);
            let obj = host_f32(objective(
                c.options.loss,
                logits.clone(),
                &batch.labels,
                batch.targets.as_ref(),
            ));
            (obj, batch.success_of(logits), host_f32(g))
        };
        // A step of size eta[i] along the norm's steepest direction, then the projection.
        let step = |x: &[f32], g: &[f32], eta: &[f64], out: &mut [f32]| {
            for i in 0..b {
                let (xr, gr) = (&x[row(i)], &g[row(i)]);
                let t: Vec<f64> = match norm {
                    Norm::L2 => crate::geometry::l2_step(xr, gr, eta[i]),
                    _ => xr
                        .iter()
                        .zip(gr)
                        .map(|(&v, &gv)| {
                            f64::from(v)
                                + eta[i] * f64::from(gv.signum()) * f64::from(u8::from(gv != 0.0))
                        })
                        .collect(),
                };
                proj(i, &t, &mut out[row(i)]);
            }
        };

        let checkpoints = checkpoints(c.steps);
        let mut eta = vec![2.0 * eps; b];
        let (mut f, ok, mut g) = eval(&x);
        let mut best_f = f.clone();
        let mut best_x = x.clone();
        let mut found = ok.clone();
        let mut found_x = x.clone();
        let (mut eta_at_ckpt, mut best_at_ckpt) = (eta.clone(), best_f.clone());
        let mut improved = vec![0usize; b];
        let mut last_ckpt = 0usize;
        let mut x_prev = x.clone();
        let mut next = vec![0f32; b * n];
        step(&x, &g, &eta, &mut next);
        for k in 0..c.steps {
            if k > 0 {
                // Momentum step from z = P(x + η·s(g)).
                let mut z = vec![0f32; b * n];
                step(&x, &g, &eta, &mut z);
                for i in 0..b {
                    let t: Vec<f64> = (row(i))
                        .map(|j| {
                            let (xv, zv, pv) =
                                (f64::from(x[j]), f64::from(z[j]), f64::from(x_prev[j]));
                            xv + c.momentum * (zv - xv) + (1.0 - c.momentum) * (xv - pv)
                        })
                        .collect();
                    proj(i, &t, &mut next[row(i)]);
                }
            }
            if c.options.early_stop {
                for i in (0..b).filter(|&i| found[i]) {
                    next[row(i)].copy_from_slice(&found_x[row(i)]);
                }
            }
            x_prev = std::mem::replace(&mut x, next.clone());
            observer(&batch.x0, &upload(x.clone(), b, n, dev));
            let (f_new, ok_new, g_new) = eval(&x);
            for i in 0..b {
                if f_new[i] > f[i] {
                    improved[i] += 1;
                }
                if f_new[i] > best_f[i] {
                    best_f[i] = f_new[i];
                    best_x[row(i)].copy_from_slice(&x[row(i)]);
                }
                if ok_new[i] && !found[i] {
                    found[i] = true;
                    found_x[row(i)].copy_from_slice(&x[row(i)]);
                }
            }
            (f, g) = (f_new, g_new);
            if checkpoints.contains(&(k + 1)) {
                let since = (k + 1 - last_ckpt) as f64;
                for i in 0..b {
                    let too_few = (improved[i] as f64) < c.rho * since;
                    let stalled = eta_at_ckpt[i] == eta[i] && best_at_ckpt[i] == best_f[i];
                    eta_at_ckpt[i] = eta[i];
                    best_at_ckpt[i] = best_f[i];
                    if too_few || stalled {
                        eta[i] /= 2.0;
                        x[row(i)].copy_from_slice(&best_x[row(i)]);
                        x_prev[row(i)].copy_from_slice(&best_x[row(i)]);
                    }
                    improved[i] = 0;
                }
                last_ckpt = k + 1;
                // Samples that restarted from their best point need its gradient.
                (f, _, g) = eval(&x);
            }
        }
        let mut result = best_x;
        let mut objective_out = best_f;
        for i in (0..b).filter(|&i| found[i]) {
            result[row(i)].copy_from_slice(&found_x[row(i)]);
            objective_out[i] = f32::INFINITY;
        }
        (result, objective_out, found)
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

#[cfg(test)]
mod tests {
    use super::checkpoints;

    #[test]
    fn checkpoints_follow_the_published_fractions() {
        // p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99, ... (the increments shrink by
        // 0.03 down to 0.06): for N = 100 the step is checked at these iterations.
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    }
}
