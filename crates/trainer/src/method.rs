//! Training methods: standard training, adversarial training (PGD-AT, FGSM-RS, Free-AT, TRADES,
//! MART) and Gaussian noise augmentation for randomized smoothing, each as a per-batch objective.
//!
//! | method | inputs of the loss | objective |
//! |---|---|---|
//! | `standard` | `x` | `CE(f(x), y)` |
//! | `pgd-at` (Madry et al. 2018) | PGD examples `x'` | `(1 − w)·CE(f(x), y) + w·CE(f(x'), y)`, `w` = `adv_weight` (1 by default) |
//! | `fgsm-rs` (Wong, Rice & Kolter 2020) | FGSM from a uniform random start, step `alpha` (1.25·eps) | as `pgd-at` |
//! | `free-at` (Shafahi et al. 2019) | `x + δ`, `δ` kept across minibatches | each minibatch replayed `m` times: one optimizer step and one `δ ← clip(δ + eps·sign(∇ₓ))` per replay |
//! | `trades` (Zhang et al. 2019) | `x'` maximizing `KL(f(x) ‖ f(x'))` from `x + 0.001·N(0, I)` | `CE(f(x), y) + β·KL(f(x) ‖ f(x'))` (batch mean) |
//! | `mart` (Wang et al. 2020) | PGD examples `x'` | `BCE(f(x'), y) + β·mean_i KL(f(x_i) ‖ f(x'_i))·(1 − p_y(x_i))` |
//! | `ibp` (Gowal et al. 2018) | the L-inf box of radius `eps` around `x`, bounded layer by layer | `κ·CE(f(x), y) + (1 − κ)·CE(−m, y)`, `m` the lower bounds of the margins `z_y − z_j` over the box; `κ` falls from 1 to `kappa_end` as eps ramps up |
//! | `gaussian-noise` (Cohen, Rosenfeld & Kolter 2019) | `x + σ·ε`, `ε ~ N(0, I)`, not clipped | `CE(f(x + σ·ε), y)`: the base classifier of randomized smoothing (`bulwark certify`) |
//!
//! MART's boosted cross-entropy is `CE(f(x'), y) − log(1 − max_{k≠y} p_k(x'))`. Label smoothing
//! replaces every cross-entropy target by the smoothed one; penalties are added to every objective.

use bulwark_attack_core::{Crafting, Norm};
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}
fn ten() -> usize {
    10
}
fn six() -> f64 {
    6.0
}
fn four() -> usize {
    4
}
fn half() -> f64 {
    0.5
}

/// How the model is trained; the adversarial methods' `eps` is the L-inf (or `norm`) radius of
/// the training threat model in input units (pixels in [0, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Method {
    /// Cross-entropy on clean inputs.
    Standard,
    /// PGD adversarial training (Madry et al. 2018).
    PgdAt {
        /// Radius.
        eps: f64,
        /// PGD steps (default 10).
        #[serde(default = "ten")]
        steps: usize,
        /// Step size (default `2.5·eps/steps`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_size: Option<f64>,
        /// Start from a uniform point in the ball (default true).
        #[serde(default = "yes")]
        random_start: bool,
    },
    /// "Fast" FGSM adversarial training (Wong, Rice & Kolter 2020).
    FgsmRs {
        /// Radius.
        eps: f64,
        /// Step size (default `1.25·eps`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpha: Option<f64>,
        /// Uniform random start (default true; `false` is plain FGSM training, which is known to
        /// overfit catastrophically).
        #[serde(default = "yes")]
        random_start: bool,
    },
    /// "Free" adversarial training (Shafahi et al. 2019), L-inf.
    FreeAt {
        /// Radius (also the step of the perturbation update).
        eps: f64,
        /// Replays `m` of each minibatch (default 4). One epoch costs `m` passes.
        #[serde(default = "four")]
        replays: usize,
    },
    /// TRADES (Zhang et al. 2019), L-inf.
    Trades {
        /// Radius.
        eps: f64,
        /// Steps of the inner KL maximization (default 10).
        #[serde(default = "ten")]
        steps: usize,
        /// Step size (default `2.5·eps/steps`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_size: Option<f64>,
        /// Weight `β` of the KL term (default 6).
        #[serde(default = "six")]
        beta: f64,
    },
    /// MART (Wang et al. 2020).
    Mart {
        /// Radius.
        eps: f64,
        /// PGD steps (default 10).
        #[serde(default = "ten")]
        steps: usize,
        /// Step size (default `2.5·eps/steps`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_size: Option<f64>,
        /// Weight `β` of the KL term (default 6).
        #[serde(default = "six")]
        beta: f64,
    },
    /// Interval bound propagation training (Gowal et al. 2018), L-inf: the cross-entropy of the
    /// clean logits mixed with that of the worst-case logits the interval bounds allow
    /// (`−m`, `m` the lower bounds of the margins `z_y − z_j` over the eps-box, see
    /// `bulwark_attack_core::Interval`). The radius is 0 for `eps_ramp_start_epochs`, then ramps
    /// up over `eps_warmup_epochs`, and the clean share `κ` with it, from 1 to `kappa_end`
    /// (Gowal et al.'s warm-up and ramp-up). The network must bound itself
    /// (`Network::margin_bounds`: the zoo's image models do).
    Ibp {
        /// Training radius, often above the radius verified (Gowal et al. train MNIST models at
        /// 0.2 for 0.1 and 0.4 for 0.3; their code's default is 1.1 times).
        eps: f64,
        /// The clean cross-entropy's final weight `κ` (default 0.5, the paper's).
        #[serde(default = "half")]
        kappa_end: f64,
    },
    /// Gaussian noise augmentation (Cohen, Rosenfeld & Kolter 2019): the cross-entropy of
    /// `x + σ·ε`, `ε ~ N(0, I)` drawn per image from the batch seed and the image, not clipped to
    /// the box. Trains the base classifier that randomized smoothing at the same `σ` certifies
    /// (`bulwark certify --sigma`); not an adversarial method (no radius).
    GaussianNoise {
        /// Standard deviation `σ` of the noise, in input units (pixels in [0, 1]).
        sigma: f64,
    },
}

impl Method {
    /// Every method name.
    pub const NAMES: &'static str =
        "standard, pgd-at, fgsm-rs, free-at, trades, mart, ibp, gaussian-noise";

    /// The method called `name` at radius `eps`, every other setting at its default.
    pub fn from_name(name: &str, eps: Option<f64>) -> Result<Method, String> {
        if !Self::NAMES.split(", ").any(|n| n == name) {
            return Err(format!("unknown method `{name}`; known: {}", Self::NAMES));
        }
        if name == "standard" {
            return Ok(Method::Standard);
        }
        if name == "gaussian-noise" {
            return Err(format!(
                "method `{name}` needs a noise level (--sigma, or `sigma` in [method]), not a radius"
            ));
        }
        let eps = eps.ok_or_else(|| format!("method `{name}` needs a radius (--eps)"))?;
        let mut table = toml::Table::new();
        table.insert("kind".into(), name.into());
        table.insert("eps".into(), eps.into());
        table.try_into().map_err(|e: toml::de::Error| e.to_string())
    }

    /// The name used in configs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Standard => "standard",
            Method::PgdAt { .. } => "pgd-at",
            Method::FgsmRs { .. } => "fgsm-rs",
            Method::FreeAt { .. } => "free-at",
            Method::Trades { .. } => "trades",
            Method::Mart { .. } => "mart",
            Method::Ibp { .. } => "ibp",
            Method::GaussianNoise { .. } => "gaussian-noise",
        }
    }

    /// The training radius; `None` for standard training.
    pub fn eps(&self) -> Option<f64> {
        match *self {
            Method::Standard | Method::GaussianNoise { .. } => None,
            Method::PgdAt { eps, .. }
            | Method::FgsmRs { eps, .. }
            | Method::FreeAt { eps, .. }
            | Method::Trades { eps, .. }
            | Method::Mart { eps, .. }
            | Method::Ibp { eps, .. } => Some(eps),
        }
    }

    /// Whether the method trains on adversarial examples.
    pub fn is_adversarial(&self) -> bool {
        self.eps().is_some()
    }

    /// The method with another radius (standard training is unchanged).
    pub fn with_eps(&self, new: f64) -> Method {
        let mut m = self.clone();
        match &mut m {
            Method::Standard | Method::GaussianNoise { .. } => {}
            Method::PgdAt { eps, .. }
            | Method::FgsmRs { eps, .. }
            | Method::FreeAt { eps, .. }
            | Method::Trades { eps, .. }
            | Method::Mart { eps, .. }
            | Method::Ibp { eps, .. } => *eps = new,
        }
        m
    }

    /// Checks the settings against each other and the shared options.
    pub fn validate(&self, norm: Norm, adv_weight: f64, crafting: Crafting) -> Result<(), String> {
        if let Some(eps) = self.eps()
            && !(eps.is_finite() && eps > 0.0)
        {
            return Err(format!("method eps must be > 0, got {eps}"));
        }
        let positive = |name: &str, v: Option<f64>| match v {
            Some(v) if !(v.is_finite() && v > 0.0) => {
                Err(format!("method {name} must be > 0, got {v}"))
            }
            _ => Ok(()),
        };
        match *self {
            Method::Standard => {}
            Method::Ibp { kappa_end, .. } => {
                if !(0.0..=1.0).contains(&kappa_end) {
                    return Err(format!("ibp kappa_end must be in [0, 1], got {kappa_end}"));
                }
            }
            Method::GaussianNoise { sigma } => {
                if !(sigma.is_finite() && sigma > 0.0) {
                    return Err(format!("gaussian-noise sigma must be > 0, got {sigma}"));
                }
            }
            Method::PgdAt {
                steps, step_size, ..
            } => {
                if steps == 0 {
                    return Err("pgd-at steps must be >= 1".into());
                }
                positive("step_size", step_size)?;
            }
            Method::FgsmRs { alpha, .. } => positive("alpha", alpha)?,
            Method::FreeAt { replays, .. } => {
                if replays == 0 {
                    return Err("free-at replays must be >= 1".into());
                }
            }
            Method::Trades {
                steps,
                step_size,
                beta,
                ..
            }
            | Method::Mart {
                steps,
                step_size,
                beta,
                ..
            } => {
                if steps == 0 {
                    return Err(format!("{} steps must be >= 1", self.name()));
                }
                positive("step_size", step_size)?;
                if !(beta.is_finite() && beta >= 0.0) {
                    return Err(format!("{} beta must be >= 0, got {beta}", self.name()));
                }
            }
        }
        if matches!(
            self,
            Method::FreeAt { .. } | Method::Trades { .. } | Method::Ibp { .. }
        ) && norm != Norm::Linf
        {
            return Err(format!(
                "{} is implemented for the L-inf threat model only (norm = \"linf\")",
                self.name()
            ));
        }
        if !(0.0..=1.0).contains(&adv_weight) {
            return Err(format!("adv_weight must be in [0, 1], got {adv_weight}"));
        }
        if adv_weight != 1.0 && !matches!(self, Method::PgdAt { .. } | Method::FgsmRs { .. }) {
            return Err(format!(
                "adv_weight mixes clean and adversarial cross-entropy for pgd-at and fgsm-rs; {} \
                 has its own weight (beta) or none",
                self.name()
            ));
        }
        if crafting == Crafting::Train && matches!(self, Method::FreeAt { .. }) {
            return Err(
                "free-at takes its input gradient from the training step itself; \
                        crafting does not apply"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_typos_are_refused() {
        let m: Method = toml::from_str("kind = \"pgd-at\"\neps = 0.3").unwrap();
        assert_eq!(
            m,
            Method::PgdAt {
                eps: 0.3,
                steps: 10,
                step_size: None,
                random_start: true
            }
        );
        let m: Method = toml::from_str("kind = \"trades\"\neps = 0.3\nbeta = 1.0").unwrap();
        assert!(matches!(m, Method::Trades { beta, steps: 10, .. } if beta == 1.0));
        let e = toml::from_str::<Method>("kind = \"pgd-at\"\neps = 0.3\nstep = 0.01").unwrap_err();
        assert!(e.to_string().contains("unknown field `step`"), "{e}");
        let e = toml::from_str::<Method>("kind = \"trades\"").unwrap_err();
        assert!(e.to_string().contains("missing field `eps`"), "{e}");
    }

    #[test]
    fn methods_by_name_take_their_defaults() {
        assert_eq!(
            Method::from_name("fgsm-rs", Some(0.3)).unwrap(),
            Method::FgsmRs {
                eps: 0.3,
                alpha: None,
                random_start: true
            }
        );
        assert_eq!(
            Method::from_name("standard", None).unwrap(),
            Method::Standard
        );
        assert!(
            Method::from_name("trades", None)
                .unwrap_err()
                .contains("--eps")
        );
        assert!(
            Method::from_name("pgd", Some(0.3))
                .unwrap_err()
                .contains("known:")
        );
        for name in Method::NAMES.split(", ").filter(|&n| n != "gaussian-noise") {
            assert_eq!(Method::from_name(name, Some(0.1)).unwrap().name(), name);
        }
        assert!(
            Method::from_name("gaussian-noise", Some(0.1))
                .unwrap_err()
                .contains("--sigma")
        );
        let m: Method = toml::from_str("kind = \"gaussian-noise\"\nsigma = 0.25").unwrap();
        assert_eq!(m, Method::GaussianNoise { sigma: 0.25 });
        assert_eq!(m.name(), "gaussian-noise");
        assert!(!m.is_adversarial());
    }

    #[test]
    fn validation_names_the_problem() {
        let pgd = Method::PgdAt {
            eps: 0.3,
            steps: 0,
            step_size: None,
            random_start: true,
        };
        let check = |m: &Method, n, w, c| m.validate(n, w, c).unwrap_err();
        assert!(check(&pgd, Norm::Linf, 1.0, Crafting::Inference).contains("steps"));
        let trades = Method::Trades {
            eps: 0.3,
            steps: 10,
            step_size: None,
            beta: 6.0,
        };
        assert!(check(&trades, Norm::L2, 1.0, Crafting::Inference).contains("L-inf"));
        assert!(check(&trades, Norm::Linf, 0.5, Crafting::Inference).contains("adv_weight"));
        assert!(
            check(&trades.with_eps(-1.0), Norm::Linf, 1.0, Crafting::Inference).contains("eps")
        );
        let free = Method::FreeAt {
            eps: 0.3,
            replays: 4,
        };
        assert!(check(&free, Norm::Linf, 1.0, Crafting::Train).contains("crafting"));
        let noise = Method::GaussianNoise { sigma: 0.0 };
        assert!(check(&noise, Norm::Linf, 1.0, Crafting::Inference).contains("sigma"));
        let noise = Method::GaussianNoise { sigma: 0.25 };
        assert!(check(&noise, Norm::Linf, 0.5, Crafting::Inference).contains("adv_weight"));
        assert!(free.validate(Norm::Linf, 1.0, Crafting::Inference).is_ok());
    }
}
