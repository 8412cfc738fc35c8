//! Spectral normalization as a constraint: a per-layer bound on the largest singular value (the
//! layer's Lipschitz constant for linear layers), estimated by power iteration with persistent
//! vectors (Miyato et al. 2018) and enforced after each optimizer step by rescaling.
//!
//! The matrix is the weight as `[outputs, fan_in]` (burn's `Linear` weight transposed; a
//! convolution's kernel reshaped, as in Miyato et al. — a bound on that matrix, not on the
//! convolution operator). Each call runs `iterations` power steps starting from the vector kept
//! from the previous call, so the estimate converges over training at one step per call, as in
//! SN-GAN. Power iteration approaches σ from below: the bound holds up to the estimate's error
//! (tested after repeated calls).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

use bulwark_attack_core::rng::{SplitMix64, fnv1a};

use crate::error::{RegError, invalid};
use crate::select::{LayerKind, ParamSelection, PathStack, restore_tracking};

/// Keeps the largest singular value of each selected weight at most `max`. Covers matrix-shaped
/// parameters only (1-D parameters in the selection are left alone). The kept vectors are keyed by
/// parameter path; a vector of the wrong length (another model) or one that collapsed to zero (a
/// zero weight) starts again from a pseudo-random vector.
#[derive(Debug, Clone)]
pub struct SpectralBound {
    /// The bound on σ_max (> 0).
    pub max: f64,
    /// Power-iteration steps per call (≥ 1).
    pub iterations: usize,
    /// The parameters it covers (default: every weight).
    pub selection: ParamSelection,
    vectors: HashMap<String, Vec<f64>>,
    sigmas: HashMap<String, f64>,
}

impl SpectralBound {
    /// A bound of `max` on every weight, one power step per call.
    pub fn new(max: f64) -> Self {
        Self {
            max,
            iterations: 1,
            selection: ParamSelection::weights(),
            vectors: HashMap::new(),
            sigmas: HashMap::new(),
        }
    }

    /// The last σ_max estimate per parameter path (before rescaling).
    pub fn sigmas(&self) -> &HashMap<String, f64> {
        &self.sigmas
    }

    /// The kept power-iteration vectors per parameter path (save them with a checkpoint so that a
    /// resumed run continues the same estimates).
    pub fn vectors(&self) -> &HashMap<String, Vec<f64>> {
        &self.vectors
    }

    /// Replaces the kept vectors (from [`SpectralBound::vectors`] of an earlier run). A vector of
    /// the wrong length is reseeded on use, as for any other model.
    pub fn set_vectors(&mut self, vectors: HashMap<String, Vec<f64>>) {
        self.vectors = vectors;
    }

    /// Estimates σ_max of each selected weight and rescales those above the bound.
    pub fn apply<M: Module>(&mut self, model: M) -> Result<M, RegError> {
        if !(self.max.is_finite() && self.max > 0.0) {
            return Err(invalid("max", self.max, "must be finite and > 0"));
        }
        if self.iterations == 0 {
            return Err(invalid("iterations", 0, "must be >= 1"));
        }
        self.selection.resolve(&model)?;
        let mut m = Mapper {
            bound: self,
            stack: PathStack::default(),
        };
        Ok(model.map(&mut m))
    }
}

struct Mapper<'a> {
    bound: &'a mut SpectralBound,
    stack: PathStack,
}

/// σ_max of the row-major `rows × cols` matrix `a` by `iterations` power steps from `u`
/// (updated in place).
pub(crate) fn power_iteration(
    a: &[f64],
    rows: usize,
    cols: usize,
    u: &mut [f64],
    iterations: usize,
) -> f64 {
    let norm = |v: &mut [f64]| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        n
    };
    let mut sigma = 0.0;
    for _ in 0..iterations {
        let mut v: Vec<f64> = (0..cols)
            .map(|j| (0..rows).map(|i| a[i * cols + j] * u[i]).sum())
            .collect();
        norm(&mut v);
        for (i, ui) in u.iter_mut().enumerate() {
            *ui = (0..cols).map(|j| a[i * cols + j] * v[j]).sum();
        }
        sigma = norm(u);
    }
    sigma
}

impl ModuleMapper for Mapper<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let info = self.stack.param();
        let (path, layer) = (info.path.clone(), info.layer);
        if D < 2 || !self.bound.selection.covers(&info) {
            return param;
        }
        let (max, iterations) = (self.bound.max, self.bound.iterations);
        let vectors = &mut self.bound.vectors;
        let sigmas = &mut self.bound.sigmas;
        param.map(|t| {
            let tracking = (t.is_autodiff(), t.is_require_grad());
            let w = t.inner();
            let dims = w.dims();
            let values: Vec<f64> = w
                .clone()
                .try_into_vec_as::<f32>()
                .expect("float parameters read back as f32")
                .into_iter()
                .map(f64::from)
                .collect();
            // Rows are output units.
            let (rows, cols, a) = if layer == LayerKind::Linear && D == 2 {
                let (i, o) = (dims[0], dims[1]);
                let mut a = vec![0.0; i * o];
                for r in 0..i {
                    for c in 0..o {
                        a[c * i + r] = values[r * o + c];
                    }
                }
                (o, i, a)
            } else {
                (
                    dims[0],
                    values.len().checked_div(dims[0]).unwrap_or(0),
                    values,
                )
            };
            if rows == 0 || cols == 0 {
                return restore_tracking(w, tracking);
            }
            // A kept vector of another length (the same path in another model) starts over.
            let u = vectors.entry(path.clone()).or_default();
            if u.len() != rows {
                *u = start_vector(&path, rows);
            }
            let mut sigma = power_iteration(&a, rows, cols, u, iterations);
            if sigma == 0.0 || !sigma.is_finite() {
                // A zero (or non-finite) vector would stay zero forever: start again from a
                // pseudo-random one (σ stays 0 only if the matrix is 0).
                *u = start_vector(&format!("{path}#{}", rows + cols), rows);
                sigma = power_iteration(&a, rows, cols, u, iterations);
                if !sigma.is_finite() {
                    sigma = 0.0;
                }
            }
            if u.iter().all(|&x| x == 0.0) {
                *u = start_vector(&path, rows);
            }
            sigmas.insert(path.clone(), sigma);
            let out = if sigma > max { w * (max / sigma) } else { w };
            restore_tracking(out, tracking)
        })
    }
}

/// A unit vector of length `n` with pseudo-random entries derived from `key` (deterministic).
fn start_vector(key: &str, n: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(fnv1a(key.bytes()));
    let mut v: Vec<f64> = (0..n).map(|_| rng.uniform() - 0.5).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
