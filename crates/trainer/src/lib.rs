//! Bulwark's training orchestration.
//!
//! The trainer composes the other crates: a [`bulwark_models::Model`] from the zoo, a dataset
//! from [`bulwark_data`], an optimizer and a learning-rate [`Schedule`], and runs a hand-written
//! training loop ([`fit`]) with per-epoch validation, a JSONL metrics log, atomic per-epoch
//! checkpoints with exact resume, and a Markdown report with SVG plots.
//!
//! This trainer does standard (clean) training; adversarial methods plug into the same
//! loop later. The device is chosen at run time ([`BackendKind`]); the run keeps a list of
//! devices so that multi-device strategies can be added without changing the API (today only the
//! first device is used).
//!
//! # Feature flags
//! - `flex` (default): pure-Rust CPU backend.
//! - `ndarray`: burn's deprecated ndarray CPU backend.
//! - `wgpu`: GPU through wgpu (WGSL); also works on Mesa's software Vulkan, slowly.
//! - `vulkan`, `cuda`: GPU backends passed through to burn.

mod adversarial;
mod atomic;
mod attack_eval;
mod backend;
mod bench;
mod checkpoint;
mod config;
mod error;
mod eval;
mod fit;
mod grid;
mod job;
mod method;
mod metrics;
mod optim;
mod plot;
mod progress;
mod regularize;
mod report;
mod robust_eval;
mod run_lock;
mod schedule;
mod specs;
mod sweep;

pub use atomic::write_atomic;
pub use attack_eval::{
    AttackContext, AttackExample, AttackRunOptions, AttackState, AttackSummary, attack_dataset,
    write_attack_outputs,
};
pub use backend::{BackendKind, DeviceSet};
pub use bench::{BenchPlan, BenchRow, Workload, attack_workloads, bench_matmul, bench_throughput};
pub use checkpoint::{Checkpoint, CheckpointState, StopReason, save_bpk_atomic};
pub use config::{FinalEval, Keep, OptimizerKind, TrainConfig};
pub use error::TrainError;
pub use eval::{EvalResult, evaluate};
pub use fit::{FitOptions, FitOutcome, fit};
pub use grid::{GridImage, write_png_grid};
pub use job::{
    JobOptions, JobOutcome, check_input_shape, dataset_dir, load_dataset, load_dataset_split,
    run_job,
};
pub use method::Method;
pub use metrics::{EpochMetrics, resident_mib};
pub use optim::build_optimizer;
pub use plot::{Series, labelled_plot_svg, line_plot_svg};
pub use report::{ReportInputs, write_report};
pub use robust_eval::{
    AttackAccuracy, EvalContext, OtherAttack, RobustEvalConfig, RobustEvalOptions, RobustReport,
    StageReport, SweepPoint, evaluate_robustness, stages_from_names, write_robust_report,
};
pub use run_lock::RunLock;
pub use schedule::Schedule;
pub use specs::{AwpSpec, Mixing, SpectralSpec};
pub use sweep::{SweepOptions, SweepPointResult, SweepReg, SweepReport, SweepSpec, run_sweep};
