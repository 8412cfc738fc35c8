//! Bulwark's regularizers.
//!
//! Implemented so far: [`Penalty`] (L1, L2, elastic net, group lasso, orthogonality) on the
//! parameters a [`ParamSelection`] picks by dotted path pattern and kind (by default every weight,
//! without biases and normalization layers); a selection that matches nothing is an error.
//! Penalties are computed on the autodiff graph: add [`Penalty::loss`] to the loss before
//! `backward()`.
//!
//! [`Constraint`]s applied after an optimizer step: max-norm, unit-norm, non-negativity and the
//! proximal L1 step (exact zeros), with a [`sparsity`] report; [`SpectralBound`] (spectral
//! normalization by power iteration with persistent vectors).
//!
//! Label smoothing, mixup and cutmix with the soft-target cross-entropy ([`smooth_labels`],
//! [`mix`], [`cutmix`], [`MixSampler`], [`soft_cross_entropy`]).
//!
//! [`WeightPerturbation`]: adversarial weight perturbation (AWP, Wu et al. 2020), the relative
//! ascent step on the weights that adversarial training takes before each optimizer step.
//!
//! [`input_gradient_penalty`]: `‖∇ₓ ℓ‖²` by a finite difference along the normalized input
//! gradient (burn 0.22 has no double backward).
//!
//! Penalties and constraints also have a flat configuration-file form (serde): `bulwark-trainer`
//! reads `[[penalties]]` and `[[constraints]]` tables with them and applies every regularizer with
//! every training method. The seed's regularization example runs with
//! `cargo run -p bulwark-reg-core --example seed_regularization`; see docs/regularization.md.
//!
//! ```
//! use bulwark_reg_core::{ParamSelection, Penalty, PenaltyKind};
//! use burn::nn::LinearConfig;
//! use burn::tensor::Device;
//!
//! let device = Device::flex().autodiff();
//! let layer = LinearConfig::new(4, 2).init(&device);
//! // λ·Σw² over the weights (biases are not selected by default).
//! let l2 = Penalty::new(PenaltyKind::L2, 1e-2);
//! let loss = l2.loss(&layer)?; // add to the objective before `backward()`
//! let w2: f32 = layer.weight.val().powf_scalar(2.0).sum().into_scalar();
//! let value: f32 = loss.into_scalar();
//! assert!((value - 1e-2 * w2).abs() < 1e-6);
//! // A selection that matches nothing is an error, not a silent no-op.
//! assert!(l2.on(ParamSelection::paths(["conv9.weight"])).loss(&layer).is_err());
//! # Ok::<(), bulwark_reg_core::RegError>(())
//! ```

mod constraint;
mod error;
mod input_grad;
mod mix;
mod penalty;
mod select;
mod spectral;
mod weight_perturbation;

pub use constraint::{Constraint, ConstraintKind, sparsity};
pub use error::RegError;
pub use input_grad::input_gradient_penalty;
pub use mix::{CutBox, MixSampler, cutmix, mix, smooth_labels, soft_cross_entropy};
pub use penalty::{Penalty, PenaltyKind};
pub use select::{LayerKind, ParamInfo, ParamKind, ParamSelection, glob, parameters};
pub use spectral::SpectralBound;
pub use weight_perturbation::WeightPerturbation;
