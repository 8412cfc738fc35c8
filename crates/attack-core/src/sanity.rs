//! Sanity checks that say when a robustness number is not to be trusted (Carlini et al. 2019, "On
//! evaluating adversarial robustness"; Athalye et al. 2018, "Obfuscated gradients"). Each check
//! returns a [`SanityFlag`] with its evidence; reports list every flag, raised or not.
//!
//! The rules, and their thresholds:
//! - `nondeterministic`: two clean forward passes of the same batch differ at all.
//! - `probability-outputs`: at least 90 % of the rows are in [0, 1] and sum to 1 (±1e-3), or are
//!   all ≤ 0 with a log-sum-exp of 0 (±1e-3): softmax or log-softmax outputs, not logits.
//! - `zero-gradients`: more than 10 % of the samples have an input gradient of exactly zero
//!   (gradient of the CW margin, which does not saturate like cross-entropy does on confident
//!   points).
//! - `black-box-beats-white-box`: the score-based attack broke more than 0.2 % of the evaluated
//!   points after every gradient attack had failed on them (AutoAttack's own warning threshold).
//! - `robust-accuracy-not-decreasing`: for two radii of the sweep with `e2 ≥ 2·e1 > 0` — or the
//!   headline radius and the large radius below — the robust accuracy at `e2` is not below the one
//!   at `e1` while that one is above 0.
//! - `large-eps-not-broken`: at a radius that contains the mid-grey image around every input
//!   (half the box width in L-inf, times `√N` in L2, times `N` in L1), more than 10 % of the
//!   probed points survive APGD-CE. Every such point could be mapped to one constant image.
//! - `recomputed-accuracy-differs`: the accuracy of the model on the saved worst-case inputs,
//!   reloaded from disk, differs from the reported robust accuracy.
//! - `outside-threat-model`: an attack returned a misclassified example outside the eps-ball or
//!   the box (rejected, not counted, but a bug worth seeing).

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::host::{argmax_rows, host_f32, logits_host, probability_rows};
use crate::options::{AttackOptions, Bounds, LossKind, Norm};

/// Whether a check fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagStatus {
    /// Checked, nothing suspicious.
    Ok,
    /// Checked and fired: the robustness number may be wrong.
    Raised,
    /// Could not be checked in this evaluation (the evidence says why).
    NotChecked,
}

/// The outcome of one sanity check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityFlag {
    /// The check's identifier (`nondeterministic`, `zero-gradients`, ...).
    pub check: String,
    /// Ok, raised or not checked.
    pub status: FlagStatus,
    /// The numbers behind the status, in words.
    pub evidence: String,
}

impl SanityFlag {
    fn new(check: &str, raised: bool, evidence: String) -> Self {
        Self {
            check: check.into(),
            status: if raised {
                FlagStatus::Raised
            } else {
                FlagStatus::Ok
            },
            evidence,
        }
    }

    /// A check this evaluation could not make.
    pub fn not_checked(check: &str, why: &str) -> Self {
        Self {
            check: check.into(),
            status: FlagStatus::NotChecked,
            evidence: why.into(),
        }
    }

    /// True when the check fired.
    pub fn raised(&self) -> bool {
        self.status == FlagStatus::Raised
    }
}

/// `nondeterministic`: runs the clean batch twice and compares the outputs.
pub fn check_deterministic<const D: usize, C: Classifier<D> + ?Sized>(
    model: &C,
    x: Tensor<D>,
) -> SanityFlag {
    let rows = x.dims()[0].max(1);
    let a = logits_host(model, x.clone());
    let b = logits_host(model, x);
    let diff = a
        .iter()
        .zip(&b)
        .filter(|(p, q)| !(p.is_nan() && q.is_nan()))
        .map(|(p, q)| (f64::from(*p) - f64::from(*q)).abs())
        .fold(
            0.0,
            |m: f64, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        );
    let k = a.len() / rows;
    let pa = argmax_rows(&a, k);
    let pb = argmax_rows(&b, k);
    let changed = pa.iter().zip(&pb).filter(|(p, q)| p != q).count();
    SanityFlag::new(
        "nondeterministic",
        diff > 0.0 || a.len() != b.len(),
        format!(
            "two clean passes over {} inputs: largest output difference {diff:.3e}, {changed} predictions changed",
            pa.len()
        ),
    )
}

/// `probability-outputs`: do the outputs look like (log-)probabilities rather than logits?
pub fn check_logits<const D: usize, C: Classifier<D> + ?Sized>(
    model: &C,
    x: Tensor<D>,
) -> SanityFlag {
    let rows = x.dims()[0];
    let out = logits_host(model, x);
    if rows == 0 || out.is_empty() {
        return SanityFlag::not_checked("probability-outputs", "no inputs");
    }
    let k = out.len() / rows;
    let (probs, log_probs) = probability_rows(&out, k);
    let share = probs.max(log_probs) as f64 / rows as f64;
    SanityFlag::new(
        "probability-outputs",
        share >= 0.9,
        format!(
            "{probs} of {rows} output rows look like probabilities (in [0, 1], summing to 1), \
             {log_probs} like log-probabilities; attacks need logits"
        ),
    )
}

/// `zero-gradients`: the share of samples whose input gradient (of the CW margin) is exactly zero.
pub fn check_gradients<const D: usize, C: Classifier<D> + ?Sized>(
    model: &C,
    x: Tensor<D>,
    labels: Tensor<1, Int>,
    bounds: Bounds,
) -> Result<SanityFlag, AttackError> {
    let options = AttackOptions::new().with_bounds(bounds);
    let batch = Batch::new(model, x, labels, None, &options)?;
    if batch.b == 0 {
        return Ok(SanityFlag::not_checked("zero-gradients", "no inputs"));
    }
    let (_, g) = batch.gradient(batch.x0.clone(), LossKind::CwMargin);
    let g = host_f32(g);
    let n = batch.n.max(1);
    let zero_samples = g.chunks(n).filter(|r| r.iter().all(|&v| v == 0.0)).count();
    let zero_values = g.iter().filter(|&&v| v == 0.0).count();
    let share = zero_samples as f64 / batch.b as f64;
    Ok(SanityFlag::new(
        "zero-gradients",
        share > 0.1,
        format!(
            "{zero_samples} of {} samples have an all-zero input gradient; {:.1} % of all gradient values are zero",
            batch.b,
            100.0 * zero_values as f64 / g.len().max(1) as f64
        ),
    ))
}

/// The share of probed points a black-box probe must break for `black-box-beats-white-box` to be
/// raised (at least one point): half of the 1 % at which a gap matters. With 500 probed points
/// (the evaluator's default), if the probe breaks a share `p` of the points it probes, the flag is
/// raised with probability 0.88 at `p` = 1 %, 0.99 at 1.7 % and 0.014 at 0.1 % (the breaks are
/// binomial; `docs/evaluation.md`).
pub const PROBE_FLAG_SHARE: f64 = 0.005;

/// `black-box-beats-white-box` from a probe: a `queries`-query black-box attack broke `found` of
/// `probed` points that every gradient attack had failed on. Raised from
/// [`PROBE_FLAG_SHARE`] of the probed points (at least one).
pub fn black_box_probe_flag(found: usize, probed: usize, queries: usize) -> SanityFlag {
    let needed = ((PROBE_FLAG_SHARE * probed as f64).ceil() as usize).max(1);
    SanityFlag::new(
        "black-box-beats-white-box",
        found >= needed,
        format!(
            "a {queries}-query Square probe broke {found} of {probed} points still robust after \
             the gradient attacks ({:.1} %; raised from {needed}, {:.1} % of those probed)",
            100.0 * found as f64 / probed.max(1) as f64,
            100.0 * PROBE_FLAG_SHARE
        ),
    )
}

/// `black-box-beats-white-box`: `extra` points broken by the black-box stage after the gradient
/// stages, out of `n` evaluated points.
pub fn black_box_flag(extra: usize, n: usize) -> SanityFlag {
    SanityFlag::new(
        "black-box-beats-white-box",
        extra as f64 > 0.002 * n as f64,
        format!(
            "the score-based attack broke {extra} of {n} points that every gradient attack had failed on"
        ),
    )
}

/// `robust-accuracy-not-decreasing`: `points` are (eps, robust count) over `n` points, any order;
/// pairs with `e2 ≥ ratio·e1`, `e1 > 0` and something robust at `e1` are compared (the sweep uses
/// a ratio of 2; the large-radius probe, which must be near 0 anyway, any larger radius: 1). Not
/// checked when no pair qualifies.
pub fn eps_trend_flag(points: &[(f64, usize)], n: usize, ratio: f64) -> SanityFlag {
    let (mut compared, mut bad) = (0usize, Vec::new());
    for &(e1, r1) in points {
        for &(e2, r2) in points {
            if e1 > 0.0 && e2 > e1 && e2 >= ratio * e1 && r1 > 0 {
                compared += 1;
                if r2 >= r1 {
                    bad.push(format!("{r1} robust at eps {e1}, {r2} at eps {e2}"));
                }
            }
        }
    }
    if compared == 0 {
        return SanityFlag::not_checked(
            "robust-accuracy-not-decreasing",
            &if ratio > 1.0 {
                format!(
                    "no two radii to compare (need e2 ≥ {ratio}·e1 > 0 with points robust at e1)"
                )
            } else {
                "no two radii to compare (need a larger radius than one with robust points)".into()
            },
        );
    }
    let evidence = if bad.is_empty() {
        format!("robust accuracy falls in all {compared} compared pairs of radii, over {n} points")
    } else {
        format!("over {n} points: {}", bad.join("; "))
    };
    SanityFlag::new("robust-accuracy-not-decreasing", !bad.is_empty(), evidence)
}

/// The radius that contains the mid-grey image around every input of `n` values in the box.
pub fn large_eps(norm: Norm, bounds: Bounds, n: usize) -> f64 {
    let half = (bounds.hi - bounds.lo) / 2.0;
    match norm {
        Norm::Linf => half,
        Norm::L2 => half * (n as f64).sqrt(),
        Norm::L1 => half * n as f64,
    }
}

/// The largest distance between two inputs of `n` values in the box, in `norm`: a ball of this
/// radius around any valid input holds every valid input.
pub fn box_diameter(norm: Norm, bounds: Bounds, n: usize) -> f64 {
    2.0 * large_eps(norm, bounds, n)
}

/// `eps-covers-box`: raised when a threat model's radius `eps` reaches the diameter of the box of
/// `n` values, where the ball around every input holds every valid input: the attack may then
/// return any image at all, and a robust accuracy at that radius measures nothing about
/// robustness (an eps typed in the wrong units, 8 for 8/255, is the usual cause).
///
/// ```
/// use bulwark_attack_core::{Bounds, Norm, sanity::eps_box_flag};
/// assert!(eps_box_flag(Norm::Linf, 1e9, Bounds::new(), 784).raised());
/// assert!(!eps_box_flag(Norm::Linf, 0.3, Bounds::new(), 784).raised());
/// assert!(!eps_box_flag(Norm::L2, 2.0, Bounds::new(), 784).raised()); // diameter 28
/// ```
pub fn eps_box_flag(norm: Norm, eps: f64, bounds: Bounds, n: usize) -> SanityFlag {
    let diameter = box_diameter(norm, bounds, n);
    SanityFlag::new(
        "eps-covers-box",
        eps >= diameter,
        format!(
            "eps {eps} against the box's {norm} diameter {diameter} ({n} values in [{}, {}]){}",
            bounds.lo,
            bounds.hi,
            if eps >= diameter {
                ": the ball around each input holds every valid input, so the result says \
                 nothing about robustness (eps in the wrong units, e.g. 8 for 8/255?)"
            } else {
                ""
            }
        ),
    )
}

/// `cascade-above-simpler-attack`: the cascade left `cascade_robust` of `n` points robust, while
/// `other`, a simpler attack run on the same points, left `other_robust`; `only_other` points were
/// broken by `other` and not by the cascade. Raised when the cascade ends above the simpler
/// attack: a stronger evaluation that reports a higher robust accuracy missed what a weaker one
/// found (too few restarts or iterations, a model that defeats one loss, a broken gradient). The
/// headline robust accuracy is the per-sample worst case over both either way.
///
/// ```
/// use bulwark_attack_core::sanity::cascade_vs_attack_flag;
/// assert!(cascade_vs_attack_flag("PGD-50 x10", 9169, 9118, 60, 10_000).raised());
/// assert!(!cascade_vs_attack_flag("PGD-50 x10", 8564, 8851, 2, 10_000).raised());
/// ```
pub fn cascade_vs_attack_flag(
    other: &str,
    cascade_robust: usize,
    other_robust: usize,
    only_other: usize,
    n: usize,
) -> SanityFlag {
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    SanityFlag::new(
        "cascade-above-simpler-attack",
        cascade_robust > other_robust,
        format!(
            "cascade {:.2} % vs {other} {:.2} % on the same {n} points; {only_other} point(s) \
             broken only by {other} (both count in the headline)",
            pct(cascade_robust),
            pct(other_robust)
        ),
    )
}

/// `verified-not-robust`: of `proved` points a verifier (`method`) proved robust, `contradicted`
/// were broken by an attack or misclassified clean. Either the bounds or the attack is wrong: a
/// verified point can never be broken.
pub fn verified_flag(method: &str, proved: usize, contradicted: usize, n: usize) -> SanityFlag {
    SanityFlag::new(
        "verified-not-robust",
        contradicted > 0,
        format!(
            "{method} verified {proved} of {n} point(s); {contradicted} of them broken by an attack \
             or misclassified"
        ),
    )
}

/// `large-eps-not-broken`: `robust` of `probed` points survived at radius `eps`.
pub fn large_eps_flag(eps: f64, robust: usize, probed: usize) -> SanityFlag {
    if probed == 0 {
        return SanityFlag::not_checked(
            "large-eps-not-broken",
            "no correctly classified point to probe",
        );
    }
    SanityFlag::new(
        "large-eps-not-broken",
        robust as f64 > 0.1 * probed as f64,
        format!(
            "{robust} of {probed} probed points survived APGD-CE at eps {eps}, where robust accuracy should be near 0"
        ),
    )
}

/// `recomputed-accuracy-differs`: the robust count recomputed from the saved inputs.
pub fn recompute_flag(reported: usize, recomputed: usize, n: usize) -> SanityFlag {
    SanityFlag::new(
        "recomputed-accuracy-differs",
        reported != recomputed,
        format!(
            "{recomputed} of {n} saved worst-case inputs, reloaded from disk, are classified correctly; the evaluation reported {reported} robust"
        ),
    )
}

/// `outside-threat-model`: misclassified attack outputs outside the ball or the box.
pub fn threat_flag(rejected: usize) -> SanityFlag {
    SanityFlag::new(
        "outside-threat-model",
        rejected > 0,
        format!(
            "{rejected} misclassified attack outputs were outside the eps-ball or the box (rejected, not counted)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_flag_is_raised_from_half_a_percent_of_the_probed_points() {
        let raised = |found, probed| black_box_probe_flag(found, probed, 5000).raised();
        // 500 probed: raised from 3 (2.5 rounded up), whatever the evaluated total.
        assert!(!raised(2, 500));
        assert!(raised(3, 500));
        // Small probes: a single break is enough; none never is.
        assert!(raised(1, 150));
        assert!(!raised(0, 150));
        assert!(!raised(0, 0));
        // The main job's gap (1.7 % of 500) is far above the threshold.
        assert!(raised(9, 500));
    }
}
