//! The [`Attack`] trait every attack implements.

use std::fmt::Debug;

use burn::tensor::{Int, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::iterative::StepObserver;
use crate::options::{AttackOptions, Norm, ThreatModel};
use crate::overrides::AttackOverrides;

/// An adversarial attack: maps a clean batch and its labels to an adversarial batch.
///
/// The returned tensor has the input's shape, lives on the input's device without autodiff (call
/// `.autodiff()` before a training forward), and — for attacks with a threat model — satisfies
/// `‖x_adv − x‖ ≤ eps` per sample and lies in the valid box. The model's parameters receive no
/// gradient and, in the default inference crafting mode, its BatchNorm statistics do not change.
pub trait Attack {
    /// Short name (`pgd`, `fgsm`, ...), as in reports.
    fn name(&self) -> &'static str;

    /// The options shared by all attacks.
    fn options(&self) -> &AttackOptions;

    /// The threat model the result is guaranteed to satisfy, if the attack has one (minimal
    /// perturbation attacks such as DeepFool and Carlini-Wagner have one only when given an eps).
    fn threat(&self) -> Option<ThreatModel>;

    /// The norm the attack measures perturbations in: the threat model's, else the norm a
    /// minimal-perturbation attack minimizes.
    fn norm(&self) -> Norm {
        self.threat().map_or(Norm::L2, |t| t.norm)
    }

    /// Runs the attack. `targets` must be `Some` exactly when the targeting mode is `given`.
    /// `observer` sees the clean and adversarial rows (flat `[rows, N]`) after the start point and
    /// after every step; attacks without steps in the eps-ball call it on their final result.
    fn run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        observer: &mut StepObserver<'_>,
    ) -> Result<Tensor<D>, AttackError>;

    /// Untargeted, or targeted with targets the attack chooses (`random`, `least-likely`).
    fn perturb<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
    ) -> Result<Tensor<D>, AttackError> {
        self.run(model, x, labels, None, &mut |_, _| {})
    }

    /// Targeted with the given targets (targeting mode `given`).
    fn perturb_targeted<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Tensor<1, Int>,
    ) -> Result<Tensor<D>, AttackError> {
        self.run(model, x, labels, Some(targets), &mut |_, _| {})
    }
}

/// An attack's configuration as the registry ([`AttackConfig`](crate::AttackConfig)) uses it:
/// its defaults, its shared options, its radius and how it builds the attack. An attack's file
/// implements it next to the attack; registering the attack is then one line in `registry.rs`.
pub trait AttackSettings: Clone + Debug + Serialize + DeserializeOwned {
    /// The attack this configuration builds.
    type Attack: Attack + Clone + Debug;

    /// True for score-based attacks that never compute a gradient.
    const BLACK_BOX: bool = false;

    /// The default configuration. Attacks with a fixed budget need `threat` and refuse `None`;
    /// minimal-perturbation attacks ignore it (their radius is an [`AttackOverrides::eps`]).
    fn defaults(threat: Option<ThreatModel>) -> Result<Self, AttackError>;

    /// The options shared by all attacks, for editing.
    fn options_mut(&mut self) -> &mut AttackOptions;

    /// Sets the radius (minimal-perturbation attacks: results farther away count as failures).
    fn set_eps(&mut self, eps: f64);

    /// Applies the settings that are given; a setting the attack does not have is an error.
    fn apply(&mut self, overrides: &AttackOverrides) -> Result<(), AttackError>;

    /// Validates the configuration and builds the attack.
    fn build(&self) -> Result<Self::Attack, AttackError>;
}

/// The error of a fixed-budget attack's [`AttackSettings::defaults`] without a threat model.
pub(crate) fn needs_threat(attack: &str) -> AttackError {
    AttackError::Config(format!(
        "`{attack}` needs `threat = {{ norm = ..., eps = ... }}` (command line: --eps)"
    ))
}

/// [`AttackSettings`] for a configuration with `threat`, `options` and an `init()`: everything but
/// what differs per attack, `$apply`, which sets the attack's own settings from the overrides
/// (`$c` is the configuration, `$o` the overrides). `fixed_budget` attacks need a threat model
/// (their defaults come from `Config::new(threat)`); `minimal` ones (Carlini-Wagner, DeepFool) have
/// an optional radius `eps` instead and defaults from `Config::new()`.
macro_rules! settings {
    (fixed_budget $config:ty => $attack:ty, $name:literal $(, black_box = $bb:expr)?,
        |$c:ident, $o:ident| $apply:block) => {
        impl $crate::attack::AttackSettings for $config {
            type Attack = $attack;
            $(const BLACK_BOX: bool = $bb;)?

            fn defaults(
                threat: Option<$crate::options::ThreatModel>,
            ) -> Result<Self, $crate::error::AttackError> {
                threat
                    .map(Self::new)
                    .ok_or_else(|| $crate::attack::needs_threat($name))
            }

            fn options_mut(&mut self) -> &mut $crate::options::AttackOptions {
                &mut self.options
            }

            fn set_eps(&mut self, eps: f64) {
                self.threat.eps = eps;
            }

            fn apply(
                &mut self,
                $o: &$crate::overrides::AttackOverrides,
            ) -> Result<(), $crate::error::AttackError> {
                let $c = &mut *self;
                $apply
                $o.apply_threat(&mut self.threat);
                $o.apply_options(&mut self.options);
                Ok(())
            }

            fn build(&self) -> Result<Self::Attack, $crate::error::AttackError> {
                self.init()
            }
        }
    };
    (minimal $config:ty => $attack:ty, |$c:ident, $o:ident| $apply:block) => {
        impl $crate::attack::AttackSettings for $config {
            type Attack = $attack;

            fn defaults(
                _threat: Option<$crate::options::ThreatModel>,
            ) -> Result<Self, $crate::error::AttackError> {
                Ok(Self::new())
            }

            fn options_mut(&mut self) -> &mut $crate::options::AttackOptions {
                &mut self.options
            }

            fn set_eps(&mut self, eps: f64) {
                self.eps = Some(eps);
            }

            fn apply(
                &mut self,
                $o: &$crate::overrides::AttackOverrides,
            ) -> Result<(), $crate::error::AttackError> {
                #[allow(unused_variables)]
                let $c = &mut *self;
                $apply
                $crate::overrides::set(&mut self.steps, $o.steps);
                $crate::overrides::set(&mut self.eps, $o.eps.map(Some));
                $o.apply_options(&mut self.options);
                Ok(())
            }

            fn build(&self) -> Result<Self::Attack, $crate::error::AttackError> {
                self.init()
            }
        }
    };
}
pub(crate) use settings;
