//! Bulwark's regularizers (skeleton).
//!
//! This crate will hold the penalties added to the loss (L1, L2, elastic net, group lasso,
//! orthogonality, an input-gradient penalty), coupled and decoupled weight decay, proximal steps,
//! constraints applied after an optimizer step (max-norm, unit-norm, non-negative) and the
//! training-time regularizers (label smoothing, mixup, cutmix, ...), with parameter selection by
//! module path and kind as a first-class option.
//!
//! Nothing is implemented yet: the regularization issue owns this crate's content. The crate
//! exists so that the workspace layout, dependencies and CI are in place. (Weight decay for the
//! optimizers is available today through `bulwark-trainer`'s configuration.)
