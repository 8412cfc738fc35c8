//! The training loop.

use std::path::PathBuf;
use std::time::Instant;

use bulwark_data::{ImageDataset, epoch_batches};
use bulwark_models::Model;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{Checkpoint, CheckpointState, FORMAT, save_bpk_atomic};
use crate::{DeviceSet, EpochMetrics, TrainConfig, TrainError, build_optimizer, evaluate, metrics};

/// How [`fit`] runs, beyond the configuration.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Run directory: `config.toml`, `metrics.jsonl`, `checkpoint/`, `best.bpk` go here.
    pub run_dir: PathBuf,
    /// Continue from the checkpoint in `run_dir` (an error if there is none).
    pub resume: bool,
    /// Draw progress bars on the terminal.
    pub progress: bool,
    /// Stop (cleanly, after checkpointing) once this many epochs are complete: what a kill after
    /// that epoch leaves behind. Used to test resume; `None` trains to `epochs`.
    pub stop_after_epoch: Option<usize>,
}

/// What [`fit`] returns.
#[derive(Debug)]
pub struct FitOutcome {
    /// The model after the last epoch.
    pub model: Model,
    /// Metrics of every epoch, including those before a resume.
    pub history: Vec<EpochMetrics>,
    /// Epoch (from 1) with the best validation accuracy, and that accuracy.
    pub best: Option<(usize, f64)>,
    /// The epoch the run resumed after, if it resumed.
    pub resumed_from: Option<usize>,
}

/// Seed for everything random in `epoch` (device RNG), derived from the run seed so that an epoch
/// replays identically after a resume.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Trains `cfg.model` on `train`, validating on `valid` after every epoch and checkpointing
/// atomically into `opts.run_dir`.
///
/// Determinism: weights are drawn from `cfg.seed` ([`Model::init_seeded`]); batch order is a
/// function of `(seed, epoch)`; the device is re-seeded at each epoch start for random layers
/// (dropout). So on the CPU backends a run that is killed and resumed produces the same metrics as
/// one that is not.
pub fn fit(
    cfg: &TrainConfig,
    train: &ImageDataset,
    valid: &ImageDataset,
    devices: &DeviceSet,
    opts: &FitOptions,
) -> Result<FitOutcome, TrainError> {
    cfg.validate()?;
    if train.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    let device = devices.main().clone().inner();
    let ad_device = device.clone().autodiff();
    std::fs::create_dir_all(&opts.run_dir).map_err(TrainError::io(&opts.run_dir))?;
    let metrics_path = opts.run_dir.join("metrics.jsonl");
    if !opts.resume {
        Checkpoint::refuse_existing(&opts.run_dir)?;
    }

    let mut model = Model::init_seeded(&cfg.model, &ad_device, cfg.seed)?;
    let mut optim = build_optimizer(cfg);
    let mut history = Vec::new();
    let mut best = None;
    let mut start_epoch = 0;
    let mut resumed_from = None;

    if opts.resume {
        let dir = Checkpoint::find(&opts.run_dir).ok_or_else(|| TrainError::Checkpoint {
            path: opts.run_dir.join("checkpoint"),
            reason: "nothing to resume: no checkpoint in the run directory".into(),
        })?;
        let (m, o, state) = Checkpoint::load(&dir, model, optim)?;
        if state.config_toml != cfg.to_toml() {
            return Err(TrainError::Checkpoint {
                path: dir,
                reason: "it was written with a different configuration; resume with the run's \
                         own config.toml"
                    .into(),
            });
        }
        (model, optim) = (m, o);
        start_epoch = state.epoch;
        history = state.history;
        best = state.best;
        resumed_from = Some(start_epoch);
        tracing::info!(epoch = start_epoch, "resuming from {}", dir.display());
    }
    // The log always restarts from what the checkpoint knows: a kill after an epoch's metrics
    // were appended but before its checkpoint must not leave a duplicate line.
    metrics::write_all(&metrics_path, &history)?;

    let ce = CrossEntropyLossConfig::new().init(&ad_device);
    let total = cfg.epochs as f64;
    let last_epoch = opts.stop_after_epoch.unwrap_or(cfg.epochs).min(cfg.epochs);
    for epoch in start_epoch..last_epoch {
        // Under the zoo's generator lock: see `bulwark_models::seed_device`.
        bulwark_models::seed_device(&device, epoch_seed(cfg.seed, epoch));
        let batches = epoch_batches(train.len(), cfg.batch_size, true, cfg.seed, epoch);
        let n_batches = batches.len();
        let bar = progress_bar(opts.progress, n_batches, epoch + 1, cfg.epochs);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0f64, 0usize, 0usize, 0f64);
        for (b, indices) in batches.iter().enumerate() {
            lr = cfg
                .schedule
                // Progress at the end of this step, so that warm-up schedules never take a
                // zero-rate first step (as in Wong et al.'s `(i + 1) / n`).
                .lr_at(
                    cfg.lr,
                    epoch as f64 + (b + 1) as f64 / n_batches as f64,
                    total,
                );
            // Autodiff inputs, so that a first-layer BatchNorm/Dropout runs in training mode.
            let (x, y) = train.batch(indices, &ad_device);
            let logits = model.forward(x);
            let loss = ce.forward(logits.clone(), y.clone());
            let loss_value = loss.clone().inner().into_scalar::<f32>();
            if !loss_value.is_finite() {
                bar.abandon();
                return Err(TrainError::Diverged {
                    during: "training",
                    epoch: epoch + 1,
                    batch: b + 1,
                    value: loss_value,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);

            let hits = logits
                .inner()
                .argmax(1)
                .flatten::<1>(0, 1)
                .equal(y.inner())
                .int()
                .sum()
                .into_scalar::<i64>() as usize;
            loss_sum += f64::from(loss_value) * indices.len() as f64;
            correct += hits;
            seen += indices.len();
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4}  acc {:.2}%  {:.0} img/s  lr {:.2e}",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                rate,
                lr
            ));
            bar.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let v = evaluate(&model, valid, cfg.eval_batch_size, &device);
        if !v.loss.is_finite() {
            // The last steps broke the weights; never checkpoint a broken model.
            return Err(TrainError::Diverged {
                during: "validation",
                epoch: epoch + 1,
                batch: n_batches,
                value: v.loss as f32,
            });
        }
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            valid_loss: v.loss,
            valid_acc: v.accuracy,
            seconds,
            images_per_sec: seen as f64 / seconds.max(1e-9),
        };
        tracing::info!(
            "epoch {}/{}: train loss {:.4} acc {:.2}% | valid loss {:.4} acc {:.2}% | {:.1}s, {:.0} img/s",
            m.epoch,
            cfg.epochs,
            m.train_loss,
            100.0 * m.train_acc,
            m.valid_loss,
            100.0 * m.valid_acc,
            m.seconds,
            m.images_per_sec
        );
        if !valid.is_empty() && best.is_none_or(|(_, acc)| v.accuracy > acc) {
            best = Some((epoch + 1, v.accuracy));
            save_bpk_atomic(&model, &opts.run_dir.join("best.bpk"))?;
        }
        history.push(m.clone());
        let state = CheckpointState {
            format: FORMAT,
            epoch: epoch + 1,
            model: cfg.model.clone(),
            config_toml: cfg.to_toml(),
            history: history.clone(),
            best,
        };
        // Checkpoint first, then the log line: the checkpoint is the source of truth on resume.
        Checkpoint::save(&opts.run_dir, &model, &optim, &state)?;
        metrics::append(&metrics_path, &m)?;
    }
    Ok(FitOutcome {
        model: model.valid(),
        history,
        best,
        resumed_from,
    })
}

fn progress_bar(enabled: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}
