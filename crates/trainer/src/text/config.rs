//! [`TextTrainConfig`]: a text classification run (data, model, method, optimizer, regularizers,
//! evaluation), read from TOML like [`TrainConfig`].

use std::path::Path;

use bulwark_models::TextCnnConfig;
use bulwark_reg_core::{Constraint, Penalty};
use burn::config::Config;

use super::method::TextMethod;
use crate::config::parse_over_defaults;
use crate::{Keep, Mixing, OptimizerKind, Schedule, SpectralSpec, TrainConfig, TrainError};

/// The embedding-space robustness evaluation at the end of a run (and its per-epoch validation).
#[derive(Config, Debug, PartialEq)]
pub struct TextEval {
    /// L2 radii of the ball around each text's clean embeddings (the whole `[L, E]` sequence);
    /// the first is also the per-epoch robust validation's radius.
    #[config(default = "vec![0.5, 1.0, 2.0]")]
    pub eps: Vec<f64>,
    /// PGD steps of the final evaluation (APGD-CE runs as many).
    #[config(default = 50)]
    pub steps: usize,
    /// PGD restarts of the final evaluation.
    #[config(default = 3)]
    pub restarts: usize,
    /// PGD steps of the per-epoch robust validation.
    #[config(default = 10)]
    pub valid_steps: usize,
}

/// A text classification run on the SpamAssassin corpus with [`bulwark_models::TextCnn`].
///
/// ```
/// use bulwark_trainer::text::{TextMethod, TextTrainConfig};
///
/// let cfg = TextTrainConfig::from_toml_str(
///     "epochs = 3\n[method]\nkind = \"fgm\"\neps = 1.0\n",
///     std::path::Path::new("example.toml"),
/// )
/// .unwrap();
/// assert_eq!(cfg.method, TextMethod::Fgm { eps: 1.0 });
/// assert_eq!(cfg.seq_len, 256);
/// ```
#[derive(Config, Debug)]
pub struct TextTrainConfig {
    /// The data set; `spam-assassin` is the one there is.
    #[config(default = "\"spam-assassin\".to_string()")]
    pub dataset: String,
    /// Most words in the vocabulary (built on the training part of the split).
    #[config(default = 20000)]
    pub vocab_words: usize,
    /// Fewest occurrences of a word to enter the vocabulary.
    #[config(default = 2)]
    pub min_count: usize,
    /// Word ids per text (longer texts are cut, shorter ones padded).
    #[config(default = 256)]
    pub seq_len: usize,
    /// Embedding width.
    #[config(default = 64)]
    pub embed_dim: usize,
    /// Feature maps per convolution width.
    #[config(default = 64)]
    pub filters: usize,
    /// Convolution widths.
    #[config(default = "vec![3, 4, 5]")]
    pub kernel_sizes: Vec<usize>,
    /// Dropout before the last layer.
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Epochs.
    #[config(default = 10)]
    pub epochs: usize,
    /// Training batch size.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Evaluation batch size.
    #[config(default = 500)]
    pub eval_batch_size: usize,
    /// Training texts held out (seeded) for validation.
    #[config(default = 500)]
    pub valid_size: usize,
    /// Seed of the weights, the split, the order and every random draw.
    #[config(default = 0)]
    pub seed: u64,
    /// Optimizer.
    #[config(default = "OptimizerKind::Adam")]
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Learning-rate schedule.
    #[config(default = "Schedule::OneCycle { peak_at: 0.4 }")]
    pub schedule: Schedule,
    /// Weight decay (coupled for Adam and SGD, decoupled for AdamW).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// SGD momentum.
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Training method (`[method]` with `kind`: standard, fgm, pgd, freelb).
    #[config(default = "TextMethod::Standard")]
    pub method: TextMethod,
    /// Share `w` of the adversarial loss in `(1 − w)·clean + w·adversarial` (fgm, pgd).
    #[config(default = 0.5)]
    pub adv_weight: f64,
    /// Label smoothing of every cross-entropy target.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Mixup on the embeddings (Guo, Mao & Zhang 2019): `{ kind = "mixup", alpha }`; CutMix
    /// cuts boxes out of images and is refused.
    #[config(default = "Mixing::None")]
    pub mixing: Mixing,
    /// Penalties added to every objective (as in image runs).
    #[config(default = "Vec::new()")]
    pub penalties: Vec<Penalty>,
    /// Constraints applied after every step.
    #[config(default = "Vec::new()")]
    pub constraints: Vec<Constraint>,
    /// Spectral-norm bound applied after every step.
    #[config(default = "None")]
    pub spectral_bound: Option<SpectralSpec>,
    /// Stop after this many epochs without a better validation metric.
    #[config(default = "None")]
    pub patience: Option<usize>,
    /// Keep the best validation epoch's weights or the last epoch's.
    #[config(default = "Keep::Best")]
    pub keep: Keep,
    /// The robustness evaluation.
    #[config(default = "TextEval::new()")]
    pub eval: TextEval,
}

/// Keys whose default is `None`, absent from the serialized defaults.
const OPTIONAL_KEYS: [&str; 2] = ["spectral_bound", "patience"];

impl TextTrainConfig {
    /// Whether `stored` (a checkpoint's configuration) describes this configuration, compared
    /// after parsing, as [`TrainConfig::is_described_by`](crate::TrainConfig::is_described_by).
    pub fn is_described_by(&self, stored: &str) -> bool {
        let ours = self.to_toml();
        stored == ours || Self::parse_toml(stored).is_ok_and(|theirs| theirs.to_toml() == ours)
    }

    /// The text over the defaults, not validated (a user's network and corpus are not
    /// TextCnn's and SpamAssassin's).
    fn parse_toml(text: &str) -> Result<Self, String> {
        parse_over_defaults(text, TextTrainConfig::new(), &OPTIONAL_KEYS)
    }

    /// Reads a configuration: the given keys over the defaults; an unknown key or a bad value is
    /// an error naming it.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, TrainError> {
        let err = |reason: String| TrainError::ConfigFile {
            path: origin.to_path_buf(),
            reason,
        };
        let cfg = Self::parse_toml(text).map_err(err)?;
        // Files configure the CLI's runs, which train TextCnn on the corpus it fetches.
        cfg.validate_text_cnn().map_err(|e| err(e.to_string()))?;
        Ok(cfg)
    }

    /// [`TextTrainConfig::from_toml_str`] of a file.
    pub fn from_toml_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        Self::from_toml_str(&text, path)
    }

    /// The configuration as TOML (a run directory's `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TextTrainConfig always serializes")
    }

    /// The model's configuration for a vocabulary of `vocab_size` ids.
    pub fn model_config(&self, vocab_size: usize) -> TextCnnConfig {
        TextCnnConfig::new(vocab_size)
            .with_embed_dim(self.embed_dim)
            .with_kernel_sizes(self.kernel_sizes.clone())
            .with_filters(self.filters)
            .with_dropout(self.dropout)
            .with_num_classes(2)
    }

    /// The shared settings as an image run's configuration, whose optimizer, schedule,
    /// regularizers and stopping rules text runs reuse.
    pub(crate) fn shared(&self) -> TrainConfig {
        TrainConfig::new()
            .with_epochs(self.epochs)
            .with_batch_size(self.batch_size)
            .with_eval_batch_size(self.eval_batch_size)
            .with_valid_size(self.valid_size)
            .with_seed(self.seed)
            .with_optimizer(self.optimizer)
            .with_lr(self.lr)
            .with_schedule(self.schedule.clone())
            .with_weight_decay(self.weight_decay)
            .with_momentum(self.momentum)
            .with_label_smoothing(self.label_smoothing)
            .with_mixing(self.mixing.clone())
            .with_penalties(self.penalties.clone())
            .with_constraints(self.constraints.clone())
            .with_spectral_bound(self.spectral_bound.clone())
            .with_patience(self.patience)
            .with_keep(self.keep)
    }

    /// Checks the settings of a run of [`TextCnn`](bulwark_models::TextCnn) (what `fit_text`
    /// and configuration files need): [`TextTrainConfig::validate`], the dataset's name (the
    /// corpus `TextData::load` fetches) and the model keys.
    pub fn validate_text_cnn(&self) -> Result<(), TrainError> {
        self.validate()?;
        let bad = |m: String| Err(TrainError::Config(m));
        if self.dataset != "spam-assassin" {
            return bad(format!(
                "unknown text dataset {:?}: the one there is is \"spam-assassin\" (a corpus of \
                 your own goes through TextData::from_corpora)",
                self.dataset
            ));
        }
        if self.embed_dim == 0 || self.filters == 0 {
            return bad("embed_dim and filters must be at least 1".into());
        }
        if self.kernel_sizes.is_empty() || self.kernel_sizes.contains(&0) {
            return bad(format!(
                "kernel_sizes must be non-empty and positive, got {:?}",
                self.kernel_sizes
            ));
        }
        let widest = self.kernel_sizes.iter().copied().max().unwrap_or(1);
        if self.seq_len < widest {
            return bad(format!(
                "seq_len ({}) must be at least the widest convolution ({widest})",
                self.seq_len
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Checks the settings every text run needs, whatever its network (`fit_text_network`):
    /// not the model keys, which configure `fit_text`'s TextCnn only, nor the dataset's name.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.vocab_words == 0 || self.seq_len == 0 {
            return bad("vocab_words and seq_len must be at least 1".into());
        }
        if !(self.adv_weight > 0.0 && self.adv_weight <= 1.0) {
            return bad(format!(
                "adv_weight must be in (0, 1], got {}",
                self.adv_weight
            ));
        }
        self.method.validate().map_err(TrainError::Config)?;
        if matches!(self.mixing, Mixing::Cutmix { .. }) {
            return bad(
                "cutmix cuts boxes out of images; text runs take mixup (on the embeddings)".into(),
            );
        }
        let e = &self.eval;
        if e.eps.is_empty() || e.eps.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
            return bad(format!("eval.eps must hold radii > 0, got {:?}", e.eps));
        }
        if e.steps == 0 || e.restarts == 0 || e.valid_steps == 0 {
            return bad("eval.steps, eval.restarts and eval.valid_steps must be at least 1".into());
        }
        self.shared().validate_training()
    }
}
