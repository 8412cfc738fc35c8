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
    /// Mean training objective over the epoch's batches (weighted by batch size): the method's
    /// loss plus penalties (plain cross-entropy for standard training without penalties).
    pub train_loss: f64,
    /// Clean training accuracy over the epoch, measured on the fly (model changing during the
    /// epoch; on the mixed inputs when mixup/cutmix is on).
    pub train_acc: f64,
    /// Validation cross-entropy (model in inference mode).
    pub valid_loss: f64,
    /// Validation accuracy.
    pub valid_acc: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Training radius at the end of the epoch (adversarial methods; smaller during an eps ramp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Mean cross-entropy on the epoch's adversarial training inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_adv_loss: Option<f64>,
    /// Accuracy on the epoch's adversarial training inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_adv_acc: Option<f64>,
    /// Mean value of the penalties over the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalty: Option<f64>,
    /// Mean input-gradient penalty `mean_b ‖∇ₓ ℓ‖²` over the epoch (before λ), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_gradient: Option<f64>,
    /// PGD accuracy on the robust validation images at the full radius (adversarial methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_robust_acc: Option<f64>,
    /// FGSM accuracy on the same images (for the catastrophic-overfitting guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_fgsm_acc: Option<f64>,
    /// Resident memory of the process at the end of the epoch, MiB (Linux; a leak shows as
    /// growth from epoch to epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
}

/// The process's resident memory in MiB (`VmRSS` of `/proc/self/status`; `None` where there is
/// no such file).
pub fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl EpochMetrics {
    /// The validation metric that selects the best epoch: robust accuracy when measured, else
    /// clean accuracy.
    pub fn selection_metric(&self) -> f64 {
        self.valid_robust_acc.unwrap_or(self.valid_acc)
    }
}

/// Rewrites `metrics.jsonl` from `history` (used when a run starts or resumes, so the log always
/// matches the checkpoint it continues from), atomically.
pub(crate) fn write_all(path: &Path, history: &[EpochMetrics]) -> Result<(), TrainError> {
    let mut text = String::new();
    for m in history {
        text.push_str(&serde_json::to_string(m).expect("metrics serialize"));
        text.push('\n');
    }
    Ok(bulwark_eval::write_atomic(path, text.as_bytes())?)
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

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn resident_memory_counts_a_touched_block() {
        // 64 MiB written, so resident: the process holds at least that much (in MiB, not KiB or
        // bytes). Other tests running alongside only add to it.
        let block = vec![1u8; 64 << 20];
        let rss = super::resident_mib().unwrap();
        assert!(block.iter().step_by(4096).all(|&b| b == 1));
        assert!((64.0..1e6).contains(&rss), "{rss}");
    }
}
