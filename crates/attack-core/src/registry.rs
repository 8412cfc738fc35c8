//! The attack registry: one line per attack. [`AttackConfig`] (any attack's configuration, by
//! name), [`AnyAttack`] (any built attack), the name list [`ATTACKS`], name and alias lookup and
//! the command line's values all come from the table at the bottom of this file.
//!
//! Adding an attack: write its file (the attack, its `Config`, and [`AttackSettings`] for the
//! config), declare the module in `lib.rs`, and add one line to the table.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::apgd::ApgdConfig;
use crate::attack::{Attack, AttackSettings};
use crate::classifier::Classifier;
use crate::cw::CwL2Config;
use crate::deepfool::DeepFoolConfig;
use crate::error::AttackError;
use crate::fab::FabConfig;
use crate::fgsm::FgsmConfig;
use crate::iterative::StepObserver;
use crate::mifgsm::MiFgsmConfig;
use crate::options::{AttackOptions, LossKind, Norm, Targeting, ThreatModel};
use crate::overrides::AttackOverrides;
use crate::pgd::{BimConfig, PgdConfig};
use crate::square::SquareConfig;
use crate::trades::TradesKlConfig;

/// One registered attack: its name and the other names it answers to.
#[derive(Debug, Clone, Copy)]
pub struct AttackEntry {
    /// The canonical name (`attack = "..."` in config files, reports).
    pub name: &'static str,
    /// Other names, each with the settings it implies (`fgsm-rs` is FGSM with a random start).
    pub aliases: &'static [Alias],
    /// One line for help texts.
    pub summary: &'static str,
    /// Score-based: never computes a gradient.
    pub black_box: bool,
}

/// Another name for a registered attack, with the settings it implies (under the user's own).
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    /// The name.
    pub name: &'static str,
    /// What it sets on the attack's defaults.
    pub preset: AttackOverrides,
}

impl AttackEntry {
    /// Every name this entry answers to: its own, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.aliases.iter().map(|a| a.name))
    }
}

/// The registered attack `name` answers to (a canonical name or an alias), with the alias's
/// preset (`AttackOverrides::NONE` for a canonical name).
pub fn lookup(name: &str) -> Option<(&'static AttackEntry, AttackOverrides)> {
    ATTACKS.iter().find_map(|e| {
        if e.name == name {
            Some((e, AttackOverrides::NONE))
        } else {
            e.aliases
                .iter()
                .find(|a| a.name == name)
                .map(|a| (e, a.preset))
        }
    })
}

/// Every name the registry knows, canonical names and aliases, comma-separated (for messages).
pub fn known_names() -> String {
    ATTACKS
        .iter()
        .flat_map(AttackEntry::names)
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! registry {
    ($(
        $(#[$doc:meta])*
        $variant:ident($config:ty) = $name:literal,
            aliases [$($alias:literal => $preset:expr),* $(,)?],
            $summary:literal;
    )*) => {
        /// The configuration of any registered attack, tagged by name (`{"attack": "pgd", ...}`
        /// in JSON, `attack = "pgd"` in TOML).
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "attack")]
        pub enum AttackConfig {
            $($(#[$doc])* #[serde(rename = $name)] $variant($config),)*
        }

        /// Any built attack; implements [`Attack`] by delegation.
        #[derive(Debug, Clone)]
        pub enum AnyAttack {
            $($(#[$doc])* $variant(<$config as AttackSettings>::Attack),)*
        }

        /// Every registered attack, in the registry's order.
        pub const ATTACKS: &[AttackEntry] = &[$(
            AttackEntry {
                name: $name,
                aliases: &[$(Alias { name: $alias, preset: $preset }),*],
                summary: $summary,
                black_box: <$config as AttackSettings>::BLACK_BOX,
            },
        )*];

        impl AttackConfig {
            /// The default configuration of the attack with canonical name `name`.
            fn defaults(name: &str, threat: Option<ThreatModel>) -> Result<Self, AttackError> {
                match name {
                    $($name => Ok(Self::$variant(<$config as AttackSettings>::defaults(threat)?)),)*
                    other => Err(unknown(other)),
                }
            }

            /// The attack's canonical name.
            pub fn name(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)* }
            }

            /// The options shared by all attacks, for editing (seed, targeting, ...).
            pub fn options_mut(&mut self) -> &mut AttackOptions {
                match self { $(Self::$variant(c) => c.options_mut(),)* }
            }

            /// The same attack at radius `eps` (for minimal-perturbation attacks: counting only
            /// results within `eps`).
            pub fn with_eps(&self, eps: f64) -> Self {
                let mut c = self.clone();
                match &mut c { $(Self::$variant(a) => a.set_eps(eps),)* }
                c
            }

            /// Applies `overrides` (a setting the attack does not have is an error).
            pub fn apply(&mut self, overrides: &AttackOverrides) -> Result<(), AttackError> {
                match self { $(Self::$variant(c) => c.apply(overrides),)* }
            }

            /// True for attacks that never compute a gradient (score-based black-box attacks).
            pub fn is_black_box(&self) -> bool {
                match self { $(Self::$variant(_) => <$config as AttackSettings>::BLACK_BOX,)* }
            }

            /// Validates the configuration and builds the attack.
            pub fn init(&self) -> Result<AnyAttack, AttackError> {
                Ok(match self { $(Self::$variant(c) => AnyAttack::$variant(c.build()?),)* })
            }
        }

        impl Attack for AnyAttack {
            fn name(&self) -> &'static str {
                match self { $(Self::$variant(a) => a.name(),)* }
            }

            fn options(&self) -> &AttackOptions {
                match self { $(Self::$variant(a) => a.options(),)* }
            }

            fn threat(&self) -> Option<ThreatModel> {
                match self { $(Self::$variant(a) => a.threat(),)* }
            }

            fn norm(&self) -> Norm {
                match self { $(Self::$variant(a) => a.norm(),)* }
            }

            fn run<const D: usize, C: Classifier<D> + ?Sized>(
                &self,
                model: &C,
                x: Tensor<D>,
                labels: Tensor<1, Int>,
                targets: Option<Tensor<1, Int>>,
                observer: &mut StepObserver<'_>,
            ) -> Result<Tensor<D>, AttackError> {
                match self { $(Self::$variant(a) => a.run(model, x, labels, targets, observer),)* }
            }
        }
    };
}

const RANDOM_START: AttackOverrides = AttackOverrides {
    random_start: Some(true),
    ..AttackOverrides::NONE
};

// The registry. One line per attack: variant(config) = "name", aliases [...], "summary".
registry! {
    /// [`Fgsm`](crate::Fgsm) (with or without random start).
    Fgsm(FgsmConfig) = "fgsm", aliases ["fgsm-rs" => RANDOM_START],
        "one signed-gradient step (fgsm-rs: from a random start, Wong et al. 2020)";
    /// [`Bim`](crate::Bim).
    Bim(BimConfig) = "bim", aliases [], "basic iterative method (PGD without random start)";
    /// [`Pgd`](crate::Pgd).
    Pgd(PgdConfig) = "pgd", aliases [], "projected gradient descent, L-inf/L2/L1 (Madry et al. 2018)";
    /// [`MiFgsm`](crate::MiFgsm).
    MiFgsm(MiFgsmConfig) = "mi-fgsm", aliases ["mifgsm" => AttackOverrides::NONE],
        "momentum iterative FGSM (Dong et al. 2018)";
    /// [`Apgd`](crate::Apgd).
    Apgd(ApgdConfig) = "apgd", aliases [
        "apgd-ce" => AttackOverrides { loss: Some(LossKind::CrossEntropy), ..AttackOverrides::NONE },
        "apgd-dlr" => AttackOverrides { loss: Some(LossKind::Dlr), ..AttackOverrides::NONE },
        "apgd-t" => AttackOverrides {
            loss: Some(LossKind::Dlr),
            targeting: Some(Targeting::Random),
            ..AttackOverrides::NONE
        },
    ], "auto-PGD, step-size free (Croce & Hein 2020); apgd-t: targeted DLR";
    /// [`Fab`](crate::Fab).
    Fab(FabConfig) = "fab-t", aliases ["fab" => AttackOverrides::NONE],
        "FAB-T, targeted fast adaptive boundary attack, L-inf/L2 (Croce & Hein 2020)";
    /// [`Square`](crate::Square).
    Square(SquareConfig) = "square", aliases [],
        "score-based black-box random search (Andriushchenko et al. 2020)";
    /// [`CwL2`](crate::CwL2).
    CwL2(CwL2Config) = "cw-l2", aliases ["cw" => AttackOverrides::NONE],
        "Carlini-Wagner L2, minimal perturbation";
    /// [`DeepFool`](crate::DeepFool).
    DeepFool(DeepFoolConfig) = "deepfool", aliases [],
        "DeepFool, minimal perturbation (L2, L-inf)";
    /// [`TradesKl`](crate::TradesKl).
    TradesKl(TradesKlConfig) = "trades-kl", aliases [],
        "TRADES' inner maximization: KL from the clean prediction, L-inf (Zhang et al. 2019)";
}

fn unknown(name: &str) -> AttackError {
    AttackError::Config(format!(
        "unknown attack `{name}` (known: {})",
        known_names()
    ))
}

impl AttackConfig {
    /// The attack `name` (a canonical name or an alias) with its defaults, the alias's preset and
    /// then `overrides` applied; fixed-budget attacks need `overrides.eps`. What a command line
    /// builds: every default is the attack's own.
    pub fn from_overrides(name: &str, overrides: &AttackOverrides) -> Result<Self, AttackError> {
        let (entry, preset) = lookup(name).ok_or_else(|| unknown(name))?;
        let settings = overrides.over(preset);
        let mut config = Self::defaults(entry.name, settings.threat())?;
        config.apply(&settings)?;
        Ok(config)
    }

    /// Builds a configuration from a JSON value (or TOML converted to one) in which only `attack`
    /// and, for attacks with a threat model, `threat = { norm, eps }` are required: every other
    /// field takes the attack's default. `attack` may be an alias (its preset applies under the
    /// file's fields). Unknown fields are an error naming them.
    pub fn from_partial(value: serde_json::Value) -> Result<Self, AttackError> {
        let bad = |m: String| AttackError::Config(m);
        let serde_json::Value::Object(mut user) = value else {
            return Err(bad("an attack configuration must be a table".into()));
        };
        let name = user
            .get("attack")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("missing `attack` (one of {})", known_names())))?
            .to_string();
        let (entry, preset) = lookup(&name).ok_or_else(|| unknown(&name))?;
        user.insert("attack".into(), entry.name.into());
        let threat = match user.get("threat") {
            Some(t) => Some(
                serde_json::from_value::<ThreatModel>(t.clone())
                    .map_err(|e| bad(format!("threat: {e}")))?,
            ),
            None => None,
        };
        let mut default = Self::defaults(entry.name, threat)?;
        default.apply(&preset)?;
        let mut base = serde_json::to_value(&default).map_err(|e| bad(e.to_string()))?;
        merge(&mut base, serde_json::Value::Object(user), "")?;
        serde_json::from_value(base).map_err(|e| bad(e.to_string()))
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
