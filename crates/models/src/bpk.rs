//! Weights in burn's own format (burnpack, `.bpk`), with the checks the safetensors reader makes.
//!
//! burn's reader checks the file's structure and that every tensor lands on a parameter of the
//! model. [`load_bpk`] adds the check [`crate::torch`] makes for safetensors: every value must be
//! finite, because a NaN or infinite weight cannot come out of a working training run and turns
//! every later number (losses, accuracies, robust accuracies) into NaN or nonsense.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use bulwark_attack_core::Network;

use crate::{ModelError, torch};

/// Loads a burnpack file into `model` (a freshly built model of the file's architecture).
///
/// Fails with [`ModelError::Burnpack`] when burn cannot read the file or it does not fit the
/// model, and with [`ModelError::NonFinite`], naming the first such tensor by its PyTorch key,
/// when a value is NaN or infinite.
///
/// ```
/// # use bulwark_models::{Model, bpk};
/// # let device = burn::tensor::Device::flex();
/// let dir = std::env::temp_dir().join(format!("bulwark-bpk-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("mlp.bpk");
/// use burn::module::Module;
/// Model::init_seeded("mlp", &device, 1).unwrap().save_file(&path).unwrap();
/// let model = bpk::load_bpk(Model::init("mlp", &device).unwrap(), &path).unwrap();
/// assert_eq!(model.name(), "mlp");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load_bpk<M: Network>(model: M, path: &Path) -> Result<M, ModelError> {
    // The file is read whole and parsed from memory: burn's file reader allocates the metadata
    // size the header claims (up to 100 MiB) before reading it, so a damaged 4 KiB file could
    // make it allocate 100 MiB; from memory, a size larger than the file is refused first.
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bpk_bytes(model, bytes, path)
}

/// Like [`load_bpk`], from the file's bytes; `path` only names the source in errors.
pub fn from_bpk_bytes<M: Network>(model: M, bytes: Vec<u8>, path: &Path) -> Result<M, ModelError> {
    let name = model.architecture();
    let error = |e: burn::store::RecordError| ModelError::Burnpack {
        path: path.to_path_buf(),
        model: name.clone(),
        reason: e.to_string(),
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(error)?;
    let model = model.try_load_record(record).map_err(error)?;
    check_finite(&model, path)?;
    Ok(model)
}

/// Fails with [`ModelError::NonFinite`] naming the first tensor (PyTorch key, module order) that
/// holds a NaN or an infinity; `path` names the source in the error.
pub fn check_finite<M: Network>(model: &M, path: &Path) -> Result<(), ModelError> {
    match torch::state_dict(model)
        .into_iter()
        .find(|t| t.data.iter().any(|v| !v.is_finite()))
    {
        Some(t) => Err(ModelError::NonFinite {
            path: path.to_path_buf(),
            tensor: t.key,
        }),
        None => Ok(()),
    }
}

/// The model with its parameter ids numbered 0, 1, 2, ... in module order.
///
/// A burnpack file records each parameter's id, and burn draws ids at random when a model is
/// built, so the same weights saved from two processes gave two different files. Exported
/// weights go through this so that the same tensors always give the same bytes. (A training
/// checkpoint keeps the run's own ids: its optimizer state is keyed by them.)
pub fn with_ordinal_ids<M: Module>(model: M) -> M {
    struct Renumber(u64);
    impl Renumber {
        fn next(&mut self) -> ParamId {
            self.0 += 1;
            ParamId::from(self.0 - 1)
        }
    }
    impl ModuleMapper for Renumber {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.id = self.next();
            param
        }
        fn map_int<const D: usize>(
            &mut self,
            mut param: Param<Tensor<D, Int>>,
        ) -> Param<Tensor<D, Int>> {
            param.id = self.next();
            param
        }
        fn map_bool<const D: usize>(
            &mut self,
            mut param: Param<Tensor<D, Bool>>,
        ) -> Param<Tensor<D, Bool>> {
            param.id = self.next();
            param
        }
    }
    model.map(&mut Renumber(0))
}
