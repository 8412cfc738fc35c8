//! WideResNet against PyTorch (`scripts/wrn_fixtures.py` from `scripts/torch_zoo.py`): a WRN-10-1
//! state dict saved by PyTorch reproduces PyTorch's logits; WRN-28-10 and WRN-34-10 have the
//! leaderboard's state-dict keys, shapes and parameter counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulwark_attack_core::Network;
use bulwark_models::{ArchOptions, Model, WideResNetConfig, torch};
use burn::prelude::*;
use burn::tensor::TensorData;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("wrn.json")).unwrap()).unwrap()
}

#[test]
fn a_pytorch_wrn_state_dict_gives_pytorchs_logits() {
    let device = Device::flex();
    let net = WideResNetConfig::new()
        .with_depth(10)
        .with_widen_factor(1)
        .init(&device);
    assert_eq!(Network::architecture(&net), "wrn-10-1");
    let net = torch::load_safetensors(net, &fixtures().join("wrn-10-1.safetensors")).unwrap();
    let per = 3 * 32 * 32;
    let x: Vec<f32> = (0..2 * per)
        .map(|i| ((i * 37) % 101) as f32 / 100.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 32, 32]), &device);
    let got: Vec<f32> = net.valid().forward(x).into_data().try_to_vec().unwrap();
    let want: Vec<f64> = expected()["wrn-10-1"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "largest logit difference {worst:e}");
    // And back out with the same keys PyTorch wrote (plus nothing else).
    let bytes = torch::to_safetensors_bytes(&net);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ours: std::collections::BTreeSet<String> = file.names().into_iter().cloned().collect();
    let theirs_bytes = std::fs::read(fixtures().join("wrn-10-1.safetensors")).unwrap();
    let theirs = safetensors::SafeTensors::deserialize(&theirs_bytes).unwrap();
    let theirs: std::collections::BTreeSet<String> = theirs.names().into_iter().cloned().collect();
    assert_eq!(ours, theirs);
}

#[test]
fn the_zoo_wrns_have_the_leaderboard_layout() {
    let device = Device::flex();
    let layouts = &expected()["layouts"];
    for name in ["wrn-28-10", "wrn-34-10"] {
        let want: BTreeMap<String, Vec<usize>> = layouts[name]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|kv| !kv[0].as_str().unwrap().ends_with("num_batches_tracked"))
            .map(|kv| {
                let shape = kv[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize);
                (kv[0].as_str().unwrap().to_string(), shape.collect())
            })
            .collect();
        // Built lazily: the layout is read without drawing 36-46 million weights.
        let model = Model::build(name, &device).unwrap();
        let got: BTreeMap<String, Vec<usize>> =
            torch::state_dict_shapes(&model).into_iter().collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(
            torch::trainable_parameter_count(&model) as u64,
            layouts[name]["trainable_parameters"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(model.name(), name);
        assert_eq!(model.architecture(), name);
    }
}

#[test]
fn dropout_and_drop_path_are_options_of_the_wrns_only() {
    let device = Device::flex();
    let opts = ArchOptions {
        dropout: 0.3,
        drop_path: 0.1,
    };
    assert!(Model::build_with("wrn-28-10", &opts, &device).is_ok());
    let e = Model::build_with("small-cnn", &opts, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("small-cnn") && e.contains("no dropout layers") && e.contains("wrn-28-10"),
        "{e}"
    );
    let bad = ArchOptions {
        dropout: 1.0,
        drop_path: 0.0,
    };
    let e = Model::build_with("wrn-28-10", &bad, &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dropout must be in [0, 1)"), "{e}");
    assert!(WideResNetConfig::new().with_depth(12).validate().is_err());
}

#[test]
fn dropout_and_drop_path_act_in_training_only() {
    let device = Device::flex();
    let cfg = WideResNetConfig::new()
        .with_depth(10)
        .with_widen_factor(1)
        .with_dropout(0.5)
        .with_drop_path(0.5);
    let net = bulwark_models::init_seeded_with(&device.clone().autodiff(), 1, |d| cfg.init(d));
    let x = Tensor::<4>::full([4, 3, 32, 32], 0.5, &device);
    let eval = || net.valid().forward(x.clone()).into_data();
    assert_eq!(eval(), eval(), "inference is deterministic");
    let train = |seed| {
        bulwark_models::with_seeded_device(&device, seed, || {
            net.clone()
                .no_grad()
                .forward(x.clone().autodiff())
                .inner()
                .into_data()
        })
    };
    assert_eq!(train(3), train(3), "a seed fixes the masks");
    assert_ne!(train(3), train(4), "the masks are random");
    assert_ne!(train(3), eval(), "training draws masks");
}
