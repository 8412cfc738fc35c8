//! State dicts saved by PyTorch itself (`safetensors.torch.save_file` of the definitions in
//! `scripts/torch_zoo.py`, made by `scripts/check_pytorch.py fixtures`) load unchanged and
//! reproduce the logits PyTorch computed for a fixed input.

use std::path::{Path, PathBuf};

use bulwark_models::{Model, model_info, torch};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

/// `x.flat[i] = ((i * 37) % 101) / 100`, batch 2, as in the script.
fn fixed_input(shape: &[usize], device: &Device) -> Tensor<4> {
    let per: usize = shape.iter().product();
    let flat: Vec<f32> = (0..2 * per)
        .map(|i| ((i * 37) % 101) as f32 / 100.0)
        .collect();
    let dims = match *shape {
        [n] => [2, 1, 1, n],
        [c, h, w] => [2, c, h, w],
        _ => unreachable!(),
    };
    Tensor::from_data(TensorData::new(flat, dims), device)
}

#[test]
fn pytorch_saved_state_dicts_reproduce_pytorch_logits() {
    let n = check_dir(&fixtures());
    assert_eq!(n, 4);
}

/// Every zoo model, from fixtures made with `scripts/check_pytorch.py fixtures --all DIR` (too
/// large to commit): `BULWARK_TORCH_FIXTURES=DIR cargo test -p bulwark-models --test
/// pytorch_fixtures -- --ignored`.
#[test]
#[ignore = "needs fixtures made by scripts/check_pytorch.py fixtures --all"]
fn every_zoo_model_reproduces_pytorch_logits() {
    let dir = std::env::var_os("BULWARK_TORCH_FIXTURES")
        .expect("set BULWARK_TORCH_FIXTURES to the folder the script wrote");
    let n = check_dir(Path::new(&dir));
    assert_eq!(n, bulwark_models::models().len());
}

/// Loads every model listed in `dir/expected_logits.json` and compares logits; returns how many.
fn check_dir(dir: &Path) -> usize {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_logits.json")).unwrap())
            .unwrap();
    let models = expected["models"].as_object().unwrap();
    let device = Device::flex();
    for (name, logits) in models {
        let path = dir.join(format!("{name}.safetensors"));
        let model = torch::load_safetensors(Model::init(name, &device).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .valid();
        let x = fixed_input(model_info(name).unwrap().input_shape, &device);
        let got: Vec<f32> = model.forward(x).into_data().try_into_vec().unwrap();
        let want: Vec<f64> = logits
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() < 1e-4,
                "{name} logit {i}: {g} vs {w}"
            );
        }
        eprintln!("{name}: {} logits match PyTorch", got.len());
    }
    models.len()
}
