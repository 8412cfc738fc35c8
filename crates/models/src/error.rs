use std::path::PathBuf;

/// Errors from building models and moving their weights in and out of files.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The requested model name is not in the zoo.
    #[error("unknown model `{name}`; the zoo has: {known}")]
    UnknownModel {
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of the known names.
        known: String,
    },
    /// A model's configuration cannot be built (depth, width, probabilities, options the
    /// architecture does not have).
    #[error("model `{model}`: {reason}")]
    Config {
        /// The model.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A weights file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file is malformed (bad header, truncated data, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A weights file does not match the model's architecture.
    #[error("{path}: does not match model `{model}`: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The model that was being loaded.
        model: String,
        /// The first mismatching tensor and how it differs.
        reason: String,
    },
    /// burn could not read a burnpack (`.bpk`) file, or it does not fit the model.
    #[error("{path}: does not load into model `{model}`: {reason}")]
    Burnpack {
        /// The file.
        path: PathBuf,
        /// The model that was being loaded.
        model: String,
        /// burn's message.
        reason: String,
    },
    /// A weights file holds a value that cannot be a trained weight (NaN or infinity).
    #[error("{path}: tensor `{tensor}` holds non-finite values (NaN or infinity)")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor that holds them.
        tensor: String,
    },
}
