//! Per-epoch checkpoints that survive a kill at any moment.
//!
//! A checkpoint is a directory `checkpoint/` in the run directory holding `model.bpk` (burn's
//! burnpack record of the model), `optim.bpk` (optimizer state: momentum, Adam moments) and
//! `state.json` (epoch, model name, config, metrics history). It is replaced atomically:
//!
//! 1. everything is written into `checkpoint.tmp/` and flushed to disk;
//! 2. the current `checkpoint/`, if there is one, is renamed to `checkpoint.old/` (replacing an
//!    older `checkpoint.old/`; when `checkpoint/` is missing, `checkpoint.old/` is kept as it is);
//! 3. `checkpoint.tmp/` is renamed to `checkpoint/`;
//! 4. `checkpoint.old/` is removed.
//!
//! A kill during 1 leaves the previous `checkpoint/` intact; a kill between 2 and 3 leaves
//! `checkpoint.old/`, which [`Checkpoint::find`] falls back to, and which the next save keeps until
//! its own `checkpoint/` is in place. No step ever leaves a directory
//! whose files mix two epochs under a name that resume reads.

use std::path::{Path, PathBuf};

use bulwark_attack_core::Network;
use bulwark_models::bpk;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::{EpochMetrics, TrainError};
use bulwark_eval::write_atomic;

/// What `state.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format version of the checkpoint directory.
    pub format: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// The model's name: the zoo name, or the label a user's network was trained under.
    pub model: String,
    /// The run's configuration, as TOML.
    pub config_toml: String,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
    /// Best validation metric so far (robust accuracy for adversarial methods) and its epoch.
    pub best: Option<(usize, f64)>,
    /// Why training ended before `epochs`, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<StopReason>,
    /// The spectral bound's power-iteration vectors, so that a resume continues them.
    #[serde(default, skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub spectral_vectors: std::collections::HashMap<String, Vec<f64>>,
}

/// Why a run stopped before its last epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StopReason {
    /// The validation metric did not improve for `patience` epochs.
    Patience {
        /// The epoch after which training stopped.
        epoch: usize,
        /// The best epoch.
        best_epoch: usize,
    },
    /// Catastrophic overfitting: robust validation accuracy collapsed while FGSM accuracy held;
    /// the weights were rolled back to the best epoch.
    CatastrophicOverfitting {
        /// The epoch where the collapse was seen.
        epoch: usize,
        /// Robust validation accuracy at that epoch.
        robust_acc: f64,
        /// FGSM validation accuracy at that epoch.
        fgsm_acc: f64,
        /// The epoch rolled back to, and its robust validation accuracy.
        best_epoch: usize,
        /// Robust validation accuracy of the best epoch.
        best_robust_acc: f64,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Patience { epoch, best_epoch } => write!(
                f,
                "early stop after epoch {epoch}: no improvement since epoch {best_epoch}"
            ),
            StopReason::CatastrophicOverfitting {
                epoch,
                robust_acc,
                fgsm_acc,
                best_epoch,
                best_robust_acc,
            } => write!(
                f,
                "catastrophic overfitting at epoch {epoch}: PGD validation accuracy {:.2}% (best \
                 {:.2}% at epoch {best_epoch}) while FGSM accuracy is {:.2}%; rolled back to \
                 epoch {best_epoch}",
                100.0 * robust_acc,
                100.0 * best_robust_acc,
                100.0 * fgsm_acc
            ),
        }
    }
}

/// The current checkpoint format.
pub const FORMAT: u32 = 2;

/// The command line that trains (and resumes) image runs, for messages.
pub(crate) const TRAIN_COMMAND: &str = "bulwark train";

/// The command line that trains (and resumes) text runs, for messages.
pub(crate) const TEXT_COMMAND: &str = "bulwark text train";

/// Reading and writing checkpoint directories.
pub struct Checkpoint;

fn sync_file(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(TrainError::io(path))
}

/// Makes renames inside `dir` durable (a directory's entries are flushed like a file's data).
fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    sync_file(dir)
}

/// Saves a model in burn's burnpack format through a temporary file and a rename, so `path` is
/// either the old complete file or the new complete file, never a partial one.
pub fn save_bpk_atomic<M: Network>(model: &M, path: &Path) -> Result<(), TrainError> {
    model.sync_running_stats();
    write_bpk_atomic(model, path)
}

/// [`save_bpk_atomic`] for any module (one with no lazily kept state to bring up to date).
pub(crate) fn write_bpk_atomic<M: Module>(model: &M, path: &Path) -> Result<(), TrainError> {
    let tmp = path.with_extension("bpk.tmp");
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("writing the model: {e}"),
        })?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, path).map_err(TrainError::io(path))
}

impl Checkpoint {
    /// The checkpoint directory in a run directory.
    pub const DIR: &'static str = "checkpoint";
    /// The previous checkpoint, kept while a new one is swapped in.
    pub const OLD: &'static str = "checkpoint.old";
    /// A checkpoint being written.
    pub const TMP: &'static str = "checkpoint.tmp";

    /// The checkpoint directory to resume from in `run_dir`, if any (`checkpoint/`, or
    /// `checkpoint.old/` when a kill interrupted the swap).
    pub fn find(run_dir: &Path) -> Option<PathBuf> {
        [Self::DIR, Self::OLD]
            .into_iter()
            .map(|n| run_dir.join(n))
            .find(|p| p.join("state.json").is_file())
    }

    /// Fails when `run_dir` already holds a run's checkpoint: a fresh run there would overwrite
    /// it. Resume it instead, or train into another directory; `command` is the command line
    /// that trains such a run (`bulwark train`, `bulwark text train`), which the message names.
    pub fn refuse_existing(run_dir: &Path, command: &str) -> Result<(), TrainError> {
        // A command line (`bulwark ...`) takes flags; a library call is named as it is.
        let how = if command.starts_with("bulwark") {
            format!("`{command} --resume --run-dir {}`", run_dir.display())
        } else {
            command.to_string()
        };
        match Self::find(run_dir) {
            Some(dir) => Err(TrainError::Checkpoint {
                path: dir,
                reason: format!(
                    "{} already holds a run; continue it with {how}, or choose another --name / \
                     --run-dir",
                    run_dir.display(),
                ),
            }),
            None => Ok(()),
        }
    }

    /// The error of a resume that finds no checkpoint in `run_dir`: the run stopped before its
    /// first epoch ended (or was never started there), so it must be started again.
    /// `command` as for [`Checkpoint::refuse_existing`].
    pub fn nothing_to_resume(run_dir: &Path, command: &str) -> TrainError {
        let config = run_dir.join("config.toml");
        let again = if config.is_file() && command.starts_with("bulwark") {
            format!(
                " (its configuration is saved: `{command} --config {} --run-dir {}`)",
                config.display(),
                run_dir.display()
            )
        } else {
            String::new()
        };
        TrainError::Checkpoint {
            path: run_dir.join(Self::DIR),
            reason: format!(
                "nothing to resume: {} holds no checkpoint; a run saves its first one when epoch 1 \
                 ends, so this one stopped before that or never started here. Start it again \
                 without --resume{again}",
                run_dir.display()
            ),
        }
    }

    /// Saves model, optimizer, state and the best epoch's weights (`best.bpk`, when there is a
    /// best epoch) as `run_dir/checkpoint/`, atomically (see module docs): the best weights and the
    /// state naming their epoch always belong together.
    pub fn save<M: Network>(
        run_dir: &Path,
        model: &M,
        optim: &ModuleOptimizer,
        state: &CheckpointState,
        best: Option<&M>,
    ) -> Result<PathBuf, TrainError> {
        model.sync_running_stats();
        if let Some(best) = best {
            best.sync_running_stats();
        }
        Self::save_module(run_dir, model, optim, state, best)
    }

    /// [`Checkpoint::save`] for any module (one with no lazily kept state to bring up to date).
    pub(crate) fn save_module<M: Module>(
        run_dir: &Path,
        model: &M,
        optim: &ModuleOptimizer,
        state: &CheckpointState,
        best: Option<&M>,
    ) -> Result<PathBuf, TrainError> {
        let tmp = run_dir.join(Self::TMP);
        let cur = run_dir.join(Self::DIR);
        let old = run_dir.join(Self::OLD);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
        let model_path = tmp.join("model.bpk");
        model
            .clone()
            .save_file(&model_path)
            .map_err(|e| TrainError::Checkpoint {
                path: tmp.clone(),
                reason: format!("writing model.bpk: {e}"),
            })?;
        sync_file(&model_path)?;
        let optim_path = tmp.join("optim.bpk");
        optim
            .save(&optim_path)
            .map_err(|e| TrainError::Checkpoint {
                path: tmp.clone(),
                reason: format!("writing optim.bpk: {e}"),
            })?;
        sync_file(&optim_path)?;
        if let Some(best) = best {
            write_bpk_atomic(best, &tmp.join("best.bpk"))?;
        }
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&tmp.join("state.json"), &json)?;
        sync_dir(&tmp)?;
        // `checkpoint.old/` is only ever replaced by a complete `checkpoint/`: after a kill between
        // the two renames below, `checkpoint.old/` is the only good copy and must survive until
        // the new `checkpoint/` is in place.
        if cur.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
            }
            std::fs::rename(&cur, &old).map_err(TrainError::io(&cur))?;
        }
        std::fs::rename(&tmp, &cur).map_err(TrainError::io(&tmp))?;
        sync_dir(run_dir)?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
        }
        Ok(cur)
    }

    /// Reads only `state.json` of a checkpoint directory.
    pub fn read_state(dir: &Path) -> Result<CheckpointState, TrainError> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Checkpoint {
            path: dir.to_path_buf(),
            reason: format!("cannot read state.json: {e}"),
        })?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("state.json is damaged: {e}"),
            })?;
        if state.format != FORMAT {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "format version {} is not supported (this build reads {FORMAT}); checkpoints \
                     of version 1 predate adversarial training and cannot be continued — start \
                     the run again",
                    state.format
                ),
            });
        }
        Ok(state)
    }

    /// The best epoch's weights saved with the checkpoint in `dir`, loaded into `model` (a freshly
    /// built model of the run's architecture); an error when the state names a best epoch but the
    /// file is missing or does not load.
    pub fn load_best<M: Network>(
        dir: &Path,
        state: &CheckpointState,
        model: M,
    ) -> Result<Option<M>, TrainError> {
        if state.best.is_none() {
            return Ok(None);
        }
        bpk::load_bpk(model, &dir.join("best.bpk"))
            .map(Some)
            .map_err(|e| TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("best.bpk (the best epoch's weights) does not load: {e}"),
            })
    }

    /// Loads a checkpoint into `model` (a freshly built model of the expected architecture, on
    /// the training device, which the run calls `name`) and `optim`. A checkpoint of another
    /// architecture, or damaged files, are errors that leave the checkpoint untouched.
    pub fn load<M: Network>(
        dir: &Path,
        name: &str,
        model: M,
        optim: ModuleOptimizer,
    ) -> Result<(M, ModuleOptimizer, CheckpointState), TrainError> {
        let state = Self::read_state(dir)?;
        if state.model != name {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "it holds model `{}`, but this run trains `{name}`",
                    state.model
                ),
            });
        }
        let model =
            bpk::load_bpk(model, &dir.join("model.bpk")).map_err(|e| TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("model.bpk does not load: {e}"),
            })?;
        let optim =
            load_optimizer(optim, &dir.join("optim.bpk")).map_err(|e| TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("optim.bpk does not load: {e}"),
            })?;
        Ok((model, optim, state))
    }
}

/// Loads an optimizer's state from `path` into memory at once. burn's `ModuleOptimizer::load`
/// leaves the state backed by the file and reads it at first use, which on wgpu came after the
/// next checkpoint had rotated the directory away ("host access failed: No such file or
/// directory", in the GPU test set on 2026-12-02); a read after a rotation by rename would even
/// take the newer checkpoint's contents. The model is read the same way (`bpk::load_bpk`).
pub(crate) fn load_optimizer(
    optim: ModuleOptimizer,
    path: &Path,
) -> Result<ModuleOptimizer, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use super::load_optimizer;
    use crate::{BackendKind, OptimizerKind, TrainConfig, build_optimizer};

    /// Two SGD-momentum steps on a tiny linear layer, the optimizer saved after the first: the
    /// weights after the second step.
    fn second_step(device: &Device, reload: bool) -> Vec<f32> {
        let ad = device.clone().autodiff();
        let cfg = TrainConfig::new()
            .with_optimizer(OptimizerKind::Sgd)
            .with_momentum(0.9);
        let mut model: Linear =
            bulwark_models::init_seeded_with(&ad, 3, |d| LinearConfig::new(4, 3).init(d));
        let mut optim = build_optimizer(&cfg);
        let x = Tensor::<2>::from_data(
            burn::tensor::TensorData::new((0..8).map(|i| i as f32 / 8.0).collect(), [2, 4]),
            &ad,
        );
        for step in 0..2 {
            if step == 1 && reload {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("optim.bpk");
                optim.save(&path).unwrap();
                optim = load_optimizer(build_optimizer(&cfg), &path).unwrap();
                // The next checkpoint's rotation removes the directory before the state is used.
                drop(dir);
            }
            let loss = model.forward(x.clone()).powi_scalar(2).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.1, model, grads);
        }
        model.weight.val().try_into_vec_as::<f32>().unwrap()
    }

    /// A loaded optimizer state no longer needs its file: the second step after reloading from a
    /// directory that is then deleted equals the step without the reload, on every compiled
    /// backend.
    #[test]
    fn a_loaded_optimizer_state_does_not_need_its_file() {
        for kind in BackendKind::compiled() {
            let device = kind.device().unwrap();
            assert_eq!(
                second_step(&device, true),
                second_step(&device, false),
                "{kind}"
            );
        }
    }
}
