//! Attack throughput benchmark (`cargo xtask bench attacks`): images per second of FGSM and PGD-10
//! (eps 0.3, step 0.01, last iterate, no early stop) at batch 128, per model and compiled backend.
//! Timings are medians over repeats after one warm-up run; compare them as ratios within one run.
//! Slow workloads are time-boxed: repeats stop once a workload has run for [`TIME_BOX_SECS`], and a
//! warm-up run longer than [`SLOW_RUN_SECS`] (first-call effects are then negligible) counts as the
//! only sample, so the deprecated ndarray backend finishes in minutes.

use std::time::Instant;

use bulwark_attack_core::{
    Attack, AttackConfig, AttackOptions, FgsmConfig, PgdConfig, ThreatModel,
};
use bulwark_data::ImageDataset;
use bulwark_models::Model;
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::error::TrainError;

/// One measured workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// Backend name.
    pub backend: String,
    /// Zoo model.
    pub model: String,
    /// `fgsm` or `pgd-10`.
    pub workload: String,
    /// Images per batch.
    pub batch: usize,
    /// Median attacked images per second.
    pub median_images_per_second: f64,
    /// Slowest and fastest repeat, images per second.
    pub min_images_per_second: f64,
    /// Fastest repeat.
    pub max_images_per_second: f64,
    /// Timed repeats actually made (fewer than asked for when time-boxed).
    pub repeats: usize,
}

/// Seconds after which a workload stops repeating.
pub const TIME_BOX_SECS: f64 = 20.0;
/// A warm-up run at least this long is used as the measurement.
pub const SLOW_RUN_SECS: f64 = 5.0;

/// The attack workloads of the benchmark.
pub fn attack_workloads() -> Vec<(&'static str, AttackConfig)> {
    let threat = ThreatModel::linf(0.3);
    let options = AttackOptions::new().with_early_stop(false);
    vec![
        (
            "fgsm",
            AttackConfig::Fgsm(FgsmConfig::new(threat).with_options(options)),
        ),
        (
            "pgd-10",
            AttackConfig::Pgd(
                PgdConfig::new(threat)
                    .with_steps(10)
                    .with_step_size(Some(0.01))
                    .with_options(options.with_random_start(true)),
            ),
        ),
    ]
}

/// Times every workload on `images` (one batch: its first `batch` images, repeated cyclically if
/// there are fewer) for each model and backend. `report` is called after each row.
pub fn bench_attacks(
    images: &ImageDataset,
    models: &[&str],
    backends: &[BackendKind],
    batch: usize,
    repeats: usize,
    mut report: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>, TrainError> {
    let indices: Vec<usize> = (0..batch).map(|i| i % images.len().max(1)).collect();
    let mut rows = Vec::new();
    for &backend in backends {
        let device = backend.device()?;
        for &name in models {
            let model = Model::init_seeded(name, &device, 0)?;
            let info = model.info();
            let data = if [images.channels, images.height, images.width] == info.input_shape {
                images.clone()
            } else {
                return Err(TrainError::Config(format!(
                    "benchmark images do not fit model `{name}`"
                )));
            };
            let (x, y) = data.batch(&indices, &device);
            for (workload, config) in attack_workloads() {
                let attack = config.init()?;
                let mut rates = Vec::with_capacity(repeats);
                let began = Instant::now();
                for rep in 0..=repeats {
                    let start = Instant::now();
                    let adv = attack.perturb(&model, x.clone(), y.clone())?;
                    // Reading one value back waits for the device to finish.
                    let _ = adv.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
                    let secs = start.elapsed().as_secs_f64();
                    if rep > 0 || secs >= SLOW_RUN_SECS {
                        rates.push(batch as f64 / secs);
                    }
                    if !rates.is_empty() && began.elapsed().as_secs_f64() >= TIME_BOX_SECS {
                        break;
                    }
                }
                rates.sort_by(f64::total_cmp);
                let row = BenchRow {
                    backend: backend.name().to_string(),
                    model: name.to_string(),
                    workload: workload.to_string(),
                    batch,
                    median_images_per_second: rates[rates.len() / 2],
                    min_images_per_second: rates[0],
                    max_images_per_second: rates[rates.len() - 1],
                    repeats: rates.len(),
                };
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}
