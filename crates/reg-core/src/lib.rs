//! Bulwark's regularizers.
//!
//! Implemented so far: [`Penalty`] (L1, L2, elastic net, group lasso, orthogonality) on the
//! parameters a [`ParamSelection`] picks by dotted path pattern and kind (by default every weight,
//! without biases and normalization layers); a selection that matches nothing is an error.
//! Penalties are computed on the autodiff graph: add [`Penalty::loss`] to the loss before
//! `backward()`.
//!
//! [`Constraint`]s applied after an optimizer step: max-norm, unit-norm, non-negativity and the
//! proximal L1 step (exact zeros), with a [`sparsity`] report.
//!
//! Still to come (the regularization issue): the input-gradient penalty, coupled/decoupled weight
//! decay per parameter group, spectral normalization, label smoothing, mixup, cutmix, DropPath,
//! the seed's examples and the trade-off sweep. (Weight decay for the optimizers is available today
//! through `bulwark-trainer`'s configuration.)

mod constraint;
mod error;
mod penalty;
mod select;

pub use constraint::{Constraint, ConstraintKind, sparsity};
pub use error::RegError;
pub use penalty::{Penalty, PenaltyKind};
pub use select::{LayerKind, ParamInfo, ParamKind, ParamSelection, glob, parameters};
