//! DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016), L2 and L-inf: minimal perturbations by
//! repeated linearization of the decision boundaries.
//!
//! Each iteration linearizes, for the label `y` and every candidate class `k` (the `candidates`
//! highest clean logits other than `y`), the logit difference `f_k = z_k − z_y` with gradient
//! `w_k = ∇z_k − ∇z_y`, picks the closest boundary `l = argmin_k |f_k| / ‖w_k‖_q` (q the dual norm:
//! 2 for L2, 1 for L-inf) and moves just across it, as the authors' reference code does: L2
//! `r = (|f_l|/‖w_l‖₂ + 1e-4)·w_l/‖w_l‖₂`, L-inf `r = (|f_l|/‖w_l‖₁ + 1e-4)·sign(w_l)` (coordinates
//! with `w_i = 0` do not move). The total perturbation, scaled by `1 + overshoot`, is
//! added to the clean input and clamped to the box; a sample stops as soon as it is misclassified
//! (or when its gradients vanish, which gives no step and no NaN); "misclassified" is always judged
//! with inference behaviour, also when crafting in train mode. All gradients of an iteration
//! come from one forward/backward over the batch repeated once per class considered. With `eps`
//! set, results farther than eps are replaced by the clean input.

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::attack::Attack;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid};
use crate::host::{host_f32, upload};
use crate::iterative::StepObserver;
use crate::options::{
    AttackOptions, Crafting, LossKind, Norm, Targeting, ThreatModel, check_steps,
};
use crate::overrides::set;

/// Configuration of [`DeepFool`]. Defaults are the paper's: 50 iterations, overshoot 0.02, the 10
/// most likely classes.
#[derive(Config, Debug)]
pub struct DeepFoolConfig {
    /// `linf` or `l2`.
    #[config(default = "Norm::L2")]
    pub norm: Norm,
    /// Maximum number of iterations.
    #[config(default = 50)]
    pub steps: usize,
    /// Overshoot factor applied to the accumulated perturbation.
    #[config(default = 0.02)]
    pub overshoot: f64,
    /// Number of candidate classes besides the label (highest clean logits first).
    #[config(default = 9)]
    pub candidates: usize,
    /// Optional radius: results farther than `eps` (in `norm`) are replaced by the clean input.
    #[config(default = "None")]
    pub eps: Option<f64>,
    /// Shared options (untargeted only; `loss`, random start and restarts do not apply).
    #[config(default = "AttackOptions::new()")]
    pub options: AttackOptions,
}

impl DeepFoolConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<DeepFool, AttackError> {
        self.options.validate()?;
        check_steps(self.steps)?;
        let unsupported = |reason: &str| AttackError::Unsupported {
            attack: "deepfool",
            reason: reason.into(),
        };
        if self.norm == Norm::L1 {
            return Err(unsupported("supports the l2 and linf norms"));
        }
        if !self.overshoot.is_finite() || self.overshoot < 0.0 {
            return Err(invalid(
                "overshoot",
                self.overshoot,
                "must be finite and >= 0",
            ));
        }
        if self.candidates == 0 {
            return Err(invalid("candidates", 0, "must be >= 1"));
        }
        if let Some(eps) = self.eps {
            ThreatModel::new(self.norm, eps).validate()?;
        }
        if self.options.targeting != Targeting::Untargeted {
            return Err(unsupported("is untargeted"));
        }
        if self.options.loss != LossKind::CrossEntropy
            || self.options.random_start
            || self.options.restarts != 1
        {
            return Err(unsupported(
                "uses logit differences from the clean input: `loss`, `random_start` and `restarts` do not apply",
            ));
        }
        Ok(DeepFool {
            config: self.clone(),
        })
    }
}

/// The DeepFool attack. Build with [`DeepFoolConfig::init`].
#[derive(Debug, Clone)]
pub struct DeepFool {
    config: DeepFoolConfig,
}

impl Attack for DeepFool {
    fn name(&self) -> &'static str {
        "deepfool"
    }

    fn options(&self) -> &AttackOptions {
        &self.config.options
    }

    fn threat(&self) -> Option<ThreatModel> {
        self.config
            .eps
            .map(|eps| ThreatModel::new(self.config.norm, eps))
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
        let (b, n, k, dev) = (batch.b, batch.n, batch.num_classes, batch.device.clone());
        let (lo, hi) = batch.bounds();
        let labels = batch.labels_host().to_vec();
        let x0 = batch.x0_host.clone();

        // Classes considered per sample: the label first, then the most likely others.
        let clean = host_f32(batch.logits(batch.x0.clone()));
        let classes: Vec<Vec<usize>> = (0..b)
            .map(|i| {
                let row = &clean[i * k..(i + 1) * k];
                let y = labels[i] as usize;
                let mut others: Vec<usize> = (0..k).filter(|&c| c != y).collect();
                others.sort_by(|&p, &q| row[q].total_cmp(&row[p]).then(p.cmp(&q)));
                others.truncate(cfg.candidates);
                std::iter::once(y).chain(others).collect()
            })
            .collect();
        let m = classes[0].len();
        // Block j of the repeated batch differentiates class `classes[i][j]` of sample i.
        let picks: Vec<i64> = (0..m)
            .flat_map(|j| classes.iter().map(move |c| c[j] as i64))
            .collect();
        let picks = Tensor::<2, Int>::from_data(TensorData::new(picks, [m * b, 1]), &dev);

        let mut r_tot = vec![0f64; b * n];
        let mut x = x0.clone();
        let mut active = vec![true; b];
        for _ in 0..cfg.steps {
            let xt = upload(x.clone(), b, n, &dev);
            let xr = batch
                .unflatten(Tensor::cat(vec![xt; m], 0))
                .autodiff()
                .require_grad();
            let logits = match cfg.options.crafting {
                Crafting::Inference => batch.model().logits(xr.clone()),
                Crafting::Train => batch.model().logits_train_mode(xr.clone()),
            };
            let chosen = logits.clone().gather(1, picks.clone());
            let chosen = chosen.sum();
            // A model that cuts the graph has a zero input gradient.
            let g = match chosen
                .is_tracked()
                .then(|| xr.grad(&chosen.backward()))
                .flatten()
            {
                Some(g) => host_f32(g.reshape([m * b, n])),
                None => vec![0f32; m * b * n],
            };
            // Whether a sample is already fooled is judged with inference behaviour.
            let z = match cfg.options.crafting {
                Crafting::Inference => host_f32(logits.inner().slice([0..b, 0..k])),
                Crafting::Train => host_f32(batch.logits(upload(x.clone(), b, n, &dev))),
            };
            for i in 0..b {
                if !active[i] {
                    continue;
                }
                let row = &z[i * k..(i + 1) * k];
                let y = labels[i] as usize;
                let pred = (0..k)
                    .max_by(|&p, &q| row[p].total_cmp(&row[q]).then(q.cmp(&p)))
                    .unwrap_or(y);
                if pred != y {
                    active[i] = false;
                    continue;
                }
                let gy = &g[i * n..(i + 1) * n];
                let mut best: Option<(f64, f64, Vec<f64>)> = None; // (distance, |f|, w)
                for j in 1..m {
                    let c = classes[i][j];
                    let gc = &g[(j * b + i) * n..(j * b + i + 1) * n];
                    let w: Vec<f64> = gc
                        .iter()
                        .zip(gy)
                        .map(|(&a, &bb)| f64::from(a) - f64::from(bb))
                        .collect();
                    let f = (f64::from(row[c]) - f64::from(row[y])).abs();
                    let dual = match cfg.norm {
                        Norm::L2 => Norm::L2.of(w.iter().copied()),
                        _ => Norm::L1.of(w.iter().copied()),
                    };
                    if dual > 0.0 && best.as_ref().is_none_or(|(d, _, _)| f / dual < *d) {
                        best = Some((f / dual, f, w));
                    }
                }
                let Some((_, f, w)) = best else {
                    active[i] = false; // all boundaries are flat here: no direction to move in
                    continue;
                };
                let r = i * n..(i + 1) * n;
                match cfg.norm {
                    Norm::L2 => {
                        let norm = Norm::L2.of(w.iter().copied());
                        let s = (f / norm + 1e-4) / norm;
                        r_tot[r.clone()]
                            .iter_mut()
                            .zip(&w)
                            .for_each(|(t, wv)| *t += s * wv);
                    }
                    _ => {
                        let s = f / Norm::L1.of(w.iter().copied()) + 1e-4;
                        // `0.0_f64.signum()` is 1: coordinates without gradient must not move.
                        r_tot[r.clone()]
                            .iter_mut()
                            .zip(&w)
                            .filter(|(_, wv)| **wv != 0.0)
                            .for_each(|(t, wv)| *t += s * wv.signum());
                    }
                }
                for ((xv, &c), &t) in x[r.clone()].iter_mut().zip(&x0[r.clone()]).zip(&r_tot[r]) {
                    *xv = ((f64::from(c) + (1.0 + cfg.overshoot) * t).clamp(lo, hi)) as f32;
                }
            }
            if active.iter().all(|a| !a) {
                break;
            }
        }
        let mut x: Vec<f32> = x
            .into_iter()
            .zip(&x0)
            .map(|(v, &c)| crate::geometry::toward(f64::from(v).clamp(lo, hi), c))
            .collect();
        if let Some(eps) = cfg.eps {
            for i in 0..b {
                let r = i * n..(i + 1) * n;
                let d = cfg.norm.of(x[r.clone()]
                    .iter()
                    .zip(&x0[r.clone()])
                    .map(|(&p, &q)| f64::from(p) - f64::from(q)));
                if d > eps {
                    x[r.clone()].copy_from_slice(&x0[r]);
                }
            }
        }
        let adv = upload(x, b, n, &dev);
        observer(&batch.x0, &adv);
        Ok(batch.unflatten(adv))
    }
}

crate::attack::settings!(minimal DeepFoolConfig => DeepFool, |c, o| {
    o.refuse("deepfool", &["step_size", "decay"])?;
    if o.norm == Some(Norm::L1) {
        return Err(AttackError::Config(
            "deepfool supports norm l2 or linf".into(),
        ));
    }
    set(&mut c.norm, o.norm);
});
