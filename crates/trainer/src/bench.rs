//! Throughput benchmark (`cargo xtask bench`): images per second of the workloads adversarial
//! training is made of — clean inference, FGSM, PGD-10 (random start, last iterate, no early
//! stop), one PGD-10 adversarial-training step (attack + forward/backward + SGD step), one TRADES
//! step (its 10-step KL attack + the clean and adversarial forward/backward + SGD step) and one
//! plain training step — at batch 128, per model and compiled backend, with each model's nominal
//! FLOPs per image and the achieved GFLOP/s, and the backend's float32 matrix-multiply rate as
//! the ceiling to compare against.
//!
//! Every zoo model runs on inputs of its own shape: the benchmark's images where their shape fits
//! the model (MNIST for the 1x28x28 models), otherwise seeded uniform inputs in [0, 1] with
//! labels cycling through the classes ([`uniform_batch`]; the CIFAR-shaped models). The attacks
//! use each shape's usual radius: L-inf eps 0.3 with steps of 0.01 on one-channel inputs
//! (MNIST), eps 8/255 with steps of 2/255 on colour inputs (CIFAR); the work per step is the same
//! for any radius, since no run stops early.
//!
//! Timings are medians over repeats after one warm-up run; compare them as ratios within one run.
//! The warm-up run is never a sample: on the GPU backends it holds the kernel autotuning, which can
//! take a thousand times longer than the run itself. Slow workloads are time-boxed: repeats stop
//! once a workload has run for [`TIME_BOX_SECS`] and has at least one timed run, so the deprecated
//! ndarray backend finishes in minutes.

use std::time::Instant;

use bulwark_attack_core::rng::SplitMix64;
use bulwark_attack_core::{
    Attack, AttackConfig, AttackOptions, FgsmConfig, PgdConfig, ThreatModel, TradesKlConfig,
};
use bulwark_data::ImageDataset;
use bulwark_models::{Model, forward_flops, model_info};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::adversarial::trades_kl;
use crate::backend::BackendKind;
use crate::error::TrainError;

/// One measured workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// Backend name.
    pub backend: String,
    /// Zoo model (`-` for the matrix multiply).
    pub model: String,
    /// A [`Workload`] name, or `matmul-N`.
    pub workload: String,
    /// Images per batch (the matrix size for `matmul-N`).
    pub batch: usize,
    /// Median images per second (multiplies per second for `matmul-N`).
    pub median_images_per_second: f64,
    /// Slowest repeat, images per second.
    pub min_images_per_second: f64,
    /// Fastest repeat.
    pub max_images_per_second: f64,
    /// Timed repeats actually made (fewer than asked for when time-boxed).
    pub repeats: usize,
    /// Nominal FLOPs per image of the workload (per multiply for `matmul-N`).
    pub flops_per_image: f64,
    /// Achieved GFLOP/s at the median rate.
    pub gflops_per_second: f64,
    /// What the batch held: `images` (the benchmark's images) or `uniform` (seeded uniform inputs
    /// of the model's shape); empty for `matmul-N`.
    #[serde(default)]
    pub inputs: String,
}

/// Seconds after which a workload stops repeating.
pub const TIME_BOX_SECS: f64 = 20.0;

/// What one timed run does with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One inference-mode forward pass.
    Clean,
    /// FGSM (one forward and input-gradient pass).
    Fgsm,
    /// PGD-10.
    Pgd10,
    /// PGD-10 on the batch, then a forward/backward pass on the examples and an SGD step.
    PgdAtStep,
    /// TRADES (β = 6): its 10-step KL attack on the batch, then a forward/backward pass of
    /// `CE(f(x), y) + β·KL(f(x) ‖ f(x'))` on the clean and adversarial batch and an SGD step.
    TradesStep,
    /// A forward/backward pass on the clean batch and an SGD step.
    TrainStep,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 6] = [
        Workload::Clean,
        Workload::Fgsm,
        Workload::Pgd10,
        Workload::PgdAtStep,
        Workload::TradesStep,
        Workload::TrainStep,
    ];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Clean => "clean",
            Workload::Fgsm => "fgsm",
            Workload::Pgd10 => "pgd-10",
            Workload::PgdAtStep => "pgd-at-step",
            Workload::TradesStep => "trades-step",
            Workload::TrainStep => "train-step",
        }
    }

    /// The workload called `name`.
    pub fn parse(name: &str) -> Result<Workload, TrainError> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|w| w.name()).collect();
                TrainError::Settings {
                    what: "benchmark settings",
                    problem: format!("unknown workload `{name}`; known: {}", known.join(", ")),
                }
            })
    }

    /// Forward-pass equivalents per image: a backward pass to the input costs one forward pass,
    /// the weight gradients another. The attacks' one clean forward that validates the batch is
    /// not counted, so the achieved GFLOP/s are a slight underestimate for FGSM and PGD. TRADES:
    /// 10 attack steps (20), the attack's clean forward pass that fixes `f(x)` (1), and training
    /// on two batches, clean and adversarial (2 × 3).
    pub fn forward_passes(self) -> u64 {
        match self {
            Workload::Clean => 1,
            Workload::Fgsm => 2,
            Workload::Pgd10 => 20,
            Workload::PgdAtStep => 23,
            Workload::TradesStep => 27,
            Workload::TrainStep => 3,
        }
    }
}

/// The attack workloads of the benchmark, at the MNIST radius.
pub fn attack_workloads() -> Vec<(&'static str, AttackConfig)> {
    vec![
        ("fgsm", fgsm(Radius::MNIST)),
        ("pgd-10", pgd10(Radius::MNIST)),
    ]
}

/// The L-inf radius and step size of the benchmark's attacks for one input shape.
///
/// ```
/// use bulwark_trainer::Radius;
/// assert_eq!(Radius::for_channels(1), Radius::MNIST);
/// assert_eq!(Radius::for_channels(3).step, 2.0 / 255.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radius {
    /// Radius.
    pub eps: f64,
    /// PGD's and TRADES' step size.
    pub step: f64,
}

impl Radius {
    /// MNIST's: eps 0.3, step 0.01 (Madry et al.).
    pub const MNIST: Radius = Radius {
        eps: 0.3,
        step: 0.01,
    };
    /// CIFAR's: eps 8/255, step 2/255 (Madry et al., RobustBench).
    pub const CIFAR: Radius = Radius {
        eps: 8.0 / 255.0,
        step: 2.0 / 255.0,
    };

    /// The radius for inputs of `channels` channels: MNIST's for one, CIFAR's otherwise.
    pub fn for_channels(channels: usize) -> Radius {
        if channels == 1 {
            Radius::MNIST
        } else {
            Radius::CIFAR
        }
    }
}

fn no_early_stop(random_start: bool) -> AttackOptions {
    AttackOptions::new()
        .with_early_stop(false)
        .with_random_start(random_start)
}

fn fgsm(r: Radius) -> AttackConfig {
    AttackConfig::Fgsm(FgsmConfig::new(ThreatModel::linf(r.eps)).with_options(no_early_stop(false)))
}

fn pgd10(r: Radius) -> AttackConfig {
    AttackConfig::Pgd(
        PgdConfig::new(ThreatModel::linf(r.eps))
            .with_steps(10)
            .with_step_size(Some(r.step))
            .with_options(no_early_stop(true)),
    )
}

fn trades10(r: Radius) -> AttackConfig {
    AttackConfig::TradesKl(
        TradesKlConfig::new(ThreatModel::linf(r.eps))
            .with_steps(10)
            .with_step_size(Some(r.step))
            .with_options(no_early_stop(true)),
    )
}

/// TRADES' β in the benchmark's step (the paper's value).
const TRADES_BETA: f64 = 6.0;

/// TRADES' objective (Zhang et al. 2019) on the clean and adversarial logits:
/// `mean CE(f(x), y) + β · Σ_i KL(softmax f(x_i) ‖ softmax f(x'_i)) / B`, as the trainer's TRADES
/// method and the reference code (`KLDivLoss(reduction="sum") / B`).
fn trades_loss(clean: Tensor<2>, adv: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1> {
    let kl = trades_kl(clean.clone(), adv);
    let ce = CrossEntropyLossConfig::new()
        .init(&clean.device())
        .forward(clean, y);
    ce + kl * TRADES_BETA
}

/// A batch of `batch` seeded uniform inputs of shape `shape` (`[C, H, W]`), each pixel uniform in
/// [0, 1] from SplitMix64 (seed `seed`; a draw in [0, 1) rounded to f32), with labels `i % classes`: inputs of a model's own shape
/// for timing where no images of that shape are at hand. Timing inputs, not data.
///
/// ```
/// use burn::tensor::Device;
/// let device = Device::default();
/// let (x, y) = bulwark_trainer::uniform_batch([3, 32, 32], 4, 10, 0, &device);
/// assert_eq!(x.dims(), [4, 3, 32, 32]);
/// let labels = y.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
/// assert_eq!(labels, [0, 1, 2, 3]);
/// ```
pub fn uniform_batch(
    shape: [usize; 3],
    batch: usize,
    classes: usize,
    seed: u64,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = SplitMix64::new(seed);
    let n = batch * shape.iter().product::<usize>();
    let pixels: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    let labels: Vec<i64> = (0..batch).map(|i| (i % classes.max(1)) as i64).collect();
    let x = Tensor::<4>::from_data(
        TensorData::new(pixels, [batch, shape[0], shape[1], shape[2]]),
        device,
    );
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), device);
    (x, y)
}

/// Median, min and max of `rates` (at least one) with the number of repeats.
pub(crate) fn summarize(mut rates: Vec<f64>) -> (f64, f64, f64, usize) {
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    (rates[n / 2], rates[0], rates[n - 1], n)
}

/// Times `run` (which must finish its work on the device before returning): one warm-up run, then
/// up to `repeats` (at least one) timed runs within the time box. Returns runs per second.
pub(crate) fn time(
    repeats: usize,
    run: impl FnMut() -> Result<(), TrainError>,
) -> Result<Vec<f64>, TrainError> {
    time_boxed(repeats, TIME_BOX_SECS, run)
}

fn time_boxed(
    repeats: usize,
    time_box_secs: f64,
    mut run: impl FnMut() -> Result<(), TrainError>,
) -> Result<Vec<f64>, TrainError> {
    run()?;
    let mut rates = Vec::with_capacity(repeats.max(1));
    let began = Instant::now();
    while rates.len() < repeats.max(1) {
        let start = Instant::now();
        run()?;
        rates.push(1.0 / start.elapsed().as_secs_f64());
        if began.elapsed().as_secs_f64() >= time_box_secs {
            break;
        }
    }
    Ok(rates)
}

/// Waits for the device by reading one value back.
pub(crate) fn sync<const D: usize>(t: Tensor<D>) {
    let n = t.dims().iter().product::<usize>();
    let _ = t.reshape([n]).narrow(0, 0, 1).into_scalar::<f32>();
}

/// Runs `workload` once on the batch `x`, `y`; `train` is the model trained by the step workloads.
fn run_once(
    workload: Workload,
    radius: Radius,
    model: &Model,
    train: &mut Option<Model>,
    optim: &mut burn::optim::ModuleOptimizer,
    x: &Tensor<4>,
    y: &Tensor<1, Int>,
) -> Result<(), TrainError> {
    match workload {
        Workload::Clean => sync(model.forward(x.clone())),
        Workload::Fgsm | Workload::Pgd10 => {
            let attack = if workload == Workload::Fgsm {
                fgsm(radius)
            } else {
                pgd10(radius)
            }
            .init()?;
            sync(attack.perturb(model, x.clone(), y.clone())?);
        }
        Workload::PgdAtStep | Workload::TradesStep | Workload::TrainStep => {
            let m = train
                .take()
                .expect("the training model is put back after each step");
            let ce = |logits: Tensor<2>| {
                CrossEntropyLossConfig::new()
                    .init(&logits.device())
                    .forward(logits, y.clone().autodiff())
            };
            let loss = match workload {
                Workload::PgdAtStep => {
                    let adv = pgd10(radius).init()?.perturb(&m, x.clone(), y.clone())?;
                    ce(m.forward(adv.autodiff()))
                }
                Workload::TradesStep => {
                    let adv = trades10(radius).init()?.perturb(&m, x.clone(), y.clone())?;
                    let clean = m.forward(x.clone().autodiff());
                    let adv = m.forward(adv.autodiff());
                    trades_loss(clean, adv, y.clone().autodiff())
                }
                _ => ce(m.forward(x.clone().autodiff())),
            };
            let grads = GradientsParams::from_grads(loss.clone().backward(), &m);
            let m = optim.step(0.01, m, grads);
            // The step's result is needed by the next run; reading the loss waits for the
            // backward pass, and one parameter value for the step.
            sync(loss.inner());
            let probe = m.forward(x.clone().narrow(0, 0, 1).autodiff()).inner();
            sync(probe);
            *train = Some(m);
        }
    }
    Ok(())
}

/// The float32 matrix-multiply rate of `device`: `n`×`n` by `n`×`n`, median over repeats.
pub fn bench_matmul(
    backend: BackendKind,
    device: &Device,
    n: usize,
    repeats: usize,
) -> Result<BenchRow, TrainError> {
    let a = Tensor::<2>::random([n, n], Distribution::Default, device);
    let b = Tensor::<2>::random([n, n], Distribution::Default, device);
    let rates = time(repeats, || {
        sync(a.clone().matmul(b.clone()));
        Ok(())
    })?;
    let (median, min, max, count) = summarize(rates);
    let flops = 2.0 * (n as f64).powi(3);
    Ok(BenchRow {
        backend: backend.name().to_string(),
        model: "-".into(),
        workload: format!("matmul-{n}"),
        batch: n,
        median_images_per_second: median,
        min_images_per_second: min,
        max_images_per_second: max,
        repeats: count,
        flops_per_image: flops,
        gflops_per_second: median * flops / 1e9,
        inputs: String::new(),
    })
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Zoo models.
    pub models: Vec<String>,
    /// Backends.
    pub backends: Vec<BackendKind>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Images per batch.
    pub batch: usize,
    /// Timed repeats per workload (after one warm-up run).
    pub repeats: usize,
    /// Size of the square matrix multiply (0: none).
    pub matmul: usize,
}

/// Times every workload on `images` (one batch: its first `batch` images, repeated cyclically if
/// there are fewer) for each model and backend, after the backend's matrix-multiply rate.
/// `report` is called after each row.
pub fn bench_throughput(
    images: &ImageDataset,
    plan: &BenchPlan,
    mut report: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>, TrainError> {
    if images.is_empty() {
        return Err(TrainError::Settings {
            what: "benchmark settings",
            problem: "no benchmark images".into(),
        });
    }
    // Every model's input shape first: a vector model is refused before anything is timed.
    let mut shapes = Vec::with_capacity(plan.models.len());
    for name in &plan.models {
        let info = model_info(name)?;
        let shape: [usize; 3] = info
            .input_shape
            .try_into()
            .map_err(|_| TrainError::Settings {
                what: "benchmark settings",
                problem: format!(
                    "model `{name}` takes vectors (input {:?}); the benchmark times image models",
                    info.input_shape
                ),
            })?;
        shapes.push(shape);
    }
    let indices: Vec<usize> = (0..plan.batch).map(|i| i % images.len()).collect();
    let mut rows = Vec::new();
    for &backend in &plan.backends {
        let device = backend.device()?;
        if plan.matmul > 0 {
            let row = bench_matmul(backend, &device, plan.matmul, plan.repeats)?;
            report(&row);
            rows.push(row);
        }
        for (name, &shape) in plan.models.iter().zip(&shapes) {
            let model = Model::init_seeded(name, &device, 0)?;
            let info = model.info();
            let flops = forward_flops(name)? as f64;
            let fits = [images.channels, images.height, images.width] == shape;
            let (x, y) = if fits {
                images.batch(&indices, &device)
            } else {
                uniform_batch(shape, plan.batch, info.num_classes, 0, &device)
            };
            let inputs = if fits { "images" } else { "uniform" };
            let radius = Radius::for_channels(shape[0]);
            let mut train = Some(Model::init_seeded(name, &device.clone().autodiff(), 0)?);
            let mut optim = SgdConfig::new().init();
            for &workload in &plan.workloads {
                let rates = time(plan.repeats, || {
                    run_once(workload, radius, &model, &mut train, &mut optim, &x, &y)
                })?;
                let (median, min, max, count) = summarize(rates);
                let per_image = flops * workload.forward_passes() as f64;
                let b = plan.batch as f64;
                let row = BenchRow {
                    backend: backend.name().to_string(),
                    model: name.clone(),
                    workload: workload.name().to_string(),
                    batch: plan.batch,
                    median_images_per_second: median * b,
                    min_images_per_second: min * b,
                    max_images_per_second: max * b,
                    repeats: count,
                    flops_per_image: per_image,
                    gflops_per_second: median * b * per_image / 1e9,
                    inputs: inputs.to_string(),
                };
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn the_warm_up_run_is_never_a_sample_and_one_timed_run_always_is() {
        // A slow first call (GPU autotuning; longer than the 5 s after which an earlier rule kept
        // the warm-up run as the only sample) must not be measured, even when the time box is
        // already spent after it.
        let mut calls = 0;
        let rates = time_boxed(5, 0.0, || {
            calls += 1;
            let ms = if calls == 1 { 5_200 } else { 2 };
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(rates.len(), 1);
        assert!(
            rates[0] > 100.0,
            "the warm-up run was timed: {} runs/s",
            rates[0]
        );
        let mut calls = 0;
        let rates = time_boxed(3, 60.0, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((calls, rates.len()), (4, 3));
    }

    #[test]
    fn workloads_parse_by_name_and_count_passes() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()).unwrap(), w);
        }
        let e = Workload::parse("pgd").unwrap_err().to_string();
        assert!(
            e.contains("unknown workload `pgd`") && e.contains("pgd-at-step"),
            "{e}"
        );
        // PGD-10 is ten forward + input-gradient passes; the step adds forward + full backward.
        assert_eq!(
            Workload::Pgd10.forward_passes(),
            10 * Workload::Fgsm.forward_passes()
        );
        assert_eq!(
            Workload::PgdAtStep.forward_passes(),
            Workload::Pgd10.forward_passes() + Workload::TrainStep.forward_passes()
        );
        // TRADES: the same 10 steps, its clean forward pass, and two batches trained.
        assert_eq!(
            Workload::TradesStep.forward_passes(),
            Workload::Pgd10.forward_passes() + 1 + 2 * Workload::TrainStep.forward_passes()
        );
    }

    #[test]
    fn uniform_inputs_are_seeded_in_the_box_with_cycling_labels() {
        let device = BackendKind::Flex.device().unwrap();
        let values = |seed| {
            let (x, y) = uniform_batch([3, 4, 5], 7, 3, seed, &device);
            assert_eq!(x.dims(), [7, 3, 4, 5]);
            assert_eq!(
                y.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
                [0, 1, 2, 0, 1, 2, 0]
            );
            x.into_data().try_to_vec::<f32>().unwrap()
        };
        let a = values(0);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(a, values(0));
        assert_ne!(a, values(1));
        // SplitMix64's first draw for seed 0 (0xE220A8397B1DCDAF), as the pixel's top 53 bits.
        assert_eq!(
            a[0],
            ((0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / (1u64 << 53) as f64) as f32
        );
        // Roughly uniform: the mean of 420 draws is near 1/2.
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
        assert_eq!(Radius::for_channels(1), Radius::MNIST);
        assert_eq!(Radius::for_channels(3).eps, 8.0 / 255.0);
    }

    #[test]
    fn the_trades_loss_is_cross_entropy_plus_six_times_the_mean_kl() {
        // Two samples, two classes. Sample 0: clean logits (0, 0), adversarial (ln 3, 0), label 0;
        // sample 1: clean (ln 3, 0), adversarial (ln 3, 0), label 1. By hand:
        // CE = (ln 2 + ln 4) / 2; KL_0 = ½ ln(½ / ¾) + ½ ln(½ / ¼) = ½ ln(4/3); KL_1 = 0.
        let device = BackendKind::Flex.device().unwrap();
        let l3 = 3f32.ln();
        let t = |v: [f32; 4]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [2, 2]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let got = trades_loss(t([0.0, 0.0, l3, 0.0]), t([l3, 0.0, l3, 0.0]), y).into_scalar::<f32>()
            as f64;
        let ce = (2f64.ln() + 4f64.ln()) / 2.0;
        let kl = 0.5 * (4.0f64 / 3.0).ln() / 2.0;
        let want = ce + 6.0 * kl;
        assert!((got - want).abs() < 1e-5, "{got} against {want}");
    }

    #[test]
    fn the_trades_step_trains_the_model() {
        let device = BackendKind::Flex.device().unwrap();
        let (x, y) = uniform_batch([1, 28, 28], 4, 10, 0, &device);
        let model = Model::init_seeded("small-cnn", &device, 0).unwrap();
        let mut train =
            Some(Model::init_seeded("small-cnn", &device.clone().autodiff(), 0).unwrap());
        let before = model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut optim = SgdConfig::new().init();
        run_once(
            Workload::TradesStep,
            Radius::MNIST,
            &model,
            &mut train,
            &mut optim,
            &x,
            &y,
        )
        .unwrap();
        let after = train
            .unwrap()
            .valid()
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-6));
    }

    #[test]
    fn every_workload_runs_and_reports_consistent_rates() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/mnist");
        let images = bulwark_data::load_split(
            bulwark_data::DatasetKind::Mnist,
            bulwark_data::Split::Test,
            &dir,
        )
        .unwrap();
        let plan = BenchPlan {
            models: vec!["small-cnn".into()],
            backends: vec![BackendKind::Flex],
            workloads: Workload::ALL.to_vec(),
            batch: 8,
            repeats: 1,
            matmul: 64,
        };
        let rows = bench_throughput(&images, &plan, |_| {}).unwrap();
        assert_eq!(rows.len(), 7);
        assert_eq!(rows[0].workload, "matmul-64");
        assert_eq!(rows[0].flops_per_image, 2.0 * 64f64.powi(3));
        for r in &rows[1..] {
            assert!(r.min_images_per_second <= r.median_images_per_second);
            assert!(r.median_images_per_second <= r.max_images_per_second);
            assert!(r.median_images_per_second > 0.0);
            let expected = r.median_images_per_second * r.flops_per_image / 1e9;
            assert!((r.gflops_per_second - expected).abs() <= 1e-9 * expected.max(1.0));
        }
        let pgd = rows.iter().find(|r| r.workload == "pgd-10").unwrap();
        assert_eq!(pgd.flops_per_image, 20.0 * 1_218_768.0);
        assert!(rows[1..].iter().all(|r| r.inputs == "images"));
        // A model the images do not fit runs on uniform inputs of its own shape.
        let cifar = BenchPlan {
            models: vec!["seed-net".into()],
            workloads: vec![Workload::Clean],
            matmul: 0,
            ..plan
        };
        let rows = bench_throughput(&images, &cifar, |_| {}).unwrap();
        assert_eq!((rows.len(), rows[0].inputs.as_str()), (1, "uniform"));
    }
}
