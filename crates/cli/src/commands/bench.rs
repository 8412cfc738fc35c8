//! `bulwark bench throughput`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bulwark_data::{DatasetKind, Split, load_split};
use bulwark_eval::write_atomic;
use bulwark_trainer::BenchPlan;

use crate::guard::Inputs;

pub(super) fn bench(
    plan: &BenchPlan,
    data_dir: Option<PathBuf>,
    json: Option<PathBuf>,
) -> Result<()> {
    // Real MNIST images: the committed test slice unless a directory is given.
    let dir = data_dir.unwrap_or_else(|| PathBuf::from("crates/data/tests/fixtures/mnist"));
    let images = load_split(DatasetKind::Mnist, Split::Test, &dir)
        .with_context(|| format!("benchmark images from {}", dir.display()))?;
    if let Some(path) = &json {
        Inputs::new().data_dir(&dir).refuse(path, "--json")?;
    }
    println!(
        "{:<8} {:<10} {:<12} {:>12} {:>24} {:>8} {:>12} {:>9}",
        "backend",
        "model",
        "workload",
        "median img/s",
        "range (img/s)",
        "repeats",
        "FLOP/image",
        "GFLOP/s"
    );
    let rows = bulwark_trainer::bench_throughput(&images, plan, |r| {
        let unit = if r.model == "-" { " (matmuls/s)" } else { "" };
        println!(
            "{:<8} {:<10} {:<12} {:>12.1} {:>11.1} – {:<10.1} {:>8} {:>12.3e} {:>9.1}{unit}",
            r.backend,
            r.model,
            r.workload,
            r.median_images_per_second,
            r.min_images_per_second,
            r.max_images_per_second,
            r.repeats,
            r.flops_per_image,
            r.gflops_per_second,
        );
    })?;
    if let Some(path) = json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&path, &serde_json::to_vec_pretty(&rows)?)?;
        println!("results: {}", path.display());
    }
    Ok(())
}
