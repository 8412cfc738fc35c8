//! The ONNX model against PyTorch and against Bulwark's native zoo model with the same weights.

use std::path::Path;

use bulwark_attack_core::{Classifier, Network};
use bulwark_data::{DatasetKind, FetchOptions, ImageDataset, Split, fetch, load_split};
use bulwark_example_onnx::{load, quick_robustness};
use bulwark_models::{Model, torch};
use burn::tensor::{Device, Tensor, TensorData};

fn model_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/model"))
}

#[test]
fn the_onnx_model_gives_pytorchs_logits() {
    let text = std::fs::read_to_string(model_dir().join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pixels: Vec<f32> = expected["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32 / 255.0)
        })
        .collect();
    let want: Vec<f64> = expected["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let n = pixels.len() / 784;
    assert_eq!(n, 16);
    let device = Device::flex();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, 28, 28]), &device);
    let got: Vec<f32> = load(&device)
        .classifier()
        .logits(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4,
        "largest logit difference from PyTorch: {worst:e}"
    );
}

/// Clean and robust accuracy under the quick preset (a 20-image black-box probe, for time).
fn quick(model: &impl Classifier<4>, data: &ImageDataset, name: &str) -> (f64, f64) {
    let report = quick_robustness(model, data, 20, false, name).unwrap();
    (report.clean_acc, report.robust_acc)
}

#[test]
fn the_evaluator_finds_the_same_robust_accuracy_as_for_the_native_model() {
    let device = Device::flex();
    let dir = fetch(DatasetKind::Mnist, &FetchOptions::from_env()).unwrap();
    let test = load_split(DatasetKind::Mnist, Split::Test, &dir)
        .unwrap()
        .take(500);
    let onnx = load(&device);
    let native = torch::load_safetensors(
        Model::init("small-cnn", &device).unwrap(),
        &model_dir().join("small-cnn.safetensors"),
    )
    .unwrap();
    let (onnx_clean, onnx_robust) = quick(&onnx.classifier(), &test, "onnx");
    let (native_clean, native_robust) = quick(&native.classifier(), &test, "native");
    eprintln!(
        "ONNX: clean {onnx_clean} robust {onnx_robust}; native: clean {native_clean} robust {native_robust}"
    );
    assert!(
        onnx_clean > 0.9,
        "the exported model was trained: {onnx_clean}"
    );
    assert_eq!(onnx_clean, native_clean);
    assert_eq!(onnx_robust, native_robust);
    assert!(onnx_robust < onnx_clean);
}
