//! Weights in and out as safetensors in PyTorch's layout.
//!
//! A file written here loads with `model.load_state_dict(safetensors.torch.load_file(path))` into
//! the PyTorch definitions in `docs/models.md`, and a state dict saved from those definitions with
//! `safetensors.torch.save_file` loads here. Two layout differences are handled:
//! - burn's `Linear` stores its weight as `[in, out]`; PyTorch as `[out, in]`: transposed both ways.
//! - burn's `BatchNorm` calls its affine parameters `gamma`/`beta`; PyTorch `weight`/`bias`.
//!   PyTorch's `num_batches_tracked` counter has no burn counterpart: it is written as an `I64`
//!   scalar 0 (only used by PyTorch when `momentum=None`) and ignored when loading.
//!
//! Loading checks every expected tensor in module order and reports the **first** mismatch
//! (missing name, wrong shape, unsupported dtype, unexpected extra tensor, non-finite values).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use bulwark_attack_core::Network;

use crate::ModelError;

/// One tensor of a PyTorch state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// State-dict key, e.g. `5.weight`.
    pub key: String,
    /// Shape in PyTorch's layout.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Where a burn parameter sits and what its PyTorch counterpart is called.
struct Slot {
    key: String,
    /// burn stores this parameter transposed relative to PyTorch (Linear weights).
    transposed: bool,
    is_batchnorm: bool,
}

/// Tracks the module path during a visit or map; shared by reading and writing.
#[derive(Default)]
struct PathTracker {
    names: Vec<String>,
    containers: Vec<String>,
}

impl PathTracker {
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }
    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }
    fn slot(&self, net: &impl Network) -> Slot {
        let path = &self.names;
        let container = self.containers.last().map_or("", String::as_str);
        let is_linear_weight =
            container.ends_with(":Linear") && path.last().is_some_and(|p| p == "weight");
        Slot {
            key: net.state_dict_key(path, container),
            transposed: is_linear_weight,
            is_batchnorm: container.ends_with(":BatchNorm"),
        }
    }
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// One tensor found while walking a model, in PyTorch's naming and layout.
struct Entry {
    tensor: TorchTensor,
    /// Owned by a BatchNorm layer.
    is_batchnorm: bool,
    /// A buffer (BatchNorm running statistic), not a trainable parameter.
    is_buffer: bool,
}

/// Walks a model's float tensors in module order; reads their values only when asked, so that
/// names and shapes never draw lazily initialized weights.
struct Walker<'a, M> {
    net: &'a M,
    path: PathTracker,
    read_values: bool,
    out: Vec<Entry>,
}

impl<M: Network> ModuleVisitor for Walker<'_, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let slot = self.path.slot(self.net);
        let mut shape = param.lazy_shape().to_vec();
        let mut data = Vec::new();
        if self.read_values {
            data = param
                .val()
                .inner()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("converted to f32 just above");
        }
        if slot.transposed {
            let (rows, cols) = (shape[0], shape[1]);
            if self.read_values {
                data = transpose(&data, rows, cols);
            }
            shape = vec![cols, rows];
        }
        let is_buffer = self
            .path
            .names
            .last()
            .is_some_and(|n| n.starts_with("running_"));
        self.out.push(Entry {
            tensor: TorchTensor {
                key: slot.key,
                shape,
                data,
            },
            is_batchnorm: slot.is_batchnorm,
            is_buffer,
        });
    }
}

fn walk<M: Network>(model: &M, read_values: bool) -> Vec<Entry> {
    if read_values {
        model.sync_running_stats();
    }
    let mut w = Walker {
        net: model,
        path: PathTracker::default(),
        read_values,
        out: Vec::new(),
    };
    model.visit(&mut w);
    w.out
}

/// Key and PyTorch shape of every tensor the model expects (no values), in module order.
fn expected_tensors<M: Network>(model: &M) -> Vec<TorchTensor> {
    walk(model, false).into_iter().map(|e| e.tensor).collect()
}

/// Key and PyTorch shape of every parameter and buffer, in module order, without reading (or
/// drawing lazily initialized) values. BatchNorm's `num_batches_tracked` counters, which only
/// files hold, are not listed.
pub fn state_dict_shapes<M: Network>(model: &M) -> Vec<(String, Vec<usize>)> {
    expected_tensors(model)
        .into_iter()
        .map(|t| (t.key, t.shape))
        .collect()
}

/// The model's parameters and buffers as a PyTorch state dict, in module order.
///
/// BatchNorm layers contribute `running_mean`/`running_var` (and `num_batches_tracked` when
/// written to a file).
pub fn state_dict<M: Network>(model: &M) -> Vec<TorchTensor> {
    walk(model, true).into_iter().map(|e| e.tensor).collect()
}

/// Counts trainable parameters as PyTorch's `sum(p.numel() for p in model.parameters())` does:
/// BatchNorm running statistics are buffers, not parameters (burn's `num_params` counts them).
pub fn trainable_parameter_count<M: Network>(model: &M) -> usize {
    walk(model, false)
        .iter()
        .filter(|e| !e.is_buffer)
        .map(|e| e.tensor.shape.iter().product::<usize>())
        .sum()
}

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Serializes the model as a PyTorch-layout safetensors file in memory.
pub fn to_safetensors_bytes<M: Network>(model: &M) -> Vec<u8> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut bn_prefixes = Vec::new();
    for e in walk(model, true) {
        let t = e.tensor;
        if e.is_batchnorm
            && let Some(prefix) = t.key.strip_suffix(".running_var")
        {
            bn_prefixes.push(prefix.to_string());
        }
        owned.push((t.key, Dtype::F32, t.shape, f32_bytes(&t.data)));
    }
    for prefix in bn_prefixes {
        owned.push((
            format!("{prefix}.num_batches_tracked"),
            Dtype::I64,
            vec![],
            0i64.to_le_bytes().to_vec(),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes)
                .expect("shape and byte count come from the same tensor");
            (k.clone(), view)
        })
        .collect();
    let metadata: HashMap<String, String> = [
        ("format".to_string(), "pt".to_string()),
        ("bulwark_model".to_string(), model.architecture()),
    ]
    .into();
    let bytes =
        safetensors::serialize(views, &Some(metadata)).expect("serializing in-memory views");
    canonical_header(bytes)
}

/// The JSON header of a safetensors file written with its keys in sorted order.
///
/// `safetensors::serialize` writes the `__metadata__` map in `HashMap` order, which changes from
/// run to run, so the same tensors gave different bytes. Tensors are located by their
/// `data_offsets`, not by the order of the header's keys, so sorting them changes nothing a reader
/// sees; the data section is kept byte for byte.
fn canonical_header(bytes: Vec<u8>) -> Vec<u8> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Header {
        #[serde(
            rename = "__metadata__",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        metadata: Option<BTreeMap<String, String>>,
        #[serde(flatten)]
        tensors: BTreeMap<String, serde_json::Value>,
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length prefix")) as usize;
    let header: Header =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote a valid header");
    let mut json = serde_json::to_vec(&header).expect("a header of strings and numbers");
    // The data section starts 8-byte aligned, as safetensors pads it (with spaces).
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Writes the model to `path` as PyTorch-layout safetensors, atomically (temporary file, then
/// rename): an interrupted write never leaves a half-written file under `path`.
pub fn save_safetensors<M: Network>(model: &M, path: &Path) -> Result<(), ModelError> {
    let bytes = to_safetensors_bytes(model);
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("safetensors.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()
    };
    write().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a PyTorch-layout safetensors file into `model` (whose architecture decides what is
/// expected). See the module docs for the checks.
pub fn load_safetensors<M: Network>(model: M, path: &Path) -> Result<M, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_safetensors_bytes(model, &bytes, path)
}

fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let b = view.data();
    match view.dtype() {
        Dtype::F32 => Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F64 => Some(
            b.chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Like [`load_safetensors`], from bytes; `path` only names the source in errors.
pub fn from_safetensors_bytes<M: Network>(
    model: M,
    bytes: &[u8],
    path: &Path,
) -> Result<M, ModelError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mismatch = |reason: String| ModelError::Mismatch {
        path: path.to_path_buf(),
        model: model.architecture(),
        reason,
    };
    let mut in_file: BTreeMap<String, TensorView<'_>> = file.tensors().into_iter().collect();
    let expected = expected_tensors(&model);
    // burn-layout values by torch key, ready for the mapper.
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    for t in &expected {
        let Some(view) = in_file.remove(&t.key) else {
            return Err(mismatch(format!(
                "missing tensor `{}` (expected shape {:?})",
                t.key, t.shape
            )));
        };
        if view.shape() != t.shape.as_slice() {
            return Err(mismatch(format!(
                "tensor `{}` has shape {:?}, expected {:?}",
                t.key,
                view.shape(),
                t.shape
            )));
        }
        let data = to_f32(&view).ok_or_else(|| {
            mismatch(format!(
                "tensor `{}` has dtype {:?}; only F32 and F64 are supported",
                t.key,
                view.dtype()
            ))
        })?;
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                path: path.to_path_buf(),
                tensor: t.key.clone(),
            });
        }
        values.insert(t.key.clone(), data);
    }
    // PyTorch's BatchNorm step counter has no burn counterpart.
    in_file.retain(|k, _| !k.ends_with(".num_batches_tracked"));
    if let Some(extra) = in_file.keys().next() {
        return Err(mismatch(format!(
            "unexpected tensor `{extra}` ({} unexpected in all): the file is for another architecture",
            in_file.len()
        )));
    }
    // The keys come from a handle on the same module (a clone shares the tensors' data).
    let net = model.clone();
    let mut loader = Loader {
        net: &net,
        path: PathTracker::default(),
        values,
    };
    Ok(model.map(&mut loader))
}

struct Loader<'a, M> {
    net: &'a M,
    path: PathTracker,
    values: HashMap<String, Vec<f32>>,
}

impl<M: Network> ModuleMapper for Loader<'_, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let slot = self.path.slot(self.net);
        let values = self
            .values
            .remove(&slot.key)
            .expect("every parameter was checked against the file before mapping");
        // Shape and device without drawing the (lazily initialized) weights being replaced.
        let shape = param.lazy_shape();
        let data = if slot.transposed {
            // The file holds [out, in]; burn wants [in, out].
            transpose(&values, shape[1], shape[0])
        } else {
            values
        };
        let tensor = Tensor::<D>::from_data(TensorData::new(data, shape), &param.lazy_device());
        let id = param.id;
        // Keeps the parameter's id, device and gradient setting.
        param.transform_for_load(tensor, id)
    }
}
