//! Bulwark's evaluation: how robust a trained model is, measured over a dataset.
//!
//! - [`evaluate`]: clean accuracy and loss.
//! - [`attack_dataset`]: one attack over a dataset, batch by batch, resumable
//!   ([`AttackState`]), with per-sample results, a summary and example grids
//!   ([`write_attack_outputs`]).
//! - [`evaluate_robustness`]: the robustness evaluation — the [`Evaluator`] cascade
//!   (AutoAttack-style presets or custom stages) over every image, resumable, with the sanity
//!   probes and checks, an eps sweep, other attacks' results folded into a per-sample worst case
//!   (the headline), and the report ([`write_robust_report`]: Markdown, JSON, plot, grids).
//! - [`RunLock`] (one writer per output directory), [`write_atomic`], [`line_plot_svg`],
//!   [`write_png_grid`] and the progress bar: the pieces the trainer's own reports share.
//!
//! The model is anything that implements [`Classifier`]; the zoo's `Model` does.
//!
//! ```
//! use bulwark_attack_core::{Norm, Preset};
//! use bulwark_eval::RobustEvalConfig;
//!
//! // AutoAttack's standard composition at L-inf eps 8/255, seed 0.
//! let config = RobustEvalConfig::preset(Preset::Standard, Norm::Linf, 8.0 / 255.0, 0);
//! assert_eq!(config.all_eps()[0], 8.0 / 255.0);
//! ```
//!
//! [`Classifier`]: bulwark_attack_core::Classifier
//! [`Evaluator`]: bulwark_attack_core::Evaluator

mod atomic;
mod attack_run;
mod clean;
mod error;
mod grid;
mod plot;
mod progress;
mod robust;
mod run_lock;

pub use atomic::write_atomic;
pub use attack_run::{
    AttackContext, AttackExample, AttackRunOptions, AttackState, AttackSummary, attack_dataset,
    write_attack_outputs,
};
pub use clean::{EvalResult, evaluate};
pub use error::EvalError;
pub use grid::{GridImage, write_png_grid};
pub use plot::{Series, labelled_plot_svg, line_plot_svg};
pub use progress::bar as progress_bar;
pub use robust::{
    AttackAccuracy, EvalContext, OtherAttack, RobustEvalConfig, RobustEvalOptions, RobustReport,
    StageReport, SweepPoint, evaluate_robustness, stages_from_names, write_robust_report,
};
pub use run_lock::RunLock;
