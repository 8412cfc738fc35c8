use std::path::PathBuf;

/// Errors from configuring and running training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A backend was asked for that this binary was built without.
    #[error(
        "backend `{name}` is not compiled into this build; rebuild with the `{feature}` feature \
         (e.g. `cargo run -p bulwark-cli --features {feature} -- ...`); compiled in: {compiled}"
    )]
    BackendNotCompiled {
        /// The backend asked for.
        name: String,
        /// The Cargo feature that enables it.
        feature: String,
        /// Backends this build has.
        compiled: String,
    },
    /// A backend is compiled in but its device cannot be used here (no GPU adapter, no driver).
    #[error(
        "backend `{name}` is compiled in but cannot run on this machine: {reason}; pick another \
         with --backend (compiled in: {compiled})"
    )]
    BackendUnavailable {
        /// The backend asked for.
        name: String,
        /// What the backend reported.
        reason: String,
        /// Backends this build has.
        compiled: String,
    },
    /// An unknown backend name.
    #[error("unknown backend `{0}`; known: flex, ndarray, wgpu, vulkan, cuda")]
    UnknownBackend(String),
    /// The configuration is inconsistent.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// Settings other than the training configuration are invalid (evaluation, attack run,
    /// benchmark, sweep, run options).
    #[error("invalid {what}: {problem}")]
    Settings {
        /// Which settings: "evaluation settings", "sweep settings", ...
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The model and the data do not fit together, or the dataset is unknown.
    #[error("{0}")]
    Input(String),
    /// A directory holds results of something else that this run or evaluation would replace.
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
    /// A configuration file could not be parsed.
    #[error("{path}: cannot parse the training configuration: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Parser message.
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
    /// A checkpoint is missing, damaged or from another run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Training diverged.
    #[error(
        "training diverged: the {during} loss became {value} in epoch {epoch}, after batch {batch}; \
         lower the learning rate"
    )]
    Diverged {
        /// Which loss: `training` or `validation`.
        during: &'static str,
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch (1-based).
        batch: usize,
        /// The offending loss value.
        value: f32,
    },
    /// An attack refused its settings or its input.
    #[error(transparent)]
    Attack(#[from] bulwark_attack_core::AttackError),
    /// Writing an image failed.
    #[error("{path}: cannot write the image: {reason}")]
    Image {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A regularizer refused its settings (e.g. a selection that matches no parameter).
    #[error(transparent)]
    Reg(#[from] bulwark_reg_core::RegError),
    /// See [`bulwark_models::ModelError`].
    #[error(transparent)]
    Model(#[from] bulwark_models::ModelError),
    /// An evaluation error (validation, the final evaluation, a locked or occupied directory).
    #[error(transparent)]
    Eval(#[from] bulwark_eval::EvalError),
    /// A data error (missing or corrupt dataset files).
    #[error(transparent)]
    Data(#[from] bulwark_data::DataError),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
