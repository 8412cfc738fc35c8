//! The one error type of this crate: every bad input names what is wrong.

/// Why an attack refused to run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttackError {
    /// A numeric setting is out of its valid range (eps < 0, NaN step size, zero steps, ...).
    #[error("invalid setting `{name}` = {value}: {reason}")]
    InvalidSetting {
        /// The setting's name, as in the attack's config.
        name: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What the valid range is.
        reason: &'static str,
    },
    /// The input batch holds NaN or infinite values.
    #[error("input sample {sample} holds a non-finite value ({value}) at position {position}")]
    NonFiniteInput {
        /// Index of the sample in the batch.
        sample: usize,
        /// Flat position inside the sample.
        position: usize,
        /// The value found.
        value: f32,
    },
    /// The input batch is not inside the valid box.
    #[error(
        "input sample {sample} has value {value} at position {position}, outside the valid box \
         [{lo}, {hi}]; scale inputs to the box (or set the attack's `bounds`)"
    )]
    OutsideBox {
        /// Index of the sample in the batch.
        sample: usize,
        /// Flat position inside the sample.
        position: usize,
        /// The value found.
        value: f32,
        /// Lower bound of the box.
        lo: f64,
        /// Upper bound of the box.
        hi: f64,
    },
    /// Labels (or targets) and inputs disagree on the batch size.
    #[error("{what}: {got} entries for a batch of {batch} inputs")]
    CountMismatch {
        /// `labels` or `targets`.
        what: &'static str,
        /// Number of labels given.
        got: usize,
        /// Number of inputs.
        batch: usize,
    },
    /// A label or target is not a class of the model.
    #[error("{what}[{sample}] = {value} is not a class of the model (it has {num_classes})")]
    ClassOutOfRange {
        /// `labels` or `targets`.
        what: &'static str,
        /// Index of the sample.
        sample: usize,
        /// The value found.
        value: i64,
        /// Number of classes (logits per sample).
        num_classes: usize,
    },
    /// A targeted attack was given a target equal to the true label.
    #[error("targets[{sample}] = {target} equals the true label; a target must be another class")]
    TargetIsLabel {
        /// Index of the sample.
        sample: usize,
        /// The target class.
        target: i64,
    },
    /// The attack's targeting mode and the call disagree (targets missing or unexpected).
    #[error("{0}")]
    Targeting(String),
    /// The loss or attack needs more classes than the model has.
    #[error("{what} needs at least {needed} classes; the model has {num_classes}")]
    TooFewClasses {
        /// The loss or attack.
        what: &'static str,
        /// Minimum number of classes.
        needed: usize,
        /// The model's number of classes.
        num_classes: usize,
    },
    /// The model's output is not a `[batch, classes]` matrix of finite numbers.
    #[error("model output: {0}")]
    BadModelOutput(String),
    /// An attack configuration file or value is malformed.
    #[error("attack configuration: {0}")]
    Config(String),
    /// The attack does not support this combination of options.
    #[error("{attack}: {reason}")]
    Unsupported {
        /// The attack's name.
        attack: &'static str,
        /// What is not supported.
        reason: String,
    },
}

pub(crate) fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> AttackError {
    AttackError::InvalidSetting {
        name,
        value: value.to_string(),
        reason,
    }
}
