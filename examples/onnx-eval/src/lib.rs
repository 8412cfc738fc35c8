//! A PyTorch model, exported to ONNX, evaluated by Bulwark.
//!
//! `build.rs` runs burn-onnx on `model/small-cnn.onnx` (made by `scripts/export_onnx.py` from the
//! PyTorch definition of Bulwark's `small-cnn`); [`small_cnn`] is the generated burn module.
//! Implementing [`Network`] for it — one `forward` — is all Bulwark needs: its attacks, the
//! evaluator and the trainer then take it like any other network.
//!
//! ```no_run
//! use bulwark_attack_core::Network;
//! use bulwark_example_onnx::load;
//! let device = burn::tensor::Device::flex();
//! let model = load(&device);
//! let x = burn::tensor::Tensor::<4>::zeros([2, 1, 28, 28], &device);
//! let logits = model.classifier();
//! # let _ = (logits, x);
//! ```

use bulwark_attack_core::{Classifier, Network, Norm, Preset};
use bulwark_data::ImageDataset;
use bulwark_eval::{
    EvalError, RobustEvalConfig, RobustEvalOptions, RobustReport, evaluate_robustness,
};
use burn::tensor::{Device, Tensor};

/// The code burn-onnx generated from `model/small-cnn.onnx`.
#[allow(missing_docs, clippy::all)]
pub mod small_cnn {
    include!(concat!(env!("OUT_DIR"), "/model/small-cnn.rs"));
}

/// The ONNX model's input: one 28x28 grey image in [0, 1] per row.
pub const INPUT_SHAPE: [usize; 3] = [1, 28, 28];

impl Network for small_cnn::Model {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        small_cnn::Model::forward(self, x)
    }

    fn architecture(&self) -> String {
        "small-cnn (ONNX)".into()
    }
}

/// The generated model with the weights burn-onnx wrote at build time.
pub fn load(device: &Device) -> small_cnn::Model {
    small_cnn::Model::from_file(concat!(env!("OUT_DIR"), "/model/small-cnn.bpk"), device)
}

/// Bulwark's robustness evaluation of `model` on `data`: the quick preset (APGD-CE, then APGD-T on
/// 3 targets) at L-inf eps 0.1, with `probe_size` images for the black-box probe. The evaluator's
/// files go to a scratch folder named after `name`, removed afterwards.
pub fn quick_robustness(
    model: &impl Classifier<4>,
    data: &ImageDataset,
    probe_size: usize,
    progress: bool,
    name: &str,
) -> Result<RobustReport, EvalError> {
    let mut config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0);
    config.probe_size = probe_size;
    let out = std::env::temp_dir().join(format!("bulwark-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let report = evaluate_robustness(
        model,
        data,
        &config,
        &RobustEvalOptions {
            progress,
            resume: false,
            identity: name.into(),
            examples: 0,
            others: Vec::new(),
            report: None,
            verified: None,
        },
        &out,
        &Device::flex(),
    );
    let _ = std::fs::remove_dir_all(&out);
    report
}
