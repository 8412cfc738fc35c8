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

use serde::{Deserialize, Serialize};

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
#[serde(try_from = "PenaltyFile", into = "PenaltyFile")]
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

// The configuration-file form (serde): one flat table, `kind` plus that kind's settings and an
// optional `select`; unknown or misplaced keys are refused.

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PenaltyName {
    L1,
    L2,
    ElasticNet,
    GroupLasso,
    Orthogonality,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PenaltyFile {
    kind: PenaltyName,
    lambda: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l1_ratio: Option<f64>,
    #[serde(default)]
    select: ParamSelection,
}

impl TryFrom<PenaltyFile> for Penalty {
    type Error = String;
    fn try_from(f: PenaltyFile) -> Result<Self, String> {
        let kind = match (f.kind, f.l1_ratio) {
            (PenaltyName::ElasticNet, Some(l1_ratio)) => PenaltyKind::ElasticNet { l1_ratio },
            (PenaltyName::ElasticNet, None) => {
                return Err("penalty `elastic-net` needs `l1_ratio`".into());
            }
            (other, Some(_)) => {
                return Err(format!(
                    "`l1_ratio` belongs to `elastic-net`, not to `{}`",
                    other.as_str()
                ));
            }
            (PenaltyName::L1, None) => PenaltyKind::L1,
            (PenaltyName::L2, None) => PenaltyKind::L2,
            (PenaltyName::GroupLasso, None) => PenaltyKind::GroupLasso,
            (PenaltyName::Orthogonality, None) => PenaltyKind::Orthogonality,
        };
        Ok(Penalty::new(kind, f.lambda).on(f.select))
    }
}

impl From<Penalty> for PenaltyFile {
    fn from(p: Penalty) -> Self {
        let (kind, l1_ratio) = match p.kind {
            PenaltyKind::L1 => (PenaltyName::L1, None),
            PenaltyKind::L2 => (PenaltyName::L2, None),
            PenaltyKind::ElasticNet { l1_ratio } => (PenaltyName::ElasticNet, Some(l1_ratio)),
            PenaltyKind::GroupLasso => (PenaltyName::GroupLasso, None),
            PenaltyKind::Orthogonality => (PenaltyName::Orthogonality, None),
        };
        Self {
            kind,
            lambda: p.lambda,
            l1_ratio,
            select: p.selection,
        }
    }
}

impl PenaltyName {
    fn as_str(self) -> &'static str {
        match self {
            PenaltyName::L1 => "l1",
            PenaltyName::L2 => "l2",
            PenaltyName::ElasticNet => "elastic-net",
            PenaltyName::GroupLasso => "group-lasso",
            PenaltyName::Orthogonality => "orthogonality",
        }
    }
}

#[cfg(test)]
mod file_form_tests {
    use super::*;
    use crate::select::ParamKind;

    #[test]
    fn penalties_round_trip_through_json_and_bad_tables_are_refused() {
        let p = Penalty::new(PenaltyKind::ElasticNet { l1_ratio: 0.25 }, 1e-3)
            .on(ParamSelection::paths(["fc1.weight"]));
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Penalty>(&text).unwrap(), p);
        let p: Penalty = serde_json::from_str(r#"{"kind":"l2","lambda":0.1}"#).unwrap();
        assert_eq!(p.selection, ParamSelection::weights());
        let p: Penalty =
            serde_json::from_str(r#"{"kind":"l1","lambda":0.1,"select":{"include":["fc1.*"]}}"#)
                .unwrap();
        assert_eq!(p.selection.kinds, vec![ParamKind::Weight]);
        for (bad, want) in [
            (r#"{"kind":"elastic-net","lambda":0.1}"#, "needs `l1_ratio`"),
            (
                r#"{"kind":"l2","lambda":0.1,"l1_ratio":0.5}"#,
                "belongs to `elastic-net`",
            ),
            (r#"{"kind":"l2","lamda":0.1}"#, "unknown field `lamda`"),
            (r#"{"kind":"l3","lambda":0.1}"#, "unknown variant `l3`"),
        ] {
            let e = serde_json::from_str::<Penalty>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
