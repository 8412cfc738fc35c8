//! `bulwark bench throughput`, `bulwark bench layers` and `bulwark bench eval`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bulwark_data::{DatasetKind, Split, load_split};
use bulwark_eval::write_atomic;
use bulwark_models::Model;
use bulwark_trainer::{
    BackendKind, BenchPlan, EvalBenchPlan, check_input_shape, dataset_dir, load_dataset_split,
};

use crate::guard::Inputs;

use super::{fetch_options, load_weights};

pub(super) fn bench(
    plan: &BenchPlan,
    data_dir: Option<PathBuf>,
    json: Option<PathBuf>,
) -> Result<()> {
    // Real MNIST images: the test slice built into bulwark-data (any working directory) unless a
    // directory is given. Models of another shape get seeded uniform inputs of their own.
    let images = match &data_dir {
        Some(dir) => {
            let images = load_split(DatasetKind::Mnist, Split::Test, dir)
                .with_context(|| format!("benchmark images from {}", dir.display()))?;
            if let Some(path) = &json {
                Inputs::new().data_dir(dir).refuse(path, "--json")?;
            }
            images
        }
        None => bulwark_data::mnist_test_slice().context("the built-in MNIST test slice")?,
    };
    println!(
        "{:<8} {:<15} {:<12} {:>12} {:>24} {:>8} {:>12} {:>9} {:<7}",
        "backend",
        "model",
        "workload",
        "median img/s",
        "range (img/s)",
        "repeats",
        "FLOP/image",
        "GFLOP/s",
        "inputs"
    );
    let rows = bulwark_trainer::bench_throughput(&images, plan, |r| {
        let unit = if r.model == "-" { " (matmuls/s)" } else { "" };
        println!(
            "{:<8} {:<15} {:<12} {:>12.1} {:>11.1} – {:<10.1} {:>8} {:>12.3e} {:>9.1} {:<7}{unit}",
            r.backend,
            r.model,
            r.workload,
            r.median_images_per_second,
            r.min_images_per_second,
            r.max_images_per_second,
            r.repeats,
            r.flops_per_image,
            r.gflops_per_second,
            r.inputs,
        );
    })?;
    if let Some(path) = json {
        write_results(&path, &rows)?;
    }
    Ok(())
}

pub(super) fn bench_layers(
    models: &[String],
    backends: &[BackendKind],
    batch: usize,
    repeats: usize,
    json: Option<PathBuf>,
) -> Result<()> {
    // Every model first: one without convolutions is refused before anything is timed.
    for model in models {
        bulwark_trainer::layer_shapes(model)?;
    }
    let peak = bulwark_trainer::fma_peak();
    match &peak {
        Some(p) => println!(
            "float32 FMA peak of this CPU: {:.1} GFLOP/s ({} threads, {})",
            p.gflops_per_second, p.threads, p.instructions
        ),
        None => println!("float32 FMA peak: not measured on this CPU (x86-64 with FMA only)"),
    }
    println!(
        "{:<8} {:<15} {:<22} {:>5} {:<12} {:>10} {:>9} {:>7}",
        "backend", "model", "layer", "count", "direction", "median ms", "GFLOP/s", "% peak"
    );
    let mut rows = Vec::new();
    for &backend in backends {
        for model in models {
            rows.extend(bulwark_trainer::bench_conv_layers(
                backend,
                model,
                batch,
                repeats,
                |r| {
                    let share = match (&peak, backend.is_cpu()) {
                        (Some(p), true) => {
                            format!("{:.1}", 100.0 * r.gflops_per_second / p.gflops_per_second)
                        }
                        _ => "-".into(),
                    };
                    println!(
                        "{:<8} {:<15} {:<22} {:>5} {:<12} {:>10.2} {:>9.1} {:>7}",
                        r.backend,
                        r.model,
                        r.layer,
                        r.count,
                        r.direction,
                        r.median_ms,
                        r.gflops_per_second,
                        share
                    );
                },
            )?);
        }
    }
    if let Some(path) = json {
        write_results(
            &path,
            &serde_json::json!({ "fma_peak": peak, "layers": rows }),
        )?;
    }
    Ok(())
}

/// The model and images of `bulwark bench eval`.
pub(super) struct EvalData {
    pub model: String,
    pub weights: PathBuf,
    pub dataset: String,
    pub data_dir: Option<PathBuf>,
    pub limit: usize,
}

pub(super) fn bench_eval(
    plan: &EvalBenchPlan,
    data: &EvalData,
    backend: BackendKind,
    json: Option<PathBuf>,
) -> Result<()> {
    let device = backend.device()?;
    // Weights first: a bad file is reported before any data is fetched.
    let model = load_weights(Model::init(&data.model, &device)?, &data.weights)?;
    let dir = dataset_dir(&data.dataset, &fetch_options(data.data_dir.clone()))?;
    let test = load_dataset_split(&data.dataset, &dir, Split::Test)?;
    check_input_shape(&data.model, &test, &data.dataset)?;
    let test = test.take(data.limit);
    if let Some(path) = &json {
        let mut inputs = Inputs::new();
        inputs.weights(&data.weights).data_dir(&dir);
        inputs.refuse(path, "--json")?;
    }
    println!(
        "{} on {} test ({} images), {backend}, {} eps {}, batch {}",
        data.model,
        data.dataset,
        test.len(),
        plan.norm,
        plan.eps,
        plan.batch
    );
    println!(
        "{:<10} {:>10} {:>22} {:>8} {:>8} {:>9} {:>9}",
        "workload", "median s", "range (s)", "repeats", "img/s", "clean %", "robust %"
    );
    let rows = bulwark_trainer::bench_evaluation(&model, &test, plan, &device, |r| {
        println!(
            "{:<10} {:>10.2} {:>10.2} – {:<9.2} {:>8} {:>8.1} {:>9.2} {:>9.2}",
            r.workload,
            r.median_seconds,
            r.min_seconds,
            r.max_seconds,
            r.repeats,
            r.images_per_second,
            r.clean_accuracy,
            r.robust_accuracy
        );
    })?;
    if let Some(path) = json {
        write_results(&path, &rows)?;
    }
    Ok(())
}

/// Writes a benchmark's results as JSON to `path` (its directory created, the file replaced
/// atomically) and says where.
fn write_results(path: &std::path::Path, results: &impl serde::Serialize) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(path, &serde_json::to_vec_pretty(results)?)?;
    println!("results: {}", path.display());
    Ok(())
}
