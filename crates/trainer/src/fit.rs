//! The training loop.

use std::path::PathBuf;
use std::time::Instant;

use bulwark_attack_core::rng::SplitMix64;
use bulwark_attack_core::{
    Attack, AttackOptions, Bounds, FgsmConfig, Interval, Network, PgdConfig, ThreatModel,
};
use bulwark_data::{ImageDataset, epoch_batches};
use bulwark_models::{Model, init_seeded_with};
use bulwark_reg_core::input_gradient_penalty;
use burn::module::{Flag, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};
use indicatif::ProgressBar;

use crate::adversarial::{AdvSettings, batch_loss, perturbed_weights, prepare};
use crate::checkpoint::{
    Checkpoint, CheckpointState, FORMAT, StopReason, TRAIN_COMMAND, save_bpk_atomic,
};
use crate::collective::{
    Collective, agree_on, average_gradients, broadcast_buffers, check_batches, rank_rows, rank_seed,
};
use crate::regularize::{Regularizers, Targets};
use crate::{
    DeviceSet, EpochMetrics, InputGradientSpec, Keep, Method, TrainConfig, TrainError,
    build_optimizer, metrics,
};
use bulwark_eval::RunLock;
use bulwark_eval::evaluate;
use burn::optim::ModuleOptimizer;

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

/// What [`fit`] and [`fit_network`] return.
#[derive(Debug)]
pub struct FitOutcome<M = Model> {
    /// The model the run ends with (inference mode): the best validation epoch's weights, or
    /// the last epoch's with `keep = "last"`.
    pub model: M,
    /// Metrics of every epoch, including those before a resume.
    pub history: Vec<EpochMetrics>,
    /// Epoch (from 1) with the best validation metric (robust accuracy for adversarial methods,
    /// else clean accuracy), and its value.
    pub best: Option<(usize, f64)>,
    /// The epoch the run resumed after, if it resumed.
    pub resumed_from: Option<usize>,
    /// Why training stopped before `epochs`, if it did.
    pub stopped: Option<StopReason>,
    /// Whether the run is complete (all epochs, or stopped by a rule), as opposed to interrupted
    /// by `stop_after_epoch`.
    pub finished: bool,
}

/// Seed for everything random in `epoch` (device RNG), derived from the run seed so that an epoch
/// replays identically after a resume.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Seed of one batch's random draws (attack starts, TRADES noise, mixing).
pub(crate) fn batch_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    SplitMix64::with_stream(epoch_seed(seed, epoch), batch as u64).next_u64()
}

/// Mixed into a batch's seed for its augmentation draws, so that they are independent of the
/// attack's and the mixing's draws from the same seed.
const AUGMENT_STREAM: u64 = 0x6175_676d_656e_7421;

/// Mixed into a batch's seed for the device generator during its step (dropout).
pub(crate) const DROPOUT_STREAM: u64 = 0x6472_6f70_6f75_7421;

/// Running sums of an epoch's per-batch statistics.
#[derive(Default)]
struct EpochSums {
    seen: usize,
    loss: f64,
    clean_correct: usize,
    clean_seen: usize,
    adv_loss: f64,
    adv_correct: usize,
    adv_seen: usize,
    penalty: f64,
    input_gradient: f64,
}

impl EpochSums {
    /// The group's sums: every rank's statistics added up (the counts of the global batches).
    fn sum_over(&mut self, group: &dyn Collective) -> Result<(), TrainError> {
        let mut v = [
            self.seen as f64,
            self.loss,
            self.clean_correct as f64,
            self.clean_seen as f64,
            self.adv_loss,
            self.adv_correct as f64,
            self.adv_seen as f64,
            self.penalty,
            self.input_gradient,
        ];
        group.sum_f64(&mut v)?;
        // Counts below 2^53 are exact in f64.
        *self = EpochSums {
            seen: v[0] as usize,
            loss: v[1],
            clean_correct: v[2] as usize,
            clean_seen: v[3] as usize,
            adv_loss: v[4],
            adv_correct: v[5] as usize,
            adv_seen: v[6] as usize,
            penalty: v[7],
            input_gradient: v[8],
        };
        Ok(())
    }

    fn message(&self, rate: f64, lr: f64, eps: Option<f64>) -> String {
        let mut m = format!("loss {:.4}", self.loss / self.seen.max(1) as f64);
        if self.clean_seen > 0 {
            let acc = 100.0 * self.clean_correct as f64 / self.clean_seen as f64;
            m.push_str(&format!("  clean acc {acc:.2}%"));
        }
        if self.adv_seen > 0 {
            let n = self.adv_seen as f64;
            m.push_str(&format!(
                "  adv loss {:.4} acc {:.2}%",
                self.adv_loss / n,
                100.0 * self.adv_correct as f64 / n
            ));
        }
        if let Some(eps) = eps {
            m.push_str(&format!("  eps {eps:.3}"));
        }
        m.push_str(&format!("  {rate:.0} img/s  lr {lr:.2e}"));
        m
    }
}

/// `λ ·` the input-gradient penalty of `model` on the clean batch `x` (see
/// [`InputGradientSpec`]), on the parameters' graph, and the penalty's value before λ. The
/// network is taken with its training flags off (BatchNorm on running statistics, dropout off)
/// and its parameters still tracked, so that the penalty's three forward passes compute one
/// function and its gradient reaches the weights.
fn input_gradient_term<M: Network>(
    model: &M,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    spec: &InputGradientSpec,
) -> Result<(Tensor<1>, f64), TrainError> {
    let fixed = model.clone().map(&mut InferenceFlags);
    let per_sample = |xb: Tensor<4>| {
        let logits = fixed.forward(xb);
        let [b, _] = logits.dims();
        let labels = if logits.is_autodiff() {
            y.clone().autodiff()
        } else {
            y.clone()
        };
        -log_softmax(logits, 1)
            .gather(1, labels.reshape([b, 1]))
            .reshape([b])
    };
    let penalty = input_gradient_penalty(per_sample, x, spec.h)?;
    let value = f64::from(penalty.clone().inner().into_scalar::<f32>());
    Ok((penalty * spec.lambda, value))
}

/// Turns every module-owned training flag off (BatchNorm, dropout, DropPath) and leaves the
/// parameters as they are, tracked ones included (`valid()` would also detach them).
struct InferenceFlags;

impl ModuleMapper for InferenceFlags {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

/// Correct predictions of plain `logits` for labels `y`.
pub(crate) fn hits(logits: Tensor<2>, y: Tensor<1, Int>) -> usize {
    logits
        .argmax(1)
        .flatten::<1>(0, 1)
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>() as usize
}

/// The training radius at progress `t` epochs: 0 for `eps_ramp_start_epochs`, then a linear
/// ramp over `eps_warmup_epochs`.
fn eps_at(cfg: &TrainConfig, t: f64) -> Option<f64> {
    let eps = cfg.method.eps()?;
    let t = t - cfg.eps_ramp_start_epochs;
    Some(if t <= 0.0 {
        0.0
    } else if cfg.eps_warmup_epochs > 0.0 {
        eps * (t / cfg.eps_warmup_epochs).min(1.0)
    } else {
        eps
    })
}

/// PGD-`robust_valid_steps` and FGSM accuracy on the first `robust_valid_size` validation images
/// at the full training radius, in inference mode.
fn robust_validation<M: Network>(
    model: &M,
    valid: &ImageDataset,
    cfg: &TrainConfig,
    eps: f64,
    device: &Device,
) -> Result<(f64, f64), TrainError> {
    let n = cfg.robust_valid_size.min(valid.len());
    let threat = ThreatModel::new(cfg.norm, eps);
    let pgd = PgdConfig::new(threat)
        .with_steps(cfg.robust_valid_steps)
        .with_options(
            AttackOptions::new()
                .with_random_start(true)
                .with_seed(cfg.seed),
        )
        .init()?;
    let fgsm = FgsmConfig::new(threat).init()?;
    let eval = model.valid();
    let (mut pgd_ok, mut fgsm_ok) = (0, 0);
    let all: Vec<usize> = (0..n).collect();
    for indices in all.chunks(cfg.eval_batch_size) {
        let (x, y) = valid.batch(indices, device);
        let xa = pgd.perturb(&model.classifier(), x.clone(), y.clone())?;
        pgd_ok += hits(eval.forward(xa), y.clone());
        let xf = fgsm.perturb(&model.classifier(), x, y.clone())?;
        fgsm_ok += hits(eval.forward(xf), y);
    }
    let n = n.max(1) as f64;
    Ok((pgd_ok as f64 / n, fgsm_ok as f64 / n))
}

/// Trains the zoo model `cfg.model` on `train`, validating on `valid` after every epoch and
/// checkpointing atomically into `opts.run_dir`: [`fit_network`] with the zoo's architecture.
///
/// Determinism: weights are drawn from `cfg.seed` ([`Model::init_seeded`]); see [`fit_network`]
/// for the rest.
pub fn fit(
    cfg: &TrainConfig,
    train: &ImageDataset,
    valid: &ImageDataset,
    devices: &DeviceSet,
    opts: &FitOptions,
) -> Result<FitOutcome, TrainError> {
    cfg.validate()?;
    check_options(cfg, opts)?;
    let _lock = writer_lock(devices, opts)?;
    fit_locked(cfg, &zoo_builder(cfg), train, valid, devices, opts)
}

/// The builder of the zoo model `cfg` names, with its architecture options; `cfg` has been
/// validated.
pub(crate) fn zoo_builder(cfg: &TrainConfig) -> impl Fn(&Device) -> Model {
    let (name, options) = (cfg.model.clone(), cfg.arch_options());
    move |device: &Device| {
        Model::build_with(&name, &options, device)
            .expect("the model and its options were validated")
    }
}

/// Trains any [`Network`] on `train`, validating on `valid` after every epoch and checkpointing
/// atomically into `opts.run_dir`.
///
/// `build` makes the architecture on a device, with burn's lazily drawn weights (a `Config::init`
/// call): the weights are then drawn from `cfg.seed` under the zoo's generator lock
/// ([`bulwark_models::init_seeded_with`]), and on resume `build` makes the skeleton the
/// checkpoint loads into. `cfg.model` is the name the checkpoint and the report record; a
/// checkpoint written under another name is refused. Everything else in `cfg` applies as for the
/// zoo: every method, regularizer, constraint and parameter selection (by the network's own
/// parameter paths), AWP, robust validation and the stopping rules.
///
/// The method (standard or adversarial), the regularizers and the stopping rules come from `cfg`.
/// Adversarial methods also measure PGD and FGSM accuracy on `robust_valid_size` validation images
/// after every epoch; the best epoch is chosen on that robust accuracy (clean accuracy for standard
/// training), early stopping (`patience`) and the catastrophic-overfitting guard watch it, and the
/// run ends with the best epoch's weights unless `keep = "last"`.
///
/// Determinism: weights are drawn from `cfg.seed`; batch order, augmentation, attack starts,
/// TRADES noise and mixing draws are functions of `(seed, epoch, batch)`; random layers (dropout)
/// draw from the device's generator seeded from the batch and held by the step (see
/// [`bulwark_models::with_seeded_device`]; concurrent runs in one process take turns at their
/// steps). So on the CPU backends a run that is killed and resumed produces the same metrics as
/// one that is not.
///
/// The run directory is locked for the duration ([`RunLock`]): a second `fit` or
/// [`run_job`](crate::run_job) into it, from this process or another, fails with
/// [`bulwark_eval::EvalError::Busy`] (inside [`TrainError::Eval`]) instead of mixing two runs' files.
pub fn fit_network<M: Network>(
    cfg: &TrainConfig,
    build: &dyn Fn(&Device) -> M,
    train: &ImageDataset,
    valid: &ImageDataset,
    devices: &DeviceSet,
    opts: &FitOptions,
) -> Result<FitOutcome<M>, TrainError> {
    // Checked before the lock, which creates the run directory.
    cfg.check_user_network()?;
    check_options(cfg, opts)?;
    let _lock = writer_lock(devices, opts)?;
    fit_locked(cfg, build, train, valid, devices, opts)
}

/// The run directory's lock, taken by the process that writes it (rank 0 of a data-parallel
/// group; the other ranks write nothing).
fn writer_lock(devices: &DeviceSet, opts: &FitOptions) -> Result<Option<RunLock>, TrainError> {
    Ok(if devices.writes() {
        Some(RunLock::acquire(&opts.run_dir)?)
    } else {
        None
    })
}

/// Options that cannot work, refused before anything is written.
pub(crate) fn check_options(cfg: &TrainConfig, opts: &FitOptions) -> Result<(), TrainError> {
    cfg.validate_training()?;
    if opts.stop_after_epoch == Some(0) {
        return Err(TrainError::Settings {
            what: "run options",
            problem: "stop_after_epoch (--stop-after-epoch) must be at least 1: a run saves its \
                      first checkpoint when epoch 1 ends"
                .into(),
        });
    }
    Ok(())
}

/// [`fit_network`] for a caller that already holds the run directory's [`RunLock`].
pub(crate) fn fit_locked<M: Network>(
    cfg: &TrainConfig,
    build: &dyn Fn(&Device) -> M,
    train: &ImageDataset,
    valid: &ImageDataset,
    devices: &DeviceSet,
    opts: &FitOptions,
) -> Result<FitOutcome<M>, TrainError> {
    check_options(cfg, opts)?;
    if train.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    let device = devices.main().clone().inner();
    let group = devices.collective();
    if let Some(g) = group {
        check_batches(train.len(), cfg.batch_size, g.size())?;
    }
    let writes = devices.writes();
    if writes {
        std::fs::create_dir_all(&opts.run_dir).map_err(TrainError::io(&opts.run_dir))?;
        if !opts.resume {
            Checkpoint::refuse_existing(&opts.run_dir, TRAIN_COMMAND)?;
        }
    }
    let mut run = Run::start(cfg, build, train, opts, &device)?;
    if matches!(cfg.method, Method::Ibp { .. }) {
        check_bounds_itself(&run.model, train, &device)?;
    }
    // The log always restarts from what the checkpoint knows: a kill after an epoch's metrics
    // were appended but before its checkpoint must not leave a duplicate line.
    let metrics_path = opts.run_dir.join("metrics.jsonl");
    if writes {
        metrics::write_all(&metrics_path, &run.history)?;
    }
    let last_epoch = opts.stop_after_epoch.unwrap_or(cfg.epochs).min(cfg.epochs);
    let place = Place {
        group,
        device: &device,
        writes,
    };
    while run.epoch < last_epoch && run.stopped.is_none() {
        let stats;
        (run, stats) = run.train_epoch(cfg, train, opts, &place)?;
        if let Some(g) = group {
            // Every rank validates and decides alike: same weights, same statistics.
            run.model = broadcast_buffers(run.model, g, &device)?;
        }
        let mut m = run.validate(cfg, valid, &stats, &device)?;
        if let Some(g) = group {
            m.agree(g)?;
        }
        run.end_epoch(cfg, valid, m, opts, &metrics_path, writes)?;
    }
    Ok(run.finish(cfg))
}

/// IBP trains only a network that bounds itself ([`Network::margin_bounds`]) and computes in
/// training as in inference (the bounds are those of the inference-mode network: with
/// BatchNorm's batch statistics or dropout the loss would bound another network than the one
/// trained): refused before the first step otherwise.
fn check_bounds_itself<M: Network>(
    model: &M,
    train: &ImageDataset,
    device: &Device,
) -> Result<(), TrainError> {
    let rows: Vec<usize> = (0..train.len().min(16)).collect();
    let (x, y) = train.batch(&rows, device);
    let box0 = Interval::around(x.clone(), 0.0, Bounds::new());
    let Some(bounds) = model.margin_bounds(box0, y.clone()) else {
        return Err(TrainError::Config(format!(
            "method ibp needs a network that bounds its margins over a box \
             (Network::margin_bounds); {} does not (the zoo's image models do)",
            model.architecture()
        )));
    };
    // At eps 0 the bounds are the margins of the network they describe; those of the network in
    // training must be the same.
    let logits = model.forward(x.autodiff()).inner();
    let own = logits.clone().gather(1, y.unsqueeze_dim::<2>(1));
    let margins = own - logits;
    let gap = f64::from(
        (margins.clone() - bounds.inner())
            .abs()
            .max()
            .into_scalar::<f32>(),
    );
    let scale = f64::from(margins.abs().max().into_scalar::<f32>());
    if gap.is_nan() || gap > 1e-3 * (1.0 + scale) {
        return Err(TrainError::Config(format!(
            "method ibp bounds the network in inference mode, but {} computes differently in \
             training (BatchNorm's batch statistics or dropout: its margins differ by {gap:.3e}); \
             train a network without them",
            model.architecture()
        )));
    }
    Ok(())
}

/// What a run carries from epoch to epoch, and through its checkpoint.
struct Run<M> {
    model: M,
    optim: ModuleOptimizer,
    regs: Regularizers,
    history: Vec<EpochMetrics>,
    /// Epoch (from 1) and metric of the best validation epoch.
    best: Option<(usize, f64)>,
    best_model: Option<M>,
    stopped: Option<StopReason>,
    /// Epochs completed.
    epoch: usize,
    resumed_from: Option<usize>,
}

/// One epoch's training statistics.
struct EpochStats {
    sums: EpochSums,
    /// The learning rate and eps of the epoch's last step.
    lr: f64,
    eps: Option<f64>,
    seconds: f64,
    batches: usize,
}

impl<M: Network> Run<M> {
    /// The model drawn from the seed, the regularizers checked against it, the optimizer; then,
    /// when resuming, everything the checkpoint holds.
    fn start(
        cfg: &TrainConfig,
        build: &dyn Fn(&Device) -> M,
        train: &ImageDataset,
        opts: &FitOptions,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let ad_device = device.clone().autodiff();
        let model = init_seeded_with(&ad_device, cfg.seed, build);
        let regs = Regularizers::new(cfg, train.num_classes);
        // Selections that match nothing fail here, before any training.
        regs.check(&model)?;
        if let Some(awp) = &cfg.awp {
            awp.select
                .resolve(&model)
                .map_err(|e| TrainError::Config(format!("awp: {e}")))?;
        }
        let run = Self {
            model,
            optim: build_optimizer(cfg),
            regs,
            history: Vec::new(),
            best: None,
            best_model: None,
            stopped: None,
            epoch: 0,
            resumed_from: None,
        };
        if opts.resume {
            return run.resume(cfg, build, opts, &ad_device);
        }
        Ok(run)
    }

    /// Loads the run directory's checkpoint, refusing one written with another configuration
    /// or a `stop_after_epoch` the run has already passed.
    fn resume(
        mut self,
        cfg: &TrainConfig,
        build: &dyn Fn(&Device) -> M,
        opts: &FitOptions,
        ad_device: &Device,
    ) -> Result<Self, TrainError> {
        let dir = Checkpoint::find(&opts.run_dir)
            .ok_or_else(|| Checkpoint::nothing_to_resume(&opts.run_dir, TRAIN_COMMAND))?;
        let (m, o, state) = Checkpoint::load(&dir, &cfg.model, self.model, self.optim)?;
        if opts
            .stop_after_epoch
            .is_some_and(|stop| stop <= state.epoch)
        {
            return Err(TrainError::Settings {
                what: "run options",
                problem: format!(
                    "stop_after_epoch (--stop-after-epoch) is {}, but the run has already \
                     completed {} epoch(s); give a later epoch, or resume without it",
                    opts.stop_after_epoch.unwrap_or_default(),
                    state.epoch
                ),
            });
        }
        if !cfg.is_described_by(&state.config_toml) {
            return Err(TrainError::Checkpoint {
                path: dir,
                reason: "it was written with a different configuration; resume with the run's \
                         own config.toml"
                    .into(),
            });
        }
        (self.model, self.optim) = (m, o);
        let fresh = init_seeded_with(ad_device, cfg.seed, build);
        self.best_model = Checkpoint::load_best(&dir, &state, fresh)?;
        self.epoch = state.epoch;
        self.history = state.history;
        self.best = state.best;
        self.stopped = state.stopped;
        self.regs.restore_spectral(state.spectral_vectors);
        self.resumed_from = Some(self.epoch);
        tracing::info!(epoch = self.epoch, "resuming from {}", dir.display());
        Ok(self)
    }

    /// One pass over the training set in the epoch's seeded order, one optimizer step per batch
    /// (Free-AT: `replays` steps per batch).
    fn train_epoch(
        mut self,
        cfg: &TrainConfig,
        train: &ImageDataset,
        opts: &FitOptions,
        place: &Place<'_>,
    ) -> Result<(Self, EpochStats), TrainError> {
        let device = place.device;
        let epoch = self.epoch;
        // Free-AT's perturbation, carried from one minibatch to the next within the epoch (reset
        // at epoch start, so that a resumed run replays exactly; Shafahi et al. keep it across
        // epochs).
        let mut free_delta: Option<Tensor<4>> = None;
        let batches = epoch_batches(train.len(), cfg.batch_size, true, cfg.seed, epoch);
        let n_batches = batches.len();
        let bar = progress_bar(
            opts.progress && place.writes,
            n_batches,
            epoch + 1,
            cfg.epochs,
        );
        let started = Instant::now();
        let mut stats = EpochStats {
            sums: EpochSums::default(),
            lr: 0.0,
            eps: None,
            seconds: 0.0,
            batches: n_batches,
        };
        let total = cfg.epochs as f64;
        for (b, indices) in batches.iter().enumerate() {
            let t = epoch as f64 + (b + 1) as f64 / n_batches as f64;
            // Progress at the end of this step, so that warm-up schedules never take a
            // zero-rate first step (as in Wong et al.'s `(i + 1) / n`).
            stats.lr = cfg.schedule.lr_at(cfg.lr, t, total);
            stats.eps = eps_at(cfg, t);
            let seed = batch_seed(cfg.seed, epoch, b);
            // The augmentation's draws come from their own stream of the batch's seed, drawn
            // for the whole batch: every rank's rows are those one process would have.
            let (x, y) = cfg
                .augment
                .batch(train, indices, seed ^ AUGMENT_STREAM, device);
            let (x, y, share) = match place.group {
                Some(g) => {
                    let (lo, hi) = rank_rows(indices.len(), g.rank(), g.size());
                    let share = (hi - lo) as f64 / indices.len() as f64;
                    (x.narrow(0, lo, hi - lo), y.narrow(0, lo, hi - lo), share)
                }
                None => (x, y, 1.0),
            };
            let step = Step {
                epoch,
                batch: b,
                lr: stats.lr,
                eps: stats.eps,
                seed: rank_seed(seed, place.group.map_or(0, |g| g.rank())),
                share,
                place,
            };
            // Random layers (dropout) draw from the device's generator, which the whole process
            // shares: it is seeded from the batch and held for the step, so that their draws are
            // the same in a resumed run and whatever other runs in the process do.
            let sums = &mut stats.sums;
            let done =
                bulwark_models::with_seeded_device(device, step.seed ^ DROPOUT_STREAM, || {
                    if let Method::FreeAt { replays, .. } = cfg.method {
                        self.free_at_step(cfg, &step, replays, x, y, &mut free_delta, sums)
                    } else {
                        self.method_step(cfg, train, &step, x, y, sums)
                    }
                });
            self = match done {
                Ok(run) => run,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            };
            let rate = stats.sums.seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(stats.sums.message(rate, stats.lr, stats.eps));
            bar.inc(1);
        }
        stats.seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if let Some(g) = place.group {
            stats.sums.sum_over(g)?;
        }
        Ok((self, stats))
    }

    /// Free-AT (Shafahi et al. 2019): `replays` steps on one batch, each also moving the carried
    /// perturbation δ up its gradient.
    #[allow(clippy::too_many_arguments)]
    fn free_at_step(
        mut self,
        cfg: &TrainConfig,
        step: &Step,
        replays: usize,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        free_delta: &mut Option<Tensor<4>>,
        sums: &mut EpochSums,
    ) -> Result<Self, TrainError> {
        let n = y.dims()[0];
        let targets = self.regs.targets(y.clone())?;
        let eps = step.eps.unwrap_or_default();
        let mut delta = match free_delta.take() {
            Some(d) if d.dims() == x.dims() => d,
            _ => x.zeros_like(),
        };
        for _ in 0..replays {
            // The gradient is taken with respect to δ through the box clip, so that δ does not
            // move where the clip is active (as in the reference code).
            let leaf = delta.clone().autodiff().require_grad();
            let xa = (x.clone().autodiff() + leaf.clone()).clamp(0.0, 1.0);
            let logits = self.model.forward(xa);
            let mut loss = targets.cross_entropy(logits.clone());
            let adv_loss = Targets {
                hard: y.clone(),
                soft: None,
            }
            .cross_entropy(logits.clone().inner())
            .into_scalar::<f32>();
            if let Some(p) = self.regs.penalty(&self.model)? {
                sums.penalty +=
                    f64::from(p.clone().inner().into_scalar::<f32>()) * n as f64 / replays as f64;
                loss = loss + p;
            }
            if let Some(spec) = &cfg.input_gradient {
                let (term, value) = input_gradient_term(&self.model, x.clone(), y.clone(), spec)?;
                sums.input_gradient += value * n as f64 / replays as f64;
                loss = loss + term;
            }
            let value = loss.clone().inner().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(step.diverged(value));
            }
            let mut grads = loss.backward();
            let g = leaf.grad_remove(&mut grads);
            let params =
                step.average(&self.model, GradientsParams::from_grads(grads, &self.model))?;
            let stepped = self.optim.step(step.lr, self.model, params);
            self.model = self.regs.after_step(stepped, step.lr)?;
            if let Some(g) = g {
                delta = (delta + g.sign() * eps).clamp(-eps, eps);
            }
            let share = n as f64 / replays as f64;
            sums.loss += f64::from(value) * share;
            sums.adv_loss += f64::from(adv_loss) * share;
            sums.adv_correct += hits(logits.inner(), y.clone());
            sums.adv_seen += n;
        }
        *free_delta = Some(delta);
        // Clean accuracy of the batch with the updated model, for the progress line.
        sums.clean_correct += hits(self.model.valid().forward(x), y);
        sums.clean_seen += n;
        sums.seen += n;
        Ok(self)
    }

    /// Every other method: craft the batch's inputs, take the loss (at AWP-perturbed weights when
    /// AWP is on), add the penalties, step, apply the constraints.
    fn method_step(
        mut self,
        cfg: &TrainConfig,
        train: &ImageDataset,
        step: &Step,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        sums: &mut EpochSums,
    ) -> Result<Self, TrainError> {
        let n = y.dims()[0];
        let settings = AdvSettings {
            norm: cfg.norm,
            adv_weight: cfg.adv_weight,
            crafting: cfg.crafting,
        };
        let targets = self.regs.targets(y.clone())?;
        let draw = self.regs.draw(n, train.height, train.width, step.seed);
        let prepared = prepare(
            &cfg.method,
            &self.model,
            x.clone(),
            &targets,
            draw.as_ref(),
            step.eps.unwrap_or_default(),
            settings,
            step.seed,
        )?;
        // AWP: the loss is taken at weights moved up its own gradient (on the same examples); the
        // gradient there steps the unperturbed model (same parameter ids).
        let at = match cfg.awp.as_ref().filter(|a| a.active(step.epoch)) {
            Some(awp) => perturbed_weights(
                &cfg.method,
                &self.model,
                &prepared,
                settings,
                &awp.perturbation(),
            )?,
            None => self.model.clone(),
        };
        let obj = batch_loss(&cfg.method, &at, &prepared, settings);
        let mut loss = obj.loss;
        if let Some(p) = self.regs.penalty(&at)? {
            sums.penalty += f64::from(p.clone().inner().into_scalar::<f32>()) * n as f64;
            loss = loss + p;
        }
        if let Some(spec) = &cfg.input_gradient {
            let (term, value) = input_gradient_term(&at, x.clone(), y.clone(), spec)?;
            sums.input_gradient += value * n as f64;
            loss = loss + term;
        }
        let value = loss.clone().inner().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(step.diverged(value));
        }
        let grads = step.average(
            &self.model,
            GradientsParams::from_grads(loss.backward(), &at),
        )?;
        let stepped = self.optim.step(step.lr, self.model, grads);
        self.model = self.regs.after_step(stepped, step.lr)?;
        sums.loss += f64::from(value) * n as f64;
        // Adversarial statistics against the hard labels; not measured under mixing (the
        // adversarial inputs are mixed, their labels are not one class).
        if let Some(adv) = obj.adv_logits.filter(|_| draw.is_none()) {
            let plain = Targets {
                hard: y.clone(),
                soft: None,
            };
            sums.adv_loss +=
                f64::from(plain.cross_entropy(adv.clone()).into_scalar::<f32>()) * n as f64;
            sums.adv_correct += hits(adv, y.clone());
            sums.adv_seen += n;
        }
        // Clean statistics: from the objective's own clean forward when it had one, else from an
        // inference-mode forward of the batch.
        let clean = match obj.clean_logits {
            Some(c) => c,
            None => self.model.valid().forward(x),
        };
        sums.clean_correct += hits(clean, y);
        sums.clean_seen += n;
        sums.seen += n;
        Ok(self)
    }

    /// Clean (and, for adversarial methods, robust) validation; the epoch's metrics.
    fn validate(
        &self,
        cfg: &TrainConfig,
        valid: &ImageDataset,
        stats: &EpochStats,
        device: &Device,
    ) -> Result<EpochMetrics, TrainError> {
        let v = evaluate(&self.model.classifier(), valid, cfg.eval_batch_size, device);
        if !v.loss.is_finite() {
            // The last steps broke the weights; never checkpoint a broken model.
            return Err(TrainError::Diverged {
                during: "validation",
                epoch: self.epoch + 1,
                batch: stats.batches,
                value: v.loss as f32,
            });
        }
        let robust = match cfg.method.eps() {
            Some(full) if !valid.is_empty() => {
                Some(robust_validation(&self.model, valid, cfg, full, device)?)
            }
            _ => None,
        };
        let sums = &stats.sums;
        let seen = sums.seen as f64;
        let m = EpochMetrics {
            epoch: self.epoch + 1,
            lr: stats.lr,
            train_loss: sums.loss / seen,
            train_acc: sums.clean_correct as f64 / sums.clean_seen.max(1) as f64,
            valid_loss: v.loss,
            valid_acc: v.accuracy,
            seconds: stats.seconds,
            images_per_sec: seen / stats.seconds.max(1e-9),
            eps: stats.eps,
            train_adv_loss: (sums.adv_seen > 0).then(|| sums.adv_loss / sums.adv_seen as f64),
            train_adv_acc: (sums.adv_seen > 0)
                .then(|| sums.adv_correct as f64 / sums.adv_seen as f64),
            penalty: (!cfg.penalties.is_empty()).then(|| sums.penalty / seen),
            input_gradient: cfg
                .input_gradient
                .as_ref()
                .map(|_| sums.input_gradient / seen),
            valid_robust_acc: robust.map(|r| r.0),
            valid_fgsm_acc: robust.map(|r| r.1),
            rss_mib: metrics::resident_mib(),
        };
        tracing::info!(
            "epoch {}/{}: train loss {:.4} acc {:.2}% | valid loss {:.4} acc {:.2}%{} | {:.1}s, {:.0} img/s",
            m.epoch,
            cfg.epochs,
            m.train_loss,
            100.0 * m.train_acc,
            m.valid_loss,
            100.0 * m.valid_acc,
            m.valid_robust_acc
                .map(|r| format!(" robust {:.2}%", 100.0 * r))
                .unwrap_or_default(),
            m.seconds,
            m.images_per_sec
        );
        Ok(m)
    }

    /// Best-epoch selection, the stopping rules (rolling back on catastrophic overfitting), the
    /// checkpoint, then the metrics line.
    fn end_epoch(
        &mut self,
        cfg: &TrainConfig,
        valid: &ImageDataset,
        m: EpochMetrics,
        opts: &FitOptions,
        metrics_path: &std::path::Path,
        writes: bool,
    ) -> Result<(), TrainError> {
        let metric = m.selection_metric();
        let improved = !valid.is_empty() && self.best.is_none_or(|(_, acc)| metric > acc);
        if improved {
            self.best = Some((self.epoch + 1, metric));
            self.best_model = Some(self.model.clone());
        } else if let Some((best_epoch, best_metric)) = self.best {
            self.stopped = stop_rule(cfg, &self.history, &m, best_epoch, best_metric);
            if let Some(StopReason::CatastrophicOverfitting { .. }) = &self.stopped
                && let Some(b) = &self.best_model
            {
                // Roll back: training ends with the best epoch's weights, whatever `keep` says.
                self.model = b.clone();
            }
            if let Some(reason) = &self.stopped {
                tracing::warn!("{reason}");
            }
        }
        self.history.push(m.clone());
        let state = CheckpointState {
            format: FORMAT,
            epoch: self.epoch + 1,
            model: cfg.model.clone(),
            config_toml: cfg.to_toml(),
            history: self.history.clone(),
            best: self.best,
            stopped: self.stopped.clone(),
            spectral_vectors: self.regs.spectral_state(),
        };
        if !writes {
            // Another rank of the group writes the run directory.
            self.epoch += 1;
            return Ok(());
        }
        // Checkpoint first, then the log line: the checkpoint is the source of truth on resume.
        Checkpoint::save(
            &opts.run_dir,
            &self.model,
            &self.optim,
            &state,
            self.best_model.as_ref(),
        )?;
        if improved {
            // A copy for users next to the run's other outputs; resume reads the checkpoint's.
            save_bpk_atomic(&self.model, &opts.run_dir.join("best.bpk"))?;
        }
        metrics::append(metrics_path, &m)?;
        self.epoch += 1;
        Ok(())
    }

    /// The outcome: the best epoch's weights unless `keep = "last"`.
    fn finish(self, cfg: &TrainConfig) -> FitOutcome<M> {
        let finished = self.stopped.is_some() || self.history.len() >= cfg.epochs;
        let model = match (cfg.keep, self.best_model) {
            (Keep::Best, Some(b)) => b,
            _ => self.model,
        };
        FitOutcome {
            model: model.valid(),
            history: self.history,
            best: self.best,
            resumed_from: self.resumed_from,
            stopped: self.stopped,
            finished,
        }
    }
}

impl EpochMetrics {
    /// Rank 0's validation numbers on every rank of `group` (see [`agree_on`]).
    fn agree(&mut self, group: &dyn Collective) -> Result<(), TrainError> {
        let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let mut v = [
            self.valid_loss,
            self.valid_acc,
            opt(self.valid_robust_acc),
            opt(self.valid_fgsm_acc),
        ];
        agree_on(&mut v, group)?;
        let back = |x: f64, was: Option<f64>| was.map(|_| x);
        self.valid_loss = v[0];
        self.valid_acc = v[1];
        self.valid_robust_acc = back(v[2], self.valid_robust_acc);
        self.valid_fgsm_acc = back(v[3], self.valid_fgsm_acc);
        Ok(())
    }
}

/// Where the run executes: its device and, data-parallel, its process group.
struct Place<'a> {
    group: Option<&'a dyn Collective>,
    device: &'a Device,
    /// Whether this process writes the run directory (rank 0).
    writes: bool,
}

/// Where a training step is: what it needs beyond the batch.
struct Step<'a> {
    epoch: usize,
    batch: usize,
    lr: f64,
    eps: Option<f64>,
    /// This rank's seed of the batch (the batch's own on rank 0 and on a process on its own).
    seed: u64,
    /// This rank's share of the batch's rows (1 on a process on its own).
    share: f64,
    place: &'a Place<'a>,
}

impl Step<'_> {
    /// The gradient of the global batch: this rank's, averaged over the group by its share.
    fn average<M: Network>(
        &self,
        model: &M,
        grads: GradientsParams,
    ) -> Result<GradientsParams, TrainError> {
        match self.place.group {
            Some(g) => average_gradients(model, grads, self.share, g, self.place.device),
            None => Ok(grads),
        }
    }

    fn diverged(&self, value: f32) -> TrainError {
        TrainError::Diverged {
            during: "training",
            epoch: self.epoch + 1,
            batch: self.batch + 1,
            value,
        }
    }
}

/// Early stopping and the catastrophic-overfitting guard, for an epoch `m` that did not improve
/// on the best epoch.
pub(crate) fn stop_rule(
    cfg: &TrainConfig,
    history: &[EpochMetrics],
    m: &EpochMetrics,
    best_epoch: usize,
    best_metric: f64,
) -> Option<StopReason> {
    if cfg.overfit_guard
        && let (Some(robust), Some(fgsm)) = (m.valid_robust_acc, m.valid_fgsm_acc)
    {
        let fgsm_at_best = history
            .iter()
            .find(|h| h.epoch == best_epoch)
            .and_then(|h| h.valid_fgsm_acc);
        if best_metric - robust > cfg.overfit_drop && fgsm_at_best.is_some_and(|f| fgsm >= f) {
            return Some(StopReason::CatastrophicOverfitting {
                epoch: m.epoch,
                robust_acc: robust,
                fgsm_acc: fgsm,
                best_epoch,
                best_robust_acc: best_metric,
            });
        }
    }
    // Robust validation is at the full radius: before the eps schedule reaches it (clean epochs
    // of the hold, the ramp) it need not improve, and patience counts only from there.
    let full_from = if cfg.method.is_adversarial() {
        (cfg.eps_ramp_start_epochs + cfg.eps_warmup_epochs).ceil() as usize
    } else {
        0
    };
    match cfg.patience {
        Some(p) if m.epoch - best_epoch.max(full_from).min(m.epoch) >= p => {
            Some(StopReason::Patience {
                epoch: m.epoch,
                best_epoch,
            })
        }
        _ => None,
    }
}

pub(crate) fn progress_bar(enabled: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    bulwark_eval::progress_bar(len, enabled, &format!("epoch {epoch}/{epochs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zoo_builder_applies_dropout_and_drop_path() {
        // WRN-28-10 in training mode on two images: the masks follow the device's seed only when
        // the configuration asks for dropout or DropPath.
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let x = Tensor::<4>::full([2, 3, 32, 32], 0.5, &device);
        let out = |cfg: &TrainConfig, seed: u64| {
            let model = init_seeded_with(&ad, 1, zoo_builder(cfg));
            bulwark_models::with_seeded_device(&device, seed, || {
                model.forward(x.clone().autodiff()).inner().into_data()
            })
        };
        let plain = TrainConfig::new().with_model("wrn-28-10".into());
        plain.validate().unwrap();
        assert_eq!(out(&plain, 1), out(&plain, 2), "no random layers");
        for cfg in [
            plain.clone().with_dropout(0.3),
            plain.clone().with_drop_path(0.3),
        ] {
            cfg.validate().unwrap();
            assert_eq!(out(&cfg, 1), out(&cfg, 1), "a seed fixes the masks");
            assert_ne!(out(&cfg, 1), out(&cfg, 2), "{cfg:?}");
        }
        let e = TrainConfig::new()
            .with_model("small-cnn".into())
            .with_dropout(0.3)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no dropout layers") && e.contains("wrn-28-10"),
            "{e}"
        );
    }

    fn epoch(epoch: usize, robust: f64, fgsm: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            lr: 0.0,
            train_loss: 0.0,
            train_acc: 0.0,
            valid_loss: 0.0,
            valid_acc: 0.9,
            seconds: 0.0,
            images_per_sec: 0.0,
            eps: Some(0.3),
            train_adv_loss: None,
            train_adv_acc: None,
            penalty: None,
            input_gradient: None,
            valid_robust_acc: Some(robust),
            valid_fgsm_acc: Some(fgsm),
            rss_mib: None,
        }
    }

    #[test]
    fn the_overfitting_guard_fires_on_a_collapse_with_fgsm_holding() {
        let cfg = TrainConfig::new();
        let history = vec![epoch(1, 0.6, 0.7), epoch(2, 0.8, 0.85)];
        // PGD collapses, FGSM rises: catastrophic overfitting, roll back to epoch 2.
        let hit = stop_rule(&cfg, &history, &epoch(3, 0.05, 0.95), 2, 0.8);
        assert!(matches!(
            hit,
            Some(StopReason::CatastrophicOverfitting {
                epoch: 3,
                best_epoch: 2,
                ..
            })
        ));
        // Both fall: the model got worse, not overfit to FGSM.
        assert_eq!(
            stop_rule(&cfg, &history, &epoch(3, 0.05, 0.3), 2, 0.8),
            None
        );
        // A drop within the tolerance is noise.
        assert_eq!(
            stop_rule(&cfg, &history, &epoch(3, 0.65, 0.9), 2, 0.8),
            None
        );
        // Switched off.
        let off = TrainConfig::new().with_overfit_guard(false);
        assert_eq!(
            stop_rule(&off, &history, &epoch(3, 0.05, 0.95), 2, 0.8),
            None
        );
    }

    #[test]
    fn patience_waits_for_the_full_training_radius() {
        let cfg = TrainConfig::new()
            .with_patience(Some(2))
            .with_method(Method::PgdAt {
                eps: 0.3,
                steps: 10,
                step_size: None,
                random_start: true,
            })
            .with_eps_ramp_start_epochs(3.0)
            .with_eps_warmup_epochs(2.0);
        let history = vec![epoch(1, 0.01, 0.5)];
        // Epochs 2–6 do not beat epoch 1 at the full radius: the schedule reaches it after
        // epoch 5, so patience stops at epoch 7, not 3.
        for e in 2..=6 {
            assert_eq!(
                stop_rule(&cfg, &history, &epoch(e, 0.0, 0.5), 1, 0.01),
                None
            );
        }
        assert_eq!(
            stop_rule(&cfg, &history, &epoch(7, 0.0, 0.5), 1, 0.01),
            Some(StopReason::Patience {
                epoch: 7,
                best_epoch: 1
            })
        );
    }

    #[test]
    fn patience_counts_epochs_since_the_best() {
        let cfg = TrainConfig::new().with_patience(Some(2));
        let history = vec![epoch(1, 0.5, 0.5), epoch(2, 0.6, 0.6)];
        assert_eq!(
            stop_rule(&cfg, &history, &epoch(3, 0.55, 0.5), 2, 0.6),
            None
        );
        assert_eq!(
            stop_rule(&cfg, &history, &epoch(4, 0.55, 0.5), 2, 0.6),
            Some(StopReason::Patience {
                epoch: 4,
                best_epoch: 2
            })
        );
    }

    #[test]
    fn eps_ramps_linearly_then_holds() {
        let cfg = TrainConfig::new()
            .with_method(Method::PgdAt {
                eps: 0.3,
                steps: 10,
                step_size: None,
                random_start: true,
            })
            .with_eps_warmup_epochs(2.0);
        assert!((eps_at(&cfg, 1.0).unwrap() - 0.15).abs() < 1e-12);
        assert_eq!(eps_at(&cfg, 2.5), Some(0.3));
        assert_eq!(eps_at(&TrainConfig::new(), 1.0), None);
        // Held at 0 first, then the same ramp shifted (Gowal et al.'s warm-up and ramp-up).
        let held = cfg.with_eps_ramp_start_epochs(1.0);
        assert_eq!(eps_at(&held, 0.5), Some(0.0));
        assert_eq!(eps_at(&held, 1.0), Some(0.0));
        assert!((eps_at(&held, 2.0).unwrap() - 0.15).abs() < 1e-12);
        assert_eq!(eps_at(&held, 3.0), Some(0.3));
        let jump = held.with_eps_warmup_epochs(0.0);
        assert_eq!(
            (eps_at(&jump, 0.9), eps_at(&jump, 1.1)),
            (Some(0.0), Some(0.3))
        );
    }
}
