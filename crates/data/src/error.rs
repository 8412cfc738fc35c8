//! The crate's error type. Every variant that concerns a file carries its path, so that a
//! message printed on its own tells the user which file is wrong and how.

use std::path::PathBuf;

/// Everything that can go wrong while reading, verifying or fetching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O operation on a file or directory failed.
    #[error("{}: {action} failed: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done ("read", "create", "rename to ...").
        action: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A file that should be gzip-compressed could not be decompressed.
    #[error("{}: corrupt or invalid gzip data: {source}", path.display())]
    Gzip {
        /// The compressed file.
        path: PathBuf,
        /// The decoder's error.
        source: std::io::Error,
    },

    /// A file's content does not follow its format (IDX or CIFAR-10 binary).
    #[error("{name}: {problem}")]
    Format {
        /// The file's path, or the name the caller gave to an in-memory buffer.
        name: String,
        /// What is wrong, e.g. "truncated: expected 7840000 bytes of data, found 12".
        problem: String,
    },

    /// An images file and its labels file disagree.
    #[error(
        "{} and {}: {problem}",
        images.display(),
        labels.display()
    )]
    Mismatch {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
        /// What disagrees, e.g. "10000 images but 9999 labels".
        problem: String,
    },

    /// A file's SHA-256 (of its decompressed bytes) is not the expected one.
    #[error(
        "{}: {problem} (SHA-256 of the decompressed bytes {actual}, expected {expected})",
        path.display()
    )]
    Checksum {
        /// The file that was checked (the source file, compressed or not).
        path: PathBuf,
        /// The expected hex digest.
        expected: String,
        /// The digest that was computed.
        actual: String,
        /// What is wrong with the file, as far as its structure tells (empty, not IDX, wrong
        /// dimensions or count, ...; see [`crate::diagnose`]).
        problem: String,
    },

    /// An archive's SHA-256 (of its bytes as they are) is not the pinned one.
    #[error(
        "{}: not the pinned archive (SHA-256 {actual}, expected {expected})",
        path.display()
    )]
    ArchiveChecksum {
        /// The archive that was checked.
        path: PathBuf,
        /// The expected hex digest.
        expected: String,
        /// The digest that was computed.
        actual: String,
    },

    /// Files that should be in a directory are not there.
    #[error(
        "{}: missing {}{}",
        dir.display(),
        missing.join(", "),
        hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    MissingFiles {
        /// The directory that was searched.
        dir: PathBuf,
        /// The files that were not found (canonical names).
        missing: Vec<String>,
        /// What the user can do about it, when there is something to say.
        hint: Option<String>,
    },

    /// Every source of a dataset failed; `attempts` says what was tried and why it failed.
    #[error(
        "could not obtain {dataset}; every source failed:\n{}\n{help}",
        attempts.iter().map(|a| format!("  - {a}")).collect::<Vec<_>>().join("\n")
    )]
    FetchFailed {
        /// The dataset's display name.
        dataset: String,
        /// One line per source tried, with the reason it failed.
        attempts: Vec<String>,
        /// What the user can do instead.
        help: String,
    },

    /// CIFAR-10 or CIFAR-100 files were asked for but are not present; they cannot be fetched
    /// automatically.
    #[error("{}: {dataset} {split} files not found: missing {}. {help}", dir.display(), missing.join(", "))]
    CifarUnavailable {
        /// `CIFAR-10` or `CIFAR-100`.
        dataset: String,
        /// The directory that was searched.
        dir: PathBuf,
        /// "train" or "test".
        split: String,
        /// The missing file names.
        missing: Vec<String>,
        /// Where the files come from and where to put them.
        help: String,
    },

    /// A dataset name that is not one of the known names.
    #[error("unknown dataset {0:?}: expected \"mnist\" or \"fashion-mnist\"")]
    UnknownDataset(String),

    /// A split name that is not "train" or "test".
    #[error("unknown split {0:?}: expected \"train\" or \"test\"")]
    UnknownSplit(String),

    /// An argument is out of range (e.g. a validation set larger than the dataset).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// Builds a [`DataError::Format`] from anything that names the file.
    pub(crate) fn format(name: impl Into<String>, problem: impl Into<String>) -> Self {
        DataError::Format {
            name: name.into(),
            problem: problem.into(),
        }
    }

    /// Builds a [`DataError::Io`] for `path`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            path: path.into(),
            action: action.into(),
            source,
        }
    }
}
