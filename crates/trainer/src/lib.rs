//! Bulwark's training orchestration.
//!
//! The trainer composes the other crates: a [`bulwark_models::Model`] from the zoo, a dataset
//! from [`bulwark_data`], an optimizer and a learning-rate [`Schedule`], and runs a hand-written
//! training loop ([`fit`]) with per-epoch validation, a JSONL metrics log, atomic per-epoch
//! checkpoints with exact resume, and a Markdown report with SVG plots.
//!
//! Methods ([`Method`]: standard, PGD-AT, FGSM-RS, Free-AT, TRADES, MART, with AWP), the
//! regularizers of `bulwark-reg-core`, robust validation, early stopping and the overfitting
//! guard plug into that loop; [`run_job`] adds the run directory, the final evaluation (through
//! `bulwark-eval`) and the report, [`run_sweep`] a regularization sweep. The device is chosen at
//! run time ([`BackendKind`]); the run keeps a list of devices so that multi-device strategies can
//! be added without changing the API (today only the first device is used).
//!
//! ```
//! use bulwark_data::{DatasetKind, Split, load_split};
//! use bulwark_trainer::{BackendKind, DeviceSet, FitOptions, TrainConfig, fit};
//!
//! # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
//! // Real MNIST images (here the repository's 256-image slice; `bulwark_data::fetch` gets all).
//! let images = load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())?;
//! let (train, valid) = images.split(56, 0)?;
//! let cfg = TrainConfig::new().with_model("mlp".into()).with_epochs(1).with_batch_size(50);
//! let run_dir = tempfile::tempdir()?;
//! let opts = FitOptions {
//!     run_dir: run_dir.path().join("run"),
//!     resume: false,
//!     progress: false,
//!     stop_after_epoch: None,
//! };
//! let devices = DeviceSet::single(BackendKind::Flex)?;
//! let outcome = fit(&cfg, &train, &valid, &devices, &opts)?;
//! assert_eq!(outcome.history.len(), 1);
//! assert!(opts.run_dir.join("checkpoint").is_dir()); // resumable with `resume: true`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//! - `flex` (default): pure-Rust CPU backend.
//! - `ndarray`: burn's deprecated ndarray CPU backend.
//! - `wgpu`: GPU through wgpu (WGSL); also works on Mesa's software Vulkan, slowly.
//! - `vulkan`, `cuda`: GPU backends passed through to burn.

mod adversarial;
mod backend;
mod bench;
mod bench_eval;
mod bench_layers;
mod checkpoint;
pub mod collective;
mod config;
mod datasets;
mod error;
mod fit;
mod fma_peak;
mod job;
mod method;
mod metrics;
#[cfg(feature = "mpi")]
mod mpi_group;
mod optim;
mod regularize;
mod report;
mod schedule;
mod specs;
mod sweep;
pub mod text;

pub use backend::{BackendKind, DeviceSet};
pub use bench::{
    BenchPlan, BenchRow, Radius, Workload, attack_workloads, bench_matmul, bench_throughput,
    uniform_batch,
};
pub use bench_eval::{EVAL_WORKLOADS, EvalBenchPlan, EvalBenchRow, bench_evaluation};
pub use bench_layers::{DIRECTIONS, LayerBenchRow, bench_conv_layers, layer_name, layer_shapes};
pub use checkpoint::{Checkpoint, CheckpointState, StopReason, save_bpk_atomic};
pub use collective::{Collective, SharedCollective, launcher_world_size};
pub use config::{FinalEval, Keep, OptimizerKind, TrainConfig};
pub use datasets::{
    DATASETS, FOLDER_PREFIX, check_dataset_name, check_input_shape, dataset_dir, dataset_folder,
    dataset_label, load_dataset, load_dataset_split,
};
pub use error::TrainError;
pub use fit::{FitOptions, FitOutcome, fit, fit_network};
pub use fma_peak::{FmaPeak, fma_peak};
pub use job::{JobData, JobOptions, JobOutcome, RUN_OUTPUTS, run_job, run_network_job};
pub use method::Method;
pub use metrics::{EpochMetrics, resident_mib};
#[cfg(feature = "mpi")]
pub use mpi_group::MpiCollective;
pub use optim::build_optimizer;
pub use report::{ReportInputs, write_report};
pub use schedule::Schedule;
pub use specs::{AwpSpec, InputGradientSpec, Mixing, SpectralSpec};
pub use sweep::{
    SWEEP_OUTPUTS, SweepOptions, SweepPointResult, SweepReg, SweepReport, SweepSpec, merge_sweep,
    run_sweep,
};
