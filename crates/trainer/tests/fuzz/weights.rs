//! The weights readers on damaged files: PyTorch-layout safetensors and burn's burnpack (`.bpk`).

use std::path::Path;
use std::sync::OnceLock;

use bulwark_models::{Model, ModelError, bpk, torch};
use burn::module::Module;
use burn::tensor::Device;
use proptest::prelude::*;

use crate::alloc::peak;
use crate::mutate::{apply, config, mutation};

fn device() -> Device {
    Device::flex()
}

/// The valid files of a zoo model: safetensors and burnpack.
type Files = (Vec<u8>, Vec<u8>);

fn write_files(name: &str) -> Files {
    let model = Model::init_seeded(name, &device(), 0).unwrap();
    let st = torch::to_safetensors_bytes(&model);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.bpk");
    bpk::with_ordinal_ids(model).save_file(&path).unwrap();
    (st, std::fs::read(path).unwrap())
}

fn seed(name: &'static str) -> &'static Files {
    static MLP: OnceLock<Files> = OnceLock::new();
    static CNN: OnceLock<Files> = OnceLock::new();
    match name {
        "seed-mlp" => MLP.get_or_init(|| write_files(name)),
        "small-cnn" => CNN.get_or_init(|| write_files(name)),
        other => panic!("no seed files for {other}"),
    }
}

/// A load either gives finite weights of the whole model or an error that names the file.
fn check(result: &Result<Model, ModelError>, file: &str) -> Result<(), TestCaseError> {
    match result {
        Ok(model) => {
            let tensors = torch::state_dict(model);
            prop_assert!(!tensors.is_empty());
            prop_assert!(tensors.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(m.starts_with(file) && m.len() > file.len() + 10, "{}", m);
        }
    }
    Ok(())
}

/// What a load may allocate for a file of `len` bytes: a few copies of the weights (the file's
/// values as f32, the tensors built from them, the finiteness check's read-back) and a constant.
/// A reader that believed a damaged size field would allocate far more.
fn bound(len: usize) -> usize {
    6 * len + (2 << 20)
}

fn safetensors_case(model: &'static str, m: &crate::mutate::Mutation) -> Result<(), TestCaseError> {
    let bytes = apply(&seed(model).0, m);
    let fresh = Model::init(model, &device()).unwrap();
    let (result, used) =
        peak(|| torch::from_safetensors_bytes(fresh, &bytes, Path::new("w.safetensors")));
    check(&result, "w.safetensors")?;
    prop_assert!(
        used <= bound(bytes.len()),
        "{} bytes for a {}-byte file",
        used,
        bytes.len()
    );
    Ok(())
}

/// Through the file, as the CLI and checkpoints load it: burn's own file reader allocated the
/// metadata size a damaged header claimed (52 MB for a 5 KB file) before reading it.
fn bpk_case(model: &'static str, m: &crate::mutate::Mutation) -> Result<(), TestCaseError> {
    let bytes = apply(&seed(model).1, m);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.bpk");
    std::fs::write(&path, &bytes).unwrap();
    let fresh = Model::init(model, &device()).unwrap();
    let (result, used) = peak(|| bpk::load_bpk(fresh, &path));
    check(&result, &path.display().to_string())?;
    prop_assert!(
        used <= bound(bytes.len()),
        "{} bytes for a {}-byte file",
        used,
        bytes.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn safetensors_reader(m in mutation()) {
        safetensors_case("seed-mlp", &m)?;
    }

    #[test]
    fn burnpack_reader(m in mutation()) {
        bpk_case("seed-mlp", &m)?;
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// A convolutional model: more tensors, 4-D weights and transposed linear layers.
    #[test]
    fn safetensors_reader_small_cnn(m in mutation()) {
        safetensors_case("small-cnn", &m)?;
    }

    #[test]
    fn burnpack_reader_small_cnn(m in mutation()) {
        bpk_case("small-cnn", &m)?;
    }
}

/// The undamaged seeds load back to the weights they were written from.
#[test]
fn the_seeds_load() {
    for name in ["seed-mlp", "small-cnn"] {
        let (st, pack) = seed(name);
        let want = torch::state_dict(&Model::init_seeded(name, &device(), 0).unwrap());
        let a = torch::from_safetensors_bytes(
            Model::init(name, &device()).unwrap(),
            st,
            Path::new("w"),
        )
        .unwrap();
        let b = bpk::from_bpk_bytes(
            Model::init(name, &device()).unwrap(),
            pack.clone(),
            Path::new("w"),
        )
        .unwrap();
        assert_eq!(torch::state_dict(&a), want, "{name} safetensors");
        assert_eq!(torch::state_dict(&b), want, "{name} bpk");
    }
}
