//! Constraints and proximal steps, applied to the selected parameters after each optimizer step.
//!
//! | kind | after the step | as in |
//! |---|---|---|
//! | `MaxNorm { max }` | each output unit's weight vector rescaled to L2 norm `≤ max` | Keras `MaxNorm` |
//! | `UnitNorm` | each output unit's weight vector rescaled to L2 norm 1 (a zero vector stays 0) | Keras `UnitNorm` |
//! | `NonNeg` | negative entries set to 0 | Keras `NonNeg` |
//! | `DecoupledDecay { weight_decay }` | `w ← (1 − lr·wd)·w` on the selection: AdamW-style decoupled weight decay per parameter group (coupled decay is the `L2` penalty with `λ = wd/2`, whose gradient `wd·w` joins the loss gradient) | Loshchilov & Hutter 2019 |
//! | `ProxL1 { lambda }` | soft-thresholding `sign(w)·max(|w| − lr·λ, 0)`: the proximal step of `λ·Σ|w|`, which gives exact zeros | proximal gradient / ISTA |
//!
//! Output units follow the layer layout as for penalties (burn's `Linear`: columns of
//! `[inputs, outputs]`; convolutions: filters). Parameters keep their autodiff tracking and
//! `require_grad` flag, as the optimizer leaves them, so training continues unchanged.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use crate::error::{RegError, invalid};
use crate::select::{LayerKind, ParamSelection, PathStack, restore_tracking};

/// Which constraint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConstraintKind {
    /// Output-unit L2 norms at most `max`.
    MaxNorm {
        /// The bound (> 0).
        max: f64,
    },
    /// Output-unit L2 norms equal to 1.
    UnitNorm,
    /// No negative entries.
    NonNeg,
    /// Decoupled weight decay: `w ← (1 − lr·wd)·w`.
    DecoupledDecay {
        /// The decay `wd ≥ 0` (multiplied by the learning rate).
        weight_decay: f64,
    },
    /// Soft-thresholding by `lr·lambda`.
    ProxL1 {
        /// The L1 strength `λ ≥ 0` (the threshold is `lr·λ`).
        lambda: f64,
    },
}

/// A constraint on the selected parameters. In configuration files: a flat table
/// `{ kind = "max-norm" | "unit-norm" | "non-neg" | "decoupled-decay" | "prox-l1", max
/// (max-norm), weight_decay (decoupled-decay), lambda (prox-l1), select }`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ConstraintFile", into = "ConstraintFile")]
pub struct Constraint {
    /// Which constraint.
    pub kind: ConstraintKind,
    /// The parameters it covers (default: every weight).
    pub selection: ParamSelection,
}

impl Constraint {
    /// `kind` on every weight.
    pub fn new(kind: ConstraintKind) -> Self {
        Self {
            kind,
            selection: ParamSelection::weights(),
        }
    }

    /// The same constraint on another selection.
    pub fn on(mut self, selection: ParamSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Checks the settings (not the selection, which needs a model).
    pub fn validate(&self) -> Result<(), RegError> {
        match self.kind {
            ConstraintKind::MaxNorm { max } if !(max.is_finite() && max > 0.0) => {
                return Err(invalid("max", max, "must be finite and > 0"));
            }
            ConstraintKind::ProxL1 { lambda } if !(lambda.is_finite() && lambda >= 0.0) => {
                return Err(invalid("lambda", lambda, "must be finite and >= 0"));
            }
            ConstraintKind::DecoupledDecay { weight_decay }
                if !(weight_decay.is_finite() && weight_decay >= 0.0) =>
            {
                return Err(invalid(
                    "weight_decay",
                    weight_decay,
                    "must be finite and >= 0",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies the constraint after an optimizer step taken with learning rate `lr` (used by
    /// `ProxL1` and `DecoupledDecay`). Errors: bad settings, a selection that matches nothing.
    pub fn apply<M: Module>(&self, model: M, lr: f64) -> Result<M, RegError> {
        self.validate()?;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid("lr", lr, "must be finite and >= 0"));
        }
        self.selection.resolve(&model)?;
        let mut mapper = Apply {
            constraint: self,
            lr,
            stack: PathStack::default(),
        };
        Ok(model.map(&mut mapper))
    }
}

struct Apply<'a> {
    constraint: &'a Constraint,
    lr: f64,
    stack: PathStack,
}

/// Rescales each output unit of `w` by `scale(norm)`.
fn rescale_units<const D: usize>(
    w: Tensor<D>,
    layer: LayerKind,
    scale: impl Fn(Tensor<2>) -> Tensor<2>,
) -> Tensor<D> {
    let dims = w.dims();
    if D == 1 {
        let v = w.reshape([1, dims[0]]);
        let norm = v.clone().square().sum_dim(1).sqrt();
        return (v * scale(norm)).reshape(dims);
    }
    match layer {
        LayerKind::Linear if D == 2 => {
            let m = w.reshape([dims[0], dims[1]]);
            let norm = m.clone().square().sum_dim(0).sqrt(); // [1, outputs]
            (m * scale(norm)).reshape(dims)
        }
        _ => {
            let rest: usize = dims[1..].iter().product();
            let m = w.reshape([dims[0], rest]);
            let norm = m.clone().square().sum_dim(1).sqrt(); // [units, 1]
            (m * scale(norm)).reshape(dims)
        }
    }
}

impl ModuleMapper for Apply<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let info = self.stack.param();
        let layer = info.layer;
        if !self.constraint.selection.covers(&info) {
            return param;
        }
        let (constraint, lr) = (self.constraint.kind, self.lr);
        param.map(|t| {
            let tracking = (t.is_autodiff(), t.is_require_grad());
            let w = t.inner();
            let out = match constraint {
                ConstraintKind::MaxNorm { max } => rescale_units(w, layer, |norm| {
                    // min(1, max/norm); a zero norm gives +inf, clamped to 1.
                    (norm.recip() * max).clamp_max(1.0)
                }),
                ConstraintKind::UnitNorm => rescale_units(w, layer, |norm| {
                    let zero = norm.clone().equal_elem(0.0);
                    norm.recip().mask_fill(zero, 0.0)
                }),
                ConstraintKind::NonNeg => w.clamp_min(0.0),
                ConstraintKind::DecoupledDecay { weight_decay } => w * (1.0 - lr * weight_decay),
                ConstraintKind::ProxL1 { lambda } => {
                    let t = (lr * lambda) as f32;
                    w.clone().sign() * (w.abs() - t).clamp_min(0.0)
                }
            };
            restore_tracking(out, tracking)
        })
    }
}

/// Share of exactly-zero entries per selected parameter: `(path, zeros, total)`.
pub fn sparsity<M: Module>(
    model: &M,
    selection: &ParamSelection,
) -> Result<Vec<(String, usize, usize)>, RegError> {
    selection.resolve(model)?;
    let mut v = Count {
        selection,
        stack: PathStack::default(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    Ok(v.out)
}

struct Count<'a> {
    selection: &'a ParamSelection,
    stack: PathStack,
    out: Vec<(String, usize, usize)>,
}

impl burn::module::ModuleVisitor for Count<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let info = self.stack.param();
        if !self.selection.covers(&info) {
            return;
        }
        // Read plain values: statistics must not touch the autodiff graph (burn#4970).
        let values = param
            .val()
            .inner()
            .try_into_vec_as::<f32>()
            .expect("float parameters read back as f32");
        let zeros = values.iter().filter(|&&v| v == 0.0).count();
        self.out.push((info.path, zeros, values.len()));
    }
}

// The configuration-file form (serde): one flat table, `kind` plus that kind's settings and an
// optional `select`; unknown or misplaced keys are refused.

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ConstraintName {
    MaxNorm,
    UnitNorm,
    NonNeg,
    DecoupledDecay,
    ProxL1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConstraintFile {
    kind: ConstraintName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lambda: Option<f64>,
    #[serde(default)]
    select: ParamSelection,
}

impl TryFrom<ConstraintFile> for Constraint {
    type Error = String;
    fn try_from(f: ConstraintFile) -> Result<Self, String> {
        let name = f.kind.as_str();
        // Exactly the setting the kind takes, nothing else.
        let wanted: Option<&str> = match f.kind {
            ConstraintName::MaxNorm => Some("max"),
            ConstraintName::DecoupledDecay => Some("weight_decay"),
            ConstraintName::ProxL1 => Some("lambda"),
            ConstraintName::UnitNorm | ConstraintName::NonNeg => None,
        };
        for (key, value) in [
            ("max", f.max),
            ("weight_decay", f.weight_decay),
            ("lambda", f.lambda),
        ] {
            match (Some(key) == wanted, value) {
                (true, None) => return Err(format!("constraint `{name}` needs `{key}`")),
                (false, Some(_)) => {
                    return Err(format!("constraint `{name}` takes no `{key}`"));
                }
                _ => {}
            }
        }
        let kind = match f.kind {
            ConstraintName::MaxNorm => ConstraintKind::MaxNorm {
                max: f.max.unwrap_or_default(),
            },
            ConstraintName::UnitNorm => ConstraintKind::UnitNorm,
            ConstraintName::NonNeg => ConstraintKind::NonNeg,
            ConstraintName::DecoupledDecay => ConstraintKind::DecoupledDecay {
                weight_decay: f.weight_decay.unwrap_or_default(),
            },
            ConstraintName::ProxL1 => ConstraintKind::ProxL1 {
                lambda: f.lambda.unwrap_or_default(),
            },
        };
        Ok(Constraint::new(kind).on(f.select))
    }
}

impl From<Constraint> for ConstraintFile {
    fn from(c: Constraint) -> Self {
        let mut f = ConstraintFile {
            kind: ConstraintName::NonNeg,
            max: None,
            weight_decay: None,
            lambda: None,
            select: c.selection,
        };
        match c.kind {
            ConstraintKind::MaxNorm { max } => {
                (f.kind, f.max) = (ConstraintName::MaxNorm, Some(max))
            }
            ConstraintKind::UnitNorm => f.kind = ConstraintName::UnitNorm,
            ConstraintKind::NonNeg => f.kind = ConstraintName::NonNeg,
            ConstraintKind::DecoupledDecay { weight_decay } => {
                (f.kind, f.weight_decay) = (ConstraintName::DecoupledDecay, Some(weight_decay));
            }
            ConstraintKind::ProxL1 { lambda } => {
                (f.kind, f.lambda) = (ConstraintName::ProxL1, Some(lambda));
            }
        }
        f
    }
}

impl ConstraintName {
    fn as_str(self) -> &'static str {
        match self {
            ConstraintName::MaxNorm => "max-norm",
            ConstraintName::UnitNorm => "unit-norm",
            ConstraintName::NonNeg => "non-neg",
            ConstraintName::DecoupledDecay => "decoupled-decay",
            ConstraintName::ProxL1 => "prox-l1",
        }
    }
}

#[cfg(test)]
mod file_form_tests {
    use super::*;

    #[test]
    fn constraints_round_trip_through_json_and_bad_tables_are_refused() {
        let c = Constraint::new(ConstraintKind::MaxNorm { max: 2.0 });
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Constraint>(&text).unwrap(), c);
        for (bad, want) in [
            (r#"{"kind":"max-norm"}"#, "needs `max`"),
            (r#"{"kind":"non-neg","max":1.0}"#, "takes no `max`"),
            (
                r#"{"kind":"prox-l1","lambda":1.0,"select":{"kinds":["bias"],"x":1}}"#,
                "unknown field `x`",
            ),
        ] {
            let e = serde_json::from_str::<Constraint>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
