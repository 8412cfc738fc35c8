//! The whole training job: data, split, training, test evaluation, exports and report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bulwark_data::{FetchOptions, ImageDataset};
use bulwark_models::torch;

use crate::checkpoint::{TRAIN_COMMAND, save_bpk_atomic};
use bulwark_attack_core::{AttackConfig, AttackOptions, Network, Norm, PgdConfig, ThreatModel};
use bulwark_eval::write_atomic;
use bulwark_reg_core::{ConstraintKind, ParamSelection, PenaltyKind, sparsity};
use burn::tensor::Device;

use crate::datasets::{check_input_shape, load_dataset};
use crate::fit::{check_options, fit_locked, zoo_builder};
use crate::{
    Checkpoint, DeviceSet, EpochMetrics, FitOptions, ReportInputs, StopReason, TrainConfig,
    TrainError, write_report,
};
use bulwark_eval::RunLock;
use bulwark_eval::{
    AttackRunOptions, AttackState, AttackSummary, EvalContext, EvalResult, OtherAttack,
    RobustEvalConfig, RobustEvalOptions, RobustReport, Verified, attack_dataset, evaluate,
    evaluate_robustness, saved_evaluation_matches,
};

/// Everything [`run_job`] writes into a run directory besides `config.toml`: what a caller must
/// not point another output at, and what marks a directory as a run's.
pub const RUN_OUTPUTS: &[&str] = &[
    "metrics.jsonl",
    "report.md",
    "report.json",
    "accuracy.svg",
    "loss.svg",
    "model.safetensors",
    "model.bpk",
    "best.bpk",
    FINAL_PGD_STATE,
    Checkpoint::DIR,
    Checkpoint::OLD,
    Checkpoint::TMP,
    "eval",
    RunLock::FILE,
];

/// Options of [`run_job`] besides the configuration.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Run directory (created if needed).
    pub run_dir: PathBuf,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Draw progress bars.
    pub progress: bool,
    /// Where to get the dataset.
    pub fetch: FetchOptions,
    /// Name of the backend, for the report.
    pub backend: String,
    /// The command line, for the report.
    pub command: String,
    /// See [`FitOptions::stop_after_epoch`].
    pub stop_after_epoch: Option<usize>,
    /// Also measure the final model's accuracy on the training images (inference mode).
    pub evaluate_train: bool,
}

impl JobOptions {
    /// Options for a run in `run_dir` with everything else at its default (progress bars on,
    /// dataset from the environment's fetch settings, no extra evaluations).
    pub fn new(run_dir: PathBuf) -> Self {
        Self {
            run_dir,
            resume: false,
            progress: true,
            fetch: FetchOptions::from_env(),
            backend: String::new(),
            command: String::new(),
            stop_after_epoch: None,
            evaluate_train: false,
        }
    }
}

/// What [`run_job`] produced.
#[derive(Debug)]
pub struct JobOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Clean test-set result of the final model (`None` when training stopped early).
    pub test: Option<EvalResult>,
    /// Per-epoch metrics.
    pub history: Vec<EpochMetrics>,
    /// Best validation epoch and accuracy.
    pub best: Option<(usize, f64)>,
    /// `report.md`.
    pub report: PathBuf,
    /// `model.safetensors` (PyTorch layout).
    pub weights: PathBuf,
    /// Whether training stopped early because of `stop_after_epoch`.
    pub stopped_early: bool,
    /// Why training ended before its last epoch (early stopping, overfitting guard).
    pub stopped: Option<StopReason>,
    /// Accuracy on the training images, when asked for.
    pub train_eval: Option<EvalResult>,
    /// PGD-with-restarts test accuracy (`final_eval.pgd_steps`).
    pub robust_test: Option<AttackSummary>,
    /// The evaluator's result (`final_eval.preset`); its report is in `<run_dir>/eval/`.
    pub robust_eval: Option<RobustReport>,
}

/// The images of a job that trains a user's network on the user's data
/// ([`run_network_job`]).
#[derive(Debug, Clone)]
pub struct JobData {
    /// The training images; `cfg.valid_size` of them are split off for validation.
    pub train: ImageDataset,
    /// The test images, for the final evaluations.
    pub test: ImageDataset,
    /// Where the images came from, for the report.
    pub source: String,
}

/// Runs the job end to end for the zoo model and the dataset `cfg` names; the report is written
/// only when training completed all epochs.
pub fn run_job(
    cfg: &TrainConfig,
    devices: &DeviceSet,
    opts: &JobOptions,
) -> Result<JobOutcome, TrainError> {
    cfg.validate()?;
    run_job_inner(cfg, &zoo_builder(cfg), None, devices, opts)
}

/// Runs the job end to end for a user's network (`build`, as in [`crate::fit_network`]) on the
/// user's images: the same split, training, test evaluation, final robust evaluations, exports
/// (`model.bpk`; `model.safetensors` with the keys of [`Network::state_dict_key`]) and report as
/// [`run_job`]. `cfg.model` and `cfg.dataset` are the names the report gives them.
pub fn run_network_job<M: Network>(
    cfg: &TrainConfig,
    build: &dyn Fn(&Device) -> M,
    data: JobData,
    devices: &DeviceSet,
    opts: &JobOptions,
) -> Result<JobOutcome, TrainError> {
    cfg.check_user_network()?;
    run_job_inner(cfg, build, Some(data), devices, opts)
}

fn run_job_inner<M: Network>(
    cfg: &TrainConfig,
    build: &dyn Fn(&Device) -> M,
    data: Option<JobData>,
    devices: &DeviceSet,
    opts: &JobOptions,
) -> Result<JobOutcome, TrainError> {
    let fit_opts = FitOptions {
        run_dir: opts.run_dir.clone(),
        resume: opts.resume,
        progress: opts.progress,
        stop_after_epoch: opts.stop_after_epoch,
    };
    check_options(cfg, &fit_opts)?;
    // One writer per run directory, for the whole job (training, evaluations, report); in a
    // data-parallel group, rank 0 (the other ranks write nothing).
    let writes = devices.writes();
    let _lock = if writes {
        Some(RunLock::acquire(&opts.run_dir)?)
    } else {
        None
    };
    // Before anything is fetched or written (config.toml included).
    if !opts.resume && writes {
        Checkpoint::refuse_existing(&opts.run_dir, TRAIN_COMMAND)?;
        // A report without a checkpoint is another kind of output (an evaluation's, or a run
        // whose checkpoint was removed): a fresh run would replace it.
        if let Some(path) = ["report.md", "report.json"]
            .map(|f| opts.run_dir.join(f))
            .into_iter()
            .find(|p| p.exists())
        {
            return Err(TrainError::Occupied {
                path,
                holds: "the report of an earlier run or evaluation".into(),
            });
        }
    }
    let JobData {
        train: mut train_all,
        mut test,
        source: data_source,
    } = match data {
        Some(data) => data,
        None => {
            let (data_dir, train, test) = load_dataset(&cfg.dataset, &opts.fetch)?;
            check_input_shape(&cfg.model, &train, &cfg.dataset)?;
            let source = match &opts.fetch.data_dir {
                Some(named) if named != &data_dir => format!(
                    "{} (verified copy in {})",
                    named.display(),
                    data_dir.display()
                ),
                _ => data_dir.display().to_string(),
            };
            JobData {
                train,
                test,
                source,
            }
        }
    };
    if let Some(n) = cfg.train_limit {
        train_all = train_all.take(n);
    }
    if let Some(n) = cfg.test_limit {
        test = test.take(n);
    }
    if cfg.valid_size >= train_all.len() {
        return Err(TrainError::Config(format!(
            "valid_size {} leaves no training images out of {}",
            cfg.valid_size,
            train_all.len()
        )));
    }
    let (train, valid) = train_all.split(cfg.valid_size, cfg.seed)?;
    if writes {
        std::fs::create_dir_all(&opts.run_dir).map_err(TrainError::io(&opts.run_dir))?;
    }
    let config_file = opts.run_dir.join("config.toml");
    // On resume the run's own config.toml stays as it is (fit checks it against the checkpoint;
    // a refused resume must not have replaced it). A file that already describes this
    // configuration is left alone too, comments and layout included: it may be the very file
    // the configuration was read from.
    let describes_cfg =
        TrainConfig::from_toml_file(&config_file).is_ok_and(|c| c.to_toml() == cfg.to_toml());
    if writes && !opts.resume && !describes_cfg {
        write_atomic(&config_file, cfg.to_toml().as_bytes())?;
    }
    tracing::info!(
        "training {} on {} ({} train / {} valid / {} test images) into {}",
        cfg.model,
        cfg.dataset,
        train.len(),
        valid.len(),
        test.len(),
        opts.run_dir.display()
    );

    let started = Instant::now();
    let outcome = fit_locked(cfg, build, &train, &valid, devices, &fit_opts)?;
    tracing::debug!("fit took {:.1}s", started.elapsed().as_secs_f64());
    if let Some(group) = devices.collective() {
        // Training is over on every rank: the others exit, rank 0 evaluates and reports alone.
        group.finish()?;
    }
    let stopped_early = !outcome.finished;
    let weights = opts.run_dir.join("model.safetensors");
    let report = opts.run_dir.join("report.md");
    if stopped_early || !writes {
        return Ok(JobOutcome {
            run_dir: opts.run_dir.clone(),
            test: None,
            history: outcome.history,
            best: outcome.best,
            report,
            weights,
            stopped_early,
            stopped: outcome.stopped,
            train_eval: None,
            robust_test: None,
            robust_eval: None,
        });
    }
    let device = devices.main().clone().inner();
    let classifier = outcome.model.classifier();
    let test_result = evaluate(&classifier, &test, cfg.eval_batch_size, &device);
    let train_eval = opts
        .evaluate_train
        .then(|| evaluate(&classifier, &train, cfg.eval_batch_size, &device));
    torch::save_safetensors(&outcome.model, &weights)?;
    let (robust_test, robust_eval) =
        final_evaluation(cfg, &outcome.model, &test, &weights, opts, &device)?;
    // Exact zeros per weight, for runs whose regularizers make them (L1-type penalties, prox-l1).
    let sparsity = if cfg.penalties.iter().any(|p| {
        matches!(
            p.kind,
            PenaltyKind::L1 | PenaltyKind::ElasticNet { .. } | PenaltyKind::GroupLasso
        )
    }) || cfg
        .constraints
        .iter()
        .any(|c| matches!(c.kind, ConstraintKind::ProxL1 { .. }))
    {
        Some(sparsity(&outcome.model, &ParamSelection::weights())?)
    } else {
        None
    };
    save_bpk_atomic(&outcome.model, &opts.run_dir.join("model.bpk"))?;
    let report = write_report(
        &opts.run_dir,
        &ReportInputs {
            command: opts.command.clone(),
            bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
            backend: opts.backend.clone(),
            data_source,
            config: cfg.clone(),
            history: outcome.history.clone(),
            best: outcome.best,
            test: test_result.clone(),
            n_train: train.len(),
            n_valid: valid.len(),
            train_seconds: outcome.history.iter().map(|m| m.seconds).sum(),
            resumed_from: outcome.resumed_from,
            stopped: outcome.stopped.clone(),
            robust_test: robust_test.clone(),
            robust_eval: robust_eval.clone(),
            sparsity,
        },
    )?;
    Ok(JobOutcome {
        run_dir: opts.run_dir.clone(),
        test: Some(test_result),
        history: outcome.history,
        best: outcome.best,
        report,
        weights,
        stopped_early,
        stopped: outcome.stopped,
        train_eval,
        robust_test,
        robust_eval,
    })
}

/// The final PGD evaluation's finished batches, in the run directory: a job killed during that
/// evaluation resumes it from there (the evaluator's preset keeps its own state in `eval/`).
pub const FINAL_PGD_STATE: &str = "final-pgd-state.json";

/// What the final evaluation's saved state is keyed on besides its own settings: the evaluated
/// weights' content and where they run, not the configuration's text, so that a setting added
/// to the configuration does not by itself invalidate a saved evaluation (a new Bulwark version
/// number does: the evaluation's key names it).
fn eval_identity(cfg: &TrainConfig, weights: &Path, backend: &str) -> Result<String, TrainError> {
    Ok(format!(
        "{}|{}|{}|{backend}",
        cfg.model,
        cfg.dataset,
        bulwark_data::sha256_file(weights)?
    ))
}

/// Whether the final evaluation resumes the state a killed job left in `dir` (`eval/`). A state
/// of another evaluation (other weights, settings, backend or Bulwark version) is removed with a
/// warning, with the report beside it, and the evaluation starts over, as the final PGD does with
/// its batches: the directory is the job's own.
fn resume_final_eval(
    dir: &Path,
    rc: &RobustEvalConfig,
    identity: &str,
    data: &ImageDataset,
) -> Result<bool, TrainError> {
    match saved_evaluation_matches(dir, rc, identity, data) {
        None => Ok(false),
        Some(true) => Ok(true),
        Some(false) => {
            tracing::warn!(
                "{}: a saved evaluation of other weights, settings, backend or Bulwark version; \
                 starting it over",
                dir.display()
            );
            let state = dir.join("eval-state");
            std::fs::remove_dir_all(&state).map_err(TrainError::io(&state))?;
            for name in ["report.json", "report.md"] {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::remove_file(&path).map_err(TrainError::io(&path))?;
                }
            }
            Ok(false)
        }
    }
}

/// The configured robust evaluations of the final model (`final_eval`): PGD with restarts, and
/// the evaluator's preset into `<run_dir>/eval/` (resumed when a killed job left its state).
fn final_evaluation<M: Network>(
    cfg: &TrainConfig,
    model: &M,
    test: &ImageDataset,
    weights: &Path,
    opts: &JobOptions,
    device: &Device,
) -> Result<(Option<AttackSummary>, Option<RobustReport>), TrainError> {
    let fe = &cfg.final_eval;
    let Some(eps) = cfg.final_eps().filter(|_| fe.is_on()) else {
        return Ok((None, None));
    };
    let data = match fe.limit {
        Some(n) => test.take(n),
        None => test.clone(),
    };
    let identity = eval_identity(cfg, weights, &opts.backend)?;
    let robust_test = if fe.pgd_steps > 0 {
        let attack = AttackConfig::Pgd(
            PgdConfig::new(ThreatModel::new(cfg.norm, eps))
                .with_steps(fe.pgd_steps)
                .with_options(
                    AttackOptions::new()
                        .with_random_start(true)
                        .with_restarts(fe.pgd_restarts)
                        .with_early_stop(true)
                        .with_seed(cfg.seed),
                ),
        );
        tracing::info!(
            "PGD-{} with {} restart(s) at eps {eps} on {} test images",
            fe.pgd_steps,
            fe.pgd_restarts,
            data.len()
        );
        Some(attack_dataset(
            &model.classifier(),
            &data,
            &attack,
            &AttackRunOptions {
                batch_size: cfg.eval_batch_size,
                progress: opts.progress,
                examples: 0,
                // A killed job's rerun skips the batches already attacked.
                state: Some(AttackState {
                    path: opts.run_dir.join(FINAL_PGD_STATE),
                    identity: identity.clone(),
                }),
            },
            device,
        )?)
    } else {
        None
    };
    let robust_eval = match fe.preset {
        Some(preset) => {
            let mut rc = RobustEvalConfig::preset(preset, cfg.norm, eps, cfg.seed);
            rc.eps_sweep = fe.eps_sweep.clone();
            let dir = opts.run_dir.join("eval");
            tracing::info!(
                "evaluator preset `{preset:?}` at eps {eps} on {} test images into {}",
                data.len(),
                dir.display()
            );
            let resume = resume_final_eval(&dir, &rc, &identity, &data)?;
            let report = evaluate_robustness(
                &model.classifier(),
                &data,
                &rc,
                &RobustEvalOptions {
                    progress: opts.progress,
                    resume,
                    identity,
                    examples: 16,
                    // PGD's breaks join the headline's per-sample worst case.
                    others: robust_test
                        .iter()
                        .map(|pgd| OtherAttack {
                            name: pgd.label(),
                            robust: pgd.robust_per_sample.clone(),
                        })
                        .collect(),
                    report: Some(EvalContext {
                        model: cfg.model.clone(),
                        weights: weights.to_path_buf(),
                        dataset: format!("{}/test", cfg.dataset),
                        backend: opts.backend.clone(),
                        bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
                    }),
                    // Certified robustness beside the attacks, for networks IBP bounds.
                    verified: (cfg.norm == Norm::Linf)
                        .then(|| {
                            Verified::ibp(model, &data, eps, rc.bounds, cfg.eval_batch_size, device)
                        })
                        .flatten(),
                },
                &dir,
                device,
            )?;
            Some(report)
        }
        None => None,
    };
    Ok((robust_test, robust_eval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_evaluation_is_keyed_on_the_weights_not_the_configuration_text() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"weights a").unwrap();
        std::fs::write(&b, b"weights b").unwrap();
        let cfg = TrainConfig::new();
        let id = eval_identity(&cfg, &a, "flex").unwrap();
        // The configuration's text does not enter the key (the weights it trained do): a new
        // setting's line changes the text only. Other weights, backend or model change it.
        let later = cfg.clone().with_eps_ramp_start_epochs(0.5);
        assert_ne!(later.to_toml(), cfg.to_toml());
        assert_eq!(eval_identity(&later, &a, "flex").unwrap(), id);
        assert_ne!(eval_identity(&cfg, &b, "flex").unwrap(), id);
        assert_ne!(eval_identity(&cfg, &a, "ndarray").unwrap(), id);
        assert_ne!(
            eval_identity(&cfg.with_model("mlp".into()), &a, "flex").unwrap(),
            id
        );
        assert!(eval_identity(&TrainConfig::new(), &dir.path().join("none"), "flex").is_err());
    }

    #[test]
    fn a_saved_final_evaluation_of_something_else_is_started_over() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
        let data = bulwark_data::load_split(
            bulwark_data::DatasetKind::Mnist,
            bulwark_data::Split::Test,
            fixtures.as_ref(),
        )
        .unwrap()
        .take(4);
        let rc = RobustEvalConfig::preset(bulwark_attack_core::Preset::Quick, Norm::Linf, 0.1, 0);
        let dir = tempfile::tempdir().unwrap();
        let eval = dir.path().join("eval");
        // Nothing saved: a fresh evaluation.
        assert!(!resume_final_eval(&eval, &rc, "id", &data).unwrap());
        // A state keyed on something else (as an earlier version's key is), and its report.
        std::fs::create_dir_all(eval.join("eval-state")).unwrap();
        std::fs::write(eval.join("eval-state/fingerprint"), "another").unwrap();
        std::fs::write(eval.join("eval-state/chunk-00000.json"), "{}").unwrap();
        std::fs::write(eval.join("report.json"), "{}").unwrap();
        std::fs::write(eval.join("examples.png"), "kept").unwrap();
        assert!(!resume_final_eval(&eval, &rc, "id", &data).unwrap());
        assert!(!eval.join("eval-state").exists() && !eval.join("report.json").exists());
        assert!(eval.join("examples.png").exists());
    }
}
