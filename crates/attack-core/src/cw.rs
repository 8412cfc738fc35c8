//! Carlini-Wagner L2 (Carlini & Wagner 2017): minimal L2 adversarial examples.
//!
//! The input is reparametrized as `x' = lo + (hi − lo)·(tanh(w) + 1)/2`, so every iterate is in the
//! box without clipping. For each sample, Adam minimizes `‖x' − x‖₂² + c·f(x')` with the margin
//! `f = max(z_y − max_{j≠y} z_j, −κ)` (targeted: `max(max_{j≠t} z_j − z_t, −κ)`). A binary search
//! over `c` per sample (start `initial_const`; ×10 until a success, then bisection) trades
//! distance for success; across all searches and iterations the successful iterate with the
//! smallest L2 distance is kept. Optimization of one search stops early when the total loss has not
//! improved by 0.01 % over a tenth of the steps. With `eps` set, results farther than eps are
//! replaced by the clean input, so the output satisfies the L2 threat model.
//!
//! The search runs on the device: the iterate, Adam's moments, each sample's best point and its
//! squared distance (f32), and the success flags of a round are tensors. Device-to-host reads per
//! batch: the total loss every tenth of the steps (only with `abort_early`, to decide whether to
//! stop), the `B` success flags at the end of each binary-search round (to move each `c`), and the
//! best points once at the end, where the box (rounded toward the clean input) and the eps check
//! are applied exactly in f64.

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::attack::Attack;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid};
use crate::geometry::toward;
use crate::host::{host_bool, host_f32, upload};
use crate::iterative::StepObserver;
use crate::loss::{max_other, pick};
use crate::options::{
    AttackOptions, Crafting, LossKind, Norm, ThreatModel, check_positive, check_steps,
};

/// Configuration of [`CwL2`]. Defaults are Carlini & Wagner's, with 1,000 instead of 10,000
/// iterations per search (early abort usually stops far sooner).
#[derive(Config, Debug)]
pub struct CwL2Config {
    /// First trade-off constant `c` of every sample's binary search.
    #[config(default = 1e-3)]
    pub initial_const: f64,
    /// Number of binary-search rounds over `c`.
    #[config(default = 9)]
    pub binary_search_steps: usize,
    /// Adam iterations per round.
    #[config(default = 1000)]
    pub steps: usize,
    /// Adam learning rate on `w`.
    #[config(default = 0.01)]
    pub learning_rate: f64,
    /// Confidence margin κ ≥ 0: success requires the margin to exceed κ.
    #[config(default = 0.0)]
    pub kappa: f64,
    /// Stop a round when the loss stalls.
    #[config(default = true)]
    pub abort_early: bool,
    /// Optional L2 radius: results farther than `eps` are replaced by the clean input.
    #[config(default = "None")]
    pub eps: Option<f64>,
    /// Shared options (`loss` must stay `cw-margin`; no random start, one restart).
    #[config(default = "AttackOptions::new().with_loss(LossKind::CwMargin)")]
    pub options: AttackOptions,
}

impl CwL2Config {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<CwL2, AttackError> {
        self.options.validate()?;
        check_positive("initial_const", self.initial_const)?;
        check_positive("learning_rate", self.learning_rate)?;
        check_steps(self.steps)?;
        if self.binary_search_steps == 0 {
            return Err(invalid("binary_search_steps", 0, "must be >= 1"));
        }
        if !self.kappa.is_finite() || self.kappa < 0.0 {
            return Err(invalid("kappa", self.kappa, "must be finite and >= 0"));
        }
        if let Some(eps) = self.eps {
            ThreatModel::l2(eps).validate()?;
        }
        let unsupported = |reason: &str| AttackError::Unsupported {
            attack: "cw-l2",
            reason: reason.into(),
        };
        if self.options.loss != LossKind::CwMargin {
            return Err(unsupported(
                "optimizes its own margin objective; `loss` must be cw-margin",
            ));
        }
        if self.options.random_start || self.options.restarts != 1 {
            return Err(unsupported(
                "starts at the clean input and searches over c instead of restarting",
            ));
        }
        Ok(CwL2 {
            config: self.clone(),
        })
    }
}

/// The Carlini-Wagner L2 attack. Build with [`CwL2Config::init`].
#[derive(Debug, Clone)]
pub struct CwL2 {
    config: CwL2Config,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl Attack for CwL2 {
    fn name(&self) -> &'static str {
        "cw-l2"
    }

    fn options(&self) -> &AttackOptions {
        &self.config.options
    }

    fn threat(&self) -> Option<ThreatModel> {
        self.config.eps.map(ThreatModel::l2)
    }

    fn run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        observer: &mut StepObserver<'_>,
    ) -> Result<Tensor<D>, AttackError> {
        let cfg = &self.config;
        let batch = Batch::new(model, x, labels, targets, &cfg.options)?;
        if batch.b == 0 {
            return Ok(batch.unflatten(batch.x0.clone()));
        }
        batch.check_loss(LossKind::CwMargin)?;
        let (b, n, dev) = (batch.b, batch.n, batch.device.clone());
        let (lo, hi) = batch.bounds();
        let width = hi - lo;
        let kappa = cfg.kappa as f32;

        // w0 = atanh of the clean input mapped to (-1, 1), pulled slightly inside to stay finite.
        let w0: Vec<f32> = batch
            .x0_host
            .iter()
            .map(|&v| {
                (((f64::from(v) - lo) / width * 2.0 - 1.0).clamp(-1.0 + 1e-6, 1.0 - 1e-6)).atanh()
                    as f32
            })
            .collect();
        let w0 = upload(w0, b, n, &dev);

        let mut c = vec![cfg.initial_const; b];
        let (mut lower, mut upper) = (vec![0.0f64; b], vec![1e10f64; b]);
        // Per sample, the successful iterate closest to the clean input, and its squared distance.
        let mut best = batch.x0.clone();
        let mut best_d2 = Tensor::<1>::full([b], f32::MAX, &dev);
        let targets = batch.targets.clone();
        let margin_of = |z: Tensor<2>| match &targets {
            None => pick(z.clone(), &batch.labels) - max_other(z, &batch.labels),
            Some(t) => max_other(z.clone(), t) - pick(z, t),
        };

        for _ in 0..cfg.binary_search_steps {
            let c_t = Tensor::<1>::from_data(
                TensorData::new(c.iter().map(|&v| v as f32).collect(), [b]),
                &dev,
            );
            let mut w = w0.clone();
            let mut m = w.zeros_like();
            let mut v = w.zeros_like();
            let mut found = Tensor::<1>::zeros([b], &dev).equal_elem(1.0);
            let mut previous = f64::INFINITY;
            let check_every = (cfg.steps / 10).max(1);
            for it in 0..cfg.steps {
                let wa = w.clone().autodiff().require_grad();
                let xadv = (wa.clone().tanh() + 1.0) * (0.5 * width) + lo;
                let dist = (xadv.clone() - batch.x0.clone())
                    .square()
                    .sum_dim(1)
                    .reshape([b]);
                let input = batch.unflatten(xadv.clone());
                let logits = match cfg.options.crafting {
                    Crafting::Inference => batch.model().logits(input),
                    Crafting::Train => batch.model().logits_train_mode(input),
                };
                let margin = margin_of(logits);
                // The squared distance, kept for the choice of the best point below.
                let d2 = dist.clone().inner();
                let total = (dist + margin.clone().clamp_min(-kappa) * c_t.clone()).sum();
                let check = cfg.abort_early && (it + 1) % check_every == 0;
                let total_value =
                    check.then(|| f64::from(total.clone().inner().into_scalar::<f32>()));
                let grads = total.backward();
                let g = wa.grad(&grads).unwrap_or_else(|| w.zeros_like());

                // Record successes of this iterate (before the update), judged with inference
                // behaviour, also when crafting in train mode. Strictly negative margin: the
                // prediction is wrong (targeted: the target) without a tie, with the confidence.
                let xadv = xadv.inner();
                let margins = match cfg.options.crafting {
                    Crafting::Inference => margin.inner(),
                    Crafting::Train => margin_of(batch.logits(xadv.clone())),
                };
                let ok = margins
                    .clone()
                    .lower_elem(0.0)
                    .bool_and(margins.lower_equal_elem(-kappa));
                found = found.bool_or(ok.clone());
                // tanh keeps x' in the box up to rounding, which the end rounds away exactly.
                let better = ok.bool_and(d2.clone().lower(best_d2.clone()));
                best_d2 = best_d2.mask_where(better.clone(), d2);
                best = best.mask_where(better.reshape([b, 1]).expand([b, n]), xadv);

                // Adam step on w.
                let t = (it + 1) as i32;
                m = m * BETA1 + g.clone() * (1.0 - BETA1);
                v = v * BETA2 + g.square() * (1.0 - BETA2);
                let mhat = m.clone() / (1.0 - BETA1.powi(t));
                let vhat = v.clone() / (1.0 - BETA2.powi(t));
                w = w - mhat / (vhat.sqrt() + ADAM_EPS) * cfg.learning_rate;

                if let Some(total_value) = total_value {
                    if total_value > previous * 0.9999 {
                        break;
                    }
                    previous = total_value;
                }
            }
            let found = host_bool(found);
            for i in 0..b {
                if found[i] {
                    upper[i] = upper[i].min(c[i]);
                    c[i] = (lower[i] + upper[i]) / 2.0;
                } else {
                    lower[i] = lower[i].max(c[i]);
                    c[i] = if upper[i] < 1e9 {
                        (lower[i] + upper[i]) / 2.0
                    } else {
                        c[i] * 10.0
                    };
                }
            }
        }
        // Into the box exactly (rounded toward the clean input), then the threat model's check in
        // f64 on the values returned.
        let mut best: Vec<f32> = host_f32(best)
            .into_iter()
            .zip(&batch.x0_host)
            .map(|(p, &c)| toward(f64::from(p).clamp(lo, hi), c))
            .collect();
        if let Some(eps) = cfg.eps {
            for i in 0..b {
                let r = i * n..(i + 1) * n;
                let d = Norm::L2.of(best[r.clone()]
                    .iter()
                    .zip(&batch.x0_host[r.clone()])
                    .map(|(&p, &q)| f64::from(p) - f64::from(q)));
                if d > eps {
                    best[r.clone()].copy_from_slice(&batch.x0_host[r]);
                }
            }
        }
        let adv = upload(best, b, n, &dev);
        observer(&batch.x0, &adv);
        Ok(batch.unflatten(adv))
    }
}

crate::attack::settings!(minimal CwL2Config => CwL2, |c, o| {
    o.refuse("cw-l2", &["step_size", "decay"])?;
    if o.norm.is_some_and(|n| n != Norm::L2) {
        return Err(AttackError::Config(
            "cw-l2 measures L2 distances: use norm l2 (or none)".into(),
        ));
    }
});
