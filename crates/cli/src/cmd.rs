//! What each subcommand does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bulwark_attack_core::{
    ApgdConfig, Attack, AttackConfig, AttackOptions, BimConfig, Bounds, CwL2Config, DeepFoolConfig,
    Evaluator, FgsmConfig, LossKind, MiFgsmConfig, Norm, PgdConfig, Preset, SquareConfig,
    Targeting, ThreatModel,
};
use bulwark_data::{DatasetKind, FetchOptions, Split, fetch, load_split};
use bulwark_models::{Model, bpk, models, torch};
use bulwark_reg_core::{ParamSelection, Penalty, PenaltyKind};
use bulwark_trainer::{
    AttackContext, AttackRunOptions, AttackState, AwpSpec, BackendKind, BenchPlan, DeviceSet,
    EvalContext, JobOptions, Method, Mixing, OptimizerKind, RobustEvalConfig, RobustEvalOptions,
    RunLock, Schedule, SweepOptions, SweepReg, SweepSpec, TrainConfig, Workload, attack_dataset,
    check_input_shape, dataset_dir, evaluate, evaluate_robustness, load_dataset_split, run_job,
    run_sweep, save_bpk_atomic, stages_from_names, write_atomic, write_attack_outputs,
};
use burn::tensor::Device;

use crate::args::{
    AttackArgs, BenchCommand, Cli, Command, DataCommand, EvalArgs, ExportArgs, ModelsCommand,
    SweepArgs, TrainArgs,
};
use crate::guard::{self, ATTACK_OUTPUTS, EVAL_OUTPUTS, Inputs, RUN_DIR_WEIGHTS};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let backend: BackendKind = cli.backend.parse()?;
    match cli.command {
        Command::Train(args) => train(*args, backend),
        Command::Eval(args) => eval(*args, backend),
        Command::Sweep(args) => sweep(*args, backend),
        Command::Attack(args) => attack(*args, backend),
        Command::Bench {
            command:
                BenchCommand::Throughput {
                    repeats,
                    batch,
                    models,
                    workloads,
                    matmul,
                    backend_list,
                    data_dir,
                    json,
                },
        } => {
            let workloads = workloads
                .split(',')
                .map(|w| Workload::parse(w.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let backends: Vec<BackendKind> = match backend_list {
                Some(list) => list
                    .split(',')
                    .map(|b| b.trim().parse())
                    .collect::<Result<_, _>>()?,
                None => BackendKind::compiled(),
            };
            let plan = BenchPlan {
                models: models.split(',').map(|m| m.trim().to_string()).collect(),
                backends,
                workloads,
                batch: batch as usize,
                repeats: repeats as usize,
                matmul: matmul as usize,
            };
            bench(&plan, data_dir, json)
        }
        Command::Data {
            command:
                DataCommand::Fetch {
                    dataset,
                    data_dir,
                    offline,
                },
        } => data_fetch(&dataset, data_dir, offline),
        Command::Models {
            command: ModelsCommand::List,
        } => models_list(backend),
        Command::Export(args) => export(args, backend),
    }
}

/// What `bulwark train` writes into its run directory besides `config.toml` (checked apart).
const TRAIN_OUTPUTS: &[&str] = &[
    "metrics.jsonl",
    "report.md",
    "report.json",
    "accuracy.svg",
    "loss.svg",
    "model.safetensors",
    "model.bpk",
    "best.bpk",
    "final-pgd-state.json",
    "checkpoint",
    "checkpoint.old",
    "checkpoint.tmp",
    "eval",
    "run.lock",
];

/// What `bulwark sweep` writes into its directory (plus one run directory per strength).
const SWEEP_OUTPUTS: &[&str] = &["sweep.json", "sweep.md", "sweep.svg", "run.lock"];

/// A run name as `--name` gives it: one plain path component, so that the run directory stays
/// inside `--runs-dir` (`../x`, `a/b`, `/abs` and the empty name are refused).
fn run_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if !plain {
        bail!(
            "--name {name:?} is not a plain run name: it must be non-empty, not `.` or `..`, and \
             hold no `/`, `\\` or control characters (use --run-dir for a directory elsewhere)"
        );
    }
    Ok(name)
}

/// Warns when `eps` reaches the diameter of the input box (see `sanity::eps_box_flag`).
fn warn_eps_box(norm: Norm, eps: f64, n_values: usize, flag: &str) {
    let check = bulwark_attack_core::sanity::eps_box_flag(norm, eps, Bounds::new(), n_values);
    if check.raised() {
        tracing::warn!("{flag}: {}", check.evidence);
    }
}

fn fetch_options(data_dir: Option<PathBuf>) -> FetchOptions {
    let mut opts = FetchOptions::from_env();
    if data_dir.is_some() {
        opts.data_dir = data_dir;
    }
    opts
}

fn train(a: TrainArgs, backend: BackendKind) -> Result<()> {
    let devices = DeviceSet::single(backend)?;
    let run_dir;
    let cfg = if a.resume {
        run_dir = match (&a.run_dir, &a.name) {
            (Some(dir), _) => dir.clone(),
            (None, Some(name)) => a.runs_dir.join(run_name(name)?),
            (None, None) => bail!("--resume needs --run-dir (or --name) of the run to continue"),
        };
        let path = run_dir.join("config.toml");
        if !path.is_file() {
            // A run that has just started writes its config.toml once its data is loaded: a
            // live process says so, rather than a missing file.
            if run_dir.is_dir() {
                drop(RunLock::acquire(&run_dir)?);
            }
            bail!(
                "nothing to resume in {}: it holds no config.toml, so no run was started there; \
                 start one without --resume",
                run_dir.display()
            );
        }
        let overrides = [
            a.config.is_some(),
            a.model.is_some(),
            a.dataset.is_some(),
            a.epochs.is_some(),
            a.batch_size.is_some(),
            a.lr.is_some(),
            a.optimizer.is_some(),
            a.weight_decay.is_some(),
            a.momentum.is_some(),
            a.nesterov,
            a.schedule.is_some(),
            a.warmup_epochs.is_some(),
            a.min_lr.is_some(),
            a.peak_at.is_some(),
            a.milestones.is_some(),
            a.gamma.is_some(),
            a.eval_batch_size.is_some(),
            a.seed.is_some(),
            a.train_limit.is_some(),
            a.valid_size.is_some(),
            a.test_limit.is_some(),
            a.method.is_some(),
            a.eps.is_some(),
            a.label_smoothing.is_some(),
            a.mixup.is_some(),
            a.cutmix.is_some(),
            a.l1.is_some(),
            a.l2.is_some(),
            a.awp.is_some(),
            a.patience.is_some(),
        ];
        if overrides.iter().any(|&o| o) {
            bail!(
                "--resume continues the run with its own {}; drop the configuration flags",
                path.display()
            );
        }
        TrainConfig::from_toml_file(&path)?
    } else {
        let mut cfg = match &a.config {
            Some(p) => TrainConfig::from_toml_file(p)?,
            None => TrainConfig::new(),
        };
        cfg.schedule = schedule_from_flags(&a, cfg.schedule)?;
        if let Some(v) = a.model {
            cfg.model = v;
        }
        if let Some(v) = a.dataset {
            cfg.dataset = v;
        }
        if let Some(v) = a.epochs {
            cfg.epochs = v;
        }
        if let Some(v) = a.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = a.lr {
            cfg.lr = v;
        }
        if let Some(v) = a.optimizer {
            cfg.optimizer = match v.as_str() {
                "sgd" => OptimizerKind::Sgd,
                "adam" => OptimizerKind::Adam,
                "adamw" => OptimizerKind::Adamw,
                other => bail!("unknown optimizer `{other}`; known: sgd, adam, adamw"),
            };
        }
        if let Some(v) = a.weight_decay {
            cfg.weight_decay = v;
        }
        if let Some(v) = a.momentum {
            cfg.momentum = v;
        }
        if a.nesterov {
            cfg.nesterov = true;
        }
        if let Some(v) = a.eval_batch_size {
            cfg.eval_batch_size = v;
        }
        if let Some(v) = a.seed {
            cfg.seed = v;
        }
        if a.train_limit.is_some() {
            cfg.train_limit = a.train_limit;
        }
        if let Some(v) = a.valid_size {
            cfg.valid_size = v;
        }
        if a.test_limit.is_some() {
            cfg.test_limit = a.test_limit;
        }
        cfg.method = method_from_flags(a.method.as_deref(), a.eps, &cfg.method)?;
        if let Some(v) = a.label_smoothing {
            cfg.label_smoothing = v;
        }
        if let Some(alpha) = a.mixup {
            cfg.mixing = Mixing::Mixup { alpha };
        }
        if let Some(alpha) = a.cutmix {
            cfg.mixing = Mixing::Cutmix { alpha };
        }
        for (kind, lambda) in [(PenaltyKind::L1, a.l1), (PenaltyKind::L2, a.l2)] {
            if let Some(lambda) = lambda {
                cfg.penalties.push(Penalty::new(kind, lambda));
            }
        }
        if let Some(gamma) = a.awp {
            cfg.awp = Some(match cfg.awp.take() {
                Some(awp) => AwpSpec { gamma, ..awp },
                None => AwpSpec {
                    gamma,
                    warmup_epochs: 0,
                    select: ParamSelection::weights(),
                },
            });
        }
        if a.patience.is_some() {
            cfg.patience = a.patience;
        }
        cfg.validate()?;
        run_dir = match (&a.run_dir, &a.name) {
            (Some(dir), _) => dir.clone(),
            (None, Some(name)) => a.runs_dir.join(run_name(name)?),
            (None, None) => a.runs_dir.join(format!("{}-{}", cfg.model, cfg.dataset)),
        };
        cfg
    };
    // Nothing the run writes may replace the configuration file it was given.
    if let Some(config) = &a.config {
        let mut inputs = Inputs::new();
        inputs.file("the configuration file", config);
        let config_out = run_dir.join("config.toml");
        // The run's config.toml is left alone when it already describes this configuration
        // (see run_job).
        let unchanged =
            TrainConfig::from_toml_file(&config_out).is_ok_and(|c| c.to_toml() == cfg.to_toml());
        if !unchanged {
            inputs.refuse(&config_out, "the run's config.toml")?;
        }
        inputs.refuse_in(&run_dir, TRAIN_OUTPUTS, "--run-dir")?;
    }
    if let Some(eps) = cfg.method.eps() {
        let info = bulwark_models::model_info(&cfg.model)?;
        warn_eps_box(cfg.norm, eps, info.input_shape.iter().product(), "--eps");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let outcome = run_job(
        &cfg,
        &devices,
        &JobOptions {
            run_dir: run_dir.clone(),
            resume: a.resume,
            progress: !a.no_progress,
            fetch: fetch_options(a.data_dir),
            backend: backend.to_string(),
            command,
            stop_after_epoch: a.stop_after_epoch,
            evaluate_train: false,
        },
    )?;
    if outcome.stopped_early {
        println!(
            "Stopped after epoch {} of {} (checkpoint in {}); continue with:\n  bulwark train --resume --run-dir {}",
            outcome.history.len(),
            cfg.epochs,
            run_dir.join("checkpoint").display(),
            run_dir.display()
        );
        return Ok(());
    }
    let test = outcome
        .test
        .context("training completed but the test evaluation is missing")?;
    println!();
    println!("| {:<28} | {:>22} |", "Bulwark run", run_dir.display());
    println!("|{:-<30}|{:->24}|", "", "");
    println!(
        "| {:<28} | {:>22} |",
        "model / dataset",
        format!("{} / {}", cfg.model, cfg.dataset)
    );
    println!("| {:<28} | {:>22} |", "epochs", outcome.history.len());
    if let Some((epoch, acc)) = outcome.best {
        println!(
            "| {:<28} | {:>22} |",
            if cfg.method.is_adversarial() {
                "best robust validation acc"
            } else {
                "best validation accuracy"
            },
            format!("{:.2} % (epoch {epoch})", 100.0 * acc)
        );
    }
    if let Some(reason) = &outcome.stopped {
        println!("{reason}");
    }
    println!(
        "| {:<28} | {:>22} |",
        "clean test accuracy",
        format!("{:.2} % of {}", 100.0 * test.accuracy, test.n)
    );
    println!(
        "| {:<28} | {:>22} |",
        "test cross-entropy",
        format!("{:.4}", test.loss)
    );
    if let Some(e) = &outcome.robust_eval {
        println!(
            "| {:<28} | {:>22} |",
            "robust acc, worst case",
            format!("{:.2} % at eps {}", 100.0 * e.robust_acc, e.eps)
        );
    }
    if let Some(a) = &outcome.robust_test {
        println!(
            "| {:<28} | {:>22} |",
            format!("robust acc, {}", a.label()),
            format!(
                "{:.2} % at eps {}",
                100.0 * a.robust_accuracy,
                a.eps.unwrap_or_default()
            )
        );
    }
    if let Some(e) = &outcome.robust_eval {
        println!(
            "| {:<28} | {:>22} |",
            format!("robust acc, {} cascade", e.preset),
            format!("{:.2} % at eps {}", 100.0 * e.cascade_robust_acc, e.eps)
        );
        if e.probe_broken > 0 {
            println!(
                "| {:<28} | {:>22} |",
                "Square probe broke",
                format!("{} more point(s)", e.probe_broken)
            );
        }
        for p in e.sweep.iter().filter(|p| p.eps != e.eps) {
            println!(
                "| {:<28} | {:>22} |",
                "",
                format!("{:.2} % at eps {}", 100.0 * p.robust_acc, p.eps)
            );
        }
        let raised: Vec<String> = e.raised().map(|f| f.check.clone()).collect();
        println!(
            "| {:<28} | {:>22} |",
            "sanity flags raised",
            if raised.is_empty() {
                "none".to_string()
            } else {
                raised.join(", ")
            }
        );
    }
    let secs: f64 = outcome.history.iter().map(|m| m.seconds).sum();
    println!(
        "| {:<28} | {:>22} |",
        "training steps time",
        format!("{secs:.1} s")
    );
    println!();
    println!("Report:  {}", outcome.report.display());
    println!("Weights: {} (PyTorch layout)", outcome.weights.display());
    Ok(())
}

/// `--method`/`--eps` applied to the configured method: a new method takes its defaults; `--eps`
/// alone changes the configured method's radius.
fn method_from_flags(name: Option<&str>, eps: Option<f64>, current: &Method) -> Result<Method> {
    match (name, eps) {
        (Some("standard"), Some(_)) => {
            bail!("--eps needs an adversarial --method (standard training has no radius)")
        }
        // The configured method's own settings stay when the flag names the same kind.
        (Some(name), eps) if name == current.name() => Ok(match eps {
            Some(eps) => current.with_eps(eps),
            None => current.clone(),
        }),
        (Some(name), eps) => {
            Method::from_name(name, eps.or(current.eps())).map_err(anyhow::Error::msg)
        }
        (None, Some(_)) if !current.is_adversarial() => {
            bail!("--eps needs an adversarial --method (standard training has no radius)")
        }
        (None, Some(eps)) => Ok(current.with_eps(eps)),
        (None, None) => Ok(current.clone()),
    }
}

fn sweep(a: SweepArgs, backend: BackendKind) -> Result<()> {
    let devices = DeviceSet::single(backend)?;
    let reg: SweepReg = a.reg.parse().map_err(anyhow::Error::msg)?;
    let mut base = match &a.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::new(),
    };
    if let Some(v) = a.model {
        base.model = v;
    }
    if let Some(v) = a.dataset {
        base.dataset = v;
    }
    if let Some(v) = a.epochs {
        base.epochs = v;
    }
    if a.train_limit.is_some() {
        base.train_limit = a.train_limit;
    }
    base.method = method_from_flags(a.method.as_deref(), a.eps, &base.method)?;
    base.validate()?;
    if a.robust_steps == 0 && base.method.is_adversarial() {
        bail!("--robust-steps must be at least 1");
    }
    let out = a.out.unwrap_or_else(|| {
        let method = match base.method.eps() {
            Some(eps) => format!("-{}-eps{eps}", base.method.name()),
            None => String::new(),
        };
        PathBuf::from("runs").join(format!(
            "sweep-{}-{}-{}{method}",
            base.model,
            base.dataset,
            reg.name()
        ))
    });
    if let Some(config) = &a.config {
        let mut inputs = Inputs::new();
        inputs.file("the configuration file", config);
        inputs.refuse_in(&out, SWEEP_OUTPUTS, "--out")?;
        // Every sub-directory of a sweep is one of its runs, whose files it writes.
        if let (Ok(c), Ok(o)) = (config.canonicalize(), out.canonicalize())
            && c.starts_with(&o)
            && c.parent() != Some(o.as_path())
        {
            bail!(
                "refusing to sweep into {}: the configuration file {} lies in one of its run \
                 directories, whose files the sweep writes; choose another --out",
                out.display(),
                config.display()
            );
        }
    }
    let mut job = JobOptions::new(out.clone());
    job.progress = !a.no_progress;
    job.fetch = fetch_options(a.data_dir);
    job.backend = backend.to_string();
    job.command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = run_sweep(
        &SweepSpec {
            base,
            reg,
            values: a.lambda,
            robust_steps: a.robust_steps,
            robust_limit: a.robust_limit,
        },
        &devices,
        &SweepOptions {
            out_dir: out.clone(),
            job,
        },
    )?;
    println!();
    print!(
        "{}",
        std::fs::read_to_string(out.join("sweep.md")).context("reading sweep.md")?
    );
    println!();
    println!(
        "Sweep of {} runs: {} (table), {} (plot)",
        report.points.len(),
        out.join("sweep.md").display(),
        out.join("sweep.svg").display()
    );
    Ok(())
}

/// The schedule from `--schedule` and its parameter flags; parameters not given keep the
/// configured schedule's values when the kind is unchanged, else the documented defaults.
fn schedule_from_flags(a: &TrainArgs, current: Schedule) -> Result<Schedule> {
    let kind = match (&a.schedule, &current) {
        (Some(k), _) => k.as_str(),
        (None, Schedule::Constant) => "constant",
        (None, Schedule::Piecewise { .. }) => "piecewise",
        (None, Schedule::Cosine { .. }) => "cosine",
        (None, Schedule::OneCycle { .. }) => "one-cycle",
    };
    let wrong_kind = |flag: &str, for_kind: &str| {
        anyhow::anyhow!("{flag} applies to --schedule {for_kind}, not `{kind}`")
    };
    if kind != "cosine" && (a.warmup_epochs.is_some() || a.min_lr.is_some()) {
        return Err(wrong_kind("--warmup-epochs/--min-lr", "cosine"));
    }
    if kind != "one-cycle" && a.peak_at.is_some() {
        return Err(wrong_kind("--peak-at", "one-cycle"));
    }
    if kind != "piecewise" && (a.milestones.is_some() || a.gamma.is_some()) {
        return Err(wrong_kind("--milestones/--gamma", "piecewise"));
    }
    Ok(match (kind, current) {
        ("constant", _) => Schedule::Constant,
        ("cosine", cur) => {
            let (w, m) = match cur {
                Schedule::Cosine {
                    warmup_epochs,
                    min_lr,
                } => (warmup_epochs, min_lr),
                _ => (0.0, 0.0),
            };
            Schedule::Cosine {
                warmup_epochs: a.warmup_epochs.unwrap_or(w),
                min_lr: a.min_lr.unwrap_or(m),
            }
        }
        ("one-cycle", cur) => {
            let p = match cur {
                Schedule::OneCycle { peak_at } => peak_at,
                _ => 0.4,
            };
            Schedule::OneCycle {
                peak_at: a.peak_at.unwrap_or(p),
            }
        }
        ("piecewise", cur) => {
            let (ms, g) = match cur {
                Schedule::Piecewise { milestones, gamma } => (milestones, gamma),
                _ => (Vec::new(), 0.1),
            };
            Schedule::Piecewise {
                milestones: a.milestones.clone().unwrap_or(ms),
                gamma: a.gamma.unwrap_or(g),
            }
        }
        (other, _) => {
            bail!("unknown schedule `{other}`; known: constant, piecewise, cosine, one-cycle")
        }
    })
}

/// The weights a run directory given as `--weights` stands for: its final `model.bpk`, else its
/// checkpoint's (see [`RUN_DIR_WEIGHTS`]).
fn run_dir_weights(dir: &Path) -> Option<PathBuf> {
    RUN_DIR_WEIGHTS
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.is_file())
}

/// Loads weights into a freshly built `model`, by file type.
fn load_weights(model: Model, path: &Path) -> Result<Model> {
    if path.is_dir() {
        if let Some(p) = run_dir_weights(path) {
            return load_weights(model, &p);
        }
        bail!(
            "{}: no model.bpk or checkpoint/model.bpk in this directory",
            path.display()
        );
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(torch::load_safetensors(model, path)?),
        Some("bpk") => Ok(bpk::load_bpk(model, path)?),
        _ => bail!(
            "{}: unknown weights format; expected a .safetensors (PyTorch layout) or .bpk (burn) file",
            path.display()
        ),
    }
}

fn eval(a: EvalArgs, backend: BackendKind) -> Result<()> {
    let device: Device = backend.device()?;
    // Robust-evaluation settings are checked before weights and data are touched.
    let robust = robust_config(&a)?;
    // Weights first: a bad file is reported before any data is fetched.
    let model = load_weights(Model::init(&a.model, &device)?, &a.weights)?;
    let dir = dataset_dir(&a.dataset, &fetch_options(a.data_dir.clone()))?;
    let mut test = load_dataset_split(&a.dataset, &dir, Split::Test)?;
    check_input_shape(&a.model, &test, &a.dataset)?;
    if let Some(n) = a.limit {
        test = test.take(n as usize);
    }
    // Every output is checked against every input before the evaluation runs.
    let mut inputs = Inputs::new();
    inputs.weights(&a.weights).data_dir(&dir);
    if let Some(d) = &a.data_dir {
        inputs.data_dir(d);
    }
    if let Some(config) = robust {
        let out = robust_out_dir(&a, &config);
        inputs.refuse_in(&out, &EVAL_OUTPUTS, "--out")?;
        // `<run>/eval` of a live training run is that run's own final evaluation.
        if let Some(parent) = out.parent()
            && parent.join(RunLock::FILE).is_file()
        {
            drop(RunLock::acquire(parent)?);
        }
        return robust_eval(&a, config, &out, &model, &test, backend, &device);
    }
    if let Some(path) = &a.predictions {
        inputs.refuse(path, "--predictions")?;
    }
    if let Some(path) = &a.json {
        inputs.refuse(path, "--json")?;
    }
    if let (Some(p), Some(j)) = (&a.predictions, &a.json) {
        guard::distinct((p, "--predictions"), (j, "--json"))?;
    }
    let r = evaluate(&model, &test, a.batch_size as usize, &device);
    println!(
        "{} on {} test ({} images): clean accuracy {:.2} %, cross-entropy {:.4}",
        a.model,
        a.dataset,
        r.n,
        100.0 * r.accuracy,
        r.loss
    );
    if let Some(path) = &a.predictions {
        let text: String = r.predictions.iter().map(|p| format!("{p}\n")).collect();
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(path) = &a.json {
        write_atomic(path, &serde_json::to_vec_pretty(&r)?)?;
    }
    Ok(())
}

/// FNV-1a of a file's bytes (identifies the weights a saved evaluation belongs to).
/// What a saved evaluation or attack of `model` with these weights depends on besides its own
/// configuration and the data: the key `eval --resume` and `attack --resume` check.
fn run_identity(
    model: &str,
    weights: &Path,
    dataset: &str,
    backend: BackendKind,
) -> Result<String> {
    Ok(format!(
        "{model}|{}|{dataset}|{backend}",
        file_hash(weights)?
    ))
}

fn file_hash(path: &Path) -> Result<String> {
    let file = if path.is_dir() {
        run_dir_weights(path).unwrap_or_else(|| path.to_path_buf())
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    Ok(format!("{h:016x}"))
}

/// The robust-evaluation configuration the flags describe (`None` without `--eps`), validated.
fn robust_config(a: &EvalArgs) -> Result<Option<RobustEvalConfig>> {
    let Some(eps) = a.eps else {
        return Ok(None);
    };
    let norm: Norm = a.norm.parse().map_err(anyhow::Error::msg)?;
    let preset: Preset = a.preset.parse().map_err(anyhow::Error::msg)?;
    let mut config = RobustEvalConfig::preset(preset, norm, eps, a.seed);
    if let Some(list) = &a.attacks {
        config.stages = stages_from_names(list, norm, a.seed)?;
        config.preset = None;
    }
    config.eps_sweep = a.eps_sweep.clone();
    config.batch_size = a.batch_size as usize;
    config.chunk_size = a.chunk_size as usize;
    config.probe_size = a.probe_size;
    Evaluator::new(
        norm,
        &config.all_eps(),
        config.stages.clone(),
        config.bounds,
    )?;
    Ok(Some(config))
}

/// `--out`, or `runs/eval/<model>-<preset>-<norm>-<eps>`.
fn robust_out_dir(a: &EvalArgs, config: &RobustEvalConfig) -> PathBuf {
    a.out.clone().unwrap_or_else(|| {
        let name = config
            .preset
            .map_or("custom".to_string(), |p| p.to_string());
        PathBuf::from("runs/eval")
            .join(format!("{}-{name}-{}-{}", a.model, config.norm, config.eps))
    })
}

fn robust_eval(
    a: &EvalArgs,
    config: RobustEvalConfig,
    out: &Path,
    model: &Model,
    test: &bulwark_data::ImageDataset,
    backend: BackendKind,
    device: &Device,
) -> Result<()> {
    let eps = config.eps;
    let out = out.to_path_buf();
    let opts = RobustEvalOptions {
        progress: !a.no_progress,
        resume: a.resume,
        identity: run_identity(&a.model, &a.weights, &a.dataset, backend)?,
        examples: 8,
        others: Vec::new(),
        report: Some(EvalContext {
            model: a.model.clone(),
            weights: a.weights.clone(),
            dataset: format!("{}/test", a.dataset),
            backend: backend.to_string(),
            bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
        }),
    };
    let report = evaluate_robustness(model, test, &config, &opts, &out, device)?;
    println!(
        "{} on {} {} test images, {} eps {}: clean {:.2} %, robust {:.2} % ({}; {:.1} s)",
        a.model,
        report.n_examples,
        a.dataset,
        report.threat_model,
        eps,
        100.0 * report.clean_acc,
        100.0 * report.robust_acc,
        report.preset,
        report.seconds
    );
    for stage in &report.attacks {
        println!(
            "  after {:<8} {:.2} %",
            stage.name,
            100.0 * stage.robust_acc_after
        );
    }
    if report.probe_broken > 0 {
        println!(
            "  the sanity checks' Square probe broke {} more point(s): robust {:.2} % is the \
             per-sample worst case over both (cascade alone {:.2} %)",
            report.probe_broken,
            100.0 * report.robust_acc,
            100.0 * report.cascade_robust_acc
        );
    }
    if report.sweep.len() > 1 {
        for p in &report.sweep {
            println!("  eps {:<8} robust {:.2} %", p.eps, 100.0 * p.robust_acc);
        }
    }
    for flag in report.raised() {
        println!("  WARNING {}: {}", flag.check, flag.evidence);
    }
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

/// The attack configuration the flags describe.
fn attack_config(a: &AttackArgs) -> Result<AttackConfig> {
    if let Some(path) = &a.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Result<serde_json::Value> = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(anyhow::Error::from)
        } else {
            toml::from_str(&text).map_err(anyhow::Error::from)
        };
        let config = value.and_then(|v| AttackConfig::from_partial(v).map_err(anyhow::Error::from));
        return config.with_context(|| format!("{}: not an attack configuration", path.display()));
    }
    let norm: Norm = a.norm.parse().map_err(anyhow::Error::msg)?;
    let mut options = AttackOptions::new()
        .with_loss(
            a.loss
                .as_deref()
                .unwrap_or(if a.attack == "square" { "cw" } else { "ce" })
                .parse()
                .map_err(anyhow::Error::msg)?,
        )
        .with_restarts(a.restarts)
        .with_early_stop(!a.no_early_stop)
        .with_seed(a.seed);
    if let Some(t) = &a.targeted {
        let t: Targeting = t.parse().map_err(anyhow::Error::msg)?;
        if t == Targeting::Given {
            bail!(
                "--targeted given needs targets per image, which the command line cannot pass; use random or least-likely"
            );
        }
        options = options.with_targeting(t);
    }
    let need_eps = || {
        a.eps
            .with_context(|| format!("--attack {} needs --eps", a.attack))
    };
    let threat = || -> Result<ThreatModel> { Ok(ThreatModel::new(norm, need_eps()?)) };
    Ok(match a.attack.as_str() {
        "fgsm" | "fgsm-rs" => {
            let random_start = a.attack == "fgsm-rs";
            AttackConfig::Fgsm(
                FgsmConfig::new(threat()?)
                    .with_step_size(a.step_size)
                    .with_options(options.with_random_start(random_start)),
            )
        }
        "bim" => AttackConfig::Bim(
            BimConfig::new(threat()?)
                .with_steps(a.steps)
                .with_step_size(a.step_size)
                .with_options(options),
        ),
        "pgd" => AttackConfig::Pgd(
            PgdConfig::new(threat()?)
                .with_steps(a.steps.unwrap_or(40))
                .with_step_size(a.step_size)
                .with_options(options.with_random_start(!a.no_random_start)),
        ),
        "mi-fgsm" => AttackConfig::MiFgsm(
            MiFgsmConfig::new(threat()?)
                .with_steps(a.steps.unwrap_or(10))
                .with_step_size(a.step_size)
                .with_decay(a.decay)
                .with_options(options),
        ),
        "apgd" | "apgd-t" => {
            if a.attack == "apgd-t" && a.targeted.is_none() {
                bail!("apgd-t is targeted: add --targeted random or least-likely");
            }
            AttackConfig::Apgd(
                ApgdConfig::new(threat()?)
                    .with_steps(a.steps.unwrap_or(100))
                    .with_options(options.with_random_start(!a.no_random_start)),
            )
        }
        "square" => AttackConfig::Square(
            SquareConfig::new(threat()?)
                .with_queries(a.steps.unwrap_or(5000))
                .with_options(options),
        ),
        "cw-l2" | "cw" => {
            if norm != Norm::L2 && a.eps.is_some() {
                bail!("cw-l2 measures L2 distances: use --norm l2 with --eps");
            }
            AttackConfig::CwL2(
                CwL2Config::new()
                    .with_steps(a.steps.unwrap_or(1000))
                    .with_eps(a.eps)
                    .with_options(options.with_loss(LossKind::CwMargin).with_early_stop(false)),
            )
        }
        "deepfool" => AttackConfig::DeepFool(
            DeepFoolConfig::new()
                .with_norm(if norm == Norm::L1 {
                    bail!("deepfool supports --norm l2 or linf")
                } else {
                    norm
                })
                .with_steps(a.steps.unwrap_or(50))
                .with_eps(a.eps)
                .with_options(options.with_early_stop(false)),
        ),
        other => bail!(
            "unknown attack `{other}`; known: fgsm, fgsm-rs, bim, pgd, mi-fgsm, apgd, square, cw-l2, deepfool"
        ),
    })
}

/// The file in an attack's output directory that holds its finished batches until it completes.
const ATTACK_STATE: &str = "attack-state.json";

fn attack(a: AttackArgs, backend: BackendKind) -> Result<()> {
    let device: Device = backend.device()?;
    let config = attack_config(&a)?;
    // Settings are checked before weights and data are touched.
    let checked = config.init()?;
    let out = a.out.clone().unwrap_or_else(|| {
        let eps = checked
            .threat()
            .map_or("min".to_string(), |t| format!("{}", t.eps));
        PathBuf::from("runs/attacks").join(format!(
            "{}-{}-{}-{eps}",
            a.model,
            checked.name(),
            checked.norm()
        ))
    });
    // One attack per output directory at a time: two would mix their saved batches. Taken before
    // the directory's contents are looked at, so that what they say stays true.
    let _lock = RunLock::acquire(&out)?;
    let state_path = out.join(ATTACK_STATE);
    if state_path.exists() && !a.resume && !a.overwrite {
        bail!(
            "{}: an interrupted attack is saved there; pass --resume to continue it, or choose \
             another --out",
            state_path.display()
        );
    }
    let summary_path = out.join("summary.json");
    if summary_path.is_file() && !a.overwrite {
        bail!(
            "{} holds a finished attack ({}); choose another --out, or pass --overwrite to \
             replace it{}",
            out.display(),
            summary_path.display(),
            if a.resume {
                " (there is nothing left to resume)"
            } else {
                ""
            }
        );
    }
    let model = load_weights(Model::init(&a.model, &device)?, &a.weights)?;
    let dir = dataset_dir(&a.dataset, &fetch_options(a.data_dir.clone()))?;
    let mut test = load_dataset_split(&a.dataset, &dir, Split::Test)?;
    check_input_shape(&a.model, &test, &a.dataset)?;
    if let Some(n) = a.limit {
        test = test.take(n as usize);
    }
    let mut inputs = Inputs::new();
    inputs.weights(&a.weights).data_dir(&dir);
    if let Some(d) = &a.data_dir {
        inputs.data_dir(d);
    }
    if let Some(c) = &a.config {
        inputs.file("the attack configuration", c);
    }
    inputs.refuse_in(&out, &ATTACK_OUTPUTS, "--out")?;
    if let Some(t) = checked.threat() {
        warn_eps_box(t.norm, t.eps, test.image_size(), "--eps");
    }
    if a.overwrite {
        // The finished results go first, so that a killed rerun cannot leave them beside a state
        // of the new attack; a leftover state of another attack must not be resumed either.
        for f in [&summary_path, &state_path, &out.join("examples.png")] {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", f.display()));
                }
                _ => {}
            }
        }
    }
    let opts = AttackRunOptions {
        batch_size: a.batch_size as usize,
        progress: !a.no_progress,
        examples: 8,
        state: Some(AttackState {
            path: state_path.clone(),
            identity: run_identity(&a.model, &a.weights, &a.dataset, backend)?,
        }),
    };
    let summary = attack_dataset(&model, &test, &config, &opts, &device)?;
    let threat = match summary.eps {
        Some(eps) => format!("{} eps {eps}", summary.norm),
        None => format!("{}, unbounded", summary.norm),
    };
    println!(
        "{} {} ({threat}) on {} {} test images: clean {:.2} %, adversarial {:.2} %, robust {:.2} % \
         ({:.1} s, {:.0} img/s)",
        a.model,
        summary.attack,
        summary.n,
        a.dataset,
        100.0 * summary.clean_accuracy,
        100.0 * summary.adversarial_accuracy,
        100.0 * summary.robust_accuracy,
        summary.seconds,
        summary.images_per_second
    );
    let context = AttackContext {
        model: a.model.clone(),
        weights: a.weights.clone(),
        dataset: format!("{}/test", a.dataset),
        backend: backend.to_string(),
        bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let (json, png) = write_attack_outputs(&out, &context, &summary)?;
    // The attack is complete and its summary saved: a later run starts afresh.
    match std::fs::remove_file(&state_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", state_path.display()));
        }
        _ => {}
    }
    if summary.resumed_batches > 0 {
        println!(
            "resumed: {} finished batch(es) from {ATTACK_STATE}",
            summary.resumed_batches
        );
    }
    println!("summary: {}", json.display());
    if !summary.examples.is_empty() {
        println!("examples: {}", png.display());
    }
    Ok(())
}

fn bench(plan: &BenchPlan, data_dir: Option<PathBuf>, json: Option<PathBuf>) -> Result<()> {
    // Real MNIST images: the committed test slice unless a directory is given.
    let dir = data_dir.unwrap_or_else(|| PathBuf::from("crates/data/tests/fixtures/mnist"));
    let images = load_split(DatasetKind::Mnist, Split::Test, &dir)
        .with_context(|| format!("benchmark images from {}", dir.display()))?;
    if let Some(path) = &json {
        Inputs::new().data_dir(&dir).refuse(path, "--json")?;
    }
    println!(
        "{:<8} {:<10} {:<12} {:>12} {:>24} {:>8} {:>12} {:>9}",
        "backend",
        "model",
        "workload",
        "median img/s",
        "range (img/s)",
        "repeats",
        "FLOP/image",
        "GFLOP/s"
    );
    let rows = bulwark_trainer::bench_throughput(&images, plan, |r| {
        let unit = if r.model == "-" { " (matmuls/s)" } else { "" };
        println!(
            "{:<8} {:<10} {:<12} {:>12.1} {:>11.1} – {:<10.1} {:>8} {:>12.3e} {:>9.1}{unit}",
            r.backend,
            r.model,
            r.workload,
            r.median_images_per_second,
            r.min_images_per_second,
            r.max_images_per_second,
            r.repeats,
            r.flops_per_image,
            r.gflops_per_second,
        );
    })?;
    if let Some(path) = json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&path, &serde_json::to_vec_pretty(&rows)?)?;
        println!("results: {}", path.display());
    }
    Ok(())
}

fn data_fetch(dataset: &str, data_dir: Option<PathBuf>, offline: bool) -> Result<()> {
    let mut opts = fetch_options(data_dir);
    if offline {
        // The package registries are reached over the network too.
        opts.use_network = false;
        opts.use_registries = false;
    }
    if dataset == "cifar10" || dataset == "cifar-10" {
        let dir = bulwark_data::cifar::fetch_cifar10(&opts)?;
        println!("{}", dir.display());
        return Ok(());
    }
    let kind: DatasetKind = dataset.parse()?;
    let dir = fetch(kind, &opts)?;
    println!("{}", dir.display());
    Ok(())
}

fn models_list(backend: BackendKind) -> Result<()> {
    // Parameter counts come from building each model, so they cannot drift from the code.
    let device = backend.device()?;
    println!(
        "{:<16} {:<12} {:>12}  description",
        "name", "input", "parameters"
    );
    for info in models() {
        let model = Model::init(info.name, &device)?;
        let shape = info
            .input_shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<16} {:<12} {:>12}  {}",
            info.name,
            shape,
            torch::trainable_parameter_count(&model),
            info.summary
        );
    }
    Ok(())
}

fn export(a: ExportArgs, backend: BackendKind) -> Result<()> {
    let device = backend.device()?;
    let out_ext = a.to.extension().and_then(|e| e.to_str());
    if !matches!(out_ext, Some("safetensors" | "bpk")) {
        bail!(
            "{}: choose a .safetensors or .bpk output file",
            a.to.display()
        );
    }
    if let Some(from) = &a.from {
        Inputs::new().weights(from).refuse(&a.to, "--to")?;
    }
    let model = match (&a.from, a.init_seed) {
        (Some(from), _) => load_weights(Model::init(&a.model, &device)?, from)?,
        (None, Some(seed)) => Model::init_seeded(&a.model, &device, seed)?,
        (None, None) => bail!("give --from or --init-seed"),
    };
    if out_ext == Some("bpk") {
        // Parameter ids numbered in order: the same weights always give the same bytes.
        save_bpk_atomic(&bpk::with_ordinal_ids(model), &a.to)?;
    } else {
        torch::save_safetensors(&model, &a.to)?;
    }
    println!("wrote {}", a.to.display());
    Ok(())
}
