//! The text training loop: the image loop's seeding, optimizer, schedule, regularizers, stopping
//! rules and atomic checkpoints, over word-id batches and the embedding-space methods.

use std::path::Path;
use std::time::Instant;

use bulwark_attack_core::rng::{SplitMix64, sample_seed};
use bulwark_data::text::TextDataset;
use bulwark_eval::{RunLock, write_atomic};
use bulwark_models::{TextCnn, init_seeded_with, with_seeded_device};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use super::config::TextTrainConfig;
use super::data::TextData;
use super::method::TextMethod;
use super::robust::{EmbeddingAttack, attack_embeddings, attacked_accuracy, text_accuracy};
use crate::checkpoint::{FORMAT, load_optimizer, write_bpk_atomic};
use crate::fit::{DROPOUT_STREAM, batch_seed, check_options, hits, progress_bar, stop_rule};
use crate::regularize::{Regularizers, Targets};
use crate::{
    Checkpoint, CheckpointState, EpochMetrics, FitOptions, Keep, StopReason, TrainError,
    build_optimizer, metrics,
};

/// The model name text checkpoints carry.
pub const TEXT_MODEL: &str = "text-cnn";

/// What [`fit_text`] returns.
#[derive(Debug)]
pub struct TextFitOutcome {
    /// The model the run ends with (inference mode): the best validation epoch's weights, or the
    /// last epoch's with `keep = "last"`.
    pub model: TextCnn,
    /// Metrics of every epoch, those before a resume included.
    pub history: Vec<EpochMetrics>,
    /// Epoch (from 1) and value of the best validation metric (robust accuracy for adversarial
    /// methods, else clean accuracy).
    pub best: Option<(usize, f64)>,
    /// The epoch the run resumed after, if it resumed.
    pub resumed_from: Option<usize>,
    /// Why training stopped before `epochs`, if it did.
    pub stopped: Option<StopReason>,
    /// Whether the run is complete (all epochs, or stopped by a rule).
    pub finished: bool,
}

/// Where a step is: its epoch and batch (from 0), learning rate and seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub(crate) epoch: usize,
    pub(crate) batch: usize,
    pub(crate) lr: f64,
    pub(crate) seed: u64,
}

/// Sums over one epoch's batches.
#[derive(Default)]
pub(crate) struct Sums {
    seen: usize,
    loss: f64,
    clean_correct: usize,
    adv_correct: usize,
    adv_loss: f64,
    adv_seen: usize,
    penalty: f64,
}

/// Trains a [`TextCnn`] on `data` as `cfg` says, writing `config.toml`, `vocab.json`,
/// `metrics.jsonl`, `checkpoint/`, `best.bpk` and (at the end) `model.bpk`, the weights the run
/// ends with, into `opts.run_dir`; with `opts.resume` it
/// continues from the checkpoint there, exactly as an uninterrupted run.
pub fn fit_text(
    cfg: &TextTrainConfig,
    data: &TextData,
    device: &Device,
    opts: &FitOptions,
) -> Result<TextFitOutcome, TrainError> {
    cfg.validate()?;
    let shared = cfg.shared();
    check_options(&shared, opts)?;
    if data.train.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    if data.train.seq_len != cfg.seq_len {
        return Err(TrainError::Config(format!(
            "the data's sequences have {} ids, the configuration says seq_len = {}",
            data.train.seq_len, cfg.seq_len
        )));
    }
    std::fs::create_dir_all(&opts.run_dir).map_err(TrainError::io(&opts.run_dir))?;
    let _lock = RunLock::acquire(&opts.run_dir)?;
    let vocab_path = opts.run_dir.join("vocab.json");
    if !opts.resume {
        Checkpoint::refuse_existing(&opts.run_dir)?;
        // A resumed run keeps the files it started with: a refused resume changes nothing.
        write_atomic(&opts.run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
        data.vocab.save(&vocab_path)?;
    }

    let ad_device = device.clone().autodiff();
    let vocab_size = data.vocab.len();
    let build = |d: &Device| cfg.model_config(vocab_size).init(d);
    let mut model = init_seeded_with(&ad_device, cfg.seed, build);
    let mut regs = Regularizers::new(&shared, 2);
    regs.check(&model)?;
    let mut optim = build_optimizer(&shared);
    let mut history = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut best_model: Option<TextCnn> = None;
    let mut stopped = None;
    let mut resumed_from = None;
    if opts.resume {
        let dir = Checkpoint::find(&opts.run_dir)
            .ok_or_else(|| Checkpoint::nothing_to_resume(&opts.run_dir))?;
        let state = Checkpoint::read_state(&dir)?;
        let refuse = |reason: String| TrainError::Checkpoint {
            path: dir.clone(),
            reason,
        };
        if state.model != TEXT_MODEL {
            return Err(refuse(format!(
                "it holds model `{}`, but this run trains `{TEXT_MODEL}`",
                state.model
            )));
        }
        if state.config_toml != cfg.to_toml() {
            return Err(refuse(
                "it was written with a different configuration; resume with the run's own \
                 config.toml"
                    .into(),
            ));
        }
        if opts.stop_after_epoch.is_some_and(|s| s <= state.epoch) {
            return Err(refuse(format!(
                "stop_after_epoch is {}, but the run has already completed {} epoch(s)",
                opts.stop_after_epoch.unwrap_or_default(),
                state.epoch
            )));
        }
        if bulwark_data::text::Vocabulary::load(&vocab_path)? != data.vocab {
            return Err(refuse(format!(
                "the vocabulary built from the data differs from the run's {}; the corpus changed",
                vocab_path.display()
            )));
        }
        model = load_module(model, &dir.join("model.bpk"))
            .map_err(|e| refuse(format!("model.bpk does not load: {e}")))?;
        optim = load_optimizer(optim, &dir.join("optim.bpk"))
            .map_err(|e| refuse(format!("optim.bpk does not load: {e}")))?;
        if state.best.is_some() {
            let fresh = init_seeded_with(&ad_device, cfg.seed, build);
            best_model = Some(
                load_module(fresh, &dir.join("best.bpk"))
                    .map_err(|e| refuse(format!("best.bpk does not load: {e}")))?,
            );
        }
        regs.restore_spectral(state.spectral_vectors);
        history = state.history;
        best = state.best;
        stopped = state.stopped;
        resumed_from = Some(history.len());
        tracing::info!(epoch = history.len(), "resuming from {}", dir.display());
    }
    let metrics_path = opts.run_dir.join("metrics.jsonl");
    metrics::write_all(&metrics_path, &history)?;

    let last_epoch = opts.stop_after_epoch.unwrap_or(cfg.epochs).min(cfg.epochs);
    while history.len() < last_epoch && stopped.is_none() {
        let epoch = history.len();
        let started = Instant::now();
        let batches =
            bulwark_data::epoch_batches(data.train.len(), cfg.batch_size, true, cfg.seed, epoch);
        let n_batches = batches.len();
        let bar = progress_bar(opts.progress, n_batches, epoch + 1, cfg.epochs);
        let mut sums = Sums::default();
        let mut lr = 0.0;
        for (b, indices) in batches.iter().enumerate() {
            let t = epoch as f64 + (b + 1) as f64 / n_batches as f64;
            lr = cfg.schedule.lr_at(cfg.lr, t, cfg.epochs as f64);
            let seed = batch_seed(cfg.seed, epoch, b);
            let (ids, y) = data.train.batch(indices, device);
            let stepped = with_seeded_device(device, seed ^ DROPOUT_STREAM, || {
                text_step(
                    cfg,
                    model.clone(),
                    &mut optim,
                    &mut regs,
                    (ids, y),
                    Place {
                        epoch,
                        batch: b,
                        lr,
                        seed,
                    },
                    &mut sums,
                    &mut |_| {},
                )
            });
            model = match stepped {
                Ok(m) => m,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            };
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let m = validate(cfg, &model, &data.valid, &sums, epoch, lr, seconds, device)?;
        let metric = m.selection_metric();
        let improved = best.is_none_or(|(_, v)| metric > v);
        if improved {
            best = Some((epoch + 1, metric));
            best_model = Some(model.clone());
        } else if let Some((best_epoch, best_metric)) = best {
            stopped = stop_rule(&shared, &history, &m, best_epoch, best_metric);
            if let (Some(StopReason::CatastrophicOverfitting { .. }), Some(b)) =
                (&stopped, &best_model)
            {
                model = b.clone();
            }
            if let Some(reason) = &stopped {
                tracing::warn!("{reason}");
            }
        }
        history.push(m.clone());
        let state = CheckpointState {
            format: FORMAT,
            epoch: epoch + 1,
            model: TEXT_MODEL.into(),
            config_toml: cfg.to_toml(),
            history: history.clone(),
            best,
            stopped: stopped.clone(),
            spectral_vectors: regs.spectral_state(),
        };
        Checkpoint::save_module(&opts.run_dir, &model, &optim, &state, best_model.as_ref())?;
        if improved {
            write_bpk_atomic(&model, &opts.run_dir.join("best.bpk"))?;
        }
        metrics::append(&metrics_path, &m)?;
    }
    let finished = stopped.is_some() || history.len() >= cfg.epochs;
    let model = match (cfg.keep, best_model) {
        (Keep::Best, Some(b)) => b,
        _ => model,
    };
    // The weights the run ends with, for evaluation (`bulwark text eval`).
    write_bpk_atomic(&model, &opts.run_dir.join("model.bpk"))?;
    Ok(TextFitOutcome {
        model: model.valid(),
        history,
        best,
        resumed_from,
        stopped,
        finished,
    })
}

/// Loads burnpack weights into a freshly built module.
pub fn load_module<M: Module>(model: M, path: &Path) -> Result<M, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| e.to_string())?;
    model.try_load_record(record).map_err(|e| e.to_string())
}

/// Per-sample L2 norms `[B, 1, 1]` of `[B, L, E]`.
fn norms(t: &Tensor<3>) -> Tensor<3> {
    t.clone().powf_scalar(2.0).sum_dim(2).sum_dim(1).sqrt()
}

/// FreeLB's start: per text, `U(−σ, σ)` in every coordinate divided by `√(L·E)`, drawn from the
/// seed and the text's own ids (so a text's start does not depend on its batch), then in the ball.
fn freelb_start(
    ids: &Tensor<2, Int>,
    dims: [usize; 3],
    init_mag: f64,
    eps: f64,
    seed: u64,
    device: &Device,
) -> Tensor<3> {
    let [b, l, e] = dims;
    if init_mag == 0.0 {
        return Tensor::zeros(dims, device);
    }
    let rows: Vec<f32> = ids
        .to_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("ids are integers")
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let scale = init_mag / ((l * e) as f64).sqrt();
    let mut values = Vec::with_capacity(b * l * e);
    for row in rows.chunks(l) {
        let mut rng = SplitMix64::new(sample_seed(seed, 0, row));
        values.extend((0..l * e).map(|_| ((2.0 * rng.uniform() - 1.0) * scale) as f32));
    }
    project(
        Tensor::from_data(TensorData::new(values, dims), device),
        eps,
    )
}

/// Scales each sample's `δ` into the L2 ball of radius `eps`.
fn project(delta: Tensor<3>, eps: f64) -> Tensor<3> {
    let n = norms(&delta);
    let factor = (n.clamp_min(1e-12).recip() * eps).clamp_max(1.0);
    delta * factor
}

/// One optimizer step on one batch with the configured method. `on_delta` sees every
/// perturbation the step trains on (`[B, L, E]`, plain), for tests.
#[allow(clippy::too_many_arguments)]
pub(crate) fn text_step(
    cfg: &TextTrainConfig,
    model: TextCnn,
    optim: &mut ModuleOptimizer,
    regs: &mut Regularizers,
    (ids, y): (Tensor<2, Int>, Tensor<1, Int>),
    place: Place,
    sums: &mut Sums,
    on_delta: &mut dyn FnMut(&Tensor<3>),
) -> Result<TextCnn, TrainError> {
    let Place { lr, seed, .. } = place;
    let n = y.dims()[0];
    let targets = regs.targets(y.clone())?;
    let plain_targets = Targets {
        hard: y.clone(),
        soft: None,
    };
    // Mixup (text runs take no CutMix) mixes the embeddings every loss sees, clean and
    // perturbed alike, with the batch's draw; perturbations are crafted on the unmixed texts.
    let draw = regs.draw(n, 1, 1, seed);
    let mix_in = |e: Tensor<3>| -> Result<(Tensor<3>, Targets), TrainError> {
        match &draw {
            Some(d) => d.mixup(e, &targets)?.ok_or_else(|| {
                TrainError::Config("cutmix cuts boxes out of images; text runs take mixup".into())
            }),
            None => Ok((e, targets.clone())),
        }
    };
    let diverged = |value: f32| TrainError::Diverged {
        during: "training",
        epoch: place.epoch + 1,
        batch: place.batch + 1,
        value,
    };
    let grads = match cfg.method {
        TextMethod::Freelb {
            eps,
            steps,
            step_size,
            init_mag,
        } => {
            let e_dims = [n, cfg.seq_len, cfg.embed_dim];
            let mut delta = freelb_start(&ids, e_dims, init_mag, eps, seed, &ids.device());
            let mut accum = GradientsAccumulator::<TextCnn>::new();
            for t in 0..steps {
                on_delta(&delta);
                let leaf = delta.clone().autodiff().require_grad();
                let (input, t_targets) = mix_in(model.embed(ids.clone()) + leaf.clone())?;
                let logits = model.forward_embedded(input);
                let mut loss = t_targets.cross_entropy(logits.clone()) / steps as f64;
                if t == 0
                    && let Some(p) = regs.penalty(&model)?
                {
                    sums.penalty += f64::from(p.clone().inner().into_scalar::<f32>()) * n as f64;
                    loss = loss + p;
                }
                let value = loss.clone().inner().into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(diverged(value));
                }
                sums.loss += f64::from(value) * n as f64;
                if draw.is_none() {
                    let adv = logits.inner();
                    sums.adv_loss += f64::from(
                        plain_targets
                            .cross_entropy(adv.clone())
                            .into_scalar::<f32>(),
                    ) * n as f64
                        / steps as f64;
                    if t + 1 == steps {
                        sums.adv_correct += hits(adv, y.clone());
                        sums.adv_seen += n;
                    }
                }
                let mut grads = loss.backward();
                let g = leaf.grad_remove(&mut grads);
                accum.accumulate(&model, GradientsParams::from_grads(grads, &model));
                if let Some(g) = g {
                    let step = g.clone() * (norms(&g).clamp_min(1e-12).recip() * step_size);
                    delta = project(delta + step, eps);
                }
            }
            accum.grads()
        }
        TextMethod::Standard => {
            let (input, targets) = mix_in(model.embed(ids.clone()))?;
            let logits = model.forward_embedded(input);
            let mut loss = targets.cross_entropy(logits.clone());
            if let Some(p) = regs.penalty(&model)? {
                sums.penalty += f64::from(p.clone().inner().into_scalar::<f32>()) * n as f64;
                loss = loss + p;
            }
            let value = loss.clone().inner().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(diverged(value));
            }
            sums.loss += f64::from(value) * n as f64;
            if draw.is_none() {
                sums.clean_correct += hits(logits.inner(), y.clone());
            }
            GradientsParams::from_grads(loss.backward(), &model)
        }
        TextMethod::Fgm { eps } | TextMethod::Pgd { eps, .. } => {
            let attack = match cfg.method {
                TextMethod::Pgd {
                    steps, step_size, ..
                } => EmbeddingAttack::Pgd {
                    steps,
                    restarts: 1,
                    step_size,
                },
                _ => EmbeddingAttack::Fgm,
            };
            let plain = model.valid();
            let e0 = plain.embed(ids.clone());
            let adv = attack_embeddings(&plain, e0.clone(), y.clone(), eps, attack, seed, false)?;
            let delta = adv - e0;
            on_delta(&delta);
            let e = model.embed(ids.clone());
            let (clean_in, mixed) = mix_in(e.clone())?;
            let (adv_in, _) = mix_in(e + delta.autodiff())?;
            let clean = model.forward_embedded(clean_in);
            let adv_logits = model.forward_embedded(adv_in);
            let w = cfg.adv_weight;
            let mut loss = mixed.cross_entropy(clean.clone()) * (1.0 - w)
                + mixed.cross_entropy(adv_logits.clone()) * w;
            if let Some(p) = regs.penalty(&model)? {
                sums.penalty += f64::from(p.clone().inner().into_scalar::<f32>()) * n as f64;
                loss = loss + p;
            }
            let value = loss.clone().inner().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(diverged(value));
            }
            sums.loss += f64::from(value) * n as f64;
            if draw.is_none() {
                sums.clean_correct += hits(clean.inner(), y.clone());
                let adv = adv_logits.inner();
                sums.adv_loss += f64::from(
                    plain_targets
                        .cross_entropy(adv.clone())
                        .into_scalar::<f32>(),
                ) * n as f64;
                sums.adv_correct += hits(adv, y.clone());
                sums.adv_seen += n;
            }
            GradientsParams::from_grads(loss.backward(), &model)
        }
    };
    if draw.is_some() || matches!(cfg.method, TextMethod::Freelb { .. }) {
        // No unmixed clean forward in the objective: clean accuracy from the model it stepped
        // from, in inference behaviour.
        sums.clean_correct += hits(model.valid().forward(ids), y);
    }
    sums.seen += n;
    let stepped = optim.step(lr, model, grads);
    regs.after_step(stepped, lr)
}

/// Clean validation and, for adversarial methods, robust (PGD-L2, `eval.valid_steps`) and FGM
/// validation at the first evaluation radius; the epoch's metrics.
#[allow(clippy::too_many_arguments)]
fn validate(
    cfg: &TextTrainConfig,
    model: &TextCnn,
    valid: &TextDataset,
    sums: &Sums,
    epoch: usize,
    lr: f64,
    seconds: f64,
    device: &Device,
) -> Result<EpochMetrics, TrainError> {
    let (valid_acc, valid_loss) = text_accuracy(model, valid, cfg.eval_batch_size, device);
    if !valid_loss.is_finite() {
        return Err(TrainError::Diverged {
            during: "validation",
            epoch: epoch + 1,
            batch: 0,
            value: valid_loss as f32,
        });
    }
    let eps = cfg.eval.eps[0];
    let share =
        |held: Vec<bool>| held.iter().filter(|&&h| h).count() as f64 / held.len().max(1) as f64;
    let (robust, fgm) = if cfg.method.eps().is_some() {
        let pgd = EmbeddingAttack::Pgd {
            steps: cfg.eval.valid_steps,
            restarts: 1,
            step_size: None,
        };
        (
            Some(share(attacked_accuracy(
                model,
                valid,
                eps,
                pgd,
                cfg.eval_batch_size,
                cfg.seed,
                device,
            )?)),
            Some(share(attacked_accuracy(
                model,
                valid,
                eps,
                EmbeddingAttack::Fgm,
                cfg.eval_batch_size,
                cfg.seed,
                device,
            )?)),
        )
    } else {
        (None, None)
    };
    let seen = sums.seen.max(1) as f64;
    let m = EpochMetrics {
        epoch: epoch + 1,
        lr,
        train_loss: sums.loss / seen,
        train_acc: sums.clean_correct as f64 / seen,
        valid_loss,
        valid_acc,
        seconds,
        images_per_sec: sums.seen as f64 / seconds.max(1e-9),
        eps: cfg.method.eps(),
        train_adv_loss: (sums.adv_seen > 0).then(|| sums.adv_loss / sums.adv_seen as f64),
        train_adv_acc: (sums.adv_seen > 0).then(|| sums.adv_correct as f64 / sums.adv_seen as f64),
        penalty: (!cfg.penalties.is_empty()).then(|| sums.penalty / seen),
        input_gradient: None,
        valid_robust_acc: robust,
        valid_fgsm_acc: fgm,
        rss_mib: metrics::resident_mib(),
    };
    tracing::info!(
        "epoch {}/{}: train loss {:.4} acc {:.2}% | valid loss {:.4} acc {:.2}%{} | {:.1}s",
        m.epoch,
        cfg.epochs,
        m.train_loss,
        100.0 * m.train_acc,
        m.valid_loss,
        100.0 * m.valid_acc,
        robust
            .map(|r| format!(" robust {:.2}% (eps {eps})", 100.0 * r))
            .unwrap_or_default(),
        m.seconds
    );
    Ok(m)
}
