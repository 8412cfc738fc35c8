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
//!
//! The iterations run on the device: the linearized boundaries of every sample and candidate, the
//! choice of the closest and the step are batched tensor operations, and the accumulated
//! perturbation and the active samples are tensors. Device-to-host reads per batch: the clean
//! logits once (to rank the candidate classes), one boolean per iteration (whether any sample is
//! still active), and the result once at the end, where the box (rounded toward the clean input)
//! and the eps check are applied exactly in f64.

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::attack::Attack;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid};
use crate::host::{host_bool, host_f32, upload};
use crate::iterative::StepObserver;
use crate::loss::pick;
use crate::options::{
    AttackOptions, Crafting, LossKind, Norm, Targeting, ThreatModel, check_steps,
};
use crate::overrides::set;

/// The longest step DeepFool takes along one boundary's normal: any longer step leaves the box,
/// which clamps it, and a finite bound keeps `0·∞` out of the coordinates that do not move.
const STEP_LIMIT: f32 = 1e30;

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
        if m == 1 {
            // A one-class model has no boundary to cross: every sample keeps its clean input.
            observer(&batch.x0, &batch.x0);
            return Ok(batch.unflatten(batch.x0.clone()));
        }
        // Block j of the repeated batch differentiates class `classes[i][j]` of sample i.
        let picks: Vec<i64> = (0..m)
            .flat_map(|j| classes.iter().map(move |c| c[j] as i64))
            .collect();
        let picks = Tensor::<2, Int>::from_data(TensorData::new(picks, [m * b, 1]), &dev);

        // The candidate classes (not the label) of every sample, `[B, m − 1]`, for the logits.
        let others: Vec<i64> = classes
            .iter()
            .flat_map(|c| c[1..].iter().map(|&v| v as i64))
            .collect();
        let others = Tensor::<2, Int>::from_data(TensorData::new(others, [b, m - 1]), &dev);
        let x0 = batch.x0.clone();
        let mut r_tot = x0.zeros_like();
        let mut x = x0.clone();
        let mut active = Tensor::<1>::ones([b], &dev).equal_elem(1.0);
        for _ in 0..cfg.steps {
            let xr = batch
                .unflatten(Tensor::cat(vec![x.clone(); m], 0))
                .autodiff()
                .require_grad();
            let logits = match cfg.options.crafting {
                Crafting::Inference => batch.model().logits(xr.clone()),
                Crafting::Train => batch.model().logits_train_mode(xr.clone()),
            };
            let chosen = logits.clone().gather(1, picks.clone()).sum();
            // A model that cuts the graph has a zero input gradient.
            let g = chosen
                .is_tracked()
                .then(|| xr.grad(&chosen.backward()))
                .flatten()
                .map(|g| g.reshape([m, b, n]))
                .unwrap_or_else(|| Tensor::zeros([m, b, n], &dev));
            // Whether a sample is already fooled is judged with inference behaviour.
            let z = match cfg.options.crafting {
                Crafting::Inference => logits.inner().slice([0..b, 0..k]),
                Crafting::Train => batch.logits(x.clone()),
            };
            let fooled = z
                .clone()
                .argmax(1)
                .reshape([b])
                .not_equal(batch.labels.clone());
            active = active.bool_and(fooled.bool_not());
            // Per candidate j and sample i: w = ∇z_c − ∇z_y and f = |z_c − z_y|, `[m − 1, B, ·]`.
            let w = g.clone().slice([1..m, 0..b, 0..n]) - g.slice([0..1, 0..b, 0..n]);
            let zy = pick(z.clone(), &batch.labels).reshape([b, 1]);
            let f = (z.gather(1, others.clone()) - zy)
                .abs()
                .swap_dims(0, 1)
                .reshape([m - 1, b, 1]);
            // The dual norm of each w, computed on w scaled by its largest |w_i| so that the
            // squares of tiny gradients do not underflow in f32.
            let big = w.clone().abs().max_dim(2);
            let scaled = w.clone() / big.clone().clamp_min(f32::MIN_POSITIVE);
            let scaled_dual = match cfg.norm {
                Norm::L2 => scaled.clone().square().sum_dim(2).sqrt(),
                _ => scaled.clone().abs().sum_dim(2),
            };
            let dual = scaled_dual.clone() * big.clone();
            // The closest boundary among those with a direction (a flat one, w = 0, is given the
            // largest ratio and never chosen while another has a direction; no infinities, which
            // a GPU's shader compiler may assume away).
            let flat = big.lower_equal_elem(0.0);
            let ratio = (f.clone() / dual.clone().clamp_min(f32::MIN_POSITIVE))
                .clamp_max(f32::MAX)
                .mask_fill(flat.clone(), f32::MAX);
            let closest = ratio.argmin(0);
            // All boundaries are flat: no direction to move in, the sample stops.
            let moving = flat
                .bool_not()
                .int()
                .sum_dim(0)
                .reshape([b])
                .greater_elem(0);
            active = active.bool_and(moving);
            let pick_l = |t: Tensor<3>, width: usize| {
                t.gather(0, closest.clone().expand([1, b, width]))
                    .reshape([b, width])
            };
            let f_l = pick_l(f, 1);
            let dual_l = pick_l(dual, 1).clamp_min(f32::MIN_POSITIVE);
            // The step's length |f|/‖w‖ + 1e-4, kept finite (the box clamps any longer step).
            let length = (f_l / dual_l + 1e-4).clamp_max(STEP_LIMIT);
            let step = match cfg.norm {
                // Along the unit vector w/‖w‖₂, from the scaled w.
                Norm::L2 => {
                    let unit =
                        pick_l(scaled, n) / pick_l(scaled_dual, 1).clamp_min(f32::MIN_POSITIVE);
                    unit * length
                }
                // sign(0) = 0: coordinates without gradient do not move.
                _ => pick_l(w, n).sign() * length,
            };
            let wide = active.clone().reshape([b, 1]).expand([b, n]);
            r_tot = r_tot.clone().mask_where(wide, r_tot + step);
            x = (x0.clone() + r_tot.clone() * (1.0 + cfg.overshoot)).clamp(lo, hi);
            if !host_bool(active.clone().any())[0] {
                break;
            }
        }
        let x0 = batch.x0_host.clone();
        let x = host_f32(x);
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
