//! `bulwark train`: a training run from a config file and flags.

use anyhow::{Context, Result, bail};
use bulwark_eval::RunLock;
use bulwark_reg_core::{ParamSelection, Penalty, PenaltyKind};
use bulwark_trainer::{
    AwpSpec, BackendKind, DeviceSet, JobOptions, Method, Mixing, OptimizerKind, Schedule,
    TrainConfig, run_job,
};

use crate::args::TrainArgs;
use crate::guard::Inputs;

use super::{fetch_options, run_name, warn_eps_box};

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

pub(super) fn train(a: TrainArgs, backend: BackendKind) -> Result<()> {
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
pub(super) fn method_from_flags(
    name: Option<&str>,
    eps: Option<f64>,
    current: &Method,
) -> Result<Method> {
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
