//! An evaluation's saved progress: one JSON and one binary file per finished chunk, under a fingerprint of what is evaluated.

use std::path::Path;

use bulwark_attack_core::Break;
use bulwark_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::attack_run::data_fingerprint;
use crate::error::EvalError;
use crate::robust::RobustEvalConfig;

/// A chunk's saved results (`chunk-NNNNN.json`; its worst-case inputs at the headline radius are
/// in `chunk-NNNNN.f32`, little-endian).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChunkFile {
    pub(super) fingerprint: String,
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) clean_correct: Vec<bool>,
    pub(super) clean_predictions: Vec<usize>,
    pub(super) broken: Vec<Vec<Option<Break>>>,
    pub(super) adversarial_predictions: Vec<Vec<usize>>,
    /// `[eps index][stage] = (attacked, broken, rejected, seconds)`.
    pub(super) stage_totals: Vec<Vec<(usize, usize, usize, f64)>>,
}

/// A stable fingerprint of what is evaluated: FNV-1a over the configuration JSON, the caller's
/// identity (model, weights, backend), this crate's version, and the images and labels.
pub(super) fn fingerprint(
    config: &RobustEvalConfig,
    identity: &str,
    data: &ImageDataset,
) -> String {
    let text = format!(
        "{}|{identity}",
        serde_json::to_string(config).unwrap_or_default()
    );
    data_fingerprint(&text, data)
}

pub(super) fn count_robust(chunk: &ChunkFile, main: usize) -> usize {
    chunk
        .clean_correct
        .iter()
        .zip(&chunk.broken[main])
        .filter(|(c, b)| **c && b.is_none())
        .count()
}

/// Whether `out_dir` holds a saved evaluation (`eval-state/`) of exactly this evaluation
/// (settings, `identity`, images and labels): `None` when it holds none. A caller that owns the
/// directory, such as a training job's final evaluation, starts a mismatched one over instead of
/// resuming it ([`evaluate_robustness`](crate::evaluate_robustness) with `resume` refuses it).
///
/// ```
/// use bulwark_attack_core::{Norm, Preset};
/// use bulwark_data::{DatasetKind, Split, load_split};
/// use bulwark_eval::{RobustEvalConfig, saved_evaluation_matches};
///
/// # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
/// let data = load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())?.take(4);
/// let config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0);
/// let dir = tempfile::tempdir()?;
/// assert_eq!(saved_evaluation_matches(dir.path(), &config, "my-model", &data), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn saved_evaluation_matches(
    out_dir: &Path,
    config: &RobustEvalConfig,
    identity: &str,
    data: &ImageDataset,
) -> Option<bool> {
    let dir = out_dir.join("eval-state");
    dir.is_dir().then(|| {
        std::fs::read_to_string(dir.join("fingerprint"))
            .is_ok_and(|found| found.trim() == fingerprint(config, identity, data))
    })
}

/// Creates the state directory, or checks that the one there belongs to this evaluation.
pub(super) fn prepare_state_dir(dir: &Path, fp: &str, resume: bool) -> Result<(), EvalError> {
    let meta = dir.join("fingerprint");
    if dir.exists() {
        if !resume {
            return Err(EvalError::State {
                path: dir.to_path_buf(),
                reason: "a saved evaluation is already there; pass --resume to continue it, or \
                         choose another output directory"
                    .into(),
            });
        }
        let found = std::fs::read_to_string(&meta).unwrap_or_default();
        if found.trim() != fp {
            return Err(EvalError::State {
                path: dir.to_path_buf(),
                reason: format!(
                    "the saved evaluation is of another model, dataset or configuration \
                     (fingerprint {} here, {fp} now); choose another output directory",
                    if found.trim().is_empty() {
                        "missing"
                    } else {
                        found.trim()
                    }
                ),
            });
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    write_atomic(&meta, fp.as_bytes())
}

/// A saved chunk, if it is complete and of this evaluation; anything else is recomputed.
pub(super) fn load_chunk(
    json: &Path,
    bin: &Path,
    fp: &str,
    start: usize,
    len: usize,
    n_pixels: usize,
    shape: (usize, usize),
) -> Option<(ChunkFile, Vec<f32>)> {
    let chunk: ChunkFile = serde_json::from_slice(&std::fs::read(json).ok()?).ok()?;
    let bytes = std::fs::read(bin).ok()?;
    let (radii, stages) = shape;
    let breaks_valid = chunk.broken.iter().enumerate().all(|(e, row)| {
        row.len() == len
            && row
                .iter()
                .flatten()
                .all(|b| b.stage < stages && b.eps_index <= e)
    });
    let ok = chunk.fingerprint == fp
        && chunk.start == start
        && chunk.len == len
        && chunk.clean_correct.len() == len
        && chunk.clean_predictions.len() == len
        && chunk.broken.len() == radii
        && breaks_valid
        && chunk.adversarial_predictions.len() == radii
        && chunk.adversarial_predictions.iter().all(|p| p.len() == len)
        && chunk.stage_totals.len() == radii
        && chunk.stage_totals.iter().all(|t| t.len() == stages)
        && bytes.len() == len * n_pixels * 4;
    if !ok {
        tracing::warn!(
            "{}: incomplete or foreign chunk, recomputing it",
            json.display()
        );
        return None;
    }
    let adv = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some((chunk, adv))
}

/// Writes the inputs first and the JSON last: a chunk counts only once both are complete.
pub(super) fn save_chunk(
    json: &Path,
    bin: &Path,
    chunk: &ChunkFile,
    adv: &[f32],
) -> Result<(), EvalError> {
    let bytes: Vec<u8> = adv.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(bin, &bytes)?;
    let text = serde_json::to_vec(chunk).map_err(|e| EvalError::Serialize {
        what: "an evaluation chunk",
        reason: e.to_string(),
    })?;
    write_atomic(json, &text)
}

#[cfg(test)]
mod tests {
    use bulwark_attack_core::{Norm, Preset};
    use bulwark_data::{DatasetKind, Split, load_split};

    use super::*;

    #[test]
    fn a_saved_evaluation_matches_only_its_own_settings_identity_and_images() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
        let data = load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())
            .unwrap()
            .take(4);
        let config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            saved_evaluation_matches(dir.path(), &config, "a", &data),
            None
        );
        let fp = fingerprint(&config, "a", &data);
        prepare_state_dir(&dir.path().join("eval-state"), &fp, false).unwrap();
        let matches = |config: &RobustEvalConfig, identity: &str, data: &ImageDataset| {
            saved_evaluation_matches(dir.path(), config, identity, data)
        };
        assert_eq!(matches(&config, "a", &data), Some(true));
        assert_eq!(matches(&config, "b", &data), Some(false));
        assert_eq!(matches(&config, "a", &data.take(3)), Some(false));
        let other = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.2, 0);
        assert_eq!(matches(&other, "a", &data), Some(false));
        // A state directory without its fingerprint is nobody's.
        std::fs::remove_file(dir.path().join("eval-state/fingerprint")).unwrap();
        assert_eq!(matches(&config, "a", &data), Some(false));
    }
}
