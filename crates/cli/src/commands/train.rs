//! `bulwark train`: a training run from a config file and flags.

use anyhow::{Context, Result, bail};
use bulwark_eval::RunLock;
use bulwark_reg_core::{ParamSelection, Penalty, PenaltyKind};
use bulwark_trainer::{
    AwpSpec, BackendKind, DeviceSet, InputGradientSpec, JobOptions, Method, Mixing, RUN_OUTPUTS,
    TrainConfig, run_job,
};

use crate::args::TrainArgs;
use crate::guard::Inputs;

use super::{fetch_options, flag_table, overlay, run_name, warn_eps_box};

/// The run's devices: under an MPI launcher (`mpirun`, `srun`) and with the `mpi` feature, this
/// rank's device (its local rank's GPU on a GPU backend) in the job's process group.
fn run_devices(backend: BackendKind) -> Result<DeviceSet> {
    #[cfg(feature = "mpi")]
    if let Some(group) = bulwark_trainer::MpiCollective::from_launcher()? {
        use bulwark_trainer::Collective;
        // The GPU of this rank's local rank; where a task sees only its own GPU (Slurm's
        // --gpus-per-task, CUDA_VISIBLE_DEVICES), that is the default device.
        let device = match backend.device_at(group.local_rank()) {
            Ok(d) => d,
            Err(e) => {
                let fallback = backend.device()?;
                tracing::warn!(
                    "rank {}: no device {} for local rank {} ({e}); using the default device",
                    group.rank(),
                    group.local_rank(),
                    group.local_rank()
                );
                fallback
            }
        };
        let devices = DeviceSet::new(vec![device])?;
        if group.size() > 1 {
            tracing::info!(
                "data-parallel rank {} of {} (local rank {})",
                group.rank(),
                group.size(),
                group.local_rank()
            );
        }
        return Ok(devices.with_collective(std::sync::Arc::new(group)));
    }
    #[cfg(not(feature = "mpi"))]
    if let Some(n) = bulwark_trainer::launcher_world_size().filter(|&n| n > 1) {
        bail!(
            "this process is one of {n} that an MPI launcher (mpirun, srun) started, but this \
             bulwark was built without MPI; build it with `--features mpi` (see \
             docs/cluster.md), or start a single process"
        );
    }
    Ok(DeviceSet::single(backend)?)
}

pub(super) fn train(a: TrainArgs, backend: BackendKind) -> Result<()> {
    let devices = run_devices(backend)?;
    let result = train_on(a, backend, &devices);
    if let (Err(e), Some(_)) = (&result, devices.collective()) {
        // Said here, with the rank: an MPI group that did not finish ends the whole job when it
        // is dropped (see `MpiCollective`), before the error would reach `main`.
        eprintln!("error (rank {}): {e:#}", devices.rank());
    }
    result
}

fn train_on(a: TrainArgs, backend: BackendKind, devices: &DeviceSet) -> Result<()> {
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
        if a.config.is_some() || given(&a)? {
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
        cfg = overlay(cfg, &a.set)?;
        cfg.schedule = cfg
            .schedule
            .overlay(a.schedule.schedule.as_deref(), flag_table(&a.schedule)?)
            .map_err(anyhow::Error::msg)?;
        cfg.method = noise_from_flags(a.method.as_deref(), a.eps, a.sigma, &cfg.method)?;
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
        if let Some(lambda) = a.input_gradient {
            let h = a
                .input_gradient_h
                .or(cfg.input_gradient.as_ref().map(|ig| ig.h))
                .unwrap_or(InputGradientSpec::DEFAULT_H);
            cfg.input_gradient = Some(InputGradientSpec { lambda, h });
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
        cfg.validate()?;
        run_dir = match (&a.run_dir, &a.name) {
            (Some(dir), _) => dir.clone(),
            (None, Some(name)) => a.runs_dir.join(run_name(name)?),
            (None, None) => a.runs_dir.join(format!(
                "{}-{}",
                cfg.model,
                bulwark_trainer::dataset_label(&cfg.dataset)
            )),
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
        inputs.refuse_in(&run_dir, RUN_OUTPUTS, "--run-dir")?;
    }
    if let Some(eps) = cfg.method.eps() {
        let info = bulwark_models::model_info(&cfg.model)?;
        warn_eps_box(cfg.norm, eps, info.input_shape.iter().product(), "--eps");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let outcome = run_job(
        &cfg,
        devices,
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
    if !devices.writes() {
        println!(
            "rank {}: training done; rank 0 evaluates and writes {}",
            devices.rank(),
            run_dir.display()
        );
        return Ok(());
    }
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

/// The method the flags select, with `--sigma` for Gaussian noise augmentation (whose setting
/// is a noise level, not a radius).
fn noise_from_flags(
    name: Option<&str>,
    eps: Option<f64>,
    sigma: Option<f64>,
    current: &Method,
) -> Result<Method> {
    let gaussian = name == Some("gaussian-noise")
        || (name.is_none() && matches!(current, Method::GaussianNoise { .. }));
    if !gaussian {
        if sigma.is_some() {
            bail!("--sigma is the noise level of --method gaussian-noise");
        }
        return method_from_flags(name, eps, current);
    }
    if eps.is_some() {
        bail!("--eps is a radius of adversarial methods; gaussian-noise takes --sigma");
    }
    match (sigma, current) {
        (Some(sigma), _) => Ok(Method::GaussianNoise { sigma }),
        (None, Method::GaussianNoise { .. }) => Ok(current.clone()),
        (None, _) => bail!("--method gaussian-noise needs its noise level: --sigma S"),
    }
}

/// Whether any configuration flag is given (`--resume` takes none).
fn given(a: &TrainArgs) -> Result<bool> {
    Ok(!flag_table(&a.set)?.is_empty()
        || a.schedule.schedule.is_some()
        || !flag_table(&a.schedule)?.is_empty()
        || a.method.is_some()
        || a.sigma.is_some()
        || a.eps.is_some()
        || a.mixup.is_some()
        || a.cutmix.is_some()
        || a.l1.is_some()
        || a.l2.is_some()
        || a.input_gradient.is_some()
        || a.awp.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{ConfigFlags, ScheduleFlags};
    use bulwark_trainer::{OptimizerKind, Schedule};

    #[test]
    fn every_config_flag_overlays_the_configuration_field_of_its_name() {
        let flags = ConfigFlags {
            model: Some("mlp".into()),
            dataset: Some("fashion-mnist".into()),
            epochs: Some(7),
            batch_size: Some(33),
            lr: Some(0.25),
            optimizer: Some(OptimizerKind::Adamw),
            weight_decay: Some(1e-3),
            momentum: Some(0.5),
            nesterov: true,
            eval_batch_size: Some(77),
            seed: Some(9),
            train_limit: Some(1234),
            valid_size: Some(99),
            test_limit: Some(55),
            label_smoothing: Some(0.1),
            dropout: Some(0.3),
            drop_path: Some(0.2),
            patience: Some(4),
        };
        // Each given flag must come back from the overlaid configuration under its own name (a
        // flag whose name is not a field would vanish here).
        let given = flag_table(&flags).unwrap();
        assert_eq!(given.len(), 18, "a flag is not serialized: {given:?}");
        let cfg = overlay(TrainConfig::new(), &flags).unwrap();
        let table = toml::Table::try_from(&cfg).unwrap();
        for (key, value) in &given {
            assert_eq!(
                &table[key], value,
                "--{key} did not reach the configuration"
            );
        }
        // Fields no flag names keep the configuration's values.
        let none = overlay(cfg.clone(), &ConfigFlags::default()).unwrap();
        assert_eq!(none.to_toml(), cfg.to_toml());
    }

    #[test]
    fn schedule_flags_keep_or_replace_the_configured_schedule() {
        let flags = ScheduleFlags {
            schedule: None,
            gamma: Some(0.5),
            ..ScheduleFlags::default()
        };
        let current = Schedule::Piecewise {
            milestones: vec![3.0],
            gamma: 0.1,
        };
        let s = current.overlay(None, flag_table(&flags).unwrap()).unwrap();
        assert_eq!(
            s,
            Schedule::Piecewise {
                milestones: vec![3.0],
                gamma: 0.5
            }
        );
        // A parameter of another kind is refused, naming it.
        let flags = ScheduleFlags {
            peak_at: Some(0.3),
            ..ScheduleFlags::default()
        };
        let e = current
            .overlay(Some("cosine"), flag_table(&flags).unwrap())
            .unwrap_err();
        assert!(e.contains("peak_at") && e.contains("cosine"), "{e}");
    }
}
