//! [`EvalError`].

use std::path::PathBuf;

/// Errors from evaluating a model: settings, inputs, files and the attacks themselves.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The evaluation, attack-run or report settings are invalid.
    #[error("invalid {what}: {problem}")]
    Settings {
        /// Which settings: "evaluation settings", "attack settings", ...
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The model and the data do not fit together.
    #[error("{0}")]
    Input(String),
    /// Another process is writing into the directory (see [`crate::RunLock`]).
    #[error(
        "{} is in use by another process{}: wait for it to finish, or write into another directory",
        dir.display(),
        if holder.is_empty() { String::new() } else { format!(" ({holder})") }
    )]
    Busy {
        /// The directory.
        dir: PathBuf,
        /// What the holder wrote into the lock file (its process id and command line).
        holder: String,
    },
    /// A directory holds results of something else that this evaluation would replace.
    #[error(
        "{} holds {holds}, which this would replace; choose another directory",
        path.display()
    )]
    Occupied {
        /// The file that would be replaced.
        path: PathBuf,
        /// What it is.
        holds: String,
    },
    /// A result could not be serialized (a bug: every result type serializes).
    #[error("cannot serialize {what}: {reason}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The serializer's message.
        reason: String,
    },
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Saved progress of an interrupted evaluation is damaged or belongs to another evaluation.
    #[error("checkpoint {path}: {reason}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing an image failed.
    #[error("{path}: cannot write the image: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An attack refused its settings or its input.
    #[error(transparent)]
    Attack(#[from] bulwark_attack_core::AttackError),
    /// See [`bulwark_models::ModelError`].
    #[error(transparent)]
    Model(#[from] bulwark_models::ModelError),
}

impl EvalError {
    /// Maps an I/O error on `path` (for `map_err`).
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::Io { path, source }
    }
}
