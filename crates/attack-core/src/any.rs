//! [`AttackConfig`]: any attack by name, for command lines, config files and attack lists.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::apgd::{Apgd, ApgdConfig};
use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::cw::{CwL2, CwL2Config};
use crate::deepfool::{DeepFool, DeepFoolConfig};
use crate::error::AttackError;
use crate::fgsm::{Fgsm, FgsmConfig};
use crate::iterative::StepObserver;
use crate::mifgsm::{MiFgsm, MiFgsmConfig};
use crate::options::{AttackOptions, Norm, ThreatModel};
use crate::pgd::{Bim, BimConfig, Pgd, PgdConfig};
use crate::square::{Square, SquareConfig};

/// The configuration of any attack, tagged by name (`{"attack": "pgd", ...}` in JSON,
/// `attack = "pgd"` in TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "kebab-case")]
pub enum AttackConfig {
    /// [`Fgsm`] (with or without random start).
    Fgsm(FgsmConfig),
    /// [`Bim`].
    Bim(BimConfig),
    /// [`Pgd`].
    Pgd(PgdConfig),
    /// [`MiFgsm`].
    MiFgsm(MiFgsmConfig),
    /// [`Apgd`].
    Apgd(ApgdConfig),
    /// [`Square`].
    Square(SquareConfig),
    /// [`CwL2`].
    CwL2(CwL2Config),
    /// [`DeepFool`].
    #[serde(rename = "deepfool")]
    DeepFool(DeepFoolConfig),
}

impl AttackConfig {
    /// Builds a configuration from a JSON value (or TOML converted to one) in which only `attack`
    /// and, for attacks with a threat model, `threat = { norm, eps }` are required: every other
    /// field takes the attack's default. Unknown fields are an error naming them.
    pub fn from_partial(value: serde_json::Value) -> Result<Self, AttackError> {
        let bad = |m: String| AttackError::Config(m);
        let serde_json::Value::Object(user) = value else {
            return Err(bad("an attack configuration must be a table".into()));
        };
        let name = user.get("attack").and_then(|v| v.as_str()).ok_or_else(|| {
            bad(
                "missing `attack` (fgsm, bim, pgd, mi-fgsm, apgd, square, cw-l2 or deepfool)"
                    .into(),
            )
        })?;
        let threat = || -> Result<ThreatModel, AttackError> {
            let t = user.get("threat").ok_or_else(|| {
                bad(format!(
                    "`{name}` needs `threat = {{ norm = ..., eps = ... }}`"
                ))
            })?;
            serde_json::from_value(t.clone()).map_err(|e| bad(format!("threat: {e}")))
        };
        let default = match name {
            "fgsm" => AttackConfig::Fgsm(FgsmConfig::new(threat()?)),
            "bim" => AttackConfig::Bim(BimConfig::new(threat()?)),
            "pgd" => AttackConfig::Pgd(PgdConfig::new(threat()?)),
            "mi-fgsm" => AttackConfig::MiFgsm(MiFgsmConfig::new(threat()?)),
            "apgd" => AttackConfig::Apgd(ApgdConfig::new(threat()?)),
            "square" => AttackConfig::Square(SquareConfig::new(threat()?)),
            "cw-l2" => AttackConfig::CwL2(CwL2Config::new()),
            "deepfool" => AttackConfig::DeepFool(DeepFoolConfig::new()),
            other => return Err(bad(format!("unknown attack `{other}`"))),
        };
        let mut base = serde_json::to_value(&default).map_err(|e| bad(e.to_string()))?;
        merge(&mut base, serde_json::Value::Object(user), "")?;
        serde_json::from_value(base).map_err(|e| bad(e.to_string()))
    }

    /// The same attack at radius `eps` (for minimal-perturbation attacks: counting only results
    /// within `eps`).
    pub fn with_eps(&self, eps: f64) -> Self {
        let mut c = self.clone();
        match &mut c {
            AttackConfig::Fgsm(a) => a.threat.eps = eps,
            AttackConfig::Bim(a) => a.threat.eps = eps,
            AttackConfig::Pgd(a) => a.threat.eps = eps,
            AttackConfig::MiFgsm(a) => a.threat.eps = eps,
            AttackConfig::Apgd(a) => a.threat.eps = eps,
            AttackConfig::Square(a) => a.threat.eps = eps,
            AttackConfig::CwL2(a) => a.eps = Some(eps),
            AttackConfig::DeepFool(a) => a.eps = Some(eps),
        }
        c
    }

    /// The options shared by all attacks, for editing (seed, targeting, ...).
    pub fn options_mut(&mut self) -> &mut AttackOptions {
        match self {
            AttackConfig::Fgsm(a) => &mut a.options,
            AttackConfig::Bim(a) => &mut a.options,
            AttackConfig::Pgd(a) => &mut a.options,
            AttackConfig::MiFgsm(a) => &mut a.options,
            AttackConfig::Apgd(a) => &mut a.options,
            AttackConfig::Square(a) => &mut a.options,
            AttackConfig::CwL2(a) => &mut a.options,
            AttackConfig::DeepFool(a) => &mut a.options,
        }
    }

    /// True for attacks that never compute a gradient (score-based black-box attacks).
    pub fn is_black_box(&self) -> bool {
        matches!(self, AttackConfig::Square(_))
    }

    /// Validates the configuration and builds the attack.
    pub fn init(&self) -> Result<AnyAttack, AttackError> {
        Ok(match self {
            AttackConfig::Fgsm(c) => AnyAttack::Fgsm(c.init()?),
            AttackConfig::Bim(c) => AnyAttack::Bim(c.init()?),
            AttackConfig::Pgd(c) => AnyAttack::Pgd(c.init()?),
            AttackConfig::MiFgsm(c) => AnyAttack::MiFgsm(c.init()?),
            AttackConfig::Apgd(c) => AnyAttack::Apgd(c.init()?),
            AttackConfig::Square(c) => AnyAttack::Square(c.init()?),
            AttackConfig::CwL2(c) => AnyAttack::CwL2(c.init()?),
            AttackConfig::DeepFool(c) => AnyAttack::DeepFool(c.init()?),
        })
    }
}

/// Any built attack; implements [`Attack`] by delegation.
#[derive(Debug, Clone)]
pub enum AnyAttack {
    /// See [`Fgsm`].
    Fgsm(Fgsm),
    /// See [`Bim`].
    Bim(Bim),
    /// See [`Pgd`].
    Pgd(Pgd),
    /// See [`MiFgsm`].
    MiFgsm(MiFgsm),
    /// See [`Apgd`].
    Apgd(Apgd),
    /// See [`Square`].
    Square(Square),
    /// See [`CwL2`].
    CwL2(CwL2),
    /// See [`DeepFool`].
    DeepFool(DeepFool),
}

macro_rules! delegate {
    ($self:ident, $a:ident => $e:expr) => {
        match $self {
            AnyAttack::Fgsm($a) => $e,
            AnyAttack::Bim($a) => $e,
            AnyAttack::Pgd($a) => $e,
            AnyAttack::MiFgsm($a) => $e,
            AnyAttack::Apgd($a) => $e,
            AnyAttack::Square($a) => $e,
            AnyAttack::CwL2($a) => $e,
            AnyAttack::DeepFool($a) => $e,
        }
    };
}

impl Attack for AnyAttack {
    fn name(&self) -> &'static str {
        delegate!(self, a => a.name())
    }

    fn options(&self) -> &AttackOptions {
        delegate!(self, a => a.options())
    }

    fn threat(&self) -> Option<ThreatModel> {
        delegate!(self, a => a.threat())
    }

    fn norm(&self) -> Norm {
        delegate!(self, a => a.norm())
    }

    fn run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        observer: &mut StepObserver<'_>,
    ) -> Result<Tensor<D>, AttackError> {
        delegate!(self, a => a.run(model, x, labels, targets, observer))
    }
}

/// Overlays `user` on `base`, refusing keys `base` does not have.
fn merge(
    base: &mut serde_json::Value,
    user: serde_json::Value,
    prefix: &str,
) -> Result<(), AttackError> {
    match (base, user) {
        (serde_json::Value::Object(b), serde_json::Value::Object(u)) => {
            for (key, value) in u {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match b.get_mut(&key) {
                    Some(slot) if slot.is_object() && value.is_object() => {
                        merge(slot, value, &path)?
                    }
                    Some(slot) => *slot = value,
                    None => return Err(AttackError::Config(format!("unknown field `{path}`"))),
                }
            }
            Ok(())
        }
        (b, u) => {
            *b = u;
            Ok(())
        }
    }
}
