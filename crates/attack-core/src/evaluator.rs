//! [`Evaluator`]: robust accuracy the way AutoAttack and RobustBench report it — a list of attacks
//! run as a cascade, each only on the points still classified correctly, keeping the per-sample
//! worst case, at one or several radii.
//!
//! - A point counts as robust at radius `eps` when it is classified correctly clean and no stage
//!   found an input within `eps` (and inside the box) that the model misclassifies. The evaluator
//!   checks every adversarial example itself — prediction, distance in f64 (`≤ eps·(1 + 1e-12)`)
//!   and box — and counts an example outside the threat model as *rejected*, not as a success.
//! - Targeted stages (`target_classes = Some(k)`) attack toward each of the `k` classes with the
//!   highest clean logits after the top one, in turn, as AutoAttack's APGD-T does; a point is
//!   broken by any misclassification, not only by reaching the target — also inside the attack
//!   (`any_error`: the first misclassified iterate is kept and stops the sample).
//! - Several radii: sorted ascending; a point broken at a smaller radius stays broken at every
//!   larger one with the same example (it is inside the larger ball), so larger radii only attack
//!   the points still robust. This reuse is valid for every attack; the converse (skipping points
//!   robust at a larger radius) is not, and is not done.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::apgd::ApgdConfig;
use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::fab::FabConfig;
use crate::host::{argmax_rows, logits_host, upload_int};
use crate::options::{AttackOptions, Bounds, LossKind, Norm, Targeting, ThreatModel};
use crate::registry::AttackConfig;
use crate::square::SquareConfig;

/// One attack of a cascade.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    /// Name in reports (`apgd-ce`, `apgd-t`, `square`, ...).
    pub name: String,
    /// The attack; its radius is replaced by each evaluated eps.
    pub attack: AttackConfig,
    /// For targeted stages: the number of target classes tried in turn (the classes with the
    /// highest clean logits after the top one). `None` for untargeted stages.
    pub target_classes: Option<usize>,
}

/// Named attack lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// AutoAttack's standard list: APGD-CE, APGD-T (DLR), FAB-T, Square (L-inf, L2); in L1, where
    /// FAB-T and Square have no version here, APGD-CE, APGD-T and multi-targeted APGD.
    Standard,
    /// APGD-CE, then APGD-T over the 3 most likely target classes (AutoAttack uses 9): about a
    /// third of the standard list's gradient cost, no black-box stage.
    Quick,
}

impl Preset {
    /// The names [`Preset::from_str`](std::str::FromStr) accepts, one per preset.
    pub const NAMES: [&'static str; 2] = ["standard", "quick"];
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Ok(Preset::Standard),
            "quick" => Ok(Preset::Quick),
            other => Err(format!(
                "unknown preset `{other}` (expected standard or quick)"
            )),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Standard => "standard",
            Preset::Quick => "quick",
        })
    }
}

impl Preset {
    /// How this preset relates to AutoAttack's `standard` evaluation (Croce & Hein 2020), in
    /// words for reports.
    ///
    /// ```
    /// use bulwark_attack_core::{Norm, Preset};
    /// assert!(Preset::Standard.relation_to_autoattack(Norm::Linf).contains("FAB-T"));
    /// assert!(Preset::Quick.relation_to_autoattack(Norm::Linf).contains("upper bound"));
    /// ```
    pub fn relation_to_autoattack(self, norm: Norm) -> &'static str {
        match (self, norm) {
            (Preset::Standard, Norm::L1) => {
                "AutoAttack's L1 settings for APGD-CE (5 restarts) and APGD-T (5 targets), both \
                 with the large-radius warm start; multi-targeted APGD stands in for FAB-T and \
                 Square, which have no L1 version here"
            }
            (Preset::Standard, _) => {
                "AutoAttack's `standard` composition at its published settings: APGD-CE, APGD-T \
                 (9 targets) and FAB-T (9 targets), 100 iterations each, then Square (5,000 \
                 queries)"
            }
            (Preset::Quick, Norm::L1) => {
                "a cheaper part of `standard` (APGD-CE, then APGD-T over 3 targets instead of 5; \
                 no multi-targeted APGD): an upper bound on the `standard` robust accuracy"
            }
            (Preset::Quick, _) => {
                "a cheaper part of AutoAttack's `standard` composition (APGD-CE, then APGD-T over \
                 3 targets instead of 9; no FAB-T, no Square): an upper bound on the `standard` \
                 robust accuracy"
            }
        }
    }
}

/// Target classes of the quick preset's APGD-T.
const QUICK_TARGETS: usize = 3;

/// AutoAttack's settings per norm: APGD-CE restarts and target classes (L1: 5 and 5, with the
/// large-radius warm start; otherwise 1 and 9).
fn norm_settings(norm: Norm) -> (usize, usize, bool) {
    match norm {
        Norm::L1 => (5, 5, true),
        _ => (1, 9, false),
    }
}

impl Preset {
    /// The stages of this preset for `norm`, every random draw keyed by `seed`. The radius in the
    /// returned configurations is a placeholder, replaced per evaluated eps.
    pub fn stages(self, norm: Norm, seed: u64) -> Vec<Stage> {
        let names: &[&str] = match (self, norm) {
            (Preset::Quick, _) => &["apgd-ce", "apgd-t"],
            // FAB-T has no L1 version here: L1 keeps the multi-targeted APGD in its place.
            (Preset::Standard, Norm::L1) => &["apgd-ce", "apgd-t", "apgd-mt"],
            (Preset::Standard, _) => &["apgd-ce", "apgd-t", "fab-t", "square"],
        };
        let all = catalogue(norm, seed);
        let mut stages: Vec<Stage> = names
            .iter()
            .filter_map(|name| all.iter().find(|s| s.name == *name).cloned())
            .collect();
        if self == Preset::Quick {
            let (_, targets, _) = norm_settings(norm);
            stages[1].target_classes = Some(QUICK_TARGETS.min(targets));
        }
        stages
    }
}

/// Every named stage an evaluation can run, with AutoAttack's settings for `norm`: `apgd-ce`,
/// `apgd-t` (DLR loss), `fab-t` (L-inf and L2), `apgd-mt` (multi-targeted APGD with the CW margin
/// loss, not in AutoAttack: the standard list ran it in FAB-T's place before FAB-T was written)
/// and `square` (L-inf and L2). Targeted stages try the 9 most likely classes after the top one
/// (L1: 5); random draws are keyed by `seed`, the radius is a placeholder.
pub fn catalogue(norm: Norm, seed: u64) -> Vec<Stage> {
    let (restarts, targets, large_reps) = norm_settings(norm);
    let threat = ThreatModel::new(norm, 0.0);
    let options = AttackOptions::new()
        .with_random_start(true)
        .with_early_stop(true)
        .with_seed(seed);
    let apgd = |loss: LossKind, targeting: Targeting, restarts: usize| {
        AttackConfig::Apgd(
            ApgdConfig::new(threat)
                .with_large_reps(large_reps)
                .with_options(
                    options
                        .with_loss(loss)
                        .with_targeting(targeting)
                        .with_any_error(targeting.is_targeted())
                        .with_restarts(restarts),
                ),
        )
    };
    let stage = |name: &str, attack: AttackConfig, target_classes: Option<usize>| Stage {
        name: name.into(),
        attack,
        target_classes,
    };
    let mut stages = vec![
        stage(
            "apgd-ce",
            apgd(LossKind::CrossEntropy, Targeting::Untargeted, restarts),
            None,
        ),
        stage(
            "apgd-t",
            apgd(LossKind::Dlr, Targeting::Given, 1),
            Some(targets),
        ),
    ];
    if norm != Norm::L1 {
        stages.push(stage(
            "fab-t",
            AttackConfig::Fab(
                FabConfig::new(threat).with_options(
                    AttackOptions::new()
                        .with_targeting(Targeting::Given)
                        .with_any_error(true)
                        .with_early_stop(true)
                        .with_seed(seed),
                ),
            ),
            Some(targets),
        ));
    }
    stages.push(stage(
        "apgd-mt",
        apgd(LossKind::CwMargin, Targeting::Given, 1),
        Some(targets),
    ));
    if norm != Norm::L1 {
        stages.push(stage(
            "square",
            AttackConfig::Square(
                SquareConfig::new(threat).with_options(
                    AttackOptions::new()
                        .with_loss(LossKind::CwMargin)
                        .with_early_stop(true)
                        .with_seed(seed),
                ),
            ),
            None,
        ));
    }
    stages
}

/// Which stage broke a point, and at which radius it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    /// Index of the stage in the evaluator's list.
    pub stage: usize,
    /// Index of the radius (in [`Evaluator::eps`]) at which the example was found.
    pub eps_index: usize,
}

/// What one stage did at one radius on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Index of the radius in [`Evaluator::eps`].
    pub eps_index: usize,
    /// Index of the stage.
    pub stage: usize,
    /// Points attacked (summed over target classes for targeted stages).
    pub attacked: usize,
    /// Points newly broken.
    pub broken: usize,
    /// Misclassified examples outside the threat model (not counted as broken).
    pub rejected: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The evaluation of one batch.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// Per sample: classified correctly on the clean input.
    pub clean_correct: Vec<bool>,
    /// Per sample: the clean prediction.
    pub clean_predictions: Vec<usize>,
    /// `[radius][sample]`: the break, if the point is not robust (clean errors are `None` here and
    /// not robust either).
    pub broken: Vec<Vec<Option<Break>>>,
    /// `[radius]`: flat `[B·N]` worst-case inputs (the adversarial example where one was found,
    /// the clean input elsewhere).
    pub adversarial: Vec<Vec<f32>>,
    /// `[radius][sample]`: the prediction on the worst-case input.
    pub adversarial_predictions: Vec<Vec<usize>>,
    /// One record per radius and stage that ran.
    pub records: Vec<StageRecord>,
}

impl BatchOutcome {
    /// Per sample at radius `e`: robust (correct clean and not broken).
    pub fn robust(&self, e: usize) -> Vec<bool> {
        self.clean_correct
            .iter()
            .zip(&self.broken[e])
            .map(|(&c, b)| c && b.is_none())
            .collect()
    }
}

/// Progress of a running evaluation, for bars and logs.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The radius being evaluated.
    pub eps: f64,
    /// The stage's name.
    pub stage: &'a str,
    /// For targeted stages: which target class (1-based) of how many.
    pub target: Option<(usize, usize)>,
    /// Points being attacked.
    pub attacked: usize,
}

/// Runs a cascade of attacks at one or several radii. Build with [`Evaluator::new`].
#[derive(Debug, Clone)]
pub struct Evaluator {
    norm: Norm,
    eps: Vec<f64>,
    stages: Vec<Stage>,
    bounds: Bounds,
}

impl Evaluator {
    /// Checks the radii and every stage (with the norm, each radius and the box applied) and
    /// builds the evaluator. Radii are sorted and deduplicated.
    pub fn new(
        norm: Norm,
        eps: &[f64],
        stages: Vec<Stage>,
        bounds: Bounds,
    ) -> Result<Self, AttackError> {
        if eps.is_empty() {
            return Err(AttackError::Config("no eps to evaluate".into()));
        }
        if stages.is_empty() {
            return Err(AttackError::Config("the attack list is empty".into()));
        }
        let mut sorted = eps.to_vec();
        for &e in &sorted {
            ThreatModel::new(norm, e).validate()?;
        }
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        let mut fixed = Vec::with_capacity(stages.len());
        for mut stage in stages {
            if stage.target_classes == Some(0) {
                return Err(crate::error::invalid(
                    "target_classes",
                    0,
                    "must be >= 1 (or absent for an untargeted stage)",
                ));
            }
            if stage.target_classes.is_some() {
                let options = stage.attack.options_mut();
                options.targeting = Targeting::Given;
                // Any misclassification breaks a point, also on the way to a target.
                options.any_error = true;
            } else if stage.attack.options_mut().targeting == Targeting::Given {
                return Err(AttackError::Config(format!(
                    "stage `{}` is targeted with given targets but has no target_classes",
                    stage.name
                )));
            }
            stage.attack.options_mut().bounds = bounds;
            let at = stage.attack.with_eps(sorted[sorted.len() - 1]);
            let built = at
                .init()
                .map_err(|e| AttackError::Config(format!("stage `{}`: {e}", stage.name)))?;
            if built.norm() != norm {
                return Err(AttackError::Config(format!(
                    "stage `{}` measures {} distances but the evaluation is in {norm}",
                    stage.name,
                    built.norm()
                )));
            }
            fixed.push(stage);
        }
        Ok(Self {
            norm,
            eps: sorted,
            stages: fixed,
            bounds,
        })
    }

    /// The radii, ascending.
    pub fn eps(&self) -> &[f64] {
        &self.eps
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The threat-model norm.
    pub fn norm(&self) -> Norm {
        self.norm
    }

    /// The valid box.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Evaluates one batch: clean predictions, then every radius in ascending order, every stage
    /// in order on the points still robust.
    pub fn run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<BatchOutcome, AttackError> {
        let x = x.inner();
        let device = x.device();
        let dims = x.dims();
        let b = dims[0];
        let n: usize = dims[1..].iter().product();
        let labels_host: Vec<i64> = labels
            .inner()
            .try_into_vec_as::<i64>()
            .expect("int tensors read back as i64");
        if labels_host.len() != b {
            return Err(AttackError::CountMismatch {
                what: "labels",
                got: labels_host.len(),
                batch: b,
            });
        }
        if b == 0 {
            let e = self.eps.len();
            return Ok(BatchOutcome {
                clean_correct: Vec::new(),
                clean_predictions: Vec::new(),
                broken: vec![Vec::new(); e],
                adversarial: vec![Vec::new(); e],
                adversarial_predictions: vec![Vec::new(); e],
                records: Vec::new(),
            });
        }
        let x_host: Vec<f32> = x
            .clone()
            .try_into_vec_as::<f32>()
            .expect("float tensors read back as f32");
        let clean_logits = logits_host(model, x.clone());
        let k = clean_logits.len().checked_div(b).unwrap_or(0);
        let clean_predictions = argmax_rows(&clean_logits, k);
        let clean_correct: Vec<bool> = clean_predictions
            .iter()
            .zip(&labels_host)
            .map(|(&p, &y)| p as i64 == y)
            .collect();
        // Classes by clean logit, descending: the targets of targeted stages.
        let order: Vec<Vec<usize>> = clean_logits
            .chunks(k.max(1))
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &c| row[c].total_cmp(&row[a]).then(a.cmp(&c)));
                idx
            })
            .collect();
        let shape_of = |rows: usize| {
            let mut d = dims;
            d[0] = rows;
            d
        };
        let (lo, hi) = (self.bounds.lo, self.bounds.hi);

        let mut broken: Vec<Vec<Option<Break>>> = Vec::with_capacity(self.eps.len());
        let mut adversarial: Vec<Vec<f32>> = Vec::with_capacity(self.eps.len());
        let mut adv_pred: Vec<Vec<usize>> = Vec::with_capacity(self.eps.len());
        let mut records = Vec::new();
        for (e, &eps) in self.eps.iter().enumerate() {
            let mut br = broken.last().cloned().unwrap_or_else(|| vec![None; b]);
            let mut adv = adversarial
                .last()
                .cloned()
                .unwrap_or_else(|| x_host.clone());
            let mut preds = adv_pred
                .last()
                .cloned()
                .unwrap_or_else(|| clean_predictions.clone());
            if eps > 0.0 {
                for (s, stage) in self.stages.iter().enumerate() {
                    let attack = stage.attack.with_eps(eps).init()?;
                    let started = Instant::now();
                    let mut record = StageRecord {
                        eps_index: e,
                        stage: s,
                        attacked: 0,
                        broken: 0,
                        rejected: 0,
                        seconds: 0.0,
                    };
                    let ranks: Vec<Option<usize>> = match stage.target_classes {
                        Some(t) => (1..=t.min(k.saturating_sub(1))).map(Some).collect(),
                        None => vec![None],
                    };
                    for (r, rank) in ranks.iter().enumerate() {
                        let rows: Vec<usize> = (0..b)
                            .filter(|&i| clean_correct[i] && br[i].is_none())
                            .collect();
                        if rows.is_empty() {
                            break;
                        }
                        progress(&Progress {
                            eps,
                            stage: &stage.name,
                            target: rank.map(|_| (r + 1, ranks.len())),
                            attacked: rows.len(),
                        });
                        record.attacked += rows.len();
                        let xs: Vec<f32> = rows
                            .iter()
                            .flat_map(|&i| x_host[i * n..(i + 1) * n].iter().copied())
                            .collect();
                        let x_sub: Tensor<D> = Tensor::<2>::from_data(
                            TensorData::new(xs.clone(), [rows.len(), n]),
                            &device,
                        )
                        .reshape(shape_of(rows.len()));
                        let y_sub =
                            upload_int(rows.iter().map(|&i| labels_host[i]).collect(), &device);
                        let targets = rank.map(|rk| {
                            upload_int(rows.iter().map(|&i| order[i][rk] as i64).collect(), &device)
                        });
                        let out = attack.run(model, x_sub, y_sub, targets, &mut |_, _| {})?;
                        let out_host: Vec<f32> = out
                            .clone()
                            .try_into_vec_as::<f32>()
                            .expect("float tensors read back as f32");
                        let out_pred = argmax_rows(&logits_host(model, out), k);
                        for (j, &i) in rows.iter().enumerate() {
                            if out_pred[j] as i64 == labels_host[i] {
                                continue;
                            }
                            let row = &out_host[j * n..(j + 1) * n];
                            let clean = &x_host[i * n..(i + 1) * n];
                            if within_threat(self.norm, eps, (lo, hi), clean, row) {
                                br[i] = Some(Break {
                                    stage: s,
                                    eps_index: e,
                                });
                                adv[i * n..(i + 1) * n].copy_from_slice(row);
                                preds[i] = out_pred[j];
                                record.broken += 1;
                            } else {
                                record.rejected += 1;
                            }
                        }
                    }
                    record.seconds = started.elapsed().as_secs_f64();
                    records.push(record);
                }
            }
            broken.push(br);
            adversarial.push(adv);
            adv_pred.push(preds);
        }
        Ok(BatchOutcome {
            clean_correct,
            clean_predictions,
            broken,
            adversarial,
            adversarial_predictions: adv_pred,
            records,
        })
    }
}

/// Is `adv` inside the `norm` ball of radius `eps` around `clean` (the distance computed in f64,
/// with a margin of 1e-12 relative for the rounding of that sum) and inside the box `(lo, hi)`?
/// The test every example must pass before it counts as breaking a point.
///
/// ```
/// use bulwark_attack_core::{Norm, within_threat};
/// assert!(within_threat(Norm::Linf, 0.125, (0.0, 1.0), &[0.5, 0.5], &[0.625, 0.375]));
/// assert!(!within_threat(Norm::Linf, 0.125, (0.0, 1.0), &[0.5, 0.5], &[0.75, 0.5]));
/// // Inside the ball, outside the box.
/// assert!(!within_threat(Norm::L2, 1.0, (0.0, 1.0), &[0.875], &[1.125]));
/// // f32 rounding counts: 0.6f32 - 0.5f32 is slightly more than 0.1.
/// assert!(!within_threat(Norm::Linf, 0.1, (0.0, 1.0), &[0.5], &[0.6]));
/// ```
pub fn within_threat(
    norm: Norm,
    eps: f64,
    (lo, hi): (f64, f64),
    clean: &[f32],
    adv: &[f32],
) -> bool {
    let in_box = adv
        .iter()
        .all(|&v| f64::from(v) >= lo && f64::from(v) <= hi);
    let d = norm.of(adv
        .iter()
        .zip(clean)
        .map(|(&a, &c)| f64::from(a) - f64::from(c)));
    in_box && d <= eps * (1.0 + 1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threat_check_rejects_anything_outside_the_ball_or_the_box() {
        let clean = [0.5f32, 0.5, 0.0];
        let b = (0.0, 1.0);
        // L-inf: exactly eps in, one f32 step beyond out.
        assert!(within_threat(
            Norm::Linf,
            0.25,
            b,
            &clean,
            &[0.75, 0.25, 0.25]
        ));
        let beyond = f32::from_bits(0.75f32.to_bits() + 1);
        assert!(!within_threat(
            Norm::Linf,
            0.25,
            b,
            &clean,
            &[beyond, 0.5, 0.0]
        ));
        // L2 and L1 on the same perturbation (0.3, 0.4, 0): norms 0.5 and 0.7.
        let adv = [0.8f32, 0.9, 0.0];
        let (l2, l1) = (
            Norm::L2.of(adv
                .iter()
                .zip(&clean)
                .map(|(&a, &c)| f64::from(a) - f64::from(c))),
            Norm::L1.of(adv
                .iter()
                .zip(&clean)
                .map(|(&a, &c)| f64::from(a) - f64::from(c))),
        );
        assert!(within_threat(Norm::L2, l2, b, &clean, &adv));
        assert!(!within_threat(Norm::L2, l2 * (1.0 - 1e-9), b, &clean, &adv));
        assert!(within_threat(Norm::L1, l1, b, &clean, &adv));
        assert!(!within_threat(Norm::L1, 0.69, b, &clean, &adv));
        // Outside the box, however close.
        assert!(!within_threat(
            Norm::Linf,
            0.5,
            b,
            &clean,
            &[0.5, 0.5, -1e-7]
        ));
    }
}
