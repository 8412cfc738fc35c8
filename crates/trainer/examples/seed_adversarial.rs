//! The seed project's adversarial example, made real: its CNN (`seed-net`, 3x32x32 inputs, the
//! PyTorch CIFAR-10 tutorial network) trained with "cross-entropy plus an adversarial term" —
//! `0.5·CE(f(x), y) + 0.5·CE(f(x'), y)` with `x'` from PGD-10 (the trainer's `pgd-at` method with
//! `adv_weight = 0.5`, Goodfellow et al.'s mixed objective) — next to the same network trained
//! with cross-entropy alone, both then attacked with PGD-20 on test images.
//!
//! Data: CIFAR-10 when its binary version is found (pass its folder as the first argument, or set
//! `BULWARK_CIFAR10_DIR`; CIFAR-10 cannot be downloaded here, see docs/data.md), at eps 8/255.
//! Otherwise real MNIST digits brought to the network's input shape: each 28x28 image padded by 2
//! black pixels on every side to 32x32 and its grey channel repeated three times, at eps 0.1. The
//! program says which it used.
//!
//! Run: `cargo run -p bulwark-trainer --example seed_adversarial [-- /path/to/cifar-10-batches-bin]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use bulwark_attack_core::{Attack, AttackOptions, PgdConfig, ThreatModel};
use bulwark_data::{DatasetKind, FetchOptions, ImageDataset, Split, cifar, fetch, load_split};
use bulwark_models::Model;
use bulwark_trainer::{
    BackendKind, DeviceSet, FitOptions, Method, OptimizerKind, Schedule, TrainConfig, fit,
};
use burn::module::Module;

/// MNIST as 3x32x32: 2-pixel black border, grey value in all three channels.
fn as_rgb32(d: &ImageDataset) -> Result<ImageDataset> {
    let (h, w) = (d.height + 4, d.width + 4);
    let mut images = Vec::with_capacity(d.len() * 3 * h * w);
    for i in 0..d.len() {
        let src = d.image(i);
        let mut plane = vec![0u8; h * w];
        for r in 0..d.height {
            plane[(r + 2) * w + 2..(r + 2) * w + 2 + d.width]
                .copy_from_slice(&src[r * d.width..(r + 1) * d.width]);
        }
        for _ in 0..3 {
            images.extend_from_slice(&plane);
        }
    }
    Ok(ImageDataset::new(
        images,
        d.labels.clone(),
        3,
        h,
        w,
        d.num_classes,
    )?)
}

/// (train, test, eps, description).
fn data() -> Result<(ImageDataset, ImageDataset, f64, String)> {
    let cifar_dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("BULWARK_CIFAR10_DIR").map(PathBuf::from));
    if let Some(dir) = cifar_dir {
        let opts = FetchOptions {
            data_dir: Some(dir),
            ..FetchOptions::from_env()
        };
        let found = cifar::fetch_cifar10(&opts)?;
        let train = cifar::load_cifar10(&found, Split::Train)?;
        let test = cifar::load_cifar10(&found, Split::Test)?;
        return Ok((train, test, 8.0 / 255.0, "CIFAR-10".into()));
    }
    let dir = fetch(DatasetKind::Mnist, &FetchOptions::from_env())
        .context("MNIST is needed when no CIFAR-10 folder is given")?;
    let train = as_rgb32(&load_split(DatasetKind::Mnist, Split::Train, &dir)?)?;
    let test = as_rgb32(&load_split(DatasetKind::Mnist, Split::Test, &dir)?)?;
    Ok((
        train,
        test,
        0.1,
        "MNIST padded to 32x32 with the grey channel repeated (no CIFAR-10 folder given)".into(),
    ))
}

fn pgd20_accuracy(model: &Model, test: &ImageDataset, eps: f64) -> Result<(f64, f64)> {
    let device = DeviceSet::single(BackendKind::Flex)?.main().clone().inner();
    let pgd = PgdConfig::new(ThreatModel::linf(eps))
        .with_steps(20)
        .with_options(AttackOptions::new().with_random_start(true))
        .init()?;
    let eval = model.valid();
    let (mut clean, mut robust) = (0, 0);
    let all: Vec<usize> = (0..test.len()).collect();
    for idx in all.chunks(500) {
        let (x, y) = test.batch(idx, &device);
        let hits = |logits: burn::tensor::Tensor<2>| {
            logits
                .argmax(1)
                .flatten::<1>(0, 1)
                .equal(y.clone())
                .int()
                .sum()
                .into_scalar::<i64>() as usize
        };
        clean += hits(eval.forward(x.clone()));
        robust += hits(eval.forward(pgd.perturb(model, x, y.clone())?));
    }
    let n = test.len() as f64;
    Ok((clean as f64 / n, robust as f64 / n))
}

fn main() -> Result<()> {
    let (train, test, eps, what) = data()?;
    // Small enough to finish in a few minutes on 2 CPU cores.
    let train = train.take(20_000);
    let test = test.take(2_000);
    let (train, valid) = train.split(2_000, 0)?;
    println!(
        "data: {what}; {} train / {} valid / {} test images, eps {eps:.4}",
        train.len(),
        valid.len(),
        test.len()
    );
    let devices = DeviceSet::single(BackendKind::Flex)?;
    let base = TrainConfig::new()
        .with_model("seed-net".into())
        .with_epochs(4)
        .with_batch_size(64)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_schedule(Schedule::OneCycle { peak_at: 0.4 })
        .with_robust_valid_size(500);
    let adversarial = base
        .clone()
        .with_method(Method::PgdAt {
            eps,
            steps: 10,
            step_size: None,
            random_start: true,
        })
        .with_adv_weight(0.5);
    for (name, cfg) in [
        ("cross-entropy only", base),
        ("cross-entropy + adversarial", adversarial),
    ] {
        let dir = tempfile::tempdir()?;
        let out = fit(
            &cfg,
            &train,
            &valid,
            &devices,
            &FitOptions {
                run_dir: dir.path().to_path_buf(),
                resume: false,
                progress: false,
                stop_after_epoch: None,
            },
        )?;
        println!("\n{name}:");
        for m in &out.history {
            println!(
                "  epoch {}: train loss {:.4}, valid acc {:.2} %{}",
                m.epoch,
                m.train_loss,
                100.0 * m.valid_acc,
                m.valid_robust_acc
                    .map(|r| format!(", valid PGD-10 acc {:.2} %", 100.0 * r))
                    .unwrap_or_default()
            );
        }
        let (clean, robust) = pgd20_accuracy(&out.model, &test, eps)?;
        println!(
            "  test: clean {:.2} %, PGD-20 (eps {eps:.4}) {:.2} %",
            100.0 * clean,
            100.0 * robust
        );
    }
    Ok(())
}
