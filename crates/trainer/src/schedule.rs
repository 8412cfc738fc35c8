//! Learning-rate schedules as pure functions of training progress.
//!
//! A schedule maps progress `t` (in epochs, fractional within an epoch) to a learning rate. Being
//! stateless makes resume exact: the learning rate after a restart is recomputed, not restored.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule; `lr` in the formulas is the configured base (peak) rate and `T` the
/// number of epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// `lr` throughout.
    Constant,
    /// `lr · gamma^k`, where `k` counts the milestones (in epochs) already passed — PyTorch's
    /// `MultiStepLR` (e.g. milestones `[100, 150]`, gamma 0.1 in Rice et al. 2020).
    Piecewise {
        /// Epochs at which the rate is multiplied by `gamma` (default: none).
        #[serde(default)]
        milestones: Vec<f64>,
        /// Multiplier applied at each milestone (default 0.1).
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Linear warm-up from 0 over `warmup_epochs`, then cosine annealing from `lr` to `min_lr` at
    /// `T`.
    Cosine {
        /// Epochs of linear warm-up (default 0: none).
        #[serde(default)]
        warmup_epochs: f64,
        /// Rate at the end of training (default 0).
        #[serde(default)]
        min_lr: f64,
    },
    /// The triangular one-cycle ("cyclic") schedule of Wong, Rice & Kolter (2020): linear from 0
    /// up to `lr` at `peak_at · T`, then linear back down to 0 at `T`.
    OneCycle {
        /// Fraction of training at which the rate peaks (default 0.4, the paper's MNIST code).
        #[serde(default = "default_peak_at")]
        peak_at: f64,
    },
}

fn default_gamma() -> f64 {
    0.1
}

fn default_peak_at() -> f64 {
    0.4
}

impl Schedule {
    /// The schedules' names (`kind = "..."` in a configuration).
    pub const NAMES: [&'static str; 4] = ["constant", "piecewise", "cosine", "one-cycle"];

    /// This schedule's name.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Piecewise { .. } => "piecewise",
            Schedule::Cosine { .. } => "cosine",
            Schedule::OneCycle { .. } => "one-cycle",
        }
    }

    /// This schedule with `kind` and `params` (field name to value) applied: a different `kind`
    /// starts from that schedule's defaults, the same (or no) `kind` keeps this schedule's values
    /// where `params` does not set them. A parameter the schedule does not have is an error
    /// naming it.
    ///
    /// ```
    /// use bulwark_trainer::Schedule;
    ///
    /// let mut params = toml::Table::new();
    /// params.insert("min_lr".into(), 1e-4.into());
    /// let s = Schedule::Constant.overlay(Some("cosine"), params).unwrap();
    /// assert_eq!(s, Schedule::Cosine { warmup_epochs: 0.0, min_lr: 1e-4 });
    /// let mut params = toml::Table::new();
    /// params.insert("peak_at".into(), 0.3.into());
    /// assert!(s.overlay(None, params.clone()).unwrap_err().contains("peak_at"));
    /// assert!(Schedule::Constant.overlay(None, params).unwrap_err().contains("peak_at"));
    /// ```
    pub fn overlay(&self, kind: Option<&str>, params: toml::Table) -> Result<Schedule, String> {
        let mut table = match kind {
            Some(k) if k != self.name() => {
                let mut t = toml::Table::new();
                t.insert("kind".into(), k.into());
                t
            }
            _ => toml::Table::try_from(self).map_err(|e| e.to_string())?,
        };
        let kind = table
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        let given: Vec<String> = params.keys().cloned().collect();
        table.extend(params);
        let schedule: Schedule = table
            .try_into()
            .map_err(|e: toml::de::Error| format!("schedule `{kind}`: {}", e.message()))?;
        // serde accepts any field on a unit variant (`constant`): refuse what it would drop.
        let kept = toml::Table::try_from(&schedule).map_err(|e| e.to_string())?;
        if let Some(lost) = given.iter().find(|k| !kept.contains_key(*k)) {
            return Err(format!("schedule `{kind}`: it has no parameter `{lost}`"));
        }
        Ok(schedule)
    }

    /// The learning rate at progress `t` epochs out of `total` epochs, for base rate `lr`.
    pub fn lr_at(&self, lr: f64, t: f64, total: f64) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Piecewise { milestones, gamma } => {
                // Strictly past: the step that ends exactly at epoch `m` still belongs to the
                // epoch before the milestone (PyTorch's MultiStepLR changes the rate per epoch).
                let passed = milestones.iter().filter(|&&m| t > m).count();
                lr * gamma.powi(passed as i32)
            }
            Schedule::Cosine {
                warmup_epochs,
                min_lr,
            } => {
                if t < *warmup_epochs {
                    lr * t / warmup_epochs
                } else {
                    let span = (total - warmup_epochs).max(f64::MIN_POSITIVE);
                    let p = ((t - warmup_epochs) / span).clamp(0.0, 1.0);
                    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
            Schedule::OneCycle { peak_at } => {
                let peak = peak_at * total;
                if t <= peak {
                    lr * t / peak.max(f64::MIN_POSITIVE)
                } else {
                    lr * ((total - t) / (total - peak).max(f64::MIN_POSITIVE)).max(0.0)
                }
            }
        }
    }

    /// Checks the parameters; returns a message naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Schedule::Constant => Ok(()),
            Schedule::Piecewise { milestones, gamma } => {
                if !(gamma.is_finite() && *gamma > 0.0) {
                    return Err(format!("piecewise gamma must be positive, got {gamma}"));
                }
                if milestones.iter().any(|m| !m.is_finite() || *m < 0.0) {
                    return Err(format!(
                        "piecewise milestones must be >= 0, got {milestones:?}"
                    ));
                }
                Ok(())
            }
            Schedule::Cosine {
                warmup_epochs,
                min_lr,
            } => {
                if !(warmup_epochs.is_finite() && *warmup_epochs >= 0.0) {
                    return Err(format!(
                        "cosine warmup_epochs must be >= 0, got {warmup_epochs}"
                    ));
                }
                if !(min_lr.is_finite() && *min_lr >= 0.0) {
                    return Err(format!("cosine min_lr must be >= 0, got {min_lr}"));
                }
                Ok(())
            }
            Schedule::OneCycle { peak_at } => {
                if !(*peak_at > 0.0 && *peak_at < 1.0) {
                    return Err(format!(
                        "one-cycle peak_at must be in (0, 1), got {peak_at}"
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn constant_is_constant() {
        assert!(close(Schedule::Constant.lr_at(0.1, 3.7, 10.0), 0.1));
    }

    #[test]
    fn piecewise_multiplies_at_each_milestone() {
        let s = Schedule::Piecewise {
            milestones: vec![100.0, 150.0],
            gamma: 0.1,
        };
        assert!(close(s.lr_at(0.1, 99.9, 200.0), 0.1));
        // The last step of epoch 100 ends at t = 100 and still uses the old rate.
        assert!(close(s.lr_at(0.1, 100.0, 200.0), 0.1));
        assert!(close(s.lr_at(0.1, 100.01, 200.0), 0.01));
        assert!((s.lr_at(0.1, 160.0, 200.0) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn cosine_warms_up_then_anneals_to_min() {
        let s = Schedule::Cosine {
            warmup_epochs: 1.0,
            min_lr: 0.0,
        };
        assert!(close(s.lr_at(1.0, 0.5, 5.0), 0.5));
        assert!(close(s.lr_at(1.0, 1.0, 5.0), 1.0));
        // Halfway through the cosine part: (1 + cos(pi/2)) / 2 = 0.5.
        assert!(close(s.lr_at(1.0, 3.0, 5.0), 0.5));
        assert!(close(s.lr_at(1.0, 5.0, 5.0), 0.0));
    }

    #[test]
    fn one_cycle_matches_wong_et_al_interpolation() {
        // np.interp(t, [0, 0.4 T, T], [0, lr, 0]) with T = 10, lr = 5e-3.
        let s = Schedule::OneCycle { peak_at: 0.4 };
        assert!(close(s.lr_at(5e-3, 0.0, 10.0), 0.0));
        assert!(close(s.lr_at(5e-3, 2.0, 10.0), 2.5e-3));
        assert!(close(s.lr_at(5e-3, 4.0, 10.0), 5e-3));
        assert!(close(s.lr_at(5e-3, 7.0, 10.0), 2.5e-3));
        assert!(close(s.lr_at(5e-3, 10.0, 10.0), 0.0));
    }

    #[test]
    fn validation_names_the_bad_parameter() {
        let e = Schedule::OneCycle { peak_at: 1.5 }.validate().unwrap_err();
        assert!(e.contains("peak_at"), "{e}");
        let e = Schedule::Piecewise {
            milestones: vec![],
            gamma: -1.0,
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("gamma"), "{e}");
    }
}
