//! Penalties: differentiable terms added to the loss, computed on the autodiff graph from the
//! selected parameters.
//!
//! | kind | term | gradient |
//! |---|---|---|
//! | `L1` | `λ·Σ|w|` | `λ·sign(w)` (0 at 0) |
//! | `L2` | `λ·Σw²` | `2λ·w` |
//! | `ElasticNet { l1_ratio: ρ }` | `λ·(ρ·Σ|w| + (1 − ρ)·Σw²)` | the mix of the two |
//! | `GroupLasso` | `λ·Σ_g ‖w_g‖₂`, one group per output unit | `λ·w_g/‖w_g‖₂` (0 for a zero group) |
//! | `Orthogonality` | `λ·‖A·Aᵀ − I‖²_F` (outputs ≤ fan-in) or `λ·‖Aᵀ·A − I‖²_F` (otherwise), `A` = weight as `[outputs, fan_in]` | `4λ·(A·Aᵀ − I)·A` or `4λ·A·(Aᵀ·A − I)` |
//!
//! Scaling: `L2` is `λ·Σw²` as Keras' `l2(λ)` (not `λ/2·Σw²`). Its gradient `2λ·w` is what
//! PyTorch's SGD `weight_decay = 2λ` adds; Keras' `l1_l2(l1=a, l2=b)` is `ElasticNet` with
//! `λ = a + b`, `ρ = a/(a + b)`. Groups and `A` follow the layer's layout: burn's `Linear` stores
//! its weight as `[inputs, outputs]` (an output unit is a column); convolutions as
//! `[out_channels, in_channels, kh, kw]` (an output unit is a filter); other parameters use their
//! first dimension; a 1-D parameter is one group. A group norm is computed as `√max(Σw², 1e-24)` so that an all-zero group has a
//! zero gradient instead of NaN.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::error::{RegError, invalid};
use crate::select::{LayerKind, ParamSelection, PathStack};

/// Which penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PenaltyKind {
    /// `λ·Σ|w|`.
    L1,
    /// `λ·Σw²`.
    L2,
    /// `λ·(ρ·Σ|w| + (1 − ρ)·Σw²)`.
    ElasticNet {
        /// The L1 share `ρ` in [0, 1].
        l1_ratio: f64,
    },
    /// `λ·Σ_g ‖w_g‖₂` over output units.
    GroupLasso,
    /// `λ·‖A·Aᵀ − I‖²_F` (the smaller Gram matrix).
    Orthogonality,
}

/// A penalty on the selected parameters of a model. In configuration files: a flat table
/// `{ kind = "l1" | "l2" | "elastic-net" | "group-lasso" | "orthogonality", lambda, l1_ratio
/// (elastic net only), select }`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(
    try_from = "crate::file::PenaltyFile",
    into = "crate::file::PenaltyFile"
)]
pub struct Penalty {
    /// Which penalty.
    pub kind: PenaltyKind,
    /// Its strength `λ ≥ 0`.
    pub lambda: f64,
    /// The parameters it covers (default: every weight, no biases or normalization layers).
    pub selection: ParamSelection,
}

impl Penalty {
    /// A penalty of `kind` with strength `lambda` on every weight.
    pub fn new(kind: PenaltyKind, lambda: f64) -> Self {
        Self {
            kind,
            lambda,
            selection: ParamSelection::weights(),
        }
    }

    /// The same penalty on another selection.
    pub fn on(mut self, selection: ParamSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Checks the settings (not the selection, which needs a model).
    pub fn validate(&self) -> Result<(), RegError> {
        if !self.lambda.is_finite() || self.lambda < 0.0 {
            return Err(invalid("lambda", self.lambda, "must be finite and >= 0"));
        }
        if let PenaltyKind::ElasticNet { l1_ratio } = self.kind
            && !(0.0..=1.0).contains(&l1_ratio)
        {
            return Err(invalid("l1_ratio", l1_ratio, "must be in [0, 1]"));
        }
        Ok(())
    }

    /// The penalty's value as a one-element tensor on the model's graph (add it to the loss
    /// before `backward()`). Errors: bad settings, a selection that matches nothing, an
    /// orthogonality penalty on a 1-D parameter.
    pub fn loss<M: Module>(&self, model: &M) -> Result<Tensor<1>, RegError> {
        self.validate()?;
        self.selection.resolve(model)?;
        let mut v = Accumulate {
            penalty: self,
            stack: PathStack::default(),
            acc: None,
            error: None,
        };
        model.visit(&mut v);
        if let Some(e) = v.error {
            return Err(e);
        }
        Ok(v.acc.expect("the selection matched at least one parameter") * self.lambda)
    }
}

struct Accumulate<'a> {
    penalty: &'a Penalty,
    stack: PathStack,
    acc: Option<Tensor<1>>,
    error: Option<RegError>,
}

/// The weight as `[units, fan_in]` rows, one per output unit.
fn unit_rows<const D: usize>(w: Tensor<D>, layer: LayerKind) -> Tensor<2> {
    let dims = w.dims();
    if D == 1 {
        return w.reshape([1, dims[0]]);
    }
    match layer {
        LayerKind::Linear if D == 2 => w.reshape([dims[0], dims[1]]).transpose(),
        _ => {
            let rest: usize = dims[1..].iter().product();
            w.reshape([dims[0], rest])
        }
    }
}

impl ModuleVisitor for Accumulate<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let info = self.stack.param();
        let (path, layer) = (info.path.clone(), info.layer);
        if self.error.is_some() || !self.penalty.selection.covers(&info) {
            return;
        }
        let w = param.val();
        let term: Tensor<1> = match self.penalty.kind {
            PenaltyKind::L1 => w.abs().sum(),
            PenaltyKind::L2 => w.square().sum(),
            PenaltyKind::ElasticNet { l1_ratio } => {
                w.clone().abs().sum() * l1_ratio + w.square().sum() * (1.0 - l1_ratio)
            }
            PenaltyKind::GroupLasso => unit_rows(w, layer)
                .square()
                .sum_dim(1)
                .clamp_min(1e-24)
                .sqrt()
                .sum(),
            PenaltyKind::Orthogonality => {
                if D < 2 {
                    self.error = Some(RegError::InvalidSetting {
                        name: "selection",
                        value: path,
                        reason: "orthogonality needs matrix-shaped parameters (a weight, not a bias or norm vector)",
                    });
                    return;
                }
                let a = unit_rows(w, layer);
                let [units, fan_in] = a.dims();
                if units == 0 || fan_in == 0 {
                    return;
                }
                let gram = if units <= fan_in {
                    a.clone().matmul(a.transpose())
                } else {
                    a.clone().transpose().matmul(a)
                };
                let n = units.min(fan_in);
                let eye = Tensor::<2>::eye(n, &gram.device());
                (gram - eye).square().sum()
            }
        };
        self.acc = Some(match self.acc.take() {
            Some(a) => a + term,
            None => term,
        });
    }
}
