//! Evaluates the PyTorch model exported to ONNX (`model/small-cnn.onnx`, imported by burn-onnx at
//! build time) with Bulwark's evaluator, beside Bulwark's native `small-cnn` loaded with the same
//! weights from `model/small-cnn.safetensors`: the two must agree.
//!
//! Data: the first 1,000 MNIST test images, through Bulwark's fetch chain. Attack: the evaluator's
//! quick preset (APGD-CE, then APGD-T on 3 targets) at L-inf eps 0.1.
//!
//! Run: `cargo run -p bulwark-example-onnx --example evaluate_onnx`

use anyhow::Result;
use bulwark_attack_core::{Network, Norm, Preset};
use bulwark_data::{DatasetKind, FetchOptions, Split, fetch, load_split};
use bulwark_eval::RobustEvalConfig;
use bulwark_example_onnx::quick_robustness;
use bulwark_models::{Model, torch};
use burn::tensor::Device;

fn main() -> Result<()> {
    let device = Device::flex();
    let dir = fetch(DatasetKind::Mnist, &FetchOptions::from_env())?;
    let test = load_split(DatasetKind::Mnist, Split::Test, &dir)?.take(1_000);
    let onnx = bulwark_example_onnx::load(&device);
    let weights = concat!(env!("CARGO_MANIFEST_DIR"), "/model/small-cnn.safetensors");
    let native = torch::load_safetensors(Model::init("small-cnn", &device)?, weights.as_ref())?;
    // The quick preset's own black-box probe size.
    let probe = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0).probe_size;
    for (name, report) in [
        (
            "ONNX (burn-onnx)",
            quick_robustness(&onnx.classifier(), &test, probe, true, "onnx")?,
        ),
        (
            "native small-cnn",
            quick_robustness(&native.classifier(), &test, probe, true, "native")?,
        ),
    ] {
        println!(
            "{name:<17} clean {:.2}%  robust {:.2}% (quick preset, L-inf eps 0.1, {} MNIST test images)",
            100.0 * report.clean_acc,
            100.0 * report.robust_acc,
            report.n_examples
        );
    }
    Ok(())
}
