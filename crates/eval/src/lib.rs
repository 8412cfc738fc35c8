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
//! - [`Shard`]: a job split over processes (Slurm job arrays, Kubernetes Indexed Jobs):
//!   [`evaluate_robustness_shard`] and [`merge_robustness`], [`attack_dataset`] with
//!   [`AttackRunOptions::shard`] and [`merge_attack`]; each shard leaves a [`ShardManifest`],
//!   and [`read_shards`] checks that a merge has every shard of one job exactly once.
//! - [`smoothing`]: certified robustness by randomized smoothing (`CERTIFY`, `PREDICT`, a
//!   dataset's certified accuracy against radius, resumable, with its report).
//! - [`RunLock`] (one writer per output directory), [`write_atomic`], [`line_plot_svg`],
//!   [`write_png_grid`] and the progress bar: the pieces the trainer's own reports share.
//!
//! The model is anything that implements [`Classifier`]; the zoo's `Model` does.
//!
//! ```
//! use bulwark_attack_core::{Norm, Preset};
//! use bulwark_data::{DatasetKind, Split, load_split};
//! use bulwark_eval::{RobustEvalConfig, RobustEvalOptions, evaluate_robustness};
//! use bulwark_models::Model;
//! use burn::tensor::Device;
//!
//! # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
//! let device = Device::flex();
//! // Real MNIST test images (the repository's slice; `bulwark_data::fetch` gets all 10,000).
//! let data = load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())?.take(8);
//! // Any `Classifier` works; an untrained zoo model keeps the example short.
//! let model = Model::init_seeded("small-cnn", &device, 0)?;
//! let mut config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.3, 0);
//! (config.probe_size, config.probe_queries) = (4, 20);
//! let out = tempfile::tempdir()?;
//! let report = evaluate_robustness(&model, &data, &config, &RobustEvalOptions::default(), out.path(), &device)?;
//! // The headline is the per-sample worst case; it can only be at or below clean accuracy.
//! assert!(report.robust_acc <= report.clean_acc);
//! assert_eq!(report.n_examples, 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
mod shard;
pub mod smoothing;
mod verify;

pub use atomic::write_atomic;
pub use attack_run::{
    AttackContext, AttackExample, AttackRunOptions, AttackState, AttackSummary, attack_dataset,
    attack_dataset_shard, attack_shard_finished, merge_attack, write_attack_outputs,
};
pub use clean::{EvalResult, evaluate};
pub use error::EvalError;
pub use grid::{GridImage, write_png_grid};
pub use plot::{Series, labelled_plot_svg, line_plot_svg};
pub use progress::bar as progress_bar;
pub use robust::{
    AttackAccuracy, EvalContext, OtherAttack, RobustEvalConfig, RobustEvalOptions, RobustReport,
    StageReport, SweepPoint, Verified, VerifiedAccuracy, evaluate_robustness,
    evaluate_robustness_shard, merge_robustness, saved_evaluation_matches, stages_from_names,
    write_robust_report,
};
pub use run_lock::RunLock;
pub use shard::{SHARD_FILE, Shard, ShardManifest, common_parent, read_shards};
pub use verify::verify_ibp;
