//! The training configuration: one serde struct, readable from TOML with defaults for every field.

use std::path::Path;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use bulwark_attack_core::{Crafting, Norm, Preset};
use bulwark_data::Augment;
use bulwark_reg_core::{Constraint, Penalty};

use crate::{AwpSpec, InputGradientSpec, Method, Mixing, Schedule, SpectralSpec, TrainError};

/// Robustness evaluation of the final model on the test set, after training (part of the run's
/// report). Radius and norm default to the training method's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinalEval {
    /// Radius (default: the method's; required for standard training when anything is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// PGD steps of a PGD-with-restarts evaluation (0: none); step `2.5·eps/steps`, random
    /// starts, early stop per sample.
    pub pgd_steps: usize,
    /// PGD restarts.
    pub pgd_restarts: usize,
    /// Evaluator preset (`quick` or `standard`, see docs/evaluation.md); none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Further radii for the evaluator's robust-accuracy-against-eps curve.
    pub eps_sweep: Vec<f64>,
    /// Evaluate only the first N test images (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl Default for FinalEval {
    fn default() -> Self {
        Self {
            eps: None,
            pgd_steps: 0,
            pgd_restarts: 1,
            preset: None,
            eps_sweep: Vec::new(),
            limit: None,
        }
    }
}

impl FinalEval {
    /// Whether any robust evaluation is configured.
    pub fn is_on(&self) -> bool {
        self.pgd_steps > 0 || self.preset.is_some()
    }
}

/// Which weights a run ends with: those of the best validation epoch (robust validation accuracy
/// for adversarial methods, as Rice et al. 2020 recommend) or those of the last epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// The best validation epoch's weights.
    Best,
    /// The last epoch's weights.
    Last,
}

/// Which optimizer to use (burn-optim's implementations, with PyTorch's defaults where burn's
/// differ: SGD dampening 0, Adam epsilon 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// SGD with optional (Nesterov) momentum and coupled weight decay (added to the gradient).
    Sgd,
    /// Adam with coupled (L2) weight decay.
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    Adamw,
}

impl OptimizerKind {
    /// The optimizers' names, as configurations and the command line write them.
    pub const NAMES: [&'static str; 3] = ["sgd", "adam", "adamw"];
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "adam" => Ok(Self::Adam),
            "adamw" => Ok(Self::Adamw),
            other => Err(format!(
                "unknown optimizer `{other}`; known: sgd, adam, adamw"
            )),
        }
    }
}

/// Everything that defines a training run. Every field has a default; a TOML file (or CLI flags)
/// overrides the fields it names. Saved as `config.toml` in the run directory.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Zoo model name (`bulwark models list`).
    #[config(default = "\"small-cnn\".to_string()")]
    pub model: String,
    /// Dataset: `mnist`, `fashion-mnist`, `cifar10` or `cifar100` (binary versions in the data
    /// directory; they are never downloaded), or `folder:PATH` (an image folder with `train/`
    /// and `test/`).
    #[config(default = "\"mnist\".to_string()")]
    pub dataset: String,
    /// Dropout probability inside the zoo model, for architectures with dropout layers
    /// (`bulwark models list`: the WideResNets); 0 elsewhere.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// DropPath (stochastic depth) probability of each residual branch of the zoo model, for
    /// architectures that have it (the WideResNets); 0 elsewhere.
    #[config(default = 0.0)]
    pub drop_path: f64,
    /// Number of epochs.
    #[config(default = 5)]
    pub epochs: usize,
    /// Training batch size.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Batch size for validation and test evaluation.
    #[config(default = 1000)]
    pub eval_batch_size: usize,
    /// Training images held out (seeded) for per-epoch validation.
    #[config(default = 5000)]
    pub valid_size: usize,
    /// Use only the first `n` training images (before the split); for smoke runs.
    #[config(default = "None")]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first `n` test images; for smoke runs.
    #[config(default = "None")]
    pub test_limit: Option<usize>,
    /// Seed for weight initialization, the split and the shuffling.
    #[config(default = 0)]
    pub seed: u64,
    /// Optimizer.
    #[config(default = "OptimizerKind::Adam")]
    pub optimizer: OptimizerKind,
    /// Base (peak) learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Learning-rate schedule.
    #[config(default = "Schedule::OneCycle { peak_at: 0.4 }")]
    pub schedule: Schedule,
    /// SGD momentum (0 disables it).
    #[config(default = 0.9)]
    pub momentum: f64,
    /// SGD Nesterov momentum.
    #[config(default = false)]
    pub nesterov: bool,
    /// Weight decay (coupled for SGD and Adam, decoupled for AdamW); 0 disables it.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Adam/AdamW beta1.
    #[config(default = 0.9)]
    pub beta1: f64,
    /// Adam/AdamW beta2.
    #[config(default = 0.999)]
    pub beta2: f64,
    /// Adam/AdamW epsilon (PyTorch's default; burn's is 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Training method: standard or adversarial (`[method]` table with `kind` and its settings).
    #[config(default = "Method::Standard")]
    pub method: Method,
    /// Norm of the training threat model (pgd-at, fgsm-rs, mart; free-at and trades are L-inf).
    #[config(default = "Norm::Linf")]
    pub norm: Norm,
    /// Share `w` of the adversarial cross-entropy in `(1 − w)·clean + w·adversarial` (pgd-at,
    /// fgsm-rs).
    #[config(default = 1.0)]
    pub adv_weight: f64,
    /// Epochs over which the training radius ramps up linearly from 0, once
    /// `eps_ramp_start_epochs` have passed (0: the full radius from then on).
    #[config(default = 0.0)]
    pub eps_warmup_epochs: f64,
    /// Epochs trained at radius 0 before that ramp begins (Gowal et al.'s warm-up before their
    /// ramp-up; 0: the ramp starts with the first step). During them IBP's `κ` stays at 1.
    #[config(default = 0.0)]
    pub eps_ramp_start_epochs: f64,
    /// Model behaviour while crafting training examples: `inference` (default) or `train`.
    #[config(default = "Crafting::Inference")]
    pub crafting: Crafting,
    /// Validation images attacked after every epoch (adversarial methods) for the robust
    /// validation accuracy.
    #[config(default = 1000)]
    pub robust_valid_size: usize,
    /// PGD steps of the per-epoch robust validation (step `2.5·eps/steps`, random start).
    #[config(default = 10)]
    pub robust_valid_steps: usize,
    /// Stop when the validation metric has not improved for this many epochs.
    #[config(default = "None")]
    pub patience: Option<usize>,
    /// Catastrophic-overfitting guard (adversarial methods): stop and roll back to the best
    /// epoch when robust validation accuracy falls more than `overfit_drop` below its best while
    /// FGSM accuracy is at least what it was then.
    #[config(default = true)]
    pub overfit_guard: bool,
    /// The drop (absolute, as a fraction) that counts as a collapse.
    #[config(default = 0.2)]
    pub overfit_drop: f64,
    /// Which weights the run ends with (and evaluates on the test set).
    #[config(default = "Keep::Best")]
    pub keep: Keep,
    /// Label smoothing `ε` of every cross-entropy target (0: none).
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Mixup or cutmix of the training batches.
    #[config(default = "Mixing::None")]
    pub mixing: Mixing,
    /// Augmentations of the training batches (`[augment]`: `crop_padding`, `horizontal_flip`;
    /// none by default).
    #[config(default = "Augment::none()")]
    pub augment: Augment,
    /// Penalties added to the loss (`[[penalties]]`, see bulwark-reg-core).
    #[config(default = "Vec::new()")]
    pub penalties: Vec<Penalty>,
    /// Constraints applied after every optimizer step (`[[constraints]]`).
    #[config(default = "Vec::new()")]
    pub constraints: Vec<Constraint>,
    /// A spectral-norm bound applied after every optimizer step.
    #[config(default = "None")]
    pub spectral_bound: Option<SpectralSpec>,
    /// The input-gradient penalty on the clean inputs (`[input_gradient]`: `lambda`, `h`).
    #[config(default = "None")]
    pub input_gradient: Option<InputGradientSpec>,
    /// Adversarial weight perturbation (`[awp]`), with an adversarial method other than free-at.
    #[config(default = "None")]
    pub awp: Option<AwpSpec>,
    /// Robustness evaluation of the final model on the test set (`[final_eval]`).
    #[config(default = "FinalEval::default()")]
    pub final_eval: FinalEval,
}

impl TrainConfig {
    /// The radius of the final robust evaluation: `final_eval.eps`, else the method's.
    pub fn final_eps(&self) -> Option<f64> {
        self.final_eval.eps.or(self.method.eps())
    }
}

impl TrainConfig {
    /// Parses TOML, filling every field the text leaves out with its default. Unknown keys are
    /// errors (a typo must not silently fall back to a default).
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, TrainError> {
        let cfg = Self::parse_toml(text).map_err(|reason| TrainError::ConfigFile {
            path: origin.to_path_buf(),
            reason,
        })?;
        cfg.validate().map_err(|e| TrainError::ConfigFile {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// The text over the defaults, not validated (a user's model or dataset name is not the
    /// zoo's).
    fn parse_toml(text: &str) -> Result<Self, String> {
        parse_over_defaults(text, TrainConfig::new(), &OPTIONAL_KEYS)
    }

    /// Whether `stored` (a checkpoint's configuration) describes this configuration. Compared
    /// after parsing, so that a checkpoint written before a setting existed resumes with the
    /// setting at its default, which is what that run trained with. This holds because a new
    /// setting's default keeps the behaviour from before it (a rule for every setting added).
    pub fn is_described_by(&self, stored: &str) -> bool {
        let ours = self.to_toml();
        stored == ours || Self::parse_toml(stored).is_ok_and(|theirs| theirs.to_toml() == ours)
    }

    /// Reads a TOML file (see [`TrainConfig::from_toml_str`]).
    pub fn from_toml_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        Self::from_toml_str(&text, path)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig always serializes")
    }

    /// Checks ranges and consistency, the zoo model's name and the dataset's; the message names
    /// the offending field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let info = bulwark_models::model_info(&self.model)?;
        self.arch_options().check(info)?;
        crate::datasets::check_dataset_name(&self.dataset)?;
        self.validate_training()
    }

    /// The zoo architecture's training-time options (`dropout`, `drop_path`).
    pub fn arch_options(&self) -> bulwark_models::ArchOptions {
        bulwark_models::ArchOptions {
            dropout: self.dropout,
            drop_path: self.drop_path,
        }
    }

    /// Refuses what only a zoo model can take: `dropout` and `drop_path` configure the zoo's
    /// architectures, while a user's network sets its own layers.
    pub(crate) fn check_user_network(&self) -> Result<(), TrainError> {
        if self.dropout != 0.0 || self.drop_path != 0.0 {
            return Err(TrainError::Config(format!(
                "dropout ({}) and drop_path ({}) configure the zoo's architectures; a network \
                 given to fit_network or run_network_job builds its own dropout layers (leave \
                 both at 0)",
                self.dropout, self.drop_path
            )));
        }
        Ok(())
    }

    /// [`TrainConfig::validate`] without the names of the model and the dataset: what training a
    /// user's own network on a user's own data needs ([`crate::fit_network`]).
    pub fn validate_training(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch_size and eval_batch_size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} must be in [0, 1), got {b}"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad(format!("epsilon must be positive, got {}", self.epsilon));
        }
        if self.valid_size == 0 {
            return bad("valid_size must be at least 1: validation picks the best epoch".into());
        }
        if let Schedule::Cosine { warmup_epochs, .. } = self.schedule
            && warmup_epochs >= self.epochs as f64
        {
            return bad(format!(
                "cosine warmup_epochs ({warmup_epochs}) must be shorter than epochs ({})",
                self.epochs
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("nesterov needs momentum > 0".into());
        }
        self.schedule.validate().map_err(TrainError::Config)?;
        self.method
            .validate(self.norm, self.adv_weight, self.crafting)
            .map_err(TrainError::Config)?;
        if !(self.eps_warmup_epochs.is_finite() && self.eps_warmup_epochs >= 0.0) {
            return bad(format!(
                "eps_warmup_epochs must be >= 0, got {}",
                self.eps_warmup_epochs
            ));
        }
        if !(self.eps_ramp_start_epochs.is_finite() && self.eps_ramp_start_epochs >= 0.0) {
            return bad(format!(
                "eps_ramp_start_epochs must be >= 0, got {}",
                self.eps_ramp_start_epochs
            ));
        }
        if self.method.is_adversarial()
            && (self.robust_valid_size == 0 || self.robust_valid_steps == 0)
        {
            return bad("robust_valid_size and robust_valid_steps must be at least 1 for adversarial methods".into());
        }
        if self.patience == Some(0) {
            return bad(
                "patience must be at least 1 epoch (leave it out to train every epoch)".into(),
            );
        }
        if !(self.overfit_drop > 0.0 && self.overfit_drop < 1.0) {
            return bad(format!(
                "overfit_drop must be in (0, 1), got {}",
                self.overfit_drop
            ));
        }
        for (name, p) in [("dropout", self.dropout), ("drop_path", self.drop_path)] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if let Some(ig) = &self.input_gradient {
            ig.validate().map_err(TrainError::Config)?;
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        match self.mixing {
            Mixing::None => {}
            Mixing::Mixup { alpha } | Mixing::Cutmix { alpha } => {
                if !(alpha.is_finite() && alpha > 0.0) {
                    return bad(format!("mixing alpha must be > 0, got {alpha}"));
                }
                if matches!(
                    self.method,
                    Method::Mart { .. } | Method::FreeAt { .. } | Method::Ibp { .. }
                ) {
                    return bad(format!(
                        "mixup/cutmix do not combine with {}: its loss needs each sample's own \
                         label (mart, ibp: the margins it bounds are the label's) or keeps a \
                         per-sample perturbation (free-at)",
                        self.method.name()
                    ));
                }
            }
        }
        let fe = &self.final_eval;
        if fe.is_on() {
            match self.final_eps() {
                Some(eps) if eps.is_finite() && eps > 0.0 => {}
                Some(eps) => return bad(format!("final_eval eps must be > 0, got {eps}")),
                None => {
                    return bad(
                        "final_eval needs an eps with standard training (final_eval.eps)".into(),
                    );
                }
            }
            if fe.pgd_restarts == 0 {
                return bad("final_eval pgd_restarts must be at least 1".into());
            }
            if fe.eps_sweep.iter().any(|e| !(e.is_finite() && *e >= 0.0)) {
                return bad(format!(
                    "final_eval eps_sweep must hold radii >= 0, got {:?}",
                    fe.eps_sweep
                ));
            }
            if fe.limit == Some(0) {
                return bad("final_eval limit must be at least 1".into());
            }
        }
        for p in &self.penalties {
            p.validate()
                .map_err(|e| TrainError::Config(format!("penalty `{:?}`: {e}", p.kind)))?;
        }
        for c in &self.constraints {
            c.validate()
                .map_err(|e| TrainError::Config(format!("constraint `{:?}`: {e}", c.kind)))?;
        }
        if let Some(awp) = &self.awp {
            if !self.method.is_adversarial() || matches!(self.method, Method::FreeAt { .. }) {
                return bad(format!(
                    "awp is an add-on to adversarial training (pgd-at, fgsm-rs, trades, mart, \
                     ibp), not to {}",
                    self.method.name()
                ));
            }
            awp.perturbation()
                .validate()
                .map_err(|e| TrainError::Config(format!("awp: {e}")))?;
            if awp.warmup_epochs >= self.epochs {
                return bad(format!(
                    "awp warmup_epochs ({}) leaves no epoch with AWP in {} epochs",
                    awp.warmup_epochs, self.epochs
                ));
            }
        }
        if !self.method.is_adversarial() && self.eps_ramp_start_epochs > 0.0 {
            return bad(format!(
                "eps_ramp_start_epochs holds an adversarial method's training radius at 0; {} has \
                 no radius",
                self.method.name()
            ));
        }
        if self.method.is_adversarial()
            && self.eps_ramp_start_epochs + self.eps_warmup_epochs > self.epochs as f64
        {
            return bad(format!(
                "eps_ramp_start_epochs ({}) plus eps_warmup_epochs ({}) is longer than training \
                 ({} epochs): the radius would never reach eps",
                self.eps_ramp_start_epochs, self.eps_warmup_epochs, self.epochs
            ));
        }
        if let Some(s) = &self.spectral_bound
            && (!(s.max.is_finite() && s.max > 0.0) || s.iterations == 0)
        {
            return bad(format!(
                "spectral_bound needs max > 0 and iterations >= 1, got max {} and {} iterations",
                s.max, s.iterations
            ));
        }
        Ok(())
    }
}

/// Top-level fields that are absent from the defaults' TOML because they default to `None`.
const OPTIONAL_KEYS: [&str; 6] = [
    "train_limit",
    "test_limit",
    "patience",
    "spectral_bound",
    "awp",
    "input_gradient",
];

/// `text` over the fields of `defaults` (`optional`: top-level keys that default to `None`), as
/// [`merge`] overlays them; not validated.
pub(crate) fn parse_over_defaults<T: Serialize + serde::de::DeserializeOwned>(
    text: &str,
    defaults: T,
    optional: &[&str],
) -> Result<T, String> {
    let user: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut base = toml::Table::try_from(defaults).map_err(|e| e.to_string())?;
    merge(&mut base, user, "", optional)?;
    base.try_into().map_err(|e: toml::de::Error| e.to_string())
}

/// Overlays `user` on `base`. Tables merge recursively, except tagged enums (tables with a `kind`)
/// whose kind changes: they are replaced whole, since their fields differ.
pub(crate) fn merge(
    base: &mut toml::Table,
    user: toml::Table,
    prefix: &str,
    optional: &[&str],
) -> Result<(), String> {
    for (key, value) in user {
        let full = format!("{prefix}{key}");
        match (base.get_mut(&key), value) {
            (None, _) if prefix.is_empty() && !optional.contains(&key.as_str()) => {
                let known: Vec<&str> = base.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown key `{full}`; known keys: {}",
                    known.join(", ")
                ));
            }
            (Some(toml::Value::Table(b)), toml::Value::Table(u))
                if b.get("kind").is_none()
                    || u.get("kind").is_none_or(|k| Some(k) == b.get("kind")) =>
            {
                merge(b, u, &format!("{full}."), optional)?;
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_reg_core::ParamSelection;

    #[test]
    fn empty_toml_gives_defaults() {
        let cfg = TrainConfig::from_toml_str("", Path::new("x.toml")).unwrap();
        assert_eq!(cfg.model, "small-cnn");
        assert_eq!(cfg.schedule, Schedule::OneCycle { peak_at: 0.4 });
    }

    #[test]
    fn toml_overrides_and_round_trips() {
        let text = r#"
            model = "mlp"
            epochs = 3
            optimizer = "sgd"
            [schedule]
            kind = "piecewise"
            milestones = [1.0, 2.0]
            gamma = 0.5
        "#;
        let cfg = TrainConfig::from_toml_str(text, Path::new("x.toml")).unwrap();
        assert_eq!(cfg.model, "mlp");
        assert_eq!(cfg.optimizer, OptimizerKind::Sgd);
        assert_eq!(
            cfg.schedule,
            Schedule::Piecewise {
                milestones: vec![1.0, 2.0],
                gamma: 0.5
            }
        );
        let again = TrainConfig::from_toml_str(&cfg.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again.to_toml(), cfg.to_toml());
        let limited = TrainConfig::new().with_train_limit(Some(100));
        let again = TrainConfig::from_toml_str(&limited.to_toml(), Path::new("z.toml")).unwrap();
        assert_eq!(again.train_limit, Some(100));
    }

    #[test]
    fn every_config_in_the_repository_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // `spam-*.toml` are text runs (`bulwark text train`), checked in `text::tests`.
            let text = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("spam-"));
            if path.extension().is_some_and(|e| e == "toml") && !text {
                let cfg = TrainConfig::from_toml_file(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // A recipe round-trips through the TOML a run directory stores.
                let again = TrainConfig::from_toml_str(&cfg.to_toml(), &path).unwrap();
                assert_eq!(again.to_toml(), cfg.to_toml(), "{}", path.display());
                // Every recipe's headline is AutoAttack's composition on the whole test set
                // (issue 30); `quick` is a cheaper upper bound a user may choose. A Gaussian-noise
                // recipe trains the base network of randomized smoothing: its headline is the
                // certified accuracy `bulwark certify` gives, and it runs no attack.
                if matches!(cfg.method, Method::GaussianNoise { .. }) {
                    assert!(!cfg.final_eval.is_on(), "{}", path.display());
                    n += 1;
                    continue;
                }
                assert_eq!(
                    (cfg.final_eval.preset, cfg.final_eval.limit),
                    (Some(bulwark_attack_core::Preset::Standard), None),
                    "{}",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 8, "only {n} configs found in {}", dir.display());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = TrainConfig::from_toml_str("epoch = 3", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown key `epoch`"), "{e}");
        let e = TrainConfig::from_toml_str("lr = -1.0", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("lr must be a positive"), "{e}");
        let e = TrainConfig::from_toml_str("model = \"resnet\"", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown model `resnet`"), "{e}");
        let e = TrainConfig::from_toml_str("epochs = [", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("c.toml"), "{e}");
    }

    #[test]
    fn a_checkpoint_from_before_a_setting_existed_still_describes_the_config() {
        let cfg = TrainConfig::new().with_epochs(3);
        let stored = cfg.to_toml();
        assert!(cfg.is_described_by(&stored));
        // Written before `eps_ramp_start_epochs` existed: the line is missing, its default holds.
        let old: String = stored
            .lines()
            .filter(|l| !l.starts_with("eps_ramp_start_epochs"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(old, stored);
        assert!(cfg.is_described_by(&old));
        // Another value, another run; an unreadable one describes nothing.
        assert!(
            !cfg.clone()
                .with_eps_ramp_start_epochs(1.0)
                .is_described_by(&old)
        );
        assert!(!cfg.clone().with_epochs(4).is_described_by(&stored));
        assert!(!cfg.is_described_by("epochs = ["));
        // A user's network and data are not the zoo's: their names must not make an old
        // checkpoint unreadable.
        let mine = TrainConfig::new()
            .with_model("my-net".into())
            .with_dataset("mnist-subset".into());
        let old: String = mine
            .to_toml()
            .lines()
            .filter(|l| !l.starts_with("eps_ramp_start_epochs"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(mine.is_described_by(&old));
    }

    #[test]
    fn the_eps_schedule_must_fit_in_training() {
        let pgd = "epochs = 10\n[method]\nkind = \"pgd-at\"\neps = 0.3\n";
        let c =
            |extra: &str| TrainConfig::from_toml_str(&format!("{extra}{pgd}"), Path::new("c.toml"));
        let cfg = c("eps_ramp_start_epochs = 3.0\neps_warmup_epochs = 7.0\n").unwrap();
        assert_eq!(
            (cfg.eps_ramp_start_epochs, cfg.eps_warmup_epochs),
            (3.0, 7.0)
        );
        for (extra, needle) in [
            (
                "eps_ramp_start_epochs = 3.0\neps_warmup_epochs = 7.5\n",
                "never reach eps",
            ),
            ("eps_warmup_epochs = 11.0\n", "never reach eps"),
            (
                "eps_ramp_start_epochs = -1.0\n",
                "eps_ramp_start_epochs must be >= 0",
            ),
            (
                "eps_warmup_epochs = -1.0\n",
                "eps_warmup_epochs must be >= 0",
            ),
        ] {
            let e = c(extra).unwrap_err();
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
        let e = TrainConfig::from_toml_str("eps_ramp_start_epochs = 1.0\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("standard has no radius"), "{e}");
    }

    #[test]
    fn awp_parses_and_is_refused_where_it_does_not_apply() {
        let pgd = "epochs = 3\n[method]\nkind = \"pgd-at\"\neps = 0.3\n";
        let c =
            |extra: &str| TrainConfig::from_toml_str(&format!("{pgd}{extra}"), Path::new("c.toml"));
        let cfg = c("[awp]\ngamma = 0.01\nwarmup_epochs = 1\n").unwrap();
        let awp = cfg.awp.as_ref().unwrap();
        assert_eq!((awp.gamma, awp.warmup_epochs), (0.01, 1));
        assert!(!awp.active(0) && awp.active(1));
        assert_eq!(awp.select, ParamSelection::weights());
        let back = TrainConfig::from_toml_str(&cfg.to_toml(), Path::new("c.toml")).unwrap();
        assert_eq!(back.awp, cfg.awp);
        for (extra, needle) in [
            ("[awp]\ngama = 0.01\n", "gama"),
            ("[awp]\ngamma = 0.0\n", "(0, 1]"),
            (
                "[awp]\ngamma = 0.01\nwarmup_epochs = 3\n",
                "leaves no epoch",
            ),
        ] {
            let e = c(extra).unwrap_err();
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
        let e =
            TrainConfig::from_toml_str("[awp]\ngamma = 0.01\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("not to standard"), "{e}");
    }
}
