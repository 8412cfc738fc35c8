//! The text training loop: the image loop's seeding, optimizer, schedule, regularizers, stopping
//! rules and atomic checkpoints, over word-id batches and the embedding-space methods.

use std::path::Path;
use std::time::Instant;

use bulwark_attack_core::TextNetwork;
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
use crate::checkpoint::{FORMAT, TEXT_COMMAND, load_optimizer, write_bpk_atomic};
use crate::fit::{DROPOUT_STREAM, batch_seed, check_options, hits, progress_bar, stop_rule};
use crate::regularize::{Regularizers, Targets};
use crate::{
    Checkpoint, CheckpointState, EpochMetrics, FitOptions, Keep, StopReason, TrainError,
    build_optimizer, metrics,
};

/// The model name [`fit_text`]'s checkpoints carry ([`TextCnn`]'s
/// [`TextNetwork::architecture`]).
pub const TEXT_MODEL: &str = "text-cnn";

/// What [`fit_text`] and [`fit_text_network`] return.
#[derive(Debug)]
pub struct TextFitOutcome<M = TextCnn> {
    /// The model the run ends with (inference mode): the best validation epoch's weights, or the
    /// last epoch's with `keep = "last"`.
    pub model: M,
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

/// Trains a [`TextCnn`] built from `cfg`'s model keys (`embed_dim`, `filters`,
/// `kernel_sizes`, `dropout`) on `data` as `cfg` says: [`fit_text_network`] with that
/// architecture.
pub fn fit_text(
    cfg: &TextTrainConfig,
    data: &TextData,
    device: &Device,
    opts: &FitOptions,
) -> Result<TextFitOutcome, TrainError> {
    cfg.validate_text_cnn()?;
    let model_cfg = cfg
        .model_config(data.vocab.len())
        .with_num_classes(data.train.num_classes);
    fit_text_network(cfg, &|d: &Device| model_cfg.init(d), data, device, opts)
}

/// Trains any [`TextNetwork`] on `data` as `cfg` says, writing `config.toml`, `vocab.json`,
/// `metrics.jsonl`, `checkpoint/`, `best.bpk` and (at the end) `model.bpk`, the weights the run
/// ends with, into `opts.run_dir`; with `opts.resume` it continues from the checkpoint there,
/// exactly as an uninterrupted run.
///
/// `build` makes the architecture on a device with burn's lazily drawn weights (a
/// `Config::init` call): the weights are drawn from `cfg.seed`, and on resume `build` makes the
/// skeleton the checkpoint loads into. Its ids must be those of `data.vocab`. The checkpoint
/// records the network's [`TextNetwork::architecture`], and a checkpoint of another
/// architecture is refused. Everything else in `cfg` applies as for [`TextCnn`]: the method,
/// penalties and constraints (by the network's own parameter paths), label smoothing, mixup on
/// the embeddings, robust validation, the stopping rules; `cfg`'s model keys configure only
/// [`fit_text`]'s `TextCnn` and are not read here.
///
/// ```
/// use bulwark_attack_core::TextNetwork;
/// use bulwark_data::text::TextCorpus;
/// use bulwark_trainer::FitOptions;
/// use bulwark_trainer::text::{TextData, TextMethod, TextTrainConfig, fit_text_network};
/// use burn::module::Module;
/// use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
/// use burn::prelude::*;
///
/// /// Mean of the word embeddings, then a linear layer.
/// #[derive(Module, Debug)]
/// struct MeanBag {
///     embedding: Embedding,
///     fc: Linear,
/// }
///
/// impl TextNetwork for MeanBag {
///     fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
///         self.embedding.forward(ids)
///     }
///     fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
///         self.fc.forward(embedded.mean_dim(1).squeeze_dim::<2>(1))
///     }
/// }
///
/// // The user's own texts (here a few lines; any labelled corpus works the same way).
/// let mut train = TextCorpus::empty(vec!["ham".into(), "spam".into()]);
/// for (i, (text, label)) in [
///     ("meeting notes attached for tomorrow", 0),
///     ("win a free prize now click here", 1),
///     ("lunch at noon with the team", 0),
///     ("cheap pills free offer click now", 1),
/// ]
/// .into_iter()
/// .cycle()
/// .take(24)
/// .enumerate()
/// {
///     train.push(format!("t{i}"), text.into(), label);
/// }
/// let test = train.clone();
/// let cfg = TextTrainConfig::new()
///     .with_seq_len(8)
///     .with_epochs(2)
///     .with_batch_size(8)
///     .with_valid_size(4)
///     .with_min_count(1)
///     .with_method(TextMethod::Fgm { eps: 0.1 });
/// let data = TextData::from_corpora(&cfg, &train, &test)?;
/// let vocab = data.vocab.len();
/// let build = |d: &Device| MeanBag {
///     embedding: EmbeddingConfig::new(vocab, 8).init(d),
///     fc: LinearConfig::new(8, 2).init(d),
/// };
/// let run_dir = std::env::temp_dir().join(format!("bulwark-doc-meanbag-{}", std::process::id()));
/// let opts = FitOptions { run_dir: run_dir.clone(), resume: false, progress: false, stop_after_epoch: None };
/// let out = fit_text_network(&cfg, &build, &data, &Device::flex(), &opts)?;
/// assert_eq!(out.history.len(), 2);
/// # std::fs::remove_dir_all(run_dir).ok();
/// # Ok::<(), bulwark_trainer::TrainError>(())
/// ```
pub fn fit_text_network<M: TextNetwork>(
    cfg: &TextTrainConfig,
    build: &dyn Fn(&Device) -> M,
    data: &TextData,
    device: &Device,
    opts: &FitOptions,
) -> Result<TextFitOutcome<M>, TrainError> {
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
    let ad_device = device.clone().autodiff();
    let mut model = init_seeded_with(&ad_device, cfg.seed, build);
    let architecture = model.architecture();
    let classes = data.train.num_classes;
    check_shapes(&model, data, classes, device)?;
    // Runs of the CLI's model continue with the CLI; a user's network with its own program.
    let command = if architecture == TEXT_MODEL {
        TEXT_COMMAND
    } else {
        "fit_text_network and FitOptions::resume"
    };
    std::fs::create_dir_all(&opts.run_dir).map_err(TrainError::io(&opts.run_dir))?;
    let _lock = RunLock::acquire(&opts.run_dir)?;
    let vocab_path = opts.run_dir.join("vocab.json");
    if !opts.resume {
        Checkpoint::refuse_existing(&opts.run_dir, command)?;
        // A resumed run keeps the files it started with: a refused resume changes nothing.
        write_atomic(&opts.run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
        data.vocab.save(&vocab_path)?;
    }

    let mut regs = Regularizers::new(&shared, classes);
    regs.check(&model)?;
    let mut optim = build_optimizer(&shared);
    let mut history = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut best_model: Option<M> = None;
    let mut stopped = None;
    let mut resumed_from = None;
    if opts.resume {
        let dir = Checkpoint::find(&opts.run_dir)
            .ok_or_else(|| Checkpoint::nothing_to_resume(&opts.run_dir, command))?;
        let state = Checkpoint::read_state(&dir)?;
        let refuse = |reason: String| TrainError::Checkpoint {
            path: dir.clone(),
            reason,
        };
        if state.model != architecture {
            return Err(refuse(format!(
                "it holds model `{}`, but this run trains `{architecture}`",
                state.model
            )));
        }
        if !cfg.is_described_by(&state.config_toml) {
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
            model: architecture.clone(),
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

/// The network's embeddings keep the sequence length and its logits have one column per class
/// of the data: checked on one text before anything is written.
fn check_shapes<M: TextNetwork>(
    model: &M,
    data: &TextData,
    classes: usize,
    device: &Device,
) -> Result<(), TrainError> {
    let (ids, _) = data.train.batch(&[0], device);
    let plain = model.valid();
    let embedded = plain.embed(ids);
    let [_, l, _] = embedded.dims();
    if l != data.train.seq_len {
        return Err(TrainError::Config(format!(
            "{}'s embeddings have {l} positions for {} word ids: the text methods perturb one \
             embedding per id",
            model.architecture(),
            data.train.seq_len
        )));
    }
    let k = plain.forward_embedded(embedded).dims()[1];
    if k != classes {
        return Err(TrainError::Config(format!(
            "{} gives {k} logits, the data has {classes} classes",
            model.architecture()
        )));
    }
    Ok(())
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

/// The objective a step differentiates: `loss` plus, when `penalize`, the regularizers' penalty
/// on `model`; its value is checked (a non-finite loss ends the run) and added to the epoch's
/// sums.
fn objective<M: Module>(
    mut loss: Tensor<1>,
    penalize: bool,
    regs: &Regularizers,
    model: &M,
    n: usize,
    sums: &mut Sums,
    place: Place,
) -> Result<Tensor<1>, TrainError> {
    if penalize && let Some(p) = regs.penalty(model)? {
        sums.penalty += f64::from(p.clone().inner().into_scalar::<f32>()) * n as f64;
        loss = loss + p;
    }
    let value = loss.clone().inner().into_scalar::<f32>();
    if !value.is_finite() {
        return Err(TrainError::Diverged {
            during: "training",
            epoch: place.epoch + 1,
            batch: place.batch + 1,
            value,
        });
    }
    sums.loss += f64::from(value) * n as f64;
    Ok(loss)
}

/// Adds a perturbed forward pass's loss on the hard labels (weighted by `share`) and, when
/// `count`, its hits to the epoch's adversarial sums.
fn record_adversarial(
    sums: &mut Sums,
    adv: Tensor<2>,
    y: &Tensor<1, Int>,
    share: f64,
    count: bool,
) {
    let n = y.dims()[0];
    let ce = Targets {
        hard: y.clone(),
        soft: None,
    }
    .cross_entropy(adv.clone());
    sums.adv_loss += f64::from(ce.into_scalar::<f32>()) * n as f64 * share;
    if count {
        sums.adv_correct += hits(adv, y.clone());
        sums.adv_seen += n;
    }
}

/// One optimizer step on one batch with the configured method. `on_delta` sees every
/// perturbation the step trains on (`[B, L, E]`, plain), for tests.
#[allow(clippy::too_many_arguments)]
pub(crate) fn text_step<M: TextNetwork>(
    cfg: &TextTrainConfig,
    model: M,
    optim: &mut ModuleOptimizer,
    regs: &mut Regularizers,
    (ids, y): (Tensor<2, Int>, Tensor<1, Int>),
    place: Place,
    sums: &mut Sums,
    on_delta: &mut dyn FnMut(&Tensor<3>),
) -> Result<M, TrainError> {
    let Place { lr, seed, .. } = place;
    let n = y.dims()[0];
    let targets = regs.targets(y.clone())?;
    // Mixup (text runs take no CutMix) mixes the embeddings every loss sees, clean and
    // perturbed alike, with the batch's draw; perturbations are crafted on the unmixed texts.
    // Mixed batches have no per-text hits to count.
    let draw = regs.draw(n, 1, 1, seed);
    let mix_in = |e: Tensor<3>| -> Result<(Tensor<3>, Targets), TrainError> {
        match &draw {
            Some(d) => d.mixup(e, &targets)?.ok_or_else(|| {
                TrainError::Config("cutmix cuts boxes out of images; text runs take mixup".into())
            }),
            None => Ok((e, targets.clone())),
        }
    };
    let grads = match cfg.method {
        TextMethod::Freelb {
            eps,
            steps,
            step_size,
            init_mag,
        } => {
            let e_dims = model.valid().embed(ids.clone()).dims();
            let mut delta = freelb_start(&ids, e_dims, init_mag, eps, seed, &ids.device());
            let mut accum = GradientsAccumulator::<M>::new();
            for t in 0..steps {
                on_delta(&delta);
                let leaf = delta.clone().autodiff().require_grad();
                let (input, t_targets) = mix_in(model.embed(ids.clone()) + leaf.clone())?;
                let logits = model.forward_embedded(input);
                let loss = t_targets.cross_entropy(logits.clone()) / steps as f64;
                let loss = objective(loss, t == 0, regs, &model, n, sums, place)?;
                if draw.is_none() {
                    let last = t + 1 == steps;
                    record_adversarial(sums, logits.inner(), &y, 1.0 / steps as f64, last);
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
            let loss = targets.cross_entropy(logits.clone());
            let loss = objective(loss, true, regs, &model, n, sums, place)?;
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
            let loss = mixed.cross_entropy(clean.clone()) * (1.0 - w)
                + mixed.cross_entropy(adv_logits.clone()) * w;
            let loss = objective(loss, true, regs, &model, n, sums, place)?;
            if draw.is_none() {
                sums.clean_correct += hits(clean.inner(), y.clone());
                record_adversarial(sums, adv_logits.inner(), &y, 1.0, true);
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
fn validate<M: TextNetwork>(
    cfg: &TextTrainConfig,
    model: &M,
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
