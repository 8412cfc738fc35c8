//! What each subcommand does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bulwark_data::{DatasetKind, FetchOptions, Split, fetch, load_split};
use bulwark_models::{Model, models, torch};
use bulwark_trainer::{
    BackendKind, DeviceSet, JobOptions, OptimizerKind, TrainConfig, check_input_shape, evaluate,
    run_job,
};
use burn::module::Module;
use burn::tensor::Device;

use crate::args::{Cli, Command, DataCommand, EvalArgs, ExportArgs, ModelsCommand, TrainArgs};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let backend: BackendKind = cli.backend.parse()?;
    match cli.command {
        Command::Train(args) => train(args, backend),
        Command::Eval(args) => eval(args, backend),
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
        run_dir = a
            .run_dir
            .clone()
            .or_else(|| a.name.as_ref().map(|n| a.runs_dir.join(n)))
            .context("--resume needs --run-dir (or --name) of the run to continue")?;
        let path = run_dir.join("config.toml");
        let overrides = [
            a.config.is_some(),
            a.model.is_some(),
            a.dataset.is_some(),
            a.epochs.is_some(),
            a.batch_size.is_some(),
            a.lr.is_some(),
            a.optimizer.is_some(),
            a.weight_decay.is_some(),
            a.seed.is_some(),
            a.train_limit.is_some(),
            a.valid_size.is_some(),
            a.test_limit.is_some(),
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
        cfg.validate()?;
        run_dir = a.run_dir.clone().unwrap_or_else(|| {
            let name = a
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", cfg.model, cfg.dataset));
            a.runs_dir.join(name)
        });
        if bulwark_trainer::Checkpoint::find(&run_dir).is_some() {
            bail!(
                "{} already holds a run; continue it with `bulwark train --resume --run-dir {}`, \
                 or choose another --name / --run-dir",
                run_dir.display(),
                run_dir.display()
            );
        }
        cfg
    };
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
            "best validation accuracy",
            format!("{:.2} % (epoch {epoch})", 100.0 * acc)
        );
    }
    println!(
        "| {:<28} | {:>22} |",
        "clean test accuracy",
        format!(
            "{:.2} % of {}",
            100.0 * outcome.test.accuracy,
            outcome.test.n
        )
    );
    println!(
        "| {:<28} | {:>22} |",
        "test cross-entropy",
        format!("{:.4}", outcome.test.loss)
    );
    let secs: f64 = outcome.history.iter().map(|m| m.seconds).sum();
    println!(
        "| {:<28} | {:>22} |",
        "training time",
        format!("{secs:.1} s")
    );
    println!();
    println!("Report:  {}", outcome.report.display());
    println!("Weights: {} (PyTorch layout)", outcome.weights.display());
    Ok(())
}

/// Loads weights into a freshly built `model`, by file type.
fn load_weights(model: Model, path: &Path) -> Result<Model> {
    if path.is_dir() {
        for candidate in [
            "model.bpk",
            "checkpoint/model.bpk",
            "checkpoint.old/model.bpk",
        ] {
            let p = path.join(candidate);
            if p.is_file() {
                return load_weights(model, &p);
            }
        }
        bail!(
            "{}: no model.bpk or checkpoint/model.bpk in this directory",
            path.display()
        );
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(torch::load_safetensors(model, path)?),
        Some("bpk") => {
            let name = model.name();
            model.try_load_file(path).map_err(|e| {
                anyhow::anyhow!("{}: does not load into model `{name}`: {e}", path.display())
            })
        }
        _ => bail!(
            "{}: unknown weights format; expected a .safetensors (PyTorch layout) or .bpk (burn) file",
            path.display()
        ),
    }
}

fn eval(a: EvalArgs, backend: BackendKind) -> Result<()> {
    let device: Device = backend.device()?;
    // Weights first: a bad file is reported before any data is fetched.
    let model = load_weights(Model::init(&a.model, &device)?, &a.weights)?;
    let kind: DatasetKind = a.dataset.parse()?;
    let dir = fetch(kind, &fetch_options(a.data_dir))?;
    let mut test = load_split(kind, Split::Test, &dir)?;
    check_input_shape(&a.model, &test, &a.dataset)?;
    if let Some(n) = a.limit {
        test = test.take(n);
    }
    let r = evaluate(&model, &test, a.batch_size, &device);
    println!(
        "{} on {} test ({} images): clean accuracy {:.2} %, cross-entropy {:.4}",
        a.model,
        a.dataset,
        r.n,
        100.0 * r.accuracy,
        r.loss
    );
    if let Some(path) = &a.predictions {
        let preds = bulwark_trainer::predict(&model, &test, a.batch_size, &device);
        let text: String = preds.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn data_fetch(dataset: &str, data_dir: Option<PathBuf>, offline: bool) -> Result<()> {
    let mut opts = fetch_options(data_dir);
    if offline {
        opts.use_network = false;
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
    let fresh = Model::init(&a.model, &device)?;
    let model = match (&a.from, a.init_seed) {
        (Some(from), _) => load_weights(fresh, from)?,
        (None, Some(seed)) => {
            device.seed(seed);
            Model::init(&a.model, &device)?
        }
        (None, None) => bail!("give --from or --init-seed"),
    };
    match a.to.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => torch::save_safetensors(&model, &a.to)?,
        Some("bpk") => model
            .save_file(&a.to)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", a.to.display()))?,
        _ => bail!(
            "{}: choose a .safetensors or .bpk output file",
            a.to.display()
        ),
    }
    println!("wrote {}", a.to.display());
    Ok(())
}
