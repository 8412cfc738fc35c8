//! [`AttackOverrides`]: the settings a command line or a caller changes on an attack's defaults.

use crate::error::AttackError;
use crate::options::{AttackOptions, LossKind, Norm, Targeting, ThreatModel};

/// Settings to change on an attack's default configuration; `None` keeps the attack's own
/// default. The registry's [`AttackConfig::from_overrides`](crate::AttackConfig::from_overrides)
/// applies them, so a front end (the CLI) holds no defaults of its own. A setting the attack does
/// not have is an error naming it, never silently ignored.
///
/// ```
/// use bulwark_attack_core::{AttackConfig, AttackOverrides, Norm};
///
/// let config = AttackConfig::from_overrides(
///     "pgd",
///     &AttackOverrides { norm: Some(Norm::L2), eps: Some(0.5), ..AttackOverrides::NONE },
/// )
/// .unwrap();
/// let AttackConfig::Pgd(pgd) = config else { unreachable!() };
/// assert_eq!(pgd.steps, 40); // PGD's own default
/// assert!(AttackConfig::from_overrides("apgd", &AttackOverrides {
///     eps: Some(0.3), step_size: Some(0.01), ..AttackOverrides::NONE
/// }).is_err()); // APGD adapts its own step size
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttackOverrides {
    /// The threat model's norm (the norm DeepFool minimizes).
    pub norm: Option<Norm>,
    /// The threat model's radius (minimal-perturbation attacks: results farther away fail).
    pub eps: Option<f64>,
    /// Iterations (Square: queries).
    pub steps: Option<usize>,
    /// Step size of fixed-step attacks.
    pub step_size: Option<f64>,
    /// MI-FGSM's momentum decay.
    pub decay: Option<f64>,
    /// [`AttackOptions::restarts`].
    pub restarts: Option<usize>,
    /// [`AttackOptions::loss`].
    pub loss: Option<LossKind>,
    /// [`AttackOptions::targeting`].
    pub targeting: Option<Targeting>,
    /// [`AttackOptions::random_start`].
    pub random_start: Option<bool>,
    /// [`AttackOptions::early_stop`].
    pub early_stop: Option<bool>,
    /// [`AttackOptions::seed`].
    pub seed: Option<u64>,
}

impl AttackOverrides {
    /// No change: every field `None`.
    pub const NONE: Self = Self {
        norm: None,
        eps: None,
        steps: None,
        step_size: None,
        decay: None,
        restarts: None,
        loss: None,
        targeting: None,
        random_start: None,
        early_stop: None,
        seed: None,
    };

    /// `self` where it sets a value, else `base` (an alias's preset under the user's settings).
    pub fn over(self, base: Self) -> Self {
        Self {
            norm: self.norm.or(base.norm),
            eps: self.eps.or(base.eps),
            steps: self.steps.or(base.steps),
            step_size: self.step_size.or(base.step_size),
            decay: self.decay.or(base.decay),
            restarts: self.restarts.or(base.restarts),
            loss: self.loss.or(base.loss),
            targeting: self.targeting.or(base.targeting),
            random_start: self.random_start.or(base.random_start),
            early_stop: self.early_stop.or(base.early_stop),
            seed: self.seed.or(base.seed),
        }
    }

    /// The threat model these settings give, when they give an eps (norm: L-inf unless set).
    pub fn threat(&self) -> Option<ThreatModel> {
        self.eps
            .map(|eps| ThreatModel::new(self.norm.unwrap_or(Norm::Linf), eps))
    }

    /// Sets the shared options that are given.
    pub(crate) fn apply_options(&self, o: &mut AttackOptions) {
        let AttackOptions {
            loss,
            targeting,
            random_start,
            restarts,
            early_stop,
            seed,
            ..
        } = o;
        set(loss, self.loss);
        set(targeting, self.targeting);
        set(random_start, self.random_start);
        set(restarts, self.restarts);
        set(early_stop, self.early_stop);
        set(seed, self.seed);
    }

    /// Sets the threat model's norm and eps where given.
    pub(crate) fn apply_threat(&self, t: &mut ThreatModel) {
        set(&mut t.norm, self.norm);
        set(&mut t.eps, self.eps);
    }

    /// An error naming the first of `fields` (`"steps"`, `"step_size"`, `"decay"`, `"norm"`) that
    /// is set: `attack` has no such setting.
    pub(crate) fn refuse(&self, attack: &str, fields: &[&str]) -> Result<(), AttackError> {
        for &field in fields {
            let given = match field {
                "steps" => self.steps.is_some(),
                "step_size" => self.step_size.is_some(),
                "decay" => self.decay.is_some(),
                "norm" => self.norm.is_some(),
                _ => false,
            };
            if given {
                return Err(AttackError::Config(format!(
                    "{attack} has no `{}` setting",
                    field.replace('_', "-")
                )));
            }
        }
        Ok(())
    }
}

/// `*slot = v` when `v` is given.
pub(crate) fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}
