//! Throughput benchmark (`cargo xtask bench`): images per second of the workloads adversarial
//! training is made of — clean inference, FGSM, PGD-10 (eps 0.3, step 0.01, random start, last
//! iterate, no early stop), one PGD-10 adversarial-training step (attack + forward/backward + SGD
//! step) and one plain training step — at batch 128, per model and compiled backend, with each
//! model's nominal FLOPs per image and the achieved GFLOP/s, and the backend's float32
//! matrix-multiply rate as the ceiling to compare against.
//!
//! Timings are medians over repeats after one warm-up run; compare them as ratios within one run.
//! The warm-up run is never a sample: on the GPU backends it holds the kernel autotuning, which can
//! take a thousand times longer than the run itself. Slow workloads are time-boxed: repeats stop
//! once a workload has run for [`TIME_BOX_SECS`] and has at least one timed run, so the deprecated
//! ndarray backend finishes in minutes.

use std::time::Instant;

use bulwark_attack_core::{
    Attack, AttackConfig, AttackOptions, FgsmConfig, PgdConfig, ThreatModel,
};
use bulwark_data::ImageDataset;
use bulwark_models::{Model, forward_flops};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

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
    /// A forward/backward pass on the clean batch and an SGD step.
    TrainStep,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 5] = [
        Workload::Clean,
        Workload::Fgsm,
        Workload::Pgd10,
        Workload::PgdAtStep,
        Workload::TrainStep,
    ];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Clean => "clean",
            Workload::Fgsm => "fgsm",
            Workload::Pgd10 => "pgd-10",
            Workload::PgdAtStep => "pgd-at-step",
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
    /// not counted, so the achieved GFLOP/s are a slight underestimate for FGSM and PGD.
    pub fn forward_passes(self) -> u64 {
        match self {
            Workload::Clean => 1,
            Workload::Fgsm => 2,
            Workload::Pgd10 => 20,
            Workload::PgdAtStep => 23,
            Workload::TrainStep => 3,
        }
    }
}

/// The attack workloads of the benchmark.
pub fn attack_workloads() -> Vec<(&'static str, AttackConfig)> {
    vec![("fgsm", fgsm()), ("pgd-10", pgd10())]
}

fn fgsm() -> AttackConfig {
    let options = AttackOptions::new().with_early_stop(false);
    AttackConfig::Fgsm(FgsmConfig::new(ThreatModel::linf(0.3)).with_options(options))
}

fn pgd10() -> AttackConfig {
    let options = AttackOptions::new()
        .with_early_stop(false)
        .with_random_start(true);
    AttackConfig::Pgd(
        PgdConfig::new(ThreatModel::linf(0.3))
            .with_steps(10)
            .with_step_size(Some(0.01))
            .with_options(options),
    )
}

/// Median, min and max of `rates` (at least one) with the number of repeats.
fn summarize(mut rates: Vec<f64>) -> (f64, f64, f64, usize) {
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    (rates[n / 2], rates[0], rates[n - 1], n)
}

/// Times `run` (which must finish its work on the device before returning): one warm-up run, then
/// up to `repeats` (at least one) timed runs within the time box. Returns runs per second.
fn time(
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
fn sync<const D: usize>(t: Tensor<D>) {
    let n = t.dims().iter().product::<usize>();
    let _ = t.reshape([n]).narrow(0, 0, 1).into_scalar::<f32>();
}

/// Runs `workload` once on the batch `x`, `y`; `train` is the model trained by the step workloads.
fn run_once(
    workload: Workload,
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
                fgsm()
            } else {
                pgd10()
            }
            .init()?;
            sync(attack.perturb(model, x.clone(), y.clone())?);
        }
        Workload::PgdAtStep | Workload::TrainStep => {
            let m = train
                .take()
                .expect("the training model is put back after each step");
            let inputs = if workload == Workload::PgdAtStep {
                pgd10().init()?.perturb(&m, x.clone(), y.clone())?
            } else {
                x.clone()
            };
            let logits = m.forward(inputs.autodiff());
            let loss = CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits, y.clone().autodiff());
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
    let indices: Vec<usize> = (0..plan.batch).map(|i| i % images.len()).collect();
    let mut rows = Vec::new();
    for &backend in &plan.backends {
        let device = backend.device()?;
        if plan.matmul > 0 {
            let row = bench_matmul(backend, &device, plan.matmul, plan.repeats)?;
            report(&row);
            rows.push(row);
        }
        for name in &plan.models {
            let model = Model::init_seeded(name, &device, 0)?;
            let shape = model.info().input_shape;
            if [images.channels, images.height, images.width] != shape {
                return Err(TrainError::Settings {
                    what: "benchmark settings",
                    problem: format!(
                        "benchmark images ({}x{}x{}) do not fit model `{name}` (input {shape:?})",
                        images.channels, images.height, images.width
                    ),
                });
            }
            let flops = forward_flops(name)? as f64;
            let (x, y) = images.batch(&indices, &device);
            let mut train = Some(Model::init_seeded(name, &device.clone().autodiff(), 0)?);
            let mut optim = SgdConfig::new().init();
            for &workload in &plan.workloads {
                let rates = time(plan.repeats, || {
                    run_once(workload, &model, &mut train, &mut optim, &x, &y)
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
        assert_eq!(rows.len(), 6);
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
        // A model the images do not fit is refused with both shapes named.
        let bad = BenchPlan {
            models: vec!["seed-net".into()],
            matmul: 0,
            ..plan
        };
        let e = bench_throughput(&images, &bad, |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not fit model `seed-net`"), "{e}");
    }
}
