//! Per-epoch metrics and the JSONL log.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Learning rate at the last step of the epoch.
    pub lr: f64,
    /// Mean training cross-entropy over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// Training accuracy over the epoch, measured on the fly (model changing during the epoch).
    pub train_acc: f64,
    /// Validation cross-entropy (model in inference mode).
    pub valid_loss: f64,
    /// Validation accuracy.
    pub valid_acc: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
}

/// Rewrites `metrics.jsonl` from `history` (used when a run starts or resumes, so the log always
/// matches the checkpoint it continues from), atomically.
pub(crate) fn write_all(path: &Path, history: &[EpochMetrics]) -> Result<(), TrainError> {
    let mut text = String::new();
    for m in history {
        text.push_str(&serde_json::to_string(m).expect("metrics serialize"));
        text.push('\n');
    }
    crate::checkpoint::write_atomic(path, text.as_bytes())
}

/// Appends one epoch to `metrics.jsonl`.
pub(crate) fn append(path: &Path, m: &EpochMetrics) -> Result<(), TrainError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(TrainError::io(path))?;
    let line = serde_json::to_string(m).expect("metrics serialize");
    writeln!(f, "{line}").map_err(TrainError::io(path))
}
