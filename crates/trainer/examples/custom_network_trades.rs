//! Your own burn module, trained with TRADES and evaluated, end to end: the whole program a user
//! writes to use Bulwark with a network of their own.
//!
//! 1. define a burn `Module` (here with BatchNorm and dropout) and implement
//!    `bulwark_attack_core::Network` for it (one method: `forward`);
//! 2. train it with [`fit_network`] (TRADES at L-inf eps 0.1, robust validation, checkpoints in
//!    `runs/example-custom-trades/`, resumable with `--resume`);
//! 3. measure its robust accuracy with the evaluator's quick preset (APGD-CE, APGD-T).
//!
//! Data: the first 10,000 MNIST training images (1,000 held out for validation) and the first
//! 1,000 test images, obtained through Bulwark's fetch chain.
//!
//! Run: `cargo run -p bulwark-trainer --example custom_network_trades [-- --resume]`

use std::path::PathBuf;

use anyhow::Result;
use bulwark_attack_core::{Network, Norm, Preset};
use bulwark_data::{DatasetKind, FetchOptions, Split, fetch, load_split};
use bulwark_eval::{RobustEvalConfig, RobustEvalOptions, evaluate, evaluate_robustness};
use bulwark_trainer::{
    BackendKind, DeviceSet, FitOptions, Method, OptimizerKind, Schedule, TrainConfig, fit_network,
};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};

/// Two strided convolutions (the second after BatchNorm), dropout, a linear head.
#[derive(Module, Debug)]
struct MyNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    dropout: Dropout,
    fc: Linear,
    relu: Relu,
}

impl MyNet {
    /// The architecture on `device`, weights drawn lazily (the trainer seeds them).
    fn new(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 16),
            bn1: BatchNormConfig::new(16).init(device),
            conv2: conv(16, 32),
            dropout: DropoutConfig::new(0.1).init(),
            fc: LinearConfig::new(32 * 7 * 7, 10).init(device),
            relu: Relu::new(),
        }
    }
}

impl Network for MyNet {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        let x = self.relu.forward(self.conv2.forward(x));
        self.fc.forward(self.dropout.forward(x.flatten::<2>(1, 3)))
    }
}

fn main() -> Result<()> {
    let resume = std::env::args().any(|a| a == "--resume");
    let dir = fetch(DatasetKind::Mnist, &FetchOptions::from_env())?;
    let (train, valid) = load_split(DatasetKind::Mnist, Split::Train, &dir)?
        .take(10_000)
        .split(1_000, 0)?;
    let test = load_split(DatasetKind::Mnist, Split::Test, &dir)?.take(1_000);

    let cfg = TrainConfig::new()
        // The name the checkpoint and report record for this architecture.
        .with_model("my-net".into())
        .with_epochs(5)
        .with_batch_size(100)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_schedule(Schedule::OneCycle { peak_at: 0.4 })
        .with_method(Method::Trades {
            eps: 0.1,
            steps: 5,
            step_size: None,
            beta: 6.0,
        })
        .with_robust_valid_size(500)
        .with_seed(0);
    let devices = DeviceSet::single(BackendKind::Flex)?;
    let run_dir = PathBuf::from("runs/example-custom-trades");
    println!(
        "training my-net (TRADES, eps 0.1, 5 epochs) on {} MNIST images into {}",
        train.len(),
        run_dir.display()
    );
    let outcome = fit_network(
        &cfg,
        &MyNet::new,
        &train,
        &valid,
        &devices,
        &FitOptions {
            run_dir: run_dir.clone(),
            resume,
            progress: true,
            stop_after_epoch: None,
        },
    )?;
    for m in &outcome.history {
        println!(
            "epoch {}: train loss {:.4}, valid acc {:.2}%, PGD valid acc {:.2}%",
            m.epoch,
            m.train_loss,
            100.0 * m.valid_acc,
            100.0 * m.valid_robust_acc.unwrap_or_default()
        );
    }

    let device = devices.main().clone().inner();
    let model = outcome.model.classifier();
    let clean = evaluate(&model, &test, 500, &device);
    let config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0);
    // A rerun with --resume after a finished run continues (or repeats) the same evaluation.
    let out = run_dir.join("eval");
    let report = evaluate_robustness(
        &model,
        &test,
        &config,
        &RobustEvalOptions {
            progress: true,
            resume: out.join("eval-state").is_dir(),
            identity: "example my-net".into(),
            examples: 0,
            others: Vec::new(),
            report: None,
            verified: None,
        },
        &out,
        &device,
    )?;
    println!(
        "test (first {} images): clean {:.2}%, robust {:.2}% (quick preset, L-inf eps 0.1), flags: {}",
        test.len(),
        100.0 * clean.accuracy,
        100.0 * report.robust_acc,
        {
            let raised: Vec<&str> = report
                .flags
                .iter()
                .filter(|f| f.raised())
                .map(|f| f.check.as_str())
                .collect();
            if raised.is_empty() {
                "none raised".to_string()
            } else {
                raised.join(", ")
            }
        }
    );
    Ok(())
}
